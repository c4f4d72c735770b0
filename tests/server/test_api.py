"""The API server: a real uvicorn over a Lab fed by the simulator."""

from __future__ import annotations

import asyncio
import gc
import socket
import time
import types
from collections import Counter
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from marketlab.lab import Lab
from marketlab.server import PREFIX, create_app
from marketlab.server.hub import Client
from marketlab.server.runner import ServerThread, is_loopback
from marketlab.server.wire import text_frame
from marketlab.sim import SimExchange
from tests.lab.test_lab import FAST, wait_for


class Stack:
    def __init__(self, sim: SimExchange, lab: Lab, server: ServerThread):
        self.sim, self.lab, self.server = sim, lab, server
        self.api = server.url + PREFIX
        self.ws = server.url.replace("http", "ws", 1) + PREFIX + "/ws"

    def get(self, path: str, **params) -> httpx.Response:
        return httpx.get(self.api + path, params=params, timeout=10)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    db = tmp_path_factory.mktemp("api") / "m.sqlite"
    with SimExchange(["BTCUSDT", "ETHUSDT"], speed=60, seed=13) as sim:
        lab = Lab(
            ["BTCUSDT", "ETHUSDT"],
            intervals=["1m", "5m"],
            binance_ws_url=sim.ws_url,
            binance_rest_url=sim.rest_url,
            db=db,
            db_flush_interval=0.2,
            # a paused exchange sends nothing: the Lab must not take the silence for a dead line
            **{**FAST, "idle_timeout": 120.0},
        )
        lab.start().wait_ready(30)
        with ServerThread(create_app(lab, max_backlog=50), send_buffer=8192) as server:
            yield Stack(sim, lab, server)
        lab.stop()


def caught_up_at_a_pause(stack: Stack) -> None:
    """The exchange frozen and the Lab caught up with it: values can be compared exactly."""
    sim = stack.sim
    sim.pause()
    # a loaded simulator's market lags its clock: it steps on until it reaches the pause
    assert sim.clock is not None
    wait_for(lambda: sim.now_ms() == sim.clock.now_ms(), 30, "the market at the pause")
    for symbol in ("BTCUSDT", "ETHUSDT"):
        target = stack.sim.book(symbol)["last_update_id"]
        wait_for(
            lambda s=symbol, t=target: stack.lab.book(s).attrs["last_update_id"] == t,
            15,
            "the book",
        )
    time.sleep(0.3)


@pytest.fixture
def paused(stack) -> Iterator[Stack]:
    try:
        caught_up_at_a_pause(stack)
        yield stack
    finally:
        stack.sim.resume()


def test_health_and_docs(stack):
    assert httpx.get(stack.server.url + "/health").json() == {"status": "ok", "running": True}
    assert "swagger" in httpx.get(stack.server.url + "/docs").text.lower()
    schema = httpx.get(stack.server.url + "/openapi.json").json()
    for path in (
        "/prices",
        "/depth/{symbol}",
        "/klines/{symbol}",
        "/summary",
        "/all",
        "/status",
        "/start",
        "/stop",
    ):
        assert PREFIX + path in schema["paths"], path
    price = schema["components"]["schemas"]["Price"]["properties"]
    assert all("description" in field for field in price.values())  # every field documented


def test_prices_equal_the_exchange(paused):
    r = paused.get("/prices", symbols="BTCUSDT,ethusdt")
    assert r.status_code == 200
    body = r.json()
    assert [p["symbol"] for p in body["prices"]] == ["BTCUSDT", "ETHUSDT"] and body["missing"] == []
    tickers = {
        t["symbol"]: t for t in httpx.get(paused.sim.rest_url + "/api/v3/ticker/24hr").json()
    }
    for p in body["prices"]:
        t = tickers[p["symbol"]]
        assert p["last"] == float(t["lastPrice"])
        assert (p["bid"], p["ask"]) == (float(t["bidPrice"]), float(t["askPrice"]))
        assert p["volume"] == float(t["volume"]) and p["change_pct"] == float(
            t["priceChangePercent"]
        )
        assert p["source"] == "ws" and p["age_s"] >= 0
    assert len(paused.get("/prices").json()["prices"]) == 2


def test_prices_asked_again_after_the_market_moved_are_the_new_ones(paused):
    """A price served once is not served again once the market has moved on: the second
    answer is the exchange's new ticker, from a later update."""

    def exchange_ticker() -> dict:
        tickers = httpx.get(paused.sim.rest_url + "/api/v3/ticker/24hr").json()
        return next(t for t in tickers if t["symbol"] == "BTCUSDT")

    def served() -> dict:
        return paused.get("/prices", symbols="BTCUSDT").json()["prices"][0]

    before, first = exchange_ticker(), served()
    assert first["last"] == float(before["lastPrice"])
    paused.sim.resume()
    wait_for(lambda: exchange_ticker()["count"] > before["count"], 30, "trades after the first")
    caught_up_at_a_pause(paused)
    after, second = exchange_ticker(), served()
    assert second["event_time"] > first["event_time"]
    assert (second["last"], second["bid"], second["ask"], second["volume"]) == (
        float(after["lastPrice"]),
        float(after["bidPrice"]),
        float(after["askPrice"]),
        float(after["volume"]),
    )


def test_depth_equals_the_synced_book(paused):
    body = paused.get("/depth/BTCUSDT", limit=50).json()
    truth = paused.sim.book("BTCUSDT", 50)
    assert body["last_update_id"] == truth["last_update_id"]
    assert [tuple(x) for x in body["bids"]] == truth["bids"] and [
        tuple(x) for x in body["asks"]
    ] == truth["asks"]
    assert body["spread"] == pytest.approx(truth["asks"][0][0] - truth["bids"][0][0])
    assert len(paused.get("/depth/ethusdt").json()["bids"]) == 20


def test_klines_live_and_from_history(paused):
    live = paused.get("/klines/BTCUSDT", interval="1m", limit=5).json()
    assert live["source"] == "live" and len(live["klines"]) == 5
    assert all(k["closed"] for k in live["klines"][:-1])  # only the newest may still be open
    frame = paused.lab.klines("BTCUSDT", "1m").tail(5)
    assert [k["close"] for k in live["klines"]] == list(frame["close"])
    opens = [int(t.value // 1_000_000) for t in frame.index]
    assert [_ms(k["open_time"]) for k in live["klines"]] == opens
    hist = paused.get("/klines/BTCUSDT", interval="1m", limit=3, history="true").json()
    assert hist["source"] == "history" and len(hist["klines"]) == 3
    assert all(k["closed"] for k in hist["klines"])
    oracle = paused.sim.klines("BTCUSDT", "1m", start=_ms(hist["klines"][0]["open_time"]), limit=3)
    assert [k["close"] for k in hist["klines"]] == [o["close"] for o in oracle]
    newest_closed = [k for k in live["klines"] if k["closed"]][-1]
    assert hist["klines"][-1] == newest_closed  # the store holds the newest closed candle too
    five = paused.get("/klines/ETHUSDT", interval="5m", limit=2).json()
    assert five["interval"] == "5m" and len(five["klines"]) == 2


def _ms(iso: str) -> int:
    import pandas as pd

    return int(pd.Timestamp(iso).value // 1_000_000)


def test_summary_all_and_status(stack):
    summary = stack.get("/summary").json()
    assert summary["running"] and summary["source"] == "ws"
    btc = summary["symbols"][0]
    assert (
        btc["symbol"] == "BTCUSDT"
        and btc["book_synced"]
        and btc["spread"] > 0
        and btc["spread_bps"] > 0
    )
    everything = stack.get("/all").json()
    assert (
        set(everything["depth"]) == {"BTCUSDT", "ETHUSDT"}
        and len(everything["depth"]["BTCUSDT"]["bids"]) == 5
    )
    assert set(everything["klines"]["ETHUSDT"]) == {"1m", "5m"}
    status = stack.get("/status").json()
    store = status["store"]  # the history store's state rides along
    assert store["state"] == "ok" and store["written"] > 0 and store["path"].endswith("m.sqlite")
    assert status["error"] is None
    assert status["symbols"] == ["BTCUSDT", "ETHUSDT"] and status["intervals"] == ["1m", "5m"]
    streams = {(s["symbol"], s["stream"]): s for s in status["streams"]}
    assert (
        streams[("BTCUSDT", "depth")]["book"] == "synced"
        and streams[("ETHUSDT", "kline_5m")]["messages"] > 0
    )


@pytest.mark.parametrize(
    ("path", "params", "status", "text"),
    [
        ("/depth/NOPEUSDT", {}, 404, "unknown symbol"),
        ("/depth/BTC$USDT", {}, 422, "invalid symbol"),
        ("/depth/BTCUSDT", {"limit": 0}, 422, "greater than or equal"),
        ("/depth/BTCUSDT", {"limit": 5001}, 422, "less than"),
        ("/klines/BTCUSDT", {"interval": "7m"}, 422, "invalid interval"),
        ("/klines/BTCUSDT", {"interval": "1h"}, 404, "not collected"),
        (
            "/klines/BTCUSDT",
            {"history": "true", "start": "2026-02-30"},
            422,
            "start: expected epoch milliseconds",
        ),
        ("/klines/BTCUSDT", {"end": "yesterday"}, 422, "end: expected epoch milliseconds"),
        ("/depth/BTCUSDT", {"limit": "many"}, 422, "limit: Input should be a valid integer"),
        ("/klines/BTCUSDT", {"limit": "many"}, 422, "valid integer"),
        ("/prices", {"symbols": "BTCUSDT,XRPUSDT"}, 404, "XRPUSDT"),
        ("/prices", {"symbols": ","}, 422, "comma-separated symbols"),
        ("/prices", {"symbols": ""}, 422, "comma-separated symbols"),
    ],
)
def test_bad_parameters_get_4xx_that_say_what(stack, path, params, status, text):
    r = stack.get(path, **params)
    assert r.status_code == status
    assert isinstance(r.json()["detail"], str) and text in r.json()["detail"], r.json()


def test_an_inverted_time_span_holds_no_candles(stack):
    r = stack.get("/klines/BTCUSDT", history="true", start="2026-02-01", end="2026-01-01T00:00:00Z")
    assert r.status_code == 200 and r.json()["klines"] == []


def test_too_many_symbols_is_refused(stack):
    r = stack.get("/prices", symbols=",".join(["BTCUSDT"] * 50))
    assert r.status_code == 200  # duplicates collapse
    assert stack.get("/prices", symbols=",".join(["BTCUSDT"] * 51)).status_code == 422
    app = create_app(stack.lab, max_symbols=1)
    with ServerThread(app) as server:
        r = httpx.get(server.url + PREFIX + "/prices", params={"symbols": "BTCUSDT,ETHUSDT"})
        assert r.status_code == 422 and "comma-separated symbols" in r.json()["detail"]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=st.sampled_from(["/prices", "/depth/{}", "/klines/{}", "/summary", "/all", "/status"]),
    word=st.text(min_size=0, max_size=12),
    number=st.one_of(st.integers(), st.text(max_size=6)),
    flag=st.sampled_from(["true", "false", "1", "maybe", ""]),
)
def test_fuzzed_requests_never_get_a_5xx(stack, path, word, number, flag):
    url = stack.api + path.format(quote(word, safe="") or "x")
    params = {
        "symbols": word,
        "limit": str(number),
        "interval": word,
        "history": flag,
        "start": word,
        "end": str(number),
    }
    r = httpx.get(url, params=params, timeout=10)
    assert r.status_code < 500, (url, params, r.text)
    if r.status_code >= 400:
        assert isinstance(r.json()["detail"], str)


def test_start_and_stop_on_loopback_need_no_token(stack):
    r = httpx.post(stack.api + "/start")
    assert r.status_code == 200 and r.json() == {"running": True, "message": "already running"}


def test_token_rules_beyond_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and not is_loopback("0.0.0.0")
    lab = Lab(["BTCUSDT"])
    with pytest.raises(ValueError, match="needs a token"):
        create_app(lab, require_token=True)
    app = create_app(lab, token="s3cret", require_token=True)
    with ServerThread(app) as server:
        api = server.url + PREFIX
        assert httpx.post(api + "/stop").status_code == 401
        assert (
            httpx.post(api + "/stop", headers={"Authorization": "Bearer wrong"}).status_code == 401
        )
        ok = httpx.post(api + "/stop", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json()["message"] == "not running"
        assert httpx.get(api + "/summary").status_code == 200  # reading needs no token


async def recv(ws, timeout: float = 5.0) -> dict:
    return orjson.loads(await asyncio.wait_for(ws.recv(), timeout))


async def until(ws, predicate, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        msg = await recv(ws, max(0.1, deadline - time.monotonic()))
        if predicate(msg):
            return msg


async def test_a_websocket_client_is_served_past_the_middleware_stack(stack):
    # A connection's coroutines live as long as it does, and each full garbage collection walks
    # them all: the ones of the middleware and router stack are not among them.
    def serving() -> Counter[str]:
        return Counter(
            o.__qualname__ for o in gc.get_objects() if isinstance(o, types.CoroutineType)
        )

    layers = ("ServerErrorMiddleware.__call__", "ExceptionMiddleware.__call__", "Router.__call__")
    before = serving()  # the server's lifespan runs through the stack for as long as it serves
    clients = [await connect(stack.ws) for _ in range(5)]
    try:
        for ws in clients:
            await ws.send(orjson.dumps({"action": "subscribe", "symbols": ["BTCUSDT"]}).decode())
            await until(ws, lambda m: m["type"] == "subscribed")
        held = serving()
        assert held["Hub.serve"] - before["Hub.serve"] == 5
        assert all(held[layer] == before[layer] for layer in layers), [held[x] for x in layers]
    finally:
        for ws in clients:
            await ws.close()


async def test_websocket_subscribe_broadcast_and_unsubscribe(stack):
    async with connect(stack.ws) as a, connect(stack.ws) as b:
        await a.send(
            orjson.dumps({"action": "subscribe", "symbols": ["BTCUSDT", "ETHUSDT"]}).decode()
        )
        ack = await until(a, lambda m: m["type"] == "subscribed")
        assert ack["channels"] == ["ticker"] and ack["symbols"] == ["BTCUSDT", "ETHUSDT"]
        await b.send(
            orjson.dumps(
                {
                    "action": "subscribe",
                    "symbols": ["ethusdt"],
                    "channels": ["trade", "kline_1m", "depth"],
                }
            ).decode()
        )
        await until(b, lambda m: m["type"] == "subscribed")
        seen_a, seen_b = set(), set()
        deadline = time.monotonic() + 10
        while (len(seen_a) < 2 or len(seen_b) < 3) and time.monotonic() < deadline:
            for ws, seen in ((a, seen_a), (b, seen_b)):
                with contextlib_suppress_timeout():
                    m = await recv(ws, 0.2)
                    if m["type"] in ("ticker", "trade", "kline", "depth"):
                        seen.add((m["type"], m["symbol"]))
        assert seen_a == {("ticker", "BTCUSDT"), ("ticker", "ETHUSDT")}
        assert seen_b == {("trade", "ETHUSDT"), ("kline", "ETHUSDT"), ("depth", "ETHUSDT")}
        hub = stack.server.server.config.app.state.hub
        assert sum(c.sent_raw for c in hub.clients) > 0, "updates never took the one-frame path"
        await b.send(
            orjson.dumps(
                {"action": "unsubscribe", "symbols": ["ETHUSDT"], "channels": ["trade"]}
            ).decode()
        )
        ack = await until(b, lambda m: m["type"] == "unsubscribed")
        assert ack["subscriptions"] == ["ETHUSDT:depth", "ETHUSDT:kline_1m"]
        began = time.monotonic()
        while time.monotonic() - began < 1.5:
            m = await recv(b)
            assert m["type"] != "trade"


class contextlib_suppress_timeout:
    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        return exc_type is TimeoutError


@pytest.mark.parametrize(
    ("message", "detail"),
    [
        ("{nope", "malformed JSON"),
        ("[1]", "expected a JSON object"),
        ('{"action": "dance"}', "unknown action"),
        ('{"action": "subscribe"}', "'symbols' must be"),
        ('{"action": "subscribe", "symbols": ["XRPUSDT"]}', "unknown symbol"),
        (
            '{"action": "subscribe", "symbols": ["BTCUSDT"], "channels": ["kline_1h"]}',
            "unknown channel",
        ),
        (
            '{"action": "subscribe", "symbols": ["BTCUSDT"], "channels": "ticker"}',
            "'channels' must be",
        ),
    ],
)
async def test_invalid_websocket_requests_get_an_error_not_a_disconnect(stack, message, detail):
    async with connect(stack.ws) as ws:
        await ws.send(message)
        error = await until(ws, lambda m: m["type"] == "error")
        assert detail in error["detail"]
        await ws.send('{"action": "ping"}')
        assert (await until(ws, lambda m: m["type"] == "pong")) == {"type": "pong"}


async def test_a_slow_client_is_cut_off_without_slowing_the_others(stack):
    hub = stack.server.server.config.app.state.hub
    slow_sock = socket.socket()
    slow_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and it never reads
    slow_sock.connect(("127.0.0.1", stack.server.port))
    everything = {
        "action": "subscribe",
        "symbols": ["BTCUSDT", "ETHUSDT"],
        "channels": ["ticker", "trade", "depth", "kline_1m", "kline_5m"],
    }
    before = hub.dropped_slow
    async with connect(stack.ws, sock=slow_sock, max_queue=1) as slow, connect(stack.ws) as fast:
        await slow.send(orjson.dumps(everything).decode())
        await fast.send(orjson.dumps({**everything, "channels": ["trade"]}).decode())
        await until(fast, lambda m: m["type"] == "subscribed")
        began = time.monotonic()
        while hub.dropped_slow == before and time.monotonic() - began < 60:
            await recv(fast)  # the fast client keeps reading all along
        assert hub.dropped_slow == before + 1, "the slow client was never cut off"
        count = 0
        began = time.monotonic()
        while time.monotonic() - began < 1.0:  # the fast client is still served, promptly
            m = await recv(fast, 1.0)
            count += m["type"] == "trade"
        assert count > 20


def test_lagging_clients_get_the_newest_ticker_and_depth_and_bounded_trades():
    client = Client(ws=None, max_backlog=3)  # the queueing logic alone, no socket
    for i in range(5):
        client.offer(("BTCUSDT", "ticker"), b"t%d" % i)
        client.offer(("BTCUSDT", "depth"), b"d%d" % i)
    assert list(client.latest.values()) == [b"t4", b"d4"] and client.conflated == 8
    for i in range(3):
        client.offer(("BTCUSDT", "trade"), b"x%d" % i)
    assert list(client.backlog) == [b"x0", b"x1", b"x2"] and not client.too_slow
    client.offer(("BTCUSDT", "trade"), b"x3")
    assert client.too_slow and len(client.backlog) == 3  # cut off, memory stays bounded


def test_the_api_serves_an_okx_lab_the_same_way(tmp_path):
    with SimExchange(["BTCUSDT"], speed=60, seed=17) as sim:
        lab = Lab(
            ["BTCUSDT"],
            intervals=["1m"],
            exchange="okx",
            okx_ws_url=sim.okx_ws_url,
            okx_rest_url=sim.rest_url,
            db=tmp_path / "okx.sqlite",
            db_flush_interval=0.2,
            **FAST,
            text_ping_after=0.5,
        )
        lab.start().wait_ready(30)
        try:
            with ServerThread(create_app(lab)) as server:
                api = server.url + PREFIX
                prices = httpx.get(api + "/prices", timeout=10).json()
                assert [p["symbol"] for p in prices["prices"]] == ["BTCUSDT"]
                sim.pause()
                assert sim.clock is not None  # a loaded market steps on until the pause
                wait_for(lambda: sim.now_ms() == sim.clock.now_ms(), 30, "the market at the pause")
                target = sim.book("BTCUSDT", venue="okx")["last_update_id"]
                wait_for(
                    lambda: lab.book("BTCUSDT").attrs["last_update_id"] == target, 15, "the book"
                )
                depth = httpx.get(api + "/depth/BTCUSDT", params={"limit": 10}, timeout=10).json()
                truth = sim.book("BTCUSDT", 10, venue="okx")
                assert [tuple(x) for x in depth["bids"]] == truth["bids"]
                assert depth["exchange"] == "okx"
                klines = httpx.get(
                    api + "/klines/BTCUSDT", params={"interval": "1m", "limit": 3}, timeout=10
                )
                assert klines.status_code == 200
                rows = klines.json()["klines"]
                assert (
                    len(rows) == 3
                    and rows[0]["trades"] == -1
                    and rows[0]["taker_buy_volume"] is None
                )
                sim.resume()
                summary = httpx.get(api + "/summary", timeout=10)
                assert summary.status_code == 200
        finally:
            sim.resume()
            lab.stop()


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_the_shared_frame_is_the_frame_websockets_would_send(size):
    from websockets.frames import Frame, Opcode

    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    assert text_frame(payload) == Frame(Opcode.TEXT, payload).serialize(mask=False)
