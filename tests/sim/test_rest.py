"""The simulator's REST API behaves as Binance documents it."""

import itertools
import time

import httpx
import pytest

from marketlab.sim import SimExchange
from tests.conftest import START


def get(sim: SimExchange, path: str, **params) -> httpx.Response:
    return httpx.get(f"{sim.rest_url}{path}", params=params, timeout=10)


def test_ping_time_and_weight_header(sim):
    r = get(sim, "/api/v3/ping")
    assert r.status_code == 200 and r.json() == {}
    used = int(r.headers["X-MBX-USED-WEIGHT-1M"])
    t = get(sim, "/api/v3/time")
    assert int(t.headers["X-MBX-USED-WEIGHT-1M"]) in (used + 1, 1)  # 1: a new minute began
    assert t.json()["serverTime"] >= START


def test_exchange_info_lists_symbols_with_filters(sim):
    info = get(sim, "/api/v3/exchangeInfo").json()
    assert [s["symbol"] for s in info["symbols"]] == ["BTCUSDT", "ETHUSDT"]
    limits = {r["rateLimitType"]: r for r in info["rateLimits"]}
    assert (
        limits["REQUEST_WEIGHT"]["limit"] == 6000
        and limits["REQUEST_WEIGHT"]["interval"] == "MINUTE"
    )
    btc = info["symbols"][0]
    filters = {f["filterType"]: f for f in btc["filters"]}
    assert filters["PRICE_FILTER"]["tickSize"] == "0.01000000"
    assert filters["LOT_SIZE"]["stepSize"] == "0.00001000"
    one = get(sim, "/api/v3/exchangeInfo", symbol="ETHUSDT").json()
    assert [s["symbol"] for s in one["symbols"]] == ["ETHUSDT"]
    two = get(sim, "/api/v3/exchangeInfo", symbols='["ETHUSDT","BTCUSDT"]').json()
    assert [s["symbol"] for s in two["symbols"]] == ["ETHUSDT", "BTCUSDT"]


def test_klines_rows_have_twelve_fields_and_match_the_record(sim):
    rows = get(
        sim, "/api/v3/klines", symbol="BTCUSDT", interval="1m", startTime=START - 3600_000, limit=5
    ).json()
    assert len(rows) == 5 and all(len(r) == 12 for r in rows)
    assert [r[0] for r in rows] == [START - 3600_000 + i * 60_000 for i in range(5)]
    assert all(r[6] == r[0] + 59_999 for r in rows)
    oracle = sim.klines("BTCUSDT", "1m", start=START - 3600_000, limit=5)
    for row, want in zip(rows, oracle, strict=True):
        assert float(row[1]) == want["open"] and float(row[4]) == want["close"]
        assert float(row[5]) == want["volume"] and row[8] == want["trades"]
        assert float(row[7]) == want["quote_volume"]
        assert float(row[2]) >= max(float(row[1]), float(row[4])) and float(row[3]) <= min(
            float(row[1]), float(row[4])
        )


def test_klines_without_times_end_with_the_open_candle(sim):
    rows = get(sim, "/api/v3/klines", symbol="BTCUSDT", interval="1h").json()
    assert 1 < len(rows) <= 500
    now = get(sim, "/api/v3/time").json()["serverTime"]
    assert rows[-1][0] <= now <= rows[-1][6] + 1000
    assert all(b[0] - a[0] == 3600_000 for a, b in itertools.pairwise(rows))


def test_klines_limits_and_time_windows(sim):
    base = START - 7200_000
    sim.pause()  # no candle may open between the two requests
    try:
        full = get(
            sim, "/api/v3/klines", symbol="ETHUSDT", interval="1m", startTime=base, limit=1000
        ).json()
        capped = get(
            sim, "/api/v3/klines", symbol="ETHUSDT", interval="1m", startTime=base, limit=5000
        ).json()
    finally:
        sim.resume()
    assert len(full) >= 120
    assert len(capped) == len(full)  # 1000 is the most a request returns
    window = get(
        sim,
        "/api/v3/klines",
        symbol="ETHUSDT",
        interval="1m",
        startTime=base + 1,
        endTime=base + 300_000,
    ).json()
    assert [r[0] for r in window] == [base + i * 60_000 for i in range(1, 6)]
    last_two = get(
        sim, "/api/v3/klines", symbol="ETHUSDT", interval="1m", endTime=base + 300_000, limit=2
    ).json()
    assert [r[0] for r in last_two] == [base + 240_000, base + 300_000]
    assert (
        get(
            sim, "/api/v3/uiKlines", symbol="ETHUSDT", interval="1m", startTime=base, limit=3
        ).json()
        == full[:3]
    )


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"interval": "1m"}, 400, -1102),
        ({"symbol": "BTCUSDT"}, 400, -1102),
        ({"symbol": "NOPEUSDT", "interval": "1m"}, 400, -1121),
        ({"symbol": "btcusdt", "interval": "1m"}, 400, -1100),
        ({"symbol": "BTCUSDT", "interval": "2m"}, 400, -1120),
        ({"symbol": "BTCUSDT", "interval": "1m", "limit": "ten"}, 400, -1100),
        ({"symbol": "BTCUSDT", "interval": "1m", "startTime": 2, "endTime": 1}, 400, -1023),
    ],
)
def test_klines_errors_use_binance_codes(sim, params, status, code):
    r = get(sim, "/api/v3/klines", **params)
    assert r.status_code == status
    body = r.json()
    assert body["code"] == code and body["msg"]


def test_depth_snapshot_and_weights(sim):
    r = get(sim, "/api/v3/depth", symbol="BTCUSDT", limit=10)
    d = r.json()
    assert len(d["bids"]) == 10 and len(d["asks"]) == 10 and d["lastUpdateId"] > 0
    bids = [float(p) for p, _ in d["bids"]]
    asks = [float(p) for p, _ in d["asks"]]
    assert bids == sorted(bids, reverse=True) and asks == sorted(asks) and bids[0] < asks[0]
    used = int(r.headers["X-MBX-USED-WEIGHT-1M"])
    r2 = get(sim, "/api/v3/depth", symbol="BTCUSDT", limit=1000)
    if int(r2.headers["X-MBX-USED-WEIGHT-1M"]) > used:  # same minute window
        assert int(r2.headers["X-MBX-USED-WEIGHT-1M"]) - used == 50
    assert get(sim, "/api/v3/depth", symbol="BTCUSDT").json()["bids"].__len__() == 100


def test_tickers(sim):
    one = get(sim, "/api/v3/ticker/24hr", symbol="BTCUSDT").json()
    assert one["symbol"] == "BTCUSDT" and one["closeTime"] - one["openTime"] == 86_400_000
    assert float(one["lowPrice"]) <= float(one["lastPrice"]) <= float(one["highPrice"])
    assert float(one["bidPrice"]) < float(one["askPrice"])
    assert (
        abs(float(one["priceChange"]) - (float(one["lastPrice"]) - float(one["openPrice"]))) < 1e-6
    )
    every = get(sim, "/api/v3/ticker/24hr").json()
    assert [t["symbol"] for t in every] == ["BTCUSDT", "ETHUSDT"]
    price = get(sim, "/api/v3/ticker/price", symbol="ETHUSDT").json()
    assert set(price) == {"symbol", "price"}
    assert len(get(sim, "/api/v3/ticker/price").json()) == 2
    book = get(sim, "/api/v3/ticker/bookTicker", symbol="BTCUSDT").json()
    assert float(book["bidPrice"]) < float(book["askPrice"])
    both = get(sim, "/api/v3/ticker/24hr", symbol="BTCUSDT", symbols='["ETHUSDT"]')
    assert both.status_code == 400 and both.json()["code"] == -1128


def test_recent_trades(sim):
    trades = get(sim, "/api/v3/trades", symbol="BTCUSDT", limit=20).json()
    assert 0 < len(trades) <= 20
    ids = [t["id"] for t in trades]
    assert ids == list(range(ids[0], ids[0] + len(ids)))


def test_weight_limit_gives_429_with_retry_after_then_a_418_ban():
    if time.time() % 60 > 50:  # keep the whole test inside one minute window
        time.sleep(61 - time.time() % 60)
    with SimExchange(
        ["BTCUSDT"], speed=1, weight_limit=30, violations_before_ban=2, ban_seconds=5
    ) as sim:
        statuses = []
        for _ in range(40):
            r = get(sim, "/api/v3/depth", symbol="BTCUSDT")  # weight 5
            statuses.append(r.status_code)
            if r.status_code == 418:
                break
        assert statuses[:6] == [200] * 6
        assert statuses[6] == 429
        rejected = get(sim, "/api/v3/ping")
        assert rejected.status_code in (429, 418) and int(rejected.headers["Retry-After"]) >= 1
        assert rejected.json()["code"] == -1003
        assert 418 in statuses or rejected.status_code == 418
        banned = get(sim, "/api/v3/time")
        assert banned.status_code == 418 and "banned" in banned.json()["msg"]


@pytest.mark.parametrize("status", [429, 418, 500, 503])
def test_injected_rest_failures_then_recovery(fresh_sim, status):
    fresh_sim.fail_rest(status, count=2, retry_after=3)
    first, second, third = (get(fresh_sim, "/api/v3/time") for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (status, status, 200)
    assert isinstance(first.json()["code"], int)
    if status in (429, 418):
        assert first.headers["Retry-After"] == "3"


def test_refusing_rest_connections(fresh_sim):
    fresh_sim.refuse_connections(1.0, rest=True)
    with pytest.raises(httpx.TransportError):
        get(fresh_sim, "/api/v3/ping")
    time.sleep(1.1)
    assert get(fresh_sim, "/api/v3/ping").status_code == 200


def test_fault_control_endpoint(fresh_sim):
    r = httpx.post(f"{fresh_sim.rest_url}/sim/v1/faults/rest503", params={"arg": "1"})
    assert r.json() == {"ok": True, "fault": "rest503"}
    assert get(fresh_sim, "/api/v3/ping").status_code == 503
    bad = httpx.post(f"{fresh_sim.rest_url}/sim/v1/faults/explode")
    assert bad.status_code == 400 and "unknown fault" in bad.json()["error"]
    status = httpx.get(f"{fresh_sim.rest_url}/sim/v1/status").json()
    assert status["symbols"] == ["BTCUSDT"] and status["speed"] == 60
