"""A reader's side of the bus: a feed whose venue is JetStream.

:class:`BusFeed` stands where a venue's feed stands in a Lab, so a Lab fed from the bus has
the same frames, books, charts, status and store as one fed by the venue. It reads every
subject of its exchange in stream order from a pull consumer: ephemeral (from ``since``, or
everything the stream keeps) for a Lab, durable for a history writer, which acknowledges a
message only once what it carried is written (a writer killed mid-way reads it again; the
stores are idempotent). Books are rebuilt from the collector's book states and the changes
chained on them by update id; a break in the chain waits for the next state.

A message that is not one of ours (garbage, another version, a wrong shape, values no market
has, records of another symbol than its subject's, a change of another chain) is counted
(``bad_messages``), named in the log with its subject and stream sequence, and dropped: the
reader goes on with the next message, and a history writer acknowledges it unwritten.

A reader whose stream brings nothing new for ``stale_after`` seconds (its collectors stopped,
the stream without a leader, the bus away) says it is stale, in its status and once in the
log; ``caught_up`` is then False, and stays so until messages come again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from marketlab.bus import encoding as enc
from marketlab.bus.config import BusConfig, BusRefused, close_quietly, connect, ensure_stream
from marketlab.records import BookDelta, BookSnapshot, Interval, Kline
from marketlab.stream.feed import Feed, VenueError
from marketlab.stream.intake import Intake, Sink, TypedSink
from marketlab.stream.state import KlineStats, LockedBook, StreamStats, stat_keys
from marketlab.stream.trades import TradeStats

log = logging.getLogger("marketlab.bus")

FETCH = 512  # messages asked for at a time
_SEEN = 10_000  # closed candles remembered per series (repeats of older ones are rare)
_HOLES = 1_000  # trade id ranges still awaited per symbol
_PERPETUAL = frozenset(enc.PERPETUAL_KINDS.values())  # kinds handed to the state as they are


@dataclass
class BusSource:
    """Where a Lab reads from: the bus, from when (``since``: epoch seconds, None for all the
    stream keeps, ``"new"`` for what comes from now), and as which durable consumer (None: an
    ephemeral one)."""

    config: BusConfig
    since: float | str | None = None
    durable: str | None = None


class BusLink:
    """The bus connection as a status row (what a venue connection shows)."""

    def __init__(self, url: str):
        self.name = f"bus {url}"
        self.connected = False
        self.streams: list[str] = []
        self.messages = 0
        self.bytes_received = 0  # messages' payloads taken
        self.reconnects = 0
        self.last_error = ""
        self.since = time.monotonic()

    def age(self) -> float:
        return time.monotonic() - self.since


class BusFeed(Intake):
    venue = "bus"

    def __init__(
        self,
        symbols: Sequence[str],
        intervals: Sequence[str],
        channels: Sequence[str],
        config: Any,
        sink: Sink | TypedSink,
        kline_starts: Any = None,
        *,
        source: BusSource,
        exchange: str,
    ):
        self.symbols = list(symbols)
        self.intervals = [Interval(iv) for iv in intervals]
        self.channels = tuple(channels)
        self.exchange = exchange
        self.bus = source
        self._init_intake(sink)
        self.stream_stats = {
            key: StreamStats() for key in stat_keys(self.symbols, self.intervals, self.channels)
        }
        self.kline_stats: dict[tuple[str, str], KlineStats] = {
            (s, iv): KlineStats() for s in self.symbols for iv in self.intervals
        }
        self.trade_stats: dict[str, TradeStats] = {}
        self.trades_unverifiable: dict[str, int] = {}  # (the collectors' say: none read here)
        self.books = (
            {s: LockedBook(s, 5000) for s in self.symbols} if "book" in self.channels else {}
        )
        self.bad_frames = self.duplicates = self.reconnects = 0
        self.last_bad_frame = ""
        self.rest = None
        self.bad_messages = 0  # messages dropped as not ours (see on_message)
        self.last_bad_message = ""
        self.handler_errors = 0  # of them, ones that passed decoding and failed after (a bug)
        self._bad_said_at = 0.0  # when a bad message was last logged
        self._bad_unsaid = 0  # bad messages since, not logged (at most one line a second)
        self.link = BusLink(source.config.display_url)
        self.connections = [self.link]
        self.source = "bus"
        self.polling = False
        self.ready = asyncio.Event()  # caught up with the stream
        self.symbols_confirmed = asyncio.Event()
        self.tick_sizes: dict[str, float] = {}
        self.tap = self.book_tap = None
        self.fatal: VenueError | None = None
        self.commit: Callable[[], None] | None = None  # writes what was taken (before an ack)
        self.commit_interval = 1.0
        self.position = 0  # stream sequence of the last message taken
        self._delivered = 0  # the writer's consumer: delivery sequence of the last message taken
        self._wanted = set(self.symbols)
        self._intervals = set(self.intervals)
        self._seen: dict[tuple[str, str], tuple[set[int], deque[int]]] = {}
        self._holes: dict[str, list[list[int]]] = {}  # trade id ranges skipped, not yet taken
        self._book_heard: dict[str, float] = {}  # when each book was last spoken of
        self._stopped = asyncio.Event()
        self._began = time.time()
        self._last_message = time.monotonic()  # when a message last came (or the run began)
        self._said_stale = False

    book_view = Feed.book_view
    book_state = Feed.book_state
    book_check = Feed.book_check

    def bytes_received(self) -> int:
        """The bytes of the messages taken off the bus (a venue feed's count of its frames)."""
        return self.link.bytes_received

    @property
    def connected(self) -> bool:
        return self.link.connected

    @property
    def quiet_for(self) -> float:
        """Seconds since the last message came (since the run began, before the first)."""
        return time.monotonic() - self._last_message

    @property
    def stale(self) -> bool:
        """Nothing new on the stream for ``stale_after`` seconds."""
        return self.quiet_for > self.bus.config.stale_after

    def bus_status(self) -> dict[str, Any]:
        """``summary()["bus"]`` of a Lab reading the bus: ``state`` ``catching up``,
        ``caught up`` or ``stale`` (nothing new for ``stale_after`` s: ``caught_up`` is then
        False, whatever was read before)."""
        stale = self.stale
        caught_up = self.ready.is_set() and not stale
        return {
            "url": self.bus.config.display_url,
            "reading": True,
            "state": "stale" if stale else "caught up" if caught_up else "catching up",
            "connected": self.link.connected,
            "position": self.position,
            "caught_up": caught_up,
            "stale": stale,
            "quiet_s": round(self.quiet_for, 1),
            "stale_after": self.bus.config.stale_after,
            "bad_messages": self.bad_messages,
            "last_bad_message": self.last_bad_message,
            "last_error": self.link.last_error,
        }

    def check_stale(self) -> None:
        """Say once (a warning) when the stream stops moving, and when it moves again."""
        if self.stale and not self._said_stale:
            self._said_stale = True
            log.warning(
                "bus %s: nothing new on stream %s for %.0f s (at %d): its collectors stopped, "
                "the stream without a leader or the bus away%s",
                self.bus.config.display_url,
                self.bus.config.stream,
                self.quiet_for,
                self.position,
                f" ({self.link.last_error})" if self.link.last_error else "",
            )
        elif self._said_stale and not self.stale:
            self._said_stale = False
            log.warning(
                "bus %s: messages coming again (at %d)", self.bus.config.display_url, self.position
            )

    def resume_trades(self, last_ids: dict[str, int]) -> None:
        """Trade gaps are the collector's to fill; a reader takes what it publishes."""

    async def stop(self) -> None:
        self._stopped.set()

    # --- the consumer ------------------------------------------------------------------------

    async def run(self) -> None:
        self._began = time.time()
        self._last_message = time.monotonic()
        nc = None
        try:
            while nc is None and not self._stopped.is_set():
                try:
                    nc = await connect(
                        self.bus.config, f"marketlab-reader-{self.exchange}", self._on_state
                    )
                except BusRefused as exc:  # its credentials or TLS: trying again will not do
                    self.link.last_error = str(exc)
                    self.fatal = VenueError(str(exc))
                    log.error("%s", exc)
                    return
                except Exception as exc:
                    self.link.last_error = f"{type(exc).__name__}: {exc}"
                    log.warning(
                        "bus %s: %s; trying again",
                        self.bus.config.display_url,
                        self.link.last_error,
                    )
                    await self._wait(1.0)
            if nc is None:
                return
            self.link.connected = True
            self.symbols_confirmed.set()
            js = nc.jetstream()
            await self._check_stream(js)
            await self._consume(js)
        finally:
            await close_quietly(nc)

    async def _check_stream(self, js: Any) -> None:
        """The stream as the operator set it: made when there is none and this reader was given
        its settings; a setting that differs from the stream's said once (see ensure_stream)."""
        config = self.bus.config
        try:
            await ensure_stream(js, config, create=bool(config.given_stream_settings()))
        except Exception as exc:  # the consumer says more if the stream cannot be had
            log.warning("bus %s: stream %s: %s", config.display_url, config.stream, exc)

    def _on_state(self, connected: bool | None, error: str) -> None:
        if connected is not None:
            self.link.connected = connected
            if connected:
                self.link.reconnects += 1
                self.reconnects += 1
        if error:
            self.link.last_error = error

    async def _consume(self, js: Any) -> None:
        if self.bus.durable is None:
            await self._follow(js)
            return
        import nats.errors
        from nats.js.errors import FetchTimeoutError

        sub = acked = pending_ack = None
        committed_at = time.monotonic()
        while not self._stopped.is_set():
            if sub is None:
                try:
                    sub = await self._subscribe(js)
                except Exception as exc:
                    self.link.last_error = f"consumer: {type(exc).__name__}: {exc}"
                    await self._wait(1.0)
                    continue
            lost = ""
            try:
                msgs = await sub.fetch(FETCH, timeout=0.25)
            except (TimeoutError, FetchTimeoutError, nats.errors.TimeoutError):
                msgs = []
                self.ready.set()
            except Exception as exc:  # the consumer lost (a node gone)
                msgs, lost = [], f"fetch: {type(exc).__name__}: {exc}"
            taken, unseen = self._take_in_order(msgs)
            self.check_stale()
            lost = lost or unseen  # never acknowledge past a delivery this writer did not see
            if taken:
                pending_ack, meta = taken[-1], taken[-1].metadata
                self.position = meta.sequence.stream
                if meta.num_pending == 0:
                    self.ready.set()
            now = time.monotonic()
            if pending_ack is not acked and (lost or now - committed_at >= self.commit_interval):
                committed_at = now
                acked = await self._commit(pending_ack) or acked
            if lost:  # again from the last acknowledged message: what came after comes again
                self.link.last_error = lost
                log.warning("bus: %s; consuming again from the last acknowledged message", lost)
                sub = None
                await self._wait(0.5)
        if pending_ack is not acked:
            await self._commit(pending_ack)

    async def _commit(self, msg: Any) -> Any:
        """The stores written, then ``msg`` acknowledged (and every message before it): ``msg``,
        or None when the bus is away (what it would have covered comes again)."""
        if self.commit is not None:
            await asyncio.to_thread(self.commit)
        try:
            await msg.ack()
        except Exception as exc:
            self.link.last_error = f"ack: {type(exc).__name__}: {exc}"
            return None
        return msg

    def _take_in_order(self, msgs: list[Any]) -> tuple[list[Any], str]:
        """A fetch's messages up to the first one after a hole in the consumer's delivery
        sequence (the server handed messages to a fetch that had already given up: a later
        acknowledgement, ``AckPolicy.ALL``, would cover them unread); what went wrong, if so."""
        taken: list[Any] = []
        for msg in msgs:
            seq = msg.metadata.sequence.consumer
            if self._delivered and seq != self._delivered + 1:
                return taken, f"delivery {seq} after {self._delivered}: messages delivered unseen"
            self._delivered = seq
            self.on_message(msg.subject, msg.data, msg)
            taken.append(msg)
        return taken, ""

    async def _config(self, js: Any) -> Any:
        """The consumer: from where this reader (or the durable's last run) left off, else
        from ``since``, else everything the stream keeps."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        cfg = ConsumerConfig(ack_policy=AckPolicy.ALL, max_ack_pending=-1, ack_wait=60.0)
        start = await self._durable_start(js) if self.bus.durable is not None else self.position + 1
        if start > 1:
            cfg.deliver_policy, cfg.opt_start_seq = DeliverPolicy.BY_START_SEQUENCE, start
        elif self.bus.since is not None and self.bus.durable is None:  # "new": from the start on
            since = self._began if self.bus.since == "new" else float(self.bus.since)
            cfg.deliver_policy = DeliverPolicy.BY_START_TIME
            # A string, which every nats-py sends as it is (newer ones also take a datetime).
            start_time = datetime.fromtimestamp(since, UTC).isoformat().replace("+00:00", "Z")
            cfg.opt_start_time = start_time  # type: ignore[assignment]  # typed datetime only
        else:
            cfg.deliver_policy = DeliverPolicy.ALL
        return cfg

    async def _subscribe(self, js: Any) -> Any:
        self._delivered = 0  # a new consumer numbers its deliveries from 1
        return await js.pull_subscribe(
            enc.subjects(self.exchange),
            durable=self.bus.durable,
            stream=self.bus.config.stream,
            config=await self._config(js),
        )

    async def _follow(self, js: Any) -> None:
        """A reader's consumer: ordered and pushed (the server sends each message as it lands,
        no request per batch: a few ms less, and far less at the tail); the client makes it
        again from the next sequence on a gap or when heartbeats stop (a node lost)."""
        taken = 0

        async def take(msg: Any) -> None:
            nonlocal taken
            self.on_message(msg.subject, msg.data, msg)
            taken += 1
            if taken % 64 == 1 or not self.ready.is_set():
                meta = msg.metadata
                self.position = meta.sequence.stream
                if meta.num_pending == 0:
                    self.ready.set()

        sub = None
        while sub is None and not self._stopped.is_set():
            try:
                sub = await js.subscribe(
                    enc.subjects(self.exchange),
                    stream=self.bus.config.stream,
                    cb=take,
                    ordered_consumer=True,
                    idle_heartbeat=1.0,
                    config=await self._config(js),
                )
            except Exception as exc:  # no stream yet, the bus away: try again
                self.link.last_error = f"consumer: {type(exc).__name__}: {exc}"
                await self._wait(1.0)
        if sub is None:
            return
        await self._wait(0.5)
        if taken == 0:
            self.ready.set()  # nothing to catch up with
        while not self._stopped.is_set():
            self.check_books(time.monotonic())
            self.check_stale()
            await self._wait(1.0)
        with contextlib.suppress(Exception):
            await sub.unsubscribe()

    def check_books(self, now: float) -> None:
        """A book its collector has not spoken of for three whole-book intervals is out of
        sync: the collector may be gone (its replacement starts a new chain)."""
        silent = 3 * self.bus.config.snapshot_interval
        for symbol, heard in self._book_heard.items():
            lb = self.books[symbol]
            if now - heard > silent and lb.book.synced:
                with lb.lock:
                    lb.book.invalidate(f"no word of this book from its collector for {silent:g} s")

    async def _durable_start(self, js: Any) -> int:
        """Where a durable writer goes on: just after the last message it acknowledged. Messages
        delivered after that to a fetch that never returned (a writer killed, a node lost) would
        wait for their redelivery while a later acknowledgement (``AckPolicy.ALL``) covered them:
        so the consumer is made again from its ack floor (what came after is read again; the
        stores take each record once)."""
        from nats.js.errors import NotFoundError

        try:
            info = await js.consumer_info(self.bus.config.stream, self.bus.durable)
        except NotFoundError:
            return 1
        await js.delete_consumer(self.bus.config.stream, self.bus.durable)
        return int(info.ack_floor.stream_seq) + 1 if info.ack_floor is not None else 1

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), seconds)

    # --- messages to records (no I/O) --------------------------------------------------------

    def on_message(self, subject: str, data: bytes, msg: Any = None) -> None:
        """One message off the bus (``msg``, if given, says where it sits in the stream). One
        that is not ours is counted, logged and dropped; never raises."""
        self.link.messages += 1
        self.link.bytes_received += len(data)
        self._last_message = time.monotonic()
        if self.link.last_error:  # messages flow again: what went wrong is over
            self.link.last_error = ""
        try:
            exchange, kind, symbol = enc.parse_subject(subject)
            if exchange != self.exchange or symbol not in self._wanted:
                return
            batch = enc.decode(kind, data, symbol)
        except enc.BusFormatError as exc:
            self._bad(subject, msg, str(exc))
            return
        try:
            problem = self._take_batch(kind, symbol, batch)
        except Exception as exc:  # decoding let through what the state cannot take: a bug
            self.handler_errors += 1
            self._bad(subject, msg, f"failed after decoding: {type(exc).__name__}: {exc}")
            log.exception("bus: a %s message that passed decoding failed", kind)
            return
        if problem:
            self._bad(subject, msg, problem)

    def _take_batch(self, kind: str, symbol: str, batch: Any) -> str:
        """The records to the state; what was wrong with some of them ("" when nothing)."""
        source = batch.source
        if kind == "trade":
            self._trades(symbol, batch.records, source, batch.backfill)
        elif kind == "book":
            return self._books(symbol, batch.records)
        elif kind == "ticker":
            stats = self.stream_stats.get((symbol, "ticker"))
            if stats is not None:
                for r in batch.records:
                    self._take_ticker(stats, r, source)
        elif kind in _PERPETUAL:
            self.sink(batch.records, source)  # the state keeps them (and the store, if any)
        else:
            for k in batch.records:
                if k.interval in self._intervals:
                    self._take_kline(self.stream_stats[(symbol, f"kline_{k.interval}")], k, source)
        return ""

    def _bad(self, subject: str, msg: Any, why: str) -> None:
        """A message dropped: counted, named (at most one log line a second after the first
        ten, saying how many went unsaid)."""
        self.bad_messages += 1
        self.bad_frames += 1
        shown = "".join(c if c.isprintable() else "?" for c in subject[:120])
        shown += "..." if len(subject) > 120 else ""
        why = why if len(why) <= 400 else why[:397] + "..."
        self.last_bad_message = self.last_bad_frame = f"{shown} (sequence {_sequence(msg)}): {why}"
        now = time.monotonic()
        if now < self._bad_said_at + 1.0 and self.bad_messages > 10:
            self._bad_unsaid += 1
            return
        unsaid = f" ({self._bad_unsaid} more since the last one said)" if self._bad_unsaid else ""
        log.warning(
            "bus: dropped a message that is not ours on %s%s", self.last_bad_message, unsaid
        )
        self._bad_said_at, self._bad_unsaid = now, 0

    def _trades(self, symbol: str, trades: list[Any], source: str, backfill: bool) -> None:
        stats = self.stream_stats.get((symbol, "trade"))
        if stats is None:
            return
        late = []
        for t in trades:
            if t.trade_id > stats.mark:
                self._take_trade(stats, t, source)
            elif self._fills_hole(symbol, t.trade_id):
                late.append(t)  # fetched late, or sent again after a lost ack: in its place
            else:
                self.duplicates += 1
        if late:
            self.trade_stats.setdefault(symbol, TradeStats()).backfilled += len(late)
            self._deliver_backfilled(symbol, late, source)

    def _trade_gap(self, symbol: str, first: int, last: int) -> None:
        """Ids the collector skipped (it fetches and publishes them), or a message still on
        its way: remembered, so each of them is taken once when it comes."""
        self.trade_stats.setdefault(symbol, TradeStats()).gaps += 1
        holes = self._holes.setdefault(symbol, [])
        holes.append([first, last])
        if len(holes) > _HOLES:
            del holes[0]

    def _fills_hole(self, symbol: str, trade_id: int) -> bool:
        holes = self._holes.get(symbol)
        if not holes:
            return False
        for i, (lo, hi) in enumerate(holes):
            if lo <= trade_id <= hi:
                if lo == hi:
                    del holes[i]
                elif trade_id == lo:
                    holes[i][0] = lo + 1
                elif trade_id == hi:
                    holes[i][1] = hi - 1
                else:
                    holes[i : i + 1] = [[lo, trade_id - 1], [trade_id + 1, hi]]
                return True
        return False

    def _kline(self, k: Kline, source: str, live: bool) -> bool:
        if k.closed:  # every closed candle once, however often it was published
            key = (k.symbol, k.interval)
            seen = self._seen.get(key)
            if seen is None:
                seen = self._seen[key] = (set(), deque())
            if k.open_time in seen[0]:
                self.duplicates += 1
                self.kline_stats[key].duplicates += 1
                return False
            seen[0].add(k.open_time)
            seen[1].append(k.open_time)
            if len(seen[1]) > _SEEN:
                seen[0].discard(seen[1].popleft())
        self._deliver_kline(k, source)
        return True

    def _books(self, symbol: str, records: list[Any]) -> str:
        """Whole books and the changes chained on them, strictly: a change applies only to the
        book at its ``prev_id``; a change that overlaps the book (from before its update id to
        after it) is of another chain: dropped, and said (the book is still right at its id);
        a change from beyond it (changes missed) leaves the book out of sync until the next
        whole book. Returns what was dropped ("" when nothing)."""
        lb = self.books.get(symbol)
        if lb is None:
            return ""
        self._count((symbol, "depth"), "bus")
        self._book_heard[symbol] = time.monotonic()
        dropped = ""
        with lb.lock:
            book = lb.book
            for r in records:
                if type(r) is enc.BookChange:
                    if not book.synced or r.last_update_id <= book.last_update_id:
                        continue  # waiting for a whole book, or a change already in it
                    if r.prev_id < book.last_update_id:
                        dropped = (
                            f"a book change {r.prev_id} -> {r.last_update_id} of another chain "
                            f"than the book's (at {book.last_update_id}): not applied"
                        )
                        continue
                    if r.prev_id != book.last_update_id:
                        book.invalidate(
                            f"gap on the bus: a change from {r.prev_id}, the book at "
                            f"{book.last_update_id}; waiting for the next whole book"
                        )
                        continue
                    book.on_delta(
                        BookDelta(
                            symbol, r.prev_id + 1, r.last_update_id, r.bids, r.asks, r.event_time
                        )
                    )
                    continue
                if book.synced and not r.fresh and r.last_update_id <= book.last_update_id:
                    continue  # a whole book of the chain the book follows: nothing new
                book.invalidate("replaced by the collector's whole book")
                limit = min(len(r.bids), len(r.asks)) if r.cut else None
                book.on_snapshot(
                    BookSnapshot(symbol, r.last_update_id, r.bids, r.asks, r.event_time), limit
                )
                if book.synced:
                    book.verified_by = r.verified
        return dropped


def _sequence(msg: Any) -> str:
    """Where a message sits in the stream, as far as it says."""
    if msg is None:
        return "?"
    try:
        return str(msg.metadata.sequence.stream)
    except Exception:
        return "?"
