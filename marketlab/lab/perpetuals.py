"""A Lab's perpetual swaps as frames: funding with the mark and index it is paid on, the
latest mark price, liquidations and open interest, from what the collector holds (a
:class:`~marketlab.lab.market_state.MarketState`'s ``marks``, ``liquidations`` and
``open_interest``)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping

import pandas as pd

from marketlab.records import Liquidation, MarkPrice, OpenInterest
from marketlab.rings import utc_times
from marketlab.stream.state import BookView

FUNDING_HOURS = 8  # the funding interval of the venues' perpetuals unless a venue says another
HOURS_A_YEAR = 24 * 365

FUNDING_COLUMNS = [
    "funding_rate",
    "annualized_pct",
    "next_funding_time",
    "mark",
    "index",
    "premium_bps",
    "event_time",
]


def funding_frame(marks: Mapping[str, Mapping[str, MarkPrice]], by_venue: bool) -> pd.DataFrame:
    """One row per (exchange and) perpetual: the funding rate now running, annualized at
    ``FUNDING_HOURS`` a period, when it is paid, and the mark's premium over the index."""
    rows = []
    for venue, held in marks.items():
        for symbol, m in sorted(held.items()):
            rows.append(
                {
                    "exchange": venue,
                    "symbol": symbol,
                    "funding_rate": m.funding_rate,
                    "annualized_pct": m.funding_rate * HOURS_A_YEAR / FUNDING_HOURS * 100,
                    "next_funding_time": m.next_funding_time if m.next_funding_time > 0 else None,
                    "mark": m.mark,
                    "index": m.index,
                    "premium_bps": (m.mark / m.index - 1) * 10_000 if m.index > 0 else float("nan"),
                    "event_time": m.event_time,
                }
            )
    df = pd.DataFrame(rows, columns=["exchange", "symbol", *FUNDING_COLUMNS])
    df = df.set_index(["exchange", "symbol"] if by_venue else ["symbol"])
    if not by_venue:
        df = df.drop(columns="exchange")
    df["next_funding_time"] = pd.to_datetime(df["next_funding_time"], unit="ms", utc=True)
    df["event_time"] = utc_times(df["event_time"])
    df.attrs["funding_hours"] = FUNDING_HOURS
    return df


def mark_series(m: MarkPrice) -> pd.Series:
    """The latest mark price of one perpetual, with its index and funding."""
    return pd.Series(
        {
            "mark": m.mark,
            "index": m.index,
            "settle_estimate": m.settle_estimate,
            "funding_rate": m.funding_rate,
            "next_funding_time": pd.Timestamp(m.next_funding_time, unit="ms", tz="UTC")
            if m.next_funding_time > 0
            else None,
            "event_time": pd.Timestamp(m.event_time, unit="ms", tz="UTC"),
        },
        name=m.symbol,
    )


def liquidation_frame(liquidations: Iterable[Liquidation]) -> pd.DataFrame:
    """Liquidations oldest first: the liquidated position's side, the average fill price, the
    quantity (base asset) and its notional (quote asset). ``attrs["sampled"]``: the venue sent
    a sample, not every liquidation (a count of rows is then a lower bound)."""
    rows = list(liquidations)
    df = pd.DataFrame(
        {
            "time": utc_times(pd.Series([r.time for r in rows], dtype="int64")),
            "side": pd.Series([r.side for r in rows], dtype="object"),
            "price": pd.Series([r.price for r in rows], dtype="float64"),
            "qty": pd.Series([r.qty for r in rows], dtype="float64"),
            "order_price": pd.Series([r.order_price for r in rows], dtype="float64"),
        }
    )
    df["notional"] = df["price"] * df["qty"]
    df.attrs["sampled"] = any(r.sampled for r in rows)
    return df


def open_interest_frame(readings: Iterable[OpenInterest]) -> pd.DataFrame:
    """Open interest readings oldest first: in the base asset, and its value in the quote
    asset where the venue gives it (NaN where not)."""
    rows = list(readings)
    return pd.DataFrame(
        {
            "time": utc_times(pd.Series([r.time for r in rows], dtype="int64")),
            "open_interest": pd.Series([r.open_interest for r in rows], dtype="float64"),
            "value": pd.Series([r.value for r in rows], dtype="float64"),
        }
    )


def _mid(view: BookView) -> float:
    if not (view.synced and view.bids and view.asks):
        return math.nan
    return (view.bids[0][0] + view.asks[0][0]) / 2


def annualized_pct(bps: float) -> float:
    """A premium of ``bps`` earned every funding period for a year, in percent: what a basis
    would pay annualized if funding converged on it, comparable with the funding rate's own
    annualized value."""
    return bps / 10_000 * HOURS_A_YEAR / FUNDING_HOURS * 100


def _basis(spot_mid: float, perp_mid: float, mark: MarkPrice | None) -> dict[str, float]:
    """The basis columns of one perpetual against one spot mid (NaN where a price is
    missing)."""
    mark_price = mark.mark if mark is not None else math.nan
    rate = mark.funding_rate if mark is not None else math.nan
    basis_bps = (perp_mid / spot_mid - 1) * 10_000
    mark_basis_bps = (mark_price / spot_mid - 1) * 10_000
    return {
        "spot_mid": spot_mid,
        "perp_mid": perp_mid,
        "mark": mark_price,
        "basis_bps": basis_bps,
        "mark_basis_bps": mark_basis_bps,
        "basis_annualized_pct": annualized_pct(basis_bps),
        "mark_basis_annualized_pct": annualized_pct(mark_basis_bps),
        "funding_rate": rate,
        "funding_annualized_pct": rate * HOURS_A_YEAR / FUNDING_HOURS * 100,
    }


def basis_series(symbol: str, spot: BookView, perp: BookView, mark: MarkPrice | None) -> pd.Series:
    """A perpetual's basis against its pair's spot mid (see ``Lab.basis``)."""
    return pd.Series(_basis(_mid(spot), _mid(perp), mark), name=symbol)


# The row of a perpetual against the median of every venue's spot mid.
ACROSS_VENUES = "median"
BASIS_COLUMNS = [
    "spot_symbol",
    "spot_mid",
    "perp_mid",
    "mark",
    "basis_bps",
    "mark_basis_bps",
    "basis_annualized_pct",
    "mark_basis_annualized_pct",
    "funding_rate",
    "funding_annualized_pct",
]


def basis_across_frame(
    symbol: str,
    perp_mids: Mapping[str, float],
    marks: Mapping[str, MarkPrice | None],
    spot_markets: Mapping[str, str],
    spot_mids: Mapping[str, float],
) -> pd.DataFrame:
    """A perpetual on each venue against the spot mid of every venue, and against the median
    of those spot mids (``spot_exchange`` ``"median"``): one row per (``exchange``,
    ``spot_exchange``), the perpetual's venue first, in the order given. ``perp_mids`` and
    ``marks`` are keyed by the perpetual's venues, ``spot_markets`` (each venue's spot symbol)
    and ``spot_mids`` by the spot venues; a NaN mid gives NaN basis and takes no part in the
    median. ``attrs``: ``symbol``, ``spot_symbols``, ``median_of`` (the venues whose spot mid
    made the median) and ``funding_hours``."""
    present = {v: m for v, m in spot_mids.items() if not math.isnan(m)}
    median = statistics.median(present.values()) if present else math.nan
    rows = []
    for venue, perp_mid in perp_mids.items():
        mark = marks.get(venue)
        spots = [(v, spot_markets[v], spot_mids.get(v, math.nan)) for v in spot_markets]
        spots.append((ACROSS_VENUES, "", median))
        for spot_venue, spot_symbol, spot_mid in spots:
            rows.append(
                {
                    "exchange": venue,
                    "spot_exchange": spot_venue,
                    "spot_symbol": spot_symbol,
                    **_basis(spot_mid, perp_mid, mark),
                }
            )
    df = pd.DataFrame(rows, columns=["exchange", "spot_exchange", *BASIS_COLUMNS])
    df = df.astype({c: "float64" for c in BASIS_COLUMNS if c != "spot_symbol"})
    df = df.set_index(["exchange", "spot_exchange"])
    df.attrs.update(
        symbol=symbol,
        spot_symbols=dict(spot_markets),
        median_of=list(present),
        funding_hours=FUNDING_HOURS,
    )
    return df
