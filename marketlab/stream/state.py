"""What a feed keeps for readers in other threads: per-stream counts, kline integrity figures,
books behind a lock, and a book's levels as a plain view."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from marketlab.venues.book import OrderBook


class BookView(NamedTuple):
    """A book's levels, or why there are none, without pandas (for servers and charts)."""

    synced: bool
    last_update_id: int  # 0 while not synced
    bids: list[tuple[float, float]]  # best first
    asks: list[tuple[float, float]]
    reason: str  # why it is not synced
    exchange: str = ""  # the venue the levels come from
    verified: str = ""  # how it is known to equal the venue's (e.g. "seqId chain")
    event_time: int = 0  # the venue's time of the last update applied (ms; 0 when unknown)


@dataclass(slots=True)
class StreamStats:
    """One (symbol, stream) row of the status table, and the newest id taken from it."""

    messages: int = 0
    last_received: float | None = None  # wall time
    source: str = "ws"
    mark: int = -1  # the id (trade id, update id, event time) of the newest record delivered


@dataclass
class KlineStats:
    """One series' kline integrity figures for the status table: what the feed repaired
    (backfilled gaps, dropped repeats) is shown, not hidden."""

    backfilled: int = 0  # closed candles fetched over REST that the stream did not deliver
    gaps_detected: int = 0
    duplicates: int = 0


class LockedBook:
    """An order book and the lock readers in other threads take."""

    def __init__(self, symbol: str, max_levels: int):
        self.book = OrderBook(symbol, max_levels=max_levels)
        self.lock = threading.Lock()


def stat_keys(
    symbols: Sequence[str], intervals: Sequence[str], channels: Sequence[str]
) -> list[tuple[str, str]]:
    """The (symbol, stream) rows of the status table, so every one shows before data comes."""
    names = {
        "trades": "trade",
        "aggTrades": "aggTrade",
        "ticker": "ticker",
        "miniTicker": "miniTicker",
        "bookTicker": "bookTicker",
        "book": "depth",
    }
    return [(s, names[c]) for s in symbols for c in channels if c in names] + [
        (s, f"kline_{iv}") for s in symbols for iv in intervals if "klines" in channels
    ]
