"""Liquidations kept beside the trades (``kind=liquidations``), one part per symbol-day named
by the first and last time it holds (:mod:`marketlab.store.parts`). One row per liquidation:
``time`` (the venue's, ms), ``side`` (the liquidated position's: long/short), ``price`` (the
average fill), ``qty`` (base asset), ``order_price``, ``sampled`` (the venue's stream is a
sample) and ``event_time``.

No venue gives a liquidation an id: one is known again by its time, side, price and size, so a
liquidation written twice (a collector and the bus's history writer into one store, a restart's
overlap) is one liquidation to the reader (:func:`liquidations_query`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from marketlab.records import Liquidation
from marketlab.store.parts import DAY_MS, day_of, part_dir, sql_files, write_part

LIQUIDATION_SCHEMA = pa.schema(
    [
        ("time", pa.int64()),
        ("side", pa.dictionary(pa.int8(), pa.string())),
        ("price", pa.float64()),
        ("qty", pa.float64()),
        ("order_price", pa.float64()),
        ("sampled", pa.bool_()),
        ("event_time", pa.int64()),
    ]
)
_SIDE_NAMES = pa.array(["long", "short"])


def write_liquidations(root: Path, exchange: str, liquidations: Sequence[Liquidation]) -> int:
    """Liquidations as one part per (symbol, day), oldest first; returns files written."""
    groups: dict[tuple[str, int], list[Liquidation]] = {}
    for r in liquidations:
        groups.setdefault((r.symbol, r.time // DAY_MS), []).append(r)
    for (symbol, day), part in groups.items():
        part.sort(key=lambda r: (r.time, r.side, r.price, r.qty))
        sides = pa.array([0 if r.side == "long" else 1 for r in part], pa.int8())
        columns = [
            pa.array([r.time for r in part], pa.int64()),
            pa.DictionaryArray.from_arrays(sides, _SIDE_NAMES),
            pa.array([r.price for r in part], pa.float64()),
            pa.array([r.qty for r in part], pa.float64()),
            pa.array([r.order_price for r in part], pa.float64()),
            pa.array([r.sampled for r in part], pa.bool_()),
            pa.array([r.event_time for r in part], pa.int64()),
        ]
        write_part(
            part_dir(root, "liquidations", exchange, symbol, day_of(day * DAY_MS)),
            pa.Table.from_arrays(columns, schema=LIQUIDATION_SCHEMA),
            part[0].time,
            part[-1].time,
        )
    return len(groups)


def liquidations_query(files: list[Path], where: str) -> str:
    """DuckDB SQL over ``files``: each liquidation once (by time, side, price and size), oldest
    first, filtered by ``where`` (a ``WHERE`` clause or "")."""
    return (
        "SELECT time, side::VARCHAR AS side, price, qty, order_price, sampled, event_time "
        f"FROM read_parquet([{sql_files(files)}]) {where} "
        "QUALIFY row_number() OVER (PARTITION BY time, side, price, qty ORDER BY event_time) = 1 "
        "ORDER BY time, side, price, qty"
    )
