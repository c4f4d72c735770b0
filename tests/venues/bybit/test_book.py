"""Bybit's ``orderbook.N`` channel as a local book, sans-I/O: the ``u`` chain, snapshots that
replace the book (re-sent ones and the ``u`` = 1 of a service restart), checked against a plain
model of the exchange's book through lost deltas, resubscriptions and resets."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from marketlab.records import BookSnapshot
from marketlab.venues import bybit
from marketlab.venues.book import Action
from marketlab.venues.bybit.book import BybitBook


def message(action, bids, asks, u, depth=50) -> bybit.BookMessage:
    return bybit.BookMessage("BTCUSDT", depth, action, bids, asks, u, 0, 1767225600000)


def test_a_snapshot_then_deltas_chained_by_u():
    book = BybitBook("BTCUSDT")
    assert not book.synced and book.bids() == []
    assert book.on_message(message("snapshot", [(99.0, 1.0)], [(100.0, 2.0)], 500)) is Action.NONE
    assert book.synced and book.last_update_id == 500 and book.verified_by == "u chain"
    assert book.on_message(message("delta", [(98.5, 3.0)], [(100.0, 0.0)], 501)) is Action.NONE
    assert book.bids() == [(99.0, 1.0), (98.5, 3.0)] and book.asks() == []
    assert book.on_message(message("delta", [], [(101.0, 1.0)], 502)) is Action.NONE
    assert book.asks() == [(101.0, 1.0)] and book.last_update_id == 502


def test_a_break_in_the_u_chain_empties_the_book_and_asks_once_to_resubscribe():
    book = BybitBook("BTCUSDT")
    book.on_message(message("snapshot", [(99.0, 1.0)], [(100.0, 1.0)], 10))
    assert book.on_message(message("delta", [(98.0, 1.0)], [], 12)) is Action.RESUBSCRIBE
    assert not book.synced and "gap" in book.reason and book.stats.gaps == 1
    assert book.bids() == [] and book.best_bid() is None
    assert book.on_message(message("delta", [], [], 13)) is Action.NONE  # asked already
    assert book.on_message(message("snapshot", [(99.0, 2.0)], [(100.0, 1.0)], 20)) is Action.NONE
    assert book.synced and book.bids() == [(99.0, 2.0)]
    # a repeated delta breaks the chain too: it is not u + 1
    assert book.on_message(message("delta", [(98.0, 1.0)], [], 21)) is Action.NONE
    assert book.on_message(message("delta", [(98.0, 1.0)], [], 21)) is Action.RESUBSCRIBE


def test_any_snapshot_replaces_the_book_whole_also_u_1_after_a_restart():
    book = BybitBook("BTCUSDT")
    book.on_message(message("snapshot", [(99.0, 1.0), (98.0, 1.0)], [(100.0, 1.0)], 9000))
    book.on_message(message("delta", [(97.0, 1.0)], [], 9001))
    assert book.on_message(message("snapshot", [(95.0, 4.0)], [(96.0, 1.0)], 1)) is Action.NONE
    assert book.synced and book.last_update_id == 1 and book.snapshots == 2
    assert book.bids() == [(95.0, 4.0)] and book.asks() == [(96.0, 1.0)]
    assert book.on_message(message("delta", [(95.5, 1.0)], [], 2)) is Action.NONE
    assert book.stats.resyncs == 0 and book.stats.gaps == 0


def test_a_crossed_book_is_never_served():
    book = BybitBook("BTCUSDT")
    book.on_message(message("snapshot", [(99.0, 1.0)], [(100.0, 1.0)], 1))
    assert book.on_message(message("delta", [(100.5, 1.0)], [], 2)) is Action.RESUBSCRIBE
    assert not book.synced and "crossed" in book.reason and book.bids() == []
    crossed = message("snapshot", [(101.0, 1.0)], [(100.0, 1.0)], 5)
    assert book.on_message(crossed) is Action.RESUBSCRIBE and not book.synced


def test_an_invalidated_book_asks_for_a_new_subscription_on_the_next_delta():
    book = BybitBook("BTCUSDT")
    book.on_message(message("snapshot", [(99.0, 1.0)], [(100.0, 1.0)], 10))
    book.invalidate("stream interrupted")
    assert not book.synced
    assert book.on_message(message("delta", [], [], 11)) is Action.RESUBSCRIBE
    assert book.on_message(message("delta", [], [], 12)) is Action.NONE


# --- against a model of the exchange ----------------------------------------------------------


class Exchange:
    """Bybit's book as a plain dict per side, and the messages it sends: a snapshot on
    subscription, deltas with ``u`` + 1, a snapshot re-sent at the same ``u``, and a restart
    that starts ``u`` again at 1 with a snapshot."""

    def __init__(self) -> None:
        self.bids: dict[float, float] = {200.0: 1.0}
        self.asks: dict[float, float] = {600.0: 1.0}
        self.u = 1000
        self.history: dict[int, tuple[dict[float, float], dict[float, float]]] = {}
        self._keep()

    def _keep(self) -> None:
        self.history[self.u] = (dict(self.bids), dict(self.asks))

    def _change(self, bid_changes, ask_changes):
        b = [(float(p), s) for p, s in bid_changes]  # bids 1-400
        a = [(float(p + 400), s) for p, s in ask_changes]  # asks 401-800: never crossed
        for side, changes in ((self.bids, b), (self.asks, a)):
            for p, s in changes:
                if s:
                    side[p] = s
                else:
                    side.pop(p, None)
        return b, a

    def delta(self, bid_changes, ask_changes) -> bybit.BookMessage:
        b, a = self._change(bid_changes, ask_changes)
        self.u += 1
        self._keep()
        return message("delta", b, a, self.u)

    def snapshot(self) -> bybit.BookMessage:
        bids = sorted(self.bids.items(), reverse=True)
        return message("snapshot", bids, sorted(self.asks.items()), self.u)

    def restart(self, bid_changes) -> bybit.BookMessage:
        self._change(bid_changes, [])
        self.u = 1
        self.history = {}  # the old u chain is gone
        self._keep()
        return self.snapshot()


levels = st.lists(
    st.tuples(st.integers(1, 400), st.sampled_from([0.0, 1.0, 0.5, 2.5, 10.0])), max_size=6
)
steps = st.one_of(
    st.tuples(st.just("delta"), levels, levels, st.booleans()),  # the bool: lost on the way
    st.tuples(st.just("resend"), st.just([]), st.just([]), st.just(False)),
    st.tuples(st.just("restart"), levels, st.just([]), st.just(False)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(steps, max_size=60), st.integers(0, 5))
def test_the_book_equals_the_exchanges_whenever_it_says_synced(plan, answer_after):
    """Through lost deltas (each a ``u`` gap), re-sent snapshots and restarts; a book that asks
    to resubscribe gets the exchange's snapshot ``answer_after`` messages later. (A restart's
    snapshot is never lost here: a client cannot tell a lost one from none, which is why a
    dropped connection always forgets the book.)"""
    exchange = Exchange()
    book = BybitBook("BTCUSDT")
    assert book.on_message(exchange.snapshot()) is Action.NONE
    waiting: int | None = None
    for kind, bid_changes, ask_changes, lost in plan:
        if kind == "delta":
            msg = exchange.delta(bid_changes, ask_changes)
        elif kind == "resend":
            msg = exchange.snapshot()
        else:
            msg = exchange.restart(bid_changes)
        if not lost and book.on_message(msg) is Action.RESUBSCRIBE:
            waiting = answer_after
        if waiting is not None:
            if waiting == 0:
                assert book.on_message(exchange.snapshot()) is Action.NONE
                waiting = None
            else:
                waiting -= 1
        if book.synced:
            bids, asks = exchange.history[book.last_update_id]
            assert book.bids() == sorted(bids.items(), reverse=True)
            assert book.asks() == sorted(asks.items())
        else:
            assert book.bids() == [] and book.asks() == []  # never served while out of sync
    book.on_message(exchange.snapshot())
    assert book.synced and book.last_update_id == exchange.u
    assert book.stats.gaps <= sum(1 for s in plan if s[0] == "delta" and s[3])


def test_a_stream_snapshot_after_a_polled_rest_book_is_verified_by_the_u_chain_again():
    book = BybitBook("BTCUSDT")
    book.reset(BookSnapshot("BTCUSDT", 7, [(99.0, 1.0)], [(100.0, 1.0)]), 100)
    assert book.synced and book.verified_by == "REST snapshot"
    book.on_message(message("snapshot", [(99.0, 2.0)], [(100.0, 1.0)], 8))
    assert book.verified_by == "u chain" and book.bids() == [(99.0, 2.0)]
