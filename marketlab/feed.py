"""The asyncio layer: WebSocket connections to a venue and everything that keeps data whole.

:class:`Feed` holds what every venue needs: connections reconnected with capped exponential
backoff and jitter; keepalive pings and an idle watchdog for dead peers; a rollover to a fresh
connection before the venue's connection age limit (and at once when it announces a shutdown),
overlapping so nothing is missed (duplicates are dropped downstream); REST polling when the
WebSocket stays down; and every kline that closed while we were away fetched over REST, so the
closed-kline series has no holes and no repeats. :class:`BinanceFeed` adds Binance's streams and
its snapshot-plus-diff books; :mod:`marketlab.okx_feed` does the same for OKX.

Parsing, book state and frames live elsewhere; this module only owns I/O, timers and retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect

from marketlab import recording as rec
from marketlab.book import Action, OrderBook
from marketlab.defaults import CHANNELS
from marketlab.records import (
    AggTrade,
    BookDelta,
    BookSnapshot,
    BookTicker,
    Interval,
    Kline,
    MiniTicker,
    Record,
    Ticker,
    Trade,
)
from marketlab.rest import BinanceRest, RestError
from marketlab.settings import positive
from marketlab.venues import binance as bn

log = logging.getLogger("marketlab.feed")


class VenueError(RuntimeError):
    """Collection cannot go on: the venue refused what it was asked for (an unknown symbol),
    or a part of the collector died. Raised by ``Lab.wait_ready`` and shown in ``status()``."""


@dataclass
class FeedConfig:
    """Connection behaviour; the defaults suit the real exchange, tests shorten them."""

    ws_url: str = bn.DEFAULT_WS_URL
    rest_url: str = bn.DEFAULT_REST_URL
    open_timeout: float = 10.0
    ping_interval: float = 20.0  # our own keepalive pings
    ping_timeout: float = 20.0  # no pong within this → the peer is dead
    idle_timeout: float = 30.0  # no frame at all within this → the peer is dead
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    max_connection_age: float = 23.5 * 3600  # roll over before Binance's 24 h disconnect
    rollover_overlap: float = 3.0
    fallback_after: float = 15.0  # WebSocket down this long → poll REST
    poll_interval: float = 2.0
    streams_per_connection: int = bn.MAX_STREAMS_PER_CONNECTION
    subscribe_per_second: float = 2.0
    url_streams: int = 200  # streams named in the URL; the rest go by SUBSCRIBE
    subscribe_chunk: int = 200  # streams per SUBSCRIBE message
    book_snapshot_limit: int = 1000
    weight_limit: int = 6000
    seed_klines: int = 1440
    text_ping_after: float = 20.0  # OKX: silent this long → send "ping" (the server cuts at 30 s)
    subscribe_timeout: float = 5.0  # OKX: a subscription not acknowledged by then is sent again

    def __post_init__(self) -> None:
        """Refuse a setting that cannot work now, not later inside the collector."""
        for name, f in self.__dataclass_fields__.items():
            if name in ("ws_url", "rest_url"):
                continue
            integer = f.type in ("int", int)
            zero = name in ("rollover_overlap", "seed_klines", "url_streams")
            positive(name, getattr(self, name), integer=integer, zero=zero)
        if self.backoff_max < self.backoff_initial:
            raise ValueError(
                f"backoff_max ({self.backoff_max}) must be >= backoff_initial ({self.backoff_initial})"
            )
        if self.streams_per_connection > bn.MAX_STREAMS_PER_CONNECTION:
            raise ValueError(
                f"streams_per_connection must be <= {bn.MAX_STREAMS_PER_CONNECTION} (Binance's "
                f"limit per connection), got {self.streams_per_connection}"
            )
        if not 1 <= self.book_snapshot_limit <= 5000:
            raise ValueError(
                f"book_snapshot_limit must be 1..5000 (Binance's depth limit), got {self.book_snapshot_limit}"
            )

    def backoff(self, attempt: int) -> float:
        """Exponential with full jitter in [50%, 100%], capped."""
        ceiling = min(self.backoff_max, self.backoff_initial * 2**attempt)
        return ceiling * random.uniform(0.5, 1.0)


def streams_for(
    symbols: Sequence[str], intervals: Sequence[str], channels: Sequence[str]
) -> list[str]:
    unknown = set(channels) - set(CHANNELS)
    if unknown:
        raise ValueError(
            f"unknown channel(s) {sorted(unknown)}: expected some of {', '.join(CHANNELS)}"
        )
    out = []
    for s in symbols:
        if "trades" in channels:
            out.append(bn.stream_name(s, "trade"))
        if "aggTrades" in channels:
            out.append(bn.stream_name(s, "aggTrade"))
        if "ticker" in channels:
            out.append(bn.stream_name(s, "ticker"))
        if "miniTicker" in channels:
            out.append(bn.stream_name(s, "miniTicker"))
        if "bookTicker" in channels:
            out.append(bn.stream_name(s, "bookTicker"))
        if "book" in channels:
            out.append(bn.stream_name(s, "depth", fast=True))
        if "klines" in channels:
            out.extend(bn.stream_name(s, "kline", interval=iv) for iv in intervals)
    return out


# What orders each kind of record, so a repeat can be recognised (klines are handled apart).
_MARKS: dict[type, Callable[[Any], int]] = {
    Trade: lambda r: r.trade_id, AggTrade: lambda r: r.agg_id, Ticker: lambda r: r.event_time,
    MiniTicker: lambda r: r.event_time, BookTicker: lambda r: r.update_id,
    BookDelta: lambda r: r.last_update_id,
}  # fmt: skip

_INTERVALS: dict[str, Interval] = {}
_KEYS: dict[type, str] = {Trade: "trade", AggTrade: "aggTrade", Ticker: "ticker", MiniTicker: "miniTicker",
                          BookTicker: "bookTicker", BookDelta: "depth", BookSnapshot: "depth"}  # fmt: skip


@dataclass
class StreamStats:
    messages: int = 0
    last_received: float | None = None  # wall time
    source: str = "ws"


@dataclass
class KlineStats:
    backfilled: int = 0  # closed candles fetched over REST that the stream did not deliver
    gaps_detected: int = 0
    duplicates: int = 0


class LockedBook:
    """An order book and the lock readers in other threads take."""

    def __init__(self, symbol: str, max_levels: int):
        self.book = OrderBook(symbol, max_levels=max_levels)
        self.lock = threading.Lock()


Sink = Callable[[Sequence[Record], str], None]


class WsConnection:
    """One connection carrying ``streams``, kept alive until stopped.

    It opens ``url`` (which may name some streams itself) and subscribes to ``initial``.
    """

    def __init__(self, feed: Feed, url: str, streams: list[Any], initial: list[Any], name: str):
        self.feed = feed
        self.url = url
        self.streams = streams
        self.initial = initial
        self.name = name
        self.connected = False
        self.connected_at: float | None = None
        self.last_message: float | None = None
        self.messages = 0
        self.reconnects = 0
        self.retiring = False
        self.last_error = ""
        self.ws: ClientConnection | None = None
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._pacer = bn.MessagePacer(feed.config.subscribe_per_second)
        self._request_id = 0
        self._wake = asyncio.Event()  # the venue answers again: stop backing off

    def wake(self) -> None:
        """Reconnect now rather than at the end of the backoff (the venue is back)."""
        if not self.connected:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"marketlab-{self.name}")

    async def stop(self) -> None:
        self._stopping = True
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 2)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def age(self) -> float:
        return time.monotonic() - self.connected_at if self.connected_at else 0.0

    async def _run(self) -> None:
        cfg = self.feed.config
        attempt = 0
        while not self._stopping:
            try:
                async with connect(self.url, open_timeout=cfg.open_timeout, ping_interval=cfg.ping_interval,
                                   ping_timeout=cfg.ping_timeout, close_timeout=2,
                                   max_size=2**24, max_queue=4096) as ws:  # fmt: skip
                    self.ws = ws
                    attempt = 0
                    self._wake.clear()
                    self.connected, self.connected_at = True, time.monotonic()
                    self.feed.on_connected(self)
                    if self.initial:
                        self.feed._spawn(self.subscribe(self.initial))
                    await self._pump(ws)
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, websockets.WebSocketException) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.info("%s: connection lost (%s)", self.name, self.last_error)
            finally:
                was_connected, self.connected, self.ws = self.connected, False, None
                if was_connected:
                    self.feed.on_disconnected(self)
            if self._stopping or self.retiring:
                return
            delay = cfg.backoff(attempt)
            attempt += 1
            self.reconnects += 1
            self.feed.reconnects += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            if self._wake.is_set():  # the venue answers again: the backoff starts over
                self._wake.clear()
                attempt = 0
                log.info("%s: the venue answers again, reconnecting now", self.name)
                await asyncio.sleep(random.uniform(0.0, cfg.backoff_initial))

    async def _pump(self, ws: ClientConnection) -> None:
        """Frames to the feed, one by one; a watchdog beside it cuts a silent connection (a
        timeout per frame would cost more than the rest of the frame's handling)."""
        self.last_message = time.monotonic()
        self._idle = ""
        watchdog = asyncio.create_task(self._watch(ws))
        recv, feed, monotonic = ws.recv, self.feed, time.monotonic
        try:
            while True:
                try:
                    frame = await recv(decode=False)
                except websockets.ConnectionClosed:
                    if self._idle:
                        return  # cut by the watchdog: reported there
                    raise
                self.last_message = monotonic()
                self.messages += 1
                if feed.tap is not None:
                    feed.tap(rec.WS, self.name, frame)
                feed.on_frame(frame, self)
        finally:
            watchdog.cancel()

    async def _watch(self, ws: ClientConnection) -> None:
        cfg = self.feed.config
        text_ping = self.feed.text_ping
        ping_after = cfg.text_ping_after if text_ping is not None else math.inf
        limit = cfg.idle_timeout + (ping_after if text_ping is not None else 0.0)
        pinged_at = -math.inf
        while True:
            await asyncio.sleep(min(cfg.idle_timeout, ping_after) / 4)
            silence = time.monotonic() - (self.last_message or 0.0)
            if silence >= ping_after and pinged_at < self.last_message:
                pinged_at = (
                    time.monotonic()
                )  # a venue that wants to hear from us before it gives up
                with contextlib.suppress(websockets.WebSocketException):
                    await ws.send(text_ping, text=True)  # type: ignore[arg-type]
            if silence >= limit:
                self._idle = self.last_error = f"no data for {silence:.0f} s"
                log.warning("%s: %s, reconnecting", self.name, self.last_error)
                ws.transport.abort()
                return

    async def subscribe(self, streams: list[Any], unsubscribe: bool = False) -> None:
        """(Un)subscribe in chunks, paced under the venue's incoming-message limit."""
        chunk = self.feed.config.subscribe_chunk
        for i in range(0, len(streams), chunk):
            await asyncio.sleep(self._pacer.delay(time.monotonic()))
            ws = self.ws
            if ws is None:
                return
            self._pacer.sent(time.monotonic())
            self._request_id += 1
            part = streams[i : i + chunk]
            await ws.send(
                self.feed.subscribe_message(part, self._request_id, unsubscribe), text=True
            )
            self.feed.on_subscribe_sent(self, part, unsubscribe)


def stat_keys(
    symbols: Sequence[str], intervals: Sequence[str], channels: Sequence[str]
) -> list[tuple[str, str]]:
    """The (symbol, stream) rows of the status table, so every one shows before data comes."""
    names = {"trades": "trade", "aggTrades": "aggTrade", "ticker": "ticker", "miniTicker": "miniTicker",
             "bookTicker": "bookTicker", "book": "depth"}  # fmt: skip
    return [(s, names[c]) for s in symbols for c in channels if c in names] + [
        (s, f"kline_{iv}") for s in symbols for iv in intervals if "klines" in channels
    ]


class Feed:
    """Collects a venue's streams into ``sink`` and keeps books and klines whole.

    Subclasses say how to reach the venue: connections and their subscriptions, frame
    decoding, books, and the REST client.
    """

    venue = ""
    text_ping: str | None = None  # a venue-level keepalive text, for venues that want one

    def __init__(self, symbols: Sequence[str], intervals: Sequence[str], channels: Sequence[str],
                 config: FeedConfig, sink: Sink,
                 kline_starts: dict[tuple[str, str], int] | None = None):  # fmt: skip
        self.symbols = list(symbols)
        self.intervals = [Interval(iv) for iv in intervals]
        self.channels = tuple(channels)
        self.config = config
        self.sink = sink
        self.books: dict[str, LockedBook] = {}
        self.stream_stats: dict[tuple[str, str], StreamStats] = {
            key: StreamStats() for key in stat_keys(self.symbols, self.intervals, self.channels)
        }
        self.kline_stats = {(s, iv): KlineStats() for s in self.symbols for iv in self.intervals}
        self.bad_frames = 0
        self.duplicates = 0
        self.reconnects = 0  # over every connection, including retired ones
        self._marks: dict[tuple[str, str], int] = {}
        self.last_bad_frame = ""
        self.rest: Any = None
        self.connections: list[WsConnection] = []
        self.source = "ws"
        self.polling = False
        self._last_closed: dict[tuple[str, str], int] = dict(kline_starts or {})
        # Where each series' history ended before this run; the stream may move _last_closed
        # on before the start-up fetch begins, so the fetch must not read that.
        self._history_ends = dict(self._last_closed)
        self._emitted: dict[tuple[str, str], tuple[set[int], deque[int]]] = {}
        self._backfill_tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._backfill_from: dict[tuple[str, str], int] = {}
        self._snapshot_tasks: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._ws_down_since: float | None = time.monotonic()
        self._poller: asyncio.Task[None] | None = None
        self._probe_task: asyncio.Task[None] | None = None
        self._probed_at = -math.inf
        self._stopped = asyncio.Event()
        self._conn_seq = 0
        self.poll_errors = 0
        self.ready = asyncio.Event()
        self.symbols_confirmed = asyncio.Event()  # the venue lists every symbol collected
        self.tick_sizes: dict[str, float] = {}  # price tick per symbol, as the venue lists it
        self.tap: Callable[[int, str, bytes], None] | None = None  # a recorder of what comes in
        self.fatal: VenueError | None = None  # what stopped collection, in the venue's words

    # --- lifecycle -------------------------------------------------------------------------

    # --- what a venue provides -----------------------------------------------------------

    def make_rest(self) -> Any:
        raise NotImplementedError

    def connection_plans(self) -> list[tuple[str, list[Any], list[Any]]]:
        """``(url, streams, streams to subscribe after opening)`` for each connection."""
        raise NotImplementedError

    def subscribe_message(self, streams: list[Any], request_id: int, unsubscribe: bool) -> bytes:
        raise NotImplementedError

    def on_frame(self, frame: bytes, conn: WsConnection) -> None:
        raise NotImplementedError

    def kline_of(self, stream: Any) -> tuple[str, Interval] | None:
        """(symbol, interval) when ``stream`` carries klines."""
        raise NotImplementedError

    def on_subscribe_sent(self, conn: WsConnection, streams: list[Any], unsubscribe: bool) -> None:
        """A (un)subscription went out on ``conn``; venues that acknowledge them track it."""

    def book_of(self, stream: Any) -> str | None:
        """The symbol when ``stream`` carries the order book."""
        raise NotImplementedError

    async def run(self) -> None:
        """Run until :meth:`stop`."""
        self.rest = self.make_rest()
        try:
            self.rest.on_recovered = self._venue_answers
            self._spawn(self._check_symbols())
            for url, streams, initial in self.connection_plans():
                self._open(url, streams, initial)
            if "klines" in self.channels:
                self._spawn(self._seed_klines())
            while not self._stopped.is_set():
                self._supervise()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopped.wait(), 0.25)
        finally:
            await self._shutdown()

    async def stop(self) -> None:
        self._stopped.set()

    async def _shutdown(self) -> None:
        for conn in list(self.connections):
            conn.retiring = True
            await conn.stop()
        tasks = [*self._tasks, *([self._poller] if self._poller else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.rest is not None:
            await self.rest.close()

    def _spawn(self, coro) -> asyncio.Task[None]:  # type: ignore[no-untyped-def]
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("background task failed", exc_info=exc)
            if not self._stopped.is_set():  # a task failing as everything closes is no news
                self.fail(f"a collector task failed: {type(exc).__name__}: {exc}")

    def fail(self, message: str) -> None:
        """Stop collecting for good: ``message`` reaches the user (``wait_ready``, ``status``)."""
        if self.fatal is None:
            log.error("%s: stopping: %s", self.venue, message)
            self.fatal = VenueError(message)
        self._stopped.set()

    async def _check_symbols(self) -> None:
        """Ask the venue which symbols it lists; collecting one it does not is refused (a
        stream of an unknown symbol would stay silent rather than fail)."""
        assert self.rest is not None
        attempt = 0
        while not self._stopped.is_set():
            try:
                listed = await self.rest.listed_symbols()
                break
            except RestError as exc:
                if not exc.retryable:
                    self.fail(f"{self.venue} refused the symbol list request: {exc}")
                    return
                await asyncio.sleep(self.config.backoff(attempt))
                attempt = min(attempt + 1, 6)
        else:
            return
        unknown = [s for s in self.symbols if s not in listed]
        if unknown:
            sample = ", ".join(sorted(listed)[:5])
            self.fail(
                f"{self.venue} does not list {', '.join(unknown)} "
                f"({len(listed)} spot symbols listed, e.g. {sample})"
            )
        else:
            self.tick_sizes = {s: listed[s] for s in self.symbols if listed[s] > 0}
            self.symbols_confirmed.set()

    def _open(self, url: str, streams: list[Any], initial: list[Any]) -> WsConnection:
        self._conn_seq += 1
        conn = WsConnection(self, url, streams, initial, f"{self.venue}-{self._conn_seq}")
        self.connections.append(conn)
        conn.start()
        return conn

    # --- supervision: rollover and fallback ------------------------------------------------

    def _supervise(self) -> None:
        now = time.monotonic()
        for conn in list(self.connections):
            if (
                conn.connected
                and not conn.retiring
                and conn.age() >= self.config.max_connection_age
            ):
                self._roll_over(conn, "connection age")
        down = [c for c in self.connections if not c.connected and not c.retiring]
        if (
            down
            and self._poller is None
            and now - self._probed_at >= self.config.poll_interval
            and (self._probe_task is None or self._probe_task.done())
        ):
            self._probed_at = now
            self._probe_task = self._spawn(self._probe())
        up = any(c.connected for c in self.connections)
        if up:
            self._ws_down_since = None
            if self._poller is not None:
                log.warning("WebSocket is back: stopping REST polling")
                self._poller.cancel()
                self._poller = None
                self.polling = False
                self.source = "ws"
                for symbol in self.books:  # polled books are shallow: sync them afresh
                    self.invalidate_book(symbol, "back on the WebSocket")
        elif self._ws_down_since is None:
            self._ws_down_since = now
        elif self._poller is None and now - self._ws_down_since >= self.config.fallback_after:
            log.warning("WebSocket down for %.0f s: polling REST", now - self._ws_down_since)
            self.polling = True
            self.source = "rest"
            self._poller = asyncio.create_task(self._poll())

    def _venue_answers(self) -> None:
        """REST works again after failing: connections waiting out a backoff retry at once."""
        for conn in self.connections:
            if not conn.retiring:
                conn.wake()

    async def _probe(self) -> None:
        """While a connection is down, ask the venue the time: its answer ends the backoff."""
        assert self.rest is not None
        with contextlib.suppress(RestError):
            await self.rest.server_time()

    def _roll_over(self, old: WsConnection, why: str) -> None:
        """Open a successor with the same streams; retire ``old`` once the new one delivers."""
        if old.retiring:
            return
        old.retiring = True
        log.info("%s: rolling over (%s)", old.name, why)
        new = self._open(old.url, old.streams, old.initial)

        async def retire() -> None:
            deadline = time.monotonic() + max(30.0, self.config.open_timeout * 3)
            while new.messages == 0 and time.monotonic() < deadline and not self._stopped.is_set():
                await asyncio.sleep(0.05)
            await asyncio.sleep(self.config.rollover_overlap)
            await old.stop()
            with contextlib.suppress(ValueError):
                self.connections.remove(old)

        self._spawn(retire())

    def on_connected(self, conn: WsConnection) -> None:
        log.info("%s: connected (%d streams)", conn.name, len(conn.streams))
        for stream in conn.streams:
            kline = self.kline_of(stream)
            if kline is not None:
                symbol, iv = kline
                last = self._last_closed.get((symbol, str(iv)))
                if last is not None:
                    self._schedule_backfill((symbol, str(iv)), iv.next_open(last))

    def on_disconnected(self, conn: WsConnection) -> None:
        if conn.retiring:
            return
        for stream in conn.streams:
            symbol = self.book_of(stream)
            if symbol in self.books:
                self.invalidate_book(symbol, f"stream interrupted ({conn.last_error or 'closed'})")

    def invalidate_book(self, symbol: str, reason: str) -> None:
        """Forget a book (it will sync afresh); recorded, since no frame shows why."""
        lb = self.books.get(symbol)
        if lb is None:
            return
        if self.tap is not None:
            self.tap(rec.INVALIDATED, symbol, reason.encode())
        with lb.lock:
            lb.book.invalidate(reason)

    def bad_frame(self, exc: Exception, conn: WsConnection) -> None:
        self.bad_frames += 1
        self.last_bad_frame = str(exc)
        log.warning("%s: skipped a bad frame: %s", conn.name, exc)

    def unreachable_for(self, now: float | None = None) -> float:
        """Seconds the venue has been unreachable: the WebSocket down and REST failing since."""
        down = self._ws_down_since
        rest = self.rest
        if down is None or rest is None:
            return 0.0
        ok = rest.last_success if rest.last_success is not None else -math.inf
        if rest.last_failure is None or rest.last_failure < max(down, ok):
            return 0.0  # REST not failing since the WebSocket went (or since it last worked)
        return (time.monotonic() if now is None else now) - max(down, ok)

    # --- incoming records ------------------------------------------------------------------

    def _record(self, record: Record, source: str) -> None:
        kind = type(record)
        if kind is Kline:
            key = (record.symbol, f"kline_{record.interval}")
        else:
            key = (record.symbol, _KEYS.get(kind, kind.__name__))
            mark = _MARKS.get(kind)
            if mark is not None:  # a record already delivered (overlapping connections repeat)
                value = mark(record)
                if value <= self._marks.get(key, -1):
                    self.duplicates += 1
                    return
                self._marks[key] = value
        self._count(key, source)
        if kind is Kline:
            self._kline(record, source, check_gaps=True)  # type: ignore[arg-type]
        elif kind is BookDelta:
            self._delta(record)  # type: ignore[arg-type]
            self.sink((record,), source)
        else:
            self.sink((record,), source)

    def _count(self, key: tuple[str, str], source: str) -> None:
        """One more message on a (symbol, stream) row of the status table."""
        stats = self.stream_stats.get(key)
        if stats is None:
            stats = self.stream_stats[key] = StreamStats()
        stats.messages += 1
        stats.last_received = time.time()
        stats.source = source

    def _delta(self, delta: BookDelta) -> None:
        """Diff-depth events; venues whose books are kept from them override this."""

    # --- klines: integrity -----------------------------------------------------------------

    def _kline(self, k: Kline, source: str, check_gaps: bool) -> bool:
        key = (k.symbol, k.interval)
        last = self._last_closed.get(key)
        if check_gaps and last is not None:
            iv = _INTERVALS.get(k.interval) or _INTERVALS.setdefault(
                k.interval, Interval(k.interval)
            )
            expected = iv.next_open(last)
            if k.open_time > expected:
                self.kline_stats[key].gaps_detected += 1
                self._schedule_backfill(key, expected)
        if k.closed:
            seen, order = self._emitted.setdefault(key, (set(), deque()))
            if k.open_time in seen:
                self.kline_stats[key].duplicates += 1
                return False
            seen.add(k.open_time)
            order.append(k.open_time)
            if len(order) > 10_000:
                seen.discard(order.popleft())
            if last is None or k.open_time > last:
                self._last_closed[key] = k.open_time
        self.sink((k,), source)
        return True

    def _schedule_backfill(self, key: tuple[str, str], start: int) -> None:
        """Fetch every closed candle from ``start`` on (merged with any pending request)."""
        pending = self._backfill_from.get(key)
        self._backfill_from[key] = start if pending is None else min(pending, start)
        task = self._backfill_tasks.get(key)
        if task is None or task.done():
            self._backfill_tasks[key] = self._spawn(self._backfill(key))

    async def _backfill(self, key: tuple[str, str]) -> None:
        while (start := self._backfill_from.pop(key, None)) is not None:
            added = await self._fetch_klines(key, start, count_as_backfill=True)
            if added:
                log.info("klines %s %s: backfilled %d candle(s) over REST", *key, added)

    async def _fetch_klines(self, key: tuple[str, str], start: int, count_as_backfill: bool,
                            include_open: bool = False) -> int:  # fmt: skip
        """Page through the venue's klines from ``start``; returns closed candles delivered."""
        assert self.rest is not None
        symbol, interval = key
        iv = Interval(interval)
        page = self.rest.kline_page
        added = attempt = 0
        cursor = start
        while not self._stopped.is_set():
            try:
                now = await self.rest.server_time()
                rows = await self.rest.klines(
                    symbol, interval, start=cursor, limit=page, server_time=now
                )
            except RestError as exc:
                if not exc.retryable:
                    self.fail(f"{self.venue} refused klines {symbol} {interval}: {exc}")
                    return added
                await asyncio.sleep(self.config.backoff(attempt))
                attempt += 1
                continue
            attempt = 0
            self._tap(rec.KLINES, f"{symbol} {interval} {int(include_open)}", rows)
            added += self._apply_klines(rows, include_open)
            closed = [k for k in rows if k.closed]
            if closed:
                cursor = iv.next_open(closed[-1].open_time)
            elif self.rest.windowed and cursor + page * iv.ms < now - iv.ms:
                cursor += page * iv.ms  # an empty window (the venue was down): look further
                continue
            else:
                break
            if (not self.rest.windowed and len(rows) < page) or iv.next_open(cursor) > now:
                break
        if count_as_backfill:
            self.kline_stats[key].backfilled += added
            self._tap(rec.KLINES, f"{symbol} {interval} 0 {added}", [])
        return added

    async def _seed_klines(self) -> None:
        """Start-up: the recent past of every series (or from where the caller's history ends)."""
        assert self.rest is not None
        now = await self._server_time_with_retry()
        jobs = []
        for symbol in self.symbols:
            for iv in self.intervals:
                key = (symbol, str(iv))
                known = self._history_ends.get(key)
                if known is not None:
                    start, backfill = iv.next_open(known), True
                else:
                    start, backfill = iv.open_of(now) - self.config.seed_klines * iv.ms, False
                jobs.append(self._fetch_klines(key, max(0, start), count_as_backfill=backfill,
                                               include_open=True))  # fmt: skip
        await asyncio.gather(*jobs)
        self._tap(rec.READY, "", [])
        self.ready.set()

    def _apply_klines(self, rows: Sequence[Kline], include_open: bool) -> int:
        """A page of REST klines: closed ones through the integrity checks, returns how many
        were new; the open one (``include_open``) straight to the sink."""
        added = 0
        for k in rows:
            if k.closed:
                if self._kline(k, "rest", check_gaps=False):
                    added += 1
            elif include_open:
                self.sink((k,), "rest")
        return added

    def _tap(self, kind: int, tag: str, records: Any) -> None:
        if self.tap is not None:
            self.tap(kind, tag, rec.encode_records(records))

    async def _server_time_with_retry(self) -> int:
        assert self.rest is not None
        attempt = 0
        while True:
            try:
                return await self.rest.server_time()
            except RestError:
                await asyncio.sleep(self.config.backoff(attempt))
                attempt += 1

    # --- REST fallback ---------------------------------------------------------------------

    async def _poll(self) -> None:
        """While the WebSocket is down: tickers, books and candles over REST."""
        assert self.rest is not None
        while True:
            began = time.monotonic()
            try:
                if "ticker" in self.channels:
                    tickers = await self.rest.tickers(self.symbols)
                    self._tap(rec.TICKERS, "", tickers)
                    self._apply_polled(tickers)
                for symbol in self.books:
                    limit = min(100, self.config.book_snapshot_limit)
                    snap = await self.rest.depth(symbol, limit)
                    self._tap(rec.POLLED_BOOK, str(limit), snap)
                    self._apply_polled_book(snap, limit)
                if "klines" in self.channels:
                    now = await self.rest.server_time()
                    for symbol in self.symbols:
                        for iv in self.intervals:
                            klines = await self.rest.klines(symbol, iv, limit=2, server_time=now)
                            self._tap(rec.KLINES, f"{symbol} {iv} poll", klines)
                            self._apply_polled(klines)
                self.poll_errors = 0
            except RestError as exc:
                self.poll_errors += 1
                if self.poll_errors in (1, 10) or self.poll_errors % 100 == 0:
                    log.warning("REST polling (%d failures in a row): %s", self.poll_errors, exc)
            await asyncio.sleep(max(0.0, self.config.poll_interval - (time.monotonic() - began)))

    def _apply_polled(self, records: Sequence[Record]) -> None:
        for r in records:
            self._record(r, "rest")

    def _apply_polled_book(self, snap: BookSnapshot, limit: int) -> None:
        lb = self.books.get(snap.symbol)
        if lb is None:
            return
        with lb.lock:
            lb.book.reset(snap, limit)
        self.stream_stats.setdefault((snap.symbol, "depth"), StreamStats()).source = "rest"

    # --- views -----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return any(c.connected for c in self.connections)

    def book_state(self, symbol: str) -> str:
        lb = self.books.get(symbol)
        if lb is None:
            return "off"
        with lb.lock:
            return "synced" if lb.book.synced else f"out of sync: {lb.book.reason}"

    def book_check(self, symbol: str) -> str:
        """How a synced book is known to equal the venue's ("" while it is not synced)."""
        lb = self.books.get(symbol)
        if lb is None:
            return ""
        with lb.lock:
            return lb.book.verified_by if lb.book.synced else ""


class BinanceFeed(Feed):
    """Binance Spot: combined streams, SUBSCRIBE for the rest, books from REST snapshots
    bridged to the diff-depth stream (Binance's documented procedure)."""

    venue = "binance"

    def __init__(self, symbols: Sequence[str], intervals: Sequence[str], channels: Sequence[str],
                 config: FeedConfig, sink: Sink,
                 kline_starts: dict[tuple[str, str], int] | None = None):  # fmt: skip
        super().__init__(symbols, intervals, channels, config, sink, kline_starts)
        self.streams = streams_for(self.symbols, self.intervals, self.channels)
        if "book" in self.channels:
            self.books = {s: LockedBook(s, config.book_snapshot_limit) for s in self.symbols}
        self._decoder = bn.StreamDecoder()
        self._parsed: dict[str, bn.Stream] = {n: bn.parse_stream(n) for n in self.streams}

    def make_rest(self) -> BinanceRest:
        return BinanceRest(self.config.rest_url, weight_limit=self.config.weight_limit)

    def connection_plans(self) -> list[tuple[str, list[Any], list[Any]]]:
        cfg = self.config
        return [
            (
                bn.combined_stream_url(cfg.ws_url, group[: cfg.url_streams]),
                group,
                group[cfg.url_streams :],
            )
            for group in bn.split_streams(self.streams, cfg.streams_per_connection)
        ]

    def subscribe_message(self, streams: list[Any], request_id: int, unsubscribe: bool) -> bytes:
        make = bn.unsubscribe_message if unsubscribe else bn.subscribe_message
        return make(streams, request_id)

    def kline_of(self, stream: Any) -> tuple[str, Interval] | None:
        st = self._parsed.get(stream) or bn.parse_stream(stream)
        return (st.symbol, st.interval) if st.channel == "kline" and st.interval else None

    def book_of(self, stream: Any) -> str | None:
        st = self._parsed.get(stream) or bn.parse_stream(stream)
        return st.symbol if st.channel == "depth" else None

    def on_frame(self, frame: bytes, conn: WsConnection) -> None:
        try:
            events = self._decoder.decode(frame)
        except bn.FrameError as exc:
            self.bad_frame(exc, conn)
            return
        for event in events:
            if isinstance(event, bn.ServerShutdown):
                self._roll_over(conn, "serverShutdown")
            elif isinstance(event, bn.RequestError):
                log.error(
                    "%s: request %s refused: %s (code %s)",
                    conn.name,
                    event.id,
                    event.msg,
                    event.code,
                )
            elif not isinstance(event, bn.SubscriptionResult):
                self._record(event, "ws")

    # --- order books -----------------------------------------------------------------------

    def _delta(self, delta: BookDelta) -> None:
        lb = self.books.get(delta.symbol)
        if lb is None:
            return
        with lb.lock:
            action = lb.book.on_delta(delta)
        if action is Action.FETCH_SNAPSHOT:
            self._schedule_snapshot(delta.symbol)

    def _apply_snapshot(self, snap: BookSnapshot) -> tuple[Action, bool]:
        lb = self.books[snap.symbol]
        with lb.lock:
            action = lb.book.on_snapshot(snap)
            synced = lb.book.synced
        if synced:
            log.info("book %s: synced at update %d", snap.symbol, lb.book.last_update_id)
        return action, synced

    def _schedule_snapshot(self, symbol: str) -> None:
        task = self._snapshot_tasks.get(symbol)
        if task is None or task.done():
            self._snapshot_tasks[symbol] = self._spawn(self._fetch_snapshot(symbol))

    async def _fetch_snapshot(self, symbol: str) -> None:
        assert self.rest is not None
        attempt = 0
        while not self._stopped.is_set():
            try:
                snap = await self.rest.depth(symbol, self.config.book_snapshot_limit)
            except RestError as exc:
                if not exc.retryable:
                    self.fail(f"{self.venue} refused a book snapshot of {symbol}: {exc}")
                    return
                await asyncio.sleep(self.config.backoff(attempt))
                attempt += 1
                continue
            self._tap(rec.SNAPSHOT, symbol, snap)
            action, synced = self._apply_snapshot(snap)
            if action is not Action.FETCH_SNAPSHOT:
                return
            await asyncio.sleep(0.2 if synced else min(2.0, 0.2 * 2**attempt))
            attempt += 1
