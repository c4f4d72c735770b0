"""Bybit's REST client over a real local HTTP server answering as Bybit documents: the paths
and parameters it asks (``category=spot`` always), the records it makes, and a 403 that holds
every later request until the ban is over."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from marketlab.stream.rest import RestError
from marketlab.venues.bybit.rest import BAN_S, BybitRest

NOW = 1767225660000  # 2026-01-01 00:01:00 UTC

ANSWERS = {
    "/v5/market/time": {
        "timeSecond": str(NOW // 1000),
        "timeNano": str(NOW * 1_000_000 + 123),
    },
    "/v5/market/kline": {
        "symbol": "BTCUSDT",
        "category": "spot",
        "list": [
            ["1767225660000", "3", "4", "2", "3.5", "2", "7"],
            ["1767225600000", "1", "3", "0.5", "2", "10", "25"],
        ],
    },
    "/v5/market/orderbook": {
        "s": "BTCUSDT",
        "a": [["65557.7", "16.606555"]],
        "b": [["65485.47", "47.081829"]],
        "ts": 1716863719031,
        "u": 230704,
        "seq": 1432604333,
        "cts": 1716863718905,
    },
    "/v5/market/recent-trade": {
        "category": "spot",
        "list": [
            {
                "execId": "2100000000007764264",
                "symbol": "BTCUSDT",
                "price": "16618.5",
                "size": "0.1",
                "side": "Sell",
                "time": "1767225650000",
                "isBlockTrade": False,
                "isRPITrade": False,
                "seq": "123457",
            },
            {
                "execId": "2100000000007764263",
                "symbol": "BTCUSDT",
                "price": "16618.49",
                "size": "0.00012",
                "side": "Buy",
                "time": "1767225640000",
                "isBlockTrade": False,
                "isRPITrade": True,
                "seq": "123456",
            },
        ],
    },
    "/v5/market/tickers": {
        "category": "spot",
        "list": [
            {
                "symbol": "BTCUSDT",
                "bid1Price": "20517.96",
                "bid1Size": "2",
                "ask1Price": "20527.77",
                "ask1Size": "1.862172",
                "lastPrice": "20533.13",
                "prevPrice24h": "20393.48",
                "price24hPcnt": "0.0068",
                "highPrice24h": "21128.12",
                "lowPrice24h": "20318.89",
                "turnover24h": "243765620.65899866",
                "volume24h": "11801.27771",
                "usdIndexPrice": "20784.12009279",
            }
        ],
    },
    "/v5/market/instruments-info": {
        "category": "spot",
        "list": [
            {
                "symbol": "BTCUSDT",
                "quoteCoin": "USDT",
                "status": "Trading",
                "priceFilter": {"tickSize": "0.01"},
            }
        ],
    },
}


@asynccontextmanager
async def bybit_like(
    seen: list[tuple[str, dict[str, str]]], status: int = 200
) -> AsyncIterator[str]:
    async def answer(request: web.Request) -> web.Response:
        seen.append((request.path, dict(request.query)))
        if status != 200:
            return web.Response(status=status, text="access too frequent")
        result = ANSWERS.get(request.path)
        if result is None:
            return web.json_response({"retCode": 10017, "retMsg": "route not found"})
        body = {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": NOW}
        return web.json_response(body)

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def test_the_client_asks_bybits_spot_endpoints_and_makes_records():
    async def run() -> None:
        seen: list[tuple[str, dict[str, str]]] = []
        async with bybit_like(seen) as url:
            rest = BybitRest(url)
            try:
                assert await rest.server_time() == NOW
                klines = await rest.klines("BTCUSDT", "1m", start=1767225600000, limit=2)
                book = await rest.depth("BTCUSDT", 50)
                listed = await rest.listed_symbols()
                trades = await rest.recent_trades("BTCUSDT", 500)
                (ticker,) = await rest.tickers(["BTCUSDT"])
            finally:
                await rest.close()
        assert [(k.open_time, k.closed) for k in klines] == [
            (1767225600000, True),
            (1767225660000, False),  # still open at the server's time
        ]
        assert book.last_update_id == 230704 and book.bids == [(65485.47, 47.081829)]
        assert listed == {"BTCUSDT": 0.01}
        assert [(t.trade_id, t.side, t.time) for t in trades] == [
            (2100000000007764263, "buy", 1767225640000),
            (2100000000007764264, "sell", 1767225650000),
        ]
        assert (ticker.bid, ticker.ask, ticker.event_time) == (20517.96, 20527.77, NOW)
        paths = [p for p, _ in seen]
        assert paths == [
            "/v5/market/time",
            "/v5/market/time",
            "/v5/market/kline",
            "/v5/market/orderbook",
            "/v5/market/instruments-info",
            "/v5/market/recent-trade",
            "/v5/market/tickers",
        ]
        kline_query = seen[2][1]
        assert kline_query == {
            "category": "spot",
            "symbol": "BTCUSDT",
            "interval": "1",
            "limit": "2",
            "start": "1767225600000",
            "end": str(1767225600000 + 2 * 60_000 - 1),
        }
        assert seen[3][1] == {"category": "spot", "symbol": "BTCUSDT", "limit": "50"}
        assert seen[4][1] == {"category": "spot"}
        assert seen[5] == (
            "/v5/market/recent-trade",
            {"category": "spot", "symbol": "BTCUSDT", "limit": "60"},  # spot's most
        )
        assert seen[6] == ("/v5/market/tickers", {"category": "spot", "symbol": "BTCUSDT"})

    asyncio.run(run())


def test_a_403_is_an_ip_ban_that_the_client_waits_out_and_never_retries_into():
    async def run() -> None:
        seen: list[tuple[str, dict[str, str]]] = []
        async with bybit_like(seen, status=403) as url:
            rest = BybitRest(url)
            try:
                try:
                    await rest.server_time()
                except RestError as exc:
                    assert exc.retryable
                else:
                    raise AssertionError("a 403 answered as a success")
                assert rest.governor.stats.banned == 1
                wait = rest.governor.delay(1, rest.clock())
                assert BAN_S - 5 <= wait <= BAN_S + 60
                asked = len(seen)
                late = asyncio.create_task(rest.server_time())
                await asyncio.sleep(0.2)
                assert not late.done() and len(seen) == asked  # held, not sent into the ban
                late.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await late
            finally:
                await rest.close()

    asyncio.run(run())
