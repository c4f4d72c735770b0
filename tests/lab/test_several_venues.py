"""One Lab over four venues against one simulator: each venue's frames, books, candles and
stores kept apart and equal to that venue's own, and the cross-venue views (consolidated best
bid and ask, merged book, divergence) computed from what the venues show."""

from __future__ import annotations

import statistics
from collections.abc import Iterator

import pytest

from marketlab.lab import Lab
from marketlab.lab.options import plan_venues
from marketlab.records import Interval
from marketlab.sim import SimExchange
from marketlab.store.history import History
from tests.lab.test_lab import FAST, venue_options, wait_for

VENUES = ["binance", "okx", "bybit", "coinbase"]
SYMBOLS = ["BTCUSDT", "ETHUSDT"]


def every_venue(sim: SimExchange) -> dict:
    options: dict = {}
    for venue in VENUES:
        options.update(venue_options(sim, venue))
    return options


def levels(df) -> tuple[list, list]:
    bids, asks = df[df.side == "bid"], df[df.side == "ask"]
    return (
        list(zip(bids.price, bids.qty, strict=True)),
        list(zip(asks.price, asks.qty, strict=True)),
    )


def settle(lab: Lab, sim: SimExchange, symbol: str, depth: int = 20) -> dict[str, dict]:
    """With the exchange paused, wait until every venue's book in the Lab equals the venue's
    own; returns the venues' books (the truth the views are checked against)."""
    truth: dict[str, dict] = {}

    def equal() -> bool:
        # read again each time: a paused exchange may still make the step that was due
        truth.update({v: sim.book(symbol, depth, venue=v) for v in VENUES})
        for v in VENUES:
            df = lab.book(symbol, depth, exchange=v)
            want = ([tuple(x) for x in truth[v]["bids"]], [tuple(x) for x in truth[v]["asks"]])
            if not df.attrs["synced"] or levels(df) != want:
                return False
        return True

    wait_for(equal, 30, f"every venue's {symbol} book equal to the venue's")
    return truth


@pytest.fixture(scope="module")
def four() -> Iterator[tuple[Lab, SimExchange, object]]:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp, SimExchange(SYMBOLS, speed=60, seed=21) as sim:
        db = Path(tmp) / "four.sqlite"
        lab = Lab(
            SYMBOLS,
            intervals=["1m"],
            exchanges=VENUES,
            db=db,
            store=("klines", "trades"),
            # a paused exchange is silent: no idle cut while the views are compared
            **{**FAST, **every_venue(sim), "idle_timeout": 60.0},
        )
        lab.start()
        try:
            lab.wait_ready(60)
            yield lab, sim, db
        finally:
            lab.stop()
            assert not lab.running


def test_every_venue_has_its_own_rows_in_prices_and_status(four) -> None:
    lab, _, _ = four
    assert lab.exchanges == VENUES and lab.exchange == "binance"
    prices = lab.prices()
    assert list(prices.index.names) == ["exchange", "symbol"]
    assert sorted(prices.index) == sorted((v, s) for v in VENUES for s in SYMBOLS)
    assert prices["last"].notna().all()
    # every venue has a best bid and ask (Bybit's spot ticker has none: its book's top)
    assert prices[["bid", "ask"]].notna().all().all() and (prices["bid"] < prices["ask"]).all()
    status = lab.status()
    assert list(status.index.names) == ["exchange", "symbol", "stream"]
    assert set(status.index.get_level_values("exchange")) == set(VENUES)
    summary = lab.summary()
    assert summary["exchanges"] == VENUES and set(summary["venues"]) == set(VENUES)
    for venue in VENUES:
        assert summary["venues"][venue]["exchange"] == venue
        assert summary["venues"][venue]["running"] and summary["venues"][venue]["error"] is None
    # the first venue's keys stay at the top, as a one-venue Lab's
    assert summary["exchange"] == "binance"
    assert summary["venues"]["bybit"]["trades_unverifiable"] is not None


def test_each_venue_book_equals_that_venue_and_the_views_follow_them(four) -> None:
    lab, sim, _ = four
    sim.pause()
    try:
        truth = settle(lab, sim, "BTCUSDT")
        bbo = lab.bbo("BTCUSDT")
        best_bid_venue = max(VENUES, key=lambda v: truth[v]["bids"][0][0])  # ties: first listed
        best_ask_venue = min(VENUES, key=lambda v: truth[v]["asks"][0][0])
        consolidated = bbo.attrs["bbo"]
        assert consolidated["best_bid"] == truth[best_bid_venue]["bids"][0][0]
        assert consolidated["best_ask"] == truth[best_ask_venue]["asks"][0][0]
        assert consolidated["best_bid_venue"] == best_bid_venue
        assert consolidated["best_ask_venue"] == best_ask_venue
        assert list(bbo.index) == VENUES and bbo["synced"].all()
        for v in VENUES:
            assert bbo.loc[v, "bid"] == truth[v]["bids"][0][0]
            assert bbo.loc[v, "ask"] == truth[v]["asks"][0][0]

        book = lab.consolidated_book("BTCUSDT", depth=10)
        every_bid = sorted(
            ((p, q, v) for v in VENUES for p, q in truth[v]["bids"]), key=lambda x: -x[0]
        )
        bids = book[book.side == "bid"]
        assert list(bids.price) == [p for p, _, _ in every_bid[:10]]
        assert set(book.exchange) <= set(VENUES) and not book.attrs["excluded"]

        div = lab.divergence()
        for symbol in SYMBOLS:
            t = truth if symbol == "BTCUSDT" else settle(lab, sim, symbol)
            mids = {v: (t[v]["bids"][0][0] + t[v]["asks"][0][0]) / 2 for v in VENUES}
            median = statistics.median(mids.values())
            for v in VENUES:
                row = div.loc[(symbol, v)]
                assert row["mid"] == pytest.approx(mids[v])
                assert row["median"] == pytest.approx(median)
                assert row["bps"] == pytest.approx((mids[v] / median - 1) * 1e4)
                assert row["venues"] == 4
    finally:
        sim.resume()


def test_each_venue_candles_are_its_own_and_stored_under_its_name(four) -> None:
    lab, sim, db = four
    iv = Interval("1m")
    wait_for(
        lambda: all(lab.klines("BTCUSDT", "1m", exchange=v)["closed"].sum() >= 31 for v in VENUES),
        60,
        "a new candle closed on every venue",
    )
    for venue in VENUES:
        frame = lab.klines("BTCUSDT", "1m", exchange=venue)
        closed = frame[frame["closed"]]
        assert closed.index.is_unique
        start = int(closed.index[0].timestamp() * 1000)
        end = int(closed.index[-1].timestamp() * 1000)
        truth = {
            k["open_time"]: k
            for k in sim.klines("BTCUSDT", "1m", start, end + iv.ms - 1, venue=venue)
        }
        for t, row in closed.iterrows():
            want = truth[int(t.timestamp() * 1000)]
            assert (row.open, row.high, row.low, row.close) == (
                want["open"],
                want["high"],
                want["low"],
                want["close"],
            ), f"{venue} {t}"
    wait_for(
        lambda: all(not History(db=db, exchange=v).klines("BTCUSDT", "1m").empty for v in VENUES),
        20,
        "every venue's candles stored",
    )
    closes = {
        v: History(db=db, exchange=v).klines("BTCUSDT", "1m")["close"].iloc[-1] for v in VENUES
    }
    assert len(set(closes.values())) > 1, "the venues' prices differ a little, as real ones do"


def test_a_venue_refusing_a_symbol_stops_alone_and_says_so() -> None:
    with SimExchange(["BTCUSDT"], speed=60, seed=3) as sim:
        lab = Lab(
            {"binance": ["BTCUSDT"], "bybit": ["NOPEUSDT"]},
            channels=["trades", "ticker"],
            **{**FAST, **every_venue(sim)},
        )
        lab.start()
        try:
            with pytest.raises(RuntimeError, match="bybit"):
                lab.wait_ready(30)
            assert lab.running  # binance goes on
            venues = lab.summary()["venues"]
            assert "NOPEUSDT" in venues["bybit"]["error"] and not venues["bybit"]["running"]
            assert venues["binance"]["error"] is None
            wait_for(lambda: not lab.prices().empty, 15, "binance prices")
            assert list(lab.prices().index) == [("binance", "BTCUSDT")]
        finally:
            lab.stop()


def test_quotes_are_compared_only_when_declared_equivalent() -> None:
    with SimExchange(["BTCUSDT", "BTCUSD"], speed=60, seed=5) as sim:
        lab = Lab(
            {"binance": ["BTCUSDT"], "coinbase": ["BTCUSD"]},
            channels=["ticker", "book"],
            **{**FAST, **every_venue(sim)},
        )
        with lab:
            lab.wait_ready(40)
            with pytest.raises(ValueError, match="quote_equivalents"):
                lab.bbo("BTCUSDT")
            bbo = lab.bbo("BTCUSDT", quote_equivalents={"USD": "USDT"})
            assert bbo.attrs["symbols"] == {"binance": "BTCUSDT", "coinbase": "BTCUSD"}
            assert bbo.attrs["quotes"] == {"binance": "USDT", "coinbase": "USD as USDT"}
            book = lab.book("BTCUSD", exchange="coinbase")
            assert book.attrs["exchange"] == "coinbase" and book.attrs["synced"]
            with pytest.raises(KeyError, match="coinbase"):
                lab.book("BTCUSDT", exchange="coinbase")


def test_venues_and_their_symbols_are_checked_when_given() -> None:
    with pytest.raises(ValueError, match="exchanges="):
        plan_venues(["BTCUSDT"], "okx", ["binance", "okx"], None)
    with pytest.raises(ValueError, match="missing: okx"):
        plan_venues({"binance": ["BTCUSDT"]}, None, ["binance", "okx"], None)
    with pytest.raises(ValueError, match="kraken"):
        plan_venues(["BTCUSDT"], None, ["binance", "kraken"], None)
    with pytest.raises(ValueError, match="fallback"):
        plan_venues(["BTCUSDT"], None, ["binance", "bybit"], {"okx": "binance"})
    venues, wanted, fallbacks = plan_venues(
        {"coinbase": ["BTCUSD"], "binance": ["BTCUSDT"]}, None, None, "okx"
    )
    assert venues == ["coinbase", "binance"] and wanted["coinbase"] == ["BTCUSD"]
    assert fallbacks == {"coinbase": "okx"}
    with pytest.raises(ValueError, match="record="):
        Lab(SYMBOLS, exchanges=["binance", "okx"], record="x.mlrec")


def test_a_venue_fails_over_to_its_own_fallback_while_the_others_go_on() -> None:
    with SimExchange(SYMBOLS, speed=60, seed=9) as sim:
        lab = Lab(
            SYMBOLS,
            exchanges=["bybit", "coinbase"],
            channels=["ticker", "book", "klines"],
            fallback={"bybit": "binance"},
            failover_after=1.5,
            **{**FAST, **every_venue(sim), "fallback_after": 0.5},
        )
        with lab:
            lab.wait_ready(40)
            sim.refuse_connections(10, rest=True, venue="bybit")
            sim.drop_connections(venue="bybit")
            wait_for(lambda: lab.summary()["venues"]["bybit"]["failed_over"], 15, "the failover")

            def sources() -> dict:
                return lab.prices()["source"].groupby(level="exchange").agg(set).to_dict()

            wait_for(
                lambda: sources()["bybit"] == {"binance:ws"}, 10, "bybit's prices from Binance"
            )
            assert sources()["coinbase"] == {"ws"}
            assert not lab.summary()["venues"]["coinbase"]["failed_over"]
            wait_for(
                lambda: lab.book_levels("BTCUSDT", exchange="bybit").exchange == "binance",
                10,
                "Binance's book standing in for Bybit's",
            )
            assert lab.book("BTCUSDT", exchange="coinbase").attrs["exchange"] == "coinbase"
            wait_for(
                lambda: not lab.summary()["venues"]["bybit"]["failed_over"], 30, "the fail-back"
            )
            wait_for(lambda: sources()["bybit"] == {"ws"}, 10, "bybit's own prices again")
            assert lab.summary()["venues"]["bybit"]["failovers"] == 1
