"""The simulator's Bybit v5 spot face behaves as Bybit documents it (and as captures of the
venue show where the docs are silent): real sockets on loopback, an aiohttp client.

Expected values come from Bybit's docs and captures (`/work/research/bybit.md`), or from the
market itself through the simulator's own record (:meth:`SimExchange.book`), never from the
face under test."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from typing import Any

import aiohttp
import orjson
import pytest

from marketlab.sim import SimExchange
from tests.conftest import START
from tests.sim.conftest import recv, until

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
CLOSED = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)


def is_answer(msg: Any) -> bool:
    return isinstance(msg, dict) and "success" in msg


async def subscribe(
    ws: aiohttp.ClientWebSocketResponse, *topics: str, req_id: str | None = None
) -> Any:
    request: dict[str, Any] = {"op": "subscribe", "args": list(topics)}
    if req_id is not None:
        request["req_id"] = req_id
    await ws.send_str(orjson.dumps(request).decode())
    return await until(ws, is_answer)


async def get(http: aiohttp.ClientSession, sim: SimExchange, path: str, **params: Any) -> Any:
    async with http.get(f"{sim.rest_url}/v5/market/{path}", params=params) as r:
        assert r.status == 200
        return await r.json()


async def drain(ws: aiohttp.ClientWebSocketResponse, quiet: float = 0.5) -> list[Any]:
    """Everything still in flight, until nothing comes for ``quiet`` seconds."""
    out = []
    while True:
        try:
            out.append(await recv(ws, quiet))
        except TimeoutError:
            return out


class LocalBook:
    """A client's book from Bybit's snapshot and deltas: size "0" deletes, a snapshot replaces."""

    def __init__(self) -> None:
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self.u: int | None = None

    def apply(self, msg: Any) -> None:
        data = msg["data"]
        if msg["type"] == "snapshot":
            self.bids, self.asks = {}, {}
        for side, key in ((self.bids, "b"), (self.asks, "a")):
            for price, size in data[key]:
                if size == "0":
                    side.pop(float(price), None)
                else:
                    side[float(price)] = float(size)
        self.u = data["u"]

    def view(self) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        return sorted(self.bids.items(), reverse=True), sorted(self.asks.items())


# --- subscribing ---------------------------------------------------------------------------


async def test_subscribe_and_unsubscribe_are_answered_as_bybit_spot_does(face_sim, http):
    async with http.ws_connect(face_sim.bybit_ws_url) as ws:
        ack = await subscribe(ws, "publicTrade.BTCUSDT", req_id="sub-1")
        assert list(ack) == ["success", "ret_msg", "conn_id", "req_id", "op"]
        assert ack["success"] is True and ack["ret_msg"] == "subscribe"
        assert ack["op"] == "subscribe" and ack["req_id"] == "sub-1"
        assert UUID.fullmatch(ack["conn_id"])
        # no req_id sent: none in the answer (spot omits it)
        again = await subscribe(ws, "tickers.BTCUSDT")
        assert again == {
            "success": True,
            "ret_msg": "subscribe",
            "conn_id": ack["conn_id"],
            "op": "subscribe",
        }
        trade = await until(ws, lambda m: m.get("topic") == "publicTrade.BTCUSDT")
        assert trade["type"] == "snapshot" and isinstance(trade["data"], list)
        for t in trade["data"]:
            assert {"T", "s", "S", "v", "p", "i", "BT", "seq"} <= set(t) and "L" not in t
            assert t["s"] == "BTCUSDT" and t["S"] in ("Buy", "Sell") and t["BT"] is False
            assert re.fullmatch(r"[0-9]{19}", t["i"]) and isinstance(t["T"], int)
        ticker = await until(ws, lambda m: m.get("topic") == "tickers.BTCUSDT")
        assert ticker["type"] == "snapshot" and isinstance(ticker["cs"], int)
        assert "bid1Price" not in ticker["data"]  # spot WS tickers carry no bid/ask
        assert {"lastPrice", "highPrice24h", "volume24h", "usdIndexPrice"} <= set(ticker["data"])
        await ws.send_str(
            orjson.dumps(
                {"op": "unsubscribe", "args": ["publicTrade.BTCUSDT"], "req_id": "unsub"}
            ).decode()
        )
        answer = await until(ws, is_answer)
        assert answer == {
            "success": True,
            "ret_msg": "unsubscribe",
            "req_id": "unsub",
            "op": "unsubscribe",
        }
        after = [await recv(ws) for _ in range(20)]
        assert {m["topic"] for m in after} == {"tickers.BTCUSDT"}


@pytest.mark.parametrize(
    ("topic", "ret_msg"),
    [
        ("publicTrade.NOPEUSDT", "Invalid symbol :[publicTrade.NOPEUSDT]"),
        ("orderbook.50.btcusdt", "Invalid symbol :[orderbook.50.btcusdt]"),  # case-sensitive
        ("kline.7.BTCUSDT", "Invalid kline type :[kline.7.BTCUSDT]"),
        ("orderbook.500.BTCUSDT", None),  # no depth 500 on spot (and none since 2025 at all)
        ("orderbook.25.BTCUSDT", None),
        ("trade.BTCUSDT", None),
    ],
)
async def test_unknown_topics_and_symbols_are_refused_and_the_socket_stays(
    face_sim, http, topic, ret_msg
):
    async with http.ws_connect(face_sim.bybit_ws_url) as ws:
        answer = await subscribe(ws, topic, "tickers.ETHUSDT", req_id="r")
        assert answer["success"] is False and answer["op"] == "subscribe"
        assert answer["req_id"] == "r"
        if ret_msg is not None:
            assert answer["ret_msg"] == ret_msg
        else:
            assert topic in answer["ret_msg"]
        # the socket is still open and nothing was subscribed by the refused request
        await ws.send_str('{"op":"ping","req_id":"after"}')
        assert (await recv(ws))["ret_msg"] == "pong"
        with pytest.raises(TimeoutError):
            await recv(ws, 0.5)


async def test_more_than_ten_args_is_refused_and_ten_are_fine(face_sim, http):
    eleven = [
        "publicTrade.BTCUSDT",
        "tickers.BTCUSDT",
        "orderbook.1.BTCUSDT",
        "orderbook.50.BTCUSDT",
        "orderbook.200.BTCUSDT",
        "orderbook.1000.BTCUSDT",
        "kline.1.BTCUSDT",
        "kline.5.BTCUSDT",
        "kline.60.BTCUSDT",
        "kline.D.BTCUSDT",
        "kline.W.BTCUSDT",
    ]
    async with http.ws_connect(face_sim.bybit_ws_url) as ws:
        refused = await subscribe(ws, *eleven, req_id="big")
        assert refused["success"] is False and refused["ret_msg"] == "args size >10"
        accepted = await subscribe(ws, *eleven[:10], req_id="ten")
        assert accepted["success"] is True and accepted["req_id"] == "ten"
        seen: set[str] = set()
        while seen != set(eleven[:10]):
            seen.add((await until(ws, lambda m: "topic" in m))["topic"])


async def test_a_repeated_subscribe_gets_no_answer(face_sim, http):
    async with http.ws_connect(face_sim.bybit_ws_url) as ws:
        assert (await subscribe(ws, "tickers.BTCUSDT"))["success"] is True
        await ws.send_str('{"op":"subscribe","args":["tickers.BTCUSDT"],"req_id":"dup"}')
        await ws.send_str('{"op":"ping","req_id":"p"}')
        answer = await until(ws, is_answer)
        assert answer["ret_msg"] == "pong" and answer["req_id"] == "p"


async def test_undecodable_text_gets_an_answer_not_a_disconnect(face_sim, http):
    async with http.ws_connect(face_sim.bybit_ws_url) as ws:
        await ws.send_str("hello")
        answer = await recv(ws)
        assert answer["success"] is False
        assert answer["ret_msg"].startswith("Failed to decode incoming data")
        assert (await subscribe(ws, "tickers.BTCUSDT"))["success"] is True


# --- keepalive -----------------------------------------------------------------------------


async def test_ping_is_answered_with_bybit_spots_pong(face_sim, http):
    async with http.ws_connect(face_sim.bybit_ws_url) as ws:
        await ws.send_str('{"op":"ping","req_id":"100001"}')
        pong = await recv(ws)
        assert list(pong) == ["success", "ret_msg", "conn_id", "req_id", "op"]
        assert pong["success"] is True and pong["ret_msg"] == "pong" and pong["op"] == "ping"
        assert pong["req_id"] == "100001" and UUID.fullmatch(pong["conn_id"])
        await ws.send_str('{"op":"ping"}')
        assert await recv(ws) == {
            "success": True,
            "ret_msg": "pong",
            "conn_id": pong["conn_id"],
            "op": "ping",
        }


def test_production_defaults():
    """Bybit's documented numbers: a connection without pings is cut after 10 minutes, 600
    REST requests per 5 s per IP, and a 10-minute ban beyond."""
    sim = SimExchange(["BTCUSDT"])
    assert sim.bybit_idle_timeout == 600.0
    assert sim.bybit_rest_limit == 600
    assert sim.bybit_ban_seconds == 600.0


async def test_a_connection_that_stops_pinging_is_cut_one_that_pings_is_not(http):
    async with (
        SimExchange(
            ["BTCUSDT"], speed=10, start_time=START, history="5m", bybit_idle_timeout=1.0
        ) as sim,
        http.ws_connect(sim.bybit_ws_url) as silent,
        http.ws_connect(sim.bybit_ws_url) as polite,
    ):
        await subscribe(silent, "tickers.BTCUSDT")  # data flowing does not keep it open
        began = time.monotonic()
        closed_after = None
        while time.monotonic() - began < 4:
            await polite.send_str('{"op":"ping"}')
            assert (await until(polite, is_answer))["ret_msg"] == "pong"
            try:
                msg = await silent.receive(timeout=0.25)
            except TimeoutError:
                continue
            if msg.type in CLOSED:
                closed_after = time.monotonic() - began
                break
        assert closed_after is not None and 0.7 < closed_after < 3.0
        assert msg.type != aiohttp.WSMsgType.CLOSE  # cut, without a close frame
        assert not polite.closed
        await asyncio.sleep(0.6)
        await polite.send_str('{"op":"ping"}')
        assert (await until(polite, is_answer))["ret_msg"] == "pong"


# --- the book --------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [50, 200])
async def test_snapshot_then_a_u_chain_rebuilds_the_markets_book(face_sim, http, depth):
    topic = f"orderbook.{depth}.BTCUSDT"
    async with http.ws_connect(face_sim.bybit_ws_url) as ws:
        assert (await subscribe(ws, topic))["success"] is True
        first = await until(ws, lambda m: m.get("topic") == topic)
        assert first["type"] == "snapshot"
        assert list(first) == ["topic", "ts", "type", "data", "cts"]  # spot: ts before type
        book = LocalBook()
        book.apply(first)
        deltas = 0
        while deltas < 30:
            msg = await until(ws, lambda m: m.get("topic") == topic)
            assert msg["type"] == "delta" and msg["data"]["u"] == book.u + 1
            assert msg["data"]["s"] == "BTCUSDT" and isinstance(msg["data"]["seq"], int)
            assert msg["cts"] <= msg["ts"]
            book.apply(msg)
            assert len(book.bids) <= depth and len(book.asks) <= depth
            deltas += 1
        face_sim.pause()
        try:
            for msg in await drain(ws):
                assert msg["data"]["u"] == book.u + 1
                book.apply(msg)
            market = face_sim.book("BTCUSDT", depth, venue="bybit")
        finally:
            face_sim.resume()
        bids, asks = book.view()
        assert bids == market["bids"] and asks == market["asks"]
        assert len(bids) == depth and bids[0][0] < asks[0][0]


async def test_the_rest_book_carries_the_u_of_the_1000_level_stream(face_sim, http):
    topic = "orderbook.1000.ETHUSDT"
    async with http.ws_connect(face_sim.bybit_ws_url) as ws:
        await subscribe(ws, topic)
        book = LocalBook()
        book.apply(await until(ws, lambda m: m.get("topic") == topic))
        for _ in range(10):
            msg = await until(ws, lambda m: m.get("topic") == topic)
            assert msg["data"]["u"] == book.u + 1
            book.apply(msg)
        face_sim.pause()
        try:
            for msg in await drain(ws):
                book.apply(msg)
            rest = await get(
                http, face_sim, "orderbook", category="spot", symbol="ETHUSDT", limit=1000
            )
        finally:
            face_sim.resume()
    result = rest["result"]
    assert result["u"] == book.u
    bids, asks = book.view()
    assert [(float(p), float(q)) for p, q in result["b"]] == bids
    assert [(float(p), float(q)) for p, q in result["a"]] == asks


async def test_level_one_is_snapshot_only(face_sim, http):
    topic = "orderbook.1.ETHUSDT"
    async with http.ws_connect(face_sim.bybit_ws_url) as ws:
        await subscribe(ws, topic)
        msgs = [await until(ws, lambda m: m.get("topic") == topic) for _ in range(25)]
        assert all(m["type"] == "snapshot" for m in msgs)
        assert all(len(m["data"]["b"]) <= 1 and len(m["data"]["a"]) <= 1 for m in msgs)
        steps = {b["data"]["u"] - a["data"]["u"] for a, b in itertools.pairwise(msgs)}
        assert steps <= {0, 1}  # an unchanged top is sent again with the same u


async def test_lost_book_pushes_show_as_a_u_gap(face_sim, http):
    topic = "orderbook.50.BTCUSDT"
    async with http.ws_connect(face_sim.bybit_ws_url) as ws:
        await subscribe(ws, topic)
        prev = (await until(ws, lambda m: m.get("topic") == topic))["data"]["u"]
        face_sim.bybit.skip_books(2, "BTCUSDT")
        jumps = []
        for _ in range(20):
            u = (await until(ws, lambda m: m.get("topic") == topic))["data"]["u"]
            jumps.append(u - prev)
            prev = u
        assert sorted(jumps) == [1] * 19 + [3]


async def test_a_service_restart_sends_a_snapshot_with_u_one_that_replaces_the_book(face_sim, http):
    topic = "orderbook.50.ETHUSDT"
    async with http.ws_connect(face_sim.bybit_ws_url) as ws:
        await subscribe(ws, topic)
        book = LocalBook()
        book.apply(await until(ws, lambda m: m.get("topic") == topic))
        for _ in range(5):
            book.apply(await until(ws, lambda m: m.get("topic") == topic))
        rest_before = (await get(http, face_sim, "orderbook", category="spot", symbol="ETHUSDT"))[
            "result"
        ]["u"]
        face_sim.bybit.reset_books("ETHUSDT")
        reset = await until(ws, lambda m: m.get("topic") == topic and m["type"] == "snapshot")
        assert reset["data"]["u"] == 1
        book = LocalBook()  # a client that kept its old levels would now be wrong
        book.apply(reset)
        nxt = await until(ws, lambda m: m.get("topic") == topic)
        assert nxt["type"] == "delta" and nxt["data"]["u"] == 2
        book.apply(nxt)
        face_sim.pause()
        try:
            for msg in await drain(ws):
                assert msg["data"]["u"] == book.u + 1
                book.apply(msg)
            market = face_sim.book("ETHUSDT", 50, venue="bybit")
            rest_after = (
                await get(http, face_sim, "orderbook", category="spot", symbol="ETHUSDT")
            )["result"]["u"]
        finally:
            face_sim.resume()
        assert book.view() == (market["bids"], market["asks"])
        assert 1 <= rest_after < rest_before  # the REST book restarted with the service


# --- trades and candles ------------------------------------------------------------------------


async def test_trade_ids_jump_and_recent_trade_serves_the_same_trades(face_sim, http):
    topic = "publicTrade.BTCUSDT"
    async with http.ws_connect(face_sim.bybit_ws_url) as ws:
        await subscribe(ws, topic)
        pushed: list[Any] = []
        while len(pushed) < 15:
            pushed += (await until(ws, lambda m: m.get("topic") == topic))["data"]
    ids = [int(t["i"]) for t in pushed]
    assert all(b > a + 1 for a, b in itertools.pairwise(ids))  # increasing, never consecutive
    assert all(b["T"] >= a["T"] for a, b in itertools.pairwise(pushed))
    assert all(b["seq"] > a["seq"] for a, b in itertools.pairwise(pushed))
    body = await get(http, face_sim, "recent-trade", category="spot", symbol="BTCUSDT")
    listed = body["result"]["list"]
    assert body["retCode"] == 0 and len(listed) == 60  # spot's default and maximum
    times = [int(t["time"]) for t in listed]
    assert times == sorted(times, reverse=True)  # newest first
    by_id = {t["execId"]: t for t in listed}
    common = [t for t in pushed if t["i"] in by_id]
    assert common, "the REST list reaches back to the pushed trades"
    for t in common:
        r = by_id[t["i"]]
        assert (r["price"], r["size"], r["side"], r["time"]) == (
            t["p"],
            t["v"],
            t["S"],
            str(t["T"]),
        )
        assert r["seq"] == str(t["seq"])
    too_many = await get(
        http, face_sim, "recent-trade", category="spot", symbol="BTCUSDT", limit=61
    )
    assert too_many["retCode"] == 10001


async def test_a_closing_kline_is_confirmed_and_equals_the_rest_candle(face_sim, http):
    topic = "kline.1.BTCUSDT"
    async with http.ws_connect(face_sim.bybit_ws_url) as ws:
        await subscribe(ws, topic)
        msg = await until(ws, lambda m: m.get("topic") == topic and m["data"][0]["confirm"])
    assert list(msg) == ["type", "topic", "data", "ts"]
    (candle,) = msg["data"]
    assert candle["interval"] == "1" and candle["end"] == candle["start"] + 59_999
    body = await get(
        http,
        face_sim,
        "kline",
        category="spot",
        symbol="BTCUSDT",
        interval="1",
        start=candle["start"],
        end=candle["start"],
        limit=1,
    )
    (row,) = body["result"]["list"]
    assert row == [
        str(candle["start"]),
        candle["open"],
        candle["high"],
        candle["low"],
        candle["close"],
        candle["volume"],
        candle["turnover"],
    ]


# --- REST ----------------------------------------------------------------------------------


async def test_rest_envelopes_and_results(face_sim, http):
    t = await get(http, face_sim, "time")
    assert list(t) == ["retCode", "retMsg", "result", "retExtInfo", "time"]
    assert t["retCode"] == 0 and t["retExtInfo"] == {} and t["time"] >= START
    assert int(t["result"]["timeSecond"]) == int(t["result"]["timeNano"]) // 10**9
    info = await get(http, face_sim, "instruments-info", category="spot")
    assert [i["symbol"] for i in info["result"]["list"]] == ["BTCUSDT", "ETHUSDT"]
    assert "nextPageCursor" not in info["result"]  # spot is not paged
    btc = info["result"]["list"][0]
    assert btc["priceFilter"]["tickSize"] == "0.01" and btc["status"] == "Trading"
    unknown = await get(http, face_sim, "instruments-info", category="spot", symbol="NOPEUSDT")
    assert unknown["retCode"] == 0 and unknown["result"]["list"] == []
    await asyncio.sleep(0.3)  # into the first new minute, so an open candle exists
    face_sim.pause()
    try:
        now = (await get(http, face_sim, "time"))["time"]
        rows = (
            await get(http, face_sim, "kline", category="spot", symbol="ETHUSDT", interval="1")
        )["result"]["list"]
        assert 31 <= len(rows) <= 200  # 30 minutes of history, then more: 200 by default
        starts = [int(r[0]) for r in rows]
        assert starts == sorted(starts, reverse=True) and starts[0] <= now < starts[0] + 60_000
        assert all(a - b == 60_000 for a, b in itertools.pairwise(starts))
        assert all(len(r) == 7 and all(isinstance(x, str) for x in r) for r in rows)
        window = (
            await get(
                http,
                face_sim,
                "kline",
                category="spot",
                symbol="ETHUSDT",
                interval="1",
                start=starts[-1],
                limit=5,
            )
        )["result"]["list"]
        assert [int(r[0]) for r in window] == starts[-5:]  # the oldest five from start
        book = (await get(http, face_sim, "orderbook", category="spot", symbol="ETHUSDT"))["result"]
        assert len(book["b"]) == len(book["a"]) == 1  # spot's default depth
        deep = (
            await get(http, face_sim, "orderbook", category="spot", symbol="ETHUSDT", limit=200)
        )["result"]
        market = face_sim.book("ETHUSDT", 200, venue="bybit")
        assert [(float(p), float(q)) for p, q in deep["b"]] == market["bids"]
        assert [(float(p), float(q)) for p, q in deep["a"]] == market["asks"]
        assert {"s", "b", "a", "ts", "u", "seq", "cts"} <= set(deep)
        tick = (await get(http, face_sim, "tickers", category="spot", symbol="ETHUSDT"))["result"][
            "list"
        ][0]
        assert float(tick["bid1Price"]) == market["bids"][0][0]
        assert float(tick["ask1Price"]) == market["asks"][0][0]
    finally:
        face_sim.resume()


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("kline", {"category": "spot", "symbol": "NOPEUSDT", "interval": "1"}),
        ("kline", {"category": "spot", "symbol": "BTCUSDT", "interval": "7"}),
        ("kline", {"category": "spot", "symbol": "BTCUSDT", "interval": "1m"}),
        ("kline", {"category": "spot", "symbol": "BTCUSDT", "interval": "1", "limit": "1001"}),
        ("kline", {"category": "inverse", "symbol": "BTCUSDT", "interval": "1"}),  # no inverse
        ("orderbook", {"category": "spot", "symbol": "btcusdt"}),
        ("orderbook", {"category": "spot", "symbol": "BTCUSDT", "limit": "1001"}),
        ("orderbook", {"symbol": "BTCUSDT"}),
        ("recent-trade", {"category": "spot"}),
        ("tickers", {"category": "spot", "symbol": "NOPEUSDT"}),
        ("instruments-info", {}),
    ],
)
async def test_rest_errors_are_http_200_with_a_non_zero_ret_code(face_sim, http, path, params):
    body = await get(http, face_sim, path, **params)
    assert body["retCode"] == 10001 and body["retMsg"]
    assert list(body) == ["retCode", "retMsg", "result", "retExtInfo", "time"]


async def test_past_the_ip_limit_rest_answers_403_until_the_ban_ends(http):
    async with SimExchange(
        ["BTCUSDT"],
        speed=10,
        start_time=START,
        history="5m",
        bybit_rest_limit=40,
        bybit_ban_seconds=1.0,
    ) as sim:
        url = f"{sim.rest_url}/v5/market/time"

        async def status() -> int:
            async with http.get(url) as r:
                await r.read()
                return r.status

        statuses = await asyncio.gather(*(status() for _ in range(40)))
        assert set(statuses) == {200}
        banned_at = time.monotonic()
        assert await status() == 403
        async with http.get(url) as r:
            assert r.status == 403 and r.content_type != "application/json"
        await asyncio.sleep(max(0.0, banned_at + 1.1 - time.monotonic()))
        assert await status() == 200


# --- faults --------------------------------------------------------------------------------


async def test_a_drop_cuts_connections_without_a_close_frame(face_sim, http):
    async with http.ws_connect(face_sim.bybit_ws_url) as ws:
        await subscribe(ws, "publicTrade.BTCUSDT")
        assert face_sim.bybit.drop() == 1
        while True:
            msg = await ws.receive(timeout=5)
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
        assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)


async def test_faults_reach_a_simulator_running_in_its_own_thread(http):
    """A test beside a threaded simulator (``with SimExchange(...)``) calls the faults from
    its own thread: they run on the simulator's loop."""
    sim = SimExchange(["BTCUSDT"], speed=60, start_time=START, history="5m").start_in_thread()
    try:
        async with http.ws_connect(sim.bybit_ws_url) as ws:
            await subscribe(ws, "orderbook.50.BTCUSDT")
            await until(ws, lambda m: m.get("topic") == "orderbook.50.BTCUSDT")
            sim.bybit.reset_books("BTCUSDT")
            reset = await until(ws, lambda m: m.get("type") == "snapshot")
            assert reset["data"]["u"] == 1
            assert sim.bybit.drop() == 1
            while (await ws.receive(timeout=5)).type == aiohttp.WSMsgType.TEXT:
                pass
    finally:
        sim.close()


async def test_a_garbage_frame_arrives_and_the_stream_goes_on(face_sim, http):
    async with http.ws_connect(face_sim.bybit_ws_url) as ws:
        await subscribe(ws, "orderbook.50.BTCUSDT")
        await until(ws, lambda m: m.get("topic") == "orderbook.50.BTCUSDT")
        assert face_sim.bybit.send_malformed("garbage") == 1
        bad = good_after = 0
        while not good_after:
            msg = await ws.receive(timeout=5)
            try:
                ok = orjson.loads(msg.data)["topic"] == "orderbook.50.BTCUSDT"
            except orjson.JSONDecodeError:
                ok = False
            bad += not ok
            good_after = int(ok and bad > 0)
        assert bad == 1


async def test_an_outage_cuts_and_refuses_everything_until_it_ends(face_sim, http):
    async with http.ws_connect(face_sim.bybit_ws_url) as ws:
        await subscribe(ws, "tickers.BTCUSDT")
        assert face_sim.bybit.outage(1.0) == 1
        while (await ws.receive(timeout=5)).type == aiohttp.WSMsgType.TEXT:
            pass
    began = time.monotonic()
    with pytest.raises(aiohttp.ClientError):
        async with http.ws_connect(face_sim.bybit_ws_url):
            pass
    with pytest.raises(aiohttp.ClientError):
        await get(http, face_sim, "time")
    await asyncio.sleep(max(0.0, began + 1.1 - time.monotonic()))
    assert (await get(http, face_sim, "time"))["retCode"] == 0
    async with http.ws_connect(face_sim.bybit_ws_url) as ws:
        assert (await subscribe(ws, "tickers.BTCUSDT"))["success"] is True
