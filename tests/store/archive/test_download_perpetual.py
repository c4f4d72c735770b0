"""The USDⓈ-M archive end to end, against the simulator's archive with its traps on: a download
of a perpetual's klines, aggTrades and trades over 2024-12 → 2025-01 keeps them under the
Lab's name (exchange ``binance``, ``BTCUSDT-PERP``), refuses the corrupt file by name, fills
the missing day and the id hole over the perpetual REST (``/fapi/v1/klines``,
``/fapi/v1/aggTrades?fromId=``), lists the single trades' holes it cannot fill, and a Lab
collecting BTCUSDT-PERP afterwards leaves every candle and aggregate trade id once."""

from __future__ import annotations

import json
import urllib.request

import pytest

from marketlab.lab import Lab
from marketlab.sim import SimExchange
from marketlab.store.archive.layout import parse_when
from marketlab.store.history import History
from tests.lab.test_lab import FAST
from tests.store.archive.collecting import collect_past_the_archive

JAN2 = 1_735_776_000_000  # 2025-01-02T00:00Z
START = JAN2 + 5 * 60_000  # the simulator's clock starts here, in the past
HISTORY_S = 60 * 3600 + 300  # its market began 2024-12-30T12:00Z
CORRUPT = "data/futures/um/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2025-01-01.zip"


@pytest.fixture(scope="module")
def sim():
    with SimExchange(
        ["BTCUSDT"], start_time=START, history=HISTORY_S, trades_per_second=0.01, speed=60
    ) as s:
        s.inject("archive_clear")
        s.inject("archive_corrupt", CORRUPT)  # the futures file only: spot's same name is whole
        s.inject("archive_missing", "2024-12-31")
        s.inject("archive_hole", "2025-01-01:4")
        yield s


def perp_klines(sim: SimExchange, start: int, end: int, interval: str = "1m") -> list[list]:
    """The perpetual's candles as its REST gives them, pages of 1500."""
    step = {"1m": 60_000, "1h": 3_600_000}[interval]
    rows: list[list] = []
    cursor = start
    while cursor <= end:
        url = (
            f"{sim.rest_url}/fapi/v1/klines?symbol=BTCUSDT&interval={interval}"
            f"&startTime={cursor}&endTime={end}&limit=1500"
        )
        with urllib.request.urlopen(url) as resp:
            page = json.loads(resp.read())
        if not page:
            break
        rows += page
        cursor = page[-1][0] + step
    return rows


def test_a_perpetuals_archive_then_collect_leaves_every_candle_and_agg_id_once(sim, tmp_path):
    db = tmp_path / "m.sqlite"
    history = History(db=db, rest_url=sim.rest_url)
    report = history.download(
        "BTCUSDT-PERP",
        "klines:1m,aggTrades,trades",
        "2024-12",
        "2025-01",
        market="um",
        archive_url=sim.archive_url,
        progress=False,
    )
    assert set(report["symbol"]) == {"BTCUSDT-PERP"}
    refused = report[report["what"].str.startswith("refused: checksum mismatch")]
    assert list(refused["file"]) == ["BTCUSDT-1m-2025-01-01.zip"]
    candles = report[report["what"] == "candles missing"]
    assert len(candles) == 1 and candles["filled"].all()  # over /fapi/v1/klines
    assert candles["missing"].iloc[0] == 2 * 1440  # the missing day and the refused file's
    aggs = report[(report["kind"] == "aggTrades") & report["first_id"].notna()]
    assert len(aggs) == 2 and aggs["filled"].all(), aggs  # over /fapi/v1/aggTrades?fromId=
    assert sorted(aggs["missing"])[0] == 4
    singles = report[(report["kind"] == "trades") & report["first_id"].notna()]
    assert len(singles) == 2 and not singles["filled"].any()  # historicalTrades wants a key
    assert list(singles.sort_values("first_id")["missing"]) == list(
        aggs.sort_values("first_id")["missing"]
    )

    # every candle once, with the perpetual's values (not spot's)
    kl = history.klines("BTCUSDT-PERP", "1m", start=parse_when("2024-12-30"), end=JAN2 - 1)
    venue = perp_klines(sim, parse_when("2024-12-30"), JAN2 - 1)
    assert len(kl) == len(venue) == 60 * 60
    assert [int(t.value // 1_000_000) for t in kl.index] == [k[0] for k in venue]
    assert list(kl["close"]) == [float(k[4]) for k in venue]
    assert list(kl["trades"]) == [k[8] for k in venue]
    spot = sim.klines("BTCUSDT", "1m", parse_when("2024-12-30"), JAN2 - 1, limit=10_000)
    assert list(kl["close"]) != [k["close"] for k in spot]  # the perpetual trades at a premium
    assert len(history.klines("BTCUSDT", "1m")) == 0  # nothing kept under the spot pair

    # every aggregate trade id once, where the Lab keeps a perpetual's trades
    ids = list(history.trades("BTCUSDT-PERP", end=JAN2 - 1)["trade_id"])
    assert ids == list(range(1, len(ids) + 1))
    assert len(ids) == sum(k[8] for k in venue)

    # the collector takes over where the archive ends
    lab = Lab(
        ["BTCUSDT-PERP"],
        intervals=["1m"],
        db=db,
        store=("klines", "trades"),
        **{**FAST, "binance_perp_ws_url": sim.ws_url, "binance_perp_rest_url": sim.rest_url},
    )
    traded = collect_past_the_archive(lab, sim, "BTCUSDT-PERP")
    stored = History(db=db).klines("BTCUSDT-PERP", "1m")
    opens = [int(t.value // 1_000_000) for t in stored.index]
    assert opens == list(range(opens[0], opens[-1] + 60_000, 60_000))
    assert opens[0] < parse_when("2024-12-31") and opens[-1] > JAN2
    all_ids = list(History(db=db).trades("BTCUSDT-PERP")["trade_id"])
    assert all_ids == list(range(1, len(all_ids) + 1))
    assert all_ids[-1] >= traded  # every aggregate trade up to a second ago, live or fetched


def test_the_download_command_fills_a_perpetuals_day_over_its_own_rest(sim, tmp_path, capsys):
    from marketlab.cli.main import main

    db = tmp_path / "cli.sqlite"
    argv = ["download", "--symbols", "BTCUSDT", "--kinds", "klines:1h", "--start", "2024-12-30"]
    argv += ["--end", "2025-01-01", "--market", "um", "--db", str(db)]
    argv += ["--archive-url", sim.archive_url]
    argv += ["--binance-perp-rest-url", sim.rest_url, "--binance-rest-url", "http://127.0.0.1:9"]
    assert main(argv) == 0  # the missing day's candles come over /fapi/v1, not spot's base
    out = capsys.readouterr().out
    assert "2 hole(s) found, 1 open" in out  # the day not in the archive stays said
    assert "not in the archive" in out and "candles missing" not in out
    kl = History(db=db).klines("BTCUSDT-PERP", "1h")
    venue = perp_klines(sim, parse_when("2024-12-30"), JAN2 - 1, "1h")
    assert len(kl) == len(venue) == 12 + 24 + 24  # the market began at noon
    assert list(kl["close"]) == [float(k[4]) for k in venue]
