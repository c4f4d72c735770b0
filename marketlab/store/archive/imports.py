"""Archive rows into the stores, each once: klines into the SQLite kline store (the same rows,
keyed the same way, as a REST backfill), trades and aggregate trades into the Parquet tick
store's layout (``kind=trades`` as the live collector writes it, ``kind=agg_trades`` beside
it). A row already kept (a monthly file over days imported from daily ones, a run repeated)
is not written again, and :class:`Manifest` remembers which files were imported whole so a
second run fetches none of them.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from marketlab.records import KLINE_VALUES
from marketlab.store.archive.layout import ArchiveFile, Series
from marketlab.store.parts import DAY_MS, day_of, part_dir, part_files, write_part
from marketlab.store.sqlite import UPSERT, connect
from marketlab.store.ticks import TRADE_SCHEMA
from marketlab.store.trade_parts import ascending

# the tick store's kind folder of a perpetual's single trades: its ``kind=trades`` holds its
# aggregated trades, as the Lab collects them (Binance's futures trade stream is aggTrade)
SINGLE_TRADES = "single_trades"


def tick_kind(series: Series) -> tuple[str, str]:
    """Where a tick series is kept: (the tick store's kind folder, the id column). Spot trades
    go to ``kind=trades`` and spot aggTrades to ``kind=agg_trades`` (with their first and last
    trade ids); a perpetual's aggTrades go to ``kind=trades``, an aggregate id as the trade id,
    exactly as the Lab keeps the trades it collects of a perpetual, so the archive and the
    collector meet; its single trades (another id sequence) to ``kind=single_trades``."""
    perpetual = series.market == "um"
    if series.kind == "aggTrades":
        return ("trades", "trade_id") if perpetual else ("agg_trades", "agg_id")
    return (SINGLE_TRADES, "trade_id") if perpetual else ("trades", "trade_id")


def as_stored(series: Series, table: pa.Table) -> pa.Table:
    """A file's rows with the columns their kind folder keeps: a perpetual's aggTrades as the
    tick store's trades (:data:`~marketlab.store.ticks.TRADE_SCHEMA`, the aggregate id as the
    trade id); everything else as read."""
    if series.market != "um" or series.kind != "aggTrades":
        return table
    return pa.Table.from_arrays(
        [table.column(n) for n in ("time", "agg_id", "price", "qty", "side")],
        schema=TRADE_SCHEMA,
    )


def import_klines(db: Path, file: ArchiveFile, table: pa.Table) -> int:
    """Upsert a file's candles into the kline store in one transaction; returns the rows."""
    s = file.series
    now = int(time.time() * 1000)
    n = table.num_rows
    cols = [table.column(c).to_pylist() for c in KLINE_VALUES]  # the table's order
    rows = zip(
        itertools.repeat(s.exchange, n),
        itertools.repeat(s.store_symbol, n),
        itertools.repeat(s.interval, n),
        *cols,
        itertools.repeat(now, n),
        strict=False,
    )
    conn = connect(db)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(UPSERT, rows)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()
    return n


def import_ticks(root: Path, file: ArchiveFile, table: pa.Table) -> int:
    """Write a file's trades (or aggregate trades) not yet in the tick store, a part per day;
    returns the rows written. A day at a time: what is already kept is read for one day only,
    so a month over days imported before needs a day's memory."""
    s = file.series
    kind, id_col = tick_kind(s)
    table = as_stored(s, table)
    days = table.column("time").to_numpy() // DAY_MS
    if len(days) and days.min() == days.max():
        bounds = [0, len(days)]  # one day (the common case: a daily file)
    else:
        order = np.argsort(days, kind="stable")
        if not ascending(order):
            table, days = table.take(pa.array(order, pa.int64())), days[order]
        bounds = [0, *(np.flatnonzero(np.diff(days)) + 1).tolist(), len(days)]
    written = 0
    for a, b in itertools.pairwise(bounds):
        day = unseen(root, kind, s.exchange, s.store_symbol, table.slice(a, b - a), id_col)
        if day.num_rows:
            write_id_parts(root, kind, s.exchange, s.store_symbol, day, id_col)
            written += day.num_rows
    return written


def unseen(
    root: Path, kind: str, exchange: str, symbol: str, table: pa.Table, id_col: str
) -> pa.Table:
    """``table``'s rows in id order, each id once, without those the store keeps already
    (only the parts of the same days whose id ranges meet the table's are read)."""
    if table.num_rows == 0:
        return table
    ids = table.column(id_col).to_numpy()
    if not ascending(ids):
        order = np.argsort(ids, kind="stable")
        table = table.take(pa.array(order, pa.int64()))
        ids = ids[order]
        first = np.ones(len(ids), dtype=bool)
        first[1:] = ids[1:] != ids[:-1]
        if not first.all():
            table, ids = table.filter(pa.array(first)), ids[first]
    times = table.column("time").to_numpy()
    lo, hi = int(ids[0]), int(ids[-1])
    near = [
        f
        for f in part_files(
            root, kind, exchange, symbol, day_of(int(times.min())), day_of(int(times.max()))
        )
        if _meets(f, lo, hi)
    ]
    if not near:
        return table
    stored = pq.read_table([str(f) for f in near], columns=[id_col]).column(id_col).to_numpy()
    keep = ~np.isin(ids, stored)
    return table if keep.all() else table.filter(pa.array(keep))


def _meets(part: Path, lo: int, hi: int) -> bool:
    pieces = part.name.split("-")
    try:
        first, last = int(pieces[1]), int(pieces[2])
    except (IndexError, ValueError):
        return True  # a part named otherwise: read it to be sure
    return first <= hi and last >= lo


def write_id_parts(
    root: Path, kind: str, exchange: str, symbol: str, table: pa.Table, id_col: str
) -> int:
    """Rows in id order as one part per UTC day (the tick store's layout); returns parts."""
    times = table.column("time").to_numpy()
    days = times // DAY_MS
    bounds = [0, *(np.flatnonzero(np.diff(days)) + 1).tolist(), len(days)]
    # ids and times rise: delta-packed, they are smaller and quicker to write than dictionaries
    delta = {c: "DELTA_BINARY_PACKED" for c in ("time", id_col, "first_id", "last_id")}
    delta = {c: e for c, e in delta.items() if c in table.column_names}
    for a, b in itertools.pairwise(bounds):
        part = table.slice(a, b - a)
        ids = part.column(id_col)
        folder = part_dir(root, kind, exchange, symbol, day_of(int(times[a])))
        write_part(folder, part, ids[0].as_py(), ids[-1].as_py(), column_encoding=delta)
    return len(bounds) - 1


def stored_as(series: Series) -> str:
    """The stores' exchange and symbol of a series, as the manifest records them."""
    return f"{series.exchange}/{series.store_symbol}"


def _first_stored_as(series: Series) -> str:
    """Where an entry that does not say was kept: USDⓈ-M files once went under exchange
    ``binance_perp`` and their archive symbol, so such an entry is imported again."""
    return f"binance_perp/{series.symbol}" if series.market == "um" else stored_as(series)


class Manifest:
    """What was imported from the archive (by key, with its checksum and rows), the one-sided
    days whose sides could be set only in part, and what the last audit found, in a JSON file
    beside the kline database, replaced whole on each save."""

    def __init__(self, path: Path):
        self.path = path
        data: dict[str, Any] = {}
        if path.exists():
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError, RecursionError):
                data = {}  # unreadable: import again (the stores keep each row once anyway)
        self.imported: dict[str, dict[str, Any]] = dict(data.get("imported", {}))
        self.report: list[dict[str, Any]] = list(data.get("report", []))
        # a one-sided day repaired in part (its sides mixed since, so no audit finds it again):
        # "<exchange>/<symbol>/<kind>/<day>" → its audit entry, tried again on each run
        self.sides: dict[str, dict[str, Any]] = dict(data.get("sides", {}))

    @staticmethod
    def beside(db: str | os.PathLike[str]) -> Path:
        p = Path(db)
        return p.with_name(p.stem + ".archive.json")

    def done(self, file: ArchiveFile, sha256: str | None = None) -> bool:
        """Whether ``file`` was imported whole, into where the stores keep it now."""
        entry = self.imported.get(file.key)
        if entry is None or (sha256 is not None and entry.get("sha256") != sha256):
            return False
        return entry.get("stored_as", _first_stored_as(file.series)) == stored_as(file.series)

    def add(self, file: ArchiveFile, sha256: str, rows: int) -> None:
        self.imported[file.key] = {
            "sha256": sha256,
            "rows": rows,
            "stored_as": stored_as(file.series),
        }
        self.save()

    def save(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {"imported": self.imported, "sides": self.sides, "report": self.report}
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(self.path)
