"""Binance Spot on the common :class:`~marketlab.stream.feed.Feed`: combined streams, SUBSCRIBE
for the rest, books from REST snapshots bridged to the diff-depth stream."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from marketlab.defaults import CHANNELS
from marketlab.record import recording as rec
from marketlab.records import BookDelta, BookSnapshot, Interval
from marketlab.stream.connection import WsConnection
from marketlab.stream.feed import Feed, FeedConfig, LockedBook, Sink
from marketlab.stream.rest import RestError
from marketlab.venues import binance as bn
from marketlab.venues.binance.rest import BinanceRest
from marketlab.venues.book import Action

log = logging.getLogger("marketlab.feed")


def streams_for(
    symbols: Sequence[str], intervals: Sequence[str], channels: Sequence[str]
) -> list[str]:
    unknown = set(channels) - set(CHANNELS)
    if unknown:
        raise ValueError(
            f"unknown channel(s) {sorted(unknown)}: expected some of {', '.join(CHANNELS)}"
        )
    out = []
    for s in symbols:
        if "trades" in channels:
            out.append(bn.stream_name(s, "trade"))
        if "aggTrades" in channels:
            out.append(bn.stream_name(s, "aggTrade"))
        if "ticker" in channels:
            out.append(bn.stream_name(s, "ticker"))
        if "miniTicker" in channels:
            out.append(bn.stream_name(s, "miniTicker"))
        if "bookTicker" in channels:
            out.append(bn.stream_name(s, "bookTicker"))
        if "book" in channels:
            out.append(bn.stream_name(s, "depth", fast=True))
        if "klines" in channels:
            out.extend(bn.stream_name(s, "kline", interval=iv) for iv in intervals)
    return out


class BinanceFeed(Feed):
    """Binance Spot: combined streams, SUBSCRIBE for the rest, books from REST snapshots
    bridged to the diff-depth stream (Binance's documented procedure)."""

    venue = "binance"

    def __init__(self, symbols: Sequence[str], intervals: Sequence[str], channels: Sequence[str],
                 config: FeedConfig, sink: Sink,
                 kline_starts: dict[tuple[str, str], int] | None = None):  # fmt: skip
        super().__init__(symbols, intervals, channels, config, sink, kline_starts)
        self.streams = streams_for(self.symbols, self.intervals, self.channels)
        if "book" in self.channels:
            self.books = {s: LockedBook(s, config.book_snapshot_limit) for s in self.symbols}
        self._decoder = bn.StreamDecoder()
        self._parsed: dict[str, bn.Stream] = {n: bn.parse_stream(n) for n in self.streams}

    def make_rest(self) -> BinanceRest:
        return BinanceRest(self.config.rest_url, weight_limit=self.config.weight_limit)

    def connection_plans(self) -> list[tuple[str, list[Any], list[Any]]]:
        cfg = self.config
        return [
            (
                bn.combined_stream_url(cfg.ws_url, group[: cfg.url_streams]),
                group,
                group[cfg.url_streams :],
            )
            for group in bn.split_streams(self.streams, cfg.streams_per_connection)
        ]

    def subscribe_message(self, streams: list[Any], request_id: int, unsubscribe: bool) -> bytes:
        make = bn.unsubscribe_message if unsubscribe else bn.subscribe_message
        return make(streams, request_id)

    def kline_of(self, stream: Any) -> tuple[str, Interval] | None:
        st = self._parsed.get(stream) or bn.parse_stream(stream)
        return (st.symbol, st.interval) if st.channel == "kline" and st.interval else None

    def book_of(self, stream: Any) -> str | None:
        st = self._parsed.get(stream) or bn.parse_stream(stream)
        return st.symbol if st.channel == "depth" else None

    def on_frame(self, frame: bytes, conn: WsConnection) -> None:
        try:
            events = self._decoder.decode(frame)
        except bn.FrameError as exc:
            self.bad_frame(exc, conn)
            return
        for event in events:
            if isinstance(event, bn.ServerShutdown):
                self._roll_over(conn, "serverShutdown")
            elif isinstance(event, bn.RequestError):
                log.error(
                    "%s: request %s refused: %s (code %s)",
                    conn.name,
                    event.id,
                    event.msg,
                    event.code,
                )
            elif not isinstance(event, bn.SubscriptionResult):
                self._record(event, "ws")

    # --- order books -----------------------------------------------------------------------

    def _delta(self, delta: BookDelta) -> None:
        lb = self.books.get(delta.symbol)
        if lb is None:
            return
        with lb.lock:
            action = lb.book.on_delta(delta)
        if action is Action.FETCH_SNAPSHOT:
            self._schedule_snapshot(delta.symbol)

    def _apply_snapshot(self, snap: BookSnapshot) -> tuple[Action, bool]:
        lb = self.books[snap.symbol]
        with lb.lock:
            action = lb.book.on_snapshot(snap)
            synced = lb.book.synced
        if synced:
            log.info("book %s: synced at update %d", snap.symbol, lb.book.last_update_id)
        return action, synced

    def _schedule_snapshot(self, symbol: str) -> None:
        task = self._snapshot_tasks.get(symbol)
        if task is None or task.done():
            self._snapshot_tasks[symbol] = self._spawn(self._fetch_snapshot(symbol))

    async def _fetch_snapshot(self, symbol: str) -> None:
        assert self.rest is not None
        attempt = 0
        while not self._stopped.is_set():
            try:
                snap = await self.rest.depth(symbol, self.config.book_snapshot_limit)
            except RestError as exc:
                if not exc.retryable:
                    self.fail(f"{self.venue} refused a book snapshot of {symbol}: {exc}")
                    return
                await asyncio.sleep(self.config.backoff(attempt))
                attempt += 1
                continue
            self._tap(rec.SNAPSHOT, symbol, snap)
            action, synced = self._apply_snapshot(snap)
            if action is not Action.FETCH_SNAPSHOT:
                return
            await asyncio.sleep(0.2 if synced else min(2.0, 0.2 * 2**attempt))
            attempt += 1
