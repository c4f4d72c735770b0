"""Times as researchers write them (epoch ms, ISO strings, dates, timestamps) → epoch ms.

pandas reads the strings, loaded when one is read: a collector writing rows never loads it."""

from __future__ import annotations

from datetime import date, datetime

import numpy as np

TimeLike = int | str | date | datetime | None  # (a pandas Timestamp is a datetime)


def to_ms(value: TimeLike, name: str = "time") -> int | None:
    """Epoch milliseconds from an int (ms), an ISO string, a date or a timestamp (UTC if naive)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{name}: expected a time, got {value!r}")
    if isinstance(value, int | np.integer):
        return int(value)
    import pandas as pd

    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise ValueError(
            f"{name}: cannot read {value!r} as a time (try '2026-01-01' or epoch ms)"
        ) from None
    if not isinstance(ts, pd.Timestamp):  # pd.Timestamp("NaT") gives NaT, which is not one
        raise ValueError(f"{name}: {value!r} is not a time")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value // 1_000_000)


def time_clauses(column: str, start: int | None, end: int | None) -> tuple[list[str], list[int]]:
    """SQL conditions (and their parameters) keeping ``column`` within [start, end] (epoch ms)."""
    clauses, params = [], []
    if start is not None:
        clauses.append(f"{column} >= ?")
        params.append(start)
    if end is not None:
        clauses.append(f"{column} <= ?")
        params.append(end)
    return clauses, params


def time_range(start: TimeLike, end: TimeLike) -> tuple[int | None, int | None]:
    s, e = to_ms(start, "start"), to_ms(end, "end")
    if s is not None and e is not None and e < s:
        import pandas as pd

        raise ValueError(
            f"end ({pd.Timestamp(e, unit='ms', tz='UTC')}) is before start "
            f"({pd.Timestamp(s, unit='ms', tz='UTC')})"
        )
    return s, e
