"""The four venues trade one market but quote a few basis points apart (a constant number of
ticks each) and deliver a little late (a constant latency each, never reordering): what each
venue shows agrees with itself, on REST, the WebSocket and the simulator's own record."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import aiohttp
import orjson
import pytest

from marketlab.sim import SimExchange
from marketlab.sim.exchange import DEFAULT_VENUE_LATENCY_MS, DEFAULT_VENUE_OFFSETS_BPS
from marketlab.sim.faults import VENUES
from tests.conftest import START

TICK = 0.01  # BTCUSDT's
START_PRICE = 65_000.0


async def rest_top(
    http: aiohttp.ClientSession, sim: SimExchange, venue: str
) -> tuple[float, float]:
    """BTCUSDT's best bid and ask as ``venue``'s REST book shows them."""
    base = sim.rest_url
    if venue == "binance":
        async with http.get(f"{base}/api/v3/depth", params={"symbol": "BTCUSDT"}) as r:
            body = await r.json()
        return float(body["bids"][0][0]), float(body["asks"][0][0])
    if venue == "okx":
        params = {"instId": "BTC-USDT", "sz": "1"}
        async with http.get(f"{base}/api/v5/market/books", params=params) as r:
            book = (await r.json())["data"][0]
        return float(book["bids"][0][0]), float(book["asks"][0][0])
    if venue == "bybit":
        params = {"category": "spot", "symbol": "BTCUSDT", "limit": "1"}
        async with http.get(f"{base}/v5/market/orderbook", params=params) as r:
            book = (await r.json())["result"]
        return float(book["b"][0][0]), float(book["a"][0][0])
    params = {"product_id": "BTC-USDT", "limit": "1"}
    async with http.get(f"{base}/api/v3/brokerage/market/product_book", params=params) as r:
        book = (await r.json())["pricebook"]
    return float(book["bids"][0]["price"]), float(book["asks"][0]["price"])


async def filled(sim: SimExchange) -> None:
    """Wait for the book to fill as exchange time runs (it starts empty after the warm-up)."""
    deadline = time.monotonic() + 10
    while not sim.book("BTCUSDT", 1)["bids"]:
        assert time.monotonic() < deadline, "the book never filled"
        await asyncio.sleep(0.05)


def test_defaults_and_bad_options():
    assert DEFAULT_VENUE_OFFSETS_BPS == {"binance": 0.0, "okx": 1.0, "bybit": -1.5, "coinbase": 2.5}
    assert DEFAULT_VENUE_LATENCY_MS == {"binance": 0.0, "okx": 5.0, "bybit": 10.0, "coinbase": 20.0}
    sim = SimExchange(["BTCUSDT", "ADAUSDT"], start_time=START)
    # a basis point of 65,000 is 650 ticks of 0.01; of ADA's 0.45 less than one 0.0001 tick
    assert [sim.venue_offset("BTCUSDT", v) for v in VENUES] == [0, 650, -975, 1625]
    assert [sim.venue_offset("ADAUSDT", v) for v in VENUES] == [0, 0, -1, 1]
    assert SimExchange(["BTCUSDT"], venue_offsets_bps={}).venue_offset("BTCUSDT", "okx") == 0
    with pytest.raises(ValueError, match="unknown venue 'kraken'"):
        SimExchange(["BTCUSDT"], venue_offsets_bps={"kraken": 1.0})
    with pytest.raises(ValueError, match="negative"):
        SimExchange(["BTCUSDT"], venue_latency_ms={"okx": -1.0})


async def test_venue_mids_differ_by_their_offsets_and_agree_with_the_record(http):
    async with SimExchange(["BTCUSDT"], speed=60, seed=5, start_time=START, history="10m") as sim:
        await filled(sim)
        sim.pause()
        try:
            await asyncio.sleep(0.1)  # what was due when it paused
            tops = {v: await rest_top(http, sim, v) for v in VENUES}
            records = {v: sim.book("BTCUSDT", 1, venue=v) for v in VENUES}
        finally:
            sim.resume()
    mids = {v: (bid + ask) / 2 for v, (bid, ask) in tops.items()}
    for v in VENUES:
        bid, ask = tops[v]
        assert (bid, ask) == (records[v]["bids"][0][0], records[v]["asks"][0][0])
        want_bps = DEFAULT_VENUE_OFFSETS_BPS[v]
        # exactly the venue's whole ticks, which are the configured bps within a tick
        assert mids[v] - mids["binance"] == pytest.approx(sim.venue_offset("BTCUSDT", v) * TICK)
        assert abs(mids[v] - mids["binance"] - want_bps * START_PRICE / 10_000) <= TICK
        bps = (mids[v] - mids["binance"]) / mids["binance"] * 10_000
        assert bps == pytest.approx(want_bps, abs=0.2)  # the price has moved a little since


async def test_without_offsets_the_venues_are_identical(http):
    async with SimExchange(
        ["BTCUSDT"], speed=60, seed=5, start_time=START, history="10m", venue_offsets_bps={}
    ) as sim:
        await filled(sim)
        sim.pause()
        try:
            await asyncio.sleep(0.1)
            tops = {v: await rest_top(http, sim, v) for v in VENUES}
            candles = {v: sim.klines("BTCUSDT", "1m", limit=5, venue=v) for v in VENUES}
        finally:
            sim.resume()
    assert len(set(tops.values())) == 1
    assert all(candles[v] == candles["binance"] for v in VENUES)


async def settled(sim) -> None:
    """Once paused, the seconds that were already due are still made (the market may lag its
    clock on a busy machine): wait until the market stops moving."""
    last = -1
    while sim.market.now != last:
        last = sim.market.now
        await asyncio.sleep(0.05)


async def test_each_venues_candles_trades_and_tickers_carry_its_offset(http):
    async with SimExchange(["BTCUSDT"], speed=60, seed=5, start_time=START, history="10m") as sim:
        await filled(sim)
        sim.pause()
        try:
            await settled(sim)
            base = {k["open_time"]: k for k in sim.klines("BTCUSDT", "1m", limit=5)}
            params = {"category": "spot", "symbol": "BTCUSDT", "interval": "1", "limit": "5"}
            async with http.get(f"{sim.rest_url}/v5/market/kline", params=params) as r:
                bybit_rest = (await r.json())["result"]["list"]
            params = {"instId": "BTC-USDT", "bar": "1m", "limit": "5"}
            async with http.get(f"{sim.rest_url}/api/v5/market/candles", params=params) as r:
                okx_rest = (await r.json())["data"]
            async with http.get(f"{sim.rest_url}/api/v3/ticker/price?symbol=BTCUSDT") as r:
                binance_last = float((await r.json())["price"])
            params = {"category": "spot", "symbol": "BTCUSDT"}
            async with http.get(f"{sim.rest_url}/v5/market/tickers", params=params) as r:
                bybit_last = float((await r.json())["result"]["list"][0]["lastPrice"])
            url = f"{sim.rest_url}/api/v3/brokerage/market/products/BTC-USDT/ticker"
            async with http.get(url, params={"limit": "5"}) as r:
                coinbase_trades = (await r.json())["trades"]
            async with http.get(f"{sim.rest_url}/api/v3/trades?symbol=BTCUSDT&limit=5") as r:
                binance_trades = {t["id"]: float(t["price"]) for t in await r.json()}
            records = {v: sim.klines("BTCUSDT", "1m", limit=5, venue=v) for v in VENUES}
        finally:
            sim.resume()
    for v in VENUES:
        shift = sim.venue_offset("BTCUSDT", v) * TICK
        for k in records[v]:
            b = base[k["open_time"]]
            for col in ("open", "high", "low", "close"):
                assert k[col] == pytest.approx(b[col] + shift)
            assert k["volume"] == b["volume"]
            assert k["quote_volume"] == pytest.approx(b["quote_volume"] + shift * b["volume"])
    bybit_record = {k["open_time"]: k for k in records["bybit"]}
    for start, o, h, lo, c, v, turnover in bybit_rest:
        k = bybit_record[int(start)]
        assert [float(x) for x in (o, h, lo, c, v)] == [
            k["open"],
            k["high"],
            k["low"],
            k["close"],
            k["volume"],
        ]
        assert float(turnover) == pytest.approx(k["quote_volume"])
    okx_record = {k["open_time"]: k for k in records["okx"]}
    for row in okx_rest:
        k = okx_record[int(row[0])]
        assert float(row[4]) == k["close"]
    assert bybit_last - binance_last == pytest.approx(sim.venue_offset("BTCUSDT", "bybit") * TICK)
    coinbase_shift = sim.venue_offset("BTCUSDT", "coinbase") * TICK
    assert coinbase_trades  # the same trades, at Coinbase's prices
    newest = max(binance_trades)
    assert float(coinbase_trades[0]["price"]) == pytest.approx(
        binance_trades[newest] + coinbase_shift
    )


async def test_latency_delays_a_venues_frames_and_never_reorders_them(http):
    latency = {"binance": 0.0, "okx": 0.0, "bybit": 150.0, "coinbase": 100.0}
    async with (
        SimExchange(
            ["BTCUSDT", "ETHUSDT"],
            speed=60,
            seed=5,
            start_time=START,
            history="10m",
            venue_latency_ms=latency,
        ) as sim,
        http.ws_connect(sim.bybit_ws_url) as by,
        http.ws_connect(sim.coinbase_ws_url) as cb,
    ):
        topics = ["orderbook.50.BTCUSDT", "publicTrade.BTCUSDT", "orderbook.200.ETHUSDT"]
        await by.send_str(orjson.dumps({"op": "subscribe", "args": topics}).decode())
        for channel in ("level2", "market_trades"):
            request = {"type": "subscribe", "channel": channel, "product_ids": ["BTC-USDT"]}
            await cb.send_str(orjson.dumps(request).decode())
        # a JSON ping's pong waits its turn behind Bybit's latency
        sent = time.monotonic()
        await by.send_str('{"op":"ping","req_id":"p1"}')
        chains: dict[str, list[int]] = {}
        while True:
            msg = orjson.loads((await by.receive(timeout=5)).data)
            if msg.get("op") == "ping":
                break
        assert time.monotonic() - sent >= 0.15
        by_msgs: list[Any] = []
        cb_seqs: list[int] = []
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            by_msgs.append(orjson.loads((await by.receive(timeout=5)).data))
            cb_seqs.append(orjson.loads((await cb.receive(timeout=5)).data)["sequence_num"])
    for msg in by_msgs:
        if msg.get("topic", "").startswith("orderbook."):
            chains.setdefault(msg["topic"], []).append(msg["data"]["u"])
    assert len(chains) == 2 and all(len(us) > 20 for us in chains.values())
    for us in chains.values():
        assert us == list(range(us[0], us[0] + len(us)))  # every update, in order
    trades = [m for m in by_msgs if m.get("topic") == "publicTrade.BTCUSDT"]
    times = [t["T"] for m in trades for t in m["data"]]
    assert times == sorted(times)
    assert len(cb_seqs) > 20 and all(b - a == 1 for a, b in itertools.pairwise(cb_seqs))
