"""The API server over a Lab collecting four venues at once, against one simulator: every
venue's rows in /prices, exchange= on the readers, per-venue status and summary, WebSocket
subscriptions per venue, and the cross-venue views served as the Lab computes them."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect

from marketlab.lab import Lab
from marketlab.server import PREFIX, create_app
from marketlab.server.runner import ServerThread
from marketlab.sim import SimExchange
from tests.lab.test_lab import FAST, venue_options, wait_for
from tests.server.test_api import recv, until

VENUES = ["binance", "okx", "bybit", "coinbase"]
SYMBOLS = ["BTCUSDT", "ETHUSDT"]


class Stack:
    def __init__(self, sim: SimExchange, lab: Lab, server: ServerThread):
        self.sim, self.lab, self.server = sim, lab, server
        self.api = server.url + PREFIX
        self.ws = server.url.replace("http", "ws", 1) + PREFIX + "/ws"

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(self.api + path, params=params, timeout=10)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    db = tmp_path_factory.mktemp("venues") / "four.sqlite"
    # a paused exchange sends nothing: no venue may take the silence for a dead connection
    options: dict[str, Any] = {**FAST, "idle_timeout": 120.0}
    with SimExchange(SYMBOLS, speed=60, seed=29) as sim:
        for venue in VENUES:  # every venue's URLs point at the simulator
            options.update(venue_options(sim, venue))
        lab = Lab(
            SYMBOLS,
            intervals=["1m"],
            exchanges=VENUES,
            db=db,
            db_flush_interval=0.2,
            **options,
        )
        lab.start()
        try:
            lab.wait_ready(60)
            with ServerThread(create_app(lab)) as server:
                yield Stack(sim, lab, server)
        finally:
            lab.stop()


def _levels(body: dict[str, Any]) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    return [tuple(x) for x in body["bids"]], [tuple(x) for x in body["asks"]]


@pytest.fixture
def paused(stack) -> Iterator[Stack]:
    """The exchange frozen and every venue's books in the Lab equal to that venue's own."""
    sim = stack.sim
    sim.pause()
    try:
        # a loaded simulator's market lags its clock: it steps on until it reaches the pause
        assert sim.clock is not None
        wait_for(lambda: sim.now_ms() == sim.clock.now_ms(), 30, "the market at the pause")
        for symbol in SYMBOLS:
            truth = {v: stack.sim.book(symbol, 20, venue=v) for v in VENUES}

            def equal(s: str = symbol, t: dict = truth) -> bool:
                for v in VENUES:
                    view = stack.lab.book_levels(s, 20, exchange=v)
                    want = ([tuple(x) for x in t[v]["bids"]], [tuple(x) for x in t[v]["asks"]])
                    if not view.synced or (list(view.bids), list(view.asks)) != want:
                        return False
                return True

            wait_for(equal, 20, f"every venue's {symbol} book equal to the venue's")
        time.sleep(0.3)  # the last tickers in
        yield stack
    finally:
        stack.sim.resume()


def _same(a: Any, b: Any) -> bool:
    """Equal, NaN served as null."""
    if isinstance(b, float) and math.isnan(b):
        return a is None
    return a == b


def test_prices_list_every_venue_and_exchange_filters(paused):
    body = paused.get("/prices").json()
    assert [(p["exchange"], p["symbol"]) for p in body["prices"]] == [
        (v, s) for v in VENUES for s in SYMBOLS
    ]
    assert body["missing"] == [] and body["missing_by_exchange"] == {}
    rows = {(r["exchange"], r["symbol"]): r for r in paused.lab.price_rows()}
    for p in body["prices"]:
        row = rows[(p["exchange"], p["symbol"])]
        for key in ("last", "bid", "ask", "change_pct", "volume", "source"):
            assert _same(p[key], row[key]), (p["exchange"], key)
    okx = paused.get("/prices", exchange="okx", symbols="ethusdt").json()
    assert [(p["exchange"], p["symbol"]) for p in okx["prices"]] == [("okx", "ETHUSDT")]
    btc = paused.get("/prices", symbols="BTCUSDT").json()
    assert [p["exchange"] for p in btc["prices"]] == VENUES
    assert paused.get("/prices", exchange="OKX").status_code == 200  # names are case-blind


def test_klines_and_depth_of_each_venue(paused):
    for venue in VENUES:
        body = paused.get("/klines/BTCUSDT", interval="1m", limit=5, exchange=venue).json()
        assert body["exchange"] == venue and body["source"] == "live"
        frame = paused.lab.klines("BTCUSDT", "1m", exchange=venue).tail(5)
        assert [k["close"] for k in body["klines"]] == list(frame["close"])
        assert [k["volume"] for k in body["klines"]] == list(frame["volume"])
        depth = paused.get("/depth/ETHUSDT", limit=20, exchange=venue).json()
        truth = paused.sim.book("ETHUSDT", 20, venue=venue)
        assert depth["exchange"] == venue and depth["synced"]
        assert _levels(depth) == (
            [tuple(x) for x in truth["bids"]],
            [tuple(x) for x in truth["asks"]],
        )
    default = paused.get("/depth/ETHUSDT").json()
    assert default["exchange"] == "binance"  # no exchange=: the first venue, as before
    history = paused.get("/klines/BTCUSDT", history="true", limit=2, exchange="bybit")
    assert history.status_code == 200 and history.json()["exchange"] == "bybit"


def test_an_exchange_not_collected_is_a_404_naming_the_venues(stack):
    for path in ("/prices", "/depth/BTCUSDT", "/klines/BTCUSDT", "/summary", "/all", "/status"):
        r = stack.get(path, exchange="kraken")
        assert r.status_code == 404, path
        assert r.json() == {
            "detail": "unknown exchange 'kraken': this server collects binance, okx, bybit, "
            "coinbase"
        }, path
    r = stack.get("/depth/BTCUSDT", exchange="okx!")
    assert r.status_code == 422 and "invalid exchange 'okx!'" in r.json()["detail"]


def test_summary_and_status_per_venue(stack):
    summary = stack.get("/summary").json()
    assert summary["exchange"] == "binance" and summary["exchanges"] == VENUES
    assert summary["running"] and summary["source"] == "ws"
    assert list(summary["venues"]) == VENUES
    for venue, part in summary["venues"].items():
        assert part["running"], venue
        assert [s["symbol"] for s in part["symbols"]] == SYMBOLS
        assert all(s["book_synced"] and s["last"] is not None for s in part["symbols"]), venue
    coinbase = stack.get("/summary", exchange="coinbase").json()
    assert coinbase["exchange"] == "coinbase" and coinbase["venues"] is None
    status = stack.get("/status").json()
    assert status["exchange"] == "binance" and status["exchanges"] == VENUES
    assert {s["exchange"] for s in status["streams"]} == set(VENUES)
    assert set(status["venues"]) == set(VENUES)
    assert all(v["running"] and v["error"] is None for v in status["venues"].values())
    assert status["store"]["state"] == "ok"
    bybit = stack.get("/status", exchange="bybit").json()
    assert bybit["exchange"] == "bybit" and bybit["venues"] is None
    assert bybit["streams"] and {s["exchange"] for s in bybit["streams"]} == {"bybit"}
    depth = {s["symbol"]: s for s in bybit["streams"] if s["stream"] == "depth"}
    assert depth["BTCUSDT"]["book"] == "synced"
    everything = stack.get("/all", exchange="okx").json()
    assert set(everything["depth"]) == set(SYMBOLS)
    assert everything["depth"]["BTCUSDT"]["exchange"] == "okx"
    assert {p["exchange"] for p in everything["prices"]["prices"]} == {"okx"}
    assert everything["summary"]["exchange"] == "okx"


def test_the_cross_venue_views_are_the_labs(paused):
    lab = paused.lab
    body = paused.get("/bbo/btcusdt").json()
    frame = lab.bbo("BTCUSDT")
    best = frame.attrs["bbo"]
    for key in ("best_bid", "best_bid_venue", "best_ask", "best_ask_venue", "mid", "spread_bps"):
        assert _same(body[key], best[key]), key
    assert body["state"] == best["state"] and body["venues"] == VENUES
    assert body["excluded"] == {} and body["symbols"] == frame.attrs["symbols"]
    assert body["quotes"] == {v: "USDT" for v in VENUES}
    assert [r["exchange"] for r in body["per_venue"]] == VENUES
    for row in body["per_venue"]:
        want = frame.loc[row["exchange"]]
        assert row["bid"] == want["bid"] and row["ask"] == want["ask"]
        assert row["best_bid"] == bool(want["best_bid"])
        assert row["best_ask"] == bool(want["best_ask"])

    book = paused.get("/consolidated_book/ETHUSDT", depth=10).json()
    merged = lab.consolidated_book("ETHUSDT", depth=10)
    for side, name in (("bid", "bids"), ("ask", "asks")):
        rows = merged[merged.side == side]
        assert [
            (lv["price"], lv["qty"], lv["exchange"], lv["cum_qty"]) for lv in book[name]
        ] == list(zip(rows.price, rows.qty, rows.exchange, rows.cum_qty, strict=True))
        assert len(book[name]) == 10
    assert book["venues"] == VENUES and book["crossed"] == merged.attrs["crossed"]
    assert book["excluded"] == {} and book["depth"] == 10

    divergence = paused.get("/divergence", quote_equivalents="USD:USDT").json()
    frame = lab.divergence({"USD": "USDT"})
    served = [(r["symbol"], r["exchange"]) for r in divergence["rows"]]
    assert served == list(frame.index) and len(served) == len(SYMBOLS) * len(VENUES)
    for r in divergence["rows"]:
        want = frame.loc[(r["symbol"], r["exchange"])]
        assert all(_same(r[k], float(want[k])) for k in ("mid", "median", "bps"))
        assert r["venues"] == want["venues"] == len(VENUES)
    assert divergence["markets"] == frame.attrs["markets"]
    assert divergence["quotes"]["BTCUSDT"] == {v: "USDT" for v in VENUES}


def test_bad_cross_venue_requests_get_4xx_that_say_what(stack):
    for path, params, status, text in [
        ("/bbo/XRPUSDT", {}, 404, "unknown symbol 'XRPUSDT': no venue collects XRPUSDT"),
        ("/bbo/BTCUSDT", {"quote_equivalents": "USD=USDT"}, 422, "QUOTE:AS pairs"),
        ("/consolidated_book/BTCUSDT", {"depth": 0}, 422, "greater than or equal"),
        ("/consolidated_book/BTCUSDT", {"quote_equivalents": ":USDT"}, 422, "QUOTE:AS pairs"),
        ("/divergence", {"quote_equivalents": "USD:USDT;USDC:USDT"}, 422, "QUOTE:AS pairs"),
    ]:
        r = stack.get(path, **params)
        assert r.status_code == status and text in r.json()["detail"], (path, r.json())


def test_venues_quoting_in_different_assets_are_compared_only_when_declared():
    lab = Lab({"binance": ["BTCUSDT"], "coinbase": ["BTCUSD"]}, exchanges=["binance", "coinbase"])
    with ServerThread(create_app(lab)) as server:  # never started: every book "not started"
        api = server.url + PREFIX
        refused = httpx.get(api + "/bbo/BTCUSDT")
        assert refused.status_code == 409
        assert "declare quote_equivalents={'USD': 'USDT'}" in refused.json()["detail"]
        assert httpx.get(api + "/divergence").status_code == 409
        body = httpx.get(api + "/bbo/BTCUSDT", params={"quote_equivalents": "usd:usdt"}).json()
        assert body["symbols"] == {"binance": "BTCUSDT", "coinbase": "BTCUSD"}
        assert body["quotes"] == {"binance": "USDT", "coinbase": "USD as USDT"}
        assert body["state"] == "empty" and body["best_bid"] is None
        assert body["excluded"] == {"binance": "not started", "coinbase": "not started"}
        book = httpx.get(
            api + "/consolidated_book/BTCUSD", params={"quote_equivalents": "USD:USDT"}
        ).json()
        assert book["bids"] == book["asks"] == [] and book["symbols"]["binance"] == "BTCUSDT"
        r = httpx.get(api + "/depth/BTCUSD", params={"exchange": "binance"})
        assert r.status_code == 404 and "collects BTCUSDT from binance" in r.json()["detail"]
        assert httpx.get(api + "/depth/BTCUSD", params={"exchange": "coinbase"}).status_code == 200


async def test_websocket_subscriptions_name_their_venue(stack):
    async with connect(stack.ws) as seed, connect(stack.ws) as okx, connect(stack.ws) as bad:
        # the seed report's example, unchanged: the first venue's tickers
        await seed.send(
            orjson.dumps({"action": "subscribe", "symbols": ["BTCUSDT", "ETHUSDT"]}).decode()
        )
        ack = await until(seed, lambda m: m["type"] == "subscribed")
        assert ack["channels"] == ["ticker"] and ack["symbols"] == ["BTCUSDT", "ETHUSDT"]
        assert ack["subscriptions"] == ["BTCUSDT:ticker", "ETHUSDT:ticker"]
        await okx.send(
            orjson.dumps(
                {
                    "action": "subscribe",
                    "exchange": "okx",
                    "symbols": ["btcusdt"],
                    "channels": ["ticker", "trade", "depth", "kline_1m"],
                }
            ).decode()
        )
        ack = await until(okx, lambda m: m["type"] == "subscribed")
        assert ack["exchange"] == "okx"
        assert ack["subscriptions"] == [
            "okx:BTCUSDT:depth",
            "okx:BTCUSDT:kline_1m",
            "okx:BTCUSDT:ticker",
            "okx:BTCUSDT:trade",
        ]
        seen_seed: set[tuple[str, str, str]] = set()
        seen_okx: set[tuple[str, str, str]] = set()
        deadline = time.monotonic() + 15
        while (len(seen_seed) < 2 or len(seen_okx) < 4) and time.monotonic() < deadline:
            for ws, seen in ((seed, seen_seed), (okx, seen_okx)):
                try:
                    m = await recv(ws, 0.2)
                except TimeoutError:
                    continue
                if m["type"] in ("ticker", "trade", "kline", "depth"):
                    seen.add((m["type"], m["exchange"], m["symbol"]))
                    if m["type"] == "depth" and m["exchange"] == "okx":
                        assert m["data"]["bids"] and m["data"]["asks"]
        assert seen_seed == {("ticker", "binance", "BTCUSDT"), ("ticker", "binance", "ETHUSDT")}
        assert seen_okx == {
            ("ticker", "okx", "BTCUSDT"),
            ("trade", "okx", "BTCUSDT"),
            ("depth", "okx", "BTCUSDT"),
            ("kline", "okx", "BTCUSDT"),
        }
        await bad.send(
            orjson.dumps(
                {"action": "subscribe", "exchange": "kraken", "symbols": ["BTCUSDT"]}
            ).decode()
        )
        error = await until(bad, lambda m: m["type"] == "error")
        assert error["detail"] == (
            "unknown exchange 'kraken': this server collects binance, okx, bybit, coinbase"
        )
        await okx.send(
            orjson.dumps(
                {
                    "action": "unsubscribe",
                    "exchange": "okx",
                    "symbols": ["BTCUSDT"],
                    "channels": ["trade"],
                }
            ).decode()
        )
        ack = await until(okx, lambda m: m["type"] == "unsubscribed")
        assert "okx:BTCUSDT:trade" not in ack["subscriptions"] and len(ack["subscriptions"]) == 3
