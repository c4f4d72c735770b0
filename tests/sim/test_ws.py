"""The simulator's WebSocket streams: protocol, limits and injected faults."""

import asyncio
import time

import aiohttp
import orjson
import pytest
import websockets
from websockets.asyncio.client import connect

from marketlab.sim import SimExchange


async def recv_json(ws, timeout: float = 5.0):
    return orjson.loads(await asyncio.wait_for(ws.recv(), timeout))


async def until(ws, predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = await recv_json(ws, deadline - time.monotonic())
        if predicate(msg):
            return msg
    raise AssertionError("no matching message")


async def test_combined_streams_are_wrapped_and_raw_streams_are_bare(sim):
    async with connect(f"{sim.ws_url}/stream?streams=btcusdt@trade/ethusdt@depth@100ms") as ws:
        seen = set()
        while seen != {"btcusdt@trade", "ethusdt@depth@100ms"}:
            msg = await recv_json(ws)
            seen.add(msg["stream"])
            assert msg["data"]["s"] == msg["stream"].split("@")[0].upper()
    async with connect(f"{sim.ws_url}/ws/ethusdt@bookTicker") as ws:
        msg = await recv_json(ws)
        assert msg["s"] == "ETHUSDT" and float(msg["b"]) < float(msg["a"]) and "stream" not in msg


async def test_subscribe_list_and_unsubscribe(sim):
    async with connect(f"{sim.ws_url}/ws") as ws:
        await ws.send(
            orjson.dumps(
                {"method": "SUBSCRIBE", "params": ["btcusdt@trade", "btcusdt@kline_1m"], "id": 1}
            ).decode()
        )
        assert await until(ws, lambda m: m.get("id") == 1) == {"result": None, "id": 1}
        await until(ws, lambda m: m.get("e") == "trade")
        await asyncio.sleep(0.6)  # stay under 5 messages a second
        await ws.send(orjson.dumps({"method": "LIST_SUBSCRIPTIONS", "id": "q1"}).decode())
        listed = await until(ws, lambda m: m.get("id") == "q1")
        assert listed["result"] == ["btcusdt@trade", "btcusdt@kline_1m"]
        await asyncio.sleep(0.6)
        await ws.send(
            orjson.dumps({"method": "UNSUBSCRIBE", "params": ["btcusdt@trade"], "id": 3}).decode()
        )
        await until(ws, lambda m: m.get("id") == 3)
        # after the answer, no trade arrives any more, klines still do
        kinds = set()
        end = time.monotonic() + 2.5
        while time.monotonic() < end:
            kinds.add((await recv_json(ws)).get("e"))
        assert kinds == {"kline"}


@pytest.mark.parametrize(
    ("message", "code", "text"),
    [
        (b"{not json", 3, "Invalid JSON"),
        (
            orjson.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 1, "extra": 1}),
            0,
            "Unknown property",
        ),
        (
            orjson.dumps({"method": "SUBSCRIBE", "params": "btcusdt@trade", "id": 1}),
            1,
            "Invalid value type",
        ),
        (
            orjson.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 1.5}),
            1,
            "Invalid value type",
        ),
        (
            orjson.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@candles"], "id": 1}),
            2,
            "Invalid request",
        ),
        (orjson.dumps({"method": "EXPLODE", "params": [], "id": 1}), 2, "Invalid request"),
    ],
)
async def test_bad_control_messages_get_error_answers_not_a_disconnect(sim, message, code, text):
    async with connect(f"{sim.ws_url}/ws") as ws:
        await ws.send(message.decode())
        answer = await recv_json(ws)
        assert answer["code"] == code and text in answer["msg"]
        await asyncio.sleep(0.3)
        await ws.send(orjson.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 9}).decode())
        assert (await recv_json(ws)) == {"result": [], "id": 9}


async def test_more_than_1024_streams_is_refused(sim):
    async with connect(f"{sim.ws_url}/ws") as ws:
        params = [f"s{i}usdt@trade" for i in range(1025)]
        await ws.send(orjson.dumps({"method": "SUBSCRIBE", "params": params, "id": 4}).decode())
        answer = await recv_json(ws)
        assert answer["code"] == 2 and "1024" in answer["msg"]


async def test_more_than_five_messages_a_second_drops_the_connection(sim):
    async with connect(f"{sim.ws_url}/ws") as ws:
        for i in range(6):
            await ws.send(orjson.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}).decode())
        with pytest.raises(websockets.ConnectionClosed) as info:
            for _ in range(10):
                await recv_json(ws)
        assert info.value.rcvd.code == 1008 and "Too many requests" in info.value.rcvd.reason


async def test_five_messages_a_second_paced_out_are_fine(sim):
    async with connect(f"{sim.ws_url}/ws") as ws:
        for i in range(8):
            await ws.send(orjson.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}).decode())
            await asyncio.sleep(0.3)
        ids = set()
        while len(ids) < 8:
            ids.add((await recv_json(ws))["id"])


async def test_a_client_that_never_pongs_is_disconnected_one_that_does_is_not():
    async with (
        SimExchange(["BTCUSDT"], speed=10, ping_interval=0.4, pong_timeout=1.2) as sim,
        aiohttp.ClientSession() as s,
    ):
        silent = await s.ws_connect(f"{sim.ws_url}/ws", autoping=False)
        wrong = await s.ws_connect(f"{sim.ws_url}/ws", autoping=False)
        async with connect(f"{sim.ws_url}/ws") as polite:  # websockets answers pings itself
            pings = 0
            began = time.monotonic()
            closed_after = None
            while time.monotonic() - began < 4:
                msg = await silent.receive(timeout=4)
                if msg.type == aiohttp.WSMsgType.PING:
                    pings += 1
                    await wrong.pong(b"not-the-payload")  # unsolicited pongs do not count
                elif msg.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSED,
                    aiohttp.WSMsgType.CLOSING,
                ):
                    closed_after = time.monotonic() - began
                    break
            assert pings >= 1
            assert closed_after is not None and 1.0 < closed_after < 3.5
            assert silent.close_code == 1008
            msg = await wrong.receive(timeout=4)
            while msg.type == aiohttp.WSMsgType.PING:
                msg = await wrong.receive(timeout=4)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            await polite.send(orjson.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 1}).decode())
            assert await recv_json(polite) == {"result": [], "id": 1}
        await silent.close()
        await wrong.close()


async def test_connections_are_closed_at_their_maximum_age():
    async with (
        SimExchange(["BTCUSDT"], speed=10, max_connection_age=1.0) as sim,
        connect(f"{sim.ws_url}/stream?streams=btcusdt@trade") as ws,
    ):
        began = time.monotonic()
        with pytest.raises(websockets.ConnectionClosedOK):
            while True:
                await recv_json(ws)
        assert 0.9 < time.monotonic() - began < 3


async def test_drop_cuts_connections_without_a_close_frame(fresh_sim):
    async with connect(f"{fresh_sim.ws_url}/stream?streams=btcusdt@trade") as ws:
        await recv_json(ws)
        assert fresh_sim.drop_connections() == 1
        with pytest.raises(websockets.ConnectionClosedError) as info:
            while True:
                await recv_json(ws)
        assert info.value.rcvd is None  # no close frame came


async def test_stall_goes_silent_without_closing(fresh_sim):
    async with connect(f"{fresh_sim.ws_url}/stream?streams=btcusdt@depth@100ms") as ws:
        await recv_json(ws)
        fresh_sim.stall(1.5)
        await asyncio.sleep(0.1)
        while True:  # drain what was in flight
            try:
                await asyncio.wait_for(ws.recv(), 0.3)
            except TimeoutError:
                break
        began = time.monotonic()
        await recv_json(ws, timeout=5)
        assert time.monotonic() - began > 0.8
        assert ws.state is websockets.State.OPEN


async def test_skipped_depth_updates_show_as_an_id_gap(fresh_sim):
    async with connect(f"{fresh_sim.ws_url}/stream?streams=btcusdt@depth") as ws:
        prev = (await recv_json(ws))["data"]["u"]
        fresh_sim.skip_depth_updates(2)
        gaps = 0
        for _ in range(20):
            d = (await recv_json(ws))["data"]
            if d["U"] != prev + 1:
                gaps += 1
            prev = d["u"]
        assert gaps == 1


@pytest.mark.parametrize("kind", ["truncated", "garbage", "bad_field", "unknown_event"])
async def test_malformed_frames_arrive_and_the_stream_goes_on(fresh_sim, kind):
    async with connect(f"{fresh_sim.ws_url}/stream?streams=btcusdt@trade") as ws:
        await recv_json(ws)
        fresh_sim.send_malformed(kind)
        bad = 0
        # frames queued before the fault come first (many, on a loaded machine); then the one
        # bad frame, then good ones again
        for _ in range(2000):
            raw = await asyncio.wait_for(ws.recv(), 5)
            try:
                msg = orjson.loads(raw)
                ok = msg.get("data", {}).get("e") == "trade" and isinstance(
                    msg["data"].get("t"), int
                )
            except (orjson.JSONDecodeError, AttributeError):
                ok = False
            bad += not ok
            if bad and ok:
                break
        assert bad == 1


async def test_refused_connections_then_accepted(fresh_sim):
    fresh_sim.refuse_connections(1.0)
    with pytest.raises((OSError, websockets.InvalidHandshake, websockets.ConnectionClosed)):
        async with connect(f"{fresh_sim.ws_url}/ws", open_timeout=3):
            pass
    await asyncio.sleep(1.1)
    async with connect(f"{fresh_sim.ws_url}/ws", open_timeout=3) as ws:
        assert ws.state is websockets.State.OPEN


async def test_server_shutdown_is_announced_then_the_connection_closes(fresh_sim):
    async with connect(f"{fresh_sim.ws_url}/stream?streams=btcusdt@trade") as ws:
        await recv_json(ws)
        fresh_sim.server_shutdown()
        notice = await until(ws, lambda m: m.get("data", {}).get("e") == "serverShutdown")
        assert isinstance(notice["data"]["E"], int)
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await recv_json(ws)


async def test_paused_exchange_sends_no_market_data(fresh_sim):
    async with connect(f"{fresh_sim.ws_url}/stream?streams=btcusdt@depth") as ws:
        await recv_json(ws)
        fresh_sim.pause()
        await asyncio.sleep(0.2)
        while True:
            try:
                await asyncio.wait_for(ws.recv(), 0.3)
            except TimeoutError:
                break
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.8)
        fresh_sim.resume()
        await recv_json(ws)
