"""Closed klines in SQLite: batched, idempotent, crash-safe, written off the event loop.

One table keyed by (exchange, symbol, interval, open_time): a re-delivered or backfilled
candle replaces itself, never duplicates. Writes go through one writer thread in one
transaction per batch (flushed on size or age), in WAL mode, so a ``kill -9`` leaves a valid
file missing at most the batch in flight, which the next start backfills over REST.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from marketlab.records import Kline

log = logging.getLogger("marketlab.store")

SCHEMA_VERSION = 2

# Each entry upgrades the schema from the version before it; never edit a released one.
MIGRATIONS: dict[int, Sequence[str]] = {
    1: (
        """CREATE TABLE klines (
            exchange TEXT NOT NULL,
            symbol TEXT NOT NULL,
            interval TEXT NOT NULL,
            open_time INTEGER NOT NULL,
            open REAL NOT NULL,
            high REAL NOT NULL,
            low REAL NOT NULL,
            close REAL NOT NULL,
            volume REAL NOT NULL,
            quote_volume REAL NOT NULL,
            trades INTEGER NOT NULL,
            taker_buy_volume REAL NOT NULL,
            taker_buy_quote_volume REAL NOT NULL,
            close_time INTEGER NOT NULL,
            ingested_at INTEGER NOT NULL,
            PRIMARY KEY (exchange, symbol, interval, open_time)
        ) WITHOUT ROWID""",
        "CREATE INDEX klines_ingested ON klines (ingested_at)",
    ),
    # Venues that do not publish taker-buy volumes (OKX) store NULL, not a made-up number.
    2: (
        """CREATE TABLE klines_v2 (
            exchange TEXT NOT NULL,
            symbol TEXT NOT NULL,
            interval TEXT NOT NULL,
            open_time INTEGER NOT NULL,
            open REAL NOT NULL,
            high REAL NOT NULL,
            low REAL NOT NULL,
            close REAL NOT NULL,
            volume REAL NOT NULL,
            quote_volume REAL NOT NULL,
            trades INTEGER NOT NULL,
            taker_buy_volume REAL,
            taker_buy_quote_volume REAL,
            close_time INTEGER NOT NULL,
            ingested_at INTEGER NOT NULL,
            PRIMARY KEY (exchange, symbol, interval, open_time)
        ) WITHOUT ROWID""",
        "INSERT INTO klines_v2 SELECT * FROM klines",
        "DROP TABLE klines",
        "ALTER TABLE klines_v2 RENAME TO klines",
        "CREATE INDEX klines_ingested ON klines (ingested_at)",
    ),
}

KLINE_COLUMNS = ("exchange", "symbol", "interval", "open_time", "open", "high", "low", "close", "volume",
                 "quote_volume", "trades", "taker_buy_volume", "taker_buy_quote_volume", "close_time",
                 "ingested_at")  # fmt: skip

UPSERT = f"""INSERT INTO klines ({", ".join(KLINE_COLUMNS)}) VALUES ({", ".join("?" * len(KLINE_COLUMNS))})
ON CONFLICT (exchange, symbol, interval, open_time) DO UPDATE SET
  open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
  volume = excluded.volume, quote_volume = excluded.quote_volume, trades = excluded.trades,
  taker_buy_volume = excluded.taker_buy_volume, taker_buy_quote_volume = excluded.taker_buy_quote_volume,
  close_time = excluded.close_time, ingested_at = excluded.ingested_at
WHERE (open, high, low, close, volume, quote_volume, trades, taker_buy_volume, taker_buy_quote_volume)
  IS NOT (excluded.open, excluded.high, excluded.low, excluded.close, excluded.volume,
          excluded.quote_volume, excluded.trades, excluded.taker_buy_volume,
          excluded.taker_buy_quote_volume)"""


class StoreError(Exception):
    """The store cannot be used as asked; the message says which file and why."""


def kline_row(exchange: str, k: Kline, ingested_at: int) -> tuple[Any, ...]:
    return (exchange, k.symbol, k.interval, k.open_time, k.open, k.high, k.low, k.close, k.volume,
            k.quote_volume, k.trades, k.taker_buy_volume, k.taker_buy_quote_volume, k.close_time,
            ingested_at)  # fmt: skip


def connect(
    path: str | os.PathLike[str], *, readonly: bool = False, busy_timeout: float = 30.0
) -> sqlite3.Connection:
    """Open (and create or migrate) a marketlab SQLite file, with clear errors."""
    p = Path(path)
    if p.is_dir():
        raise StoreError(f"{p} is a directory, not a SQLite file")
    # Never open the file outside SQLite: closing any descriptor of it drops every POSIX lock
    # this process holds on it, and another process could then checkpoint under our writer.
    if p.exists():
        _check_sqlite(p)
    elif readonly:
        raise StoreError(f"{p} does not exist")
    else:
        parent = p.parent if str(p.parent) else Path(".")
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {p}: {exc.strerror or exc}") from None
        if not os.access(parent, os.W_OK):
            raise StoreError(f"cannot create {p}: directory {parent} is not writable")
    uri = f"file:{p}?mode=ro" if readonly else f"file:{p}"
    try:
        conn = sqlite3.connect(
            uri, uri=True, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        if not readonly:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            migrate(conn, p)
        else:
            version = _version(conn)
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{p} has schema version {version}; this marketlab reads up to {SCHEMA_VERSION}"
                )
    except sqlite3.OperationalError as exc:
        what = "cannot create" if not p.exists() else "cannot open"
        raise StoreError(f"{what} {p}: {exc}") from None
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{p}: {exc}") from None
    return conn


def _check_sqlite(p: Path) -> None:
    probe = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
    try:
        probe.execute("PRAGMA schema_version").fetchone()
    except sqlite3.DatabaseError:
        raise StoreError(f"{p} is not a SQLite file") from None
    finally:
        probe.close()


def _version(conn: sqlite3.Connection) -> int:
    try:
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    except sqlite3.OperationalError:  # no table yet: a new file
        return 0
    return int(row[0] or 0)


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the schema to :data:`SCHEMA_VERSION`, one migration per transaction."""
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    version = _version(conn)
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} has schema version {version}; this marketlab knows up to {SCHEMA_VERSION}"
        )
    for target in range(version + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[target]:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (target,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        log.info("%s: schema migrated to version %d", path, target)


class KlineStore:
    """A writer thread batching closed klines into SQLite.

    ``add`` never blocks (it queues); ``flush`` waits for everything queued so far;
    ``close`` flushes and stops. A failing write (a full disk, a locked file) is logged and
    retried: no candle handed to the store is dropped while the process lives.
    """

    def __init__(self, path: str | os.PathLike[str], *, batch_size: int = 500, flush_interval: float = 1.0,
                 retry_interval: float = 2.0, busy_timeout: float = 30.0):  # fmt: skip
        if batch_size < 1 or flush_interval <= 0:
            raise ValueError("batch_size must be >= 1 and flush_interval > 0")
        self.path = Path(path)
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.retry_interval = retry_interval
        self._conn = connect(self.path, busy_timeout=busy_timeout)
        self._queue: queue.Queue[list[tuple[Any, ...]] | threading.Event | None] = queue.Queue()
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
            self._queue.put(rows)

    def flush(self, timeout: float | None = 60.0) -> None:
        """Block until everything added before this call is committed."""
        done = threading.Event()
        self._queue.put(done)
        if not done.wait(timeout):
            raise StoreError(
                f"{self.path}: pending klines not written after {timeout} s ({self.last_error})"
            )

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._conn.close()

    def __enter__(self) -> KlineStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        pending: list[tuple[Any, ...]] = []
        waiters: list[threading.Event] = []
        oldest = 0.0
        stopping = False
        while True:
            timeout = max(0.0, oldest + self.flush_interval - time.monotonic()) if pending else None
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = False  # the oldest pending row is due
            if item is None:
                stopping = True
            elif isinstance(item, threading.Event):
                waiters.append(item)
            elif item is not False:
                if not pending:
                    oldest = time.monotonic()
                pending.extend(item)
            due = (
                stopping
                or waiters
                or len(pending) >= self.batch_size
                or (pending and time.monotonic() - oldest >= self.flush_interval)
            )
            if pending and due:
                pending = self._write(pending)
                if pending:  # failed: keep them and try again later
                    if stopping:
                        log.error(
                            "%s: %d kline(s) could not be written before closing",
                            self.path,
                            len(pending),
                        )
                        break
                    time.sleep(self.retry_interval)
                    continue
            if not pending:
                for w in waiters:
                    w.set()
                waiters.clear()
                if stopping:
                    break
        for w in waiters:
            w.set()

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
            log.error(
                "%s: writing %d kline(s) failed (%s); will retry",
                self.path,
                len(rows),
                self.last_error,
            )
            return rows
        self.written += len(rows)
        self.batches += 1
        return []

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
            else:
                self.written += 1
        self.errors += 1
        self.rejected += len(rejected)
        self.last_error = f"{type(exc).__name__}: {exc}"
        for row, err in rejected[:3]:
            log.error("%s: kline refused by the schema (%s): %s", self.path, err, row[:4])
        return []

    # --- reading ---------------------------------------------------------------------------

    def last_open_times(self, exchange: str) -> dict[tuple[str, str], int]:
        """Newest stored open time per (symbol, interval): where a restart resumes."""
        return last_open_times(self._conn, exchange)


def last_open_times(conn: sqlite3.Connection, exchange: str) -> dict[tuple[str, str], int]:
    rows = conn.execute(
        "SELECT symbol, interval, max(open_time) FROM klines WHERE exchange = ? GROUP BY symbol, interval",
        (exchange,),
    ).fetchall()
    return {(s, iv): int(t) for s, iv, t in rows}
