"""The simulated OKX's WebSocket face: ``/ws/v5/public`` and ``/ws/v5/business``, the
``prevSeqId`` chain on ``books`` (checksum 0 as OKX sends today, the CRC32 on request),
heartbeats of quiet books, seqId resets, the text ping/pong and the 30-second rule."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import WSMsgType, web

from marketlab.sim.face import HOSTILE_FRAMES, SocketFace, request_json
from marketlab.sim.host import OkxHost
from marketlab.sim.market import Candle, StepResult, VenueMarket
from marketlab.sim.okx.rest import BARS, BOOK_LEVELS, num

log = logging.getLogger("marketlab.sim.okx")

PUBLIC_CHANNELS = ("tickers", "trades", "books", "books5", "bbo-tbt")
BUSINESS_CHANNELS = ("trades-all",)  # every trade, one by one (candles are here too)


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
    queue: asyncio.Queue[tuple[float, bytes | None]] = field(
        default_factory=lambda: asyncio.Queue(maxsize=20_000)
    )
    last_push: float = field(default_factory=time.monotonic)
    requests: deque[float] = field(default_factory=deque)  # (un)subscribe times, last hour
    closing: bool = False


class OkxWs(SocketFace):
    """WebSocket handling, faults and fan-out of :class:`~marketlab.sim.okx.OkxFace`."""

    venue = "okx"
    MALFORMED_KINDS = HOSTILE_FRAMES
    sim: OkxHost
    subs: dict[tuple[str, str], set[OkxConnection]]
    connections: set[OkxConnection]
    inst: dict[str, VenueMarket]
    _inst_of: dict[str, str]
    _skip_books: dict[str | None, int]
    _views: dict[str, tuple[dict[int, int], dict[int, int]]]
    _corrupt: dict[str | None, int]
    _seq_offset: dict[str, int]
    _resets: set[str]

    if TYPE_CHECKING:  # OkxRest's, beside this class in OkxFace

        def _levels(self, m: VenueMarket, levels: list[tuple[int, int]]) -> list[list[str]]: ...

        def _ticker(self, inst: str, m: VenueMarket, now: int) -> dict[str, str]: ...

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
                if self.sim.faults.stalled(self.venue):
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
            msg = request_json(text)
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
            valid = inst in self.inst and (
                (channel.startswith("candle") and channel[6:] in BARS)
                or channel in BUSINESS_CHANNELS
                if conn.business
                else channel in PUBLIC_CHANNELS
            )
            if not valid:
                replies.append(
                    self._error(
                        conn,
                        "60018",
                        f"Wrong URL or channel:{channel},instId:{inst} doesn't exist. Please use "
                        "the correct URL, channel and parameters referring to API document.",
                    )
                )
                continue
            key = (channel, inst)
            replies.append(
                orjson.dumps(
                    {
                        "event": op,
                        "arg": {"channel": channel, "instId": inst},
                        "connId": conn.conn_id,
                    }
                )
            )
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
        return orjson.dumps(
            {
                "arg": {"channel": "books", "instId": inst},
                "action": "snapshot",
                "data": [
                    {
                        "asks": a,
                        "bids": b,
                        "ts": str(m.now),
                        "checksum": self._checksum(b, a),
                        "prevSeqId": -1,
                        "seqId": seq,
                    }
                ],
            }
        )

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
        self._enqueue(
            conn,
            orjson.dumps(
                {
                    "arg": {"channel": "books", "instId": inst},
                    "action": "update",
                    "data": [
                        {
                            "asks": [],
                            "bids": [],
                            "ts": str(self.sim.now_ms()),
                            "checksum": self._checksum(b, a),
                            "prevSeqId": seq,
                            "seqId": seq,
                        }
                    ],
                }
            ),
        )

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

    def _sent(self, conn: OkxConnection) -> None:
        conn.last_push = time.monotonic()  # the 30-second rule counts from what was sent

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
                if now - pushed >= sim.okx_book_heartbeat and not self.sim.faults.stalled(
                    self.venue
                ):
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
            "truncated": b'{"arg":{"channel":"trades","instId":"'
            + inst.encode()
            + b'"},"data":[{"px',
            "garbage": b"\x00\x01 this is not json",
            "bad_field": orjson.dumps(
                {
                    "arg": {"channel": "trades", "instId": inst},
                    "data": [
                        {
                            "instId": inst,
                            "tradeId": "x",
                            "px": "abc",
                            "sz": None,
                            "side": "buy",
                            "ts": "1",
                        }
                    ],
                }
            ),
            "unknown_event": orjson.dumps(
                {"arg": {"channel": "surprise", "instId": inst}, "data": [{}]}
            ),
            # well-formed but for a trade id past int64 (and a NaN price): hostile numbers
            "id_past_int64": self._trade_push(inst, "9223372036854775808", "1.5"),
            "nan_price": self._trade_push(inst, "1", "nan"),
        }
        if kind not in bodies:
            raise ValueError(
                f"unknown malformed kind {kind!r}: expected one of {', '.join(bodies)}"
            )
        for conn in list(self.connections):
            self._enqueue(conn, bodies[kind])
        return len(self.connections)

    def _trade_push(self, inst: str, trade_id: str, price: str) -> bytes:
        now = str(self.sim.now_ms())
        trade = {
            "instId": inst,
            "tradeId": trade_id,
            "px": price,
            "sz": "1",
            "side": "buy",
            "ts": now,
            "count": "1",
        }
        return orjson.dumps({"arg": {"channel": "trades", "instId": inst}, "data": [trade]})

    async def shutdown_notice(self) -> int:
        """Notice 64008 (closing for a service upgrade) on every connection, then close them."""
        return await self.announce_and_close(
            lambda conn: orjson.dumps(
                {
                    "event": "notice",
                    "code": "64008",
                    "connId": conn.conn_id,
                    "msg": "The connection will soon be closed for a service upgrade. "
                    "Please reconnect.",
                }
            ),
            1012,
            b"Service upgrade",
        )

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

    def _publish(self, inst: str, m: VenueMarket, r: StepResult) -> None:
        subs = self.subs
        pd, qd = m.spec.price_decimals, m.spec.qty_decimals
        arg = {"instId": inst}
        if ("trades", inst) in subs and r.trades:
            # As OKX does today: fills of one taker at one price in one push, ``count`` of them,
            # ``tradeId`` the last one's (``trades-all`` has each trade).
            groups = [
                list(g)
                for _, g in itertools.groupby(r.trades, lambda t: (t.price, t.buyer_is_maker))
            ]
            self._send(
                ("trades", inst),
                {
                    "arg": {"channel": "trades", **arg},
                    "data": [
                        {
                            "instId": inst,
                            "tradeId": str(g[-1].trade_id),
                            "px": num(g[0].price, pd),
                            "sz": num(sum(t.qty for t in g), qd),
                            "side": "sell" if g[0].buyer_is_maker else "buy",
                            "ts": str(g[0].time),
                            "count": str(len(g)),
                            "source": "0",
                            "seqId": g[-1].trade_id,
                        }
                        for g in groups
                    ],
                },
            )
        if ("trades-all", inst) in subs and r.trades:
            self._send(
                ("trades-all", inst),
                {
                    "arg": {"channel": "trades-all", **arg},
                    "data": [
                        {
                            "instId": inst,
                            "tradeId": str(t.trade_id),
                            "px": num(t.price, pd),
                            "sz": num(t.qty, qd),
                            "side": "sell" if t.buyer_is_maker else "buy",
                            "source": "0",
                            "ts": str(t.time),
                        }
                        for t in r.trades
                    ],
                },
            )
        if ("tickers", inst) in subs:
            self._send(
                ("tickers", inst),
                {"arg": {"channel": "tickers", **arg}, "data": [self._ticker(inst, m, r.end)]},
            )
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
            data = {
                "asks": self._levels(m, asks),
                "bids": self._levels(m, bids),
                "ts": str(r.end),
                "checksum": sent_sum,
                "seqId": last,
            }
            pushed = time.monotonic()
            for conn in list(subs[("books", inst)]):
                prev = conn.book_seq.get(inst)
                if prev is None:
                    continue
                conn.book_seq[inst] = last  # pushed, even when lost on the way
                conn.book_pushed[inst] = pushed
                if not skip:
                    self._enqueue(
                        conn,
                        orjson.dumps(
                            {
                                "arg": {"channel": "books", **arg},
                                "action": "update",
                                "data": [{**data, "prevSeqId": prev}],
                            }
                        ),
                    )
        if ("bbo-tbt", inst) in subs or ("books5", inst) in subs:
            uid, bids, asks = m.book(5)
            b, a = self._levels(m, bids), self._levels(m, asks)
            if ("bbo-tbt", inst) in subs and b and a:
                self._send(
                    ("bbo-tbt", inst),
                    {
                        "arg": {"channel": "bbo-tbt", **arg},
                        "data": [{"asks": a[:1], "bids": b[:1], "ts": str(r.end), "seqId": uid}],
                    },
                )
            if ("books5", inst) in subs:
                self._send(
                    ("books5", inst),
                    {
                        "arg": {"channel": "books5", **arg},
                        "data": [
                            {"asks": a, "bids": b, "ts": str(r.end), "instId": inst, "seqId": uid}
                        ],
                    },
                )

    def _view_changes(
        self, inst: str, m: VenueMarket
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
    def _candle(m: VenueMarket, c: Candle, confirm: str) -> list[str]:
        pd, qd = m.spec.price_decimals, m.spec.qty_decimals
        o, h, lo, cl = c.ohlc()
        quote = num(c.q, pd + qd)
        return [
            str(c.open_time),
            num(o, pd),
            num(h, pd),
            num(lo, pd),
            num(cl, pd),
            num(c.v, qd),
            quote,
            quote,
            confirm,
        ]
