"""The simulated exchange's Binance Spot face: REST ``/api/v3/*`` and WebSocket streams.

Written from the exchange's documentation, independently of :mod:`marketlab.venues.binance`,
so the two check each other. Enforces what Binance enforces: request weight per minute
(429 with Retry-After, then a 418 ban), 5 incoming WebSocket messages per second, ping/pong
with a timeout, 1024 streams per connection, the connection age limit, error codes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from marketlab.sim.binance.rest import ApiError, BinanceRest, Formatter
from marketlab.sim.binance.ws import BinanceWs, Connection
from marketlab.sim.face import SocketFace
from marketlab.sim.host import BinanceHost

__all__ = ["ApiError", "BinanceFace"]


class BinanceFace(BinanceRest, BinanceWs, SocketFace):
    """REST routes, WebSocket handling and the step → stream fan-out for one exchange."""

    def __init__(self, sim: BinanceHost):
        self.sim = sim
        self.subs: dict[str, set[Connection]] = {}
        self.connections: set[Connection] = set()
        self.markets = sim.markets_of("binance")
        self.formatters = {s: Formatter(m) for s, m in self.markets.items()}
        self._weight_window = 0
        self._weight_used = 0
        self._violations = 0
        self._banned_until = 0.0
        self._retry_until = 0.0
        self._skip_depth: dict[str | None, int] = {}

    # --- routes ------------------------------------------------------------------------

    def add_routes(self, app: web.Application, streams: bool = True) -> None:
        """REST and (``streams``) the WebSocket paths and the depth snapshot they sync with."""
        rest: list[tuple[str, Callable[[web.Request], Awaitable[Any]]]] = [
            ("/api/v3/ping", self.ping),
            ("/api/v3/time", self.server_time),
            ("/api/v3/exchangeInfo", self.exchange_info),
            ("/api/v3/klines", self.klines),
            ("/api/v3/uiKlines", self.klines),
            ("/api/v3/depth", self.depth),
            ("/api/v3/trades", self.trades),
            ("/api/v3/historicalTrades", self.historical_trades),
            ("/api/v3/aggTrades", self.agg_trades),
            ("/api/v3/ticker/24hr", self.ticker_24hr),
            ("/api/v3/ticker/price", self.ticker_price),
            ("/api/v3/ticker/bookTicker", self.book_ticker),
        ]
        for path, handler in rest:
            if streams or path != "/api/v3/depth":
                app.router.add_get(path, self._rest(handler))
        if not streams:
            return
        app.router.add_get("/ws", self.websocket)
        app.router.add_get("/ws/{streams:.*}", self.websocket)
        app.router.add_get("/stream", self.websocket)
