"""A real JetStream server per test (a free port, a temporary store), stopped after."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from marketlab.bus.server import NatsServer


@pytest.fixture
def nats() -> Iterator[NatsServer]:
    with NatsServer() as server:
        yield server


def wait_until(check: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout:g} s: {what or check}")
