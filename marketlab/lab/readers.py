"""What a Lab serves its readers: the collected data as fresh pandas frames (and plain views
for servers), and live charts over them. Mixed into :class:`marketlab.lab.Lab`.

pandas and the modules that build frames load when a frame is first asked for: a headless
collector (which reads none) never pays for them."""

from __future__ import annotations

import decimal
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from marketlab.markets import match_markets, quotes_used
from marketlab.records import Interval, is_perpetual, normalize_symbol, underlying_of
from marketlab.rings import book_frame, empty_book_frame, utc_times
from marketlab.stream.state import BookView

if TYPE_CHECKING:
    import pandas as pd

    from marketlab.lab.venue_side import VenueSide


class LabFrames:
    """Readers' side of the Lab (its collector side fills what these read). Every reader takes
    ``exchange=`` (the first venue collected when None)."""

    symbols: list[str]
    intervals: list[Interval]
    exchange: str
    exchanges: list[str]
    fallback: str | None
    quote_equivalents: dict[str, str]
    _sides: dict[str, VenueSide]
    _views: Any

    if TYPE_CHECKING:  # provided by the Lab

        @property
        def running(self) -> bool: ...

        def summary(self) -> dict[str, Any]: ...

        def _side(self, exchange: str | None) -> VenueSide: ...

    def _symbol(self, symbol: str, exchange: str | None = None) -> str:
        return self._side(exchange).symbol(symbol)

    def symbols_of(self, exchange: str | None = None) -> list[str]:
        """The symbols collected from ``exchange`` (the first venue by default)."""
        return list(self._side(exchange).symbols)

    @property
    def venue_symbols(self) -> dict[str, list[str]]:
        """Every venue collected and its symbols, the first venue first."""
        return {v: list(side.symbols) for v, side in self._sides.items()}

    def price_rows(self) -> list[dict[str, Any]]:
        """The data of :meth:`prices` as plain dicts (times in epoch ms), each with its
        ``exchange``: cheap, for servers. A venue whose ticker carries no best bid and ask
        (Bybit's spot tickers) has them from its synced book's top instead."""
        rows = []
        for venue, side in self._sides.items():
            for row in side.state.price_rows():
                if math.isnan(row["bid"]) or math.isnan(row["ask"]):
                    top = side.book_levels(row["symbol"], 1)
                    if top.synced and top.bids and top.asks:
                        row["bid"], row["ask"] = top.bids[0][0], top.asks[0][0]
                rows.append({"exchange": venue, **row})
        return rows

    def prices(self) -> pd.DataFrame:
        """One row per symbol (per exchange and symbol with several venues): last, bid, ask,
        24h change %, volume, times, age and source; with perpetuals collected, also each
        perpetual's latest ``mark`` and ``index`` (NaN for a spot symbol, and until the venue
        has sent them)."""
        import pandas as pd

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
        index = ["exchange", "symbol"] if len(self._sides) > 1 else ["symbol"]
        rows = self.price_rows()
        df = pd.DataFrame(rows, columns=["exchange", "symbol", *columns])
        df = df.set_index(index)
        if len(self._sides) == 1:
            df = df.drop(columns="exchange")
        df["event_time"] = utc_times(df["event_time"])
        df["received_at"] = utc_times(df["received_at"])
        if any(is_perpetual(s) for side in self._sides.values() for s in side.symbols):
            marks = [self._sides[r["exchange"]].state.marks.get(r["symbol"]) for r in rows]
            df["mark"] = [math.nan if m is None else m.mark for m in marks]
            df["index"] = [math.nan if m is None else m.index for m in marks]
        return df

    def klines(
        self, symbol: str, interval: str = "1m", exchange: str | None = None
    ) -> pd.DataFrame:
        """Candles oldest first; the last row is the open candle (``closed`` False).

        ``exchange`` picks a venue's series: one collected, or the fallback venue's own
        (collected while failed over); two venues' candles are never mixed in one frame.
        """
        if exchange is None or exchange in self._sides:
            return self._side(exchange).kline_buffer(symbol, interval).frame()
        for side in self._sides.values():
            if side.fallback == exchange:
                return side.fallback_klines(symbol, interval)
        raise KeyError(
            f"exchange {exchange!r} is not collected by this Lab "
            f"(exchanges: {', '.join(self.exchanges)})"
        )

    def closed_open_times(
        self, symbol: str, interval: str = "1m", exchange: str | None = None
    ) -> list[int]:
        """Open times (epoch ms) of the closed candles held, oldest first: the closed rows of
        :meth:`klines` of a venue collected, without pandas."""
        return self._side(exchange).kline_buffer(symbol, interval).closed_open_times().tolist()

    def tick_size(self, symbol: str, exchange: str | None = None) -> float | None:
        """The symbol's price tick as the venue lists it (None until it has answered)."""
        return self._side(exchange).tick_size(symbol)

    def price_decimals(self, symbol: str, exchange: str | None = None) -> int | None:
        """Decimals of the price tick (0.01 → 2): round derived prices (spreads, mids) to it."""
        tick = self.tick_size(symbol, exchange)
        if tick is None:
            return None
        exponent = decimal.Decimal(repr(tick)).normalize().as_tuple().exponent
        return max(0, -int(exponent))

    def trades(self, symbol: str, exchange: str | None = None) -> pd.DataFrame:
        """Recent trades, oldest first; ``side`` is the taker's side."""
        side = self._side(exchange)
        return side.state.trades[side.symbol(symbol)].frame()

    def trades_newer_than(
        self, symbol: str, trade_id: int, exchange: str | None = None
    ) -> tuple[dict[str, Any], tuple[float, int, float, Any] | None] | None:
        """The recent trades as numpy columns (``time price qty side trade_id``, oldest first)
        and the newest trade's ``(price, time, received, source)``; None, with nothing copied,
        when no trade has an id above ``trade_id``: a reader taking trades a batch at a time
        (the alert rules) costs nothing per trade and nothing for a quiet symbol."""
        side = self._side(exchange)
        held = side.state.trades[side.symbol(symbol)]
        if held.ring.last_id <= trade_id:
            return None
        return held.arrays(), held.ring.newest()

    # --- perpetual swaps -----------------------------------------------------------------

    def funding(self) -> pd.DataFrame:
        """Per perpetual (per exchange and perpetual with several venues): the funding rate now
        running, annualized (``attrs["funding_hours"]`` a period), when it is paid, mark,
        index and the mark's premium over the index in bps."""
        from marketlab.lab import perpetuals

        marks = {
            v: dict(side.state.marks)
            for v, side in self._sides.items()
            if side.perp_config is not None
        }
        return perpetuals.funding_frame(marks, by_venue=len(self._sides) > 1)

    def mark(self, symbol: str, exchange: str | None = None) -> pd.Series:
        """The latest mark price of a perpetual (``BTCUSDT-PERP``), with its index and funding
        (``KeyError`` until the venue has sent one)."""
        from marketlab.lab import perpetuals

        side = self._side(exchange)
        s = side.symbol(symbol)
        held = side.state.marks.get(s)
        if held is None:
            raise KeyError(f"no mark price of {s} from {side.exchange} yet")
        return perpetuals.mark_series(held)

    def basis(self, symbol: str, exchange: str | None = None) -> pd.Series:
        """A perpetual's basis on its venue: its book's mid and its mark against the spot mid of
        its pair (which this Lab must collect from the same venue), in bps, beside the funding
        rate now running and its annualized value. NaN where a book is not synced."""
        from marketlab.lab import perpetuals

        side = self._side(exchange)
        perp = side.symbol(symbol)
        spot = underlying_of(perp)
        if perp == spot:
            raise KeyError(f"{perp} is not a perpetual (a basis is a perpetual's: {spot}-PERP)")
        if spot not in side.symbols:
            raise KeyError(f"collect {spot} from {side.exchange} beside {perp} for its basis")
        mark = side.state.marks.get(perp)
        return perpetuals.basis_series(
            perp, side.book_levels(spot, 1), side.book_levels(perp, 1), mark
        )

    def basis_across(
        self, symbol: str, quote_equivalents: Mapping[str, str] | None = None
    ) -> pd.DataFrame:
        """A perpetual (``BTCUSDT-PERP``) on every venue collecting it against the spot mid of
        every venue collecting its pair, and against the median of those spot mids: one row per
        (``exchange``, ``spot_exchange``), ``spot_exchange`` ``"median"`` for the median. Mids
        from a synced book's top, else the ticker's bid and ask (as :meth:`divergence`); the
        basis of the mid and of the mark in bps and annualized (the basis as if paid every
        funding period), beside the funding rate now running and its annualized value.
        ``attrs``: each venue's spot symbol, the venues the median is of, the funding hours.
        KeyError for a spot symbol; ValueError when no venue collects the perpetual or its
        pair, or quotes them in assets not declared equivalent (as :meth:`bbo`)."""
        from marketlab.lab import cross_venue, perpetuals

        perp = normalize_symbol(symbol)
        spot = underlying_of(perp)
        if perp == spot:
            raise KeyError(f"{perp} is not a perpetual (a basis is a perpetual's: {spot}-PERP)")
        perp_markets, _ = self._markets(perp, quote_equivalents)
        spot_markets, _ = self._markets(spot, quote_equivalents)
        rows = {(r["exchange"], r["symbol"]): r for r in self.price_rows()}

        def mid(venue: str, market: str) -> float:
            book = self._sides[venue].book_levels(market, 1)
            return cross_venue.mid_of(book, rows.get((venue, market)))

        return perpetuals.basis_across_frame(
            perp,
            {v: mid(v, s) for v, s in perp_markets.items()},
            {v: self._sides[v].state.marks.get(s) for v, s in perp_markets.items()},
            spot_markets,
            {v: mid(v, s) for v, s in spot_markets.items()},
        )

    def liquidations(self, symbol: str, exchange: str | None = None) -> pd.DataFrame:
        """A perpetual's liquidations the venue sent, oldest first (the newest 10,000);
        ``attrs["sampled"]`` says when the venue sends a sample, not every one."""
        from marketlab.lab import perpetuals

        side = self._side(exchange)
        return perpetuals.liquidation_frame(side.state.liquidations.get(side.symbol(symbol), ()))

    def open_interest(self, symbol: str, exchange: str | None = None) -> pd.DataFrame:
        """A perpetual's open interest readings, oldest first (the newest 10,000)."""
        from marketlab.lab import perpetuals

        side = self._side(exchange)
        return perpetuals.open_interest_frame(side.state.open_interest.get(side.symbol(symbol), ()))

    def buffer_nbytes(self, held: bool = False) -> int:
        """Bytes the rolling buffers' columns take (every venue's trades and candles): the part
        of a Lab's memory that grows with its symbols and capacities. ``held=True``: only the
        rows they hold now (until a buffer is full, the rest of its columns is not resident)."""
        return sum(
            sum(buf.held_nbytes if held else buf.nbytes for buf in side.state.trades.values())
            + sum(buf.held_nbytes if held else buf.nbytes for buf in side.state.klines.values())
            for side in self._sides.values()
        )

    def book_levels(self, symbol: str, depth: int = 20, exchange: str | None = None) -> BookView:
        """The data of :meth:`book` without pandas: cheap, for servers."""
        return self._side(exchange).book_levels(symbol, depth)

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

    def venues_chart(
        self,
        symbol: str,
        fps: float = 2.0,
        window: float = 300.0,
        quote_equivalents: Mapping[str, str] | None = None,
    ) -> Any:
        """Live view of one market on every venue collecting it: each venue's mid over the
        last ``window`` seconds (from its synced book's top, else its ticker) and the
        consolidated spread in bps, with the moments the venues' quotes lock or cross marked;
        the title names the venues and the quote each is compared in (``quote_equivalents``
        as in :meth:`bbo`)."""
        from marketlab.charts import VenuesChart

        return self._view(
            VenuesChart(self, symbol, fps=fps, window=window, quote_equivalents=quote_equivalents)
        )

    def board(self, fps: float = 1.0, stale_after: float = 5.0) -> Any:
        """A live price board: change coloured by sign, rows greyed when older than
        ``stale_after``."""
        from marketlab.charts import PriceBoard

        return self._view(PriceBoard(self, fps=fps, stale_after=stale_after))

    def _view(self, view: Any) -> Any:
        self._views.add(view)  # closed by stop()
        return view

    def book(self, symbol: str, depth: int = 20, exchange: str | None = None) -> pd.DataFrame:
        """The order book, bids best first then asks best first.

        Empty while the book is out of sync with the exchange; ``attrs`` carries ``synced``,
        ``last_update_id``, ``reason``, ``exchange`` and ``verified`` (how the book is known
        to equal the venue's: ``"update id chain"``, ``"seqId chain"``, ``"seqId chain +
        checksum"`` or ``"REST snapshot"`` while polled).
        """
        view = self.book_levels(symbol, depth, exchange)
        df = book_frame(view.bids, view.asks) if view.synced else empty_book_frame()
        df.attrs.update(
            synced=view.synced,
            last_update_id=view.last_update_id,
            reason=view.reason,
            exchange=view.exchange,
            verified=view.verified,
        )
        return df

    # --- across venues ---------------------------------------------------------------------

    def _markets(
        self, symbol: str, quote_equivalents: Mapping[str, str] | None
    ) -> tuple[dict[str, str], dict[str, str]]:
        """Each venue's symbol for ``symbol``'s market, and the quote each is compared in."""
        equivalents = self.quote_equivalents if quote_equivalents is None else quote_equivalents
        markets = match_markets(symbol, self.venue_symbols, equivalents)
        return markets, quotes_used(markets, equivalents)

    def _books_of(self, markets: Mapping[str, str], depth: int) -> dict[str, BookView]:
        return {v: self._sides[v].book_levels(s, depth) for v, s in markets.items()}

    def bbo(self, symbol: str, quote_equivalents: Mapping[str, str] | None = None) -> pd.DataFrame:
        """The best bid and ask across venues: one row per venue (its top of book, synced or
        why not) with ``best_bid`` / ``best_ask`` marking the consolidated best; ``attrs``
        holds the consolidated quote (``best_bid``, ``best_bid_venue``, ``mid``,
        ``spread_bps``, ``state``: normal, locked or crossed across venues), each venue's
        symbol and the quote it is compared in. Only synced books take part."""
        from marketlab.lab import cross_venue

        markets, quotes = self._markets(symbol, quote_equivalents)
        return cross_venue.bbo_frame(markets, self._books_of(markets, 1), quotes)

    def consolidated_book(
        self, symbol: str, depth: int = 20, quote_equivalents: Mapping[str, str] | None = None
    ) -> pd.DataFrame:
        """Every venue's synced levels merged into one book (bids best first, then asks), each
        level tagged with its ``exchange``; a book out of sync drops out and ``attrs["excluded"]``
        says why. ``attrs["crossed"]`` is True when one venue's bid reaches another's ask."""
        from marketlab.lab import cross_venue

        markets, quotes = self._markets(symbol, quote_equivalents)
        df = cross_venue.consolidated_book_frame(self._books_of(markets, depth), depth)
        df.attrs.update(symbols=markets, quotes=quotes)
        return df

    def divergence(self, quote_equivalents: Mapping[str, str] | None = None) -> pd.DataFrame:
        """Per symbol of the first venue and per venue: its mid (from its synced book, else its
        ticker's bid and ask), the cross-venue median mid and the venue's distance from it in
        basis points, live. Symbols only one venue has are left out; ``attrs`` says each
        venue's symbol and the quote it is compared in."""
        from marketlab.lab import cross_venue

        equivalents = self.quote_equivalents if quote_equivalents is None else quote_equivalents
        markets_of: dict[str, dict[str, str]] = {}
        for symbol in self._sides[self.exchange].symbols:
            markets, _ = self._markets(symbol, equivalents)
            if len(markets) > 1:
                markets_of[symbol] = markets
        rows = {(r["exchange"], r["symbol"]): r for r in self.price_rows()}
        mids = {
            (venue, market): cross_venue.mid_of(
                self._sides[venue].book_levels(market, 1), rows.get((venue, market))
            )
            for markets in markets_of.values()
            for venue, market in markets.items()
        }
        return cross_venue.divergence_frame(markets_of, mids, equivalents)
