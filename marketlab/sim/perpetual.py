"""The simulated perpetual swaps: what a perpetual adds to its spot market, the same on every
venue's perpetual face.

Pure code, like :mod:`marketlab.sim.market`, and a function of time rather than of steps, so
REST history and the live stream give the same values: the perpetual trades the spot market
shifted by a small premium (its trades, book and candles are the spot's at those prices); its
index is the spot market's price; its mark is the index times a premium that drifts slowly;
funding settles every ``funding_hours`` from the premium averaged over the interval, by the
usual rule (premium plus the interest rate clamped to ±0.05 %, the whole clamped to ±0.75 %);
open interest drifts around a level; liquidations arrive at a seeded rate near the mark.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from marketlab.sim.market import SymbolMarket, VenueMarket, offset_ticks
from marketlab.sim.series import SECOND_MS

HOUR_MS = 3_600_000
INTEREST = 0.0001  # a funding interval's interest rate (0.01 %)
PREMIUM_BAND = 0.0005  # the interest part is clamped to ±0.05 % around the premium
RATE_CAP = 0.0075  # the rate itself to ±0.75 %


@dataclass(frozen=True, slots=True)
class LiquidationEvent:
    """One liquidation in ticks and lots: ``long`` when a long position was closed."""

    time: int
    long: bool
    price: int
    qty: int


@dataclass(frozen=True, slots=True)
class PerpetualSpec:
    """How the perpetuals trade against their spot markets."""

    premium_bps: float = 3.0  # the perpetual's prices over the spot's
    funding_hours: int = 8
    liquidations_per_minute: float = 3.0
    open_interest_turnover_hours: float = 6.0  # open interest's drift period


def _noise(seed: str, n: int) -> float:
    """A deterministic value in [-1, 1) for ``n`` (a minute, an hour), by ``seed``."""
    return random.Random(f"{seed}:{n}").random() * 2.0 - 1.0


class PerpetualSeries:
    """One perpetual swap over a spot market ``spot``: ``trading`` is its market (the spot's
    at the premium's prices), and mark, index, funding, open interest and liquidations are
    functions of time."""

    def __init__(self, spot: SymbolMarket, seed: int, spec: PerpetualSpec | None = None):
        self.spec = spec or PerpetualSpec()
        self.spot = spot
        self.trading = VenueMarket(spot, offset_ticks(spot.spec, self.spec.premium_bps))
        self._seed = f"{seed}:{spot.spec.symbol}:perp"
        self.funding_ms = self.spec.funding_hours * HOUR_MS

    @property
    def symbol(self) -> str:
        return self.spot.spec.symbol

    # --- prices --------------------------------------------------------------------------

    def premium(self, t: int) -> float:
        """The mark's premium over the index at ``t`` (a fraction): the trading premium plus a
        slow swing and a little noise per minute."""
        base = self.spec.premium_bps / 10_000
        swing = 0.0004 * math.sin(2 * math.pi * t / (11 * HOUR_MS))
        return base + swing + 0.00005 * _noise(self._seed + ":premium", t // 60_000)

    def index(self, t: int | None = None) -> float:
        """The index (the spot market's price, ticks as a float) at ``t`` (default now): the
        close of the spot's second before ``t``."""
        spot = self.spot
        if t is None or t >= spot.now:
            return float(spot.last_price)
        i = (t - spot.genesis) // SECOND_MS - 1
        closes = spot.seconds["close"]
        if i < 0 or not len(closes):
            return float(closes[0]) if len(closes) else float(spot.last_price)
        return float(closes[min(i, len(closes) - 1)])

    def mark(self, t: int | None = None) -> float:
        """The mark price (ticks as a float) at ``t``: the index times one plus the premium."""
        at = self.spot.now if t is None else t
        return self.index(t) * (1.0 + self.premium(at))

    # --- funding -------------------------------------------------------------------------

    def next_funding(self, t: int) -> int:
        """The first funding time after ``t`` (every ``funding_hours`` from midnight UTC)."""
        return (t // self.funding_ms + 1) * self.funding_ms

    def funding_rate(self, settle: int) -> float:
        """The rate settled at ``settle`` (a funding time), or the rate of the interval running
        to it: the premium averaged hourly over the interval, by the usual rule."""
        start = settle - self.funding_ms
        hours = range(start + HOUR_MS // 2, settle, HOUR_MS)
        premium = sum(self.premium(h) for h in hours) / max(1, len(hours))
        rate = premium + min(max(INTEREST - premium, -PREMIUM_BAND), PREMIUM_BAND)
        return round(min(max(rate, -RATE_CAP), RATE_CAP), 8)

    def fundings(self, start: int, end: int) -> list[tuple[int, float, float]]:
        """``(funding time, rate, mark in ticks)`` of every funding settled in [start, end]
        that the market's history covers, oldest first."""
        first = max(start, self.spot.genesis + self.funding_ms)
        t = -(-first // self.funding_ms) * self.funding_ms
        out = []
        while t <= min(end, self.spot.now):
            out.append((t, self.funding_rate(t), self.mark(t)))
            t += self.funding_ms
        return out

    # --- open interest -------------------------------------------------------------------

    def open_interest(self, t: int) -> int:
        """Open interest at ``t`` in lots: a level of some hours' typical volume, drifting."""
        spec = self.spot.spec
        level = spec.trades_per_second * 3600 * 4 * max(spec.typical_qty / spec.lot, 1.0)
        period = self.spec.open_interest_turnover_hours * HOUR_MS
        swing = 0.15 * math.sin(2 * math.pi * t / period)
        noise = 0.02 * _noise(self._seed + ":oi", t // 60_000)
        return max(1, round(level * (1.0 + swing + noise)))

    # --- liquidations --------------------------------------------------------------------

    def liquidations(self, second: int) -> list[LiquidationEvent]:
        """The liquidations in the second starting at ``second`` (ms), oldest first."""
        rng = random.Random(f"{self._seed}:liq:{second // SECOND_MS}")
        rate = self.spec.liquidations_per_minute / 60
        n = 0
        limit, p = math.exp(-rate), rng.random()
        while p > limit:
            n += 1
            p *= rng.random()
        spec = self.spot.spec
        mark = self.mark(second)
        out = []
        for off in sorted(rng.randrange(SECOND_MS) for _ in range(n)):
            long = rng.random() < 0.5
            slip = 1.0 - 0.0005 if long else 1.0 + 0.0005  # longs are sold below the mark
            qty = max(
                1, round(rng.lognormvariate(math.log(max(spec.typical_qty / spec.lot, 1)), 1))
            )
            out.append(LiquidationEvent(second + off, long, max(1, round(mark * slip)), qty))
        return out
