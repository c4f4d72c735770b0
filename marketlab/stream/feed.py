"""The venue-neutral asyncio layer: everything that keeps a venue's data whole.

:class:`Feed` holds what every venue needs: its connections (:mod:`marketlab.stream.connection`)
supervised, rolled over before the venue's connection age limit (and at once when it announces
a shutdown), overlapping so nothing is missed (duplicates are dropped downstream); REST polling
when the WebSocket stays down; and every kline that closed while we were away fetched over
REST, so the closed-kline series has no holes and no repeats. A venue's package subclasses it
(``marketlab.venues.binance.feed``, ``marketlab.venues.okx.feed``).

Parsing, book state and frames live elsewhere: this module owns the I/O, timers and retries,
and serves the books it holds to readers in other threads (:meth:`Feed.book_view`,
:meth:`Feed.book_state`, :meth:`Feed.book_check`, each under the book's lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from marketlab.recording import files as rec
from marketlab.records import Interval, is_perpetual
from marketlab.stream.config import FeedConfig
from marketlab.stream.connection import WsConnection
from marketlab.stream.intake import Intake, Sink, TypedSink
from marketlab.stream.klines import KlineIntegrity
from marketlab.stream.polling import RestPolling
from marketlab.stream.rest import RestError
from marketlab.stream.state import BookView, KlineStats, LockedBook, StreamStats, stat_keys
from marketlab.stream.trades import TradeIntegrity

__all__ = ["Feed", "VenueError"]

log = logging.getLogger("marketlab.feed")


class VenueError(RuntimeError):
    """Collection cannot go on: the venue refused what it was asked for (an unknown symbol),
    or a part of the collector died. Raised by ``Lab.wait_ready`` and shown in ``status()``."""


class Feed(Intake, KlineIntegrity, TradeIntegrity, RestPolling):
    """Collects a venue's streams into ``sink`` and keeps books and klines whole.

    Subclasses say how to reach the venue: connections and their subscriptions, frame
    decoding, books, and the REST client.
    """

    venue = ""
    text_ping: str | None = None  # a venue-level keepalive text, for venues that want one
    # seconds between those texts whatever the traffic, for a venue that wants them so (None:
    # only when the connection is quiet)
    text_ping_every: float | None = None
    # the venue's books follow one connection's chain (snapshots come on the stream): on a
    # rollover they start again from the successor's snapshots, never mixing two chains
    books_per_connection = False

    def __init__(
        self,
        symbols: Sequence[str],
        intervals: Sequence[str],
        channels: Sequence[str],
        config: FeedConfig,
        sink: Sink | TypedSink,
        kline_starts: dict[tuple[str, str], int] | None = None,
    ):
        self.symbols = list(symbols)
        self.intervals = [Interval(iv) for iv in intervals]
        self.channels = tuple(channels)
        self.config = config
        self._init_intake(sink)
        self._init_kline_integrity()
        self._init_trade_integrity()
        self._resubscribing: set[str] = set()  # books waiting for a new subscription's snapshot
        self.books: dict[str, LockedBook] = {}
        self.stream_stats: dict[tuple[str, str], StreamStats] = {
            key: StreamStats() for key in stat_keys(self.symbols, self.intervals, self.channels)
        }
        self.kline_stats = {(s, iv): KlineStats() for s in self.symbols for iv in self.intervals}
        self.bad_frames = 0
        self.frames_failed = 0  # of bad_frames: those whose taking raised (see frame_failed)
        self.duplicates = 0
        self.reconnects = 0  # over every connection, including retired ones
        self.bytes_retired = 0  # frames' bytes taken on connections since retired
        self.last_bad_frame = ""
        self.rest: Any = None
        self.connections: list[WsConnection] = []
        self.source = "ws"
        self.polling = False
        self._last_closed: dict[tuple[str, str], int] = dict(kline_starts or {})
        # Where each series' history ended before this run; the stream may move _last_closed
        # on before the start-up fetch begins, so the fetch must not read that.
        self._history_ends = dict(self._last_closed)
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
        # hears of every change to a book (under its lock): the bus publishes books from it
        self.book_tap: Callable[[Any, int | None, Any, Any, int], None] | None = None
        self.fatal: VenueError | None = None  # what stopped collection, in the venue's words

    # --- what a venue provides -----------------------------------------------------------

    def make_rest(self) -> Any:
        """The venue's REST client (made when :meth:`run` starts, inside the event loop): the
        symbol check, kline and trade backfill, book snapshots and polling all go through it."""
        raise NotImplementedError

    def connection_plans(self) -> list[tuple[str, list[Any], list[Any]]]:
        """``(url, streams, streams to subscribe after opening)`` for each connection."""
        raise NotImplementedError

    def subscribe_message(self, streams: list[Any], request_id: int, unsubscribe: bool) -> bytes:
        """The venue's (un)subscribe message for ``streams``: handed to each connection, which
        sends it (paced) for the streams its URL does not name, and again on every reconnect."""
        raise NotImplementedError

    def on_frame(self, frame: bytes, conn: WsConnection) -> None:
        """One frame from ``conn``: decoded and taken in (the hot path). A frame the venue's
        decoder refuses goes to :meth:`bad_frame`; the connection goes on either way."""
        raise NotImplementedError

    def frame_reader(self) -> Any:
        """The venue's frame reader, which reads a recording's frames ahead of the collector;
        None where there is none."""
        return None

    def kline_of(self, stream: Any) -> tuple[str, Interval] | None:
        """(symbol, interval) when ``stream`` carries klines."""
        raise NotImplementedError

    def on_subscribe_sent(self, conn: WsConnection, streams: list[Any], unsubscribe: bool) -> None:
        """A (un)subscription went out on ``conn``; venues that acknowledge them track it."""

    def book_of(self, stream: Any) -> str | None:
        """The symbol when ``stream`` carries the order book."""
        raise NotImplementedError

    # --- lifecycle -------------------------------------------------------------------------

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
        """Ask :meth:`run` to end: it closes the connections and tasks itself, so a caller on
        another task does not race the shutdown."""
        self._stopped.set()

    def resume_klines(self, ends: dict[tuple[str, str], int]) -> None:
        """Where each series' closed candles ended before this run (later than ``kline_starts``,
        e.g. on the bus): what closed since is fetched, nothing before it again."""
        for key, open_time in ends.items():
            if key in self.kline_stats and open_time > self._last_closed.get(key, -1):
                self._last_closed[key] = self._history_ends[key] = open_time

    async def _shutdown(self) -> None:
        # Stopped: what still arrives is neither recorded nor taken in (a replay of the
        # recording then ends exactly where live collection did).
        self.tap = None
        self.on_frame = _ignore  # type: ignore[method-assign]  # what still arrives is dropped
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

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _tap(self, kind: int, tag: str, records: Any) -> None:
        """Record what no frame carries (REST answers, the ready mark), so a replay of the
        recording takes in what the live feed did."""
        if self.tap is not None:
            self.tap(kind, tag, rec.encode_records(records))

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
            market = "perpetuals" if any(map(is_perpetual, self.symbols)) else "spot symbols"
            self.fail(
                f"{self.venue} does not list {', '.join(unknown)} "
                f"({len(listed)} {market} listed, e.g. {sample})"
            )
        else:
            self.tick_sizes = {s: listed[s] for s in self.symbols if listed[s] > 0}
            self.symbols_confirmed.set()

    def _open(self, url: str, streams: list[Any], initial: list[Any]) -> WsConnection:
        self._conn_seq += 1
        conn = WsConnection(
            url,
            streams,
            initial,
            f"{self.venue}-{self._conn_seq}",
            config=self.config,
            events=self,
            spawn=self._spawn,
            subscribe_message=self.subscribe_message,
            text_ping=self.text_ping,
            text_ping_every=self.text_ping_every,
        )
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

    def bytes_received(self) -> int:
        """Frames' bytes taken on every connection, retired ones included (only grows)."""
        return self.bytes_retired + sum(c.bytes_received for c in self.connections)

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
                self.bytes_retired += old.bytes_received

        self._spawn(retire())
        if self.books_per_connection:  # briefly out of sync, from the successor's snapshots
            for stream in old.streams:
                symbol = self.book_of(stream)
                if symbol is not None:
                    self.invalidate_book(symbol, f"moving to a new connection ({why})")

    def _resubscribe_book(self, conn: WsConnection, symbol: str, stream: Any, reason: str) -> None:
        """A book whose stream brings its snapshots lost its chain: subscribe to ``stream``
        again on ``conn`` for a fresh snapshot (once, until :meth:`_book_resynced`)."""
        if symbol in self._resubscribing:
            return
        log.warning("book %s: %s; subscribing again for a new snapshot", symbol, reason)
        self._resubscribing.add(symbol)

        async def resubscribe() -> None:
            await conn.subscribe([stream], unsubscribe=True)
            await asyncio.sleep(0)
            await conn.subscribe([stream])

        self._spawn(resubscribe())

    def _book_resynced(self, symbol: str) -> None:
        """The snapshot of a new subscription came: a later break subscribes again."""
        self._resubscribing.discard(symbol)

    def on_connected(self, conn: WsConnection) -> None:
        """``conn`` is (re)connected: every kline series it carries is backfilled from the
        last closed candle, as candles may have closed while it was down."""
        self._resubscribing.clear()  # its subscriptions bring every book's snapshot anew
        log.info("%s: connected (%d streams)", conn.name, len(conn.streams))
        for stream in conn.streams:
            kline = self.kline_of(stream)
            if kline is not None:
                symbol, iv = kline
                last = self._last_closed.get((symbol, str(iv)))
                if last is not None:
                    self._schedule_backfill((symbol, str(iv)), iv.next_open(last))

    def on_reconnecting(self, conn: WsConnection) -> None:
        """``conn`` is about to try again: counted over every connection, retired ones too."""
        self.reconnects += 1

    def on_disconnected(self, conn: WsConnection) -> None:
        """``conn`` dropped: its books missed updates, so they sync afresh (a retiring
        connection's books go on through its successor)."""
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
            if self.book_tap is not None:
                self.book_tap(lb.book, None, (), (), 0)

    def bad_frame(self, exc: Exception, conn: WsConnection) -> None:
        """A frame the venue's decoder refused: counted and shown in the status rather than
        ending the connection (one malformed frame says nothing of the next)."""
        self.bad_frames += 1
        self.last_bad_frame = str(exc)
        log.warning("%s: skipped a bad frame: %s", conn.name, exc)

    def frame_failed(self, exc: Exception, where: str) -> None:
        """A frame whose taking raised something other than the decoder's word for a bad frame
        (a bug's, a sink's): counted as a bad frame, so one frame never ends a connection or a
        replay; its traceback logged for the first few and then once a thousand (a sink that
        fails on every record would flood the log)."""
        self.bad_frames += 1
        self.frames_failed += 1
        self.last_bad_frame = f"{type(exc).__name__}: {exc}"
        if self.frames_failed <= 10 or self.frames_failed % 1000 == 0:
            log.error(
                "%s: a frame was not taken (%d so far)",
                where,
                self.frames_failed,
                exc_info=(type(exc), exc, exc.__traceback__),
            )

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

    # --- views -----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Any connection is up (a rollover keeps two): while none is, REST polling may stand
        in."""
        return any(c.connected for c in self.connections)

    def book_view(self, symbol: str, depth: int, exchange: str = "") -> BookView:
        """The book's top ``depth`` levels a side, or why there are none (no pandas)."""
        exchange = exchange or self.venue
        lb = self.books.get(symbol)
        if lb is None:
            return BookView(False, 0, [], [], "book channel off", exchange)
        with lb.lock:
            book = lb.book
            if not book.synced:
                return BookView(False, 0, [], [], book.reason, exchange)
            return BookView(
                True,
                book.last_update_id,
                book.bids(depth),
                book.asks(depth),
                "",
                exchange,
                book.verified_by,
                book.event_time or 0,
            )

    def book_state(self, symbol: str) -> str:
        """The book's state for the status table: ``synced``, ``off`` or ``out of sync: <why>``
        (read under the book's lock, from any thread)."""
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


def _ignore(frame: bytes, conn: Any) -> None:
    """Frames arriving after a feed was stopped."""
