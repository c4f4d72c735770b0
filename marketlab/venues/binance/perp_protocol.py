"""Binance USDⓈ-M perpetual futures, sans-I/O: stream names, the route each stream lives on,
URLs and subscription messages.

Since 2026-04-23 the futures WebSocket is split by the kind of data: high-frequency book data
(``@depth…``, ``@bookTicker``) on ``/public``, the regular market data (``@aggTrade``,
``@markPrice``, ``@kline_…``, ``@forceOrder``, the tickers) on ``/market``. A stream asked for
on the wrong route gets no frames at all (the legacy unrouted URLs were retired, and an unrouted
connection now carries only ``/public`` data), so every stream name here knows its route and a
connection is only ever opened for one route.

Our name for a perpetual is its pair with ``-PERP`` (``BTCUSDT-PERP``); Binance's futures API
calls it by the pair alone (``BTCUSDT``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from marketlab.records import Interval, is_perpetual, perpetual_of, underlying_of
from marketlab.settings import base_url
from marketlab.venues.errors import UnknownStreamError

DEFAULT_WS_URL = "wss://fstream.binance.com"
DEFAULT_REST_URL = "https://fapi.binance.com"
MAX_STREAMS_PER_CONNECTION = 200  # "A single connection can listen to a maximum of 200 streams"
MAX_INCOMING_PER_SECOND = 10  # control messages a connection may send a second
REST_WEIGHT_PER_MINUTE = 2400
FORCE_ORDER_SAMPLE_MS = 1000  # forceOrder: only the latest liquidation per symbol per second

Route = Literal["public", "market"]

# Which route carries which channel (the change notice's mapping for the channels read here)
ROUTES: dict[str, Route] = {
    "depth": "public",
    "bookTicker": "public",
    "aggTrade": "market",
    "markPrice": "market",
    "kline": "market",
    "forceOrder": "market",
    "ticker": "market",
    "miniTicker": "market",
}

# Depth diff speeds Binance offers on futures (ms; 250 is the unsuffixed stream's)
DEPTH_SPEEDS = (100, 250, 500)


def check_ws_url(value: Any, arg: str = "binance_perp_ws_url") -> str:
    """A base such as ``wss://fstream.binance.com``: the client appends ``/public/stream?…`` or
    ``/market/stream?…``."""
    return base_url(arg, value, ("ws", "wss"), DEFAULT_WS_URL, "/public and /market")


def venue_symbol(symbol: str) -> str:
    """Binance's futures name of our perpetual (``BTCUSDT-PERP`` → ``BTCUSDT``); ValueError for
    a name that is not a perpetual's, so a spot symbol never reaches the futures API by
    mistake."""
    if not isinstance(symbol, str) or not is_perpetual(symbol):
        raise ValueError(f"{symbol!r} is not a perpetual (expected a name such as BTCUSDT-PERP)")
    return underlying_of(perpetual_of(symbol))


@dataclass(frozen=True, slots=True)
class PerpStream:
    """A parsed futures stream name such as ``btcusdt@depth@100ms`` or ``btcusdt@markPrice@1s``;
    ``symbol`` is ours (``BTCUSDT-PERP``)."""

    symbol: str
    channel: str  # depth bookTicker aggTrade markPrice kline forceOrder ticker miniTicker
    interval: Interval | None = None
    speed_ms: int | None = None  # depth: 100/250/500; markPrice: 1000 or 3000

    @property
    def route(self) -> Route:
        return ROUTES[self.channel]

    @property
    def name(self) -> str:
        s = venue_symbol(self.symbol).lower()
        if self.channel == "kline":
            return f"{s}@kline_{self.interval}"
        if self.channel == "depth":
            return f"{s}@depth" if self.speed_ms in (None, 250) else f"{s}@depth@{self.speed_ms}ms"
        if self.channel == "markPrice":
            return f"{s}@markPrice@1s" if self.speed_ms == 1000 else f"{s}@markPrice"
        return f"{s}@{self.channel}"


_STREAM_RE = re.compile(
    r"^(?P<s>[a-z0-9]{2,20})@(?:"
    r"(?P<kline>kline)_(?P<iv>\w+)"
    r"|(?P<depth>depth)(?:@(?P<dspeed>100|250|500)ms)?"
    r"|(?P<mark>markPrice)(?:@(?P<mspeed>1s))?"
    r"|(?P<simple>aggTrade|bookTicker|forceOrder|ticker|miniTicker))$"
)


def parse_stream(name: str) -> PerpStream:
    """A futures stream name → :class:`PerpStream`; :class:`UnknownStreamError` for any other."""
    m = _STREAM_RE.match(name) if isinstance(name, str) else None
    if m is None:
        raise UnknownStreamError(f"not a futures stream name read here: {name!r}", None, name)
    symbol = perpetual_of(m["s"])
    if m["kline"]:
        try:
            interval = Interval(m["iv"])
        except ValueError as exc:
            raise UnknownStreamError(str(exc), None, name) from None
        return PerpStream(symbol, "kline", interval)
    if m["depth"]:
        return PerpStream(symbol, "depth", None, int(m["dspeed"]) if m["dspeed"] else 250)
    if m["mark"]:
        return PerpStream(symbol, "markPrice", None, 1000 if m["mspeed"] else 3000)
    return PerpStream(symbol, m["simple"])


def stream_url(base: str, route: Route, streams: Sequence[str]) -> str:
    """The combined-stream URL of ``streams`` on ``route`` (every one of them must be of it:
    a stream on the wrong route would silently get nothing)."""
    wrong = [s for s in streams if parse_stream(s).route != route]
    if wrong:
        raise ValueError(f"streams {wrong} are not on the /{route} route")
    return f"{base.rstrip('/')}/{route}/stream?streams={'/'.join(streams)}"


def split_by_route(streams: Sequence[str]) -> dict[Route, list[str]]:
    """``streams`` grouped by the route each lives on, in their order (a route with none is
    left out): one connection (or more, 200 streams each) per route."""
    routes: dict[Route, list[str]] = {}
    for name in streams:
        routes.setdefault(parse_stream(name).route, []).append(name)
    return routes


def subscribe_message(streams: Sequence[str], request_id: int) -> bytes:
    return msgspec.json.encode({"method": "SUBSCRIBE", "params": list(streams), "id": request_id})


def unsubscribe_message(streams: Sequence[str], request_id: int) -> bytes:
    return msgspec.json.encode({"method": "UNSUBSCRIBE", "params": list(streams), "id": request_id})


def depth_weight(limit: int) -> int:
    """The weight of ``/fapi/v1/depth`` at ``limit`` levels (5..1000)."""
    return 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20
