"""The simulator's Bybit linear face as Bybit documents it: linear's answers and refusals on
``/v5/public/linear``, tickers as a snapshot then deltas of what changed, every liquidation
batched each 500 ms with the position's side, UUID trade ids, the REST bodies our readers
take with ``category=linear``, and the one IP limit over spot and linear."""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp
import orjson

from marketlab.sim import SimExchange
from marketlab.venues.bybit import perp_payloads as payloads
from marketlab.venues.bybit.perp_frames import PerpDecoder
from tests.conftest import START
from tests.sim.conftest import recv

EIGHT_HOURS = 8 * 3_600_000


def _linear(sim: SimExchange) -> str:
    return sim.bybit_ws_url.replace("/v5/public/spot", "/v5/public/linear")


async def _send(ws, body: dict) -> None:
    await ws.send_str(orjson.dumps(body).decode())


async def _answer(ws) -> dict:
    while True:
        msg = await recv(ws)
        if "op" in msg:
            return msg


async def _frames(ws, seconds: float) -> list[dict]:
    out, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            msg = await ws.receive(timeout=deadline - time.monotonic())
        except TimeoutError:
            break
        if msg.type == aiohttp.WSMsgType.TEXT:
            out.append(orjson.loads(msg.data))
    return out


async def test_requests_are_answered_as_linear_answers_them(face_sim, http):
    async with http.ws_connect(_linear(face_sim)) as ws:
        topics = [f"kline.{iv}.BTCUSDT" for iv in ("1", "3", "5", "15", "30", "60")]
        topics += ["publicTrade.BTCUSDT", "tickers.BTCUSDT", "allLiquidation.BTCUSDT"]
        topics += ["orderbook.50.ETHUSDT", "publicTrade.ETHUSDT"]  # 11: more than spot takes
        await _send(ws, {"op": "subscribe", "args": topics})
        ack = await _answer(ws)
        assert {k: ack[k] for k in ("success", "ret_msg", "req_id", "op")} == {
            "success": True,
            "ret_msg": "",
            "req_id": "",
            "op": "subscribe",
        }
        await _send(ws, {"op": "subscribe", "args": ["tickers.BTCUSDT"], "req_id": "2"})
        again = await _answer(ws)
        assert again["success"] is False and again["req_id"] == "2"
        assert again["ret_msg"] == "error:already subscribed,topic:tickers.BTCUSDT"
        for bad in ("orderbook.500.BTCUSDT", "kline.7.BTCUSDT", "tickers.NOPEUSDT", "x.BTCUSDT"):
            await _send(ws, {"op": "subscribe", "args": [bad]})
            refused = await _answer(ws)
            assert (refused["success"], refused["ret_msg"]) == (
                False,
                f"error:handler not found,topic:{bad}",
            )
        await _send(ws, {"op": "ping"})
        pong = await _answer(ws)
        assert (pong["op"], pong["ret_msg"], pong["req_id"]) == ("ping", "pong", "")
        await _send(ws, {"op": "unsubscribe", "args": ["tickers.BTCUSDT"], "req_id": "9"})
        off = await _answer(ws)
        assert (off["success"], off["ret_msg"], off["req_id"]) == (True, "", "9")


async def test_tickers_liquidations_and_trades_as_linear_pushes_them(face_sim, http):
    async with http.ws_connect(_linear(face_sim)) as ws:
        args = ["tickers.BTCUSDT", "allLiquidation.BTCUSDT", "publicTrade.BTCUSDT"]
        await _send(ws, {"op": "subscribe", "args": args})
        frames = await _frames(ws, 3.0)
    tickers = [f for f in frames if f.get("topic") == "tickers.BTCUSDT"]
    assert tickers[0]["type"] == "snapshot" and {t["type"] for t in tickers[1:]} == {"delta"}
    snapshot = tickers[0]["data"]
    for key in ("markPrice", "indexPrice", "fundingRate", "nextFundingTime", "openInterest"):
        assert key in snapshot
    assert snapshot["fundingIntervalHour"] == "8"
    assert len(tickers) >= 100  # speed 60: a delta each simulated second
    # a delta holds the symbol and what changed, never the whole ticker again
    assert all(t["data"]["symbol"] == "BTCUSDT" for t in tickers)
    assert any(len(t["data"]) < len(snapshot) for t in tickers[1:])
    merged = dict(snapshot)
    for t in tickers[1:]:
        assert set(t["data"]) <= set(snapshot)
        merged.update(t["data"])
    # the next funding is the next 8-hour boundary after the last push
    last_ts = tickers[-1]["ts"]
    assert int(merged["nextFundingTime"]) == (last_ts // EIGHT_HOURS + 1) * EIGHT_HOURS

    perp = face_sim.bybit_perp.perps["BTCUSDT"]
    pushes = [f for f in frames if f.get("topic") == "allLiquidation.BTCUSDT"]
    assert pushes, "no liquidation in three simulated minutes"
    for push in pushes:
        assert push["type"] == "snapshot" and push["ts"] % 500 == 0
        for row in push["data"]:
            assert push["ts"] - 500 <= row["T"] < push["ts"]
            (event,) = [e for e in perp.liquidations(row["T"] // 1000 * 1000) if e.time == row["T"]]
            assert row["S"] == ("Buy" if event.long else "Sell")  # Buy: a long liquidated

    trades = [row for f in frames if f.get("topic") == "publicTrade.BTCUSDT" for row in f["data"]]
    assert len(trades) > 20
    assert all(uuid.UUID(t["i"]) and t["L"].endswith("Tick") for t in trades)
    seqs = [t["seq"] for t in trades]
    assert seqs == sorted(seqs)


async def test_rest_bodies_our_readers_take(http):
    async with SimExchange(["BTCUSDT"], speed=10, seed=5, start_time=START, history="8h") as sim:

        async def get(path: str, **params) -> bytes:
            async with http.get(f"{sim.rest_url}/v5/market/{path}", params=params) as r:
                assert r.status == 200, (path, await r.text())
                return await r.read()

        listed, cursor = payloads.perpetuals(await get("instruments-info", category="linear"))
        assert [(i.symbol, i.funding_interval_min) for i in listed] == [("BTCUSDT-PERP", 480)]
        assert cursor == "" and listed[0].tick_size == 0.01
        # genesis 8 h before 2026-01-01: the first funding settled at midnight
        fundings = payloads.funding_history(
            await get("funding/history", category="linear", symbol="BTCUSDT")
        )
        assert [f.funding_time for f in fundings] == [START]
        perp = sim.bybit_perp.perps["BTCUSDT"]
        assert [f.rate for f in fundings] == [perp.funding_rate(f.funding_time) for f in fundings]
        refused = orjson.loads(
            await get("funding/history", category="linear", symbol="BTCUSDT", startTime=START)
        )
        assert refused["retCode"] == 10001
        ((mark, oi),) = payloads.tickers(await get("tickers", category="linear", symbol="BTCUSDT"))
        assert abs(mark.mark / mark.index - 1) < 0.002 and oi.open_interest > 0
        assert mark.next_funding_time == START + EIGHT_HOURS
        page, older = payloads.open_interest(
            await get(
                "open-interest", category="linear", symbol="BTCUSDT", intervalTime="1h", limit=5
            )
        )
        assert len(page) == 5 and all(o.time % 3_600_000 == 0 for o in page)
        assert int(older) == page[0].time - 3_600_000
        # paged back to the launch, 8 hours before
        times = [o.time for o in page]
        while older:
            rows, older = payloads.open_interest(
                await get(
                    "open-interest",
                    category="linear",
                    symbol="BTCUSDT",
                    intervalTime="1h",
                    limit=5,
                    cursor=older,
                )
            )
            times = [o.time for o in rows] + times
        assert times == list(range(START - 8 * 3_600_000, times[-1] + 1, 3_600_000))
        trades = payloads.recent_trades(
            await get("recent-trade", category="linear", symbol="BTCUSDT", limit=1000),
            "BTCUSDT-PERP",
            1000,
        )
        assert len(trades) >= 990 and [t.trade_id for t in trades] == sorted(
            t.trade_id for t in trades
        )
        # the perpetual trades above the spot pair (a premium of a few bps): their best bids,
        # read again in the rare moment a side of a book is empty (its touch pulled)
        for _ in range(50):
            spot = orjson.loads(await get("orderbook", category="spot", symbol="BTCUSDT", limit=5))
            linear = orjson.loads(
                await get("orderbook", category="linear", symbol="BTCUSDT", limit=5)
            )
            if spot["result"]["b"] and linear["result"]["b"]:
                break
            await asyncio.sleep(0.05)
        assert float(linear["result"]["b"][0][0]) > float(spot["result"]["b"][0][0])


async def test_one_ip_limit_over_spot_and_linear(http):
    async with SimExchange(
        ["BTCUSDT"], speed=10, start_time=START, history="5m", bybit_rest_limit=20
    ) as sim:

        async def status(category: str) -> int:
            url = f"{sim.rest_url}/v5/market/tickers?category={category}&symbol=BTCUSDT"
            async with http.get(url) as r:
                await r.read()
                return r.status

        spot = await asyncio.gather(*(status("spot") for _ in range(10)))
        linear = await asyncio.gather(*(status("linear") for _ in range(10)))
        assert set(spot) == set(linear) == {200}
        assert await status("linear") == 403  # the 21st of the IP, whichever category


async def test_a_client_merging_deltas_with_our_decoder_keeps_the_ticker(face_sim, http):
    async with http.ws_connect(_linear(face_sim)) as ws:
        await _send(ws, {"op": "subscribe", "args": ["tickers.BTCUSDT"]})
        frames = await _frames(ws, 1.5)
    decoder = PerpDecoder()
    marks = []
    for f in frames:
        for record in decoder.decode(orjson.dumps(f)):
            if type(record).__name__ == "MarkPrice":
                marks.append(record)
    assert len(marks) >= 30
    # every record whole: mark, index and the next funding from the merged ticker
    assert all(m.index > 0 and m.next_funding_time % EIGHT_HOURS == 0 for m in marks)
