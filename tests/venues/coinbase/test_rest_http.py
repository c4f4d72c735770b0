"""Coinbase's REST client over a real local HTTP server answering as Coinbase's public
Advanced Trade endpoints do (shapes from /work/research/coinbase.md §3a): the paths and
parameters it asks, the records it makes, recent trades paged back by time to fill a gap, a 429
that holds every later request, and a refusal that is not retried."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from marketlab.stream.rest import RestError
from marketlab.venues.coinbase.rest import CoinbaseRest, SecondWindowPacer

NOW = 1767225690000  # 2026-01-01 00:01:30 UTC
T0 = 1767000000  # unix seconds of trade 1 (the double's trades: one a second)
PATH = "/api/v3/brokerage"

CANDLES = {
    "candles": [
        {
            "start": "1767225660",
            "low": "2",
            "high": "4",
            "open": "3",
            "close": "3.5",
            "volume": "2",
        },
        {
            "start": "1767225600",
            "low": "0.5",
            "high": "3",
            "open": "1",
            "close": "2",
            "volume": "10",
        },
    ]
}
PRODUCTS = {
    "products": [
        {
            "product_id": "BTC-USD",
            "price": "64000.5",
            "price_percentage_change_24h": "2.5",
            "volume_24h": "1234.5",
            "quote_increment": "0.01",
            "status": "online",
            "product_type": "SPOT",
        },
        {
            "product_id": "ETH-USD",
            "price": "3000",
            "price_percentage_change_24h": "-1",
            "volume_24h": "10",
            "quote_increment": "0.01",
            "status": "online",
            "product_type": "SPOT",
        },
    ],
    "num_products": 2,
}
BOOK = {
    "pricebook": {
        "product_id": "BTC-USD",
        "bids": [{"price": "64000.01", "size": "0.5"}],
        "asks": [{"price": "64000.5", "size": "1.25"}],
        "time": "2026-01-01T00:01:29.250Z",
    },
    "last": "64000.2",
}


def trade(i: int) -> dict[str, Any]:
    """Trade ``i`` of the double: at T0 + i seconds, a BUY (maker) print when i is even."""
    return {
        "trade_id": str(i),
        "product_id": "BTC-USD",
        "price": "64000",
        "size": "0.01",
        "time": _iso(T0 + i),
        "side": "BUY" if i % 2 == 0 else "SELL",
        "bid": "",
        "ask": "",
        "exchange": "coinbase",
    }


def _iso(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class Double:
    """Coinbase's public endpoints as a small aiohttp app: ``kept`` trades (the newest), each
    page the newest ``limit`` at or before ``end`` (unix seconds), newest first."""

    def __init__(self, newest: int = 2500, kept: int = 10_000, status: int = 200) -> None:
        self.newest, self.kept, self.status = newest, kept, status
        self.seen: list[tuple[str, dict[str, list[str]]]] = []

    async def answer(self, request: web.Request) -> web.Response:
        query = {k: request.query.getall(k) for k in request.query}
        self.seen.append((request.path, query))
        if self.status == 429:
            return web.json_response({"error": "rate_limit_exceeded"}, status=429)
        if self.status == 404:
            body = {"error": "NOT_FOUND", "error_details": "no such product", "message": "no"}
            return web.json_response(body, status=404)
        path = request.path
        if path == f"{PATH}/time":
            ms = str(NOW)
            return web.json_response({"iso": "", "epochSeconds": ms[:-3], "epochMillis": ms})
        if path == f"{PATH}/market/products":
            return web.json_response(PRODUCTS)
        if path == f"{PATH}/market/product_book":
            return web.json_response(BOOK)
        if path == f"{PATH}/market/products/BTC-USD/candles":
            return web.json_response(CANDLES)
        if path == f"{PATH}/market/products/BTC-USD/ticker":
            limit = int(request.query["limit"])
            end = int(request.query.get("end", str(T0 + self.newest)))
            first = max(1, self.newest - self.kept + 1)
            top = min(self.newest, end - T0)
            ids = range(top, max(first, top - limit + 1) - 1, -1)
            return web.json_response({"trades": [trade(i) for i in ids], "best_bid": "1"})
        return web.json_response({"error": "NOT_FOUND", "message": "route"}, status=404)


@asynccontextmanager
async def serving(double: Double) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/{tail:.*}", double.answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def test_the_client_asks_coinbases_public_endpoints_and_makes_records():
    async def run() -> None:
        double = Double()
        async with serving(double) as url:
            rest = CoinbaseRest(url)
            try:
                assert await rest.server_time() == NOW
                klines = await rest.klines("BTCUSD", "1m", start=1767225600000, limit=2)
                book = await rest.depth("BTCUSD", 50)
                listed = await rest.listed_symbols()
                recent = await rest.recent_trades("BTCUSD", 3)
                tickers = await rest.tickers(["BTCUSD", "ETHUSD"])
            finally:
                await rest.close()
        assert [(k.open_time, k.close, k.closed) for k in klines] == [
            (1767225600000, 2.0, True),
            (1767225660000, 3.5, False),  # ends at 00:01:59.999, after the server's time
        ]
        assert (book.bids, book.asks, book.event_time) == (
            [(64000.01, 0.5)],
            [(64000.5, 1.25)],
            1767225689250,
        )
        assert listed == {"BTCUSD": 0.01, "ETHUSD": 0.01}
        assert [(t.trade_id, t.side) for t in recent] == [
            (2498, "sell"),
            (2499, "buy"),
            (2500, "sell"),
        ]
        assert {t.symbol: t.last for t in tickers} == {"BTCUSD": 64000.5, "ETHUSD": 3000.0}
        paths = [p for p, _ in double.seen]
        assert paths == [
            f"{PATH}/time",
            f"{PATH}/time",
            f"{PATH}/market/products/BTC-USD/candles",
            f"{PATH}/market/product_book",
            f"{PATH}/market/products",
            f"{PATH}/market/products/BTC-USD/ticker",
            f"{PATH}/time",
            f"{PATH}/market/products",
        ]
        # unix seconds: 00:00:00 to the last second of the 00:01 candle
        assert double.seen[2][1] == {
            "granularity": ["ONE_MINUTE"],
            "start": ["1767225600"],
            "end": ["1767225719"],
        }
        assert double.seen[3][1] == {"product_id": ["BTC-USD"], "limit": ["50"]}
        assert double.seen[5][1] == {"limit": ["3"]}
        assert double.seen[7][1] == {"product_ids": ["BTC-USD", "ETH-USD"]}

    asyncio.run(run())


def test_a_trade_gap_is_filled_from_recent_trades_paged_back_by_time():
    async def run() -> None:
        double = Double(newest=2500)
        async with serving(double) as url:
            rest = CoinbaseRest(url)
            try:
                trades = await rest.trades_from("BTCUSD", 600, 10)
            finally:
                await rest.close()
        assert [t.trade_id for t in trades] == list(range(600, 2501))
        ends = [q.get("end") for _, q in double.seen]
        # the newest 1000 (1501-2500), then up to the second of 1501: 503-1502
        assert ends == [None, [str(T0 + 1502)]]

    asyncio.run(run())


def test_ids_older_than_coinbase_keeps_are_absent():
    async def run() -> None:
        double = Double(newest=2500, kept=1200)  # 1301-2500 only
        async with serving(double) as url:
            rest = CoinbaseRest(url)
            try:
                trades = await rest.trades_from("BTCUSD", 100, 1000)
            finally:
                await rest.close()
        assert [t.trade_id for t in trades] == list(range(1301, 2501))

    asyncio.run(run())


def test_a_429_holds_every_later_request_until_the_pause_is_over():
    async def run() -> None:
        double = Double(status=429)
        async with serving(double) as url:
            rest = CoinbaseRest(url)
            try:
                try:
                    await rest.server_time()
                except RestError as exc:
                    assert exc.retryable
                else:
                    raise AssertionError("a 429 answered as a success")
                assert rest.governor.stats.rate_limited == 1
                assert 1.0 <= rest.governor.delay(1, rest.clock()) <= 2.0
                asked = len(double.seen)
                late = asyncio.create_task(rest.server_time())
                await asyncio.sleep(0.3)
                assert not late.done() and len(double.seen) == asked  # held, not sent
                late.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await late
            finally:
                await rest.close()

    asyncio.run(run())


def test_a_refusal_is_not_retried_and_says_coinbases_words():
    async def run() -> None:
        async with serving(Double(status=404)) as url:
            rest = CoinbaseRest(url)
            try:
                await rest.klines("BTCUSD", "1m", limit=5, server_time=NOW)
            except RestError as exc:
                assert not exc.retryable
                assert "Coinbase error NOT_FOUND" in str(exc)
            else:
                raise AssertionError("a 404 answered as a success")
            finally:
                await rest.close()

    asyncio.run(run())


def test_the_pacer_keeps_seven_a_second_and_waits_out_429s():
    pacer = SecondWindowPacer()
    for i in range(7):
        assert pacer.delay(1, 100.0 + i * 0.01) == 0.0
        pacer.sent(1, 100.0 + i * 0.01)
    assert 0.9 < pacer.delay(1, 100.1) <= 1.0  # the eighth waits for the first to age out
    assert pacer.delay(1, 101.02) == 0.0
    pacer.observe(429, 200.0, "3")
    assert pacer.delay(1, 200.0) == 3.0
    pacer.observe(429, 203.0)  # no Retry-After: 2 s, then 4 s while they keep coming
    assert pacer.delay(1, 203.0) == 2.0
    pacer.observe(429, 205.0)
    assert pacer.delay(1, 205.0) == 4.0
    pacer.observe(200, 209.0)
    pacer.observe(429, 210.0)
    assert pacer.delay(1, 210.0) == 2.0  # an answer in between starts the pause over
    assert pacer.stats.rate_limited == 4
