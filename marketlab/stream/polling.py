"""REST polling while a feed's WebSocket stays down: tickers, shallow books and the newest
candles, within the venue's limits, until the stream is back."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from marketlab.recording import files as rec
from marketlab.records import BookSnapshot, Record
from marketlab.stream.rest import RestError
from marketlab.stream.state import StreamStats

log = logging.getLogger("marketlab.feed")


class RestPolling:
    """Mixed into :class:`~marketlab.stream.feed.Feed` (it holds the state this works on)."""

    config: Any
    rest: Any
    channels: tuple[str, ...]
    symbols: list[str]
    intervals: list[Any]
    books: dict[str, Any]
    stream_stats: dict[tuple[str, str], StreamStats]
    poll_errors: int
    book_tap: Callable[[Any, int | None, Any, Any, int], None] | None

    if TYPE_CHECKING:  # provided by the feed

        def _tap(self, kind: int, tag: str, records: Any) -> None: ...

        def _record(self, record: Record, source: str) -> None: ...

    async def _poll(self) -> None:
        """While the WebSocket is down: tickers, books and candles over REST."""
        assert self.rest is not None
        while True:
            began = time.monotonic()
            try:
                if "ticker" in self.channels:
                    tickers = await self.rest.tickers(self.symbols)
                    self._tap(rec.TICKERS, "", tickers)
                    self._apply_polled(tickers)
                for symbol in self.books:
                    limit = min(100, self.config.book_snapshot_limit)
                    snap = await self.rest.depth(symbol, limit)
                    self._tap(rec.POLLED_BOOK, str(limit), snap)
                    self._apply_polled_book(snap, limit)
                if "klines" in self.channels:
                    now = await self.rest.server_time()
                    for symbol in self.symbols:
                        for iv in self.intervals:
                            klines = await self.rest.klines(symbol, iv, limit=2, server_time=now)
                            self._tap(rec.KLINES, f"{symbol} {iv} poll", klines)
                            self._apply_polled(klines)
                self.poll_errors = 0
            except RestError as exc:
                self.poll_errors += 1
                if self.poll_errors in (1, 10) or self.poll_errors % 100 == 0:
                    log.warning("REST polling (%d failures in a row): %s", self.poll_errors, exc)
            await asyncio.sleep(max(0.0, self.config.poll_interval - (time.monotonic() - began)))

    def _apply_polled(self, records: Sequence[Record]) -> None:
        for r in records:
            self._record(r, "rest")

    def _apply_polled_book(self, snap: BookSnapshot, limit: int) -> None:
        lb = self.books.get(snap.symbol)
        if lb is None:
            return
        with lb.lock:
            lb.book.reset(snap, limit)
            if self.book_tap is not None:  # a new book: readers start over from it
                self.book_tap(lb.book, None, (), (), 0)
        self.stream_stats.setdefault((snap.symbol, "depth"), StreamStats()).source = "rest"
