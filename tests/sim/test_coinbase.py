"""The simulator's Coinbase Advanced Trade face behaves as Coinbase documents it (and as
recorded frames show where the docs are silent): real sockets on loopback, an aiohttp client.

Expected values come from Coinbase's docs (`/work/research/coinbase.md`), or from the market
itself through the simulator's own record (:meth:`SimExchange.book`,
:meth:`SimExchange.klines`), never from the face under test."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
import pytest

from marketlab.sim import SimExchange
from tests.conftest import START
from tests.sim.conftest import recv, until

ENVELOPE = ["channel", "client_id", "timestamp", "sequence_num", "events"]
RFC3339_NS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z")
CLOSED = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)


def on(channel: str) -> Callable[[Any], bool]:
    return lambda m: m.get("channel") == channel


async def send(
    ws: aiohttp.ClientWebSocketResponse, kind: str, channel: str, *products: str
) -> None:
    request: dict[str, Any] = {"type": kind, "channel": channel}
    if products:
        request["product_ids"] = list(products)
    await ws.send_str(orjson.dumps(request).decode())


async def subscribe(ws: aiohttp.ClientWebSocketResponse, channel: str, *products: str) -> Any:
    """Subscribe and return the ``subscriptions`` answer (snapshots may come before it)."""
    await send(ws, "subscribe", channel, *products)
    return await until(ws, on("subscriptions"))


async def get(
    http: aiohttp.ClientSession, sim: SimExchange, path: str, status: int = 200, **params: Any
) -> Any:
    async with http.get(f"{sim.rest_url}/api/v3/brokerage/{path}", params=params) as r:
        assert r.status == status, await r.text()
        return await r.json()


async def drain(ws: aiohttp.ClientWebSocketResponse, quiet: float = 0.5) -> list[Any]:
    """Everything still in flight, until nothing comes for ``quiet`` seconds."""
    out = []
    while True:
        try:
            out.append(await recv(ws, quiet))
        except TimeoutError:
            return out


async def collect(ws: aiohttp.ClientWebSocketResponse, seconds: float) -> list[Any]:
    """Everything that arrives in the next ``seconds`` (heartbeats never let a line go quiet)."""
    out, deadline = [], time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            out.append(await recv(ws, left))
        except TimeoutError:
            break
    return out


class LocalBook:
    """A client's book from level2: a snapshot replaces, ``new_quantity`` is the level's size
    and "0" removes it; the ask side is called ``offer``."""

    def __init__(self) -> None:
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}

    def apply(self, msg: Any) -> None:
        for event in msg["events"]:
            if event["type"] == "snapshot":
                self.bids, self.asks = {}, {}
            for u in event["updates"]:
                side = {"bid": self.bids, "offer": self.asks}[u["side"]]
                price, size = float(u["price_level"]), float(u["new_quantity"])
                if size == 0:
                    side.pop(price, None)
                else:
                    side[price] = size

    def view(self) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        return sorted(self.bids.items(), reverse=True), sorted(self.asks.items())


# --- subscribing ---------------------------------------------------------------------------


async def test_subscribe_answers_with_every_subscription_in_the_envelope(face_sim, http):
    async with http.ws_connect(face_sim.coinbase_ws_url) as ws:
        await send(ws, "subscribe", "level2", "BTC-USDT")
        first, second = await recv(ws), await recv(ws)
        for msg in (first, second):
            assert list(msg) == ENVELOPE and msg["client_id"] == ""
            assert RFC3339_NS.fullmatch(msg["timestamp"])
        assert (first["channel"], first["sequence_num"]) == ("l2_data", 0)
        assert first["events"][0]["type"] == "snapshot"
        assert second == {
            **second,
            "channel": "subscriptions",
            "sequence_num": 1,
            "events": [{"subscriptions": {"level2": ["BTC-USDT"]}}],
        }
        answer = await subscribe(ws, "market_trades", "ETH-USDT", "BTC-USDT")
        assert answer["events"] == [
            {"subscriptions": {"level2": ["BTC-USDT"], "market_trades": ["BTC-USDT", "ETH-USDT"]}}
        ]
        answer = await subscribe(ws, "heartbeats")
        assert answer["events"][0]["subscriptions"]["heartbeats"] == ["heartbeats"]
        await send(ws, "unsubscribe", "level2", "BTC-USDT")
        answer = await until(ws, on("subscriptions"))
        assert answer["events"] == [
            {
                "subscriptions": {
                    "market_trades": ["BTC-USDT", "ETH-USDT"],
                    "heartbeats": ["heartbeats"],
                }
            }
        ]
        await send(ws, "unsubscribe", "market_trades")  # no products: the whole channel
        answer = await until(ws, on("subscriptions"))
        assert answer["events"] == [{"subscriptions": {"heartbeats": ["heartbeats"]}}]
        later = await collect(ws, 2.5)
        assert later and {m["channel"] for m in later} == {"heartbeats"}


@pytest.mark.parametrize(
    "request_",
    [
        {"type": "subscribe", "product_ids": ["NOPE-USD"], "channel": "level2"},
        {"type": "subscribe", "product_ids": ["BTC-USDT", "NOPE-USD"], "channel": "ticker"},
        {"type": "subscribe", "product_ids": ["BTCUSDT"], "channel": "level2"},
        {"type": "subscribe", "product_ids": ["BTC-USDT"], "channel": "level3"},
        {"type": "subscribe", "product_ids": ["BTC-USDT"], "channel": "l2_data"},
        {"type": "subscribe", "product_ids": ["BTC-USDT"], "channels": ["level2", "ticker"]},
        {"type": "subscribe", "product_ids": ["BTC-USDT"], "channel": ["level2", "ticker"]},
        {"type": "subscribe", "channel": "level2"},
        {"type": "hello", "product_ids": ["BTC-USDT"], "channel": "level2"},
        "not json",
    ],
)
async def test_refusals_are_bare_error_frames_and_the_socket_stays(face_sim, http, request_):
    async with http.ws_connect(face_sim.coinbase_ws_url) as ws:
        text = request_ if isinstance(request_, str) else orjson.dumps(request_).decode()
        await ws.send_str(text)
        error = await recv(ws)
        assert list(error) == ["type", "message"] and error["type"] == "error"
        assert error["message"]
        answer = await subscribe(ws, "ticker", "ETH-USDT")
        # nothing of the refused request was subscribed; the refusal took no sequence number
        assert answer["events"] == [{"subscriptions": {"ticker": ["ETH-USDT"]}}]
        assert answer["sequence_num"] == 1


async def test_more_than_eight_messages_a_second_are_refused(face_sim, http):
    async with http.ws_connect(face_sim.coinbase_ws_url) as ws:
        for _ in range(9):
            await send(ws, "unsubscribe", "ticker", "BTC-USDT")
        got = [await recv(ws) for _ in range(9)]
        assert [m.get("channel") for m in got[:8]] == ["subscriptions"] * 8
        assert got[8] == {"type": "error", "message": got[8]["message"]}
        await asyncio.sleep(1.05)
        assert (await subscribe(ws, "ticker", "BTC-USDT"))["channel"] == "subscriptions"


def test_production_defaults():
    """Coinbase's documented numbers: subscribe within 5 s; channels quiet for 60-90 s close
    (the short end); 8 messages and 8 connections per second per IP; about 10 public REST
    requests per second per IP; candle windows under 350 buckets."""
    sim = SimExchange(["BTCUSDT"])
    assert sim.coinbase_subscribe_timeout == 5.0
    assert sim.coinbase_idle_timeout == 60.0
    assert sim.coinbase_ws_message_limit == 8
    assert sim.coinbase_ws_connect_limit == 8
    assert sim.coinbase_rest_limit == 10
    assert sim.coinbase_max_candles == 350


# --- keeping a connection -----------------------------------------------------------------------


async def closed_within(ws: aiohttp.ClientWebSocketResponse, seconds: float) -> float | None:
    """Seconds until the server ends the connection, or None if it is still open then."""
    began = time.monotonic()
    while (left := began + seconds - time.monotonic()) > 0:
        try:
            msg = await ws.receive(timeout=left)
        except TimeoutError:
            return None
        if msg.type in CLOSED:
            return time.monotonic() - began
    return None


async def test_a_connection_that_does_not_subscribe_is_closed(http):
    async with (
        SimExchange(
            ["BTCUSDT"], speed=10, start_time=START, history="5m", coinbase_subscribe_timeout=1.0
        ) as sim,
        http.ws_connect(sim.coinbase_ws_url) as silent,
        http.ws_connect(sim.coinbase_ws_url) as prompt,
    ):
        await subscribe(prompt, "ticker", "BTC-USDT")
        after = await closed_within(silent, 3.0)
        assert after is not None and 0.5 < after < 2.0
        assert await closed_within(prompt, 1.0) is None


async def test_quiet_channels_close_unless_heartbeats_are_subscribed(http):
    async with (
        SimExchange(
            ["BTCUSDT"], speed=10, start_time=START, history="5m", coinbase_idle_timeout=1.0
        ) as sim,
        http.ws_connect(sim.coinbase_ws_url) as bare,
        http.ws_connect(sim.coinbase_ws_url) as kept,
    ):
        await subscribe(bare, "level2", "BTC-USDT")
        await subscribe(kept, "level2", "BTC-USDT")
        await subscribe(kept, "heartbeats")
        sim.pause()  # the market holds still: level2 has nothing to say
        try:
            await drain(bare, 0.1)
            after = await closed_within(bare, 4.0)
            assert after is not None and after < 2.5
            beats = [m for m in await collect(kept, 2.5) if m["channel"] == "heartbeats"]
            assert not kept.closed and len(beats) >= 2
        finally:
            sim.resume()
        for beat in beats:
            (event,) = beat["events"]
            assert isinstance(event["heartbeat_counter"], int)  # an integer in production
            assert re.fullmatch(
                r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{9} \+0000 UTC m=\+\d+\.\d{9}",
                event["current_time"],
            )
        counters = [b["events"][0]["heartbeat_counter"] for b in beats]
        assert all(b - a == 1 for a, b in itertools.pairwise(counters))
        assert (await until(kept, on("l2_data")))["events"][0]["type"] == "update"


# --- sequence_num ----------------------------------------------------------------------------


async def test_sequence_num_counts_every_message_of_the_connection_and_a_gap_shows(face_sim, http):
    async with http.ws_connect(face_sim.coinbase_ws_url) as ws:
        await send(ws, "subscribe", "level2", "BTC-USDT")
        await send(ws, "subscribe", "market_trades", "ETH-USDT")
        await send(ws, "subscribe", "heartbeats")
        msgs = await collect(ws, 1.5)  # long enough for a heartbeat
        assert [m["sequence_num"] for m in msgs] == list(range(len(msgs)))
        assert {"l2_data", "market_trades", "subscriptions", "heartbeats"} <= {
            m["channel"] for m in msgs
        }
        assert face_sim.coinbase.skip_messages(3) == 1
        # messages queued before the fault come first (many, on a loaded machine); then the
        # jump, then 19 more in sequence
        seqs = [msgs[-1]["sequence_num"]]
        while len(seqs) < 2000 and all(b - a == 1 for a, b in itertools.pairwise(seqs)):
            seqs.append((await recv(ws))["sequence_num"])
        seqs += [(await recv(ws))["sequence_num"] for _ in range(19)]
        jumps = [b - a for a, b in itertools.pairwise(seqs)]
        assert sorted(jumps) == [1] * (len(jumps) - 1) + [4]


# --- the book --------------------------------------------------------------------------------


async def test_a_level2_snapshot_then_updates_rebuild_the_markets_book(face_sim, http):
    while not face_sim.book("BTCUSDT", venue="coinbase")["bids"]:  # the book fills as time runs
        await asyncio.sleep(0.05)
    async with http.ws_connect(face_sim.coinbase_ws_url) as ws:
        await send(ws, "subscribe", "level2", "BTC-USDT")
        first = await until(ws, on("l2_data"))
        (snapshot,) = first["events"]
        assert snapshot["type"] == "snapshot" and snapshot["product_id"] == "BTC-USDT"
        assert {u["side"] for u in snapshot["updates"]} == {"bid", "offer"}
        book = LocalBook()
        book.apply(first)
        for _ in range(20):
            msg = await until(ws, on("l2_data"))
            (event,) = msg["events"]
            assert event["type"] == "update" and event["product_id"] == "BTC-USDT"
            for u in event["updates"]:
                assert list(u) == ["side", "event_time", "price_level", "new_quantity"]
                assert all(isinstance(v, str) for v in u.values())
            book.apply(msg)
        face_sim.pause()
        try:
            for msg in await drain(ws):
                book.apply(msg)
            market = face_sim.book("BTCUSDT", venue="coinbase")
            rest = (await get(http, face_sim, "market/product_book", product_id="BTC-USDT"))[
                "pricebook"
            ]
            top = await get(http, face_sim, "market/product_book", product_id="BTC-USDT", limit=5)
        finally:
            face_sim.resume()
        bids, asks = book.view()
        assert bids == market["bids"] and asks == market["asks"]
        assert bids[0][0] < asks[0][0]
        assert [(float(x["price"]), float(x["size"])) for x in rest["bids"]] == bids
        assert [(float(x["price"]), float(x["size"])) for x in rest["asks"]] == asks
        assert len(top["pricebook"]["bids"]) == len(top["pricebook"]["asks"]) == 5


# --- trades, tickers and candles ------------------------------------------------------------


async def test_trades_have_consecutive_ids_and_the_rest_ticker_serves_the_same(face_sim, http):
    async with http.ws_connect(face_sim.coinbase_ws_url) as ws:
        await send(ws, "subscribe", "market_trades", "BTC-USDT")
        first = await until(ws, on("market_trades"))
        (snapshot,) = first["events"]
        assert snapshot["type"] == "snapshot" and snapshot["trades"]
        pushed: list[Any] = []
        while len(pushed) < 20:
            (event,) = (await until(ws, on("market_trades")))["events"]
            assert event["type"] == "update"
            pushed += event["trades"]
    for t in snapshot["trades"] + pushed:
        assert list(t) == ["trade_id", "product_id", "price", "size", "side", "time"]
        assert t["product_id"] == "BTC-USDT" and t["side"] in ("BUY", "SELL")
        assert re.fullmatch(r"[0-9]+", t["trade_id"])
    ids = sorted(int(t["trade_id"]) for t in snapshot["trades"] + pushed)
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # consecutive, nothing twice
    body = await get(http, face_sim, "market/products/BTC-USDT/ticker", limit=100)
    listed = body["trades"]
    assert len(listed) == 100 and body["best_bid"] < body["best_ask"]
    listed_ids = [int(t["trade_id"]) for t in listed]
    assert listed_ids == list(range(listed_ids[0], listed_ids[0] - 100, -1))  # newest first
    by_id = {t["trade_id"]: t for t in listed}
    common = [t for t in pushed if t["trade_id"] in by_id]
    assert common, "the REST list reaches back to the pushed trades"
    for t in common:
        assert {k: by_id[t["trade_id"]][k] for k in t} == t
    await get(http, face_sim, "market/products/BTC-USDT/ticker", status=400)  # limit is required


async def test_side_is_the_makers_and_a_minutes_trades_add_up_to_its_candle(face_sim, http):
    """``side`` is the maker's (the docs): the trades of a minute whose maker sold are the ones
    a taker bought, so their sizes add up to the candle's taker-buy volume in the market's
    own record; every trade of the minute is there, once."""
    face_sim.pause()
    try:
        now = int((await get(http, face_sim, "time"))["epochSeconds"])
        minute = now - now % 60 - 120
        body = await get(
            http,
            face_sim,
            "market/products/BTC-USDT/ticker",
            limit=1000,
            start=minute,
            end=minute + 59,
        )
        (k,) = face_sim.klines("BTCUSDT", "1m", minute * 1000, minute * 1000, venue="coinbase")
    finally:
        face_sim.resume()
    trades = body["trades"]
    assert len(trades) == k["trades"] > 0
    ids = [int(t["trade_id"]) for t in trades]
    assert ids == list(range(ids[0], ids[0] - len(ids), -1))
    taker_bought = sum(float(t["size"]) for t in trades if t["side"] == "SELL")
    assert abs(taker_bought - k["taker_buy_volume"]) < 1e-6
    assert abs(sum(float(t["size"]) for t in trades) - k["volume"]) < 1e-6


async def test_ticker_status_and_connection_limit(http):
    async with SimExchange(
        ["BTCUSDT"], speed=60, start_time=START, history="5m", coinbase_ws_connect_limit=2
    ) as sim:
        async with http.ws_connect(sim.coinbase_ws_url) as ws, http.ws_connect(sim.coinbase_ws_url):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                async with http.ws_connect(sim.coinbase_ws_url):
                    pass
            assert refused.value.status == 429
            await send(ws, "subscribe", "status")
            status = await until(ws, on("status"))
            (event,) = status["events"]
            assert event["type"] == "snapshot"
            assert [(p["id"], p["status"]) for p in event["products"]] == [("BTC-USDT", "online")]
            await send(ws, "subscribe", "ticker", "BTC-USDT")
            snapshot = await until(ws, on("ticker"))
            update = await until(ws, on("ticker"))
            assert [snapshot["events"][0]["type"], update["events"][0]["type"]] == [
                "snapshot",
                "update",
            ]
            (tick,) = update["events"][0]["tickers"]
            assert tick["type"] == "ticker" and tick["product_id"] == "BTC-USDT"
            assert float(tick["best_bid"]) < float(tick["best_ask"])
            assert all(isinstance(v, str) for v in tick.values())
        await asyncio.sleep(1.05)
        async with http.ws_connect(sim.coinbase_ws_url) as ws:
            await send(ws, "subscribe", "ticker_batch", "BTC-USDT")
            (batch,) = (await until(ws, on("ticker_batch")))["events"][0]["tickers"]
            assert "best_bid" not in batch  # ticker_batch carries no best bid or ask


async def test_rest_candles_equal_the_markets_and_empty_buckets_are_absent(face_sim, http):
    await asyncio.sleep(0.2)
    face_sim.pause()
    try:
        now = int((await get(http, face_sim, "time"))["epochSeconds"])
        start, end = now - 25 * 60, now
        body = await get(
            http,
            face_sim,
            "market/products/ETH-USDT/candles",
            start=start,
            end=end,
            granularity="ONE_MINUTE",
        )
        market = face_sim.klines("ETHUSDT", "1m", start * 1000, end * 1000, venue="coinbase")
    finally:
        face_sim.resume()
    candles = body["candles"]
    traded = [k for k in market if k["trades"] > 0]
    assert len(candles) == len(traded) >= 20
    assert [int(c["start"]) * 1000 for c in candles] == [k["open_time"] for k in traded][::-1]
    for c, k in zip(candles, reversed(traded), strict=True):
        assert list(c) == ["start", "low", "high", "open", "close", "volume"]
        got = [float(c[x]) for x in ("open", "high", "low", "close", "volume")]
        assert got == [k["open"], k["high"], k["low"], k["close"], k["volume"]]


@pytest.mark.parametrize(("minutes", "status"), [(349, 200), (350, 400), (500, 400)])
async def test_a_window_of_350_candles_or_more_is_refused(face_sim, http, minutes, status):
    now = int((await get(http, face_sim, "time"))["epochSeconds"])
    body = await get(
        http,
        face_sim,
        "market/products/BTC-USDT/candles",
        status=status,
        start=now - minutes * 60,
        end=now,
        granularity="ONE_MINUTE",
    )
    if status == 400:
        assert body["error"] == "INVALID_ARGUMENT"
        assert "number of candles requested should be less than 350" in body["message"]
    else:
        assert 0 < len(body["candles"]) <= 350


async def test_a_closing_five_minute_candle_equals_the_rest_candle(face_sim, http):
    async with http.ws_connect(face_sim.coinbase_ws_url) as ws:
        await send(ws, "subscribe", "candles", "BTC-USDT")
        first = await until(ws, on("candles"))
        assert first["events"][0]["type"] == "snapshot"
        latest = {c["start"]: c for c in first["events"][0]["candles"]}
        while len(latest) < 2:  # until a newer bucket starts: the older one has closed
            (event,) = (await until(ws, on("candles"), 15))["events"]
            assert event["type"] == "update"
            latest |= {c["start"]: c for c in event["candles"]}
    closed = latest[min(latest, key=int)]
    assert int(closed["start"]) % 300 == 0
    body = await get(
        http,
        face_sim,
        "market/products/BTC-USDT/candles",
        start=closed["start"],
        end=closed["start"],
        granularity="FIVE_MINUTE",
    )
    (rest,) = body["candles"]
    assert {k: closed[k] for k in rest} == rest and closed["product_id"] == "BTC-USDT"


# --- REST ----------------------------------------------------------------------------------


async def test_rest_time_products_and_refusals(face_sim, http):
    t = await get(http, face_sim, "time")
    assert list(t) == ["iso", "epochSeconds", "epochMillis"]
    assert (
        int(t["epochMillis"]) // 1000 == int(t["epochSeconds"]) and int(t["epochMillis"]) >= START
    )
    listed = await get(http, face_sim, "market/products")
    assert [p["product_id"] for p in listed["products"]] == ["BTC-USDT", "ETH-USDT"]
    assert listed["num_products"] == 2
    btc = await get(http, face_sim, "market/products/BTC-USDT")
    assert btc["quote_increment"] == "0.01" and btc["status"] == "online"
    assert btc["product_type"] == "SPOT"
    missing = await get(http, face_sim, "market/products/NOPE-USD", status=404)
    assert set(missing) == {"error", "error_details", "message"}
    await get(http, face_sim, "market/product_book", status=400)
    await get(
        http,
        face_sim,
        "market/products/BTC-USDT/candles",
        status=400,
        start=1,
        end=2,
        granularity="FOUR_MINUTE",
    )
    await get(http, face_sim, "market/products/BTC-USDT/candles", status=400, granularity="ONE_DAY")


async def test_past_the_public_limit_rest_answers_429(http):
    async with SimExchange(
        ["BTCUSDT"], speed=10, start_time=START, history="5m", coinbase_rest_limit=6
    ) as sim:
        url = f"{sim.rest_url}/api/v3/brokerage/time"

        async def status() -> int:
            async with http.get(url) as r:
                await r.read()
                return r.status

        began = time.monotonic()
        statuses = await asyncio.gather(*(status() for _ in range(6)))
        assert set(statuses) == {200}
        async with http.get(url) as r:
            assert r.status == 429
            assert (await r.json())["error"] == "RESOURCE_EXHAUSTED"
        await asyncio.sleep(max(0.0, began + 1.1 - time.monotonic()))
        assert await status() == 200
        sim.coinbase.rate_limit(2)  # the fault: the next two are refused, whatever the count
        assert [await status() for _ in range(3)] == [429, 429, 200]


# --- faults --------------------------------------------------------------------------------


async def test_a_drop_cuts_connections_without_a_close_frame(face_sim, http):
    async with http.ws_connect(face_sim.coinbase_ws_url) as ws:
        await subscribe(ws, "market_trades", "BTC-USDT")
        assert face_sim.coinbase.drop() == 1
        while True:
            msg = await ws.receive(timeout=5)
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
        assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)


@pytest.mark.parametrize("kind", ["garbage", "truncated"])
async def test_a_garbage_frame_arrives_and_the_stream_goes_on(face_sim, http, kind):
    async with http.ws_connect(face_sim.coinbase_ws_url) as ws:
        await subscribe(ws, "level2", "BTC-USDT")
        last = (await until(ws, on("l2_data")))["sequence_num"]
        assert face_sim.coinbase.send_malformed(kind) == 1
        bad = 0
        while True:
            msg = await ws.receive(timeout=5)
            try:
                good = orjson.loads(msg.data)
            except orjson.JSONDecodeError:
                bad += 1
                continue
            assert good["sequence_num"] == last + 1  # garbage takes no number
            last = good["sequence_num"]
            if bad:
                break
        assert bad == 1


async def test_a_message_of_a_new_kind_is_numbered_like_any_other(face_sim, http):
    """ "New message types can be added at any time" (the docs): a client ignores it, but it
    takes its sequence_num, so ignoring it must not look like a gap."""
    async with http.ws_connect(face_sim.coinbase_ws_url) as ws:
        answer = await subscribe(ws, "heartbeats")
        assert face_sim.coinbase.send_malformed("new_channel") == 1
        surprise = await recv(ws)
        assert list(surprise) == ENVELOPE and surprise["channel"] not in ("heartbeats", "")
        assert surprise["sequence_num"] == answer["sequence_num"] + 1
        beat = await until(ws, on("heartbeats"))
        assert beat["sequence_num"] == surprise["sequence_num"] + 1


async def test_the_simulators_status_counts_coinbase_connections(face_sim, http):
    async with http.ws_connect(face_sim.coinbase_ws_url) as ws:
        await subscribe(ws, "heartbeats")
        async with http.get(f"{face_sim.rest_url}/sim/v1/status") as r:
            assert (await r.json())["connections"] == 1


async def test_an_outage_cuts_and_refuses_everything_until_it_ends(face_sim, http):
    async with http.ws_connect(face_sim.coinbase_ws_url) as ws:
        await subscribe(ws, "ticker", "BTC-USDT")
        assert face_sim.coinbase.outage(1.0) == 1
        while (await ws.receive(timeout=5)).type == aiohttp.WSMsgType.TEXT:
            pass
    began = time.monotonic()
    with pytest.raises(aiohttp.ClientError):
        async with http.ws_connect(face_sim.coinbase_ws_url):
            pass
    with pytest.raises(aiohttp.ClientError):
        await get(http, face_sim, "time")
    await asyncio.sleep(max(0.0, began + 1.1 - time.monotonic()))
    assert "epochSeconds" in await get(http, face_sim, "time")
    async with http.ws_connect(face_sim.coinbase_ws_url) as ws:
        assert (await subscribe(ws, "ticker", "BTC-USDT"))["sequence_num"] >= 1


async def test_faults_reach_a_simulator_running_in_its_own_thread(http):
    sim = SimExchange(["BTCUSDT"], speed=60, start_time=START, history="5m").start_in_thread()
    try:
        async with http.ws_connect(sim.coinbase_ws_url) as ws:
            await subscribe(ws, "level2", "BTC-USDT")
            assert sim.coinbase.skip_messages(1) == 1
            assert sim.coinbase.drop() == 1
            while (await ws.receive(timeout=5)).type == aiohttp.WSMsgType.TEXT:
                pass
    finally:
        sim.close()
