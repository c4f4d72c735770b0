"""A venue's spot feed and its perpetuals' feed run as the one feed of the Lab's side for that
venue, when a Lab collects both (``BTCUSDT`` and ``BTCUSDT-PERP`` from Binance).

They are two feeds because the venue serves them from two APIs (Binance's spot and USDⓈ-M
futures hosts; Bybit's spot and linear categories), each with its own connections, limits and
book rules. The Lab reads a side's feed for its books, status and readiness; this joins the
two: what is per symbol goes to the feed that holds the symbol, what is per feed is summed or
joined. Both fill the side's one :class:`~marketlab.lab.market_state.MarketState` (their symbols'
names differ).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from marketlab.records import is_perpetual
from marketlab.stream.connection import WsConnection
from marketlab.stream.feed import Feed, VenueError
from marketlab.stream.state import BookView, LockedBook, StreamStats


class PairedFeeds:
    """``spot`` and ``perp``, run and read as one feed (the methods and attributes the Lab, its
    status and its readers use of a feed)."""

    def __init__(self, spot: Feed, perp: Feed):
        self.parts = (spot, perp)
        self.spot, self.perp = spot, perp
        self.venue = spot.venue
        self.symbols = [*spot.symbols, *perp.symbols]
        self.ready = asyncio.Event()
        self.symbols_confirmed = asyncio.Event()

    def _of(self, symbol: str) -> Feed:
        return self.perp if is_perpetual(symbol) else self.spot

    # --- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        """Both feeds until both stop; ready (and confirmed) once both are."""

        async def both(event: Callable[[Feed], asyncio.Event], mine: asyncio.Event) -> None:
            for part in self.parts:
                await event(part).wait()
            mine.set()

        watchers = [
            asyncio.create_task(both(lambda f: f.ready, self.ready)),
            asyncio.create_task(both(lambda f: f.symbols_confirmed, self.symbols_confirmed)),
        ]
        try:
            outcomes = await asyncio.gather(*(p.run() for p in self.parts), return_exceptions=True)
        finally:
            for task in watchers:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def stop(self) -> None:
        for part in self.parts:
            await part.stop()

    @property
    def fatal(self) -> VenueError | None:
        """What stopped either feed (the other may go on: its data stays good)."""
        return self.spot.fatal or self.perp.fatal

    def resume_trades(self, last_ids: dict[str, int]) -> None:
        for part in self.parts:
            part.resume_trades({s: i for s, i in last_ids.items() if self._of(s) is part})

    def resume_klines(self, ends: dict[tuple[str, str], int]) -> None:
        for part in self.parts:
            part.resume_klines({k: t for k, t in ends.items() if self._of(k[0]) is part})

    # --- taps: set on both ---------------------------------------------------------------

    @property
    def tap(self) -> Callable[[int, str, bytes], None] | None:
        return self.spot.tap

    @tap.setter
    def tap(self, value: Callable[[int, str, bytes], None] | None) -> None:
        for part in self.parts:
            part.tap = value

    @property
    def book_tap(self) -> Callable[[Any, int | None, Any, Any, int], None] | None:
        return self.spot.book_tap

    @book_tap.setter
    def book_tap(self, value: Callable[[Any, int | None, Any, Any, int], None] | None) -> None:
        for part in self.parts:
            part.book_tap = value

    # --- per symbol ------------------------------------------------------------------------

    def book_view(self, symbol: str, depth: int, exchange: str = "") -> BookView:
        return self._of(symbol).book_view(symbol, depth, exchange)

    def book_state(self, symbol: str) -> str:
        return self._of(symbol).book_state(symbol)

    def book_check(self, symbol: str) -> str:
        return self._of(symbol).book_check(symbol)

    def invalidate_book(self, symbol: str, reason: str) -> None:
        self._of(symbol).invalidate_book(symbol, reason)

    # --- joined ----------------------------------------------------------------------------

    @property
    def books(self) -> dict[str, LockedBook]:
        return {**self.spot.books, **self.perp.books}

    @property
    def tick_sizes(self) -> dict[str, float]:
        return {**self.spot.tick_sizes, **self.perp.tick_sizes}

    @property
    def stream_stats(self) -> dict[tuple[str, str], StreamStats]:
        return {**self.spot.stream_stats, **self.perp.stream_stats}

    @property
    def kline_stats(self) -> dict[tuple[str, str], Any]:
        return {**self.spot.kline_stats, **self.perp.kline_stats}

    @property
    def trade_stats(self) -> dict[str, Any]:
        return {**self.spot.trade_stats, **self.perp.trade_stats}

    @property
    def trades_unverifiable(self) -> dict[str, Any]:
        return {**self.spot.trades_unverifiable, **self.perp.trades_unverifiable}

    @property
    def connections(self) -> list[WsConnection]:
        return [*self.spot.connections, *self.perp.connections]

    @property
    def reconnects(self) -> int:
        return self.spot.reconnects + self.perp.reconnects

    def bytes_received(self) -> int:
        return self.spot.bytes_received() + self.perp.bytes_received()

    @property
    def bad_frames(self) -> int:
        return self.spot.bad_frames + self.perp.bad_frames

    @property
    def frames_failed(self) -> int:
        return self.spot.frames_failed + self.perp.frames_failed

    @property
    def duplicates(self) -> int:
        return self.spot.duplicates + self.perp.duplicates

    @property
    def last_bad_frame(self) -> str:
        return self.perp.last_bad_frame or self.spot.last_bad_frame

    @property
    def polling(self) -> bool:
        return self.spot.polling or self.perp.polling

    @property
    def source(self) -> str:
        return "rest" if self.polling else "ws"

    @property
    def connected(self) -> bool:
        """Both feeds have a connection up."""
        return self.spot.connected and self.perp.connected

    @property
    def rest(self) -> Any:
        """The spot feed's REST client (what the Lab asks of a venue's REST is spot's)."""
        return self.spot.rest

    def unreachable_for(self, now: float | None = None) -> float:
        return max(part.unreachable_for(now) for part in self.parts)

    def books_deep(self) -> int:
        """Books synced from a deep snapshot: the spot feed's count, and every perpetual's
        (their feeds sync from deep snapshots only)."""
        spot = self.spot.books_deep() if hasattr(self.spot, "books_deep") else 0
        return spot + len(self.perp.books)
