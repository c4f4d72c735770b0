"""The simulated exchange's Binance Spot face: REST ``/api/v3/*`` and WebSocket streams.

Written from the exchange's documentation, independently of :mod:`marketlab.venues.binance`,
so the two check each other. Enforces what Binance enforces: request weight per minute
(429 with Retry-After, then a 418 ban), 5 incoming WebSocket messages per second, ping/pong
with a timeout, 1024 streams per connection, the connection age limit, error codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import WSMsgType, web

from marketlab.records import INTERVAL_NAMES, Interval
from marketlab.sim.face import SocketFace
from marketlab.sim.market import StepResult, SymbolMarket, _Candle, fmt_units

if TYPE_CHECKING:
    from marketlab.sim.server import SimExchange

log = logging.getLogger("marketlab.sim.binance")

MAX_STREAMS = 1024
_SYMBOL_PARAM_RE = re.compile(r"^[A-Z0-9\-_.]{1,20}$")
_STREAM_RE = re.compile(
    r"^(?P<sym>[a-z0-9]{2,20})@(?:(?P<simple>trade|aggTrade|ticker|miniTicker|bookTicker)"
    r"|kline_(?P<iv>[0-9]+[smhdwM])|depth(?P<levels>5|10|20)?(?:@(?P<speed>100|1000)ms)?)$"
)


class ApiError(Exception):
    def __init__(self, status: int, code: int, msg: str, retry_after: int | None = None):
        super().__init__(msg)
        self.status, self.code, self.msg, self.retry_after = status, code, msg, retry_after


def _error_response(err: ApiError, weight_used: int | None = None) -> web.Response:
    headers = {}
    if err.retry_after is not None:
        headers["Retry-After"] = str(err.retry_after)
    if weight_used is not None:
        headers["X-MBX-USED-WEIGHT-1M"] = str(weight_used)
    return web.Response(
        body=orjson.dumps({"code": err.code, "msg": err.msg}),
        status=err.status,
        content_type="application/json",
        headers=headers,
    )


def _mandatory(name: str) -> ApiError:
    return ApiError(
        400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


def _illegal(name: str, legal: str) -> ApiError:
    return ApiError(
        400, -1100, f"Illegal characters found in parameter '{name}'; legal range is '{legal}'."
    )


def _int_param(q: Any, name: str) -> int | None:
    raw = q.get(name)
    if raw is None or raw == "":
        return None
    if not re.fullmatch(r"-?[0-9]{1,20}", raw):
        raise _illegal(name, "^[0-9]{1,20}$")
    return int(raw)


# --- payload formatting --------------------------------------------------------------------


class Formatter:
    """Ticks and lots of one symbol → Binance's decimal strings."""

    def __init__(self, m: SymbolMarket):
        self.pd, self.qd = m.spec.price_decimals, m.spec.qty_decimals

    def p(self, ticks: int) -> str:
        return fmt_units(ticks, self.pd)

    def q(self, lots: int) -> str:
        return fmt_units(lots, self.qd)

    def quote(self, units: int) -> str:
        return fmt_units(units, self.pd + self.qd)

    def levels(self, levels: list[tuple[int, int]]) -> list[list[str]]:
        return [[self.p(p), self.q(q)] for p, q in levels]


def kline_row(f: Formatter, row: tuple) -> list:
    t, o, h, l, c, v, close_time, q, n, tv, tq, _closed = row
    return [t, f.p(o), f.p(h), f.p(l), f.p(c), f.q(v), close_time, f.quote(q), n, f.q(tv),
            f.quote(tq), "0"]  # fmt: skip


def kline_event(
    m: SymbolMarket, f: Formatter, iv: str, c: _Candle, closed: bool, event_time: int
) -> dict:
    o, h, l, cl = c.ohlc()
    return {
        "e": "kline", "E": event_time, "s": m.spec.symbol,
        "k": {
            "t": c.open_time, "T": c.next_open - 1, "s": m.spec.symbol, "i": iv,
            "f": c.f, "L": c.L, "o": f.p(o), "c": f.p(cl), "h": f.p(h), "l": f.p(l),
            "v": f.q(c.v), "n": c.n, "x": closed, "q": f.quote(c.q), "V": f.q(c.tv),
            "Q": f.quote(c.tq), "B": "0",
        },
    }  # fmt: skip


def ticker_fields(m: SymbolMarket, f: Formatter, now: int) -> dict[str, Any]:
    t = m.ticker()
    _, bids, asks = m.book(1)
    bid, bid_q = bids[0] if bids else (0, 0)
    ask, ask_q = asks[0] if asks else (0, 0)
    change = t["last"] - t["open"]
    pct = 100.0 * change / t["open"] if t["open"] else 0.0
    # quote is in ticks x lots and volume in lots, so their ratio is a price in ticks
    wavg = t["quote"] / t["volume"] * f_tick(m) if t["volume"] else 0.0
    return {
        "symbol": m.spec.symbol,
        "priceChange": f.p(change),
        "priceChangePercent": f"{pct:.3f}",
        "weightedAvgPrice": f"{wavg:.8f}",
        "prevClosePrice": f.p(t["prev_close"]),
        "lastPrice": f.p(t["last"]),
        "lastQty": f.q(t["last_qty"]),
        "bidPrice": f.p(bid),
        "bidQty": f.q(bid_q),
        "askPrice": f.p(ask),
        "askQty": f.q(ask_q),
        "openPrice": f.p(t["open"]),
        "highPrice": f.p(t["high"]),
        "lowPrice": f.p(t["low"]),
        "volume": f.q(t["volume"]),
        "quoteVolume": f.quote(t["quote"]),
        "openTime": now - 86_400_000,
        "closeTime": now,
        "firstId": t["first_id"],
        "lastId": t["last_id"],
        "count": t["count"],
    }


def f_tick(m: SymbolMarket) -> float:
    return 10.0**-m.spec.price_decimals


_TICKER_WS_KEYS = (
    ("p", "priceChange"), ("P", "priceChangePercent"), ("w", "weightedAvgPrice"),
    ("x", "prevClosePrice"), ("c", "lastPrice"), ("Q", "lastQty"), ("b", "bidPrice"),
    ("B", "bidQty"), ("a", "askPrice"), ("A", "askQty"), ("o", "openPrice"), ("h", "highPrice"),
    ("l", "lowPrice"), ("v", "volume"), ("q", "quoteVolume"), ("O", "openTime"),
    ("C", "closeTime"), ("F", "firstId"), ("L", "lastId"), ("n", "count"),
)  # fmt: skip


# --- WebSocket connections -----------------------------------------------------------------


@dataclass(eq=False)
class Connection:
    ws: web.WebSocketResponse
    request: web.Request
    combined: bool
    streams: list[str] = field(default_factory=list)
    opened: float = field(default_factory=time.monotonic)
    queue: asyncio.Queue[bytes] = field(default_factory=lambda: asyncio.Queue(maxsize=20_000))
    incoming: deque[float] = field(default_factory=deque)
    ping_payload: bytes | None = None
    ping_sent: float | None = None
    closing: bool = False


class BinanceFace(SocketFace):
    """REST routes, WebSocket handling and the step → stream fan-out for one SimExchange."""

    def __init__(self, sim: SimExchange):
        self.sim = sim
        self.subs: dict[str, set[Connection]] = {}
        self.connections: set[Connection] = set()
        self.formatters = {s: Formatter(m) for s, m in sim.market.symbols.items()}
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

    # --- REST: limits and errors -------------------------------------------------------

    def _rest(
        self, handler: Callable[[web.Request], Awaitable[Any]]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            self.sim.stats["rest_requests"] += 1
            now = time.time()
            if now < self._banned_until:
                return _error_response(self._ban_error(now))
            forced = self.sim.faults.take_rest_fault()
            if forced is not None:
                return _error_response(forced)
            try:
                weight, payload = await handler(request)
            except ApiError as err:
                return _error_response(err, self._weight_used)
            window = int(now // 60)
            if window != self._weight_window:
                self._weight_window, self._weight_used = window, 0
            if self._weight_used + weight > self.sim.weight_limit:
                return _error_response(self._over_limit(now))
            self._weight_used += weight
            return web.Response(
                body=orjson.dumps(payload),
                content_type="application/json",
                headers={"X-MBX-USED-WEIGHT-1M": str(self._weight_used)},
            )

        return wrapped

    def _over_limit(self, now: float) -> ApiError:
        retry_after = max(1, math.ceil((self._weight_window + 1) * 60 - now))
        if now < self._retry_until:
            self._violations += 1  # still asking during the back-off it was given
            if self._violations >= self.sim.violations_before_ban:
                self._banned_until = now + self.sim.ban_seconds
                return self._ban_error(now)
        self._retry_until = now + retry_after
        return ApiError(
            429, -1003,
            f"Too much request weight used; current limit is {self.sim.weight_limit} request weight "
            "per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API.",
            retry_after,
        )  # fmt: skip

    def _ban_error(self, now: float) -> ApiError:
        until = int(self._banned_until * 1000)
        return ApiError(
            418, -1003,
            f"Way too much request weight used; IP banned until {until}. Please use WebSocket "
            "Streams for live updates to avoid bans.",
            max(1, math.ceil(self._banned_until - now)),
        )  # fmt: skip

    def _market(self, request: web.Request, required: bool = True) -> SymbolMarket | None:
        symbol = request.query.get("symbol")
        if not symbol:
            if required:
                raise _mandatory("symbol")
            return None
        if not _SYMBOL_PARAM_RE.match(symbol):
            raise _illegal("symbol", "^[A-Z0-9-_.]{1,20}$")
        m = self.sim.market.symbols.get(symbol)
        if m is None:
            raise ApiError(400, -1121, "Invalid symbol.")
        return m

    def _markets(self, request: web.Request) -> list[SymbolMarket] | None:
        """``symbol=X`` or ``symbols=["A","B"]`` (not both); None for all."""
        raw = request.query.get("symbols")
        single = self._market(request, required=False)
        if single is not None and raw is not None:
            raise ApiError(400, -1128, "Combination of optional parameters invalid.")
        if single is not None:
            return [single]
        if raw is None:
            return None
        try:
            names = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise _illegal(
                "symbols", '^\\["[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}\\]$'
            ) from None
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise _illegal("symbols", '^\\["[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}\\]$')
        out = []
        for name in names:
            m = self.sim.market.symbols.get(name)
            if m is None:
                raise ApiError(400, -1121, "Invalid symbol.")
            out.append(m)
        return out

    # --- REST: endpoints ---------------------------------------------------------------

    async def ping(self, request: web.Request) -> tuple[int, Any]:
        return 1, {}

    async def server_time(self, request: web.Request) -> tuple[int, Any]:
        return 1, {"serverTime": self.sim.now_ms()}

    async def exchange_info(self, request: web.Request) -> tuple[int, Any]:
        markets = self._markets(request)
        chosen = markets if markets is not None else list(self.sim.market.symbols.values())
        return 20, {
            "timezone": "UTC",
            "serverTime": self.sim.now_ms(),
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                 "limit": self.sim.weight_limit},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
                {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5,
                 "limit": 61000},
            ],
            "exchangeFilters": [],
            "symbols": [self._symbol_info(m) for m in chosen],
        }  # fmt: skip

    def _symbol_info(self, m: SymbolMarket) -> dict[str, Any]:
        s = m.spec
        f = self.formatters[s.symbol]
        return {
            "symbol": s.symbol, "status": "TRADING", "baseAsset": s.base,
            "baseAssetPrecision": 8, "quoteAsset": s.quote, "quotePrecision": 8,
            "quoteAssetPrecision": 8, "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
            "icebergAllowed": True, "ocoAllowed": True, "otoAllowed": True,
            "quoteOrderQtyMarketAllowed": True, "allowTrailingStop": True,
            "cancelReplaceAllowed": True, "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": f.p(1), "maxPrice": "1000000.00000000",
                 "tickSize": f.p(1)},
                {"filterType": "LOT_SIZE", "minQty": f.q(1), "maxQty": "9000.00000000",
                 "stepSize": f.q(1)},
                {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True,
                 "maxNotional": "9000000.00000000", "applyMaxToMarket": False,
                 "avgPriceMins": 5},
            ],
            "permissions": [], "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }  # fmt: skip

    async def klines(self, request: web.Request) -> tuple[int, Any]:
        m = self._market(request)
        assert m is not None
        q = request.query
        name = q.get("interval")
        if not name:
            raise _mandatory("interval")
        if name not in INTERVAL_NAMES:
            raise ApiError(400, -1120, "Invalid interval.")
        start, end = _int_param(q, "startTime"), _int_param(q, "endTime")
        limit = _int_param(q, "limit")
        limit = 500 if limit is None else limit
        if limit < 1:
            raise ApiError(400, -1130, "Invalid data sent for a parameter.")
        if start is not None and end is not None and start > end:
            raise ApiError(400, -1023, "Start time is greater than end time.")
        rows = m.klines(Interval(name), start, end, min(limit, 1000))
        f = self.formatters[m.spec.symbol]
        return 2, [kline_row(f, r) for r in rows]

    async def depth(self, request: web.Request) -> tuple[int, Any]:
        m = self._market(request)
        assert m is not None
        limit = _int_param(request.query, "limit")
        limit = 100 if limit is None else limit
        if limit < 1:
            raise ApiError(400, -1130, "Invalid data sent for a parameter.")
        limit = min(limit, 5000)
        weight = 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250
        uid, bids, asks = m.book(limit)
        f = self.formatters[m.spec.symbol]
        return weight, {"lastUpdateId": uid, "bids": f.levels(bids), "asks": f.levels(asks)}

    async def trades(self, request: web.Request) -> tuple[int, Any]:
        m = self._market(request)
        assert m is not None
        limit = _int_param(request.query, "limit")
        limit = min(1000, 500 if limit is None else max(1, limit))
        f = self.formatters[m.spec.symbol]
        recent = list(m.recent_trades)[-limit:]
        return 25, [
            {"id": t.trade_id, "price": f.p(t.price), "qty": f.q(t.qty),
             "quoteQty": f.quote(t.price * t.qty), "time": t.time,
             "isBuyerMaker": t.buyer_is_maker, "isBestMatch": True}
            for t in recent
        ]  # fmt: skip

    def _ticker_weight(self, markets: list[SymbolMarket] | None, one: int, many: int) -> int:
        if markets is None:
            return many
        n = len(markets)
        return one if n <= 20 else 40 if n <= 100 else many

    async def ticker_24hr(self, request: web.Request) -> tuple[int, Any]:
        markets = self._markets(request)
        chosen = markets if markets is not None else list(self.sim.market.symbols.values())
        now = self.sim.market.now
        rows = [ticker_fields(m, self.formatters[m.spec.symbol], now) for m in chosen]
        single = request.query.get("symbol") is not None
        return self._ticker_weight(markets, 2, 80), rows[0] if single else rows

    async def ticker_price(self, request: web.Request) -> tuple[int, Any]:
        markets = self._markets(request)
        chosen = markets if markets is not None else list(self.sim.market.symbols.values())
        rows = [{"symbol": m.spec.symbol, "price": self.formatters[m.spec.symbol].p(m.last_price)}
                for m in chosen]  # fmt: skip
        single = request.query.get("symbol") is not None
        return (2 if markets is not None else 4), rows[0] if single else rows

    async def book_ticker(self, request: web.Request) -> tuple[int, Any]:
        markets = self._markets(request)
        chosen = markets if markets is not None else list(self.sim.market.symbols.values())
        rows = []
        for m in chosen:
            f = self.formatters[m.spec.symbol]
            _, bids, asks = m.book(1)
            (bp, bq), (ap, aq) = bids[0] if bids else (0, 0), asks[0] if asks else (0, 0)
            rows.append({"symbol": m.spec.symbol, "bidPrice": f.p(bp), "bidQty": f.q(bq),
                         "askPrice": f.p(ap), "askQty": f.q(aq)})  # fmt: skip
        single = request.query.get("symbol") is not None
        return (2 if markets is not None else 4), rows[0] if single else rows

    # --- WebSocket ---------------------------------------------------------------------

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        combined = request.path.startswith("/stream")
        if combined:
            names = [s for s in request.query.get("streams", "").split("/") if s]
        else:
            names = [s for s in request.match_info.get("streams", "").split("/") if s]
        # Binance ignores path entries that are not streams (ccxt connects to /ws/<n>).
        names = [n for n in dict.fromkeys(names) if _STREAM_RE.match(n)]
        if len(names) > MAX_STREAMS:
            return web.Response(status=400, text=f"too many streams: {len(names)} > {MAX_STREAMS}")
        ws = web.WebSocketResponse(autoping=False, max_msg_size=1 << 20)
        await ws.prepare(request)
        conn = Connection(ws, request, combined)
        self.connections.add(conn)
        self.sim.stats["ws_connections"] += 1
        self._subscribe(conn, names)
        writer = asyncio.create_task(self._writer(conn))
        keeper = asyncio.create_task(self._keepalive(conn))
        try:
            async for msg in ws:
                if not self._count_incoming(conn):
                    await self._close(conn, 1008, b"Too many requests")
                    break
                if self.sim.faults.stalled():
                    continue  # a stalled link answers nothing, pings included
                if msg.type == WSMsgType.PING:
                    await ws.pong(msg.data)
                elif msg.type == WSMsgType.PONG:
                    if conn.ping_payload is not None and msg.data == conn.ping_payload:
                        conn.ping_payload = conn.ping_sent = None
                elif msg.type == WSMsgType.TEXT:
                    reply = self._control(conn, msg.data)
                    if reply is not None:
                        self._enqueue(conn, orjson.dumps(reply))
                elif msg.type == WSMsgType.BINARY:
                    self._enqueue(
                        conn,
                        orjson.dumps({"code": 3, "msg": "Invalid JSON: binary frame", "id": None}),
                    )
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            writer.cancel()
            keeper.cancel()
            self._drop(conn)
        return ws

    def _count_incoming(self, conn: Connection) -> bool:
        now = time.monotonic()
        conn.incoming.append(now)
        while conn.incoming and conn.incoming[0] <= now - 1.0:
            conn.incoming.popleft()
        return len(conn.incoming) <= self.sim.message_limit

    def _subscribe(self, conn: Connection, names: list[str]) -> None:
        for n in names:
            if n not in conn.streams:
                conn.streams.append(n)
                self.subs.setdefault(n, set()).add(conn)

    def _unsubscribe(self, conn: Connection, names: list[str]) -> None:
        for n in names:
            if n in conn.streams:
                conn.streams.remove(n)
                holders = self.subs.get(n)
                if holders is not None:
                    holders.discard(conn)
                    if not holders:
                        del self.subs[n]

    def _drop(self, conn: Connection) -> None:
        self._unsubscribe(conn, list(conn.streams))
        self.connections.discard(conn)

    def _control(self, conn: Connection, text: str) -> dict[str, Any] | None:
        try:
            msg = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            return {"code": 3, "msg": f"Invalid JSON: {exc}", "id": None}
        if not isinstance(msg, dict):
            return {"code": 3, "msg": "Invalid JSON: expected an object", "id": None}
        rid = msg.get("id")
        if not (rid is None or (isinstance(rid, int) and not isinstance(rid, bool) and -(2**63) <= rid < 2**63)
                or (isinstance(rid, str) and re.fullmatch(r"[A-Za-z0-9]{1,36}", rid))):  # fmt: skip
            return {
                "code": 1,
                "msg": "Invalid value type: expected a 64-bit integer, an alphanumeric string of at most 36 characters, or null for 'id'",
                "id": None,
            }
        unknown = set(msg) - {"method", "params", "id"}
        if unknown:
            return {"code": 0, "msg": f"Unknown property: {sorted(unknown)[0]}", "id": rid}
        method = msg.get("method")
        params = msg.get("params", [])
        if not isinstance(method, str):
            return {
                "code": 1,
                "msg": "Invalid value type: expected a string for 'method'",
                "id": rid,
            }
        if not isinstance(params, list):
            return {
                "code": 1,
                "msg": "Invalid value type: expected an array for 'params'",
                "id": rid,
            }
        if method == "LIST_SUBSCRIPTIONS":
            return {"result": list(conn.streams), "id": rid}
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not params or not all(isinstance(p, str) and _STREAM_RE.match(p) for p in params):
                bad = next(
                    (p for p in params if not (isinstance(p, str) and _STREAM_RE.match(p))), None
                )
                return {
                    "code": 2,
                    "msg": f"Invalid request: invalid stream name {bad!r}"
                    if params
                    else "Invalid request: 'params' is empty",
                    "id": rid,
                }
            if method == "SUBSCRIBE":
                new = [p for p in params if p not in conn.streams]
                if len(conn.streams) + len(new) > MAX_STREAMS:
                    return {
                        "code": 2,
                        "msg": f"Invalid request: too many streams (max {MAX_STREAMS} per connection)",
                        "id": rid,
                    }
                self._subscribe(conn, params)
            else:
                self._unsubscribe(conn, params)
            return {"result": None, "id": rid}
        if method == "GET_PROPERTY" and params == ["combined"]:
            return {"result": conn.combined, "id": rid}
        if (
            method == "SET_PROPERTY"
            and len(params) == 2
            and params[0] == "combined"
            and isinstance(params[1], bool)
        ):
            conn.combined = params[1]
            return {"result": None, "id": rid}
        return {"code": 2, "msg": f"Invalid request: unknown method {method!r}", "id": rid}

    def _enqueue(self, conn: Connection, data: bytes) -> None:
        if conn.closing:
            return
        try:
            conn.queue.put_nowait(data)
        except asyncio.QueueFull:
            # Binance drops consumers too slow to keep up.
            conn.closing = True
            log.info("closing a slow WebSocket consumer (queue full)")
            asyncio.get_running_loop().create_task(self._close(conn, 1008, b"Too slow"))

    async def _writer(self, conn: Connection) -> None:
        ws = conn.ws
        while True:
            data = await conn.queue.get()
            if self.sim.faults.stalled():
                continue  # a stalled link: nothing arrives, nothing is closed
            try:
                await ws.send_frame(data, WSMsgType.TEXT)
            except (ConnectionResetError, RuntimeError):
                return

    async def _keepalive(self, conn: Connection) -> None:
        sim = self.sim
        tick = min(1.0, sim.ping_interval / 4)
        last_ping = time.monotonic()
        seq = 0
        while not conn.ws.closed:
            await asyncio.sleep(tick)
            now = time.monotonic()
            if now - conn.opened >= sim.max_connection_age:
                await self._close(conn, 1000, b"Connection lifetime expired")
                return
            if conn.ping_sent is not None and now - conn.ping_sent >= sim.pong_timeout:
                await self._close(conn, 1008, b"Pong timeout")
                return
            if now - last_ping >= sim.ping_interval and not sim.faults.stalled():
                last_ping = now
                seq += 1
                payload = str(int(time.time() * 1000) + seq).encode()
                if conn.ping_payload is None:
                    conn.ping_payload, conn.ping_sent = payload, now
                with contextlib.suppress(ConnectionResetError, RuntimeError):
                    await conn.ws.ping(conn.ping_payload)

    # --- faults ------------------------------------------------------------------------

    def skip_depth(self, events: int, symbol: str | None) -> None:
        self._skip_depth[symbol] = self._skip_depth.get(symbol, 0) + events

    def send_malformed(self, kind: str) -> int:
        symbol = next(iter(self.sim.market.symbols)).lower()
        bodies = {
            "truncated": b'{"e":"trade","E":17672256030',
            "garbage": b"\x00\x01 this is not json",
            "bad_field": orjson.dumps({"e": "trade", "E": 1, "s": symbol.upper(), "t": "x",
                                       "p": "abc", "q": None, "T": 1, "m": True, "M": True}),
            "unknown_event": orjson.dumps({"e": "surprise", "E": 1, "s": symbol.upper()}),
        }  # fmt: skip
        if kind not in bodies:
            raise ValueError(
                f"unknown malformed kind {kind!r}: expected one of {', '.join(bodies)}"
            )
        body = bodies[kind]
        for conn in list(self.connections):
            stream = conn.streams[0] if conn.streams else f"{symbol}@trade"
            if conn.combined and kind != "garbage":
                self._enqueue(conn, b'{"stream":"' + stream.encode() + b'","data":' + body + b"}")
            else:
                self._enqueue(conn, body)
        return len(self.connections)

    async def shutdown_notice(self) -> int:
        """Send ``serverShutdown`` to every connection, then close them."""
        now = self.sim.now_ms()
        event = orjson.dumps({"e": "serverShutdown", "E": now})
        wrapped = b'{"stream":"serverShutdown","data":' + event + b"}"
        return await self.announce_and_close(
            lambda conn: wrapped if conn.combined else event, 1000, b"Server shutdown"
        )

    # --- stream fan-out ----------------------------------------------------------------

    def publish(self, results: dict[str, StepResult]) -> None:
        """Send what one exchange second produced to the subscribers of each stream."""
        if not self.subs:
            return
        for symbol, r in results.items():
            m = self.sim.market.symbols[symbol]
            f = self.formatters[symbol]
            s = symbol.lower()
            self._publish_symbol(m, f, s, r)

    def _send(self, name: str, payload: dict[str, Any] | bytes) -> None:
        conns = self.subs.get(name)
        if not conns:
            return
        raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        wrapped = None
        for conn in conns:
            if conn.combined:
                if wrapped is None:
                    wrapped = b'{"stream":"' + name.encode() + b'","data":' + raw + b"}"
                self._enqueue(conn, wrapped)
            else:
                self._enqueue(conn, raw)

    def _publish_symbol(self, m: SymbolMarket, f: Formatter, s: str, r: StepResult) -> None:
        subs = self.subs
        sym = m.spec.symbol
        if f"{s}@trade" in subs or f"{s}@aggTrade" in subs:
            for t in r.trades:
                e_time = min(t.time + 3, r.end)
                if f"{s}@trade" in subs:
                    self._send(f"{s}@trade", {"e": "trade", "E": e_time, "s": sym, "t": t.trade_id,
                               "p": f.p(t.price), "q": f.q(t.qty), "T": t.time,
                               "m": t.buyer_is_maker, "M": True})  # fmt: skip
                if f"{s}@aggTrade" in subs:
                    self._send(f"{s}@aggTrade", {"e": "aggTrade", "E": e_time, "s": sym,
                               "a": t.trade_id, "p": f.p(t.price), "q": f.q(t.qty),
                               "f": t.trade_id, "l": t.trade_id, "T": t.time,
                               "m": t.buyer_is_maker, "M": True})  # fmt: skip
        for iv in INTERVAL_NAMES:
            name = f"{s}@kline_{iv}"
            if name not in subs:
                continue
            closed = r.closed.get(iv)
            if closed is not None:
                self._send(name, kline_event(m, f, iv, closed, True, r.end))
            elif (r.second // 1000) % 2 == 0:
                self._send(name, kline_event(m, f, iv, m.candles[iv], False, r.end))
        if r.depth is not None:
            first, last, bids, asks = r.depth
            skip = self._skip_depth
            if skip and (skip.get(sym) or skip.get(None)):
                key = sym if skip.get(sym) else None
                skip[key] -= 1
                if not skip[key]:
                    del skip[key]
            else:
                payload = orjson.dumps({"e": "depthUpdate", "E": r.end, "s": sym, "U": first,
                                        "u": last, "b": f.levels(bids), "a": f.levels(asks)})  # fmt: skip
                self._send(f"{s}@depth", payload)
                self._send(f"{s}@depth@100ms", payload)
        for levels in (5, 10, 20):
            names = [n for n in (f"{s}@depth{levels}", f"{s}@depth{levels}@100ms") if n in subs]
            if names:
                uid, bids, asks = m.book(levels)
                payload = orjson.dumps(
                    {"lastUpdateId": uid, "bids": f.levels(bids), "asks": f.levels(asks)}
                )
                for n in names:
                    self._send(n, payload)
        if f"{s}@bookTicker" in subs:
            uid, bids, asks = m.book(1)
            if bids and asks:
                self._send(f"{s}@bookTicker", {"u": uid, "s": sym, "b": f.p(bids[0][0]),
                           "B": f.q(bids[0][1]), "a": f.p(asks[0][0]), "A": f.q(asks[0][1])})  # fmt: skip
        if f"{s}@ticker" in subs or f"{s}@miniTicker" in subs:
            t = ticker_fields(m, f, r.end)
            if f"{s}@ticker" in subs:
                payload = {"e": "24hrTicker", "E": r.end, "s": sym}
                payload.update({k: t[src] for k, src in _TICKER_WS_KEYS})
                self._send(f"{s}@ticker", payload)
            if f"{s}@miniTicker" in subs:
                self._send(f"{s}@miniTicker", {"e": "24hrMiniTicker", "E": r.end, "s": sym,
                           "c": t["lastPrice"], "o": t["openPrice"], "h": t["highPrice"],
                           "l": t["lowPrice"], "v": t["volume"], "q": t["quoteVolume"]})  # fmt: skip
