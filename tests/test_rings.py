"""Rolling buffers: bounded, ordered, deduplicated, with the documented frame columns."""

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from marketlab.records import Kline, Trade
from marketlab.rings import KLINE_COLUMNS, KlineBuffer, RingBuffer, TradeBuffer, book_frame

T0 = 1_767_225_600_000


def kline(i: int, closed: bool = True, close: float = 100.0) -> Kline:
    t = T0 + i * 60_000
    return Kline(
        "BTCUSDT", "1m", t, 100.0, 101.0, 99.0, close, 2.0, t + 59_999, 200.0, 5, 1.0, 100.0, closed
    )


def test_ring_buffer_keeps_the_newest_rows_in_order():
    ring = RingBuffer({"x": np.int64}, capacity=5)
    for i in range(13):
        ring.append((i,))
    assert list(ring.arrays()["x"]) == [8, 9, 10, 11, 12] and len(ring) == 5


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
        st.tuples(st.integers(0, 30), st.booleans(), st.integers(0, 1000), st.booleans()),
        max_size=80,
    ),
    st.integers(1, 12),
)
def test_kline_buffer_equals_a_dict_model(ops, capacity):
    """Whenever it is read (the open candle is held apart until then), the buffer equals a
    model: one row per open time, a closed candle never reopened, the newest ``capacity``."""
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


def test_book_frame_layout():
    df = book_frame([(99.0, 1.0), (98.0, 2.0)], [(101.0, 3.0)])
    assert list(df.columns) == ["side", "price", "qty", "level"]
    assert list(df["side"]) == ["bid", "bid", "ask"] and list(df["level"]) == [0, 1, 0]
    assert book_frame([], []).empty
