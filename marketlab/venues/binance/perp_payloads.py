"""Binance USDⓈ-M futures REST payloads → records, sans-I/O: the book snapshot, aggregated
trades, mark price and funding (``premiumIndex``), funding history, open interest now and its
history, and the perpetuals the venue lists.

Every payload is checked against the documented shape while it is decoded (numbers by the
rules of :mod:`marketlab.numbers`); one that does not match raises :class:`PayloadError`
naming the endpoint and what is wrong. Symbols come back as ours (``BTCUSDT-PERP``).
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

import msgspec

from marketlab.numbers import DECODE_ERRORS, Amount, Change, Id, Level, Price, TimeMs
from marketlab.records import (
    AggTrade,
    BookSnapshot,
    Funding,
    MarkPrice,
    OpenInterest,
    SymbolInfo,
    perpetual_of,
)
from marketlab.venues.binance.protocol import BinanceAPIError
from marketlab.venues.errors import PayloadError

T = TypeVar("T")


class _Depth(msgspec.Struct):
    lastUpdateId: Id
    E: TimeMs
    T: TimeMs
    bids: list[Level]
    asks: list[Level]


class _AggTrade(msgspec.Struct):
    a: Id
    p: Price
    q: Amount
    f: Id
    l: Id  # the last trade id
    T: TimeMs
    m: bool


class _PremiumIndex(msgspec.Struct):
    symbol: str
    markPrice: Price
    indexPrice: Amount
    estimatedSettlePrice: Amount
    lastFundingRate: Change
    nextFundingTime: int
    time: TimeMs


class _FundingRate(msgspec.Struct):
    symbol: str
    fundingTime: TimeMs
    fundingRate: Change
    markPrice: str = ""  # "" on old rows, which predate it


class _OpenInterest(msgspec.Struct):
    symbol: str
    openInterest: Amount
    time: TimeMs


class _OpenInterestHist(msgspec.Struct):
    symbol: str
    sumOpenInterest: Amount
    sumOpenInterestValue: Amount
    timestamp: TimeMs


class _Filter(msgspec.Struct):
    filterType: str
    tickSize: float | None = None
    stepSize: float | None = None
    minQty: float | None = None
    notional: float | None = None


class _Contract(msgspec.Struct):
    symbol: str
    contractType: str
    status: str
    baseAsset: str
    quoteAsset: str
    filters: list[_Filter] = []


class _ExchangeInfo(msgspec.Struct):
    symbols: list[_Contract]


class _Error(msgspec.Struct):
    code: int
    msg: str


def _decode(data: bytes | str, shape: type[T], endpoint: str) -> T:
    try:
        return msgspec.json.decode(data, type=shape, strict=False)
    except DECODE_ERRORS as exc:
        raise PayloadError(f"{endpoint}: unexpected payload ({exc})") from None


def _ours(symbol: str, endpoint: str) -> str:
    try:
        return perpetual_of(symbol)
    except ValueError as exc:
        raise PayloadError(f"{endpoint}: {exc}") from None


def error_of(data: bytes | str, status: int | None = None) -> BinanceAPIError | None:
    """The error a body carries (``{"code": -1121, "msg": "Invalid symbol."}``), else None."""
    try:
        err = msgspec.json.decode(data, type=_Error)
    except DECODE_ERRORS:
        return None
    return BinanceAPIError(err.code, err.msg, status)


def depth(data: bytes | str, symbol: str) -> BookSnapshot:
    """``/fapi/v1/depth`` → the snapshot of ``symbol`` (ours) at ``lastUpdateId``."""
    d = _decode(data, _Depth, "/fapi/v1/depth")
    return BookSnapshot(symbol, d.lastUpdateId, d.bids, d.asks, d.E)


def agg_trades(data: bytes | str, symbol: str) -> list[AggTrade]:
    """``/fapi/v1/aggTrades`` → aggregated trades, oldest first as sent; ``event_time`` is the
    trade's own time (REST has no event)."""
    rows = _decode(data, list[_AggTrade], "/fapi/v1/aggTrades")
    out = []
    for r in rows:
        if r.l < r.f:
            raise PayloadError(f"/fapi/v1/aggTrades: agg trade {r.a} ends before it begins")
        out.append(AggTrade(symbol, r.a, r.p, r.q, "sell" if r.m else "buy", r.f, r.l, r.T, r.T))
    return out


def mark_price(data: bytes | str) -> MarkPrice:
    """``/fapi/v1/premiumIndex?symbol=`` → the mark price and the funding rate now running."""
    p = _decode(data, _PremiumIndex, "/fapi/v1/premiumIndex")
    return MarkPrice(
        _ours(p.symbol, "/fapi/v1/premiumIndex"),
        p.time,
        p.markPrice,
        p.indexPrice,
        p.estimatedSettlePrice,
        p.lastFundingRate,
        p.nextFundingTime if p.nextFundingTime > 0 else -1,
    )


def funding_history(data: bytes | str) -> list[Funding]:
    """``/fapi/v1/fundingRate`` → settled fundings, oldest first (as Binance sends them)."""
    rows = _decode(data, list[_FundingRate], "/fapi/v1/fundingRate")
    out = []
    for r in rows:
        try:
            mark = float(r.markPrice) if r.markPrice else math.nan
        except ValueError:
            raise PayloadError(
                f"/fapi/v1/fundingRate: markPrice {r.markPrice!r} is not a number"
            ) from None
        if not (math.isnan(mark) or (math.isfinite(mark) and mark > 0)):
            raise PayloadError(f"/fapi/v1/fundingRate: markPrice {r.markPrice!r} is no price")
        out.append(
            Funding(_ours(r.symbol, "/fapi/v1/fundingRate"), r.fundingTime, r.fundingRate, mark)
        )
    return out


def open_interest(data: bytes | str) -> OpenInterest:
    """``/fapi/v1/openInterest`` → open interest now, in the base asset (no value given)."""
    o = _decode(data, _OpenInterest, "/fapi/v1/openInterest")
    return OpenInterest(_ours(o.symbol, "/fapi/v1/openInterest"), o.time, o.openInterest, math.nan)


def open_interest_history(data: bytes | str) -> list[OpenInterest]:
    """``/futures/data/openInterestHist`` → open interest at each period's end, with its value
    in the quote asset (Binance keeps only the last 30 days of it)."""
    rows = _decode(data, list[_OpenInterestHist], "/futures/data/openInterestHist")
    return [
        OpenInterest(
            _ours(r.symbol, "/futures/data/openInterestHist"),
            r.timestamp,
            r.sumOpenInterest,
            r.sumOpenInterestValue,
        )
        for r in rows
    ]


def perpetuals(data: bytes | str) -> list[SymbolInfo]:
    """``/fapi/v1/exchangeInfo`` → the perpetual contracts listed (``contractType`` PERPETUAL;
    delivery contracts are left out), named as ours."""
    info = _decode(data, _ExchangeInfo, "/fapi/v1/exchangeInfo")
    out = []
    for c in info.symbols:
        if c.contractType != "PERPETUAL":
            continue
        filters: dict[str, Any] = {f.filterType: f for f in c.filters}
        price_filter, lot = filters.get("PRICE_FILTER"), filters.get("LOT_SIZE")
        notional = filters.get("MIN_NOTIONAL")
        out.append(
            SymbolInfo(
                _ours(c.symbol, "/fapi/v1/exchangeInfo"),
                c.status,
                c.baseAsset,
                c.quoteAsset,
                (price_filter.tickSize if price_filter else None) or 0.0,
                (lot.stepSize if lot else None) or 0.0,
                (lot.minQty if lot else None) or 0.0,
                (notional.notional if notional else None) or 0.0,
            )
        )
    return out
