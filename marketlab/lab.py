"""``Lab``: the researcher's handle on live market data.

The collector runs on its own event loop in a background thread, so it behaves the same in a
script and in a Jupyter kernel, and a notebook cell that blocks does not stall the connection.
Everything a method returns is a fresh pandas object; nothing the collector holds leaks out.
"""

from __future__ import annotations

import asyncio
import decimal
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from marketlab.defaults import DEFAULT_CHANNELS
from marketlab.failover import FALLBACK_CHANNELS, Failover
from marketlab.frames import (
    DEFAULT_KLINE_CAPACITY,
    DEFAULT_TRADE_CAPACITY,
    book_frame,
    empty_book_frame,
    utc_times,
)
from marketlab.lab_options import check_channels, check_intervals, check_symbols, venue_urls
from marketlab.record.recording import Header, RecordingWriter, open_recording
from marketlab.record.replay import replaying
from marketlab.records import Interval, Kline, Record, Ticker, normalize_symbol
from marketlab.settings import one_of, positive
from marketlab.state import MarketState
from marketlab.store.history import History
from marketlab.store.refill import refill_dropped
from marketlab.store.sqlite import connect
from marketlab.store.writer import KlineStore
from marketlab.stream.feed import BookView, Feed, FeedConfig, VenueError
from marketlab.venues import registry

log = logging.getLogger("marketlab.lab")


class Lab:
    """Collects ``symbols`` from an exchange into rolling pandas frames.

    >>> lab = Lab(["BTCUSDT", "ETHUSDT"], intervals=["1m", "5m"])   # doctest: +SKIP
    >>> lab.start(); lab.wait_ready(); lab.prices()                  # doctest: +SKIP

    ``channels`` picks what to collect: trades, ticker, book, klines (the default) and
    bookTicker, aggTrades, miniTicker (Binance only). ``exchange`` is ``"binance"`` or
    ``"okx"``; with ``fallback="okx"`` the Lab switches prices, books and klines to OKX while
    Binance is unreachable (WebSocket down and REST failing for ``failover_after`` seconds) and
    back when it returns. Fallback records say so in ``source`` (``"okx:ws"``), and their
    klines are kept apart (``klines(..., exchange="okx")``; stored under ``exchange='okx'``).
    Venue URLs default to the real exchanges and can be pointed anywhere (the simulator) by
    argument or environment variable. Extra keyword arguments tune the connection (see
    :class:`marketlab.stream.feed.FeedConfig`).
    """

    def __init__(
        self,
        symbols: Sequence[str],
        intervals: Sequence[str] = ("1m",),
        exchange: str = "binance",
        db: str | os.PathLike[str] | None = None,
        channels: Sequence[str] = DEFAULT_CHANNELS,
        *,
        binance_ws_url: str | None = None,
        binance_rest_url: str | None = None,
        okx_ws_url: str | None = None,
        okx_rest_url: str | None = None,
        trade_capacity: int = DEFAULT_TRADE_CAPACITY,
        kline_capacity: int = DEFAULT_KLINE_CAPACITY,
        db_batch_size: int = 500,
        db_flush_interval: float = 1.0,
        db_max_pending: int = 100_000,
        fallback: str | None = None,
        failover_after: float = 30.0,
        record: str | os.PathLike[str] | None = None,
        **feed_options: Any,
    ):
        self.symbols = check_symbols(symbols)
        self.exchange = one_of("exchange", exchange, registry.names())
        if fallback is not None:
            one_of("fallback", fallback, [e for e in registry.names() if e != exchange])
        self.channels = check_channels(channels, exchange)
        self.intervals = check_intervals(intervals, exchange, needed="klines" in self.channels)
        for name, value in (("trade_capacity", trade_capacity), ("kline_capacity", kline_capacity),
                            ("db_batch_size", db_batch_size)):  # fmt: skip
            positive(name, value, integer=True)
        positive("db_flush_interval", db_flush_interval)
        positive("db_max_pending", db_max_pending, integer=True)
        positive("failover_after", failover_after)
        self.db = Path(db) if db is not None else None
        if self.db is not None and self.db.exists():
            connect(self.db, readonly=True).close()  # fail now, not in the collector thread
        given = {"binance_ws_url": binance_ws_url, "binance_rest_url": binance_rest_url,
                 "okx_ws_url": okx_ws_url, "okx_rest_url": okx_rest_url}  # fmt: skip
        for name in [k for k in feed_options if k.endswith(("_ws_url", "_rest_url"))]:
            if name.partition("_")[0] in registry.names():  # a venue without a keyword of its own
                given[name] = feed_options.pop(name)
        self.urls = venue_urls(given, [exchange] if fallback is None else [exchange, fallback])
        unknown = set(feed_options) - set(FeedConfig.__dataclass_fields__) - {"ws_url", "rest_url"}
        if unknown:
            raise TypeError(f"unknown Lab option(s): {', '.join(sorted(unknown))}")
        options = {k: v for k, v in feed_options.items() if k not in ("ws_url", "rest_url")}
        self.config = FeedConfig(ws_url=self.urls[f"{exchange}_ws_url"], rest_url=self.urls[f"{exchange}_rest_url"],
                                 **options)  # fmt: skip
        self.fallback = fallback
        self.failover_after = failover_after
        self._failover: Failover | None = None
        if fallback is not None:
            fallback_channels = tuple(c for c in self.channels if c in FALLBACK_CHANNELS)
            try:
                check_channels(fallback_channels, fallback)
                check_intervals(self.intervals, fallback, needed="klines" in fallback_channels)
            except ValueError as exc:
                raise ValueError(f"fallback {fallback}: {exc}") from None
            config = FeedConfig(ws_url=self.urls[f"{fallback}_ws_url"], rest_url=self.urls[f"{fallback}_rest_url"],
                                **options)  # fmt: skip
            self._failover = Failover(fallback, config, self.symbols, self.intervals, self.channels,
                                      failover_after, kline_capacity, self._on_fallback, self._store_kline)  # fmt: skip
        self._state = MarketState(self.symbols, self.intervals, trade_capacity, kline_capacity,
                                  lambda k: self._store_kline(self.exchange, k))  # fmt: skip
        self._trades, self._klines = self._state.trades, self._state.klines
        self._on_records = self._state.on_records  # what the feed delivers to
        self._kline_capacity = kline_capacity
        self._db_options = {"batch_size": db_batch_size, "flush_interval": db_flush_interval,
                            "max_pending": db_max_pending}  # fmt: skip
        self.store_report = ""  # what the last stop() could not write, in one line
        self._store: KlineStore | None = None
        self.last_db_written = 0
        self._feed: Feed | None = None
        self.record_path = Path(record) if record is not None else None
        self._recorder: RecordingWriter | None = None
        self._replay: tuple[Path, float | None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._views: weakref.WeakSet[Any] = weakref.WeakSet()  # live charts to close on stop

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Lab:
        """Start collecting in the background; returns at once (see :meth:`wait_ready`)."""
        if self.running:
            return self
        starts: dict[tuple[str, str], int] = {}
        if self.db is not None:
            self._store = KlineStore(self.db, **self._db_options)
            if self._replay is None:  # a replay rebuilds exactly what its recording holds
                starts = self.history.warm(self._klines, self._kline_capacity)
        cls = registry.get(self.exchange).feed_class()
        if self._replay is not None:
            cls = replaying(cls)
        self._feed = cls(self.symbols, self.intervals, self.channels, self.config, self._on_records,
                         kline_starts=starts)  # fmt: skip
        if self._replay is not None:
            self._feed.replay_path, self._feed.replay_speed = self._replay  # type: ignore[attr-defined]
        if self.record_path is not None:
            header = Header(self.exchange, self.symbols, [str(iv) for iv in self.intervals], list(self.channels),
                            time.time_ns())  # fmt: skip
            self._recorder = RecordingWriter(self.record_path, header)
            writer = self._recorder

            def tap(kind: int, tag: str, data: bytes) -> None:
                writer.write(kind, time.time_ns(), tag, data)

            self._feed.tap = tap
        started = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            started.set()
            try:
                loop.run_until_complete(self._run())
            except VenueError as exc:  # already logged where it happened
                self._error = exc
            except BaseException as exc:  # kept for status(); the thread must not die silently
                self._error = exc
                log.exception("collector stopped with an error")
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="marketlab-lab", daemon=True)
        self._thread.start()
        started.wait()
        return self

    async def _run(self) -> None:
        assert self._feed is not None
        refill = None
        if self._store is not None:
            refill = asyncio.create_task(refill_dropped(self._store, self._rest_for))
            refill.add_done_callback(_log_failure)
        try:
            await self._collect()
        finally:
            if refill is not None:
                refill.cancel()
        if self._feed.fatal is not None:
            raise self._feed.fatal

    def _rest_for(self, exchange: str) -> tuple[Any, bool]:
        """The primary's own REST client, or a new one for the fallback venue's series."""
        if exchange == self.exchange and self._feed is not None and self._feed.rest is not None:
            return self._feed.rest, False
        return registry.get(exchange).rest_client(self.urls[f"{exchange}_rest_url"]), True

    async def _collect(self) -> None:
        assert self._feed is not None
        if self._failover is None:
            await self._feed.run()
            return
        watcher = asyncio.create_task(self._failover.watch(self._feed, self.exchange))
        try:
            await self._feed.run()
        finally:
            watcher.cancel()
            await self._failover.stop()

    def _on_fallback(self, r: Record, source: str) -> None:
        if isinstance(r, Ticker):
            self._state.ticker(r, source)
        if self._state.callbacks:
            self._state.notify(r)

    def _store_kline(self, exchange: str, k: Kline) -> None:
        if self._store is not None:
            self._store.add(exchange, k)

    @property
    def failed_over(self) -> bool:
        """True while data comes from the fallback venue."""
        return self._failover is not None and self._failover.active

    @property
    def failovers(self) -> int:
        return self._failover.count if self._failover is not None else 0

    def stop(self, timeout: float = 15.0) -> None:
        """Stop collecting and close every connection, within ``timeout`` seconds whatever the
        store is doing. The frames stay readable. What the store could not write is logged in
        one line and kept in :attr:`store_report` (the next start fetches it again)."""
        deadline = time.monotonic() + timeout
        for view in list(self._views):
            view.close()
        if self._thread is None:
            return
        if self._loop is not None and self._feed is not None and self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._feed.stop(), self._loop)
        self._thread.join(max(0.0, deadline - time.monotonic() - 1.0))
        if self._thread.is_alive():
            log.error("collector did not stop within %.0f s", timeout)
        self._thread = None
        if self._recorder is not None:
            self._recorder.close()
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
        entries.close()  # type: ignore[attr-defined]
        lab = cls(header.symbols, intervals=header.intervals, exchange=header.exchange, db=db,
                  channels=header.channels, **options)  # fmt: skip
        lab._replay = (Path(path), speed)
        return lab.start()

    def join(self, timeout: float | None = None) -> Lab:
        """Wait for a replay to reach the end of its recording, then stop (flushing the store)."""
        if self._replay is None:
            raise RuntimeError("join() waits for a replay; a live Lab runs until stop()")
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise TimeoutError(f"the replay did not finish within {timeout:g} s")
        if self._error is not None:
            raise RuntimeError(f"the replay failed: {self._error}") from self._error
        self.stop()
        return self

    @property
    def history(self) -> History:
        """The stored history (``db=``) as a :class:`marketlab.store.history.History`."""
        if self.db is None:
            raise ValueError("this Lab keeps no history: create it with db='data/marketlab.sqlite'")
        return History(
            db=self.db, exchange=self.exchange, rest_url=self.urls[f"{self.exchange}_rest_url"]
        )

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_ready(self, timeout: float = 30.0, books: bool = True) -> Lab:
        """Block until klines are seeded, every price is in and (``books``) every book synced."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._error is not None:
                raise RuntimeError(f"the collector stopped: {self._error}") from self._error
            if self._thread is None:
                raise RuntimeError("the Lab is not running: call start() first")
            if self._ready(books):
                return self
            if not self._thread.is_alive():
                time.sleep(0.05)  # the thread may be storing its error
                if self._error is None:
                    raise RuntimeError("the collector stopped")
                continue
            time.sleep(0.05)
        raise TimeoutError(f"not ready after {timeout:g} s: {self._not_ready(books)}")

    def _ready(self, books: bool) -> bool:
        return not self._not_ready(books)

    def _not_ready(self, books: bool) -> str:
        feed = self._feed
        if feed is None:
            return "not started"
        missing = []
        if not feed.symbols_confirmed.is_set():
            missing.append("symbols not yet confirmed by the venue")
        if "klines" in self.channels and not feed.ready.is_set():
            missing.append("klines not seeded")
        if "ticker" in self.channels:
            absent = self._state.without_ticker()
            if absent:
                missing.append(f"no price yet for {', '.join(absent)}")
        if books and feed.books:
            unsynced = [s for s in feed.books if feed.book_state(s) != "synced"]
            if unsynced:
                missing.append(f"books not synced: {', '.join(unsynced)}")
        return "; ".join(missing)

    # --- callbacks -------------------------------------------------------------------------

    def subscribe(self, callback: Callable[[Record], Any]) -> Callable[[], None]:
        """Call ``callback(record)`` for every record, on the collector thread.

        Keep it quick; an exception is logged and does not stop collection. Returns a
        function that unsubscribes.
        """
        callbacks = self._state.callbacks
        callbacks.append(callback)

        def unsubscribe() -> None:
            if callback in callbacks:
                callbacks.remove(callback)

        return unsubscribe

    # --- frames ----------------------------------------------------------------------------

    def _symbol(self, symbol: str) -> str:
        s = normalize_symbol(symbol)
        if s not in self.symbols:
            raise KeyError(f"{s} is not collected by this Lab (symbols: {', '.join(self.symbols)})")
        return s

    def price_rows(self) -> list[dict[str, Any]]:
        """The data of :meth:`prices` as plain dicts (times in epoch ms): cheap, for servers."""
        return self._state.price_rows()

    def prices(self) -> pd.DataFrame:
        """One row per symbol: last, bid, ask, 24h change %, volume, times, age and source."""
        columns = ["last", "bid", "ask", "change_pct", "volume", "event_time", "received_at", "age_s",
                   "source"]  # fmt: skip
        df = pd.DataFrame(self.price_rows(), columns=["symbol", *columns]).set_index("symbol")
        df["event_time"] = utc_times(df["event_time"])
        df["received_at"] = utc_times(df["received_at"])
        return df

    def klines(
        self, symbol: str, interval: str = "1m", exchange: str | None = None
    ) -> pd.DataFrame:
        """Candles oldest first; the last row is the open candle (``closed`` False).

        ``exchange`` picks the fallback venue's own series (collected while failed over);
        the two venues' candles are never mixed in one frame.
        """
        key = (self._symbol(symbol), Interval(interval))
        if exchange not in (None, self.exchange):
            if exchange != self.fallback:
                raise KeyError(f"exchange {exchange!r} is not collected by this Lab")
            if key[1] not in self.intervals:
                raise KeyError(
                    f"interval {interval} is not collected (intervals: {', '.join(self.intervals)})"
                )
            assert self._failover is not None
            return self._failover.kline_frame(*key)
        buf = self._klines.get(key)
        if buf is None:
            raise KeyError(
                f"interval {interval} is not collected (intervals: {', '.join(self.intervals)})"
            )
        return buf.frame()

    def tick_size(self, symbol: str) -> float | None:
        """The symbol's price tick as the venue lists it (None until it has answered)."""
        s = self._symbol(symbol)
        return self._feed.tick_sizes.get(s) if self._feed is not None else None

    def price_decimals(self, symbol: str) -> int | None:
        """Decimals of the price tick (0.01 → 2): round derived prices (spreads, mids) to it."""
        tick = self.tick_size(symbol)
        if tick is None:
            return None
        exponent = decimal.Decimal(repr(tick)).normalize().as_tuple().exponent
        return max(0, -int(exponent))

    def trades(self, symbol: str) -> pd.DataFrame:
        """Recent trades, oldest first; ``side`` is the taker's side."""
        return self._trades[self._symbol(symbol)].frame()

    def book_levels(self, symbol: str, depth: int = 20) -> BookView:
        """The data of :meth:`book` without pandas: cheap, for servers."""
        s = self._symbol(symbol)
        if self._feed is None:
            return BookView(False, 0, [], [], "not started", self.exchange)
        view = self._feed.book_view(s, depth, self.exchange)
        if not view.synced and self._failover is not None:
            return self._failover.book_view(s, depth) or view
        return view

    def chart(
        self, symbol: str, interval: str | None = None, fps: float = 2.0, candles: int = 240
    ) -> Any:
        """Live candlestick + volume (a plotly FigureWidget) with symbol/interval dropdowns and
        a pause button; refreshed at most ``fps`` times a second."""
        from marketlab.charts import CandleChart

        return self._view(CandleChart(self, self._symbol(symbol), interval or self.intervals[0], fps=fps,
                                      candles=candles))  # fmt: skip

    def book_chart(self, symbol: str, depth: int = 50, fps: float = 2.0) -> Any:
        """Live cumulative depth of the synced order book."""
        from marketlab.charts import BookChart

        return self._view(BookChart(self, self._symbol(symbol), depth=depth, fps=fps))

    def board(self, fps: float = 1.0, stale_after: float = 5.0) -> Any:
        """A live price board: change coloured by sign, rows greyed when older than ``stale_after``."""
        from marketlab.charts import PriceBoard

        return self._view(PriceBoard(self, fps=fps, stale_after=stale_after))

    def _view(self, view: Any) -> Any:
        self._views.add(view)  # closed by stop()
        return view

    def book(self, symbol: str, depth: int = 20) -> pd.DataFrame:
        """The order book, bids best first then asks best first.

        Empty while the book is out of sync with the exchange; ``attrs`` carries ``synced``,
        ``last_update_id``, ``reason``, ``exchange`` and ``verified`` (how the book is known
        to equal the venue's: ``"update id chain"``, ``"seqId chain"``, ``"seqId chain +
        checksum"`` or ``"REST snapshot"`` while polled).
        """
        view = self.book_levels(symbol, depth)
        df = book_frame(view.bids, view.asks) if view.synced else empty_book_frame()
        df.attrs.update(synced=view.synced, last_update_id=view.last_update_id, reason=view.reason,
                        exchange=view.exchange, verified=view.verified)  # fmt: skip
        return df

    def status(self) -> pd.DataFrame:
        """Per symbol and stream: connected, source, last message age, counts, book state,
        gaps backfilled. ``attrs`` holds connection-wide figures."""
        feed = self._feed
        now = time.time()
        rows = []
        if feed is not None:
            connected = feed.connected
            reconnects = feed.reconnects
            for (symbol, stream), st in sorted(feed.stream_stats.items()):
                row = {"symbol": symbol, "stream": stream, "connected": connected,
                       "source": st.source if feed.polling or st.source == "ws" else "ws",
                       "messages": st.messages,
                       "age_s": now - st.last_received if st.last_received else float("nan"),
                       "reconnects": reconnects, "book": "", "verified": "", "backfilled": 0,
                       "gaps": 0}  # fmt: skip
                if stream == "depth":
                    row["book"], row["verified"] = feed.book_state(symbol), feed.book_check(symbol)
                if stream.startswith("kline_"):
                    ks = feed.kline_stats.get((symbol, stream[6:]))
                    if ks is not None:
                        row["backfilled"], row["gaps"] = ks.backfilled, ks.gaps_detected
                rows.append(row)
        df = pd.DataFrame(rows, columns=["symbol", "stream", "connected", "source", "messages", "age_s",
                                         "reconnects", "book", "verified", "backfilled", "gaps"])  # fmt: skip
        df = df.set_index(["symbol", "stream"])
        df.attrs.update(self.summary())
        return df

    def summary(self) -> dict[str, Any]:
        """Connection-wide state: running, source, connections, reconnects, bad frames, REST."""
        feed = self._feed
        if feed is None:
            return {"running": False, "source": None}
        rest = feed.rest.governor.stats if feed.rest is not None else None
        fallback = self._failover.feed if self._failover is not None else None
        return {
            "running": self.running,
            "exchange": self.exchange,
            "source": f"{self.fallback}:{fallback.source}" if fallback is not None else feed.source,
            "fallback": self.fallback,
            "failed_over": fallback is not None,
            "failover_since": self._failover.since if self._failover is not None else None,
            "failovers": self.failovers,
            "connections": [
                {
                    "name": c.name,
                    "connected": c.connected,
                    "streams": len(c.streams),
                    "messages": c.messages,
                    "reconnects": c.reconnects,
                    "age_s": round(c.age(), 1),
                    "last_error": c.last_error,
                }
                for c in feed.connections
            ],
            "reconnects": feed.reconnects,
            "bad_frames": feed.bad_frames,
            "last_bad_frame": feed.last_bad_frame,
            "trades_missed": {s: b.missed for s, b in self._trades.items()},
            "rest_requests": rest.requests if rest else 0,
            "rest_rate_limited": (rest.rate_limited + rest.banned) if rest else 0,
            "error": f"{type(self._error).__name__}: {self._error}" if self._error else None,
            "db": str(self.db) if self.db else None,
            "db_written": self._store.written if self._store else None,
            "db_errors": self._store.errors if self._store else None,
            "store": self._store.status() if self._store else None,
            "replayed": getattr(feed, "entries_replayed", None),
        }

    def recorded(self) -> dict[str, Any]:
        """What ``record=`` has written: entries, bytes before and after compression."""
        r = self._recorder
        if r is None:
            return {"entries": 0, "raw_bytes": 0, "file_bytes": 0}
        return {"entries": r.entries, "raw_bytes": r.raw_bytes, "file_bytes": r.file_bytes}

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"Lab({self.symbols}, intervals={list(self.intervals)}, {state})"


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("%s failed", task.get_coro().__qualname__, exc_info=exc)
