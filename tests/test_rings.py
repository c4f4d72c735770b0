"""Rolling buffers: bounded, ordered, deduplicated, with the documented frame columns."""

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketlab.native import COMPILED, compiled
from marketlab.records import Kline, Trade
from marketlab.rings import (
    KLINE_COLUMNS,
    TRADE_DTYPES,
    KlineBuffer,
    TradeBuffer,
    TradeRingPython,
    book_frame,
    trade_arrays,
)

T0 = 1_767_225_600_000


def kline(i: int, closed: bool = True, close: float = 100.0) -> Kline:
    t = T0 + i * 60_000
    return Kline(
        "BTCUSDT", "1m", t, 100.0, 101.0, 99.0, close, 2.0, t + 59_999, 200.0, 5, 1.0, 100.0, closed
    )


# the trade rings in use: the pure-Python twin, and the compiled one where it is built
RINGS = [TradeRingPython] + ([compiled("TradeRing")] if COMPILED else [])


@pytest.mark.parametrize("ring_type", RINGS, ids=lambda t: t.__module__)
def test_a_trade_ring_keeps_the_newest_trades_in_order_and_tells_a_store_of_every_one(ring_type):
    ring = ring_type(5, 4)
    blocks: list[dict[str, np.ndarray]] = []
    ring.on_block = lambda *cols: blocks.append(trade_arrays(cols))
    for i in range(13):
        assert ring.add(T0 + i, 100.0 + i, 0.5, "sell" if i % 3 else "buy", 7 + i, 1.5, "ws")
    a = trade_arrays(ring.columns())
    assert list(a["trade_id"]) == [15, 16, 17, 18, 19] and len(ring) == 5
    assert list(a["side"]) == [1, 0, 1, 1, 0] and list(a["time"]) == [T0 + i for i in range(8, 13)]
    # three whole blocks went to the store; the thirteenth trade is still gathered
    assert [list(b["trade_id"]) for b in blocks] == [
        [7, 8, 9, 10],
        [11, 12, 13, 14],
        [15, 16, 17, 18],
    ]
    ring.flush()
    assert list(blocks[-1]["trade_id"]) == [19] and ring.newest() == (112.0, T0 + 12, 1.5, "ws")
    assert not ring.add(T0, 1.0, 1.0, "buy", 19, 0.0, "ws") and ring.duplicates == 1
    ring.add(T0, 1.0, 1.0, "buy", 25, 0.0, "rest")
    assert ring.missed == 5 and ring.last_id == 25 and ring.newest()[3] == "rest"
    with pytest.raises(ValueError, match="side"):
        ring.add(T0, 1.0, 1.0, "bid", 26, 0.0, "ws")
    with pytest.raises(ValueError, match="capacity"):
        ring_type(0)


@pytest.mark.parametrize("ring_type", RINGS, ids=lambda t: t.__module__)
def test_a_store_that_fails_loses_its_block_but_the_ring_keeps_it(ring_type):
    ring = ring_type(10, 2)

    def broken(*cols: bytearray) -> None:
        ring.add(T0, 1.0, 1.0, "buy", 99, 0.0, "ws")  # a store may not change the ring

    ring.on_block = broken
    ring.add(T0, 1.0, 1.0, "buy", 1, 0.0, "ws")
    with pytest.raises(RuntimeError, match="on_block"):
        ring.add(T0, 1.0, 1.0, "buy", 2, 0.0, "ws")
    assert list(trade_arrays(ring.columns())["trade_id"]) == [1, 2] and ring.last_id == 2
    with pytest.raises(TypeError, match="on_block"):
        ring.on_block = 3


TRADE_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 40), st.sampled_from(["buy", "sell"])),
        st.tuples(st.just("flush")),
        st.tuples(st.just("load"), st.lists(st.integers(0, 60), max_size=12)),
        st.tuples(st.just("missed"), st.integers(0, 5)),
        st.tuples(st.just("bad"), st.sampled_from(["price", "id", "huge", "side", "time"])),
    ),
    max_size=60,
)
# arguments a ring refuses, each in place of one good one: nothing changes
BAD_ARGS = {
    "price": {"price": "1.5"},
    "id": {"trade_id": 7.0},
    "huge": {"trade_id": 2**63},
    "side": {"side": "bid"},
    "time": {"time": None},
}


def _outcome(call: Any) -> Any:
    """What a call gives, or the kind of error it raises."""
    try:
        return call()
    except Exception as exc:
        return type(exc)


@pytest.mark.skipif(not COMPILED, reason="the compiled ring is not built or not in use")
@settings(max_examples=300, deadline=None)
@given(TRADE_OPS, st.integers(1, 9), st.integers(1, 5))
def test_the_compiled_trade_ring_answers_as_its_twin_does(ops, capacity, block):
    """The same calls give the same answers, columns, counters and blocks told to a store that
    fails every third block, in both; refused arguments change neither."""
    twin, ring = TradeRingPython(capacity, block), compiled("TradeRing")(capacity, block)
    told: tuple[list, list] = ([], [])

    def store(to: list) -> Any:
        def on_block(*cols: bytearray) -> None:
            to.append([bytes(c) for c in cols])
            if len(to) % 3 == 0:
                raise OSError("disk full")

        return on_block

    twin.on_block, ring.on_block = store(told[0]), store(told[1])
    for n, op in enumerate(ops):
        answers = []
        for r in (twin, ring):
            trade = {
                "time": T0 + n,
                "price": 1.0 + n / 8,
                "qty": 0.25 * n,
                "side": op[2] if op[0] == "add" else "buy",
                "trade_id": op[1] if op[0] == "add" else n,
                "received": n * 0.5,
                "source": str(n),
            }
            done: Any = None
            if op[0] == "add":
                done = _outcome(lambda r=r, trade=trade: r.add(*trade.values()))
            elif op[0] == "bad":
                bad = {**trade, **BAD_ARGS[op[1]]}
                done = _outcome(lambda r=r, bad=bad: r.add(*bad.values()))
            elif op[0] == "flush":
                done = _outcome(r.flush)
            elif op[0] == "load":
                ids = np.array(op[1], dtype=np.int64)
                cols = [np.arange(len(ids), dtype=dt) for dt in TRADE_DTYPES.values()]
                r.load(*cols[:4], ids)
            else:
                r.missed = op[1]
            answers.append(
                (done, r.columns(), len(r), r.newest(), r.last_id, r.missed, r.duplicates, r.nbytes)
            )
        assert answers[0] == answers[1]
        assert told[0] == told[1]


@pytest.mark.parametrize("ring_type", RINGS, ids=lambda t: t.__module__)
def test_prices_see_the_last_trade_handed_in_even_a_repeat(ring_type):
    ring = ring_type(4)
    ring.add(T0, 100.0, 1.0, "buy", 5, 1.0, "ws")
    assert not ring.add(T0 + 1, 99.0, 1.0, "sell", 5, 2.0, "rest")  # a repeat: not kept
    assert ring.newest() == (99.0, T0 + 1, 2.0, "rest") and len(ring) == 1


def test_trades_frame_columns_types_and_dedup():
    buf = TradeBuffer(capacity=3)
    for i, side in enumerate(["buy", "sell", "buy", "sell"]):
        assert buf.add(Trade("BTCUSDT", 10 + i, 100.0 + i, 0.5, side, T0 + i, T0 + i))
    assert not buf.add(Trade("BTCUSDT", 12, 1.0, 1.0, "buy", T0, T0))  # duplicate on rollover
    buf.add(Trade("BTCUSDT", 20, 1.0, 1.0, "buy", T0 + 9, T0 + 9))
    df = buf.frame()
    assert list(df.columns) == ["price", "qty", "side", "trade_id"]
    assert df.index.name == "time" and str(df.index.tz) == "UTC"
    assert list(df["trade_id"]) == [12, 13, 20] and list(df["side"]) == ["buy", "sell", "buy"]
    assert df["price"].dtype == np.float64 and buf.duplicates == 1 and buf.missed == 6


def test_klines_upsert_updates_the_open_candle_and_never_reopens_a_closed_one():
    buf = KlineBuffer("1m", capacity=10)
    buf.upsert(kline(0, closed=False, close=100.5))
    buf.upsert(kline(0, closed=False, close=100.7))
    assert len(buf) == 1 and buf.frame()["close"].iloc[0] == 100.7
    buf.upsert(kline(0, closed=True, close=100.9))
    assert not buf.upsert(kline(0, closed=False, close=55.0))
    df = buf.frame()
    assert df["close"].iloc[0] == 100.9 and bool(df["closed"].iloc[0])
    assert list(df.columns) == list(KLINE_COLUMNS) and df.index.name == "open_time"
    # the public contract's columns, written out
    assert list(KLINE_COLUMNS) == [
        "open",
        "high",
        "low",
        "close",
        "volume",
        "quote_volume",
        "trades",
        "taker_buy_volume",
        "taker_buy_quote_volume",
        "close_time",
        "closed",
    ]
    assert df["close_time"].iloc[0] == pd.Timestamp(T0 + 59_999, unit="ms", tz="UTC")


def test_backfilled_candles_land_in_order_and_capacity_holds():
    buf = KlineBuffer("1m", capacity=4)
    for i in (0, 1, 5):
        buf.upsert(kline(i))
    buf.upsert_many([kline(3), kline(2), kline(4)])
    assert [(t - T0) // 60_000 for t in buf.open_times()] == [2, 3, 4, 5]
    assert not buf.upsert(kline(0))  # older than everything kept
    assert buf.last_closed_open_time() == T0 + 5 * 60_000


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(st.integers(0, 60), st.booleans(), st.integers(0, 1000), st.booleans()),
        max_size=120,
    ),
    st.integers(1, 40),
)
def test_kline_buffer_equals_a_dict_model(ops, capacity):
    """Whenever it is read (the open candle is held apart until then), the buffer equals a
    model: one row per open time, a closed candle never reopened, the newest ``capacity``
    (through the columns' growth: they start shorter than most capacities here)."""
    buf = KlineBuffer("1m", capacity=capacity)
    model: dict[int, tuple[bool, float]] = {}

    def check() -> None:
        df = buf.frame()
        assert [(t.value // 10**6 - T0) // 60_000 for t in df.index] == sorted(model)
        assert list(df["close"]) == [model[i][1] for i in sorted(model)]
        assert list(df["closed"]) == [model[i][0] for i in sorted(model)]
        assert len(buf) == len(model)
        closed = [i for i in sorted(model) if model[i][0]]
        assert buf.last_closed_open_time() == (T0 + closed[-1] * 60_000 if closed else None)

    for i, closed, close, read in ops:
        buf.upsert(kline(i, closed, float(close)))
        reopened = i in model and model[i][0] and not closed
        too_old = i not in model and len(model) >= capacity and i < min(model)
        if not reopened and not too_old:
            model[i] = (closed, float(close))
            while len(model) > capacity:
                del model[min(model)]
        if read:
            check()
    check()


def test_kline_columns_grow_with_the_candles_held():
    """A buffer takes memory for the candles it holds, not its capacity, until it is full."""
    row = 11 * 8 + 1  # eleven 8-byte columns and the closed flag
    buf = KlineBuffer("1m", capacity=1_440)
    assert buf.nbytes < 100 * row
    for i in range(200):
        buf.upsert(kline(i))
    assert 200 * row <= buf.nbytes < 1_440 * row // 2
    for i in range(200, 3_000):
        buf.upsert(kline(i))
    assert len(buf) == 1_440 and buf.nbytes == 1_440 * row
    assert buf.open_times()[0] == T0 + (3_000 - 1_440) * 60_000


def test_book_frame_layout():
    df = book_frame([(99.0, 1.0), (98.0, 2.0)], [(101.0, 3.0)])
    assert list(df.columns) == ["side", "price", "qty", "level"]
    assert list(df["side"]) == ["bid", "bid", "ask"] and list(df["level"]) == [0, 1, 0]
    assert book_frame([], []).empty
