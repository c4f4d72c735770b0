"""The simulated exchange's Bybit v5 spot face: REST ``/v5/market/*`` and the WebSocket
``/v5/public/spot``.

Written from Bybit's documentation (and live captures where the docs are silent),
independently of :mod:`marketlab.venues.bybit`, and fed by the same deterministic market as
the other faces. Enforces what Bybit enforces: at most 10 args per spot (un)subscribe request,
case-sensitive topics and Bybit's refusals, the ``u`` chain of the book (``u`` = previous + 1
after the snapshot; a new snapshot, ``u`` = 1 after a restart, replaces the book; level 1 is
snapshot-only), the JSON ping and the cut of a connection that stops pinging
(``bybit_idle_timeout``, 600 s as documented), and 600 REST requests per 5 s per IP
(``bybit_rest_limit``) beyond which the IP gets HTTP 403 and a ban (``bybit_ban_seconds``,
10 minutes).

Its faults are methods of the face (:meth:`BybitFace.outage`, :meth:`~BybitFace.skip_books`,
:meth:`~BybitFace.reset_books`, :meth:`~BybitFace.send_malformed`, :meth:`~BybitFace.ban` and
:meth:`~BybitFace.drop`), callable from any thread, which the simulator's named faults reach
(``inject(name, venue="bybit")``, the control endpoint, ``marketlab fault --venue bybit``); a
stall, a refusal and queued REST errors come from the simulator's fault state, as for the
other venues.
"""

from __future__ import annotations

import asyncio
import zlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from marketlab.sim.bybit.rest import FULL_DEPTH, BybitRest
from marketlab.sim.bybit.ws import BybitConnection, BybitWs
from marketlab.sim.host import BybitHost

__all__ = ["BybitFace"]


class BybitFace(BybitRest, BybitWs):
    """REST routes, WebSocket handling and the step → topic fan-out for one exchange."""

    def __init__(self, sim: BybitHost):
        self.sim = sim
        # Bybit spot names symbols as the market does (BTCUSDT), case-sensitively.
        self.markets = sim.markets_of("bybit")
        self.subs: dict[str, set[BybitConnection]] = {}
        self.connections: set[BybitConnection] = set()
        # ``u`` per (symbol, depth) stream; the 1000-level one is kept for the REST book
        self._u: dict[tuple[str, int], int] = {
            (s, FULL_DEPTH): 1_000_000
            + zlib.crc32(f"orderbook.{FULL_DEPTH}.{s}".encode()) % 9_000_000
            for s in self.markets
        }
        # each watched depth's view of the book: deltas are the changes to it
        self._views: dict[tuple[str, int], tuple[dict[int, int], dict[int, int]]] = {}
        # level 1's last push per symbol: its bids, asks and exchange time
        self._top: dict[str, tuple[list[tuple[int, int]], list[tuple[int, int]], int]] = {}
        self._skip: dict[str | None, int] = {}
        self._resets: set[str] = set()
        self._calls: dict[str, deque[float]] = {}  # REST request times per IP, last 5 s
        self._banned: dict[str, float] = {}  # IP → banned until (monotonic)
        self._ban_all_until = 0.0
        self.loop: asyncio.AbstractEventLoop | None = None  # the simulator's, once serving
        self.linear_handlers = {}  # filled by the linear face, which shares this host

    # --- routes ------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        """Bybit's paths; called on the simulator's loop, which the faults then run on."""
        self.loop = asyncio.get_running_loop()
        rest: list[tuple[str, Callable[[web.Request], Awaitable[Any]]]] = [
            ("/v5/market/time", self.server_time),
            ("/v5/market/instruments-info", self.instruments),
            ("/v5/market/kline", self.klines),
            ("/v5/market/orderbook", self.orderbook),
            ("/v5/market/recent-trade", self.recent_trades),
            ("/v5/market/tickers", self.tickers),
        ]
        for path, handler in rest:
            app.router.add_get(path, self._rest(handler))
        for path, handler in self.linear_handlers.items():  # the paths of linear alone
            if path not in dict(rest):
                app.router.add_get(path, self._rest(handler))
        app.router.add_get("/v5/public/spot", self.websocket)
