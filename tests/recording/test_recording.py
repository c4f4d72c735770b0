"""The recording file itself: entries of any size read back exactly, a cut file says where."""

from __future__ import annotations

import os
import random
import threading

import pytest
import zstandard

from marketlab.native import COMPILED, compiled
from marketlab.recording import blocks as blocks_module
from marketlab.recording import files as recording
from marketlab.recording.files import (
    SNAPSHOT,
    WS,
    Header,
    RecordingError,
    RecordingWriter,
    open_recording,
)


@pytest.fixture(autouse=True, params=["compiled", "python", "blocks", "blocks-python-thread"])
def scanner(request, monkeypatch):
    """Every test reads with the compiled entry scanner, with its pure-Python twin, and a block
    at a time read ahead (as a replay reads): by the thread that runs no Python (libzstd is
    loaded on every machine we build on) and by a Python thread (where it is not)."""
    if request.param == "python":
        monkeypatch.setattr(recording, "scan_entries", recording.scan_entries_python)
    elif not COMPILED:
        pytest.skip("the compiled core is not built (MARKETLAB_PURE_PYTHON)")
    elif request.param == "blocks":
        assert blocks_module.zstd_library() is not None
    elif request.param == "blocks-python-thread":
        monkeypatch.setattr(blocks_module, "zstd_library", lambda: None)
    return request.param


def read_all(path, scanner: str):
    if not scanner.startswith("blocks"):
        return open_recording(path)[1]
    no_lanes = compiled("LaneTable")(ValueError)
    _, blocks = blocks_module.open_blocks(path, no_lanes)  # no frame read

    def entries():
        try:
            for block in blocks:  # what a block holds, then what broke after it
                got: list = []
                finished = False
                while not finished:
                    _n, counts, finished = block.run(
                        7, recording.Entry, {}, got.append, lambda tag: None, None
                    )
                    assert counts == []
                yield from got
        finally:
            blocks.close()

    return entries()


def write(path, entries) -> None:
    writer = RecordingWriter(path, Header("binance", ["BTCUSDT"], ["1m"], ["trades"], 1))
    for kind, time_ns, tag, data in entries:
        writer.write(kind, time_ns, tag, data)
    writer.close()


def some_entries(n: int, seed: int = 1) -> list[tuple[int, int, str, bytes]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        size = rng.choice([0, 1, 50, 400, 70_000])
        out.append(
            (
                rng.choice([WS, SNAPSHOT]),
                10**18 + i,
                rng.choice(["binance-1", "BTCUSDT", ""]),
                rng.randbytes(size),
            )
        )
    out.insert(n // 2, (WS, 7, "big", rng.randbytes(3 << 20)))  # larger than a read block
    return out


def test_entries_of_every_size_read_back_exactly(tmp_path, scanner):
    path = tmp_path / "r.mlrec"
    entries = some_entries(400)
    write(path, entries)
    read = read_all(path, scanner)
    assert [tuple(e) for e in read] == entries


def test_a_cut_recording_gives_every_whole_entry_then_says_where_it_ends(tmp_path, scanner):
    path, cut = tmp_path / "r.mlrec", tmp_path / "cut.mlrec"
    entries = some_entries(60, seed=2)
    write(path, entries)
    raw = zstandard.ZstdDecompressor().stream_reader(path.read_bytes()).read()
    cut.write_bytes(zstandard.ZstdCompressor().compress(raw[: len(raw) - 10]))  # mid last entry
    read = read_all(cut, scanner)
    got = []
    with pytest.raises(RecordingError, match=f"cut short or damaged in entry {len(entries)}"):
        for e in read:
            got.append(tuple(e))
    assert got == entries[:-1]


def test_an_entry_of_no_known_kind_is_named_as_damage(tmp_path, scanner):
    path, bad = tmp_path / "r.mlrec", tmp_path / "bad.mlrec"
    entries = some_entries(30, seed=3)
    write(path, entries)
    raw = bytearray(zstandard.ZstdDecompressor().stream_reader(path.read_bytes()).read())
    pos = raw.index(b"\n", len(recording.MAGIC)) + 1  # after the header line: entry 1's kind
    for _kind, _t, tag, data in entries[:10]:  # to entry 11
        pos += 15 + len(tag.encode()) + len(data)
    raw[pos] = 200
    bad.write_bytes(zstandard.ZstdCompressor().compress(bytes(raw)))
    read = read_all(bad, scanner)
    got = []
    with pytest.raises(RecordingError, match="damaged in entry 11"):
        for e in read:
            got.append(tuple(e))
    assert got == entries[:10]


def _os_thread_named(name: str) -> set[int]:
    found = set()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                if f.read().strip() == name:
                    found.add(int(tid))
        except FileNotFoundError:  # ended meanwhile
            pass
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="threads named in /proc")
def test_a_recording_left_part_read_stops_its_read_ahead_thread(tmp_path, scanner):
    def threads() -> set[int]:  # a Python read-ahead thread, or the one that runs no Python
        python = {t.native_id for t in threading.enumerate() if t.name == "marketlab-readahead"}
        return python | _os_thread_named("ml-readahead")

    path = tmp_path / "r.mlrec"
    write(path, some_entries(300, seed=4))
    before = threads()
    read = read_all(path, scanner)
    next(read)  # the read-ahead thread runs from the first entry on
    assert len(threads() - before) == 1
    read.close()  # type: ignore[attr-defined]
    assert threads() <= before


def test_a_recording_whose_file_was_cut_gives_what_it_holds_then_says_where(tmp_path, scanner):
    # the writer killed mid-file: its compressed bytes end inside the stream
    path, cut = tmp_path / "r.mlrec", tmp_path / "cut.mlrec"
    entries = some_entries(200, seed=9)
    write(path, entries)
    raw = path.read_bytes()
    cut.write_bytes(raw[: len(raw) * 2 // 3])
    got = []
    with pytest.raises(RecordingError, match=r"cut short or damaged in entry \d+"):
        for e in read_all(cut, scanner):
            got.append(tuple(e))
    assert 0 < len(got) < len(entries) and got == entries[: len(got)]


def test_damage_past_the_entries_is_named_after_every_whole_entry(tmp_path, scanner):
    # bytes after the compressed stream that are no zstd frame: every entry before them is
    # given, then the damage is named after the last one
    path = tmp_path / "r.mlrec"
    entries = some_entries(200, seed=9)
    write(path, entries)
    path.write_bytes(path.read_bytes() + b"not a zstd frame, not at all")
    got = []
    with pytest.raises(RecordingError, match=f"damaged after entry {len(entries)} "):
        for e in read_all(path, scanner):
            got.append(tuple(e))
    assert got == entries


def test_an_entry_type_in_another_field_order_gets_each_value_by_name():
    """The scanner hands values in its own declared order; a type that takes them in another
    order is given each by name, never by position."""
    from typing import NamedTuple

    class Reordered(NamedTuple):
        data: bytes
        tag: str
        time_ns: int
        kind: int

    by_position = dict(zip(recording.ENTRY_VALUES, (3, 17, "ws:0", b"{}"), strict=True))
    made = recording.entry_maker(Reordered)(tuple(by_position.values()))
    assert made == Reordered(data=b"{}", tag="ws:0", time_ns=17, kind=3)
    plain = recording.entry_maker(recording.Entry)((3, 17, "ws:0", b"{}"))
    assert type(plain) is recording.Entry and plain == (3, 17, "ws:0", b"{}")
