"""A REST answer whose body does not read, over a real socket: every venue's client (spot and
perpetual) raises a retryable ``RestError`` naming the request, never the reader's own error,
and the stream layer goes on (a backfill that meets a bad body, then good ones, ends with the
venue's candles).

The venue is the simulator behind a small proxy on 127.0.0.1 that hands on every answer as the
simulator sent it, except the next answers of one path, whose body it replaces: the simulator
itself answers only as the venues document.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from marketlab.records import Interval
from marketlab.sim import SimExchange
from marketlab.store.backfill import closed_kline_pages
from marketlab.stream.rest import RestError
from marketlab.venues.binance.perp_rest import BinancePerpRest
from marketlab.venues.binance.protocol import BinanceAPIError
from marketlab.venues.binance.rest import BinanceRest
from marketlab.venues.bybit.perp_rest import BybitPerpRest
from marketlab.venues.bybit.protocol import BybitAPIError
from marketlab.venues.bybit.rest import BybitRest
from marketlab.venues.coinbase.protocol import CoinbaseAPIError
from marketlab.venues.coinbase.rest import CoinbaseRest
from marketlab.venues.errors import UNREADABLE_BODY_ERRORS
from marketlab.venues.okx.perp_rest import OkxPerpRest
from marketlab.venues.okx.protocol import OkxAPIError
from marketlab.venues.okx.rest import OkxRest
from tests.conftest import START

DEEP = b"[" * 3000 + b"]" * 3000


class Spoiler:
    """Which answers the proxy spoils: the next ``count`` of ``path``, with ``body``."""

    def __init__(self) -> None:
        self.path = ""
        self.body = b""
        self.count = 0
        self.spoiled = 0

    def spoil(self, path: str, body: bytes, count: int = 1) -> None:
        self.path, self.body, self.count = path, body, count


@asynccontextmanager
async def proxy(upstream: str, spoiler: Spoiler) -> AsyncIterator[str]:
    """A REST base on 127.0.0.1 that forwards to ``upstream`` and spoils what ``spoiler``
    says."""
    session = aiohttp.ClientSession()

    async def forward(request: web.Request) -> web.Response:
        async with session.get(upstream + request.path_qs) as answer:
            body = await answer.read()
            status = answer.status
        if request.path == spoiler.path and spoiler.count > 0:
            spoiler.count -= 1
            spoiler.spoiled += 1
            body, status = spoiler.body, 200
        return web.Response(body=body, status=status, content_type="application/json")

    app = web.Application()
    app.router.add_get("/{tail:.*}", forward)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
        await session.close()


@pytest.fixture(scope="module")
def sim():
    with SimExchange(["BTCUSDT"], speed=60, seed=3, start_time=START, history="30m") as exchange:
        yield exchange


Call = Callable[[Any], Awaitable[Any]]

# (client class, one call, the path it asks, a body of another shape than that path's)
CASES: list[tuple[type, Call, str, bytes]] = [
    (BinanceRest, lambda r: r.depth("BTCUSDT", 100), "/api/v3/depth", b'{"bids":[]}'),
    (BinanceRest, lambda r: r.server_time(), "/api/v3/time", b"[]"),
    (
        BinanceRest,
        lambda r: r.klines("BTCUSDT", "1m", limit=5, server_time=START),
        "/api/v3/klines",
        b'[["x"]]',
    ),
    (
        BinancePerpRest,
        lambda r: r.mark_price("BTCUSDT-PERP"),
        "/fapi/v1/premiumIndex",
        b'{"symbol":"BTCUSDT"}',
    ),
    (OkxRest, lambda r: r.depth("BTCUSDT", 5), "/api/v5/market/books", b'{"code":"0","data":7}'),
    (
        OkxPerpRest,
        lambda r: r.mark_price("BTCUSDT-PERP"),
        "/api/v5/public/mark-price",
        b'{"code":"0","msg":"","data":[{"instId":"BTC-USDT-SWAP"}]}',
    ),
    (
        BybitRest,
        lambda r: r.depth("BTCUSDT"),
        "/v5/market/orderbook",
        b'{"retCode":0,"retMsg":"OK","result":{"a":1}}',
    ),
    (
        BybitPerpRest,
        lambda r: r.mark_and_open_interest("BTCUSDT-PERP"),
        "/v5/market/tickers",
        b'{"retCode":0,"retMsg":"OK","result":{"category":"linear","list":[]}}',
    ),
    (
        CoinbaseRest,
        lambda r: r.depth("BTCUSDT", 10),
        "/api/v3/brokerage/market/product_book",
        b'{"pricebook":null}',
    ),
]
IDS = [f"{cls.__name__}-{path}" for cls, _, path, _ in CASES]


@pytest.mark.parametrize(("client", "call", "path", "body"), CASES, ids=IDS)
@pytest.mark.parametrize("kind", ["wrong shape", "deep nesting", "not JSON"])
def test_a_body_that_does_not_read_is_a_retryable_rest_error_naming_the_request(
    sim, client, call, path, body, kind, caplog
):
    spoiled = {"wrong shape": body, "deep nesting": DEEP, "not JSON": b"<html>busy</html>"}[kind]

    async def run() -> None:
        spoiler = Spoiler()
        async with proxy(sim.rest_url, spoiler) as url:
            rest = client(url)
            try:
                spoiler.spoil(path, spoiled)
                with pytest.raises(RestError) as caught:
                    await call(rest)
                assert spoiler.spoiled == 1  # the venue answered: what it sent did not read
                assert caught.value.retryable
                assert f"GET {path}" in str(caught.value)
                if kind == "wrong shape":  # (a body that is no JSON may be a venue's refusal)
                    assert "the answer does not read" in str(caught.value)
                    logged = [r.getMessage() for r in caplog.records if r.name == "marketlab.rest"]
                    assert logged == [str(caught.value)]
                assert rest.last_failure is not None
                failed_at = rest.last_failure
                recovered: list[bool] = []
                rest.on_recovered = lambda: recovered.append(True)
                await call(rest)  # the next answer reads: a success after the failure
                assert rest.last_success is not None and rest.last_success >= failed_at
                assert recovered == [True]
            finally:
                await rest.close()

    asyncio.run(run())


@pytest.mark.parametrize("error", [BinanceAPIError, OkxAPIError, BybitAPIError, CoinbaseAPIError])
def test_every_venues_error_envelope_is_one_the_rest_clients_turn_into_a_rest_error(error):
    """A reader that meets its venue's error envelope where data was to come raises the
    venue's APIError: the clients turn each into a retryable RestError, as any body that does
    not read."""
    assert issubclass(error, UNREADABLE_BODY_ERRORS)


@pytest.mark.parametrize(
    ("client", "venue", "path"),
    [
        (BinanceRest, "binance", "/api/v3/klines"),
        (OkxRest, "okx", "/api/v5/market/candles"),
        (BybitRest, "bybit", "/v5/market/kline"),
    ],
)
def test_a_backfill_that_meets_bad_bodies_ends_with_the_venues_candles(sim, client, venue, path):
    iv = Interval("1m")
    first = START - 20 * iv.ms  # in the simulator's history, before it started

    async def run() -> list[tuple[int, float, float]]:
        spoiler = Spoiler()
        async with proxy(sim.rest_url, spoiler) as url:
            rest = client(url)
            try:
                now = await rest.server_time()
                stop = iv.open_of(now) - iv.ms
                spoiler.spoil(path, DEEP, count=1)
                got = [
                    (k.open_time, k.close, k.volume)
                    async for page in closed_kline_pages(rest, "BTCUSDT", iv, first, stop, now)
                    for k in page
                ]
                assert spoiler.spoiled == 1
                return got
            finally:
                await rest.close()

    got = asyncio.run(run())
    assert len(got) >= 20 and got[0][0] == first
    oracle = sim.klines("BTCUSDT", "1m", start=first, end=got[-1][0], limit=1000, venue=venue)
    assert got == [(k["open_time"], k["close"], k["volume"]) for k in oracle]
