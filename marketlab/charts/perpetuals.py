"""Figures of perpetual swaps, from the Lab's frames: funding across venues, the basis of each
venue's perpetual against each venue's spot mid, open interest against the price, and
liquidations on the candles. Plain ``go.Figure`` values, drawn once from the frames given
(re-run the cell for newer data)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from marketlab.charts.figures import (
    DOWN,
    TIME_AXIS,
    UP,
    assets,
    price_format,
    venue_colour,
    with_unit,
)

# A liquidated long is closed by a sell (drawn down, red); a liquidated short by a buy.
_LIQUIDATED = {"long": ("triangle-down", DOWN), "short": ("triangle-up", UP)}


def funding_figure(funding: pd.DataFrame) -> go.Figure:
    """The funding rate now running of each venue's perpetual, annualized (bars), from
    ``Lab.funding()`` of a Lab over one or several venues; the hover gives the rate a period,
    the next funding time and the mark's premium over the index."""
    frame = funding.reset_index()
    if "exchange" not in frame:
        frame["exchange"] = ""
    fig = go.Figure()
    for i, (venue, rows) in enumerate(frame.groupby("exchange", sort=False)):
        fig.add_bar(
            x=rows["symbol"],
            y=rows["annualized_pct"],
            name=str(venue) or "funding",
            marker_color=venue_colour(str(venue), i),
            customdata=list(
                zip(
                    rows["funding_rate"] * 100,
                    rows["next_funding_time"].dt.strftime("%Y-%m-%d %H:%M"),
                    rows["premium_bps"],
                    strict=True,
                )
            ),
            hovertemplate="%{y:.2f} % a year · %{customdata[0]:.4f} % a period"
            "<br>paid %{customdata[1]} UTC · premium %{customdata[2]:.2f} bps"
            f"<extra>{venue}</extra>",
        )
    hours = funding.attrs.get("funding_hours", 8)
    fig.update_layout(
        title=f"Funding now running, annualized (every {hours} h)",
        xaxis_title="perpetual",
        yaxis_title="funding, % a year",
        barmode="group",
        height=360,
    )
    return fig


def basis_figure(basis: pd.DataFrame) -> go.Figure:
    """A perpetual's basis on each venue against each venue's spot mid and their median (from
    ``Lab.basis_across``): a heatmap in bps, rows the perpetual's venue, columns the spot's;
    the hover adds the basis annualized and the funding rate annualized beside it."""
    table = basis["basis_bps"].unstack("spot_exchange")
    columns = list(basis.index.get_level_values("spot_exchange").unique())
    table = table[columns]
    annualized = basis["basis_annualized_pct"].unstack("spot_exchange")[columns]
    funding = basis["funding_annualized_pct"].unstack("spot_exchange")[columns]
    custom = [
        [[a, f] for a, f in zip(arow, frow, strict=True)]
        for arow, frow in zip(annualized.to_numpy(), funding.to_numpy(), strict=True)
    ]
    fig = go.Figure(
        go.Heatmap(
            z=table.to_numpy(),
            x=[f"spot on {c}" if c != "median" else "median spot" for c in table.columns],
            y=[f"perpetual on {v}" for v in table.index],
            colorscale="RdBu",
            reversescale=True,
            zmid=0,
            texttemplate="%{z:.1f}",
            customdata=custom,
            colorbar={"title": "bps"},
            hovertemplate="%{y} against %{x}: %{z:.2f} bps<br>annualized %{customdata[0]:.1f} %"
            " · funding %{customdata[1]:.1f} % a year<extra></extra>",
        )
    )
    fig.update_layout(
        title=f"{basis.attrs.get('symbol', '')} basis: perpetual mid over spot mid (bps)",
        height=320,
    )
    return fig


def open_interest_figure(
    klines: pd.DataFrame, open_interest: pd.DataFrame, symbol: str, decimals: int | None = None
) -> go.Figure:
    """The perpetual's close (a ``Lab.klines`` frame, top) over its open interest (a
    ``Lab.open_interest`` frame, bottom), on one time axis."""
    base, quote = assets(symbol)
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, row_heights=[0.6, 0.4], vertical_spacing=0.05
    )
    fig.add_scatter(
        x=klines.index, y=klines["close"], name="close", line_color="#455a64", row=1, col=1
    )
    fig.add_scatter(
        x=open_interest["time"],
        y=open_interest["open_interest"],
        name="open interest",
        line_shape="hv",
        line_color="#8e24aa",
        row=2,
        col=1,
    )
    fig.update_layout(title=f"{symbol}: price and open interest", height=460, hovermode="x")
    fig.update_yaxes(title_text=with_unit("close", quote), tickformat=price_format(decimals))
    fig.update_yaxes(title_text=with_unit("open interest", base), tickformat=",.8~g", row=2)
    fig.update_xaxes(title_text=TIME_AXIS, row=2, col=1)
    return fig


def liquidations_figure(
    klines: pd.DataFrame, liquidations: pd.DataFrame, symbol: str, decimals: int | None = None
) -> go.Figure:
    """Candles (a ``Lab.klines`` frame) with each liquidation (a ``Lab.liquidations`` frame)
    at its time and fill price: a liquidated long as a red triangle down, a short as a green
    one up, sized by notional. The title says when the venue sends only a sample."""
    base, quote = assets(symbol)
    shown = price_format(decimals)
    fig = go.Figure(
        go.Candlestick(
            x=klines.index,
            open=klines["open"],
            high=klines["high"],
            low=klines["low"],
            close=klines["close"],
            name="price",
            increasing_line_color=UP,
            decreasing_line_color=DOWN,
        )
    )
    start = klines.index[0] if len(klines) else None
    shown_rows = liquidations if start is None else liquidations[liquidations["time"] >= start]
    largest = float(shown_rows["notional"].max()) if len(shown_rows) else 1.0
    for side, (symbol_shape, colour) in _LIQUIDATED.items():
        rows = shown_rows[shown_rows["side"] == side]
        fig.add_scatter(
            x=rows["time"],
            y=rows["price"],
            mode="markers",
            name=f"{side}s liquidated",
            marker={
                "symbol": symbol_shape,
                "color": colour,
                "size": 7 + 18 * (rows["notional"] / largest) ** 0.5,
                "line": {"width": 1, "color": "#263238"},
            },
            customdata=list(zip(rows["qty"], rows["notional"], strict=True)),
            hovertemplate=f"%{{y:{shown}}} · %{{customdata[0]:,.8~g}} {base}"
            f" · %{{customdata[1]:,.0f}} {quote}<extra>{side} liquidated</extra>",
        )
    sampled = liquidations.attrs.get("sampled", False)
    said = " (the venue sends a sample: a lower bound)" if sampled else ""
    fig.update_layout(
        title=f"{symbol}: liquidations on the candles{said}",
        xaxis_rangeslider_visible=False,
        xaxis_title=TIME_AXIS,
        yaxis_title=with_unit("price", quote),
        yaxis_tickformat=shown,
        height=480,
        legend={"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right", "yanchor": "bottom"},
    )
    return fig
