"""A client's request nested deep — past the JSON reader's limit, or just within it, in any
field — gets what each simulated venue answers a malformed request, over a real socket, and
the connection goes on: a good subscription after it is answered as ever. Never a traceback
that ends the simulator's connection handler."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from marketlab.sim import SimExchange
from marketlab.sim.generate import generate_recording
from tests.conftest import START

PAST_LIMIT = 3000  # past orjson's (1024): the text is no JSON to the simulator
WITHIN_LIMIT = 1000  # JSON it reads, nested about as deep as Python's recursion goes


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def requests(shapes: list[str]) -> list[str]:
    """Deep nesting alone, never closed, and in each of ``shapes`` (``{}`` marks where)."""
    out = ["[" * PAST_LIMIT, nested(PAST_LIMIT), nested(WITHIN_LIMIT)]
    for depth in (WITHIN_LIMIT, PAST_LIMIT, 300):
        out += [s.replace("{}", nested(depth)) for s in shapes]
    return out


@pytest.fixture(scope="module")
def sim():
    """Message limits lifted: the requests here come faster than the venues allow."""
    with SimExchange(
        ["BTCUSDT"],
        speed=60,
        seed=9,
        start_time=START,
        message_limit=10_000,
        coinbase_ws_message_limit=10_000,
    ) as exchange:
        yield exchange


# venue → (path under ws_url, requests, the good request after them, is this its answer to the
# good request, is this its answer to a malformed request)
Check = Callable[[dict[str, Any]], bool]
FACES: dict[str, tuple[str, list[str], str, Check, Check]] = {
    "binance": (
        "/ws",
        requests(
            [
                '{"method":"SUBSCRIBE","params":{},"id":1}',
                '{"method":"SUBSCRIBE","params":["btcusdt@trade",{}],"id":1}',
                '{"method":{},"params":[],"id":1}',
                '{"method":"SUBSCRIBE","params":[],"id":{}}',
                '{"method":"SET_PROPERTY","params":["combined",{}],"id":1}',
                '{"x":{}}',
            ]
        ),
        '{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":7}',
        lambda m: m == {"result": None, "id": 7},
        lambda m: "code" in m and "msg" in m,
    ),
    "binance perpetual": (
        "/public/ws",
        requests(
            [
                '{"method":"SUBSCRIBE","params":["btcusdt@bookTicker",{}],"id":1}',
                '{"method":"SUBSCRIBE","params":[],"id":{}}',
            ]
        ),
        '{"method":"SUBSCRIBE","params":["btcusdt@bookTicker"],"id":7}',
        lambda m: m == {"result": None, "id": 7},
        lambda m: "code" in m and "msg" in m,
    ),
    "okx": (
        "/ws/v5/public",
        requests(
            [
                '{"op":"subscribe","args":{}}',
                '{"op":"subscribe","args":[{}]}',
                '{"op":"subscribe","args":[{"channel":"trades","instId":{}}]}',
                '{"op":"subscribe","args":[{"channel":{},"instId":"BTC-USDT"}]}',
                '{"op":"subscribe","args":[{"channel":"funding-rate","instId":{}}]}',
                '{"op":"subscribe","args":[{"channel":"liquidation-orders","instType":{}}]}',
                '{"op":{},"args":[]}',
                '{"op":"subscribe","id":{},"args":[{"channel":"trades","instId":"BTC-USDT"}]}',
            ]
        ),
        '{"op":"subscribe","args":[{"channel":"trades","instId":"BTC-USDT"}]}',
        lambda m: m.get("event") == "subscribe",
        lambda m: m.get("event") == "error",
    ),
    "bybit": (
        "/v5/public/spot",
        requests(
            [
                '{"op":"subscribe","args":{}}',
                '{"op":"subscribe","args":[{}]}',
                '{"op":"subscribe","args":["publicTrade.BTCUSDT"],"req_id":{}}',
                '{"op":{},"args":["publicTrade.BTCUSDT"]}',
                '{"op":"ping","req_id":{}}',
            ]
        ),
        '{"op":"subscribe","args":["publicTrade.BTCUSDT"],"req_id":"7"}',
        lambda m: m.get("success") is True and m.get("op") == "subscribe",
        lambda m: m.get("success") is False,
    ),
    "bybit perpetual": (
        "/v5/public/linear",
        requests(
            [
                '{"op":"subscribe","args":[{}]}',
                '{"op":"subscribe","args":["publicTrade.BTCUSDT"],"req_id":{}}',
                '{"op":{},"args":["publicTrade.BTCUSDT"]}',
                '{"op":"ping","req_id":{}}',
            ]
        ),
        '{"op":"subscribe","args":["publicTrade.BTCUSDT"],"req_id":"7"}',
        lambda m: m.get("success") is True and m.get("op") == "subscribe",
        lambda m: m.get("success") is False,
    ),
    "coinbase": (
        "/",
        requests(
            [
                '{"type":"subscribe","channel":"market_trades","product_ids":{}}',
                '{"type":"subscribe","channel":"market_trades","product_ids":[{}]}',
                '{"type":"subscribe","channel":{},"product_ids":["BTC-USDT"]}',
                '{"type":{},"channel":"market_trades","product_ids":["BTC-USDT"]}',
            ]
        ),
        '{"type":"subscribe","channel":"market_trades","product_ids":["BTC-USDT"]}',
        lambda m: m.get("channel") == "subscriptions",
        lambda m: m.get("type") == "error",
    ),
}


@pytest.mark.parametrize("venue", list(FACES))
def test_a_deeply_nested_request_is_answered_as_malformed_and_the_connection_goes_on(sim, venue):
    path, bad, good, is_good_answer, is_refusal = FACES[venue]

    async def answers(ws: aiohttp.ClientWebSocketResponse, until: Check) -> list[dict[str, Any]]:
        """Every JSON message up to the first ``until`` takes (data pushes skipped)."""
        seen: list[dict[str, Any]] = []
        while True:
            msg = await asyncio.wait_for(ws.receive(), 10)
            assert msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY), (
                f"{venue}: the connection ended ({msg.type}, {msg.data!r}) after {seen[-3:]}"
            )
            body = json.loads(msg.data)
            if isinstance(body, dict):
                seen.append(body)
                if until(body):
                    return seen

    async def run() -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(sim.ws_url + path, max_msg_size=0) as ws,
        ):
            for request in bad:
                await ws.send_str(request)
                await answers(ws, is_refusal)  # each answered as a malformed request
            await ws.send_str(good)
            await answers(ws, is_good_answer)

    asyncio.run(run())


def test_the_replay_face_ignores_deeply_nested_requests_and_answers_a_good_one(tmp_path):
    """The replaying simulator answers only SUBSCRIBE (it serves a recording): a request it
    cannot read, or a SUBSCRIBE of odd params, is passed over, never the end of its reader."""
    path = tmp_path / "gen.mlrec"
    generate_recording(str(path), ["BTCUSDT"], 20, seed=7, start_time=START)
    bad = [
        *requests(['{"method":"SUBSCRIBE","params":{},"id":1}']),
        '{"method":"SUBSCRIBE","params":5,"id":1}',
        '{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":' + nested(300) + "}",
    ]
    with SimExchange(["BTCUSDT"], seed=7, start_time=START, replay=str(path)) as sim:

        async def run() -> dict[str, Any]:
            async with (
                aiohttp.ClientSession() as session,
                session.ws_connect(sim.ws_url + "/ws", max_msg_size=0) as ws,
            ):
                for request in bad:
                    await ws.send_str(request)
                await ws.send_str('{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":7}')
                while True:
                    msg = await asyncio.wait_for(ws.receive(), 10)
                    assert msg.type == aiohttp.WSMsgType.TEXT, msg
                    body = json.loads(msg.data)
                    if body.get("id") == 7:
                        return body

        assert asyncio.run(run()) == {"result": None, "id": 7}
