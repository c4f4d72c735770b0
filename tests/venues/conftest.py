"""What the venues' tests share: a private simulator for the perpetual feeds' tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from marketlab.sim import SimExchange
from tests.conftest import START


@pytest.fixture
async def perp_sim() -> AsyncIterator[SimExchange]:
    """A private simulator at 60x (a closed 1m candle every wall second), on this test's loop."""
    async with SimExchange(["BTCUSDT"], speed=60, seed=5, start_time=START, history="30m") as sim:
        yield sim
