"""Binance USDⓈ-M futures: frames and REST bodies mutated as a fuzzer mutates them give records
that keep the numbers' rules or the reader's own documented error; and a book fed the venue's
diff stream with events lost, repeated and late snapshots equals the venue's book whenever it
says it is synced."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from marketlab.records import BookSnapshot
from marketlab.venues.binance import perp_payloads as payloads
from marketlab.venues.binance.perp_book import PerpBook
from marketlab.venues.binance.perp_frames import PerpDecoder, PerpDepth
from marketlab.venues.binance.protocol import BinanceAPIError
from marketlab.venues.errors import FrameError, PayloadError
from tests.fuzzing import fuzz, mutated
from tests.venues.binance import perp_frames as F
from tests.venues.perpetuals import check_numbers


def _lawful(record: Any) -> None:
    if isinstance(record, PerpDepth):
        _lawful(record.delta)
        for price, qty in [*record.delta.bids, *record.delta.asks]:
            assert 0.0 < price < math.inf and 0.0 <= qty < math.inf
        return
    check_numbers(record)


@fuzz(2)
@given(st.sampled_from(F.FRAMES).flatmap(mutated))
def test_futures_frames_give_lawful_records_or_a_frame_error(frame):
    try:
        events = PerpDecoder().decode(frame)
    except FrameError:
        return
    for event in events:
        _lawful(event)


READERS = {
    "depth": lambda b: payloads.depth(b, "BTCUSDT-PERP"),
    "aggTrades": lambda b: payloads.agg_trades(b, "BTCUSDT-PERP"),
    "premiumIndex": payloads.mark_price,
    "fundingRate": payloads.funding_history,
    "openInterest": payloads.open_interest,
    "openInterestHist": payloads.open_interest_history,
    "exchangeInfo": payloads.perpetuals,
}


@fuzz(2)
@given(
    st.sampled_from(sorted(READERS)).flatmap(
        lambda name: st.tuples(st.just(name), mutated(F.REST[name]) | st.just(F.REST[name]))
    )
)
def test_futures_rest_bodies_give_lawful_records_or_a_payload_error(case):
    name, body = case
    try:
        out = READERS[name](body)
    except (PayloadError, BinanceAPIError):
        return
    for record in out if isinstance(out, list) else [out]:
        _lawful(record)
        for side in ("bids", "asks"):
            for price, qty in getattr(record, side, []):
                assert 0.0 < price < math.inf and 0.0 <= qty < math.inf


# --- the book against the venue's ------------------------------------------------------------

PRICES = [100.0 + i for i in range(-5, 6)]


@st.composite
def venue_run(draw: Any) -> tuple[list[tuple[int, int, int, list[Any], list[Any]]], list[int]]:
    """The venue's diff stream: events ``(U, u, pu, bids, asks)`` with ids jumping between
    them, each setting a few levels (bids below 100.5, asks above, so the book never
    crosses), and the indexes after which the venue's book is snapshotted."""
    events = []
    u = draw(st.integers(1, 50))
    for _ in range(draw(st.integers(1, 40))):
        start = u + draw(st.integers(1, 5))  # ids jump between events
        end = start + draw(st.integers(0, 5))
        bids = [
            (p, draw(st.sampled_from([0.0, 1.0, 2.5])))
            for p in draw(st.lists(st.sampled_from(PRICES[:6]), max_size=3, unique=True))
        ]
        asks = [
            (p, draw(st.sampled_from([0.0, 1.0, 3.0])))
            for p in draw(st.lists(st.sampled_from(PRICES[6:]), max_size=3, unique=True))
        ]
        events.append((start, end, u, bids, asks))
        u = end
    snaps = draw(st.lists(st.integers(0, len(events) - 1), max_size=4))
    return events, snaps


FATES = st.lists(st.sampled_from(["deliver", "deliver", "deliver", "lose", "repeat"]), max_size=40)


@fuzz(0.5)
@given(venue_run(), FATES)
def test_the_book_equals_the_venues_whenever_it_is_synced(run, fates):
    events, snapshot_points = run
    venue_bids: dict[float, float] = {}
    venue_asks: dict[float, float] = {}
    books_at: list[tuple[int, dict[float, float], dict[float, float]]] = []
    for _first, u, _pu, bids, asks in events:  # the venue's own book after each event
        for side, levels in ((venue_bids, bids), (venue_asks, asks)):
            for price, qty in levels:
                if qty == 0.0:
                    side.pop(price, None)
                else:
                    side[price] = qty
        books_at.append((u, dict(venue_bids), dict(venue_asks)))

    book = PerpBook("BTCUSDT-PERP")
    decoder = PerpDecoder()
    for i, (U, u, pu, bids, asks) in enumerate(events):
        fate = fates[i] if i < len(fates) else "deliver"
        if fate != "lose":
            msg = decoder.decode(F.depth(U, u, pu, bids, asks))[0]
            for _ in range(2 if fate == "repeat" else 1):
                book.on_depth(msg)
        if i in snapshot_points and not book.synced:
            lid, sb, sa = books_at[i]
            snap = BookSnapshot(
                "BTCUSDT-PERP",
                lid,
                sorted(sb.items(), reverse=True),
                sorted(sa.items()),
                F.T0,
            )
            book.on_snapshot(snap)
        if book.synced:
            at = book.last_update_id
            _, want_bids, want_asks = next(b for b in books_at if b[0] == at)
            assert dict(book.bids()) == want_bids
            assert dict(book.asks()) == want_asks
