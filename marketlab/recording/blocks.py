"""A recording's entries a block at a time, each block's frames read ahead of the collector by
a venue's compiled reader: ``marketlab._native.Block``. Where the compiled part is not in use
its twin, :class:`BlockPython`, reads no frame ahead: each goes to the caller as an entry (a
replay's ``on_frame`` then reads it, as it reads a live frame).

Where the system's libzstd is loaded (:func:`~marketlab.recording.files.zstd_library`), the
blocks are made by a thread that runs no Python (``marketlab._native.Inflow``): it decompresses,
cuts and reads without ever needing the GIL, so it never waits behind the collector. Elsewhere a
Python thread makes them (:class:`~marketlab.recording.readahead.ReadAhead`), letting go of the GIL
while it decompresses and reads. Either way the file is decompressed in the same steps as by
:func:`~marketlab.recording.files.open_recording`, and the same damage is named, after the
same entries."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import zstandard

from marketlab.native import compiled
from marketlab.recording.files import (
    ENTRY_HEAD,
    KINDS,
    WS,
    Decompressed,
    Header,
    broken,
    entry_maker,
    open_stream,
    scan_entries_python,
    undecompressable,
    zstd_library,
)
from marketlab.recording.readahead import ClosingIterator, ReadAhead

_KIND_FLAGS = bytes(1 if k in KINDS else 0 for k in range(256))


class BlockPython:
    """The twin of the compiled ``Block`` (made by :func:`read_block_python`): the same
    attributes and ``run``, but no frame read ahead, so every entry goes to ``on_entry``."""

    __slots__ = ("_entries", "_next", "bad", "count", "end", "read", "rest")

    def __init__(
        self, entries: list[tuple[int, int, str, bytes]], end: int, bad: bool, rest: bytes
    ):
        self._entries = entries
        self._next = 0
        self.count = len(entries)
        self.end = end
        self.bad = bad
        self.read = 0  # frames read ahead
        self.rest = rest

    def run(
        self,
        limit: int,
        make: Callable[[tuple[Any, ...]], Any],
        tags: dict[bytes, str],
        on_entry: Callable[[Any], None],
        on_tag: Callable[[str], None],
        clock: Callable[[int], None] | None,
        due_of: Callable[[], int] | None,
    ) -> tuple[int, list[tuple[str, int]], bool]:
        entries, done = self._entries, 0
        due = due_of() if clock is not None and due_of is not None else None
        while self._next < self.count and done < limit:
            values = entries[self._next]
            self._next += 1
            done += 1
            if clock is not None and (due is None or values[1] >= due):
                clock(values[1])
                if due_of is not None:
                    due = due_of()
            on_entry(make(values))
        return done, [], self._next >= self.count


def read_block_python(
    frames: Any, rest: bytes, more: bytes, kinds: bytes, ws_kind: int
) -> BlockPython:
    """The twin of the compiled ``read_block``: the whole entries of ``rest + more`` (``kinds``
    is 256 bytes, non-zero for a kind that may stand in a recording), scanning stopped before a
    bad one (``bad``) or one cut by the end (``rest``); ``frames`` and ``ws_kind`` go unused, as
    no frame is read ahead."""
    data = rest + more
    known = frozenset(k for k, ok in enumerate(kinds) if ok)
    entries, end, bad = scan_entries_python(tuple, data, 0, known, {})
    return BlockPython(entries, end, bad, data[end:])


# The compiled block reader, or its twin
_read_block: Callable[[Any, bytes, bytes, bytes, int], Any] = compiled(
    "read_block", read_block_python
)
# The compiled thread that makes the blocks (no twin: where there is none, a Python thread
# makes them, see open_blocks); built wherever zstd_library() can load the system's libzstd
_Inflow: Any = compiled("Inflow")


class Block:
    """A block of a recording's entries, its frames read ahead (a compiled ``Block``, which
    owns them, or its twin): :meth:`run` takes them in order."""

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
        clock with a ``next_due()`` time is told only from then on, as it would have ignored
        the rest); a frame read ahead goes to its lane's taker, any other entry to
        ``on_entry`` as an ``entry_type``. ``on_tag(tag)`` is told of a connection's first
        frame taken here. ``(done, [(tag, frames taken)], finished)``."""
        due = getattr(clock, "next_due", None)  # a bound method: compiled code calls it
        make = entry_maker(entry_type)
        return self._block.run(limit, make, tags, on_entry, on_tag, clock, due)


def read_block(frames: Any, data: bytes) -> Block:
    """The whole entries of ``data`` (a recording's decompressed bytes, from an entry's start),
    the frames ``frames`` knows read ahead."""
    return Block(_read_block(frames, b"", data, _KIND_FLAGS, WS))


def open_blocks(path: str | os.PathLike[str], frames: Any) -> tuple[Header, ClosingIterator[Any]]:
    """The header and the entries a block at a time, each cut and its frames read by ``frames``
    (a venue's frame reader, its ``LaneTable``) ahead of the caller (by the compiled block
    reader: its twin reads none ahead); close the iterator when done with it (it stops its
    thread)."""
    p, header, stream = open_stream(path)
    mapped = stream.mapped
    if mapped is not None and zstd_library() is not None:  # (then the compiled Inflow is built)
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
            raise undecompressable(path, inflow.entries, f"zstd decompress error: {inflow.error}")
        if inflow.bad:
            raise broken(path, inflow.entries + 1)
        if inflow.cut:
            raise broken(path, inflow.entries + 1, head_cut=inflow.cut < ENTRY_HEAD.size)
        raise StopIteration

    def close(self) -> None:
        self._inflow.close()  # the thread joined and the mapped file let go, before it closes
        self._closing()


def _blocks(path: Path, reader: Decompressed, frames: Any) -> Iterator[Block]:
    """Runs on a Python read-ahead thread: decompressing and reading a block let go of the
    GIL."""
    rest, n = b"", 0
    damage: zstandard.ZstdError | None = None
    while True:
        if damage is not None:
            raise undecompressable(path, n, damage)
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
                raise broken(path, n + 1, head_cut=len(rest) < ENTRY_HEAD.size)
            return
        block = _read_block(frames, rest, more, _KIND_FLAGS, WS)
        if block.count:
            yield Block(block)
        n += block.count
        if block.bad:
            raise broken(path, n + 1)
        rest = block.rest
        del block  # not held while the next is read
