"""A perpetual's history kept beside the klines and trades, against the simulator's three
perpetual venues: the fundings stored are the venue's REST history (those settled before the
Lab started and the one settled while it ran), open interest is the venue's, every liquidation
taken is stored once; and the store's own rules (each funding and reading once, NaN as not
given, a file from before perpetuals were kept)."""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import marketlab as ml
from marketlab.records import Funding, Liquidation, OpenInterest
from marketlab.sim import SimExchange
from marketlab.store.history import History
from marketlab.store.liquidation_parts import write_liquidations
from marketlab.store.perpetuals import PerpetualStore
from marketlab.store.sqlite import MIGRATIONS
from marketlab.venues.binance import perp_rest as binance_rest
from marketlab.venues.bybit import perp_rest as bybit_rest
from marketlab.venues.okx import perp_rest as okx_rest

VENUES = ("binance", "okx", "bybit")
# 23:50 UTC: the day's last funding (16:00) settled in the history, the next (00:00) ten seconds
# of wall time after the start at 60x
START = 1_767_311_400_000  # 2026-01-01T23:50:00Z
MIDNIGHT = 1_767_312_000_000


@pytest.fixture(scope="module")
def day_sim() -> Iterator[SimExchange]:
    with SimExchange(["BTCUSDT"], speed=60, seed=7, start_time=START, history="17h") as sim:
        yield sim


def _until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out: {what}"
        time.sleep(0.1)


def venue_fundings(sim: SimExchange, venue: str) -> dict[int, float]:
    """The venue's funding history as its REST serves it: funding time → rate."""
    base = sim.rest_url
    if venue == "binance":
        rows = httpx.get(f"{base}/fapi/v1/fundingRate", params={"symbol": "BTCUSDT"}).json()
        return {int(r["fundingTime"]): float(r["fundingRate"]) for r in rows}
    if venue == "okx":
        body = httpx.get(
            f"{base}/api/v5/public/funding-rate-history", params={"instId": "BTC-USDT-SWAP"}
        ).json()
        return {int(r["fundingTime"]): float(r["fundingRate"]) for r in body["data"]}
    body = httpx.get(
        f"{base}/v5/market/funding/history", params={"category": "linear", "symbol": "BTCUSDT"}
    ).json()
    return {int(r["fundingRateTimestamp"]): float(r["fundingRate"]) for r in body["result"]["list"]}


def venue_open_interest(sim: SimExchange, venue: str) -> dict[int, float]:
    """The venue's open interest history every 5 minutes (in the base asset)."""
    base = sim.rest_url
    if venue == "binance":
        rows = httpx.get(
            f"{base}/futures/data/openInterestHist",
            params={"symbol": "BTCUSDT", "period": "5m", "limit": 500},
        ).json()
        return {int(r["timestamp"]): float(r["sumOpenInterest"]) for r in rows}
    if venue == "okx":  # pages of 100 back from the newest: rows [ts, oi, oiCcy, oiUsd]
        out: dict[int, float] = {}
        params: dict[str, object] = {"instId": "BTC-USDT-SWAP", "period": "5m"}
        while True:
            url = f"{base}/api/v5/rubik/stat/contracts/open-interest-history"
            page = httpx.get(url, params=params).json()["data"]
            out.update({int(r[0]): float(r[2]) for r in page})
            if len(page) < 100:
                return out
            params["end"] = page[-1][0]
    body = httpx.get(
        f"{base}/v5/market/open-interest",
        params={"category": "linear", "symbol": "BTCUSDT", "intervalTime": "5min", "limit": 200},
    ).json()
    return {int(r["timestamp"]): float(r["openInterest"]) for r in body["result"]["list"]}


def test_a_lab_stores_each_venues_fundings_open_interest_and_liquidations(
    day_sim: SimExchange, tmp_path: Path
) -> None:
    db = tmp_path / "p.sqlite"
    urls = {
        f"{v}_perp_{kind}_url": getattr(day_sim, f"{kind}_url")
        for v in VENUES
        for kind in ("ws", "rest")
    }
    lab = ml.Lab(
        ["BTCUSDT-PERP"], exchanges=list(VENUES), db=db, store=("klines", "liquidations"), **urls
    ).start()
    history = History(db=db)
    try:
        lab.wait_ready(30)
        # the funding at midnight settles while the Lab runs: it is asked for and stored
        for venue in VENUES:
            _until(
                lambda v=venue: (
                    MIDNIGHT
                    in set(
                        int(t.timestamp() * 1000)
                        for t in history.funding("BTCUSDT-PERP", exchange=v).index
                    )
                ),
                45,
                f"{venue}'s midnight funding stored",
            )
        _until(
            lambda: all(len(lab.liquidations("BTCUSDT-PERP", exchange=v)) > 0 for v in VENUES),
            20,
            "a liquidation on every venue",
        )
    finally:
        lab.stop()
    for venue in VENUES:
        stored = history.funding("BTCUSDT-PERP", exchange=venue)
        times = [int(t.timestamp() * 1000) for t in stored.index]
        expected = venue_fundings(day_sim, venue)
        assert len(expected) >= 2 and MIDNIGHT in expected
        assert dict(zip(times, stored["rate"], strict=True)) == expected, venue

        kept = history.open_interest("BTCUSDT-PERP", exchange=venue)
        assert kept.index.is_unique and kept.index.is_monotonic_increasing
        assert (kept["open_interest"] > 0).all()
        readings = {int(t.timestamp() * 1000): v for t, v in kept["open_interest"].items()}
        past = venue_open_interest(day_sim, venue)
        before = {t: oi for t, oi in past.items() if t < START}  # before the Lab began
        assert len(before) > 100
        assert all(readings[t] == pytest.approx(oi, rel=1e-12) for t, oi in before.items())
        live = lab.open_interest("BTCUSDT-PERP", exchange=venue)
        taken = {
            int(t.timestamp() * 1000): v
            for t, v in zip(live["time"], live["open_interest"], strict=True)
        }
        assert any(t in taken for t in readings)
        assert all(readings[t] == taken[t] for t in readings if t in taken), venue

        liquidations = lab.liquidations("BTCUSDT-PERP", exchange=venue)
        kept_liq = history.liquidations("BTCUSDT-PERP", exchange=venue)
        assert len(kept_liq) == len(liquidations) > 0, venue
        stored_rows = zip(
            kept_liq.index,
            kept_liq["side"].astype(str),
            kept_liq["price"],
            kept_liq["qty"],
            strict=True,
        )
        taken_rows = zip(
            liquidations["time"],
            liquidations["side"],
            liquidations["price"],
            liquidations["qty"],
            strict=True,
        )
        assert sorted(stored_rows) == sorted(taken_rows), venue
        assert (kept_liq["sampled"] == (venue != "bybit")).all()
    # Bybit sends every liquidation: between the first and the last stored, each of the
    # simulated market's is stored, once
    kept_liq = history.liquidations("BTCUSDT-PERP", exchange="bybit")
    stored = [
        (int(t.timestamp() * 1000), str(side), price, qty)
        for t, side, price, qty in zip(
            kept_liq.index, kept_liq["side"], kept_liq["price"], kept_liq["qty"], strict=True
        )
    ]
    series = day_sim.bybit_perp.perps["BTCUSDT"]
    pd_, qd = series.spot.spec.price_decimals, series.spot.spec.qty_decimals
    first, last = stored[0][0], stored[-1][0]
    pushed = [
        (
            e.time,
            "long" if e.long else "short",
            round(e.price / 10**pd_, pd_),
            round(e.qty / 10**qd, qd),
        )
        for second in range(first // 1000 * 1000, last + 1, 1000)
        for e in series.liquidations(second)
        if first <= e.time <= last
    ]
    assert len(pushed) >= 3 and sorted(stored) == sorted(pushed)


@pytest.mark.parametrize(
    ("module", "limit_name"),
    [
        (binance_rest, "FUNDING_PAGE"),
        (okx_rest, "FUNDING_RATE_HISTORY_LIMIT"),
        (bybit_rest, "FUNDING_HISTORY_LIMIT"),
    ],
)
async def test_funding_history_is_paged_to_every_funding_of_a_range(
    day_sim: SimExchange, monkeypatch: pytest.MonkeyPatch, module, limit_name: str
) -> None:
    venue = module.__name__.split(".")[-2]
    expected = venue_fundings(day_sim, venue)
    monkeypatch.setattr(module, limit_name, 1)  # a page a funding: every page boundary met
    rest_class = {"binance": "BinancePerpRest", "okx": "OkxPerpRest", "bybit": "BybitPerpRest"}
    rest = getattr(module, rest_class[venue])(day_sim.rest_url)
    try:
        now = await rest.server_time()
        got = await rest.fundings_between("BTCUSDT-PERP", 0, now)
        assert [(f.funding_time, f.rate) for f in got] == sorted(expected.items())
        first, last = sorted(expected)[0], sorted(expected)[-1]
        inner = await rest.fundings_between("BTCUSDT-PERP", first + 1, last)
        assert [f.funding_time for f in inner] == [t for t in sorted(expected) if t > first]
    finally:
        await rest.close()


async def test_binance_funding_requests_keep_within_their_own_limit(
    day_sim: SimExchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``/fapi/v1/fundingRate`` has a limit of its own (500 in 5 minutes), apart from weights."""
    monkeypatch.setattr(binance_rest, "FUNDING_REQUESTS", 2)
    monkeypatch.setattr(binance_rest, "FUNDING_WINDOW_S", 0.5)
    rest = binance_rest.BinancePerpRest(day_sim.rest_url)
    try:
        began = time.monotonic()
        for _ in range(3):
            assert len(await rest.funding_history("BTCUSDT-PERP", limit=1)) == 1
        assert time.monotonic() - began >= 0.5  # the third waited for the first to age out
    finally:
        await rest.close()


def test_each_funding_and_reading_is_stored_once_the_newest_values_kept(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    store = PerpetualStore(db)
    try:
        store.add("binance", [Funding("BTCUSDT-PERP", 1000, 0.0001, math.nan)])
        store.add("binance", [Funding("BTCUSDT-PERP", 1000, 0.0002, 65_000.0)])
        store.add("okx", [Funding("BTCUSDT-PERP", 1000, -0.0003, math.nan)])
        store.add("binance", [OpenInterest("BTCUSDT-PERP", 5, 10.0, 650_000.0)])
        store.add("binance", [OpenInterest("BTCUSDT-PERP", 5, 11.0, math.nan)])  # value not given
        store.add("binance", [OpenInterest("BTCUSDT-PERP", 7, 12.0, math.nan)])
        store.flush(10)
        assert store.last_times("binance") == ({"BTCUSDT-PERP": 1000}, {"BTCUSDT-PERP": 7})
    finally:
        store.close()
    history = History(db=db)
    funding = history.funding("BTCUSDT-PERP")
    assert funding["rate"].tolist() == [0.0002] and funding["mark"].tolist() == [65_000.0]
    assert str(funding.index.tz) == "UTC" and funding.index.name == "funding_time"
    assert history.funding("BTCUSDT-PERP", exchange="okx")["rate"].tolist() == [-0.0003]
    oi = history.open_interest("btcusdt-perp")
    assert oi["open_interest"].tolist() == [11.0, 12.0]
    assert oi["value"].tolist()[0] == 650_000.0 and math.isnan(oi["value"].tolist()[1])
    assert history.open_interest("BTCUSDT-PERP", start=6)["open_interest"].tolist() == [12.0]
    got = history.sql(
        "select exchange, count(*) n, sum(rate) r from funding group by 1 order by 1"
    ).values.tolist()
    assert got == [["binance", 1, 0.0002], ["okx", 1, -0.0003]]
    assert history.sql("select max(open_interest) m from open_interest")["m"].tolist() == [12.0]


def test_a_file_from_before_perpetuals_were_kept_has_none(tmp_path: Path) -> None:
    path = tmp_path / "v3.sqlite"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for version in (1, 2, 3):
        for statement in MIGRATIONS[version]:
            old.execute(statement)
        old.execute("INSERT INTO schema_version VALUES (?)", (version,))
    old.commit()
    old.close()
    history = History(db=path)
    assert history.funding("BTCUSDT-PERP").empty and history.open_interest("BTCUSDT-PERP").empty
    store = PerpetualStore(path)  # opened for writing: migrated
    store.add("bybit", [Funding("BTCUSDT-PERP", 2000, 0.0001, math.nan)])
    store.flush(10)
    store.close()
    assert history.funding("BTCUSDT-PERP", exchange="bybit")["rate"].tolist() == [0.0001]


def test_a_liquidation_written_twice_is_read_once(tmp_path: Path) -> None:
    root = tmp_path / "t.ticks"
    day = 86_400_000
    liqs = [
        Liquidation("BTCUSDT-PERP", day - 5, "long", 100.0, 2.0, 99.0, False, day - 4),
        Liquidation("BTCUSDT-PERP", day + 5, "short", 101.0, 1.0, math.nan, False, day + 6),
        Liquidation("BTCUSDT-PERP", day + 5, "long", 101.0, 1.0, math.nan, False, day + 6),
    ]
    write_liquidations(root, "bybit", liqs)
    write_liquidations(root, "bybit", liqs[1:2])  # the bus's history writer, say, again
    history = History(db=tmp_path / "t.sqlite", ticks=root, exchange="bybit")
    got = history.liquidations("BTCUSDT-PERP")
    assert got["side"].tolist() == ["long", "long", "short"]
    assert got["notional"].tolist() == [200.0, 101.0, 101.0]
    assert got.index.is_monotonic_increasing and str(got.index.tz) == "UTC"
    assert history.liquidations("BTCUSDT-PERP", start=day)["side"].tolist() == ["long", "short"]
    assert history.liquidations("ETHUSDT-PERP").empty
    got = history.sql("select side, count(*) n from liquidations group by 1 order by 1")
    assert got.values.tolist() == [["long", 2], ["short", 1]]
