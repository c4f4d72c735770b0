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

import asyncio
import logging
import re
import time
import uuid
import zlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import WSMsgType, web

from marketlab.records import Interval
from marketlab.sim.face import SocketFace
from marketlab.sim.market import StepResult, SymbolMarket, _Candle, fmt_units

if TYPE_CHECKING:
    from marketlab.sim.server import SimExchange

log = logging.getLogger("marketlab.sim.okx")

# OKX bar → our interval. Only UTC-aligned bars: the market's candles open on UTC boundaries
# (OKX's plain 6H/12H/1D/1W/1M follow Hong Kong time and are refused here).
BARS = {"1m": "1m", "3m": "3m", "5m": "5m", "15m": "15m", "30m": "30m", "1H": "1h", "2H": "2h",
        "4H": "4h", "6Hutc": "6h", "12Hutc": "12h", "1Dutc": "1d", "1Wutc": "1w", "1Mutc": "1M"}  # fmt: skip
PUBLIC_CHANNELS = ("tickers", "trades", "books", "books5", "bbo-tbt")
BOOK_LEVELS = 400
# Requests per 2 seconds per IP, by endpoint (OKX's documented rate limits).
RATE_LIMITS = {"time": 10, "instruments": 20, "ticker": 20, "tickers": 20, "books": 40,
               "candles": 40, "history-candles": 20}  # fmt: skip
_INST_RE = re.compile(r"^[A-Z0-9]{1,12}-[A-Z0-9]{1,12}$")


class OkxError(Exception):
    def __init__(self, status: int, code: str, msg: str):
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


def num(units: int, decimals: int) -> str:
    """Ticks or lots as OKX prints them: no padding zeros (``6500010, 2`` → ``65000.1``)."""
    text = fmt_units(units, decimals, pad=0)
    return text.rstrip("0").rstrip(".") if "." in text else text


def checksum(bids: list[list[str]], asks: list[list[str]]) -> int:
    """CRC32 over ``bid:ask`` interleaved top-25 levels, as a signed 32-bit integer."""
    fields: list[str] = []
    for i in range(25):
        if i < len(bids):
            fields.extend(bids[i][:2])
        if i < len(asks):
            fields.extend(asks[i][:2])
    value = zlib.crc32(":".join(fields).encode())
    return value - 2**32 if value > 0x7FFFFFFF else value


@dataclass(eq=False)
class OkxConnection:
    ws: web.WebSocketResponse
    request: web.Request
    business: bool
    opened: float = field(default_factory=time.monotonic)
    conn_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    topics: set[tuple[str, str]] = field(default_factory=set)
    book_seq: dict[str, int] = field(default_factory=dict)  # instId → seqId last pushed
    book_pushed: dict[str, float] = field(default_factory=dict)  # instId → when (monotonic)
    queue: asyncio.Queue[bytes] = field(default_factory=lambda: asyncio.Queue(maxsize=20_000))
    last_push: float = field(default_factory=time.monotonic)
    requests: deque[float] = field(default_factory=deque)  # (un)subscribe times, last hour
    closing: bool = False


class OkxFace(SocketFace):
    """REST routes, WebSocket handling and the step → channel fan-out for one SimExchange."""

    def __init__(self, sim: SimExchange):
        self.sim = sim
        self.subs: dict[tuple[str, str], set[OkxConnection]] = {}
        self.connections: set[OkxConnection] = set()
        self.inst = {f"{m.spec.base}-{m.spec.quote}": m for m in sim.market.symbols.values()}
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
        ]
        for path, name, handler in rest:
            app.router.add_get(path, self._rest(name, handler))
        app.router.add_get("/ws/v5/public", self.websocket)
        app.router.add_get("/ws/v5/business", self.websocket)

    def _rest(self, name: str, handler: Callable[[web.Request], Awaitable[Any]]
              ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:  # fmt: skip
        async def wrapped(request: web.Request) -> web.StreamResponse:
            self.sim.stats["rest_requests"] += 1
            now = time.monotonic()
            calls = self._calls.setdefault(name, deque())
            while calls and calls[0] <= now - 2.0:
                calls.popleft()
            forced = self.sim.faults.take_rest_fault("okx")
            try:
                if forced is not None:
                    status = forced.status
                    raise OkxError(status, "50011" if status == 429 else "50001",
                                   "Too Many Requests" if status == 429 else "Service temporarily unavailable")  # fmt: skip
                if len(calls) >= RATE_LIMITS[name]:
                    raise OkxError(429, "50011", "Too Many Requests")
                calls.append(now)
                data = await handler(request)
            except OkxError as err:
                return web.Response(
                    body=orjson.dumps({"code": err.code, "msg": err.msg, "data": []}),
                    status=err.status, content_type="application/json",
                )  # fmt: skip
            return web.Response(body=orjson.dumps({"code": "0", "msg": "", "data": data}),
                                content_type="application/json")  # fmt: skip

        return wrapped

    def _market(self, request: web.Request) -> SymbolMarket:
        inst = request.query.get("instId")
        if not inst:
            raise OkxError(400, "50014", "Parameter instId can not be empty.")
        m = self.inst.get(inst)
        if m is None:
            raise OkxError(400, "51001", "Instrument ID does not exist.")
        return m

    # --- REST: endpoints ---------------------------------------------------------------

    async def server_time(self, request: web.Request) -> Any:
        return [{"ts": str(self.sim.now_ms())}]

    async def instruments(self, request: web.Request) -> Any:
        kind = request.query.get("instType")
        if not kind:
            raise OkxError(400, "50014", "Parameter instType can not be empty.")
        if kind != "SPOT":
            return []
        return [
            {"instType": "SPOT", "instId": inst, "uly": "", "instFamily": "", "baseCcy": m.spec.base,
             "quoteCcy": m.spec.quote, "settleCcy": "", "ctVal": "", "ctMult": "", "ctValCcy": "",
             "optType": "", "stk": "", "listTime": "1606468572000", "expTime": "", "lever": "10",
             "tickSz": num(1, m.spec.price_decimals), "lotSz": num(1, m.spec.qty_decimals),
             "minSz": num(1, m.spec.qty_decimals), "ctType": "", "alias": "", "state": "live",
             "maxLmtSz": "9999999999", "maxMktSz": "1000000", "maxTwapSz": "", "maxIcebergSz": "",
             "maxTriggerSz": "", "maxStopSz": "", "ruleType": "normal"}
            for inst, m in self.inst.items()
        ]  # fmt: skip

    def _ticker(self, inst: str, m: SymbolMarket, now: int) -> dict[str, str]:
        t = m.ticker()
        pd, qd = m.spec.price_decimals, m.spec.qty_decimals
        _, bids, asks = m.book(1)
        bid, bid_q = bids[0] if bids else (0, 0)
        ask, ask_q = asks[0] if asks else (0, 0)
        return {"instType": "SPOT", "instId": inst, "last": num(t["last"], pd),
                "lastSz": num(t["last_qty"], qd), "askPx": num(ask, pd), "askSz": num(ask_q, qd),
                "bidPx": num(bid, pd), "bidSz": num(bid_q, qd), "open24h": num(t["open"], pd),
                "high24h": num(t["high"], pd), "low24h": num(t["low"], pd),
                "volCcy24h": num(t["quote"], pd + qd), "vol24h": num(t["volume"], qd),
                "sodUtc0": num(t["open"], pd), "sodUtc8": num(t["open"], pd), "ts": str(now)}  # fmt: skip

    async def ticker(self, request: web.Request) -> Any:
        m = self._market(request)
        return [self._ticker(request.query["instId"], m, self.sim.now_ms())]

    async def tickers(self, request: web.Request) -> Any:
        kind = request.query.get("instType")
        if not kind:
            raise OkxError(400, "50014", "Parameter instType can not be empty.")
        now = self.sim.now_ms()
        return [self._ticker(i, m, now) for i, m in self.inst.items()] if kind == "SPOT" else []

    def _levels(self, m: SymbolMarket, levels: list[tuple[int, int]]) -> list[list[str]]:
        pd, qd = m.spec.price_decimals, m.spec.qty_decimals
        return [[num(p, pd), num(q, qd), "0", "1"] for p, q in levels]

    async def books(self, request: web.Request) -> Any:
        m = self._market(request)
        sz = _int(request.query, "sz", 1)
        if not 1 <= sz <= BOOK_LEVELS:
            raise OkxError(400, "51000", "Parameter sz error")
        _, bids, asks = m.book(sz)
        return [
            {
                "asks": self._levels(m, asks),
                "bids": self._levels(m, bids),
                "ts": str(self.sim.now_ms()),
            }
        ]

    async def candles(self, request: web.Request) -> Any:
        return self._candles(request, history=False)

    async def history_candles(self, request: web.Request) -> Any:
        return self._candles(request, history=True)

    def _candles(self, request: web.Request, history: bool) -> Any:
        m = self._market(request)
        q = request.query
        name = q.get("bar", "1m")
        if name not in BARS:
            raise OkxError(400, "51000", "Parameter bar error")
        iv = Interval(BARS[name])
        cap = 100 if history else 300
        limit = _int(q, "limit", 100)
        if limit < 1:
            raise OkxError(400, "51000", "Parameter limit error")
        limit = min(limit, cap)
        after, before = _int(q, "after", None), _int(q, "before", None)
        newest = iv.open_of(m.now - 1)
        hi = newest if after is None else min(newest, iv.open_of(after - 1))
        lo = iv.open_of(self.sim.market.genesis)
        if lo < self.sim.market.genesis:
            lo = iv.next_open(lo)
        if not history:  # /candles serves the latest 1440 bars only
            lo = max(lo, _back(iv, newest, 1439))
        if before is not None:
            lo = max(lo, iv.next_open(iv.open_of(before)))
        if hi < lo:
            return []
        if before is not None and after is None:
            rows = m.klines(iv, lo, hi, 10**9)[-limit:]  # OKX: the newest bars after ``before``
        else:
            rows = m.klines(iv, max(lo, _back(iv, hi, limit - 1)), hi, limit)
        pd, qd = m.spec.price_decimals, m.spec.qty_decimals
        out = []
        for t, o, h, l, c, v, _close_time, qv, _n, _tv, _tq, closed in reversed(rows):
            out.append([str(t), num(o, pd), num(h, pd), num(l, pd), num(c, pd), num(v, qd),
                        num(qv, pd + qd), num(qv, pd + qd), "1" if closed else "0"])  # fmt: skip
        return out

    # --- WebSocket ---------------------------------------------------------------------

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True, max_msg_size=1 << 20)
        await ws.prepare(request)
        conn = OkxConnection(ws, request, business=request.path.endswith("/business"))
        self.connections.add(conn)
        self.sim.stats["ws_connections"] += 1
        writer = asyncio.create_task(self._writer(conn))
        keeper = asyncio.create_task(self._keepalive(conn))
        try:
            async for msg in ws:
                if self.sim.faults.stalled("okx"):
                    continue
                if msg.type == WSMsgType.TEXT:
                    if msg.data == "ping":
                        self._enqueue(conn, b"pong")
                    else:
                        for reply in self._control(conn, msg.data):
                            self._enqueue(conn, reply)
                elif msg.type == WSMsgType.BINARY:
                    self._enqueue(conn, self._error(conn, "60012", "Invalid request: binary frame"))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            writer.cancel()
            keeper.cancel()
            self._drop(conn)
        return ws

    @staticmethod
    def _error(conn: OkxConnection, code: str, msg: str) -> bytes:
        return orjson.dumps({"event": "error", "code": code, "msg": msg, "connId": conn.conn_id})

    def _control(self, conn: OkxConnection, text: str) -> list[bytes]:
        try:
            msg = orjson.loads(text)
        except orjson.JSONDecodeError:
            return [self._error(conn, "60012", f"Invalid request: {text[:200]}")]
        if not isinstance(msg, dict) or msg.get("op") not in ("subscribe", "unsubscribe"):
            return [self._error(conn, "60012", f"Invalid request: {text[:200]}")]
        args = msg.get("args")
        if not isinstance(args, list) or not args:
            return [self._error(conn, "60012", f"Invalid request: {text[:200]}")]
        now = time.monotonic()
        while conn.requests and conn.requests[0] <= now - 3600:
            conn.requests.popleft()
        if len(conn.requests) >= 480:
            return [self._error(conn, "60014", "Requests too frequent.")]
        conn.requests.append(now)
        op = msg["op"]
        replies = []
        for arg in args:
            if not isinstance(arg, dict) or not isinstance(arg.get("channel"), str):
                replies.append(
                    self._error(conn, "60012", f"Invalid request: {orjson.dumps(arg).decode()}")
                )
                continue
            channel, inst = arg["channel"], arg.get("instId", "")
            valid = (
                inst in self.inst
                and (channel.startswith("candle") and channel[6:] in BARS if conn.business
                     else channel in PUBLIC_CHANNELS)
            )  # fmt: skip
            if not valid:
                replies.append(self._error(
                    conn, "60018",
                    f"Wrong URL or channel:{channel},instId:{inst} doesn't exist. Please use the correct URL, channel and parameters referring to API document.",
                ))  # fmt: skip
                continue
            key = (channel, inst)
            replies.append(orjson.dumps({"event": op, "arg": {"channel": channel, "instId": inst},
                                         "connId": conn.conn_id}))  # fmt: skip
            if op == "subscribe":
                conn.topics.add(key)
                self.subs.setdefault(key, set()).add(conn)
                if channel == "books":
                    replies.append(self._book_snapshot(conn, inst))
            else:
                self._unsubscribe(conn, key)
        return replies

    def _book_snapshot(self, conn: OkxConnection, inst: str) -> bytes:
        m = self.inst[inst]
        uid, bids, asks = m.book(BOOK_LEVELS)
        self._views.setdefault(inst, (dict(bids), dict(asks)))
        b, a = self._levels(m, bids), self._levels(m, asks)
        seq = self.seq_id(m.spec.symbol, uid)
        conn.book_seq[inst] = seq
        conn.book_pushed[inst] = time.monotonic()
        return orjson.dumps({"arg": {"channel": "books", "instId": inst}, "action": "snapshot",
                             "data": [{"asks": a, "bids": b, "ts": str(m.now), "checksum": self._checksum(b, a),
                                       "prevSeqId": -1, "seqId": seq}]})  # fmt: skip

    def seq_id(self, symbol: str, update_id: int) -> int:
        """OKX's seqId for the market's book update id."""
        return update_id - self._seq_offset.get(self._inst_of[symbol], 0)

    def _checksum(self, bids: list[list[str]], asks: list[list[str]]) -> int:
        """0 as OKX sends since it retired the checksum; the CRC32 with ``okx_checksums``."""
        return checksum(bids, asks) if self.sim.okx_checksums else 0

    def _heartbeat(self, conn: OkxConnection, inst: str) -> None:
        """OKX's push for a book that has not changed: empty sides, seqId == prevSeqId."""
        seq = conn.book_seq.get(inst)
        if seq is None:
            return
        m = self.inst[inst]
        view_bids, view_asks = self._views.get(inst, ({}, {}))
        b = self._levels(m, sorted(view_bids.items(), reverse=True)[:25])
        a = self._levels(m, sorted(view_asks.items())[:25])
        conn.book_pushed[inst] = time.monotonic()
        self._enqueue(conn, orjson.dumps({"arg": {"channel": "books", "instId": inst}, "action": "update",
                                          "data": [{"asks": [], "bids": [], "ts": str(self.sim.now_ms()),
                                                    "checksum": self._checksum(b, a), "prevSeqId": seq,
                                                    "seqId": seq}]}))  # fmt: skip

    def _unsubscribe(self, conn: OkxConnection, key: tuple[str, str]) -> None:
        conn.topics.discard(key)
        if key[0] == "books":
            conn.book_seq.pop(key[1], None)
            conn.book_pushed.pop(key[1], None)
        holders = self.subs.get(key)
        if holders is not None:
            holders.discard(conn)
            if not holders:
                del self.subs[key]
                if key[0] == "books":
                    self._views.pop(key[1], None)

    def _drop(self, conn: OkxConnection) -> None:
        for key in list(conn.topics):
            self._unsubscribe(conn, key)
        self.connections.discard(conn)

    def _enqueue(self, conn: OkxConnection, data: bytes) -> None:
        if conn.closing:
            return
        try:
            conn.queue.put_nowait(data)
        except asyncio.QueueFull:
            conn.closing = True
            asyncio.get_running_loop().create_task(self._close(conn, 1008, b"Too slow"))

    async def _writer(self, conn: OkxConnection) -> None:
        while True:
            data = await conn.queue.get()
            if self.sim.faults.stalled("okx"):
                continue
            try:
                await conn.ws.send_frame(data, WSMsgType.TEXT)
            except (ConnectionResetError, RuntimeError):
                return
            conn.last_push = time.monotonic()

    async def _keepalive(self, conn: OkxConnection) -> None:
        sim = self.sim
        while not conn.ws.closed:
            await asyncio.sleep(min(1.0, sim.okx_idle_timeout / 4))
            now = time.monotonic()
            if now - conn.opened >= sim.max_connection_age:
                await self._close(conn, 1000, b"Connection lifetime expired")
                return
            if now - conn.last_push >= sim.okx_idle_timeout:
                await self._close(conn, 4004, b"No data received in 30s.")
                return
            for inst, pushed in list(conn.book_pushed.items()):
                if now - pushed >= sim.okx_book_heartbeat and not self.sim.faults.stalled("okx"):
                    self._heartbeat(conn, inst)

    # --- faults ------------------------------------------------------------------------

    def skip_books(self, events: int, symbol: str | None) -> None:
        """Lose the next ``events`` book updates: clients see a break in the prevSeqId chain."""
        self._skip_books[symbol] = self._skip_books.get(symbol, 0) + events

    def book_heartbeat(self, symbol: str | None) -> int:
        """Send OKX's "nothing changed" push for the book(s) now; returns how many were sent."""
        sent = 0
        for conn in list(self.connections):
            for inst in list(conn.book_seq):
                if symbol is None or self.inst[inst].spec.symbol == symbol:
                    self._heartbeat(conn, inst)
                    sent += 1
        return sent

    def reset_seq(self, symbol: str | None) -> None:
        """Restart the seqId of the book(s) at their next update, as OKX's maintenance does:
        that update's seqId (0) is below its prevSeqId, and the chain goes on from it."""
        self._resets.update([symbol] if symbol else self._inst_of)

    def corrupt_checksums(self, events: int, symbol: str | None) -> None:
        """Send the next ``events`` book updates with a wrong checksum."""
        self._corrupt[symbol] = self._corrupt.get(symbol, 0) + events

    def send_malformed(self, kind: str) -> int:
        inst = next(iter(self.inst))
        bodies = {
            "truncated": b'{"arg":{"channel":"trades","instId":"' + inst.encode() + b'"},"data":[{"px',
            "garbage": b"\x00\x01 this is not json",
            "bad_field": orjson.dumps({"arg": {"channel": "trades", "instId": inst},
                                       "data": [{"instId": inst, "tradeId": "x", "px": "abc", "sz": None,
                                                 "side": "buy", "ts": "1"}]}),
            "unknown_event": orjson.dumps({"arg": {"channel": "surprise", "instId": inst}, "data": [{}]}),
        }  # fmt: skip
        if kind not in bodies:
            raise ValueError(
                f"unknown malformed kind {kind!r}: expected one of {', '.join(bodies)}"
            )
        for conn in list(self.connections):
            self._enqueue(conn, bodies[kind])
        return len(self.connections)

    async def shutdown_notice(self) -> int:
        """Notice 64008 (closing for a service upgrade) on every connection, then close them."""
        return await self.announce_and_close(
            lambda conn: orjson.dumps({
                "event": "notice", "code": "64008", "connId": conn.conn_id,
                "msg": "The connection will soon be closed for a service upgrade. Please reconnect.",
            }), 1012, b"Service upgrade")  # fmt: skip

    # --- channel fan-out ---------------------------------------------------------------

    def publish(self, results: dict[str, StepResult]) -> None:
        if not self.subs:
            return
        for symbol, r in results.items():
            inst = self._inst_of[symbol]
            self._publish(inst, self.inst[inst], r)

    def _send(self, key: tuple[str, str], payload: dict[str, Any]) -> None:
        conns = self.subs.get(key)
        if conns:
            raw = orjson.dumps(payload)
            for conn in conns:
                self._enqueue(conn, raw)

    @staticmethod
    def _take(faults: dict[str | None, int], symbol: str) -> bool:
        key = symbol if faults.get(symbol) else None if faults.get(None) else ""
        if key == "":
            return False
        faults[key] -= 1
        if not faults[key]:
            del faults[key]
        return True

    def _publish(self, inst: str, m: SymbolMarket, r: StepResult) -> None:
        subs = self.subs
        pd, qd = m.spec.price_decimals, m.spec.qty_decimals
        arg = {"instId": inst}
        if ("trades", inst) in subs and r.trades:
            self._send(("trades", inst), {"arg": {"channel": "trades", **arg}, "data": [
                {"instId": inst, "tradeId": str(t.trade_id), "px": num(t.price, pd), "sz": num(t.qty, qd),
                 "side": "sell" if t.buyer_is_maker else "buy", "ts": str(t.time), "count": "1"}
                for t in r.trades]})  # fmt: skip
        if ("tickers", inst) in subs:
            self._send(("tickers", inst), {"arg": {"channel": "tickers", **arg},
                                           "data": [self._ticker(inst, m, r.end)]})  # fmt: skip
        for okx_bar, iv in BARS.items():
            key = (f"candle{okx_bar}", inst)
            if key not in subs:
                continue
            closed = r.closed.get(iv)
            if closed is not None:
                self._send(
                    key, {"arg": {"channel": key[0], **arg}, "data": [self._candle(m, closed, "1")]}
                )
            self._send(
                key,
                {"arg": {"channel": key[0], **arg}, "data": [self._candle(m, m.candles[iv], "0")]},
            )
        if r.depth is not None and ("books", inst) in subs:
            if m.spec.symbol in self._resets:
                self._resets.discard(m.spec.symbol)
                self._seq_offset[inst] = r.depth[1]  # this update's seqId is 0
            last = self.seq_id(m.spec.symbol, r.depth[1])
            bids, asks = self._view_changes(inst, m)
            skip = self._take(self._skip_books, m.spec.symbol) if self._skip_books else False
            bad = self._take(self._corrupt, m.spec.symbol) if self._corrupt and not skip else False
            if self.sim.okx_checksums or bad:
                _, top_b, top_a = m.book(25)
                good = checksum(self._levels(m, top_b), self._levels(m, top_a))
                sent_sum = ((good ^ 0x5A5A) or 1) if bad else good
            else:
                sent_sum = 0
            data = {"asks": self._levels(m, asks), "bids": self._levels(m, bids), "ts": str(r.end),
                    "checksum": sent_sum, "seqId": last}  # fmt: skip
            pushed = time.monotonic()
            for conn in list(subs[("books", inst)]):
                prev = conn.book_seq.get(inst)
                if prev is None:
                    continue
                conn.book_seq[inst] = last  # pushed, even when lost on the way
                conn.book_pushed[inst] = pushed
                if not skip:
                    self._enqueue(conn, orjson.dumps({"arg": {"channel": "books", **arg}, "action": "update",
                                                      "data": [{**data, "prevSeqId": prev}]}))  # fmt: skip
        if ("bbo-tbt", inst) in subs or ("books5", inst) in subs:
            uid, bids, asks = m.book(5)
            b, a = self._levels(m, bids), self._levels(m, asks)
            if ("bbo-tbt", inst) in subs and b and a:
                self._send(("bbo-tbt", inst), {"arg": {"channel": "bbo-tbt", **arg}, "data": [
                    {"asks": a[:1], "bids": b[:1], "ts": str(r.end), "seqId": uid}]})  # fmt: skip
            if ("books5", inst) in subs:
                self._send(("books5", inst), {"arg": {"channel": "books5", **arg}, "data": [
                    {"asks": a, "bids": b, "ts": str(r.end), "instId": inst, "seqId": uid}]})  # fmt: skip

    def _view_changes(
        self, inst: str, m: SymbolMarket
    ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """What changed in the 400-level view since the last push: levels that changed, came
        in (size) or left it (size 0), best first."""
        _, bids, asks = m.book(BOOK_LEVELS)
        old_bids, old_asks = self._views.get(inst, ({}, {}))
        new_bids, new_asks = dict(bids), dict(asks)
        self._views[inst] = (new_bids, new_asks)

        def diff(old: dict[int, int], new: dict[int, int], reverse: bool) -> list[tuple[int, int]]:
            changed = [(p, q) for p, q in new.items() if old.get(p) != q]
            changed += [(p, 0) for p in old if p not in new]
            return sorted(changed, reverse=reverse)

        return diff(old_bids, new_bids, True), diff(old_asks, new_asks, False)

    @staticmethod
    def _candle(m: SymbolMarket, c: _Candle, confirm: str) -> list[str]:
        pd, qd = m.spec.price_decimals, m.spec.qty_decimals
        o, h, lo, cl = c.ohlc()
        quote = num(c.q, pd + qd)
        return [str(c.open_time), num(o, pd), num(h, pd), num(lo, pd), num(cl, pd), num(c.v, qd),
                quote, quote, confirm]  # fmt: skip


def _int(q: Any, name: str, default: int | None) -> Any:
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"-?[0-9]{1,20}", raw):
        raise OkxError(400, "51000", f"Parameter {name} error")
    return int(raw)


def _back(iv: Interval, t: int, n: int) -> int:
    """The open ``n`` candles before ``t``."""
    if not iv.calendar:
        return t - n * iv.ms
    for _ in range(n):
        t = iv.open_of(t - 1)
    return t
