"""The simulator's OKX swaps as OKX documents them: SWAP instruments beside spot on the same
routes, sizes in contracts of ctVal (0.01 BTC), the swap channels on /ws/v5/public only,
liquidation-orders subscribed by instType, REST bodies our readers take, and a book kept from
the stream equal to the face's own."""

from __future__ import annotations

import itertools
import time
from decimal import Decimal

import aiohttp
import orjson
import pytest

from marketlab.sim.market import fmt_units
from marketlab.venues.book import Action
from marketlab.venues.okx import perp_payloads as payloads
from marketlab.venues.okx.book import OkxBook
from marketlab.venues.okx.frames import BookMessage
from marketlab.venues.okx.perp_frames import OkxPerpDecoder
from tests.sim.conftest import recv, until

BTC = "BTC-USDT-SWAP"
EIGHT_HOURS = 8 * 3_600_000


async def _get(http, sim, path: str) -> bytes:
    async with http.get(sim.rest_url + path) as r:
        assert r.status == 200, (path, await r.text())
        return await r.read()


async def _frames(ws, seconds: float) -> list[dict]:
    out, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            msg = await ws.receive(timeout=deadline - time.monotonic())
        except TimeoutError:
            break
        if msg.type == aiohttp.WSMsgType.TEXT and msg.data != "pong":
            out.append(orjson.loads(msg.data))
    return out


async def test_swaps_are_listed_beside_spot_with_their_contract_values(face_sim, http):
    body = await _get(http, face_sim, "/api/v5/public/instruments?instType=SWAP")
    contracts = payloads.swap_contracts(body)
    assert sorted(contracts) == ["BTCUSDT-PERP", "ETHUSDT-PERP"]
    assert contracts["BTCUSDT-PERP"].contract_value == 0.01  # as OKX lists BTC-USDT-SWAP
    assert contracts["ETHUSDT-PERP"].contract_value == 0.1
    # a lot of the market (0.00001 BTC) is 0.001 contract
    assert contracts["BTCUSDT-PERP"].lot_size == 0.001
    spot = orjson.loads(await _get(http, face_sim, "/api/v5/public/instruments?instType=SPOT"))
    assert sorted(r["instId"] for r in spot["data"]) == ["BTC-USDT", "ETH-USDT"]


async def test_rest_sizes_are_contracts_and_funding_is_the_perpetuals(face_sim, http):
    perp = face_sim.binance_perp.perps["BTCUSDT"]  # the same perpetual on every venue
    [now] = payloads.funding_rate(
        await _get(http, face_sim, f"/api/v5/public/funding-rate?instId={BTC}")
    )
    assert now.next_funding_time % EIGHT_HOURS == 0 and now.next_funding_time > now.event_time
    assert now.funding_rate == perp.funding_rate(now.next_funding_time)
    history = payloads.funding_history(
        await _get(http, face_sim, f"/api/v5/public/funding-rate-history?instId={BTC}&limit=3")
    )
    assert history == []  # a market of 30 minutes has settled none (see the feed's REST test)
    raw_oi = orjson.loads(
        await _get(http, face_sim, f"/api/v5/public/open-interest?instType=SWAP&instId={BTC}")
    )
    row = raw_oi["data"][0]
    assert Decimal(row["oi"]) * Decimal("0.01") == Decimal(row["oiCcy"])  # contracts × ctVal
    [oi] = payloads.open_interest(orjson.dumps(raw_oi), {"BTCUSDT-PERP": 0.01, "ETHUSDT-PERP": 0.1})
    assert oi.open_interest == pytest.approx(float(row["oiCcy"]))
    [mark] = payloads.mark_prices(
        await _get(http, face_sim, f"/api/v5/public/mark-price?instType=SWAP&instId={BTC}")
    )
    assert abs(mark.mark / (perp.index() * perp.spot.spec.tick) - 1) < 0.002
    # a swap's trades in contracts: 100 times the base quantity of the same trade on spot
    swap = orjson.loads(
        await _get(http, face_sim, f"/api/v5/market/history-trades?instId={BTC}&limit=100")
    )
    spot = orjson.loads(
        await _get(http, face_sim, "/api/v5/market/history-trades?instId=BTC-USDT&limit=100")
    )
    by_id = {t["tradeId"]: t for t in spot["data"]}
    common = [t for t in swap["data"] if t["tradeId"] in by_id]
    assert common and all(t["instId"] == BTC for t in swap["data"])
    for t in common:
        assert Decimal(t["sz"]) == Decimal(by_id[t["tradeId"]]["sz"]) * 100
        assert Decimal(t["px"]) > Decimal(by_id[t["tradeId"]]["px"])  # the premium
    candles = orjson.loads(
        await _get(http, face_sim, f"/api/v5/market/candles?instId={BTC}&bar=1m&limit=3")
    )
    for c in candles["data"]:
        assert Decimal(c[5]) * Decimal("0.01") == Decimal(c[6])  # vol contracts, volCcy base
        assert Decimal(c[7]) > Decimal(c[6]) * 60000  # volCcyQuote in USDT
    async with http.get(face_sim.rest_url + "/api/v5/public/funding-rate?instId=BTC-USDT") as r:
        assert r.status == 400 and (await r.json())["code"] == "51001"  # spot has no funding


async def test_swap_channels_live_on_public_and_are_refused_on_business(face_sim, http):
    base = face_sim.okx_ws_url.rsplit("/", 1)[0]
    async with http.ws_connect(base + "/business") as ws:
        sub = {"op": "subscribe", "args": [{"channel": "mark-price", "instId": BTC}]}
        await ws.send_str(orjson.dumps(sub).decode())
        answer = await recv(ws)
        assert answer["event"] == "error" and answer["code"] == "60018"
        sub = {"op": "subscribe", "args": [{"channel": "trades-all", "instId": BTC}]}
        await ws.send_str(orjson.dumps(sub).decode())
        assert (await recv(ws))["event"] == "subscribe"
        trade = await until(ws, lambda m: "data" in m)
        assert trade["arg"] == {"channel": "trades-all", "instId": BTC}
    args = [
        {"channel": "mark-price", "instId": BTC},
        {"channel": "funding-rate", "instId": BTC},
        {"channel": "open-interest", "instId": BTC},
        {"channel": "liquidation-orders", "instType": "SWAP"},
        {"channel": "funding-rate", "instId": "BTC-USDT"},  # spot: no such instrument
    ]
    async with http.ws_connect(face_sim.okx_ws_url) as ws:
        await ws.send_str(orjson.dumps({"op": "subscribe", "args": args}).decode())
        frames = await _frames(ws, 3.0)
    events = [f for f in frames if "event" in f]
    assert [e["event"] for e in events] == ["subscribe"] * 4 + ["error"]
    assert events[3]["arg"] == {"channel": "liquidation-orders", "instType": "SWAP"}
    decoder = OkxPerpDecoder({"BTCUSDT-PERP": 0.01, "ETHUSDT-PERP": 0.1})
    records = [r for f in frames if "data" in f for r in decoder.decode(orjson.dumps(f))]
    kinds = {type(r).__name__ for r in records}
    assert kinds == {"MarkPrice", "OpenInterest", "Liquidation"}
    marks = [r for r in records if type(r).__name__ == "MarkPrice"]
    assert len([m for m in marks if m.mark == m.mark]) >= 120  # speed 60: one a simulated second
    fundings = [m for m in marks if m.funding_rate == m.funding_rate]
    assert fundings and all(f.next_funding_time % EIGHT_HOURS == 0 for f in fundings)
    liquidations = [r for r in records if type(r).__name__ == "Liquidation"]
    symbols = {r.symbol for r in liquidations}
    assert symbols == {"BTCUSDT-PERP", "ETHUSDT-PERP"}  # every swap's, on one subscription
    seconds = [(r.symbol, r.time // 1000) for r in liquidations]
    assert len(seconds) == len(set(seconds))  # the latest of each second only


async def test_a_swap_book_kept_from_the_stream_equals_the_faces_book(face_sim, http):
    market = face_sim.okx.swaps[BTC]
    book = OkxBook("BTCUSDT-PERP")
    decoder = OkxPerpDecoder({"BTCUSDT-PERP": 0.01})
    equal_seen = 0
    async with http.ws_connect(face_sim.okx_ws_url) as ws:
        sub = {"op": "subscribe", "args": [{"channel": "books", "instId": BTC}]}
        await ws.send_str(orjson.dumps(sub).decode())
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and equal_seen < 4:
            msg = await ws.receive(timeout=5)
            events = decoder.decode(msg.data)
            for event in events:
                if isinstance(event, BookMessage):
                    assert book.on_message(event) is Action.NONE
            uid, bids, asks = market.book(400)
            if book.synced and book.last_update_id == face_sim.okx.seq_id("BTCUSDT-PERP", uid):
                assert _flat(book.bids(20)) == pytest.approx(_base_levels(market, bids[:20]))
                assert _flat(book.asks(20)) == pytest.approx(_base_levels(market, asks[:20]))
                equal_seen += 1
    assert equal_seen >= 4 and book.stats.gaps == 0


def _flat(levels) -> list[float]:
    return [x for level in levels for x in level]


def _base_levels(market, levels) -> list[float]:
    """The face's levels (ticks and lots) as numbers, sizes in the base asset (BTC)."""
    pd = market.spec.price_decimals
    return _flat([(float(fmt_units(p, pd)), float(fmt_units(q, 5))) for p, q in levels])


async def test_the_swap_endpoints_keep_okxs_limits(face_sim, http):
    url = f"{face_sim.rest_url}/api/v5/public/funding-rate?instId={BTC}"
    statuses = []
    for _ in range(11):  # 10 requests per 2 seconds
        async with http.get(url) as r:
            statuses.append((r.status, (await r.json())["code"]))
    assert statuses[:10] == [(200, "0")] * 10 and statuses[10] == (429, "50011")
    async with http.get(f"{face_sim.rest_url}/api/v5/public/open-interest?instId={BTC}") as r:
        assert r.status == 400 and (await r.json())["code"] == "50014"  # instType is required


async def test_a_swap_fault_breaks_the_swaps_chain_only(face_sim, http):
    args = [{"channel": "books", "instId": BTC}, {"channel": "books", "instId": "BTC-USDT"}]
    async with http.ws_connect(face_sim.okx_ws_url) as ws:
        await ws.send_str(orjson.dumps({"op": "subscribe", "args": args}).decode())
        frames = await _frames(ws, 0.5)
        face_sim.okx.skip_books(1, "BTCUSDT-PERP")
        frames += await _frames(ws, 1.5)
    chains: dict[str, list[tuple[int, int]]] = {BTC: [], "BTC-USDT": []}
    for f in frames:
        if f.get("action") == "update":
            chains[f["arg"]["instId"]].append((f["data"][0]["prevSeqId"], f["data"][0]["seqId"]))

    def breaks(chain: list[tuple[int, int]]) -> int:
        return sum(1 for (_, seq), (prev, _) in itertools.pairwise(chain) if prev != seq)

    assert len(chains[BTC]) >= 10 and len(chains["BTC-USDT"]) >= 10
    assert breaks(chains[BTC]) == 1 and breaks(chains["BTC-USDT"]) == 0
