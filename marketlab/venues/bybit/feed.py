"""Bybit v5 public spot data through the common :class:`marketlab.stream.feed.Feed` machinery.

Connections to ``/v5/public/spot``, each subscribed after it opens (10 topics to a request, as
spot allows, and at most 21,000 characters of topics per connection) and kept alive with
Bybit's JSON ping. Books come whole from the stream: a snapshot on subscription, then deltas
chained by ``u``; any break means unsubscribe and subscribe again for a fresh snapshot.

Bybit spot trade ids are not consecutive, so a missed trade cannot be found by its id: the feed
does not claim gap detection by id (``trades_by_id`` is False); the REST client's
``recent_trades`` gives the last 60 trades, all Bybit keeps to look up.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import Any, cast

from marketlab.records import Interval
from marketlab.stream.config import FeedConfig
from marketlab.stream.connection import WsConnection
from marketlab.stream.feed import Feed
from marketlab.stream.intake import Sink
from marketlab.stream.state import LockedBook
from marketlab.venues import bybit
from marketlab.venues.book import Action
from marketlab.venues.bybit.book import BybitBook
from marketlab.venues.bybit.frames import compiled_reader
from marketlab.venues.bybit.rest import BybitRest

log = logging.getLogger("marketlab.feed.bybit")

# What spot says when a subscription names something it does not have: collecting cannot go on.
REFUSALS = ("Invalid symbol", "Invalid kline type")
PING = bybit.ping_message().decode()


class BybitFeed(Feed):
    """Bybit v5 spot on the common :class:`~marketlab.stream.feed.Feed`: its books come whole
    from the stream (checked by the ``u`` chain), so it needs no REST snapshots, only a fresh
    subscription after a break; its connections send Bybit's JSON ping every 20 s."""

    venue = "bybit"
    books_per_connection = True  # books come whole from this stream, chained per connection
    trades_by_id = False  # spot trade ids are not consecutive: a gap cannot be seen by id
    text_ping = PING
    text_ping_every = bybit.PING_INTERVAL_S  # Bybit asks for one every 20 s, busy or not

    def __init__(
        self,
        symbols: Sequence[str],
        intervals: Sequence[str],
        channels: Sequence[str],
        config: FeedConfig,
        sink: Sink,
        kline_starts: dict[tuple[str, str], int] | None = None,
    ):
        super().__init__(symbols, intervals, channels, config, sink, kline_starts)
        # Spot refuses a request of more than 10 args; the connections chunk by this config.
        self.config = dataclasses.replace(
            config, subscribe_chunk=min(config.subscribe_chunk, bybit.MAX_ARGS_PER_REQUEST)
        )
        self.topics = bybit.topics_for(self.symbols, self.intervals, self.channels)
        if "book" in self.channels:
            self.books = {s: _locked_bybit_book(s) for s in self.symbols}
        self._decoder = bybit.BybitDecoder()
        # the hot pushes read compiled (None: the decoder reads every frame)
        self._read_compiled = compiled_reader([t.name for t in self.topics])
        # Requests sent and not yet answered, by req_id: spot's answer names no topic, only
        # the req_id, which is unique over the feed (each connection counts its own from 1).
        self._requests: dict[str, tuple[str, list[bybit.Topic], float]] = {}
        self._next_request = 0
        self.unanswered = 0  # requests that got no answer in time (spot ignores duplicates)
        # (trades across an interruption cannot be checked on Bybit: ``trades_unverifiable``)
        self._trades_interrupted: set[str] = set()

    def make_rest(self) -> BybitRest:
        return BybitRest(self.config.rest_url)

    def connection_plans(self) -> list[tuple[str, list[Any], list[Any]]]:
        groups = bybit.split_for_connections(self.topics, self.config.streams_per_connection)
        return [(self.config.ws_url, list(g), list(g)) for g in groups]

    def subscribe_message(self, streams: list[Any], request_id: int, unsubscribe: bool) -> bytes:
        self._next_request += 1
        req_id = str(self._next_request)
        op = "unsubscribe" if unsubscribe else "subscribe"
        self._requests[req_id] = (op, list(streams), time.monotonic())
        make = bybit.unsubscribe_message if unsubscribe else bybit.subscribe_message
        return make(streams, req_id)

    def kline_of(self, stream: Any) -> tuple[str, Interval] | None:
        iv = stream.interval
        return (bybit.symbol_of(stream.symbol), iv) if iv is not None else None

    def book_of(self, stream: Any) -> str | None:
        return bybit.symbol_of(stream.symbol) if stream.book_depth in bybit.BOOK_DEPTHS else None

    def on_frame(self, frame: bytes, conn: WsConnection) -> None:
        read = self._read_compiled
        events = read(frame) if read is not None else None
        try:
            if events is None:  # anything the compiled reader leaves: the decoder names it
                events = self._decoder.decode(frame)
        except bybit.FrameError as exc:
            self.bad_frame(exc, conn)
            return
        # A push's events are all of one type (the decoder's, one per topic kind): the most
        # common, trades and tickers, go straight to their taker with the row they count on,
        # as the intake would look them up, without a type test per event.
        if self._take_pushed(events, "ws"):
            return
        for event in events:
            if isinstance(event, bybit.BookMessage):
                self._book_message(event, conn)
            elif isinstance(event, bybit.SubscriptionResult):
                self._answered(event, conn)
            elif isinstance(event, bybit.Pong):
                pass
            else:
                self._record(event, "ws")

    def _answered(self, result: bybit.SubscriptionResult, conn: WsConnection) -> None:
        request = self._requests.pop(result.req_id, None) if result.req_id else None
        if result.success:
            return
        topics = ", ".join(t.name for t in request[1]) if request else "?"
        if result.op == "subscribe" and result.ret_msg.startswith(REFUSALS):
            self.fail(f"bybit refused a subscription: {result.ret_msg} (topics {topics})")
        else:
            log.error(
                "%s: %s refused: %s (topics %s)", conn.name, result.op, result.ret_msg, topics
            )

    def _book_message(self, msg: bybit.BookMessage, conn: WsConnection) -> None:
        lb = self.books.get(msg.symbol)
        if lb is None or conn.retiring:
            return  # a retiring connection's u chain is not the one the book follows now
        with lb.lock:
            book = cast(BybitBook, lb.book)  # as _locked_bybit_book made it
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
            topic = bybit.Topic(f"orderbook.{msg.depth}", bybit.bybit_symbol(msg.symbol))
            self._resubscribe_book(conn, msg.symbol, topic, reason)

    def on_connected(self, conn: WsConnection) -> None:
        """Books start again from the new subscriptions' snapshots; trades the interruption may
        have cost are looked for in ``recent-trade`` (the last 60: all Bybit can give)."""
        super().on_connected(conn)
        for topic in conn.streams:
            symbol = bybit.symbol_of(topic.symbol)
            if topic.prefix == "publicTrade" and symbol in self._trades_interrupted:
                self._trades_interrupted.discard(symbol)
                self.trades_unverifiable[symbol] = self.trades_unverifiable.get(symbol, 0) + 1
                self._spawn(self._recent_trades(symbol))

    def on_disconnected(self, conn: WsConnection) -> None:
        if not conn.retiring:
            self._trades_interrupted.update(
                bybit.symbol_of(t.symbol) for t in conn.streams if t.prefix == "publicTrade"
            )
        super().on_disconnected(conn)

    async def _recent_trades(self, symbol: str) -> None:
        """The trades Bybit still lists, taken as any record is (those already delivered are
        dropped by id); what happened before them is lost without a trace."""
        if self.rest is None:
            return
        trades = await self._recent_after_break(symbol)
        if trades is None:
            return
        stats = self.stream_stats.get((symbol, "trade"))
        mark = stats.mark if stats is not None else -1
        newer = [t for t in trades if t.trade_id > mark]
        for t in newer:
            self._record(t, "rest")
        log.info(
            "trades %s: %d recent trade(s) taken after a break; completeness across it cannot "
            "be checked on Bybit",
            symbol,
            len(newer),
        )

    def _supervise(self) -> None:
        """Requests unanswered for long are given up on, and said: spot does not answer a
        duplicate subscription at all, so sending it again would never be answered either."""
        super()._supervise()
        now = time.monotonic()
        late = [
            r
            for r, (_, _, sent) in self._requests.items()
            if now - sent >= 6 * self.config.subscribe_timeout
        ]
        for req_id in late:
            op, topics, _ = self._requests.pop(req_id)
            self.unanswered += 1
            log.warning(
                "bybit: %s request %s got no answer (topics %s)",
                op,
                req_id,
                ", ".join(t.name for t in topics),
            )


def _locked_bybit_book(symbol: str) -> LockedBook:
    lb = LockedBook(symbol, bybit.BOOK_DEPTH)
    lb.book = BybitBook(symbol)
    return lb
