"""Binance Spot on the common :class:`~marketlab.stream.feed.Feed`: combined streams, SUBSCRIBE
for the rest, books from REST snapshots bridged to the diff-depth stream."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from marketlab.records import (
    AggTrade,
    BookDelta,
    BookTicker,
    Interval,
    Kline,
    MiniTicker,
    Ticker,
    Trade,
)
from marketlab.settings import CHANNELS
from marketlab.stream.config import FeedConfig
from marketlab.stream.connection import WsConnection
from marketlab.stream.feed import Feed
from marketlab.stream.intake import Sink, TypedSink
from marketlab.stream.state import LockedBook, StreamStats
from marketlab.venues import binance as bn
from marketlab.venues.binance.book_sync import BookSync
from marketlab.venues.binance.frames import Lane, lane_for, lane_table, take_combined
from marketlab.venues.binance.rest import BinanceRest

log = logging.getLogger("marketlab.feed")

_KINDS: dict[str, type] = {
    "trade": Trade,
    "aggTrade": AggTrade,
    "ticker": Ticker,
    "miniTicker": MiniTicker,
    "bookTicker": BookTicker,
    "depth": BookDelta,
    "kline": Kline,
}


def streams_for(
    symbols: Sequence[str], intervals: Sequence[str], channels: Sequence[str]
) -> list[str]:
    """Binance's stream names for marketlab's channel names: what the feed's connections carry.
    A channel marketlab does not know is refused here, naming the ones it does."""
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


class BinanceFeed(BookSync, Feed):
    """Binance Spot: combined streams, SUBSCRIBE for the rest, books from REST snapshots
    bridged to the diff-depth stream (Binance's documented procedure)."""

    venue = "binance"
    trades_by_id = True  # /api/v3/historicalTrades?fromId=

    def __init__(
        self,
        symbols: Sequence[str],
        intervals: Sequence[str],
        channels: Sequence[str],
        config: FeedConfig,
        sink: Sink | TypedSink,
        kline_starts: dict[tuple[str, str], int] | None = None,
    ):
        super().__init__(symbols, intervals, channels, config, sink, kline_starts)
        self.streams = streams_for(self.symbols, self.intervals, self.channels)
        if "book" in self.channels:
            self.books = {s: LockedBook(s, config.book_snapshot_limit) for s in self.symbols}
        self._init_book_sync()
        self._decoder = bn.StreamDecoder()
        self._parsed: dict[str, bn.Stream] = {n: bn.parse_stream(n) for n in self.streams}
        self._lanes = lane_table()
        for name, st in self._parsed.items():
            self._lanes.add(name.encode(), *self._lane(st))

    def _lane(self, st: bn.Stream) -> Lane:
        """What a payload of ``st`` goes through: to its record, its taker and its status row."""
        key = (st.symbol, f"kline_{st.interval}" if st.channel == "kline" else st.channel)
        stats = self.stream_stats.setdefault(key, StreamStats())
        kind = _KINDS.get(st.channel)
        take = self._take if kind is None else self.takers.get(kind, self._take)
        return lane_for(st, take, stats, kind)

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

    def frame_reader(self) -> Any:
        return self._lanes  # the compiled LaneTable, or its twin

    def on_frame(self, frame: bytes, conn: WsConnection) -> None:
        # The usual frame {"stream":"…","data":{…}} of one of our streams: the payload is cut
        # out and read straight to its record and taker (no envelope parsed, no dispatch).
        if take_combined(self._lanes, frame):
            return
        try:  # anything else, or a payload the compiled reader left: said what it is, or why not
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
