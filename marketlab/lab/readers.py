"""What a Lab serves its readers: the collected data as fresh pandas frames (and plain views
for servers), and live charts over them. Mixed into :class:`marketlab.lab.Lab`."""

from __future__ import annotations

import decimal
from typing import TYPE_CHECKING, Any

import pandas as pd

from marketlab.records import Interval, normalize_symbol
from marketlab.rings import KlineBuffer, TradeBuffer, book_frame, empty_book_frame, utc_times
from marketlab.stream.state import BookView

if TYPE_CHECKING:
    from marketlab.lab.failover import Failover
    from marketlab.lab.market_state import MarketState
    from marketlab.stream.feed import Feed


class LabFrames:
    """Readers' side of the Lab (its collector side fills what these read)."""

    symbols: list[str]
    intervals: list[Interval]
    exchange: str
    fallback: str | None
    _state: MarketState
    _feed: Feed | None
    _failover: Failover | None
    _trades: dict[str, TradeBuffer]
    _klines: dict[tuple[str, Interval], KlineBuffer]
    _views: Any

    if TYPE_CHECKING:  # provided by the Lab

        @property
        def running(self) -> bool: ...

    def _symbol(self, symbol: str) -> str:
        s = normalize_symbol(symbol)
        if s not in self.symbols:
            raise KeyError(f"{s} is not collected by this Lab (symbols: {', '.join(self.symbols)})")
        return s

    def price_rows(self) -> list[dict[str, Any]]:
        """The data of :meth:`prices` as plain dicts (times in epoch ms): cheap, for servers."""
        return self._state.price_rows()

    def prices(self) -> pd.DataFrame:
        """One row per symbol: last, bid, ask, 24h change %, volume, times, age and source."""
        columns = [
            "last",
            "bid",
            "ask",
            "change_pct",
            "volume",
            "event_time",
            "received_at",
            "age_s",
            "source",
        ]
        df = pd.DataFrame(self.price_rows(), columns=["symbol", *columns]).set_index("symbol")
        df["event_time"] = utc_times(df["event_time"])
        df["received_at"] = utc_times(df["received_at"])
        return df

    def klines(
        self, symbol: str, interval: str = "1m", exchange: str | None = None
    ) -> pd.DataFrame:
        """Candles oldest first; the last row is the open candle (``closed`` False).

        ``exchange`` picks the fallback venue's own series (collected while failed over);
        the two venues' candles are never mixed in one frame.
        """
        key = (self._symbol(symbol), Interval(interval))
        if exchange not in (None, self.exchange):
            if exchange != self.fallback:
                raise KeyError(f"exchange {exchange!r} is not collected by this Lab")
            if key[1] not in self.intervals:
                raise KeyError(
                    f"interval {interval} is not collected (intervals: {', '.join(self.intervals)})"
                )
            assert self._failover is not None
            return self._failover.kline_frame(*key)
        buf = self._klines.get(key)
        if buf is None:
            raise KeyError(
                f"interval {interval} is not collected (intervals: {', '.join(self.intervals)})"
            )
        return buf.frame()

    def tick_size(self, symbol: str) -> float | None:
        """The symbol's price tick as the venue lists it (None until it has answered)."""
        s = self._symbol(symbol)
        return self._feed.tick_sizes.get(s) if self._feed is not None else None

    def price_decimals(self, symbol: str) -> int | None:
        """Decimals of the price tick (0.01 → 2): round derived prices (spreads, mids) to it."""
        tick = self.tick_size(symbol)
        if tick is None:
            return None
        exponent = decimal.Decimal(repr(tick)).normalize().as_tuple().exponent
        return max(0, -int(exponent))

    def trades(self, symbol: str) -> pd.DataFrame:
        """Recent trades, oldest first; ``side`` is the taker's side."""
        return self._trades[self._symbol(symbol)].frame()

    def book_levels(self, symbol: str, depth: int = 20) -> BookView:
        """The data of :meth:`book` without pandas: cheap, for servers."""
        s = self._symbol(symbol)
        if self._feed is None:
            return BookView(False, 0, [], [], "not started", self.exchange)
        view = self._feed.book_view(s, depth, self.exchange)
        if not view.synced and self._failover is not None:
            return self._failover.book_view(s, depth) or view
        return view

    def chart(
        self, symbol: str, interval: str | None = None, fps: float = 2.0, candles: int = 240
    ) -> Any:
        """Live candlestick + volume (a plotly FigureWidget) with symbol/interval dropdowns and
        a pause button; refreshed at most ``fps`` times a second."""
        from marketlab.charts import CandleChart

        return self._view(
            CandleChart(
                self, self._symbol(symbol), interval or self.intervals[0], fps=fps, candles=candles
            )
        )

    def book_chart(self, symbol: str, depth: int = 50, fps: float = 2.0) -> Any:
        """Live cumulative depth of the synced order book."""
        from marketlab.charts import BookChart

        return self._view(BookChart(self, self._symbol(symbol), depth=depth, fps=fps))

    def board(self, fps: float = 1.0, stale_after: float = 5.0) -> Any:
        """A live price board: change coloured by sign, rows greyed when older than
        ``stale_after``."""
        from marketlab.charts import PriceBoard

        return self._view(PriceBoard(self, fps=fps, stale_after=stale_after))

    def _view(self, view: Any) -> Any:
        self._views.add(view)  # closed by stop()
        return view

    def book(self, symbol: str, depth: int = 20) -> pd.DataFrame:
        """The order book, bids best first then asks best first.

        Empty while the book is out of sync with the exchange; ``attrs`` carries ``synced``,
        ``last_update_id``, ``reason``, ``exchange`` and ``verified`` (how the book is known
        to equal the venue's: ``"update id chain"``, ``"seqId chain"``, ``"seqId chain +
        checksum"`` or ``"REST snapshot"`` while polled).
        """
        view = self.book_levels(symbol, depth)
        df = book_frame(view.bids, view.asks) if view.synced else empty_book_frame()
        df.attrs.update(
            synced=view.synced,
            last_update_id=view.last_update_id,
            reason=view.reason,
            exchange=view.exchange,
            verified=view.verified,
        )
        return df
