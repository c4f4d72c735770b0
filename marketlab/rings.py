"""Rolling columnar buffers behind the user's DataFrames.

Appends are O(1) into preallocated numpy columns, memory is fixed by the capacity however long
the collector runs, and a DataFrame view copies the columns once. Writers (the collector
thread) and readers (the notebook) meet under a short lock.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pandas as pd

from marketlab.records import KLINE_VALUES, Interval, Kline, Trade

DEFAULT_TRADE_CAPACITY = 100_000
DEFAULT_KLINE_CAPACITY = 1_440  # a day of 1m candles

_SIDES = pd.CategoricalDtype(["buy", "sell"])


def utc_times(ms: np.ndarray | list[int] | pd.Series) -> pd.DatetimeIndex:
    """Epoch milliseconds → tz-aware UTC timestamps (nanosecond unit, pandas' default).

    Through a numpy view rather than ``pd.to_datetime``: 20x faster on millions of rows."""
    ns = np.asarray(ms, dtype=np.int64) * 1_000_000
    return pd.DatetimeIndex(ns.view("datetime64[ns]")).tz_localize("UTC")


def utc_index(ms: np.ndarray, name: str) -> pd.DatetimeIndex:
    return utc_times(ms).rename(name)


def epoch_ms(times: pd.Index | pd.Series) -> np.ndarray:
    """Timestamps → epoch milliseconds, whatever their unit."""
    return pd.DatetimeIndex(times).as_unit("ms").asi8


class RingBuffer:
    """Fixed-capacity columns; the oldest rows are overwritten once full.

    Rows are gathered in a short list and written to the columns a block at a time: one numpy
    conversion per column per block costs far less than a numpy item assignment per value.
    One thread writes (``append`` needs no lock: a list append is atomic, and only the writer
    moves rows into the columns, under the lock); readers copy the columns and the rows still
    pending under the lock.
    """

    BLOCK = 512

    def __init__(self, dtypes: dict[str, np.dtype | type], capacity: int):
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self.names = tuple(dtypes)
        self.dtypes = tuple(np.dtype(dt) for dt in dtypes.values())
        self.columns = [np.zeros(capacity, dtype=dt) for dt in self.dtypes]
        self.count = 0  # rows written to the columns
        self._pending: list[tuple] = []
        self.lock = threading.Lock()
        # told of every block of rows as columns, before the ring may overwrite them (a store)
        self.on_block: Callable[[dict[str, np.ndarray]], None] | None = None

    def __len__(self) -> int:
        return min(self.count + len(self._pending), self.capacity)

    def append(self, row: tuple) -> None:
        """On the writer's thread only."""
        pending = self._pending
        pending.append(row)
        if len(pending) >= self.BLOCK:
            with self.lock:
                self._flush()

    def _flush(self) -> None:
        """Write the pending rows (the writer, under the lock)."""
        rows = self._pending
        if not rows:
            return
        self._pending = []
        self._write(rows)

    def _write(self, rows: list[tuple]) -> None:
        blocks = [
            np.array(values, dtype=dtype)
            for dtype, values in zip(self.dtypes, zip(*rows, strict=True), strict=True)
        ]
        if self.on_block is not None:
            self.on_block(dict(zip(self.names, blocks, strict=True)))
        cap = self.capacity
        if len(rows) > cap:
            self.count += len(rows) - cap
            blocks = [b[-cap:] for b in blocks]
        n = len(blocks[0])
        start = self.count % cap
        first = min(n, cap - start)
        for column, block in zip(self.columns, blocks, strict=True):
            column[start : start + first] = block[:first]
            if first < n:
                column[: n - first] = block[first:]
        self.count += n

    def flush(self) -> None:
        """Move the pending rows into the columns now (on the writer's thread, or once it has
        stopped): a store told of blocks then has every row."""
        with self.lock:
            self._flush()

    def arrays(self) -> dict[str, np.ndarray]:
        """Copies of the columns and the pending rows, oldest row first (any thread)."""
        with self.lock:
            held = self.arrays_unlocked()
            pending = list(self._pending)  # atomic: the writer may append meanwhile
        if not pending:
            return held
        cap = self.capacity
        extra = {
            name: np.array(values, dtype=dt)
            for name, dt, values in zip(
                self.names, self.dtypes, zip(*pending, strict=True), strict=True
            )
        }
        return {name: np.concatenate((held[name], extra[name]))[-cap:] for name in self.names}

    def arrays_unlocked(self) -> dict[str, np.ndarray]:
        """The columns' rows, oldest first, for a caller holding the lock."""
        n, cap = self.count, self.capacity
        if n <= cap:
            return {
                name: col[:n].copy() for name, col in zip(self.names, self.columns, strict=True)
            }
        start = n % cap
        return {
            name: np.concatenate((col[start:], col[:start]))
            for name, col in zip(self.names, self.columns, strict=True)
        }


class TradeBuffer:
    """Recent trades of one symbol; duplicates (same or older trade id) are dropped."""

    def __init__(self, capacity: int = DEFAULT_TRADE_CAPACITY):
        self.ring = RingBuffer(
            {
                "time": np.int64,
                "price": np.float64,
                "qty": np.float64,
                "side": np.int8,
                "trade_id": np.int64,
            },
            capacity,
        )
        self.last_id = -1
        self.missed = 0  # trade ids skipped (e.g. during an outage)
        self.duplicates = 0

    def add(self, t: Trade) -> bool:
        tid, last = t.trade_id, self.last_id
        if tid <= last:
            self.duplicates += 1
            return False
        if tid > last + 1 and last >= 0:
            self.missed += tid - last - 1
        self.last_id = tid
        ring = self.ring  # its append, inlined: once per trade
        pending = ring._pending
        pending.append((t.time, t.price, t.qty, 0 if t.side == "buy" else 1, tid))
        if len(pending) >= ring.BLOCK:
            ring.flush()
        return True

    def merge(self, trades: Iterable[Trade]) -> int:
        """Put trades fetched late (a gap filled over REST) in their place by id; returns how
        many were new. The buffer stays ordered by id and keeps the newest ``capacity``."""
        rows = [(t.time, t.price, t.qty, 0 if t.side == "buy" else 1, t.trade_id) for t in trades]
        if not rows:
            return 0
        ring = self.ring
        with ring.lock:
            ring._flush()
            held = ring.arrays_unlocked()
            new = {
                name: np.array(col, dtype=dt)
                for name, dt, col in zip(
                    ring.names, ring.dtypes, zip(*rows, strict=True), strict=True
                )
            }
            fresh = ~np.isin(new["trade_id"], held["trade_id"])
            added = int(fresh.sum())
            if not added:
                return 0
            merged = {n: np.concatenate((held[n], new[n][fresh])) for n in ring.names}
            order = np.argsort(merged["trade_id"], kind="stable")[-ring.capacity :]
            for i, name in enumerate(ring.names):
                ring.columns[i][: len(order)] = merged[name][order]
            ring.count = len(order)
        self.missed = max(0, self.missed - added)
        self.last_id = max(self.last_id, int(new["trade_id"].max()))
        return added

    def frame(self) -> pd.DataFrame:
        a = self.ring.arrays()
        return pd.DataFrame(
            {
                "price": a["price"],
                "qty": a["qty"],
                "side": pd.Categorical.from_codes(a["side"], dtype=_SIDES),
                "trade_id": a["trade_id"],
            },
            index=utc_index(a["time"], "time"),
            copy=False,  # the arrays are fresh copies already
        )


KLINE_COLUMNS = (*KLINE_VALUES[1:], "closed")  # a kline frame's columns (open_time is its index)
_KLINE_DTYPES = {
    "open_time": np.int64,
    "open": np.float64,
    "high": np.float64,
    "low": np.float64,
    "close": np.float64,
    "volume": np.float64,
    "quote_volume": np.float64,
    "trades": np.int64,
    "taker_buy_volume": np.float64,
    "taker_buy_quote_volume": np.float64,
    "close_time": np.int64,
    "closed": np.bool_,
}


_kline_row: Callable[[Kline], tuple[Any, ...]] = operator.attrgetter(*KLINE_VALUES, "closed")


class KlineBuffer:
    """One symbol's candles of one interval, sorted by open time, one row per candle.

    ``upsert`` replaces a candle by open time (the open candle is updated in place; a closed
    candle is never overwritten by a late update of the same candle still open), inserts
    backfilled candles where they belong and drops the oldest beyond the capacity.

    The newest candle, while it is open, is kept as the record itself (``_open``): the stream
    updates it every second or faster, and it reaches the columns only when it closes, a newer
    one opens or someone reads.
    """

    def __init__(self, interval: str, capacity: int = DEFAULT_KLINE_CAPACITY):
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.interval = Interval(interval)
        self.capacity = capacity
        self.cols: dict[str, np.ndarray] = {
            name: np.zeros(capacity, dtype=dt) for name, dt in _KLINE_DTYPES.items()
        }
        self.n = 0
        self._open: Kline | None = None  # the newest candle, open, not yet in the columns
        self.lock = threading.Lock()

    def __len__(self) -> int:
        with self.lock:
            self._settle()
            return self.n

    def upsert(self, k: Kline) -> bool:
        """Store ``k``; False when it changes nothing new (a stale or duplicate update)."""
        with self.lock:
            pending = self._open
            if not k.closed:
                if pending is not None and pending.open_time == k.open_time:
                    self._open = k  # the usual update: the open candle again
                    return True
                n = self.n
                if (pending is None or k.open_time > pending.open_time) and (
                    n == 0 or k.open_time > self.cols["open_time"][n - 1]
                ):
                    self._settle()
                    self._open = k  # a newer candle opens
                    return True
            self._settle()
            return self._upsert(k)

    def upsert_many(self, klines: Iterable[Kline]) -> int:
        with self.lock:
            self._settle()
            return sum(self._upsert(k) for k in klines)

    def _settle(self) -> None:
        """The open candle into the columns (under the lock)."""
        pending = self._open
        if pending is not None:
            self._open = None
            self._upsert(pending)

    def _upsert(self, k: Kline) -> bool:
        opens = self.cols["open_time"]
        n = self.n
        if n and k.open_time == opens[n - 1]:
            i = n - 1
        elif n == 0 or k.open_time > opens[n - 1]:
            if n == self.capacity:
                for col in self.cols.values():
                    col[:-1] = col[1:]
                n -= 1
            i = n
            self.n = n + 1
            self._write(i, k)
            return True
        else:
            i = int(np.searchsorted(opens[:n], k.open_time))
            if opens[i] != k.open_time:
                if n == self.capacity and i == 0:
                    return False  # older than everything kept
                self._insert(i, k)
                return True
        if self.cols["closed"][i] and not k.closed:
            return False  # a late update of a candle already closed
        self._write(i, k)
        return True

    def _write(self, i: int, k: Kline) -> None:
        for col, value in zip(self.cols.values(), _kline_row(k), strict=True):
            col[i] = value

    def _insert(self, i: int, k: Kline) -> None:
        n = self.n
        if n == self.capacity:  # make room by dropping the oldest
            for col in self.cols.values():
                col[: i - 1] = col[1:i]
            i -= 1
        else:
            for col in self.cols.values():
                col[i + 1 : n + 1] = col[i:n]
            self.n = n + 1
        self._write(i, k)

    def last_closed_open_time(self) -> int | None:
        with self.lock:
            self._settle()
            closed = np.flatnonzero(self.cols["closed"][: self.n])
            return int(self.cols["open_time"][closed[-1]]) if len(closed) else None

    def open_times(self) -> np.ndarray:
        with self.lock:
            self._settle()
            return self.cols["open_time"][: self.n].copy()

    def frame(self) -> pd.DataFrame:
        with self.lock:
            self._settle()
            a = {name: col[: self.n].copy() for name, col in self.cols.items()}
        data: dict[str, np.ndarray | pd.DatetimeIndex] = {name: a[name] for name in KLINE_COLUMNS}
        data["close_time"] = utc_times(a["close_time"])
        return pd.DataFrame(data, index=utc_index(a["open_time"], "open_time"))


def empty_book_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "side": pd.Categorical([], categories=["bid", "ask"]),
            "price": np.array([], dtype=np.float64),
            "qty": np.array([], dtype=np.float64),
            "level": np.array([], dtype=np.int64),
        }
    )


def book_frame(bids: list[tuple[float, float]], asks: list[tuple[float, float]]) -> pd.DataFrame:
    """``side price qty level``: bids best first, then asks best first; level 0 is the best."""
    if not bids and not asks:
        return empty_book_frame()
    levels = bids + asks
    return pd.DataFrame(
        {
            "side": pd.Categorical(
                ["bid"] * len(bids) + ["ask"] * len(asks), categories=["bid", "ask"]
            ),
            "price": np.fromiter((p for p, _ in levels), np.float64, len(levels)),
            "qty": np.fromiter((q for _, q in levels), np.float64, len(levels)),
            "level": np.concatenate((np.arange(len(bids)), np.arange(len(asks)))).astype(np.int64),
        }
    )
