"""The simulated Bybit's spot WebSocket: ``/v5/public/spot`` with Bybit's JSON ``op`` requests
and answers, the 10-args rule, the ``u`` chain of ``orderbook.{50,200,1000}`` (level 1 is
snapshot-only), the JSON ping, the cut of a connection that stops pinging, and the faults.

Where Bybit's docs and captures are silent the face takes the reading a client must survive
either way: ``req_id`` comes back as a string (what the venue most likely does); one bad topic
refuses its whole request, so a client never assumes part of a refused request is live; a
repeated subscribe gets no answer at all (as captured on spot), so a client must not wait for
one; a connection is cut without a close frame. Refusals of a depth or channel Bybit spot has
no handler for reuse the venue's ``error:handler not found,topic:...`` text; the args-length
refusal's text is the simulator's own (clients should read ``success``, not prose).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from marketlab.sim.bybit.rest import (
    FULL_DEPTH,
    INTERVALS,
    book_seq,
    levels,
    num,
    ticker_24h,
    trade_id,
    trade_seq,
)
from marketlab.sim.face import HOSTILE_FRAMES, OutageFace, on_loop, request_json
from marketlab.sim.host import BybitHost
from marketlab.sim.market import Candle, StepResult, VenueMarket

log = logging.getLogger("marketlab.sim.bybit")

MAX_ARGS = 10  # topics in one spot (un)subscribe request
MAX_ARGS_CHARS = 21_000  # total length of the topics on one public connection
DELTA_DEPTHS = (50, 200, FULL_DEPTH)  # a snapshot, then deltas chained by ``u``
DEPTHS = ("1", "50", "200", "1000")  # spot depths; 500 is gone, others never were
LEVEL1_REPEAT_MS = 3000  # an unchanged level-1 book is sent again after this, same ``u``
TRADES_PER_MESSAGE = 1024
PUSH_DELAY_MS = 3  # from the matching engine (``cts``) to the push (``ts``)


@dataclass(eq=False)
class BybitConnection:
    ws: web.WebSocketResponse
    request: web.Request
    opened: float = field(default_factory=time.monotonic)
    conn_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    topics: set[str] = field(default_factory=set)
    queue: asyncio.Queue[tuple[float, bytes | None]] = field(
        default_factory=lambda: asyncio.Queue(maxsize=20_000)
    )
    last_ping: float = field(default_factory=time.monotonic)
    closing: bool = False


class BybitWs(OutageFace):
    """WebSocket handling, faults and fan-out of :class:`~marketlab.sim.bybit.BybitFace`."""

    venue = "bybit"
    MALFORMED_KINDS = HOSTILE_FRAMES
    sim: BybitHost
    markets: dict[str, VenueMarket]
    subs: dict[str, set[BybitConnection]]
    connections: set[BybitConnection]
    _u: dict[tuple[str, int], int]
    _views: dict[tuple[str, int], tuple[dict[int, int], dict[int, int]]]
    _top: dict[str, tuple[list[tuple[int, int]], list[tuple[int, int]], int]]
    _skip: dict[str | None, int]
    _resets: set[str]
    loop: asyncio.AbstractEventLoop | None

    # --- WebSocket ---------------------------------------------------------------------

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        refused = self.refuse_in_outage(request)
        if refused is not None:
            return refused
        ws = web.WebSocketResponse(autoping=True, max_msg_size=1 << 20)
        await ws.prepare(request)
        conn = BybitConnection(ws, request)
        self.connections.add(conn)
        self.sim.stats["ws_connections"] += 1
        writer = asyncio.create_task(self._writer(conn))
        keeper = asyncio.create_task(self._keepalive(conn))
        try:
            async for msg in ws:
                if self.sim.faults.stalled(self.venue):
                    continue  # a stalled link answers nothing, pings included
                if msg.type == WSMsgType.TEXT:
                    for reply in self._control(conn, msg.data):
                        self._enqueue(conn, reply)
                elif msg.type == WSMsgType.BINARY:
                    self._enqueue(conn, self._undecodable(conn, repr(msg.data)))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            writer.cancel()
            keeper.cancel()
            self._drop(conn)
        return ws

    @staticmethod
    def _answer(
        conn: BybitConnection, op: str, ok: bool, ret_msg: str, req_id: Any, conn_id: bool = True
    ) -> bytes:
        """Bybit spot's answer to a request: ``req_id`` only when one was sent, as a string."""
        body: dict[str, Any] = {"success": ok, "ret_msg": ret_msg}
        if conn_id:
            body["conn_id"] = conn.conn_id
        if req_id is not None:
            body["req_id"] = req_id if isinstance(req_id, str) else orjson.dumps(req_id).decode()
        body["op"] = op
        return orjson.dumps(body)

    def _undecodable(self, conn: BybitConnection, text: str) -> bytes:
        found = text.lstrip()[:1] or "EOF"
        return self._answer(
            conn,
            "",
            False,
            "Failed to decode incoming data:readObjectStart: expect { or n, but found "
            f"{found}, error found in #1 byte of ...|{text[:10]}|..., bigger context "
            f"...|{text[:50]}|...",
            None,
        )

    def _control(self, conn: BybitConnection, text: str) -> list[bytes]:
        try:
            msg = request_json(text)
        except orjson.JSONDecodeError:
            return [self._undecodable(conn, text)]
        if not isinstance(msg, dict):
            return [self._undecodable(conn, text)]
        op, req_id = msg.get("op"), msg.get("req_id")
        if op == "ping":
            conn.last_ping = time.monotonic()
            return [self._answer(conn, "ping", True, "pong", req_id)]
        if op not in ("subscribe", "unsubscribe"):
            return [self._answer(conn, str(op or ""), False, "error:invalid op", req_id)]
        args = msg.get("args")
        if not isinstance(args, list) or not args:
            return [self._answer(conn, op, False, "args is empty", req_id)]
        if len(args) > MAX_ARGS:
            return [self._answer(conn, op, False, f"args size >{MAX_ARGS}", req_id)]
        for arg in args:  # one bad topic refuses the request: nothing of it is (un)subscribed
            problem = self._check_topic(arg)
            if problem is not None:
                return [self._answer(conn, op, False, problem, req_id)]
        topics: list[str] = list(dict.fromkeys(args))
        if op == "unsubscribe":
            for topic in topics:
                self._unsubscribe(conn, topic)
            return [self._answer(conn, op, True, "unsubscribe", req_id, conn_id=False)]
        new = [t for t in topics if t not in conn.topics]
        if not new:
            return []  # Bybit spot says nothing to a subscribe it already holds
        if sum(map(len, conn.topics)) + sum(map(len, new)) > MAX_ARGS_CHARS:
            return [self._answer(conn, op, False, f"args length exceeds {MAX_ARGS_CHARS}", req_id)]
        replies = [self._answer(conn, op, True, "subscribe", req_id)]
        for topic in new:
            conn.topics.add(topic)
            self.subs.setdefault(topic, set()).add(conn)
            if topic.startswith("orderbook."):
                replies.append(self._book_snapshot(topic))
        return replies

    def _check_topic(self, topic: Any) -> str | None:
        """Bybit spot's refusal of a topic, or None: topics and symbols are case-sensitive."""
        if not isinstance(topic, str):
            return f"error:handler not found,topic:{orjson.dumps(topic).decode()}"
        parts = topic.split(".")
        shape = {"publicTrade": 2, "tickers": 2, "orderbook": 3, "kline": 3}
        if shape.get(parts[0]) != len(parts):
            return f"error:handler not found,topic:{topic}"
        if parts[0] == "kline" and parts[1] not in INTERVALS:
            return f"Invalid kline type :[{topic}]"
        if parts[0] == "orderbook" and parts[1] not in DEPTHS:
            return f"error:handler not found,topic:{topic}"
        if parts[-1] not in self.markets:
            return f"Invalid symbol :[{topic}]"
        return None

    def _book_snapshot(self, topic: str) -> bytes:
        """The snapshot a new subscriber gets: the book as its stream has it, with the stream's
        current ``u`` (the first delta after it is ``u`` + 1)."""
        _, depth_text, symbol = topic.split(".")
        depth, m = int(depth_text), self.markets[symbol]
        key = (symbol, depth)
        if key not in self._u:
            self._u[key] = 1_000_000 + zlib.crc32(topic.encode()) % 9_000_000
        if depth == 1:
            _, bids, asks = m.book(1)
            self._top.setdefault(symbol, (bids, asks, m.now))
            return self._book_message(topic, m, "snapshot", bids, asks, self._u[key])
        if key not in self._views:
            _, b, a = m.book(depth)
            self._views[key] = (dict(b), dict(a))
        view_b, view_a = self._views[key]
        bids = sorted(view_b.items(), reverse=True)
        asks = sorted(view_a.items())
        return self._book_message(topic, m, "snapshot", bids, asks, self._u[key])

    def _book_message(
        self,
        topic: str,
        m: VenueMarket,
        kind: str,
        bids: list[tuple[int, int]],
        asks: list[tuple[int, int]],
        u: int,
    ) -> bytes:
        """Spot's order: ``ts`` before ``type``, ``cts`` (the engine's time) at the top level."""
        cts = m.now
        data = {"s": m.spec.symbol, "b": levels(m, bids), "a": levels(m, asks)}
        return orjson.dumps(
            {
                "topic": topic,
                "ts": cts + PUSH_DELAY_MS,
                "type": kind,
                "data": {**data, "u": u, "seq": book_seq(m)},
                "cts": cts,
            }
        )

    def _unsubscribe(self, conn: BybitConnection, topic: str) -> None:
        conn.topics.discard(topic)
        holders = self.subs.get(topic)
        if holders is None:
            return
        holders.discard(conn)
        if holders:
            return
        del self.subs[topic]
        if topic.startswith("orderbook."):
            _, depth, symbol = topic.split(".")
            self._views.pop((symbol, int(depth)), None)
            if depth == "1":
                self._top.pop(symbol, None)

    def _drop(self, conn: BybitConnection) -> None:
        for topic in list(conn.topics):
            self._unsubscribe(conn, topic)
        self.connections.discard(conn)

    async def _keepalive(self, conn: BybitConnection) -> None:
        """Cut a connection that has not pinged for ``bybit_idle_timeout`` (no close frame).

        Bybit's docs cut a connection after 10 minutes with "no ping-pong and no stream data";
        the simulator holds clients to the ping half alone, the stricter reading, so a client
        that keeps its connection alive here pings as Bybit asks (every 20 s)."""
        sim = self.sim
        while not conn.ws.closed:
            await asyncio.sleep(min(1.0, sim.bybit_idle_timeout / 4))
            now = time.monotonic()
            if now - conn.opened >= sim.max_connection_age:
                await self._close(conn, 1000, b"Connection lifetime expired")
                return
            if now - conn.last_ping >= sim.bybit_idle_timeout:
                log.info("cutting a Bybit connection that stopped pinging")
                conn.closing = True
                if conn.request.transport is not None:
                    conn.request.transport.abort()
                self._drop(conn)
                return

    def subscribed_u(self, symbol: str) -> int:
        """The ``u`` of ``symbol``'s deepest delta book stream with subscribers: where a client
        of it stands once everything pushed has arrived (to compare its book with the market's
        while the exchange is paused). LookupError when no such stream has subscribers."""
        depths = [depth for depth in DELTA_DEPTHS if self.subs.get(f"orderbook.{depth}.{symbol}")]
        if not depths:
            raise LookupError(f"no book stream of {symbol} has subscribers")
        return self._u[(symbol, max(depths))]

    # --- faults ------------------------------------------------------------------------

    @on_loop
    def skip_books(self, events: int = 1, symbol: str | None = None) -> None:
        """Lose the next ``events`` book pushes of a symbol (every delta depth at once):
        subscribers see ``u`` jump past the previous ``u`` + 1."""
        self._skip[symbol] = self._skip.get(symbol, 0) + events

    @on_loop
    def reset_books(self, symbol: str | None = None) -> None:
        """Restart the book streams of ``symbol`` (of every symbol) at the next book change,
        as a restart of Bybit's service does: each subscriber gets a snapshot with ``u`` = 1,
        and the chain goes on from it (the REST book's ``u`` too)."""
        self._resets.update([symbol] if symbol else self.markets)

    @on_loop
    def send_malformed(self, kind: str) -> int:
        """Send one bad frame to every connection (truncated, garbage, bad_field,
        unknown_event), or a well-formed trade with hostile numbers (id_past_int64,
        nan_price). Returns how many connections got it."""
        symbol = next(iter(self.markets))
        topic = f"publicTrade.{symbol}"
        bodies = {
            "truncated": b'{"topic":"' + topic.encode() + b'","type":"snapshot","data":[{"T',
            "garbage": b"\x00\x01 this is not json",
            "bad_field": orjson.dumps(
                {
                    "topic": topic,
                    "type": "snapshot",
                    "ts": 1,
                    "data": [{"T": "x", "s": symbol, "S": "Up", "v": None, "p": "abc", "i": 7}],
                }
            ),
            "unknown_event": orjson.dumps(
                {"topic": f"surprise.{symbol}", "type": "snapshot", "ts": 1, "data": {}}
            ),
            "id_past_int64": self._trade_push(symbol, "9223372036854775808", "1.5"),
            "nan_price": self._trade_push(symbol, "1", "nan"),
        }
        if kind not in bodies:
            raise ValueError(
                f"unknown malformed kind {kind!r}: expected one of {', '.join(bodies)}"
            )
        for conn in list(self.connections):
            self._enqueue(conn, bodies[kind])
        return len(self.connections)

    def _trade_push(self, symbol: str, trade: str, price: str) -> bytes:
        now = self.sim.now_ms()
        item = {"T": now, "s": symbol, "S": "Buy", "v": "1", "p": price, "i": trade}
        data = [{**item, "BT": False, "RPI": False, "seq": 1}]
        return orjson.dumps(
            {"topic": f"publicTrade.{symbol}", "type": "snapshot", "ts": now, "data": data}
        )

    @staticmethod
    def _take(faults: dict[str | None, int], symbol: str) -> bool:
        key = symbol if faults.get(symbol) else None if faults.get(None) else ""
        if key == "":
            return False
        faults[key] -= 1
        if not faults[key]:
            del faults[key]
        return True

    # --- fan-out -----------------------------------------------------------------------

    def publish(self, results: dict[str, StepResult]) -> None:
        """Push one market second; the 1000-level ``u`` moves with every book change even
        when nobody watches, since the REST book carries it."""
        for symbol, r in results.items():
            m = self.markets[symbol]
            self._publish_books(symbol, m, r)
            if self.subs:
                self._publish(symbol, m, r)

    def _send(self, topic: str, payload: dict[str, Any]) -> None:
        conns = self.subs.get(topic)
        if conns:
            raw = orjson.dumps(payload)
            for conn in conns:
                self._enqueue(conn, raw)

    def _publish(self, symbol: str, m: VenueMarket, r: StepResult) -> None:
        subs = self.subs
        topic = f"publicTrade.{symbol}"
        if topic in subs and r.trades:
            pd, qd = m.spec.price_decimals, m.spec.qty_decimals
            items = [
                {
                    "T": t.time,
                    "s": symbol,
                    "S": "Sell" if t.buyer_is_maker else "Buy",
                    "v": num(t.qty, qd),
                    "p": num(t.price, pd),
                    "i": trade_id(symbol, t.trade_id),
                    "BT": False,
                    "RPI": False,
                    "seq": trade_seq(m, t),
                }
                for t in r.trades
            ]
            for at in range(0, len(items), TRADES_PER_MESSAGE):
                self._send(
                    topic,
                    {
                        "topic": topic,
                        "type": "snapshot",
                        "ts": r.end + PUSH_DELAY_MS,
                        "data": items[at : at + TRADES_PER_MESSAGE],
                    },
                )
        topic = f"tickers.{symbol}"
        if topic in subs:  # spot tickers are snapshots, without the best bid and ask
            self._send(
                topic,
                {
                    "topic": topic,
                    "ts": r.end + PUSH_DELAY_MS,
                    "type": "snapshot",
                    "cs": book_seq(m),
                    "data": ticker_24h(m),
                },
            )
        for name, iv in INTERVALS.items():
            topic = f"kline.{name}.{symbol}"
            if topic not in subs:
                continue
            closed = r.closed.get(iv)
            for candle, confirm in ((closed, True), (m.candles[iv], False)):
                if candle is not None:
                    self._send(
                        topic,
                        {
                            "type": "snapshot",
                            "topic": topic,
                            "data": [self._kline(m, name, candle, confirm, r.end)],
                            "ts": r.end + PUSH_DELAY_MS,
                        },
                    )

    @staticmethod
    def _kline(m: VenueMarket, name: str, c: Candle, confirm: bool, now: int) -> dict[str, Any]:
        pd, qd = m.spec.price_decimals, m.spec.qty_decimals
        o, h, lo, cl = c.ohlc()
        return {
            "start": c.open_time,
            "end": c.next_open - 1,  # inclusive
            "interval": name,
            "open": num(o, pd),
            "close": num(cl, pd),
            "high": num(h, pd),
            "low": num(lo, pd),
            "volume": num(c.v, qd),
            "turnover": num(c.q, pd + qd),
            "confirm": confirm,
            "timestamp": now,
        }

    def _publish_books(self, symbol: str, m: VenueMarket, r: StepResult) -> None:
        if r.depth is None:  # the book did not change: only level 1 may repeat itself
            self._publish_level1(symbol, m, r, reset=False)
            return
        reset = symbol in self._resets
        self._resets.discard(symbol)
        lost: bool | None = None  # decided once per second, for every depth of the symbol
        for depth in DELTA_DEPTHS:
            key, topic = (symbol, depth), f"orderbook.{depth}.{symbol}"
            conns = self.subs.get(topic)
            if not conns:
                if key in self._u and (reset or depth == FULL_DEPTH):
                    self._u[key] = 1 if reset else self._u[key] + 1
                continue
            bids, asks = self._view_changes(key, m)
            if reset:
                self._u[key] = 1
                view_b, view_a = self._views[key]
                raw = self._book_message(
                    topic,
                    m,
                    "snapshot",
                    sorted(view_b.items(), reverse=True),
                    sorted(view_a.items()),
                    1,
                )
            elif bids or asks:
                self._u[key] += 1
                if lost is None:
                    lost = bool(self._skip) and self._take(self._skip, symbol)
                if lost:
                    continue
                raw = self._book_message(topic, m, "delta", bids, asks, self._u[key])
            else:
                continue
            for conn in list(conns):
                self._enqueue(conn, raw)
        if reset and (symbol, 1) in self._u:  # level 1's next push (or snapshot) has u = 1
            self._u[(symbol, 1)] = 0 if f"orderbook.1.{symbol}" in self.subs else 1
        self._publish_level1(symbol, m, r, reset)

    def _publish_level1(self, symbol: str, m: VenueMarket, r: StepResult, reset: bool) -> None:
        """Level 1 is snapshot-only: a new ``u`` when the top changes, and the same book with
        the same ``u`` again after three seconds without a change."""
        topic = f"orderbook.1.{symbol}"
        conns = self.subs.get(topic)
        if not conns:
            return
        key = (symbol, 1)
        _, bids, asks = m.book(1)
        last_b, last_a, sent = self._top.get(symbol, ([], [], 0))
        if reset or (bids, asks) != (last_b, last_a):
            self._u[key] += 1
        elif r.end - sent < LEVEL1_REPEAT_MS:
            return
        self._top[symbol] = (bids, asks, r.end)
        raw = self._book_message(topic, m, "snapshot", bids, asks, self._u[key])
        for conn in list(conns):
            self._enqueue(conn, raw)

    def _view_changes(
        self, key: tuple[str, int], m: VenueMarket
    ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """What changed in a depth's view of the book since its last push: levels that changed
        or came in (their size), levels that left it (size 0), best first."""
        _, bids, asks = m.book(key[1])
        old_b, old_a = self._views.get(key, ({}, {}))
        new_b, new_a = dict(bids), dict(asks)
        self._views[key] = (new_b, new_a)

        def diff(old: dict[int, int], new: dict[int, int], reverse: bool) -> list[tuple[int, int]]:
            changed = [(p, q) for p, q in new.items() if old.get(p) != q]
            changed += [(p, 0) for p in old if p not in new]
            return sorted(changed, reverse=reverse)

        return diff(old_b, new_b, True), diff(old_a, new_a, False)
