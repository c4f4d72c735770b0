"""The figures the live charts draw into, and the pure update code that fills them: frame in,
traces out (a plain ``go.Figure`` works as well as a ``FigureWidget``, so pictures for the docs
are drawn by the same code). Prices are shown at the instrument's tick on axes and in hovers;
every axis says what it holds and in which unit."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from marketlab.records import split_symbol

UP, DOWN, STALE = "#26a69a", "#ef5350", "#9e9e9e"
PAUSED_COLOUR = "#f9a825"
LOCKED, CROSSED = "#ff9800", "#d50000"
# one colour per venue, the same in every chart and notebook
VENUE_COLOURS = {
    "binance": "#f0b90b",
    "okx": "#2962ff",
    "bybit": "#ff6d00",
    "coinbase": "#00897b",
}
_MORE_COLOURS = ("#8e24aa", "#6d4c41", "#546e7a", "#c2185b")
TIME_AXIS = "time (UTC)"


def venue_colour(venue: str, order: int = 0) -> str:
    """The colour a venue is drawn in (a venue not listed takes one by its place)."""
    return VENUE_COLOURS.get(venue, _MORE_COLOURS[order % len(_MORE_COLOURS)])


def assets(symbol: str) -> tuple[str, str]:
    """``BTCUSDT`` → ``("BTC", "USDT")``: the units of quantities and prices (empty strings
    for a symbol whose quote asset is not known)."""
    try:
        return split_symbol(symbol)
    except ValueError:
        return "", ""


def with_unit(label: str, unit: str) -> str:
    return f"{label} ({unit})" if unit else label


def price_format(decimals: int | None) -> str:
    """A d3 format showing a price to its tick (``",.2f"`` for 0.01): ``66,335.75``, never
    ``66.33575k``. Up to 8 significant digits while the tick is not known yet."""
    return f",.{decimals}f" if decimals is not None else ",.8~g"


def price_text(value: float, decimals: int | None) -> str:
    """A price (or a difference of prices) as text at the tick, without float noise."""
    return f"{value:,.{decimals}f}" if decimals is not None else f"{value:,.8g}"


@contextlib.contextmanager
def batch(fig: go.FigureWidget | go.Figure) -> Iterator[None]:
    """One message to the browser for every change made inside (a plain figure: no-op)."""
    if isinstance(fig, go.FigureWidget):
        with fig.batch_update():
            yield
    else:
        yield


def _live_layout(fig: go.Figure, title: str, height: int) -> None:
    """What every live figure shares: the cell's width (no fixed width: it follows the cell),
    and the zoom, pan and legend choices kept across refreshes (``uirevision``)."""
    fig.update_layout(
        title={"text": title, "x": 0.01, "xanchor": "left"},
        autosize=True,
        height=height,
        uirevision="keep",
        hoverlabel={"namelength": -1},
    )


# --- candles ----------------------------------------------------------------------------------


def candle_figure(title: str, symbol: str = "", decimals: int | None = None) -> go.FigureWidget:
    """Candlestick (trace 0) over volume (trace 1), sharing the time axis."""
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, row_heights=[0.75, 0.25], vertical_spacing=0.03
    )
    fig.add_trace(
        go.Candlestick(name="price", increasing_line_color=UP, decreasing_line_color=DOWN),
        row=1,
        col=1,
    )
    fig.add_trace(go.Bar(name="volume", showlegend=False), row=2, col=1)
    _live_layout(fig, title, 520)
    fig.update_layout(
        margin={"l": 70, "r": 20, "t": 50, "b": 40},
        xaxis_rangeslider_visible=False,
        showlegend=False,
        hovermode="x",
    )
    fig.update_xaxes(title_text=TIME_AXIS, row=2, col=1)
    candle_units(fig, symbol, decimals)
    return go.FigureWidget(fig)  # made whole: its first state is all the browser is sure to get


def candle_units(fig: go.FigureWidget | go.Figure, symbol: str, decimals: int | None) -> None:
    """Axis titles in the symbol's assets, prices at its tick (axis and hover)."""
    base, quote = assets(symbol)
    shown = price_format(decimals)
    with batch(fig):
        fig.layout.yaxis.title.text = with_unit("price", quote)
        fig.layout.yaxis.tickformat = shown
        fig.layout.yaxis2.title.text = with_unit("volume", base)
        fig.data[0].yhoverformat = shown
        fig.data[1].hovertemplate = "%{y:,.8~g}" + (f" {base}" if base else "") + "<extra></extra>"


def candle_traces(fig: go.FigureWidget | go.Figure, df: pd.DataFrame) -> None:
    """Put ``df`` (a ``Lab.klines`` frame) into the candlestick (trace 0) and volume (trace 1)."""
    x = df.index
    with batch(fig):
        c, v = fig.data[0], fig.data[1]
        c.x, c.open, c.high, c.low, c.close = x, df["open"], df["high"], df["low"], df["close"]
        v.x, v.y = x, df["volume"]
        v.marker.color = np.where(df["close"].to_numpy() >= df["open"].to_numpy(), UP, DOWN)


# --- depth ------------------------------------------------------------------------------------


def depth_figure(title: str, symbol: str = "", decimals: int | None = None) -> go.FigureWidget:
    """Cumulative depth: bids (trace 0) and asks (trace 1) as steps from the touch outwards."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(name="bids", line_shape="hv", fill="tozeroy", line_color=UP))
    fig.add_trace(go.Scatter(name="asks", line_shape="hv", fill="tozeroy", line_color=DOWN))
    _live_layout(fig, title, 400)
    fig.update_layout(
        margin={"l": 70, "r": 20, "t": 50, "b": 50},
        hovermode="x",
        hoverdistance=-1,  # the level nearest the mouse, however far the book has moved
        legend={"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right", "yanchor": "bottom"},
    )
    depth_units(fig, symbol, decimals)
    return go.FigureWidget(fig)


def depth_units(fig: go.FigureWidget | go.Figure, symbol: str, decimals: int | None) -> None:
    base, quote = assets(symbol)
    shown = price_format(decimals)
    with batch(fig):
        fig.layout.xaxis.title.text = with_unit("price", quote)
        fig.layout.xaxis.tickformat = shown
        fig.layout.yaxis.title.text = with_unit("cumulative quantity", base)
        for trace in fig.data:
            trace.hovertemplate = (
                f"%{{x:{shown}}}: %{{y:,.8~g}}"
                + (f" {base}" if base else "")
                + "<extra>%{fullData.name}</extra>"
            )


def depth_traces(fig: go.FigureWidget | go.Figure, book: pd.DataFrame) -> None:
    """Cumulative depth: bids (trace 0) from the best bid down, asks (trace 1) from the best up."""
    bids = book[book["side"] == "bid"]
    asks = book[book["side"] == "ask"]
    with batch(fig):
        fig.data[0].x, fig.data[0].y = bids["price"], bids["qty"].cumsum()
        fig.data[1].x, fig.data[1].y = asks["price"], asks["qty"].cumsum()


# --- one market across venues -----------------------------------------------------------------


def venues_figure(title: str, venues: Sequence[str], quote: str = "") -> go.FigureWidget:
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
    fig.update_yaxes(title_text=with_unit("mid", quote), row=1, col=1)
    fig.update_yaxes(title_text="consolidated spread (bps)", row=2, col=1)
    fig.update_xaxes(title_text=TIME_AXIS, row=2, col=1)
    _live_layout(fig, title, 580)
    fig.update_layout(
        margin={"l": 70, "r": 20, "t": 70, "b": 40},
        legend={"orientation": "h", "y": -0.12},
        hovermode="x unified",
    )
    return go.FigureWidget(fig)
