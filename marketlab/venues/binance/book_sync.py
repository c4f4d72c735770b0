"""Binance's books kept whole (mixed into :class:`~marketlab.venues.binance.feed.BinanceFeed`):
a REST snapshot bridged to the diff-depth stream, and again after any gap.

With many books, syncing each from a 1000-level snapshot (weight 50 of 6000 a minute) takes
minutes: 300 books, 15,000 weight. So when deep snapshots of every book would take more than
a quarter of a minute's weight, every book first syncs from a cheap one (100 levels, weight 5:
300 books in one minute's budget), and is deepened afterwards, busiest first: a second book is
built beside the first (buffering the stream from before its snapshot was asked for) and takes
its place once it is synced, so a book is never out of sync while it deepens.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from marketlab.recording import files as rec
from marketlab.records import BookDelta, BookSnapshot
from marketlab.stream.rest import RestError
from marketlab.venues.book import Action, OrderBook

log = logging.getLogger("marketlab.feed")

FIRST_LIMIT = 100  # levels of a cheap first snapshot (weight 5)


def depth_weight(limit: int) -> int:
    """Binance's weight of ``/api/v3/depth`` at ``limit`` levels."""
    return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250


class BookSync:
    """Mixed into :class:`~marketlab.venues.binance.feed.BinanceFeed`: Binance's stream carries
    only diffs, so each book needs a REST snapshot bridged to it (and a fresh one after any
    gap); the venue-neutral :class:`~marketlab.stream.feed.Feed` knows nothing of this."""

    books: dict[str, Any]
    config: Any
    rest: Any
    book_tap: Any
    stream_stats: dict[tuple[str, str], Any]
    venue: str
    _stopped: asyncio.Event

    if TYPE_CHECKING:  # provided by the feed

        def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]: ...

        def _tap(self, kind: int, tag: str, records: Any) -> None: ...

        def fail(self, message: str) -> None: ...

    def _init_book_sync(self) -> None:
        """Called once ``books`` is set: how the first snapshots are taken depends on how many
        books there are."""
        self._snapshot_tasks: dict[str, asyncio.Task[None]] = {}  # one fetch per book at most
        deep = self.config.book_snapshot_limit
        # cheap first when deep snapshots of every book would take a quarter of a minute's weight
        self.cheap_first = (
            deep > FIRST_LIMIT
            and len(self.books) * depth_weight(deep) > self.config.weight_limit / 4
        )
        self.deep_books: set[str] = set()  # synced from a deep snapshot (or deepened since)
        self._shadows: dict[str, OrderBook] = {}  # books being deepened, fed beside the live ones
        self._deepening: asyncio.Task[None] | None = None

    def _delta(self, delta: BookDelta) -> None:
        lb = self.books.get(delta.symbol)
        if lb is None:
            return
        with lb.lock:
            book = lb.book
            if self.book_tap is None:
                action = book.on_delta(delta)
            else:
                was = book.last_update_id if book.synced else None
                action = book.on_delta(delta)
                self.book_tap(book, was, delta.bids, delta.asks, delta.event_time)
            if self._shadows:
                shadow = self._shadows.get(delta.symbol)
                if shadow is not None:
                    shadow.on_delta(delta)
        if action is Action.FETCH_SNAPSHOT:
            self._schedule_snapshot(delta.symbol)

    def _apply_snapshot(self, snap: BookSnapshot) -> tuple[Action, bool]:
        lb = self.books[snap.symbol]
        # a side as long as a cheap snapshot's limit may go on beyond it (the same rule on replay)
        cut = max(len(snap.bids), len(snap.asks)) == FIRST_LIMIT
        with lb.lock:
            action = lb.book.on_snapshot(snap, FIRST_LIMIT if cut else None)
            synced = lb.book.synced
            if synced and self.book_tap is not None:
                self.book_tap(lb.book, None, (), (), 0)
        if synced:
            (self.deep_books.discard if cut else self.deep_books.add)(snap.symbol)
            log.info("book %s: synced at update %d", snap.symbol, lb.book.last_update_id)
        return action, synced

    def _schedule_snapshot(self, symbol: str) -> None:
        task = self._snapshot_tasks.get(symbol)
        if task is None or task.done():
            self._snapshot_tasks[symbol] = self._spawn(self._fetch_snapshot(symbol))
        if self.cheap_first and (self._deepening is None or self._deepening.done()):
            self._deepening = self._spawn(self._deepen_all())

    async def _fetch_snapshot(self, symbol: str) -> None:
        assert self.rest is not None
        limit = FIRST_LIMIT if self.cheap_first else self.config.book_snapshot_limit
        attempt = 0
        while not self._stopped.is_set():
            try:
                snap = await self.rest.depth(symbol, limit)
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

    async def _deepen_all(self) -> None:
        """Every book synced shallow, deepened in turn, busiest first, until all are deep."""
        while not self._stopped.is_set():
            await asyncio.sleep(0.5)
            if any(not lb.book.synced for lb in self.books.values()):
                continue  # every book synced first
            shallow = [s for s in self.books if s not in self.deep_books]
            if not shallow:
                return
            busiest = max(
                shallow, key=lambda s: getattr(self.stream_stats.get((s, "depth")), "messages", 0)
            )
            await self._deepen(busiest)

    async def _deepen(self, symbol: str) -> None:
        lb = self.books[symbol]
        shadow = OrderBook(symbol, max_levels=self.config.book_snapshot_limit)
        self._shadows[symbol] = shadow  # buffers the stream from now on
        try:
            snap = await self.rest.depth(symbol, self.config.book_snapshot_limit)
        except RestError as exc:
            log.warning("book %s: deeper snapshot failed (%s); trying again later", symbol, exc)
            await asyncio.sleep(self.config.backoff(1))
            return
        finally:
            self._shadows.pop(symbol, None)
        with lb.lock:
            shadow.on_snapshot(snap)
            if not shadow.synced or not lb.book.synced:
                return  # the stream moved past it, or the book is resyncing: again later
            shadow.stats = lb.book.stats
            lb.book = shadow
            if self.book_tap is not None:
                self.book_tap(shadow, None, (), (), 0)
        self.deep_books.add(symbol)
        log.info(
            "book %s: deepened to %d levels at update %d",
            symbol,
            len(shadow),
            shadow.last_update_id,
        )

    def books_deep(self) -> int:
        """How many books are synced from a deep snapshot (the rest are still shallow)."""
        return len(self.deep_books & set(self.books))
