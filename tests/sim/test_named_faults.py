"""Named faults reach every venue that has them (``inject``, the control endpoint, the CLI and
the schedule), and each venue shows them its own way to a real client on loopback: Bybit's
``u`` and Coinbase's ``sequence_num`` jump, REST faults come in the venue's envelope, a refusal
or stall of one venue leaves the others alone."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import aiohttp
import orjson
import pytest

from marketlab.cli.main import main as cli_main
from marketlab.sim import SimExchange, parse_fault_schedule
from marketlab.sim.faults import FAULT_NAMES, VENUES, fault_venues, venue_of_path, venues_of
from tests.conftest import START
from tests.sim.conftest import recv

CUT = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)


@pytest.fixture
def sim(face_sim: SimExchange) -> SimExchange:
    return face_sim


async def quiet_for(ws: aiohttp.ClientWebSocketResponse, seconds: float) -> list[Any]:
    """Everything that arrives in the next ``seconds``."""
    out, deadline = [], time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            msg = await ws.receive(timeout=left)
        except TimeoutError:
            break
        out.append(msg)
    return out


async def bybit_book(
    http: aiohttp.ClientSession, sim: SimExchange
) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(sim.bybit_ws_url)
    await ws.send_str(orjson.dumps({"op": "subscribe", "args": ["orderbook.50.BTCUSDT"]}).decode())
    return ws


async def coinbase_level2(
    http: aiohttp.ClientSession, sim: SimExchange
) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(sim.coinbase_ws_url)
    request = {"type": "subscribe", "channel": "level2", "product_ids": ["BTC-USDT"]}
    await ws.send_str(orjson.dumps(request).decode())
    return ws


async def fault(http: aiohttp.ClientSession, sim: SimExchange, name: str, **query: str) -> Any:
    async with http.post(f"{sim.rest_url}/sim/v1/faults/{name}", params=query) as r:
        return r.status, await r.json()


async def book_us(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    while len(out) < count:
        msg = await recv(ws)
        if msg.get("topic", "").startswith("orderbook."):
            out.append((msg["type"], msg["data"]["u"]))
    return out


# --- which venue has what --------------------------------------------------------------------


def test_every_venue_and_its_paths():
    assert venues_of(None) == VENUES == ("binance", "okx", "bybit", "coinbase")
    assert venue_of_path("/api/v3/klines") == "binance"
    assert venue_of_path("/stream") == "binance"
    assert venue_of_path("/ws/btcusdt@trade") == "binance"
    assert venue_of_path("/ws/v5/public") == "okx"
    assert venue_of_path("/api/v5/market/candles") == "okx"
    assert venue_of_path("/v5/public/spot") == "bybit"
    assert venue_of_path("/v5/market/kline") == "bybit"
    assert venue_of_path("/") == "coinbase"
    assert venue_of_path("/api/v3/brokerage/market/products") == "coinbase"
    for name in ("drop", "stall", "gap", "malformed", "rest429", "refuse", "outage", "shutdown"):
        assert fault_venues(name, None) == VENUES
    assert "rest403" in FAULT_NAMES and "outage" in FAULT_NAMES
    assert fault_venues("seqreset", None) == ("okx", "bybit")


@pytest.mark.parametrize(
    ("name", "venue", "says"),
    [
        ("checksum", "bybit", "only okx has it"),
        ("heartbeat", "coinbase", "only okx has it"),
        ("seqreset", "coinbase", "only okx, bybit have it"),
        ("rest418", "bybit", "only binance, okx have it"),
        ("rest403", "binance", "only bybit has it"),
        ("pause", "okx", "no venue's"),
        ("drop", "kraken", "unknown venue"),
        ("explode", None, "unknown fault"),
    ],
)
async def test_a_fault_a_venue_has_not_is_refused_saying_who_has_it(sim, name, venue, says):
    with pytest.raises(ValueError, match=says):
        sim.inject(name, venue=venue)


async def test_a_malformed_kind_a_venue_lacks_names_the_kinds_it_has(sim, http):
    with pytest.raises(ValueError, match="garbage, truncated, new_channel"):
        sim.inject("malformed", "bad_field", venue="coinbase")
    with pytest.raises(ValueError, match="unknown malformed kind 'nonsense'"):
        sim.inject("malformed", "nonsense")
    status, body = await fault(http, sim, "malformed", arg="nan_price", venue="coinbase")
    assert status == 400 and "new_channel" in body["error"]


def test_the_schedule_takes_a_venue():
    faults = parse_fault_schedule("drop@30,bybit.gap@60:3,coinbase.outage@90:5")
    assert [(f.at, f.name, f.arg, f.venue) for f in faults] == [
        (30, "drop", None, None),
        (60, "gap", "3", "bybit"),
        (90, "outage", "5", "coinbase"),
    ]
    with pytest.raises(ValueError, match="only okx has it"):
        parse_fault_schedule("bybit.checksum@10")


# --- gap -------------------------------------------------------------------------------------


async def test_gap_on_bybit_makes_u_jump(sim, http):
    """The next two book pushes are lost, of whichever symbols change first."""
    topics = ["orderbook.50.BTCUSDT", "orderbook.50.ETHUSDT"]
    async with http.ws_connect(sim.bybit_ws_url) as ws:
        await ws.send_str(orjson.dumps({"op": "subscribe", "args": topics}).decode())
        seen: dict[str, list[int]] = {t: [] for t in topics}
        while min(map(len, seen.values())) < 2:
            msg = await recv(ws)
            if msg.get("topic") in seen:
                seen[msg["topic"]].append(msg["data"]["u"])
        sim.inject("gap", "2", venue="bybit")
        while min(map(len, seen.values())) < 40:
            msg = await recv(ws)
            if msg.get("topic") in seen:
                seen[msg["topic"]].append(msg["data"]["u"])
    jumps = [b - a for us in seen.values() for a, b in itertools.pairwise(us)]
    assert min(jumps) == 1 and sum(j - 1 for j in jumps) == 2


async def test_gap_on_coinbase_through_the_endpoint_makes_sequence_num_jump(sim, http):
    async with await coinbase_level2(http, sim) as ws:
        seqs = [(await recv(ws))["sequence_num"] for _ in range(3)]
        assert await fault(http, sim, "gap", arg="3", venue="coinbase") == (
            200,
            {"ok": True, "fault": "gap"},
        )
        while len(seqs) < 2000 and all(b - a == 1 for a, b in itertools.pairwise(seqs)):
            seqs.append((await recv(ws))["sequence_num"])
        seqs += [(await recv(ws))["sequence_num"] for _ in range(5)]
    jumps = [b - a for a, b in itertools.pairwise(seqs)]
    assert sorted(jumps) == [1] * (len(jumps) - 1) + [4]


async def test_seqreset_on_bybit_sends_a_snapshot_with_u_1(sim, http):
    async with await bybit_book(http, sim) as ws:
        await book_us(ws, 2)
        status, _ = await fault(http, sim, "seqreset", venue="bybit")
        assert status == 200
        seen = await book_us(ws, 30)
    at = seen.index(("snapshot", 1))
    assert [u for _, u in seen[at:]] == list(range(1, len(seen) - at + 1))


# --- REST in each venue's envelope -----------------------------------------------------------


async def test_rest_faults_on_bybit_come_in_its_envelope(sim, http):
    url = f"{sim.rest_url}/v5/market/time"
    sim.inject("rest429", "1", venue="bybit")
    async with http.get(url) as r:
        body = await r.json()
        assert r.status == 200 and body["retCode"] == 10006
        assert body["retMsg"] == "Too many visits!" and body["result"] == {}
    async with http.get(url) as r:
        assert r.status == 200 and (await r.json())["retCode"] == 0
    assert (await fault(http, sim, "rest500", venue="bybit"))[0] == 200
    async with http.get(url) as r:
        assert r.status == 500 and (await r.json())["retCode"] == 10016
    sim.inject("rest403", "1", venue="bybit")  # Bybit's IP ban, for a second
    async with http.get(url) as r:
        assert r.status == 403 and "access too frequent" in await r.text()
    async with http.get(f"{sim.rest_url}/api/v3/time") as r:  # Binance is not banned
        assert r.status == 200
    await asyncio.sleep(1.1)
    async with http.get(url) as r:
        assert r.status == 200 and (await r.json())["retCode"] == 0


async def test_rest_faults_on_coinbase_come_in_its_envelope(sim, http):
    url = f"{sim.rest_url}/api/v3/brokerage/time"
    assert (await fault(http, sim, "rest429", arg="2", venue="coinbase"))[0] == 200
    for _ in range(2):
        async with http.get(url) as r:
            assert r.status == 429 and (await r.json())["error"] == "RESOURCE_EXHAUSTED"
    sim.inject("rest503", venue="coinbase")
    async with http.get(url) as r:
        assert r.status == 503 and (await r.json())["error"] == "UNAVAILABLE"
    async with http.get(url) as r:
        assert r.status == 200 and "epochMillis" in await r.json()


async def test_rest429_without_a_venue_hits_all_four_in_their_own_ways(sim, http):
    sim.inject("rest429")
    base = sim.rest_url
    async with http.get(f"{base}/api/v3/time") as r:
        assert r.status == 429 and (await r.json())["code"] == -1003
    async with http.get(f"{base}/api/v5/public/time") as r:
        assert r.status == 429 and (await r.json())["code"] == "50011"
    async with http.get(f"{base}/v5/market/time") as r:
        assert (await r.json())["retCode"] == 10006
    async with http.get(f"{base}/api/v3/brokerage/time") as r:
        assert r.status == 429


# --- connections -----------------------------------------------------------------------------


async def test_refuse_on_one_venue_refuses_its_connections_only(sim, http):
    sim.inject("refuse", "1.5", venue="bybit")
    with pytest.raises(aiohttp.ClientError):
        await http.ws_connect(sim.bybit_ws_url)
    async with http.ws_connect(sim.coinbase_ws_url), http.ws_connect(f"{sim.ws_url}/ws"):
        pass
    async with http.get(f"{sim.rest_url}/v5/market/time") as r:  # REST stays up (no rest=True)
        assert r.status == 200
    assert (await fault(http, sim, "refuse", arg="1.5", venue="coinbase"))[0] == 200
    with pytest.raises(aiohttp.ClientError):
        await http.ws_connect(sim.coinbase_ws_url)
    await asyncio.sleep(1.6)
    async with http.ws_connect(sim.bybit_ws_url), http.ws_connect(sim.coinbase_ws_url):
        pass


async def test_drop_cuts_bybit_and_coinbase_without_a_close_frame(sim, http):
    async with await bybit_book(http, sim) as by, await coinbase_level2(http, sim) as cb:
        await recv(by)
        await recv(cb)
        sim.inject("drop", venue="bybit")
        by_msgs = await quiet_for(by, 1.0)
        assert by_msgs and by_msgs[-1].type in CUT and by.close_code != 1000
        assert "sequence_num" in await recv(cb)  # Coinbase untouched
        assert (await fault(http, sim, "drop", venue="coinbase"))[0] == 200
        cb_msgs = await quiet_for(cb, 1.0)
        assert cb_msgs and cb_msgs[-1].type in CUT


async def test_stall_silences_one_venue_then_it_speaks_again(sim, http):
    async with await bybit_book(http, sim) as by, await coinbase_level2(http, sim) as cb:
        await book_us(by, 2)
        await recv(cb)
        sim.inject("stall", "1.5", venue="bybit")
        await quiet_for(by, 0.2)  # what was in flight before the stall
        assert await quiet_for(by, 1.0) == []
        assert "sequence_num" in await recv(cb)
        await asyncio.sleep(0.5)
        assert await book_us(by, 1)  # back, with a gap in u (what the stall lost is gone)
        sim.inject("stall", "1.5", venue="coinbase")
        await quiet_for(cb, 0.2)
        assert await quiet_for(cb, 1.0) == []


async def test_malformed_frames_in_each_venues_kinds(sim, http):
    async with await bybit_book(http, sim) as by, await coinbase_level2(http, sim) as cb:
        await recv(by)
        await recv(cb)
        assert sim.send_malformed("garbage", venue="bybit") == 1
        frames = [m.data for m in await quiet_for(by, 0.5)]
        assert "\x00\x01 this is not json" in frames
        assert (await fault(http, sim, "malformed", arg="new_channel", venue="coinbase"))[0] == 200
        while (msg := await recv(cb))["channel"] != "surprise":
            pass
        assert msg["events"] == [{"type": "snapshot", "surprises": []}]
        assert sim.send_malformed("truncated") == 2  # every venue with a connection


async def test_outage_and_shutdown_take_bybit_and_coinbase_away_for_a_while(sim, http):
    async with await coinbase_level2(http, sim) as cb:
        await recv(cb)
        sim.inject("outage", "1", venue="coinbase")
        assert (await quiet_for(cb, 0.5))[-1].type in CUT
    with pytest.raises(aiohttp.ClientError):
        async with http.get(f"{sim.rest_url}/api/v3/brokerage/time") as r:
            await r.read()
    async with http.get(f"{sim.rest_url}/v5/market/time") as r:
        assert r.status == 200
    await asyncio.sleep(1.0)
    async with http.get(f"{sim.rest_url}/api/v3/brokerage/time") as r:
        assert r.status == 200
    async with await bybit_book(http, sim) as by:
        await recv(by)
        assert (await fault(http, sim, "shutdown", arg="1", venue="bybit"))[0] == 200
        assert (await quiet_for(by, 0.5))[-1].type in CUT
        with pytest.raises(aiohttp.ClientError):
            await http.ws_connect(sim.bybit_ws_url)
    await asyncio.sleep(1.0)
    async with http.ws_connect(sim.bybit_ws_url):
        pass


async def test_the_cli_and_the_schedule_reach_bybit_and_coinbase(http):
    async with (
        SimExchange(
            ["BTCUSDT"], speed=60, seed=5, start_time=START, history="10m", faults="bybit.drop@1"
        ) as sim,
        await bybit_book(http, sim) as by,
        await coinbase_level2(http, sim) as cb,
    ):
        await recv(by)
        await recv(cb)
        by_msgs = await quiet_for(by, 2.0)  # the schedule drops Bybit after a second
        assert by_msgs[-1].type in CUT
        assert not cb.closed
        argv = ["fault", "--port", str(sim.port), "--venue", "coinbase", "gap", "2"]
        assert await asyncio.to_thread(cli_main, argv) == 0
        seqs: list[int] = []
        while len(seqs) < 2000 and all(b - a == 1 for a, b in itertools.pairwise(seqs)):
            seqs.append((await recv(cb))["sequence_num"])
        assert seqs[-1] - seqs[-2] == 3
        argv = ["fault", "--port", str(sim.port), "--venue", "bybit", "checksum"]
        assert await asyncio.to_thread(cli_main, argv) == 2
