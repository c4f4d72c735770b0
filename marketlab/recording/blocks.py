"""A recording's entries a block at a time, each block's frames read ahead of the collector by
a venue's compiled reader (a replay's way, where ``BLOCKS_AHEAD``): ``marketlab._native.Block``.

Where the system's libzstd is loaded (:func:`~marketlab.recording.files.zstd_library`), the
blocks are made by a thread that runs no Python (``marketlab._native.Inflow``): it decompresses,
cuts and reads without ever needing the GIL, so it never waits behind the collector. Elsewhere a
Python thread makes them (:class:`~marketlab.recording.readahead.ReadAhead`), letting go of the GIL
while it decompresses and reads. Either way the file is decompressed in the same steps as by
:func:`~marketlab.recording.files.open_recording`, and the same damage is named, after the
same entries."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import zstandard

from marketlab.native import COMPILED, compiled
from marketlab.recording.files import (
    _ENTRY,
    KINDS,
    WS,
    Header,
    RecordingError,
    _broken,
    _Decompressed,
    _open,
    _undecompressable,
    entry_maker,
    zstd_library,
)
from marketlab.recording.readahead import ClosingIterator, ReadAhead

# Whether this build reads a recording's blocks ahead, frames and all (see open_blocks)
BLOCKS_AHEAD = COMPILED
_KIND_FLAGS = bytes(1 if k in KINDS else 0 for k in range(256))
_read_block: Any = compiled("read_block")
_Inflow: Any = compiled("Inflow")


class Block:
    """A block of a recording's entries, its frames read ahead (a compiled ``Block``, which
    owns them): :meth:`run` takes them in order."""

    __slots__ = ("_block",)

    def __init__(self, block: Any):
        self._block = block

    def run(
        self,
        limit: int,
        entry_type: type[tuple[Any, ...]],
        tags: dict[bytes, str],
        on_entry: Callable[[Any], None],
        on_tag: Callable[[str], None],
        clock: Callable[[int], None] | None,
    ) -> tuple[int, list[tuple[str, int]], bool]:
        """Up to ``limit`` entries, each told to ``clock(time_ns)`` first (unless None; a
        clock with a ``due`` time is told only from then on, as it would have ignored the
        rest); a frame read ahead goes to its lane's taker, any other entry to
        ``on_entry`` as an ``entry_type``. ``on_tag(tag)`` is told of a connection's first
        frame taken here. ``(done, [(tag, frames taken)], finished)``."""
        due = functools.partial(getattr, clock, "due") if hasattr(clock, "due") else None
        make = entry_maker(entry_type)
        return self._block.run(limit, make, tags, on_entry, on_tag, clock, due)


def read_block(frames: Any, data: bytes) -> Block:
    """The whole entries of ``data`` (a recording's decompressed bytes, from an entry's start),
    the frames ``frames`` knows read ahead."""
    if _read_block is None:
        raise RecordingError("this build reads recordings entry by entry (open_recording)")
    return Block(_read_block(frames, b"", data, _KIND_FLAGS, WS))


def open_blocks(path: str | os.PathLike[str], frames: Any) -> tuple[Header, ClosingIterator[Any]]:
    """The header and the entries a block at a time, each cut and its frames read by ``frames``
    (a compiled frame reader, e.g. a venue's ``LaneTable``) ahead of the caller; close the
    iterator when done with it (it stops its thread)."""
    if not BLOCKS_AHEAD:
        raise RecordingError("this build reads recordings entry by entry (open_recording)")
    p, header, stream = _open(path)
    mapped = stream.mapped
    if mapped is not None and zstd_library() is not None and _Inflow is not None:
        inflow = _Inflow(frames, mapped, stream.consumed(), _KIND_FLAGS, WS)
        return header, _Inflowing(p, inflow, stream.close)
    return header, ReadAhead(_blocks(p, stream, frames), stream.close, depth=2)


class _Inflowing:
    """The blocks of an ``Inflow``; when they end early, the damage named as the other
    readers name it."""

    def __init__(self, path: Path, inflow: Any, closing: Callable[[], None]):
        self._path = path
        self._inflow = inflow
        self._closing = closing

    def __iter__(self) -> _Inflowing:
        return self

    def __next__(self) -> Block:
        block = next(self._inflow, None)  # waits for the thread with the GIL let go
        if block is not None:
            return Block(block)
        inflow, path = self._inflow, self._path
        if inflow.error:
            raise _undecompressable(path, inflow.entries, f"zstd decompress error: {inflow.error}")
        if inflow.bad:
            raise _broken(path, inflow.entries + 1)
        if inflow.cut:
            raise _broken(path, inflow.entries + 1, head_cut=inflow.cut < _ENTRY.size)
        raise StopIteration

    def close(self) -> None:
        self._inflow.close()  # the thread joined and the mapped file let go, before it closes
        self._closing()


def _blocks(path: Path, reader: _Decompressed, frames: Any) -> Iterator[Block]:
    """Runs on a Python read-ahead thread: decompressing and reading a block let go of the
    GIL."""
    rest, n = b"", 0
    damage: zstandard.ZstdError | None = None
    while True:
        if damage is not None:
            raise _undecompressable(path, n, damage)
        # At least as much again as is carried (an entry longer than a piece, or a damaged
        # length): the carried bytes are then copied a few times in all, not once a piece.
        parts: list[bytes] = []
        have = 0
        while not parts or (parts[-1] and have < len(rest)):
            try:
                parts.append(reader.read())
            except zstandard.ZstdError as exc:  # what came before it is given first
                damage = exc
                break
            have += len(parts[-1])
        more = b"".join(parts)
        if damage is not None and not more:
            continue
        if not more:
            if rest:
                raise _broken(path, n + 1, head_cut=len(rest) < _ENTRY.size)
            return
        block = _read_block(frames, rest, more, _KIND_FLAGS, WS)
        if block.count:
            yield Block(block)
        n += block.count
        if block.bad:
            raise _broken(path, n + 1)
        rest = block.rest
        del block  # not held while the next is read
