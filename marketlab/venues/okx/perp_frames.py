"""OKX v5 WebSocket pushes of swaps → records, sans-I/O: ``books`` (snapshot and update, the
exact strings kept), ``trades-all``, candles, ``funding-rate``, ``mark-price``,
``open-interest``, ``liquidation-orders`` and ``index-tickers`` (the index of a swap, named by
its underlying ``BTC-USDT``, as a mark price record of which only the index is known), and the
events (subscribe, error, notice, pong).

Sizes on these channels are contracts. The decoder is told each swap's contract value (base
asset per contract, ``ctVal`` × ``ctMult``) when it is made and multiplies by it; a push of a
swap it was not told of is a bad frame (a size it cannot convert is never guessed), except on
``liquidation-orders``, which carries every swap and of which only the known ones are kept.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

import msgspec

from marketlab.numbers import (
    DECODE_ERRORS,
    Amount,
    Change,
    Id,
    IdOrNone,
    Price,
    TimeMs,
    amount,
    price,
)
from marketlab.records import Liquidation, MarkPrice, OpenInterest, Trade, perpetual_of
from marketlab.venues.errors import FrameError, UnknownStreamError
from marketlab.venues.okx.frames import (
    BookMessage,
    CandleRow,
    Notice,
    NumLevel,
    Pong,
    RequestError,
    StrLevel,
    candle,
)
from marketlab.venues.okx.perp_protocol import (
    INDEX_CHANNEL,
    LIQUIDATION_CHANNEL,
    PerpTopic,
    perp_symbol_of,
    perp_symbol_of_index,
)
from marketlab.venues.okx.protocol import interval_of_bar


@dataclass(frozen=True, slots=True)
class PerpSubscriptionResult:
    """OKX's answer to a (un)subscription of a swap channel."""

    event: str  # "subscribe" | "unsubscribe"
    topic: PerpTopic | None


# --- wire schemas (gc=False: numbers, strings and lists of them only) ------------------------


class _Arg(msgspec.Struct, gc=False):
    channel: str
    instId: str = ""
    instType: str = ""


class _Push(msgspec.Struct, gc=False):
    arg: _Arg | None = None
    data: msgspec.Raw = msgspec.Raw(b"")
    action: str | None = None
    event: str | None = None
    code: str | None = None
    msg: str = ""


class _Trade(msgspec.Struct, gc=False):
    instId: str
    tradeId: Id
    px: Price
    sz: Amount
    side: Literal["buy", "sell"]
    ts: TimeMs


class _Book(msgspec.Struct, gc=False):
    asks: list[list[str]]
    bids: list[list[str]]
    ts: TimeMs
    seqId: IdOrNone = -1
    prevSeqId: IdOrNone = -1
    checksum: int | None = None


class _FundingRate(msgspec.Struct, gc=False):
    instId: str
    fundingRate: Change
    fundingTime: TimeMs  # the next settlement: the one ``fundingRate`` is predicted for
    ts: TimeMs


class _MarkPrice(msgspec.Struct, gc=False):
    instId: str
    markPx: Price
    ts: TimeMs


class _IndexTicker(msgspec.Struct, gc=False):
    instId: str  # the index: the swap's underlying, BTC-USDT
    idxPx: Price
    ts: TimeMs


class _OpenInterest(msgspec.Struct, gc=False):
    instId: str
    oi: Amount  # contracts
    ts: TimeMs
    oiUsd: str = ""  # the value in USD (added in 2025; "" where absent)


class _LiquidationDetail(msgspec.Struct, gc=False):
    side: Literal["buy", "sell"]
    bkPx: Price
    sz: Amount  # contracts
    ts: TimeMs
    posSide: str = "net"


class _LiquidationRow(msgspec.Struct, gc=False):
    instId: str
    details: msgspec.Raw  # read only for the swaps the decoder knows


_DETAILS = msgspec.json.Decoder(list[_LiquidationDetail], strict=False)


_DATA: dict[str, msgspec.json.Decoder[list[Any]]] = {
    "trades-all": msgspec.json.Decoder(list[_Trade], strict=False),
    "books": msgspec.json.Decoder(list[_Book], strict=False),
    "funding-rate": msgspec.json.Decoder(list[_FundingRate], strict=False),
    "mark-price": msgspec.json.Decoder(list[_MarkPrice], strict=False),
    INDEX_CHANNEL: msgspec.json.Decoder(list[_IndexTicker], strict=False),
    "open-interest": msgspec.json.Decoder(list[_OpenInterest], strict=False),
    LIQUIDATION_CHANNEL: msgspec.json.Decoder(list[_LiquidationRow], strict=False),
}
_CANDLES = msgspec.json.Decoder(list[CandleRow], strict=False)
_PUSH = msgspec.json.Decoder(_Push)


def liquidated_side(side: str, pos_side: str) -> Literal["long", "short"]:
    """Which position a liquidation closed: ``posSide`` when it names one (hedge mode); in net
    mode a sell order closes a long and a buy order a short."""
    if pos_side in ("long", "short"):
        return cast('Literal["long", "short"]', pos_side)
    return "long" if side == "sell" else "short"


def optional_amount(text: str, what: str) -> float:
    """A number OKX may leave empty (``""``): NaN then, else read by the rules of amounts."""
    return amount(text, what) if text else math.nan


def _levels(rows: list[list[str]], per_contract: float) -> tuple[list[StrLevel], list[NumLevel]]:
    """A book side as OKX wrote it (the text its checksum was of, sizes in contracts) and as
    numbers (sizes in the base asset); ``ValueError`` naming the first bad level."""
    text: list[StrLevel] = []
    numbers: list[NumLevel] = []
    for r in rows:
        if len(r) < 2:
            raise ValueError(f"a level of {len(r)} fields: {r!r}")
        numbers.append((price(r[0], "price"), amount(r[1], "size") * per_contract))
        text.append((r[0], r[1]))
    return text, numbers


class OkxPerpDecoder:
    """Turns OKX public WebSocket pushes of swaps into records and control events, sizes in the
    base asset by the contract values it was given: ``contract_values`` maps our name of each
    swap (``BTCUSDT-PERP``) to the base asset one contract is (``ctVal`` × ``ctMult``, e.g.
    0.01 BTC). Bad frames raise :class:`FrameError`; nothing one bad frame does carries over."""

    def __init__(self, contract_values: Mapping[str, float]):
        values = {}
        for symbol, value in contract_values.items():
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"contract value of {symbol}: {value!r} is no positive number")
            values[perpetual_of(symbol)] = float(value)
        self.contract_values: dict[str, float] = values

    def _contract(self, inst: str, channel: str = "") -> tuple[str, float]:
        """Our name of ``inst`` (a swap, or on ``index-tickers`` a swap's index) and its contract
        value; ``ValueError`` for an instrument this decoder was not told of."""
        index = channel == INDEX_CHANNEL
        symbol = perp_symbol_of_index(inst) if index else perp_symbol_of(inst)
        value = self.contract_values.get(symbol)
        if value is None:
            raise ValueError(f"no contract value known for {inst}")
        return symbol, value

    def decode(self, frame: bytes | str) -> list[Any]:
        if frame in (b"pong", "pong"):
            return [Pong()]
        try:
            push = _PUSH.decode(frame)
        except msgspec.ValidationError as exc:
            raise FrameError(f"not an OKX message ({exc})", frame) from None
        except DECODE_ERRORS as exc:
            raise FrameError(f"malformed JSON ({exc})", frame) from None
        if push.event is not None:
            return [self._event(push)]
        if push.arg is None or not push.data:
            raise UnknownStreamError("unrecognised frame", frame)
        channel, inst = push.arg.channel, push.arg.instId
        try:
            if channel == LIQUIDATION_CHANNEL:
                return self._liquidations(_DATA[channel].decode(push.data))
            if channel.startswith("candle"):
                iv = interval_of_bar(channel[6:])
                symbol, per = self._contract(inst)
                return [
                    candle(symbol, iv, (*r[:5], r[5] * per, *r[6:]))
                    for r in _CANDLES.decode(push.data)
                ]
            decoder = _DATA.get(channel)
            if decoder is None:
                raise UnknownStreamError(f"unknown channel {channel!r}", frame, channel)
            rows = decoder.decode(push.data)
            symbol, per = self._contract(inst, channel)
            if channel == "books":
                return self._books(symbol, per, push.action, rows)
            for row in rows:  # a row of another instrument than its push's
                if row.instId != inst:
                    raise ValueError(f"a row of {row.instId} on the stream of {inst}")
            return [self._row(channel, symbol, per, row) for row in rows]
        except (*DECODE_ERRORS, ValueError, TypeError) as exc:
            if isinstance(exc, FrameError):
                raise
            raise FrameError(f"invalid {channel} payload ({exc})", frame, channel) from None

    @staticmethod
    def _row(channel: str, symbol: str, per: float, row: Any) -> Any:
        if channel == "trades-all":
            t = cast(_Trade, row)
            return Trade(symbol, t.tradeId, t.px, t.sz * per, t.side, t.ts, t.ts)
        if channel == "funding-rate":
            f = cast(_FundingRate, row)
            # the rate predicted for the next settlement, which is ``fundingTime``
            nan = math.nan
            return MarkPrice(symbol, f.ts, nan, nan, nan, f.fundingRate, f.fundingTime)
        if channel == "mark-price":
            m = cast(_MarkPrice, row)
            return MarkPrice(symbol, m.ts, m.markPx, math.nan, math.nan, math.nan, -1)
        if channel == INDEX_CHANNEL:
            i = cast(_IndexTicker, row)
            return MarkPrice(symbol, i.ts, math.nan, i.idxPx, math.nan, math.nan, -1)
        o = cast(_OpenInterest, row)  # open-interest
        return OpenInterest(symbol, o.ts, o.oi * per, optional_amount(o.oiUsd, "oiUsd"))

    @staticmethod
    def _books(symbol: str, per: float, action: str | None, rows: list[_Book]) -> list[Any]:
        if action not in ("snapshot", "update"):
            raise ValueError(f"books push with action {action!r}")
        kind = cast('Literal["snapshot", "update"]', action)  # checked just above
        out = []
        for b in rows:
            bids, bid_changes = _levels(b.bids, per)
            asks, ask_changes = _levels(b.asks, per)
            out.append(
                BookMessage(
                    symbol,
                    kind,
                    bids,
                    asks,
                    b.seqId,
                    b.prevSeqId,
                    b.checksum,
                    b.ts,
                    bid_changes,
                    ask_changes,
                )
            )
        return out

    def _liquidations(self, rows: list[_LiquidationRow]) -> list[Liquidation]:
        """Every liquidation of the swaps this decoder knows, in the order sent (OKX says they
        need not be in time order); the others the channel carries are left out."""
        out = []
        for row in rows:
            try:
                symbol, per = self._contract(row.instId)
            except ValueError:
                continue  # another instrument's: the channel is per instrument type
            for d in _DETAILS.decode(row.details):
                side = liquidated_side(d.side, d.posSide)
                out.append(
                    Liquidation(symbol, d.ts, side, d.bkPx, d.sz * per, math.nan, True, d.ts)
                )
        return out

    @staticmethod
    def _event(push: _Push) -> Any:
        if push.event in ("subscribe", "unsubscribe"):
            arg = push.arg
            topic = PerpTopic(arg.channel, arg.instId) if arg is not None else None
            return PerpSubscriptionResult(push.event, topic)
        if push.event == "error":
            return RequestError(push.code or "", push.msg)
        return Notice(push.code or "", push.msg or push.event or "")
