"""A perpetual's basis across venues: against every venue's spot mid and against their median,
in bps and annualized, beside the funding rate — the frame from given mids, then a Lab over
Binance, OKX and Bybit on the simulator, each collecting BTCUSDT and BTCUSDT-PERP."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import pytest

from marketlab import Lab
from marketlab.lab.perpetuals import basis_across_frame
from marketlab.records import MarkPrice
from marketlab.sim import SimExchange
from tests.lab.test_lab import FAST, venue_options

VENUES = ["binance", "okx", "bybit"]


def perpetual_venues(sim: SimExchange) -> dict:
    """The Lab options pointing each venue's spot and perpetual URLs at the simulator."""
    options: dict = {}
    for venue in VENUES:
        options.update(venue_options(sim, venue))
        options[f"{venue}_perp_ws_url"] = sim.ws_url
        options[f"{venue}_perp_rest_url"] = sim.rest_url
    return options


def _mark(mark: float, rate: float) -> MarkPrice:
    return MarkPrice("BTCUSDT-PERP", 1, mark, math.nan, math.nan, rate, -1)


def test_the_frame_puts_each_perpetual_against_each_spot_mid_and_their_median():
    df = basis_across_frame(
        "BTCUSDT-PERP",
        perp_mids={"binance": 100.5, "okx": math.nan},
        marks={"binance": _mark(100.2, 0.0001), "okx": None},
        spot_markets={"binance": "BTCUSDT", "okx": "BTCUSDT", "bybit": "BTCUSDT"},
        spot_mids={"binance": 100.0, "okx": 101.0, "bybit": math.nan},
    )
    assert list(df.index) == [
        *(("binance", "binance"), ("binance", "okx"), ("binance", "bybit")),
        ("binance", "median"),
        *(("okx", "binance"), ("okx", "okx"), ("okx", "bybit"), ("okx", "median")),
    ]
    assert df.attrs["median_of"] == ["binance", "okx"] and df.attrs["funding_hours"] == 8
    row = df.loc[("binance", "binance")]
    assert row["basis_bps"] == pytest.approx(50.0)  # 100.5 over 100
    assert row["mark_basis_bps"] == pytest.approx(20.0)  # 100.2 over 100
    # 50 bps each 8 h, 1,095 periods a year: 547.5 %
    assert row["basis_annualized_pct"] == pytest.approx(547.5)
    assert row["mark_basis_annualized_pct"] == pytest.approx(219.0)
    assert row["funding_annualized_pct"] == pytest.approx(10.95)
    assert df.loc[("binance", "okx"), "basis_bps"] == pytest.approx(-49.50495, rel=1e-6)
    median = df.loc[("binance", "median")]
    assert median["spot_mid"] == 100.5 and median["basis_bps"] == pytest.approx(0.0)
    assert median["spot_symbol"] == ""
    assert math.isnan(df.loc[("binance", "bybit"), "basis_bps"])  # no spot mid there
    okx = df.loc["okx"]
    assert okx["basis_bps"].isna().all() and okx["funding_rate"].isna().all()


def test_the_frame_with_no_spot_mid_anywhere_is_nan_not_an_error():
    df = basis_across_frame(
        "BTCUSDT-PERP",
        {"bybit": 100.0},
        {"bybit": None},
        {"bybit": "BTCUSDT"},
        {"bybit": math.nan},
    )
    assert df.attrs["median_of"] == [] and df["basis_bps"].isna().all()


@pytest.fixture(scope="module")
def three_venues() -> Iterator[Lab]:
    with SimExchange(["BTCUSDT"], speed=60, seed=29) as sim:
        lab = Lab(
            ["BTCUSDT", "BTCUSDT-PERP"],
            intervals=["1m"],
            exchanges=VENUES,
            **{**FAST, **perpetual_venues(sim)},
        )
        with lab:
            lab.wait_ready(60)
            yield lab


def test_a_lab_over_three_venues_gives_the_basis_across_them(three_venues):
    lab = three_venues
    deadline = time.monotonic() + 30
    while True:
        df = lab.basis_across("btcusdt-perp")
        if df[["basis_bps", "mark_basis_bps", "funding_rate"]].notna().all().all():
            break
        assert time.monotonic() < deadline, df
        time.sleep(0.2)
    assert list(df.index.get_level_values(0).unique()) == VENUES
    assert list(df.loc["binance"].index) == [*VENUES, "median"]
    assert df.attrs["spot_symbols"] == dict.fromkeys(VENUES, "BTCUSDT")
    # one simulated market: every venue's perpetual trades a few bps over every venue's spot
    assert (df["basis_bps"].abs() < 30).all() and (df["mark_basis_bps"].abs() < 30).all()
    # the same-venue rows are what lab.basis says of that venue, read a moment apart
    for venue in VENUES:
        own = lab.basis("BTCUSDT-PERP", exchange=venue)
        assert df.loc[(venue, venue), "spot_mid"] == pytest.approx(own["spot_mid"], rel=1e-3)
        assert df.loc[(venue, venue), "funding_rate"] == pytest.approx(
            lab.funding().loc[(venue, "BTCUSDT-PERP"), "funding_rate"], abs=1e-4
        )
    spot_mids = [df.loc[("binance", v), "spot_mid"] for v in VENUES]
    assert df.loc[("binance", "median"), "spot_mid"] == sorted(spot_mids)[1]
    with pytest.raises(KeyError, match="not a perpetual"):
        lab.basis_across("BTCUSDT")
    with pytest.raises(ValueError, match="no venue collects ETHUSDT-PERP"):
        lab.basis_across("ETHUSDT-PERP")
