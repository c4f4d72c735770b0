"""The simulated market is deterministic, consistent with itself and never crossed."""

import itertools
from dataclasses import replace

import pytest

from marketlab.records import INTERVAL_NAMES, Interval
from marketlab.sim.market import Market, RollingWindow, SymbolMarket, fmt_units, spec_for

GENESIS = 1_767_225_600_000  # a Thursday, 2026-01-01


def run(market: SymbolMarket, seconds: int) -> list:
    return [market.step() for _ in range(seconds)]


def test_same_seed_same_market_and_different_seed_different_market():
    a, b, c = (SymbolMarket(spec_for("BTCUSDT"), seed, GENESIS) for seed in (7, 7, 8))
    for m in (a, b, c):
        run(m, 300)
    assert a.klines("1m") == b.klines("1m")
    assert a.book() == b.book()
    assert a.klines("1m") != c.klines("1m")


def test_price_path_does_not_depend_on_simulating_the_book():
    with_book = SymbolMarket(spec_for("ETHUSDT"), 3, GENESIS)
    without = SymbolMarket(spec_for("ETHUSDT"), 3, GENESIS)
    for _ in range(200):
        with_book.step()
        without.step(with_book=False)
    assert with_book.klines("1m") == without.klines("1m")


def test_candles_built_second_by_second_equal_candles_aggregated_from_history():
    m = SymbolMarket(spec_for("BTCUSDT"), 7, GENESIS - 30_000)  # starts mid-candle
    streamed: dict[str, list[tuple]] = {iv: [] for iv in INTERVAL_NAMES}
    for r in run(m, 2 * 3600 + 17):
        for iv, c in r.closed.items():
            o, h, l, cl = c.ohlc()
            streamed[iv].append(
                (c.open_time, o, h, l, cl, c.v, c.next_open - 1, c.q, c.n, c.tv, c.tq, True)
            )
    assert (
        len(streamed["1m"]) == 120
        and len(streamed["1h"]) == 2
        and len(streamed["1s"]) == 2 * 3600 + 17
    )
    for iv, candles in streamed.items():
        if not candles:
            continue
        aggregated = m.klines(iv, start=candles[0][0], end=candles[-1][0], limit=10_000)
        assert aggregated == candles, iv


def test_open_candle_is_last_and_marked_open():
    m = SymbolMarket(spec_for("BTCUSDT"), 7, GENESIS)
    run(m, 90)
    rows = m.klines("1m")
    assert [r[0] for r in rows] == [GENESIS, GENESIS + 60_000]
    assert [r[-1] for r in rows] == [True, False]
    c = m.open_candle("1m")
    o, h, l, cl = c.ohlc()
    assert rows[-1][1:6] == (o, h, l, cl, c.v)


def test_a_candle_without_trades_repeats_the_last_close_with_zero_volume():
    quiet = replace(spec_for("BTCUSDT"), trades_per_second=0.0)
    m = SymbolMarket(quiet, 7, GENESIS)
    m.last_price = 6_500_000
    run(m, 180)
    for row in m.klines("1m"):
        _t, o, h, l, c, v, _, q, n, tv, tq, _ = row
        assert (o, h, l, c) == (6_500_000,) * 4 and (v, q, n, tv, tq) == (0, 0, 0, 0, 0)


def test_candle_open_is_the_first_trade_even_after_quiet_seconds():
    m = SymbolMarket(spec_for("BTCUSDT"), 7, GENESIS)
    run(m, 600)
    secs = m.seconds
    for t, o, h, l, _c, _v, *_ in m.klines("1m"):
        a = (t - GENESIS) // 1000
        traded = [i for i in range(a, a + 60) if secs["trades"][i] > 0]
        assert o == secs["open"][traded[0]]
        assert h == max(secs["high"][i] for i in traded) and l == min(
            secs["low"][i] for i in traded
        )


def test_klines_select_like_binance():
    m = SymbolMarket(spec_for("BTCUSDT"), 7, GENESIS)
    run(m, 600)  # ten 1m candles, all closed at exactly 600 s
    opens = [r[0] for r in m.klines("1m", limit=1000)]
    assert opens == [GENESIS + i * 60_000 for i in range(10)]
    # startTime inside a candle starts at the next open; endTime bounds open times inclusively
    assert [r[0] for r in m.klines("1m", start=GENESIS + 1, end=GENESIS + 180_000)] == [
        GENESIS + 60_000,
        GENESIS + 120_000,
        GENESIS + 180_000,
    ]
    assert [r[0] for r in m.klines("1m", start=GENESIS, limit=2)] == [GENESIS, GENESIS + 60_000]
    assert [r[0] for r in m.klines("1m", end=GENESIS + 300_000, limit=2)] == [
        GENESIS + 240_000,
        GENESIS + 300_000,
    ]
    assert [r[0] for r in m.klines("1m", limit=3)] == opens[-3:]
    assert m.klines("1m", start=GENESIS + 10**9) == []


def test_book_is_never_crossed_and_deltas_rebuild_it_exactly():
    m = SymbolMarket(spec_for("BTCUSDT"), 7, GENESIS)
    m.step()
    uid, bids, asks = m.book()
    book = {"b": dict(bids), "a": dict(asks)}
    for _ in range(500):
        r = m.step()
        assert r.depth is not None
        first, last, b, a = r.depth
        assert first == uid + 1 and last >= first
        uid = last
        for side, levels in (("b", b), ("a", a)):
            for p, q in levels:
                if q:
                    book[side][p] = q
                else:
                    book[side].pop(p, None)
        now_uid, now_bids, now_asks = m.book()
        assert now_uid == uid
        assert now_bids[0][0] < now_asks[0][0]
        assert (
            len(now_bids) >= SymbolMarket.BOOK_LEVELS and len(now_asks) >= SymbolMarket.BOOK_LEVELS
        )
    assert sorted(book["b"].items(), reverse=True) == m.book()[1]
    assert sorted(book["a"].items()) == m.book()[2]


def test_trades_hit_the_touch_and_have_consecutive_ids():
    m = SymbolMarket(spec_for("ETHUSDT"), 7, GENESIS)
    ids = []
    for r in run(m, 200):
        ids += [t.trade_id for t in r.trades]
        times = [t.time for t in r.trades]
        assert times == sorted(times) and all(r.second <= t < r.end for t in times)
    assert ids == list(range(1, len(ids) + 1))


def test_rolling_window_matches_brute_force():
    m = SymbolMarket(spec_for("ADAUSDT"), 5, GENESIS)
    m.window = RollingWindow(seconds=120)
    run(m, 1000)
    s = m.seconds
    lo = s.n - 120
    traded = [i for i in range(lo, s.n) if s["trades"][i] > 0]
    t = m.ticker()
    assert t["volume"] == int(s["volume"][lo:].sum()) and t["count"] == int(s["trades"][lo:].sum())
    assert t["high"] == max(s["high"][i] for i in traded)
    assert t["low"] == min(s["low"][i] for i in traded)
    assert t["open"] == s["open"][traded[0]]
    assert t["prev_close"] == s["close"][lo - 1]


def test_market_warm_up_fills_history_without_a_book():
    market = Market(["BTCUSDT", "ETHUSDT"], 7, GENESIS)
    market.warm_up(GENESIS + 3600_000)
    assert market.now == GENESIS + 3600_000
    assert len(market.symbols["BTCUSDT"].klines("1m", limit=1000)) == 60
    assert market.symbols["BTCUSDT"].bids == {}


@pytest.mark.parametrize(
    ("units", "decimals", "text"),
    [
        (6500010, 2, "65000.10000000"),
        (5, 5, "0.00005000"),
        (7, 0, "7.00000000"),
        (-120, 2, "-1.20000000"),
    ],
)
def test_fmt_units_prints_like_binance(units, decimals, text):
    assert fmt_units(units, decimals) == text


def test_unknown_symbols_get_a_plausible_spec():
    spec = spec_for("PEPEUSDC")
    assert (spec.base, spec.quote) == ("PEPE", "USDC") and spec.price > 0
    assert Interval("1m")  # interval helper is shared with the market


def spreads(seed: int, steps: int = 900) -> list[int]:
    market = Market(["BTCUSDT"], seed, 1_767_225_600_000)
    m = market.symbols["BTCUSDT"]
    out = []
    for _ in range(steps):
        market.step()
        _, bids, asks = m.book(1)
        out.append(asks[0][0] - bids[0][0])
    return out


def test_the_spread_breathes_like_a_real_books_and_stays_deterministic():
    """Not one constant width: it narrows and widens, sometimes gaps, and a seed repeats it."""
    ticks = spreads(seed=7)
    calm = sorted(ticks)[len(ticks) // 2]  # the median width
    assert min(ticks) >= 1
    assert len(set(ticks)) >= 20  # many widths, not a constant
    assert sum(t < calm * 0.7 for t in ticks) >= 30  # tight stretches
    assert sum(t > calm * 1.5 for t in ticks) >= 30  # wide stretches
    assert max(ticks) > calm * 3  # and gaps
    changes = sum(a != b for a, b in itertools.pairwise(ticks))
    assert changes > len(ticks) // 2  # it moves from second to second
    assert spreads(seed=7) == ticks and spreads(seed=8) != ticks
