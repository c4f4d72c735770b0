"""Trade integrity for a feed: trade ids the stream skipped (an outage, a reconnect, a
rollover, a period on REST polling) are fetched over REST by id and put in their place, so the
trades a reader sees are contiguous; what the venue no longer keeps is reported as a hole with
its id range, never hidden."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from marketlab.recording import files as rec
from marketlab.records import Trade
from marketlab.stream.rest import RestError
from marketlab.stream.state import StreamStats

log = logging.getLogger("marketlab.feed")

MAX_TRADE_BACKFILL = 1_000_000  # ids fetched per gap at most; older ones are reported lost
RECENT_TRADE_ATTEMPTS = 5  # asks for the recent trades after a break before giving up
MAX_HOLES = 100  # id ranges kept per symbol for status (the oldest are merged into the count)


@dataclass(slots=True)
class TradeStats:
    """One symbol's trade integrity figures for the status table: ids fetched to fill a gap,
    and the ranges the venue no longer had, so a reader knows where trades are missing."""

    backfilled: int = 0  # trades fetched over REST that the stream skipped
    gaps: int = 0  # times the stream skipped trade ids
    lost: int = 0  # ids the venue no longer had when asked
    holes: list[tuple[int, int]] = field(default_factory=list)  # (first, last) id ranges lost


class TradeIntegrity:
    """Mixed into :class:`~marketlab.stream.feed.Feed`, whose ``__init__`` calls
    :meth:`_init_trade_integrity` for the state kept here; the rest is the feed's."""

    trades_by_id = False  # the venue's trade ids are contiguous and its REST looks them up
    config: Any
    rest: Any
    _stopped: asyncio.Event
    _deliver_backfilled: Any
    stream_stats: dict[tuple[str, str], StreamStats]

    if TYPE_CHECKING:  # provided by the feed

        def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]: ...

        def _tap(self, kind: int, tag: str, records: Any) -> None: ...

    def _init_trade_integrity(self) -> None:
        self.trade_stats: dict[str, TradeStats] = {}
        # On a venue whose trade ids are not consecutive (``trades_by_id`` False) an outage's
        # trades cannot be checked complete: per symbol, how many times that happened, so the
        # status says so instead of implying the trades are whole.
        self.trades_unverifiable: dict[str, int] = {}
        self._trade_gaps: dict[str, list[tuple[int, int]]] = {}
        self._trade_tasks: dict[str, asyncio.Task[None]] = {}

    def _trade_gap(self, symbol: str, first: int, last: int) -> None:
        """The stream went from id ``first - 1`` to ``last + 1``: fetch what lies between
        (venues whose REST looks trades up by id; elsewhere the ids are only counted missed)."""
        if not self.trades_by_id:
            return
        stats = self.trade_stats.setdefault(symbol, TradeStats())
        stats.gaps += 1
        if last - first + 1 > MAX_TRADE_BACKFILL:  # days away: the newest part only
            self._trades_lost(symbol, first, last - MAX_TRADE_BACKFILL)
            first = last - MAX_TRADE_BACKFILL + 1
        self._schedule_trades(symbol, first, last)

    def resume_trades(self, last_ids: dict[str, int]) -> None:
        """Where stored trades end: the first trade the stream brings after them shows the gap
        (what came while nothing ran), which is then fetched by id."""
        for symbol, last in last_ids.items():
            stats = self.stream_stats.get((symbol, "trade"))
            if stats is not None and self.trades_by_id:
                stats.mark = max(stats.mark, last)

    def _schedule_trades(self, symbol: str, first: int, last: int) -> None:
        self._trade_gaps.setdefault(symbol, []).append((first, last))
        task = self._trade_tasks.get(symbol)
        if task is None or task.done():
            self._trade_tasks[symbol] = self._spawn(self._backfill_trades(symbol))

    async def _backfill_trades(self, symbol: str) -> None:
        pending = self._trade_gaps.setdefault(symbol, [])
        while pending and not self._stopped.is_set():
            first, last = pending.pop(0)
            await self._fetch_trades(symbol, first, last)

    async def _fetch_trades(self, symbol: str, first: int, last: int) -> None:
        """Page through ids ``first..last``; a range the venue no longer has is a hole."""
        page = self.rest.trade_page
        cursor, attempt = first, 0
        while cursor <= last and not self._stopped.is_set():
            try:
                rows = await self.rest.trades_from(symbol, cursor, min(page, last - cursor + 1))
            except RestError as exc:
                if not exc.retryable:
                    log.error(
                        "trades %s: the venue refused ids %d-%d: %s", symbol, cursor, last, exc
                    )
                    self._trades_lost(symbol, cursor, last)
                    return
                await asyncio.sleep(self.config.backoff(attempt))
                attempt += 1
                continue
            attempt = 0
            wanted = [t for t in rows if cursor <= t.trade_id <= last]
            self._tap(rec.TRADES, f"{symbol} {cursor} {last}", wanted)
            if not wanted:
                self._trades_lost(symbol, cursor, last)
                return
            if wanted[0].trade_id > cursor:
                self._trades_lost(symbol, cursor, wanted[0].trade_id - 1)
            self._apply_backfilled_trades(symbol, wanted)
            cursor = wanted[-1].trade_id + 1

    async def _recent_after_break(self, symbol: str, *args: Any) -> list[Trade] | None:
        """The venue's newest trades of ``symbol`` (``rest.recent_trades(symbol, *args)``),
        asked for after an interruption: a refusal that may pass (a rate limit, a ban the
        pacer waits out, a 5xx) is tried again, a few times; None when the venue would not
        say (logged), so the caller reports what it could not check."""
        attempts = RECENT_TRADE_ATTEMPTS
        for attempt in range(attempts):
            if self._stopped.is_set():
                return None
            try:
                trades: list[Trade] = await self.rest.recent_trades(symbol, *args)
                return trades
            except RestError as exc:
                if not exc.retryable or attempt == attempts - 1:
                    log.warning(
                        "trades %s: recent trades not fetched after a break: %s", symbol, exc
                    )
                    return None
                await asyncio.sleep(self.config.backoff(attempt))
        return None

    def _apply_backfilled_trades(self, symbol: str, trades: list[Trade]) -> None:
        stats = self.trade_stats.setdefault(symbol, TradeStats())
        stats.backfilled += len(trades)
        log.info("trades %s: backfilled %d trade(s) over REST", symbol, len(trades))
        self._deliver_backfilled(symbol, trades, "rest")

    def _trades_lost(self, symbol: str, first: int, last: int) -> None:
        stats = self.trade_stats.setdefault(symbol, TradeStats())
        stats.lost += last - first + 1
        stats.holes.append((first, last))
        del stats.holes[:-MAX_HOLES]
        log.warning("trades %s: ids %d-%d are no longer kept by the venue", symbol, first, last)
