"""Stored trades read straight from their parts with pyarrow, where no trade can be held twice
(parts whose id ranges are apart): a third of the time DuckDB takes to read and convert the
same rows (measured on a symbol-day of 5M trades: 0.21-0.26 s against 0.65-1.2 s)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

# a trade's columns as the queries hand them on: ``sell`` is 1 when the taker sold
TRADE_COLUMNS = {
    "time": np.int64,
    "trade_id": np.int64,
    "price": np.float64,
    "qty": np.float64,
    "sell": np.int8,
}


def read_apart(
    files: list[Path], start: int | None, end: int | None
) -> dict[str, np.ndarray] | None:
    """The trades of ``files`` (parts apart, in id order) with time in [start, end], in id
    order; None when a part is not as the store writes it (the caller asks DuckDB)."""
    table = pq.read_table(
        [str(f) for f in files], columns=["time", "trade_id", "price", "qty", "side"]
    )
    if any(table.column(n).null_count for n in table.column_names):
        return None
    cols = {
        n: table.column(n).to_numpy().astype(TRADE_COLUMNS[n], copy=False)
        for n in ("time", "trade_id", "price", "qty")
    }
    cols["sell"] = sell_flags(table.column("side"))
    if not ascending(cols["trade_id"]):
        return None  # not in id order after all
    if start is not None or end is not None:
        times, bound = cols["time"], np.iinfo(np.int64)
        keep = (times >= (bound.min if start is None else start)) & (
            times <= (bound.max if end is None else end)
        )
        if not keep.all():
            cols = {n: c[keep] for n, c in cols.items()}
    return cols


def ascending(ids: np.ndarray) -> bool:
    """Whether ``ids`` rise strictly (no temporary array of int64s made to tell)."""
    return len(ids) < 2 or bool((ids[1:] > ids[:-1]).all())


def sell_flags(side: pa.ChunkedArray) -> np.ndarray:
    """1 where the taker sold: a dictionary's few words looked up once, not per row."""
    parts = []
    for chunk in side.chunks:
        if isinstance(chunk, pa.DictionaryArray):  # a dictionary-typed chunk
            words = chunk.dictionary.to_pylist()
            table = np.array([w == "sell" for w in words], dtype=np.int8)
            parts.append(table[chunk.indices.to_numpy(zero_copy_only=False)])
        else:
            parts.append(
                pc.equal(chunk, pa.scalar("sell")).to_numpy(zero_copy_only=False).astype(np.int8)
            )
    return np.concatenate(parts) if parts else np.zeros(0, np.int8)
