"""The simulated Coinbase Advanced Trade's market-data WebSocket: one channel per
(un)subscribe message, the ``subscriptions`` answer, bare ``{"type":"error"}`` refusals, the
envelope with one ``sequence_num`` counter per connection over every message it is sent, the
channels (``level2`` sent as ``l2_data``, ``market_trades``, ``ticker``, ``ticker_batch``,
``candles``, ``heartbeats``, ``status``), the rules that close connections (no subscribe within
``coinbase_subscribe_timeout``; a channel quiet for ``coinbase_idle_timeout`` closes unless
``heartbeats`` is subscribed), the inbound message limit, and the faults.

Where the docs are silent the face takes the reading a client must survive either way: a
subscribe's snapshots come before its ``subscriptions`` answer (as a live recording shows); one
unknown product refuses the whole message; every refusal says only ``failure to subscribe``
(Coinbase's generic text, the exact unknown-product text being unknown); a re-subscribe of a
product already held sends no new snapshot (unsubscribe first for a fresh one); a connection is
cut without a close frame; messages over the inbound limit are refused with an error, not
acted on; trades within an update are newest first, so a client orders by ``trade_id``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from marketlab.sim.coinbase.rest import num, product_id, rfc3339, trade_json
from marketlab.sim.face import OutageFace, on_loop, request_json
from marketlab.sim.host import CoinbaseHost
from marketlab.sim.market import Candle, StepResult, VenueMarket

log = logging.getLogger("marketlab.sim.coinbase")

# subscribe name → the ``channel`` its messages carry
CHANNELS = {
    "level2": "l2_data",
    "market_trades": "market_trades",
    "ticker": "ticker",
    "ticker_batch": "ticker_batch",
    "candles": "candles",
    "heartbeats": "heartbeats",
    "status": "status",
}
NO_PRODUCTS = ("heartbeats", "status")  # channels whose subscribe may omit product_ids
TRADE_BATCH_MS = 250  # market_trades collects trades over 250 ms into one update
TRADES_SNAPSHOT = 50  # recent trades in a market_trades snapshot
TICKER_BATCH_MS = 5000
CANDLE = "5m"  # the only candle size on the WebSocket
PUSH_DELAY_MS = 5  # from the matching engine to the envelope's timestamp
SNAPSHOT_EVENT_TIME = "1970-01-01T00:00:00Z"  # what the docs' level2 snapshot levels carry
REFUSED = "failure to subscribe"
RATE_WINDOW = 1.0  # seconds of the inbound message and connection limits' window


@dataclass(eq=False)
class CoinbaseConnection:
    ws: web.WebSocketResponse
    request: web.Request
    opened: float = field(default_factory=time.monotonic)
    subs: dict[str, set[str]] = field(default_factory=dict)  # channel → product ids
    last_sent: dict[str, float] = field(default_factory=dict)  # channel → when it last spoke
    seq: int = 0  # the next sequence_num
    skip: int = 0  # messages to lose (a fault)
    subscribed: bool = False
    queue: asyncio.Queue[tuple[float, bytes | None]] = field(
        default_factory=lambda: asyncio.Queue(maxsize=20_000)
    )
    heartbeats: asyncio.Task[None] | None = None
    closing: bool = False


class CoinbaseWs(OutageFace):
    """WebSocket handling, faults and fan-out of :class:`~marketlab.sim.coinbase.CoinbaseFace`."""

    venue = "coinbase"
    MALFORMED_KINDS = ("garbage", "truncated", "new_channel")
    sim: CoinbaseHost
    products: dict[str, VenueMarket]
    subs: dict[tuple[str, str], set[CoinbaseConnection]]
    connections: set[CoinbaseConnection]
    _inbound: dict[str, deque[float]]
    _connects: dict[str, deque[float]]
    _batch_last: dict[str, int]
    _born: float
    loop: asyncio.AbstractEventLoop | None

    # --- WebSocket ---------------------------------------------------------------------

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        refused = self.refuse_in_outage(request)
        if refused is not None:
            return refused
        if not _allow(self._connects, request.remote or "", self.sim.coinbase_ws_connect_limit):
            return web.Response(status=429, text="Too Many Requests")
        ws = web.WebSocketResponse(autoping=True, max_msg_size=1 << 20)
        await ws.prepare(request)
        conn = CoinbaseConnection(ws, request)
        self.connections.add(conn)
        self.sim.stats["ws_connections"] += 1
        writer = asyncio.create_task(self._writer(conn))
        keeper = asyncio.create_task(self._keepalive(conn))
        try:
            async for msg in ws:
                if self.sim.faults.stalled(self.venue):
                    continue  # a stalled link answers nothing
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    text = msg.data if msg.type == WSMsgType.TEXT else repr(msg.data)
                    self._control(conn, text)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            writer.cancel()
            keeper.cancel()
            self._drop(conn)
        return ws

    def _error(self, conn: CoinbaseConnection, message: str = REFUSED) -> None:
        """Coinbase's error frame: bare, outside the envelope, so it takes no sequence_num."""
        self._enqueue(conn, orjson.dumps({"type": "error", "message": message}))

    def _control(self, conn: CoinbaseConnection, text: str) -> None:
        if not _allow(self._inbound, conn.request.remote or "", self.sim.coinbase_ws_message_limit):
            self._error(conn, "rate limit exceeded")
            return
        try:
            msg = request_json(text)
        except orjson.JSONDecodeError:
            msg = None
        if not isinstance(msg, dict) or msg.get("type") not in ("subscribe", "unsubscribe"):
            self._error(conn)
            return
        channel = msg.get("channel")  # one channel per message: a list is refused
        if not isinstance(channel, str) or channel not in CHANNELS or "channels" in msg:
            self._error(conn)
            return
        raw = msg.get("product_ids")
        if raw is None:
            raw = []
        if not isinstance(raw, list) or not all(isinstance(p, str) for p in raw):
            self._error(conn)
            return
        wanted = list(dict.fromkeys(raw))
        if any(p not in self.products for p in wanted):
            self._error(conn)
            return
        if msg["type"] == "unsubscribe":
            self._unsubscribe(conn, channel, wanted or list(conn.subs.get(channel, ())))
            self._send_subscriptions(conn)
            return
        if channel == "heartbeats":
            wanted = []
        elif channel == "status" and not wanted:
            wanted = list(self.products)
        elif not wanted:
            self._error(conn)
            return
        conn.subscribed = True
        held = conn.subs.setdefault(channel, set())
        conn.last_sent.setdefault(channel, time.monotonic())
        if channel == "heartbeats" and conn.heartbeats is None:
            conn.heartbeats = asyncio.get_running_loop().create_task(self._heartbeats(conn))
        new = [p for p in wanted if p not in held]
        for p in new:
            held.add(p)
            self.subs.setdefault((channel, p), set()).add(conn)
        if new and channel == "status":
            self._push(conn, channel, [{"type": "snapshot", "products": self._status(new)}])
        elif new:
            for p in new:
                self._push(conn, channel, [self._snapshot(channel, p)])
        self._send_subscriptions(conn)

    def _send_subscriptions(self, conn: CoinbaseConnection) -> None:
        """Every subscription the connection now holds (not only the one acknowledged)."""
        subs = {
            ch: (["heartbeats"] if ch == "heartbeats" else sorted(ps))
            for ch, ps in conn.subs.items()
        }
        self._push(conn, "subscriptions", [{"subscriptions": subs}])

    def _unsubscribe(self, conn: CoinbaseConnection, channel: str, products: list[str]) -> None:
        held = conn.subs.get(channel)
        if held is None:
            return
        for p in products if channel != "heartbeats" else []:
            held.discard(p)
            holders = self.subs.get((channel, p))
            if holders is not None:
                holders.discard(conn)
                if not holders:
                    del self.subs[(channel, p)]
        if not held:
            del conn.subs[channel]
            conn.last_sent.pop(channel, None)
            if channel == "heartbeats" and conn.heartbeats is not None:
                conn.heartbeats.cancel()
                conn.heartbeats = None

    def _drop(self, conn: CoinbaseConnection) -> None:
        for channel, held in list(conn.subs.items()):
            self._unsubscribe(conn, channel, list(held))
        if conn.heartbeats is not None:
            conn.heartbeats.cancel()
            conn.heartbeats = None
        self.connections.discard(conn)

    def _cut(self, conn: CoinbaseConnection) -> None:
        conn.closing = True
        if conn.request.transport is not None:
            conn.request.transport.abort()
        self._drop(conn)

    async def _keepalive(self, conn: CoinbaseConnection) -> None:
        """The connection's rules: a subscribe within ``coinbase_subscribe_timeout`` of opening,
        and a channel that sends nothing for ``coinbase_idle_timeout`` is closed (the
        connection too once nothing is left) unless ``heartbeats`` is subscribed."""
        sim = self.sim
        step = min(0.25, sim.coinbase_subscribe_timeout / 4, sim.coinbase_idle_timeout / 4)
        while not conn.ws.closed and not conn.closing:
            await asyncio.sleep(step)
            now = time.monotonic()
            if now - conn.opened >= sim.max_connection_age:
                await self._close(conn, 1000, b"Connection lifetime expired")
                return
            if not conn.subscribed:
                if now - conn.opened >= sim.coinbase_subscribe_timeout:
                    log.info("cutting a Coinbase connection that never subscribed")
                    self._cut(conn)
                    return
                continue
            if "heartbeats" in conn.subs:
                continue
            for channel in list(conn.subs):
                if now - conn.last_sent.get(channel, now) >= sim.coinbase_idle_timeout:
                    self._unsubscribe(conn, channel, list(conn.subs[channel]))
            if not conn.subs:
                log.info("cutting a Coinbase connection whose channels went quiet")
                self._cut(conn)
                return

    async def _heartbeats(self, conn: CoinbaseConnection) -> None:
        """One heartbeat a second, its counter one more each time (an integer, as production
        sends it), its ``current_time`` in Go's ``time.Time`` format, as the docs show."""
        counter = 0
        began = time.monotonic()
        while True:
            await asyncio.sleep(max(0.0, began + counter + 1 - time.monotonic()))
            counter += 1
            ms = self.sim.now_ms()
            clock = datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
            mono = time.monotonic() - self._born
            current = f"{clock}.{ms % 1000:03d}000000 +0000 UTC m=+{mono:.9f}"
            self._push(
                conn, "heartbeats", [{"current_time": current, "heartbeat_counter": counter}]
            )

    # --- messages ----------------------------------------------------------------------

    def _push(
        self,
        conn: CoinbaseConnection,
        channel: str,
        events: list[dict[str, Any]] | bytes,
        at_ms: int | None = None,
    ) -> None:
        """Send one enveloped message on ``channel`` (a subscribe name or ``subscriptions``),
        numbered by the connection's counter; a message lost to a fault still takes its
        number, so the client sees the gap."""
        if conn.closing:
            return
        seq = conn.seq
        conn.seq += 1
        if channel in conn.subs:
            conn.last_sent[channel] = time.monotonic()
        if conn.skip:
            conn.skip -= 1
            return
        body = events if isinstance(events, bytes) else orjson.dumps(events)
        self._enqueue(conn, self._envelope(CHANNELS.get(channel, channel), seq, body, at_ms))

    def _envelope(self, channel: str, seq: int, events: bytes, at_ms: int | None) -> bytes:
        ms = (self.sim.now_ms() if at_ms is None else at_ms) + PUSH_DELAY_MS
        stamp = rfc3339(ms, 9, time.perf_counter_ns())
        return b"".join(
            (
                b'{"channel":"',
                channel.encode(),
                b'","client_id":"","timestamp":"',
                stamp.encode(),
                b'","sequence_num":',
                str(seq).encode(),
                b',"events":',
                events,
                b"}",
            )
        )

    def _snapshot(self, channel: str, product: str) -> dict[str, Any]:
        m = self.products[product]
        if channel == "level2":
            _, bids, asks = m.book()
            return {
                "type": "snapshot",
                "product_id": product,
                "updates": _levels(m, "bid", bids, SNAPSHOT_EVENT_TIME)
                + _levels(m, "offer", asks, SNAPSHOT_EVENT_TIME),
            }
        if channel == "market_trades":
            recent = list(m.recent_trades)[-TRADES_SNAPSHOT:][::-1]
            return {"type": "snapshot", "trades": [trade_json(m, product, t) for t in recent]}
        if channel in ("ticker", "ticker_batch"):
            return {
                "type": "snapshot",
                "tickers": [self._ticker(product, m, best=channel == "ticker")],
            }
        candle = m.open_candle(CANDLE)
        return {"type": "snapshot", "candles": _candles(m, product, [candle])}

    def _status(self, products: list[str]) -> list[dict[str, Any]]:
        out = []
        for p in products:
            m = self.products[p]
            base, quote = p.split("-", 1)
            out.append(
                {
                    "product_type": "SPOT",
                    "id": p,
                    "base_currency": base,
                    "quote_currency": quote,
                    "base_increment": num(1, m.spec.qty_decimals),
                    "quote_increment": num(1, m.spec.price_decimals),
                    "display_name": f"{base}/{quote}",
                    "status": "online",
                    "status_message": "",
                    "min_market_funds": "1",
                }
            )
        return out

    @staticmethod
    def _ticker(product: str, m: VenueMarket, best: bool) -> dict[str, str]:
        t = m.ticker()
        pd, qd = m.spec.price_decimals, m.spec.qty_decimals
        change = (t["last"] - t["open"]) / t["open"] * 100 if t["open"] else 0.0
        out = {
            "type": "ticker",
            "product_id": product,
            "price": num(t["last"], pd),
            "volume_24_h": num(t["volume"], qd),
            "low_24_h": num(t["low"], pd),
            "high_24_h": num(t["high"], pd),
            "low_52_w": num(t["low"], pd),
            "high_52_w": num(t["high"], pd),
            "price_percent_chg_24_h": f"{change:.8f}",
        }
        if best:  # ticker_batch has no best bid or ask
            _, bids, asks = m.book(1)
            bid, bid_q = bids[0] if bids else (0, 0)
            ask, ask_q = asks[0] if asks else (0, 0)
            out |= {
                "best_bid": num(bid, pd),
                "best_bid_quantity": num(bid_q, qd),
                "best_ask": num(ask, pd),
                "best_ask_quantity": num(ask_q, qd),
            }
        return out

    # --- faults ------------------------------------------------------------------------

    @on_loop
    def skip_messages(self, count: int = 1) -> int:
        """Lose the next ``count`` messages of every connection, whatever their channel: each
        client sees ``sequence_num`` jump by ``count`` + 1 (and what it lost is gone, so a book
        must be rebuilt from a fresh snapshot). Returns how many connections lose them."""
        for conn in self.connections:
            conn.skip += count
        return len(self.connections)

    @on_loop
    def send_malformed(self, kind: str = "garbage") -> int:
        """Send one bad frame to every connection: ``garbage`` or ``truncated`` (no number
        taken), or a well-formed message of a ``new_channel`` a client must ignore (numbered,
        as every enveloped message is). Returns how many connections got it."""
        bodies = {
            "garbage": b"\x00\x01 this is not json",
            "truncated": b'{"channel":"l2_data","client_id":"","timestamp":"2026-',
        }
        if kind not in (*bodies, "new_channel"):
            raise ValueError(
                f"unknown malformed kind {kind!r}: expected garbage, truncated or new_channel"
            )
        for conn in list(self.connections):
            if kind == "new_channel":
                self._push(conn, "surprise", [{"type": "snapshot", "surprises": []}])
            else:
                self._enqueue(conn, bodies[kind])
        return len(self.connections)

    # --- fan-out -----------------------------------------------------------------------

    def publish(self, results: dict[str, StepResult]) -> None:
        """Push one market second to the subscribers of each product's channels."""
        if not self.subs:
            return
        pushes: list[tuple[int, str, str, list[dict[str, Any]]]] = []
        for symbol, r in results.items():
            product = product_id(symbol)
            self._publish(product, self.products[product], r, pushes)
        pushes.sort(key=lambda push: push[0])  # in time order across products (stable)
        for at_ms, channel, product, events in pushes:
            conns = self.subs.get((channel, product))
            if conns:
                body = orjson.dumps(events)
                for conn in list(conns):
                    self._push(conn, channel, body, at_ms)

    def _publish(
        self,
        product: str,
        m: VenueMarket,
        r: StepResult,
        pushes: list[tuple[int, str, str, list[dict[str, Any]]]],
    ) -> None:
        """Queue the second's messages of one product as ``(time, channel, product, events)``."""
        subs = self.subs

        def fan(channel: str, product: str, events: list[dict[str, Any]], at_ms: int) -> None:
            pushes.append((at_ms, channel, product, events))

        if r.depth is not None and ("level2", product) in subs:
            _, _, bid_changes, ask_changes = r.depth
            when = rfc3339(r.end)
            updates = _levels(m, "bid", sorted(bid_changes, reverse=True), when) + _levels(
                m, "offer", sorted(ask_changes), when
            )
            fan(
                "level2",
                product,
                [{"type": "update", "product_id": product, "updates": updates}],
                r.end,
            )
        if r.trades and ("market_trades", product) in subs:
            batches: dict[int, list[dict[str, str]]] = {}
            for t in r.trades:
                batch = batches.setdefault((t.time - r.second) // TRADE_BATCH_MS, [])
                batch.insert(0, trade_json(m, product, t))  # newest first
            for index, trades in sorted(batches.items()):
                at = r.second + (index + 1) * TRADE_BATCH_MS
                fan("market_trades", product, [{"type": "update", "trades": trades}], at)
        if r.trades and ("ticker", product) in subs:
            tick = self._ticker(product, m, best=True)
            fan("ticker", product, [{"type": "update", "tickers": [tick]}], r.end)
        batch_due = r.end % TICKER_BATCH_MS == 0 and ("ticker_batch", product) in subs
        if batch_due and self._batch_last.get(product) != m.last_price:  # only on a change
            self._batch_last[product] = m.last_price
            tick = self._ticker(product, m, best=False)
            fan("ticker_batch", product, [{"type": "update", "tickers": [tick]}], r.end)
        if ("candles", product) in subs:
            shown = [c for c in (r.closed.get(CANDLE), m.open_candle(CANDLE)) if c is not None]
            candles = _candles(m, product, shown)
            if candles:
                fan("candles", product, [{"type": "update", "candles": candles}], r.end)


def _levels(
    m: VenueMarket, side: str, rows: list[tuple[int, int]], when: str
) -> list[dict[str, str]]:
    pd, qd = m.spec.price_decimals, m.spec.qty_decimals
    return [
        {"side": side, "event_time": when, "price_level": num(p, pd), "new_quantity": num(q, qd)}
        for p, q in rows
    ]


def _candles(m: VenueMarket, product: str, candles: list[Candle]) -> list[dict[str, str]]:
    """Candles with a trade (an empty bucket has no candle, as on REST), oldest first."""
    pd, qd = m.spec.price_decimals, m.spec.qty_decimals
    out = []
    for c in candles:
        if not c.n:
            continue
        o, h, lo, cl = c.ohlc()
        out.append(
            {
                "start": str(c.open_time // 1000),
                "high": num(h, pd),
                "low": num(lo, pd),
                "open": num(o, pd),
                "close": num(cl, pd),
                "volume": num(c.v, qd),
                "product_id": product,
            }
        )
    return out


def _allow(calls: dict[str, deque[float]], ip: str, limit: int) -> bool:
    """Count one more event of ``ip`` against ``limit`` per second; False beyond it."""
    now = time.monotonic()
    seen = calls.setdefault(ip, deque())
    while seen and seen[0] <= now - RATE_WINDOW:
        seen.popleft()
    if len(seen) >= limit:
        return False
    seen.append(now)
    return True
