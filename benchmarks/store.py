"""History store benchmark: ``python benchmarks/store.py [--rows N] [--symbols N] [--days N]``.

Prints, from one run on this machine:
  1. kline rows/s written through KlineStore versus a bare executemany into the same schema;
  2. Parquet export rows/s versus DuckDB's own COPY ... TO of the same rows;
  3. the time of History.klines() for one symbol's year of 1m candles out of 10 symbols
     (about 5 million rows), and of a GROUP BY over all of them.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from marketlab.records import Kline
from marketlab.store.history import History
from marketlab.store.parquet import PARTITIONS, export, read_sqlite
from marketlab.store.sqlite import MIGRATIONS, kline_row
from marketlab.store.writer import KlineStore

T0 = 1_735_689_600_000  # 2025-01-01


def synthetic(n: int, symbol: str = "BTCUSDT", seed: int = 1) -> list[Kline]:
    rng = np.random.default_rng(seed)
    close = 65_000 + np.cumsum(rng.normal(0, 20, n)).round(2)
    vol = np.abs(rng.normal(5, 2, n)).round(5)
    return [
        Kline(
            symbol,
            "1m",
            T0 + i * 60_000,
            float(close[i - 1] if i else close[0]),
            float(close[i] + 5),
            float(close[i] - 5),
            float(close[i]),
            float(vol[i]),
            T0 + i * 60_000 + 59_999,
            float(vol[i] * close[i]),
            10,
            float(vol[i] / 2),
            float(vol[i] * close[i] / 2),
            True,
        )
        for i in range(n)
    ]


def bench_writes(rows: int, tmp: Path) -> tuple[float, float]:
    klines = synthetic(rows)
    floor_db = tmp / "floor.sqlite"
    conn = sqlite3.connect(floor_db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    for statement in MIGRATIONS[1]:
        conn.execute(statement)
    placeholders = ", ".join("?" * 15)
    began = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany(
        f"INSERT INTO klines VALUES ({placeholders})", [kline_row("binance", k, 0) for k in klines]
    )
    conn.execute("COMMIT")
    floor = rows / (time.perf_counter() - began)
    conn.close()

    began = time.perf_counter()
    with KlineStore(tmp / "store.sqlite", batch_size=5000) as store:
        store.add_many("binance", klines)
        store.flush(600)
    ours = rows / (time.perf_counter() - began)
    return ours, floor


def bench_export(tmp: Path) -> tuple[float, float, int]:
    db = tmp / "store.sqlite"
    began = time.perf_counter()
    result = export(db, tmp / "pq-ours", progress=False)
    ours = result.rows / (time.perf_counter() - began)

    began = time.perf_counter()
    conn = sqlite3.connect(db)
    table = read_sqlite(conn)
    conn.close()
    con = duckdb.connect()
    con.register("t", table)
    con.execute(
        "COPY (SELECT *, year(epoch_ms(open_time)) AS year, "
        "month(epoch_ms(open_time)) AS month FROM t) "
        f"TO '{tmp / 'pq-floor'}' "
        f"(FORMAT parquet, COMPRESSION zstd, PARTITION_BY ({', '.join(PARTITIONS)}))"
    ).fetchall()
    floor = len(table) / (time.perf_counter() - began)
    return ours, floor, result.rows


def bench_query(symbols: int, days: int, tmp: Path) -> tuple[int, float, float, int]:
    """Write ``symbols`` x ``days`` of 1m candles straight to Parquet, then query them."""
    n = days * 1440
    out = tmp / "pq-year"
    con = duckdb.connect()
    rng = np.random.default_rng(3)
    for s in range(symbols):
        close = 100 + np.cumsum(rng.normal(0, 0.1, n))
        opens = T0 + np.arange(n, dtype=np.int64) * 60_000
        vol = np.abs(rng.normal(5, 2, n))
        table = pa.table(
            {
                "exchange": ["binance"] * n,
                "symbol": [f"SYM{s}USDT"] * n,
                "interval": ["1m"] * n,
                "open_time": opens,
                "open": close,
                "high": close + 0.05,
                "low": close - 0.05,
                "close": close,
                "volume": vol,
                "quote_volume": vol * close,
                "trades": np.full(n, 10, dtype=np.int64),
                "taker_buy_volume": vol / 2,
                "taker_buy_quote_volume": vol * close / 2,
                "close_time": opens + 59_999,
            }
        )
        con.register("t", table)
        con.execute(
            "COPY (SELECT *, year(epoch_ms(open_time)) AS year, "
            "month(epoch_ms(open_time)) AS month FROM t) "
            f"TO '{out}' "
            f"(FORMAT parquet, COMPRESSION zstd, PARTITION_BY ({', '.join(PARTITIONS)}), "
            "FILENAME_PATTERN 'part-{uuid}', APPEND)"
        ).fetchall()
        con.unregister("t")
    history = History(parquet=out)
    began = time.perf_counter()
    df = history.klines("SYM3USDT", "1m", start=T0, end=T0 + n * 60_000)
    one = time.perf_counter() - began
    began = time.perf_counter()
    history.sql("select symbol, count(*), avg(close) from klines group by symbol")
    everything = time.perf_counter() - began
    return len(df), one, everything, symbols * n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=int, default=200_000, help="klines for the write/export benchmarks"
    )
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ours, floor = bench_writes(args.rows, tmp)
        print(f"{'benchmark':<44}{'marketlab':>14}{'floor':>14}{'ratio':>8}")
        print(
            f"{'SQLite writes, rows/s (' + format(args.rows, ',') + ' klines)':<44}"
            f"{ours:>14,.0f}{floor:>14,.0f}"
            f"{ours / floor:>8.2f}   floor: bare executemany, one transaction"
        )
        ours, floor, exported = bench_export(tmp)
        print(
            f"{'Parquet export, rows/s':<44}{ours:>14,.0f}{floor:>14,.0f}{ours / floor:>8.2f}"
            f"   floor: DuckDB COPY TO of the same {exported:,} rows"
        )
        got, one, everything, total = bench_query(args.symbols, args.days, tmp)
        print(
            f"History.klines(): {got:,} rows of one symbol out of {total:,} in {one:.3f} s; "
            f"GROUP BY over all {total:,} rows in {everything:.3f} s"
        )


if __name__ == "__main__":
    main()
