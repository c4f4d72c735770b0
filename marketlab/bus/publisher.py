"""A collector's side of the bus: every record it takes in, published to JetStream.

Records are gathered per (kind, symbol) on the collector thread (a list append) and sealed
into one message each ``flush_interval``; messages go out in order with JetStream's acks
outstanding (up to a window), and everything not acknowledged is sent again, in order, after
a disconnect or a late ack (the duplicate window drops what had landed). While the bus is
away the collector keeps collecting and holds up to ``buffer_limit`` records (the oldest are
let go of first, counted); it publishes what it held when the bus returns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any, NamedTuple

from marketlab.bus import encoding as enc
from marketlab.bus.config import BusConfig, BusRefused, close_quietly, connect, ensure_stream
from marketlab.records import Kline, Ticker, Trade

log = logging.getLogger("marketlab.bus")

MAX_INFLIGHT = 2000  # messages awaiting their ack


class Outgoing(NamedTuple):
    subject: str
    payload: bytes
    msg_id: str
    records: int


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
        self.resent = 0  # messages sent again (an ack lost)
        self.last_error = ""
        self.refused = ""  # why the bus refused this collector (its credentials or TLS), if it did
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
        if connected is not None:
            self.connected = connected
            if not connected and not self._stopping:
                log.warning(
                    "bus %s: disconnected; holding records (%d)",
                    self.config.display_url,
                    self._held,
                )
            elif connected:
                log.info(
                    "bus %s: reconnected; publishing %d held records",
                    self.config.display_url,
                    self._held,
                )
        if error:
            self.last_error = error

    async def run(self) -> None:
        """Connect (retrying), make sure of the stream, then publish until :meth:`close`."""
        self._stopping = False  # a Lab started again publishes again
        while not self._stopping:
            try:
                self._nc = await connect(self.config, f"marketlab-{self.exchange}", self._on_state)
                self._js = self._nc.jetstream(publish_async_max_pending=MAX_INFLIGHT + 10)
                await ensure_stream(self._js, self.config)
                break
            except BusRefused as exc:  # its credentials or TLS: trying again will not do
                self.refused = self.last_error = str(exc)
                log.error("%s", exc)
                await self._close_nc()
                return
            except Exception as exc:  # unreachable at start: keep collecting, try again
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("bus %s: %s; trying again", self.config.display_url, self.last_error)
                await self._close_nc()
                for _ in range(10):
                    self._seal()
                    await asyncio.sleep(0.1)
        self.connected = self._nc is not None and self._nc.is_connected
        while not self._stopping:
            await asyncio.sleep(self.config.flush_interval)
            try:
                await self.pump()
            except Exception as exc:  # never lose the publisher to one bad batch
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("bus: publishing failed")

    async def pump(self) -> None:
        self.quiet_books(time.monotonic())
        self._seal()
        if self._reconnected:
            self._reconnected = False
            self._resend()
        self._settle()
        nc = self._nc
        if nc is None or not nc.is_connected:
            return
        js = self._js
        while self._outbox and len(self._inflight) < MAX_INFLIGHT:
            msg = self._outbox.popleft()
            try:
                fut = await js.publish_async(
                    msg.subject, msg.payload, headers={"Nats-Msg-Id": msg.msg_id}
                )
            except Exception as exc:
                self._outbox.appendleft(msg)
                self.last_error = f"{type(exc).__name__}: {exc}"
                return
            self._inflight.append((msg, fut, time.monotonic()))

    def _settle(self) -> None:
        """Count what was acknowledged; on a failed or late ack, send everything from it again."""
        inflight = self._inflight
        while inflight and inflight[0][1].done():
            msg, fut, _ = inflight[0]
            if fut.cancelled() or fut.exception() is not None:
                if not fut.cancelled():
                    self.last_error = f"{type(fut.exception()).__name__}: {fut.exception()}"
                self._resend()
                return
            inflight.popleft()
            self.published += msg.records
            self.messages += 1
            self._held -= msg.records
        if inflight and time.monotonic() - inflight[0][2] > self.config.ack_timeout:
            self.last_error = f"no ack within {self.config.ack_timeout:g} s"
            self._resend()

    def _resend(self) -> None:
        inflight, self._inflight = self._inflight, deque()
        for _, fut, _ in inflight:
            fut.cancel()  # frees its slot; a late ack for it is not waited for
        self.resent += len(inflight)
        self._outbox.extendleft(msg for msg, _, _ in reversed(inflight))

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
        return {
            "url": self.config.display_url,
            "stream": self.config.stream,
            "connected": self.connected,
            "published": self.published,
            "messages": self.messages,
            "held": self._held,
            "dropped": self.dropped,
            "resent": self.resent,
            "last_error": self.last_error,
            "refused": self.refused,
        }


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
