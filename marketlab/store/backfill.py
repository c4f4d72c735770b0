"""Historical klines from the exchange's REST API into the store, resumable, within limits."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from marketlab.records import Interval, Kline
from marketlab.store.writer import KlineStore
from marketlab.stream.rest import RestError
from marketlab.venues import registry

log = logging.getLogger("marketlab.backfill")


async def closed_kline_pages(
    rest: Any, symbol: str, iv: Interval, first: int, stop: int, now: int
) -> AsyncIterator[list[Kline]]:
    """The venue's closed candles with open times in [first, stop], a page at a time; retries
    what may pass later, raises ``ValueError`` for what the venue refuses."""
    page = rest.kline_page
    cursor = first
    while cursor <= stop:
        try:
            rows = await rest.klines(
                symbol, iv, start=cursor, end=stop, limit=page, server_time=now
            )
        except RestError as exc:
            if not exc.retryable:
                raise ValueError(f"backfill {symbol} {iv}: {exc}") from None
            log.warning("backfill %s %s: %s; retrying", symbol, iv, exc)
            await asyncio.sleep(1.0)
            continue
        closed = [k for k in rows if k.closed]
        if closed:
            yield closed
            cursor = iv.next_open(closed[-1].open_time)
        elif rest.windowed and cursor + page * iv.ms <= stop:
            cursor += page * iv.ms  # nothing in this window (the venue was down)
            continue
        else:
            break
        if not rest.windowed and len(rows) < page:
            break


async def run_backfill(
    store: KlineStore,
    exchange: str,
    symbols: list[str],
    intervals: list[Interval],
    start: int,
    end: int | None,
    rest_url: str | None,
    progress: bool,
) -> int:
    """Page the venue's klines for every series from ``start`` (or where the store ends) to
    ``end``."""
    rest = registry.get(exchange).rest_client(rest_url)
    try:
        now = await rest.server_time()
        stop = min(end, now) if end is not None else now
        stored = store.last_open_times(exchange)
        plan = []
        for symbol in symbols:
            for iv in intervals:
                first = iv.open_of(start)
                first = first if first >= start else iv.next_open(first)
                last = stored.get((symbol, str(iv)))
                if last is not None and first <= last < stop:
                    first = iv.next_open(last)  # resume where the previous run ended
                plan.append((symbol, iv, first))
        total = sum(max(0, (stop - first) // iv.ms + 1) for _, iv, first in plan)
        from tqdm import tqdm  # here: a Lab loads this module for its REST paging alone

        bar = tqdm(total=total, unit="candle", desc="backfill", disable=not progress)
        written = 0
        for symbol, iv, first in plan:
            async for closed in closed_kline_pages(rest, symbol, iv, first, stop, now):
                store.add_many(exchange, closed)
                written += len(closed)
                bar.update(len(closed))
            store.flush()
        bar.close()
        return written
    finally:
        await rest.close()
