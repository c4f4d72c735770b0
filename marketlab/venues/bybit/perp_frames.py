"""Bybit v5 linear WebSocket frames → records, sans-I/O: trades, the book's snapshots and
deltas, klines, mark price with funding and open interest (from ``tickers``), liquidations
(``allLiquidation``), and the control answers.

The book, kline and control frames have spot's shape and are read by spot's decoder
(:class:`marketlab.venues.bybit.frames.BybitDecoder`), their symbols then named as ours
(``BTCUSDT-PERP``). Three things differ on linear and are read here:

- **Trades** carry a UUID as id (``i``), which orders nothing. What orders them is ``seq``, the
  cross sequence shared by the fills of one match (a match of more than 1,024 fills comes in
  several messages with the same ``seq``). A trade's id here is ``seq`` × 2^20 + its place
  among the fills of its ``seq`` as this connection saw them, so ids rise with the venue's
  order and the same fill gets the same id on every connection that saw its whole match.
  Nothing makes the ids consecutive: a missed trade cannot be found by its id.
- **Tickers** come as a snapshot, then deltas in which "if a response param is not found in
  the message, then its value has not changed": any field but ``symbol`` may be missing. The
  decoder keeps the last full ticker of each symbol and merges each delta into it, so a record
  is never made from one message's fields alone. A push carrying any of mark, index, funding
  rate or next funding time gives a :class:`~marketlab.records.MarkPrice`; one carrying open
  interest (``openInterest``, base coin on linear — the docs' examples show it so, they name
  no unit; ``openInterestValue``, quote) an :class:`~marketlab.records.OpenInterest`. The
  ticker's ``fundingIntervalHour`` is not kept (a MarkPrice has no room for it; the
  instrument's ``fundingInterval`` is read from REST).
- **allLiquidation**: Bybit's docs say this topic "push[es] all liquidations that occur on
  Bybit", every 500 ms, several in one push; its changelog of 2025-02-20 introduces it as the
  way "to get full liquidation", where the deprecated ``liquidation`` topic pushed at most one
  a second. So these liquidations are complete by the venue's word (``sampled`` False).
  ``S`` is the side of the position: ``Buy`` means a long was liquidated. ``p`` is the
  bankruptcy price, at which the position was taken over: it is both ``price`` and
  ``order_price`` of the record. There is no liquidation id.

A decoder reads ONE connection's frames: the ticker it merges into and the place of a fill in
its match are that connection's.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import msgspec

from marketlab.numbers import (
    DECODE_ERRORS,
    INT64_MAX,
    TIME_MAX_MS,
    TIME_MIN_MS,
    Amount,
    Change,
    Price,
    TimeMs,
)
from marketlab.records import Liquidation, MarkPrice, OpenInterest, Trade, perpetual_of
from marketlab.venues.bybit.frames import BybitDecoder
from marketlab.venues.bybit.protocol import parse_topic
from marketlab.venues.errors import FrameError

SEQ_SHIFT = 20  # a trade id is seq << 20 | its place among its match's fills
MAX_SEQ = INT64_MAX >> SEQ_SHIFT
MAX_TICKERS = 4096  # symbols whose merged ticker a decoder keeps (a connection has far fewer)

Side = Literal["Buy", "Sell"]
# the next funding time: ms, a string on the wire (0 where there is none)
NextTime = Annotated[int, msgspec.Meta(ge=0, le=TIME_MAX_MS)]


class _Push(msgspec.Struct, gc=False):
    topic: str | None = None
    type: str | None = None
    ts: TimeMs | None = None
    data: msgspec.Raw = msgspec.Raw(b"")


class _TradeWire(msgspec.Struct, gc=False):
    T: TimeMs
    s: str
    S: Side
    v: Amount
    p: Price
    i: str
    seq: int


class _TickerWire(msgspec.Struct, gc=False):
    """The fields of a linear ticker read here; in a delta any may be missing (UNSET)."""

    symbol: str
    markPrice: Price | msgspec.UnsetType = msgspec.UNSET
    indexPrice: Price | msgspec.UnsetType = msgspec.UNSET
    fundingRate: Change | msgspec.UnsetType = msgspec.UNSET
    nextFundingTime: NextTime | msgspec.UnsetType = msgspec.UNSET  # a string of ms on the wire
    openInterest: Amount | msgspec.UnsetType = msgspec.UNSET
    openInterestValue: Amount | msgspec.UnsetType = msgspec.UNSET


class _LiquidationWire(msgspec.Struct, gc=False):
    T: TimeMs
    s: str
    S: Side
    v: Amount
    p: Price


_TRADES = msgspec.json.Decoder(list[_TradeWire], strict=False)
_TICKER = msgspec.json.Decoder(_TickerWire, strict=False)
_LIQUIDATIONS = msgspec.json.Decoder(list[_LiquidationWire], strict=False)
_PUSH = msgspec.json.Decoder(_Push)

# The merged ticker of a symbol: mark, index, funding rate, next funding time (-1 unknown),
# open interest, its value (NaN where not yet given)
_Merged = list[float]
_MARK, _INDEX, _RATE, _NEXT, _OI, _OI_VALUE = range(6)
_FIELDS = (
    "markPrice",
    "indexPrice",
    "fundingRate",
    "nextFundingTime",
    "openInterest",
    "openInterestValue",
)


def trade_id(seq: int, place: int) -> int:
    """The id of the fill at ``place`` (0 first) of the match numbered ``seq``."""
    if not 0 <= seq <= MAX_SEQ:
        raise ValueError(f"trade seq {seq} is outside 0..{MAX_SEQ}")
    if not 0 <= place < 1 << SEQ_SHIFT:
        raise ValueError(f"a match of more than {1 << SEQ_SHIFT} fills")
    return seq << SEQ_SHIFT | place


class PerpDecoder:
    """Turns one Bybit linear connection's frames into records and control events (spot's:
    :class:`~marketlab.venues.bybit.frames.BookMessage`, ``SubscriptionResult``, ``Pong``).

    Bad frames raise :class:`FrameError` (what is wrong, on which topic) and change nothing:
    a bad ticker delta is not merged, a bad trade push does not move the fills' places."""

    def __init__(self) -> None:
        self._spot = BybitDecoder()
        self._tickers: dict[str, _Merged] = {}
        # per trade topic: the seq of the last fill seen and how many fills of it came
        self._matches: dict[str, tuple[int, int]] = {}

    def decode(self, frame: bytes | str) -> list[Any]:
        try:
            push = _PUSH.decode(frame)
        except msgspec.ValidationError as exc:
            raise FrameError(f"not a Bybit message ({exc})", frame) from None
        except DECODE_ERRORS as exc:
            raise FrameError(f"malformed JSON ({exc})", frame) from None
        topic = push.topic
        prefix = topic.partition(".")[0] if topic is not None else ""
        if topic is None or prefix not in ("publicTrade", "tickers", "allLiquidation"):
            return [self._ours(r) for r in self._spot.decode(frame)]
        if not push.data or push.ts is None:
            raise FrameError("a push without data or ts", frame, topic)
        try:
            name = parse_topic(topic).symbol
            symbol = perpetual_of(name)
            if prefix == "publicTrade":
                return self._trades(topic, name, symbol, push.ts, push.data)
            if prefix == "tickers":
                return self._ticker(push.type, name, symbol, push.ts, push.data, frame, topic)
            return self._liquidations(name, symbol, push.ts, push.data)
        except (*DECODE_ERRORS, ValueError) as exc:
            if isinstance(exc, FrameError):
                raise
            raise FrameError(f"invalid {topic} payload ({exc})", frame, topic) from None

    @staticmethod
    def _ours(record: Any) -> Any:
        """A record of spot's decoder named as ours (control events have no symbol)."""
        symbol = getattr(record, "symbol", None)
        if symbol is None:
            return record
        return msgspec.structs.replace(record, symbol=perpetual_of(symbol))

    def _trades(
        self, topic: str, name: str, symbol: str, ts: int, data: msgspec.Raw
    ) -> list[Trade]:
        rows = _TRADES.decode(data)
        seq, count = self._matches.get(topic, (-1, 0))
        ids = []
        for r in rows:  # every row checked before the places move
            if r.s != name:
                raise ValueError(f"a row of {r.s} on the stream of {name}")
            if r.seq == seq:
                count += 1
            else:
                seq, count = r.seq, 1
            ids.append(trade_id(seq, count - 1))
        self._matches[topic] = (seq, count)
        return [
            Trade(symbol, tid, r.p, r.v, "buy" if r.S == "Buy" else "sell", r.T, ts)
            for tid, r in zip(ids, rows, strict=True)
        ]

    def _ticker(
        self,
        kind: str | None,
        name: str,
        symbol: str,
        ts: int,
        data: msgspec.Raw,
        frame: bytes | str,
        topic: str,
    ) -> list[Any]:
        t = _TICKER.decode(data)
        if t.symbol != name:
            raise ValueError(f"a ticker of {t.symbol} on the stream of {name}")
        if t.nextFundingTime is not msgspec.UNSET and 0 < t.nextFundingTime < TIME_MIN_MS:
            raise ValueError(f"nextFundingTime {t.nextFundingTime} is before the venues' years")
        if kind == "snapshot":
            merged = [math.nan, math.nan, math.nan, -1.0, math.nan, math.nan]
        elif kind == "delta":
            last = self._tickers.get(name)
            if last is None:
                raise FrameError("a ticker delta before its snapshot", frame, topic)
            merged = list(last)
        else:
            raise FrameError(f"a ticker of type {kind!r}", frame, topic)
        given = [getattr(t, f) for f in _FIELDS]
        for at, value in enumerate(given):
            if value is not msgspec.UNSET:
                merged[at] = float(value)
        if kind == "snapshot" and len(self._tickers) >= MAX_TICKERS:
            self._tickers.clear()
        self._tickers[name] = merged
        out: list[Any] = []
        if any(v is not msgspec.UNSET for v in given[_MARK : _NEXT + 1]) and not math.isnan(
            merged[_MARK]
        ):
            next_funding = int(merged[_NEXT])
            out.append(
                MarkPrice(
                    symbol,
                    ts,
                    merged[_MARK],
                    merged[_INDEX],
                    math.nan,  # Bybit estimates a settlement price for dated futures only
                    merged[_RATE],
                    next_funding if next_funding > 0 else -1,
                )
            )
        if any(v is not msgspec.UNSET for v in given[_OI:]) and not math.isnan(merged[_OI]):
            out.append(OpenInterest(symbol, ts, merged[_OI], merged[_OI_VALUE]))
        return out

    @staticmethod
    def _liquidations(name: str, symbol: str, ts: int, data: msgspec.Raw) -> list[Liquidation]:
        rows = _LIQUIDATIONS.decode(data)
        for r in rows:
            if r.s != name:
                raise ValueError(f"a liquidation of {r.s} on the stream of {name}")
        return [
            Liquidation(symbol, r.T, "long" if r.S == "Buy" else "short", r.p, r.v, r.p, False, ts)
            for r in rows
        ]
