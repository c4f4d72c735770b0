"""Export closed klines from SQLite to Hive-partitioned, zstd-compressed Parquet.

Layout: ``<out>/exchange=<x>/symbol=<s>/interval=<iv>/year=<yyyy>/month=<m>/part-<uuid>.parquet``
— month files keep 1m candles at about 44,000 rows a file, and DuckDB prunes by any of the keys.
Exports are incremental: each run writes new files holding only candles the directory does not
have yet (a candle backfilled into SQLite after an export is exported by the next run), and
never rewrites or duplicates what is there.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Never

import duckdb
import pyarrow as pa

from marketlab.store.sqlite import StoreError, connect

if TYPE_CHECKING:
    from tqdm import tqdm

PARTITIONS = ("exchange", "symbol", "interval", "year", "month")
_FIELDS: list[tuple[str, pa.DataType]] = [
    ("exchange", pa.string()),
    ("symbol", pa.string()),
    ("interval", pa.string()),
    ("open_time", pa.int64()),
    ("open", pa.float64()),
    ("high", pa.float64()),
    ("low", pa.float64()),
    ("close", pa.float64()),
    ("volume", pa.float64()),
    ("quote_volume", pa.float64()),
    ("trades", pa.int64()),
    ("taker_buy_volume", pa.float64()),
    ("taker_buy_quote_volume", pa.float64()),
    ("close_time", pa.int64()),
]
_SCHEMA = pa.schema(_FIELDS)


@dataclass(frozen=True, slots=True)
class ExportResult:
    rows: int  # candles written by this run
    series: int  # (exchange, symbol, interval) series touched
    files: int  # Parquet files in the directory afterwards


def parquet_glob(root: str | os.PathLike[str]) -> str:
    return str(Path(root) / "**" / "*.parquet")


def has_parquet(root: str | os.PathLike[str]) -> bool:
    return Path(root).is_dir() and any(Path(root).rglob("*.parquet"))


def read_sqlite(conn: sqlite3.Connection, where: str = "", params: tuple = ()) -> pa.Table:
    """Klines from SQLite as an Arrow table (fetched in chunks, not row objects)."""
    cursor = conn.execute(f"SELECT {', '.join(_SCHEMA.names)} FROM klines {where}", params)
    batches = []
    while rows := cursor.fetchmany(200_000):
        columns = list(zip(*rows, strict=True))
        batches.append(
            pa.record_batch(
                [pa.array(c, type=f.type) for c, f in zip(columns, _SCHEMA, strict=True)],
                schema=_SCHEMA,
            )
        )
    return pa.Table.from_batches(batches, schema=_SCHEMA)


def export(
    db: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    progress: bool | None = None,
    on_series: Callable[[str], None] | None = None,
) -> ExportResult:
    """Write what ``out`` lacks of ``db``'s klines; safe to re-run at any time."""
    out_path = Path(out)
    if out_path.exists() and not out_path.is_dir():
        raise StoreError(f"{out_path} exists and is not a directory")
    out_path.mkdir(parents=True, exist_ok=True)
    if not os.access(out_path, os.W_OK):
        raise StoreError(f"cannot export to {out_path}: directory is not writable")
    conn = connect(db, readonly=True)
    try:
        series = conn.execute(
            "SELECT DISTINCT exchange, symbol, interval FROM klines ORDER BY 1, 2, 3"
        ).fetchall()
        con = duckdb.connect()
        existing = has_parquet(out_path)
        show = sys.stderr.isatty() if progress is None else progress
        bar = _progress(len(series), show)
        written = 0
        for exchange, symbol, interval in series:
            table = read_sqlite(
                conn,
                "WHERE exchange = ? AND symbol = ? AND interval = ?",
                (exchange, symbol, interval),
            )
            con.register("fresh", table)
            new = "SELECT * FROM fresh"
            if existing:
                partition = (
                    out_path / f"exchange={exchange}" / f"symbol={symbol}" / f"interval={interval}"
                )
                if has_parquet(partition):
                    new += (
                        " ANTI JOIN (SELECT open_time FROM "
                        f"read_parquet('{parquet_glob(partition)}')) old"
                        " USING (open_time)"
                    )
            count = con.execute(f"SELECT count(*) FROM ({new})").fetchall()[0][0]
            if count:
                con.execute(
                    f"""COPY (SELECT *, year(epoch_ms(open_time)) AS year,
                                     month(epoch_ms(open_time)) AS month FROM ({new}))
                        TO '{_sql_path(out_path)}' (FORMAT parquet, COMPRESSION zstd,
                        PARTITION_BY ({", ".join(PARTITIONS)}),
                        FILENAME_PATTERN 'part-{{uuid}}', APPEND)"""
                )
                written += count
            con.unregister("fresh")
            if on_series:
                on_series(f"{exchange} {symbol} {interval}: {count} new")
            bar.update(1)
        bar.close()
        files = sum(1 for _ in out_path.rglob("*.parquet"))
        return ExportResult(written, len(series), files)
    finally:
        conn.close()


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


def _progress(total: int, show: bool) -> tqdm[Never]:
    from tqdm import tqdm

    return tqdm(total=total, unit="series", desc="export", disable=not show)
