"""Many books: each synced first from a cheap snapshot, then deepened beside the live one."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator

import pytest

from marketlab import Lab
from marketlab.sim import SimExchange
from marketlab.venues.binance.book_sync import depth_weight
from tests.conftest import START
from tests.lab.test_lab import assert_book_matches_exchange, wait_for

SYMBOLS = ["BTCUSDT", "ETHUSDT", "BNBUSDT"]


@pytest.fixture(scope="module")
def sim() -> Iterator[SimExchange]:
    with SimExchange(SYMBOLS, speed=60, seed=3, start_time=START) as exchange:
        yield exchange


def test_weights_are_binances() -> None:
    assert [depth_weight(n) for n in (100, 101, 500, 1000, 5000)] == [5, 25, 25, 50, 250]


def test_books_sync_cheap_first_then_deepen_without_ever_leaving_sync(sim: SimExchange) -> None:
    # a weight budget where deep snapshots of all three books would take over a quarter of it.
    # A shallow book may resync (at 60x the price soon leaves 100 levels): only that is allowed
    lab = Lab(
        SYMBOLS,
        channels=["book"],
        binance_ws_url=sim.ws_url,
        binance_rest_url=sim.rest_url,
        weight_limit=400,
    )
    lost: list[str] = []
    watching = threading.Event()

    def watch() -> None:  # a deep book never leaves sync (taking its place included)
        while not watching.wait(0.01):
            deep = set(lab._feed.deep_books)
            for s in SYMBOLS:
                state = lab.status().loc[(s, "depth"), "book"]
                if state != "synced" and (s in deep or "beyond the snapshot's range" not in state):
                    lost.append(f"{s}: {state}")

    lab.start()
    try:
        lab.wait_ready(30)
        feed = lab._feed
        assert feed.cheap_first and lab.summary()["books_deep"] < len(SYMBOLS)
        # each book read while shallow (its deep snapshot may land at any moment: a book still
        # shallow after it was read was shallow while read, as a book never goes back)
        first: dict[str, int] = {}
        cut = []
        for s in SYMBOLS:
            if s in feed.deep_books:
                continue
            size = len(lab.book(s, 5000))
            book = feed.books[s].book
            bounded = book.bid_floor > -math.inf or book.ask_ceiling < math.inf
            if s not in feed.deep_books:
                first[s] = size
                if bounded:
                    cut.append(s)
        shallow = list(first)
        assert shallow and cut == shallow  # known only as far as a 100-level snapshot reached
        watcher = threading.Thread(target=watch)
        watcher.start()
        wait_for(lambda: lab.summary()["books_deep"] == len(SYMBOLS), 30, "every book deepened")
        watching.set()
        watcher.join()
        assert not lost, lost[:5]
        deep = {s: len(lab.book(s, 5000)) for s in SYMBOLS}
        assert all(deep[s] > first[s] for s in shallow), (first, deep)
        for s in SYMBOLS:
            assert_book_matches_exchange(lab, sim, s)
    finally:
        watching.set()
        lab.stop()
