"""Coinbase Advanced Trade public REST payloads → records, sans-I/O: server time, the product
listing, candles (newest first → oldest first), the product book, recent trades and tickers.

The public endpoints are ``/api/v3/brokerage/market/...`` (no key) and ``/api/v3/brokerage/time``.
Numbers come as strings, read by the rules of :mod:`marketlab.numbers`. An error answer
(``{"error", "error_details", "message"}`` or the grpc-gateway ``{"code", "message"}``) is raised
as :class:`CoinbaseAPIError`; a body of another shape is a :class:`PayloadError`.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import msgspec

from marketlab.numbers import DECODE_ERRORS, TIME_MAX_MS, TIME_MIN_MS, Amount, Change, Price
from marketlab.records import BookSnapshot, Interval, Kline, Ticker, Trade
from marketlab.records import normalize_symbol as _normalize
from marketlab.venues.coinbase.frames import TradeWire, rfc3339_ms, trade_of
from marketlab.venues.coinbase.protocol import CoinbaseAPIError, product_id, symbol_of
from marketlab.venues.errors import PayloadError

# A value of the error envelope: anything else there (a list, an object) fails the decode, and
# the body then carries no error this reader can name.
_Scalar = str | int | float | bool | None


class _ErrorItem(msgspec.Struct):
    id: _Scalar = None
    message: _Scalar = None


class _Error(msgspec.Struct):
    """What a body may say of an error, in the shapes api.coinbase.com uses: Advanced Trade's
    ``{"error", "error_details", "message"}``, the grpc-gateway's ``{"code", "message"}`` and
    the v2 API's ``{"errors": [{"id", "message"}]}``. Every field optional: a data body
    decodes to one that names no error."""

    error: _Scalar = None
    code: _Scalar = None
    message: _Scalar = None
    error_details: _Scalar = None
    errors: list[_ErrorItem] | None = None


_ERROR = msgspec.json.Decoder(_Error)


def _said(value: _Scalar) -> str:
    return "" if value is None or isinstance(value, bool) else str(value).strip()


def api_error(body: bytes | str | Any, status: int | None = None) -> CoinbaseAPIError | None:
    """The error an answer's body carries, or None when it names none (a data body, no JSON,
    an envelope of other types, the grpc-gateway's code 0, which is OK). Never raises."""
    raw = body if isinstance(body, bytes | str) else msgspec.json.encode(body)
    try:
        err = _ERROR.decode(raw)
    except DECODE_ERRORS:
        return None
    if err.errors:
        code, message = _said(err.errors[0].id), _said(err.errors[0].message)
    else:
        code = _said(err.error)
        if not code and err.code not in (None, 0, "0"):
            code = _said(err.code)
        message = _said(err.message) or _said(err.error_details)
    return CoinbaseAPIError(code, message, status) if code else None


def _decode(payload: bytes | str | Any, typ: Any, what: str) -> Any:
    """``payload`` as ``typ``; the venue's error answer as :class:`CoinbaseAPIError`."""
    raw = payload if isinstance(payload, bytes | str) else msgspec.json.encode(payload)
    try:
        return msgspec.json.decode(raw, type=typ, strict=False)
    except DECODE_ERRORS as exc:
        err = api_error(raw)
        if err is not None:
            raise err from None
        raise PayloadError(f"{what}: {exc}") from None


class _Time(msgspec.Struct):
    epochMillis: str
    iso: str = ""
    epochSeconds: str = ""


def parse_time(payload: bytes | str | Any) -> int:
    """``/api/v3/brokerage/time`` → the server's time in ms (``epochMillis``, a string)."""
    t = _decode(payload, _Time, "/api/v3/brokerage/time")
    text = t.epochMillis
    if not (text.isascii() and text.isdigit()) or len(text) > 15:
        raise PayloadError(f"/api/v3/brokerage/time: epochMillis {text!r} is not a number")
    ms = int(text)
    if not TIME_MIN_MS <= ms <= TIME_MAX_MS:
        raise PayloadError(f"/api/v3/brokerage/time: {ms} ms is no venue's clock")
    return ms


class ProductWire(msgspec.Struct):
    """A ``/market/products`` row (the fields used here; Coinbase sends many more)."""

    product_id: str
    price: Amount | None = None
    price_percentage_change_24h: Change | None = None
    volume_24h: Amount | None = None
    quote_increment: Amount = 0.0
    price_increment: Amount = 0.0
    status: str = "online"
    trading_disabled: bool = False
    is_disabled: bool = False
    product_type: str = "SPOT"
    quote_currency_id: str = ""


class _Products(msgspec.Struct):
    products: list[ProductWire]


def _tradable(p: ProductWire) -> bool:
    return (
        p.product_type == "SPOT"
        and p.status.lower() == "online"
        and not p.trading_disabled
        and not p.is_disabled
    )


def _ours(product: str) -> str | None:
    """Our name of a product, when it maps back to the product (else we cannot collect it)."""
    try:
        symbol = symbol_of(product)
        return symbol if product_id(symbol) == product else None
    except ValueError:
        return None


def parse_products(payload: bytes | str | Any) -> dict[str, float]:
    """``/market/products`` → our symbol → price tick of each spot product online and trading
    whose name maps both ways (``price_increment``, else ``quote_increment``)."""
    rows = _decode(payload, _Products, "/api/v3/brokerage/market/products").products
    out = {}
    for p in rows:
        symbol = _ours(p.product_id) if _tradable(p) else None
        if symbol is not None:
            out[symbol] = p.price_increment or p.quote_increment
    return out


def parse_spot_symbols(payload: bytes | str | Any, quote: str) -> list[str]:
    """``/market/products`` → ours of the spot products trading now quoted in ``quote``."""
    rows = _decode(payload, _Products, "/api/v3/brokerage/market/products").products
    out = []
    for p in rows:
        symbol = _ours(p.product_id) if _tradable(p) else None
        if symbol is not None and p.product_id.partition("-")[2] == quote:
            out.append(symbol)
    return out


def parse_product_tickers(payload: bytes | str | Any, event_time: int) -> list[Ticker]:
    """``/market/products?product_ids=...`` → tickers at ``event_time`` (the answer has no
    time): the last price, 24 h volume and change; no best bid or ask (NaN)."""
    rows = _decode(payload, _Products, "/api/v3/brokerage/market/products").products
    out = []
    for p in rows:
        symbol = _ours(p.product_id)
        if symbol is None or p.price is None or not p.price:
            continue
        pct = p.price_percentage_change_24h
        pct = math.nan if pct is None else pct
        open_ = p.price / (1.0 + pct / 100.0) if math.isfinite(pct) and pct > -100.0 else math.nan
        volume = math.nan if p.volume_24h is None else p.volume_24h
        out.append(
            Ticker(
                symbol,
                event_time,
                p.price,
                math.nan,
                math.nan,
                math.nan,
                math.nan,
                math.nan,
                open_,
                math.nan,
                math.nan,
                volume,
                math.nan,
                p.price - open_,
                pct,
                math.nan,
                math.nan,
                event_time - 86_400_000,
                event_time,
                -1,
                -1,
                -1,
            )
        )
    return out


class _Candle(msgspec.Struct):
    start: str
    low: Amount
    high: Amount
    open: Amount
    close: Amount
    volume: Amount


class _Candles(msgspec.Struct):
    candles: list[_Candle]


def kline(symbol: str, iv: Interval, open_time: int, c: Any, closed: bool) -> Kline:
    """A Coinbase candle → a kline. Coinbase gives no quote volume, no trade count and no
    taker-buy volumes: NaN and -1 say so."""
    return Kline(
        symbol,
        str(iv),
        open_time,
        c.open,
        c.high,
        c.low,
        c.close,
        c.volume,
        iv.close_of(open_time),
        math.nan,
        -1,
        math.nan,
        math.nan,
        closed,
        None,
    )


def parse_candles(
    payload: bytes | str | Any, symbol: str, interval: str, server_time: int
) -> list[Kline]:
    """``/market/products/{id}/candles`` (newest first; a bucket with no trade is absent) →
    klines, oldest first. Coinbase's rows carry no "closed" flag: a candle is closed when its
    last millisecond is before ``server_time``."""
    iv = Interval(interval)
    what = f"/api/v3/brokerage/market/products/{{id}}/candles for {symbol} {iv}"
    rows = _decode(payload, _Candles, what).candles
    name = _normalize(symbol)
    out = []
    for c in rows:
        if not (c.start.isascii() and c.start.isdigit()) or len(c.start) > 12:
            raise PayloadError(f"{what}: start {c.start!r} is not unix seconds")
        start = int(c.start) * 1000
        if not TIME_MIN_MS <= start <= TIME_MAX_MS:
            raise PayloadError(f"{what}: start {c.start!r} is outside the venues' years")
        if iv.open_of(start) != start:
            raise PayloadError(f"{what}: a candle opening at {start}, off its boundary")
        out.append(kline(name, iv, start, c, iv.close_of(start) < server_time))
    out.sort(key=lambda k: k.open_time)
    for a, b in itertools.pairwise(out):
        if a.open_time == b.open_time:
            raise PayloadError(f"{what}: two candles opening at {a.open_time}")
    return out


class _BookLevel(msgspec.Struct):
    price: Price
    size: Amount


class _PriceBook(msgspec.Struct):
    product_id: str
    bids: list[_BookLevel]
    asks: list[_BookLevel]
    time: str = ""


class _ProductBook(msgspec.Struct):
    pricebook: _PriceBook


def parse_product_book(payload: bytes | str | Any, symbol: str) -> BookSnapshot:
    """``/market/product_book?product_id=`` → a snapshot. The REST book carries no sequence:
    ``last_update_id`` is its time (ms), which says how fresh it is and nothing about the
    stream (such books only stand in while polling)."""
    what = f"/api/v3/brokerage/market/product_book for {symbol}"
    b = _decode(payload, _ProductBook, what).pricebook
    name = _normalize(symbol)
    try:
        theirs = symbol_of(b.product_id)
        when = rfc3339_ms(b.time, "time") if b.time else 0
    except ValueError as exc:
        raise PayloadError(f"{what}: {exc}") from None
    if theirs != name:
        raise PayloadError(f"{what}: a book of {b.product_id!r}")
    bids = [(lv.price, lv.size) for lv in b.bids]
    asks = [(lv.price, lv.size) for lv in b.asks]
    return BookSnapshot(name, when, bids, asks, when or None)


class _MarketTrades(msgspec.Struct):
    trades: list[TradeWire]


def parse_market_trades(payload: bytes | str | Any, symbol: str) -> list[Trade]:
    """``/market/products/{id}/ticker`` (the most recent trades, newest first) → trades, oldest
    first, each on the taker's side (Coinbase's ``side`` is the maker's). The answer has no
    event time: a trade's own time stands for it."""
    what = f"/api/v3/brokerage/market/products/{{id}}/ticker for {symbol}"
    rows = _decode(payload, _MarketTrades, what).trades
    name = _normalize(symbol)
    out = []
    for r in rows:
        try:
            t = trade_of(r)
        except ValueError as exc:
            raise PayloadError(f"{what}: {exc}") from None
        if t.symbol != name:
            raise PayloadError(f"{what}: a trade of {r.product_id!r}")
        out.append(t)
    out.sort(key=lambda t: t.trade_id)
    return out
