"""The writer thread: closed klines batched into SQLite, off the event loop.

One transaction per batch (flushed on size or age), so a ``kill -9`` loses at most the batch in
flight. While writes fail (a full disk, a locked or read-only file) rows keep queueing up to a
bound; beyond it the oldest are let go of and their ranges kept for fetching again, and closing
returns on time whatever SQLite is doing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from marketlab.records import Kline
from marketlab.store.health import Ranges, StoreHealth, add_ranges, describe_ranges, merge_ranges
from marketlab.store.sqlite import UPSERT, StoreError, connect, kline_row, last_open_times

log = logging.getLogger("marketlab.store")


class KlineStore:
    """A writer thread batching closed klines into SQLite.

    ``add`` never blocks (it queues); ``flush`` waits for everything queued so far;
    ``close`` flushes and stops, within a timeout if given. A failing write (a full disk, a
    locked or read-only file) is logged and retried while new rows keep queueing; at most
    ``max_pending`` rows wait, beyond that the oldest are let go of and their ranges kept in
    :attr:`health` so the owner can fetch them again once writes succeed. A write waits at most
    ``busy_timeout`` for another process's lock (then it is retried, ``retry_interval`` later),
    so the writer is never stuck where closing cannot reach it.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        retry_interval: float = 2.0,
        busy_timeout: float = 0.5,
        max_pending: int = 100_000,
    ):
        if batch_size < 1 or flush_interval <= 0 or max_pending < 1:
            raise ValueError("batch_size and max_pending must be >= 1 and flush_interval > 0")
        self.path = Path(path)
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.retry_interval = retry_interval
        self.max_pending = max_pending
        self._conn = connect(self.path, busy_timeout=busy_timeout)
        self._queue: queue.Queue[Any] = queue.Queue()  # rows, flush events, calls, None
        self._lock = threading.Lock()  # guards health's counters and ranges
        self.health = StoreHealth(str(self.path))
        self.unwritten: Ranges = {}  # what close() could not write
        self.written = 0  # rows committed
        self.batches = 0
        self.errors = 0
        self.rejected = 0  # rows the schema refused (logged; never retried)
        self.last_error = ""
        self._thread = threading.Thread(target=self._run, name="marketlab-store", daemon=True)
        self._thread.start()

    # --- writing ---------------------------------------------------------------------------

    def add(self, exchange: str, kline: Kline) -> None:
        self.add_many(exchange, (kline,))

    def add_many(self, exchange: str, klines: Iterable[Kline]) -> None:
        now = int(time.time() * 1000)
        rows = []
        for k in klines:
            if not k.closed:
                raise ValueError(
                    f"only closed klines are stored: {k.symbol} {k.interval} {k.open_time}"
                )
            rows.append(kline_row(exchange, k, now))
        if rows:
            with self._lock:
                self.health.pending += len(rows)
            self._queue.put(rows)

    def flush(self, timeout: float | None = 60.0) -> None:
        """Block until everything added before this call is committed."""
        done = threading.Event()
        self._queue.put(done)
        if not done.wait(timeout):
            raise StoreError(
                f"{self.path}: pending klines not written after {timeout} s ({self.last_error})"
            )

    def dropped_ranges(self) -> Ranges:
        """The ranges let go of while writes failed, to fetch again (see :meth:`refilled`)."""
        with self._lock:
            return dict(self.health.dropped_ranges)

    def refilled(self, key: tuple[str, str, str], span: tuple[int, int, int]) -> None:
        """``span`` of ``key`` was fetched again and queued: no longer awaited (unless more
        was dropped meanwhile, which keeps it for another round)."""
        with self._lock:
            if self.health.dropped_ranges.get(key) == span:
                del self.health.dropped_ranges[key]

    def on_writer(self, call: Callable[[sqlite3.Connection], Any]) -> None:
        """Run ``call(connection)`` on the writer thread, between batches (fault drills use it
        to fill the disk or make the file read-only from SQLite's side)."""
        self._queue.put(call)

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {**self.health.as_dict(), "written": self.written, "path": str(self.path)}

    def close(self, timeout: float | None = None) -> str:
        """Write what is pending and stop. With ``timeout``, return by then whatever SQLite is
        doing (a write waiting on a lock is interrupted); what could not be written is kept
        in :attr:`unwritten` and described in the returned line ("" when everything was)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(None if timeout is None else max(0.0, timeout - 0.5))
            if self._thread.is_alive():
                self._conn.interrupt()  # a statement waiting on a lock or a slow disk
                self._thread.join(0.5)
        if self._thread.is_alive():  # stuck inside SQLite: leave it, say so
            return (
                f"{self.path}: the writer did not stop within {timeout:g} s; "
                f"{self.health.pending} kline(s) may not be written ({self.health.error})"
            )
        self._conn.close()
        with self._lock:  # dropped and not fetched again: as unwritten as the rest
            merge_ranges(self.unwritten, self.health.dropped_ranges)
        if not self.unwritten:
            return ""
        rows = sum(n for _, _, n in self.unwritten.values())
        return (
            f"{rows} kline(s) not written to {self.path} ({self.health.error or 'closing'}): "
            f"{describe_ranges(self.unwritten)}. History resumes from the newest stored candle, "
            "so the next start fetches them over REST while the venue still has them."
        )

    def __enter__(self) -> KlineStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        pending: list[tuple[Any, ...]] = []
        waiters: list[threading.Event] = []
        oldest = retry_at = 0.0
        stopping = False
        while True:
            now = time.monotonic()
            if stopping or not pending:
                timeout = 0.0 if stopping else None
            elif not self.health.ok:
                timeout = max(0.0, retry_at - now)
            else:
                timeout = max(0.0, oldest + self.flush_interval - now)
            try:
                item = (
                    self._queue.get(timeout=timeout) if timeout != 0.0 else self._queue.get_nowait()
                )
            except queue.Empty:
                item = False  # something pending is due
            if item is None:
                stopping = True
            elif isinstance(item, threading.Event):
                waiters.append(item)
            elif callable(item):
                item(self._conn)
            elif item is not False:
                if not pending:
                    oldest = time.monotonic()
                pending.extend(item)
                if len(pending) > self.max_pending and not self.health.ok:
                    pending = self._let_go(pending)
                if not stopping and len(pending) < self.batch_size and not self._queue.empty():
                    continue  # take in what is queued before writing
            now = time.monotonic()
            due = (
                stopping
                or waiters
                or len(pending) >= self.batch_size
                or (pending and now - oldest >= self.flush_interval)
            )
            if not self.health.ok and not stopping and now < retry_at:
                due = False  # failing: wait out the retry interval, still taking rows in
            if pending and due:
                pending = self._write(pending)
                if pending:  # failed: keep them and try again later
                    if stopping:
                        with self._lock:
                            add_ranges(self.unwritten, pending)
                        log.error(
                            "%s: %d kline(s) could not be written before closing (%s)",
                            self.path,
                            len(pending),
                            self.health.error,
                        )
                        break
                    retry_at = time.monotonic() + self.retry_interval
                    continue
            if not pending:
                for w in waiters:
                    w.set()
                waiters.clear()
                if stopping:
                    break
        for w in waiters:
            w.set()

    def _let_go(self, pending: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """The queue is full while writes fail: drop the oldest rows, remember their ranges."""
        excess = len(pending) - self.max_pending
        dropped, kept = pending[:excess], pending[excess:]
        with self._lock:
            add_ranges(self.health.dropped_ranges, dropped)
            self.health.dropped += len(dropped)
            self.health.pending -= len(dropped)
        if self.health.dropped == len(dropped):  # the first time: say so once, loudly
            log.error(
                "%s: more than %d klines pending (%s); dropping the oldest from the queue "
                "to fetch them again once the store writes",
                self.path,
                self.max_pending,
                self.health.error,
            )
        return kept

    def _write(self, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Commit ``rows`` in one transaction; return what is still unwritten."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany(UPSERT, rows)
            self._conn.execute("COMMIT")
        except sqlite3.IntegrityError as exc:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            return self._write_each(rows, exc)
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            first = self.health.ok
            with self._lock:
                self.health.failed(exc)
            if first or self.errors % 100 == 0:
                log.error(
                    "%s: writing %d kline(s) failed (%s); will retry",
                    self.path,
                    len(rows),
                    self.health.error,
                )
            return rows
        self._written(len(rows))
        return []

    def _written(self, n: int) -> None:
        if not self.health.ok:
            log.warning("%s: writing again after %s", self.path, self.health.error)
        with self._lock:
            self.written += n
            self.batches += 1
            self.health.pending -= n
            self.health.recovered()

    def _write_each(self, rows: list[tuple[Any, ...]], exc: sqlite3.Error) -> list[tuple[Any, ...]]:
        """A row the schema refuses will never fit: write the others, report the refused."""
        rejected = []
        for row in rows:
            try:
                self._conn.execute(UPSERT, row)
            except sqlite3.IntegrityError as err:
                rejected.append((row, err))
            except sqlite3.Error:
                return self._write(rows)  # something else went wrong: the normal retry path
        self._written(len(rows) - len(rejected))
        with self._lock:
            self.health.pending -= len(rejected)
        self.errors += 1
        self.rejected += len(rejected)
        self.last_error = f"{type(exc).__name__}: {exc}"
        for row, refusal in rejected[:3]:
            log.error("%s: kline refused by the schema (%s): %s", self.path, refusal, row[:4])
        return []

    # --- reading ---------------------------------------------------------------------------

    def last_open_times(self, exchange: str) -> dict[tuple[str, str], int]:
        """Newest stored open time per (symbol, interval): where a restart resumes."""
        return last_open_times(self._conn, exchange)
