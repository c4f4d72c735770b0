"""The market's memory, second by second: the per-second tape, candles assembled from it, and
the rolling 24-hour window the tickers read."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

SECOND_MS = 1000
DAY_S = 86400
NO_HIGH = -1
NO_LOW = np.iinfo(np.int64).max


class Seconds:
    """Growable per-second candle columns (integer ticks and lots)."""

    COLUMNS = (
        "open",
        "high",
        "low",
        "close",
        "volume",
        "quote",
        "trades",
        "tb_volume",
        "tb_quote",
        "first_id",
        "last_id",
    )

    def __init__(self, capacity: int = 4096):
        self.n = 0
        self.cols = {c: np.zeros(capacity, dtype=np.int64) for c in self.COLUMNS}

    def append(self, row: tuple[int, ...]) -> None:
        if self.n == len(self.cols["open"]):
            for c, a in self.cols.items():
                grown = np.zeros(2 * len(a), dtype=np.int64)
                grown[: self.n] = a[: self.n]
                self.cols[c] = grown
        i = self.n
        for c, v in zip(self.COLUMNS, row, strict=True):
            self.cols[c][i] = v
        self.n += 1

    def __getitem__(self, column: str) -> np.ndarray:
        return self.cols[column][: self.n]


@dataclass(slots=True)
class Candle:
    """The open candle of one interval, updated a second at a time."""

    open_time: int
    next_open: int
    prev_close: int
    o: int = -1
    h: int = NO_HIGH
    l: int = int(NO_LOW)
    c: int = -1
    v: int = 0
    q: int = 0
    n: int = 0
    tv: int = 0
    tq: int = 0
    f: int = -1
    L: int = -1

    def add(self, row: tuple[int, ...]) -> None:
        o, h, l, c, v, q, n, tv, tq, f, last = row
        if n == 0:
            return
        if self.n == 0:
            self.o, self.f = o, f
        self.h = max(self.h, h)
        self.l = min(self.l, l)
        self.c, self.L = c, last
        self.v += v
        self.q += q
        self.n += n
        self.tv += tv
        self.tq += tq

    def ohlc(self) -> tuple[int, int, int, int]:
        if self.n == 0:
            p = self.prev_close
            return p, p, p, p
        return self.o, self.h, self.l, self.c


@dataclass(frozen=True, slots=True)
class TradeEvent:
    trade_id: int
    price: int
    qty: int
    time: int
    buyer_is_maker: bool


@dataclass(slots=True)
class StepResult:
    """What one exchange second produced for one symbol."""

    second: int  # open time of the second, ms
    end: int  # the moment it ended (event time of what it emits)
    trades: list[TradeEvent]
    depth: tuple[int, int, list[tuple[int, int]], list[tuple[int, int]]] | None  # U, u, bids, asks
    closed: dict[str, Candle] = field(default_factory=dict)  # candles that closed now, by interval


class RollingWindow:
    """24-hour rolling statistics over per-second rows, O(1) per second."""

    def __init__(self, seconds: int = DAY_S):
        self.size = seconds
        self.rows: deque[tuple[int, tuple[int, ...]]] = deque()
        self.highs: deque[tuple[int, int]] = deque()
        self.lows: deque[tuple[int, int]] = deque()
        self.v = self.q = self.n = 0
        self.prev_close = 0

    def push(self, idx: int, row: tuple[int, ...]) -> None:
        _o, h, l, _c, v, q, n, *_ = row
        if n:
            self.rows.append((idx, row))
            self.v += v
            self.q += q
            self.n += n
            while self.highs and self.highs[-1][1] <= h:
                self.highs.pop()
            self.highs.append((idx, h))
            while self.lows and self.lows[-1][1] >= l:
                self.lows.pop()
            self.lows.append((idx, l))
        oldest = idx - self.size + 1
        while self.rows and self.rows[0][0] < oldest:
            _, old = self.rows.popleft()
            self.v -= old[4]
            self.q -= old[5]
            self.n -= old[6]
            self.prev_close = old[3]
        while self.highs and self.highs[0][0] < oldest:
            self.highs.popleft()
        while self.lows and self.lows[0][0] < oldest:
            self.lows.popleft()
