"""Live views of one venue's market: candles, the order book's depth and the price board."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any, Protocol

import ipywidgets as widgets
import pandas as pd

from marketlab.charts.figures import (
    DOWN,
    STALE,
    UP,
    candle_figure,
    candle_traces,
    candle_units,
    depth_figure,
    depth_traces,
    depth_units,
    price_text,
)
from marketlab.charts.live import LiveView


class LabLike(Protocol):
    """What a chart reads from the Lab it is given (charts import nothing of the Lab's)."""

    symbols: list[str]

    @property
    def intervals(self) -> Sequence[Any]: ...
    @property
    def running(self) -> bool: ...
    def summary(self) -> dict[str, Any]: ...
    def klines(self, symbol: str, interval: str = "1m") -> pd.DataFrame: ...
    def book(self, symbol: str, depth: int = 20) -> pd.DataFrame: ...
    def prices(self) -> pd.DataFrame: ...
    def price_decimals(self, symbol: str, exchange: str | None = None) -> int | None: ...


class _Decimals:
    """Each symbol's price decimals, asked of the Lab until the venue has listed its tick."""

    def __init__(self, lab: LabLike):
        self.lab = lab
        self.known: dict[tuple[str, str | None], int] = {}

    def __call__(self, symbol: str, exchange: str | None = None) -> int | None:
        key = (symbol, exchange)
        if key not in self.known:
            asked = (
                self.lab.price_decimals(symbol)
                if exchange is None
                else self.lab.price_decimals(symbol, exchange=exchange)
            )
            if asked is None:
                return None
            self.known[key] = asked
        return self.known[key]


class CandleChart(LiveView[LabLike]):
    """Candlestick + volume with symbol and interval dropdowns, a pause button and its state."""

    def __init__(
        self, lab: LabLike, symbol: str, interval: str, fps: float = 2.0, candles: int = 240
    ):
        """``symbol`` in the Lab's canonical form (the Lab's ``chart()`` passes it so)."""
        super().__init__(lab, f"chart:{symbol}:{interval}", fps)
        self.candles = candles
        self.decimals = _Decimals(lab)
        narrow = {"layout": widgets.Layout(width="200px"), "style": {"description_width": "50px"}}
        self.symbol = widgets.Dropdown(
            options=lab.symbols, value=symbol, description="symbol", **narrow
        )
        self.interval_box = widgets.Dropdown(
            options=[str(i) for i in lab.intervals],
            value=str(interval),
            description="interval",
            **narrow,
        )
        self.pause = self._pause_button()
        self.controls += [self.symbol, self.interval_box]
        self._shown_decimals = self.decimals(symbol)
        self.figure = candle_figure(self._title(), symbol, self._shown_decimals)
        for control in (self.symbol, self.interval_box):
            control.observe(lambda _: self._retarget(), names="value")
        self.widget = widgets.VBox(
            [self._bar([self.symbol, self.interval_box, self.pause]), self.figure],
            layout=widgets.Layout(width="100%"),
        )
        self._start()

    def _title(self) -> str:
        return f"{self.symbol.value} {self.interval_box.value}"

    def _titled(self) -> None:
        self.figure.layout.title.text = self._title() + self.title_state()

    def _retarget(self) -> None:
        self._shown_decimals = self.decimals(self.symbol.value)
        candle_units(self.figure, self.symbol.value, self._shown_decimals)
        self._titled()
        self.refresh()

    def refresh(self) -> None:
        df = self.lab.klines(self.symbol.value, self.interval_box.value).tail(self.candles)
        decimals = self.decimals(self.symbol.value)
        if decimals != self._shown_decimals:  # the venue has listed the tick since
            self._shown_decimals = decimals
            candle_units(self.figure, self.symbol.value, decimals)
        candle_traces(self.figure, df)
        self._refreshed()


class BookChart(LiveView[LabLike]):
    """Cumulative depth of the synced book, the spread at the tick; says so while out of sync."""

    def __init__(self, lab: LabLike, symbol: str, depth: int = 50, fps: float = 2.0):
        super().__init__(lab, f"book:{symbol}", fps)
        self.symbol = symbol
        self.depth = depth
        self.decimals = _Decimals(lab)
        self._shown_decimals = self.decimals(symbol)
        self._book_state = ""
        self.figure = depth_figure(f"{symbol} order book", symbol, self._shown_decimals)
        self.pause = self._pause_button()
        self.widget = widgets.VBox(
            [self._bar([self.pause]), self.figure], layout=widgets.Layout(width="100%")
        )
        self._start()

    def _titled(self) -> None:
        self.figure.layout.title.text = (
            f"{self.symbol} order book{self._book_state}{self.title_state()}"
        )

    def refresh(self) -> None:
        book = self.lab.book(self.symbol, self.depth)
        decimals = self.decimals(self.symbol)
        if decimals != self._shown_decimals:
            self._shown_decimals = decimals
            depth_units(self.figure, self.symbol, decimals)
        if book.attrs["synced"] and len(book):
            spread = book.price[book.side == "ask"].iloc[0] - book.price.iloc[0]
            self._book_state = f" · spread {price_text(spread, decimals)}"
        else:
            self._book_state = (
                "" if book.attrs["synced"] else f" — out of sync: {book.attrs['reason']}"
            )
        with self.figure.batch_update():
            self._titled()
            depth_traces(self.figure, book)
        self._refreshed()


class PriceBoard(LiveView[LabLike]):
    """One row per symbol: last, bid/ask at the symbol's tick and right-aligned, 24h change
    coloured by sign, age greyed when stale; with alert rules, each symbol's active alerts and
    every active alert listed under the table (health ones too); its state under it."""

    def __init__(self, lab: LabLike, fps: float = 1.0, stale_after: float = 5.0):
        super().__init__(lab, "board", fps)
        self.stale_after = stale_after
        self.decimals = _Decimals(lab)
        self.html = widgets.HTML()
        self.widget = widgets.VBox([self.html, self.status])
        self._start()

    def refresh(self) -> None:
        prices = self.lab.prices()
        decimals = {}
        for key in prices.index:
            exchange, symbol = key if isinstance(key, tuple) else (None, key)
            decimals[key] = self.decimals(symbol, exchange)
        watch = getattr(self.lab, "watch", None)  # a Lab's alert rules, when it runs them
        alerts = watch.frame() if watch is not None else None
        self.html.value = board_html(prices, self.stale_after, decimals, alerts)
        self._refreshed()


_CELL = "padding:2px 10px;text-align:right"


def board_html(
    prices: pd.DataFrame,
    stale_after: float,
    decimals: dict[Any, int | None] | None = None,
    alerts: pd.DataFrame | None = None,
) -> str:
    """The board's table: numbers right-aligned in a fixed-width font, prices at each symbol's
    tick decimals (``decimals`` by the frame's index; 8 significant digits where unknown), so
    columns line up digit under digit. With ``alerts`` (``lab.alerts()``), a column of each
    symbol's active alerts (by rule) and the active alerts listed under the table."""
    decimals = decimals or {}
    active = alerts[alerts["state"] == "active"] if alerts is not None else None
    rows = []
    for key, p in prices.iterrows():
        name = " ".join(key) if isinstance(key, tuple) else str(key)
        d = decimals.get(key)
        colour = UP if p["change_pct"] >= 0 else DOWN
        fresh = STALE if p["age_s"] > stale_after else "inherit"
        rows.append(
            f"<tr style='color:{fresh}'>"
            f"<td style='padding:2px 10px'><b>{html.escape(name)}</b></td>"
            f"<td style='{_CELL}'>{_number(p['last'], d)}</td>"
            f"<td style='{_CELL}'>{_number(p['bid'], d)}</td>"
            f"<td style='{_CELL}'>{_number(p['ask'], d)}</td>"
            f"<td style='{_CELL};color:{colour}'>{p['change_pct']:+.2f}%</td>"
            f"<td style='{_CELL}'>{p['volume']:,.2f}</td>"
            f"<td style='{_CELL}'>{p['age_s']:.1f} s</td>"
            f"<td style='padding:2px 10px'>{html.escape(str(p['source']))}</td>"
            + ("" if active is None else _alert_cell(active, key))
            + "</tr>"
        )
    heads: tuple[str, ...] = ("symbol", "last", "bid", "ask", "24h", "volume", "age", "via")
    heads += () if active is None else ("alerts",)
    head = "".join(
        f"<th style='{_CELL if h not in ('symbol', 'via', 'alerts') else 'padding:2px 10px'}'>"
        f"{h}</th>"
        for h in heads
    )
    return (
        "<table style='font-family:monospace;border-collapse:collapse;"
        "font-variant-numeric:tabular-nums'>"
        f"<tr>{head}</tr>{''.join(rows)}</table>" + ("" if active is None else _alert_list(active))
    )


def _alert_cell(active: pd.DataFrame, key: Any) -> str:
    """The rules alerting on the row's symbol (and venue, on a board of several venues)."""
    venue, symbol = key if isinstance(key, tuple) else (None, key)
    mine = active[active["symbol"] == symbol]
    if venue is not None:
        mine = mine[mine["venue"] == venue]
    rules = ", ".join(dict.fromkeys(str(rule) for rule in mine["rule"]))
    return f"<td style='padding:2px 10px;color:{DOWN}'>{html.escape(rules)}</td>"


def _alert_list(active: pd.DataFrame) -> str:
    """Every active alert, newest first: since when, where, the rule and its sentence."""
    if active.empty:
        return "<div style='padding:2px 10px;color:#9e9e9e'>no active alert</div>"
    items = []
    for a in active.itertuples():
        where = " ".join(str(w) for w in (a.venue, a.symbol, a.stream) if w)
        items.append(
            f"<li><b>{html.escape(str(a.rule))}</b> {html.escape(where)} since "
            f"{a.time:%H:%M:%S}: {html.escape(str(a.message))}</li>"
        )
    return f"<ul style='margin:4px 0;color:{DOWN};font-family:monospace'>{''.join(items)}</ul>"


def _number(value: float, decimals: int | None) -> str:
    return "–" if not math.isfinite(value) else price_text(value, decimals)
