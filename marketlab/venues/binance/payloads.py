"""Binance REST payloads → records, sans-I/O: server time, klines, depth snapshots, trades, 24h
tickers, exchange info, and error bodies as :class:`BinanceAPIError`."""

from __future__ import annotations

from typing import Any

import msgspec

from marketlab.numbers import DECODE_ERRORS, Amount, Change, Id, IdOrNone, Level, Price, TimeMs
from marketlab.records import (
    BookSnapshot,
    Interval,
    Kline,
    SymbolInfo,
    Ticker,
    Trade,
    is_perpetual,
    normalize_symbol,
    perpetual_of,
)
from marketlab.venues.binance.protocol import BinanceAPIError
from marketlab.venues.errors import PayloadError

_Levels = list[Level]

# --- REST payloads -------------------------------------------------------------------------

# [open time, o, h, l, c, volume, close time, quote volume, trades, taker buy base, taker buy
# quote, ignore]; every number typed by its rule (marketlab.numbers)
_KLINE_ROWS = msgspec.json.Decoder(
    list[
        tuple[
            TimeMs, Amount, Amount, Amount, Amount, Amount, TimeMs, Amount, Id, Amount, Amount, Any
        ]
    ],
    strict=False,
)


class _RestDepth(msgspec.Struct):
    lastUpdateId: Id
    bids: _Levels
    asks: _Levels


class _RestTrade(msgspec.Struct):
    id: Id
    price: Price
    qty: Amount
    time: TimeMs
    isBuyerMaker: bool


class _RestTicker(msgspec.Struct):
    symbol: str
    priceChange: Change
    priceChangePercent: Change
    weightedAvgPrice: Amount
    prevClosePrice: Amount
    lastPrice: Amount
    lastQty: Amount
    bidPrice: Amount
    bidQty: Amount
    askPrice: Amount
    askQty: Amount
    openPrice: Amount
    highPrice: Amount
    lowPrice: Amount
    volume: Amount
    quoteVolume: Amount
    openTime: TimeMs
    closeTime: TimeMs
    firstId: IdOrNone
    lastId: IdOrNone
    count: Id


class _Filter(msgspec.Struct):
    filterType: str
    tickSize: float | None = None
    stepSize: float | None = None
    minQty: float | None = None
    minNotional: float | None = None


class _RestSymbol(msgspec.Struct):
    symbol: str
    status: str
    baseAsset: str
    quoteAsset: str
    filters: list[_Filter] = []


class _ExchangeInfo(msgspec.Struct):
    symbols: list[_RestSymbol]


class _ServerTime(msgspec.Struct):
    serverTime: TimeMs


class _ApiError(msgspec.Struct):
    code: int
    msg: str


def _rest_decode(payload: bytes | str | Any, typ: type, what: str) -> Any:
    try:
        if isinstance(payload, bytes | str):
            return msgspec.json.decode(payload, type=typ, strict=False)
        return msgspec.convert(payload, typ, strict=False)
    except DECODE_ERRORS as exc:
        raise PayloadError(f"{what}: {exc}") from None


def raise_for_error(payload: bytes | str | Any, status: int | None = None) -> None:
    """Raise :class:`BinanceAPIError` if ``payload`` is an error body."""
    try:
        if isinstance(payload, bytes | str):
            err = msgspec.json.decode(payload, type=_ApiError)
        else:
            err = msgspec.convert(payload, _ApiError)
    except DECODE_ERRORS:
        return
    raise BinanceAPIError(err.code, err.msg, status)


def parse_server_time(payload: bytes | str) -> int:
    """``/api/v3/time`` (and ``/fapi/v1/time``) → the server's time, ms since the epoch."""
    return int(_rest_decode(payload, _ServerTime, "/api/v3/time").serverTime)


def parse_klines(
    payload: bytes | str | list, symbol: str, interval: str, server_time: int
) -> list[Kline]:
    """``/api/v3/klines`` rows → klines; a row whose close time is not before ``server_time``
    is the open candle (``closed=False``). A perpetual's (``BTCUSDT-PERP``) come from
    ``/fapi/v1/klines``, whose rows are the same."""
    perpetual = is_perpetual(symbol)
    symbol = perpetual_of(symbol) if perpetual else normalize_symbol(symbol)
    endpoint = "/fapi/v1/klines" if perpetual else "/api/v3/klines"
    iv = Interval(interval)
    try:
        rows = (
            _KLINE_ROWS.decode(payload)
            if isinstance(payload, bytes | str)
            else _KLINE_ROWS.decode(msgspec.json.encode(payload))
        )
    except DECODE_ERRORS as exc:
        raise PayloadError(f"{endpoint} for {symbol} {iv}: {exc}") from None
    return [
        Kline(
            symbol,
            iv,
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            r[6],
            r[7],
            r[8],
            r[9],
            r[10],
            r[6] < server_time,
        )
        for r in rows
    ]


def parse_depth(payload: bytes | str | dict, symbol: str) -> BookSnapshot:
    """``/api/v3/depth`` → a snapshot at its ``lastUpdateId``."""
    d = _rest_decode(payload, _RestDepth, f"/api/v3/depth for {symbol}")
    return BookSnapshot(normalize_symbol(symbol), d.lastUpdateId, d.bids, d.asks)


def parse_trades(payload: bytes | str | list, symbol: str) -> list[Trade]:
    """``/api/v3/historicalTrades`` (or ``/api/v3/trades``) → trades, oldest first. The REST
    answer has no event time: the trade's own time stands for it."""
    rows = _rest_decode(payload, list[_RestTrade], f"/api/v3/historicalTrades for {symbol}")
    name = normalize_symbol(symbol)
    return [
        Trade(name, t.id, t.price, t.qty, "sell" if t.isBuyerMaker else "buy", t.time, t.time)
        for t in rows
    ]


def parse_ticker_24hr(payload: bytes | str | dict | list) -> list[Ticker]:
    """``/api/v3/ticker/24hr`` (one object or a list) → tickers; event time is ``closeTime``."""
    if isinstance(payload, bytes | str):
        payload = _rest_decode(payload, Any, "/api/v3/ticker/24hr")
    items = payload if isinstance(payload, list) else [payload]
    rows = _rest_decode(items, list[_RestTicker], "/api/v3/ticker/24hr")
    return [
        Ticker(
            t.symbol,
            t.closeTime,
            t.lastPrice,
            t.lastQty,
            t.bidPrice,
            t.bidQty,
            t.askPrice,
            t.askQty,
            t.openPrice,
            t.highPrice,
            t.lowPrice,
            t.volume,
            t.quoteVolume,
            t.priceChange,
            t.priceChangePercent,
            t.weightedAvgPrice,
            t.prevClosePrice,
            t.openTime,
            t.closeTime,
            t.firstId,
            t.lastId,
            t.count,
        )
        for t in rows
    ]


def parse_exchange_info(payload: bytes | str | dict) -> list[SymbolInfo]:
    """``/api/v3/exchangeInfo`` → one :class:`SymbolInfo` per symbol."""
    info = _rest_decode(payload, _ExchangeInfo, "/api/v3/exchangeInfo")
    out = []
    for s in info.symbols:
        f = {flt.filterType: flt for flt in s.filters}
        price, lot = f.get("PRICE_FILTER"), f.get("LOT_SIZE")
        notional = f.get("NOTIONAL") or f.get("MIN_NOTIONAL")
        out.append(
            SymbolInfo(
                s.symbol,
                s.status,
                s.baseAsset,
                s.quoteAsset,
                (price.tickSize or 0.0) if price else 0.0,
                (lot.stepSize or 0.0) if lot else 0.0,
                (lot.minQty or 0.0) if lot else 0.0,
                (notional.minNotional or 0.0) if notional else 0.0,
            )
        )
    return out
