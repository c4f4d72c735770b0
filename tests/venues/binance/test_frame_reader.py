"""The compiled reader of combined frames (csrc/binance.c) against its Python
twin (msgspec's typed decoders): whatever the compiled reader takes, it reads to exactly the
record msgspec reads, and it takes every payload Binance sends as Binance sends it."""

from __future__ import annotations

import json
import os
import random
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketlab.native import COMPILED, compiled
from marketlab.numbers import TIME_MAX_MS, TIME_MIN_MS
from marketlab.records import BookDelta, Kline, Ticker, Trade
from marketlab.venues.binance.frames import (
    LaneTablePython,
    lane_for,
    maker,
    take_combined_python,
)
from marketlab.venues.binance.protocol import parse_stream

LaneTable: Any = compiled("LaneTable")  # None where the compiled part is not in use
take_compiled: Any = compiled("take_combined")
pytestmark = pytest.mark.skipif(
    not COMPILED and os.environ.get("MARKETLAB_PURE_PYTHON", "") not in ("", "0"),
    reason="MARKETLAB_PURE_PYTHON asks for the pure-Python twins",
)

STREAMS = {
    "btcusdt@trade": Trade,
    "btcusdt@depth@100ms": BookDelta,
    "btcusdt@kline_1m": Kline,
    "btcusdt@ticker": Ticker,
    "btcusdt@aggTrade": None,
}

# Numbers as text: Binance's ("0.01000000"), any JSON number, and near misses msgspec refuses
DECIMALS = st.builds(
    lambda v, d: f"{v:.{d}f}", st.floats(0, 1e7, allow_nan=False), st.integers(0, 10)
)
# a trade's or a level's price: Binance's decimals, above 0
PRICES = st.builds(lambda v: f"{v:.8f}", st.floats(1e-8, 1e7, allow_nan=False))
JSON_NUMBERS = st.from_regex(
    r"-?(0|[1-9][0-9]{0,24})(\.[0-9]{1,24})?([eE][+-]?[0-9]{1,3})?", fullmatch=True
)
NEAR_MISSES = st.from_regex(r"[-+0-9.eE]{1,8}", fullmatch=True) | st.sampled_from(
    ["-0", "-0.0", "00.5", "1.", ".5", "+1", "1e400", "0.1e-400", "nan", "Infinity", " 1", ""]
)
NUMBER_TEXT = DECIMALS | JSON_NUMBERS | NEAR_MISSES | st.builds(repr, st.floats(allow_nan=False))
INTS = st.integers(-(2**63), 2**63) | st.integers(0, 2**41)  # any, and past int64 by one
# what Binance sends: ids and counts of int64 not below 0, times in ms within the venues' years
IDS = st.integers(0, 2**63 - 1) | st.integers(0, 2**41)
TIMES = st.integers(TIME_MIN_MS, TIME_MAX_MS)


class _Bare(str):
    """Number text to be written bare (not quoted) in the payload."""


# a number field as a string (as Binance sends them) or as a bare JSON number
FLOAT_VALUE = NUMBER_TEXT | JSON_NUMBERS.map(_Bare)


def _payload_fields(kind: str, d: Any, ids: Any = INTS, times: Any = INTS) -> dict[str, Any]:
    def f() -> Any:
        return d.draw(FLOAT_VALUE)

    def i() -> int:
        return d.draw(ids)

    def t() -> int:
        return d.draw(times)

    if kind == "trade":
        return {
            "e": "trade",
            "E": t(),
            "s": "BTCUSDT",
            "t": i(),
            "p": f(),
            "q": f(),
            "T": t(),
            "m": d.draw(st.booleans()),
            "M": True,
        }
    if kind == "depth":
        levels = st.lists(st.tuples(FLOAT_VALUE, FLOAT_VALUE).map(list), max_size=4)
        return {
            "e": "depthUpdate",
            "E": t(),
            "s": "BTCUSDT",
            "U": i(),
            "u": i(),
            "b": d.draw(levels),
            "a": d.draw(levels),
        }
    if kind == "kline":
        body = {k: f() for k in "ochlvqVQ"} | {
            "t": t(),
            "T": t(),
            "n": i(),
            "s": "BTCUSDT",
            "i": "1m",
            "x": d.draw(st.booleans()),
            "f": 1,
            "L": 2,
            "B": "0",
        }
        return {"e": "kline", "E": t(), "s": "BTCUSDT", "k": body}
    if kind == "ticker":
        return (
            {"e": "24hrTicker", "s": "BTCUSDT"}
            | {k: f() for k in "pPwxcQbBaAohlvq"}
            | {k: t() for k in "EOC"}
            | {k: i() for k in "FLn"}
        )
    return {
        "e": "aggTrade",
        "E": t(),
        "s": "BTCUSDT",
        "a": i(),
        "p": f(),
        "q": f(),
        "f": i(),
        "l": i(),
        "T": t(),
        "m": d.draw(st.booleans()),
    }


def _json(value: Any, rnd: random.Random, loose: bool) -> str:
    """``value`` as JSON; ``loose`` adds what a reader must also take: spaces, any key order."""
    sp = (lambda: rnd.choice(["", " ", "\n "])) if loose else (lambda: "")
    if isinstance(value, _Bare):
        return str(value)
    if isinstance(value, dict):
        items = list(value.items())
        if loose:
            rnd.shuffle(items)
        body = ",".join(
            f"{sp()}{json.dumps(k)}{sp()}:{sp()}{_json(v, rnd, loose)}" for k, v in items
        )
        return "{" + body + sp() + "}"
    if isinstance(value, list):
        return "[" + ",".join(sp() + _json(v, rnd, loose) for v in value) + sp() + "]"
    return json.dumps(value)


def _lanes(out: list[Any], table: Any = None) -> Any:
    """A table of the STREAMS' lanes (the compiled one unless ``table`` says which)."""

    def take(stats: Any, record: Any, source: str) -> None:
        out.append((record, source))

    lanes = (table or LaneTable)(msgspec.DecodeError)
    for n, r in STREAMS.items():
        lanes.add(n.encode(), *lane_for(parse_stream(n), take, None, r))
    return lanes


def _exact(records: list[Any]) -> list[str]:
    """Records down to each float's bits (-0.0 is not 0.0 here)."""
    return [repr(msgspec.structs.astuple(r)) + src for r, src in records]


def _both(frame: bytes) -> tuple[bool, list[Any], bool, list[Any]]:
    c_out: list[Any] = []
    py_out: list[Any] = []
    took_c = take_compiled(_lanes(c_out), frame)
    took_py = take_combined_python(_lanes(py_out, LaneTablePython), frame)
    return took_c, c_out, took_py, py_out


KINDS = st.sampled_from(["trade", "depth", "kline", "ticker", "aggTrade"])
NAME = {
    "trade": "btcusdt@trade",
    "depth": "btcusdt@depth@100ms",
    "kline": "btcusdt@kline_1m",
    "ticker": "btcusdt@ticker",
    "aggTrade": "btcusdt@aggTrade",
}


@settings(max_examples=600, deadline=None)
@given(KINDS, st.data(), st.booleans(), st.randoms(use_true_random=False))
def test_what_the_compiled_reader_takes_it_reads_as_msgspec_does(kind, data, loose, rnd) -> None:
    fields = _payload_fields(kind, data)
    extra = data.draw(st.sampled_from([None, "unknown", "missing", "twice", "escape", "cut"]))
    if extra == "unknown":
        fields["zz"] = {"n": [1, None, True, {"x": "y"}], "s": "a"}
    elif extra == "missing":
        fields.pop(rnd.choice([k for k in fields if k != "e"]))
    payload = _json(fields, rnd, loose)
    if extra == "twice":
        payload = payload[:-1] + ',"E":1}'
    elif extra == "escape":
        payload = payload.replace('"BTCUSDT"', '"BTC\\u0055SDT"', 1)
    elif extra == "cut":
        payload = payload[: rnd.randrange(len(payload))]
    frame = f'{{"stream":"{NAME[kind]}","data":{payload}}}'.encode()
    took_c, c_out, took_py, py_out = _both(frame)
    if took_c:  # whatever the compiled reader takes, msgspec takes too, to the same record
        assert took_py and _exact(c_out) == _exact(py_out), payload
    else:  # what it leaves goes to the careful path: nothing delivered on the way
        assert c_out == []


@settings(max_examples=300, deadline=None)
@given(KINDS, st.data())
def test_the_compiled_reader_takes_every_payload_as_binance_sends_it(kind, data) -> None:
    fields = _payload_fields(kind, data, IDS, TIMES)
    decimals = {"trade": "pq", "aggTrade": "pq", "ticker": "pPwxcQbBaAohlvq", "depth": ""}
    for key in decimals.get(kind, ""):  # Binance's decimals, as strings
        fields[key] = data.draw(PRICES if key == "p" and "rade" in kind else DECIMALS)
    if kind == "kline":
        fields["k"] |= {key: data.draw(DECIMALS) for key in "ochlvqVQ"}
    if kind == "depth":
        for side in "ba":
            fields[side] = [[data.draw(PRICES), data.draw(DECIMALS)] for _ in range(3)]
    payload = json.dumps(fields, separators=(",", ":"))
    took_c, c_out, took_py, py_out = _both(f'{{"stream":"{NAME[kind]}","data":{payload}}}'.encode())
    assert took_c and took_py
    assert _exact(c_out) == _exact(py_out)
    assert c_out[0][0].symbol == "BTCUSDT"


def test_a_symbol_read_is_the_lanes_own_string() -> None:
    out: list[Any] = []
    frame = (
        b'{"stream":"btcusdt@kline_1m","data":{"e":"kline","E":1767225600002,"s":"BTCUSDT",'
        b'"k":{"t":1767225600000,"T":1767225659999,"s":"BTCUSDT","i":"1m","o":"1","c":"2",'
        b'"h":"3","l":"0.5","v":"10","n":4,"x":false,"q":"20","V":"5","Q":"10"}}}'
    )
    lanes = LaneTable(msgspec.DecodeError)
    lane = lane_for(
        parse_stream("btcusdt@kline_1m"), lambda s, r, src: out.append((r, src)), None, Kline
    )
    lanes.add(b"btcusdt@kline_1m", *lane)
    assert take_compiled(lanes, frame)
    kline = out[0][0]
    assert kline == Kline(
        "BTCUSDT",
        "1m",
        1767225600000,
        1.0,
        3.0,
        0.5,
        2.0,
        10.0,
        1767225659999,
        20.0,
        4,
        5.0,
        10.0,
        False,
        1767225600002,
    )
    assert kline.symbol is lane.symbol and kline.interval is lane.interval
    assert type(kline.interval) is str


def test_a_takers_error_reaches_the_caller_and_unknown_streams_are_left() -> None:
    def take(stats: Any, record: Any, source: str) -> None:
        raise RuntimeError("taker broke")

    frame = (
        b'{"stream":"btcusdt@trade","data":{"E":1767225600001,"s":"BTCUSDT","t":5,"p":"1",'
        b'"q":"2","T":1767225600001,"m":true}}'
    )
    for reader, table in ((take_compiled, LaneTable), (take_combined_python, LaneTablePython)):
        lanes = table(msgspec.DecodeError)
        lanes.add(b"btcusdt@trade", *lane_for(parse_stream("btcusdt@trade"), take, None, Trade))
        with pytest.raises(RuntimeError, match="taker broke"):
            reader(lanes, frame)
        assert reader(lanes, frame.replace(b"btcusdt@trade", b"ethusdt@trade")) is False
        assert reader(lanes, '{"stream":"btcusdt@trade","data":{}}') is False  # text: not ours


def test_frames_read_ahead_reach_their_takers_in_the_recordings_order(tmp_path) -> None:
    from marketlab.recording import blocks as rb
    from marketlab.recording import files as rec

    if not COMPILED:
        pytest.skip("this build reads recordings entry by entry")
    rnd = random.Random(5)
    frames = []
    for i in range(3000):
        price = rnd.choice(["100.5", "0.00012000", "12345678901234567.5", "1e3"])  # a slow one
        t = TIME_MIN_MS + i
        payload = {
            "e": "trade",
            "E": t,
            "s": "BTCUSDT",
            "t": i,
            "p": price,
            "q": "1",
            "T": t,
            "m": i % 2 == 0,
        }
        if i % 7 == 0:
            payload.pop("q")  # msgspec's to refuse: the careful path
        name = "btcusdt@trade" if i % 11 else "ethusdt@trade"  # not a lane of ours
        frames.append(f'{{"stream":"{name}","data":{json.dumps(payload)}}}'.encode())
    path = tmp_path / "r.mlrec"
    writer = rec.RecordingWriter(path, rec.Header("binance", ["BTCUSDT"], [], ["trades"], 1))
    for i, frame in enumerate(frames):
        writer.write(rec.WS, i, f"conn-{i % 2}", frame)
        if i % 500 == 0:
            writer.write(rec.SNAPSHOT, i, "BTCUSDT", b"{}")
    writer.close()

    read_ahead = []

    def outcome(entries_or_blocks: str) -> tuple[list[Any], dict[str, int]]:
        out: list[Any] = []
        per_tag: dict[str, int] = {}
        lanes = _lanes(out, LaneTablePython)

        def on_entry(e: Any) -> None:
            if e.kind != rec.WS:
                out.append(("entry", e.kind, e.tag, e.data))
                return
            per_tag[e.tag] = per_tag.get(e.tag, 0) + 1
            if not take_combined_python(lanes, e.data):
                out.append(("careful", e.data))

        if entries_or_blocks == "entries":
            for e in rec.open_recording(path)[1]:
                on_entry(e)
            return out, per_tag
        _, blocks = rb.open_blocks(path, _lanes(out))
        for block in blocks:
            finished = False
            while not finished:
                _n, counts, finished = block.run(
                    300, rec.Entry, {}, on_entry, lambda tag: per_tag.setdefault(tag, 0), None
                )
                for tag, taken in counts:
                    per_tag[tag] += taken
                    read_ahead.append(taken)
        blocks.close()
        return out, per_tag

    (one, tags_one), (two, tags_two) = outcome("entries"), outcome("blocks")

    def records(out: list[Any]) -> list[Any]:  # each record down to its floats' bits
        return [x if isinstance(x[0], str) else _exact([x]) for x in out]

    assert records(one) == records(two)
    assert tags_one == tags_two == {"conn-0": 1500, "conn-1": 1500}
    assert sum(1 for x in one if isinstance(x, tuple) and x[0] == "careful") > 500
    assert sum(read_ahead) > 1000  # most frames were read ahead, not on the collector's thread


def test_a_lane_whose_strings_cannot_be_read_is_refused_when_added() -> None:
    # the compiled reader reads a lane's symbol and interval as UTF-8: a lane that holds
    # something else is the caller's error, raised when it is added, by either table
    lane = lane_for(parse_stream("btcusdt@trade"), lambda *a: None, None, Trade)
    for table in (LaneTable, LaneTablePython):
        lanes = table(msgspec.DecodeError)
        with pytest.raises(TypeError):
            lanes.add(b"btcusdt@trade", *lane._replace(interval=None))
        assert len(lanes) == 0


def test_a_record_class_laid_out_otherwise_is_made_through_an_adapter() -> None:
    # the compiled reader names the values it makes a record of (PAYLOADS); a record class
    # whose fields are those, in that order, is called itself, any other through an adapter
    class Reordered(msgspec.Struct):
        price: float
        symbol: str
        trade_id: int
        qty: float
        side: str
        time: int
        event_time: int

    values = compiled("PAYLOADS")["trade"]
    assert maker(Trade, values) is Trade
    make = maker(Reordered, values)
    assert make is not Reordered
    out: list[Any] = []
    lanes = LaneTable(msgspec.DecodeError)
    take = lambda stats, record, source: out.append(record)  # noqa: E731
    lanes.add(b"btcusdt@trade", *lane_for(parse_stream("btcusdt@trade"), take, None, Reordered))
    frame = (
        b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1767225600000,"s":"BTCUSDT",'
        b'"t":5,"p":"1.5","q":"2","T":1767225600001,"m":true}}'
    )
    assert take_compiled(lanes, frame)
    assert out == [Reordered(1.5, "BTCUSDT", 5, 2.0, "sell", 1767225600001, 1767225600000)]


def test_a_table_read_ahead_takes_no_more_lanes() -> None:
    from marketlab.recording import blocks as rb

    lanes = _lanes([])
    rb.read_block(lanes, b"")
    with pytest.raises(RuntimeError):
        lanes.add(b"x", "", None, print, None, "", "", print, print)
