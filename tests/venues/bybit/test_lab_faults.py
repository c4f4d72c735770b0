"""A Lab on Bybit through what Bybit does to a client that asks too much or finds it away: a
REST ban (HTTP 403 and ten minutes without REST, which the client waits out without asking)
and an outage (every connection cut, new ones and REST refused). What it shows stays the
venue's, the book comes back to the venue's, and trades across the gaps are said to be
unverifiable, never claimed complete."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from marketlab.sim import SimExchange
from tests.lab.test_lab import assert_book_matches_exchange, running_lab, trades_unique, wait_for
from tests.venues.bybit.test_lab_sim import SYMBOLS, assert_candles_equal_the_venues


@pytest.fixture
def sim() -> Iterator[SimExchange]:
    with SimExchange(list(SYMBOLS), speed=60, seed=17) as exchange:
        yield exchange


def test_a_rest_ban_is_waited_out_without_one_request_into_it(sim):
    """Bybit bans an IP for ten minutes after a 403: the client sends nothing more until the
    ban has surely lifted (a request into a ban fails anyway), while the WebSocket goes on, and
    nothing it shows is wrong meanwhile."""
    with running_lab(sim, symbols=SYMBOLS, exchange="bybit") as (lab, _):
        time.sleep(1.0)
        sim.inject("rest403", venue="bybit")  # every REST request now answers 403: a 10 min ban
        sim.inject("drop", venue="bybit")  # the reconnection asks REST for the recent trades
        wait_for(lambda: lab.summary()["rest_rate_limited"] >= 1, 15, "the ban seen")
        wait_for(lambda: lab.book("BTCUSDT").attrs["synced"], 15, "the book over the WebSocket")
        time.sleep(0.5)  # requests already on their way when the ban began are answered
        asked, refused = sim.stats["rest_requests"], lab.summary()["rest_rate_limited"]
        time.sleep(3.0)  # three exchange minutes: candles close, backfill would want REST
        assert sim.stats["rest_requests"] == asked, "a request was sent into the ban"
        assert lab.summary()["rest_rate_limited"] == refused
        assert lab.running and lab.summary()["error"] is None
        for symbol in SYMBOLS:
            df = lab.klines(symbol, "1m")
            closed = df[df["closed"]]
            truth = {
                o["open_time"]: o
                for o in sim.klines(symbol, "1m", limit=1000, venue="bybit")
                if o["closed"]
            }
            for t, row in closed.iterrows():  # every candle shown is the venue's
                want = truth[int(t.value // 1_000_000)]
                assert (row.open, row.high, row.low, row.close) == (
                    want["open"],
                    want["high"],
                    want["low"],
                    want["close"],
                )
            trades_unique(lab, symbol)
        assert_book_matches_exchange(lab, sim, "BTCUSDT")


def test_an_outage_is_ridden_out_and_its_trades_are_said_unverifiable(sim):
    with running_lab(sim, symbols=SYMBOLS, exchange="bybit") as (lab, _):
        time.sleep(1.0)
        before = dict(lab.summary()["trades_unverifiable"])
        sim.inject("outage", "3", venue="bybit")
        wait_for(lambda: not lab.summary()["connections"][0]["connected"], 10, "the outage")
        wait_for(lambda: lab.summary()["reconnects"] >= 1, 20, "the reconnection")
        wait_for(lambda: lab.book("BTCUSDT").attrs["synced"], 15, "the book")
        time.sleep(2.0)
        summary = lab.summary()
        assert lab.running and summary["error"] is None
        for symbol in SYMBOLS:
            assert summary["trades_unverifiable"].get(symbol, 0) > before.get(symbol, 0)
            assert assert_candles_equal_the_venues(lab, sim, symbol) >= 5
            trades_unique(lab, symbol)
        assert_book_matches_exchange(lab, sim, "ETHUSDT")
