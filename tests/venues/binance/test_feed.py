"""The Binance adapter against real sockets: every stream, REST payloads, exact klines."""

import asyncio
import time

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect

from marketlab.records import (
    AggTrade,
    BookDelta,
    BookSnapshot,
    BookTicker,
    Kline,
    MiniTicker,
    Ticker,
    Trade,
)
from marketlab.venues import binance as bn

STREAMS = {
    bn.stream_name("BTCUSDT", "trade"): Trade,
    bn.stream_name("BTCUSDT", "aggTrade"): AggTrade,
    bn.stream_name("BTCUSDT", "kline", interval="1m"): Kline,
    bn.stream_name("ETHUSDT", "kline", interval="1s"): Kline,
    bn.stream_name("BTCUSDT", "ticker"): Ticker,
    bn.stream_name("BTCUSDT", "miniTicker"): MiniTicker,
    bn.stream_name("BTCUSDT", "bookTicker"): BookTicker,
    bn.stream_name("BTCUSDT", "depth"): BookDelta,
    bn.stream_name("ETHUSDT", "depth", fast=True): BookDelta,
    bn.stream_name("BTCUSDT", "depth", levels=5): BookSnapshot,
    bn.stream_name("ETHUSDT", "depth", levels=20, fast=True): BookSnapshot,
}


async def test_every_stream_decodes_from_a_combined_connection(sim):
    decoder = bn.StreamDecoder()
    seen: dict[str, set[type]] = {name: set() for name in STREAMS}
    async with connect(bn.combined_stream_url(sim.ws_url, list(STREAMS))) as ws:
        deadline = time.monotonic() + 15
        while any(not kinds for kinds in seen.values()) and time.monotonic() < deadline:
            frame = await asyncio.wait_for(ws.recv(decode=False), 5)
            name = orjson.loads(frame)["stream"]
            (record,) = decoder.decode(frame)
            seen[name].add(type(record))
            assert getattr(record, "symbol", None) == bn.parse_stream(name).symbol
    assert {name: kinds for name, kinds in seen.items()} == {
        name: {t} for name, t in STREAMS.items()
    }


async def test_raw_connections_decode_with_the_stream_name(sim):
    name = bn.stream_name("ETHUSDT", "depth", levels=10)
    async with connect(bn.raw_stream_url(sim.ws_url, name)) as ws:
        (snap,) = bn.StreamDecoder().decode(await ws.recv(decode=False), stream=name)
    assert isinstance(snap, BookSnapshot) and snap.symbol == "ETHUSDT"
    assert len(snap.bids) == 10 and snap.bids[0][0] < snap.asks[0][0]


async def test_subscribe_messages_are_accepted_and_answered(sim):
    decoder = bn.StreamDecoder()
    pacer = bn.MessagePacer()
    async with connect(bn.raw_stream_url(sim.ws_url)) as ws:
        for i, msg in enumerate(
            [
                bn.subscribe_message(["btcusdt@trade"], 1),
                bn.list_subscriptions_message(2),
                bn.unsubscribe_message(["btcusdt@trade"], 3),
            ]
        ):
            await asyncio.sleep(pacer.delay(time.monotonic()))
            pacer.sent(time.monotonic())
            await ws.send(msg, text=True)
            while True:
                (event,) = decoder.decode(await asyncio.wait_for(ws.recv(decode=False), 5))
                if isinstance(event, bn.SubscriptionResult) and event.id == i + 1:
                    break
            if i == 1:
                assert event.result == ["btcusdt@trade"]


async def test_closed_kline_events_equal_rest_klines_exactly(sim):
    decoder = bn.StreamDecoder()
    closed: list[Kline] = []
    async with connect(bn.combined_stream_url(sim.ws_url, ["btcusdt@kline_1m"])) as ws:
        while len(closed) < 3:
            (k,) = decoder.decode(await asyncio.wait_for(ws.recv(decode=False), 5))
            if k.closed:
                closed.append(k)
    async with httpx.AsyncClient(base_url=sim.rest_url) as http:
        server_time = (await http.get("/api/v3/time")).json()["serverTime"]
        r = await http.get(
            "/api/v3/klines",
            params={
                "symbol": "BTCUSDT",
                "interval": "1m",
                "startTime": closed[0].open_time,
                "limit": 3,
            },
        )
    rest = bn.parse_klines(r.content, "BTCUSDT", "1m", server_time)
    assert [k.open_time for k in closed] == [closed[0].open_time + i * 60_000 for i in range(3)]
    assert [_without_event_time(k) for k in closed] == rest
    oracle = sim.klines("BTCUSDT", "1m", start=closed[0].open_time, limit=3)
    assert [k.close for k in closed] == [o["close"] for o in oracle]
    assert [k.volume for k in closed] == [o["volume"] for o in oracle]


def _without_event_time(k: Kline) -> Kline:
    return Kline(
        k.symbol,
        k.interval,
        k.open_time,
        k.open,
        k.high,
        k.low,
        k.close,
        k.volume,
        k.close_time,
        k.quote_volume,
        k.trades,
        k.taker_buy_volume,
        k.taker_buy_quote_volume,
        k.closed,
    )


async def test_rest_payloads_parse(sim):
    async with httpx.AsyncClient(base_url=sim.rest_url) as http:
        info = bn.parse_exchange_info((await http.get("/api/v3/exchangeInfo")).content)
        depth = bn.parse_depth(
            (await http.get("/api/v3/depth", params={"symbol": "ETHUSDT", "limit": 50})).content,
            "ETHUSDT",
        )
        tickers = bn.parse_ticker_24hr((await http.get("/api/v3/ticker/24hr")).content)
        error = await http.get("/api/v3/depth", params={"symbol": "NOPEUSDT"})
    assert [(s.symbol, s.tick_size, s.step_size) for s in info] == [
        ("BTCUSDT", 0.01, 0.00001),
        ("ETHUSDT", 0.01, 0.0001),
    ]
    assert len(depth.bids) == 50 and depth.last_update_id > 0
    assert [t.symbol for t in tickers] == ["BTCUSDT", "ETHUSDT"] and all(
        t.bid < t.ask for t in tickers
    )
    with pytest.raises(bn.BinanceAPIError, match="Invalid symbol") as exc:
        bn.raise_for_error(error.content, error.status_code)
    assert exc.value.code == -1121
