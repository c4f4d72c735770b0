"""Coinbase Advanced Trade public data through the common :class:`marketlab.stream.feed.Feed`.

One connection to the market-data WebSocket, subscribed channel by channel as it opens (Coinbase
takes one channel a message): ``heartbeats`` first (a connection that has subscribed nothing 5 s
after opening is closed, and one quiet for 60-90 s too), then ``market_trades``, ``ticker`` and
``level2`` for every product.

Every message carries the connection's ``sequence_num``, one up each time over every channel.
A break in it means messages were lost, and nothing says which product's: every book of the
connection is emptied and subscribed to again for a fresh snapshot, and each symbol's recent
trades are fetched so that the trades a lost message held are found (trade ids are consecutive
per product: the intake sees the skipped ids and fetches them by id, as far back as Coinbase's
recent trades reach, and reports the rest as a hole).

Klines: the WebSocket's candles are 5-minute only, so every interval's candles come from REST
(``/market/products/{id}/candles``): after the start-up fetch the feed sleeps until the next
candle of any series has closed (by the server's clock, plus ``kline_settle_s`` for the venue
to finish it), then fetches each series from its last closed candle on. So the closed candles
delivered are the venue's REST candles; the kline integrity layer drops a repeat, and a bucket
with no trade is absent on Coinbase itself.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from marketlab.venues import coinbase as cb
from marketlab.venues.book import Action
from marketlab.venues.coinbase.book import Break, CoinbaseBook, SequenceChain
from marketlab.venues.coinbase.frames import frame_reader
from marketlab.venues.coinbase.rest import CoinbaseRest

log = logging.getLogger("marketlab.feed.coinbase")

BOOK_LEVELS = 5000  # levels kept a side (a level2 snapshot is the whole book, often deeper)
RECENT_TRADES_AFTER_BREAK = 100  # the newest trades fetched per symbol after a sequence break
REFUSALS = ("is not a valid product",)  # an error whose reason ends collecting
# The channels whose messages hold records only: Trade (market_trades) or Ticker (the others)
RECORD_CHANNELS = frozenset(("market_trades", "ticker", "ticker_batch"))


class CoinbaseFeed(Feed):
    """Coinbase Advanced Trade on the common :class:`~marketlab.stream.feed.Feed`: books come
    whole from the stream and are vouched for by the connection's ``sequence_num`` chain; trade
    ids are consecutive per product, so a gap is found by id and filled from REST; klines are
    REST candles fetched as each closes."""

    venue = "coinbase"
    books_per_connection = True  # books come whole from this stream, chained per connection
    trades_by_id = True  # consecutive per product; /market/products/{id}/ticker fills a gap
    kline_settle_s = 2.0  # waited after a candle's close before asking (the REST client takes
    # a candle as closed 1 s after its end: rest.CLOSED_AFTER_MS)
    kline_recheck_s = 60.0  # the longest sleep between looks at the server's clock

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
        for iv in self.intervals if "klines" in self.channels else []:
            cb.granularity(iv)  # refused now, not when the first candle is asked for
        self.topics = cb.topics_for(self.symbols, self.channels)
        if "book" in self.channels:
            self.books = {s: _locked_coinbase_book(s) for s in self.symbols}
        self._decoder = cb.CoinbaseDecoder()
        self._read = frame_reader()  # the hot channels, compiled; None leaves it to _decoder
        self._chains: dict[WsConnection, SequenceChain] = {}
        self._pending: dict[WsConnection, set[str]] = {}  # books to subscribe again, per conn
        self._unsubscribing: dict[WsConnection, set[str]] = {}  # their unsubscribe not yet seen
        self._resubscribers: dict[WsConnection, asyncio.Task[None]] = {}
        self._trade_checks: dict[str, asyncio.Task[None]] = {}
        self.sequence_breaks = 0  # over every connection
        self.resubscriptions = 0  # level2 (un)subscribe rounds sent to rebuild books
        self.venue_errors = 0  # {"type": "error"} messages
        self.unknown_messages = 0  # channels this feed does not read (Coinbase may add some)
        self.subscribed: dict[str, list[str]] = {}  # as the last ``subscriptions`` said
        self._again: asyncio.Task[None] | None = None  # subscribing again after an error

    # --- what the stream asks of a venue ----------------------------------------------------

    def make_rest(self) -> CoinbaseRest:
        return CoinbaseRest(self.config.rest_url)

    def connection_plans(self) -> list[tuple[str, list[Any], list[Any]]]:
        # nothing for the connection to subscribe itself: one channel a message, see on_connected
        return [(self.config.ws_url, list(self.topics), [])]

    def subscribe_message(self, streams: list[Any], request_id: int, unsubscribe: bool) -> bytes:
        return cb.topics_message(streams, unsubscribe)

    def kline_of(self, stream: Any) -> tuple[str, Interval] | None:
        return None  # no kline streams: candles come from REST (see _seed_klines)

    def book_of(self, stream: Any) -> str | None:
        return stream.symbol if stream.channel == "level2" else None

    # --- frames ------------------------------------------------------------------------------

    def on_frame(self, frame: bytes, conn: WsConnection) -> None:
        try:
            msg = self._read(frame) or self._decoder.decode(frame)
        except cb.FrameError as exc:
            self.bad_frame(exc, conn)
            return
        if msg.sequence_num is not None and not conn.retiring:
            chain = self._chains.get(conn)
            if chain is not None and (found := chain.observe(msg.sequence_num)) is not None:
                self._chain_broke(conn, found)
        channel = msg.channel
        if channel in RECORD_CHANNELS:
            # most messages: records only (a trade or a ticker), each straight to its taker
            # with the row it counts on, as the intake would look them up
            self._take_pushed(msg.events, "ws")
            return
        if channel == "l2_data":
            for book_message in msg.events:
                self._book_message(book_message, conn)
            return
        if channel not in cb.KNOWN_CHANNELS and channel != "error":
            self.unknown_messages += 1  # passed over (its number counted above)
        for event in msg.events:
            if isinstance(event, cb.BookMessage):
                self._book_message(event, conn)
            elif isinstance(event, cb.Heartbeat):
                pass
            elif isinstance(event, cb.Subscriptions):
                self._subscriptions(event, conn)
            elif isinstance(event, cb.ErrorMessage):
                self._venue_error(event, conn)
            else:
                self._record(event, "ws")

    def _subscriptions(self, event: cb.Subscriptions, conn: WsConnection) -> None:
        """What the connection is subscribed to now. A book whose ``level2`` we unsubscribed
        (to subscribe it again) and that is no longer listed gets no update until its new
        snapshot: it is out of sync from here, even if a snapshot of its old subscription
        synced it after the unsubscribe went out."""
        self.subscribed = event.channels
        waiting = self._unsubscribing.get(conn)
        if not waiting:
            return
        listed = set()
        for product in event.channels.get("level2", []):
            with contextlib.suppress(ValueError):
                listed.add(cb.symbol_of(product))
        for symbol in [s for s in waiting if s not in listed]:
            waiting.discard(symbol)
            lb = self.books.get(symbol)
            if lb is None or conn.retiring:
                continue
            with lb.lock:
                cast(CoinbaseBook, lb.book).unsubscribed("subscribing again for a new snapshot")
                if self.book_tap is not None:
                    self.book_tap(lb.book, None, (), (), 0)

    def _venue_error(self, event: cb.ErrorMessage, conn: WsConnection) -> None:
        self.venue_errors += 1
        why = f"{event.message}" + (f": {event.reason}" if event.reason else "")
        if any(r in event.reason or r in event.message for r in REFUSALS):
            self.fail(f"coinbase refused a subscription: {why}")
            return
        # Coinbase says no more than "failure to subscribe", and refuses the whole message: the
        # channels go again after a pause (an unknown symbol is refused by the listing check,
        # which ends collecting; a subscription that never took would leave books unsynced)
        log.error("%s: coinbase error: %s; subscribing again", conn.name, why)
        if self._again is None or self._again.done():
            self._again = self._spawn(self._subscribe_again(conn))

    def _book_message(self, msg: cb.BookMessage, conn: WsConnection) -> None:
        lb = self.books.get(msg.symbol)
        if lb is None or conn.retiring:
            return  # a retiring connection's chain is not the one the book follows now
        with lb.lock:
            book = cast(CoinbaseBook, lb.book)  # as _locked_coinbase_book made it
            was = book.last_update_id if book.synced and msg.action == "update" else None
            action = book.on_message(msg)
            reason = book.reason
            if self.book_tap is not None:
                self.book_tap(book, was, msg.bids, msg.asks, msg.time)
        self._count((msg.symbol, "depth"), "ws")
        if msg.action == "snapshot":
            self._pending.get(conn, set()).discard(msg.symbol)  # a snapshot is the truth
            log.info("book %s: synced at sequence_num %d", msg.symbol, msg.sequence_num)
        if action is Action.RESUBSCRIBE:
            log.warning("book %s: %s; subscribing again for a new snapshot", msg.symbol, reason)
            self._resubscribe(conn, [msg.symbol])

    # --- the sequence_num chain ----------------------------------------------------------------

    def _chain_broke(self, conn: WsConnection, found: Break) -> None:
        """Messages were lost on ``conn``: every book it carries starts again from a new
        subscription's snapshot, and every symbol's recent trades are looked at, so that the
        trades a lost message held are found (by their ids) even if no trade follows soon."""
        self.sequence_breaks += 1
        log.warning("%s: %s", conn.name, found)
        lost = []
        for topic in conn.streams:
            symbol = self.book_of(topic)
            lb = self.books.get(symbol) if symbol is not None else None
            if lb is None or symbol is None:
                continue
            with lb.lock:
                action = cast(CoinbaseBook, lb.book).lost(f"{found} on {conn.name}")
                if self.book_tap is not None:
                    self.book_tap(lb.book, None, (), (), 0)
            if action is Action.RESUBSCRIBE:
                lost.append(symbol)
        if lost:
            self._resubscribe(conn, lost)
        if "trades" in self.channels:
            for symbol in self.symbols:
                task = self._trade_checks.get(symbol)
                if task is None or task.done():
                    self._trade_checks[symbol] = self._spawn(self._recent_trades(symbol))

    def _resubscribe(self, conn: WsConnection, symbols: list[str]) -> None:
        """Unsubscribe and subscribe ``level2`` again for ``symbols`` on ``conn`` (batched: the
        books lost by one frame go in one round)."""
        self._pending.setdefault(conn, set()).update(symbols)
        task = self._resubscribers.get(conn)
        if task is None or task.done():
            self._resubscribers[conn] = self._spawn(self._resubscribe_pending(conn))

    async def _resubscribe_pending(self, conn: WsConnection) -> None:
        await asyncio.sleep(0)  # the rest of this frame's books join the round
        pending = self._pending.setdefault(conn, set())
        while pending and conn.connected and not conn.retiring:
            topics = [cb.Topic("level2", cb.product_id(s)) for s in sorted(pending)]
            self._unsubscribing.setdefault(conn, set()).update(pending)
            pending.clear()
            self.resubscriptions += 1
            await conn.subscribe(topics, unsubscribe=True)
            await conn.subscribe(topics)

    async def _recent_trades(self, symbol: str) -> None:
        """The newest trades of ``symbol`` taken as any record is: those already delivered are
        dropped by id, and the first newer one shows the intake any ids skipped, which it then
        fetches by id (see marketlab.stream.trades)."""
        if self.rest is None:
            return
        stats = self.stream_stats.get((symbol, "trade"))
        if stats is None or stats.mark < 0:
            return  # no trade taken yet: nothing to be missing after
        trades = await self._recent_after_break(symbol, RECENT_TRADES_AFTER_BREAK)
        if trades is None:
            return
        for t in trades:
            if t.trade_id > stats.mark:
                self._record(t, "rest")

    # --- connections ---------------------------------------------------------------------------

    def on_connected(self, conn: WsConnection) -> None:
        """A new chain starts at 0; the channels are subscribed one message each (heartbeats
        first, within the 5 s Coinbase gives a new connection)."""
        self._chains[conn] = SequenceChain()
        self._pending.pop(conn, None)
        self._unsubscribing.pop(conn, None)
        super().on_connected(conn)
        self._spawn(self._subscribe_all(conn))

    async def _subscribe_again(self, conn: WsConnection) -> None:
        await asyncio.sleep(self.config.backoff(min(self.venue_errors, 6)))
        if conn.connected and not conn.retiring:
            await self._subscribe_all(conn)

    async def _subscribe_all(self, conn: WsConnection) -> None:
        for group in cb.by_channel(conn.streams):
            await conn.subscribe(group)

    def on_disconnected(self, conn: WsConnection) -> None:
        self._chains.pop(conn, None)
        self._pending.pop(conn, None)
        self._unsubscribing.pop(conn, None)
        super().on_disconnected(conn)

    # --- klines from REST ----------------------------------------------------------------------

    async def _seed_klines(self) -> None:
        """The start-up fetch, then every candle as it closes (the task lives as long as the
        feed: the stream carries no candles but 5-minute ones)."""
        await super()._seed_klines()
        await self._closed_klines()

    async def _closed_klines(self) -> None:
        """Each series from its last closed candle on, whenever a newer one is due. A bucket
        with no trade has no candle on Coinbase: once looked at after it closed, it is not
        asked for again (``checked``), so a quiet product costs one request a candle."""
        settle = int(self.kline_settle_s * 1000)
        checked: dict[tuple[str, str], int] = {}  # the newest candle looked for, per series
        before: tuple[float, int] | None = None  # (our clock, the server's) at the last look
        while not self._stopped.is_set():
            asked_at = time.monotonic()
            now = await self._server_time_with_retry()
            # how fast the server's clock runs against ours: 1 on Coinbase, faster on a
            # simulator run at speed (never taken as slower, which would only sleep too long)
            rate, recheck = 1.0, 1.0  # the first look: soon again, to learn the rate
            if before is not None and asked_at > before[0]:
                rate = min(10_000.0, max(1.0, (now - before[1]) / 1000 / (asked_at - before[0])))
                recheck = self.kline_recheck_s
            before = (asked_at, now)
            jobs = []
            due = []
            looked: dict[tuple[str, str], int] = {}
            for symbol in self.symbols:
                for iv in self.intervals:
                    key = (symbol, str(iv))
                    newest = iv.open_of(now - settle) - iv.ms  # closed settle ms ago at least
                    due.append(iv.open_of(now - settle) + iv.ms + settle)
                    last = max(self._last_closed.get(key, -1), checked.get(key, -1))
                    if last < newest:
                        start = iv.next_open(last) if last >= 0 else newest
                        jobs.append(
                            self._fetch_klines(key, start, count_as_backfill=False, server_now=now)
                        )
                        looked[key] = newest
            await asyncio.gather(*jobs)
            checked.update(looked)
            if not due:
                return
            elapsed = time.monotonic() - asked_at
            wait = (min(due) - now) / 1000 / rate - elapsed
            await asyncio.sleep(min(recheck, self.kline_recheck_s, max(0.2, wait)))


def _locked_coinbase_book(symbol: str) -> LockedBook:
    lb = LockedBook(symbol, BOOK_LEVELS)
    lb.book = CoinbaseBook(symbol, max_levels=BOOK_LEVELS)
    return lb
