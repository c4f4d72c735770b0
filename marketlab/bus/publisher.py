"""A collector's side of the bus: every record it takes in, published to JetStream.

Records are gathered per (kind, symbol) on the collector thread (a list append) and sealed
into one message each ``flush_interval``; messages go out in order with JetStream's acks
outstanding (up to a window), and everything not acknowledged is sent again, in order, after
a disconnect, a failed or a late ack (the duplicate window drops what had landed).

A failure starts a failing spell (:attr:`Publisher.failing_since`, the reason in
``last_error``): the window is taken back, and one message at a time (the oldest) is tried
again after a growing delay (``RETRY_FIRST`` doubling to ``RETRY_MAX``) until the bus
acknowledges it; then the window opens again and the spell ends (``last_error`` cleared). A
stream electing a new leader is thus asked once per delay, not sent the whole window every few
milliseconds. While the bus is away or failing the collector keeps collecting and holds up to
``buffer_limit`` records (the oldest are let go of first, counted), sealed into messages every
``BACKLOG_SEAL`` s rather than every ``flush_interval`` (fewer, fuller messages to send once the
bus takes them again); it publishes what it held when the bus acknowledges again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any, NamedTuple

from marketlab.bus import encoding as enc
from marketlab.bus.config import BusConfig, BusRefused, close_quietly, connect, ensure_stream
from marketlab.records import Kline, Ticker, Trade

log = logging.getLogger("marketlab.bus")

MAX_INFLIGHT = 2000  # messages awaiting their ack
RETRY_FIRST = 0.05  # seconds before the first message is tried again after a failure
RETRY_MAX = 0.5  # the longest wait between two tries (doubling from RETRY_FIRST)
PROBE_TIMEOUT = 1.0  # failing: how long the one message tried waits for its ack (else ack_timeout)
BACKLOG_SEAL = 0.1  # seconds between seals while failing or behind (else every flush_interval)
CONNECT_RETRY_MAX = 5.0  # the longest wait between two tries to connect and find the stream


class Outgoing(NamedTuple):
    subject: str
    payload: bytes
    msg_id: str
    records: int
    sent: bool = False  # sent before (its ack lost or failed): a second send is a resend


class Publisher:
    def __init__(self, config: BusConfig, exchange: str):
        self.config = config
        self.exchange = exchange
        self._open: dict[tuple[str, str, bool], list[Any]] = {}
        self._outbox: deque[Outgoing] = deque()
        self._inflight: deque[tuple[Outgoing, asyncio.Future[Any], float]] = deque()
        self._held = 0  # records sealed and not yet acknowledged
        self._trade_ids: dict[str, int] = {}  # newest trade id published per symbol
        self._book_ids: dict[str, int] = {}  # update id of the book state readers hold
        self._snapshot_due: dict[str, float] = {}
        self._books: dict[str, Any] = {}  # each symbol's book, as the feed last showed it
        self._quiet_check = 0.0
        self.connected = False
        self.published = 0  # records acknowledged by the bus
        self.messages = 0
        self.dropped = 0  # records let go of while the bus was away too long
        self.resent = 0  # messages sent again (an ack lost or failed)
        self.last_error = ""  # why publishing fails ("" while it does not)
        self.failing_since: float | None = None  # wall time a failing spell began
        self.outages = 0  # failing spells so far
        self.last_outage_s: float | None = None  # how long the last spell lasted
        self.stream_settings: dict[str, Any] = {}  # the stream's, as found or made
        self.refused = ""  # why the bus refused this collector (its credentials or TLS), if it did
        self._tries = 0  # failures in a row: how long to wait before trying again
        self._retry_at = 0.0  # monotonic time before which nothing is sent
        self._probing = False  # failing: one message at a time until the bus acknowledges
        self._ack_failure: BaseException | None = None  # a publish in the window failed
        self._window = 0  # which window publishes belong to (one more each take-back)
        self._seal_due = 0.0  # monotonic time of the next seal
        self._nc: Any = None
        self._js: Any = None
        self._stopping = False
        self._reconnected = False
        self.muted = False  # set while a fallback venue's records pass (published by no one)

    # --- the collector thread: records in (cheap) ------------------------------------------

    def on_record(self, r: Any) -> None:
        if self.muted:
            return
        kind = type(r)
        if kind is Trade:
            last = self._trade_ids.get(r.symbol, -1)
            if r.trade_id > last:
                self._trade_ids[r.symbol] = r.trade_id
                self._add("trade", r.symbol, r, False)
            else:  # an id older than one published: a gap's trade, fetched late
                self._add("trade", r.symbol, r, True)
        elif kind is Kline:
            self._add("kline" if r.closed else "kline_open", r.symbol, r, False)
        elif kind is Ticker:
            self._add("ticker", r.symbol, r, False)
        else:
            perpetual = enc.PERPETUAL_KINDS.get(kind)
            if perpetual is not None:  # the same record has the same message id, however sent
                self._add(perpetual, r.symbol, r, False)

    def _add(self, kind: str, symbol: str, record: Any, backfill: bool) -> None:
        batch = self._open.get((kind, symbol, backfill))
        if batch is None:
            self._open[(kind, symbol, backfill)] = [record]
        else:
            batch.append(record)

    def on_book(self, book: Any, was: int | None, bids: Any, asks: Any, event_time: int) -> None:
        """A feed's book changed (called under its lock): ``was`` is the update id it had
        while synced before (None: it has just synced), ``bids``/``asks`` the levels changed."""
        symbol = book.symbol
        if not book.synced:
            self._book_ids.pop(symbol, None)
            return
        lid = book.last_update_id
        if lid == was:
            return  # nothing applied (a repeat, a heartbeat)
        held = self._book_ids.get(symbol)
        now = time.monotonic()
        if was is None or held != was:
            self._add("book", symbol, _state(book, fresh=True), False)
            self._snapshot_due[symbol] = now + self.config.snapshot_interval
        else:
            self._add(
                "book",
                symbol,
                enc.BookChange(symbol, was, lid, _levels(bids), _levels(asks), event_time or 0),
                False,
            )
            if now >= self._snapshot_due.get(symbol, 0.0):
                self._add("book", symbol, _state(book, fresh=False), False)
                self._snapshot_due[symbol] = now + self.config.snapshot_interval
        self._book_ids[symbol] = lid
        self._books[symbol] = book

    def quiet_books(self, now: float) -> None:
        """A synced book that has not changed for ``snapshot_interval`` is sent whole all the
        same: readers hear that its collector is alive (and late ones get a book)."""
        if now < self._quiet_check:
            return
        self._quiet_check = now + 1.0
        for symbol, book in self._books.items():
            if (
                book.synced
                and self._book_ids.get(symbol) == book.last_update_id
                and now >= self._snapshot_due.get(symbol, 0.0)
            ):
                self._add("book", symbol, _state(book, fresh=False), False)
                self._snapshot_due[symbol] = now + self.config.snapshot_interval

    # --- the bus -----------------------------------------------------------------------------

    def _seal(self) -> None:
        """Each open batch becomes one message."""
        batches, self._open = self._open, {}
        for (kind, symbol, backfill), batch in batches.items():
            if kind == "trade" and backfill:
                batch.sort(key=lambda t: t.trade_id)
            for at in range(0, len(batch), enc.MAX_RECORDS):  # no more than a reader takes
                records = (
                    batch[at : at + enc.MAX_RECORDS] if len(batch) > enc.MAX_RECORDS else batch
                )
                msg_id = enc.message_id(self.exchange, kind, symbol, records, backfill)
                payload = enc.encode(records, "ws", backfill)
                subject = enc.subject(self.exchange, kind, symbol)
                self._outbox.append(Outgoing(subject, payload, msg_id, len(records)))
                self._held += len(records)
        while self._held > self.config.buffer_limit and self._outbox:
            lost = self._outbox.popleft()
            self._held -= lost.records
            self.dropped += lost.records

    def _on_state(self, connected: bool | None, error: str) -> None:
        if self._nc is None:
            return  # a connection let go of on purpose (a failed start, a stop): nothing new
        if connected is not None:
            self.connected = connected
            if not connected and not self._stopping:
                self._fail("disconnected from the bus")
            elif connected:
                self._reconnected = True
                log.info(
                    "bus %s: reconnected; publishing %d held records",
                    self.config.display_url,
                    self._held,
                )
        if error and connected is None and self.failing_since is not None:
            self.last_error = error  # why a reconnect fails: more than "disconnected"

    # --- failing and recovering ------------------------------------------------------------

    def _fail(self, why: str) -> None:
        """Publishing failed: a spell begins (said once), or goes on with this reason."""
        self.last_error = why
        if self.failing_since is None:
            self.failing_since = time.time()
            self.outages += 1
            log.warning(
                "bus %s: publishing failing: %s; holding records (%d)",
                self.config.display_url,
                why,
                self._held,
            )

    def _back_off(self) -> None:
        """Nothing sent for a while (growing with each failure in a row, bounded), then one
        message at a time until one is acknowledged."""
        delay = min(RETRY_MAX, RETRY_FIRST * 2**self._tries)
        self._tries += 1
        self._retry_at = time.monotonic() + delay
        self._probing = True

    def _recovered(self) -> None:
        """The bus acknowledges again: the spell ends, its reason is cleared."""
        self._tries = 0
        self._probing = False
        if self.failing_since is None:
            return
        self.last_outage_s = time.time() - self.failing_since
        log.warning(
            "bus %s: publishing acknowledged again after %.1f s (%s); %d records held",
            self.config.display_url,
            self.last_outage_s,
            self.last_error,
            self._held,
        )
        self.failing_since = None
        self.last_error = ""

    @property
    def state(self) -> str:
        """``up`` (publishes acknowledged), ``failing``, ``connecting`` (not yet connected, no
        failure yet), ``refused`` or ``stopped``."""
        if self.refused:
            return "refused"
        if self.failing_since is not None:
            return "failing"
        if self.connected:
            return "up"
        return "stopped" if self._stopping else "connecting"

    async def run(self) -> None:
        """Connect (retrying), make sure of the stream, then publish until :meth:`close`."""
        self._stopping = False  # a Lab started again publishes again
        self.refused = ""
        wait = 0.5
        while not self._stopping:
            try:
                self._nc = await connect(self.config, f"marketlab-{self.exchange}", self._on_state)
                self._js = self._nc.jetstream(publish_async_max_pending=MAX_INFLIGHT + 10)
                self.stream_settings = await ensure_stream(self._js, self.config)
                break
            except BusRefused as exc:  # its credentials or TLS: trying again will not do
                self.refused = self.last_error = str(exc)
                log.error("%s", exc)
                await self._close_nc()
                return
            except Exception as exc:  # unreachable at start: keep collecting, try again
                why = _why(exc, self.config)
                if why != self.last_error:  # said once, not at every try
                    log.warning("bus %s: %s; trying again", self.config.display_url, why)
                self._fail(why)
                await self._close_nc()
                until = time.monotonic() + wait
                while time.monotonic() < until and not self._stopping:
                    self._seal()
                    await asyncio.sleep(0.1)
                wait = min(CONNECT_RETRY_MAX, wait * 2)
        self.connected = self._nc is not None and self._nc.is_connected
        while not self._stopping:
            await asyncio.sleep(self.config.flush_interval)
            try:
                await self.pump()
            except Exception as exc:  # never lose the publisher to one bad batch
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("bus: publishing failed")

    async def pump(self) -> None:
        now = time.monotonic()
        self.quiet_books(now)
        if now >= self._seal_due:
            self._seal()
            # failing, or more waiting than a window: records gather longer per message, so what
            # is held goes out in fewer, fuller messages when the bus takes it
            backlog = self.failing_since is not None or len(self._outbox) > MAX_INFLIGHT
            self._seal_due = now + BACKLOG_SEAL if backlog else 0.0
        if self._reconnected:  # what was in flight may be lost with the old connection
            self._reconnected = False
            self._resend()
            self._probing = self._probing or self.failing_since is not None
        self._settle()
        nc = self._nc
        if nc is None or not nc.is_connected or time.monotonic() < self._retry_at:
            return
        if self.failing_since is not None and not self._held and not self._inflight:
            self._recovered()  # connected again with nothing waiting for an ack
        js = self._js
        window = 1 if self._probing else MAX_INFLIGHT
        while self._outbox and len(self._inflight) < window:
            msg = self._outbox.popleft()
            try:
                fut = await js.publish_async(
                    msg.subject, msg.payload, headers={"Nats-Msg-Id": msg.msg_id}
                )
            except Exception as exc:
                self._outbox.appendleft(msg)
                self._fail(_why(exc, self.config))
                self._back_off()
                return
            if msg.sent:
                self.resent += 1
            fut.add_done_callback(functools.partial(self._on_ack, self._window))
            self._inflight.append((msg, fut, time.monotonic()))

    def _on_ack(self, window: int, fut: asyncio.Future[Any]) -> None:
        """A publish answered: a failure is kept for :meth:`_settle`, wherever in the window it
        is (the oldest may wait for an answer that never comes while later ones fail at once);
        one of a window already taken back is nothing new."""
        if window == self._window and not fut.cancelled() and fut.exception() is not None:
            self._ack_failure = fut.exception()

    def _settle(self) -> None:
        """Count what was acknowledged; on a failed or late ack, take back everything from it
        (sent again, oldest first, after a delay: :meth:`_back_off`)."""
        inflight = self._inflight
        acked = False
        while inflight and inflight[0][1].done():
            msg, fut, _ = inflight[0]
            if fut.cancelled() or fut.exception() is not None:
                exc = fut.exception() if not fut.cancelled() else None
                self._fail(_why(exc, self.config) if exc is not None else "publish cancelled")
                self._back_off()
                self._resend()
                return
            inflight.popleft()
            self.published += msg.records
            self.messages += 1
            self._held -= msg.records
            acked = True
        wait = (
            min(self.config.ack_timeout, PROBE_TIMEOUT)
            if self._probing
            else self.config.ack_timeout
        )
        failure, self._ack_failure = self._ack_failure, None
        if failure is not None and inflight:
            self._fail(_why(failure, self.config))
            self._back_off()
            self._resend()
            return
        if inflight and time.monotonic() - inflight[0][2] > wait:
            self._fail(f"no ack within {wait:g} s")
            self._back_off()
            self._resend()
            return
        if acked and self._nc is not None and self._nc.is_connected:
            self._recovered()  # (an ack read after a disconnect ends nothing: it went before)

    def _resend(self) -> None:
        self._window += 1
        self._ack_failure = None
        inflight, self._inflight = self._inflight, deque()
        for _, fut, _ in inflight:
            fut.cancel()  # frees its slot; a late ack for it is not waited for
        self._outbox.extendleft(msg._replace(sent=True) for msg, _, _ in reversed(inflight))

    async def close(self, timeout: float = 5.0) -> None:
        """Publish what is held (within ``timeout``), then disconnect."""
        self._stopping = True
        deadline = time.monotonic() + timeout
        while (self._outbox or self._inflight or self._open) and time.monotonic() < deadline:
            await self.pump()
            await asyncio.sleep(0.005)
        if self._held:
            log.error(
                "bus %s: %d record(s) not published at stop", self.config.display_url, self._held
            )
        await self._close_nc()

    async def _close_nc(self) -> None:
        nc, self._nc = self._nc, None
        self._js = None  # its JetStream context goes with it: a Lab started again waits for anew
        self.connected = False  # (not left to the callback, which a slow close may never reach)
        await close_quietly(nc)

    @property
    def ready(self) -> bool:
        """Connected, with the stream in hand: :meth:`last_published` can ask it now."""
        return self.connected and self._js is not None

    async def last_published(self) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
        """Where this exchange's records on the bus end: the newest trade id per symbol and the
        newest closed candle per series (a restarted collector resumes from them)."""
        from nats.js.errors import NotFoundError

        trades: dict[str, int] = {}
        klines: dict[tuple[str, str], int] = {}
        js = self._js
        if js is None:
            raise ConnectionError(f"not connected to {self.config.display_url}")
        info = await js.stream_info(self.config.stream, subjects_filter=enc.subjects(self.exchange))
        names = [n for n in info.state.subjects or {} if _kind(n) in ("trade", "kline")]
        asking = asyncio.Semaphore(32)  # hundreds of symbols: many at once, not all

        async def last(name: str) -> tuple[str, Any]:
            async with asking:
                try:
                    return name, await js.get_last_msg(self.config.stream, name)
                except NotFoundError:
                    return name, None

        for name, msg in await asyncio.gather(*(last(n) for n in names)):
            if msg is None:
                continue
            _, kind, symbol = enc.parse_subject(name)
            try:
                records = enc.decode(kind, msg.data, symbol).records
            except enc.BusFormatError as exc:  # not ours: where this series ends is unknown
                log.warning("bus: the last message on %s is not ours (%s); skipped", name, exc)
                continue
            for r in records:
                if kind == "trade":
                    trades[symbol] = max(trades.get(symbol, -1), r.trade_id)
                else:
                    key = (symbol, str(r.interval))
                    klines[key] = max(klines.get(key, -1), r.open_time)
        return trades, klines

    def status(self) -> dict[str, Any]:
        """``summary()["bus"]`` of a publishing collector: ``state`` ``up`` only while the bus
        acknowledges what is published; ``failing_since`` (UTC, ISO) and ``last_error`` while
        it does not; what is held, dropped and resent; the stream's settings as found."""
        since = self.failing_since
        return {
            "url": self.config.display_url,
            "stream": self.config.stream,
            "state": self.state,
            "connected": self.connected,
            "failing_since": (
                datetime.fromtimestamp(since, UTC).isoformat(timespec="seconds")
                if since is not None
                else None
            ),
            "published": self.published,
            "messages": self.messages,
            "held": self._held + sum(map(len, list(self._open.values()))),
            "dropped": self.dropped,
            "resent": self.resent,
            "outages": self.outages,
            "last_outage_s": (
                round(self.last_outage_s, 3) if self.last_outage_s is not None else None
            ),
            "last_error": self.last_error,
            "refused": self.refused,
            "stream_settings": dict(self.stream_settings),
        }


def _why(exc: BaseException, config: BusConfig) -> str:
    """Why a publish failed, in the words an operator acts on."""
    name = type(exc).__name__
    if name == "NoStreamResponseError":
        return f"no stream answered (stream {config.stream} has no leader yet, or is gone): {name}"
    if isinstance(exc, TimeoutError) or name == "TimeoutError":
        return f"no answer in time ({name})"
    return f"{name}: {exc}"


def _kind(subject: str) -> str:
    try:
        return enc.parse_subject(subject)[1]
    except enc.BusFormatError:
        return ""


def _levels(levels: Any) -> list[tuple[float, float]]:
    """A change's levels as numbers (OKX's come as the exchange's strings)."""
    if levels and type(levels[0][0]) is str:
        return [(float(level[0]), float(level[1])) for level in levels]
    return list(levels)


def _state(book: Any, fresh: bool) -> enc.BookState:
    cut = book.bid_floor != float("-inf") or book.ask_ceiling != float("inf")
    return enc.BookState(
        book.symbol,
        book.last_update_id,
        book.bids(),
        book.asks(),
        book.event_time or 0,
        book.verified_by,
        fresh,
        cut,
    )
