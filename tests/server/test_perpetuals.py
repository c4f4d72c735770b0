"""The perpetual routes and WebSocket channels: a real uvicorn over a Lab collecting BTCUSDT and
BTCUSDT-PERP from Binance, OKX and Bybit on the simulator."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import orjson
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from marketlab.lab import Lab
from marketlab.records import normalize_symbol
from marketlab.server import create_app
from marketlab.server.params import SYMBOL_PATTERN, symbols_pattern
from marketlab.server.runner import ServerThread
from marketlab.sim import SimExchange
from tests.lab.test_basis_across import VENUES, perpetual_venues
from tests.lab.test_lab import FAST
from tests.server.test_api import Stack, until


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with SimExchange(["BTCUSDT", "ETHUSDT"], speed=60, seed=31) as sim:
        lab = Lab(
            {venue: ["BTCUSDT", "BTCUSDT-PERP"] for venue in VENUES},
            intervals=["1m"],
            **{**FAST, **perpetual_venues(sim)},
        )
        with lab:
            lab.wait_ready(60)
            with ServerThread(create_app(lab)) as server:
                yield Stack(sim, lab, server)


def _eventually(stack: Stack, path: str, ready, timeout: float = 30.0, **params) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        r = stack.get(path, **params)
        assert r.status_code == 200, r.text
        body = r.json()
        if ready(body):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.2)


def _ms(iso: str) -> int:
    return int(pd.Timestamp(iso).timestamp() * 1000)


def test_funding_serves_every_venues_perpetual(stack):
    body = _eventually(
        stack,
        "/funding",
        lambda b: len(b["rows"]) == 3 and all(r["funding_rate"] is not None for r in b["rows"]),
    )
    assert body["funding_hours"] == 8
    assert [(r["exchange"], r["symbol"]) for r in body["rows"]] == [
        (v, "BTCUSDT-PERP") for v in VENUES
    ]
    frame = stack.lab.funding()
    for row in body["rows"]:
        held = frame.loc[(row["exchange"], "BTCUSDT-PERP")]
        assert -0.0075 <= row["funding_rate"] <= 0.0075
        assert row["funding_rate"] == pytest.approx(held["funding_rate"], abs=1e-4)
        assert row["annualized_pct"] == pytest.approx(row["funding_rate"] * 3 * 365 * 100)
        paid = pd.Timestamp(row["next_funding_time"])
        assert paid.tzinfo is not None and paid.hour % 8 == 0 and paid.minute == 0
    only = stack.get("/funding", exchange="OKX").json()
    assert [r["exchange"] for r in only["rows"]] == ["okx"]


def test_open_interest_is_the_labs_series(stack):
    body = _eventually(
        stack,
        "/open-interest/btcusdt-perp",
        lambda b: len(b["readings"]) >= 2,
        exchange="bybit",
        limit=5,
    )
    assert body["symbol"] == "BTCUSDT-PERP" and body["exchange"] == "bybit"
    readings = body["readings"]
    assert len(readings) <= 5 and all(r["open_interest"] > 0 for r in readings)
    times = [_ms(r["time"]) for r in readings]
    assert times == sorted(times)
    held = stack.lab.open_interest("BTCUSDT-PERP", exchange="bybit")
    by_time = dict(zip(held["time"].astype("int64") // 10**6, held["open_interest"], strict=True))
    assert all(by_time[t] == r["open_interest"] for t, r in zip(times, readings, strict=True))
    # without exchange=: the first venue collecting it
    assert stack.get("/open-interest/BTCUSDT-PERP").json()["exchange"] == "binance"


def test_liquidations_say_whether_the_venue_sends_each_one(stack):
    for venue, sampled in (("binance", True), ("bybit", False)):
        body = _eventually(
            stack,
            "/liquidations/BTCUSDT-PERP",
            lambda b: len(b["liquidations"]) > 0,
            exchange=venue,
        )
        assert body["sampled"] is sampled, venue
        for row in body["liquidations"]:
            assert row["side"] in ("long", "short") and row["qty"] > 0
            assert row["notional"] == pytest.approx(row["price"] * row["qty"])
        held = stack.lab.liquidations("BTCUSDT-PERP", exchange=venue)
        first = body["liquidations"][0]
        assert _ms(first["time"]) in set(held["time"].astype("int64") // 10**6)


def test_basis_against_every_venues_spot_mid_and_their_median(stack):
    body = _eventually(
        stack,
        "/basis/BTCUSDT-PERP",
        lambda b: all(r["basis_bps"] is not None for r in b["rows"]),
    )
    assert body["symbol"] == "BTCUSDT-PERP" and body["funding_hours"] == 8
    assert body["spot_symbols"] == dict.fromkeys(VENUES, "BTCUSDT")
    assert body["median_of"] == VENUES
    pairs = [(r["exchange"], r["spot_exchange"]) for r in body["rows"]]
    assert pairs == [(p, s) for p in VENUES for s in [*VENUES, "median"]]
    for r in body["rows"]:
        assert r["basis_bps"] == pytest.approx((r["perp_mid"] / r["spot_mid"] - 1) * 1e4)
        assert abs(r["basis_bps"]) < 30
        assert r["basis_annualized_pct"] == pytest.approx(r["basis_bps"] / 1e4 * 1095 * 100)
    median = next(r for r in body["rows"] if r["spot_exchange"] == "median")
    mids = sorted(r["spot_mid"] for r in body["rows"][:3])
    assert median["spot_mid"] == mids[1] and median["spot_symbol"] == ""


@pytest.mark.parametrize(
    ("path", "params", "status", "said"),
    [
        ("/open-interest/BTCUSDT", {}, 404, "BTCUSDT is a spot symbol: ask for its perpetual"),
        ("/liquidations/ETHUSDT-PERP", {}, 404, "ETHUSDT-PERP is not collected"),
        ("/liquidations/BTCUSDT-PERP", {"exchange": "kraken"}, 404, "unknown exchange 'kraken'"),
        ("/basis/BTCUSDT", {}, 404, "spot symbol"),
        ("/basis/ETHUSDT-PERP", {}, 404, "binance: BTCUSDT-PERP"),
        ("/funding", {"exchange": "kraken"}, 404, "this server collects binance, okx, bybit"),
        ("/basis/BTCUSDT-PERP", {"quote_equivalents": "USD"}, 422, "QUOTE:AS pairs"),
        ("/open-interest/A-PERP", {}, 422, "invalid symbol 'A-PERP'"),
        ("/open-interest/BTCUSDT-PERP", {"limit": 0}, 422, "limit"),
    ],
)
def test_what_is_not_served_is_a_4xx_that_says_why(stack, path, params, status, said):
    r = stack.get(path, **params)
    assert r.status_code == status, r.text
    assert list(r.json()) == ["detail"] and said in r.json()["detail"]


async def test_the_websocket_carries_marks_open_interest_and_liquidations(stack):
    async with connect(stack.ws) as ws:
        await ws.send(
            orjson.dumps(
                {
                    "action": "subscribe",
                    "exchange": "bybit",
                    "symbols": ["btcusdt-perp"],
                    "channels": ["mark", "open_interest", "liquidation"],
                }
            ).decode()
        )
        ack = await until(ws, lambda m: m["type"] == "subscribed")
        assert ack["subscriptions"] == [
            "bybit:BTCUSDT-PERP:liquidation",
            "bybit:BTCUSDT-PERP:mark",
            "bybit:BTCUSDT-PERP:open_interest",
        ]
        seen: dict[str, dict] = {}
        deadline = time.monotonic() + 30
        while len(seen) < 3:
            m = await until(ws, lambda m: m["type"] != "subscribed", deadline - time.monotonic())
            assert m["exchange"] == "bybit" and m["symbol"] == "BTCUSDT-PERP", m
            seen.setdefault(m["type"], m["data"])
        assert set(seen) == {"mark", "open_interest", "liquidation"}
        assert seen["mark"]["mark"] > 0 and -0.0075 <= seen["mark"]["funding_rate"] <= 0.0075
        assert seen["open_interest"]["open_interest"] > 0
        liq = seen["liquidation"]
        assert liq["side"] in ("long", "short") and liq["sampled"] is False
        assert liq["notional"] == pytest.approx(liq["price"] * liq["qty"])
        held = stack.lab.liquidations("BTCUSDT-PERP", exchange="bybit")
        assert liq["time"] in set(held["time"].astype("int64") // 10**6)

        await ws.send(
            orjson.dumps(
                {"action": "subscribe", "symbols": ["BTCUSDT"], "channels": ["ticker", "mark"]}
            ).decode()
        )
        error = await until(ws, lambda m: m["type"] == "error")
        assert "['mark'] are a perpetual's" in error["detail"] and "BTCUSDT-PERP" in error["detail"]


@settings(max_examples=500, deadline=None)
@given(st.from_regex(symbols_pattern(3), fullmatch=True))
def test_every_symbol_the_schema_allows_is_a_symbol(text):
    """What the path and list patterns let in always has a canonical name (X-PERP names no
    pair, so the pattern refuses it): the server answers it, never fails on it."""
    for item in text.split(","):
        assert re.fullmatch(SYMBOL_PATTERN, item)
        normalize_symbol(item)
