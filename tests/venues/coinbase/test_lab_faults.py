"""A Lab on Coinbase through rate-limit answers (HTTP 429 ``RESOURCE_EXHAUSTED``) and an
outage (every connection cut, new ones and REST refused): every closed candle stays there once
and equal to the venue's REST candles, every trade id once with none missing (Coinbase's ids
are consecutive, so the gap is filled by id), and the books settle to the venue's."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from marketlab.sim import SimExchange
from tests.lab.test_lab import running_lab, trades_unique, wait_for
from tests.venues.coinbase.test_lab_sim import (
    SYMBOLS,
    assert_book_settles_to_the_venues,
    assert_candles_equal_the_venues,
    trades_contiguous,
)


@pytest.fixture
def sim() -> Iterator[SimExchange]:
    with SimExchange(list(SYMBOLS), speed=60, seed=19) as exchange:
        yield exchange


def test_rate_limit_answers_are_retried_and_no_candle_or_trade_is_lost(sim):
    with running_lab(sim, symbols=SYMBOLS, exchange="coinbase") as (lab, _):
        time.sleep(1.0)
        sim.inject("rest429", "4", venue="coinbase")  # the next four REST answers: 429
        sim.inject("drop", venue="coinbase")  # the reconnection refills over REST
        time.sleep(3.0)
        wait_for(lambda: lab.summary()["rest_rate_limited"] >= 1, 15, "the 429s seen")
        wait_for(lambda: lab.book("BTCUSDT").attrs["synced"], 15, "the book")

        def contiguous(symbol: str) -> bool:
            ids = list(lab.trades(symbol)["trade_id"])
            return ids == list(range(ids[0], ids[0] + len(ids)))

        # the gap's trades come by id once the venue answers again (after its backoff)
        # (after the venue's backoff, which a loaded machine stretches)
        wait_for(lambda: all(contiguous(s) for s in SYMBOLS), 40, "the trades refilled")
        assert lab.running and lab.summary()["error"] is None
        assert all(n >= 1 for n in lab.summary()["trades_backfilled"].values())
        for symbol in SYMBOLS:
            assert assert_candles_equal_the_venues(lab, sim, symbol) >= 4
            trades_contiguous(lab, symbol)
            trades_unique(lab, symbol)
        assert_book_settles_to_the_venues(lab, sim, "BTCUSDT")


def test_an_outage_is_ridden_out_with_every_trade_id_once(sim):
    with running_lab(sim, symbols=SYMBOLS, exchange="coinbase") as (lab, _):
        time.sleep(1.0)
        sim.inject("outage", "3", venue="coinbase")
        wait_for(lambda: not lab.summary()["connections"][0]["connected"], 10, "the outage")
        wait_for(lambda: lab.summary()["reconnects"] >= 1, 20, "the reconnection")
        wait_for(lambda: lab.book("ETHUSDT").attrs["synced"], 15, "the book")
        time.sleep(2.0)
        summary = lab.summary()
        assert lab.running and summary["error"] is None and not summary["trade_holes"]
        for symbol in SYMBOLS:
            assert assert_candles_equal_the_venues(lab, sim, symbol) >= 5
            trades_contiguous(lab, symbol)
        assert_book_settles_to_the_venues(lab, sim, "ETHUSDT")
