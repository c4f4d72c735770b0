"""Tick store benchmark:
``python benchmarks/ticks.py [--trades 2000000] [--read 5000000] [--rounds 3]``.

Three measurements, each against a floor measured in the same run (medians of interleaved rounds):

  write   trades handed to the tick writer as the collector does: the column blocks its rolling
          trade buffers build anyway (512 rows each) → Parquet parts (one per symbol-day, zstd),
          against ``pyarrow.parquet.write_table`` of the same rows already in one Arrow table;
          ``write (records)``: trades as records (the path of trades fetched late, by id);
  read    one symbol-day of ``--read`` trades through ``History.trades`` (each trade once, the
          frame of ``Lab.trades``), against a bare DuckDB ``read_parquet(...).df()`` of the files;
  ingest  ``marketlab ingest`` of the ingest benchmark's Lab recording (trades, books, klines,
          tickers; made by ``benchmarks/ingest.py --clients replay``), frames per second.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from marketlab.records import Trade
from marketlab.store.history import History
from marketlab.store.ticks import block_table, ticks_root, trade_table, trades_glob, write_trades

DAY = 1_767_225_600_000  # 2026-01-01 00:00 UTC
RECORDING = Path(__file__).parent / ".cache" / "ingest-20sym-3000s-lab.mlrec"


def some_trades(n: int, symbol: str = "BTCUSDT") -> list[Trade]:
    rng = np.random.default_rng(1)
    prices = 65_000 + np.cumsum(rng.normal(0, 2, n)).round(2)
    qty = rng.exponential(0.05, n).round(5)
    times = DAY + np.sort(rng.integers(0, 86_399_999, n))
    sides = rng.integers(0, 2, n)
    return [
        Trade(symbol, i + 1, float(p), float(q), "buy" if s else "sell", int(t), int(t))
        for i, (p, q, s, t) in enumerate(zip(prices, qty, sides, times, strict=True))
    ]


def blocks_of(trades: list[Trade], size: int = 512) -> list[dict[str, np.ndarray]]:
    """The blocks a trade buffer hands the store (built for the rolling frames anyway)."""
    out = []
    for i in range(0, len(trades), size):
        part = trades[i : i + size]
        out.append(
            {
                "time": np.array([t.time for t in part], np.int64),
                "price": np.array([t.price for t in part]),
                "qty": np.array([t.qty for t in part]),
                "side": np.array([t.side == "sell" for t in part], np.int8),
                "trade_id": np.array([t.trade_id for t in part], np.int64),
            }
        )
    return out


def write_ours(root: Path, blocks: list[dict[str, np.ndarray]]) -> float:
    began = time.perf_counter()
    write_trades(root, "binance", "BTCUSDT", block_table(blocks))  # what the writer thread does
    return time.perf_counter() - began


def write_records(root: Path, trades: list[Trade]) -> float:
    began = time.perf_counter()
    write_trades(root, "binance", "BTCUSDT", trade_table(trades))
    return time.perf_counter() - began


def write_floor(path: Path, table: pa.Table) -> float:
    began = time.perf_counter()
    pq.write_table(table, path, compression="zstd")
    return time.perf_counter() - began


def read_ours(db: Path) -> tuple[float, int]:
    began = time.perf_counter()
    df = History(db=db).trades("BTCUSDT", start=DAY, end=DAY + 86_399_999)
    return time.perf_counter() - began, len(df)


def read_floor(root: Path) -> tuple[float, int]:
    import duckdb

    began = time.perf_counter()
    con = duckdb.connect()
    df = con.execute(f"SELECT * FROM read_parquet('{trades_glob(root)}')").df()
    con.close()
    return time.perf_counter() - began, len(df)


def ingest_rate(out: Path) -> tuple[float, int] | None:
    if not RECORDING.exists():
        return None
    from marketlab.cli.ingest import ingest

    done = ingest(RECORDING, out / "ingest.sqlite")
    return done["frames"] / done["seconds"], done["frames"]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--trades", type=int, default=2_000_000, help="trades per write round")
    ap.add_argument(
        "--read", type=int, default=5_000_000, help="trades in the symbol-day read back"
    )
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="marketlab-ticks-"))
    try:
        trades = some_trades(args.trades)
        table = trade_table(trades)  # the floor starts from the columns already built
        blocks = blocks_of(trades)
        writes: list[tuple[float, float, float]] = []
        write_ours(work / "warm" / "m.ticks", blocks)  # first calls (pyarrow's writer, the
        write_floor(work / "warm.parquet", table)  # codec) paid outside the rounds, by neither
        for i in range(args.rounds):
            ours = write_ours(work / f"w{i}" / "m.ticks", blocks)
            floor = write_floor(work / f"floor{i}.parquet", table)
            records = write_records(work / f"r{i}" / "m.ticks", trades)
            writes.append((ours, floor, records))
        del trades, table, blocks
        db = work / "r" / "m.sqlite"
        db.parent.mkdir()
        big = some_trades(args.read)
        write_trades(ticks_root(db), "binance", "BTCUSDT", trade_table(big))
        del big
        reads: list[tuple[float, float]] = []
        for _ in range(args.rounds):
            ours_s, n_ours = read_ours(db)
            floor_s, n_floor = read_floor(ticks_root(db))
            assert n_ours == n_floor == args.read
            reads.append((ours_s, floor_s))
        ingested = ingest_rate(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def med(values: list[float]) -> float:
        return statistics.median(values)

    print(f"\nticks: median of {args.rounds} interleaved rounds")
    print(f"{'':<8}{'ours':>14}{'floor':>14}{'x floor':>10}   floor")
    w_rate = args.trades / med([o for o, _, _ in writes])
    f_rate = args.trades / med([f for _, f, _ in writes])
    r_rate = args.trades / med([r for _, _, r in writes])
    print(
        f"{'write':<8}{w_rate:>10,.0f} r/s{f_rate:>10,.0f} "
        f"r/s{med([f / o for o, f, _ in writes]):>10.2f}"
        "   pyarrow.parquet.write_table of the same rows as Arrow"
    )
    print(
        f"{'(records)':<8}{r_rate:>10,.0f} r/s{f_rate:>10,.0f} "
        f"r/s{med([f / r for _, f, r in writes]):>10.2f}"
        "   the same floor; trades as records (fetched late, by id)"
    )
    print(
        f"{'read':<8}{med([o for o, _ in reads]):>12.3f} s{med([f for _, f in reads]):>12.3f} s"
        f"{med([f / o for o, f in reads]):>10.2f}   DuckDB read_parquet(...).df(), "
        f"{args.read:,} trades of one symbol-day"
    )
    if ingested is None:
        print("ingest  (no recording: run `python benchmarks/ingest.py --clients replay` first)")
    else:
        print(
            f"{'ingest':<8}{ingested[0]:>10,.0f} f/s{'':>14}{'':>10}   "
            f"{ingested[1]:,} frames of {RECORDING.name}"
        )


if __name__ == "__main__":
    main()
