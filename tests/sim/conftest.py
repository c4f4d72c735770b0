"""What the simulator's face tests share: a private simulator on the test's own loop, an HTTP
and WebSocket client session, and reading JSON messages off a socket."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson
import pytest

from marketlab.sim import SimExchange
from tests.conftest import START


@pytest.fixture
async def face_sim() -> AsyncIterator[SimExchange]:
    """A private simulator at 60x (a closed 1m candle every wall second), on this test's loop."""
    async with SimExchange(
        ["BTCUSDT", "ETHUSDT"], speed=60, seed=5, start_time=START, history="30m"
    ) as exchange:
        yield exchange


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def recv(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> Any:
    """The next message, a JSON text frame (anything else fails the test)."""
    msg = await ws.receive(timeout=timeout)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return orjson.loads(msg.data)


async def until(
    ws: aiohttp.ClientWebSocketResponse, predicate: Callable[[Any], bool], timeout: float = 10.0
) -> Any:
    """The first message ``predicate`` takes within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = await recv(ws, deadline - time.monotonic())
        if predicate(msg):
            return msg
    raise AssertionError("no matching message")
