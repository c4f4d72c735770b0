"""A real JetStream server per test (a free port, a temporary store), stopped after."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from marketlab.bus.server import NatsServer


@pytest.fixture
def nats() -> Iterator[NatsServer]:
    with NatsServer() as server:
        yield server


def end(proc: subprocess.Popen[bytes]) -> None:
    """A process a test started, gone however the test ended."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
