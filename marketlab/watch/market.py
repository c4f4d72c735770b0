"""Market anomaly detectors: pure code over numbers handed in (mids, spreads, volumes, trades
and quotes), one sample per evaluation; nothing here reads a clock or the Lab.

Rolling statistics are robust (median, MAD), so one wild sample neither hides the next nor
makes the window's idea of normal drift."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable

import numpy as np

MAD_TO_SIGMA = 1.4826  # a normal distribution's sigma per median absolute deviation


def robust_z(value: float, window: Iterable[float]) -> float:
    """How many robust sigmas ``value`` lies from the window's median: ``(value - median) /
    (1.4826 * MAD)``; with a MAD of 0 (most of the window equal) the mean absolute deviation
    stands in (times sqrt(pi/2), its sigma ratio); with both 0, infinite unless ``value`` is
    the median itself."""
    data = np.fromiter(window, dtype=float)
    median = float(np.median(data))
    deviations = np.abs(data - median)
    scale = MAD_TO_SIGMA * float(np.median(deviations))
    if scale == 0:
        scale = math.sqrt(math.pi / 2) * float(deviations.mean())
    distance = value - median
    if scale == 0:
        return 0.0 if distance == 0 else math.copysign(math.inf, distance)
    return distance / scale


class PriceJump:
    """Short log returns of a mid against the rolling window of the previous ones: a return
    more than ``z`` robust sigmas out and at least ``min_bps`` large is a jump. ``update``
    returns ``(return in bps, z)`` when it fires, else None."""

    def __init__(self, window: int, min_samples: int, z: float, min_bps: float):
        self.returns: deque[float] = deque(maxlen=window)
        self.min_samples, self.z, self.min_bps = min_samples, z, min_bps
        self.last: float | None = None

    def update(self, mid: float) -> tuple[float, float] | None:
        if not (mid > 0 and math.isfinite(mid)):
            return None
        last, self.last = self.last, mid
        if last is None:
            return None
        r = math.log(mid / last) * 1e4  # bps
        fired = None
        if len(self.returns) >= self.min_samples and abs(r) >= self.min_bps:
            z = robust_z(r, self.returns)
            if abs(z) >= self.z:
                fired = (r, z)
        self.returns.append(r)
        return fired


class SpreadBlowout:
    """A spread (bps) more than ``factor`` times the rolling median of the previous ones and
    at least ``min_bps`` wide (a book quoted one tick wide is not blown out at six ticks).
    ``update`` returns the ratio when it fires, else None."""

    def __init__(self, window: int, min_samples: int, factor: float, min_bps: float = 0.0):
        self.spreads: deque[float] = deque(maxlen=window)
        self.min_samples, self.factor, self.min_bps = min_samples, factor, min_bps

    def update(self, spread_bps: float) -> float | None:
        if not (spread_bps >= 0 and math.isfinite(spread_bps)):
            return None
        fired = None
        if len(self.spreads) >= self.min_samples:
            median = float(np.median(np.fromiter(self.spreads, dtype=float)))
            if median > 0 and spread_bps > self.factor * median and spread_bps >= self.min_bps:
                fired = spread_bps / median
        self.spreads.append(spread_bps)
        return fired


class VolumeBurst:
    """Volume traded in the last ``span`` intervals more than ``factor`` times the mean of
    such sums before (the mean, not the median: most intervals of a quiet symbol trade
    nothing). A span of a few intervals keeps one large trade in a quiet second from reading
    as a burst, while a burst shows in the first interval it trades in. ``update`` takes one
    interval's volume and returns the ratio when it fires, else None."""

    def __init__(self, window: int, min_samples: int, factor: float, span: int = 1):
        self.volumes: deque[float] = deque(maxlen=window)  # sums over ``span`` intervals
        self.recent: deque[float] = deque(maxlen=max(1, span))
        self.min_samples, self.factor = min_samples, factor

    def update(self, volume: float) -> float | None:
        if not (volume >= 0 and math.isfinite(volume)):
            return None
        self.recent.append(volume)
        total = sum(self.recent)
        fired = None
        if len(self.volumes) >= self.min_samples:
            mean = sum(self.volumes) / len(self.volumes)
            if mean > 0 and total > self.factor * mean:
                fired = total / mean
        self.volumes.append(total)
        return fired


def outside_book_bps(price: float, bid: float, ask: float) -> float:
    """How far (bps of the mid) a trade printed outside the best bid and ask: 0 inside them
    (or when the quote is missing or crossed: nothing to judge against)."""
    if not (0 < bid <= ask and math.isfinite(ask)):
        return 0.0
    mid = (bid + ask) / 2
    if price > ask:
        return (price - ask) / mid * 1e4
    if price < bid:
        return (bid - price) / mid * 1e4
    return 0.0


def spread_bps(bid: float, ask: float) -> float:
    """The quoted spread in bps of the mid (NaN without both sides; negative when crossed)."""
    if not (bid > 0 and ask > 0 and math.isfinite(bid) and math.isfinite(ask)):
        return math.nan
    return (ask - bid) / ((ask + bid) / 2) * 1e4


class Persisting:
    """A condition that counts only once it has held for ``hold_s`` (crossed books,
    divergence): ``update(now, holds)`` is True from then on, while it holds."""

    def __init__(self, hold_s: float):
        self.hold_s = hold_s
        self.since: float | None = None

    def update(self, now: float, holds: bool) -> bool:
        if not holds:
            self.since = None
            return False
        if self.since is None:
            self.since = now
        return now - self.since >= self.hold_s
