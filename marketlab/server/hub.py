"""WebSocket fan-out from a Lab to many clients, none of whom can hold the others back.

Records arrive on the collector thread and are handed to the server's event loop in batches.
Each client has its own sender task and its own bounded backlog:

- ``ticker``, ``depth``, and a perpetual's ``mark`` and ``open_interest`` updates are
  *conflated*: a client that falls behind gets the newest state of each (symbol, channel), not
  every intermediate one;
- ``trade``, ``kline_<iv>``, and a perpetual's ``funding`` (each one settled) and
  ``liquidation`` messages are queued in order, up to ``max_backlog`` per client;
  a client whose backlog overflows is disconnected (close code 1008, "too slow") rather than
  letting memory grow.

A Lab over several venues is subscribed to once per venue (its records carry no venue): a
subscription names its ``exchange`` (the Lab's first venue by default) and every message pushed
says the venue it came from (``"exchange"``). A book is pushed when its venue's update arrives
(Binance's records carry each one) and, for venues whose books update inside their feed, when
a look every ``DEPTH_POLL_S`` finds it changed; an unchanged book is never pushed twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any, TypeGuard

import orjson
from fastapi import WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from marketlab.records import (
    BookDelta,
    Funding,
    Kline,
    Liquidation,
    MarkPrice,
    OpenInterest,
    Record,
    Ticker,
    Trade,
    is_perpetual,
    normalize_symbol,
)
from marketlab.server.wire import RawSocket, text_frame

if TYPE_CHECKING:
    from marketlab.lab import Lab

log = logging.getLogger("marketlab.server")

CONFLATED = ("ticker", "depth", "mark", "open_interest")
# A perpetual's own channels (a spot symbol has none of them)
PERPETUAL_CHANNELS = ("mark", "funding", "open_interest", "liquidation")
DEPTH_LEVELS = 20
DEPTH_POLL_S = 0.1  # how often subscribed books are looked at for a change
Key = tuple[str, str, str]  # (exchange, symbol, channel)


class Client:
    def __init__(self, ws: WebSocket, max_backlog: int):
        self.ws = ws
        self.subs: set[Key] = set()
        self.latest: OrderedDict[Key, str] = OrderedDict()
        self.backlog: deque[str] = deque()
        self.max_backlog = max_backlog
        self.wake = asyncio.Event()
        self.sent = 0
        self.conflated = 0
        self.too_slow = False
        self.sender: asyncio.Task[None] | None = None
        self.raw = RawSocket.of(ws)  # None: every message through ASGI
        self.sent_raw = 0

    def offer_frame(self, key: Key, message: str, frame: bytes) -> None:
        """Straight onto the socket when nothing is queued before it and the socket takes it;
        else queued (conflated or in order) for the sender task."""
        raw = self.raw
        if (
            raw is not None
            and not self.backlog
            and not self.latest
            and not self.too_slow
            and raw.write(frame)
        ):
            self.sent += 1
            self.sent_raw += 1
            return
        self.offer(key, message)

    def offer(self, key: Key, message: str) -> None:
        if key[-1] in CONFLATED:  # the channel
            if key in self.latest:
                self.conflated += 1
            self.latest[key] = message
        else:
            if len(self.backlog) >= self.max_backlog:
                if not self.too_slow:
                    self.too_slow = True
                    log.warning(
                        "disconnecting a WebSocket client: %d messages behind", len(self.backlog)
                    )
                    if self.sender is not None:
                        self.sender.cancel()  # it may be stuck writing to a full socket
                return
            self.backlog.append(message)
        self.wake.set()

    def reply(self, message: dict[str, Any]) -> None:
        self.backlog.append(orjson.dumps(message).decode())
        self.wake.set()

    async def run_sender(self) -> None:
        ws = self.ws
        while not self.too_slow:
            await self.wake.wait()
            self.wake.clear()
            while (self.backlog or self.latest) and not self.too_slow:
                if self.backlog:
                    data = self.backlog.popleft()
                else:
                    _, data = self.latest.popitem(last=False)
                await ws.send_text(data)
                self.sent += 1


class Hub:
    """Routes the Lab's records to subscribed clients."""

    def __init__(self, lab: Lab, *, max_clients: int, max_subscriptions: int, max_backlog: int):
        self.lab = lab
        self.max_clients = max_clients
        self.max_subscriptions = max_subscriptions
        self.max_backlog = max_backlog
        self.clients: set[Client] = set()
        self.dropped_slow = 0  # clients cut off for falling too far behind
        self.fanout_s: deque[float] = deque(maxlen=10_000)  # one update to all its clients, seconds
        self.by_key: dict[Key, set[Client]] = {}
        self._wanted: dict[str, int] = {}  # per venue: how many keys have clients
        self._inbox: deque[tuple[str, Record]] = deque()
        self._inbox_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._signal = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._poller: asyncio.Task[None] | None = None
        self._unsubscribe: list[Any] = []
        # per subscribed (exchange, symbol): the book last pushed (update id, bids, asks)
        self._depth_sent: dict[tuple[str, str], tuple[int, Any, Any]] = {}

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._signal = asyncio.Event()
        self._task = asyncio.create_task(self._pump())
        self._poller = asyncio.create_task(self._poll_books())
        self._unsubscribe = [
            self.lab.subscribe(functools.partial(self._on_record, venue), exchange=venue)
            for venue in self.lab.exchanges
        ]

    async def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        for task in (self._task, self._poller):
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # --- collector thread → event loop --------------------------------------------------------

    def _on_record(self, exchange: str, record: Record) -> None:
        if not self._wanted.get(exchange):
            return
        with self._inbox_lock:
            first = not self._inbox
            self._inbox.append((exchange, record))
        if first and self._loop is not None:
            self._loop.call_soon_threadsafe(self._signal.set)

    async def _pump(self) -> None:
        while True:
            await self._signal.wait()
            self._signal.clear()
            with self._inbox_lock:
                batch, self._inbox = self._inbox, deque()
            self._dispatch(batch)

    def _dispatch(self, batch: deque[tuple[str, Record]]) -> None:
        depth_symbols: set[tuple[str, str]] = set()
        tickers: dict[tuple[str, str], Ticker] = {}
        marks: dict[tuple[str, str], MarkPrice] = {}
        for venue, r in batch:
            if isinstance(r, BookDelta):
                depth_symbols.add((venue, r.symbol))
            elif isinstance(r, Ticker):
                tickers[venue, r.symbol] = r  # conflated at the source too
            elif isinstance(r, Trade):
                self._send(
                    (venue, r.symbol, "trade"),
                    {
                        "type": "trade",
                        "symbol": r.symbol,
                        "exchange": venue,
                        "data": {
                            "price": r.price,
                            "qty": r.qty,
                            "side": r.side,
                            "trade_id": r.trade_id,
                            "time": r.time,
                        },
                    },
                )
            elif isinstance(r, Kline):
                channel = f"kline_{r.interval}"
                self._send(
                    (venue, r.symbol, channel),
                    {
                        "type": "kline",
                        "symbol": r.symbol,
                        "exchange": venue,
                        "interval": r.interval,
                        "data": kline_data(r),
                    },
                )
            elif isinstance(r, MarkPrice):
                marks[venue, r.symbol] = r  # conflated at the source too
            elif isinstance(r, (Liquidation, OpenInterest, Funding)):
                channel, data = perpetual_data(r)
                self._send(
                    (venue, r.symbol, channel),
                    {"type": channel, "symbol": r.symbol, "exchange": venue, "data": data},
                )
        for (venue, symbol), m in marks.items():
            self._send(
                (venue, symbol, "mark"),
                {"type": "mark", "symbol": symbol, "exchange": venue, "data": mark_data(m)},
            )
        for (venue, symbol), t in tickers.items():
            self._send(
                (venue, symbol, "ticker"),
                {
                    "type": "ticker",
                    "symbol": symbol,
                    "exchange": venue,
                    "data": {
                        "last": t.last,
                        "bid": t.bid,
                        "ask": t.ask,
                        "change_pct": t.change_pct,
                        "volume": t.volume,
                        "event_time": t.event_time,
                    },
                },
            )
        for venue, symbol in depth_symbols:
            key = (venue, symbol, "depth")
            if key in self.by_key:
                self._send_depth(key)

    def _send_depth(self, key: Key) -> None:
        """The book of ``key`` to its clients, when synced and not the one last pushed."""
        venue, symbol, _ = key
        view = self.lab.book_levels(symbol, DEPTH_LEVELS, exchange=venue)
        if not view.synced:
            return
        shown = (view.last_update_id, view.bids, view.asks)
        if self._depth_sent.get((venue, symbol)) == shown:
            return
        self._depth_sent[venue, symbol] = shown
        self._send(
            key,
            {
                "type": "depth",
                "symbol": symbol,
                "exchange": venue,
                "data": {
                    "last_update_id": view.last_update_id,
                    "bids": view.bids,
                    "asks": view.asks,
                },
            },
        )

    async def _poll_books(self) -> None:
        """Every subscribed book looked at for a change (a venue whose book updates arrive as
        no record of their own is pushed from here)."""
        while True:
            await asyncio.sleep(DEPTH_POLL_S)
            for key in [k for k in self.by_key if k[2] == "depth"]:
                try:
                    self._send_depth(key)
                except Exception:  # one book's trouble stops no other's
                    log.exception("pushing the %s %s book", key[0], key[1])

    def _send(self, key: Key, message: dict[str, Any]) -> None:
        clients = self.by_key.get(key)
        if not clients:
            return
        began = time.perf_counter()
        payload = orjson.dumps(message)  # serialized once, framed once, for every client
        data, frame = payload.decode(), text_frame(payload)
        for c in clients:
            c.offer_frame(key, data, frame)
        self.fanout_s.append(time.perf_counter() - began)

    # --- one client -------------------------------------------------------------------------

    def channels(self) -> list[str]:
        return [
            "ticker",
            "trade",
            "depth",
            *(f"kline_{iv}" for iv in self.lab.intervals),
            *PERPETUAL_CHANNELS,
        ]

    async def serve(self, ws: WebSocket) -> None:
        await ws.accept()
        if len(self.clients) >= self.max_clients:
            await ws.send_text(
                orjson.dumps(
                    {"type": "error", "detail": f"too many clients (limit {self.max_clients})"}
                ).decode()
            )
            await ws.close(code=1013, reason="too many clients")
            return
        client = Client(ws, self.max_backlog)
        self.clients.add(client)
        sender = client.sender = asyncio.create_task(client.run_sender())
        try:
            while True:
                receive = asyncio.create_task(ws.receive_text())
                done, _ = await asyncio.wait({receive, sender}, return_when=asyncio.FIRST_COMPLETED)
                if sender in done:  # closed for being too slow, or the socket broke
                    receive.cancel()
                    break
                self._handle(client, receive.result())
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
            self._drop(client)
            self.dropped_slow += client.too_slow
            if ws.client_state == WebSocketState.CONNECTED:
                code, reason = (
                    (1008, "too slow: backlog limit reached") if client.too_slow else (1000, "")
                )
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(code=code, reason=reason), 2)

    def _handle(self, client: Client, text: str) -> None:
        try:
            msg = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            client.reply({"type": "error", "detail": f"malformed JSON: {exc}"})
            return
        if not isinstance(msg, dict):
            client.reply({"type": "error", "detail": "expected a JSON object"})
            return
        action = msg.get("action")
        if action == "ping":
            client.reply({"type": "pong"})
            return
        if action not in ("subscribe", "unsubscribe"):
            client.reply(
                {
                    "type": "error",
                    "detail": f"unknown action {action!r}: expected subscribe, unsubscribe or ping",
                }
            )
            return
        symbols = msg.get("symbols")
        channels = msg.get("channels", ["ticker"])
        if not _string_list(symbols) or not _string_list(channels):
            name = "channels" if _string_list(symbols) else "symbols"
            client.reply(
                {"type": "error", "detail": f"'{name}' must be a non-empty list of strings"}
            )
            return
        venue = msg.get("exchange")
        if venue is None:
            venue = self.lab.exchange
        if not isinstance(venue, str) or venue.lower() not in self.lab.exchanges:
            client.reply(
                {
                    "type": "error",
                    "detail": f"unknown exchange {venue!r}: this server collects "
                    f"{', '.join(self.lab.exchanges)}",
                }
            )
            return
        venue = venue.lower()
        known = set(self.lab.symbols_of(venue))
        wanted = [_canonical(s) for s in symbols]
        unknown = [s for s, w in zip(symbols, wanted, strict=True) if w not in known]
        bad_channels = [c for c in channels if c not in self.channels()]
        if unknown or bad_channels:
            parts = []
            if unknown:
                where = f" on {venue}" if len(self.lab.exchanges) > 1 else ""
                parts.append(f"unknown symbol(s) {unknown}: this server has {sorted(known)}{where}")
            if bad_channels:
                parts.append(
                    f"unknown channel(s) {bad_channels}: expected some of {self.channels()}"
                )
            client.reply({"type": "error", "detail": "; ".join(parts)})
            return
        spot = [s for s, w in zip(symbols, wanted, strict=True) if w and not is_perpetual(w)]
        perpetual_only = [c for c in channels if c in PERPETUAL_CHANNELS]
        if spot and perpetual_only:
            client.reply(
                {
                    "type": "error",
                    "detail": f"channel(s) {perpetual_only} are a perpetual's, and {spot} "
                    "spot: subscribe to them for a perpetual such as BTCUSDT-PERP",
                }
            )
            return
        keys = {(venue, s, c) for s in wanted if s is not None for c in channels}  # no None here
        if action == "subscribe":
            if len(client.subs | keys) > self.max_subscriptions:
                client.reply(
                    {
                        "type": "error",
                        "detail": "too many subscriptions "
                        f"(limit {self.max_subscriptions} symbol-channel pairs)",
                    }
                )
                return
            for key in keys:
                client.subs.add(key)
                holders = self.by_key.setdefault(key, set())
                if not holders:
                    self._wanted[venue] = self._wanted.get(venue, 0) + 1
                holders.add(client)
        else:
            for key in keys:
                client.subs.discard(key)
                self._forget(client, key)
        client.reply(
            {
                "type": "subscribed" if action == "subscribe" else "unsubscribed",
                "symbols": sorted({s for _, s, _ in keys}),
                "channels": sorted({c for _, _, c in keys}),
                "exchange": venue,
                "subscriptions": sorted(self._named(key) for key in client.subs),
            }
        )

    def _named(self, key: Key) -> str:
        """``SYMBOL:channel`` on the first venue (as a one-venue server says it), else
        ``exchange:SYMBOL:channel``."""
        venue, symbol, channel = key
        return f"{symbol}:{channel}" if venue == self.lab.exchange else ":".join(key)

    def _forget(self, client: Client, key: Key) -> None:
        holders = self.by_key.get(key)
        if holders is not None:
            holders.discard(client)
            if not holders:
                del self.by_key[key]
                venue = key[0]
                if key[2] == "depth":
                    self._depth_sent.pop((venue, key[1]), None)
                left = self._wanted.get(venue, 0) - 1
                if left > 0:
                    self._wanted[venue] = left
                else:
                    self._wanted.pop(venue, None)

    def _drop(self, client: Client) -> None:
        for key in list(client.subs):
            self._forget(client, key)
        self.clients.discard(client)


def _string_list(value: object) -> TypeGuard[list[str]]:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)


def _canonical(symbol: str) -> str | None:
    try:
        return normalize_symbol(symbol)
    except ValueError:
        return None


def kline_data(k: Kline) -> dict[str, Any]:
    return {
        "open_time": k.open_time,
        "open": k.open,
        "high": k.high,
        "low": k.low,
        "close": k.close,
        "volume": k.volume,
        "quote_volume": k.quote_volume,
        "trades": k.trades,
        "taker_buy_volume": k.taker_buy_volume,
        "taker_buy_quote_volume": k.taker_buy_quote_volume,
        "close_time": k.close_time,
        "closed": k.closed,
    }


def mark_data(m: MarkPrice) -> dict[str, Any]:
    """A mark price update; null where this update does not carry a value (OKX sends the mark
    and the funding rate on two channels, so each of its updates carries one of them)."""
    return {
        "mark": m.mark,
        "index": m.index,
        "settle_estimate": m.settle_estimate,
        "funding_rate": m.funding_rate,
        "next_funding_time": m.next_funding_time if m.next_funding_time > 0 else None,
        "event_time": m.event_time,
    }


def perpetual_data(r: Liquidation | OpenInterest | Funding) -> tuple[str, dict[str, Any]]:
    """The channel and the message data of a perpetual's liquidation, open interest reading or
    settled funding."""
    if isinstance(r, Liquidation):
        return "liquidation", {
            "time": r.time,
            "side": r.side,
            "price": r.price,
            "qty": r.qty,
            "order_price": r.order_price,
            "notional": r.price * r.qty,
            "sampled": r.sampled,
        }
    if isinstance(r, OpenInterest):
        return "open_interest", {"time": r.time, "open_interest": r.open_interest, "value": r.value}
    return "funding", {"funding_time": r.funding_time, "rate": r.rate, "mark": r.mark}
