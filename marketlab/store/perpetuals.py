"""Perpetuals' history beside the klines: every funding settled and every open interest reading,
in the kline database's ``funding`` and ``open_interest`` tables (schema version 4).

A funding is keyed (exchange, symbol, funding_time) and an open interest reading (exchange,
symbol, time): one taken twice (live and again from the venue's REST history, or from a
collector and from the bus) is one row, the newer copy's values kept. Rows are written by a
thread of its own in one transaction per batch, like the klines; while writes fail they wait
(up to a bound, the oldest let go of first and counted) and are tried again.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from marketlab.records import Funding, OpenInterest
from marketlab.rings import utc_index
from marketlab.store.sqlite import StoreError, connect
from marketlab.store.times import time_clauses

if TYPE_CHECKING:  # frames are built as history is read: a collector never loads pandas
    import pandas as pd

log = logging.getLogger("marketlab.store")

FUNDING_UPSERT = """INSERT INTO funding (exchange, symbol, funding_time, rate, mark, ingested_at)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (exchange, symbol, funding_time) DO UPDATE SET
  rate = excluded.rate, mark = coalesce(excluded.mark, funding.mark),
  ingested_at = excluded.ingested_at
WHERE (rate, mark) IS NOT (excluded.rate, coalesce(excluded.mark, funding.mark))"""

OPEN_INTEREST_UPSERT = """INSERT INTO open_interest
  (exchange, symbol, time, open_interest, value, ingested_at)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (exchange, symbol, time) DO UPDATE SET
  open_interest = excluded.open_interest,
  value = coalesce(excluded.value, open_interest.value), ingested_at = excluded.ingested_at
WHERE (open_interest, value)
  IS NOT (excluded.open_interest, coalesce(excluded.value, open_interest.value))"""


def _known(value: float) -> float | None:
    """NaN (the venue does not say) as NULL."""
    return None if math.isnan(value) else value


def funding_row(exchange: str, f: Funding, ingested_at: int) -> tuple[Any, ...]:
    return (exchange, f.symbol, f.funding_time, f.rate, _known(f.mark), ingested_at)


def open_interest_row(exchange: str, o: OpenInterest, ingested_at: int) -> tuple[Any, ...]:
    return (exchange, o.symbol, o.time, o.open_interest, _known(o.value), ingested_at)


class PerpetualStore:
    """A writer thread keeping fundings and open interest readings in the kline database.

    ``add`` never blocks; ``flush`` waits for what was added before it; ``close`` writes what
    is pending (within ``timeout``) and stops. At most ``max_pending`` rows wait while writes
    fail; beyond that the oldest are let go of (counted in :attr:`dropped`)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        flush_interval: float = 1.0,
        retry_interval: float = 2.0,
        busy_timeout: float = 0.5,
        max_pending: int = 100_000,
    ):
        self.path = Path(path)
        self.flush_interval = flush_interval
        self.retry_interval = retry_interval
        self.max_pending = max_pending
        self._conn = connect(self.path, busy_timeout=busy_timeout)
        self._queue: queue.Queue[Any] = queue.Queue()  # (statement, row), events, None
        self.written = self.dropped = self.errors = 0
        self.last_error = ""
        self._thread = threading.Thread(target=self._run, name="marketlab-perpetuals", daemon=True)
        self._thread.start()

    def add(self, exchange: str, records: Iterable[Funding | OpenInterest]) -> None:
        """Fundings and open interest readings of ``exchange`` (other records are not ours)."""
        now = int(time.time() * 1000)
        for r in records:
            if type(r) is Funding:
                self._queue.put((FUNDING_UPSERT, funding_row(exchange, r, now)))
            elif type(r) is OpenInterest:
                self._queue.put((OPEN_INTEREST_UPSERT, open_interest_row(exchange, r, now)))

    def last_times(self, exchange: str) -> tuple[dict[str, int], dict[str, int]]:
        """Where the stored fundings and open interest end, per symbol (a reader's own
        connection: the writer's is its thread's)."""
        conn = connect(self.path, readonly=True)
        try:
            return last_funding_times(conn, exchange), last_open_interest_times(conn, exchange)
        finally:
            conn.close()

    def flush(self, timeout: float | None = 60.0) -> None:
        """Block until everything added before this call is written (:class:`StoreError` when
        it is not within ``timeout``)."""
        done = threading.Event()
        self._queue.put(done)
        if not done.wait(timeout):
            raise StoreError(
                f"{self.path}: pending fundings/open interest not written after {timeout} s "
                f"({self.last_error})"
            )

    def close(self, timeout: float | None = 10.0) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)
        if self._thread.is_alive():
            self._conn.interrupt()
            self._thread.join(0.5)
        if not self._thread.is_alive():
            self._conn.close()

    def _run(self) -> None:
        pending: list[tuple[str, tuple[Any, ...]]] = []
        waiters: list[threading.Event] = []
        stopping = False
        retry_at = 0.0
        while True:
            try:
                item = self._queue.get(timeout=0.0 if stopping else self.flush_interval)
                while True:  # take in everything queued, then write once
                    if item is None:
                        stopping = True
                    elif isinstance(item, threading.Event):
                        waiters.append(item)
                    else:
                        pending.append(item)
                    item = self._queue.get_nowait()
            except queue.Empty:
                pass
            if len(pending) > self.max_pending:
                excess = len(pending) - self.max_pending
                del pending[:excess]
                self.dropped += excess
            if pending and (stopping or waiters or time.monotonic() >= retry_at):
                if self._write(pending):
                    pending = []
                else:
                    retry_at = time.monotonic() + self.retry_interval
                    if stopping:
                        log.error(
                            "%s: %d funding/open interest row(s) not written before closing (%s)",
                            self.path,
                            len(pending),
                            self.last_error,
                        )
                        pending = []
            if not pending:
                for w in waiters:
                    w.set()
                waiters.clear()
            if stopping:
                break
        for w in waiters:
            w.set()

    def _write(self, pending: list[tuple[str, tuple[Any, ...]]]) -> bool:
        by_statement: dict[str, list[tuple[Any, ...]]] = {}
        for statement, row in pending:
            by_statement.setdefault(statement, []).append(row)
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            for statement, rows in by_statement.items():
                self._conn.executemany(statement, rows)
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            if self.errors == 1 or self.errors % 100 == 0:
                log.error("%s: writing perpetuals' rows failed (%s); will retry", self.path, exc)
            return False
        self.written += len(pending)
        return True


# --- reading -----------------------------------------------------------------------------------


def last_funding_times(conn: sqlite3.Connection, exchange: str) -> dict[str, int]:
    """The newest stored funding time per symbol (where a restart's backfill resumes)."""
    rows = conn.execute(
        "SELECT symbol, max(funding_time) FROM funding WHERE exchange = ? GROUP BY symbol",
        (exchange,),
    ).fetchall()
    return {str(s): int(t) for s, t in rows}


def last_open_interest_times(conn: sqlite3.Connection, exchange: str) -> dict[str, int]:
    """The newest stored open interest time per symbol."""
    rows = conn.execute(
        "SELECT symbol, max(time) FROM open_interest WHERE exchange = ? GROUP BY symbol",
        (exchange,),
    ).fetchall()
    return {str(s): int(t) for s, t in rows}


def _select(
    conn: sqlite3.Connection,
    table: str,
    columns: tuple[str, ...],
    time_column: str,
    exchange: str,
    symbol: str,
    start: int | None,
    end: int | None,
) -> list[tuple[Any, ...]]:
    times, bounds = time_clauses(time_column, start, end)
    where = " AND ".join(["exchange = ?", "symbol = ?", *times])
    return conn.execute(
        f"SELECT {time_column}, {', '.join(columns)} FROM {table} WHERE {where} "
        f"ORDER BY {time_column}",
        (exchange, symbol, *bounds),
    ).fetchall()


def funding_frame(
    conn: sqlite3.Connection, exchange: str, symbol: str, start: int | None, end: int | None
) -> pd.DataFrame:
    """Fundings settled in [start, end], oldest first: index ``funding_time`` (UTC), columns
    ``rate`` (a fraction of the position's value per interval: positive, longs paid shorts)
    and ``mark`` (NaN where the venue does not say)."""
    rows = _select(conn, "funding", ("rate", "mark"), "funding_time", exchange, symbol, start, end)
    return _frame(rows, "funding_time", ("rate", "mark"))


def open_interest_frame(
    conn: sqlite3.Connection, exchange: str, symbol: str, start: int | None, end: int | None
) -> pd.DataFrame:
    """Open interest readings in [start, end], oldest first: index ``time`` (UTC), columns
    ``open_interest`` (base asset) and ``value`` (quote asset, NaN where not given)."""
    columns = ("open_interest", "value")
    rows = _select(conn, "open_interest", columns, "time", exchange, symbol, start, end)
    return _frame(rows, "time", columns)


def _frame(rows: list[tuple[Any, ...]], index: str, columns: tuple[str, ...]) -> pd.DataFrame:
    import pandas as pd

    times = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    data = {
        name: np.array([np.nan if r[i] is None else r[i] for r in rows], dtype=np.float64)
        for i, name in enumerate(columns, start=1)
    }
    return pd.DataFrame(data, index=utc_index(times, index))
