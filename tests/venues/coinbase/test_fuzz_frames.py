"""Coinbase's decoders of frames and REST bodies, fed mutated documented input: each gives
records that keep the numbers' rules or raises its own documented error (a bad frame, a bad
payload, Coinbase's error answer), never anything else; and whatever a frame says, a book and
the sequence chain cope. The compiled reader of the hot channels, fed the same and splices of
its own cases, gives the decoder's message to the bit or leaves the frame (None)."""

from __future__ import annotations

import math
from typing import Any

import msgspec
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from marketlab.native import COMPILED
from marketlab.venues import coinbase as cb
from marketlab.venues.book import Action
from marketlab.venues.coinbase.book import CoinbaseBook, SequenceChain
from marketlab.venues.coinbase.frames import frame_reader
from tests.fuzzing import fuzz, mutated, restructured
from tests.venues.coinbase.test_frame_reader import READ, same
from tests.venues.coinbase.test_protocol import BOOK, CANDLES_REST, FRAMES, PRODUCTS, RECENT

REST_BODIES: list[tuple[Any, bytes]] = [
    (
        cb.parse_time,
        b'{"iso":"2024-02-27T03:37:14Z","epochSeconds":"1709005034","epochMillis":"1709005034333"}',
    ),
    (cb.parse_products, PRODUCTS),
    (lambda b: cb.parse_product_tickers(b, 1767225600000), PRODUCTS),
    (lambda b: cb.parse_candles(b, "BTCUSD", "1m", 1767225690000), CANDLES_REST),
    (lambda b: cb.parse_product_book(b, "BTCUSD"), BOOK),
    (lambda b: cb.parse_market_trades(b, "BTCUSD"), RECENT),
    (
        lambda b: cb.parse_candles(b, "BTCUSD", "1m", 0),
        b'{"error":"NOT_FOUND","error_details":"product not found","message":"not found"}',
    ),
]


def _lawful(record: Any) -> None:
    """A record's numbers by the rules, checked by hand (see marketlab.numbers)."""
    if isinstance(record, cb.BookMessage):
        for price, size in [*record.bids, *record.asks]:
            assert 0.0 < price < math.inf and 0.0 <= size < math.inf
        assert 0 <= record.sequence_num <= 2**63 - 1
        return
    if not isinstance(record, msgspec.Struct):
        return
    for name, value in msgspec.structs.asdict(record).items():
        if isinstance(value, float) and name not in ("change", "change_pct"):
            assert math.isnan(value) or 0.0 <= value < math.inf, (name, value)  # NaN: "unknown"
        elif isinstance(value, float):
            assert math.isnan(value) or math.isfinite(value), (name, value)
        elif isinstance(value, int) and not isinstance(value, bool):
            assert -1 <= value <= 2**63 - 1, (name, value)
            if name.endswith("time") and value != -1:
                assert 1_262_304_000_000 - 86_400_000 <= value <= 4_102_444_800_000, (name, value)
        elif isinstance(value, list):
            for price, qty in value:
                assert 0.0 < price < math.inf and 0.0 <= qty < math.inf


_SNAPSHOT = cb.BookMessage("BTCUSD", "snapshot", [(21921.3, 0.02)], [(21933.98, 1.0)], 0, 0)

KNOWN = (cb.BookMessage, cb.Heartbeat, cb.Subscriptions, cb.ErrorMessage, msgspec.Struct)


@fuzz(2)
@given(st.sampled_from(FRAMES).flatmap(lambda f: mutated(f) | st.just(f)))
def test_frames_give_lawful_records_or_a_frame_error(frame):
    try:
        msg = cb.CoinbaseDecoder().decode(frame)
    except cb.FrameError:
        return
    assert isinstance(msg, cb.Message) and isinstance(msg.events, list)
    if msg.sequence_num is not None:
        assert 0 <= msg.sequence_num <= 2**63 - 1
        SequenceChain().observe(msg.sequence_num)
    for event in msg.events:
        assert isinstance(event, KNOWN), event
        _lawful(event)
        if isinstance(event, cb.BookMessage):  # whatever a frame says, the book copes
            book = CoinbaseBook(event.symbol)
            book.on_message(_SNAPSHOT)
            assert isinstance(book.on_message(event), Action)


@fuzz(2)
@given(
    st.sampled_from(range(len(REST_BODIES))).flatmap(
        lambda i: st.tuples(st.just(i), mutated(REST_BODIES[i][1]) | st.just(REST_BODIES[i][1]))
    )
)
def test_rest_bodies_give_lawful_records_or_a_documented_error(case):
    which, body = case
    try:
        out = REST_BODIES[which][0](body)
    except (cb.PayloadError, cb.CoinbaseAPIError):
        return
    if isinstance(out, dict):  # the listing: symbol → tick
        assert all(0.0 <= tick < math.inf for tick in out.values())
        return
    for record in out if isinstance(out, list) else [out]:
        _lawful(record)


# the documented frames and the reader's own cases: every channel, odd spacing, key orders
READER_FRAMES = [*FRAMES, *READ.values()]
_READ = frame_reader()


def _spliced(draw: Any) -> bytes:
    a, b = draw(st.sampled_from(READER_FRAMES)), draw(st.sampled_from(READER_FRAMES))
    return a[: draw(st.integers(0, len(a)))] + b[draw(st.integers(0, len(b))) :]


@pytest.mark.skipif(not COMPILED, reason="the compiled reader is not in use")
@fuzz(2)
@given(
    st.sampled_from(READER_FRAMES).flatmap(lambda f: mutated(f) | st.just(f))
    | st.composite(_spliced)()
)
@example(b'{"channel":"heartbeats","timestamp":"2026-01-01T00:00:01Z","sequence_num":1,"events"')
def test_the_compiled_reader_gives_the_decoders_message_or_leaves_the_frame(frame):
    got = _READ(frame)
    if got is None:
        return
    want = cb.CoinbaseDecoder().decode(frame)  # a frame read is no bad frame
    assert same(got, want), (frame, got, want)


# the messages among them, as JSON objects to edit the structure of
_MESSAGES = [f for f in READER_FRAMES if b'"channel"' in f]


@pytest.mark.skipif(not COMPILED, reason="the compiled reader is not in use")
@fuzz()  # (each example larger than a mutation's: lists of hundreds)
@given(st.sampled_from(_MESSAGES).flatmap(restructured))
def test_the_compiled_reader_gives_the_decoders_message_of_near_valid_json_or_leaves_it(frame):
    """Valid JSON of the wrong shape (a value of another type, nested, a key twice with
    another value, numbers past a double's or int64's range, dates that are none, lists of
    hundreds)."""
    got = _READ(frame)
    if got is not None:
        want = cb.CoinbaseDecoder().decode(frame)
        assert same(got, want), (frame, got, want)


@pytest.mark.skipif(not COMPILED, reason="the compiled reader is not in use")
def test_the_compiled_reader_leaves_every_cut_of_a_frame():
    for frame in READER_FRAMES:
        whole = frame.rstrip()
        for n in range(len(whole)):
            assert _READ(whole[:n]) is None, whole[:n]
