"""Candles a failing store let go of, fetched again over REST once it writes: the frames kept
them, history must have them too."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from marketlab.records import Interval
from marketlab.store.backfill import closed_kline_pages
from marketlab.store.writer import KlineStore
from marketlab.stream.rest import RestError

log = logging.getLogger("marketlab.lab")

# exchange → (a REST client, whether the caller must close it)
RestFor = Callable[[str], tuple[Any, bool]]


async def refill_dropped(store: KlineStore, rest_for: RestFor, every: float = 1.0) -> None:
    """Forever: once the store writes, fetch each dropped range again and queue it."""
    while True:
        await asyncio.sleep(every)
        if not store.health.ok or not store.health.dropped_ranges:
            continue
        for (exchange, symbol, interval), span in store.dropped_ranges().items():
            try:
                added = await _refill(
                    store, rest_for, exchange, symbol, Interval(interval), *span[:2]
                )
            except (RestError, ValueError) as exc:
                log.warning(
                    "store: fetching %s %s %s again failed (%s); will retry",
                    exchange,
                    symbol,
                    interval,
                    exc,
                )
            else:
                store.refilled((exchange, symbol, interval), span)
                log.warning(
                    "store: %d %s %s %s candle(s) dropped while it failed fetched again",
                    added,
                    exchange,
                    symbol,
                    interval,
                )


async def _refill(
    store: KlineStore,
    rest_for: RestFor,
    exchange: str,
    symbol: str,
    iv: Interval,
    first: int,
    last: int,
) -> int:
    rest, own = rest_for(exchange)
    added = 0
    try:
        now = await rest.server_time()
        async for closed in closed_kline_pages(rest, symbol, iv, first, last, now):
            store.add_many(exchange, closed)
            added += len(closed)
    finally:
        if own:
            await rest.close()
    return added
