"""Coinbase's ``level2`` books and the connection's ``sequence_num`` chain, sans-I/O: snapshots
replace a book, updates set absolute sizes, and a message lost anywhere on the connection (any
channel's) empties every book until a new subscription's snapshot; checked against a plain model
of the venue through lost messages and resubscriptions."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from marketlab.records import BookSnapshot
from marketlab.venues import coinbase as cb
from marketlab.venues.book import Action
from marketlab.venues.coinbase.book import Break, CoinbaseBook, SequenceChain

T0 = 1767225600000


def message(action, bids, asks, seq, symbol="BTCUSD") -> cb.BookMessage:
    return cb.BookMessage(symbol, action, bids, asks, seq, T0 + seq)


def test_the_chain_starts_at_0_and_says_what_broke_it():
    chain = SequenceChain()
    assert [chain.observe(n) for n in (0, 1, 2)] == [None, None, None]
    found = chain.observe(5)
    assert found == Break(3, 5) and found.lost == 2 and "expected message 3, got 5" in str(found)
    assert chain.observe(6) is None  # it goes on from what it saw
    again = chain.observe(6)
    assert again == Break(7, 6) and again.lost == 0 and "again" in str(again)
    assert (chain.breaks, chain.lost) == (2, 2)
    late = SequenceChain()
    assert late.observe(1) == Break(0, 1)  # the first message is 0: message 0 was lost


def test_a_snapshot_then_absolute_updates():
    book = CoinbaseBook("BTCUSD")
    assert not book.synced and book.bids() == []
    snap = message("snapshot", [(99.0, 1.0), (98.0, 2.0)], [(100.0, 2.0)], 3)
    assert book.on_message(snap) is Action.NONE
    assert book.synced and book.last_update_id == 3 and book.verified_by == "sequence_num chain"
    assert book.on_message(message("update", [(98.0, 5.0)], [(100.0, 0.0)], 9)) is Action.NONE
    assert book.bids() == [(99.0, 1.0), (98.0, 5.0)] and book.asks() == []
    assert book.on_message(message("update", [], [(101.0, 1.5)], 10)) is Action.NONE
    assert book.asks() == [(101.0, 1.5)] and book.last_update_id == 10
    assert book.event_time == T0 + 10


def test_a_lost_message_empties_the_book_until_a_new_snapshot():
    book = CoinbaseBook("BTCUSD")
    book.on_message(message("snapshot", [(99.0, 1.0)], [(100.0, 1.0)], 0))
    assert book.lost("sequence gap") is Action.RESUBSCRIBE
    assert not book.synced and book.bids() == [] and book.reason == "sequence gap"
    assert book.stats.gaps == 1
    assert book.on_message(message("update", [(98.0, 1.0)], [], 7)) is Action.NONE  # ignored
    assert book.lost("another gap") is Action.RESUBSCRIBE  # its snapshot may have been lost
    assert book.on_message(message("snapshot", [(97.0, 1.0)], [(100.0, 1.0)], 9)) is Action.NONE
    assert book.synced and book.bids() == [(97.0, 1.0)] and book.snapshots == 2


def test_an_invalidated_book_asks_once_for_a_new_subscription_on_the_next_update():
    book = CoinbaseBook("BTCUSD")
    book.on_message(message("snapshot", [(99.0, 1.0)], [(100.0, 1.0)], 0))
    book.invalidate("stream interrupted")
    assert book.on_message(message("update", [], [], 1)) is Action.RESUBSCRIBE
    assert book.on_message(message("update", [], [], 2)) is Action.NONE


def test_a_book_whose_unsubscribe_took_effect_waits_quietly_for_its_new_snapshot():
    book = CoinbaseBook("BTCUSD")
    book.on_message(message("snapshot", [(99.0, 1.0)], [(100.0, 1.0)], 0))
    book.unsubscribed("subscribing again")
    assert not book.synced and book.bids() == [] and book.reason == "subscribing again"
    assert book.on_message(message("update", [(98.0, 1.0)], [], 1)) is Action.NONE  # asked
    assert book.on_message(message("snapshot", [(97.0, 1.0)], [(100.0, 1.0)], 2)) is Action.NONE
    assert book.synced and book.bids() == [(97.0, 1.0)]


def test_a_crossed_book_is_never_served():
    book = CoinbaseBook("BTCUSD")
    book.on_message(message("snapshot", [(99.0, 1.0)], [(100.0, 1.0)], 0))
    assert book.on_message(message("update", [(100.5, 1.0)], [], 1)) is Action.RESUBSCRIBE
    assert not book.synced and "crossed" in book.reason and book.bids() == []
    crossed = message("snapshot", [(101.0, 1.0)], [(100.0, 1.0)], 2)
    assert book.on_message(crossed) is Action.RESUBSCRIBE and not book.synced


def test_a_stream_snapshot_after_a_polled_rest_book_is_verified_by_the_chain_again():
    book = CoinbaseBook("BTCUSD")
    book.reset(BookSnapshot("BTCUSD", T0, [(99.0, 1.0)], [(100.0, 1.0)]), 100)
    assert book.synced and book.verified_by == "REST snapshot"
    book.on_message(message("snapshot", [(99.0, 2.0)], [(100.0, 1.0)], 4))
    assert book.verified_by == "sequence_num chain" and book.bids() == [(99.0, 2.0)]


# --- against a model of the venue -------------------------------------------------------------

PRODUCTS = ("BTCUSD", "ETHUSD")


class Venue:
    """Coinbase as a plain dict per side per product, numbering every message it sends on the
    connection (updates, snapshots and the other channels' messages alike) and keeping each
    product's book as of every number."""

    def __init__(self) -> None:
        self.books = {p: ({200.0: 1.0}, {600.0: 1.0}) for p in PRODUCTS}
        self.seq = -1
        self.history: dict[int, dict[str, tuple[dict[float, float], dict[float, float]]]] = {}

    def _number(self) -> int:
        self.seq += 1
        self.history[self.seq] = {p: (dict(b), dict(a)) for p, (b, a) in self.books.items()}
        return self.seq

    def update(self, product, bid_changes, ask_changes) -> cb.BookMessage:
        b = [(float(p), s) for p, s in bid_changes]  # bids 1-400
        a = [(float(p + 400), s) for p, s in ask_changes]  # asks 401-800: never crossed
        for side, changes in zip(self.books[product], (b, a), strict=True):
            for p, s in changes:
                if s:
                    side[p] = s
                else:
                    side.pop(p, None)
        return message("update", b, a, self._number(), product)

    def snapshot(self, product) -> cb.BookMessage:
        bids, asks = self.books[product]
        seq = self._number()
        return message(
            "snapshot", sorted(bids.items(), reverse=True), sorted(asks.items()), seq, product
        )

    def other(self) -> int:
        """A message of another channel (a heartbeat, a trade): only its number matters here."""
        return self._number()


class Client:
    """What the feed does with one connection's messages: the chain checked first, every book
    told when it breaks, and the books that asked subscribed to again."""

    def __init__(self) -> None:
        self.chain = SequenceChain()
        self.books = {p: CoinbaseBook(p) for p in PRODUCTS}
        self.wanted: set[str] = set()

    def receive(self, seq: int, msg: cb.BookMessage | None) -> None:
        found = self.chain.observe(seq)
        if found is not None:
            for p, book in self.books.items():
                if book.lost(str(found)) is Action.RESUBSCRIBE:
                    self.wanted.add(p)
        if msg is not None:
            if self.books[msg.symbol].on_message(msg) is Action.RESUBSCRIBE:
                self.wanted.add(msg.symbol)
            if msg.action == "snapshot":
                self.wanted.discard(msg.symbol)


levels = st.lists(
    st.tuples(st.integers(1, 400), st.sampled_from([0.0, 1.0, 0.5, 2.5, 10.0])), max_size=6
)
steps = st.one_of(
    st.tuples(st.just("update"), st.sampled_from(PRODUCTS), levels, levels, st.booleans()),
    st.tuples(st.just("other"), st.just(""), st.just([]), st.just([]), st.booleans()),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(steps, max_size=60), st.integers(0, 4), st.lists(st.booleans(), max_size=20))
def test_every_book_equals_the_venues_whenever_it_says_synced(plan, answer_after, lose_snapshot):
    """Through lost messages of any channel (each a gap in the chain) and lost snapshots: a
    book that asks to be subscribed again gets the venue's snapshot ``answer_after`` messages
    later (or never, when that snapshot is lost too: the next message shows the gap)."""
    venue, client = Venue(), Client()
    losses = iter(lose_snapshot)
    in_flight: list[str] = []
    countdown = 0

    def check(seq: int) -> None:
        for p, book in client.books.items():
            if book.synced:
                bids, asks = venue.history[seq][p]
                assert book.bids() == sorted(bids.items(), reverse=True), p
                assert book.asks() == sorted(asks.items()), p
            else:
                assert book.bids() == [] and book.asks() == []  # never served out of sync

    def send(msg: cb.BookMessage | None, seq: int, lost: bool) -> None:
        if not lost:
            client.receive(seq, msg)
            check(seq)

    for p in PRODUCTS:  # the first subscription
        snap = venue.snapshot(p)
        send(snap, snap.sequence_num, False)
    for kind, product, bid_changes, ask_changes, lost in plan:
        if kind == "update":
            msg = venue.update(product, bid_changes, ask_changes)
            send(msg, msg.sequence_num, lost)
        else:
            send(None, venue.other(), lost)
        if client.wanted and not in_flight:  # the feed sends the (un)subscribe round
            in_flight, countdown = sorted(client.wanted), answer_after
            client.wanted.clear()
        elif in_flight:
            if countdown == 0:
                for p in in_flight:
                    snap = venue.snapshot(p)
                    send(snap, snap.sequence_num, next(losses, False))
                in_flight = []
            else:
                countdown -= 1
    send(None, venue.other(), False)  # a heartbeat: a loss at the very end shows too
    for _ in range(4):  # the connection quietens: every book asked for comes back
        wanted = sorted({*client.wanted, *in_flight})
        client.wanted.clear()
        in_flight = []
        for p in wanted:
            snap = venue.snapshot(p)
            send(snap, snap.sequence_num, False)
    assert all(b.synced for b in client.books.values())
    check(venue.seq)
    lost_messages = sum(1 for s in plan if s[4])
    assert client.chain.lost <= lost_messages + len(lose_snapshot)
