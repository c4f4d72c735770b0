"""Every trade kept: Hive-partitioned, zstd-compressed Parquet beside the kline database
(book snapshots and updates too: their layout is in :mod:`marketlab.store.book_parts`).

Layout: ``<root>/kind=trades/exchange=<x>/symbol=<s>/date=<yyyy-mm-dd>/`` holds
``part-<first>-<last>-<n>.parquet`` files with columns ``time`` (epoch ms), ``trade_id``,
``price``, ``qty``, ``side``. Trades reach the writer from the collector thread (as the column
blocks of its trade buffers, or as records when fetched late) and are written in batches on a
thread of its own, a part per (symbol, day) at a time, each written to a temporary name and
renamed whole: a crash (even ``kill -9``) loses at most the batch in flight, never leaves half a
file. A trade written twice (a replay, a backfill of something already kept) is one trade to
every reader — the queries keep one row per id — and :func:`compact` merges a day's parts into
one file without repeats.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from marketlab.records import BookDelta, Liquidation, Trade
from marketlab.store.book_parts import BookRow, write_books, write_deltas
from marketlab.store.liquidation_parts import write_liquidations
from marketlab.store.parts import (
    DAY_MS,
    day_of,
    has_parts,
    kind_glob,
    part_dir,
    part_stem,
    sql_files,
    write_part,
)
from marketlab.store.sqlite import StoreError
from marketlab.store.trade_parts import ascending

log = logging.getLogger("marketlab.store")

_TRADE_FIELDS: list[tuple[str, pa.DataType]] = [
    ("time", pa.int64()),
    ("trade_id", pa.int64()),
    ("price", pa.float64()),
    ("qty", pa.float64()),
    ("side", pa.dictionary(pa.int8(), pa.string())),
]
TRADE_SCHEMA = pa.schema(_TRADE_FIELDS)
_SIDE_NAMES = pa.array(["buy", "sell"])
_COMPACT_PARTS = 16  # a past day with more parts than this is merged into one


def ticks_root(db: str | os.PathLike[str]) -> Path:
    """Where a kline database's ticks live: ``data/marketlab.sqlite`` → ``data/marketlab.ticks``."""
    p = Path(db)
    return p.with_name(p.stem + ".ticks")


def trades_glob(root: Path) -> str:
    return kind_glob(root, "trades")


def has_trades(root: Path) -> bool:
    return has_parts(root, "trades")


def trade_table(trades: Sequence[Trade]) -> pa.Table:
    """Trade records as the store's columns (one pass per column, no row tuples)."""
    n = len(trades)
    sides = np.fromiter((t.side == "sell" for t in trades), np.int8, n)
    return pa.Table.from_arrays(
        [
            pa.array(np.fromiter((t.time for t in trades), np.int64, n)),
            pa.array(np.fromiter((t.trade_id for t in trades), np.int64, n)),
            pa.array(np.fromiter((t.price for t in trades), np.float64, n)),
            pa.array(np.fromiter((t.qty for t in trades), np.float64, n)),
            pa.DictionaryArray.from_arrays(pa.array(sides, pa.int8()), _SIDE_NAMES),
        ],
        schema=TRADE_SCHEMA,
    )


def block_table(blocks: Sequence[dict[str, np.ndarray]]) -> pa.Table:
    """Column blocks of a trade buffer (time, price, qty, side as 0 buy / 1 sell, trade_id) as
    the store's table, without a Python object per trade."""
    cols = {name: np.concatenate([b[name] for b in blocks]) for name in blocks[0]}
    return pa.Table.from_arrays(
        [
            pa.array(cols["time"]),
            pa.array(cols["trade_id"]),
            pa.array(cols["price"]),
            pa.array(cols["qty"]),
            pa.DictionaryArray.from_arrays(
                pa.array(cols["side"].astype(np.int8), pa.int8()), _SIDE_NAMES
            ),
        ],
        schema=TRADE_SCHEMA,
    )


def write_trades(root: Path, exchange: str, symbol: str, table: pa.Table) -> int:
    """One symbol's trades (:func:`trade_table`) as one part per day; returns files written."""
    ids = table.column("trade_id").to_numpy()
    if not ascending(ids):
        table = table.take(pa.array(np.argsort(ids, kind="stable"), pa.int64()))
    times = table.column("time").to_numpy()
    if times.min() // DAY_MS == times.max() // DAY_MS:
        bounds = [0, len(times)]  # one day: no day of every trade worked out
    else:
        days = times // DAY_MS
        bounds = [0, *(np.flatnonzero(np.diff(days)) + 1).tolist(), len(days)]
    for a, b in itertools.pairwise(bounds):
        part = table.slice(a, b - a)
        first, last = part.column("trade_id")[0].as_py(), part.column("trade_id")[-1].as_py()
        day = int(times[a]) // DAY_MS
        folder = part_dir(root, "trades", exchange, symbol, day_of(day * DAY_MS))
        write_part(folder, part, first, last)
    return len(bounds) - 1


def compact(root: Path, min_parts: int = 2, today: str | None = None) -> int:
    """Merge each day's parts (days before ``today``, with at least ``min_parts`` parts) into one
    file holding each trade once; returns the days merged. Safe to interrupt: the merged file
    is complete before the parts it replaces are removed, and readers skip repeats meanwhile."""
    base = root / "kind=trades"
    if not base.is_dir():
        return 0
    today = today or day_of(int(time.time() * 1000))
    merged = 0
    for folder in sorted(base.glob("exchange=*/symbol=*/date=*")):
        parts = sorted(folder.glob("part-*.parquet"))
        if len(parts) < min_parts or folder.name >= f"date={today}":
            continue
        query = (
            f"SELECT time, trade_id, price, qty, side FROM read_parquet([{sql_files(parts)}]) "
            "QUALIFY row_number() OVER (PARTITION BY trade_id) = 1 ORDER BY trade_id"
        )
        con = duckdb.connect()
        try:
            first, last = con.execute(
                f"SELECT min(trade_id), max(trade_id) FROM ({query})"
            ).fetchall()[0]  # an aggregate: one row
            name = part_stem(first, last)
            tmp = folder / f".{name}.tmp"
            target = str(tmp).replace("'", "''")
            con.execute(f"COPY ({query}) TO '{target}' (FORMAT parquet, COMPRESSION zstd)")
        finally:
            con.close()
        tmp.replace(folder / f"{name}.parquet")
        for p in parts:
            p.unlink()
        merged += 1
    return merged


def last_trade_ids(root: Path, exchange: str) -> dict[str, int]:
    """The newest trade id kept per symbol (where a restarted collector resumes from)."""
    if not has_trades(root):
        return {}
    glob = trades_glob(root).replace("'", "''")
    con = duckdb.connect()
    try:
        rows = con.execute(
            f"SELECT symbol, max(trade_id) FROM read_parquet('{glob}', hive_partitioning = true) "
            "WHERE exchange = ? GROUP BY symbol",
            [exchange],
        ).fetchall()
    finally:
        con.close()
    return {str(s): int(i) for s, i in rows}


class TickWriter:
    """Trades and books in, Parquet out, on a thread of its own (the collector only appends
    to queues)."""

    def __init__(self, root: str | os.PathLike[str], exchange: str, *, flush_interval: float = 1.0):
        self.root = Path(root)
        self.exchange = exchange
        self.flush_interval = flush_interval
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise StoreError(
                f"cannot write ticks under {self.root}: {exc.strerror or exc}"
            ) from None
        self._pending: deque[Trade] = deque()  # appended by the collector, drained here
        self._books: deque[BookRow] = deque()
        self._blocks: deque[tuple[str, dict[str, np.ndarray]]] = deque()
        self._deltas: deque[BookDelta] = deque()
        self._liquidations: deque[Liquidation] = deque()
        self.liquidations_written = 0
        self.deltas_written = 0
        self.books_written = 0
        self._wake = threading.Event()
        self._flushes = 0
        self._flushed = threading.Condition()
        self._stopping = False
        self.written = 0  # trades written
        self.files = 0
        self.errors = 0
        self.last_error = ""
        self._thread = threading.Thread(target=self._run, name="marketlab-ticks", daemon=True)
        self._thread.start()

    def add_block(self, symbol: str, block: dict[str, np.ndarray]) -> None:
        """A block of a trade buffer's columns (the collector builds them for its frames)."""
        self._blocks.append((symbol, block))

    def add_many(self, trades: Iterable[Trade]) -> None:
        """Trades as records (those fetched late, by id): written at once."""
        self._pending.extend(trades)
        self._wake.set()

    def add_delta(self, delta: BookDelta, source: str = "") -> None:
        """A diff-depth update, kept as it came (``store=(..., "book_deltas")``)."""
        self._deltas.append(delta)

    def add_liquidation(self, liquidation: Liquidation) -> None:
        """A perpetual's liquidation (``store=(..., "liquidations")``)."""
        self._liquidations.append(liquidation)

    def add_book(self, row: BookRow) -> None:
        """A book snapshot (from the collector's sampler): written within ``flush_interval``."""
        self._books.append(row)

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            self._flush()
            with self._flushed:
                self._flushes += 1
                self._flushed.notify_all()
        self._flush()

    def sync(self, timeout: float = 30.0) -> bool:
        """Wait until everything handed over so far is written (False: not within ``timeout``)."""
        with self._flushed:
            target = self._flushes + 2  # the flush under way may have missed the latest
            self._wake.set()
            return self._flushed.wait_for(
                lambda: self._flushes >= target or not self._thread.is_alive(), timeout
            )

    def _flush(self) -> None:
        liquidations = self._liquidations
        if liquidations:
            liquidation_rows = [liquidations.popleft() for _ in range(len(liquidations))]
            try:
                self.files += write_liquidations(self.root, self.exchange, liquidation_rows)
                self.liquidations_written += len(liquidation_rows)
            except OSError as exc:
                self.errors += 1
                self.last_error = f"liquidations: {exc.strerror or exc}"
                log.error(
                    "ticks: could not write %d liquidation(s): %s", len(liquidation_rows), exc
                )
        deltas = self._deltas
        if deltas:
            delta_rows = [deltas.popleft() for _ in range(len(deltas))]
            try:
                self.files += write_deltas(self.root, self.exchange, delta_rows)
                self.deltas_written += len(delta_rows)
            except OSError as exc:
                self.errors += 1
                self.last_error = f"book deltas: {exc.strerror or exc}"
                log.error("ticks: could not write %d book update(s): %s", len(delta_rows), exc)
        books = self._books
        if books:
            rows = [books.popleft() for _ in range(len(books))]
            try:
                self.files += write_books(self.root, rows)
                self.books_written += len(rows)
            except OSError as exc:
                self.errors += 1
                self.last_error = f"books: {exc.strerror or exc}"
                log.error("ticks: could not write %d book snapshot(s): %s", len(rows), exc)
        tables: dict[str, list[pa.Table]] = {}
        blocks = self._blocks
        by_block: dict[str, list[dict[str, np.ndarray]]] = {}
        for symbol, block in [blocks.popleft() for _ in range(len(blocks))]:
            by_block.setdefault(symbol, []).append(block)
        for symbol, symbol_blocks in by_block.items():
            tables.setdefault(symbol, []).append(block_table(symbol_blocks))
        pending = self._pending
        by_symbol: dict[str, list[Trade]] = {}
        for t in [pending.popleft() for _ in range(len(pending))]:
            by_symbol.setdefault(t.symbol, []).append(t)
        for symbol, trades in by_symbol.items():
            tables.setdefault(symbol, []).append(trade_table(trades))
        for symbol, parts in tables.items():
            table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
            try:
                self.files += write_trades(self.root, self.exchange, symbol, table)
                self.written += table.num_rows
            except OSError as exc:  # a full or vanished disk: say so, keep collecting
                self.errors += 1
                self.last_error = f"{symbol}: {exc.strerror or exc}"
                log.error(
                    "ticks: could not write %d trade(s) of %s: %s", table.num_rows, symbol, exc
                )

    def close(self, timeout: float = 30.0) -> None:
        """Write what is pending, merge past days' parts, stop the thread."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        try:
            compact(self.root, min_parts=_COMPACT_PARTS)
        except (OSError, duckdb.Error) as exc:
            log.warning("ticks: compaction skipped: %s", exc)
