"""OKX swaps: pushes and REST bodies mutated as a fuzzer mutates them give records that keep the
numbers' rules (sizes in the base asset, finite) or the reader's own documented error; and a
book fed the venue's ``books`` pushes in contracts, with pushes lost and repeated and a fresh
snapshot after each break, equals the venue's book (in the base asset) whenever it is synced."""

from __future__ import annotations

import math
from typing import Any

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from marketlab.venues.book import Action
from marketlab.venues.errors import FrameError, PayloadError
from marketlab.venues.okx import perp_payloads as payloads
from marketlab.venues.okx.book import OkxBook
from marketlab.venues.okx.frames import BookMessage
from marketlab.venues.okx.perp_frames import OkxPerpDecoder
from marketlab.venues.okx.protocol import OkxAPIError
from tests.fuzzing import fuzz, mutated
from tests.venues.okx import test_perp as P
from tests.venues.perpetuals import check_numbers


def _lawful(record: Any) -> None:
    if isinstance(record, BookMessage):
        for price, qty in [*(record.bid_changes or []), *(record.ask_changes or [])]:
            assert 0.0 < price < math.inf and 0.0 <= qty < math.inf
        return
    check_numbers(record)


@fuzz(2)
@given(st.sampled_from(P.FRAMES).flatmap(mutated))
def test_swap_pushes_give_lawful_records_or_a_frame_error(frame):
    try:
        events = OkxPerpDecoder(P.VALUES).decode(frame)
    except FrameError:
        return
    for event in events:
        _lawful(event)


def _body(frame: bytes) -> bytes:
    return P.rest(msgspec.json.decode(frame)["data"])


READERS = {
    "instruments": lambda b: list(payloads.swap_contracts(b).values()),
    "funding-rate": payloads.funding_rate,
    "funding-rate-history": payloads.funding_history,
    "open-interest": lambda b: payloads.open_interest(b, P.VALUES),
    "mark-price": payloads.mark_prices,
    "open-interest-history": lambda b: payloads.open_interest_history(b, "BTCUSDT-PERP"),
    "books": lambda b: [payloads.swap_books(b, "BTCUSDT-PERP", 0.01)],
    "candles": lambda b: payloads.swap_candles(b, "BTCUSDT-PERP", "1m", 0.01),
    "history-trades": lambda b: payloads.swap_trades(b, "BTCUSDT-PERP", 0.01),
}
BODIES = {
    "instruments": P.INSTRUMENTS,
    "funding-rate": _body(P.FUNDING),
    "funding-rate-history": P.rest(
        [
            {
                "instId": P.BTC,
                "fundingRate": "0.0001",
                "realizedRate": "0.0001",
                "fundingTime": "1743609600000",
            }
        ]
    ),
    "open-interest": _body(P.OPEN_INTEREST),
    "mark-price": _body(P.MARK),
    "open-interest-history": P.rest(
        [[str(P.T0 + 300_000), "250", "2.5", "162500"], [str(P.T0), "240", "2.4", ""]]
    ),
    "books": P.rest(
        [{"asks": [["2", "3", "0", "1"]], "bids": [["1", "250", "0", "4"]], "ts": str(P.T0)}]
    ),
    "candles": _body(P.CANDLE),
    "history-trades": _body(P.TRADE),
}


@fuzz(2)
@given(
    st.sampled_from(sorted(READERS)).flatmap(
        lambda name: st.tuples(st.just(name), mutated(BODIES[name]) | st.just(BODIES[name]))
    )
)
def test_swap_rest_bodies_give_lawful_records_or_a_payload_error(case):
    name, body = case
    try:
        out = READERS[name](body)
    except (PayloadError, OkxAPIError):
        return
    for record in out:
        if isinstance(record, msgspec.Struct):
            _lawful(record)
        else:  # a SwapContract
            assert record.contract_value > 0 and math.isfinite(record.contract_value)


# --- the book against the venue's ------------------------------------------------------------

BID_PRICES = ["99", "99.5", "100"]
ASK_PRICES = ["100.5", "101", "101.5"]
CONTRACT = 0.01


@st.composite
def venue_run(draw: Any) -> list[tuple[list[list[str]], list[list[str]]]]:
    """The venue's book updates in contracts: each sets a few levels (bids below asks, so the
    book never crosses); size "0" removes a level."""
    sizes = st.sampled_from(["0", "1", "250", "0.5"])
    out = []
    for _ in range(draw(st.integers(1, 30))):
        bids = [
            [p, draw(sizes), "0", "1"]
            for p in draw(st.lists(st.sampled_from(BID_PRICES), max_size=2, unique=True))
        ]
        asks = [
            [p, draw(sizes), "0", "1"]
            for p in draw(st.lists(st.sampled_from(ASK_PRICES), max_size=2, unique=True))
        ]
        out.append((bids, asks))
    return out


FATES = st.lists(st.sampled_from(["deliver", "deliver", "deliver", "lose", "repeat"]), max_size=30)


def _push(action: str, bids: Any, asks: Any, seq: int, prev: int) -> bytes:
    return P.book(action, bids, asks, seq, prev)


@fuzz(0.5)
@given(venue_run(), FATES)
def test_the_swap_book_equals_the_venues_in_base_units_whenever_synced(updates, fates):
    decoder = OkxPerpDecoder(P.VALUES)
    venue: dict[str, dict[str, float]] = {"bids": {}, "asks": {}}
    book = OkxBook("BTCUSDT-PERP")
    book.on_message(decoder.decode(_push("snapshot", [], [], 1, -1))[0])
    seq = 1
    history = {1: ({}, {})}  # the venue's book after each seqId, in the base asset
    for i, (bids, asks) in enumerate(updates):
        for side, levels in (("bids", bids), ("asks", asks)):
            for p, sz, *_ in levels:
                if sz == "0":
                    venue[side].pop(p, None)
                else:
                    venue[side][p] = float(sz)
        prev, seq = seq, seq + 1
        history[seq] = tuple(  # type: ignore[assignment]
            {float(p): q * CONTRACT for p, q in venue[side].items()} for side in ("bids", "asks")
        )
        fate = fates[i] if i < len(fates) else "deliver"
        action = Action.NONE
        if fate != "lose":
            msg = decoder.decode(_push("update", bids, asks, seq, prev))[0]
            for _ in range(2 if fate == "repeat" else 1):
                action = book.on_message(msg)
        if action is Action.RESUBSCRIBE or not book.synced:  # a fresh subscription's snapshot
            snap_bids = [[p, str(q), "0", "1"] for p, q in venue["bids"].items()]
            snap_asks = [[p, str(q), "0", "1"] for p, q in venue["asks"].items()]
            snap_bids.sort(key=lambda r: -float(r[0]))
            snap_asks.sort(key=lambda r: float(r[0]))
            book.on_message(decoder.decode(_push("snapshot", snap_bids, snap_asks, seq, -1))[0])
        if book.synced:  # equal to the venue's book at the seqId it says it is at
            want_bids, want_asks = history[book.last_update_id]
            assert dict(book.bids()) == want_bids
            assert dict(book.asks()) == want_asks
