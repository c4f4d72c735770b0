"""Bybit's REST client over a real local HTTP server answering as Bybit documents, and against
the simulator's Bybit: the paths and parameters it asks (``category=spot`` always), the records
it makes, a 403 that holds every later request until the ban is over, and what each refusal
is (an unlisted symbol for good, a rate limit, a ban or a server error for now)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from marketlab.records import Interval
from marketlab.sim import SimExchange
from marketlab.store.backfill import closed_kline_pages
from marketlab.stream.rest import RestError
from marketlab.venues.bybit import rest as bybit_rest
from marketlab.venues.bybit.perp_rest import BybitPerpRest
from marketlab.venues.bybit.rest import BAN_S, BybitRest

NOW = 1767225660000  # 2026-01-01 00:01:00 UTC

ANSWERS = {
    "/v5/market/time": {
        "timeSecond": str(NOW // 1000),
        "timeNano": str(NOW * 1_000_000 + 123),
    },
    "/v5/market/kline": {
        "symbol": "BTCUSDT",
        "category": "spot",
        "list": [
            ["1767225660000", "3", "4", "2", "3.5", "2", "7"],
            ["1767225600000", "1", "3", "0.5", "2", "10", "25"],
        ],
    },
    "/v5/market/orderbook": {
        "s": "BTCUSDT",
        "a": [["65557.7", "16.606555"]],
        "b": [["65485.47", "47.081829"]],
        "ts": 1716863719031,
        "u": 230704,
        "seq": 1432604333,
        "cts": 1716863718905,
    },
    "/v5/market/recent-trade": {
        "category": "spot",
        "list": [
            {
                "execId": "2100000000007764264",
                "symbol": "BTCUSDT",
                "price": "16618.5",
                "size": "0.1",
                "side": "Sell",
                "time": "1767225650000",
                "isBlockTrade": False,
                "isRPITrade": False,
                "seq": "123457",
            },
            {
                "execId": "2100000000007764263",
                "symbol": "BTCUSDT",
                "price": "16618.49",
                "size": "0.00012",
                "side": "Buy",
                "time": "1767225640000",
                "isBlockTrade": False,
                "isRPITrade": True,
                "seq": "123456",
            },
        ],
    },
    "/v5/market/tickers": {
        "category": "spot",
        "list": [
            {
                "symbol": "BTCUSDT",
                "bid1Price": "20517.96",
                "bid1Size": "2",
                "ask1Price": "20527.77",
                "ask1Size": "1.862172",
                "lastPrice": "20533.13",
                "prevPrice24h": "20393.48",
                "price24hPcnt": "0.0068",
                "highPrice24h": "21128.12",
                "lowPrice24h": "20318.89",
                "turnover24h": "243765620.65899866",
                "volume24h": "11801.27771",
                "usdIndexPrice": "20784.12009279",
            }
        ],
    },
    "/v5/market/instruments-info": {
        "category": "spot",
        "list": [
            {
                "symbol": "BTCUSDT",
                "quoteCoin": "USDT",
                "status": "Trading",
                "priceFilter": {"tickSize": "0.01"},
            }
        ],
    },
}


@asynccontextmanager
async def bybit_like(
    seen: list[tuple[str, dict[str, str]]], status: int = 200
) -> AsyncIterator[str]:
    async def answer(request: web.Request) -> web.Response:
        seen.append((request.path, dict(request.query)))
        if status != 200:
            return web.Response(status=status, text="access too frequent")
        result = ANSWERS.get(request.path)
        if result is None:
            return web.json_response({"retCode": 10017, "retMsg": "route not found"})
        body = {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": NOW}
        return web.json_response(body)

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def test_the_client_asks_bybits_spot_endpoints_and_makes_records():
    async def run() -> None:
        seen: list[tuple[str, dict[str, str]]] = []
        async with bybit_like(seen) as url:
            rest = BybitRest(url)
            try:
                assert await rest.server_time() == NOW
                klines = await rest.klines("BTCUSDT", "1m", start=1767225600000, limit=2)
                book = await rest.depth("BTCUSDT", 50)
                listed = await rest.listed_symbols()
                trades = await rest.recent_trades("BTCUSDT", 500)
                (ticker,) = await rest.tickers(["BTCUSDT"])
            finally:
                await rest.close()
        assert [(k.open_time, k.closed) for k in klines] == [
            (1767225600000, True),
            (1767225660000, False),  # still open at the server's time
        ]
        assert book.last_update_id == 230704 and book.bids == [(65485.47, 47.081829)]
        assert listed == {"BTCUSDT": 0.01}
        assert [(t.trade_id, t.side, t.time) for t in trades] == [
            (2100000000007764263, "buy", 1767225640000),
            (2100000000007764264, "sell", 1767225650000),
        ]
        assert (ticker.bid, ticker.ask, ticker.event_time) == (20517.96, 20527.77, NOW)
        paths = [p for p, _ in seen]
        assert paths == [
            "/v5/market/time",
            "/v5/market/time",
            "/v5/market/kline",
            "/v5/market/orderbook",
            "/v5/market/instruments-info",
            "/v5/market/recent-trade",
            "/v5/market/tickers",
        ]
        kline_query = seen[2][1]
        assert kline_query == {
            "category": "spot",
            "symbol": "BTCUSDT",
            "interval": "1",
            "limit": "2",
            "start": "1767225600000",
            "end": str(1767225600000 + 2 * 60_000 - 1),
        }
        assert seen[3][1] == {"category": "spot", "symbol": "BTCUSDT", "limit": "50"}
        assert seen[4][1] == {"category": "spot"}
        assert seen[5] == (
            "/v5/market/recent-trade",
            {"category": "spot", "symbol": "BTCUSDT", "limit": "60"},  # spot's most
        )
        assert seen[6] == ("/v5/market/tickers", {"category": "spot", "symbol": "BTCUSDT"})

    asyncio.run(run())


def test_a_403_is_an_ip_ban_that_the_client_waits_out_and_never_retries_into():
    async def run() -> None:
        seen: list[tuple[str, dict[str, str]]] = []
        async with bybit_like(seen, status=403) as url:
            rest = BybitRest(url)
            try:
                try:
                    await rest.server_time()
                except RestError as exc:
                    assert exc.retryable
                else:
                    raise AssertionError("a 403 answered as a success")
                assert rest.governor.stats.banned == 1
                wait = rest.governor.delay(1, rest.clock())
                assert BAN_S - 5 <= wait <= BAN_S + 60
                asked = len(seen)
                late = asyncio.create_task(rest.server_time())
                await asyncio.sleep(0.2)
                assert not late.done() and len(seen) == asked  # held, not sent into the ban
                late.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await late
            finally:
                await rest.close()

    asyncio.run(run())


# --- refusals from the simulator's Bybit, over a real socket ------------------------------


async def test_an_unlisted_symbol_is_refused_for_good_with_bybits_code_and_message(perp_sim):
    spot, linear = BybitRest(perp_sim.rest_url), BybitPerpRest(perp_sim.rest_url)
    try:
        now = await spot.server_time()
        calls = [
            ("/v5/market/kline", lambda: spot.klines("NOPEUSDT", "1m", limit=5, server_time=now)),
            ("/v5/market/orderbook", lambda: spot.depth("NOPEUSDT", 50)),
            ("/v5/market/recent-trade", lambda: spot.recent_trades("NOPEUSDT")),
            ("/v5/market/orderbook", lambda: linear.depth("NOPEUSDT-PERP", 50)),
        ]
        for path, call in calls:
            with pytest.raises(RestError) as caught:
                await call()
            message = str(caught.value)
            assert not caught.value.retryable, message
            assert path in message and "NOPEUSDT" in message
            assert "10001" in message and "symbol invalid" in message  # the venue's own words
        assert spot.governor.stats.rate_limited == linear.governor.stats.rate_limited == 0
        assert spot.governor.delay(1, spot.clock()) == 0.0  # nothing to wait out
    finally:
        await spot.close()
        await linear.close()


async def test_backfill_gives_up_on_an_unlisted_symbol_after_one_request(perp_sim):
    rest = BybitRest(perp_sim.rest_url)
    try:
        now = await rest.server_time()
        asked = perp_sim.stats["rest_requests"]
        pages = closed_kline_pages(rest, "NOPEUSDT", Interval("1m"), now - 600_000, now, now)
        with pytest.raises(ValueError, match=r"NOPEUSDT.*10001"):
            await anext(pages)
        assert perp_sim.stats["rest_requests"] == asked + 1  # refused once, never asked again
    finally:
        await rest.close()


async def test_a_rate_limit_code_holds_the_next_request_for_a_window(perp_sim, monkeypatch):
    monkeypatch.setattr(bybit_rest, "WINDOW_S", 1.0)  # Bybit's 5 s window, shortened
    rest = BybitRest(perp_sim.rest_url)
    try:
        perp_sim.fail_rest(429, 1, venue="bybit")  # Bybit's way: HTTP 200, retCode 10006
        with pytest.raises(RestError) as caught:
            await rest.server_time()
        refused_at = time.monotonic()
        assert caught.value.retryable
        assert "10006" in str(caught.value) and "Too many visits!" in str(caught.value)
        assert rest.governor.stats.rate_limited == 1
        await assert_held_then_sent(perp_sim, rest, refused_at + 1.0)
    finally:
        await rest.close()


async def test_a_ban_is_waited_out_and_no_request_is_sent_into_it(perp_sim, monkeypatch):
    monkeypatch.setattr(bybit_rest, "BAN_S", 1.0)  # Bybit's 10 minutes, shortened
    monkeypatch.setattr(bybit_rest, "BAN_MARGIN_S", 0.2)
    rest = BybitRest(perp_sim.rest_url)
    try:
        perp_sim.ban_rest(0.6)  # every IP answered 403 (an HTML page) for 0.6 s
        with pytest.raises(RestError) as caught:
            await rest.server_time()
        refused_at = time.monotonic()
        assert caught.value.retryable and "403" in str(caught.value)
        assert (rest.governor.stats.banned, rest.governor.stats.forbidden) == (1, 1)
        await assert_held_then_sent(perp_sim, rest, refused_at + 1.2)
    finally:
        await rest.close()


async def test_a_server_error_may_pass_and_holds_nothing(perp_sim):
    rest = BybitRest(perp_sim.rest_url)
    try:
        perp_sim.fail_rest(502, 1, venue="bybit")  # HTTP 502 with retCode 10016
        with pytest.raises(RestError) as caught:
            await rest.server_time()
        message = str(caught.value)
        assert caught.value.retryable and "10016" in message and "HTTP 502" in message
        assert rest.governor.stats.server_errors == 1 and rest.governor.stats.rate_limited == 0
        assert rest.governor.delay(1, rest.clock()) == 0.0
        assert await rest.server_time() > 0  # asked again at once, answered
    finally:
        await rest.close()


async def assert_held_then_sent(sim: SimExchange, rest: BybitRest, not_before: float) -> None:
    """The next request waits in the client (the venue sees nothing) until ``not_before``
    (monotonic), then goes and is answered."""
    asked = sim.stats["rest_requests"]
    late = asyncio.create_task(rest.server_time())
    await asyncio.sleep(0.3)
    assert not late.done() and sim.stats["rest_requests"] == asked, "sent while held"
    assert await asyncio.wait_for(late, 15) > 0
    assert time.monotonic() >= not_before - 0.05
    assert sim.stats["rest_requests"] == asked + 1
    assert rest.governor.stats.waited_s > 0
