"""What the perpetuals' tests share across venues: the face's levels as the venue prints them,
waiting on the test's loop, and the rules every perpetual record's numbers keep."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

import msgspec

from marketlab.sim.market import fmt_units

SIGNED = {"funding_rate", "rate"}  # a funding rate may be negative


def face_levels(market: Any, levels: Any) -> list[tuple[float, float]]:
    """A face's levels (ticks and lots) as the venue prints them, read back as numbers."""
    pd, qd = market.spec.price_decimals, market.spec.qty_decimals
    return [(float(fmt_units(p, pd)), float(fmt_units(q, qd))) for p, q in levels]


async def until(predicate: Callable[[], bool], timeout: float) -> None:
    """Wait on the loop (a face on it goes on) until ``predicate`` holds, failing after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def check_numbers(record: Any) -> None:
    """A record's numbers by the rules, checked by hand (see marketlab.numbers): amounts and
    prices non-negative and finite or NaN ("unknown"), rates finite or NaN, ids within int64
    or -1, times within the venues' years or -1, levels of positive prices."""
    if not isinstance(record, msgspec.Struct):
        return
    for name, value in msgspec.structs.asdict(record).items():
        if isinstance(value, float):
            if name in SIGNED:
                assert math.isnan(value) or math.isfinite(value), (name, value)
            else:
                assert math.isnan(value) or 0.0 <= value < math.inf, (name, value)
        elif isinstance(value, int) and not isinstance(value, bool):
            assert -1 <= value <= 2**63 - 1, (name, value)
            if name.endswith("time") and value != -1:
                assert 1_262_304_000_000 <= value <= 4_102_444_800_000, (name, value)
        elif isinstance(value, list):
            for price, qty in value:
                assert 0.0 < price < math.inf and 0.0 <= qty < math.inf
