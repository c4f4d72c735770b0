"""One venue a Lab collects from: its symbols and feed settings, what its feed fills (a
:class:`MarketState`), the feed once started, its tick writer and bus publisher, and its
fallback venue. A Lab over several venues holds one side per venue and runs every side's feed
on its one collector thread; nothing of one venue's series is mixed into another's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from marketlab.lab.market_state import MarketState
from marketlab.records import Interval, Record, Ticker, normalize_symbol
from marketlab.rings import KlineBuffer
from marketlab.stream.config import FeedConfig
from marketlab.stream.state import BookView

if TYPE_CHECKING:
    import pandas as pd

    from marketlab.bus.publisher import Publisher
    from marketlab.lab.failover import Failover
    from marketlab.store.ticks import TickWriter
    from marketlab.stream.feed import Feed


class VenueSide:
    def __init__(
        self,
        exchange: str,
        symbols: Sequence[str],
        intervals: Sequence[Interval],
        config: FeedConfig,
        state: MarketState,
        perp_config: FeedConfig | None = None,
        failover: Failover | None = None,
    ):
        self.exchange = exchange
        # the feed settings of the venue's perpetual swaps (BTCUSDT-PERP), where it collects any
        self.perp_config = perp_config
        self.symbols = list(symbols)
        self.intervals = list(intervals)
        self.config = config
        self.state = state
        self.failover = failover  # the venue standing in while this one is unreachable
        self.feed: Feed | None = None  # set when the Lab starts
        self.ticks: TickWriter | None = None  # trades, book snapshots and deltas to Parquet
        self.publisher: Publisher | None = None  # every record to the bus

    @property
    def fallback(self) -> str | None:
        return self.failover.venue if self.failover is not None else None

    def symbol(self, symbol: str) -> str:
        """The canonical name, or ``KeyError`` saying what this venue collects."""
        s = normalize_symbol(symbol)
        if s not in self.symbols:
            raise KeyError(
                f"{s} is not collected from {self.exchange} by this Lab "
                f"(symbols: {', '.join(self.symbols)})"
            )
        return s

    def book_levels(self, symbol: str, depth: int = 20) -> BookView:
        """The venue's book; the fallback's while this one is out of sync and failed over."""
        s = self.symbol(symbol)
        if self.feed is None:
            return BookView(False, 0, [], [], "not started", self.exchange)
        view = self.feed.book_view(s, depth, self.exchange)
        if not view.synced and self.failover is not None:
            return self.failover.book_view(s, depth) or view
        return view

    def kline_buffer(self, symbol: str, interval: str) -> KlineBuffer:
        buf = self.state.klines.get((self.symbol(symbol), Interval(interval)))
        if buf is None:
            raise KeyError(
                f"interval {interval} is not collected "
                f"(intervals: {', '.join(map(str, self.intervals))})"
            )
        return buf

    def fallback_klines(self, symbol: str, interval: str) -> pd.DataFrame:
        """The fallback venue's own series of ``symbol``, collected while failed over."""
        assert self.failover is not None
        iv = Interval(interval)
        if iv not in self.intervals:
            raise KeyError(
                f"interval {interval} is not collected "
                f"(intervals: {', '.join(map(str, self.intervals))})"
            )
        return self.failover.kline_frame(self.symbol(symbol), iv)

    def on_fallback(self, r: Record, source: str) -> None:
        """A record of the fallback venue: its tickers stand in for prices; subscribers see
        every one."""
        if isinstance(r, Ticker):
            self.state.ticker(r, source)
        if self.state.callbacks:
            self.state.notify(r)

    def tick_size(self, symbol: str) -> float | None:
        s = self.symbol(symbol)
        return self.feed.tick_sizes.get(s) if self.feed is not None else None
