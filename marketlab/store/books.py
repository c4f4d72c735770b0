"""Order-book snapshots kept beside the trades: the top levels of each book at a fixed interval.

Layout: ``<root>/kind=book/exchange=<x>/symbol=<s>/date=<yyyy-mm-dd>/part-<first>-<last>-<n>.parquet``
(first and last: the update ids the part spans) with one row per snapshot: ``time`` (the venue's
time of the book's last update, ms), ``update_id``, and the levels as lists, best first:
``bid_price``, ``bid_qty``, ``ask_price``, ``ask_qty``. Written whole or not at all, like trades.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from marketlab.records import BookDelta

_LEVELS = pa.list_(pa.float64())
BOOK_SCHEMA = pa.schema([("time", pa.int64()), ("update_id", pa.int64()), ("bid_price", _LEVELS),
                         ("bid_qty", _LEVELS), ("ask_price", _LEVELS), ("ask_qty", _LEVELS)])  # fmt: skip
_DAY_MS = 86_400_000
_seq = itertools.count()


DELTA_SCHEMA = pa.schema([("time", pa.int64()), ("first_update_id", pa.int64()), ("update_id", pa.int64()),
                          ("bid_price", _LEVELS), ("bid_qty", _LEVELS), ("ask_price", _LEVELS),
                          ("ask_qty", _LEVELS)])  # fmt: skip


class BookRow(NamedTuple):
    """One stored snapshot of one symbol's book."""

    exchange: str
    symbol: str
    time: int
    update_id: int
    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]


def book_dir(root: Path, exchange: str, symbol: str, day: str) -> Path:
    return root / "kind=book" / f"exchange={exchange}" / f"symbol={symbol}" / f"date={day}"


def book_files(root: Path, exchange: str, symbol: str, first_day: str = "", last_day: str = "9999-12-31",
               kind: str = "book") -> list[Path]:  # fmt: skip
    """The parts of one symbol's snapshots (``kind="book"``) or updates (``"book_delta"``)."""
    base = root / f"kind={kind}" / f"exchange={exchange}" / f"symbol={symbol}"
    if not base.is_dir():
        return []
    return sorted(f for d in base.glob("date=*") if first_day <= d.name[5:] <= last_day
                  for f in d.glob("part-*.parquet"))  # fmt: skip


def write_books(root: Path, rows: Sequence[BookRow]) -> int:
    """Snapshots as one part per (exchange, symbol, day); returns files written."""
    groups: dict[tuple[str, str, int], list[BookRow]] = {}
    for r in rows:
        groups.setdefault((r.exchange, r.symbol, r.time // _DAY_MS), []).append(r)
    for (exchange, symbol, day), part in groups.items():
        part.sort(key=lambda r: (r.time, r.update_id))
        columns = [pa.array([r.time for r in part], pa.int64()), pa.array([r.update_id for r in part], pa.int64()),
                   *_levels(part)]  # fmt: skip
        _write_part(book_dir(root, exchange, symbol, _day_name(day)), pa.Table.from_arrays(columns, schema=BOOK_SCHEMA),
                    part[0].update_id, part[-1].update_id)  # fmt: skip
    return len(groups)


def write_deltas(root: Path, exchange: str, deltas: Sequence[BookDelta]) -> int:
    """Every diff-depth update as it came (``kind=book_delta``), one part per symbol-day."""
    groups: dict[tuple[str, int], list[BookDelta]] = {}
    for d in deltas:
        groups.setdefault((d.symbol, (d.event_time or 0) // _DAY_MS), []).append(d)
    for (symbol, day), part in groups.items():
        part.sort(key=lambda d: d.last_update_id)
        columns = [pa.array([d.event_time or 0 for d in part], pa.int64()),
                   pa.array([d.first_update_id for d in part], pa.int64()),
                   pa.array([d.last_update_id for d in part], pa.int64()), *_levels(part)]  # fmt: skip
        folder = (
            root
            / "kind=book_delta"
            / f"exchange={exchange}"
            / f"symbol={symbol}"
            / f"date={_day_name(day)}"
        )
        _write_part(folder, pa.Table.from_arrays(columns, schema=DELTA_SCHEMA), part[0].last_update_id,
                    part[-1].last_update_id)  # fmt: skip
    return len(groups)


def _levels(rows: Sequence[BookRow] | Sequence[BookDelta]) -> list[pa.Array]:
    """Bid prices, bid quantities, ask prices, ask quantities: one list per row, best first."""
    return [pa.array([[level[i] for level in getattr(r, side)] for r in rows], _LEVELS)
            for side in ("bids", "asks") for i in (0, 1)]  # fmt: skip


def _day_name(day: int) -> str:
    return str(np.datetime64(day * _DAY_MS, "ms").astype("datetime64[D]"))


def _write_part(folder: Path, table: pa.Table, first: int, last: int) -> None:
    """One part, whole or not at all, named by the update ids it spans."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"part-{first:020d}-{last:020d}-{os.getpid()}-{next(_seq)}"
    tmp = folder / f".{stem}.tmp"
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(folder / f"{stem}.parquet")
