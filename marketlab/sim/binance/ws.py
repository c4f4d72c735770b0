"""The simulated Binance's WebSocket face: raw and combined streams, SUBSCRIBE and friends,
5 incoming messages a second, ping/pong with a timeout, 1024 streams per connection, the
connection age limit, and the step → stream fan-out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from marketlab.records import INTERVAL_NAMES
from marketlab.sim.binance.rest import Formatter, kline_event, ticker_fields
from marketlab.sim.face import HOSTILE_FRAMES, SocketFace, request_json
from marketlab.sim.host import BinanceHost
from marketlab.sim.market import StepResult, VenueMarket

log = logging.getLogger("marketlab.sim.binance")

MAX_STREAMS = 1024
_STREAM_RE = re.compile(
    r"^(?P<sym>[a-z0-9]{2,20})@(?:(?P<simple>trade|aggTrade|ticker|miniTicker|bookTicker)"
    r"|kline_(?P<iv>[0-9]+[smhdwM])|depth(?P<levels>5|10|20)?(?:@(?P<speed>100|1000)ms)?)$"
)

_TICKER_WS_KEYS = (
    ("p", "priceChange"),
    ("P", "priceChangePercent"),
    ("w", "weightedAvgPrice"),
    ("x", "prevClosePrice"),
    ("c", "lastPrice"),
    ("Q", "lastQty"),
    ("b", "bidPrice"),
    ("B", "bidQty"),
    ("a", "askPrice"),
    ("A", "askQty"),
    ("o", "openPrice"),
    ("h", "highPrice"),
    ("l", "lowPrice"),
    ("v", "volume"),
    ("q", "quoteVolume"),
    ("O", "openTime"),
    ("C", "closeTime"),
    ("F", "firstId"),
    ("L", "lastId"),
    ("n", "count"),
)


@dataclass(eq=False)
class Connection:
    ws: web.WebSocketResponse
    request: web.Request
    combined: bool
    streams: list[str] = field(default_factory=list)
    opened: float = field(default_factory=time.monotonic)
    queue: asyncio.Queue[tuple[float, bytes | None]] = field(
        default_factory=lambda: asyncio.Queue(maxsize=20_000)
    )
    incoming: deque[float] = field(default_factory=deque)
    ping_payload: bytes | None = None
    ping_sent: float | None = None
    closing: bool = False


class BinanceWs(SocketFace):
    """WebSocket handling, faults and fan-out of :class:`~marketlab.sim.binance.BinanceFace`."""

    venue = "binance"
    MALFORMED_KINDS = HOSTILE_FRAMES
    stream_pattern = _STREAM_RE  # the stream names this face serves
    max_streams = MAX_STREAMS  # a connection's streams at most
    sim: BinanceHost
    markets: dict[str, VenueMarket]
    subs: dict[str, set[Connection]]
    connections: set[Connection]
    formatters: dict[str, Formatter]
    _skip_depth: dict[str | None, int]

    # --- WebSocket ---------------------------------------------------------------------

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        combined = self.is_combined(request.path)
        if combined:
            names = [s for s in request.query.get("streams", "").split("/") if s]
        else:
            names = [s for s in request.match_info.get("streams", "").split("/") if s]
        # Binance ignores path entries that are not streams (ccxt connects to /ws/<n>).
        names = [n for n in dict.fromkeys(names) if self.stream_pattern.match(n)]
        if len(names) > self.max_streams:
            return web.Response(
                status=400, text=f"too many streams: {len(names)} > {self.max_streams}"
            )
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
                if self.sim.faults.stalled(self.venue):
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

    def is_combined(self, path: str) -> bool:
        """Whether a connection on ``path`` gets combined frames (``/stream``) or raw ones."""
        return path.startswith("/stream")

    @property
    def message_limit(self) -> int:
        """Control messages a connection may send a second (the futures face has its own)."""
        return self.sim.message_limit

    def _count_incoming(self, conn: Connection) -> bool:
        now = time.monotonic()
        conn.incoming.append(now)
        while conn.incoming and conn.incoming[0] <= now - 1.0:
            conn.incoming.popleft()
        return len(conn.incoming) <= self.message_limit

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
            msg = request_json(text)
        except orjson.JSONDecodeError as exc:
            return {"code": 3, "msg": f"Invalid JSON: {exc}", "id": None}
        if not isinstance(msg, dict):
            return {"code": 3, "msg": "Invalid JSON: expected an object", "id": None}
        rid = msg.get("id")
        if not (
            rid is None
            or (isinstance(rid, int) and not isinstance(rid, bool) and -(2**63) <= rid < 2**63)
            or (isinstance(rid, str) and re.fullmatch(r"[A-Za-z0-9]{1,36}", rid))
        ):
            return {
                "code": 1,
                "msg": "Invalid value type: expected a 64-bit integer, an alphanumeric string "
                "of at most 36 characters, or null for 'id'",
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
            pattern = self.stream_pattern
            if not params or not all(isinstance(p, str) and pattern.match(p) for p in params):
                bad = next(
                    (p for p in params if not (isinstance(p, str) and pattern.match(p))), None
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
                if len(conn.streams) + len(new) > self.max_streams:
                    return {
                        "code": 2,
                        "msg": "Invalid request: too many streams "
                        f"(max {self.max_streams} per connection)",
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
            if now - last_ping >= sim.ping_interval and not sim.faults.stalled(self.venue):
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
        symbol = next(iter(self.markets)).lower()
        bodies = {
            "truncated": b'{"e":"trade","E":17672256030',
            "garbage": b"\x00\x01 this is not json",
            "bad_field": orjson.dumps(
                {
                    "e": "trade",
                    "E": 1,
                    "s": symbol.upper(),
                    "t": "x",
                    "p": "abc",
                    "q": None,
                    "T": 1,
                    "m": True,
                    "M": True,
                }
            ),
            "unknown_event": orjson.dumps({"e": "surprise", "E": 1, "s": symbol.upper()}),
            # well-formed but for a trade id past int64 (and a NaN price): hostile numbers
            "id_past_int64": orjson.dumps(
                {
                    "e": "trade",
                    "E": self.sim.now_ms(),
                    "s": symbol.upper(),
                    "t": 2**63,
                    "p": "1.5",
                    "q": "1",
                    "T": self.sim.now_ms(),
                    "m": True,
                    "M": True,
                }
            ),
            "nan_price": orjson.dumps(
                {
                    "e": "trade",
                    "E": self.sim.now_ms(),
                    "s": symbol.upper(),
                    "t": 1,
                    "p": "nan",
                    "q": "1",
                    "T": self.sim.now_ms(),
                    "m": True,
                    "M": True,
                }
            ),
        }
        if kind not in bodies:
            raise ValueError(
                f"unknown malformed kind {kind!r}: expected one of {', '.join(bodies)}"
            )
        body = bodies[kind]
        hostile = kind in ("id_past_int64", "nan_price")  # on the trade stream, where it goes
        sent = 0
        for conn in list(self.connections):
            if hostile and f"{symbol}@trade" not in conn.streams:
                continue
            if hostile:
                stream = f"{symbol}@trade"
            else:
                stream = conn.streams[0] if conn.streams else f"{symbol}@trade"
            if conn.combined and kind != "garbage":
                self._enqueue(conn, b'{"stream":"' + stream.encode() + b'","data":' + body + b"}")
            else:
                self._enqueue(conn, body)
            sent += 1
        return sent

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
            m = self.markets[symbol]
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

    def _publish_symbol(self, m: VenueMarket, f: Formatter, s: str, r: StepResult) -> None:
        subs = self.subs
        sym = m.spec.symbol
        if f"{s}@trade" in subs or f"{s}@aggTrade" in subs:
            for t in r.trades:
                e_time = min(t.time + 3, r.end)
                if f"{s}@trade" in subs:
                    self._send(
                        f"{s}@trade",
                        {
                            "e": "trade",
                            "E": e_time,
                            "s": sym,
                            "t": t.trade_id,
                            "p": f.p(t.price),
                            "q": f.q(t.qty),
                            "T": t.time,
                            "m": t.buyer_is_maker,
                            "M": True,
                        },
                    )
                if f"{s}@aggTrade" in subs:
                    self._send(
                        f"{s}@aggTrade",
                        {
                            "e": "aggTrade",
                            "E": e_time,
                            "s": sym,
                            "a": t.trade_id,
                            "p": f.p(t.price),
                            "q": f.q(t.qty),
                            "f": t.trade_id,
                            "l": t.trade_id,
                            "T": t.time,
                            "m": t.buyer_is_maker,
                            "M": True,
                        },
                    )
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
                payload = orjson.dumps(
                    {
                        "e": "depthUpdate",
                        "E": r.end,
                        "s": sym,
                        "U": first,
                        "u": last,
                        "b": f.levels(bids),
                        "a": f.levels(asks),
                    }
                )
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
                self._send(
                    f"{s}@bookTicker",
                    {
                        "u": uid,
                        "s": sym,
                        "b": f.p(bids[0][0]),
                        "B": f.q(bids[0][1]),
                        "a": f.p(asks[0][0]),
                        "A": f.q(asks[0][1]),
                    },
                )
        if f"{s}@ticker" in subs or f"{s}@miniTicker" in subs:
            tick = ticker_fields(m, f, r.end)
            if f"{s}@ticker" in subs:
                event: dict[str, Any] = {"e": "24hrTicker", "E": r.end, "s": sym}
                event.update({k: tick[src] for k, src in _TICKER_WS_KEYS})
                self._send(f"{s}@ticker", event)
            if f"{s}@miniTicker" in subs:
                self._send(
                    f"{s}@miniTicker",
                    {
                        "e": "24hrMiniTicker",
                        "E": r.end,
                        "s": sym,
                        "c": tick["lastPrice"],
                        "o": tick["openPrice"],
                        "h": tick["highPrice"],
                        "l": tick["lowPrice"],
                        "v": tick["volume"],
                        "q": tick["quoteVolume"],
                    },
                )
