"""No missing trade: ids the stream skipped are fetched over REST by id and put in their place;
what the venue no longer keeps is reported as a hole with its id range."""

from __future__ import annotations

import time

import pytest

from marketlab.records import Trade
from marketlab.rings import TradeBuffer
from marketlab.sim import SimExchange
from marketlab.sim import market as sim_market
from tests.lab.test_lab import running_lab, wait_for


def trade(i: int) -> Trade:
    return Trade("BTCUSDT", i, 100.0 + i, 1.0, "buy" if i % 2 else "sell", 1_000 * i, 1_000 * i)


def test_late_trades_go_in_their_place_by_id_and_the_newest_capacity_stays():
    buf = TradeBuffer(capacity=10)
    for i in [1, 2, 3, 8, 9, 10, 11, 12]:
        assert buf.add(trade(i))
    assert buf.missed == 4
    assert buf.merge([trade(i) for i in (4, 5, 6, 7)]) == 4
    assert buf.merge([trade(5)]) == 0  # already there
    df = buf.frame()
    assert list(df["trade_id"]) == list(range(3, 13))  # ordered, the newest ten
    assert list(df["price"]) == [100.0 + i for i in range(3, 13)]
    assert buf.missed == 0
    assert buf.add(trade(13)) and not buf.add(trade(6))  # the stream goes on after the merge


def exchange_prices(sim: SimExchange, symbol: str, exchange: str) -> dict[int, float]:
    """The exchange's own trades by id (prices kept in ticks there, at the venue's prices)."""
    m = sim.markets_of(exchange)[symbol]
    for _ in range(100):
        try:  # a paused simulator may still be finishing the step that was due
            trades = list(m.recent_trades)
            break
        except RuntimeError:  # deque mutated during iteration: read it again
            time.sleep(0.01)
    else:
        raise AssertionError(f"{exchange} {symbol}: the simulator's trades never stood still")
    return {t.trade_id: t.price * m.spec.tick for t in trades}


@pytest.mark.parametrize("exchange", ["binance", "okx"])
def test_trades_missed_while_disconnected_are_fetched_by_id(sim, exchange):
    with running_lab(sim, symbols=("BTCUSDT", "ETHUSDT"), exchange=exchange) as (lab, _):
        time.sleep(1.0)
        for _ in range(2):
            sim.refuse_connections(1.5, venue=exchange)
            sim.drop_connections(venue=exchange)
            time.sleep(2.5)
        wait_for(
            lambda: all(c["connected"] for c in lab.summary()["connections"]), what="reconnect"
        )
        wait_for(lambda: sum(lab.summary()["trades_backfilled"].values()) > 0, 15, "a backfill")
        time.sleep(1.5)
        sim.pause()
        try:
            time.sleep(0.5)
            for symbol in ("BTCUSDT", "ETHUSDT"):
                df = lab.trades(symbol)
                ids = list(df["trade_id"])
                assert ids == list(range(ids[0], ids[0] + len(ids))), (
                    f"{symbol}: ids not contiguous"
                )
                truth = exchange_prices(sim, symbol, exchange)
                assert all(
                    truth[i] == pytest.approx(p, rel=1e-9)
                    for i, p in zip(ids, df["price"], strict=True)
                )
            status = lab.status()
            assert status.loc[("BTCUSDT", "trade"), "backfilled"] > 0
            assert status.loc[("BTCUSDT", "trade"), "gaps"] >= 1
            assert lab.summary()["trades_missed"] == {"BTCUSDT": 0, "ETHUSDT": 0}
            assert lab.summary()["trade_holes"] == {}
        finally:
            sim.resume()


def test_trades_the_venue_no_longer_keeps_are_reported_as_a_hole(monkeypatch):
    monkeypatch.setattr(sim_market, "TRADE_HISTORY", 40)  # a venue that keeps little
    with SimExchange(["BTCUSDT"], speed=60, seed=9) as sim, running_lab(sim) as (lab, _):
        time.sleep(1.0)
        sim.refuse_connections(2.0)
        sim.drop_connections()
        wait_for(lambda: lab.summary()["trade_holes"], 20, "a hole reported")
        (first, last), *_ = lab.summary()["trade_holes"]["BTCUSDT"]
        assert 0 < first <= last
        assert lab.summary()["trades_missed"]["BTCUSDT"] >= last - first + 1
        assert lab.status().loc[("BTCUSDT", "trade"), "gaps"] >= 1


def test_okx_trades_aggregate_fills_and_trades_all_has_each(sim):
    """As OKX does today: ``trades`` pushes one taker's fills at one price as one trade (``count``
    of them, ids skipping); ``trades-all`` on the business endpoint has every trade."""
    import asyncio

    import aiohttp
    import orjson

    async def take(path: str, channel: str) -> list[dict]:
        rows: list[dict] = []
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(sim.okx_ws_url.replace("/public", path)) as ws,
        ):
            await ws.send_str(
                orjson.dumps(
                    {"op": "subscribe", "args": [{"channel": channel, "instId": "BTC-USDT"}]}
                ).decode()
            )
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                msg = await ws.receive(timeout=3)
                data = (
                    orjson.loads(msg.data)
                    if msg.type == aiohttp.WSMsgType.TEXT and msg.data != "pong"
                    else {}
                )
                rows += data.get("data", [])
        return rows

    async def both() -> tuple[list[dict], list[dict]]:
        return await asyncio.gather(take("/public", "trades"), take("/business", "trades-all"))

    aggregated, each = asyncio.run(both())
    assert each and aggregated
    ids = [int(t["tradeId"]) for t in each]
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # contiguous, one by one
    assert "count" not in each[0]
    assert any(int(t["count"]) > 1 for t in aggregated)  # fills aggregated, so ids skip
    assert sum(int(t["count"]) for t in aggregated) >= len(aggregated)


def test_trades_of_a_rest_fallback_period_are_fetched_when_the_stream_returns(sim):
    """The WebSocket refused long enough for REST polling to take over (polling brings no
    trades): once the stream is back, the whole period's trades are fetched by id."""
    with running_lab(sim, symbols=("BTCUSDT",)) as (lab, _):
        time.sleep(1.0)
        sim.refuse_connections(5.0)  # FAST falls back to REST after 3 s
        sim.drop_connections()
        wait_for(lambda: lab.summary()["source"] == "rest", 10, "REST polling")
        wait_for(lambda: lab.status()["source"].eq("ws").all(), 20, "the stream back")
        wait_for(lambda: lab.summary()["trades_backfilled"].get("BTCUSDT", 0) > 0, 15, "a backfill")
        time.sleep(1.5)
        ids = list(lab.trades("BTCUSDT")["trade_id"])
        assert ids == list(range(ids[0], ids[0] + len(ids))), (
            "trades of the REST period are missing"
        )
        assert lab.summary()["trades_missed"]["BTCUSDT"] == 0
