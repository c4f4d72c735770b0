"""Views of one market across several venues, from data the Lab already holds: which symbol
each venue collects for it, the consolidated best bid and ask, the merged order book, and how
far each venue's mid lies from the others'.

Pure functions: no I/O, no clocks, no threads. Books are :class:`BookView` values (bids and
asks best first); a book that is not synced, or has no levels, never takes part and is named
with its reason instead. Which symbol each venue lists for the market, and in which quote, is
:mod:`marketlab.markets`'s to say.
"""

from __future__ import annotations

import heapq
import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from marketlab.markets import quotes_used
from marketlab.records import normalize_symbol
from marketlab.stream.state import BookView

Level = tuple[float, float, str]  # (price, qty, venue)

BBO_COLUMNS = [
    "bid",
    "bid_qty",
    "ask",
    "ask_qty",
    "mid",
    "spread_bps",
    "synced",
    "reason",
    "best_bid",
    "best_ask",
]
DIVERGENCE_COLUMNS = ["mid", "median", "bps", "venues"]
_NAN = float("nan")


# --- best bid and offer ------------------------------------------------------------------------


def _check_book(venue: str, book: Any) -> BookView:
    if not isinstance(book, BookView):
        raise ValueError(f"books[{venue!r}] must be a BookView, got {type(book).__name__}")
    return book


def _exclusion(book: BookView) -> str | None:
    """Why a book takes no part (None when it does)."""
    if not book.synced:
        return book.reason or "not synced"
    if not book.bids and not book.asks:
        return "empty book"
    return None


def _level(venue: str, side: str, i: int, level: Sequence[float]) -> tuple[float, float]:
    try:
        price, qty = float(level[0]), float(level[1])
    except (TypeError, ValueError, IndexError):
        raise ValueError(f"{venue} {side}[{i}] must be (price, qty), got {level!r}") from None
    if not (math.isfinite(price) and math.isfinite(qty)):
        raise ValueError(f"{venue} {side}[{i}] must be finite numbers, got {level!r}")
    return price, qty


def _top(venue: str, side: str, levels: Sequence[Sequence[float]]) -> tuple[float, float]:
    return _level(venue, side, 0, levels[0]) if levels else (_NAN, _NAN)


def _mid_bps(bid: float, ask: float) -> tuple[float, float]:
    """Mid and spread in bps of mid (NaN where a side is missing)."""
    mid = (bid + ask) / 2.0
    return mid, ((ask - bid) / mid * 1e4 if mid != 0.0 else _NAN)


def bbo(books: Mapping[str, BookView]) -> dict[str, Any]:
    """The consolidated best bid and ask across the venues whose books are synced: where one
    could buy or sell first, and whether the venues' quotes lock or cross each other (an
    arbitrage, or a stale book).

    Keys: ``best_bid``, ``best_bid_venue``, ``bid_qty`` (that venue's size at it), the same
    for the ask, ``mid``, ``spread`` (negative when crossed), ``spread_bps``, ``state``
    (``"normal"``, ``"locked"``: best bid == best ask, ``"crossed"``: best bid > best ask,
    ``"one-sided"`` or ``"empty"`` where a side or both are missing), ``venues`` (those that
    took part, in order), ``excluded`` (``{venue: reason}`` for books out of sync or empty),
    and ``per_venue``: one row per venue (its own top, NaN where it has none) for a frame.
    Ties go to the venue first in ``books``' order."""
    per_venue: list[dict[str, Any]] = []
    venues: list[str] = []
    excluded: dict[str, str] = {}
    best_bid = best_ask = (_NAN, _NAN)
    bid_venue: str | None = None
    ask_venue: str | None = None
    for venue, raw in books.items():
        book = _check_book(venue, raw)
        why = _exclusion(book)
        bid, ask = (_NAN, _NAN), (_NAN, _NAN)
        if why is None:
            venues.append(venue)
            bid, ask = _top(venue, "bids", book.bids), _top(venue, "asks", book.asks)
            if book.bids and (bid_venue is None or bid[0] > best_bid[0]):
                best_bid, bid_venue = bid, venue
            if book.asks and (ask_venue is None or ask[0] < best_ask[0]):
                best_ask, ask_venue = ask, venue
        else:
            excluded[venue] = why
        mid, spread_bps = _mid_bps(bid[0], ask[0])
        per_venue.append(
            {
                "exchange": venue,
                "bid": bid[0],
                "bid_qty": bid[1],
                "ask": ask[0],
                "ask_qty": ask[1],
                "mid": mid,
                "spread_bps": spread_bps,
                "synced": bool(book.synced),
                "reason": "" if why is None else why,
            }
        )
    mid, spread_bps = _mid_bps(best_bid[0], best_ask[0])
    if bid_venue is None and ask_venue is None:
        state = "empty"
    elif bid_venue is None or ask_venue is None:
        state = "one-sided"
    elif best_bid[0] > best_ask[0]:
        state = "crossed"
    elif best_bid[0] == best_ask[0]:
        state = "locked"
    else:
        state = "normal"
    return {
        "best_bid": best_bid[0],
        "best_bid_venue": bid_venue,
        "bid_qty": best_bid[1],
        "best_ask": best_ask[0],
        "best_ask_venue": ask_venue,
        "ask_qty": best_ask[1],
        "mid": mid,
        "spread": best_ask[0] - best_bid[0],
        "spread_bps": spread_bps,
        "state": state,
        "venues": venues,
        "excluded": excluded,
        "per_venue": per_venue,
    }


def bbo_frame(
    symbol: str | Mapping[str, str],
    books: Mapping[str, BookView],
    quotes: Mapping[str, str],
) -> pd.DataFrame:
    """One row per venue (index ``exchange``, in ``books``' order): its top of book (``bid``,
    ``bid_qty``, ``ask``, ``ask_qty``, ``mid``, ``spread_bps``), ``synced`` and ``reason``, and
    ``best_bid``/``best_ask`` marking the venues holding the consolidated best. ``symbol`` is
    the symbol every venue collects, or each venue's own (as ``match_markets`` finds them);
    ``quotes``: as ``quotes_used`` says (both in :mod:`marketlab.markets`). ``attrs``: ``bbo``
    (:func:`bbo`'s dict), ``symbols`` per venue, ``quotes``."""
    if isinstance(symbol, str):
        symbols = {venue: normalize_symbol(symbol) for venue in books}
    elif isinstance(symbol, Mapping):
        symbols = dict(symbol)
    else:
        raise ValueError(
            f"symbol must be a symbol or {{venue: symbol}}, got {type(symbol).__name__}"
        )
    consolidated = bbo(books)
    rows = consolidated["per_venue"]
    frame = pd.DataFrame(
        {
            "bid": np.array([r["bid"] for r in rows], dtype=np.float64),
            "bid_qty": np.array([r["bid_qty"] for r in rows], dtype=np.float64),
            "ask": np.array([r["ask"] for r in rows], dtype=np.float64),
            "ask_qty": np.array([r["ask_qty"] for r in rows], dtype=np.float64),
            "mid": np.array([r["mid"] for r in rows], dtype=np.float64),
            "spread_bps": np.array([r["spread_bps"] for r in rows], dtype=np.float64),
            "synced": np.array([r["synced"] for r in rows], dtype=bool),
            "reason": pd.array([r["reason"] for r in rows], dtype=object),
            "best_bid": np.array(
                [r["exchange"] == consolidated["best_bid_venue"] for r in rows], dtype=bool
            ),
            "best_ask": np.array(
                [r["exchange"] == consolidated["best_ask_venue"] for r in rows], dtype=bool
            ),
        },
        index=pd.Index([r["exchange"] for r in rows], dtype=object, name="exchange"),
    )
    frame.attrs.update(bbo=consolidated, symbols=symbols, quotes=dict(quotes))
    return frame


# --- the merged book ---------------------------------------------------------------------------


def consolidated_book(
    books: Mapping[str, BookView], depth: int = 20
) -> tuple[list[Level], list[Level], dict[str, str]]:
    """Every synced venue's levels in one book, to see the liquidity the market has wherever it
    rests: bids best (highest) first, asks best (lowest) first, each level ``(price, qty,
    venue)``; levels at one price on several venues stay separate rows, in ``books``' order;
    the best ``depth`` levels of each side. Third: the venues left out, with their reasons."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive integer, got {depth!r}")
    bids: list[tuple[float, int, int, float, str]] = []
    asks: list[tuple[float, int, int, float, str]] = []
    excluded: dict[str, str] = {}
    for order, (venue, raw) in enumerate(books.items()):
        book = _check_book(venue, raw)
        why = _exclusion(book)
        if why is not None:
            excluded[venue] = why
            continue
        for i, lv in enumerate(book.bids):
            price, qty = _level(venue, "bids", i, lv)
            bids.append((-price, order, i, qty, venue))
        for i, lv in enumerate(book.asks):
            price, qty = _level(venue, "asks", i, lv)
            asks.append((price, order, i, qty, venue))
    # (price, venue order, level) is unique per level: the sort never compares further.
    top_bids = [(-p, q, v) for p, _, _, q, v in heapq.nsmallest(depth, bids)]
    top_asks = [(p, q, v) for p, _, _, q, v in heapq.nsmallest(depth, asks)]
    return top_bids, top_asks, excluded


def consolidated_book_frame(books: Mapping[str, BookView], depth: int = 20) -> pd.DataFrame:
    """:func:`consolidated_book` as ``side price qty exchange cum_qty``: bids best first, then
    asks best first; ``cum_qty`` sums each side's sizes from its best level out. ``attrs``:
    ``venues`` (those that took part), ``excluded`` ({venue: reason}), ``crossed`` (the merged
    best bid at or above the merged best ask: the venues' books overlap)."""
    bids, asks, excluded = consolidated_book(books, depth)
    levels = bids + asks
    qty = np.fromiter((q for _, q, _ in levels), np.float64, len(levels))
    frame = pd.DataFrame(
        {
            "side": pd.Categorical(
                ["bid"] * len(bids) + ["ask"] * len(asks), categories=["bid", "ask"]
            ),
            "price": np.fromiter((p for p, _, _ in levels), np.float64, len(levels)),
            "qty": qty,
            "exchange": pd.array([v for _, _, v in levels], dtype=object),
            "cum_qty": np.concatenate((np.cumsum(qty[: len(bids)]), np.cumsum(qty[len(bids) :]))),
        }
    )
    frame.attrs.update(
        venues=[v for v in books if v not in excluded],
        excluded=excluded,
        crossed=bool(bids and asks and bids[0][0] >= asks[0][0]),
    )
    return frame


# --- divergence ------------------------------------------------------------------------------


def _mid_value(key: tuple[str, str], value: Any) -> float:
    """A venue's mid as a float; NaN where there is none (None or NaN)."""
    if value is None:
        return _NAN
    try:
        mid = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"mids[{key!r}] must be a number or None, got {value!r}") from None
    if math.isnan(mid):
        return _NAN
    if not math.isfinite(mid) or mid <= 0.0:
        raise ValueError(f"mids[{key!r}] must be a positive price, got {value!r}")
    return mid


def divergence_rows(
    symbol_markets: Mapping[str, Mapping[str, str]],
    mids: Mapping[tuple[str, str], float | None],
    quote_equivalents: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """How far each venue's mid lies from the other venues' for the same market: per symbol
    (the Lab's name for it, with ``{venue: the venue's symbol}`` as from
    ``marketlab.markets.match_markets``) and venue, ``mid``, ``median`` (of the venues with a
    mid), ``bps``
    (``(mid / median - 1) * 1e4``) and ``venues`` (how many had a mid); also ``market`` (the
    venue's symbol) and ``quote`` (as compared). ``mids`` is keyed by ``(venue, the venue's
    symbol)``; a missing key, None or NaN is no mid: shown as NaN and not counted. Fewer than
    two venues with a mid: NaN bps. ValueError when a symbol's venues quote in different
    assets not declared equivalent (``quote_equivalents``, as ``marketlab.markets`` rules)."""
    rows: list[dict[str, Any]] = []
    for symbol, markets in symbol_markets.items():
        quotes = quotes_used(markets, quote_equivalents)
        values = {
            venue: _mid_value((venue, market), mids.get((venue, market)))
            for venue, market in markets.items()
        }
        present = [m for m in values.values() if not math.isnan(m)]
        median = statistics.median(present) if present else _NAN
        for venue, market in markets.items():
            mid = values[venue]
            bps = (mid / median - 1.0) * 1e4 if len(present) >= 2 else _NAN
            rows.append(
                {
                    "symbol": symbol,
                    "exchange": venue,
                    "market": market,
                    "quote": quotes[venue],
                    "mid": mid,
                    "median": median,
                    "bps": bps,
                    "venues": len(present),
                }
            )
    return rows


def divergence_frame(
    symbol_markets: Mapping[str, Mapping[str, str]],
    mids: Mapping[tuple[str, str], float | None],
    quote_equivalents: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """:func:`divergence_rows` as a frame indexed by ``(symbol, exchange)``: ``mid``,
    ``median``, ``bps``, ``venues``. ``attrs``: ``markets`` ({symbol: {venue: its symbol}}) and
    ``quotes`` ({symbol: {venue: quote as compared}})."""
    rows = divergence_rows(symbol_markets, mids, quote_equivalents)
    index = pd.MultiIndex.from_arrays(
        [[r["symbol"] for r in rows], [r["exchange"] for r in rows]], names=["symbol", "exchange"]
    )
    frame = pd.DataFrame(
        {
            "mid": np.array([r["mid"] for r in rows], dtype=np.float64),
            "median": np.array([r["median"] for r in rows], dtype=np.float64),
            "bps": np.array([r["bps"] for r in rows], dtype=np.float64),
            "venues": np.array([r["venues"] for r in rows], dtype=np.int64),
        },
        index=index,
    )
    frame.attrs.update(
        markets={s: dict(m) for s, m in symbol_markets.items()},
        quotes={s: quotes_used(m, quote_equivalents) for s, m in symbol_markets.items()},
    )
    return frame


def mid_of(book: BookView | None, price_row: Mapping[str, Any] | None) -> float:
    """A venue's mid for :func:`divergence_rows`: from its synced book's top where it has both
    sides, else from its price row's ``bid`` and ``ask`` (a venue collecting no book), else
    NaN."""
    if book is not None and book.synced and book.bids and book.asks:
        return (float(book.bids[0][0]) + float(book.asks[0][0])) / 2.0
    if price_row is not None:
        bid, ask = price_row.get("bid"), price_row.get("ask")
        if bid is not None and ask is not None:
            b, a = float(bid), float(ask)
            if math.isfinite(b) and math.isfinite(a) and b > 0.0 and a > 0.0:
                return (b + a) / 2.0
    return _NAN
