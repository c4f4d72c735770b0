"""OKX's ``books`` channel as a local book, sans-I/O: the seqId chain, the checksum where one is
sent (0 is retired, not sent), heartbeats and seqId resets, checked against a plain model."""

from __future__ import annotations

import zlib

from hypothesis import given, settings
from hypothesis import strategies as st

from marketlab.venues import okx
from marketlab.venues.book import Action
from marketlab.venues.okx.book import OkxBook


def signed_crc(text: str) -> int:
    value = zlib.crc32(text.encode())
    return value - 2**32 if value >= 2**31 else value


# --- the book ---------------------------------------------------------------------------------


def message(action, bids, asks, seq, prev, checksum=None) -> okx.BookMessage:
    return okx.BookMessage("BTCUSDT", action, bids, asks, seq, prev, checksum, 0)


def model_checksum(bids: dict[str, str], asks: dict[str, str]) -> int:
    """The documented checksum, computed from a plain model of the book."""
    b = sorted(bids.items(), key=lambda kv: -float(kv[0]))[:25]
    a = sorted(asks.items(), key=lambda kv: float(kv[0]))[:25]
    fields = []
    for i in range(max(len(b), len(a))):
        if i < len(b):
            fields += list(b[i])
        if i < len(a):
            fields += list(a[i])
    return signed_crc(":".join(fields))


def test_snapshot_then_updates_keep_the_book_and_checksum():
    book = OkxBook("BTCUSDT")
    bids, asks = {"99.5": "1", "99": "2.0"}, {"100": "3", "101.25": "4"}
    assert (
        book.on_message(
            message(
                "snapshot",
                list(bids.items()),
                list(asks.items()),
                10,
                -1,
                model_checksum(bids, asks),
            )
        )
        is Action.NONE
    )
    assert book.synced and book.last_update_id == 10
    bids["99.5"] = "1.5"
    del asks["100"]
    update = message(
        "update", [("99.5", "1.5")], [("100", "0")], 11, 10, model_checksum(bids, asks)
    )
    assert book.on_message(update) is Action.NONE
    assert book.bids() == [(99.5, 1.5), (99.0, 2.0)] and book.asks() == [(101.25, 4.0)]


def test_a_checksum_mismatch_or_a_broken_chain_empties_the_book_and_asks_to_resubscribe():
    book = OkxBook("BTCUSDT")
    bids, asks = {"99": "1"}, {"100": "1"}
    book.on_message(
        message(
            "snapshot", list(bids.items()), list(asks.items()), 10, -1, model_checksum(bids, asks)
        )
    )
    bad = message("update", [("99", "2")], [], 11, 10, model_checksum(bids, asks))  # the old sum
    assert book.on_message(bad) is Action.RESUBSCRIBE
    assert not book.synced and "checksum mismatch" in book.reason and book.bids() == []
    assert (
        book.on_message(message("update", [], [], 12, 11)) is Action.NONE
    )  # waiting for the snapshot
    book.on_message(message("snapshot", [("99", "2")], [("100", "1")], 20, -1))
    assert book.synced
    assert book.on_message(message("update", [("98", "1")], [], 22, 21)) is Action.RESUBSCRIBE
    assert "gap" in book.reason and book.stats.gaps == 1
    book.on_message(message("snapshot", [("99", "2")], [("100", "1")], 30, -1))
    assert book.on_message(message("update", [("100.5", "1")], [], 31, 30)) is Action.RESUBSCRIBE
    assert "crossed" in book.reason


def test_an_invalidated_book_asks_once_for_a_new_subscription():
    book = OkxBook("BTCUSDT")
    book.on_message(message("snapshot", [("99", "1")], [("100", "1")], 10, -1))
    book.invalidate("stream interrupted")
    assert book.on_message(message("update", [], [], 11, 10)) is Action.RESUBSCRIBE
    assert book.on_message(message("update", [], [], 12, 11)) is Action.NONE


def apply_to_model(bids: dict[str, str], asks: dict[str, str], bid_changes, ask_changes):
    """Changes as the exchange sends them (asks at 401-800, never crossing the bids at 1-400),
    applied to a plain model of the book."""
    b = [(str(p), s) for p, s in bid_changes]
    a = [(str(p + 400), s) for p, s in ask_changes]
    for side, changes in ((bids, b), (asks, a)):
        for p, s in changes:
            if float(s):
                side[p] = s
            else:
                side.pop(p, None)
    return b, a


prices = st.integers(min_value=1, max_value=400)
sizes = st.sampled_from(["0", "1", "0.5", "2.50", "10"])


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.tuples(prices, sizes), max_size=6),
            st.lists(st.tuples(prices, sizes), max_size=6),
        ),
        max_size=30,
    )
)
def test_the_book_follows_any_valid_update_sequence(updates):
    """Bids at 1-400 and asks at 401-800 never cross; each update is checked by its checksum."""
    book = OkxBook("BTCUSDT")
    bids: dict[str, str] = {"200": "1"}
    asks: dict[str, str] = {"600": "1"}
    book.on_message(
        message(
            "snapshot", list(bids.items()), list(asks.items()), 1, -1, model_checksum(bids, asks)
        )
    )
    for seq, (bid_changes, ask_changes) in enumerate(updates, start=2):
        b, a = apply_to_model(bids, asks, bid_changes, ask_changes)
        assert (
            book.on_message(message("update", b, a, seq, seq - 1, model_checksum(bids, asks)))
            is Action.NONE
        )
    assert book.bids() == sorted(((float(p), float(s)) for p, s in bids.items()), reverse=True)
    assert book.asks() == sorted((float(p), float(s)) for p, s in asks.items())


# --- the book as OKX sends it today: checksum 0 (retired), heartbeats, seqId resets -----------


def test_a_checksum_of_0_is_not_sent_and_the_seq_chain_alone_keeps_the_book():
    book = OkxBook("BTCUSDT")
    assert (
        book.on_message(message("snapshot", [("99", "1")], [("100", "1")], 10, -1, 0))
        is Action.NONE
    )
    assert book.on_message(message("update", [("99", "2")], [], 11, 10, 0)) is Action.NONE
    assert book.synced and book.bids() == [(99.0, 2.0)] and book.checksum_failures == 0
    assert book.verified_by == "seqId chain" and book.unverified == 2
    assert book.on_message(message("update", [("98", "1")], [], 13, 12, 0)) is Action.RESUBSCRIBE
    assert "gap" in book.reason  # the chain still guards it


def test_a_non_zero_checksum_is_still_checked():
    book = OkxBook("BTCUSDT")
    bids, asks = {"99": "1"}, {"100": "1"}
    book.on_message(
        message("snapshot", [("99", "1")], [("100", "1")], 10, -1, model_checksum(bids, asks))
    )
    assert book.verified_by == "seqId chain + checksum" and book.checksums_verified == 1
    bids["99"] = "3"
    good = message("update", [("99", "3")], [], 11, 10, model_checksum(bids, asks))
    assert book.on_message(good) is Action.NONE and book.checksums_verified == 2
    wrong = model_checksum({"99": "4"}, asks)
    assert (
        book.on_message(message("update", [("99", "4")], [], 12, 11, wrong + 1))
        is Action.RESUBSCRIBE
    )
    assert "checksum mismatch" in book.reason and book.checksum_failures == 1


def test_a_heartbeat_keeps_the_book_and_must_still_continue_the_chain():
    """OKX: no change for a while → empty sides with seqId == prevSeqId == the last seqId."""
    book = OkxBook("BTCUSDT")
    book.on_message(message("snapshot", [("99", "1")], [("100", "1")], 10, -1, 0))
    assert book.on_message(message("update", [], [], 10, 10, 0)) is Action.NONE
    assert book.synced and book.stats.heartbeats == 1 and book.last_update_id == 10
    assert book.bids() == [(99.0, 1.0)] and book.asks() == [(100.0, 1.0)]
    assert book.on_message(message("update", [("99", "2")], [], 15, 10, 0)) is Action.NONE
    assert book.on_message(message("update", [], [], 12, 12, 0)) is Action.RESUBSCRIBE  # not ours
    assert "gap" in book.reason


def test_a_seq_reset_continues_the_chain_from_the_smaller_seq_id():
    """OKX maintenance: an update whose seqId is below its prevSeqId; then the usual rule."""
    book = OkxBook("BTCUSDT")
    book.on_message(message("snapshot", [("99", "1")], [("100", "1")], 1000, -1, 0))
    assert book.on_message(message("update", [("98", "5")], [], 3, 1000, 0)) is Action.NONE
    assert book.synced and book.stats.seq_resets == 1 and book.last_update_id == 3
    assert book.on_message(message("update", [("99", "0")], [], 5, 3, 0)) is Action.NONE
    assert book.bids() == [(98.0, 5.0)] and book.stats.gaps == 0
    assert book.on_message(message("update", [], [("101", "1")], 9, 1000, 0)) is Action.RESUBSCRIBE


ops = st.one_of(
    st.tuples(
        st.just("update"),
        st.lists(st.tuples(prices, sizes), max_size=6),
        st.lists(st.tuples(prices, sizes), max_size=6),
    ),
    st.tuples(st.just("heartbeat"), st.just([]), st.just([])),
    st.tuples(st.just("reset"), st.lists(st.tuples(prices, sizes), max_size=3), st.just([])),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(ops, max_size=40))
def test_production_books_follow_updates_heartbeats_and_resets_with_checksum_0(steps):
    """As OKX sends today: every checksum 0; heartbeats and seqId resets anywhere."""
    book = OkxBook("BTCUSDT")
    bids: dict[str, str] = {"200": "1"}
    asks: dict[str, str] = {"600": "1"}
    book.on_message(message("snapshot", list(bids.items()), list(asks.items()), 50, -1, 0))
    seq = 50
    for kind, bid_changes, ask_changes in steps:
        b, a = apply_to_model(bids, asks, bid_changes, ask_changes)
        new = {
            "update": seq + 1 + len(b) + len(a),
            "heartbeat": seq,
            "reset": seq // 3 if seq else 1,
        }[kind]
        assert book.on_message(message("update", b, a, new, seq, 0)) is Action.NONE
        seq = new
    assert book.synced and book.last_update_id == seq and book.verified_by == "seqId chain"
    assert book.stats.heartbeats == sum(1 for s in steps if s[0] == "heartbeat")
    assert book.bids() == sorted(((float(p), float(s)) for p, s in bids.items()), reverse=True)
    assert book.asks() == sorted((float(p), float(s)) for p, s in asks.items())
