"""The market detectors on hand-made series, each expected answer worked out here from the
definition (medians and deviations by the statistics module, not the code under test)."""

from __future__ import annotations

import itertools
import math
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketlab.watch.alerts import MARKET_RULES, AlertBook, Finding
from marketlab.watch.market import (
    Persisting,
    PriceJump,
    SpreadBlowout,
    VolumeBurst,
    outside_book_bps,
    robust_z,
    spread_bps,
)
from marketlab.watch.rules import Observation, Print, Quote, Rules
from marketlab.watch.settings import AlertSettings

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@given(st.lists(finite, min_size=3, max_size=60), finite)
def test_robust_z_is_distance_over_scaled_mad(window, value):
    median = statistics.median(window)
    mad = statistics.median(abs(x - median) for x in window)
    z = robust_z(value, window)
    if mad > 0:
        assert z == pytest.approx((value - median) / (1.4826 * mad), rel=1e-9, abs=1e-9)
    else:
        mean_dev = statistics.fmean(abs(x - median) for x in window)
        if mean_dev > 0:
            expected = (value - median) / (math.sqrt(math.pi / 2) * mean_dev)
            assert z == pytest.approx(expected, rel=1e-9, abs=1e-9)
        elif value == median:
            assert z == 0
        else:
            assert math.isinf(z) and (z > 0) == (value > median)


def alternating_mids(n: int, base: float = 100.0, step_bps: float = 1.0) -> list[float]:
    """A calm mid: a seeded random walk of steps of about ``step_bps``."""
    import random

    rng, mids = random.Random(3), [base]
    for _ in range(n - 1):
        mids.append(mids[-1] * math.exp(rng.gauss(0, step_bps / 1e4)))
    return mids


def test_price_jump_fires_on_the_jump_only():
    detector = PriceJump(window=50, min_samples=20, z=10, min_bps=10)
    mids = alternating_mids(40)
    assert [detector.update(m) for m in mids] == [None] * 40
    jumped = mids[-1] * 1.01  # +100 bps against returns of about +-1 bps
    fired = detector.update(jumped)
    assert fired is not None
    r, z = fired
    assert r == pytest.approx(math.log(jumped / mids[-1]) * 1e4)
    returns = [math.log(b / a) * 1e4 for a, b in itertools.pairwise(mids)][-50:]
    med = statistics.median(returns)
    mad = statistics.median(abs(x - med) for x in returns)
    assert z == pytest.approx((r - med) / (1.4826 * mad))
    assert detector.update(jumped) is None  # no move: no jump
    assert mad > 0


def test_price_jump_needs_its_window_and_its_minimum_move():
    early = PriceJump(window=50, min_samples=20, z=10, min_bps=10)
    for m in alternating_mids(10):
        early.update(m)
    assert early.update(200.0) is None  # 10 samples: too few to judge
    small = PriceJump(window=50, min_samples=20, z=3, min_bps=10)
    mids = alternating_mids(40)
    for m in mids:
        small.update(m)
    assert small.update(mids[-1] * (1 + 8 / 1e4)) is None  # many sigmas, but under 10 bps


def test_spread_blowout_against_the_rolling_median():
    detector = SpreadBlowout(window=30, min_samples=10, factor=5)
    spreads = [1.0, 2.0, 3.0] * 10
    assert all(detector.update(s) is None for s in spreads)
    median = statistics.median(spreads)
    assert detector.update(5 * median) is None  # at the factor, not over it
    ratio = detector.update(5 * median + 1)
    assert ratio == pytest.approx((5 * median + 1) / statistics.median([*spreads[1:], 10.0]))


def test_volume_burst_against_the_rolling_mean():
    detector = VolumeBurst(window=20, min_samples=10, factor=10)
    volumes = [0.0, 0.0, 3.0, 1.0] * 5
    mean = statistics.fmean(volumes)
    assert all(detector.update(v) is None for v in volumes)
    assert detector.update(10 * mean) is None  # at the factor, not over it
    again = VolumeBurst(window=20, min_samples=10, factor=10)
    for v in volumes:
        again.update(v)
    assert again.update(10.5 * mean) == pytest.approx(10.5)


def test_a_volume_burst_is_judged_over_its_span():
    """One large trade in a quiet second is no burst over a span of four intervals, a burst
    trading on in each of them is, from its first interval on."""
    calm = [0.0, 1.0, 0.0, 1.0] * 20  # 0.5 per interval, 2 per span of 4
    single, span = VolumeBurst(40, 20, factor=10), VolumeBurst(40, 20, factor=10, span=4)
    for v in calm:
        assert single.update(v) is None and span.update(v) is None
    assert single.update(6.0) == pytest.approx(6.0 / statistics.fmean(calm))  # 12x
    assert span.update(6.0) is None  # (1 + 0 + 1 + 6) / 2: 4x
    burst = VolumeBurst(40, 20, factor=10, span=4)
    for v in calm:
        burst.update(v)
    assert burst.update(25.0) == pytest.approx(27.0 / 2)  # 1 + 0 + 1 + 25 over 2


@given(
    st.floats(min_value=1, max_value=1e5),
    st.floats(min_value=0, max_value=0.01),
    st.floats(min_value=-0.05, max_value=0.05),
)
def test_outside_book_is_the_distance_past_the_nearer_quote(bid, width, move):
    ask = bid * (1 + width)
    price = (bid + ask) / 2 * (1 + move)
    mid = (bid + ask) / 2
    if price > ask:
        expected = (price - ask) / mid * 1e4
    elif price < bid:
        expected = (bid - price) / mid * 1e4
    else:
        expected = 0.0
    assert outside_book_bps(price, bid, ask) == pytest.approx(expected, abs=1e-9)


def test_spread_and_crossed_quotes():
    assert spread_bps(99.0, 101.0) == pytest.approx(200.0)
    assert spread_bps(101.0, 99.0) < 0
    assert math.isnan(spread_bps(math.nan, 101.0))
    assert outside_book_bps(200.0, 101.0, 99.0) == 0  # a crossed quote judges nothing


def test_persisting_counts_only_after_its_hold():
    state = Persisting(1.0)
    assert [state.update(t, True) for t in (0.0, 0.5, 1.0, 1.5)] == [False, False, True, True]
    assert state.update(2.0, False) is False
    assert state.update(2.5, True) is False  # the hold starts again


def test_an_alert_is_raised_once_and_resolved_once_without_flapping():
    book = AlertBook(resolve_after_s=2.0)
    finding = Finding("price_jump", "binance", "BTCUSDT", 12.0, 10.0, "jump")
    raised = book.update(0.0, [finding])
    assert [(a.rule, a.state, a.time) for a in raised] == [("price_jump", "active", 0.0)]
    assert book.update(0.5, [finding]) == []  # still firing: nothing new
    assert book.update(1.0, []) == []  # quiet for 0 s
    assert book.update(2.0, [finding]) == []  # back before 2 s of quiet: same alert
    assert book.update(3.0, []) == []
    assert book.update(4.5, []) == []  # quiet 1.5 s
    resolved = book.update(5.0, [])  # quiet 2 s
    assert [(a.state, a.resolved_at, a.time) for a in resolved] == [("resolved", 5.0, 0.0)]
    assert book.update(6.0, []) == []
    assert book.raised["price_jump"] == 1
    assert [row["state"] for row in book.rows()] == ["resolved"]


QUIET = AlertSettings(window=40, min_samples=20, crossed_for_s=0.0, divergence_for_s=0.0)


def quote(bid: float, ask: float, venue: str = "binance") -> Quote:
    return Quote(venue, "BTCUSDT", bid, ask)


def test_rules_find_a_crossed_book_a_trade_outside_and_a_divergence():
    rules = Rules(QUIET)
    assert rules.evaluate(0.0, Observation(quotes=[quote(100.0, 100.1)])) == []
    seen = Observation(
        quotes=[quote(100.2, 100.1)],
        prints=[Print("binance", "BTCUSDT", 101.0, 1.0)],  # 90 bps above the ask before
        divergence=[("BTCUSDT", "okx", 60.0), ("BTCUSDT", "binance", -10.0)],
    )
    found = {(f.rule, f.venue): f for f in rules.evaluate(1.0, seen)}
    assert set(found) == {
        ("crossed_book", "binance"),
        ("trade_outside_book", "binance"),
        ("divergence", "okx"),
    }
    expected_outside = (101.0 - 100.1) / 100.05 * 1e4
    assert found["trade_outside_book", "binance"].value == pytest.approx(expected_outside)
    assert found["divergence", "okx"].value == 60.0


def test_a_calm_series_raises_no_market_alert():
    """Default thresholds on a random walk of small steps with a steady spread and volume."""
    import random

    rng = random.Random(7)
    rules, mid = Rules(AlertSettings()), 100.0
    for i in range(2000):
        mid *= math.exp(rng.gauss(0, 1.5e-4))
        half = mid * rng.uniform(0.5, 1.5) / 1e4
        prints = [Print("binance", "BTCUSDT", mid + rng.uniform(-half, half), rng.expovariate(1))]
        seen = Observation(quotes=[quote(mid - half, mid + half)], prints=prints)
        assert rules.evaluate(i * 0.5, seen) == [], i


def test_a_spread_blowout_must_last():
    settings = AlertSettings(window=40, min_samples=20, spread_for_s=1.0, spread_min_bps=5)
    rules = Rules(settings)
    t = 0.0
    for _ in range(30):  # 1 bps wide
        assert rules.evaluate(t, Observation(quotes=[quote(99.995, 100.005)])) == []
        t += 0.5
    wide = Observation(quotes=[quote(99.9, 100.1)])  # 20 bps: 20x the median
    assert rules.evaluate(t, wide) == []  # one wide quote
    assert rules.evaluate(t + 0.5, wide) == []
    found = rules.evaluate(t + 1.0, wide)  # wide for 1 s
    assert [f.rule for f in found] == ["spread_blowout"]
    assert found[0].value == pytest.approx(spread_bps(99.9, 100.1) / spread_bps(99.995, 100.005))


def test_a_trade_is_judged_only_against_a_quote_of_its_moment():
    rules = Rules(QUIET)
    rules.evaluate(0.0, Observation(quotes=[Quote("binance", "BTCUSDT", 100.0, 100.1, 60_000)]))
    late = Print("binance", "BTCUSDT", 105.0, 1.0, 60_000 + 2_001)  # 2 s after the quote
    near = Print("binance", "BTCUSDT", 105.0, 1.0, 60_000 + 1_500)
    assert rules.evaluate(0.5, Observation(prints=[late])) == []
    found = rules.evaluate(1.0, Observation(prints=[near]))
    assert [f.rule for f in found] == ["trade_outside_book"]


def test_an_alert_of_a_rule_not_judged_is_not_resolved():
    book = AlertBook(resolve_after_s=1.0)
    silence = Finding("silence", "binance", "BTCUSDT", 70.0, 60.0, "silent", "trade")
    book.update(0.0, [silence])
    assert book.update(5.0, [], judged=MARKET_RULES) == []  # the health rules did not look
    assert book.update(6.0, []) == []  # they look: quiet from now
    assert [a.state for a in book.update(7.0, [])] == ["resolved"]


def test_volumes_handed_in_count_over_the_prints():
    """The watch hands each symbol's extreme trades and the whole volume apart."""
    rules = Rules(AlertSettings(window=40, min_samples=20, volume_factor=10, volume_span_s=0.5))
    for i in range(20):
        rules.evaluate(i * 0.5, Observation(volumes={("binance", "BTCUSDT"): 1.0}))
    few = [Print("binance", "BTCUSDT", 100.0, 1.0)]
    heavy = Observation(prints=few, volumes={("binance", "BTCUSDT"): 10.5})
    found = rules.evaluate(10.0, heavy)
    assert [(f.rule, f.value) for f in found] == [("volume_burst", 10.5)]


def test_observed_divergence_is_the_lab_s_frame_read_as_is():
    from marketlab.lab.cross_venue import divergence_frame
    from marketlab.watch.rules import observe

    markets = {"BTCUSDT": {"binance": "BTCUSDT", "okx": "BTCUSDT", "bybit": "BTCUSDT"}}
    mids = {("binance", "BTCUSDT"): 100.0, ("okx", "BTCUSDT"): 101.0, ("bybit", "BTCUSDT"): 100.2}
    frame = divergence_frame(markets, mids)
    seen = observe(None, "binance", divergence=frame)
    median = statistics.median(mids.values())
    expected = {("BTCUSDT", v, (m / median - 1) * 1e4) for (v, _), m in mids.items()}
    assert {(s, v, round(b, 9)) for s, v, b in seen.divergence} == {
        (s, v, round(b, 9)) for s, v, b in expected
    }
    found = Rules(QUIET).evaluate(0.0, seen)
    assert [(f.rule, f.venue) for f in found] == [("divergence", "okx")]  # ~80 bps; 0 and 20 not
