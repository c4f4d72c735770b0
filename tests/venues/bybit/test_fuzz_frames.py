"""Bybit's decoders of frames and REST bodies, fed mutated documented input: each gives records
that keep the numbers' rules or raises its own documented error (a bad frame, a bad payload,
Bybit's error answer), never anything else; the compiled reader of pushes never crashes and
gives None or, to the bit, the decoder's records."""

from __future__ import annotations

import math
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketlab.native import COMPILED
from marketlab.venues import bybit
from marketlab.venues.book import Action
from marketlab.venues.bybit.book import BybitBook
from marketlab.venues.bybit.frames import compiled_reader
from tests.fuzzing import fuzz, mutated, restructured
from tests.venues.bybit.test_frame_reader import TOPICS, USUAL, check
from tests.venues.bybit.test_protocol import FRAMES

REST_BODIES: list[tuple[Any, bytes]] = [
    (
        bybit.parse_time,
        b'{"retCode":0,"retMsg":"OK","result":{"timeSecond":"1688639403",'
        b'"timeNano":"1688639403423213947"},"retExtInfo":{},"time":1688639403423}',
    ),
    (
        lambda b: bybit.parse_klines(b, "BTCUSDT", "1h", 1670608860000),
        b'{"retCode":0,"retMsg":"OK","result":{"symbol":"BTCUSDT","category":"spot","list":['
        b'["1670608800000","17071","17073","17027","17055.5","268611","15.74462667"],'
        b'["1670605200000","17071.5","17071.5","17061","17071","4177","0.24469757"]]},'
        b'"retExtInfo":{},"time":1672025956592}',
    ),
    (
        lambda b: bybit.parse_orderbook(b, "BTCUSDT"),
        b'{"retCode":0,"retMsg":"OK","result":{"s":"BTCUSDT","a":[["65557.7","16.606555"]],'
        b'"b":[["65485.47","47.081829"]],"ts":1716863719031,"u":230704,"seq":1432604333,'
        b'"cts":1716863718905},"retExtInfo":{},"time":1716863719382}',
    ),
    (
        lambda b: bybit.parse_recent_trades(b, "BTCUSDT"),
        b'{"retCode":0,"retMsg":"OK","result":{"category":"spot","list":[{"execId":'
        b'"2100000000007764263","symbol":"BTCUSDT","price":"16618.49","size":"0.00012",'
        b'"side":"Buy","time":"1672052955758","isBlockTrade":false,"isRPITrade":true,'
        b'"seq":"123456"}]},"retExtInfo":{},"time":1672053054358}',
    ),
    (
        bybit.parse_tickers,
        b'{"retCode":0,"retMsg":"OK","result":{"category":"spot","list":[{"symbol":"BTCUSDT",'
        b'"bid1Price":"20517.96","bid1Size":"2","ask1Price":"20527.77","ask1Size":"1.862172",'
        b'"lastPrice":"20533.13","prevPrice24h":"20393.48","price24hPcnt":"0.0068",'
        b'"highPrice24h":"21128.12","lowPrice24h":"20318.89","turnover24h":"243765620.65899866",'
        b'"volume24h":"11801.27771","usdIndexPrice":"20784.12009279"}]},"retExtInfo":{},'
        b'"time":1673859087947}',
    ),
    (
        bybit.parse_instruments,
        b'{"retCode":0,"retMsg":"OK","result":{"category":"spot","list":[{"symbol":"BTCUSDT",'
        b'"baseCoin":"BTC","quoteCoin":"USDT","status":"Trading","priceFilter":'
        b'{"tickSize":"0.01"}}]},"retExtInfo":{},"time":1767225600000}',
    ),
    (
        lambda b: bybit.parse_orderbook(b, "BTCUSDT"),
        b'{"retCode":10001,"retMsg":"params error: symbol invalid","result":{"category":"",'
        b'"list":[],"nextPageCursor":""},"retExtInfo":{},"time":1767225600000}',
    ),
]


def _lawful(record: Any) -> None:
    """A record's numbers by the rules, checked by hand (see marketlab.numbers)."""
    if isinstance(record, bybit.BookMessage):
        for price, size in [*record.bids, *record.asks]:
            assert 0.0 < price < math.inf and 0.0 <= size < math.inf
        assert 0 <= record.update_id <= 2**63 - 1
        return
    if not isinstance(record, msgspec.Struct):
        return
    for name, value in msgspec.structs.asdict(record).items():
        if isinstance(value, float) and name not in ("change", "change_pct"):
            assert math.isnan(value) or 0.0 <= value < math.inf, (name, value)  # NaN: "unknown"
        elif isinstance(value, float):
            assert math.isfinite(value), (name, value)
        elif isinstance(value, int) and not isinstance(value, bool):
            assert -1 <= value <= 2**63 - 1, (name, value)
            if name.endswith("time") and value != -1:
                assert 1_262_304_000_000 - 86_400_000 <= value <= 4_102_444_800_000, (name, value)
        elif isinstance(value, list):
            for price, qty in value:
                assert 0.0 < price < math.inf and 0.0 <= qty < math.inf


_SNAPSHOT = bybit.BookMessage(
    "BTCUSDT", 50, "snapshot", [(16493.5, 0.006)], [(16611.0, 0.029)], 177400506, 1, 1672304484978
)

# what a frame gives besides records (msgspec Structs)
KNOWN = (bybit.BookMessage, bybit.SubscriptionResult, bybit.Pong, msgspec.Struct)


@fuzz(2)
@given(st.sampled_from(FRAMES).flatmap(lambda f: mutated(f) | st.just(f)))
def test_frames_give_lawful_records_or_a_frame_error(frame):
    try:
        events = bybit.BybitDecoder().decode(frame)
    except bybit.FrameError:
        return
    assert isinstance(events, list)
    for event in events:
        assert isinstance(event, KNOWN), event
        _lawful(event)
        if isinstance(event, bybit.BookMessage):  # whatever a frame says, the book copes
            book = BybitBook(event.symbol)
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
    except (bybit.PayloadError, bybit.BybitAPIError):
        return
    for record in out if isinstance(out, list) else [out]:
        _lawful(record)


# Pushes of every kind and shape the compiled reader reads, and the control answers
READER_FRAMES = [*FRAMES, *USUAL.values()]


@st.composite
def spliced(draw: Any) -> bytes:
    """The head of one frame joined to the tail of another (or the same) at any two points."""
    a, b = draw(st.sampled_from(READER_FRAMES)), draw(st.sampled_from(READER_FRAMES))
    return a[: draw(st.integers(0, len(a)))] + b[draw(st.integers(0, len(b))) :]


@pytest.mark.skipif(not COMPILED, reason="the compiled reader is not in use")
@fuzz(2)
@given(st.sampled_from(READER_FRAMES).flatmap(lambda f: mutated(f) | st.just(f)) | spliced())
def test_the_compiled_reader_gives_none_or_the_decoders_records(frame):
    check(compiled_reader(TOPICS), frame)


# the pushes among them, as JSON objects to edit the structure of
_PUSHES = [f for f in READER_FRAMES if b'"topic"' in f]


@pytest.mark.skipif(not COMPILED, reason="the compiled reader is not in use")
@fuzz()  # (each example larger than a mutation's: lists of hundreds)
@given(st.sampled_from(_PUSHES).flatmap(restructured))
def test_the_compiled_reader_gives_none_or_the_decoders_records_of_near_valid_json(frame):
    """Valid JSON of the wrong shape (a value of another type, nested, a key twice with
    another value, numbers past a double's or int64's range, lists of hundreds)."""
    check(compiled_reader(TOPICS), frame)


@pytest.mark.skipif(not COMPILED, reason="the compiled reader is not in use")
def test_the_compiled_reader_reads_no_frame_cut_short():
    read = compiled_reader(TOPICS)
    for frame in READER_FRAMES:
        for end in range(len(frame) - 1):  # (a cut of trailing spaces only is still whole)
            cut = frame[:end]
            if cut.rstrip() != frame.rstrip():
                assert read(cut) is None, cut
