"""Kline integrity for a feed: every candle the venue closed while we ran reaches the sink
once — gaps in the stream and outages are backfilled over REST, repeats are dropped, and the
start-up fetch resumes where stored history ended."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from marketlab.recording import files as rec
from marketlab.records import Interval, Kline
from marketlab.stream.rest import RestError

log = logging.getLogger("marketlab.feed")

_INTERVALS: dict[str, Interval] = {}


class KlineIntegrity:
    """Mixed into :class:`~marketlab.stream.feed.Feed`, whose ``__init__`` calls
    :meth:`_init_kline_integrity` for the state kept here; the rest is the feed's."""

    # provided by the feed
    venue: str
    config: Any
    rest: Any
    sink: Any
    _deliver_kline: Any
    symbols: list[str]
    intervals: list[Interval]
    kline_stats: dict[tuple[str, str], Any]
    ready: asyncio.Event
    _stopped: asyncio.Event
    _last_closed: dict[tuple[str, str], int]
    _history_ends: dict[tuple[str, str], int]

    if TYPE_CHECKING:  # provided by the feed

        def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]: ...

        def _tap(self, kind: int, tag: str, records: Any) -> None: ...

        def fail(self, message: str) -> None: ...

    def _init_kline_integrity(self) -> None:
        # the closed candles delivered per series (the newest 10,000), to drop a repeat
        self._emitted: dict[tuple[str, str], tuple[set[int], deque[int]]] = {}
        self._next_opens: dict[tuple[str, str], tuple[int, int]] = {}  # last closed → next
        self._backfill_tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._backfill_from: dict[tuple[str, str], int] = {}  # where each pending fetch starts

    def _kline(self, k: Kline, source: str, check_gaps: bool) -> bool:
        key = (k.symbol, k.interval)
        last = self._last_closed.get(key)
        if check_gaps and last is not None:
            known = self._next_opens.get(key)  # the candle after the last closed, worked out once
            if known is None or known[0] != last:
                iv = _INTERVALS.get(k.interval) or _INTERVALS.setdefault(
                    k.interval, Interval(k.interval)
                )
                known = self._next_opens[key] = (last, iv.next_open(last))
            expected = known[1]
            if k.open_time > expected:
                self.kline_stats[key].gaps_detected += 1
                self._schedule_backfill(key, expected)
        if k.closed:
            seen, order = self._emitted.setdefault(key, (set(), deque()))
            if k.open_time in seen:
                self.kline_stats[key].duplicates += 1
                return False
            seen.add(k.open_time)
            order.append(k.open_time)
            if len(order) > 10_000:
                seen.discard(order.popleft())
            if last is None or k.open_time > last:
                self._last_closed[key] = k.open_time
        self._deliver_kline(k, source)
        return True

    def _schedule_backfill(self, key: tuple[str, str], start: int) -> None:
        """Fetch every closed candle from ``start`` on (merged with any pending request)."""
        pending = self._backfill_from.get(key)
        self._backfill_from[key] = start if pending is None else min(pending, start)
        task = self._backfill_tasks.get(key)
        if task is None or task.done():
            self._backfill_tasks[key] = self._spawn(self._backfill(key))

    async def _backfill(self, key: tuple[str, str]) -> None:
        while (start := self._backfill_from.pop(key, None)) is not None:
            added = await self._fetch_klines(key, start, count_as_backfill=True)
            if added:
                log.info("klines %s %s: backfilled %d candle(s) over REST", *key, added)

    async def _fetch_klines(
        self,
        key: tuple[str, str],
        start: int,
        count_as_backfill: bool,
        include_open: bool = False,
        server_now: int | None = None,
    ) -> int:
        """Page through the venue's klines from ``start``; returns closed candles delivered.

        ``server_now``, the venue's time just asked by the caller, spares the first page its own
        request for it: an earlier time only ever takes fewer candles as closed (a candle is
        closed when its last millisecond is before it), so it is never wrong, only cautious."""
        assert self.rest is not None
        symbol, interval = key
        iv = Interval(interval)
        page = self.rest.kline_page
        added = attempt = 0
        cursor = start
        while not self._stopped.is_set():
            try:
                if server_now is not None:
                    now, server_now = server_now, None
                else:
                    now = await self.rest.server_time()
                rows = await self.rest.klines(
                    symbol, interval, start=cursor, limit=page, server_time=now
                )
            except RestError as exc:
                if not exc.retryable:
                    self.fail(f"{self.venue} refused klines {symbol} {interval}: {exc}")
                    return added
                await asyncio.sleep(self.config.backoff(attempt))
                attempt += 1
                continue
            attempt = 0
            self._tap(rec.KLINES, f"{symbol} {interval} {int(include_open)}", rows)
            added += self._apply_klines(rows, include_open)
            closed = [k for k in rows if k.closed]
            if closed:
                cursor = iv.next_open(closed[-1].open_time)
            elif self.rest.windowed and cursor + page * iv.ms < now - iv.ms:
                cursor += page * iv.ms  # an empty window (the venue was down): look further
                continue
            else:
                break
            if (not self.rest.windowed and len(rows) < page) or iv.next_open(cursor) > now:
                break
        if count_as_backfill:
            self.kline_stats[key].backfilled += added
            self._tap(rec.KLINES, f"{symbol} {interval} 0 {added}", [])
        return added

    async def _seed_klines(self) -> None:
        """Start-up: the recent past of every series (or from where the caller's history ends)."""
        assert self.rest is not None
        now = await self._server_time_with_retry()
        jobs = []
        for symbol in self.symbols:
            for iv in self.intervals:
                key = (symbol, str(iv))
                known = self._history_ends.get(key)
                if known is not None:
                    start, backfill = iv.next_open(known), True
                else:
                    start, backfill = iv.open_of(now) - self.config.seed_klines * iv.ms, False
                jobs.append(
                    self._fetch_klines(
                        key,
                        max(0, start),
                        count_as_backfill=backfill,
                        include_open=True,
                        server_now=now,
                    )
                )
        await asyncio.gather(*jobs)
        self._tap(rec.READY, "", [])
        self.ready.set()

    def _apply_klines(self, rows: Sequence[Kline], include_open: bool) -> int:
        """A page of REST klines: closed ones through the integrity checks, returns how many
        were new; the open one (``include_open``) straight to the sink."""
        added = 0
        for k in rows:
            if k.closed:
                if self._kline(k, "rest", check_gaps=False):
                    added += 1
            elif include_open:
                self._deliver_kline(k, "rest")
        return added

    async def _server_time_with_retry(self) -> int:
        assert self.rest is not None
        attempt = 0
        while True:
            try:
                return await self.rest.server_time()
            except RestError:
                await asyncio.sleep(self.config.backoff(attempt))
                attempt += 1
