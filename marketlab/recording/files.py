"""Recordings: what a collector received, in order, to be fed through it again.

A recording is one zstd stream: a magic line, a JSON header (exchange, symbols, intervals,
channels), then one entry per event the collector took in, in the order it took them — raw
WebSocket frames as they came off the socket, and the REST answers (book snapshots, kline
pages, polled tickers and books) as records. Replaying the entries through the same feed code
rebuilds the same frames, books and history, every time.

Writing streams through a bounded buffer; reading streams too. No sockets, no clock reads.
"""

from __future__ import annotations

import functools
import mmap
import os
import struct
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple

import msgspec
import zstandard

from marketlab.native import by_name, compiled, takes_in_order
from marketlab.numbers import DECODE_ERRORS
from marketlab.recording.readahead import ReadAhead
from marketlab.records import BookSnapshot, Kline, Ticker, Trade

MAGIC = b"MLREC1\n"
# Compressed bytes decompressed whole at a time, by every reader: the steps of the compiled
# Inflow, so all name damage at the same entry.
_STEP: int = compiled("ZSTD_STEP", 1 << 17)
_DONTNEED = getattr(mmap, "MADV_DONTNEED", None)  # where the platform can drop read pages
_FIRST_OUT = 1 << 16  # the first read's: the header, and the first entries, come at once
_OUT = 1 << 21  # decompressed bytes a read gives (a block of several thousand entries)
_MAX_HEADER = 1 << 20  # a header line longer than this is no header
# An entry's head: kind, receive time (ns since the epoch), tag length, data length
ENTRY_HEAD = struct.Struct("<BqHI")

WS = 1  # a WebSocket frame; tag: the connection's name
SNAPSHOT = 2  # a REST book snapshot the book was synced from; tag: symbol
KLINES = 3  # a REST kline page; tag: "SYMBOL INTERVAL include_open count_as_backfill"
TICKERS = 4  # polled tickers (REST fallback)
POLLED_BOOK = 5  # a polled book that replaced the local one; tag: "SYMBOL LIMIT"
READY = 6  # start-up fetches done
INVALIDATED = 7  # a book forgotten (its connection dropped or rolled over); tag: symbol, data: why
TRADES = 8  # trades fetched by id to fill a gap; tag: "SYMBOL FIRST LAST"
KINDS = {
    WS: "ws",
    SNAPSHOT: "snapshot",
    KLINES: "klines",
    TICKERS: "tickers",
    POLLED_BOOK: "polled_book",
    READY: "ready",
    INVALIDATED: "invalidated",
    TRADES: "trades",
}


class RecordingError(ValueError):
    """A file that is not a recording, or one cut short; says which and where."""


@dataclass
class Header:
    exchange: str
    symbols: list[str]
    intervals: list[str]
    channels: list[str]
    created_ns: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Entry(NamedTuple):
    """One thing taken in: its kind, when (ns since the epoch), a tag and the bytes."""

    kind: int
    time_ns: int
    tag: str
    data: bytes


# The values the compiled scanner makes an entry of, in the order it hands them over
ENTRY_VALUES: tuple[str, ...] = compiled("ENTRY_VALUES", Entry.__match_args__)


@functools.cache
def entry_maker(entry_type: type[tuple[Any, ...]] = Entry) -> Callable[[tuple[Any, ...]], Any]:
    """What makes an ``entry_type`` of the compiled scanner's values (one tuple, in the order
    of ``ENTRY_VALUES``): the tuple taken as it is where the type's fields (its
    ``__match_args__``) are those, in that order (no Python call in between), else handed over
    by name."""
    if takes_in_order(entry_type, ENTRY_VALUES):
        return functools.partial(tuple.__new__, entry_type)
    make = by_name(entry_type, ENTRY_VALUES)
    return lambda values: make(*values)


def _plain(obj: Any) -> Any:
    if isinstance(obj, str):  # Interval and other str subclasses
        return str(obj)
    raise TypeError(f"cannot record a {type(obj).__name__}")


_encode = msgspec.msgpack.Encoder(enc_hook=_plain).encode
_SNAPSHOT = msgspec.msgpack.Decoder(BookSnapshot)
_KLINES = msgspec.msgpack.Decoder(list[Kline])
_TICKERS = msgspec.msgpack.Decoder(list[Ticker])
_TRADES = msgspec.msgpack.Decoder(list[Trade])


def encode_records(value: Any) -> bytes:
    return _encode(value)


def _decoded(decoder: msgspec.msgpack.Decoder[Any], data: bytes, what: str) -> Any:
    """``data`` as ``decoder`` reads it; :class:`RecordingError` naming ``what`` when the bytes
    are not what a writer wrote (damage, or nesting deeper than the decoder goes)."""
    try:
        return decoder.decode(data)
    except DECODE_ERRORS as exc:
        raise RecordingError(f"a recorded {what} that does not decode ({exc})") from None


def decode_snapshot(data: bytes) -> BookSnapshot:
    return _decoded(_SNAPSHOT, data, "book snapshot")


def decode_klines(data: bytes) -> list[Kline]:
    return _decoded(_KLINES, data, "list of klines")


def decode_trades(data: bytes) -> list[Trade]:
    return _decoded(_TRADES, data, "list of trades")


def decode_tickers(data: bytes) -> list[Ticker]:
    return _decoded(_TICKERS, data, "list of tickers")


class RecordingWriter:
    """Appends entries to a zstd-compressed recording.

    Memory stays bounded: entries are compressed as they come and the compressor's output goes
    to the file whenever ``flush_bytes`` of input have gone in (and on :meth:`flush`).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        header: Header,
        level: int = 3,
        flush_bytes: int = 1 << 20,
    ):
        self.path = Path(path)
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self._zstd = zstandard.ZstdCompressor(level=level).stream_writer(self._file, closefd=False)
        self._flush_bytes = flush_bytes
        self._pending = 0
        self.entries = 0
        self.raw_bytes = 0
        self._zstd.write(MAGIC + msgspec.json.encode(header) + b"\n")

    def write(self, kind: int, time_ns: int, tag: str, data: bytes) -> None:
        t = tag.encode()
        self._zstd.write(ENTRY_HEAD.pack(kind, time_ns, len(t), len(data)))
        self._zstd.write(t)
        self._zstd.write(data)
        size = ENTRY_HEAD.size + len(t) + len(data)
        self.entries += 1
        self.raw_bytes += size
        self._pending += size
        if self._pending >= self._flush_bytes:
            self.flush()

    def flush(self) -> None:
        self._zstd.flush(zstandard.FLUSH_BLOCK)
        self._file.flush()
        self._pending = 0

    def tap(self, kind: int, tag: str, data: bytes) -> None:
        """What a feed calls for everything it takes in (stamped with the time now)."""
        self.write(kind, time.time_ns(), tag, data)

    def close(self) -> None:
        if self._file.closed:
            return
        self._zstd.close()
        self._file.close()

    @property
    def file_bytes(self) -> int:
        return self.path.stat().st_size


def open_recording(path: str | os.PathLike[str]) -> tuple[Header, Generator[Entry, None, None]]:
    """The header and a lazy iterator over the entries (streamed, bounded memory)."""
    p, header, reader = open_stream(path)
    blocks = ReadAhead(iter(reader.read, b""), reader.close, depth=4)
    return header, _entries(p, blocks)


def open_stream(path: str | os.PathLike[str]) -> tuple[Path, Header, Decompressed]:
    p = Path(path)
    if not p.is_file():
        raise RecordingError(f"{p}: no such recording")
    with open(p, "rb") as f:
        try:
            raw: Any = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file cannot be mapped
            raw = None
    stream = Decompressed(raw)
    try:
        if stream.head(len(MAGIC)) != MAGIC:
            raise RecordingError(f"{p}: not a marketlab recording")
        try:
            header = msgspec.json.decode(stream.line(_MAX_HEADER), type=Header)
        except DECODE_ERRORS as exc:
            raise RecordingError(f"{p}: bad header ({exc})") from None
    except zstandard.ZstdError as exc:
        stream.close()
        raise RecordingError(f"{p}: not a marketlab recording ({exc})") from None
    except RecordingError:
        stream.close()
        raise
    return p, header, stream


class _Mapped:
    """The compressed file, mapped: a read copies its pages and never lets go of the GIL to
    wait for the disk (the read-ahead thread would then wait its turn to take it back)."""

    def __init__(self, raw: mmap.mmap | None):
        self.raw = raw
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        if self.raw is None:
            return b""
        start = self._pos
        out = self.raw[start:] if n < 0 else self.raw[start : start + n]
        self._pos += len(out)
        page = start - start % mmap.PAGESIZE  # read once: out of this process's memory
        if _DONTNEED is not None and self._pos > page:
            self.raw.madvise(_DONTNEED, page, self._pos - page)
        return out

    def close(self) -> None:
        if self.raw is not None:
            self.raw.close()


def _no_zstd_library() -> None:
    """The twin of the compiled ``zstd_load``: pure Python loads no library (python-zstandard
    brings its own)."""
    return None


# The system's libzstd, loaded by the compiled part (by the twin: never, and so where the
# compiled part is not in use every reader decompresses with python-zstandard)
_zstd_load: Callable[[], str | None] = compiled("zstd_load", _no_zstd_library)


@functools.cache
def zstd_library() -> str | None:
    """The system's libzstd (by soname), loaded by the compiled part (None where it is not
    there, or the compiled part is not in use): with it, every reader of a recording
    decompresses through it, in the same steps, and a replay's blocks are made by a thread
    that runs no Python."""
    return _zstd_load()


_STEP_OUT_MAX: int = compiled("ZSTD_STEP_OUT_MAX", 1 << 28)
_TOO_LARGE = f"a step of the compressed stream decompresses to more than {_STEP_OUT_MAX} bytes"


class StepwisePython:
    """python-zstandard's decompressor, taken in the steps the compiled one takes (where the
    system's libzstd is not loaded): a step is decompressed whole or raises, a step that gives
    more than ``_STEP_OUT_MAX`` bytes is damage (or a bomb: it is fed a little at a time, so
    it never holds much more), and bytes after the frame's end are told by ``after``."""

    _FEED = 1 << 12

    def __init__(self) -> None:
        self._d = zstandard.ZstdDecompressor().decompressobj()
        self.after = False

    def step(self, chunk: bytes) -> bytes:
        if self._d.eof:
            self.after = self.after or bool(chunk)
            return b""
        parts, size = [], 0
        for at in range(0, len(chunk), self._FEED):
            parts.append(self._d.decompress(chunk[at : at + self._FEED]))
            size += len(parts[-1])
            if size > _STEP_OUT_MAX:
                raise zstandard.ZstdError(f"zstd decompress error: {_TOO_LARGE}")
            if self._d.eof:
                self.after = bool(self._d.unused_data) or at + self._FEED < len(chunk)
                break
        return b"".join(parts)


# The compiled decompressor; its twin, python-zstandard's taken in the same steps
Unzstd: type[StepwisePython] = compiled("Unzstd", StepwisePython)


def _decompressor() -> StepwisePython:
    """One decompressor for every reader in this process (see :func:`zstd_library`). Not a
    choice between compiled and Python (``Unzstd`` is that): the compiled decompressor works
    only where the system's libzstd was loaded, which is known when it is first asked for."""
    return Unzstd() if zstd_library() is not None else StepwisePython()


class Decompressed:
    """A recording's bytes, decompressed ``_STEP`` compressed bytes at a time, each step whole
    or not at all (as the compiled Inflow does): what decompressed before damage is given,
    then the damage is raised (``zstandard.ZstdError``) at the next read. Each step lets go of
    the GIL once (a buffered reader's small reads took it back hundreds of times a block, and
    each time the read-ahead thread waited its turn behind the collector's thread)."""

    def __init__(self, raw: mmap.mmap | None):
        self._raw = _Mapped(raw)
        self._unzstd = _decompressor()
        self._damage: str | None = None
        self._pending = b""
        self._taken = 0
        self._size = _FIRST_OUT  # doubled each read up to _OUT: the first entries come at once

    def _more(self, n: int) -> bytes:
        """At least ``n`` more decompressed bytes, fewer at the end or before damage; the
        damage is raised once nothing comes before it."""
        parts: list[bytes] = []
        have = 0
        while have < n and self._damage is None:
            chunk = self._raw.read(_STEP)
            if not chunk:
                break
            try:
                out = self._unzstd.step(chunk)
            except (zstandard.ZstdError, ValueError) as exc:
                message = str(exc)
                self._damage = message if "zstd" in message else f"zstd decompress error: {message}"
                break
            if self._unzstd.after:
                self._damage = "zstd decompress error: bytes after the end of the compressed stream"
            if out:  # (an empty step is no end: the file's end is)
                parts.append(out)
                have += len(out)
        if not parts and self._damage is not None:
            raise zstandard.ZstdError(self._damage)
        return b"".join(parts)

    def head(self, n: int) -> bytes:
        """The first ``n`` bytes (fewer if the stream is shorter)."""
        while len(self._pending) < n and (more := self._more(n - len(self._pending))):
            self._pending += more
        out, self._pending = self._pending[:n], self._pending[n:]
        self._taken += len(out)
        return out

    def line(self, limit: int) -> bytes:
        """Up to the first newline, within ``limit`` bytes."""
        while b"\n" not in self._pending and len(self._pending) < limit:
            more = self._more(_FIRST_OUT)
            if not more:
                break
            self._pending += more
        end = self._pending.find(b"\n", 0, limit)
        end = limit if end < 0 else end + 1
        out, self._pending = self._pending[:end], self._pending[end:]
        self._taken += len(out)
        return out

    def consumed(self) -> int:
        """Decompressed bytes taken so far (by :meth:`head` and :meth:`line`)."""
        return self._taken

    @property
    def mapped(self) -> mmap.mmap | None:
        """The compressed file, mapped (None when it is empty)."""
        return self._raw.raw

    def read(self) -> bytes:
        """The next decompressed piece; ``b""`` at the end."""
        if self._pending:
            out, self._pending = self._pending, b""
            return out
        out = self._more(self._size)
        self._size = min(2 * self._size, _OUT)
        return out

    def close(self) -> None:
        self._raw.close()


def scan_entries_python(
    make: Callable[[tuple[Any, ...]], Any],
    buf: bytes,
    pos: int,
    kinds: frozenset[int],
    tags: dict[bytes, str],
) -> tuple[list[Any], int, bool]:
    """The twin of the compiled ``scan_entries``: the whole entries of ``buf`` from ``pos``, up
    to the first one not wholly in it, each as ``make((kind, time_ns, tag, data))``; ``(entries,
    pos after them, bad)``, ``bad`` when scanning stopped before an entry whose kind is not in
    ``kinds`` or whose tag is not UTF-8 (the caller names the damage). ``tags`` caches decoded
    tags."""
    head_size, unpack, size = ENTRY_HEAD.size, ENTRY_HEAD.unpack_from, len(buf)
    out: list[Any] = []
    while size - pos >= head_size:
        kind, time_ns, tag_len, data_len = unpack(buf, pos)
        start = pos + head_size
        end = start + tag_len + data_len
        if end > size:
            break
        if kind not in kinds:
            return out, pos, True
        raw_tag = buf[start : start + tag_len]
        tag = tags.get(raw_tag)
        if tag is None:
            try:
                tag = raw_tag.decode()
            except UnicodeDecodeError:  # no writer wrote it: damage
                return out, pos, True
            if len(tags) < 4096:
                tags[raw_tag] = tag
        out.append(make((kind, time_ns, tag, buf[start + tag_len : end])))
        pos = end
    return out, pos, False


# The compiled entry scanner, or its twin (a test may swap one for the other)
scan_entries: Callable[
    [Callable[[tuple[Any, ...]], Any], bytes, int, frozenset[int], dict[bytes, str]],
    tuple[list[Any], int, bool],
] = compiled("scan_entries", scan_entries_python)


def _entries(path: Path, reader: ReadAhead) -> Generator[Entry, None, None]:
    """A block's entries cut out at once by the entry scanner (two small reads per entry would
    cost more than the rest of a replay's work on it); tags repeat, so each is decoded once."""
    scan, head_size, unpack = scan_entries, ENTRY_HEAD.size, ENTRY_HEAD.unpack_from
    make, kinds = entry_maker(Entry), frozenset(KINDS)
    tags: dict[bytes, str] = {}
    buf, pos, n = b"", 0, 0
    try:
        while True:
            batch, pos, bad = scan(make, buf, pos, kinds, tags)
            n += len(batch)
            yield from batch
            if bad:
                raise broken(path, n + 1)
            left = len(buf) - pos
            need = head_size
            if left >= head_size:
                _kind, _time, tag_len, data_len = unpack(buf, pos)
                need += tag_len + data_len
            buf, pos = _refill(path, reader, buf, pos, need, n)
            if len(buf) == 0:
                return
            if len(buf) < need:
                raise broken(path, n + 1, head_cut=need == head_size)
    finally:
        reader.close()


def broken(path: Path, entry: int, head_cut: bool = False) -> RecordingError:
    """A recording that ends, or breaks, in ``entry`` (counted from 1), named alike by every
    reader; ``head_cut``: it ends before the entry's head does."""
    what = "cut short" if head_cut else "cut short or damaged"
    return RecordingError(f"{path}: {what} in entry {entry}")


def undecompressable(path: Path, entries: int, exc: object) -> RecordingError:
    return RecordingError(f"{path}: damaged after entry {entries} ({exc})")


def _refill(
    path: Path, reader: ReadAhead, buf: bytes, pos: int, need: int, n: int
) -> tuple[bytes, int]:
    """What is left of ``buf`` from ``pos`` plus the next block: at least ``need`` bytes
    unless the file ends first."""
    parts = [buf[pos:]]
    have = len(parts[0])
    try:
        while True:  # blocks of any size: as many as it takes
            more = next(reader, b"")
            parts.append(more)
            have += len(more)
            if not more or have >= need:
                break
    except zstandard.ZstdError as exc:
        raise undecompressable(path, n, exc) from None
    return b"".join(parts), 0
