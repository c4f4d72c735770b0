"""The Coinbase feed over real sockets against a small Coinbase double (an aiohttp server
answering as Coinbase's Advanced Trade documents): one channel a subscribe message with
``heartbeats`` first, the ``sequence_num`` chain checked, and a lost message (a gap in the
chain) answered by subscribing ``level2`` again for a fresh snapshot while the trade it held is
fetched over REST, so the book equals the venue's and the trade ids are whole.

(Faults of every kind, and klines end to end, are for the simulator's Coinbase face.)"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import msgspec
from aiohttp import WSMsgType, web

from marketlab.records import Trade
from marketlab.stream.config import FeedConfig
from marketlab.venues import coinbase as cb
from marketlab.venues.coinbase.feed import CoinbaseFeed

NOW = 1767225600000
STAMP = "2026-01-01T00:00:00.000000001Z"  # the envelopes' time (NOW)


def iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class CoinbaseDouble:
    """What the feed needs of Coinbase, for BTC-USD: the product list, the time, recent trades,
    and a WebSocket that numbers every message it sends, answers (un)subscriptions with a
    ``subscriptions`` message (and ``level2`` with a snapshot), and pushes a book update and a
    trade every 10 ms; the next message of a channel in ``lose`` is numbered but never sent."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.bids: dict[str, str] = {"100.00": "1"}
        self.asks: dict[str, str] = {"101.00": "1"}
        self.trades: list[dict[str, Any]] = []
        self.seq = -1
        self.lose: set[str] = set()  # channels of which the next message is lost
        self.paused = False
        self.pushed = 0
        self.subscribed: set[str] = set()
        self.refuse = 0  # level2 subscriptions to refuse, as Coinbase does: "failure to subscribe"

    async def rest(self, request: web.Request) -> web.Response:
        if request.path.endswith("/time"):
            return web.json_response({"epochMillis": str(NOW), "epochSeconds": str(NOW // 1000)})
        if request.path.endswith("/market/products"):
            row = {"product_id": "BTC-USD", "status": "online", "quote_increment": "0.01"}
            return web.json_response({"products": [row], "num_products": 1})
        if request.path.endswith("/market/products/BTC-USD/ticker"):
            limit = int(request.query["limit"])
            return web.json_response({"trades": self.trades[::-1][:limit]})
        return web.json_response({"error": "NOT_FOUND", "message": request.path}, status=404)

    async def send(self, ws: web.WebSocketResponse, channel: str, events: list[Any]) -> None:
        self.seq += 1
        if channel in self.lose:
            self.lose.discard(channel)
            return
        body = {"channel": channel, "timestamp": STAMP, "sequence_num": self.seq, "events": events}
        await ws.send_bytes(msgspec.json.encode(body))

    def snapshot(self) -> dict[str, Any]:
        rows = [("bid", p, q) for p, q in self.bids.items()]
        rows += [("offer", p, q) for p, q in self.asks.items()]
        updates = [
            {"side": s, "event_time": "1970-01-01T00:00:00Z", "price_level": p, "new_quantity": q}
            for s, p, q in rows
        ]
        return {"type": "snapshot", "product_id": "BTC-USD", "updates": updates}

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        pusher = asyncio.create_task(self._push(ws))
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                body = msgspec.json.decode(msg.data)
                self.requests.append(body)
                if self.refuse and body["channel"] == "level2" and body["type"] == "subscribe":
                    self.refuse -= 1
                    await ws.send_bytes(b'{"type":"error","message":"failure to subscribe"}')
                    continue
                if body["type"] == "subscribe":
                    self.subscribed.add(body["channel"])
                else:
                    self.subscribed.discard(body["channel"])
                await self.send(ws, "subscriptions", [{"subscriptions": {}}])
                if body["type"] == "subscribe" and body["channel"] == "level2":
                    await self.send(ws, "l2_data", [self.snapshot()])
        finally:
            pusher.cancel()
        return ws

    async def _push(self, ws: web.WebSocketResponse) -> None:
        n = 0
        while not ws.closed:
            await asyncio.sleep(0.01)
            if self.paused:
                continue
            n += 1
            price, side = (f"{99 - n % 50}.00", "bid") if n % 2 else (f"{102 + n % 50}.00", "offer")
            qty = "0" if n % 7 == 0 else f"{n % 5 + 1}"
            book = self.bids if side == "bid" else self.asks
            if qty == "0":
                book.pop(price, None)
            else:
                book[price] = qty
            level = {"side": side, "event_time": STAMP, "price_level": price, "new_quantity": qty}
            event = {"type": "update", "product_id": "BTC-USD", "updates": [level]}
            if "level2" in self.subscribed:
                await self.send(ws, "l2_data", [event])
            t = {
                "trade_id": str(1000 + n),
                "product_id": "BTC-USD",
                "price": "100.5",
                "size": "0.1",
                "side": "SELL",
                "time": iso(NOW + n),
            }
            self.trades.append(t)
            if "market_trades" in self.subscribed:
                await self.send(ws, "market_trades", [{"type": "update", "trades": [t]}])
            if "heartbeats" in self.subscribed:
                await self.send(ws, "heartbeats", [{"current_time": "", "heartbeat_counter": n}])
            self.pushed = n


def test_a_lost_message_resubscribes_the_book_and_its_trade_is_fetched_over_rest():
    async def run() -> tuple[CoinbaseDouble, CoinbaseFeed, list[Any], Any]:
        double = CoinbaseDouble()
        app = web.Application()
        app.router.add_get("/", double.websocket)
        app.router.add_get("/api/v3/brokerage/{tail:.*}", double.rest)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        got: list[tuple[Any, str]] = []
        config = FeedConfig(
            ws_url=cb.check_ws_url(f"ws://127.0.0.1:{port}"),
            rest_url=f"http://127.0.0.1:{port}",
            subscribe_per_second=5.0,
        )
        feed = CoinbaseFeed(
            ["BTCUSD"],
            [],
            ["book", "trades"],
            config,
            lambda rs, src: got.extend((r, src) for r in rs),
        )
        task = asyncio.create_task(feed.run())
        loop = asyncio.get_running_loop()
        try:
            deadline = loop.time() + 10
            while double.pushed < 20 or not feed.book_view("BTCUSD", 100).synced:
                assert loop.time() < deadline and not task.done(), "no book"
                await asyncio.sleep(0.02)
            double.lose = {"l2_data", "market_trades"}  # a book update and a trade
            while feed.resubscriptions == 0 or not feed.book_view("BTCUSD", 100).synced:
                assert loop.time() < deadline and not task.done(), "no resubscription"
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.2)
            double.paused = True
            await asyncio.sleep(0.3)
            view = feed.book_view("BTCUSD", 1000)
        finally:
            await feed.stop()
            await task
            await runner.cleanup()
        return double, feed, got, view

    double, feed, got, view = asyncio.run(run())
    assert feed.fatal is None and feed.bad_frames == 0
    kinds = [(r["type"], r["channel"]) for r in double.requests]
    assert kinds[:3] == [
        ("subscribe", "heartbeats"),
        ("subscribe", "market_trades"),
        ("subscribe", "level2"),
    ]
    assert ("unsubscribe", "level2") in kinds[3:] and kinds[-1] == ("subscribe", "level2")
    assert all(r.get("product_ids", ["BTC-USD"]) == ["BTC-USD"] for r in double.requests)
    assert feed.sequence_breaks == 1 and feed.tick_sizes == {"BTCUSD": 0.01}
    # the book equals the double's (levels as numbers, best first)
    assert view.synced and view.verified == "sequence_num chain"
    assert view.bids == sorted(((float(p), float(q)) for p, q in double.bids.items()), reverse=True)
    assert view.asks == sorted((float(p), float(q)) for p, q in double.asks.items())
    # every trade id once, the lost one from REST; on the taker's side (SELL is the maker's)
    trades = [(r, src) for r, src in got if isinstance(r, Trade)]
    ids = sorted(t.trade_id for t, _ in trades)
    assert ids == list(range(ids[0], 1000 + double.pushed + 1))  # each once, none missing
    assert all(t.side == "buy" for t, _ in trades)
    assert any(src == "rest" for _, src in trades)
    stats = feed.trade_stats.get("BTCUSD")  # (the break's recent trades may come first)
    assert stats is None or stats.lost == 0


def test_a_refused_subscription_is_sent_again_after_a_pause():
    async def run() -> tuple[CoinbaseDouble, CoinbaseFeed]:
        double = CoinbaseDouble()
        double.refuse = 1
        app = web.Application()
        app.router.add_get("/", double.websocket)
        app.router.add_get("/api/v3/brokerage/{tail:.*}", double.rest)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        config = FeedConfig(
            ws_url=f"ws://127.0.0.1:{port}",
            rest_url=f"http://127.0.0.1:{port}",
            subscribe_per_second=5.0,
            backoff_initial=0.05,
        )
        feed = CoinbaseFeed(["BTCUSD"], [], ["book"], config, lambda rs, src: None)
        task = asyncio.create_task(feed.run())
        loop = asyncio.get_running_loop()
        try:
            deadline = loop.time() + 10
            while not feed.book_view("BTCUSD", 10).synced:
                assert loop.time() < deadline and not task.done(), "never synced"
                await asyncio.sleep(0.02)
        finally:
            await feed.stop()
            await task
            await runner.cleanup()
        return double, feed

    double, feed = asyncio.run(run())
    assert feed.fatal is None and feed.venue_errors == 1
    kinds = [(r["type"], r["channel"]) for r in double.requests]
    assert kinds.count(("subscribe", "level2")) == 2  # refused, then taken
    assert kinds.count(("subscribe", "heartbeats")) == 2  # every channel went again
