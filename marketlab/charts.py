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
import time
from collections.abc import Sequence
from typing import Any, Protocol

import ipywidgets as widgets
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots


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


UP, DOWN, STALE = "#26a69a", "#ef5350", "#9e9e9e"
_LIVE: dict[tuple[int, str], LiveView] = {}  # (id(lab), key) → the chart a cell made last


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


class LiveView:
    """A widget refreshed from a Lab on the notebook's event loop, throttled to ``fps``."""

    def __init__(self, lab: LabLike, key: str, fps: float):
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


class CandleChart(LiveView):
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
        self.pause = widgets.ToggleButton(value=False, description="pause", icon="pause")
        self.figure = candle_figure(self._title())
        for control in (self.symbol, self.interval_box):
            control.observe(lambda _: self._retarget(), names="value")
        self.pause.observe(self._on_pause, names="value")
        self.widget = widgets.VBox(
            [widgets.HBox([self.symbol, self.interval_box, self.pause]), self.figure]
        )
        self._start()

    def _title(self) -> str:
        return f"{self.symbol.value} {self.interval_box.value}"

    def _retarget(self) -> None:
        self.figure.layout.title.text = self._title()
        self.refresh()

    def _on_pause(self, change: dict[str, Any]) -> None:
        self.paused = bool(change["new"])
        self.pause.description = "resume" if self.paused else "pause"
        self.pause.icon = "play" if self.paused else "pause"  # the button shows what it will do
        self.pause.tooltip = "paused: press to resume" if self.paused else "live: press to pause"

    def refresh(self) -> None:
        df = self.lab.klines(self.symbol.value, self.interval_box.value).tail(self.candles)
        candle_traces(self.figure, df)
        self.refreshes += 1


class BookChart(LiveView):
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


class PriceBoard(LiveView):
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
