"""The Lab's side of the tick store: trades flushed to it every interval, books sampled into it.
Both run on the collector's loop, the thread that owns the buffers and books."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from marketlab.lab.market_state import MarketState
from marketlab.stream.state import BookView

if TYPE_CHECKING:  # the tick store (pyarrow, DuckDB) loads where a Lab keeps one
    from marketlab.store.ticks import TickWriter


class BookSource(Protocol):
    """What the book samplers read: the symbols and each one's top levels.

    Implemented by :class:`marketlab.lab.Lab` (its readers' side, which also falls back to the
    fallback venue's book); it exists so the samplers take the Lab's public readers and no more.
    """

    @property
    def symbols(self) -> Sequence[str]: ...

    def book_levels(self, symbol: str, depth: int = 20) -> BookView: ...


async def flush_trades(state: MarketState, interval: float) -> None:
    """Trades reach the store a block at a time; a quiet symbol's rows go every interval."""
    while True:
        await asyncio.sleep(interval)
        state.flush_trades()


async def sample_books(lab: BookSource, ticks: TickWriter, levels: int, interval: float) -> None:
    """Every ``interval`` seconds, each synced book's top ``levels`` to the store (a book that
    has not changed since is not written again)."""
    last: dict[str, int] = {}
    while True:
        await asyncio.sleep(interval)
        _sample(lab, ticks, levels, last)


class ReplayBookSampler:
    """:func:`sample_books` for a replay: the interval runs on the recording's clock, so an
    ingested recording stores the snapshots live collection would have."""

    def __init__(self, lab: BookSource, ticks: TickWriter, levels: int, interval: float):
        self.lab, self.ticks, self.levels = lab, ticks, levels
        self.interval_ns = int(interval * 1e9)
        self.due = 0  # the recorded time of the next sample: a replay skips the calls before
        self.last: dict[str, int] = {}

    def next_due(self) -> int:
        """The recorded time (ns) before which a call does nothing (a replay skips those)."""
        return self.due

    def __call__(self, time_ns: int) -> None:
        if time_ns < self.due:
            return
        if self.due:
            _sample(self.lab, self.ticks, self.levels, self.last)
        self.due = time_ns + self.interval_ns


def _sample(lab: BookSource, ticks: TickWriter, levels: int, last: dict[str, int]) -> None:
    from marketlab.store.book_parts import BookRow

    for symbol in lab.symbols:
        view = lab.book_levels(symbol, levels)
        if view.synced and last.get(symbol) != view.last_update_id:
            last[symbol] = view.last_update_id
            when = view.event_time or int(time.time() * 1000)
            ticks.add_book(
                BookRow(view.exchange, symbol, when, view.last_update_id, view.bids, view.asks)
            )
