"""The compiled takers of the common case, fed hostile frames among good ones: a feed with them
and a feed without end every step alike, each hostile frame is a bad frame that changes nothing,
and the stream goes on (one trade id past int64 once silenced a symbol's trades for good)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketlab.native import native
from marketlab.records import BookSnapshot
from tests.fuzzing import fuzz
from tests.venues.binance.test_quick_takers import (
    SYMBOL,
    T0,
    TRADE,
    _delta,
    _Feed,
    _frame,
    _seen,
    _trade,
)

pytestmark = pytest.mark.skipif(native is None, reason="the compiled takers are not built")
CONN = SimpleNamespace(name="binance-1")
HOSTILE = ["nan", "inf", "-1", "1e400", "9223372036854775808", "-0.5", "NaN"]


def _hostile_trade(tid: int, field: str, value: str) -> bytes:
    data: dict[str, Any] = {
        "e": "trade",
        "E": T0 + tid,
        "s": SYMBOL,
        "t": tid,
        "p": "1.5",
        "q": "2",
        "T": T0 + tid,
        "m": True,
        "M": True,
    }
    raw = orjson.dumps(data)
    return _frame(TRADE, {}).replace(
        b"{}",
        raw.replace(orjson.dumps({field: data[field]})[1:-1], f'"{field}":{value}'.encode(), 1),
    )


def _hostile_delta(first: int, last: int, value: str) -> bytes:
    return _delta(first, last, [], []).replace(b'"b":[]', f'"b":[["{value}","1"]]'.encode())


@st.composite
def _steps(draw: Any) -> list[bytes]:
    steps: list[bytes] = []
    tid, uid = 1, 100
    for _ in range(draw(st.integers(1, 40))):
        what = draw(st.sampled_from(["trade", "trade", "delta", "delta", "bad trade", "bad delta"]))
        if what == "trade":
            tid += 1
            steps.append(_trade(tid, 1.5, 2.0, draw(st.booleans())))
        elif what == "delta":
            uid += 1
            steps.append(_delta(uid, uid, [(99.0, draw(st.sampled_from([0.0, 1.0])))], []))
        elif what == "bad trade":
            field = draw(st.sampled_from(["t", "p", "q", "E"]))
            value = draw(st.sampled_from(HOSTILE))
            steps.append(
                _hostile_trade(tid + 1, field, value if field != "t" else "9223372036854775808")
            )
        else:
            steps.append(
                _hostile_delta(
                    uid + 1, draw(st.sampled_from([uid + 1, 2**63])), draw(st.sampled_from(HOSTILE))
                )
            )
    return steps


@fuzz()
@given(_steps())
def test_hostile_frames_change_nothing_in_either_feed(steps: list[bytes]) -> None:
    quick, python = _Feed(quick=True), _Feed(quick=False)
    for feed in (quick, python):
        feed._apply_snapshot(BookSnapshot(SYMBOL, 100, [(99.5, 1.0)], [(101.0, 1.0)]))
    for frame in steps:
        quick.on_frame(frame, CONN)
        python.on_frame(frame, CONN)
        assert _seen(quick) == _seen(python), frame
        assert quick.bad_frames == python.bad_frames
    good = sum(1 for f in steps if b'"p":"1.5"' in f and b'"t":' in f and b"9223" not in f)
    assert _seen(quick)["rows"].get((SYMBOL, "trade"), (0,))[0] <= good + 1


def test_a_trade_id_past_int64_is_a_bad_frame_and_the_stream_goes_on() -> None:
    for quick in (True, False):
        feed = _Feed(quick=quick)
        feed.on_frame(_trade(1, 1.5, 2.0, True), CONN)
        feed.on_frame(_hostile_trade(2, "t", "9223372036854775808"), CONN)
        feed.on_frame(_trade(2, 1.5, 2.0, True), CONN)
        feed.on_frame(_trade(3, 1.5, 2.0, True), CONN)
        seen = _seen(feed)
        assert feed.bad_frames == 1
        assert seen["trades"]["trade_id"] == [1, 2, 3]
        assert seen["buffer"][1] == 0  # no gap of 9.2e18 ids reported


def test_a_nan_price_in_a_depth_update_is_a_bad_frame_and_the_book_is_untouched() -> None:
    for quick in (True, False):
        feed = _Feed(quick=quick)
        feed._apply_snapshot(BookSnapshot(SYMBOL, 100, [(99.5, 1.0), (99.0, 2.0)], [(101.0, 1.0)]))
        before = _seen(feed)["book"]
        feed.on_frame(_hostile_delta(101, 101, "nan"), CONN)
        assert feed.bad_frames == 1 and _seen(feed)["book"] == before
        feed.on_frame(_delta(101, 101, [(99.0, 5.0)], []), CONN)
        assert _seen(feed)["book"][5] == [(-99.5, 1.0), (-99.0, 5.0)]
