"""Live plotly charts and ipywidgets controls over a running Lab, for Jupyter.

Each chart is a ``FigureWidget`` updated in place (one batched message per refresh, never a
new figure) by a task on the notebook's event loop, at most ``fps`` times a second however
fast data arrives. Re-running the cell that made a chart replaces it: the old one stops
updating; ``lab.stop()`` stops them all. Outside a running event loop (a script), call
``refresh()`` yourself.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar

import ipywidgets as widgets
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from marketlab.records import normalize_symbol


class LabLike(Protocol):
    """What a chart reads from the Lab it is given (charts import nothing of the Lab's)."""

    symbols: list[str]

    @property
    def intervals(self) -> Sequence[Any]: ...
    @property
    def running(self) -> bool: ...
    def klines(self, symbol: str, interval: str = "1m") -> pd.DataFrame: ...
    def book(self, symbol: str, depth: int = 20) -> pd.DataFrame: ...
    def prices(self) -> pd.DataFrame: ...
    def price_decimals(self, symbol: str) -> int | None: ...


class VenuesLabLike(Protocol):
    """What :class:`VenuesChart` reads from a Lab collecting several venues."""

    @property
    def running(self) -> bool: ...
    def bbo(
        self, symbol: str, quote_equivalents: Mapping[str, str] | None = None
    ) -> pd.DataFrame: ...
    def price_rows(self) -> list[dict[str, Any]]: ...
    def price_decimals(self, symbol: str, exchange: str | None = None) -> int | None: ...


class _Runs(Protocol):
    @property
    def running(self) -> bool: ...


L = TypeVar("L", bound=_Runs)

UP, DOWN, STALE = "#26a69a", "#ef5350", "#9e9e9e"
LOCKED, CROSSED = "#ff9800", "#d50000"
# one colour per venue, the same in every chart and notebook
VENUE_COLOURS = {
    "binance": "#f0b90b",
    "okx": "#2962ff",
    "bybit": "#ff6d00",
    "coinbase": "#00897b",
}
_MORE_COLOURS = ("#8e24aa", "#6d4c41", "#546e7a", "#c2185b")
_LIVE: dict[tuple[int, str], LiveView[Any]] = {}  # (id(lab), key) → the chart a cell made last


def venue_colour(venue: str, order: int = 0) -> str:
    """The colour a venue is drawn in (a venue not listed takes one by its place)."""
    return VENUE_COLOURS.get(venue, _MORE_COLOURS[order % len(_MORE_COLOURS)])


def _cell_id() -> str | None:
    """The notebook cell running now (JupyterLab and Notebook 7 send it), if any."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
        cell = shell.get_parent().get("metadata", {}).get("cellId") if shell is not None else None
    except Exception:  # no IPython, or a front end that sends no cell id
        return None
    return f"cell:{cell}" if cell else None


# --- pure update logic: frame in, figure traces out -------------------------------------------


def candle_traces(fig: go.FigureWidget | go.Figure, df: pd.DataFrame) -> None:
    """Put ``df`` (a ``Lab.klines`` frame) into the candlestick (trace 0) and volume (trace 1)."""
    x = df.index
    with _batch(fig):
        c, v = fig.data[0], fig.data[1]
        c.x, c.open, c.high, c.low, c.close = x, df["open"], df["high"], df["low"], df["close"]
        v.x, v.y = x, df["volume"]
        v.marker.color = np.where(df["close"].to_numpy() >= df["open"].to_numpy(), UP, DOWN)


def depth_traces(fig: go.FigureWidget | go.Figure, book: pd.DataFrame) -> None:
    """Cumulative depth: bids (trace 0) from the best bid down, asks (trace 1) from the best up."""
    bids = book[book["side"] == "bid"]
    asks = book[book["side"] == "ask"]
    with _batch(fig):
        fig.data[0].x, fig.data[0].y = bids["price"], bids["qty"].cumsum()
        fig.data[1].x, fig.data[1].y = asks["price"], asks["qty"].cumsum()


@contextlib.contextmanager
def _batch(fig: go.FigureWidget | go.Figure) -> Any:
    if isinstance(fig, go.FigureWidget):
        with fig.batch_update():
            yield
    else:
        yield


def candle_figure(title: str) -> go.FigureWidget:
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, row_heights=[0.75, 0.25], vertical_spacing=0.03
    )
    fig.add_trace(
        go.Candlestick(name="price", increasing_line_color=UP, decreasing_line_color=DOWN),
        row=1,
        col=1,
    )
    fig.add_trace(go.Bar(name="volume", showlegend=False), row=2, col=1)
    fig.update_layout(
        title=title,
        height=520,
        margin={"l": 50, "r": 20, "t": 50, "b": 30},
        xaxis_rangeslider_visible=False,
        showlegend=False,
        uirevision="keep",
    )
    return go.FigureWidget(fig)


def depth_figure(title: str) -> go.FigureWidget:
    fig = go.FigureWidget()
    fig.add_trace(go.Scatter(name="bids", line_shape="hv", fill="tozeroy", line_color=UP))
    fig.add_trace(go.Scatter(name="asks", line_shape="hv", fill="tozeroy", line_color=DOWN))
    fig.update_layout(
        title=title,
        height=380,
        xaxis_title="price",
        yaxis_title="cumulative quantity",
        margin={"l": 50, "r": 20, "t": 50, "b": 40},
        uirevision="keep",
    )
    return fig


# --- live views --------------------------------------------------------------------------------


class LiveView(Generic[L]):
    """A widget refreshed from a Lab on the notebook's event loop, throttled to ``fps``."""

    def __init__(self, lab: L, key: str, fps: float):
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.lab = lab
        self.interval = 1.0 / fps
        self.paused = False
        self.refreshes = 0
        self.widget: widgets.Widget
        self._task: asyncio.Task[None] | None = None
        slot = (id(lab), _cell_id() or key)
        previous = _LIVE.get(slot)
        if previous is not None:
            previous.close()  # the cell was re-run: the old chart lets go
        _LIVE[slot] = self

    def _start(self) -> None:
        self.refresh()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no notebook loop: refresh() by hand
        self._task = loop.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if not self.paused:
                self.refresh()
            if not self.lab.running:
                return  # the final state stays on screen

    def refresh(self) -> None:
        raise NotImplementedError

    def _pause_button(self) -> widgets.ToggleButton:
        """A toggle that pauses and resumes the refreshes, showing what pressing it will do."""
        button = widgets.ToggleButton(value=False, description="pause", icon="pause")
        button.observe(self._on_pause, names="value")
        return button

    def _on_pause(self, change: dict[str, Any]) -> None:
        self.paused = bool(change["new"])
        button = change["owner"]
        button.description = "resume" if self.paused else "pause"
        button.icon = "play" if self.paused else "pause"  # the button shows what it will do
        button.tooltip = "paused: press to resume" if self.paused else "live: press to pause"

    @property
    def live(self) -> bool:
        return self._task is not None and not self._task.done()

    def close(self) -> None:
        """Stop updating (the widget stays, frozen)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


class CandleChart(LiveView[LabLike]):
    """Candlestick + volume with symbol and interval dropdowns and a pause button."""

    def __init__(
        self, lab: LabLike, symbol: str, interval: str, fps: float = 2.0, candles: int = 240
    ):
        """``symbol`` in the Lab's canonical form (the Lab's ``chart()`` passes it so)."""
        super().__init__(lab, f"chart:{symbol}:{interval}", fps)
        self.candles = candles
        self.symbol = widgets.Dropdown(options=lab.symbols, value=symbol, description="symbol")
        self.interval_box = widgets.Dropdown(
            options=[str(i) for i in lab.intervals], value=str(interval), description="interval"
        )
        self.pause = self._pause_button()
        self.figure = candle_figure(self._title())
        for control in (self.symbol, self.interval_box):
            control.observe(lambda _: self._retarget(), names="value")
        self.widget = widgets.VBox(
            [widgets.HBox([self.symbol, self.interval_box, self.pause]), self.figure]
        )
        self._start()

    def _title(self) -> str:
        return f"{self.symbol.value} {self.interval_box.value}"

    def _retarget(self) -> None:
        self.figure.layout.title.text = self._title()
        self.refresh()

    def refresh(self) -> None:
        df = self.lab.klines(self.symbol.value, self.interval_box.value).tail(self.candles)
        candle_traces(self.figure, df)
        self.refreshes += 1


class BookChart(LiveView[LabLike]):
    """Cumulative depth of the synced book; says so in the title while out of sync."""

    def __init__(self, lab: LabLike, symbol: str, depth: int = 50, fps: float = 2.0):
        super().__init__(lab, f"book:{symbol}", fps)
        self.symbol = symbol
        self.depth = depth
        self.figure = depth_figure(f"{self.symbol} order book")
        self.widget = self.figure
        self._start()

    def refresh(self) -> None:
        book = self.lab.book(self.symbol, self.depth)
        if book.attrs["synced"] and len(book):
            spread = book.price[book.side == "ask"].iloc[0] - book.price.iloc[0]
            state = f" · spread {self._price(spread)}"
        else:
            state = "" if book.attrs["synced"] else f" — out of sync: {book.attrs['reason']}"
        self.figure.layout.title.text = f"{self.symbol} order book{state}"
        depth_traces(self.figure, book)
        self.refreshes += 1

    def _price(self, value: float) -> str:
        """A derived price at the instrument's tick (no float noise such as 0.659999999995)."""
        decimals = self.lab.price_decimals(self.symbol)
        return f"{value:.{decimals}f}" if decimals is not None else f"{value:.8g}"


class PriceBoard(LiveView[LabLike]):
    """One row per symbol: last, bid/ask, 24h change coloured by sign, age greyed when stale."""

    def __init__(self, lab: LabLike, fps: float = 1.0, stale_after: float = 5.0):
        super().__init__(lab, "board", fps)
        self.stale_after = stale_after
        self.html = widgets.HTML()
        self.widget = self.html
        self._start()

    def refresh(self) -> None:
        self.html.value = board_html(self.lab.prices(), self.stale_after)
        self.refreshes += 1


def board_html(prices: pd.DataFrame, stale_after: float) -> str:
    rows = []
    for symbol, p in prices.iterrows():
        colour = UP if p["change_pct"] >= 0 else DOWN
        fresh = STALE if p["age_s"] > stale_after else "inherit"
        rows.append(
            f"<tr style='color:{fresh}'><td><b>{symbol}</b></td><td>{p['last']:.8g}</td>"
            f"<td>{p['bid']:.8g} / {p['ask']:.8g}</td>"
            f"<td style='color:{colour}'>{p['change_pct']:+.2f}%</td>"
            f"<td>{p['volume']:,.2f}</td><td>{p['age_s']:.1f} s</td><td>{p['source']}</td></tr>"
        )
    head = (
        "<tr><th>symbol</th><th>last</th><th>bid / ask</th><th>24h</th>"
        "<th>volume</th><th>age</th><th>via</th></tr>"
    )
    stamp = time.strftime("%H:%M:%S")
    return (
        f"<table style='font-family:monospace'>{head}{''.join(rows)}</table>"
        f"<small>updated {stamp}</small>"
    )


# --- one market across several venues -----------------------------------------------------------


def venues_figure(title: str, venues: Sequence[str]) -> go.FigureWidget:
    """Each venue's mid (traces 0..n-1, top), then the consolidated spread in bps (trace n) and
    the moments the venues' quotes lock (n+1) or cross (n+2) each other (bottom)."""
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, row_heights=[0.65, 0.35], vertical_spacing=0.06
    )
    for i, venue in enumerate(venues):
        fig.add_trace(
            go.Scatter(
                name=venue,
                mode="lines",
                line={"color": venue_colour(venue, i), "width": 1.6},
                hovertemplate="%{y}<extra>" + venue + "</extra>",
            ),
            row=1,
            col=1,
        )
    fig.add_trace(
        go.Scatter(
            name="consolidated spread",
            mode="lines",
            line={"color": "#455a64", "width": 1.4},
            customdata=[],
            hovertemplate="%{y:.2f} bps · %{customdata}<extra>spread</extra>",
        ),
        row=2,
        col=1,
    )
    for state, colour, symbol in (("locked", LOCKED, "diamond"), ("crossed", CROSSED, "x")):
        fig.add_trace(
            go.Scatter(
                name=state,
                mode="markers",
                marker={"color": colour, "symbol": symbol, "size": 7},
                hovertemplate="%{y:.2f} bps<extra>" + state + "</extra>",
            ),
            row=2,
            col=1,
        )
    fig.add_hline(y=0, line={"color": STALE, "width": 1, "dash": "dot"}, row=2, col=1)
    fig.update_yaxes(title_text="mid", row=1, col=1)
    fig.update_yaxes(title_text="spread (bps)", row=2, col=1)
    fig.update_layout(
        title=title,
        height=560,
        margin={"l": 60, "r": 20, "t": 60, "b": 30},
        legend={"orientation": "h", "y": -0.08},
        hovermode="x unified",
        uirevision="keep",
    )
    return go.FigureWidget(fig)


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
        self.state = "empty"
        self._decimals: dict[str, int | None] = {}
        self.pause = self._pause_button()
        self.figure = venues_figure(self._title(first.attrs["bbo"]), self.venues)
        self.widget = widgets.VBox([widgets.HBox([self.pause]), self.figure])
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
        self.state = str(consolidated["state"])
        self._trim(now)
        self._draw(consolidated)
        self.refreshes += 1

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
        with _batch(self.figure):
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
            self.figure.layout.title.text = self._title(consolidated)

    def _hover(self, venue: str) -> str:
        """The venue's mid to its price tick (asked until the venue has listed it)."""
        if self._decimals.get(venue) is None:
            self._decimals[venue] = self.lab.price_decimals(self.markets[venue], exchange=venue)
        decimals = self._decimals[venue]
        shown = f"%{{y:,.{decimals}f}}" if decimals is not None else "%{y:,.8g}"
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
