"""The tick store's files, whatever they hold (trades, book snapshots, book updates).

``<root>/kind=<k>/exchange=<x>/symbol=<s>/date=<yyyy-mm-dd>/part-<first>-<last>-<pid>-<n>.parquet``:
Hive-partitioned, so DuckDB prunes on every key; each part is named by the first and last id it
holds (trade id or book update id), so readers know which parts can repeat a row; each is
written to a temporary name and renamed whole, so a crash never leaves half a file.
"""

from __future__ import annotations

import itertools
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

DAY_MS = 86_400_000
_seq = itertools.count()


def day_of(ms: int) -> str:
    """The UTC date of an epoch-ms time, as the ``date=`` partition names it."""
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%d")


def part_dir(root: Path, kind: str, exchange: str, symbol: str, day: str) -> Path:
    return root / f"kind={kind}" / f"exchange={exchange}" / f"symbol={symbol}" / f"date={day}"


def kind_glob(root: Path, kind: str) -> str:
    return str(root / f"kind={kind}" / "**" / "*.parquet")


def has_parts(root: Path, kind: str) -> bool:
    base = root / f"kind={kind}"
    return base.is_dir() and any(base.rglob("*.parquet"))


def part_files(
    root: Path,
    kind: str,
    exchange: str,
    symbol: str,
    first_day: str = "",
    last_day: str = "9999-12-31",
) -> list[Path]:
    """One symbol's parts of days ``first_day`` to ``last_day``, in id order (dates, then the
    zero-padded first id of each part)."""
    base = root / f"kind={kind}" / f"exchange={exchange}" / f"symbol={symbol}"
    if not base.is_dir():
        return []
    return sorted(
        f
        for d in base.glob("date=*")
        if first_day <= d.name[5:] <= last_day
        for f in d.glob("part-*.parquet")
    )


def sql_files(files: list[Path]) -> str:
    """Paths as a DuckDB list literal, for ``read_parquet([...])``."""
    return ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)


def part_stem(first: int, last: int) -> str:
    return f"part-{first:020d}-{last:020d}-{os.getpid()}-{next(_seq)}"


def write_part(
    folder: Path,
    table: pa.Table,
    first: int,
    last: int,
    *,
    column_encoding: dict[str, str] | None = None,
) -> None:
    """One part holding ids ``first`` to ``last``, whole or not at all. ``column_encoding``
    names a Parquet encoding for some columns (``DELTA_BINARY_PACKED`` for rising ids and
    times: smaller, and quicker to write than a dictionary that overflows); those columns get
    no dictionary."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = part_stem(first, last)
    tmp = folder / f".{stem}.tmp"
    options: dict[str, Any] = {}
    if column_encoding:  # pyarrow takes the columns that keep a dictionary as a list
        options["use_dictionary"] = [c for c in table.column_names if c not in column_encoding]
        options["column_encoding"] = column_encoding
    pq.write_table(table, tmp, compression="zstd", **options)
    tmp.replace(folder / f"{stem}.parquet")


def overlapping(files: list[Path]) -> bool:
    """True when two parts' id ranges meet (a row may be held twice) or a name is foreign."""
    ranges = []
    for f in files:
        pieces = f.name.split("-")
        if len(pieces) < 3 or not (pieces[1].isdigit() and pieces[2].isdigit()):
            return True
        ranges.append((int(pieces[1]), int(pieces[2])))
    ranges.sort()
    return any(b[0] <= a[1] for a, b in itertools.pairwise(ranges))
