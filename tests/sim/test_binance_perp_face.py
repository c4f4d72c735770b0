"""The simulator's Binance USDⓈ-M face as Binance documents it today: streams on their routes
(``/public`` for book data, ``/market`` for the rest, nothing on the wrong one), book events
chained by ``pu`` with ids jumping, the futures limits, and REST bodies our readers take; a book
kept from its stream by our PerpBook equals the face's own book."""

from __future__ import annotations

import itertools
import time

import aiohttp
import orjson

from marketlab.venues.binance import perp_payloads as payloads
from marketlab.venues.binance.perp_book import PerpBook
from marketlab.venues.binance.perp_frames import PerpDecoder, PerpDepth
from marketlab.venues.book import Action
from tests.sim.conftest import recv
from tests.venues.perpetuals import face_levels

EIGHT_HOURS = 8 * 3_600_000


def _ws(sim, route: str, streams: str) -> str:
    return f"{sim.ws_url}/{route}/stream?streams={streams}"


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


async def test_each_route_sends_only_its_own_streams(face_sim, http):
    both = "btcusdt@depth@100ms/btcusdt@aggTrade/btcusdt@markPrice@1s"
    async with (
        http.ws_connect(_ws(face_sim, "market", both)) as market,
        http.ws_connect(_ws(face_sim, "public", both)) as public,
    ):
        on_market = await _frames(market, 2.0)
        on_public = await _frames(public, 1.0)
    market_streams = {f["stream"] for f in on_market}
    public_streams = {f["stream"] for f in on_public}
    assert market_streams == {"btcusdt@aggTrade", "btcusdt@markPrice@1s"}
    assert public_streams == {"btcusdt@depth@100ms"}


async def test_subscribe_is_answered_and_a_wrong_route_stays_silent(face_sim, http):
    async with http.ws_connect(f"{face_sim.ws_url}/public/ws") as ws:
        await ws.send_str('{"method":"SUBSCRIBE","params":["btcusdt@markPrice@1s"],"id":7}')
        assert await recv(ws) == {"result": None, "id": 7}
        assert await _frames(ws, 1.5) == []  # accepted, and never sent on /public
        await ws.send_str('{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":8}')
        answer = await recv(ws)
        assert answer["code"] == 2 and answer["id"] == 8  # no @trade stream read here


async def test_book_events_chain_by_pu_with_ids_jumping(face_sim, http):
    async with http.ws_connect(_ws(face_sim, "public", "btcusdt@depth@100ms")) as ws:
        events = [f["data"] for f in await _frames(ws, 2.5)]
    assert len(events) >= 3
    for before, after in itertools.pairwise(events):
        assert after["pu"] == before["u"]
        assert after["U"] > before["u"] + 1  # not consecutive: only pu tells a gap
        assert after["U"] <= after["u"]
        assert after["s"] == "BTCUSDT" and after["e"] == "depthUpdate"


async def test_a_book_kept_from_the_stream_equals_the_faces_book(face_sim, http):
    market = face_sim.binance_perp.markets["BTCUSDT"]
    book = PerpBook("BTCUSDT-PERP")
    decoder = PerpDecoder()
    equal_seen = 0
    async with http.ws_connect(_ws(face_sim, "public", "btcusdt@depth@100ms")) as ws:
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and equal_seen < 4:
            msg = await ws.receive(timeout=5)
            [event] = decoder.decode(msg.data)
            assert isinstance(event, PerpDepth)
            if book.on_depth(event) is Action.FETCH_SNAPSHOT:
                async with http.get(
                    f"{face_sim.rest_url}/fapi/v1/depth?symbol=BTCUSDT&limit=1000"
                ) as r:
                    book.on_snapshot(payloads.depth(await r.read(), "BTCUSDT-PERP"), 1000)
            uid, bids, asks = market.book(1000)
            if book.synced and book.last_update_id == 5 * uid:  # at the face's present
                assert book.bids(20) == face_levels(market, bids[:20])
                assert book.asks(20) == face_levels(market, asks[:20])
                equal_seen += 1
    assert equal_seen >= 4 and book.stats.gaps == 0


async def test_the_futures_limits(face_sim, http):
    # 10 incoming messages a second, then the connection is closed
    async with http.ws_connect(f"{face_sim.ws_url}/market/ws") as ws:
        for i in range(12):
            await ws.send_str(f'{{"method":"LIST_SUBSCRIPTIONS","id":{i}}}')
        assert await _closed(ws) == 1008
    # 200 streams a connection
    names = [f"s{i:03d}usdt@aggTrade" for i in range(201)]
    async with http.ws_connect(f"{face_sim.ws_url}/market/ws") as ws:
        payload = orjson.dumps({"method": "SUBSCRIBE", "params": names, "id": 1})
        await ws.send_str(payload.decode())
        answer = await recv(ws)
        assert answer["code"] == 2 and "max 200" in answer["msg"]
    # 2400 request weight a minute, 20 a deep snapshot: refused when the next would pass it
    used = None
    for _ in range(300):
        async with http.get(f"{face_sim.rest_url}/fapi/v1/depth?symbol=BTCUSDT&limit=1000") as r:
            if r.status == 429:
                break
            assert r.status == 200
            used = int(r.headers["X-MBX-USED-WEIGHT-1M"])
    assert r.status == 429 and used is not None and 2400 - 20 < used <= 2400


async def _closed(ws) -> int:
    while True:
        msg = await ws.receive(timeout=5)
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            return ws.close_code or msg.data


async def test_rest_bodies_our_readers_take(face_sim, http):
    base = f"{face_sim.rest_url}"

    async def get(path: str) -> bytes:
        async with http.get(base + path) as r:
            assert r.status == 200, (path, await r.text())
            return await r.read()

    [btc, _eth] = payloads.perpetuals(await get("/fapi/v1/exchangeInfo"))
    assert btc.symbol == "BTCUSDT-PERP" and btc.tick_size > 0
    mark = payloads.mark_price(await get("/fapi/v1/premiumIndex?symbol=BTCUSDT"))
    assert mark.symbol == "BTCUSDT-PERP" and abs(mark.mark / mark.index - 1) < 0.002
    assert mark.next_funding_time % EIGHT_HOURS == 0 and mark.next_funding_time > mark.event_time
    assert -0.0075 <= mark.funding_rate <= 0.0075
    oi = payloads.open_interest(await get("/fapi/v1/openInterest?symbol=BTCUSDT"))
    assert oi.open_interest > 0
    hist = payloads.open_interest_history(
        await get("/futures/data/openInterestHist?symbol=BTCUSDT&period=5m&limit=4")
    )
    assert len(hist) == 4 and all(h.time % 300_000 == 0 for h in hist)
    assert [h.time for h in hist] == sorted(h.time for h in hist)
    trades = payloads.agg_trades(
        await get("/fapi/v1/aggTrades?symbol=BTCUSDT&limit=5"), "BTCUSDT-PERP"
    )
    assert len(trades) == 5
    assert [t.agg_id for t in trades] == list(range(trades[0].agg_id, trades[0].agg_id + 5))
    async with http.get(base + "/fapi/v1/depth?symbol=BTCUSDT&limit=7") as r:
        assert r.status == 400 and (await r.json())["code"] == -4021
    async with http.get(base + "/fapi/v1/openInterestHist?symbol=BTCUSDT") as r:
        assert r.status == 404  # open interest history lives under /futures/data


async def test_liquidations_are_one_a_second_at_most_and_mark_prices_every_second(face_sim, http):
    streams = "btcusdt@forceOrder/btcusdt@markPrice@1s/ethusdt@forceOrder"
    async with http.ws_connect(_ws(face_sim, "market", streams)) as ws:
        frames = await _frames(ws, 3.0)
    decoder = PerpDecoder()
    records = [decoder.decode(orjson.dumps(f))[0] for f in frames]
    marks = [r for r in records if type(r).__name__ == "MarkPrice"]
    liquidations = [r for r in records if type(r).__name__ == "Liquidation"]
    assert len(marks) >= 60  # speed 60: one a simulated second
    seconds = [(r.symbol, r.event_time // 1000) for r in liquidations]
    assert len(seconds) == len(set(seconds))  # the latest of each second only
    assert all(r.sampled and r.side in ("long", "short") for r in liquidations)
    assert liquidations, "no liquidation in three minutes of the market"
