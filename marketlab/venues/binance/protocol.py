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
from urllib.parse import quote

import msgspec

from marketlab.records import (
    Interval,
    normalize_symbol,
)
from marketlab.settings import base_url
from marketlab.venues.errors import UnknownStreamError, VenueAPIError

DEFAULT_WS_URL = "wss://stream.binance.com:9443"
DEFAULT_REST_URL = "https://api.binance.com"
MAX_STREAMS_PER_CONNECTION = 1024
DEPTH_LEVELS = (5, 10, 20)


def check_ws_url(value: Any, arg: str = "binance_ws_url") -> str:
    """A base such as ``wss://stream.binance.com:9443``: the client appends ``/stream?…``."""
    return base_url(arg, value, ("ws", "wss"), "wss://stream.binance.com:9443", "/stream and /ws")


class BinanceAPIError(VenueAPIError):
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
        f"unknown channel {channel!r}: expected kline, depth or one of "
        f"{', '.join(_SIMPLE_CHANNELS)}"
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
