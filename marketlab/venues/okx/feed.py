"""OKX v5 public data through the common :class:`marketlab.stream.feed.Feed` machinery.

Two connections (``/ws/v5/public`` for tickers, trades and books; ``/ws/v5/business`` for
candles), subscribed after they open and kept alive with OKX's text ``ping``. Books come whole
from the stream: a snapshot on subscription, then updates chained by ``prevSeqId`` and checked
by checksum; any break means unsubscribe and subscribe again for a fresh snapshot.
"""

from __future__ import annotations

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
from marketlab.venues import okx
from marketlab.venues.book import Action
from marketlab.venues.okx.book import OkxBook
from marketlab.venues.okx.frames import frame_reader
from marketlab.venues.okx.rest import OkxRest

log = logging.getLogger("marketlab.feed.okx")


class OkxFeed(Feed):
    """OKX v5 on the common :class:`~marketlab.stream.feed.Feed`: its books come whole from the
    stream (checked by ``prevSeqId`` and checksum), so it needs no REST snapshots, only a fresh
    subscription after a break; and it wants a text ``ping`` to keep a quiet connection."""

    venue = "okx"
    books_per_connection = True  # books come whole from this stream, chained per connection
    trades_by_id = True  # trades-all ids are contiguous; /market/history-trades?type=1&after=
    text_ping = "ping"

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
        self.topics = okx.topics_for(self.symbols, self.intervals, self.channels)
        if "book" in self.channels:
            self.books = {s: _locked_okx_book(s) for s in self.symbols}
        self._decoder = okx.OkxDecoder()
        self._read_frame = frame_reader()  # the hot channels, compiled; None: the decoder's
        # Subscriptions sent and not yet acknowledged, per connection: a subscription lost on
        # the way (a link that stalled as it was sent) would otherwise leave a connection that
        # answers our pings and never carries data.
        self._unacked: dict[WsConnection, dict[okx.Topic, float]] = {}
        self.resubscribed = 0

    def make_rest(self) -> OkxRest:
        return OkxRest(self.config.rest_url)

    def connection_plans(self) -> list[tuple[str, list[Any], list[Any]]]:
        public = [t for t in self.topics if not t.business]
        business = [t for t in self.topics if t.business]
        plans = []
        if public:
            plans.append((self.config.ws_url, public, public))
        if business:
            url = okx.business_url(self.config.ws_url)
            plans.append((url, business, business))
        return plans

    def subscribe_message(self, streams: list[Any], request_id: int, unsubscribe: bool) -> bytes:
        return (okx.unsubscribe_message if unsubscribe else okx.subscribe_message)(streams)

    def kline_of(self, stream: Any) -> tuple[str, Interval] | None:
        iv = stream.interval
        return (stream.symbol, iv) if iv is not None else None

    def book_of(self, stream: Any) -> str | None:
        return stream.symbol if stream.channel == "books" else None

    def on_frame(self, frame: bytes, conn: WsConnection) -> None:
        try:
            events = self._read_frame(frame) or self._decoder.decode(frame)
        except okx.FrameError as exc:
            self.bad_frame(exc, conn)
            return
        if self._take_pushed(events, "ws"):  # trades, a ticker: the most common pushes
            return
        for event in events:
            if isinstance(event, okx.BookMessage):
                self._book_message(event, conn)
            elif isinstance(event, okx.SubscriptionResult):
                if event.event == "subscribe" and event.topic is not None:
                    self._unacked.get(conn, {}).pop(event.topic, None)
            elif isinstance(event, okx.Pong):
                pass
            elif isinstance(event, okx.RequestError):
                if event.code == okx.UNKNOWN_CHANNEL_OR_INSTRUMENT:
                    self.fail(f"okx refused a subscription: {event.msg} (code {event.code})")
                else:
                    log.error("%s: request refused: %s (code %s)", conn.name, event.msg, event.code)
            elif isinstance(event, okx.Notice):
                log.warning("%s: notice %s: %s", conn.name, event.code, event.msg)
                if event.closing:
                    self._roll_over(conn, f"notice {event.code}")
            else:
                self._record(event, "ws")

    def _book_message(self, msg: okx.BookMessage, conn: WsConnection) -> None:
        lb = self.books.get(msg.symbol)
        if lb is None or conn.retiring:
            return  # a retiring connection's book chain is not the one the book follows now
        with lb.lock:
            book = cast(OkxBook, lb.book)  # as _locked_okx_book made it
            was = book.last_update_id if book.synced and msg.action != "snapshot" else None
            action = book.on_message(msg)
            reason = book.reason
            if self.book_tap is not None:
                self.book_tap(book, was, msg.bids, msg.asks, msg.time)
        self._count((msg.symbol, "depth"), "ws")
        if msg.action == "snapshot":
            self._book_resynced(msg.symbol)
            log.info("book %s: synced at seq %d", msg.symbol, msg.seq_id)
        if action is Action.RESUBSCRIBE:
            topic = okx.Topic("books", okx.inst_id(msg.symbol))
            self._resubscribe_book(conn, msg.symbol, topic, reason)

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


def _locked_okx_book(symbol: str) -> LockedBook:
    lb = LockedBook(symbol, okx.BOOK_DEPTH)
    lb.book = OkxBook(symbol)
    return lb
