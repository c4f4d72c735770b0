"""Bybit v5 linear REST payloads → records, sans-I/O: the perpetuals listed (with their
funding interval and lot and price filters), funding history, open interest history, tickers
(mark, index, funding, open interest now) and recent trades.

Answers are Bybit's envelope (``retCode``, ``retMsg``, ``result``); an error (``retCode`` other
than 0, sent with HTTP 200) is raised as :class:`~marketlab.venues.bybit.protocol.BybitAPIError`,
a body of another shape as :class:`PayloadError` naming the endpoint. The book and klines have
spot's shape: :func:`marketlab.venues.bybit.payloads.parse_orderbook` and ``parse_klines`` read
them, given our symbol. Symbols come back as ours (``BTCUSDT-PERP``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec

from marketlab.numbers import DECODE_ERRORS, TIME_MIN_MS, Amount, Change, Price, TimeMs
from marketlab.records import Funding, MarkPrice, OpenInterest, Trade, perpetual_of
from marketlab.venues.bybit.perp_frames import NextTime, trade_id
from marketlab.venues.bybit.protocol import BybitAPIError
from marketlab.venues.errors import PayloadError


class _Envelope(msgspec.Struct):
    retCode: int
    retMsg: str = ""
    result: msgspec.Raw = msgspec.Raw(b"")


def _result(payload: bytes | str, typ: Any, what: str) -> Any:
    try:
        env = msgspec.json.decode(payload, type=_Envelope, strict=False)
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


def _ours(name: str, what: str) -> str:
    try:
        return perpetual_of(name)
    except ValueError as exc:
        raise PayloadError(f"{what}: {exc}") from None


# --- instruments ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinearInstrument:
    """A linear perpetual as ``instruments-info`` lists it: its tick, lot step, smallest
    order and notional, and the funding interval in minutes (480 = 8 h; Bybit may move a
    contract to 60 while its rate sits at its cap, so this is data, not configuration)."""

    symbol: str  # ours
    status: str
    base_asset: str
    quote_asset: str
    tick_size: float
    qty_step: float
    min_qty: float
    min_notional: float
    funding_interval_min: int


Minutes = Annotated[int, msgspec.Meta(ge=0, le=525_600)]


class _PriceFilter(msgspec.Struct):
    tickSize: Amount = 0.0


class _LotSizeFilter(msgspec.Struct):
    qtyStep: Amount = 0.0
    minOrderQty: Amount = 0.0
    minNotionalValue: Amount = 0.0


class _Instrument(msgspec.Struct):
    symbol: str
    contractType: str
    status: str
    baseCoin: str
    quoteCoin: str
    fundingInterval: Minutes = 0
    priceFilter: _PriceFilter = msgspec.field(default_factory=_PriceFilter)
    lotSizeFilter: _LotSizeFilter = msgspec.field(default_factory=_LotSizeFilter)


class _Instruments(msgspec.Struct):
    rows: list[_Instrument] = msgspec.field(name="list")
    nextPageCursor: str = ""


def perpetuals(payload: bytes | str) -> tuple[list[LinearInstrument], str]:
    """``/v5/market/instruments-info?category=linear`` → the perpetuals of this page
    (``contractType`` LinearPerpetual; dated futures are left out) and the cursor of the next
    page (``""`` on the last: linear lists more than one page holds)."""
    what = "/v5/market/instruments-info"
    result = _result(payload, _Instruments, what)
    out = []
    for item in result.rows:
        if item.contractType != "LinearPerpetual":
            continue
        out.append(
            LinearInstrument(
                _ours(item.symbol, what),
                item.status,
                item.baseCoin,
                item.quoteCoin,
                item.priceFilter.tickSize,
                item.lotSizeFilter.qtyStep,
                item.lotSizeFilter.minOrderQty,
                item.lotSizeFilter.minNotionalValue,
                item.fundingInterval,
            )
        )
    return out, result.nextPageCursor


# --- funding and open interest -------------------------------------------------------------


class _FundingRow(msgspec.Struct):
    symbol: str
    fundingRate: Change
    fundingRateTimestamp: TimeMs  # a string of ms on the wire


class _FundingRows(msgspec.Struct):
    rows: list[_FundingRow] = msgspec.field(name="list")


def funding_history(payload: bytes | str) -> list[Funding]:
    """``/v5/market/funding/history`` → settled fundings, oldest first (Bybit sends them newest
    first). Bybit gives no mark price with them (NaN)."""
    what = "/v5/market/funding/history"
    rows = _result(payload, _FundingRows, what).rows
    out = [
        Funding(_ours(r.symbol, what), r.fundingRateTimestamp, r.fundingRate, math.nan)
        for r in rows
    ]
    return sorted(out, key=lambda f: f.funding_time)


class _OpenInterestRow(msgspec.Struct):
    openInterest: Amount
    timestamp: TimeMs


class _OpenInterestRows(msgspec.Struct):
    symbol: str
    rows: list[_OpenInterestRow] = msgspec.field(name="list")
    nextPageCursor: str = ""


def open_interest(payload: bytes | str) -> tuple[list[OpenInterest], str]:
    """``/v5/market/open-interest`` → open interest at each interval's time, oldest first, in
    the base coin (Bybit gives no value with it: NaN), and the cursor of the next page (older
    rows; ``""`` on the last). Bybit keeps this back to the contract's launch. (Its docs call
    the figure both "single side data" and "the sum of both sides": it is kept as published.)"""
    what = "/v5/market/open-interest"
    result = _result(payload, _OpenInterestRows, what)
    symbol = _ours(result.symbol, what)
    rows = [OpenInterest(symbol, r.timestamp, r.openInterest, math.nan) for r in result.rows]
    return sorted(rows, key=lambda o: o.time), result.nextPageCursor


# --- tickers -------------------------------------------------------------------------------


class _LinearTicker(msgspec.Struct):
    symbol: str
    markPrice: Price
    indexPrice: Price
    fundingRate: Change
    nextFundingTime: NextTime
    openInterest: Amount
    openInterestValue: Amount


class _Tickers(msgspec.Struct):
    rows: list[_LinearTicker] = msgspec.field(name="list")


class _Time(msgspec.Struct):
    time: TimeMs


def tickers(payload: bytes | str) -> list[tuple[MarkPrice, OpenInterest]]:
    """``/v5/market/tickers?category=linear`` → per perpetual its mark price (with index,
    funding rate and next funding time) and open interest, as of the answer's ``time``."""
    what = "/v5/market/tickers"
    rows = _result(payload, _Tickers, what).rows
    try:
        now = msgspec.json.decode(payload, type=_Time, strict=False).time
    except DECODE_ERRORS as exc:
        raise PayloadError(f"{what}: {exc}") from None
    out = []
    for t in rows:
        symbol = _ours(t.symbol, what)
        if 0 < t.nextFundingTime < TIME_MIN_MS:
            raise PayloadError(
                f"{what}: nextFundingTime {t.nextFundingTime} is before the venues' years"
            )
        next_funding = t.nextFundingTime if t.nextFundingTime > 0 else -1
        mark = MarkPrice(
            symbol, now, t.markPrice, t.indexPrice, math.nan, t.fundingRate, next_funding
        )
        out.append((mark, OpenInterest(symbol, now, t.openInterest, t.openInterestValue)))
    return out


# --- recent trades -------------------------------------------------------------------------


class _RecentTrade(msgspec.Struct):
    execId: str
    symbol: str
    price: Price
    size: Amount
    side: Literal["Buy", "Sell"]
    time: TimeMs  # a string of ms
    seq: Annotated[int, msgspec.Meta(ge=0)]  # a string here, an integer on the WebSocket


class _RecentTrades(msgspec.Struct):
    rows: list[_RecentTrade] = msgspec.field(name="list")


def recent_trades(payload: bytes | str, symbol: str, limit: int) -> list[Trade]:
    """``/v5/market/recent-trade?category=linear`` (newest first) → trades oldest first, with
    the ids the WebSocket's fills get (:func:`~.perp_frames.trade_id`: ``seq`` and the place
    among the fills of that ``seq``). When the answer is full (``limit`` rows) the oldest match
    may be cut, so its places are unknown: its fills are left out."""
    what = "/v5/market/recent-trade"
    rows = _result(payload, _RecentTrades, what).rows[::-1]
    name = symbol[: -len("-PERP")] if symbol.endswith("-PERP") else symbol
    if any(r.symbol != name for r in rows):
        raise PayloadError(f"{what}: a trade of another symbol than {name}")
    if len(rows) >= limit and rows:
        first_seq = rows[0].seq
        rows = [r for r in rows if r.seq != first_seq]
    out = []
    seq, count = -1, 0
    for r in rows:
        if r.seq == seq:
            count += 1
        else:
            seq, count = r.seq, 1
        try:
            tid = trade_id(seq, count - 1)
        except ValueError as exc:
            raise PayloadError(f"{what}: {exc}") from None
        side: Literal["buy", "sell"] = "buy" if r.side == "Buy" else "sell"
        out.append(Trade(symbol, tid, r.price, r.size, side, r.time, r.time))
    return out
