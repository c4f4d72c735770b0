"""Normalized market-data records shared by every venue.

Records are plain immutable structs: venues produce them, the book, frames, store and server
consume them. Times are integer milliseconds since the Unix epoch (UTC); prices and quantities
are floats; symbols are the exchange's canonical names (``BTCUSDT``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Literal

import msgspec

Side = Literal["buy", "sell"]
Level = tuple[float, float]

__all__ = [
    "PERP_SUFFIX",
    "AggTrade",
    "BookDelta",
    "BookSnapshot",
    "BookTicker",
    "Funding",
    "Interval",
    "Kline",
    "Level",
    "Liquidation",
    "MarkPrice",
    "MiniTicker",
    "OpenInterest",
    "Record",
    "Side",
    "SymbolInfo",
    "Ticker",
    "Trade",
    "is_perpetual",
    "normalize_symbol",
    "perpetual_of",
    "split_symbol",
    "underlying_of",
]


class Trade(msgspec.Struct, frozen=True, gc=False):
    """One exchange trade; ``side`` is the taker's side."""

    symbol: str
    trade_id: int
    price: float
    qty: float
    side: Side
    time: int
    event_time: int


class AggTrade(msgspec.Struct, frozen=True, gc=False):
    """Trades at one price from one taker order, aggregated by the exchange."""

    symbol: str
    agg_id: int
    price: float
    qty: float
    side: Side
    first_trade_id: int
    last_trade_id: int
    time: int
    event_time: int


class Ticker(msgspec.Struct, frozen=True, gc=False):
    """Rolling 24-hour statistics plus the best bid and ask."""

    symbol: str
    event_time: int
    last: float
    last_qty: float
    bid: float
    bid_qty: float
    ask: float
    ask_qty: float
    open: float
    high: float
    low: float
    volume: float
    quote_volume: float
    change: float
    change_pct: float
    weighted_avg: float
    prev_close: float
    open_time: int
    close_time: int
    first_trade_id: int
    last_trade_id: int
    trades: int


class MiniTicker(msgspec.Struct, frozen=True, gc=False):
    """The short form of the 24-hour statistics (no book, no change)."""

    symbol: str
    event_time: int
    close: float
    open: float
    high: float
    low: float
    volume: float
    quote_volume: float


class BookTicker(msgspec.Struct, frozen=True, gc=False):
    """Best bid and ask as of ``update_id`` (the book's update id)."""

    symbol: str
    update_id: int
    bid: float
    bid_qty: float
    ask: float
    ask_qty: float


class BookSnapshot(msgspec.Struct, frozen=True, gc=False):
    """A full or partial book at ``last_update_id``; levels best first."""

    symbol: str
    last_update_id: int
    bids: list[Level]
    asks: list[Level]
    event_time: int | None = None


class BookDelta(msgspec.Struct, frozen=True, gc=False):
    """Absolute level quantities for update ids ``first_update_id..last_update_id``.

    A quantity of zero removes the level.
    """

    symbol: str
    first_update_id: int
    last_update_id: int
    bids: list[Level]
    asks: list[Level]
    event_time: int


class Kline(msgspec.Struct, frozen=True, gc=False):
    """One candle: the twelve fields of a Binance kline row, minus the unused one, plus
    its symbol, interval and whether the exchange has closed it."""

    symbol: str
    interval: str
    open_time: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    close_time: int
    quote_volume: float
    trades: int
    taker_buy_volume: float
    taker_buy_quote_volume: float
    closed: bool
    event_time: int | None = None


KLINE_VALUES = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume",
    "trades",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "close_time",
)
"""A candle's values in the order every table of them keeps (the rolling frames, SQLite,
Parquet): one definition, so the layers cannot drift apart."""


# --- perpetual swaps ------------------------------------------------------------------------
# Quantities are in the base asset on every venue (a venue that counts contracts is converted by
# its contract value), so venues compare; prices in the quote asset; rates as fractions
# (0.0001 is 0.01 %) per funding interval.


class MarkPrice(msgspec.Struct, frozen=True, gc=False):
    """A perpetual's mark and index price with the funding rate now in force: what decides
    liquidations and the next funding payment. NaN where the venue says nothing of a value,
    -1 for a time it does not give."""

    symbol: str
    event_time: int
    mark: float
    index: float
    settle_estimate: float  # the estimated settlement price (meaningful before a delivery)
    funding_rate: float  # the rate of the funding interval now running
    next_funding_time: int


class Funding(msgspec.Struct, frozen=True, gc=False):
    """One funding settled: at ``funding_time`` longs paid shorts ``rate`` times their position's
    value (shorts paid longs when negative); ``mark`` is the mark price it was settled at (NaN
    where the venue does not say)."""

    symbol: str
    funding_time: int
    rate: float
    mark: float


class OpenInterest(msgspec.Struct, frozen=True, gc=False):
    """Open interest at ``time``: ``open_interest`` in the base asset, ``value`` its worth as the
    venue states it (NaN where it does not): in the quote asset on Binance and Bybit linear, in
    USD on OKX (its ``oiUsd``; the nearest its swaps come to a value in USDT)."""

    symbol: str
    time: int
    open_interest: float
    value: float


class Liquidation(msgspec.Struct, frozen=True, gc=False):
    """A forced close of a position: ``side`` is the side of the position that was liquidated
    (a long is closed by a sell order). ``price`` is the price the venue gives for it, which
    is not the same quantity everywhere: Binance's average fill price (``ap``), the bankruptcy
    price on OKX (``bkPx``) and on Bybit (``p``); ``qty`` what was closed (base asset);
    ``order_price`` the liquidation order's limit price where the venue gives one (Binance;
    Bybit's bankruptcy price again; NaN on OKX). ``sampled``: the venue's stream sends a sample
    of its liquidations, not every one (Binance pushes the latest per symbol per second), so a
    count of these is a lower bound."""

    symbol: str
    time: int
    side: Literal["long", "short"]
    price: float
    qty: float
    order_price: float
    sampled: bool
    event_time: int


class SymbolInfo(msgspec.Struct, frozen=True, gc=False):
    """What the exchange says about one tradable symbol."""

    symbol: str
    status: str
    base_asset: str
    quote_asset: str
    tick_size: float
    step_size: float
    min_qty: float = 0.0
    min_notional: float = 0.0


PerpetualRecord = MarkPrice | Funding | OpenInterest | Liquidation
Record = (
    Trade
    | AggTrade
    | Ticker
    | MiniTicker
    | BookTicker
    | BookSnapshot
    | BookDelta
    | Kline
    | PerpetualRecord
)


# --- symbols -------------------------------------------------------------------------------

_SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,20}$")
_SEPARATORS = str.maketrans("", "", "-/_")


# A perpetual swap is named by its underlying pair and this suffix (``BTCUSDT-PERP``), the same
# on every venue: the venue's own name for it (Binance ``BTCUSDT`` on its futures API, OKX
# ``BTC-USDT-SWAP``, Bybit ``BTCUSDT`` in its linear category) is the venue package's business.
PERP_SUFFIX = "-PERP"


def normalize_symbol(symbol: str) -> str:
    """Return the canonical form (``btc/usdt`` → ``BTCUSDT``, ``btcusdt-perp`` and ccxt's
    unified ``BTC/USDT:USDT`` → ``BTCUSDT-PERP``) or raise ``ValueError``."""
    if not isinstance(symbol, str):
        raise ValueError(f"symbol must be a string, got {type(symbol).__name__}: {symbol!r}")
    text = symbol.strip().upper()
    if ":" in text:
        text = _from_ccxt_swap(symbol, text)
    perpetual = text.endswith(PERP_SUFFIX)
    canonical = (text[: -len(PERP_SUFFIX)] if perpetual else text).translate(_SEPARATORS)
    if not _SYMBOL_RE.match(canonical):
        raise ValueError(
            f"invalid symbol {symbol!r}: expected 2-20 letters or digits such as 'BTCUSDT' "
            "(or a perpetual's name such as 'BTCUSDT-PERP')"
        )
    return canonical + PERP_SUFFIX if perpetual else canonical


def _from_ccxt_swap(symbol: str, text: str) -> str:
    """ccxt's unified name of a contract, ``BASE/QUOTE:SETTLE`` → ``BASEQUOTE-PERP`` when it is
    a linear perpetual (settled in its quote asset); an inverse perpetual or a dated future
    (``BASE/QUOTE:SETTLE-YYMMDD``) is refused by name: neither is collected."""
    pair, _, settle = text.partition(":")
    base, slash, quote = pair.partition("/")
    if not (slash and base and quote and settle):
        raise ValueError(
            f"invalid symbol {symbol!r}: a contract is named as ccxt names it, BASE/QUOTE:SETTLE "
            "(e.g. 'BTC/USDT:USDT'), or by its pair and -PERP ('BTCUSDT-PERP')"
        )
    if "-" in settle:
        raise ValueError(
            f"symbol {symbol!r} is a dated future (ccxt's BASE/QUOTE:SETTLE-YYMMDD): only "
            f"perpetual swaps are collected, e.g. '{base}/{quote}:{quote}'"
        )
    if settle != quote:
        raise ValueError(
            f"symbol {symbol!r} is an inverse perpetual (settled in {settle}): only linear ones, "
            f"settled in their quote asset, are collected, e.g. '{base}/USDT:USDT'"
        )
    return base + quote + PERP_SUFFIX


def is_perpetual(symbol: str) -> bool:
    """Whether ``symbol`` (canonical) names a perpetual swap (``BTCUSDT-PERP``)."""
    return symbol.endswith(PERP_SUFFIX)


def perpetual_of(symbol: str) -> str:
    """The perpetual swap on a pair: ``btc/usdt`` → ``BTCUSDT-PERP`` (``ValueError`` for a name
    that is no pair; a perpetual's own name comes back canonical)."""
    canonical = normalize_symbol(symbol)
    return canonical if is_perpetual(canonical) else canonical + PERP_SUFFIX


def underlying_of(symbol: str) -> str:
    """The pair a perpetual swap is on (``BTCUSDT-PERP`` → ``BTCUSDT``); a spot symbol is its
    own."""
    return symbol[: -len(PERP_SUFFIX)] if is_perpetual(symbol) else symbol


# Quote assets the venues list, to split a canonical symbol into its base and quote: longest
# first, so ``BTCUSDT`` is BTC/USDT and not BTCUS/DT.
QUOTE_ASSETS = tuple(
    sorted(
        [
            "FDUSD",
            "PYUSD",
            "USDT",
            "USDC",
            "USDG",
            "EURC",
            "EURT",
            "BUSD",
            "USD",
            "EUR",
            "GBP",
            "AUD",
            "SGD",
            "AED",
            "TRY",
            "BRL",
            "DAI",
            "BTC",
            "ETH",
            "BNB",
            "OKB",
        ],
        key=len,
        reverse=True,
    )
)


def split_symbol(symbol: str) -> tuple[str, str]:
    """``BTCUSDT`` → ``("BTC", "USDT")``: the longest known quote asset at its end (ValueError
    when none is, naming the ones known)."""
    canonical = underlying_of(normalize_symbol(symbol))  # a perpetual's: its pair's
    for quote in QUOTE_ASSETS:
        if canonical.endswith(quote) and len(canonical) > len(quote):
            return canonical[: -len(quote)], quote
    raise ValueError(
        f"{canonical}: no known quote asset at its end (known: {', '.join(QUOTE_ASSETS)})"
    )


# --- intervals -----------------------------------------------------------------------------

_SECOND = 1000
_MINUTE = 60 * _SECOND
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR
_WEEK = 7 * _DAY
# 1970-01-01 was a Thursday; Binance weeks open on Monday 00:00 UTC.
_WEEK_OFFSET = 4 * _DAY

_FIXED_MS = {
    "1s": _SECOND,
    "1m": _MINUTE,
    "3m": 3 * _MINUTE,
    "5m": 5 * _MINUTE,
    "15m": 15 * _MINUTE,
    "30m": 30 * _MINUTE,
    "1h": _HOUR,
    "2h": 2 * _HOUR,
    "4h": 4 * _HOUR,
    "6h": 6 * _HOUR,
    "8h": 8 * _HOUR,
    "12h": 12 * _HOUR,
    "1d": _DAY,
    "3d": 3 * _DAY,
    "1w": _WEEK,
}
_MONTH = "1M"
INTERVAL_NAMES: tuple[str, ...] = (*_FIXED_MS, _MONTH)


class Interval(str):
    """A kline interval name (``"1m"``) that knows how to align times to its candles.

    ``ms`` is the exact length for every interval but ``1M``, whose candles follow the
    calendar (``ms`` is then a nominal 30 days); use ``open_of`` / ``next_open`` for exact
    boundaries.
    """

    __slots__ = ()

    def __new__(cls, name: str | Interval) -> Interval:
        if isinstance(name, Interval):
            return name
        if name not in INTERVAL_NAMES:
            raise ValueError(
                f"invalid interval {name!r}: expected one of {', '.join(INTERVAL_NAMES)}"
            )
        return super().__new__(cls, name)

    @property
    def ms(self) -> int:
        """The length in milliseconds, for arithmetic on open times. The calendar month has
        no fixed length: it gives 30 days, so use :meth:`next_open` to step through months."""
        return _FIXED_MS.get(self, 30 * _DAY)

    @property
    def calendar(self) -> bool:
        """True for the calendar-month interval, whose length varies."""
        return self == _MONTH

    def open_of(self, ts_ms: int) -> int:
        """Open time of the candle containing ``ts_ms``."""
        if self == _MONTH:
            d = datetime.fromtimestamp(ts_ms / 1000, UTC)
            return int(datetime(d.year, d.month, 1, tzinfo=UTC).timestamp() * 1000)
        if self == "1w":
            return (ts_ms - _WEEK_OFFSET) // _WEEK * _WEEK + _WEEK_OFFSET
        step = _FIXED_MS[self]
        return ts_ms // step * step

    def next_open(self, open_ms: int) -> int:
        """Open time of the candle after the one containing ``open_ms``."""
        if self == _MONTH:
            d = datetime.fromtimestamp(self.open_of(open_ms) / 1000, UTC)
            year, month = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
            return int(datetime(year, month, 1, tzinfo=UTC).timestamp() * 1000)
        return self.open_of(open_ms) + _FIXED_MS[self]

    def close_of(self, open_ms: int) -> int:
        """Close time as Binance reports it: the last millisecond of the candle."""
        return self.next_open(open_ms) - 1


def parse_duration(text: str) -> float:
    """Seconds in a duration like ``90``, ``90s``, ``15m``, ``2h`` or ``1d``."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    t = text.strip().lower()
    try:
        if t and t[-1] in units:
            return float(t[:-1]) * units[t[-1]]
        return float(t)
    except ValueError:
        raise ValueError(
            f"invalid duration {text!r}: expected e.g. 30, 30s, 15m, 2h or 1d"
        ) from None
