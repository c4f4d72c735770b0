"""The perpetuals' figures hold the frames they are given: funding per venue, the basis table,
open interest under the close, and each liquidation at its time and price by side."""

import math

import pandas as pd
import pytest

from marketlab.charts import (
    basis_figure,
    funding_figure,
    liquidations_figure,
    open_interest_figure,
)
from marketlab.lab.perpetuals import basis_across_frame, liquidation_frame, open_interest_frame
from marketlab.records import Liquidation, OpenInterest

T0 = 1_796_000_000_000  # ms, on a minute


def _klines(n: int = 5) -> pd.DataFrame:
    index = pd.date_range(pd.Timestamp(T0, unit="ms", tz="UTC"), periods=n, freq="1min")
    close = [100.0 + i for i in range(n)]
    return pd.DataFrame(
        {
            "open": close,
            "high": [c + 1 for c in close],
            "low": [c - 1 for c in close],
            "close": close,
        },
        index=pd.Index(index, name="open_time"),
    )


def test_funding_bars_per_venue_in_percent_a_year():
    funding = pd.DataFrame(
        {
            "funding_rate": [0.0001, -0.0002],
            "annualized_pct": [10.95, -21.9],
            "next_funding_time": pd.to_datetime([T0, T0], unit="ms", utc=True),
            "premium_bps": [1.0, math.nan],
        },
        index=pd.MultiIndex.from_tuples(
            [("binance", "BTCUSDT-PERP"), ("okx", "BTCUSDT-PERP")], names=["exchange", "symbol"]
        ),
    )
    fig = funding_figure(funding)
    assert [t.name for t in fig.data] == ["binance", "okx"]
    assert list(fig.data[1].y) == [-21.9] and list(fig.data[0].x) == ["BTCUSDT-PERP"]
    assert fig.layout.yaxis.title.text == "funding, % a year"


def test_basis_heatmap_rows_are_the_perpetuals_venues_columns_the_spots():
    basis = basis_across_frame(
        "BTCUSDT-PERP",
        {"binance": 100.5, "okx": 101.0},
        {"binance": None, "okx": None},
        {"binance": "BTCUSDT", "okx": "BTCUSDT"},
        {"binance": 100.0, "okx": 101.0},
    )
    heat = basis_figure(basis).data[0]
    assert list(heat.y) == ["perpetual on binance", "perpetual on okx"]
    assert list(heat.x) == ["spot on binance", "spot on okx", "median spot"]
    assert heat.z[0][0] == pytest.approx(50.0) and heat.z[1][1] == pytest.approx(0.0)
    assert heat.z[1][2] == pytest.approx((101.0 / 100.5 - 1) * 1e4)


def test_open_interest_lies_under_the_close_on_one_time_axis():
    readings = [OpenInterest("BTCUSDT-PERP", T0 + i * 1000, 500.0 + i, math.nan) for i in range(3)]
    fig = open_interest_figure(_klines(), open_interest_frame(readings), "BTCUSDT-PERP", 2)
    close, oi = fig.data
    assert list(close.y) == [100.0, 101.0, 102.0, 103.0, 104.0]
    assert list(oi.y) == [500.0, 501.0, 502.0] and oi.yaxis == "y2"
    assert fig.layout.yaxis2.title.text == "open interest (BTC)"


def test_each_liquidation_is_a_marker_at_its_time_and_price_by_side():
    rows = [
        Liquidation("BTCUSDT-PERP", T0 - 60_000, "long", 90.0, 1.0, 90.0, True, 0),  # before
        Liquidation("BTCUSDT-PERP", T0 + 30_000, "long", 99.5, 2.0, 99.0, True, 0),
        Liquidation("BTCUSDT-PERP", T0 + 90_000, "short", 101.5, 0.5, 102.0, True, 0),
    ]
    fig = liquidations_figure(_klines(), liquidation_frame(rows), "BTCUSDT-PERP", 2)
    candles, longs, shorts = fig.data
    assert len(candles.x) == 5
    assert list(longs.y) == [99.5] and longs.marker.symbol == "triangle-down"
    assert list(shorts.y) == [101.5] and shorts.marker.symbol == "triangle-up"
    assert pd.Timestamp(shorts.x[0], tz="UTC") == pd.Timestamp(T0 + 90_000, unit="ms", tz="UTC")
    assert "a sample" in fig.layout.title.text  # Binance's kind: a lower bound
