"""Order books kept beside the trades: the top levels at a fixed interval (``kind=book``) and,
when asked, every diff-depth update (``kind=book_delta``), in parts named by the update ids they
span (:mod:`marketlab.store.parts`). One row per snapshot or update: ``time`` (the venue's time,
ms), its update id(s), and the levels as lists, best first: ``bid_price``, ``bid_qty``,
``ask_price``, ``ask_qty``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa

from marketlab.records import BookDelta
from marketlab.store.parts import DAY_MS, day_of, part_dir, write_part

_LEVELS = pa.list_(pa.float64())
BOOK_SCHEMA = pa.schema(
    [
        ("time", pa.int64()),
        ("update_id", pa.int64()),
        ("bid_price", _LEVELS),
        ("bid_qty", _LEVELS),
        ("ask_price", _LEVELS),
        ("ask_qty", _LEVELS),
    ]
)
DELTA_SCHEMA = pa.schema(
    [
        ("time", pa.int64()),
        ("first_update_id", pa.int64()),
        ("update_id", pa.int64()),
        ("bid_price", _LEVELS),
        ("bid_qty", _LEVELS),
        ("ask_price", _LEVELS),
        ("ask_qty", _LEVELS),
    ]
)


class BookRow(NamedTuple):
    """One stored snapshot of one symbol's book."""

    exchange: str
    symbol: str
    time: int
    update_id: int
    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]


def write_books(root: Path, rows: Sequence[BookRow]) -> int:
    """Snapshots as one part per (exchange, symbol, day); returns files written."""
    groups: dict[tuple[str, str, int], list[BookRow]] = {}
    for r in rows:
        groups.setdefault((r.exchange, r.symbol, r.time // DAY_MS), []).append(r)
    for (exchange, symbol, day), part in groups.items():
        part.sort(key=lambda r: (r.time, r.update_id))
        columns = [
            pa.array([r.time for r in part], pa.int64()),
            pa.array([r.update_id for r in part], pa.int64()),
            *_levels(part),
        ]
        write_part(
            part_dir(root, "book", exchange, symbol, day_of(day * DAY_MS)),
            pa.Table.from_arrays(columns, schema=BOOK_SCHEMA),
            part[0].update_id,
            part[-1].update_id,
        )
    return len(groups)


def write_deltas(root: Path, exchange: str, deltas: Sequence[BookDelta]) -> int:
    """Every diff-depth update as it came (``kind=book_delta``), one part per symbol-day."""
    groups: dict[tuple[str, int], list[BookDelta]] = {}
    for d in deltas:
        groups.setdefault((d.symbol, (d.event_time or 0) // DAY_MS), []).append(d)
    for (symbol, day), part in groups.items():
        part.sort(key=lambda d: d.last_update_id)
        columns = [
            pa.array([d.event_time or 0 for d in part], pa.int64()),
            pa.array([d.first_update_id for d in part], pa.int64()),
            pa.array([d.last_update_id for d in part], pa.int64()),
            *_levels(part),
        ]
        write_part(
            part_dir(root, "book_delta", exchange, symbol, day_of(day * DAY_MS)),
            pa.Table.from_arrays(columns, schema=DELTA_SCHEMA),
            part[0].last_update_id,
            part[-1].last_update_id,
        )
    return len(groups)


def _levels(rows: Sequence[BookRow] | Sequence[BookDelta]) -> list[pa.Array]:
    """Bid prices, bid quantities, ask prices, ask quantities: one list per row, best first."""
    return [
        pa.array([[level[i] for level in getattr(r, side)] for r in rows], _LEVELS)
        for side in ("bids", "asks")
        for i in (0, 1)
    ]
