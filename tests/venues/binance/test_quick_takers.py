"""The compiled takers of the common case (csrc/quick.c) against the Python takers
they stand for: two feeds, one with its lanes' quick takers and one without, fed the same
frames — in order, repeated, with gaps, books crossing and outgrowing their bound, snapshots,
subscribers, a store of every update and a bus tap coming and going — end every step equal."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketlab.lab.market_state import MarketState
from marketlab.native import native
from marketlab.records import BookDelta, BookSnapshot, Interval
from marketlab.stream.config import FeedConfig
from marketlab.venues.binance.feed import BinanceFeed
from marketlab.venues.binance.frames import take_combined

pytestmark = pytest.mark.skipif(
    native is None and os.environ.get("MARKETLAB_PURE_PYTHON", "") not in ("", "0"),
    reason="MARKETLAB_PURE_PYTHON asks for the pure-Python twins",
)

SYMBOL = "BTCUSDT"
TRADE, DEPTH = b"btcusdt@trade", b"btcusdt@depth@100ms"
MAX_LEVELS = 8  # a side grows past its bound (8 + 8 // 10) within a few updates
T0 = 1_767_225_600_000  # 2026-01-01, in ms: the venue's times are of its years


class _Feed(BinanceFeed):
    """A Binance feed whose REST work is only written down (no loop, no socket)."""

    def __init__(self, quick: bool):
        self.calls: list[tuple[Any, ...]] = []
        self.state = MarketState([SYMBOL], [Interval("1m")], 50, 10, lambda k: None)
        config = FeedConfig(book_snapshot_limit=MAX_LEVELS)
        super().__init__([SYMBOL], ["1m"], ["trades", "book"], config, self.state)
        self.python_takes = 0
        self._lanes = {name: self._counted(lane, quick) for name, lane in self._lanes.items()}

    def _counted(self, lane: Any, quick: bool) -> Any:
        take = lane.take

        def counted(stats: Any, record: Any, source: str) -> None:
            self.python_takes += 1
            take(stats, record, source)

        return lane._replace(take=counted, quick=lane.quick if quick else None)

    def _schedule_snapshot(self, symbol: str) -> None:
        self.calls.append(("snapshot", symbol))

    def _schedule_trades(self, symbol: str, first: int, last: int) -> None:
        self.calls.append(("trades", symbol, first, last))


def _frame(stream: bytes, data: dict[str, Any]) -> bytes:
    return b'{"stream":"' + stream + b'","data":' + orjson.dumps(data) + b"}"


def _trade(tid: int, price: float, qty: float, maker: bool) -> bytes:
    return _frame(
        TRADE,
        {
            "e": "trade",
            "E": T0 + 1000 + tid,
            "s": SYMBOL,
            "t": tid,
            "p": str(price),
            "q": str(qty),
            "T": T0 + 900 + tid,
            "m": maker,
            "M": True,
        },
    )


def _delta(first: int, last: int, bids: list[Any], asks: list[Any]) -> bytes:
    return _frame(
        DEPTH,
        {
            "e": "depthUpdate",
            "E": T0 + 5000 + last,
            "s": SYMBOL,
            "U": first,
            "u": last,
            "b": [[str(p), str(q)] for p, q in bids],
            "a": [[str(p), str(q)] for p, q in asks],
        },
    )


def _seen(feed: _Feed) -> dict[str, Any]:
    """Everything the takers change, but the wall time they stamp."""
    lb, state = feed.books[SYMBOL], feed.state
    book, buf = lb.book, state.trades[SYMBOL]
    return {
        "rows": {k: (s.messages, s.mark, s.source) for k, s in feed.stream_stats.items()},
        "duplicates": feed.duplicates,
        "calls": list(feed.calls),
        "book": (
            book.state,
            book.last_update_id,
            book.event_time,
            book.reason,
            book.stats,
            book._bids.items(),
            book._asks.items(),
        ),
        "trades": {k: v.tolist() for k, v in buf.ring.arrays().items()},
        "buffer": (buf.last_id, buf.missed, buf.duplicates),
        "last_trade": {s: (p, t, src) for s, (p, t, _, src) in state._last_trade.items()},
    }


def _apply(feed: _Feed, step: tuple[Any, ...], heard: list[Any]) -> None:
    kind = step[0]
    if kind == "frame":
        assert take_combined(feed._lanes, step[1])
    elif kind == "snapshot":
        feed._apply_snapshot(BookSnapshot(SYMBOL, step[1], step[2], step[3]))
    elif kind == "subscriber":
        feed.state.callbacks[:] = [heard.append] if step[1] else []
    elif kind == "store":
        feed.state.delta_store = _Store(heard) if step[1] else None
    elif kind == "tap":
        feed.book_tap = (lambda book, was, *_: heard.append(("tap", was))) if step[1] else None


class _Store:
    def __init__(self, heard: list[Any]):
        self.heard = heard

    def add_delta(self, delta: BookDelta, source: str) -> None:
        self.heard.append(delta)


# Prices on a small grid, so updates cross the book and move levels in and out of it
BID = st.tuples(st.sampled_from([99.0, 99.5, 100.0, 100.5]), st.sampled_from([0.0, 1.0, 2.5]))
ASK = st.tuples(st.sampled_from([100.5, 101.0, 101.5, 102.0]), st.sampled_from([0.0, 1.0, 3.0]))
WIDE = st.tuples(st.integers(1, 60).map(lambda i: 100.0 - i / 4), st.sampled_from([0.0, 1.0]))


@st.composite
def _steps(draw: Any) -> list[tuple[Any, ...]]:
    steps: list[tuple[Any, ...]] = []
    tid, uid = draw(st.integers(1, 5)), 100
    for _ in range(draw(st.integers(1, 60))):
        what = draw(st.sampled_from(["trade"] * 5 + ["delta"] * 5 + ["snapshot", "toggle"]))
        if what == "trade":
            tid = max(0, tid + draw(st.sampled_from([1, 1, 1, 1, 0, -2, 3])))
            price = draw(st.sampled_from([1.5, 2.25, 1e-8, 123456.789]))
            steps.append(
                (
                    "frame",
                    _trade(tid, price, draw(st.sampled_from([0.1, 2.0])), draw(st.booleans())),
                )
            )
        elif what == "delta":
            first = uid + draw(st.sampled_from([1, 1, 1, 1, 0, -3, 2]))
            uid = max(uid, first + draw(st.integers(0, 3)))
            bids = draw(st.lists(BID | WIDE, max_size=5))
            steps.append(("frame", _delta(first, uid, bids, draw(st.lists(ASK, max_size=5)))))
        elif what == "snapshot":
            at = uid + draw(st.sampled_from([0, -1, 1, 2]))
            bids = sorted(draw(st.lists(BID, max_size=4, unique_by=lambda l: l[0])), reverse=True)
            asks = sorted(draw(st.lists(ASK, max_size=4, unique_by=lambda l: l[0])))
            steps.append(("snapshot", at, [b for b in bids if b[1]], [a for a in asks if a[1]]))
        else:
            steps.append(
                (draw(st.sampled_from(["subscriber", "store", "tap"])), draw(st.booleans()))
            )
    return steps


@settings(max_examples=300, deadline=None)
@given(_steps())
def test_quick_takers_leave_every_feed_as_the_python_takers_do(
    steps: list[tuple[Any, ...]],
) -> None:
    quick, python = _Feed(quick=True), _Feed(quick=False)
    heard_quick: list[Any] = []
    heard_python: list[Any] = []
    for step in steps:
        _apply(quick, step, heard_quick)
        _apply(python, step, heard_python)
        assert _seen(quick) == _seen(python), step
        assert heard_quick == heard_python
    assert quick.python_takes <= python.python_takes


def test_the_common_case_makes_no_record() -> None:
    # trades in order and a synced book's updates in order: no Python taker at all
    feed = _Feed(quick=True)
    feed._apply_snapshot(BookSnapshot(SYMBOL, 100, [(100.0, 1.0)], [(101.0, 1.0)]))
    for i in range(1, 2000):
        assert take_combined(feed._lanes, _trade(i, 1.0 + i / 100, 0.5, i % 2 == 0))
        assert take_combined(feed._lanes, _delta(100 + i, 100 + i, [(99.0, float(i))], []))
    assert feed.python_takes == 0
    seen = _seen(feed)
    assert seen["rows"][(SYMBOL, "trade")][:2] == (1999, 1999)
    assert seen["rows"][(SYMBOL, "depth")][:2] == (1999, 2099)
    assert seen["trades"]["trade_id"] == list(range(1950, 2000))  # the ring's 50 newest
    assert seen["trades"]["side"][-2:] == [1, 0]  # 1998: the buyer the maker, a sell
    assert seen["book"][1] == 2099 and seen["book"][5][1] == (-99.0, 1999.0)
    assert feed.stream_stats[(SYMBOL, "trade")].last_received == pytest.approx(time.time(), abs=60)


def test_a_reader_holding_the_book_is_waited_for() -> None:
    # the quick taker never waits for a lock: a reader in another thread holds the book, so the
    # update goes the Python way, which waits for the reader and then applies it
    feed = _Feed(quick=True)
    feed._apply_snapshot(BookSnapshot(SYMBOL, 100, [(100.0, 1.0)], [(101.0, 1.0)]))
    lb = feed.books[SYMBOL]
    held, let_go = threading.Event(), threading.Event()

    def reader() -> None:
        with lb.lock:
            held.set()
            let_go.wait(5)

    thread = threading.Thread(target=reader)
    thread.start()
    held.wait(5)
    threading.Timer(0.05, let_go.set).start()
    assert take_combined(feed._lanes, _delta(101, 101, [(100.0, 7.0)], []))
    thread.join()
    assert feed.python_takes == 1
    assert lb.book.last_update_id == 101 and lb.book.best_bid() == (100.0, 7.0)
