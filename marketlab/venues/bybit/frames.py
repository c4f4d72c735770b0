"""Bybit v5 public spot WebSocket frames → records, sans-I/O: trades, tickers, order-book
snapshots and deltas, klines, and the control answers (subscribe, unsubscribe, pong).

Bybit writes prices and sizes as strings; they are read as numbers by the rules of
:mod:`marketlab.numbers` while msgspec decodes, so a bad number makes its frame a bad frame
before anything is touched.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, cast

import msgspec

from marketlab.native import compiled, maker
from marketlab.numbers import DECODE_ERRORS, INT64_MAX, Amount, Change, Id, Level, Price, TimeMs
from marketlab.records import BookTicker, Interval, Kline, Ticker, Trade
from marketlab.venues.bybit.protocol import interval_of, parse_topic, symbol_of
from marketlab.venues.errors import FrameError, UnknownStreamError

# --- what a frame gives besides records -----------------------------------------------------


# A Struct rather than a frozen dataclass: made once per book push, it costs a twentieth of
# one (whose every field is set through object.__setattr__). gc=False as the wire's: it holds
# numbers, strings and lists of levels, never part of a cycle.
class BookMessage(msgspec.Struct, frozen=True, gc=False):
    """An ``orderbook.N`` push: a snapshot (the whole book, also after a service restart with
    ``update_id`` 1) or a delta (absolute sizes; 0 removes), numbered by ``update_id``."""

    symbol: str
    depth: int
    action: Literal["snapshot", "delta"]
    bids: list[Level]
    asks: list[Level]
    update_id: int  # ``u``: +1 per message of this depth
    seq: int  # ``seq``: the cross sequence, monotonic but not contiguous
    time: int  # ``ts``: when the system generated it (ms)


@dataclass(frozen=True, slots=True)
class SubscriptionResult:
    """The answer to one (un)subscribe request: Bybit names no topics, only the request's
    ``req_id`` when one was sent, and says why it refused in ``ret_msg``."""

    op: str  # "subscribe" | "unsubscribe"
    success: bool
    ret_msg: str
    req_id: str | None


@dataclass(frozen=True, slots=True)
class Pong:
    req_id: str | None = None


# --- wire schemas --------------------------------------------------------------------------


# gc=False: a decoded frame holds only numbers, strings and lists of them (never part of a
# cycle), so the garbage collector need not track one per message.
class _Push(msgspec.Struct, gc=False):
    topic: str | None = None
    type: str | None = None
    ts: TimeMs | None = None
    data: msgspec.Raw = msgspec.Raw(b"")
    success: bool | None = None
    ret_msg: str = ""
    op: str | None = None
    req_id: str | int | None = None


class _TradeWire(msgspec.Struct, gc=False):
    T: TimeMs
    s: str
    S: Literal["Buy", "Sell"]
    v: Amount
    p: Price
    i: str


class TickerWire(msgspec.Struct, gc=False):
    """A spot ticker's fields, as the WebSocket (snapshot only) and REST send them; the
    WebSocket's has no best bid or ask."""

    symbol: str
    lastPrice: Amount
    highPrice24h: Amount
    lowPrice24h: Amount
    prevPrice24h: Amount
    volume24h: Amount
    turnover24h: Amount
    price24hPcnt: Change
    bid1Price: Amount = math.nan
    bid1Size: Amount = math.nan
    ask1Price: Amount = math.nan
    ask1Size: Amount = math.nan


class BookWire(msgspec.Struct, gc=False):
    s: str
    b: list[Level]
    a: list[Level]
    u: Id
    seq: Id = 0


class _KlineWire(msgspec.Struct, gc=False):
    start: TimeMs
    end: TimeMs
    interval: str
    open: Amount
    close: Amount
    high: Amount
    low: Amount
    volume: Amount
    turnover: Amount
    confirm: bool


_TRADES = msgspec.json.Decoder(list[_TradeWire], strict=False)
_TICKER = msgspec.json.Decoder(TickerWire, strict=False)
_BOOK = msgspec.json.Decoder(BookWire, strict=False)
_KLINES = msgspec.json.Decoder(list[_KlineWire], strict=False)
_PUSH = msgspec.json.Decoder(_Push)


def trade_id(text: str) -> int:
    """A spot trade id (a string of digits, ~19 of them) as the int our records carry;
    ``ValueError`` for anything else (linear's UUIDs are not spot's). (Once per trade: the
    text is read as a number once.)"""
    if text.isascii() and text.isdigit() and len(text) <= 19:
        value = int(text)
        if value <= INT64_MAX:
            return value
    raise ValueError(f"trade id {text!r} is not a spot trade id (digits, an int64)")


def ticker_of(t: TickerWire, event_time: int, symbol: str | None = None) -> Ticker:
    """A spot ticker → our record (``symbol``: ours of ``t.symbol`` when the caller knows it
    already, as a WebSocket push's topic tells). Bybit gives the price 24 h ago (our ``open``)
    and the change as a fraction; it says nothing of the last size, the previous close, trade
    ids or counts (NaN and -1 say so), nor, on the WebSocket, of the best bid and ask (NaN)."""
    change = t.lastPrice - t.prevPrice24h
    wavg = t.turnover24h / t.volume24h if t.volume24h else math.nan
    return Ticker(
        symbol_of(t.symbol) if symbol is None else symbol,
        event_time,
        t.lastPrice,
        math.nan,
        t.bid1Price,
        t.bid1Size,
        t.ask1Price,
        t.ask1Size,
        t.prevPrice24h,
        t.highPrice24h,
        t.lowPrice24h,
        t.volume24h,
        t.turnover24h,
        change,
        100.0 * t.price24hPcnt,
        wavg,
        math.nan,
        event_time - 86_400_000,
        event_time,
        -1,
        -1,
        -1,
    )


def kline(
    symbol: str,
    iv: Interval,
    open_time: int,
    values: tuple[float, ...],
    closed: bool,
    event_time: int | None,
) -> Kline:
    """A Bybit candle → a kline. ``values`` are open, high, low, close, volume (base) and
    turnover (quote). Bybit gives no trade count and no taker-buy volumes: ``trades`` is -1,
    those volumes NaN."""
    o, h, lo, c, volume, turnover = values
    return Kline(
        symbol,
        str(iv),
        open_time,
        o,
        h,
        lo,
        c,
        volume,
        iv.close_of(open_time),
        turnover,
        -1,
        math.nan,
        math.nan,
        closed,
        event_time,
    )


# What a topic's prefix makes of its pushes (the kind of a :class:`_Route`)
_TRADE_ROUTE, _TICKER_ROUTE, _KLINE_ROUTE, _BOOK_ROUTE, _UNKNOWN_ROUTE = range(5)

# Topics a decoder remembers: a connection has a few hundred at most, so the bound only keeps
# a stream of ever-new (damaged) topic names from growing the cache without end.
MAX_ROUTES = 4096


@dataclass(frozen=True, slots=True)
class _Route:
    """What a topic name says, worked out once per topic rather than once per push: parsing
    the name and normalizing its symbol were a sixth of the cost of a message."""

    kind: int
    name: str  # the topic's symbol as Bybit writes it: every row of a push carries it
    symbol: str  # ours
    depth: int = 0  # of an ``orderbook.N`` topic
    interval: Interval | None = None  # of a ``kline.X`` topic
    interval_name: str = ""  # Bybit's name of it (``X``), which each candle repeats
    interval_text: str = ""  # ours, as a Kline names it
    # A candle of a fixed length (all but the calendar month, whose ``step`` is 0) opens at
    # ``offset`` + a multiple of ``step`` ms and closes ``step`` - 1 ms after: its bounds by
    # arithmetic rather than by the Interval's methods, a third of a candle's cost.
    step: int = 0
    offset: int = 0


def _route_of(topic: str) -> _Route:
    """A topic's :class:`_Route`; ``ValueError`` for a name of no shape we know or no symbol
    of ours, or a kline interval Bybit lacks (checked in the order a push always was)."""
    t = parse_topic(topic)
    symbol = symbol_of(t.symbol)
    if t.prefix == "publicTrade":
        return _Route(_TRADE_ROUTE, t.symbol, symbol)
    if t.prefix == "tickers":
        return _Route(_TICKER_ROUTE, t.symbol, symbol)
    if t.prefix.startswith("kline."):
        name = t.prefix[6:]
        iv = interval_of(name)
        step = 0 if iv.calendar else iv.ms
        offset = iv.open_of(0) % step if step else 0  # the week's candles open on Mondays
        return _Route(
            _KLINE_ROUTE,
            t.symbol,
            symbol,
            interval=iv,
            interval_name=name,
            interval_text=str(iv),
            step=step,
            offset=offset,
        )
    depth = t.book_depth
    if depth is not None:
        return _Route(_BOOK_ROUTE, t.symbol, symbol, depth=depth)
    return _Route(_UNKNOWN_ROUTE, t.symbol, symbol)


class BybitDecoder:
    """Turns Bybit public spot WebSocket frames into records and control events.

    Bad frames raise :class:`FrameError` (what is wrong, on which topic); nothing one bad
    frame does carries over. What a topic's name says is remembered per topic (a topic that
    is no good is worked out, and refused, each time).
    """

    def __init__(self) -> None:
        self._routes: dict[str, _Route] = {}

    def decode(self, frame: bytes | str) -> list[Any]:
        try:
            push = _PUSH.decode(frame)
        except msgspec.ValidationError as exc:
            raise FrameError(f"not a Bybit message ({exc})", frame) from None
        except DECODE_ERRORS as exc:
            raise FrameError(f"malformed JSON ({exc})", frame) from None
        if push.topic is None:
            return [self._control(push, frame)]
        topic = push.topic
        if not push.data or push.ts is None:
            raise FrameError("a push without data or ts", frame, topic)
        try:
            return self._records(push, topic, push.ts, frame)
        except (*DECODE_ERRORS, ValueError, TypeError) as exc:
            if isinstance(exc, FrameError):
                raise
            raise FrameError(f"invalid {topic} payload ({exc})", frame, topic) from None

    def _new_route(self, topic: str) -> _Route:
        """A topic not seen yet (or forgotten): its route, kept unless the name is bad."""
        route = _route_of(topic)  # a bad name raises here, every time, and is not kept
        routes = self._routes
        if len(routes) >= MAX_ROUTES:
            routes.clear()
        routes[topic] = route
        return route

    def _records(self, push: _Push, topic: str, ts: int, frame: bytes | str) -> list[Any]:
        route = self._routes.get(topic) or self._new_route(topic)
        kind = route.kind
        symbol = route.symbol
        if kind == _TRADE_ROUTE:
            rows = _TRADES.decode(push.data)
            name = route.name
            for r in rows:  # every row first: a row of another symbol is the error to give
                if r.s != name:
                    raise ValueError(f"a row of {r.s} on the stream of {name}")
            return [
                Trade(symbol, trade_id(r.i), r.p, r.v, "buy" if r.S == "Buy" else "sell", r.T, ts)
                for r in rows
            ]
        if kind == _TICKER_ROUTE:
            if push.type != "snapshot":
                raise FrameError(
                    f"a spot ticker of type {push.type!r} (spot sends snapshots only)",
                    frame,
                    topic,
                )
            ticker = _TICKER.decode(push.data)
            if ticker.symbol != route.name:
                raise ValueError(f"a row of {ticker.symbol} on the stream of {route.name}")
            return [ticker_of(ticker, ts, symbol)]
        if kind == _KLINE_ROUTE:
            iv = cast(Interval, route.interval)  # a kline route has one
            iv_name, step, offset = route.interval_name, route.step, route.offset
            rows_k = _KLINES.decode(push.data)
            for k in rows_k:
                if k.interval != iv_name:
                    raise ValueError(f"a {k.interval!r} candle on the stream of kline.{iv_name}")
                off = (k.start - offset) % step if step else iv.open_of(k.start) - k.start
                if off:
                    raise ValueError(f"a {iv} candle opening at {k.start}, off its boundary")
            if step:  # what kline() makes, its close by arithmetic
                return [
                    Kline(
                        symbol,
                        route.interval_text,
                        k.start,
                        k.open,
                        k.high,
                        k.low,
                        k.close,
                        k.volume,
                        k.start + step - 1,
                        k.turnover,
                        -1,
                        math.nan,
                        math.nan,
                        k.confirm,
                        ts,
                    )
                    for k in rows_k
                ]
            return [
                kline(
                    symbol,
                    iv,
                    k.start,
                    (k.open, k.high, k.low, k.close, k.volume, k.turnover),
                    k.confirm,
                    ts,
                )
                for k in rows_k
            ]
        if kind == _BOOK_ROUTE:
            if push.type not in ("snapshot", "delta"):
                raise FrameError(f"an order-book push of type {push.type!r}", frame, topic)
            b = _BOOK.decode(push.data)
            if b.s != route.name:
                raise ValueError(f"a row of {b.s} on the stream of {route.name}")
            depth = route.depth
            if depth == 1:  # the best bid and ask, re-sent every 3 s unchanged
                if not b.b or not b.a:
                    return []
                # numbered by ``seq`` (monotonic) rather than ``u``, which starts again at 1
                # after a service restart: readers drop a BookTicker numbered below the last
                uid = b.seq or b.u
                return [BookTicker(symbol, uid, b.b[0][0], b.b[0][1], b.a[0][0], b.a[0][1])]
            kind_: Literal["snapshot", "delta"] = "snapshot" if push.type == "snapshot" else "delta"
            return [BookMessage(symbol, depth, kind_, b.b, b.a, b.u, b.seq, ts)]
        raise UnknownStreamError(f"unknown topic {topic!r}", frame, topic)

    @staticmethod
    def _control(push: _Push, frame: bytes | str) -> Any:
        req_id = None if push.req_id is None else str(push.req_id)
        # Spot answers a ping with op "ping" and ret_msg "pong"; one capture shows op "pong".
        if push.op == "pong" or (push.op == "ping" and push.ret_msg == "pong"):
            return Pong(req_id)
        if push.op in ("subscribe", "unsubscribe") and push.success is not None:
            return SubscriptionResult(push.op, push.success, push.ret_msg, req_id)
        raise UnknownStreamError("unrecognised frame", frame)


# --- the compiled reader (csrc/bybit.c) ------------------------------------------------------

# The records the compiled reader makes, by the names it gives them, and the names of their
# values in the order it hands them to a record's maker (csrc/bybit.c declares the order).
BYBIT_VALUES: dict[str, tuple[str, ...]] = compiled("BYBIT_VALUES", {})
_RECORDS: dict[str, type] = {
    "trade": Trade,
    "ticker": Ticker,
    "kline": Kline,
    "book": BookMessage,
    "book_ticker": BookTicker,
}
# The kinds of topic it reads, by the name it knows each by
_KINDS = {
    _TRADE_ROUTE: "trade",
    _TICKER_ROUTE: "ticker",
    _KLINE_ROUTE: "kline",
    _BOOK_ROUTE: "book",
}

FrameReader = Callable[[bytes], list[Any] | None]


def compiled_reader(topics: Iterable[str]) -> FrameReader | None:
    """The compiled reader of the pushes of ``topics`` (csrc/bybit.c): a frame's records exactly
    as :meth:`BybitDecoder.decode` gives them, or None for anything it leaves to that decoder (a
    control answer, a topic not among these, a calendar month's candles, anything unusual: the
    decoder then names what is wrong). None when the compiled part is not in use: the decoder,
    its pure-Python twin, then reads every frame."""
    table_type = compiled("BybitTopics")
    if table_type is None:
        return None
    makers = {name: maker(record, BYBIT_VALUES[name]) for name, record in _RECORDS.items()}
    table = table_type(makers)
    for topic in topics:
        try:
            route = _route_of(topic)
        except ValueError:
            continue  # no topic of ours: the decoder names it
        kind = _KINDS.get(route.kind)
        if kind is None or (kind == "kline" and not route.step):
            continue  # an unknown topic, or a calendar month (its bounds are the Interval's)
        table.add(
            topic.encode(),
            kind,
            route.name,
            route.symbol,
            route.depth,
            route.interval_name,
            route.interval_text,
            route.step,
            route.offset,
        )
    return cast(FrameReader, table.read)
