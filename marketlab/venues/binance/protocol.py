"""Binance Spot public market data, sans-I/O.

Stream names, URLs and subscription messages going out; WebSocket frames and REST payloads
coming in, turned into :mod:`marketlab.records`. No sockets, no asyncio, no clock reads:
callers pass bytes and times in and get records and messages out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import msgspec

from marketlab.records import (
    AggTrade,
    BookDelta,
    BookSnapshot,
    BookTicker,
    Interval,
    Kline,
    MiniTicker,
    Record,
    SymbolInfo,
    Ticker,
    Trade,
    normalize_symbol,
)
from marketlab.settings import url
from marketlab.venues.errors import FrameError, PayloadError, UnknownStreamError
from marketlab.venues.pacing import MAX_INCOMING_MESSAGES_PER_SECOND, MessagePacer

__all__ = [
    "DEFAULT_REST_URL",
    "DEFAULT_WS_URL",
    "DEPTH_LEVELS",
    "MAX_INCOMING_MESSAGES_PER_SECOND",
    "MAX_STREAMS_PER_CONNECTION",
    "BinanceAPIError",
    "ControlEvent",
    "FrameError",
    "MessagePacer",
    "PayloadError",
    "RequestError",
    "ServerShutdown",
    "Stream",
    "StreamDecoder",
    "SubscriptionResult",
    "UnknownStreamError",
    "check_ws_url",
    "combined_stream_url",
    "list_subscriptions_message",
    "parse_depth",
    "parse_exchange_info",
    "parse_klines",
    "parse_stream",
    "parse_ticker_24hr",
    "raise_for_error",
    "raw_stream_url",
    "split_streams",
    "stream_name",
    "subscribe_message",
    "unsubscribe_message",
]

DEFAULT_WS_URL = "wss://stream.binance.com:9443"
DEFAULT_REST_URL = "https://api.binance.com"
MAX_STREAMS_PER_CONNECTION = 1024
DEPTH_LEVELS = (5, 10, 20)


def check_ws_url(value: Any, arg: str = "binance_ws_url") -> str:
    """A base such as ``wss://stream.binance.com:9443``: the client appends ``/stream?…``."""
    base = url(arg, value, ("ws", "wss")).rstrip("/")
    if urlsplit(base).path:
        raise ValueError(
            f"{arg} {value!r} should be a base without a path (e.g. wss://stream.binance.com:9443): "
            "the client appends /stream and /ws itself"
        )
    return base


class BinanceAPIError(Exception):
    """An error body from the REST API: ``{"code": -1121, "msg": "Invalid symbol."}``."""

    def __init__(self, code: int, msg: str, status: int | None = None):
        self.code = code
        self.msg = msg
        self.status = status
        prefix = f"HTTP {status}: " if status else ""
        super().__init__(f"{prefix}Binance error {code}: {msg}")


# --- stream names --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stream:
    """A parsed stream name such as ``btcusdt@kline_1m`` or ``ethusdt@depth10@100ms``."""

    symbol: str
    channel: str  # trade aggTrade kline ticker miniTicker bookTicker depth partialDepth
    interval: Interval | None = None
    levels: int | None = None
    speed_ms: int | None = None

    @property
    def name(self) -> str:
        s = self.symbol.lower()
        if self.channel == "kline":
            return f"{s}@kline_{self.interval}"
        if self.channel in ("depth", "partialDepth"):
            base = f"{s}@depth{self.levels or ''}"
            return f"{base}@100ms" if self.speed_ms == 100 else base
        return f"{s}@{self.channel}"


_SIMPLE_CHANNELS = ("trade", "aggTrade", "ticker", "miniTicker", "bookTicker")
_STREAM_RE = re.compile(
    r"^([a-z0-9]{2,20})@([A-Za-z]+)(?:_([0-9]+[smhdwM]))?([0-9]+)?(?:@(100|1000)ms)?$"
)


def parse_stream(name: str) -> Stream:
    """Parse a stream name; raise :class:`UnknownStreamError` for anything else."""
    m = _STREAM_RE.match(name)
    if not m:
        raise UnknownStreamError(f"not a Binance stream name: {name!r}")
    sym, channel, interval, levels, speed = m.groups()
    symbol = sym.upper()
    if channel == "kline" and interval and not levels and not speed:
        try:
            return Stream(symbol, "kline", interval=Interval(interval))
        except ValueError as exc:
            raise UnknownStreamError(f"{name!r}: {exc}") from None
    if channel == "depth" and not interval:
        speed_ms = int(speed) if speed else 1000
        if levels is None:
            return Stream(symbol, "depth", speed_ms=speed_ms)
        if int(levels) in DEPTH_LEVELS:
            return Stream(symbol, "partialDepth", levels=int(levels), speed_ms=speed_ms)
    if channel in _SIMPLE_CHANNELS and not (interval or levels or speed):
        return Stream(symbol, channel)
    raise UnknownStreamError(f"not a Binance stream name: {name!r}")


def stream_name(
    symbol: str,
    channel: str,
    *,
    interval: str | None = None,
    levels: int | None = None,
    fast: bool = False,
) -> str:
    """Build a stream name: ``stream_name("BTCUSDT", "kline", interval="1m")``.

    ``channel`` is one of trade, aggTrade, kline, ticker, miniTicker, bookTicker, depth;
    ``levels`` (5, 10, 20) makes ``depth`` the partial-book stream, ``fast`` adds ``@100ms``.
    """
    sym = normalize_symbol(symbol).lower()
    if channel == "kline":
        if interval is None:
            raise ValueError("a kline stream needs an interval")
        return f"{sym}@kline_{Interval(interval)}"
    if channel == "depth":
        if levels is not None and levels not in DEPTH_LEVELS:
            raise ValueError(f"partial depth levels must be one of {DEPTH_LEVELS}, got {levels}")
        return f"{sym}@depth{levels or ''}" + ("@100ms" if fast else "")
    if channel in _SIMPLE_CHANNELS:
        return f"{sym}@{channel}"
    raise ValueError(
        f"unknown channel {channel!r}: expected kline, depth or one of {', '.join(_SIMPLE_CHANNELS)}"
    )


# --- URLs and subscription messages --------------------------------------------------------


def combined_stream_url(base: str, streams: Sequence[str]) -> str:
    """``<base>/stream?streams=a/b``: every message arrives wrapped as ``{"stream","data"}``."""
    if len(streams) > MAX_STREAMS_PER_CONNECTION:
        raise ValueError(
            f"{len(streams)} streams exceed Binance's {MAX_STREAMS_PER_CONNECTION} per connection"
        )
    return f"{base.rstrip('/')}/stream?streams=" + quote("/".join(streams), safe="/@_")


def raw_stream_url(base: str, stream: str | None = None) -> str:
    """``<base>/ws/<stream>`` for one bare stream, or ``<base>/ws`` to SUBSCRIBE later."""
    return f"{base.rstrip('/')}/ws" + (f"/{stream}" if stream else "")


def split_streams(
    streams: Iterable[str], per_connection: int = MAX_STREAMS_PER_CONNECTION
) -> list[list[str]]:
    """Group streams into connections of at most ``per_connection`` streams, keeping order."""
    if not 1 <= per_connection <= MAX_STREAMS_PER_CONNECTION:
        raise ValueError(f"per_connection must be 1..{MAX_STREAMS_PER_CONNECTION}")
    unique = list(dict.fromkeys(streams))
    return [unique[i : i + per_connection] for i in range(0, len(unique), per_connection)]


def subscribe_message(streams: Sequence[str], request_id: int) -> bytes:
    return msgspec.json.encode({"method": "SUBSCRIBE", "params": list(streams), "id": request_id})


def unsubscribe_message(streams: Sequence[str], request_id: int) -> bytes:
    return msgspec.json.encode({"method": "UNSUBSCRIBE", "params": list(streams), "id": request_id})


def list_subscriptions_message(request_id: int) -> bytes:
    return msgspec.json.encode({"method": "LIST_SUBSCRIPTIONS", "id": request_id})


# --- wire schemas --------------------------------------------------------------------------

_Levels = list[tuple[float, float]]


class _Trade(msgspec.Struct):
    E: int
    s: str
    t: int
    p: float
    q: float
    T: int
    m: bool


class _AggTrade(msgspec.Struct):
    E: int
    s: str
    a: int
    p: float
    q: float
    f: int
    l: int
    T: int
    m: bool


class _KlineBody(msgspec.Struct):
    t: int
    T: int
    s: str
    i: str
    o: float
    c: float
    h: float
    l: float
    v: float
    n: int
    x: bool
    q: float
    V: float
    Q: float


class _Kline(msgspec.Struct):
    E: int
    s: str
    k: _KlineBody


class _Ticker(msgspec.Struct):
    E: int
    s: str
    p: float
    P: float
    w: float
    x: float
    c: float
    Q: float
    b: float
    B: float
    a: float
    A: float
    o: float
    h: float
    l: float
    v: float
    q: float
    O: int
    C: int
    F: int
    L: int
    n: int


class _MiniTicker(msgspec.Struct):
    E: int
    s: str
    c: float
    o: float
    h: float
    l: float
    v: float
    q: float


class _BookTicker(msgspec.Struct):
    u: int
    s: str
    b: float
    B: float
    a: float
    A: float


class _PartialDepth(msgspec.Struct):
    lastUpdateId: int
    bids: _Levels
    asks: _Levels


class _DepthUpdate(msgspec.Struct):
    E: int
    s: str
    U: int
    u: int
    b: _Levels
    a: _Levels


class _Envelope(msgspec.Struct):
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
_DECODERS = {
    t: msgspec.json.Decoder(t, strict=False)
    for t in {*_WIRE_BY_EVENT.values(), _BookTicker, _PartialDepth}
}
_ENVELOPE = msgspec.json.Decoder(_Envelope)
_COMBINED = b'{"stream":"'
_MISSING = object()


def _side(buyer_is_maker: bool) -> str:
    return "sell" if buyer_is_maker else "buy"


def _to_record(wire: Any, stream: Stream | None) -> Record:
    if isinstance(wire, _Trade):
        return Trade(wire.s, wire.t, wire.p, wire.q, _side(wire.m), wire.T, wire.E)
    if isinstance(wire, _DepthUpdate):
        return BookDelta(wire.s, wire.U, wire.u, wire.b, wire.a, wire.E)
    if isinstance(wire, _Kline):
        k = wire.k
        return Kline(k.s, k.i, k.t, k.o, k.h, k.l, k.c, k.v, k.T, k.q, k.n, k.V, k.Q, k.x, wire.E)
    if isinstance(wire, _Ticker):
        return Ticker(
            wire.s, wire.E, wire.c, wire.Q, wire.b, wire.B, wire.a, wire.A, wire.o, wire.h,
            wire.l, wire.v, wire.q, wire.p, wire.P, wire.w, wire.x, wire.O, wire.C, wire.F,
            wire.L, wire.n,
        )  # fmt: skip
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
            end = frame.find(b'","data":', 11)
            if end > 0:
                parsed = self._by_bytes.get(name := frame[11:end], _MISSING)
                if parsed is _MISSING:
                    parsed = self._stream(name.decode("utf-8", "replace"))
                    if len(self._by_bytes) < 4096:
                        self._by_bytes[name] = parsed
                if parsed is not None:
                    try:
                        wire = _DECODERS[_WIRE_BY_CHANNEL[parsed.channel]].decode(
                            frame[end + 9 : -1]
                        )
                    except (msgspec.ValidationError, msgspec.DecodeError):
                        pass  # the careful path below says what is wrong (or finds a shutdown)
                    else:
                        return [_to_record(wire, parsed)]
        try:
            env = _ENVELOPE.decode(frame)
        except msgspec.ValidationError as exc:  # (a subclass of DecodeError)
            raise FrameError(f"not a Binance message ({exc})", frame, stream) from None
        except msgspec.DecodeError as exc:
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
            return _to_record(_DECODERS[wire_type].decode(data), parsed)
        except msgspec.ValidationError as exc:
            # A known stream can still carry a control event (serverShutdown).
            shutdown = _shutdown_of(data)
            if shutdown is not None:
                return shutdown
            raise FrameError(f"invalid payload ({exc})", frame, name) from None
        except msgspec.DecodeError as exc:
            raise FrameError(f"malformed payload ({exc})", frame, name) from None


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
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    return ServerShutdown(env.E) if env.e == "serverShutdown" else None


# --- REST payloads -------------------------------------------------------------------------

_KLINE_ROWS = msgspec.json.Decoder(
    list[tuple[int, float, float, float, float, float, int, float, int, float, float, Any]],
    strict=False,
)


class _RestDepth(msgspec.Struct):
    lastUpdateId: int
    bids: _Levels
    asks: _Levels


class _RestTicker(msgspec.Struct):
    symbol: str
    priceChange: float
    priceChangePercent: float
    weightedAvgPrice: float
    prevClosePrice: float
    lastPrice: float
    lastQty: float
    bidPrice: float
    bidQty: float
    askPrice: float
    askQty: float
    openPrice: float
    highPrice: float
    lowPrice: float
    volume: float
    quoteVolume: float
    openTime: int
    closeTime: int
    firstId: int
    lastId: int
    count: int


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


class _ApiError(msgspec.Struct):
    code: int
    msg: str


def _rest_decode(payload: bytes | str | Any, typ: type, what: str) -> Any:
    try:
        if isinstance(payload, bytes | str):
            return msgspec.json.decode(payload, type=typ, strict=False)
        return msgspec.convert(payload, typ, strict=False)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise PayloadError(f"{what}: {exc}") from None


def raise_for_error(payload: bytes | str | Any, status: int | None = None) -> None:
    """Raise :class:`BinanceAPIError` if ``payload`` is an error body."""
    try:
        if isinstance(payload, bytes | str):
            err = msgspec.json.decode(payload, type=_ApiError)
        else:
            err = msgspec.convert(payload, _ApiError)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return
    raise BinanceAPIError(err.code, err.msg, status)


def parse_klines(
    payload: bytes | str | list, symbol: str, interval: str, server_time: int
) -> list[Kline]:
    """``/api/v3/klines`` rows → klines; a row whose close time is not before ``server_time``
    is the open candle (``closed=False``)."""
    symbol = normalize_symbol(symbol)
    iv = Interval(interval)
    try:
        rows = (
            _KLINE_ROWS.decode(payload)
            if isinstance(payload, bytes | str)
            else _KLINE_ROWS.decode(msgspec.json.encode(payload))
        )
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise PayloadError(f"/api/v3/klines for {symbol} {iv}: {exc}") from None
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
