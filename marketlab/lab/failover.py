"""Switching to a fallback venue while the primary is unreachable, and back, without mixing
their series: the fallback's klines are kept in buffers of their own (and stored under its
name), its tickers and books stand in for the primary's, its trades are never taken (two
venues' trade ids in one buffer would lie)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from marketlab.records import Interval, Kline, Record
from marketlab.rings import KlineBuffer
from marketlab.stream.config import FeedConfig
from marketlab.stream.feed import Feed
from marketlab.stream.state import BookView
from marketlab.venues import registry

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("marketlab.lab")

FALLBACK_CHANNELS = ("ticker", "book", "klines")  # what a fallback venue stands in for


class Failover:
    """Runs ``venue``'s feed while the primary has been unreachable for ``after`` seconds."""

    def __init__(
        self,
        venue: str,
        config: FeedConfig,
        symbols: Sequence[str],
        intervals: Sequence[Interval],
        channels: Sequence[str],
        after: float,
        kline_capacity: int,
        deliver: Callable[[Record, str], None],
        store: Callable[[str, Kline], None],
    ):
        """``deliver(record, source)`` takes tickers (and every record, for subscribers);
        ``store(venue, kline)`` takes closed klines."""
        self.venue = venue
        self.config = config
        self.symbols, self.intervals = list(symbols), list(intervals)
        self.channels = tuple(c for c in channels if c in FALLBACK_CHANNELS)
        self.after = after
        self.kline_capacity = kline_capacity
        self.deliver, self.store = deliver, store
        self.klines: dict[tuple[str, str], KlineBuffer] = {}
        self.feed: Feed | None = None
        self.task: asyncio.Task[None] | None = None
        self.count = 0
        self.since: float | None = None

    @property
    def active(self) -> bool:
        return self.feed is not None

    async def watch(self, primary: Feed, primary_name: str) -> None:
        """Fail over while ``primary`` is unreachable; fail back once it delivers again."""
        while True:
            await asyncio.sleep(0.2)
            down = primary.unreachable_for()
            if self.feed is None and down >= self.after:
                log.warning(
                    "%s unreachable for %.0f s: switching to %s", primary_name, down, self.venue
                )
                self._start()
            elif self.feed is not None and primary.connected and down == 0.0:
                log.warning("%s is back: switching back from %s", primary_name, self.venue)
                await self.stop()

    def _start(self) -> None:
        feed_class = registry.get(self.venue).feed_class()
        self.feed = feed_class(
            self.symbols,
            self.intervals,
            self.channels,
            self.config,
            self._records,
            kline_starts=self._starts(),
        )
        self.task = asyncio.create_task(self.feed.run())
        self.count += 1
        self.since = time.time()

    def _starts(self) -> dict[tuple[str, str], int]:
        """Where the fallback series ended at the last failover, if recently: the fallback
        fetches from there; otherwise it starts with the recent past (``seed_klines``)."""
        starts = {}
        now_ms = int(time.time() * 1000)
        for (symbol, iv), buf in self.klines.items():
            last = buf.last_closed_open_time()
            if last is not None and now_ms - last < self.config.seed_klines * Interval(iv).ms:
                starts[(symbol, iv)] = last
        return starts

    async def stop(self) -> None:
        feed, task = self.feed, self.task
        self.feed = self.task = None
        self.since = None
        if feed is not None and task is not None:
            await feed.stop()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 15)

    def _records(self, records: Sequence[Record], source: str) -> None:
        source = f"{self.venue}:{source}"
        for r in records:
            if isinstance(r, Kline):
                key = (r.symbol, r.interval)
                buf = self.klines.get(key)
                if buf is None:
                    buf = self.klines[key] = KlineBuffer(Interval(r.interval), self.kline_capacity)
                buf.upsert(r)
                if r.closed:
                    self.store(self.venue, r)
            self.deliver(r, source)

    def book_view(self, symbol: str, depth: int) -> BookView | None:
        """The fallback's book while it is synced and failed over to, else None."""
        feed = self.feed
        if feed is None:
            return None
        view = feed.book_view(symbol, depth, self.venue)
        return view if view.synced else None

    def kline_frame(self, symbol: str, interval: Interval) -> pd.DataFrame:
        buf = self.klines.get((symbol, str(interval)))
        return buf.frame() if buf is not None else KlineBuffer(interval, 1).frame()
