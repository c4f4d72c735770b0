"""The Bybit feed over real sockets against a small Bybit double (an aiohttp server answering
as Bybit documents): it reaches ``/v5/public/spot``, asks at most 10 topics a request, pings
with Bybit's JSON ping on a busy connection too, and takes the trades pushed.

(Faults, books and klines end to end are for the simulator's Bybit face.)"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from aiohttp import WSMsgType, web

from marketlab.records import Trade
from marketlab.stream.config import FeedConfig
from marketlab.venues import bybit
from marketlab.venues.bybit.feed import BybitFeed

SYMBOLS = [f"C{i}USDT" for i in range(12)]
NOW = 1767225600000


class BybitDouble:
    """What the feed needs of Bybit: the symbol list, the time, and a spot WebSocket that
    acknowledges requests, answers pings and pushes a trade of C0USDT every 20 ms."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.pings = 0

    async def rest(self, request: web.Request) -> web.Response:
        if request.path == "/v5/market/instruments-info":
            rows = [
                {"symbol": s, "status": "Trading", "priceFilter": {"tickSize": "0.01"}}
                for s in SYMBOLS
            ]
            result: Any = {"category": "spot", "list": rows}
        else:
            result = {"timeSecond": str(NOW // 1000), "timeNano": str(NOW * 1_000_000)}
        return web.json_response({"retCode": 0, "retMsg": "OK", "result": result, "time": NOW})

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        pusher = asyncio.create_task(self._push(ws))
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                body = msgspec.json.decode(msg.data)
                answer = {"success": True, "conn_id": "c", "op": body["op"]}
                if "req_id" in body:
                    answer["req_id"] = body["req_id"]
                if body["op"] == "ping":
                    self.pings += 1
                    answer["ret_msg"] = "pong"
                else:
                    self.requests.append(body)
                    if len(body["args"]) > 10:
                        answer.update(success=False, ret_msg="args size >10")
                    else:
                        answer["ret_msg"] = body["op"]
                await ws.send_bytes(msgspec.json.encode(answer))
        finally:
            pusher.cancel()
        return ws

    async def _push(self, ws: web.WebSocketResponse) -> None:
        trade_id = 2290000000908760214
        while not ws.closed:
            trade_id += 7  # spot ids rise, not by one
            data = [
                {"i": str(trade_id), "T": NOW, "p": "100.5", "v": "0.1", "S": "Buy", "s": "C0USDT"}
            ]
            push = {"topic": "publicTrade.C0USDT", "type": "snapshot", "ts": NOW, "data": data}
            await ws.send_bytes(msgspec.json.encode(push))
            await asyncio.sleep(0.02)


def test_the_feed_subscribes_ten_topics_a_request_and_pings_a_busy_connection():
    async def run() -> tuple[BybitDouble, BybitFeed, list[Any]]:
        double = BybitDouble()
        app = web.Application()
        app.router.add_get("/v5/public/spot", double.websocket)
        app.router.add_get("/v5/market/{name}", double.rest)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        got: list[Any] = []
        config = FeedConfig(
            ws_url=bybit.check_ws_url(f"ws://127.0.0.1:{port}"),
            rest_url=f"http://127.0.0.1:{port}",
            ping_interval=0.3,
            subscribe_per_second=5.0,
        )
        feed = BybitFeed(SYMBOLS, [], ["trades"], config, lambda rs, src: got.extend(rs))
        task = asyncio.create_task(feed.run())
        try:
            deadline = asyncio.get_running_loop().time() + 10
            while not (double.pings >= 4 and feed.symbols_confirmed.is_set()) and not task.done():
                assert asyncio.get_running_loop().time() < deadline, "no pings or no requests"
                await asyncio.sleep(0.05)
        finally:
            await feed.stop()
            await task
            await runner.cleanup()
        return double, feed, got

    double, feed, got = asyncio.run(run())
    assert [len(r["args"]) for r in double.requests] == [10, 2]
    assert sorted(a for r in double.requests for a in r["args"]) == sorted(
        f"publicTrade.{s}" for s in SYMBOLS
    )
    assert double.pings >= 4  # while a trade came every 20 ms: no silence ever called for one
    assert feed.fatal is None and feed.unanswered == 0
    assert feed.tick_sizes == dict.fromkeys(SYMBOLS, 0.01)  # the symbol check asked REST
    trades = [r for r in got if isinstance(r, Trade)]
    assert trades and all(t.symbol == "C0USDT" and t.side == "buy" for t in trades)
    assert feed.trades_unverifiable == {}
