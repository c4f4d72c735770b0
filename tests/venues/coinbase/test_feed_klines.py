"""The Coinbase feed's klines over real sockets: the WebSocket has no 1-minute candles, so
every closed candle comes from REST after it closes. Against a double whose clock runs fast
(every ``/time`` answer is 20 s on) and whose candles leave out buckets with no trade, as
Coinbase's do, the closed candles delivered are the double's, in order, none twice, none
missing."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from marketlab.records import Kline
from marketlab.stream.config import FeedConfig
from marketlab.venues import coinbase as cb
from marketlab.venues.coinbase.feed import CoinbaseFeed

START = 1767225630000  # 2026-01-01 00:00:30 UTC
STEP_MS = 20_000  # the double's clock per /time answer


def candle(minute: int) -> dict[str, str]:
    """The double's candle of the minute starting at ``minute`` (unix minutes)."""
    base = minute % 100
    return {
        "start": str(minute * 60),
        "low": f"{base}.5",
        "high": f"{base + 2}",
        "open": f"{base + 1}",
        "close": f"{base + 1}.5",
        "volume": f"{minute % 7 + 1}",
    }


def traded(minute: int) -> bool:
    return minute % 5 != 3  # every fifth minute has no trade: no candle


class ClockDouble:
    def __init__(self) -> None:
        self.now = START
        self.candle_requests: list[dict[str, str]] = []

    async def rest(self, request: web.Request) -> web.Response:
        if request.path.endswith("/time"):
            self.now += STEP_MS
            return web.json_response({"epochMillis": str(self.now)})
        if request.path.endswith("/market/products"):
            row = {"product_id": "BTC-USD", "status": "online", "quote_increment": "0.01"}
            return web.json_response({"products": [row]})
        if request.path.endswith("/market/products/BTC-USD/candles"):
            q = dict(request.query)
            self.candle_requests.append(q)
            first, last = int(q["start"]) // 60, int(q["end"]) // 60
            current = self.now // 60_000  # the open bucket is served too
            minutes = [m for m in range(first, min(last, current) + 1) if traded(m)]
            return web.json_response({"candles": [candle(m) for m in reversed(minutes)]})
        return web.json_response({"error": "NOT_FOUND", "message": request.path}, status=404)

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for _ in ws:
            pass
        return ws


class FastFeed(CoinbaseFeed):
    kline_settle_s = 0.5
    kline_recheck_s = 0.02  # the double's minute passes in about a second


def test_every_closed_candle_comes_from_rest_once_and_equal_to_the_venues():
    async def run() -> tuple[ClockDouble, list[Kline]]:
        double = ClockDouble()
        app = web.Application()
        app.router.add_get("/", double.websocket)
        app.router.add_get("/api/v3/brokerage/{tail:.*}", double.rest)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        got: list[Kline] = []
        config = FeedConfig(
            ws_url=cb.check_ws_url(f"ws://127.0.0.1:{port}"),
            rest_url=f"http://127.0.0.1:{port}",
            seed_klines=10,
        )

        def sink(records: Any, source: str) -> None:
            got.extend(r for r in records if isinstance(r, Kline) and r.closed)

        feed = FastFeed(["BTCUSD"], ["1m"], ["klines"], config, sink)
        task = asyncio.create_task(feed.run())
        loop = asyncio.get_running_loop()
        try:
            deadline = loop.time() + 30
            while double.now < START + 8 * 60_000:
                assert loop.time() < deadline and not task.done(), "the clock did not move"
                await asyncio.sleep(0.02)
        finally:
            await feed.stop()
            await task
            await runner.cleanup()
        assert feed.fatal is None
        return double, got

    double, got = asyncio.run(run())
    for q in double.candle_requests:  # Coinbase refuses a window of about 350 buckets or more
        assert q["granularity"] == "ONE_MINUTE"
        assert 1 <= (int(q["end"]) - int(q["start"])) // 60 + 1 <= 300
    opens = [k.open_time for k in got]
    assert opens == sorted(set(opens)), "a candle twice or out of order"
    minutes = [t // 60_000 for t in opens]
    expected = [m for m in range(minutes[0], minutes[-1] + 1) if traded(m)]
    assert minutes == expected  # none missing between the first and the last
    assert minutes[0] <= START // 60_000 - 9  # the start-up fetch reached back 10 candles
    assert minutes[-1] >= START // 60_000 + 5  # and closed candles kept coming
    for k in got:
        c = candle(k.open_time // 60_000)
        values = (k.open, k.high, k.low, k.close, k.volume)
        assert values == tuple(float(c[f]) for f in ("open", "high", "low", "close", "volume"))
