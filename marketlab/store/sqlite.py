"""Closed klines in SQLite: batched, idempotent, crash-safe, written off the event loop.

One table keyed by (exchange, symbol, interval, open_time): a re-delivered or backfilled
candle replaces itself, never duplicates. Writes go through one writer thread in one
transaction per batch (flushed on size or age), in WAL mode, so a ``kill -9`` leaves a valid
file missing at most the batch in flight, which the next start backfills over REST.
"""

from __future__ import annotations

import logging
import operator
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from marketlab.records import KLINE_VALUES, Kline

_kline_values = operator.attrgetter(*KLINE_VALUES)

log = logging.getLogger("marketlab.store")

SCHEMA_VERSION = 4

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
    # Venues whose candles carry no quote volume (Coinbase) store NULL there too.
    3: (
        """CREATE TABLE klines_v3 (
            exchange TEXT NOT NULL,
            symbol TEXT NOT NULL,
            interval TEXT NOT NULL,
            open_time INTEGER NOT NULL,
            open REAL NOT NULL,
            high REAL NOT NULL,
            low REAL NOT NULL,
            close REAL NOT NULL,
            volume REAL NOT NULL,
            quote_volume REAL,
            trades INTEGER NOT NULL,
            taker_buy_volume REAL,
            taker_buy_quote_volume REAL,
            close_time INTEGER NOT NULL,
            ingested_at INTEGER NOT NULL,
            PRIMARY KEY (exchange, symbol, interval, open_time)
        ) WITHOUT ROWID""",
        "INSERT INTO klines_v3 SELECT * FROM klines",
        "DROP TABLE klines",
        "ALTER TABLE klines_v3 RENAME TO klines",
        "CREATE INDEX klines_ingested ON klines (ingested_at)",
    ),
    # Perpetuals: each funding settled and each open interest reading, once (NULL: not given).
    4: (
        """CREATE TABLE funding (
            exchange TEXT NOT NULL,
            symbol TEXT NOT NULL,
            funding_time INTEGER NOT NULL,
            rate REAL NOT NULL,
            mark REAL,
            ingested_at INTEGER NOT NULL,
            PRIMARY KEY (exchange, symbol, funding_time)
        ) WITHOUT ROWID""",
        """CREATE TABLE open_interest (
            exchange TEXT NOT NULL,
            symbol TEXT NOT NULL,
            time INTEGER NOT NULL,
            open_interest REAL NOT NULL,
            value REAL,
            ingested_at INTEGER NOT NULL,
            PRIMARY KEY (exchange, symbol, time)
        ) WITHOUT ROWID""",
    ),
}

TABLE_COLUMNS = ("exchange", "symbol", "interval", *KLINE_VALUES, "ingested_at")
"""The klines table's columns, in the order :func:`kline_row` gives them."""

UPSERT = f"""INSERT INTO klines ({", ".join(TABLE_COLUMNS)})
VALUES ({", ".join("?" * len(TABLE_COLUMNS))})
ON CONFLICT (exchange, symbol, interval, open_time) DO UPDATE SET
  open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
  volume = excluded.volume, quote_volume = excluded.quote_volume, trades = excluded.trades,
  taker_buy_volume = excluded.taker_buy_volume,
  taker_buy_quote_volume = excluded.taker_buy_quote_volume,
  close_time = excluded.close_time, ingested_at = excluded.ingested_at
WHERE (open, high, low, close, volume, quote_volume, trades, taker_buy_volume,
       taker_buy_quote_volume)
  IS NOT (excluded.open, excluded.high, excluded.low, excluded.close, excluded.volume,
          excluded.quote_volume, excluded.trades, excluded.taker_buy_volume,
          excluded.taker_buy_quote_volume)"""


class StoreError(Exception):
    """The store cannot be used as asked; the message says which file and why."""


def kline_row(exchange: str, k: Kline, ingested_at: int) -> tuple[Any, ...]:
    """A closed kline as a row of the klines table (:data:`TABLE_COLUMNS`)."""
    return (exchange, k.symbol, k.interval, *_kline_values(k), ingested_at)


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


def last_open_times(conn: sqlite3.Connection, exchange: str) -> dict[tuple[str, str], int]:
    rows = conn.execute(
        "SELECT symbol, interval, max(open_time) FROM klines WHERE exchange = ? GROUP BY symbol, "
        "interval",
        (exchange,),
    ).fetchall()
    return {(s, iv): int(t) for s, iv, t in rows}
