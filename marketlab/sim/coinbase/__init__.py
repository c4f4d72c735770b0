"""The simulated exchange's Coinbase Advanced Trade face: public REST under
``/api/v3/brokerage`` and the market-data WebSocket at the root path (Coinbase's own URL,
``wss://advanced-trade-ws.coinbase.com``, has none).

Written from Coinbase's documentation (and recorded frames where the docs are silent),
independently of :mod:`marketlab.venues.coinbase`, and fed by the same deterministic market as
the other faces; the market's ``BTCUSDT`` is the product ``BTC-USDT`` (USD and USDT books are
different products on Coinbase, so the quote is kept). Enforces what Coinbase documents: one
channel per (un)subscribe message, known channels and products, a subscribe within 5 s of
opening (``coinbase_subscribe_timeout``), channels closed after 60 s without a message unless
``heartbeats`` is subscribed (``coinbase_idle_timeout``; the docs say 60-90 s), 8 inbound
messages and 8 new connections per second per IP (``coinbase_ws_message_limit``,
``coinbase_ws_connect_limit``), 10 public REST requests per second per IP with HTTP 429 beyond
(``coinbase_rest_limit``), and candle windows under 350 buckets (``coinbase_max_candles``).

Its faults are methods of the face (:meth:`CoinbaseFace.drop`, :meth:`~CoinbaseFace.outage`,
:meth:`~CoinbaseFace.skip_messages`, :meth:`~CoinbaseFace.send_malformed`,
:meth:`~CoinbaseFace.rate_limit`), callable from any thread, which the simulator's named faults
reach (``inject(name, venue="coinbase")``, the control endpoint, ``marketlab fault --venue
coinbase``); a stall, a refusal and queued REST errors come from the simulator's fault state,
as for the other venues.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from marketlab.sim.coinbase.rest import CoinbaseRest, product_id
from marketlab.sim.coinbase.ws import CoinbaseConnection, CoinbaseWs
from marketlab.sim.face import on_loop
from marketlab.sim.host import CoinbaseHost

__all__ = ["REST_PREFIX", "WS_PATH", "CoinbaseFace", "product_id"]

WS_PATH = "/"  # the market-data WebSocket, at the root as on Coinbase
REST_PREFIX = "/api/v3/brokerage"


class CoinbaseFace(CoinbaseRest, CoinbaseWs):
    """REST routes, WebSocket handling and the step → channel fan-out for one exchange."""

    def __init__(self, sim: CoinbaseHost):
        self.sim = sim
        self.products = {product_id(s): m for s, m in sim.markets_of("coinbase").items()}
        self.subs: dict[tuple[str, str], set[CoinbaseConnection]] = {}
        self.connections: set[CoinbaseConnection] = set()
        self._inbound: dict[str, deque[float]] = {}  # WebSocket messages per IP, last second
        self._connects: dict[str, deque[float]] = {}  # new connections per IP, last second
        self._calls: dict[str, deque[float]] = {}  # REST requests per IP, last second
        self._batch_last: dict[str, int] = {}  # the last price ticker_batch sent per product
        self._rest_faults = 0
        self._born = time.monotonic()
        self.loop: asyncio.AbstractEventLoop | None = None  # the simulator's, once serving

    def add_routes(self, app: web.Application) -> None:
        """Coinbase's paths; called on the simulator's loop, which the faults then run on."""
        self.loop = asyncio.get_running_loop()
        rest: list[tuple[str, Callable[[web.Request], Awaitable[Any]]]] = [
            ("/time", self.server_time),
            ("/market/products", self.list_products),
            ("/market/products/{product_id}", self.get_product),
            ("/market/product_book", self.product_book),
            ("/market/products/{product_id}/ticker", self.market_trades),
            ("/market/products/{product_id}/candles", self.candles),
        ]
        for path, handler in rest:
            app.router.add_get(REST_PREFIX + path, self._rest(handler))
        app.router.add_get(WS_PATH, self.websocket)

    @on_loop
    def rate_limit(self, count: int = 1) -> None:
        """Answer the next ``count`` REST requests with HTTP 429, as past the public limit."""
        self._rest_faults += count
