"""A Lab on Bybit against the simulator's Bybit face (written from Bybit's documentation apart
from the client): what a researcher sees is the venue's data, through a ``u`` gap, a service
restart's snapshot with ``u`` = 1, dropped connections and a garbage frame."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from marketlab.lab import Lab
from marketlab.records import Interval
from marketlab.sim import SimExchange
from tests.lab.test_lab import assert_book_matches_exchange, running_lab, trades_unique, wait_for

SYMBOLS = ("BTCUSDT", "ETHUSDT")


@pytest.fixture
def sim() -> Iterator[SimExchange]:
    with SimExchange(list(SYMBOLS), speed=60, seed=11) as exchange:
        yield exchange


def assert_candles_equal_the_venues(lab: Lab, sim: SimExchange, symbol: str) -> int:
    """Every closed candle in the frame is there once, in order, and equals the market's own
    record in what Bybit's candles carry (prices, volume, turnover)."""
    df = lab.klines(symbol, "1m")
    closed = df[df["closed"]]
    opens = [int(t.value // 1_000_000) for t in closed.index]
    step = Interval("1m").ms
    assert len(opens) >= 2
    assert opens == list(range(opens[0], opens[-1] + step, step)), "a closed candle is missing"
    oracle = sim.klines(symbol, "1m", start=opens[0], end=opens[-1], limit=1000, venue="bybit")
    assert [o["open_time"] for o in oracle] == opens
    for column in ("open", "high", "low", "close", "volume", "quote_volume"):
        assert list(closed[column]) == [o[column] for o in oracle], column
    return len(opens)


def test_a_bybit_lab_collects_the_venues_book_candles_and_trades(sim):
    with running_lab(sim, symbols=SYMBOLS, exchange="bybit") as (lab, _):
        wait_for(lambda: len(lab.trades("ETHUSDT")) > 20, what="trades")
        time.sleep(2.5)  # a few exchange minutes
        prices = lab.prices()
        assert list(prices.index) == list(SYMBOLS) and (prices["source"] == "ws").all()
        for symbol in SYMBOLS:
            assert_book_matches_exchange(lab, sim, symbol)
            assert assert_candles_equal_the_venues(lab, sim, symbol) >= 2
            trades_unique(lab, symbol)
        book = lab.book("BTCUSDT", 5)
        assert book.attrs["exchange"] == "bybit" and book.attrs["verified"] == "u chain"


def test_a_u_gap_and_a_restart_snapshot_resync_the_book_to_the_venues(sim):
    with running_lab(sim, symbols=SYMBOLS, exchange="bybit") as (lab, _):
        wait_for(lambda: lab.book("BTCUSDT").attrs["synced"], what="the book")
        sim.bybit.skip_books(2, symbol="BTCUSDT")
        wait_for(lambda: lab._feed.books["BTCUSDT"].book.stats.gaps >= 1, 15, "the gap seen")
        wait_for(lambda: lab.book("BTCUSDT").attrs["synced"], 15, "the book resynced")
        assert lab._feed.books["ETHUSDT"].book.stats.gaps == 0
        assert_book_matches_exchange(lab, sim, "BTCUSDT")
        sim.bybit.reset_books("BTCUSDT")  # the service restarts: a snapshot with u = 1
        wait_for(lambda: lab.book("BTCUSDT").attrs["last_update_id"] < 100, 15, "u from 1")
        assert_book_matches_exchange(lab, sim, "BTCUSDT")
        assert_book_matches_exchange(lab, sim, "ETHUSDT")


def test_dropped_connections_and_a_garbage_frame_keep_every_candle(sim):
    with running_lab(sim, symbols=SYMBOLS, exchange="bybit") as (lab, _):
        time.sleep(1.5)
        assert sim.bybit.send_malformed("garbage") >= 1
        for _ in range(2):
            sim.bybit.drop()
            time.sleep(2.5)  # ~2.5 exchange minutes pass each time
        wait_for(lambda: lab.summary()["reconnects"] >= 2, 15, "the reconnects")
        time.sleep(1.5)
        summary = lab.summary()
        assert summary["bad_frames"] >= 1 and lab.running
        # Bybit's trade ids skip: what was traded during a drop cannot be checked, and it says so
        assert all(summary["trades_unverifiable"].get(s, 0) >= 2 for s in SYMBOLS)
        for symbol in SYMBOLS:
            assert assert_candles_equal_the_venues(lab, sim, symbol) >= 5
            trades_unique(lab, symbol)
        wait_for(lambda: lab.book("BTCUSDT").attrs["synced"], 15, "the book resynced")
        assert_book_matches_exchange(lab, sim, "BTCUSDT")
