"""A Lab resuming from its SQLite file: the newest stored candles into its rolling buffers, and
where each series resumes.

Rows go straight from SQLite into records, with no frame in between: a collector that resumes
loads neither pandas nor DuckDB (:class:`marketlab.store.history.History` reads frames)."""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from marketlab.records import KLINE_VALUES, Interval, Kline
from marketlab.rings import KlineBuffer
from marketlab.store.sqlite import connect

log = logging.getLogger("marketlab.history")


def recent_klines(db: Path, exchange: str, symbol: str, interval: str, limit: int) -> list[Kline]:
    """The newest ``limit`` closed candles of a series, oldest first (none when ``db`` does not
    exist yet). Taker volumes a venue does not publish (stored NULL) are NaN, as its feed
    gives them."""
    if not db.exists():
        return []
    conn = connect(db, readonly=True)
    try:
        rows = conn.execute(
            f"SELECT {', '.join(KLINE_VALUES)} FROM klines WHERE exchange = ? AND symbol = ? "
            "AND interval = ? ORDER BY open_time DESC LIMIT ?",
            (exchange, symbol, str(interval), limit),
        ).fetchall()[::-1]
    finally:
        conn.close()
    return [
        Kline(
            symbol,
            str(interval),
            int(open_time),
            open_,
            high,
            low,
            close,
            volume,
            int(close_time),
            quote_volume,
            int(trades),
            math.nan if taker_buy is None else taker_buy,
            math.nan if taker_buy_quote is None else taker_buy_quote,
            True,
        )
        for (
            open_time,
            open_,
            high,
            low,
            close,
            volume,
            quote_volume,
            trades,
            taker_buy,
            taker_buy_quote,
            close_time,
        ) in rows
    ]


def warm(
    db: Path,
    exchange: str,
    buffers: Mapping[tuple[str, Interval], KlineBuffer],
    capacity: int,
) -> dict[tuple[str, str], int]:
    """Load the newest stored candles into a Lab's ``buffers``; returns where each series
    resumes: its newest candle, or the last before the first hole in what was loaded
    (candles a store could not write before a stop), so the feed fetches everything after."""
    starts = {}
    for (symbol, iv), buf in buffers.items():
        recent = recent_klines(db, exchange, symbol, str(iv), capacity)
        if recent:
            buf.upsert_many(recent)
            starts[(symbol, str(iv))] = resume_from(iv, [k.open_time for k in recent])
    return starts


def resume_from(iv: Interval, opens: Sequence[int]) -> int:
    """The open time a series resumes after: the last before its first hole, else its last."""
    for a, b in itertools.pairwise(opens):
        if iv.next_open(a) != b:
            log.info("history %s: a hole after %d; fetching from there", iv, a)
            return a
    return opens[-1]
