"""OKX v5 REST payloads → records, sans-I/O: server time, instruments, candles (newest first →
oldest first), books and tickers; error bodies as :class:`OkxAPIError`."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from marketlab.numbers import DECODE_ERRORS, Amount, Id, Price, TimeMs, amount, price
from marketlab.records import BookSnapshot, Interval, Kline, Ticker, Trade
from marketlab.records import normalize_symbol as _normalize
from marketlab.venues.errors import PayloadError
from marketlab.venues.okx.frames import BookWire, CandleRow, TickerWire, candle, ticker_of
from marketlab.venues.okx.protocol import OkxAPIError, symbol_of

# --- REST payloads ---------------------------------------------------------------------------


class _Envelope(msgspec.Struct):
    code: str
    msg: str = ""
    data: msgspec.Raw = msgspec.Raw(b"")


def _data(payload: bytes | str | Any, what: str) -> msgspec.Raw:
    raw = payload if isinstance(payload, bytes | str) else msgspec.json.encode(payload)
    try:
        env = msgspec.json.decode(raw, type=_Envelope, strict=False)
    except DECODE_ERRORS as exc:
        raise PayloadError(f"{what}: {exc}") from None
    if env.code != "0":
        raise OkxAPIError(env.code, env.msg)
    if not env.data:
        raise PayloadError(f"{what}: no data")
    return env.data


def _rows(payload: bytes | str | Any, typ: Any, what: str) -> Any:
    data = _data(payload, what)
    try:
        return msgspec.json.decode(data, type=typ, strict=False)
    except DECODE_ERRORS as exc:
        raise PayloadError(f"{what}: {exc}") from None


def parse_time(payload: bytes | str | Any) -> int:
    """``/api/v5/public/time`` → server time in ms."""
    rows = _rows(payload, list[dict[str, int]], "/api/v5/public/time")
    if not rows or "ts" not in rows[0]:
        raise PayloadError("/api/v5/public/time: no ts")
    return int(rows[0]["ts"])


def parse_instruments(payload: bytes | str | Any) -> dict[str, float]:
    """``/api/v5/public/instruments`` → our symbol → price tick (``tickSz``) of each listed."""
    rows = _rows(payload, list[dict[str, Any]], "/api/v5/public/instruments")
    out = {}
    for r in rows:
        inst, tick = r.get("instId"), r.get("tickSz")
        if isinstance(inst, str):
            try:
                out[symbol_of(inst)] = float(tick) if tick else 0.0
            except (TypeError, ValueError):
                out[symbol_of(inst)] = 0.0
    return out


def parse_spot_symbols(payload: bytes | str | Any, quote: str) -> list[str]:
    """``/api/v5/public/instruments`` → our names of the live instruments quoted in ``quote``."""
    rows = _rows(payload, list[dict[str, Any]], "/api/v5/public/instruments")
    return [
        symbol_of(r["instId"])
        for r in rows
        if isinstance(r.get("instId"), str)
        and r.get("quoteCcy") == quote
        and r.get("state", "live") == "live"
    ]


def parse_candles(payload: bytes | str | Any, symbol: str, interval: str) -> list[Kline]:
    """``/market/candles`` or ``/market/history-candles`` (newest first) → klines, oldest first."""
    iv = Interval(interval)
    rows = _rows(payload, list[CandleRow], f"/api/v5/market/candles for {symbol} {iv}")
    return [candle(_normalize(symbol), iv, r) for r in reversed(rows)]


def parse_books(payload: bytes | str | Any, symbol: str) -> BookSnapshot:
    """``/market/books`` → a snapshot. REST books carry no sequence id: ``last_update_id`` is
    the book's time, which says how fresh it is and nothing about the stream."""
    rows = _rows(payload, list[BookWire], f"/api/v5/market/books for {symbol}")
    if not rows:
        raise PayloadError(f"/api/v5/market/books for {symbol}: empty data")
    b = rows[0]
    try:
        bids = [(price(p, "price"), amount(q, "size")) for p, q, *_ in b.bids]
        asks = [(price(p, "price"), amount(q, "size")) for p, q, *_ in b.asks]
    except ValueError as exc:
        raise PayloadError(f"/api/v5/market/books for {symbol}: {exc}") from None
    return BookSnapshot(_normalize(symbol), b.ts, bids, asks, b.ts)


def parse_tickers(payload: bytes | str | Any) -> list[Ticker]:
    """``/market/ticker`` or ``/market/tickers`` → tickers."""
    return [ticker_of(t) for t in _rows(payload, list[TickerWire], "/api/v5/market/tickers")]


class _HistoryTrade(msgspec.Struct):
    tradeId: Id
    px: Price
    sz: Amount
    side: Literal["buy", "sell"]
    ts: TimeMs


def parse_history_trades(payload: bytes | str | Any, symbol: str) -> list[Trade]:
    """``/market/history-trades`` (newest first; empty when nothing qualifies) → trades, oldest
    first. The REST answer has no event time: the trade's own time stands for it."""
    raw = payload if isinstance(payload, bytes | str) else msgspec.json.encode(payload)
    try:
        env = msgspec.json.decode(raw, type=_Envelope, strict=False)
        if env.code != "0":
            raise OkxAPIError(env.code, env.msg)
        rows = (
            msgspec.json.decode(env.data, type=list[_HistoryTrade], strict=False)
            if env.data
            else []
        )
    except DECODE_ERRORS as exc:
        raise PayloadError(f"/api/v5/market/history-trades for {symbol}: {exc}") from None
    name = _normalize(symbol)
    return [Trade(name, t.tradeId, t.px, t.sz, t.side, t.ts, t.ts) for t in reversed(rows)]
