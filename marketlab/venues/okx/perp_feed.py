"""OKX swaps on the common :class:`~marketlab.stream.feed.Feed`: the same two connections as
spot (``/ws/v5/public`` for books, funding rate, mark price, open interest and liquidations;
``/ws/v5/business`` for ``trades-all`` and candles), books whole from the stream and chained by
``prevSeqId`` (a break means subscribing again for a fresh snapshot), every trade kept by id,
closed candles once, and every size in the base asset.

Channels of a perpetual: ``trades``, ``book``, ``klines``, ``mark`` (``mark-price``, and
``index-tickers`` of its underlying ``BTC-USDT`` for the index, as a
:class:`~marketlab.records.MarkPrice` of the index alone),
``funding`` (``funding-rate``: the rate in force and the next funding time, as
:class:`~marketlab.records.MarkPrice` without a mark), ``open_interest`` and ``liquidations``
(``liquidation-orders``, a sample, as OKX warns).

Sizes come in contracts: before anything is read the feed asks
``/api/v5/public/instruments?instType=SWAP`` for each swap's contract value, and its decoder is
made with them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any, cast

from marketlab.records import Interval, is_perpetual
from marketlab.stream.config import FeedConfig
from marketlab.stream.connection import WsConnection
from marketlab.stream.feed import Feed
from marketlab.stream.intake import Sink, TypedSink
from marketlab.stream.rest import RestError
from marketlab.stream.state import LockedBook
from marketlab.venues.book import Action
from marketlab.venues.errors import FrameError
from marketlab.venues.okx.book import OkxBook
from marketlab.venues.okx.frames import BookMessage, Notice, Pong, RequestError
from marketlab.venues.okx.perp_frames import OkxPerpDecoder, PerpSubscriptionResult
from marketlab.venues.okx.perp_protocol import (
    PERP_CHANNELS,
    PerpTopic,
    perp_topics_for,
    subscribe_message,
    swap_inst_id,
    unsubscribe_message,
)
from marketlab.venues.okx.perp_rest import OkxPerpRest
from marketlab.venues.okx.protocol import BOOK_DEPTH, UNKNOWN_CHANNEL_OR_INSTRUMENT, business_url

log = logging.getLogger("marketlab.feed.okx")

OKX_PERP_CHANNELS = (*PERP_CHANNELS, "klines")


class OkxPerpFeed(Feed):
    """OKX linear swaps (symbols named ``BTCUSDT-PERP``)."""

    venue = "okx"
    books_per_connection = True  # books come whole from this stream, chained per connection
    trades_by_id = True  # trades-all ids are contiguous; /market/history-trades?type=1&after=
    text_ping = "ping"

    @classmethod
    def channels_of(cls, channels: Sequence[str]) -> tuple[str, ...]:
        """What a perpetual collects of a Lab's channels: its trades, book and klines, and
        always its mark price, funding rate, open interest (all pushed by OKX) and
        liquidations."""
        wanted = (c for c in channels if c in ("trades", "book", "klines"))
        return (*wanted, "mark", "funding", "open_interest", "liquidations")

    def __init__(
        self,
        symbols: Sequence[str],
        intervals: Sequence[str],
        channels: Sequence[str],
        config: FeedConfig,
        sink: Sink | TypedSink,
        kline_starts: dict[tuple[str, str], int] | None = None,
    ):
        spot = [s for s in symbols if not is_perpetual(s)]
        if spot:
            raise ValueError(
                f"{', '.join(spot)}: not perpetuals (a perpetual is named BTCUSDT-PERP)"
            )
        self.topics = perp_topics_for(symbols, intervals, channels)
        super().__init__(symbols, intervals, channels, config, sink, kline_starts)
        if "book" in self.channels:
            for s in self.symbols:
                lb = LockedBook(s, BOOK_DEPTH)
                lb.book = OkxBook(s)
                self.books[s] = lb
        self.decoder: OkxPerpDecoder | None = None  # made once the contract values are known
        # Subscriptions sent and not yet acknowledged, per connection (see OkxFeed)
        self._unacked: dict[WsConnection, dict[PerpTopic, float]] = {}
        self.resubscribed = 0

    def make_rest(self) -> OkxPerpRest:
        return OkxPerpRest(self.config.rest_url)

    async def run(self) -> None:
        """Read each swap's contract value first (no size can be read without it), then run."""
        rest = OkxPerpRest(self.config.rest_url)
        attempt = 0
        try:
            while not self._stopped.is_set():
                try:
                    values = {s: await rest.contract_value(s) for s in self.symbols}
                    break
                except RestError as exc:
                    if not exc.retryable:
                        self.fail(f"okx: no contract value of a swap collected: {exc}")
                        return
                    await asyncio.sleep(self.config.backoff(attempt))
                    attempt = min(attempt + 1, 6)
            else:
                return
        finally:
            await rest.close()
        self.decoder = OkxPerpDecoder(values)
        await super().run()

    def connection_plans(self) -> list[tuple[str, list[Any], list[Any]]]:
        public = [t for t in self.topics if not t.business]
        business = [t for t in self.topics if t.business]
        plans: list[tuple[str, list[Any], list[Any]]] = []
        if public:
            plans.append((self.config.ws_url, public, public))
        if business:
            plans.append((business_url(self.config.ws_url), business, business))
        return plans

    def subscribe_message(self, streams: list[Any], request_id: int, unsubscribe: bool) -> bytes:
        return (unsubscribe_message if unsubscribe else subscribe_message)(streams)

    def kline_of(self, stream: Any) -> tuple[str, Interval] | None:
        iv = stream.interval
        return (stream.symbol, iv) if iv is not None else None

    def book_of(self, stream: Any) -> str | None:
        return cast(str, stream.symbol) if stream.channel == "books" else None

    # --- frames ------------------------------------------------------------------------

    def on_frame(self, frame: bytes, conn: WsConnection) -> None:
        decoder = self.decoder
        if decoder is None:
            return  # not running yet
        try:
            events = decoder.decode(frame)
        except FrameError as exc:
            self.bad_frame(exc, conn)
            return
        if self._take_pushed(events, "ws"):  # trades: the most common pushes
            return
        for event in events:
            if isinstance(event, BookMessage):
                self._swap_book(event, conn)
            elif isinstance(event, PerpSubscriptionResult):
                if event.event == "subscribe" and event.topic is not None:
                    self._unacked.get(conn, {}).pop(event.topic, None)
            elif isinstance(event, Pong):
                pass
            elif isinstance(event, RequestError):
                if event.code == UNKNOWN_CHANNEL_OR_INSTRUMENT:
                    self.fail(f"okx refused a subscription: {event.msg} (code {event.code})")
                else:
                    log.error("%s: request refused: %s (code %s)", conn.name, event.msg, event.code)
            elif isinstance(event, Notice):
                log.warning("%s: notice %s: %s", conn.name, event.code, event.msg)
                if event.closing:
                    self._roll_over(conn, f"notice {event.code}")
            else:  # candles, mark prices, funding, open interest, liquidations
                self._record(event, "ws")

    def _swap_book(self, msg: BookMessage, conn: WsConnection) -> None:
        lb = self.books.get(msg.symbol)
        if lb is None or conn.retiring:
            return  # a retiring connection's book chain is not the one the book follows now
        with lb.lock:
            book = cast(OkxBook, lb.book)  # as made in __init__
            was = book.last_update_id if book.synced and msg.action != "snapshot" else None
            action = book.on_message(msg)
            reason = book.reason
            if self.book_tap is not None:
                self.book_tap(book, was, msg.bid_changes, msg.ask_changes, msg.time)
        self._count((msg.symbol, "depth"), "ws")
        if msg.action == "snapshot":
            self._book_resynced(msg.symbol)
            log.info("book %s: synced at seq %d", msg.symbol, msg.seq_id)
        if action is Action.RESUBSCRIBE:
            topic = PerpTopic("books", swap_inst_id(msg.symbol))
            self._resubscribe_book(conn, msg.symbol, topic, reason)

    # --- subscriptions acknowledged ----------------------------------------------------

    def on_connected(self, conn: WsConnection) -> None:
        self._unacked[conn] = {}
        super().on_connected(conn)

    def on_disconnected(self, conn: WsConnection) -> None:
        self._unacked.pop(conn, None)
        super().on_disconnected(conn)

    def on_subscribe_sent(self, conn: WsConnection, streams: list[Any], unsubscribe: bool) -> None:
        pending = self._unacked.setdefault(conn, {})
        now = time.monotonic()
        for topic in streams:
            if unsubscribe:
                pending.pop(topic, None)
            else:
                pending[topic] = now

    def _supervise(self) -> None:
        super()._supervise()
        now = time.monotonic()
        for conn, pending in list(self._unacked.items()):
            late = [t for t, sent in pending.items() if now - sent >= self.config.subscribe_timeout]
            if late and conn.connected:
                log.warning(
                    "%s: %d subscription(s) not acknowledged; sending again", conn.name, len(late)
                )
                self.resubscribed += len(late)
                for t in late:
                    pending[t] = now
                self._spawn(conn.subscribe(late))
