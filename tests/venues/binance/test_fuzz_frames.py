"""Binance frames, compiled and pure Python side by side: the compiled reader (the compiled
``take_combined``) and its Python twin (``take_combined_python``), each followed by the
careful decoder for what it leaves, must end every frame alike — the same records to the bit,
or both a bad frame — and no record may break the numbers' rules, whatever the frame holds."""

from __future__ import annotations

import math
from typing import Any

import msgspec
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from marketlab.native import COMPILED, compiled
from marketlab.records import BookDelta, Kline, Ticker, Trade
from marketlab.venues.binance.frames import (
    LaneTablePython,
    StreamDecoder,
    lane_for,
    take_combined_python,
)
from marketlab.venues.binance.protocol import parse_stream
from marketlab.venues.errors import FrameError
from tests.fuzzing import fuzz, mutated

pytestmark = pytest.mark.skipif(not COMPILED, reason="the compiled reader is not built")
LaneTable: Any = compiled("LaneTable")
take_compiled: Any = compiled("take_combined")

STREAMS = {
    "btcusdt@trade": Trade,
    "btcusdt@depth@100ms": BookDelta,
    "btcusdt@kline_1m": Kline,
    "btcusdt@ticker": Ticker,
    "btcusdt@aggTrade": None,
    "btcusdt@bookTicker": None,
}
T0 = 1_767_225_600_000

# hostile numbers, as text: not numbers, not finite, negative, past int64, far from any clock
HOSTILE = [
    "nan",
    "NaN",
    "inf",
    "-inf",
    "Infinity",
    "1e400",
    "-1",
    "-0",
    "-0.0",
    "-1e-300",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551616",
    "0",
    "1",
    "1262303999999",
    "4102444800001",
    "1.5",
    "1e3",
    "0x10",
    "",
    " 1",
]


def _good(kind: str, r: Any) -> dict[str, Any]:
    """A payload as Binance sends it, its numbers drawn by ``r``."""

    def px() -> str:
        return f"{r.uniform(0, 1e5):.8f}"

    def t() -> int:
        return T0 + r.randrange(10**9)

    if kind == "trade":
        return {
            "e": "trade",
            "E": t(),
            "s": "BTCUSDT",
            "t": r.randrange(2**40),
            "p": px(),
            "q": px(),
            "T": t(),
            "m": r.random() < 0.5,
            "M": True,
        }
    if kind == "depth":
        levels = [[px(), px()] for _ in range(r.randrange(4))]
        return {
            "e": "depthUpdate",
            "E": t(),
            "s": "BTCUSDT",
            "U": 5,
            "u": 9,
            "b": levels,
            "a": [[px(), "0.00000000"]],
        }
    if kind == "kline":
        body = {k: px() for k in "ochlvqVQ"} | {
            "t": t(),
            "T": t(),
            "n": r.randrange(99),
            "s": "BTCUSDT",
            "i": "1m",
            "x": False,
            "f": 1,
            "L": 2,
            "B": "0",
        }
        return {"e": "kline", "E": t(), "s": "BTCUSDT", "k": body}
    if kind == "ticker":
        return (
            {"e": "24hrTicker", "s": "BTCUSDT"}
            | {k: px() for k in "pPwxcQbBaAohlvq"}
            | {"E": t(), "O": t(), "C": t(), "F": -1, "L": -1, "n": 0}
        )
    if kind == "bookTicker":
        return {"u": 400900217, "s": "BTCUSDT", "b": px(), "B": px(), "a": px(), "A": px()}
    return {
        "e": "aggTrade",
        "E": t(),
        "s": "BTCUSDT",
        "a": 12,
        "p": px(),
        "q": px(),
        "f": 100,
        "l": 105,
        "T": t(),
        "m": True,
    }


NAME = {
    "trade": "btcusdt@trade",
    "depth": "btcusdt@depth@100ms",
    "kline": "btcusdt@kline_1m",
    "ticker": "btcusdt@ticker",
    "aggTrade": "btcusdt@aggTrade",
    "bookTicker": "btcusdt@bookTicker",
}
KINDS = st.sampled_from(sorted(NAME))


def _frame(kind: str, payload: dict[str, Any]) -> bytes:
    return b'{"stream":"' + NAME[kind].encode() + b'","data":' + msgspec.json.encode(payload) + b"}"


def _lanes(out: list[Any], table: Any = None) -> Any:
    """A table of the STREAMS' lanes (the compiled one unless ``table`` says which)."""

    def take(stats: Any, record: Any, source: str) -> None:
        out.append(record)

    lanes = (table or LaneTable)(msgspec.DecodeError)
    for n, r in STREAMS.items():
        lanes.add(n.encode(), *lane_for(parse_stream(n), take, None, r))
    return lanes


def _exact(record: Any) -> str:
    """A record down to its floats' bits (-0.0 is not 0.0, each NaN shows)."""
    return type(record).__name__ + repr(
        [v.hex() if isinstance(v, float) else v for v in msgspec.structs.astuple(record)]
    )


def _outcome(take: Any, frame: bytes) -> tuple[str, list[str]]:
    """What a feed makes of ``frame`` with ``take`` first: its records, or a bad frame."""
    out: list[Any] = []
    table = LaneTablePython if take is take_combined_python else LaneTable
    if take(_lanes(out, table), frame):
        assert len(out) == 1
        return "records", [_exact(r) for r in out]
    assert out == []  # left: nothing delivered on the way
    try:
        events = StreamDecoder().decode(frame)
    except FrameError:
        return "bad", []
    return "records", [_exact(e) for e in events if hasattr(e, "symbol")]


def _lawful(frame: bytes) -> None:
    """Every record of ``frame`` keeps the rules of marketlab.numbers, checked here by
    hand: finite amounts not below 0, int64 ids not below 0, times in the venues' years, and
    the symbol (and interval) of the stream it came on."""
    out: list[Any] = []
    if not take_compiled(_lanes(out), frame):
        try:
            out = [e for e in StreamDecoder().decode(frame) if hasattr(e, "symbol")]
        except FrameError:
            return
    ours = any(frame.startswith(b'{"stream":"' + n.encode() + b'"') for n in STREAMS)
    for record in out:
        values = msgspec.structs.asdict(record)
        if ours:  # (a stream name that is no stream's: a record of whatever the payload names)
            assert values["symbol"] == "BTCUSDT"
            if isinstance(record, Kline):
                assert values["interval"] == "1m"
        for name, value in values.items():
            if name in ("change", "change_pct"):  # a price may fall
                assert math.isfinite(value)
            elif isinstance(value, float):
                assert math.isnan(value) is False and 0.0 <= value < math.inf, (name, value)
                if name == "price":  # a trade's
                    assert value > 0.0
            elif isinstance(value, bool) or value is None:
                continue
            elif isinstance(value, int):
                low = -1 if name in ("first_trade_id", "last_trade_id") else 0
                assert low <= value <= 2**63 - 1, (name, value)
                if "time" in name:
                    assert 1_262_304_000_000 <= value <= 4_102_444_800_000, (name, value)
            elif isinstance(value, list):  # levels
                for price, qty in value:
                    assert 0.0 < price < math.inf and 0.0 <= qty < math.inf


def _same(frame: bytes) -> None:
    compiled = _outcome(take_compiled, frame)
    python = _outcome(take_combined_python, frame)
    assert compiled == python, frame
    _lawful(frame)


@fuzz()
@given(KINDS, st.randoms(use_true_random=False), st.data())
@example("trade", None, None)
def test_a_hostile_number_anywhere_is_refused_alike(kind, rnd, data) -> None:
    if rnd is None:  # a trade id past int64 among normal ones
        frame = (
            b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1767225600000,"s":"BTCUSDT",'
            b'"t":9223372036854775808,"p":"1","q":"1","T":1767225600000,"m":true}}'
        )
        assert _outcome(take_compiled, frame) == ("bad", [])
        return _same(frame)
    payload = _good(kind, rnd)
    body = payload.get("k", payload)
    key = data.draw(st.sampled_from(sorted(body)))
    value = data.draw(st.sampled_from(HOSTILE))
    if key in ("b", "a") and kind == "depth":
        body[key] = [[value, "1"]] if data.draw(st.booleans()) else [["1", value]]
    else:
        body[key] = value if data.draw(st.booleans()) else msgspec.Raw(value.encode() or b"0")
    _same(_frame(kind, payload))


@fuzz()
@given(KINDS, st.randoms(use_true_random=False), st.sampled_from(["ETHUSDT", "btcusdt", "5m"]))
def test_a_payload_of_another_stream_is_a_bad_frame_in_both(kind, rnd, other) -> None:
    if other == "5m" and kind != "kline":
        return
    payload = _good(kind, rnd)
    body = payload.get("k", payload)  # a kline's own symbol and interval are its body's
    body["i" if other == "5m" else "s"] = other
    frame = _frame(kind, payload)
    assert _outcome(take_compiled, frame) == ("bad", [])
    _same(frame)


@fuzz(2)
@given(KINDS, st.randoms(use_true_random=False), st.data())
@example("trade", None, b'{"stream":"btcusdt@trade","data":{"s":"BTCUSDT}')
def test_a_mutated_frame_is_read_alike_or_refused_alike(kind, rnd, data) -> None:
    frame = data if rnd is None else data.draw(mutated(_frame(kind, _good(kind, rnd))))
    _same(frame)


@fuzz()
@given(KINDS, st.randoms(use_true_random=False), st.data())
@example("trade", None, b'{"stream":"btcusdt@trade","data":{"s":"BTCUSDT}')
def test_a_frame_read_ahead_at_the_end_of_its_block_is_read_as_one_taken_live(kind, rnd, data):
    # a recording's frame is a slice of a block, not a bytes object with a NUL after it: the
    # last frame of a block ends where the block's memory ends
    from marketlab.recording import files as rec
    from marketlab.recording.blocks import read_block

    frame = data if rnd is None else data.draw(mutated(_frame(kind, _good(kind, rnd))))
    entry = rec.ENTRY_HEAD.pack(rec.WS, 1, 4, len(frame)) + b"conn" + frame
    ahead: list[Any] = []
    lanes = _lanes(ahead)
    block = read_block(lanes, entry)
    left: list[Any] = []
    block.run(1, rec.Entry, {}, left.append, lambda tag: None, None)
    live: list[Any] = []
    take_compiled(_lanes(live), frame)
    if ahead:  # read ahead: the very record taken live, and nothing left to the careful path
        assert [_exact(r) for r in ahead] == [_exact(r) for r in live] and left == []
    else:  # left whole to the careful path, as the entry it is
        assert [tuple(e) for e in left] == [(rec.WS, 1, "conn", frame)]
