"""A Lab on Coinbase against the simulator's Coinbase face (written from Coinbase's
documentation apart from the client): the book the venue shows, every closed candle once and
equal to the venue's, every trade id once, through a sequence gap, dropped connections and a
garbage frame."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from marketlab.lab import Lab
from marketlab.records import Interval
from marketlab.sim import SimExchange
from tests.lab.test_lab import running_lab, trades_unique, wait_for

SYMBOLS = ("BTCUSDT", "ETHUSDT")


@pytest.fixture
def sim() -> Iterator[SimExchange]:
    with SimExchange(list(SYMBOLS), speed=60, seed=13) as exchange:
        yield exchange


def assert_book_settles_to_the_venues(lab: Lab, sim: SimExchange, symbol: str) -> None:
    """With the exchange paused, the book comes to equal the exchange's (Coinbase's book has
    no id to compare at: its ``sequence_num`` counts a connection's messages). The exchange's
    book is read again each time: a paused exchange on a busy machine still makes the seconds
    that were due when it paused."""
    sim.pause()
    try:

        def levels() -> tuple[list, list]:
            df = lab.book(symbol, 50)
            bids, asks = df[df.side == "bid"], df[df.side == "ask"]
            return (
                list(zip(bids.price, bids.qty, strict=True)),
                list(zip(asks.price, asks.qty, strict=True)),
            )

        def equal() -> bool:
            truth = sim.book(symbol, 50, venue="coinbase")
            return levels() == (truth["bids"], truth["asks"])

        wait_for(equal, 15, f"{symbol}'s book")
        assert lab.book(symbol).attrs["synced"]
    finally:
        sim.resume()


def assert_candles_equal_the_venues(lab: Lab, sim: SimExchange, symbol: str) -> int:
    """Every closed candle in the frame is there once, in order, and equals the market's own
    record in what Coinbase's candles carry (prices and volume)."""
    df = lab.klines(symbol, "1m")
    closed = df[df["closed"]]
    opens = [int(t.value // 1_000_000) for t in closed.index]
    step = Interval("1m").ms
    assert len(opens) >= 2
    assert opens == list(range(opens[0], opens[-1] + step, step)), "a closed candle is missing"
    oracle = sim.klines(symbol, "1m", start=opens[0], end=opens[-1], limit=1000, venue="coinbase")
    assert [o["open_time"] for o in oracle] == opens
    for column in ("open", "high", "low", "close", "volume"):
        assert list(closed[column]) == [o[column] for o in oracle], column
    return len(opens)


def trades_contiguous(lab: Lab, symbol: str) -> None:
    """Coinbase's trade ids are consecutive per product: none missing, none twice."""
    ids = list(lab.trades(symbol)["trade_id"])
    assert ids == list(range(ids[0], ids[0] + len(ids))), "a trade is missing or repeated"


def test_a_coinbase_lab_collects_the_venues_book_candles_and_trades(sim):
    with running_lab(sim, symbols=SYMBOLS, exchange="coinbase") as (lab, _):
        wait_for(lambda: len(lab.trades("ETHUSDT")) > 20, what="trades")
        time.sleep(2.5)  # a few exchange minutes
        prices = lab.prices()
        assert list(prices.index) == list(SYMBOLS)
        for symbol in SYMBOLS:
            assert_book_settles_to_the_venues(lab, sim, symbol)
            assert assert_candles_equal_the_venues(lab, sim, symbol) >= 2
            trades_contiguous(lab, symbol)
        assert lab.book("BTCUSDT", 5).attrs["exchange"] == "coinbase"


def test_a_sequence_gap_resyncs_the_books_and_refills_the_trades(sim):
    with running_lab(sim, symbols=SYMBOLS, exchange="coinbase") as (lab, _):
        wait_for(lambda: lab.book("BTCUSDT").attrs["synced"], what="the book")
        time.sleep(1.0)
        sim.coinbase.skip_messages(3)
        time.sleep(2.0)
        wait_for(lambda: lab.book("BTCUSDT").attrs["synced"], 15, "the book resynced")
        for symbol in SYMBOLS:
            assert_book_settles_to_the_venues(lab, sim, symbol)
            trades_contiguous(lab, symbol)


def test_dropped_connections_and_a_garbage_frame_keep_every_candle_and_trade(sim):
    with running_lab(sim, symbols=SYMBOLS, exchange="coinbase") as (lab, _):
        time.sleep(1.5)
        assert sim.coinbase.send_malformed("garbage") >= 1
        # taken before the drops (the face delivers after its latency: a drop at once would
        # cut the frame off with its connection)
        wait_for(lambda: lab.summary()["bad_frames"] >= 1, 10, "the garbage frame")
        for _ in range(2):
            sim.coinbase.drop()
            time.sleep(2.5)  # ~2.5 exchange minutes pass each time
        wait_for(lambda: lab.summary()["reconnects"] >= 2, 15, "the reconnects")
        time.sleep(2.0)
        assert lab.summary()["bad_frames"] >= 1 and lab.running
        for symbol in SYMBOLS:
            assert assert_candles_equal_the_venues(lab, sim, symbol) >= 5
            trades_contiguous(lab, symbol)
            trades_unique(lab, symbol)
        assert_book_settles_to_the_venues(lab, sim, "BTCUSDT")
