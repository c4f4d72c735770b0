"""The order book against a brute-force model of the exchange's book."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketlab.records import BookDelta, BookSnapshot
from marketlab.venues.book import Action, OrderBook


class ExchangeModel:
    """The exchange's true book after every update id: dicts, no cleverness."""

    def __init__(self) -> None:
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self.uid = 100
        self.history: dict[int, tuple[dict, dict]] = {self.uid: ({}, {})}

    def event(self, changes: list[tuple[str, float, float]]) -> BookDelta:
        first = self.uid + 1
        for side, price, qty in changes:
            book = self.bids if side == "b" else self.asks
            if qty:
                book[price] = qty
            else:
                book.pop(price, None)
        self.uid += len(changes)
        self.history[self.uid] = (dict(self.bids), dict(self.asks))
        b = [(p, q) for s, p, q in changes if s == "b"]
        a = [(p, q) for s, p, q in changes if s == "a"]
        return BookDelta("BTCUSDT", first, self.uid, b, a, self.uid)

    def snapshot(self, at: int | None = None) -> BookSnapshot:
        uid = self.uid if at is None else at
        bids, asks = self.history[uid]
        return BookSnapshot(
            "BTCUSDT", uid, sorted(bids.items(), reverse=True), sorted(asks.items())
        )


# bids below 100, asks above 100: the model never crosses
CHANGE = st.one_of(
    st.tuples(st.just("b"), st.integers(90, 99).map(float), st.sampled_from([0.0, 1.0, 2.5, 7.0])),
    st.tuples(
        st.just("a"), st.integers(101, 110).map(float), st.sampled_from([0.0, 1.0, 2.5, 7.0])
    ),
)
EVENTS = st.lists(st.lists(CHANGE, min_size=1, max_size=4), min_size=1, max_size=40)


def assert_equals_exchange(book: OrderBook, model: ExchangeModel) -> None:
    bids, asks = model.history[book.last_update_id]
    assert book.bids() == sorted(bids.items(), reverse=True)
    assert book.asks() == sorted(asks.items())


def new_book(sides: str) -> OrderBook:
    """A book on the compiled sides (when built) or on their pure-Python twins."""
    return OrderBook("BTCUSDT", python_sides=sides == "python")


@pytest.mark.parametrize("sides", ["compiled", "python"])
@settings(max_examples=300)
@given(EVENTS, st.integers(0, 40), st.sets(st.integers(0, 40), max_size=3), st.integers(0, 5))
def test_book_equals_the_exchange_whenever_it_says_synced(
    sides, events, snap_after, lost, stale_by
):
    model = ExchangeModel()
    book = new_book(sides)
    pending_snapshot = False
    for i, changes in enumerate(events):
        delta = model.event(changes)
        if i in lost:
            continue  # the network ate it
        if book.on_delta(delta) is Action.FETCH_SNAPSHOT:
            pending_snapshot = True
        if pending_snapshot and i >= snap_after:
            # a snapshot may be older than the stream (served from a lagging replica)
            at = max(100, model.uid - stale_by)
            while at not in model.history:
                at -= 1
            pending_snapshot = book.on_snapshot(model.snapshot(at)) is Action.FETCH_SNAPSHOT
        if book.synced:
            assert_equals_exchange(book, model)
        else:
            assert book.bids() == [] and book.asks() == []  # never served while out of sync


def test_documented_procedure_step_by_step():
    model = ExchangeModel()
    book = OrderBook("BTCUSDT")
    d1 = model.event([("b", 99.0, 1.0)])  # 101
    d2 = model.event([("a", 101.0, 2.0), ("b", 98.0, 3.0)])  # 102-103
    assert book.on_delta(d1) is Action.FETCH_SNAPSHOT
    assert book.on_delta(d2) is Action.NONE and not book.synced
    snap = model.snapshot(101)  # includes d1 only
    d3 = model.event([("b", 99.0, 0.0)])  # 104: removes a level
    assert book.on_snapshot(snap) is Action.NONE and book.synced
    assert book.last_update_id == 103  # d1 dropped (u <= lastUpdateId), d2 applied
    assert book.on_delta(d3) is Action.NONE
    assert book.bids() == [(98.0, 3.0)] and book.asks() == [(101.0, 2.0)]
    assert book.on_delta(d3) is Action.NONE and book.stats.ignored == 1  # duplicate ignored


def test_a_gap_asks_for_a_new_snapshot_and_hides_the_book():
    model = ExchangeModel()
    book = OrderBook("BTCUSDT")
    book.on_delta(model.event([("b", 99.0, 1.0)]))
    book.on_snapshot(model.snapshot())
    assert book.synced
    model.event([("a", 105.0, 1.0)])  # lost
    assert book.on_delta(model.event([("a", 106.0, 1.0)])) is Action.FETCH_SNAPSHOT
    assert not book.synced and "gap" in book.reason and book.stats.gaps == 1
    assert book.bids() == [] and book.best_bid() is None
    assert book.on_snapshot(model.snapshot()) is Action.NONE and book.synced
    assert_equals_exchange(book, model)


def test_a_snapshot_older_than_the_buffer_is_fetched_again():
    model = ExchangeModel()
    book = OrderBook("BTCUSDT")
    model.event([("b", 99.0, 1.0)])  # 101, before we listened
    book.on_delta(model.event([("b", 98.0, 1.0)]))  # 102
    assert book.on_snapshot(model.snapshot(100)) is Action.FETCH_SNAPSHOT
    assert not book.synced and book.stats.stale_snapshots == 1
    assert book.on_snapshot(model.snapshot()) is Action.NONE and book.synced


def test_a_crossed_book_is_never_served():
    book = OrderBook("BTCUSDT")
    book.on_delta(BookDelta("BTCUSDT", 11, 11, [], [], 0))
    book.on_snapshot(BookSnapshot("BTCUSDT", 10, [(99.0, 1.0)], [(101.0, 1.0)]))
    assert book.synced
    action = book.on_delta(BookDelta("BTCUSDT", 12, 12, [(102.0, 1.0)], [], 0))
    assert action is Action.FETCH_SNAPSHOT and not book.synced and "crossed" in book.reason


def test_far_levels_are_pruned_to_bound_memory():
    book = OrderBook("BTCUSDT", max_levels=10)
    book.on_delta(BookDelta("BTCUSDT", 2, 2, [], [], 0))
    book.on_snapshot(
        BookSnapshot("BTCUSDT", 1, [(100.0 - i, 1.0) for i in range(10)], [(101.0, 1.0)])
    )
    for i in range(20):
        book.on_delta(BookDelta("BTCUSDT", 3 + i, 3 + i, [(50.0 - i, 1.0)], [], 0))
    assert len(book.bids()) <= 11
    assert book.bids()[0] == (100.0, 1.0)  # the best levels stay


def test_a_cut_snapshot_serves_only_the_range_it_knows_and_resyncs_when_price_leaves_it():
    book = OrderBook("BTCUSDT", max_levels=5, min_known_levels=2)
    book.on_delta(BookDelta("BTCUSDT", 2, 2, [], [], 0))
    bids = [(100.0 - i, 1.0) for i in range(5)]  # 100 .. 96: the side fills the limit
    book.on_snapshot(BookSnapshot("BTCUSDT", 1, bids, [(101.0, 1.0), (102.0, 1.0)]))
    assert book.synced and book.bid_floor == 96.0 and book.ask_ceiling == float("inf")
    # a level below the snapshot's range appears: it is real but what lies near it is unknown
    book.on_delta(BookDelta("BTCUSDT", 3, 3, [(90.0, 4.0)], [], 0))
    assert [p for p, _ in book.bids()] == [100.0, 99.0, 98.0, 97.0, 96.0]
    # price falls through the known range: fewer than 2 known bid levels remain
    action = book.on_delta(
        BookDelta("BTCUSDT", 4, 4, [(100.0, 0.0), (99.0, 0.0), (98.0, 0.0), (97.0, 0.0)], [], 0)
    )
    assert action is Action.FETCH_SNAPSHOT and not book.synced and "range" in book.reason
