"""The archive end to end, against the simulator's archive with every trap on: a download over
2024-12 → 2025-01 imports every row once with the right times, refuses the corrupt file by
name, lists the missing day and the id hole, fills them over REST, fetches nothing again when
repeated, and a collector started after it leaves no gap. The same for a USDⓈ-M perpetual
(``--market um``): kept under the Lab's name (exchange ``binance``, ``BTCUSDT-PERP``), its
holes filled over the perpetual REST (``/fapi/v1/klines``, ``/fapi/v1/aggTrades?fromId=``),
its single trades' holes listed (no public REST by id), and a Lab collecting BTCUSDT-PERP
afterwards leaves every candle and aggregate trade id once."""

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


@pytest.fixture(scope="module")
def sim():
    with SimExchange(
        ["BTCUSDT"], start_time=START, history=HISTORY_S, trades_per_second=0.01, speed=60
    ) as s:
        every_trap(s)
        yield s


def every_trap(sim: SimExchange) -> None:
    sim.inject("archive_clear")
    sim.inject("archive_corrupt", "BTCUSDT-1m-2025-01-01.zip")  # in both markets
    sim.inject("archive_missing", "2024-12-31")
    sim.inject("archive_hole", "2025-01-01:4")


def test_every_trap_on_then_collect_leaves_no_gap(sim, tmp_path):
    db = tmp_path / "m.sqlite"
    history = History(db=db, rest_url=sim.rest_url)
    report = history.download(
        "BTCUSDT",
        "klines:1m,trades,aggTrades",
        "2024-12",
        "2025-01",
        archive_url=sim.archive_url,
        progress=False,
    )
    by_what = report.groupby("what")["file"].apply(list).to_dict()
    refused = [w for w in by_what if w.startswith("refused: checksum mismatch")]
    assert refused and by_what[refused[0]] == ["BTCUSDT-1m-2025-01-01.zip"]
    # the missing day: its candles and its trades (a day of none between full days)
    short = report[report["what"].str.startswith("short day: 0 rows")]
    assert sorted(short["kind"]) == ["aggTrades", "trades"]
    assert {str(t.date()) for t in short["start"]} == {"2024-12-31"}
    assert short["filled"].all()  # the day's trades fetched by id: short no more
    candles = report[report["what"] == "candles missing"]
    assert len(candles) == 1 and candles["filled"].all()
    assert str(candles["start"].iloc[0]) == "2024-12-31 00:00:00+00:00"
    assert candles["missing"].iloc[0] == 2 * 1440  # the missing day and the refused file's
    # the id holes: the missing day's trades and the four left out on 2025-01-01, both filled
    for kind in ("trades", "aggTrades"):
        ids = report[(report["kind"] == kind) & report["first_id"].notna()]
        assert len(ids) == 2 and ids["filled"].all(), ids
        assert sorted(ids["missing"])[0] == 4
    assert any(w.startswith("not yet published: 2025-01-02") for w in by_what)

    # every row once, with the exchange's values and times
    kl = history.klines("BTCUSDT", "1m", start=parse_when("2024-12-30"), end=JAN2 - 1)
    exchange = sim.klines("BTCUSDT", "1m", parse_when("2024-12-30"), JAN2 - 1, limit=10_000)
    assert len(kl) == len(exchange) == 60 * 60
    assert [int(t.value // 1_000_000) for t in kl.index] == [k["open_time"] for k in exchange]
    for column in ("open", "high", "low", "close", "volume", "quote_volume", "trades"):
        assert list(kl[column]) == [k[column] for k in exchange], column
    assert list(kl["taker_buy_volume"]) == [k["taker_buy_volume"] for k in exchange]
    trades = history.trades("BTCUSDT", end=JAN2 - 1)
    ids = list(trades["trade_id"])
    assert ids == list(range(1, len(ids) + 1))
    assert len(ids) == sum(k["trades"] for k in exchange)
    assert trades.index.min() >= history.klines("BTCUSDT", "1m").index.min()
    aggs = history.sql(
        f"select agg_id, time from read_parquet('{tmp_path}/m.ticks/kind=agg_trades/**/*.parquet')"
        " order by agg_id"
    )
    assert list(aggs["agg_id"]) == ids
    assert list(aggs["time"]) == [int(t.value // 1_000_000) for t in trades.index]

    # a second run fetches nothing imported before (the refused file is tried again)
    served = sim.archive.requests
    again = history.download(
        "BTCUSDT",
        "klines:1m,trades,aggTrades",
        "2024-12",
        "2025-01",
        archive_url=sim.archive_url,
        progress=False,
    )
    assert sim.archive.requests - served == 1 + 3  # the refused file's checksum and 3 tries
    assert not (again["what"] == "candles missing").any()
    assert len(history.trades("BTCUSDT", end=JAN2 - 1)) == len(ids)

    # the collector takes over where the archive ends: every candle and trade id once
    lab = Lab(
        ["BTCUSDT"],
        intervals=["1m"],
        db=db,
        store=("klines", "trades"),
        **{**FAST, "binance_ws_url": sim.ws_url, "binance_rest_url": sim.rest_url},
    )
    traded = collect_past_the_archive(lab, sim, "BTCUSDT")
    stored = History(db=db).klines("BTCUSDT", "1m")
    opens = [int(t.value // 1_000_000) for t in stored.index]
    assert opens == list(range(opens[0], opens[-1] + 60_000, 60_000))
    assert opens[-1] > JAN2
    all_ids = list(History(db=db).trades("BTCUSDT")["trade_id"])
    assert all_ids == list(range(1, len(all_ids) + 1))
    assert all_ids[-1] >= traded  # every trade up to a second ago, live or fetched


def test_the_download_command_imports_a_day_and_says_what_is_open(sim, tmp_path, capsys):
    from marketlab.cli.main import main

    db = tmp_path / "cli.sqlite"
    argv = ["download", "--symbols", "BTCUSDT", "--kinds", "klines:1h", "--start", "2025-01-01"]
    argv += ["--db", str(db), "--archive-url", sim.archive_url]
    argv += ["--binance-rest-url", sim.rest_url]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"archive imported into {db}; 0 hole(s) found, 0 open" in out
    kl = History(db=db).klines("BTCUSDT", "1h")
    assert len(kl) == 24 and str(kl.index[0]) == "2025-01-01 00:00:00+00:00"
    assert list(kl["close"]) == [
        k["close"] for k in sim.klines("BTCUSDT", "1h", parse_when("2025-01-01"), JAN2 - 1)
    ]
    assert main([*argv[:4], "klines:2x", *argv[5:]]) == 2  # a wrong interval: said, not raised
    assert "invalid interval" in capsys.readouterr().err


def test_a_short_day_is_filled_and_a_day_not_yet_published_is_said(sim, tmp_path):
    h = History(db=tmp_path / "short.sqlite", rest_url=sim.rest_url)
    try:
        sim.inject("archive_short", "2025-01-01")  # its files end at noon
        report = h.download("BTCUSDT", "klines:1h", "2025-01-01", archive_url=sim.archive_url)
        (hole,) = report.itertuples()
        assert (hole.what, hole.missing, hole.filled) == ("candles missing", 12, True)
        assert str(hole.start) == "2025-01-01 12:00:00+00:00"
        assert len(h.klines("BTCUSDT", "1h")) == 24
        sim.inject("archive_unpublished", "2025-01-01")  # the archive lags a day behind
        h2 = History(db=tmp_path / "late.sqlite", rest_url=sim.rest_url)
        late = h2.download("BTCUSDT", "klines:1h", "2025-01-01", archive_url=sim.archive_url)
        assert list(late["what"]) == ["not yet published: 2025-01-01 to 2025-01-01"]
        assert h2.klines("BTCUSDT", "1h").empty
    finally:
        every_trap(sim)


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


def test_a_perpetuals_archive_then_collect_leaves_every_candle_and_agg_id_once(
    sim, tmp_path, monkeypatch
):
    db = tmp_path / "m.sqlite"
    # the History's rest_url is the spot API (nothing answers there): a perpetual's holes are
    # filled over the USDⓈ-M base, here from its environment variable
    history = History(db=db, rest_url="http://127.0.0.1:9")
    monkeypatch.setenv("MARKETLAB_BINANCE_PERP_REST_URL", sim.rest_url)
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
