"""``Lab``: the researcher's handle on live market data.

The collector runs on its own event loop in a background thread, so it behaves the same in a
script and in a Jupyter kernel, and a notebook cell that blocks does not stall the connection.
Everything a method returns is a fresh pandas object; nothing the collector holds leaks out.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
import weakref
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, cast

from marketlab.bus.config import BusConfig
from marketlab.bus.publisher import Publisher
from marketlab.bus.reader import BusFeed, BusSource
from marketlab.lab import bus_link
from marketlab.lab.background import Background
from marketlab.lab.failover import Failover
from marketlab.lab.market_state import MarketState
from marketlab.lab.options import (
    LabWatch,
    buffer_sizes,
    check_channels,
    check_intervals,
    check_perpetuals,
    check_store,
    feed_configs,
    plan_venues,
    universe,
)
from marketlab.lab.paired_feeds import PairedFeeds
from marketlab.lab.perpetual_history import keep_history, perpetual_sink
from marketlab.lab.readers import LabFrames
from marketlab.lab.status import (
    SummaryParts,
    SyncProgress,
    lab_summary,
    not_ready,
    status_frame,
    status_rows,
)
from marketlab.lab.tick_link import ReplayBookSampler, flush_trades, sample_books
from marketlab.lab.venue_side import VenueSide
from marketlab.recording.files import Header, RecordingWriter, open_recording
from marketlab.records import Kline, Record, is_perpetual
from marketlab.rings import DEFAULT_KLINE_CAPACITY, DEFAULT_TRADE_CAPACITY
from marketlab.settings import DEFAULT_CHANNELS, positive
from marketlab.store.perpetuals import PerpetualStore
from marketlab.store.refill import refill_dropped
from marketlab.store.sqlite import connect
from marketlab.store.warm import warm
from marketlab.store.writer import KlineStore
from marketlab.stream.feed import Feed, VenueError
from marketlab.stream.replay import Replaying, replaying
from marketlab.venues import registry

if TYPE_CHECKING:  # a collector loads neither: frames, DuckDB and the tick store on first use
    import pandas as pd

    from marketlab.store.history import History
    from marketlab.store.ticks import TickWriter

log = logging.getLogger("marketlab.lab")


class Lab(LabFrames):
    """Collects ``symbols`` from an exchange into rolling pandas frames (``"all"`` with
    ``quote="USDT"``: every spot symbol the venue trades in that quote; ``shard="i/n"``: a
    stable share of them).

    >>> lab = Lab(["BTCUSDT", "ETHUSDT"], intervals=["1m", "5m"])   # doctest: +SKIP
    >>> lab.start(); lab.wait_ready(); lab.prices()                  # doctest: +SKIP

    ``channels`` picks what to collect: trades, ticker, book, klines (the default) and
    bookTicker, aggTrades, miniTicker (Binance only). ``exchange`` is ``"binance"`` or
    ``"okx"``; with ``fallback="okx"`` the Lab switches prices, books and klines to OKX while
    Binance is unreachable (WebSocket down and REST failing for ``failover_after`` seconds) and
    back when it returns. Fallback records say so in ``source`` (``"okx:ws"``), and their
    klines are kept apart (``klines(..., exchange="okx")``; stored under ``exchange='okx'``).
    ``publish="nats://host:4222"`` puts every record on a JetStream bus (:meth:`from_bus` reads
    it anywhere); ``memory_limit="2GB"`` sizes the rolling buffers of all symbols to fit it.
    ``exchanges=["binance", "okx", "bybit", "coinbase"]`` collects several venues at once on
    the one collector thread (``symbols`` one list for all, or ``{"coinbase": ["BTCUSD"], ...}``
    per venue): every reader takes ``exchange=`` (the first venue by default, so one-venue code
    reads the same), ``prices()`` and ``status()`` gain an ``exchange`` index level, and the
    cross-venue views (:meth:`bbo`, :meth:`consolidated_book`, :meth:`divergence`) compare
    them, never mixing quote assets unless ``quote_equivalents={"USD": "USDT"}`` says so.
    ``alerts=Watch(...)`` (``marketlab.watch``) runs alert rules on its health and markets
    (:meth:`alerts`, :meth:`on_alert`). Venue URLs default to the real exchanges and can be
    pointed anywhere (the simulator) by argument or environment variable. Extra keyword
    arguments tune the connection (see :class:`marketlab.stream.config.FeedConfig`).
    """

    def __init__(
        self,
        symbols: Sequence[str] | Mapping[str, Sequence[str]],
        intervals: Sequence[str] = ("1m",),
        exchange: str | None = None,
        db: str | os.PathLike[str] | None = None,
        channels: Sequence[str] = DEFAULT_CHANNELS,
        *,
        exchanges: Sequence[str] | None = None,
        binance_ws_url: str | None = None,
        binance_rest_url: str | None = None,
        okx_ws_url: str | None = None,
        okx_rest_url: str | None = None,
        trade_capacity: int = DEFAULT_TRADE_CAPACITY,
        kline_capacity: int = DEFAULT_KLINE_CAPACITY,
        db_batch_size: int = 500,
        db_flush_interval: float = 1.0,
        db_max_pending: int = 100_000,
        fallback: str | Mapping[str, str] | None = None,
        failover_after: float = 30.0,
        record: str | os.PathLike[str] | None = None,
        store: str | Sequence[str] = ("klines",),
        quote: str | None = None,
        shard: str | tuple[int, int] | None = None,
        book_levels: int = 20,
        book_interval: float = 1.0,
        publish: str | BusConfig | None = None,
        memory_limit: str | int | None = None,
        quote_equivalents: Mapping[str, str] | None = None,
        alerts: LabWatch | None = None,
        **feed_options: Any,
    ):
        venues, wanted, fallbacks = plan_venues(symbols, exchange, exchanges, fallback)
        self.exchanges = venues
        self.exchange = venues[0]  # the readers' default venue
        channels = check_channels(channels, venues[0])
        for venue in venues[1:]:
            check_channels(channels, venue)
        self.channels = channels
        self.intervals = check_intervals(intervals, venues[0], needed="klines" in channels)
        for venue in venues[1:]:
            check_intervals(intervals, venue, needed="klines" in channels)
        for name, value in (
            ("trade_capacity", trade_capacity),
            ("kline_capacity", kline_capacity),
            ("db_batch_size", db_batch_size),
            ("db_max_pending", db_max_pending),
            ("book_levels", book_levels),
        ):
            positive(name, value, integer=True)
        positive("db_flush_interval", db_flush_interval)
        positive("failover_after", failover_after)
        if record is not None and len(venues) > 1:
            raise ValueError(
                "record= records one venue's connection: give one exchange (or record each "
                "venue with a Lab of its own)"
            )
        self.quote_equivalents = dict(quote_equivalents or {})
        self.db = Path(db) if db is not None else None
        self.store_kinds = check_store(store, db, self.channels)
        positive("book_interval", book_interval)
        self.book_store = (book_levels, book_interval)  # levels a side, seconds between snapshots
        self.last_ticks_written = self.last_books_written = 0  # what the last run's ticks wrote
        if self.db is not None and self.db.exists():
            connect(self.db, readonly=True).close()  # fail now, not in the collector thread
        given = {
            "binance_ws_url": binance_ws_url,
            "binance_rest_url": binance_rest_url,
            "okx_ws_url": okx_ws_url,
            "okx_rest_url": okx_rest_url,
        }
        self.urls, configs, fallback_configs, perp_configs = feed_configs(
            venues, fallbacks, self.channels, self.intervals, given, feed_options
        )
        self.config = configs[venues[0]]
        chosen = {
            v: universe(wanted[v], quote, shard, v, self.urls[f"{v}_rest_url"]) for v in venues
        }
        check_perpetuals(chosen, fallbacks, record is not None)
        self.symbols = chosen[venues[0]]
        trade_capacity, kline_capacity = buffer_sizes(
            memory_limit,
            [s for v in venues for s in chosen[v]],
            self.intervals,
            self.channels,
            self.config.book_snapshot_limit,
            trade_capacity,
            kline_capacity,
        )
        self.trade_capacity, self.kline_capacity = (
            trade_capacity,
            kline_capacity,
        )  # per symbol / per series
        self.fallback = fallbacks.get(venues[0])
        self.failover_after = failover_after
        self._sides: dict[str, VenueSide] = {}
        for venue in venues:
            state = MarketState(
                chosen[venue],
                self.intervals,
                trade_capacity,
                kline_capacity,
                functools.partial(self._store_kline, venue),
            )
            perps = any(is_perpetual(s) for s in chosen[venue])
            side = VenueSide(
                venue,
                chosen[venue],
                self.intervals,
                configs[venue],
                state,
                perp_configs[venue] if perps else None,
            )
            if venue in fallbacks:
                side.failover = Failover(
                    fallbacks[venue],
                    fallback_configs[venue],
                    side.symbols,
                    self.intervals,
                    self.channels,
                    failover_after,
                    kline_capacity,
                    side.on_fallback,
                    self._store_kline,
                )
            side.publisher = bus_link.make_publisher(publish, venue)
            self._sides[venue] = side
        self._db_options: _DbOptions = {
            "batch_size": db_batch_size,
            "flush_interval": db_flush_interval,
            "max_pending": db_max_pending,
        }
        self.store_report = ""  # what the last stop() could not write, in one line
        self._store: KlineStore | None = None
        self._perp_store: PerpetualStore | None = None  # fundings and open interest (db=)
        self._perp_rests: dict[str, Callable[[], Any]] = {}  # a venue's perpetual REST client
        self.last_db_written = 0
        self.record_path = Path(record) if record is not None else None
        self._recorder: RecordingWriter | None = None
        self._replay: tuple[Path, float | None] | None = None
        self._bg = Background("marketlab-lab", quiet=(VenueError,))
        self._bus_source: BusSource | None = None  # set by from_bus: read the bus, not a venue
        self._views: weakref.WeakSet[Any] = weakref.WeakSet()  # live charts to close on stop
        if alerts is not None and not callable(getattr(alerts, "attach", None)):
            raise TypeError(
                "alerts= takes the rules to run, e.g. marketlab.watch.Watch(silence_s=30), "
                f"not a {type(alerts).__name__}"
            )
        self.watch = alerts  # alert rules run beside the collector (marketlab.watch.Watch)

    # --- the venues ------------------------------------------------------------------------

    def _side(self, exchange: str | None) -> VenueSide:
        """The venue's side (the first venue's for None), or ``KeyError`` naming the venues."""
        side = self._sides.get(exchange or self.exchange)
        if side is None:
            raise KeyError(
                f"exchange {exchange!r} is not collected by this Lab "
                f"(exchanges: {', '.join(self.exchanges)})"
            )
        return side

    @property
    def _feed(self) -> Feed | None:
        return self._sides[self.exchange].feed

    @property
    def _state(self) -> MarketState:
        return self._sides[self.exchange].state

    @property
    def _failover(self) -> Failover | None:
        return self._sides[self.exchange].failover

    @property
    def _publisher(self) -> Publisher | None:
        return self._sides[self.exchange].publisher

    @property
    def _ticks(self) -> TickWriter | None:
        return self._sides[self.exchange].ticks

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while the collector thread runs. False before :meth:`start`, after
        :meth:`stop`, and once the venue stopped it (its words are in
        ``summary()["error"]``), so a notebook can tell a quiet market from a dead collector."""
        return self._bg.alive

    @property
    def _error(self) -> BaseException | None:
        return self._bg.error

    def start(self) -> Lab:
        """Start collecting in the background; returns at once (see :meth:`wait_ready`)."""
        if self.running:
            return self
        if self.db is not None:
            self._store = KlineStore(self.db, **self._db_options)
            if any(is_perpetual(s) for side in self._sides.values() for s in side.symbols):
                self._perp_store = PerpetualStore(self.db)
        for side in self._sides.values():
            self._start_side(side)
        self._bg.start(self._run)
        if self.watch is not None:
            self.watch.attach(self)
        return self

    def _start_side(self, side: VenueSide) -> None:
        """The venue's feed (and tick writer), resuming where its stored series end."""
        venue, state = side.exchange, side.state
        starts: dict[tuple[str, str], int] = {}
        if self.db is not None and self._replay is None:  # a replay rebuilds its recording
            starts = warm(self.db, venue, state.klines, self.kline_capacity)
        trade_starts: dict[str, int] = {}
        side.ticks = None
        if self.db is not None and set(self.store_kinds) - {"klines"}:  # every tick kind
            from marketlab.store.ticks import TickWriter, last_trade_ids, ticks_root

            side.ticks = TickWriter(ticks_root(self.db), venue)
            if "trades" in self.store_kinds:
                if self._replay is None:  # where stored trades end: the gap since is fetched by id
                    trade_starts = last_trade_ids(side.ticks.root, venue)
                state.store_trades(side.ticks)
            if "book_deltas" in self.store_kinds:
                state.delta_store = side.ticks
        liquidations = side.ticks if "liquidations" in self.store_kinds else None
        state.perpetual_store = perpetual_sink(venue, self._perp_store, liquidations)
        cls = registry.get(venue).feed_class()
        if side.perp_config is not None and self._bus_source is None:  # the bus carries them
            if self._replay is not None:
                raise ValueError("perpetuals are not replayed yet")
            side.feed = self._perpetual_feed(side, starts)
            side.feed.resume_trades(trade_starts)
            return
        if self._bus_source is not None:
            source = bus_link.venue_source(self._bus_source, venue, len(self._sides) > 1)
            cls = bus_link.feed_class(source, venue)
        if self._replay is not None:
            cls = replaying(cls)
        side.feed = feed = cls(
            side.symbols, self.intervals, self.channels, side.config, state, kline_starts=starts
        )
        feed.resume_trades(trade_starts)
        if self._bus_source is not None and self._bus_source.durable is not None:
            assert isinstance(feed, BusFeed)  # bus_link.feed_class made it
            feed.commit = self._commit_stored
        if self._replay is not None:
            assert isinstance(feed, Replaying)  # replaying(cls) made it
            feed.replay_path, feed.replay_speed = self._replay
            if side.ticks is not None and "book" in self.store_kinds:  # on the recording's clock
                feed.replay_clock = ReplayBookSampler(side, side.ticks, *self.book_store)
        if self.record_path is not None:
            header = Header(
                venue,
                side.symbols,
                [str(iv) for iv in self.intervals],
                list(self.channels),
                time.time_ns(),
            )
            self._recorder = RecordingWriter(self.record_path, header)
            feed.tap = self._recorder.tap

    def _perpetual_feed(self, side: VenueSide, starts: dict[tuple[str, str], int]) -> Feed:
        """The feed of a side collecting perpetuals: their own feed, or paired with the spot
        feed when the side collects both."""
        info = registry.get(side.exchange)
        assert side.perp_config is not None
        perps = [s for s in side.symbols if is_perpetual(s)]
        spot = [s for s in side.symbols if not is_perpetual(s)]
        perp_class = info.perp_feed_class()
        perp_feed = perp_class(
            perps,
            self.intervals,
            perp_class.channels_of(self.channels),  # type: ignore[attr-defined]
            side.perp_config,
            side.state,
            kline_starts={k: t for k, t in starts.items() if k[0] in perps},
        )
        self._perp_rests[side.exchange] = perp_feed.make_rest
        if not spot:
            return cast(Feed, perp_feed)
        spot_feed = info.feed_class()(
            spot,
            self.intervals,
            self.channels,
            side.config,
            side.state,
            kline_starts={k: t for k, t in starts.items() if k[0] in spot},
        )
        return cast(Feed, PairedFeeds(spot_feed, perp_feed))

    async def _run(self) -> None:
        tasks: list[asyncio.Task[Any]] = []

        def background(coro: Coroutine[Any, Any, None]) -> None:
            task = asyncio.create_task(coro)
            task.add_done_callback(_log_failure)
            tasks.append(task)

        if self._store is not None:
            background(refill_dropped(self._store, self._rest_for))
        publishing: list[tuple[Publisher, asyncio.Task[None]]] = []
        for side in self._sides.values():
            ticks = side.ticks
            if ticks is not None and "book" in self.store_kinds and self._replay is None:
                background(sample_books(side, ticks, *self.book_store))
            if ticks is not None and "trades" in self.store_kinds:
                background(flush_trades(side.state, ticks.flush_interval))
            make_rest = self._perp_rests.get(side.exchange)
            if make_rest is not None and (self._perp_store or side.publisher):
                perps = [s for s in side.symbols if is_perpetual(s)]
                background(
                    keep_history(side.exchange, perps, side.state, make_rest(), self._perp_store)
                )
            if side.publisher is not None:
                assert side.feed is not None
                task = await bus_link.start_publishing(
                    side.publisher,
                    side.feed,
                    side.state,
                    side.failover,
                    side.symbols,
                    resume=self._replay is None,
                )
                task.add_done_callback(_log_failure)
                publishing.append((side.publisher, task))
        try:
            outcomes = await asyncio.gather(
                *(self._collect(side) for side in self._sides.values()), return_exceptions=True
            )
        finally:
            for task in tasks:
                task.cancel()
            if tasks:  # their own ends run (a REST client closed), within a bound
                await asyncio.wait(tasks, timeout=2.0)
            for publisher, task in publishing:
                await bus_link.stop_publishing(publisher, task)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        fatal = [side.feed.fatal for side in self._sides.values() if side.feed is not None]
        if fatal and all(e is not None for e in fatal):  # every venue stopped collecting
            raise next(e for e in fatal if e is not None)

    def _commit_stored(self) -> None:
        """What a history writer reading the bus does before it acknowledges: write everything
        taken so far (klines, fundings and open interest to SQLite, ticks to Parquet)."""
        for side in self._sides.values():
            if side.ticks is not None:
                side.state.flush_trades()
                side.ticks.sync()
        if self._store is not None:
            self._store.flush()
        if self._perp_store is not None:
            self._perp_store.flush()

    def _rest_for(self, exchange: str) -> tuple[Any, bool]:
        """A venue's own REST client while its feed runs, or a new one (a fallback venue's)."""
        side = self._sides.get(exchange)
        if side is not None and side.feed is not None and side.feed.rest is not None:
            return side.feed.rest, False
        return registry.get(exchange).rest_client(self.urls[f"{exchange}_rest_url"]), True

    async def _collect(self, side: VenueSide) -> None:
        """One venue's feed until it stops (a venue that fails stops alone: the others go on,
        and its error is in ``summary()``), with its fallback watching."""
        feed = side.feed
        assert feed is not None
        watcher = None
        if side.failover is not None:
            watcher = asyncio.create_task(side.failover.watch(feed, side.exchange))
        try:
            await feed.run()
        except Exception:
            if len(self._sides) > 1:  # the others go on: say it now, not when they stop
                log.exception("%s: collection failed", side.exchange)
            raise
        finally:
            if watcher is not None and side.failover is not None:
                watcher.cancel()
                await side.failover.stop()

    def _store_kline(self, exchange: str, k: Kline) -> None:
        if self._store is not None:
            self._store.add(exchange, k)

    @property
    def failed_over(self) -> bool:
        """True while data comes from the fallback venue (of the first venue)."""
        return self._failover is not None and self._failover.active

    @property
    def failovers(self) -> int:
        """How many times this Lab switched to its fallback venue: more than one in a session
        says the primary keeps going away, which a single ``failed_over`` flag cannot."""
        return self._failover.count if self._failover is not None else 0

    def stop(self, timeout: float = 15.0) -> None:
        """Stop collecting and close every connection, within ``timeout`` seconds whatever the
        store is doing. The frames stay readable. What the store could not write is logged in
        one line and kept in :attr:`store_report` (the next start fetches it again)."""
        deadline = time.monotonic() + timeout
        for view in list(self._views):
            view.close("lab.stop() was called")
        if self.watch is not None:
            self.watch.detach()
        if not self._bg.started:
            return
        for side in self._sides.values():
            if side.feed is not None:
                self._bg.call_soon(side.feed.stop())
        if not self._bg.join(max(0.0, deadline - time.monotonic() - 1.0)):
            log.error("collector did not stop within %.0f s", timeout)
        self._bg.forget()
        if self._recorder is not None:
            self._recorder.close()
        self.last_ticks_written = self.last_books_written = 0
        for side in self._sides.values():
            ticks, side.ticks = side.ticks, None
            if ticks is not None:
                side.state.flush_trades()  # the collector has stopped: its last rows to the store
                side.state.store_trades(None)
                side.state.delta_store = None
                ticks.close(max(1.0, deadline - time.monotonic()))
                self.last_ticks_written += ticks.written
                self.last_books_written += ticks.books_written
            side.state.perpetual_store = None
        perp_store, self._perp_store = self._perp_store, None
        if perp_store is not None:
            perp_store.close(max(1.0, deadline - time.monotonic()))
        store, self._store = self._store, None
        if store is not None:
            self.store_report = store.close(max(1.0, deadline - time.monotonic()))
            if self.store_report:
                log.error("store: %s", self.store_report)
            self.last_db_written = store.written

    @classmethod
    def replay(
        cls,
        path: str | os.PathLike[str],
        speed: float | None = None,
        db: str | os.PathLike[str] | None = None,
        **options: Any,
    ) -> Lab:
        """A Lab fed from a recording (``marketlab record`` or ``Lab(record=...)``), started.

        Frames go through the same parser, books, frames and store as live data. ``speed``
        replays at that multiple of the recorded pace; None as fast as it goes. :meth:`join`
        waits for the end of the file.
        """
        header, entries = open_recording(path)
        entries.close()
        lab = cls(
            header.symbols,
            intervals=header.intervals,
            exchange=header.exchange,
            db=db,
            channels=header.channels,
            **options,
        )
        lab._replay = (Path(path), speed)
        return lab.start()

    @classmethod
    def from_bus(
        cls,
        bus: str | BusConfig,
        symbols: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
        intervals: Sequence[str] = ("1m",),
        exchange: str = "binance",
        since: float | str | None = None,
        durable: str | None = None,
        *,
        exchanges: Sequence[str] | None = None,
        **options: Any,
    ) -> Lab:
        """A Lab fed from the bus (``nats://host:4222``) that collectors publish to
        (``Lab(publish=...)``), on any host: the same frames, books, charts, status and store.

        ``symbols`` None takes every symbol of ``exchange`` on the bus (of each venue of
        ``exchanges``, read together as a several-venue Lab reads them). It first catches up
        with what the stream keeps (``since``: epoch seconds to start there, ``"new"`` for
        only what comes next); ``durable`` names a consumer that remembers how far it has
        written (a history writer with ``db=``: it acknowledges only what is stored; one per
        venue, named ``<durable>-<venue>``, with several).
        Not started: call :meth:`start`.
        """
        venues = [exchange] if exchanges is None else list(exchanges)
        wanted, source = bus_link.bus_source(bus, symbols, venues, since, durable, options)
        if len(venues) == 1:
            lab = cls(wanted[venues[0]], intervals=intervals, exchange=venues[0], **options)
        else:
            lab = cls(dict(wanted), intervals=intervals, exchanges=venues, **options)
        lab._bus_source = source
        return lab

    def join(self, timeout: float | None = None) -> Lab:
        """Wait for a replay to reach the end of its recording, then stop (flushing the store)."""
        if self._replay is None:
            raise RuntimeError("join() waits for a replay; a live Lab runs until stop()")
        if not self._bg.join(timeout):
            raise TimeoutError(f"the replay did not finish within {timeout:g} s")
        if self._error is not None:
            raise RuntimeError(f"the replay failed: {self._error}") from self._error
        self.stop()
        return self

    @property
    def history(self) -> History:
        """The stored history (``db=``) as a :class:`marketlab.store.history.History`."""
        return self._history_of(self.exchange)

    def _history_of(self, exchange: str) -> History:
        if self.db is None:
            raise ValueError("this Lab keeps no history: create it with db='data/marketlab.sqlite'")
        from marketlab.store.history import History

        return History(db=self.db, exchange=exchange, rest_url=self.urls[f"{exchange}_rest_url"])

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_ready(self, timeout: float = 30.0, books: bool = True) -> Lab:
        """Block until klines are seeded, every price is in and (``books``) every book synced,
        on every venue."""
        feeds = [side.feed for side in self._sides.values()]
        deadline, progress = time.monotonic() + timeout, SyncProgress(feeds)
        while time.monotonic() < deadline and progress(feeds):
            if self._error is not None:
                raise RuntimeError(f"the collector stopped: {self._error}") from self._error
            if not self._bg.started:
                raise RuntimeError("the Lab is not running: call start() first")
            stopped = [
                f"{side.exchange}: {side.feed.fatal}"
                for side in self._sides.values()
                if side.feed is not None and side.feed.fatal is not None
            ]
            if stopped and len(self._sides) > 1:
                raise RuntimeError(f"a venue stopped collecting: {'; '.join(stopped)}")
            if self._ready(books):
                return self
            if not self._bg.alive:
                time.sleep(0.05)  # the thread may be storing its error
                if self._error is None:
                    raise RuntimeError("the collector stopped")
                continue
            time.sleep(0.05)
        raise TimeoutError(f"not ready after {timeout:g} s: {self._not_ready(books)}")

    def _ready(self, books: bool) -> bool:
        return not self._not_ready(books)

    def _not_ready(self, books: bool) -> str:
        waits = {
            side.exchange: not_ready(side.feed, self.channels, side.state.without_ticker, books)
            for side in self._sides.values()
        }
        if len(waits) == 1:
            return waits[self.exchange]
        return "; ".join(f"{venue}: {wait}" for venue, wait in waits.items() if wait)

    # --- callbacks -------------------------------------------------------------------------

    def subscribe(
        self, callback: Callable[[Record], Any], exchange: str | None = None
    ) -> Callable[[], None]:
        """Call ``callback(record)`` for every record of ``exchange`` (the first venue by
        default), on the collector thread.

        Keep it quick; an exception is logged and does not stop collection. Returns a
        function that unsubscribes.
        """
        callbacks = self._side(exchange).state.callbacks
        callbacks.append(callback)

        def unsubscribe() -> None:
            if callback in callbacks:
                callbacks.remove(callback)

        return unsubscribe

    def alerts(self) -> pd.DataFrame:
        """Active alerts, then recently resolved ones: time, venue, symbol, rule, kind
        (health or market), value, threshold, message, state, resolved_at (``alerts=``)."""
        if self.watch is None:
            raise ValueError("this Lab runs no alert rules: create it with alerts=Watch()")
        frame: pd.DataFrame = self.watch.frame()
        return frame

    def on_alert(self, callback: Callable[[Mapping[str, Any]], Any]) -> Callable[[], None]:
        """Call ``callback(alert)`` (a dict) for every alert raised and resolved, on the
        watch's thread; returns a function that unsubscribes."""
        if self.watch is None:
            raise ValueError("this Lab runs no alert rules: create it with alerts=Watch()")
        return self.watch.on_alert(callback)

    def status(self) -> pd.DataFrame:
        """Per symbol and stream: connected, source, last message age, counts, book state and
        how it is verified, gaps backfilled. ``attrs`` holds :meth:`summary`. With several
        venues the index starts with ``exchange``."""
        if len(self._sides) == 1:
            df = status_frame(self._feed)
        else:
            import pandas as pd

            df = pd.concat(
                {v: status_frame(side.feed) for v, side in self._sides.items()},
                names=["exchange"],
            )
        df.attrs.update(self.summary())
        return df

    def status_rows(self) -> list[dict[str, Any]]:
        """The rows of :meth:`status` as plain dicts, each with its ``exchange``: cheap, for a
        status line or a server."""
        return [
            {"exchange": venue, **row}
            for venue, side in self._sides.items()
            for row in status_rows(side.feed)
        ]

    def summary(self) -> dict[str, Any]:
        """Connection-wide state: running, source, failover, connections, reconnects, bad frames,
        REST use, what stopped collection (``error``), the store's state (``store``) and the
        bus's (``bus``). With several venues these are the first venue's, and ``venues`` holds
        every venue's own (``summary()["venues"]["okx"]``)."""
        per_venue = {v: self._venue_summary(side) for v, side in self._sides.items()}
        out = per_venue[self.exchange]
        if len(per_venue) > 1:
            out = {**out, "exchanges": list(self.exchanges), "venues": per_venue}
        return out

    def _venue_summary(self, side: VenueSide) -> dict[str, Any]:
        feed = side.feed
        error = self._error
        if feed is not None and feed.fatal is not None:
            error = feed.fatal
        return lab_summary(
            SummaryParts(
                running=self.running and (feed is None or feed.fatal is None),
                exchange=side.exchange,
                fallback=side.fallback,
                failovers=side.failover.count if side.failover is not None else 0,
                db=self.db,
                feed=feed,
                failover=side.failover,
                error=error,
                store=self._store,
                ticks=side.ticks,
                publisher=side.publisher,
                from_bus=self._bus_source is not None,
                trades=side.state.trades,
            )
        )

    def recorded(self) -> dict[str, Any]:
        """What ``record=`` has written: entries, bytes before and after compression."""
        r = self._recorder
        if r is None:
            return {"entries": 0, "raw_bytes": 0, "file_bytes": 0}
        return {"entries": r.entries, "raw_bytes": r.raw_bytes, "file_bytes": r.file_bytes}

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        venues = f", exchanges={self.exchanges}" if len(self.exchanges) > 1 else ""
        return f"Lab({self.symbols}{venues}, intervals={list(self.intervals)}, {state})"


class _DbOptions(TypedDict):
    """The Lab's options of its kline store (:class:`~marketlab.store.writer.KlineStore`)."""

    batch_size: int
    flush_interval: float
    max_pending: int


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("%s failed", getattr(task.get_coro(), "__qualname__", None), exc_info=exc)
