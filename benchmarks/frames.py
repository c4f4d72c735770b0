"""Frame-building benchmark: ``python benchmarks/frames.py [--trades 100000] [--klines 1440]``.

What a notebook pays for ``lab.trades(sym)`` over a full buffer of 100,000 trades and for
``lab.klines(sym, "1m")`` over a day of 1,440 candles, against the floor: the same DataFrame
(same columns, dtypes and UTC index) built directly from numpy arrays already in hand. Both
buffers are filled through the collector's own path (the entries its feed hands each record to:
``on_trade``, ``on_kline`` of the Lab's market state), and the frames are checked equal to the
floor's before anything is timed.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from marketlab.lab import Lab
from marketlab.records import Kline, Trade
from marketlab.rings import KLINE_COLUMNS, utc_index, utc_times

T0 = 1_767_225_600_000


def best(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return min(times), statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trades", type=int, default=100_000)
    ap.add_argument("--klines", type=int, default=1_440)
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    n = args.trades
    t = T0 + np.cumsum(rng.integers(1, 50, n))
    price = 65_000 + np.cumsum(rng.normal(0, 1, n)).round(2)
    qty = rng.exponential(0.05, n).round(5)
    side = rng.integers(0, 2, n).astype(np.int8)
    ids = np.arange(1, n + 1, dtype=np.int64)
    m = args.klines
    opens = T0 + np.arange(m, dtype=np.int64) * 60_000
    close = 65_000 + np.cumsum(rng.normal(0, 20, m)).round(2)
    vol = rng.exponential(5, m).round(5)

    lab = Lab(["BTCUSDT"], intervals=["1m"], trade_capacity=n, kline_capacity=m)
    # The Lab hands its market state to its feed as the sink, and the feed gives each record
    # to the entry for its kind: these two entries are the collector's path with no venue and
    # no socket before it. The Lab has no public way in, so only the state itself is reached.
    state = lab._state
    trades = [
        Trade(
            "BTCUSDT",
            int(ids[i]),
            float(price[i]),
            float(qty[i]),
            "sell" if side[i] else "buy",
            int(t[i]),
            int(t[i]),
        )
        for i in range(n)
    ]
    on_trade, on_kline = state.on_trade, state.on_kline
    began = time.perf_counter()
    for trade in trades:
        on_trade(trade, "ws")
    fill_trades = time.perf_counter() - began
    klines = [
        Kline(
            "BTCUSDT",
            "1m",
            int(opens[i]),
            float(close[i] - 3),
            float(close[i] + 5),
            float(close[i] - 5),
            float(close[i]),
            float(vol[i]),
            int(opens[i] + 59_999),
            float(vol[i] * close[i]),
            10,
            float(vol[i] / 2),
            float(vol[i] * close[i] / 2),
            True,
        )
        for i in range(m)
    ]
    began = time.perf_counter()
    for kline in klines:
        on_kline(kline, "ws")
    fill_klines = time.perf_counter() - began

    sides = pd.CategoricalDtype(["buy", "sell"])

    def trades_floor() -> pd.DataFrame:
        return pd.DataFrame(
            {
                "price": price,
                "qty": qty,
                "side": pd.Categorical.from_codes(side, dtype=sides),
                "trade_id": ids,
            },
            index=utc_index(t, "time"),
        )

    kcols = {
        "open": close - 3,
        "high": close + 5,
        "low": close - 5,
        "close": close,
        "volume": vol,
        "quote_volume": vol * close,
        "trades": np.full(m, 10, np.int64),
        "taker_buy_volume": vol / 2,
        "taker_buy_quote_volume": vol * close / 2,
        "close_time": opens + 59_999,
        "closed": np.ones(m, bool),
    }

    def klines_floor() -> pd.DataFrame:
        data = {c: kcols[c] for c in KLINE_COLUMNS}
        data["close_time"] = utc_times(kcols["close_time"])
        return pd.DataFrame(data, index=utc_index(opens, "open_time"))

    pd.testing.assert_frame_equal(lab.trades("BTCUSDT"), trades_floor())
    pd.testing.assert_frame_equal(lab.klines("BTCUSDT", "1m"), klines_floor(), check_exact=False)

    rows = []
    for name, ours, floor in (
        (f"lab.trades() {n:,} rows", lambda: lab.trades("BTCUSDT"), trades_floor),
        (f"lab.klines() {m:,} rows", lambda: lab.klines("BTCUSDT", "1m"), klines_floor),
    ):
        (o_best, o_med), (f_best, f_med) = best(ours, args.repeat), best(floor, args.repeat)
        rows.append((name, o_best, o_med, f_best, f_med))
    print(
        f"frames: best and median of {args.repeat} calls; "
        "floor = the same DataFrame from numpy arrays in hand"
    )
    print(f"{'':<26}{'marketlab ms':>14}{'median':>9}{'floor ms':>10}{'median':>9}{'ratio':>8}")
    for name, o_best, o_med, f_best, f_med in rows:
        print(
            f"{name:<26}{o_best * 1e3:>14.3f}{o_med * 1e3:>9.3f}"
            f"{f_best * 1e3:>10.3f}{f_med * 1e3:>9.3f}"
            f"{o_best / f_best:>7.2f}x"
        )
    print(
        f"filling through the collector's path: {n / fill_trades:,.0f} trades/s, "
        f"{m / fill_klines:,.0f} klines/s"
    )


if __name__ == "__main__":
    main()
