"""Bybit linear perpetuals on the common :class:`~marketlab.stream.feed.Feed`: connections to
``/v5/public/linear`` (any number of topics a request, up to 21,000 characters a connection),
kept alive with Bybit's JSON ping; books whole from the stream (a snapshot, then deltas chained
by ``u``; a break means a fresh subscription); trades, closed candles, mark price with funding
and open interest (``tickers``), and every liquidation (``allLiquidation``).

Channels of a perpetual: ``trades`` (``publicTrade``), ``book`` (``orderbook.200``), ``klines``,
``mark`` (``tickers``: :class:`~marketlab.records.MarkPrice` and
:class:`~marketlab.records.OpenInterest`) and ``liquidations``
(:class:`~marketlab.records.Liquidation`, complete by Bybit's word).

Completeness of trades: linear trade ids are UUIDs, so nothing tells a missed trade. Each
trade's id here is its match's ``seq`` and its place in it (see
:mod:`~marketlab.venues.bybit.perp_frames`), which rises with the venue's order: a trade seen
on two connections (a rollover's overlap) is taken once, and after an interruption the last
1,000 trades from ``/v5/market/recent-trade`` newer than the last one taken are added. What an
outage cost beyond them cannot be known: the feed says so (``trades_unverifiable``) rather
than claim the trades whole (``trades_by_id`` is False).

Liquidations carry no id: one is known again by its time, side, size and price, so the
overlap of two connections delivers it once (two liquidations equal in all four would be
taken as one).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, cast

from marketlab.records import Interval, Liquidation, MarkPrice, OpenInterest
from marketlab.stream.config import FeedConfig
from marketlab.stream.connection import WsConnection
from marketlab.stream.feed import Feed
from marketlab.stream.intake import Sink, TypedSink
from marketlab.stream.state import LockedBook
from marketlab.venues.book import Action
from marketlab.venues.bybit.book import BybitBook
from marketlab.venues.bybit.frames import BookMessage, Pong, SubscriptionResult
from marketlab.venues.bybit.perp_frames import PerpDecoder
from marketlab.venues.bybit.perp_protocol import (
    BOOK_DEPTH,
    PERP_CHANNELS,
    linear_url,
    subscribe_message,
    symbol_of,
    topics_for,
    unsubscribe_message,
    venue_symbol,
)
from marketlab.venues.bybit.perp_rest import BybitPerpRest
from marketlab.venues.bybit.protocol import (
    PING_INTERVAL_S,
    Topic,
    ping_message,
    split_for_connections,
)
from marketlab.venues.errors import FrameError

log = logging.getLogger("marketlab.feed.bybit")

PING = ping_message().decode()
SEEN_LIQUIDATIONS = 10_000  # liquidations remembered per symbol to know a repeat
# What linear says of a topic it does not have: collecting cannot go on
REFUSALS = ("error:handler not found",)

__all__ = ["PERP_CHANNELS", "BybitPerpFeed"]


class BybitPerpFeed(Feed):
    """Bybit linear perpetuals (symbols named ``BTCUSDT-PERP``)."""

    venue = "bybit"
    books_per_connection = True  # books come whole from the stream, chained per connection
    trades_by_id = False  # UUID trade ids: a gap cannot be seen by id
    text_ping = PING
    text_ping_every = PING_INTERVAL_S  # Bybit asks for one every 20 s, busy or not

    @classmethod
    def channels_of(cls, channels: Sequence[str]) -> tuple[str, ...]:
        """What a perpetual collects of a Lab's channels: its trades, book and klines, and
        always its mark price (with funding and open interest, on the ticker) and
        liquidations."""
        return (*(c for c in channels if c in ("trades", "book", "klines")), "mark", "liquidations")

    def __init__(
        self,
        symbols: Sequence[str],
        intervals: Sequence[str],
        channels: Sequence[str],
        config: FeedConfig,
        sink: Sink | TypedSink,
        kline_starts: dict[tuple[str, str], int] | None = None,
    ):
        self.topics = topics_for(symbols, intervals, channels)
        super().__init__(symbols, intervals, channels, config, sink, kline_starts)
        if "book" in self.channels:
            for s in self.symbols:
                lb = LockedBook(s, BOOK_DEPTH)
                lb.book = BybitBook(s)
                self.books[s] = lb
        # one decoder per connection: a ticker's deltas and a match's fills are its own
        self._decoders: dict[WsConnection, PerpDecoder] = {}
        self._requests: dict[str, list[Topic]] = {}  # topics of each request, by req_id
        self._next_request = 0
        self._trades_interrupted: set[str] = set()
        self._newest: dict[tuple[str, type], int] = {}  # mark price / open interest taken
        self._liquidations: dict[str, tuple[set[tuple[Any, ...]], deque[tuple[Any, ...]]]] = {}

    def make_rest(self) -> BybitPerpRest:
        return BybitPerpRest(self.config.rest_url)

    def connection_plans(self) -> list[tuple[str, list[Any], list[Any]]]:
        groups = split_for_connections(self.topics, self.config.streams_per_connection)
        url = linear_url(self.config.ws_url)
        return [(url, list(g), list(g)) for g in groups]

    def subscribe_message(self, streams: list[Any], request_id: int, unsubscribe: bool) -> bytes:
        self._next_request += 1
        req_id = str(self._next_request)
        if len(self._requests) > 1000:  # answers that never came are not kept for ever
            self._requests.clear()
        self._requests[req_id] = list(streams)
        make = unsubscribe_message if unsubscribe else subscribe_message
        return make(streams, req_id)

    def kline_of(self, stream: Any) -> tuple[str, Interval] | None:
        iv = stream.interval
        return (symbol_of(stream.symbol), iv) if iv is not None else None

    def book_of(self, stream: Any) -> str | None:
        return symbol_of(stream.symbol) if stream.book_depth == BOOK_DEPTH else None

    # --- frames ------------------------------------------------------------------------

    def on_frame(self, frame: bytes, conn: WsConnection) -> None:
        decoder = self._decoders.get(conn)
        if decoder is None:
            decoder = self._decoders[conn] = PerpDecoder()
        try:
            events = decoder.decode(frame)
        except FrameError as exc:
            self.bad_frame(exc, conn)
            return
        if self._take_pushed(events, "ws"):  # trades
            return
        for event in events:
            kind = type(event)
            if kind is BookMessage:
                self._book_message(event, conn)
            elif kind is MarkPrice or kind is OpenInterest:
                self._newer(event)
            elif kind is Liquidation:
                self._liquidation(event)
            elif kind is SubscriptionResult:
                self._answered(event, conn)
            elif kind is not Pong:
                self._record(event, "ws")

    def _newer(self, record: MarkPrice | OpenInterest) -> None:
        """A mark price or open interest newer than the last taken (two connections in a
        rollover's overlap send the same ones)."""
        at = record.event_time if isinstance(record, MarkPrice) else record.time
        key = (record.symbol, type(record))
        if at <= self._newest.get(key, -1):
            self.duplicates += 1
            return
        self._newest[key] = at
        self._record(cast(Any, record), "ws")  # a perpetual's record: the sink's on_records

    def _liquidation(self, record: Liquidation) -> None:
        seen, order = self._liquidations.setdefault(record.symbol, (set(), deque()))
        key = (record.time, record.side, record.qty, record.price)
        if key in seen:
            self.duplicates += 1
            return
        seen.add(key)
        order.append(key)
        if len(order) > SEEN_LIQUIDATIONS:
            seen.discard(order.popleft())
        self._record(cast(Any, record), "ws")

    def _answered(self, result: SubscriptionResult, conn: WsConnection) -> None:
        topics = self._requests.pop(result.req_id, None) if result.req_id else None
        if result.success:
            return
        names = ", ".join(t.name for t in topics) if topics else "?"
        if result.op == "subscribe" and result.ret_msg.startswith(REFUSALS):
            self.fail(f"bybit refused a subscription: {result.ret_msg} (topics {names})")
        else:
            log.error("%s: %s refused: %s (topics %s)", conn.name, result.op, result.ret_msg, names)

    def _book_message(self, msg: BookMessage, conn: WsConnection) -> None:
        lb = self.books.get(msg.symbol)
        if lb is None or conn.retiring or msg.depth != BOOK_DEPTH:
            return  # a retiring connection's u chain is not the one the book follows now
        with lb.lock:
            book = cast(BybitBook, lb.book)  # as __init__ made it
            was = book.last_update_id if book.synced and msg.action == "delta" else None
            action = book.on_message(msg)
            reason = book.reason
            if self.book_tap is not None:
                self.book_tap(book, was, msg.bids, msg.asks, msg.time)
        self._count((msg.symbol, "depth"), "ws")
        if msg.action == "snapshot":
            self._book_resynced(msg.symbol)
            log.info("book %s: synced at u %d", msg.symbol, msg.update_id)
        if action is Action.RESUBSCRIBE:
            topic = Topic(f"orderbook.{BOOK_DEPTH}", venue_symbol(msg.symbol))
            self._resubscribe_book(conn, msg.symbol, topic, reason)

    # --- connections -------------------------------------------------------------------

    def on_connected(self, conn: WsConnection) -> None:
        """A new subscription: its tickers start from a snapshot and its matches afresh; trades
        an interruption may have cost are looked for in ``recent-trade``."""
        self._decoders[conn] = PerpDecoder()
        super().on_connected(conn)
        for topic in conn.streams:
            symbol = symbol_of(topic.symbol)
            if topic.prefix == "publicTrade" and symbol in self._trades_interrupted:
                self._trades_interrupted.discard(symbol)
                self.trades_unverifiable[symbol] = self.trades_unverifiable.get(symbol, 0) + 1
                self._spawn(self._recent_trades(symbol))

    def on_disconnected(self, conn: WsConnection) -> None:
        if not conn.retiring:
            self._trades_interrupted.update(
                symbol_of(t.symbol) for t in conn.streams if t.prefix == "publicTrade"
            )
        else:
            self._decoders.pop(conn, None)
        super().on_disconnected(conn)

    async def _recent_trades(self, symbol: str) -> None:
        """The trades Bybit still lists newer than the last taken; what happened before them
        is lost without a trace."""
        if self.rest is None:
            return
        trades = await self._recent_after_break(symbol)
        if trades is None:
            return
        stats = self.stream_stats.get((symbol, "trade"))
        mark = stats.mark if stats is not None else -1
        newer = [t for t in trades if t.trade_id > mark]
        started = time.monotonic()
        for t in newer:
            self._record(t, "rest")
        log.info(
            "trades %s: %d recent trade(s) taken after a break in %.3f s; completeness across "
            "it cannot be checked on Bybit",
            symbol,
            len(newer),
            time.monotonic() - started,
        )
