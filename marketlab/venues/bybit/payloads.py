"""Bybit v5 REST payloads → records, sans-I/O: server time, spot instruments, klines (newest
first → oldest first), the order book, recent trades and tickers.

Every answer is an envelope ``{"retCode", "retMsg", "result", "retExtInfo", "time"}``; Bybit
sends its errors with HTTP 200 and a ``retCode`` other than 0, raised here as
:class:`BybitAPIError`. A body of another shape is a :class:`PayloadError`.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from marketlab.numbers import DECODE_ERRORS, Amount, Price, TimeMs
from marketlab.records import BookSnapshot, Interval, Kline, Ticker, Trade
from marketlab.records import normalize_symbol as _normalize
from marketlab.venues.bybit.frames import BookWire, TickerWire, kline, ticker_of, trade_id
from marketlab.venues.bybit.protocol import BybitAPIError, symbol_of
from marketlab.venues.errors import PayloadError


class _Envelope(msgspec.Struct):
    retCode: int
    retMsg: str = ""
    result: msgspec.Raw = msgspec.Raw(b"")
    time: TimeMs | None = None


def _result(payload: bytes | str | Any, typ: Any, what: str) -> Any:
    """The ``result`` of an answer as ``typ``; the venue's error as :class:`BybitAPIError`."""
    raw = payload if isinstance(payload, bytes | str) else msgspec.json.encode(payload)
    try:
        env = msgspec.json.decode(raw, type=_Envelope, strict=False)
    except DECODE_ERRORS as exc:
        raise PayloadError(f"{what}: {exc}") from None
    if env.retCode != 0:
        raise BybitAPIError(env.retCode, env.retMsg)
    if not env.result:
        raise PayloadError(f"{what}: no result")
    try:
        return msgspec.json.decode(env.result, type=typ, strict=False)
    except DECODE_ERRORS as exc:
        raise PayloadError(f"{what}: {exc}") from None


class _Time(msgspec.Struct):
    timeSecond: str
    timeNano: str


def parse_time(payload: bytes | str | Any) -> int:
    """``/v5/market/time`` → server time in ms (from ``timeNano``, the precise one)."""
    t = _result(payload, _Time, "/v5/market/time")
    if not (t.timeNano.isascii() and t.timeNano.isdigit()):
        raise PayloadError(f"/v5/market/time: timeNano {t.timeNano!r} is not a number")
    ms = int(t.timeNano) // 1_000_000
    if not 1_262_304_000_000 <= ms <= 4_102_444_800_000:
        raise PayloadError(f"/v5/market/time: {ms} ms is no venue's clock")
    return ms


class _PriceFilter(msgspec.Struct):
    tickSize: Amount = 0.0


class _Instrument(msgspec.Struct):
    symbol: str
    quoteCoin: str = ""
    status: str = "Trading"
    priceFilter: _PriceFilter = msgspec.field(default_factory=_PriceFilter)


class _Instruments(msgspec.Struct):
    rows: list[_Instrument] = msgspec.field(name="list")


def parse_instruments(payload: bytes | str | Any) -> dict[str, float]:
    """``/v5/market/instruments-info?category=spot`` → our symbol → price tick of each spot
    instrument trading (spot lists them all in one answer: it has no pagination)."""
    result = _result(payload, _Instruments, "/v5/market/instruments-info")
    out = {}
    for item in result.rows:
        if item.status != "Trading":
            continue
        try:
            out[symbol_of(item.symbol)] = item.priceFilter.tickSize
        except ValueError:
            continue  # a name that is none of ours
    return out


def parse_spot_symbols(payload: bytes | str | Any, quote: str) -> list[str]:
    """``/v5/market/instruments-info?category=spot`` → ours of those trading in ``quote``."""
    result = _result(payload, _Instruments, "/v5/market/instruments-info")
    out = []
    for item in result.rows:
        if item.status == "Trading" and item.quoteCoin == quote:
            try:
                out.append(symbol_of(item.symbol))
            except ValueError:
                continue
    return out


# [startTime, open, high, low, close, volume, turnover], all strings
KlineRow = tuple[TimeMs, Amount, Amount, Amount, Amount, Amount, Amount]


class _Klines(msgspec.Struct):
    rows: list[KlineRow] = msgspec.field(name="list")


def parse_klines(
    payload: bytes | str | Any, symbol: str, interval: str, server_time: int
) -> list[Kline]:
    """``/v5/market/kline`` (newest first) → klines, oldest first. Bybit's rows carry no
    "closed" flag: a candle is closed when its last millisecond is before ``server_time``."""
    iv = Interval(interval)
    what = f"/v5/market/kline for {symbol} {iv}"
    rows = _result(payload, _Klines, what).rows
    name = _normalize(symbol)
    out = []
    for start, *values in sorted(rows, key=lambda r: r[0]):
        if iv.open_of(start) != start:
            raise PayloadError(f"{what}: a candle opening at {start}, off its boundary")
        closed = iv.close_of(start) < server_time
        out.append(kline(name, iv, start, tuple(values), closed, None))
    return out


class _Book(BookWire):
    ts: TimeMs | None = None


def parse_orderbook(payload: bytes | str | Any, symbol: str) -> BookSnapshot:
    """``/v5/market/orderbook`` → a snapshot at ``u``, which is the ``u`` of the 1000-level
    WebSocket book (not of the 50 or 200 we stream: REST books only stand in while polling)."""
    b = _result(payload, _Book, f"/v5/market/orderbook for {symbol}")
    name = _normalize(symbol)
    if b.s != name:
        raise PayloadError(f"/v5/market/orderbook for {symbol}: a book of {b.s!r}")
    return BookSnapshot(name, b.u, b.b, b.a, b.ts)


class _RecentTrade(msgspec.Struct):
    execId: str
    symbol: str
    price: Price
    size: Amount
    side: Literal["Buy", "Sell"]
    time: TimeMs


class _Trades(msgspec.Struct):
    rows: list[_RecentTrade] = msgspec.field(name="list")


def parse_recent_trades(payload: bytes | str | Any, symbol: str) -> list[Trade]:
    """``/v5/market/recent-trade`` → trades, oldest first (by id; the order Bybit answers in
    is not documented). The answer has no event time: a trade's own time stands for it."""
    what = f"/v5/market/recent-trade for {symbol}"
    rows = _result(payload, _Trades, what).rows
    name = _normalize(symbol)
    out = []
    for r in rows:
        if r.symbol != name:
            raise PayloadError(f"{what}: a trade of {r.symbol!r}")
        try:
            tid = trade_id(r.execId)
        except ValueError as exc:
            raise PayloadError(f"{what}: {exc}") from None
        side: Literal["buy", "sell"] = "buy" if r.side == "Buy" else "sell"
        out.append(Trade(name, tid, r.price, r.size, side, r.time, r.time))
    out.sort(key=lambda t: t.trade_id)
    return out


class _Tickers(msgspec.Struct):
    rows: list[TickerWire] = msgspec.field(name="list")


def parse_tickers(payload: bytes | str | Any) -> list[Ticker]:
    """``/v5/market/tickers?category=spot`` → tickers (with the best bid and ask, which the
    WebSocket's spot tickers lack), timed by the envelope's ``time``."""
    what = "/v5/market/tickers"
    raw = payload if isinstance(payload, bytes | str) else msgspec.json.encode(payload)
    try:
        env = msgspec.json.decode(raw, type=_Envelope, strict=False)
    except DECODE_ERRORS as exc:
        raise PayloadError(f"{what}: {exc}") from None
    if env.retCode == 0 and env.time is None:
        raise PayloadError(f"{what}: no time")
    result = _result(raw, _Tickers, what)
    out = []
    for t in result.rows:
        try:
            out.append(ticker_of(t, env.time or 0))
        except ValueError as exc:
            raise PayloadError(f"{what}: {exc}") from None
    return out
