"""Holes in what the archive gave: candles missing (open times skipped), trade and aggregate
trade ids skipped, a day much shorter than the days around it, a day of trades whose sides
are all one way (:mod:`.sides`). Read from the stores, after import; each hole says which
archive file should have held it. No network."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from marketlab.records import Interval
from marketlab.store.archive.imports import tick_kind
from marketlab.store.archive.layout import DAY_MS, ArchiveFile, Series
from marketlab.store.archive.sides import is_one_sided, one_sided_what
from marketlab.store.parts import day_of, part_files
from marketlab.store.sqlite import connect
from marketlab.store.trade_parts import sell_flags

SHORT_DAY = 0.5  # a day with fewer rows than this share of its neighbours' median is short
_NEIGHBOURS = 3  # days either side a day is compared with
_MIN_ROWS = 20  # neighbours this quiet say nothing about a day's length


@dataclass
class Hole:
    """Something missing from the archive's data (or a file of it), and whether REST filled it."""

    file: str  # the archive file that should have held it
    kind: str  # klines:1m, trades, aggTrades
    symbol: str
    what: str  # candles missing, trade ids skipped, short day, refused: …, not in the archive, …
    start: int | None = None  # epoch ms of the first missing open time (or the time around it)
    end: int | None = None
    first_id: int | None = None  # for id holes: the first and last id missing
    last_id: int | None = None
    missing: int | None = None  # rows missing, where known
    filled: bool = False  # fetched over REST, or (one-sided) every side set right
    repaired: int | None = None  # one-sided days: trades given their aggregate trade's side
    uncovered: int | None = None  # … and trades no aggregate trade covered (sides unknown)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def kind_label(series: Series) -> str:
    return f"klines:{series.interval}" if series.interval else series.kind


def file_for(series: Series, ms: int, files: list[ArchiveFile]) -> str:
    """The planned file covering ``ms``, else the daily file that would have."""
    for f in files:
        if f.start_ms <= ms < f.end_ms:
            return f.name
    return series.file("daily", day_of(ms)).name


def kline_holes(
    db: Path, series: Series, start: int, end: int, files: list[ArchiveFile]
) -> list[Hole]:
    """Open times in [first stored, end) with no candle (a symbol's history starts at its
    first candle: nothing before it is a hole)."""
    if not db.exists():
        return []
    conn = connect(db, readonly=True)
    try:
        rows = conn.execute(
            "SELECT open_time FROM klines WHERE exchange = ? AND symbol = ? AND interval = ? "
            "AND open_time >= ? AND open_time < ? ORDER BY open_time",
            (series.exchange, series.store_symbol, series.interval, start, end),
        ).fetchall()
    finally:
        conn.close()
    if not rows:
        return []
    have = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    iv = Interval(series.interval)
    last = iv.open_of(end - 1)
    if iv.calendar or iv == "1w":
        expected, t = [], int(have[0])
        while t <= last:
            expected.append(t)
            t = iv.next_open(t)
        want = np.array(expected, dtype=np.int64)
    else:
        want = np.arange(int(have[0]), last + 1, iv.ms, dtype=np.int64)
    gone = np.setdiff1d(want, have, assume_unique=True)
    holes = []
    for run in _runs(gone, want):
        a, b = int(run[0]), int(run[-1])
        holes.append(
            Hole(
                file_for(series, a, files),
                kind_label(series),
                series.store_symbol,
                "candles missing",
                a,
                b,
                missing=len(run),
            )
        )
    return holes


def _runs(gone: np.ndarray, want: np.ndarray) -> list[np.ndarray]:
    """``gone`` split where it is not consecutive within ``want``."""
    if not len(gone):
        return []
    pos = np.searchsorted(want, gone)
    return np.split(gone, np.flatnonzero(np.diff(pos) > 1) + 1)


def tick_holes(
    root: Path, series: Series, start: int, end: int, files: list[ArchiveFile]
) -> list[Hole]:
    """Ids skipped between the stored rows of [start, end), days much shorter than the days
    around them, and (single trades) days whose trades all have one side; read a day at a
    time, so years of trades need a day's memory."""
    kind, id_col = tick_kind(series)
    parts = part_files(
        root, kind, series.exchange, series.store_symbol, day_of(start), day_of(end - 1)
    )
    by_day: dict[str, list[Path]] = {}
    for p in parts:
        by_day.setdefault(p.parent.name.removeprefix("date="), []).append(p)
    holes: list[Hole] = []
    label = "trade ids skipped" if series.kind == "trades" else "agg trade ids skipped"
    seen_days: list[int] = []
    seen_counts: list[int] = []
    last: tuple[int, int] | None = None  # the previous day's last id and its time
    sides = series.kind == "trades"
    for day in sorted(by_day):
        columns = ["time", id_col, "side"] if sides else ["time", id_col]
        table = pq.read_table([str(p) for p in by_day[day]], columns=columns)
        ids = table.column(id_col).to_numpy()
        times = table.column("time").to_numpy()
        order = np.argsort(ids, kind="stable")
        ids, times = ids[order], times[order]
        keep = np.ones(len(ids), dtype=bool)
        keep[1:] = ids[1:] != ids[:-1]
        ids, times = ids[keep], times[keep]
        if not len(ids):
            continue
        if sides:
            sells = int(sell_flags(table.column("side")).take(order)[keep].sum())
            if is_one_sided(len(ids), sells):
                at = int(times[0]) - int(times[0]) % DAY_MS
                holes.append(
                    Hole(
                        file_for(series, at, files),
                        kind_label(series),
                        series.store_symbol,
                        one_sided_what(len(ids), sells),
                        at,
                        at + DAY_MS - 1,
                        int(ids[0]),
                        int(ids[-1]),
                    )
                )
        if last is not None:
            ids = np.concatenate([[last[0]], ids])
            times = np.concatenate([[last[1]], times])
        for i in np.flatnonzero(np.diff(ids) > 1).tolist():
            a, b = int(ids[i]) + 1, int(ids[i + 1]) - 1
            holes.append(
                Hole(
                    file_for(series, int(times[i]), files),
                    kind_label(series),
                    series.store_symbol,
                    label,
                    int(times[i]),
                    int(times[i + 1]),
                    a,
                    b,
                    b - a + 1,
                )
            )
        last = (int(ids[-1]), int(times[-1]))
        seen_days.append(int(times[-1]) // DAY_MS)
        seen_counts.append(int(keep.sum()))
    if not seen_days:
        return holes
    return holes + _short_days(series, files, np.array(seen_days), np.array(seen_counts))


def _short_days(
    series: Series, files: list[ArchiveFile], seen: np.ndarray, seen_counts: np.ndarray
) -> list[Hole]:
    """Days with fewer than :data:`SHORT_DAY` of their neighbours' median rows."""
    holes = []
    days = np.arange(int(seen[0]), int(seen[-1]) + 1)  # a day with no row at all counts too
    counts = np.zeros(len(days), dtype=np.int64)
    counts[seen - seen[0]] = seen_counts
    for j, (day, count) in enumerate(zip(days.tolist(), counts.tolist(), strict=True)):
        around = np.concatenate(
            [counts[max(0, j - _NEIGHBOURS) : j], counts[j + 1 : j + 1 + _NEIGHBOURS]]
        )
        if len(around) and np.median(around) >= _MIN_ROWS and count < SHORT_DAY * np.median(around):
            holes.append(
                Hole(
                    file_for(series, day * DAY_MS, files),
                    kind_label(series),
                    series.store_symbol,
                    f"short day: {count} rows against a median of {int(np.median(around))}",
                    day * DAY_MS,
                    (day + 1) * DAY_MS - 1,
                )
            )
    return holes
