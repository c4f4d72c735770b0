"""Shared fixtures: a simulated exchange on loopback, in its own thread."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from marketlab.sim import SimExchange

# The suite runs on several workers of a small shared machine: how fast Hypothesis generates
# examples says nothing about the code under test, so time-based checks are off.
settings.register_profile("suite", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("suite")


# A fixed exchange start keeps simulated timestamps reproducible across runs.
START = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@pytest.fixture(scope="module")
def sim() -> Iterator[SimExchange]:
    """A shared simulator at 60x: a closed 1m candle every second of wall time."""
    with SimExchange(["BTCUSDT", "ETHUSDT"], speed=60, seed=7, start_time=START) as exchange:
        yield exchange


@pytest.fixture
def fresh_sim() -> Iterator[SimExchange]:
    """A private simulator for tests that inject faults or change limits."""
    with SimExchange(["BTCUSDT"], speed=60, seed=11, start_time=START) as exchange:
        yield exchange
