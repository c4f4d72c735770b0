"""What a store says about itself while it cannot write: since when, why in plain words, what
waits, and which rows it had to let go of (so they can be fetched again)."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# (exchange, symbol, interval) → (first open time, last open time, rows)
Ranges = dict[tuple[str, str, str], tuple[int, int, int]]


def error_kind(exc: BaseException, path: str | None = None) -> str:
    """A store failure in the words a user acts on."""
    text = str(exc).lower()
    if "full" in text or (path is not None and "i/o" in text and _no_room(path)):
        return "disk full"
    if "locked" in text or "busy" in text:
        return "locked by another process"
    if "readonly" in text or "read-only" in text:
        return "read-only"
    if "unable to open" in text or "permission" in text or "access" in text:
        return "permission denied"
    if "interrupt" in text:
        return "interrupted while closing"
    return "write error"


def _no_room(path: str) -> bool:
    """An I/O error where the file can grow no further: the disk (almost) full, or the file at
    the process's size limit (SQLite says "disk I/O error" for both)."""
    folder = os.path.dirname(os.path.abspath(path))
    with contextlib.suppress(OSError):
        if shutil.disk_usage(folder).free < 1 << 20:
            return True
    try:
        import resource  # not on Windows
    except ImportError:
        return False
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft == resource.RLIM_INFINITY:
        return False
    return any(
        os.path.getsize(f) + 65_536 > soft for f in (path, path + "-wal") if os.path.exists(f)
    )


def add_ranges(ranges: Ranges, rows: Iterable[tuple[Any, ...]]) -> None:
    """Fold kline rows ``(exchange, symbol, interval, open_time, ...)`` into ``ranges``."""
    for row in rows:
        key = (row[0], row[1], row[2])
        t = row[3]
        first, last, n = ranges.get(key, (t, t, 0))
        ranges[key] = (min(first, t), max(last, t), n + 1)


def merge_ranges(into: Ranges, ranges: Ranges) -> None:
    """Fold ``ranges`` into ``into``: spans widen, row counts add up."""
    for key, (first, last, n) in ranges.items():
        a, b, m = into.get(key, (first, last, 0))
        into[key] = (min(a, first), max(b, last), m + n)


def describe_ranges(ranges: Ranges) -> str:
    """``binance BTCUSDT 1m 2026-01-01 00:05-00:09 UTC (5)``, one series after another."""
    parts = []
    for (exchange, symbol, interval), (first, last, n) in sorted(ranges.items()):
        a = datetime.fromtimestamp(first / 1000, UTC)
        b = datetime.fromtimestamp(last / 1000, UTC)
        span = f"{a:%Y-%m-%d %H:%M}" + (
            ""
            if first == last
            else f"-{b:%H:%M}"
            if a.date() == b.date()
            else f" to {b:%Y-%m-%d %H:%M}"
        )
        parts.append(f"{exchange} {symbol} {interval} {span} UTC ({n})")
    return "; ".join(parts)


@dataclass
class StoreHealth:
    """Updated by the writer thread; read from any thread (a snapshot via :meth:`as_dict`)."""

    path: str
    failing_since: float | None = None  # wall time of the first failure in a row
    error: str = ""  # the last failure, e.g. "disk full: database or disk is full"
    pending: int = 0  # rows handed to the store and not yet written
    dropped: int = 0  # rows let go of because the pending queue was full
    dropped_ranges: Ranges = field(default_factory=dict)  # not yet fetched again

    def failed(self, exc: BaseException) -> None:
        if self.failing_since is None:
            self.failing_since = time.time()
        self.error = f"{error_kind(exc, self.path)}: {exc}"

    def recovered(self) -> None:
        self.failing_since = None

    @property
    def ok(self) -> bool:
        return self.failing_since is None

    def as_dict(self) -> dict[str, Any]:
        awaiting = sum(n for _, _, n in self.dropped_ranges.values())
        return {
            "state": "ok" if self.ok else "failing",
            "failing_since": (
                datetime.fromtimestamp(self.failing_since, UTC).isoformat(timespec="seconds")
                if self.failing_since is not None
                else None
            ),
            "error": self.error if not self.ok else "",
            "pending": self.pending,
            "dropped": self.dropped,
            "awaiting_backfill": awaiting,
        }
