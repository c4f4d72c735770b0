"""A Lab resuming from SQLite: the candles warmed straight from the rows equal History's frame of
them (taker volumes a venue does not publish: NaN), and a series resumes before its first hole."""

import math

import numpy as np

from marketlab.records import Interval, Kline
from marketlab.rings import KlineBuffer
from marketlab.store.history import History
from marketlab.store.sqlite import UPSERT, connect, kline_row
from marketlab.store.warm import warm

T0 = 1_767_225_600_000  # 2026-01-01


def candle(i: int, taker: float | None) -> Kline:
    t = T0 + i * 60_000
    return Kline(
        "BTCUSDT",
        "1m",
        t,
        100.0 + i,
        101.5 + i,
        99.25 + i,
        100.5 + i,
        2.5 * i + 1,
        t + 59_999,
        250.0 * i + 3,
        10 + i,
        taker,
        taker,
        True,
    )


def test_warmed_candles_equal_the_stored_frame_and_resume_before_the_first_hole(tmp_path):
    db = tmp_path / "k.sqlite"
    # OKX-like: no taker volumes (stored NULL) on some; minute 5 never stored (a hole)
    kept = [candle(i, None if i % 2 else 0.5 * i) for i in range(12) if i != 5]
    conn = connect(db)
    with conn:
        conn.executemany(UPSERT, [kline_row("okx", k, 0) for k in kept])
    conn.close()

    buffers = {("BTCUSDT", Interval("1m")): KlineBuffer("1m", 8)}
    starts = warm(db, "okx", buffers, 8)

    assert starts == {("BTCUSDT", "1m"): T0 + 4 * 60_000}  # the last candle before the hole
    warmed = buffers[("BTCUSDT", Interval("1m"))].frame()
    stored = History(db=db, exchange="okx").recent("BTCUSDT", "1m", 8)
    assert list(warmed.index) == list(stored.index) and len(warmed) == 8
    for column in stored.columns:
        assert np.array_equal(
            warmed[column].to_numpy(),
            stored[column].to_numpy(),
            equal_nan=warmed[column].dtype.kind == "f",
        ), column
    assert math.isnan(warmed["taker_buy_volume"].iloc[-1])  # minute 11: NULL in the file
    assert warmed["taker_buy_volume"].iloc[-2] == 5.0  # minute 10: 0.5 * 10


def test_nothing_stored_resumes_nowhere(tmp_path):
    buffers = {("BTCUSDT", Interval("1m")): KlineBuffer("1m", 8)}
    assert warm(tmp_path / "absent.sqlite", "binance", buffers, 8) == {}
    assert len(buffers[("BTCUSDT", Interval("1m"))]) == 0
