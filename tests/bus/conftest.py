"""A real JetStream server per test (a free port, a temporary store), stopped after."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from marketlab.bus.config import ENV
from marketlab.bus.nats_server import NatsServer
from tests.bus.certs import Certs, make_certs


@pytest.fixture
def nats() -> Iterator[NatsServer]:
    with NatsServer() as server:
        yield server


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A CA, a server certificate for 127.0.0.1 it signed, a client one, and another CA."""
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(autouse=True)
def no_bus_settings_from_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests say who they are to the bus: none of the machine's MARKETLAB_BUS_* reaches them."""
    for var in ENV.values():
        monkeypatch.delenv(var, raising=False)


def end(proc: subprocess.Popen[Any]) -> None:
    """A process a test started, gone however the test ended."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
