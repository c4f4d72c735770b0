"""Recordings, damaged as files people share and writers killed mid-way leave them: all four
readers — the compiled entry scanner, its Python twin, and blocks read ahead by the thread
that runs no Python and by a Python thread — give the same entries, then name the same damage
in the same words, and a replay's clock is told of exactly the entries given."""

from __future__ import annotations

import contextlib
import random
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import msgspec
import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from marketlab.native import COMPILED, compiled
from marketlab.recording import blocks as blocks_module
from marketlab.recording import files as recording
from marketlab.recording.files import MAGIC, Header, RecordingError
from tests.fuzzing import fuzz, mutated

READERS = ["compiled", "python", "blocks", "blocks-python-thread"] if COMPILED else ["python"]
HEAD = struct.Struct("<BqHI")


def _plain(entries: list[tuple[int, int, bytes, bytes]]) -> tuple[bytes, int]:
    """A recording's decompressed bytes, and where its first entry starts."""
    header = MAGIC + msgspec.json.encode(Header("binance", ["BTCUSDT"], [], ["trades"], 1)) + b"\n"
    body = b"".join(HEAD.pack(k, t, len(tag), len(d)) + tag + d for k, t, tag, d in entries)
    return header + body, len(header)


@contextlib.contextmanager
def _reader(name: str) -> Iterator[None]:
    if name == "python":
        with mock.patch.object(recording, "scan_entries", recording.scan_entries_python):
            yield
    elif name == "blocks-python-thread":
        with mock.patch.object(blocks_module, "zstd_library", lambda: None):
            yield
    else:
        yield


def read(path: Path, name: str) -> tuple[list[tuple[Any, ...]], str | None, int]:
    """(entries given, the damage named or None, times a replay's clock was told)."""
    got: list[tuple[Any, ...]] = []
    ticks = 0

    def clock(_t: int) -> None:
        nonlocal ticks
        ticks += 1

    with _reader(name):
        try:
            if not name.startswith("blocks"):
                for e in recording.open_recording(path)[1]:
                    got.append(tuple(e))
                    ticks += 1
            else:
                _, blocks = blocks_module.open_blocks(path, compiled("LaneTable")(ValueError))
                try:
                    for block in blocks:
                        finished = False
                        while not finished:
                            _n, _counts, finished = block.run(
                                5,
                                recording.Entry,
                                {},
                                lambda e: got.append(tuple(e)),
                                lambda tag: None,
                                clock,
                            )
                finally:
                    blocks.close()
        except RecordingError as exc:
            return got, str(exc), ticks
    return got, None, ticks


def _all_alike(
    path: Path, readers: list[str] = READERS
) -> tuple[list[tuple[Any, ...]], str | None]:
    first = read(path, readers[0])
    for name in readers:
        got, damage, ticks = read(path, name)
        assert (got, damage) == first[:2], name
        assert ticks == len(got), name
    return first[:2]


ENTRY = st.tuples(
    st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8]),
    st.integers(0, 2**62),
    st.sampled_from([b"binance-1", b"BTCUSDT", b"", "é".encode()]),
    st.binary(max_size=300),
)


@fuzz(0.5)
@given(st.lists(ENTRY, min_size=1, max_size=30), st.data())
def test_damaged_entries_are_named_alike_by_every_reader(tmp_path_factory, entries, data):
    raw, start = _plain(entries)
    damaged = raw[:start] + data.draw(mutated(raw[start:], max_edits=3))
    path = tmp_path_factory.mktemp("rec") / "r.mlrec"
    path.write_bytes(zstandard.ZstdCompressor().compress(damaged))
    got, damage = _all_alike(path)
    want, want_damage = _entries_of(damaged[start:])
    assert [(e[0], e[1], e[2].encode(), e[3]) for e in got] == want
    assert damage == want_damage or (damage is not None and damage.endswith(str(want_damage)))


@fuzz(0.5)
@given(st.lists(ENTRY, min_size=1, max_size=5), st.data())
def test_a_damaged_magic_or_header_is_named_alike_by_every_reader(tmp_path_factory, entries, data):
    raw, start = _plain(entries)
    damaged = data.draw(mutated(raw[:start], max_edits=2)) + raw[start:]
    path = tmp_path_factory.mktemp("rec") / "r.mlrec"
    path.write_bytes(zstandard.ZstdCompressor().compress(damaged))
    _all_alike(path)  # (a header that still reads may take an entry's bytes for its own)


def _entries_of(body: bytes) -> tuple[list[tuple[int, int, bytes, bytes]], str | None]:
    """The format read by hand (recording/files.py's docstring): whole entries of a known kind with
    a UTF-8 tag, then what ends the file early."""
    out: list[tuple[int, int, bytes, bytes]] = []
    pos = 0
    while pos < len(body):
        if len(body) - pos < HEAD.size:
            return out, f"cut short in entry {len(out) + 1}"
        kind, t, tag_len, data_len = HEAD.unpack_from(body, pos)
        end = pos + HEAD.size + tag_len + data_len
        tag = body[pos + HEAD.size : pos + HEAD.size + tag_len]
        try:
            tag.decode()
        except UnicodeDecodeError:
            end = -1
        if end > len(body) or end < 0 or kind not in recording.KINDS:
            return out, f"cut short or damaged in entry {len(out) + 1}"
        out.append((kind, t, tag, body[pos + HEAD.size + tag_len : end]))
        pos = end
    return out, None


def _with(entries: list[tuple[int, int, bytes, bytes]], path: Path) -> Path:
    raw, _ = _plain(entries)
    path.write_bytes(zstandard.ZstdCompressor().compress(raw))
    return path


def test_a_tag_that_is_not_utf8_is_damage_named_after_the_entries_before_it(tmp_path):
    good = [(1, i, b"conn", b"x" * (i % 7)) for i in range(1000)]
    got, damage = _all_alike(_with([*good, (1, 5, b"\xff\xfe", b"y"), *good], tmp_path / "r"))
    assert len(got) == 1000 and damage is not None and "damaged in entry 1001" in damage


def test_a_damaged_length_costs_no_more_than_reading_the_rest(tmp_path):
    # an entry head whose length says 4 GiB, then 200 MB of entries: each reader reads the rest
    # once, as the entry readers do (the block readers once copied the growing remainder again
    # for every 2 MB piece: 36 times the entry readers' time here)
    good = [(1, i, b"conn", bytes(1000)) for i in range(200_000)]
    head = HEAD.pack(1, 7, 4, 0xFFFFFFFF) + b"conn"
    raw, _ = _plain(good[:10])
    rest, _ = _plain(good)
    path = tmp_path / "r.mlrec"
    path.write_bytes(zstandard.ZstdCompressor().compress(raw + head + rest))
    spent = {}
    for name in READERS:
        began = time.process_time()
        got, damage, _ticks = read(path, name)
        spent[name] = time.process_time() - began
        assert len(got) == 10 and damage is not None and "cut short" in damage, name
    for name in READERS:  # the same order of work: a margin of 8 for a shared machine
        assert spent[name] < 8 * spent[READERS[0]] + 1.0, spent


@fuzz(0.05)
@given(st.floats(0.0, 1.0), st.integers(0, 7))
def test_a_flipped_bit_of_the_compressed_file_is_named_alike(tmp_path_factory, at, bit):
    # as the writer writes: one zstd stream, a block flushed every megabyte
    path = tmp_path_factory.mktemp("rec") / "r.mlrec"
    source = tmp_path_factory.getbasetemp() / "flipped-source.mlrec"  # pytest's, cleared
    if not source.exists():
        rnd = random.Random(3)
        writer = recording.RecordingWriter(source, Header("binance", [], [], [], 1))
        for i in range(6000):
            writer.write(1, i, "conn", rnd.randbytes(rnd.randrange(900)) + b"x" * 300)
        writer.close()
    blob = bytearray(source.read_bytes())
    blob[min(int(len(blob) * at), len(blob) - 1)] ^= 1 << bit
    path.write_bytes(bytes(blob))
    _all_alike(path)


def _ending_at(target: int, path: Path) -> list[tuple[int, int, bytes, bytes]]:
    """Entries of random bytes whose recording, as the writer writes it, is ``target``
    compressed bytes long (random bytes do not compress: the size is found in a few tries)."""
    rnd = random.Random(target)
    size = target
    for _ in range(40):
        entries = [(1, 1, b"conn", rnd.randbytes(size))]
        writer = recording.RecordingWriter(path, Header("binance", [], [], [], 1))
        for e in entries:
            writer.write(e[0], e[1], e[2].decode(), e[3])
        writer.close()
        have = path.stat().st_size
        if have == target:
            return entries
        size -= have - target if abs(have - target) > 1 else rnd.choice([-1, 1])
    raise AssertionError(f"no recording of {target} bytes")


@pytest.mark.parametrize("decompressor", ["libzstd", "python-zstandard"])
@pytest.mark.parametrize("steps", [1, 2])
def test_bytes_after_a_frame_ending_at_a_step_are_damage_for_every_reader(
    tmp_path, steps, decompressor
):
    # the damage comes in a step of its own, which gives no bytes: still damage, not the end
    path = tmp_path / "r.mlrec"
    entries = _ending_at(steps * recording._STEP, path)
    path.write_bytes(path.read_bytes() + b"GARBAGE")
    readers = READERS
    with contextlib.ExitStack() as stack:
        if decompressor == "python-zstandard":  # where the system's libzstd is not there
            stack.enter_context(
                mock.patch.object(recording, "_decompressor", recording.StepwisePython)
            )
            readers = [r for r in READERS if r != "blocks"]  # (Inflow needs libzstd)
        elif recording.zstd_library() is None:
            pytest.skip("no libzstd on this machine")
        got, damage = _all_alike(path, readers)
    assert [e[3] for e in got] == [e[3] for e in entries]
    assert damage is not None and "bytes after the end of the compressed stream" in damage


def test_a_step_that_decompresses_past_its_bound_is_damage_for_every_reader(tmp_path):
    # a bomb: 300 MB of one byte in a few kilobytes; no reader holds it whole
    path = tmp_path / "r.mlrec"
    bomb = (1, 1, b"conn", bytes(300 * 2**20))
    raw, _ = _plain([(1, 0, b"conn", b"before"), bomb])
    path.write_bytes(zstandard.ZstdCompressor().compress(raw))
    got, damage = _all_alike(path)
    assert got == [(1, 0, "conn", b"before")] or got == []
    assert damage is not None and "decompresses to more than" in damage
