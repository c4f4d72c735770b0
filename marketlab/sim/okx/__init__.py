"""The simulated exchange's OKX v5 face: REST ``/api/v5/*`` and WebSocket ``/ws/v5/*``.

Written from OKX's documentation, independently of :mod:`marketlab.venues.okx`, and fed by the
same deterministic market as the Binance face. Enforces what OKX enforces: requests per
endpoint per two seconds (HTTP 429, code 50011), candles only on ``/ws/v5/business``, the
``prevSeqId`` chain on ``books``, the text ``ping``/``pong`` keepalive and the 30-second rule (a
connection nothing was pushed on for 30 s is closed).

``books`` behaves as in production since OKX retired its checksum (June 2026): the field is
sent and always 0 (``okx_checksums=True`` sends the old CRC32 instead). A book that has not
changed for ``okx_book_heartbeat`` seconds gets OKX's "still alive" push (empty sides,
``seqId == prevSeqId``), and :meth:`OkxFace.reset_seq` restarts a book's seqId as OKX's
maintenance does (an update whose ``seqId`` is below its ``prevSeqId``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from marketlab.sim.face import SocketFace
from marketlab.sim.host import OkxHost
from marketlab.sim.okx.rest import OkxRest
from marketlab.sim.okx.ws import OkxConnection, OkxWs

__all__ = ["OkxFace"]


class OkxFace(OkxRest, OkxWs, SocketFace):
    """REST routes, WebSocket handling and the step → channel fan-out for one exchange."""

    def __init__(self, sim: OkxHost):
        self.sim = sim
        self.subs: dict[tuple[str, str], set[OkxConnection]] = {}
        self.connections: set[OkxConnection] = set()
        self.inst = {f"{m.spec.base}-{m.spec.quote}": m for m in sim.markets_of("okx").values()}
        self._inst_of = {m.spec.symbol: i for i, m in self.inst.items()}
        self._calls: dict[str, deque[float]] = {}
        self._skip_books: dict[str | None, int] = {}
        # The 400-level view of each book with subscribers: OKX pushes changes to this view
        # (levels entering it included), not to the whole book.
        self._views: dict[str, tuple[dict[int, int], dict[int, int]]] = {}
        self._corrupt: dict[str | None, int] = {}
        # OKX's seqId per book is the market's update id less this (moved by a seqId reset).
        self._seq_offset: dict[str, int] = {}
        self._resets: set[str] = set()  # symbols whose next book update restarts the seqId

    # --- routes ------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        rest: list[tuple[str, str, Callable[[web.Request], Awaitable[Any]]]] = [
            ("/api/v5/public/time", "time", self.server_time),
            ("/api/v5/public/instruments", "instruments", self.instruments),
            ("/api/v5/market/ticker", "ticker", self.ticker),
            ("/api/v5/market/tickers", "tickers", self.tickers),
            ("/api/v5/market/books", "books", self.books),
            ("/api/v5/market/candles", "candles", self.candles),
            ("/api/v5/market/history-candles", "history-candles", self.history_candles),
            ("/api/v5/market/history-trades", "history-trades", self.history_trades),
        ]
        for path, name, handler in rest:
            app.router.add_get(path, self._rest(name, handler))
        app.router.add_get("/ws/v5/public", self.websocket)
        app.router.add_get("/ws/v5/business", self.websocket)
