"""Binance USDⓈ-M perpetuals on the common :class:`~marketlab.stream.feed.Feed`: one connection
(or more, 200 streams each) per route, books from REST snapshots bridged and chained by ``pu``,
aggregated trades kept whole by id, mark price with funding, and the liquidation sample.

Channels of a perpetual: ``trades`` (``@aggTrade``, as :class:`~marketlab.records.Trade` with
the aggregate id as trade id), ``book`` (``@depth@100ms``), ``klines``, ``mark``
(``@markPrice@1s``: :class:`~marketlab.records.MarkPrice`) and ``liquidations``
(``@forceOrder``: :class:`~marketlab.records.Liquidation`, a sample of at most one a second).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, cast

from marketlab.recording import files as rec
from marketlab.records import AggTrade, Interval, is_perpetual
from marketlab.stream.config import FeedConfig
from marketlab.stream.connection import WsConnection
from marketlab.stream.feed import Feed
from marketlab.stream.intake import Sink, TypedSink
from marketlab.stream.rest import RestError
from marketlab.stream.state import LockedBook
from marketlab.venues.binance.frames import RequestError, SubscriptionResult
from marketlab.venues.binance.perp_book import PerpBook
from marketlab.venues.binance.perp_frames import PerpDecoder, PerpDepth
from marketlab.venues.binance.perp_protocol import (
    MAX_STREAMS_PER_CONNECTION,
    PerpStream,
    parse_stream,
    split_by_route,
    stream_url,
    subscribe_message,
    unsubscribe_message,
)
from marketlab.venues.binance.perp_rest import DEPTH_LIMITS, BinancePerpRest, as_trade
from marketlab.venues.book import Action
from marketlab.venues.errors import FrameError

log = logging.getLogger("marketlab.feed")

PERP_CHANNELS = ("trades", "book", "klines", "mark", "liquidations")


def perp_streams_for(
    symbols: Sequence[str], intervals: Sequence[str], channels: Sequence[str]
) -> list[PerpStream]:
    """The futures streams of marketlab's perpetual channels (unknown ones and spot symbols
    refused here, naming what is known)."""
    unknown = set(channels) - set(PERP_CHANNELS)
    if unknown:
        raise ValueError(
            f"channel(s) {sorted(unknown)} not collected for perpetuals: expected some of "
            f"{', '.join(PERP_CHANNELS)}"
        )
    spot = [s for s in symbols if not is_perpetual(s)]
    if spot:
        raise ValueError(f"{', '.join(spot)}: not perpetuals (a perpetual is named BTCUSDT-PERP)")
    out = []
    for s in symbols:
        if "trades" in channels:
            out.append(PerpStream(s, "aggTrade"))
        if "book" in channels:
            out.append(PerpStream(s, "depth", None, 100))
        if "klines" in channels:
            out.extend(PerpStream(s, "kline", Interval(iv)) for iv in intervals)
        if "mark" in channels:
            out.append(PerpStream(s, "markPrice", None, 1000))
        if "liquidations" in channels:
            out.append(PerpStream(s, "forceOrder"))
    return out


class BinancePerpFeed(Feed):
    """Binance USDⓈ-M perpetual swaps (symbols named ``BTCUSDT-PERP``)."""

    venue = "binance"
    trades_by_id = True  # aggregate ids are consecutive: /fapi/v1/aggTrades?fromId=
    # open interest has no stream on Binance: asked of /fapi/v1/openInterest (weight 1 a symbol)
    # this often, or less often with many symbols (a tenth of the weight a minute at most)
    open_interest_every = 10.0

    @classmethod
    def channels_of(cls, channels: Sequence[str]) -> tuple[str, ...]:
        """What a perpetual collects of a Lab's channels: its trades, book and klines, and
        always its mark price (with funding) and liquidations."""
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
        streams = perp_streams_for(symbols, intervals, channels)
        super().__init__(symbols, intervals, channels, config, sink, kline_starts)
        self.streams = [st.name for st in streams]
        self._parsed = {st.name: st for st in streams}
        self.snapshot_limit = min(
            (x for x in DEPTH_LIMITS if x >= config.book_snapshot_limit), default=1000
        )
        if "book" in self.channels:
            for s in self.symbols:
                lb = LockedBook(s, self.snapshot_limit)
                lb.book = PerpBook(s, max_levels=self.snapshot_limit)
                self.books[s] = lb
        self._decoder = PerpDecoder()
        self._snapshot_tasks: dict[str, asyncio.Task[None]] = {}

    async def run(self) -> None:
        self._spawn(self._poll_open_interest())
        await super().run()

    async def _poll_open_interest(self) -> None:
        """Open interest of every symbol, over REST (no stream carries it)."""
        every = max(self.open_interest_every, len(self.symbols) * 60 / 240)
        while self.rest is None:
            await asyncio.sleep(0.05)
        while not self._stopped.is_set():
            for symbol in self.symbols:
                try:
                    self._record(await self.rest.open_interest(symbol), "rest")
                except RestError as exc:
                    log.warning("open interest of %s: %s", symbol, exc)
            await asyncio.sleep(every)

    def make_rest(self) -> BinancePerpRest:
        return BinancePerpRest(self.config.rest_url)

    def connection_plans(self) -> list[tuple[str, list[Any], list[Any]]]:
        cfg = self.config
        per_connection = min(cfg.streams_per_connection, MAX_STREAMS_PER_CONNECTION)
        plans = []
        for route, names in split_by_route(self.streams).items():
            for i in range(0, len(names), per_connection):
                group = names[i : i + per_connection]
                url = stream_url(cfg.ws_url, route, group[: cfg.url_streams])
                plans.append((url, group, group[cfg.url_streams :]))
        return plans

    def subscribe_message(self, streams: list[Any], request_id: int, unsubscribe: bool) -> bytes:
        make = unsubscribe_message if unsubscribe else subscribe_message
        return make(streams, request_id)

    def kline_of(self, stream: Any) -> tuple[str, Interval] | None:
        st = self._parsed.get(stream) or parse_stream(stream)
        return (st.symbol, st.interval) if st.channel == "kline" and st.interval else None

    def book_of(self, stream: Any) -> str | None:
        st = self._parsed.get(stream) or parse_stream(stream)
        return st.symbol if st.channel == "depth" else None

    # --- frames ------------------------------------------------------------------------

    def on_frame(self, frame: bytes, conn: WsConnection) -> None:
        try:
            events = self._decoder.decode(frame)
        except FrameError as exc:
            self.bad_frame(exc, conn)
            return
        for event in events:
            if isinstance(event, PerpDepth):
                self._depth(event)
            elif isinstance(event, AggTrade):
                self._record(as_trade(event), "ws")
            elif isinstance(event, SubscriptionResult):
                pass
            elif isinstance(event, RequestError):
                log.error("%s: request refused: %s (code %s)", conn.name, event.msg, event.code)
            else:  # klines, mark prices, liquidations
                self._record(event, "ws")

    def _depth(self, message: PerpDepth) -> None:
        delta = message.delta
        lb = self.books.get(delta.symbol)
        if lb is None:
            return
        with lb.lock:
            book = lb.book
            was = book.last_update_id if book.synced else None
            action = cast(PerpBook, book).on_depth(message)  # the books made here
            if self.book_tap is not None:
                self.book_tap(book, was, delta.bids, delta.asks, delta.event_time)
        self._count((delta.symbol, "depth"), "ws")
        self._deliver_delta(delta, "ws")
        if action is Action.FETCH_SNAPSHOT:
            task = self._snapshot_tasks.get(delta.symbol)
            if task is None or task.done():
                self._snapshot_tasks[delta.symbol] = self._spawn(self._fetch_snapshot(delta.symbol))

    async def _fetch_snapshot(self, symbol: str) -> None:
        """A REST snapshot for the book, again while the stream has already moved past it."""
        assert self.rest is not None
        attempt = 0
        while not self._stopped.is_set():
            try:
                snap = await self.rest.depth(symbol, self.snapshot_limit)
            except RestError as exc:
                if not exc.retryable:
                    self.fail(f"{self.venue} refused a book snapshot of {symbol}: {exc}")
                    return
                await asyncio.sleep(self.config.backoff(attempt))
                attempt += 1
                continue
            self._tap(rec.SNAPSHOT, symbol, snap)
            lb = self.books[symbol]
            with lb.lock:
                action = lb.book.on_snapshot(snap, self.snapshot_limit)
                synced = lb.book.synced
                if self.book_tap is not None:
                    self.book_tap(lb.book, None, (), (), 0)
            if synced:
                log.info("book %s: synced at update %d", symbol, lb.book.last_update_id)
            if action is not Action.FETCH_SNAPSHOT:
                return
            await asyncio.sleep(min(2.0, 0.2 * 2**attempt))
            attempt += 1
