"""OKX v5 REST payloads of swaps → records, sans-I/O: the swaps listed with their contract
values (``/public/instruments?instType=SWAP``), the funding rate now and its history, open
interest, mark prices; and books, candles and trades of a swap, read by the spot readers (the
shapes are the same) and converted from contracts to the base asset.

A payload that does not have the documented shape raises :class:`PayloadError` naming the
endpoint; an error body raises :class:`OkxAPIError`. Symbols come back as ours
(``BTCUSDT-PERP``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from marketlab.numbers import DECODE_ERRORS, Amount, Change, Price, TimeMs
from marketlab.records import (
    BookSnapshot,
    Funding,
    Kline,
    MarkPrice,
    OpenInterest,
    Trade,
    underlying_of,
)
from marketlab.venues.errors import PayloadError
from marketlab.venues.okx.payloads import parse_books, parse_candles, parse_history_trades
from marketlab.venues.okx.perp_frames import optional_amount
from marketlab.venues.okx.perp_protocol import perp_symbol_of, swap_inst_id
from marketlab.venues.okx.protocol import OkxAPIError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SwapContract:
    """A linear swap as ``/public/instruments`` lists it: ``contract_value`` is the base asset
    one contract is (``ctVal`` × ``ctMult``); ``lot_size`` and ``min_size`` are in contracts
    (OKX allows fractions of a contract on some swaps)."""

    symbol: str  # ours, BTCUSDT-PERP
    inst_id: str  # OKX's, BTC-USDT-SWAP
    contract_value: float
    settle_asset: str
    tick_size: float
    lot_size: float
    min_size: float
    state: str  # live, suspend, preopen, ...


class _Envelope(msgspec.Struct):
    code: str
    msg: str = ""
    data: msgspec.Raw = msgspec.Raw(b"")


class _Instrument(msgspec.Struct):
    instId: str
    ctType: str = ""  # linear / inverse
    ctVal: str = ""
    ctMult: str = ""
    ctValCcy: str = ""
    settleCcy: str = ""
    tickSz: str = ""
    lotSz: str = ""
    minSz: str = ""
    state: str = ""


class _FundingRate(msgspec.Struct):
    instId: str
    fundingRate: Change
    fundingTime: TimeMs  # the next settlement: the one ``fundingRate`` is predicted for
    ts: TimeMs


class _FundingHistory(msgspec.Struct):
    instId: str
    fundingTime: TimeMs
    fundingRate: Change  # the rate predicted for it
    realizedRate: str = ""  # the rate actually settled ("" on rows that predate it)


class _OpenInterest(msgspec.Struct):
    instId: str
    oi: Amount  # contracts
    ts: TimeMs
    oiUsd: str = ""


class _MarkPrice(msgspec.Struct):
    instId: str
    markPx: Price
    ts: TimeMs


def _rows(payload: bytes | str, shape: type[T], endpoint: str) -> T:
    try:
        env = msgspec.json.decode(payload, type=_Envelope, strict=False)
        if env.code != "0":
            raise OkxAPIError(env.code, env.msg)
        if not env.data:
            raise PayloadError(f"{endpoint}: no data")
        return msgspec.json.decode(env.data, type=shape, strict=False)
    except DECODE_ERRORS as exc:
        raise PayloadError(f"{endpoint}: unexpected payload ({exc})") from None


def _ours(inst: str, endpoint: str) -> str:
    try:
        return perp_symbol_of(inst)
    except ValueError as exc:
        raise PayloadError(f"{endpoint}: {exc}") from None


def _positive(text: str, what: str, endpoint: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise PayloadError(f"{endpoint}: {what} {text!r} is no positive number")
    return value


def swap_contracts(payload: bytes | str) -> dict[str, SwapContract]:
    """``/api/v5/public/instruments?instType=SWAP`` → the linear swaps by our name. Inverse
    swaps (contract value in USD, settled in the coin) are left out: their contracts are no
    fixed amount of the base asset."""
    endpoint = "/api/v5/public/instruments?instType=SWAP"
    out = {}
    for r in _rows(payload, list[_Instrument], endpoint):
        if r.ctType != "linear":
            continue
        symbol = _ours(r.instId, endpoint)
        mult = _positive(r.ctMult, f"ctMult of {r.instId}", endpoint) if r.ctMult else 1.0
        value = _positive(r.ctVal, f"ctVal of {r.instId}", endpoint) * mult
        out[symbol] = SwapContract(
            symbol,
            r.instId,
            value,
            r.settleCcy,
            _positive(r.tickSz, f"tickSz of {r.instId}", endpoint),
            _positive(r.lotSz, f"lotSz of {r.instId}", endpoint),
            _positive(r.minSz, f"minSz of {r.instId}", endpoint),
            r.state,
        )
    return out


def funding_rate(payload: bytes | str) -> list[MarkPrice]:
    """``/api/v5/public/funding-rate`` → the rate now in force, predicted for the next
    settlement (``fundingTime``, the next funding time: OKX's ``nextFundingTime`` is the one
    after it). OKX gives no mark or index here: NaN."""
    endpoint = "/api/v5/public/funding-rate"
    nan = math.nan
    return [
        MarkPrice(_ours(r.instId, endpoint), r.ts, nan, nan, nan, r.fundingRate, r.fundingTime)
        for r in _rows(payload, list[_FundingRate], endpoint)
    ]


def funding_history(payload: bytes | str) -> list[Funding]:
    """``/api/v5/public/funding-rate-history`` (newest first) → settled fundings, oldest first:
    the rate actually settled (``realizedRate``; the predicted ``fundingRate`` on rows without
    one). OKX gives no mark price of a settlement: NaN."""
    endpoint = "/api/v5/public/funding-rate-history"
    out = []
    for r in reversed(_rows(payload, list[_FundingHistory], endpoint)):
        rate = r.fundingRate
        if r.realizedRate:
            try:
                rate = float(r.realizedRate)
            except ValueError:
                rate = math.nan
            if not math.isfinite(rate):
                raise PayloadError(f"{endpoint}: realizedRate {r.realizedRate!r} is no number")
        out.append(Funding(_ours(r.instId, endpoint), r.fundingTime, rate, math.nan))
    return out


def open_interest(payload: bytes | str, contract_values: Mapping[str, float]) -> list[OpenInterest]:
    """``/api/v5/public/open-interest`` → open interest in the base asset (``oi`` contracts ×
    the contract value; swaps of unknown contract value are left out) and its value in USD
    (``oiUsd``; NaN where absent)."""
    endpoint = "/api/v5/public/open-interest"
    out = []
    for r in _rows(payload, list[_OpenInterest], endpoint):
        symbol = _ours(r.instId, endpoint)
        per = contract_values.get(symbol)
        if per is None:
            continue
        try:
            value = optional_amount(r.oiUsd, "oiUsd")
        except ValueError as exc:
            raise PayloadError(f"{endpoint}: {exc}") from None
        out.append(OpenInterest(symbol, r.ts, r.oi * per, value))
    return out


OPEN_INTEREST_HISTORY = "/api/v5/rubik/stat/contracts/open-interest-history"


def open_interest_history(payload: bytes | str, symbol: str) -> list[OpenInterest]:
    """``/api/v5/rubik/stat/contracts/open-interest-history`` (rows ``[ts, oi, oiCcy, oiUsd]``,
    newest first, of the one swap asked for) → ``symbol``'s open interest oldest first, in the
    base asset (``oiCcy``) and its value in USD (``oiUsd``)."""
    endpoint = OPEN_INTEREST_HISTORY
    out = []
    for ts, _contracts, base, usd in reversed(
        _rows(payload, list[tuple[TimeMs, str, Amount, str]], endpoint)
    ):
        try:
            value = optional_amount(usd, "oiUsd")
        except ValueError as exc:
            raise PayloadError(f"{endpoint}: {exc}") from None
        out.append(OpenInterest(symbol, ts, base, value))
    return out


def mark_prices(payload: bytes | str) -> list[MarkPrice]:
    """``/api/v5/public/mark-price`` → mark prices (no index or funding here: NaN, -1)."""
    endpoint = "/api/v5/public/mark-price"
    nan = math.nan
    return [
        MarkPrice(_ours(r.instId, endpoint), r.ts, r.markPx, nan, nan, nan, -1)
        for r in _rows(payload, list[_MarkPrice], endpoint)
    ]


def _checked_value(symbol: str, contract_value: float) -> str:
    swap_inst_id(symbol)  # ValueError for a name that is not a perpetual's
    if not (math.isfinite(contract_value) and contract_value > 0):
        raise ValueError(f"contract value of {symbol}: {contract_value!r} is no positive number")
    return symbol


def swap_books(payload: bytes | str | Any, symbol: str, contract_value: float) -> BookSnapshot:
    """``/market/books?instId=<swap>`` → a snapshot of ``symbol`` (ours), sizes in the base
    asset."""
    _checked_value(symbol, contract_value)
    snap = parse_books(payload, underlying_of(symbol))
    return BookSnapshot(
        symbol,
        snap.last_update_id,
        [(p, q * contract_value) for p, q in snap.bids],
        [(p, q * contract_value) for p, q in snap.asks],
        snap.event_time,
    )


def swap_candles(
    payload: bytes | str | Any, symbol: str, interval: str, contract_value: float
) -> list[Kline]:
    """``/market/candles`` or ``/market/history-candles`` of a swap → klines oldest first,
    volume in the base asset (``vol`` contracts × the contract value), quote volume as sent
    (``volCcyQuote``)."""
    _checked_value(symbol, contract_value)
    rows = parse_candles(payload, underlying_of(symbol), interval)
    return [
        msgspec.structs.replace(k, symbol=symbol, volume=k.volume * contract_value) for k in rows
    ]


def swap_trades(payload: bytes | str | Any, symbol: str, contract_value: float) -> list[Trade]:
    """``/market/history-trades`` of a swap → trades oldest first, sizes in the base asset."""
    _checked_value(symbol, contract_value)
    rows = parse_history_trades(payload, underlying_of(symbol))
    return [msgspec.structs.replace(t, symbol=symbol, qty=t.qty * contract_value) for t in rows]
