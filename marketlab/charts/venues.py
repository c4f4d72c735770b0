"""A live view of one market on several venues: each venue's mid and the consolidated spread."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Any, Protocol

import ipywidgets as widgets
import pandas as pd

from marketlab.charts.figures import assets, batch, price_format, venues_figure
from marketlab.charts.live import LiveView
from marketlab.records import normalize_symbol


class VenuesLabLike(Protocol):
    """What :class:`VenuesChart` reads from a Lab collecting several venues."""

    @property
    def running(self) -> bool: ...
    def summary(self) -> dict[str, Any]: ...
    def bbo(
        self, symbol: str, quote_equivalents: Mapping[str, str] | None = None
    ) -> pd.DataFrame: ...
    def price_rows(self) -> list[dict[str, Any]]: ...
    def price_decimals(self, symbol: str, exchange: str | None = None) -> int | None: ...


def quotes_text(quotes: Mapping[str, str]) -> str:
    """What the venues' quotes were compared in: ``"USDT on every venue"``, or ``"USDT
    (coinbase: USD as USDT)"`` where a quote equivalence was used."""
    taken = {v: q for v, q in quotes.items() if " as " in q}
    compared = {q.split(" as ")[-1] for q in quotes.values()}
    common = ", ".join(sorted(compared))
    if not taken:
        return f"{common} on every venue, no quote equivalence"
    return f"{common} ({'; '.join(f'{v}: {q}' for v, q in taken.items())})"


class VenuesChart(LiveView[VenuesLabLike]):
    """One market on several venues over the last ``window`` seconds, sampled at each refresh:
    each venue's mid (from its synced book's top, else its ticker's bid and ask) and the
    consolidated spread in bps (best ask anywhere against best bid anywhere), with the moments
    the venues' quotes lock or cross each other marked. The title names the venues, the quote
    each is compared in and the consolidated state now."""

    def __init__(
        self,
        lab: VenuesLabLike,
        symbol: str,
        fps: float = 2.0,
        window: float = 300.0,
        quote_equivalents: Mapping[str, str] | None = None,
    ):
        if not window > 0:
            raise ValueError(f"window must be a positive number of seconds, got {window!r}")
        self.quote_equivalents = quote_equivalents
        first = lab.bbo(symbol, quote_equivalents)  # refuses a market no venue collects
        self.symbol = normalize_symbol(symbol)
        super().__init__(lab, f"venues:{self.symbol}", fps)
        self.window = float(window)
        self.venues: list[str] = [str(v) for v in first.index]
        self.markets: dict[str, str] = dict(first.attrs["symbols"])
        self.quotes: dict[str, str] = dict(first.attrs["quotes"])
        points = math.ceil(self.window * fps) + 2  # a bound if refreshed faster than fps
        self.times: deque[pd.Timestamp] = deque(maxlen=points)
        self.mids: dict[str, deque[float]] = {v: deque(maxlen=points) for v in self.venues}
        self.spreads: deque[float] = deque(maxlen=points)
        self.states: deque[str] = deque(maxlen=points)
        self.sources: dict[str, str | None] = {}  # per venue: "book", "ticker" or None
        self.market_state = "empty"  # the consolidated quote now: normal, locked, crossed
        self._decimals: dict[str, int | None] = {}
        self.pause = self._pause_button()
        self._consolidated: Mapping[str, Any] = first.attrs["bbo"]
        quote = {assets(m)[1] for m in self.markets.values()}
        self.figure = venues_figure(
            self._title(self._consolidated), self.venues, quote.pop() if len(quote) == 1 else ""
        )
        self.widget = widgets.VBox(
            [self._bar([self.pause]), self.figure], layout=widgets.Layout(width="100%")
        )
        self._start()

    def refresh(self) -> None:
        now = pd.Timestamp.now(tz="UTC")
        bbo = self.lab.bbo(self.symbol, self.quote_equivalents)
        tickers = {
            (r["exchange"], r["symbol"]): r
            for r in self.lab.price_rows()
            if r.get("exchange") in self.markets
        }
        consolidated = bbo.attrs["bbo"]
        self.times.append(now)
        for venue in self.venues:
            mid, source = _venue_mid(bbo, venue, tickers.get((venue, self.markets[venue])))
            self.mids[venue].append(mid)
            self.sources[venue] = source
        self.spreads.append(float(consolidated["spread_bps"]))
        self.states.append(str(consolidated["state"]))
        self.market_state = str(consolidated["state"])
        self._trim(now)
        self._draw(consolidated)
        self._refreshed()

    def _trim(self, now: pd.Timestamp) -> None:
        oldest = now - pd.Timedelta(seconds=self.window)
        while self.times and self.times[0] < oldest:
            self.times.popleft()
            self.spreads.popleft()
            self.states.popleft()
            for mids in self.mids.values():
                mids.popleft()

    def _draw(self, consolidated: Mapping[str, Any]) -> None:
        x = list(self.times)
        states = list(self.states)
        spreads = list(self.spreads)
        self._consolidated = consolidated
        with batch(self.figure):
            for i, venue in enumerate(self.venues):
                trace = self.figure.data[i]
                trace.x, trace.y = x, list(self.mids[venue])
                trace.hovertemplate = self._hover(venue)
            n = len(self.venues)
            spread = self.figure.data[n]
            spread.x, spread.y, spread.customdata = x, spreads, states
            for offset, state in ((1, "locked"), (2, "crossed")):
                marks = [i for i, s in enumerate(states) if s == state]
                self.figure.data[n + offset].x = [x[i] for i in marks]
                self.figure.data[n + offset].y = [spreads[i] for i in marks]
            known = [d for d in self._decimals.values() if d is not None]
            axis = price_format(max(known) if known else None)  # the finest venue's tick
            if self.figure.layout.yaxis.tickformat != axis:
                self.figure.layout.yaxis.tickformat = axis
            self._titled()

    def _titled(self) -> None:
        self.figure.layout.title.text = self._title(self._consolidated) + self.title_state()

    def _hover(self, venue: str) -> str:
        """The venue's mid to its price tick (asked until the venue has listed it)."""
        if self._decimals.get(venue) is None:
            self._decimals[venue] = self.lab.price_decimals(self.markets[venue], exchange=venue)
        decimals = self._decimals[venue]
        shown = f"%{{y:{price_format(decimals)}}}"
        market = self.markets[venue]
        label = venue if market == self.symbol else f"{venue} {market}"
        return f"{shown}<extra>{label}</extra>"

    def _title(self, consolidated: Mapping[str, Any]) -> str:
        state = str(consolidated.get("state", "empty"))
        text = f"{self.symbol} on {', '.join(self.venues)} · quotes: {quotes_text(self.quotes)}"
        if state in ("locked", "crossed"):
            text += (
                f"<br>{state} across venues: best bid {consolidated['best_bid_venue']} "
                f"{'=' if state == 'locked' else '>'} best ask {consolidated['best_ask_venue']}"
            )
        elif state != "normal":
            text += f"<br>consolidated quote {state}"
        ticker = [v for v, s in self.sources.items() if s == "ticker"]
        missing = [v for v, s in self.sources.items() if s is None]
        if ticker:
            text += f" · from the ticker (book not synced): {', '.join(ticker)}"
        if missing:
            text += f" · no price yet: {', '.join(missing)}"
        return text


def _venue_mid(
    bbo: pd.DataFrame, venue: str, ticker: Mapping[str, Any] | None
) -> tuple[float, str | None]:
    """A venue's mid and where it came from: its synced book's top, else its ticker's bid and
    ask, else NaN (a gap in its line)."""
    if venue in bbo.index:
        mid = float(bbo["mid"].to_dict()[venue])
        if math.isfinite(mid):
            return mid, "book"
    if ticker is not None:
        bid, ask = ticker.get("bid"), ticker.get("ask")
        if bid is not None and ask is not None:
            b, a = float(bid), float(ask)
            if math.isfinite(b) and math.isfinite(a) and b > 0.0 and a > 0.0:
                return (b + a) / 2.0, "ticker"
    return float("nan"), None
