"""Binance WebSocket frames → records, sans-I/O: typed msgspec decoding of every stream, raw
and combined, and the control answers (SUBSCRIBE results, errors, ``serverShutdown``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import msgspec

from marketlab.native import compiled, maker
from marketlab.numbers import DECODE_ERRORS, Amount, Change, Id, IdOrNone, Level, Price, TimeMs
from marketlab.records import (
    AggTrade,
    BookDelta,
    BookSnapshot,
    BookTicker,
    Kline,
    MiniTicker,
    Record,
    Ticker,
    Trade,
)
from marketlab.venues.binance.protocol import Stream, parse_stream
from marketlab.venues.errors import FrameError, UnknownStreamError

# --- wire schemas --------------------------------------------------------------------------
# Every number is typed by the rule it must keep (marketlab.numbers): a payload that
# breaks one fails to decode, and its frame is a bad frame. csrc/binance.c reads the same
# fields by the same rules.

_Levels = list[Level]


# gc=False: a decoded payload holds only numbers, strings and lists of them (never part of a
# cycle), so the garbage collector need not track one per message.
class _Trade(msgspec.Struct, gc=False):
    E: TimeMs
    s: str
    t: Id
    p: Price
    q: Amount
    T: TimeMs
    m: bool


class _AggTrade(msgspec.Struct, gc=False):
    E: TimeMs
    s: str
    a: Id
    p: Price
    q: Amount
    f: Id
    l: Id
    T: TimeMs
    m: bool


class _KlineBody(msgspec.Struct, gc=False):
    t: TimeMs
    T: TimeMs
    s: str
    i: str
    o: Amount
    c: Amount
    h: Amount
    l: Amount
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


class _Ticker(msgspec.Struct, gc=False):
    E: TimeMs
    s: str
    p: Change
    P: Change
    w: Amount
    x: Amount
    c: Amount
    Q: Amount
    b: Amount
    B: Amount
    a: Amount
    A: Amount
    o: Amount
    h: Amount
    l: Amount
    v: Amount
    q: Amount
    O: TimeMs
    C: TimeMs
    F: IdOrNone
    L: IdOrNone
    n: Id


class _MiniTicker(msgspec.Struct, gc=False):
    E: TimeMs
    s: str
    c: Amount
    o: Amount
    h: Amount
    l: Amount
    v: Amount
    q: Amount


class _BookTicker(msgspec.Struct, gc=False):
    u: Id
    s: str
    b: Amount
    B: Amount
    a: Amount
    A: Amount


class _PartialDepth(msgspec.Struct, gc=False):
    lastUpdateId: Id
    bids: _Levels
    asks: _Levels


class _DepthUpdate(msgspec.Struct, gc=False):
    E: TimeMs
    s: str
    U: Id
    u: Id
    b: _Levels
    a: _Levels


class _Envelope(msgspec.Struct, gc=False):
    """Just enough of any frame to route it; the payload stays undecoded."""

    stream: str | None = None
    data: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    e: str | None = None
    E: int | None = None
    id: int | str | None = None
    result: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    code: int | None = None
    msg: str | None = None
    lastUpdateId: int | None = None
    u: int | None = None


@dataclass(frozen=True, slots=True)
class SubscriptionResult:
    """The answer to SUBSCRIBE/UNSUBSCRIBE (``result`` None) or LIST_SUBSCRIPTIONS (a list)."""

    id: int | str | None
    result: Any


@dataclass(frozen=True, slots=True)
class RequestError:
    """An error answer to a control message: ``{"code": 2, "msg": "Invalid request", "id": 1}``."""

    id: int | str | None
    code: int
    msg: str


@dataclass(frozen=True, slots=True)
class ServerShutdown:
    """Binance will disconnect soon: open a new connection at once."""

    time: int | None


ControlEvent = SubscriptionResult | RequestError | ServerShutdown

_WIRE_BY_EVENT: dict[str, type] = {
    "trade": _Trade,
    "aggTrade": _AggTrade,
    "kline": _Kline,
    "24hrTicker": _Ticker,
    "24hrMiniTicker": _MiniTicker,
    "depthUpdate": _DepthUpdate,
}
_WIRE_BY_CHANNEL: dict[str, type] = {
    "trade": _Trade,
    "aggTrade": _AggTrade,
    "kline": _Kline,
    "ticker": _Ticker,
    "miniTicker": _MiniTicker,
    "bookTicker": _BookTicker,
    "depth": _DepthUpdate,
    "partialDepth": _PartialDepth,
}
_DECODERS: dict[type, msgspec.json.Decoder[Any]] = {
    t: msgspec.json.Decoder(t, strict=False)
    for t in {*_WIRE_BY_EVENT.values(), _BookTicker, _PartialDepth}
}
_ENVELOPE = msgspec.json.Decoder(_Envelope)
# A combined stream's frame is {"stream":"NAME","data":PAYLOAD}: NAME starts _NAME_AT bytes in,
# PAYLOAD _PAYLOAD_AFTER bytes past where _DATA is found (the envelope is cut, never parsed).
_COMBINED = b'{"stream":"'
_DATA = b'","data":'
_NAME_AT = len(_COMBINED)
_PAYLOAD_AFTER = len(_DATA)


def route_combined(frame: bytes, lanes: dict[bytes, Any]) -> tuple[Any, bytes] | None:
    """A frame ``{"stream":"NAME","data":PAYLOAD}`` of a stream in ``lanes`` (by NAME as
    bytes): its lane and PAYLOAD, cut out without parsing the envelope; else None."""
    if type(frame) is bytes and frame.startswith(_COMBINED) and frame.endswith(b"}"):
        end = frame.find(_DATA, _NAME_AT)
        lane = lanes.get(frame[_NAME_AT:end]) if end > 0 else None
        if lane is not None:
            return lane, frame[end + _PAYLOAD_AFTER : -1]
    return None


# What the compiled reader reads itself, by payload (a stream's channel): the names of the values
# it makes a record of, in the order it hands them to a lane's ``make`` (csrc/binance.c says).
PAYLOADS: dict[str, tuple[str, ...]] = compiled("PAYLOADS", {})


class Lane(NamedTuple):
    """What a payload of one stream goes through, to the record's taker ``take(stats, record,
    source)``: the parts of :meth:`LaneTable.add`. ``payload`` names what the compiled reader
    reads of it itself (a key of ``PAYLOADS``, made into a record by ``make``; "": it leaves the
    payload to ``decode`` and ``convert``, msgspec's, as the Python twin does every payload)."""

    payload: str
    make: Callable[..., Any] | None  # make(*values) -> the record, values as PAYLOADS names them
    take: Callable[[Any, Any, str], None]
    stats: Any
    symbol: str
    interval: str
    decode: Callable[[bytes], Any]
    convert: Callable[[Any], Record | None]


def lane_for(
    stream: Stream, take: Callable[[Any, Any, str], None], stats: Any, record: type | None
) -> Lane:
    """The lane of ``stream``, whose records go to ``take`` with ``stats``: built once per stream
    so a frame needs no dispatch. The compiled reader reads the payload itself where it knows
    the channel (``PAYLOADS``) and ``record`` is given, else msgspec's ``decode`` and ``convert``
    do; a payload of another symbol or interval is left to the careful path (:func:`_own`)."""
    decode, convert = payload_reader(stream)
    values = PAYLOADS.get(stream.channel) if record is not None else None
    interval = str(stream.interval or "")  # a plain str, as decoded
    return Lane(
        stream.channel if values is not None else "",
        maker(record, values) if record is not None and values is not None else record,
        take,
        stats,
        stream.symbol,
        interval,
        decode,
        _own(convert, stream),
    )


def _own(convert: Convert, stream: Stream) -> Callable[[Any], Record | None]:
    """``convert``, giving None for a payload that is not of ``stream``'s symbol (or interval):
    the frame then goes the careful way, which names it a bad frame. The compiled reader
    refuses such a payload too, so the two builds key records alike."""

    def owned(wire: Any) -> Record | None:
        record = convert(wire)
        return record if belongs(record, stream) else None

    return owned


def belongs(record: Any, stream: Stream) -> bool:
    """Whether a payload's record is of the stream it came on: its symbol, and a kline's
    interval (a payload names them itself, and may name others)."""
    if getattr(record, "symbol", stream.symbol) != stream.symbol:
        return False
    return (
        stream.interval is None or getattr(record, "interval", stream.interval) == stream.interval
    )


class LaneTablePython:
    """A feed's lanes by stream name: the twin of the compiled ``LaneTable``, same methods.
    ``refused``: what a lane's ``decode`` raises for a payload that is not of its kind (the
    frame then goes the careful way)."""

    def __init__(self, refused: type[BaseException] | tuple[type[BaseException], ...]):
        self.refused = refused
        self.lanes: dict[bytes, Lane] = {}

    def add(
        self,
        name: bytes,
        payload: str,
        make: Callable[..., Any] | None,
        take: Callable[[Any, Any, str], None],
        stats: Any,
        symbol: str,
        interval: str,
        decode: Callable[[bytes], Any],
        convert: Callable[[Any], Record | None],
    ) -> None:
        """The lane of stream ``name`` (bytes), as :class:`Lane` names its parts."""
        if not isinstance(name, bytes) or not isinstance(payload, str):
            raise TypeError("a lane's name is bytes and its payload a str")
        if not isinstance(symbol, str) or not isinstance(interval, str):
            raise TypeError("a lane's symbol and interval are str")
        self.lanes[name] = Lane(payload, make, take, stats, symbol, interval, decode, convert)

    def __len__(self) -> int:
        return len(self.lanes)


LaneTable: type[LaneTablePython] = compiled("LaneTable", LaneTablePython)


def lane_table() -> LaneTablePython:
    """An empty table of lanes, compiled when the compiled part is in use; msgspec's
    decoding errors (:data:`~marketlab.numbers.DECODE_ERRORS`: a ``DecodeError``, its
    ``ValidationError``, or nesting too deep) say a payload is not of its lane's kind."""
    return LaneTable(DECODE_ERRORS)


def take_combined_python(lanes: LaneTablePython, frame: bytes) -> bool:
    """A combined frame of a stream in ``lanes``, decoded and handed to its lane's taker:
    True; False for anything else (the caller's careful decoder then says what it is)."""
    routed = route_combined(frame, lanes.lanes)
    if routed is None:
        return False
    lane, payload = routed
    try:
        wire = lane.decode(payload)
    except lanes.refused:
        return False
    record = lane.convert(wire)
    if record is None:
        return False
    lane.take(lane.stats, record, "ws")
    return True


# the same compiled, when it is in use (csrc/binance.c)
take_combined = compiled("take_combined", take_combined_python)
_MISSING = object()


def _side(buyer_is_maker: bool) -> Literal["buy", "sell"]:
    return "sell" if buyer_is_maker else "buy"


def _to_record(wire: Any, stream: Stream | None) -> Record:
    convert = _CONVERTERS.get(type(wire))
    if convert is not None:
        return convert(wire)
    if isinstance(wire, _AggTrade):
        return AggTrade(
            wire.s, wire.a, wire.p, wire.q, _side(wire.m), wire.f, wire.l, wire.T, wire.E
        )
    if isinstance(wire, _MiniTicker):
        return MiniTicker(wire.s, wire.E, wire.c, wire.o, wire.h, wire.l, wire.v, wire.q)
    if isinstance(wire, _BookTicker):
        return BookTicker(wire.s, wire.u, wire.b, wire.B, wire.a, wire.A)
    if isinstance(wire, _PartialDepth):
        if stream is None:
            raise FrameError("partial depth payload carries no symbol and no stream name was given")
        return BookSnapshot(stream.symbol, wire.lastUpdateId, wire.bids, wire.asks)
    raise TypeError(f"no record for {type(wire).__name__}")  # pragma: no cover - exhaustive


# --- the hot path: one stream's payloads, typed, straight to records -------------------------

Convert = Callable[[Any], Record]


def _trade_of(w: _Trade) -> Trade:
    return Trade(w.s, w.t, w.p, w.q, "sell" if w.m else "buy", w.T, w.E)


def _delta_of(w: _DepthUpdate) -> BookDelta:
    return BookDelta(w.s, w.U, w.u, w.b, w.a, w.E)


def _kline_of(w: _Kline) -> Kline:
    k = w.k
    return Kline(k.s, k.i, k.t, k.o, k.h, k.l, k.c, k.v, k.T, k.q, k.n, k.V, k.Q, k.x, w.E)


def _ticker_of(w: _Ticker) -> Ticker:
    return Ticker(
        w.s,
        w.E,
        w.c,
        w.Q,
        w.b,
        w.B,
        w.a,
        w.A,
        w.o,
        w.h,
        w.l,
        w.v,
        w.q,
        w.p,
        w.P,
        w.w,
        w.x,
        w.O,
        w.C,
        w.F,
        w.L,
        w.n,
    )


_CONVERTERS: dict[type, Convert] = {
    _Trade: _trade_of,
    _DepthUpdate: _delta_of,
    _Kline: _kline_of,
    _Ticker: _ticker_of,
}


def payload_reader(stream: Stream) -> tuple[Callable[[bytes], Any], Convert]:
    """``(decode, convert)`` for the payloads of ``stream``: ``convert(decode(payload))`` is
    its record. ``decode`` raises msgspec's errors on anything unexpected (a control event on
    the stream, a malformed frame): :meth:`StreamDecoder.decode` then says what it was."""
    wire = _WIRE_BY_CHANNEL[stream.channel]
    convert = _CONVERTERS.get(wire) or (lambda w: _to_record(w, stream))
    return _DECODERS[wire].decode, convert


class StreamDecoder:
    """Turns Binance WebSocket frames into records and control events.

    ``decode(frame)`` handles combined (``{"stream","data"}``) and raw frames; a raw frame
    without a symbol (partial depth) needs the connection's stream name as ``stream``.
    Bad frames raise :class:`FrameError`; the decoder keeps no state that one bad frame
    can spoil.
    """

    def __init__(self) -> None:
        self._streams: dict[str, Stream | None] = {}
        self._by_bytes: dict[bytes, Any] = {}

    def _stream(self, name: str) -> Stream | None:
        try:
            return self._streams[name]
        except KeyError:
            pass
        try:
            parsed: Stream | None = parse_stream(name)
        except UnknownStreamError:
            parsed = None
        if len(self._streams) < 4096:
            self._streams[name] = parsed
        return parsed

    def decode(self, frame: bytes | str, stream: str | None = None) -> list[Record | ControlEvent]:
        """Records (or control events) in one frame; :class:`FrameError` if it has none."""
        if isinstance(frame, bytes) and frame.startswith(_COMBINED) and frame.endswith(b"}"):
            # The usual combined frame {"stream":"…","data":{…}}: cut the payload out and decode
            # it once, typed, rather than parsing the envelope and then the payload again.
            end = frame.find(_DATA, _NAME_AT)
            if end > 0:
                parsed = self._by_bytes.get(name := frame[_NAME_AT:end], _MISSING)
                if parsed is _MISSING:
                    parsed = self._stream(name.decode("utf-8", "replace"))
                    if len(self._by_bytes) < 4096:
                        self._by_bytes[name] = parsed
                if parsed is not None:
                    try:
                        wire = _DECODERS[_WIRE_BY_CHANNEL[parsed.channel]].decode(
                            frame[end + _PAYLOAD_AFTER : -1]
                        )
                    except DECODE_ERRORS:
                        pass  # the careful path below says what is wrong (or finds a shutdown)
                    else:
                        return [_owned(_to_record(wire, parsed), parsed, frame)]
        try:
            env = _ENVELOPE.decode(frame)
        except msgspec.ValidationError as exc:  # (a subclass of DecodeError)
            raise FrameError(f"not a Binance message ({exc})", frame, stream) from None
        except DECODE_ERRORS as exc:
            raise FrameError(f"malformed JSON ({exc})", frame, stream) from None
        if env.stream is not None:
            if env.data is msgspec.UNSET:
                raise FrameError("combined frame without 'data'", frame, env.stream)
            return [self._payload(env.data, env.stream, frame, None)]
        if env.e is not None or env.lastUpdateId is not None or env.u is not None:
            return [self._payload(frame, stream, frame, env)]
        if env.code is not None:
            return [RequestError(env.id, env.code, env.msg or "")]
        if env.result is not msgspec.UNSET:
            return [SubscriptionResult(env.id, msgspec.json.decode(env.result))]
        raise UnknownStreamError("unrecognised frame", frame, stream)

    def _payload(
        self, data: Any, name: str | None, frame: bytes | str, env: _Envelope | None
    ) -> Record | ControlEvent:
        parsed = self._stream(name) if name else None
        wire_type: type | None
        try:
            if parsed is not None:
                wire_type = _WIRE_BY_CHANNEL[parsed.channel]
            else:
                env = env or _ENVELOPE.decode(data)
                if env.e == "serverShutdown":
                    return ServerShutdown(env.E)
                wire_type = _sniff(env)
                if wire_type is None:
                    what = f"event type {env.e!r}" if env.e else "payload"
                    raise UnknownStreamError(f"unknown {what}", frame, name)
            record = _to_record(_DECODERS[wire_type].decode(data), parsed)
        except msgspec.ValidationError as exc:
            # A known stream can still carry a control event (serverShutdown).
            shutdown = _shutdown_of(data)
            if shutdown is not None:
                return shutdown
            raise FrameError(f"invalid payload ({exc})", frame, name) from None
        except DECODE_ERRORS as exc:
            raise FrameError(f"malformed payload ({exc})", frame, name) from None
        return record if parsed is None else _owned(record, parsed, frame)


def _owned(record: Record, stream: Stream, frame: bytes | str) -> Record:
    """``record``, when it is of ``stream``; else the frame is a bad one."""
    if belongs(record, stream):
        return record
    named = getattr(record, "symbol", "?")
    if isinstance(record, Kline):
        named = f"{named} {record.interval}"
    raise FrameError(f"a payload of {named} on another stream", frame, stream.name)


def _sniff(env: _Envelope) -> type | None:
    if env.e is not None:
        return _WIRE_BY_EVENT.get(env.e)
    if env.lastUpdateId is not None:
        return _PartialDepth
    if env.u is not None:
        return _BookTicker
    return None


def _shutdown_of(data: Any) -> ServerShutdown | None:
    try:
        env = _ENVELOPE.decode(data)
    except DECODE_ERRORS:
        return None
    return ServerShutdown(env.E) if env.e == "serverShutdown" else None
