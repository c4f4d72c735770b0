"""A Lab over Binance USDⓈ-M perpetuals on the simulator: the frames every symbol has (klines,
trades, book, prices, status) and the perpetuals' own (funding, mark, liquidations, open
interest), and the clear refusals of what is not collected yet."""

from __future__ import annotations

import time

import numpy as np
import pytest

from marketlab import Lab
from marketlab.records import Interval
from marketlab.sim.market import fmt_units


def _lab(sim, symbols, **kw) -> Lab:
    return Lab(
        symbols,
        exchange="binance",
        binance_perp_ws_url=sim.ws_url,
        binance_perp_rest_url=sim.rest_url,
        **kw,
    )


def _until(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_lab_of_perpetuals_serves_every_frame(sim):
    lab = _lab(sim, ["btcusdt-perp", "ETHUSDT-PERP"]).start()
    try:
        lab.wait_ready(30)
        market = sim.binance_perp.markets["BTCUSDT"]
        assert lab.symbols == ["BTCUSDT-PERP", "ETHUSDT-PERP"]

        # closed candles equal the venue's, each once
        klines = lab.klines("BTCUSDT-PERP")
        closed = klines[klines["closed"]]
        assert len(closed) > 10 and closed.index.is_unique
        pd_, qd = market.spec.price_decimals, market.spec.qty_decimals
        opens = [int(t.timestamp() * 1000) for t in closed.index[-5:]]
        rows = {r[0]: r for r in market.klines(Interval("1m"), opens[0], opens[-1], 10)}
        for t, row in zip(opens, closed.tail(5).itertuples(), strict=True):
            assert row.close == float(fmt_units(rows[t][4], pd_))
            assert row.volume == float(fmt_units(rows[t][5], qd))

        # trades by aggregate id, each once
        _until(lambda: len(lab.trades("BTCUSDT-PERP")) > 20)
        ids = lab.trades("BTCUSDT-PERP")["trade_id"].tolist()
        assert ids == list(range(ids[0], ids[0] + len(ids)))

        # the book is synced and its top is the venue's
        book = lab.book("BTCUSDT-PERP", 5)
        assert book.attrs["synced"] and book.attrs["verified"] == "update id chain"
        best = book[book["level"] == 0].set_index("side")["price"]
        assert best["bid"] < best["ask"]

        # funding, mark, liquidations, open interest
        funding = lab.funding()
        assert list(funding.index) == ["BTCUSDT-PERP", "ETHUSDT-PERP"]
        row = funding.loc["BTCUSDT-PERP"]
        assert -0.0075 <= row["funding_rate"] <= 0.0075
        assert row["annualized_pct"] == pytest.approx(row["funding_rate"] * 3 * 365 * 100)
        assert row["next_funding_time"].hour % 8 == 0 and row["next_funding_time"].minute == 0
        assert abs(row["premium_bps"]) < 20
        mark = lab.mark("BTCUSDT-PERP")
        assert mark["mark"] == pytest.approx(row["mark"], rel=0.01)
        _until(lambda: len(lab.liquidations("BTCUSDT-PERP")) > 0, 20)
        liq = lab.liquidations("BTCUSDT-PERP")
        assert liq.attrs["sampled"] and set(liq["side"]) <= {"long", "short"}
        assert (liq["notional"] == liq["price"] * liq["qty"]).all()
        _until(lambda: len(lab.open_interest("BTCUSDT-PERP")) > 0)
        assert (lab.open_interest("BTCUSDT-PERP")["open_interest"] > 0).all()

        status = lab.status()
        assert ("BTCUSDT-PERP", "depth") in status.index
        assert lab.prices().loc["BTCUSDT-PERP", "last"] > 0
    finally:
        lab.stop()


@pytest.mark.parametrize(
    ("symbols", "kw", "said"),
    [
        (["BTCUSDT-PERP"], {"fallback": "okx"}, "has no fallback venue"),
        (["BTCUSDT-PERP"], {"record": "x.mlrec"}, "not recorded yet"),
    ],
)
def test_what_is_not_collected_yet_is_refused_by_name(sim, symbols, kw, said):
    with pytest.raises(ValueError, match=said):
        _lab(sim, symbols, **kw)
    with pytest.raises(ValueError, match="not collected from Coinbase yet"):
        Lab(["BTCUSD-PERP"], exchange="coinbase")


def test_a_lab_of_bybit_linear_perpetuals(sim):
    lab = Lab(
        ["BTCUSDT-PERP"],
        exchange="bybit",
        bybit_perp_ws_url=sim.ws_url,
        bybit_perp_rest_url=sim.rest_url,
    ).start()
    try:
        lab.wait_ready(30)
        closed = lab.klines("BTCUSDT-PERP").query("closed")
        gaps = closed.index.to_series().diff().dropna().dt.total_seconds()
        assert len(closed) > 10 and (gaps == 60).all()
        assert lab.book("BTCUSDT-PERP", 5).attrs["synced"]
        _until(lambda: len(lab.trades("BTCUSDT-PERP")) > 10)
        row = lab.funding().loc["BTCUSDT-PERP"]
        assert -0.0075 <= row["funding_rate"] <= 0.0075 and abs(row["premium_bps"]) < 20
        _until(lambda: len(lab.open_interest("BTCUSDT-PERP")) > 0)
        _until(lambda: len(lab.liquidations("BTCUSDT-PERP")) > 0, 20)
        assert not lab.liquidations("BTCUSDT-PERP").attrs["sampled"]  # Bybit sends every one
    finally:
        lab.stop()


def test_a_venues_spot_and_perpetuals_in_one_lab_and_their_basis(sim):
    lab = _lab(
        sim,
        ["BTCUSDT", "BTCUSDT-PERP"],
        binance_ws_url=sim.ws_url,
        binance_rest_url=sim.rest_url,
    ).start()
    try:
        lab.wait_ready(30)
        for symbol in ("BTCUSDT", "BTCUSDT-PERP"):
            assert lab.klines(symbol).query("closed").index.is_unique
            assert lab.book(symbol, 3).attrs["synced"]
        prices = lab.prices()
        assert set(prices.index) == {"BTCUSDT", "BTCUSDT-PERP"}
        # a perpetual's mark and index beside its last price (the index tracks the spot pair);
        # a spot symbol has neither
        perp_row, spot_row = prices.loc["BTCUSDT-PERP"], prices.loc["BTCUSDT"]
        assert perp_row["mark"] == pytest.approx(perp_row["last"], rel=0.01)
        assert perp_row["index"] == pytest.approx(spot_row["last"], rel=0.01)
        assert np.isnan(spot_row["mark"]) and np.isnan(spot_row["index"])
        status = lab.status()
        assert ("BTCUSDT", "depth") in status.index and ("BTCUSDT-PERP", "depth") in status.index
        assert list(lab.funding().index) == ["BTCUSDT-PERP"]
        basis = lab.basis("btcusdt-perp")
        spot, perp = lab.book("BTCUSDT", 1), lab.book("BTCUSDT-PERP", 1)
        spot_mid = spot["price"].mean()  # the best bid and ask
        assert basis["spot_mid"] == pytest.approx(spot_mid, rel=1e-3)
        assert basis["perp_mid"] == pytest.approx(perp["price"].mean(), rel=1e-3)
        # the simulator's perpetual trades 3 bps over spot: its mid's basis is near that
        assert 0 < basis["basis_bps"] < 10
        assert basis["funding_annualized_pct"] == pytest.approx(
            basis["funding_rate"] * 3 * 365 * 100
        )
        with pytest.raises(KeyError, match="not a perpetual"):
            lab.basis("BTCUSDT")
    finally:
        lab.stop()


def test_a_lab_of_okx_swaps_merges_mark_and_funding(sim):
    lab = Lab(
        ["BTCUSDT-PERP"],
        exchange="okx",
        okx_perp_ws_url=sim.ws_url,
        okx_perp_rest_url=sim.rest_url,
    ).start()
    try:
        lab.wait_ready(30)
        closed = lab.klines("BTCUSDT-PERP").query("closed")
        gaps = closed.index.to_series().diff().dropna().dt.total_seconds()
        assert len(closed) > 10 and (gaps == 60).all()
        assert lab.book("BTCUSDT-PERP", 5).attrs["synced"]

        # OKX pushes the funding rate, the mark and the index on three channels: all held at once
        def held() -> bool:
            row = lab.funding().loc["BTCUSDT-PERP"]
            return bool(row[["funding_rate", "mark", "index", "next_funding_time"]].notna().all())

        _until(held, 40)
        row = lab.funding().loc["BTCUSDT-PERP"]
        assert -0.0075 <= row["funding_rate"] <= 0.0075 and row["mark"] > 0
        assert row["next_funding_time"].hour % 8 == 0
        assert np.isfinite(row["premium_bps"]) and abs(row["premium_bps"]) < 20
        assert lab.mark("BTCUSDT-PERP")["index"] > 0
        # the index is the face's: the perpetual's index at one of the last minute's seconds
        swap = sim.okx.swaps["BTC-USDT-SWAP"]
        newest = int(row["event_time"].timestamp() * 1000)
        pd_ = swap.spec.price_decimals
        face = {
            float(fmt_units(round(swap.perp.index(t)), pd_))
            for t in range(newest - 60_000, newest + 1, 1000)
        }
        assert row["index"] in face
        _until(lambda: len(lab.open_interest("BTCUSDT-PERP")) > 0)
        assert (lab.open_interest("BTCUSDT-PERP")["open_interest"] > 0).all()
    finally:
        lab.stop()
