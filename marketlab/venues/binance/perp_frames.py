"""Binance USDⓈ-M futures WebSocket frames → records, sans-I/O: the book's diffs (with the
``pu`` that chains them), aggregated trades, mark price and funding, liquidations, klines,
and the answers to control messages.

Every frame is read from a combined stream (``{"stream": NAME, "data": PAYLOAD}``), whose name
says what the payload is; a payload naming another symbol than its stream is a bad frame. Prices
and quantities are strings on the wire, read by the rules of :mod:`marketlab.numbers`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from marketlab.numbers import DECODE_ERRORS, Amount, Change, Id, Level, Price, TimeMs
from marketlab.records import AggTrade, BookDelta, Interval, Kline, Liquidation, MarkPrice
from marketlab.venues.binance.frames import RequestError, SubscriptionResult
from marketlab.venues.binance.perp_protocol import PerpStream, parse_stream, venue_symbol
from marketlab.venues.errors import FrameError, UnknownStreamError

# --- what a frame gives besides records -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PerpDepth:
    """A diff of the futures book: ``delta`` holds update ids ``U..u``; ``prev_update_id`` is
    the ``u`` of the event before it on the stream (``pu``), which is how a gap shows on
    futures (ids are not consecutive between events); ``transaction_time`` is the matching
    engine's (``T``)."""

    delta: BookDelta
    prev_update_id: int
    transaction_time: int


# --- wire schemas (gc=False: numbers, strings and lists of them only) ------------------------


class _Depth(msgspec.Struct, gc=False):
    E: TimeMs
    T: TimeMs
    s: str
    U: Id
    u: Id
    pu: int  # -1 is possible for a stream's very first event
    b: list[Level]
    a: list[Level]


class _AggTrade(msgspec.Struct, gc=False):
    E: TimeMs
    s: str
    a: Id
    p: Price
    q: Amount
    f: Id
    l: Id  # the last trade id
    T: TimeMs
    m: bool


class _MarkPrice(msgspec.Struct, gc=False):
    E: TimeMs
    s: str
    p: Price
    i: Amount  # 0 while an index is not yet published
    P: Amount
    r: Change
    T: int  # the next funding time (0 where there is none)


class _Order(msgspec.Struct, gc=False):
    s: str
    S: Literal["BUY", "SELL"]
    q: Amount
    p: Amount  # a liquidation order's limit price may be 0 for a market order
    ap: Price
    z: Amount
    T: TimeMs
    X: str = ""


class _ForceOrder(msgspec.Struct, gc=False):
    E: TimeMs
    o: _Order


class _KlineBody(msgspec.Struct, gc=False):
    t: TimeMs
    T: TimeMs
    s: str
    i: str
    o: Price
    c: Price
    h: Price
    l: Price
    v: Amount
    n: Id
    x: bool
    q: Amount
    V: Amount
    Q: Amount


class _Kline(msgspec.Struct, gc=False):
    E: TimeMs
    s: str
    k: _KlineBody


class _Envelope(msgspec.Struct, gc=False):
    stream: str | None = None
    data: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    id: int | str | None = None
    result: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    code: int | None = None
    msg: str | None = None


_WIRE: dict[str, type] = {
    "depth": _Depth,
    "aggTrade": _AggTrade,
    "markPrice": _MarkPrice,
    "forceOrder": _ForceOrder,
    "kline": _Kline,
}
_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    channel: msgspec.json.Decoder(wire, strict=False) for channel, wire in _WIRE.items()
}
_ENVELOPE = msgspec.json.Decoder(_Envelope)


def _depth(w: _Depth, symbol: str) -> PerpDepth:
    delta = BookDelta(symbol, w.U, w.u, w.b, w.a, w.E)
    return PerpDepth(delta, w.pu, w.T)


def _agg_trade(w: _AggTrade, symbol: str) -> AggTrade:
    if w.l < w.f:
        raise ValueError(f"agg trade {w.a}: last trade id {w.l} before its first {w.f}")
    return AggTrade(symbol, w.a, w.p, w.q, "sell" if w.m else "buy", w.f, w.l, w.T, w.E)


def _mark_price(w: _MarkPrice, symbol: str) -> MarkPrice:
    return MarkPrice(symbol, w.E, w.p, w.i, w.P, w.r, w.T if w.T > 0 else -1)


def _liquidation(w: _ForceOrder, symbol: str) -> Liquidation:
    o = w.o
    # a SELL liquidation order closes a long position, a BUY one a short
    side: Literal["long", "short"] = "long" if o.S == "SELL" else "short"
    return Liquidation(symbol, o.T, side, o.ap, o.z, o.p, True, w.E)


def _kline(w: _Kline, symbol: str) -> Kline:
    k = w.k
    iv = Interval(k.i)
    return Kline(symbol, str(iv), k.t, k.o, k.h, k.l, k.c, k.v, k.T, k.q, k.n, k.V, k.Q, k.x, w.E)


_CONVERT: dict[str, Callable[[Any, str], Any]] = {
    "depth": _depth,
    "aggTrade": _agg_trade,
    "markPrice": _mark_price,
    "forceOrder": _liquidation,
    "kline": _kline,
}


def _named(wire: Any) -> str:
    """The symbol a payload names itself (a liquidation's and a kline's in their body)."""
    if isinstance(wire, _ForceOrder):
        return wire.o.s
    if isinstance(wire, _Kline):
        if wire.k.s != wire.s:
            return f"{wire.s} / {wire.k.s}"
        return wire.s
    return str(wire.s)


class PerpDecoder:
    """Turns Binance USDⓈ-M futures frames (combined streams) into records, :class:`PerpDepth`
    and control answers. Bad frames raise :class:`FrameError` saying what and on which stream;
    nothing one bad frame does carries over."""

    def __init__(self) -> None:
        self._streams: dict[str, PerpStream | None] = {}

    def _stream(self, name: str) -> PerpStream | None:
        if name in self._streams:
            return self._streams[name]
        try:
            parsed: PerpStream | None = parse_stream(name)
        except UnknownStreamError:
            parsed = None
        if len(self._streams) < 4096:
            self._streams[name] = parsed
        return parsed

    def decode(self, frame: bytes | str) -> list[Any]:
        try:
            env = _ENVELOPE.decode(frame)
        except msgspec.ValidationError as exc:
            raise FrameError(f"not a Binance futures message ({exc})", frame) from None
        except DECODE_ERRORS as exc:
            raise FrameError(f"malformed JSON ({exc})", frame) from None
        if env.stream is not None:
            if env.data is msgspec.UNSET:
                raise FrameError("combined frame without 'data'", frame, env.stream)
            return [self._payload(env.stream, env.data, frame)]
        if env.code is not None:
            return [RequestError(env.id, env.code, env.msg or "")]
        if env.result is not msgspec.UNSET:
            return [SubscriptionResult(env.id, msgspec.json.decode(env.result))]
        raise UnknownStreamError("unrecognised frame", frame)

    def _payload(self, name: str, data: msgspec.Raw, frame: bytes | str) -> Any:
        stream = self._stream(name)
        if stream is None or stream.channel not in _DECODERS:
            raise UnknownStreamError(f"unknown stream {name!r}", frame, name)
        try:
            wire = _DECODERS[stream.channel].decode(data)
            named = _named(wire)
            if named != venue_symbol(stream.symbol):
                raise FrameError(f"a payload of {named} on another stream", frame, name)
            if isinstance(wire, _Kline) and wire.k.i != str(stream.interval):
                raise FrameError(f"a {wire.k.i} kline on another stream", frame, name)
            return _CONVERT[stream.channel](wire, stream.symbol)
        except msgspec.ValidationError as exc:
            raise FrameError(f"invalid {stream.channel} payload ({exc})", frame, name) from None
        except DECODE_ERRORS as exc:
            raise FrameError(f"malformed payload ({exc})", frame, name) from None
        except ValueError as exc:
            if isinstance(exc, FrameError):
                raise
            raise FrameError(f"invalid {stream.channel} payload ({exc})", frame, name) from None
