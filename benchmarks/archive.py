"""Archive import benchmark: ``python benchmarks/archive.py [--trades 3000000] [--rounds 5]``.

One day's spot trades file as ``data.binance.vision`` publishes it (a zip holding one CSV of
``--trades`` rows: id, price, qty, quote qty, time in microseconds, buyer is maker, best match)
is imported into a fresh tick store by marketlab's archive import (read, typed, checked, each
trade id once, Parquet parts per day), against a floor measured in the same run on the same
file: ``pyarrow.csv.read_csv`` of the zip's CSV and ``pyarrow.parquet.write_table`` of what it
read (no checks, no layout), the zip inflated into memory in one call first, as the import
does for a file this size. Rounds interleave the two; the ratio is the median of per-round
ratios (floor seconds / import seconds), the rate the median import's trades per second. The
process's CPU seconds of each are printed beside (all threads: what the work costs whatever
else the machine runs), and the load average before and after, since a busy machine stretches
the wall-clock seconds of both.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import csv

from marketlab.store.archive.imports import import_ticks
from marketlab.store.archive.layout import Series
from marketlab.store.archive.reader import read_archive

JAN2 = 1_735_776_000_000  # 2025-01-02T00:00Z: a spot day in microseconds
FILE = Series("spot", "trades", "BTCUSDT").file("daily", "2025-01-02")


def make_zip(folder: Path, n: int) -> Path:
    rng = np.random.default_rng(3)
    ids = np.arange(4_000_000_000, 4_000_000_000 + n)
    prices = (95_000 + np.cumsum(rng.normal(0, 0.5, n))).round(2)
    qty = rng.exponential(0.01, n).round(5)
    times = (JAN2 + np.sort(rng.integers(0, 86_399_999, n))) * 1000 + rng.integers(0, 999, n)
    maker = np.where(rng.integers(0, 2, n) == 1, "True", "False")
    lines = [
        f"{i},{p:.8f},{q:.8f},{p * q:.8f},{t},{m},True"
        for i, p, q, t, m in zip(ids, prices, qty, times, maker, strict=True)
    ]
    path = folder / FILE.name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(FILE.name[:-4] + ".csv", "\n".join(lines) + "\n")
    return path


def cpu_seconds() -> float:
    """This process's CPU time so far, every thread's."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def floor(path: Path, out: Path) -> float:
    began = time.perf_counter()
    with zipfile.ZipFile(path) as zf:  # inflated in one call, parsed on every core
        data = pa.BufferReader(pa.py_buffer(zf.read(zf.infolist()[0])))
    table = csv.read_csv(data, csv.ReadOptions(autogenerate_column_names=True))
    pq.write_table(table, out)
    return time.perf_counter() - began


def ours(path: Path, root: Path) -> tuple[float, int]:
    began = time.perf_counter()
    rows = sum(import_ticks(root, FILE, table) for table in read_archive(path, FILE))
    return time.perf_counter() - began, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trades", type=int, default=3_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="archive-bench-"))
    try:
        path = make_zip(work, args.trades)
        mb = path.stat().st_size / 1e6
        print(f"{FILE.name}: {args.trades:,} trades, {mb:.1f} MB zipped; load average {load()}")
        ratios, import_s, floor_s, import_cpu, floor_cpu = [], [], [], [], []
        for r in range(args.rounds):
            root = work / f"ticks-{r}"
            c = cpu_seconds()
            f_s = floor(path, work / f"floor-{r}.parquet")
            floor_cpu.append(cpu_seconds() - c)
            c = cpu_seconds()
            o_s, rows = ours(path, root)
            import_cpu.append(cpu_seconds() - c)
            assert rows == args.trades, rows
            again = sum(import_ticks(root, FILE, t) for t in read_archive(path, FILE))
            assert again == 0, "a repeated import wrote rows again"
            shutil.rmtree(root)
            ratios.append(f_s / o_s)
            import_s.append(o_s)
            floor_s.append(f_s)
            print(
                f"  round {r + 1}: import {o_s:.3f} s ({import_cpu[-1]:.2f} CPU s), floor "
                f"{f_s:.3f} s ({floor_cpu[-1]:.2f} CPU s), ratio {f_s / o_s:.2f}"
            )
        med = statistics.median(import_s)
        print(
            f"import {args.trades / med / 1e6:.2f} M trades/s (median {med:.3f} s); floor "
            f"{statistics.median(floor_s):.3f} s; ratio {statistics.median(ratios):.2f}x of the "
            "floor (goal >= 1.5 M trades/s and >= 0.7x)"
        )
        print(
            f"CPU seconds (medians): import {statistics.median(import_cpu):.2f}, floor "
            f"{statistics.median(floor_cpu):.2f}; load average after {load()}"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
