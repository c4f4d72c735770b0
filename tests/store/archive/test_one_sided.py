"""Trades files whose every row says the buyer was the maker (binance-public-data #476, #492):
found by the audit, each trade's side set from the aggregate trade that holds it, against the
simulator's archive with its ``one_sided`` trap on (its aggTrades files stay right, as the
venue's did); a day whose aggTrades cannot be had stays listed, saying why; a small day of
one side is a market's, not an export's; the repair alone, over aggregate trades of several
trades each (the venue's are; the simulator's are one trade each)."""

from __future__ import annotations

import hashlib
import json
import zipfile

import numpy as np
import pyarrow.parquet as pq
import pytest

from marketlab.sim import SimExchange
from marketlab.store.archive.audit import tick_holes
from marketlab.store.archive.imports import import_ticks, write_id_parts
from marketlab.store.archive.layout import DAY_MS, Series, parse_when
from marketlab.store.archive.sides import (
    ONE_SIDED,
    ONE_SIDED_MIN,
    Aggs,
    rewrite_day_sides,
    sides_from_aggs,
)
from marketlab.store.history import History
from marketlab.store.ticks import trade_table
from marketlab.store.trade_parts import sell_flags

JAN2 = 1_735_776_000_000  # 2025-01-02T00:00Z
START = JAN2 + 5 * 60_000  # the simulator's clock starts here, in the past
HISTORY_S = 60 * 3600 + 300  # its market began 2024-12-30T12:00Z
DEC31 = parse_when("2024-12-31")
DAYS = ("2024-12-30", "2025-01-01")  # the span downloaded; one-sided from 2024-12-31


@pytest.fixture(scope="module")
def sim():
    # about 2,600 trades a day: a day of one side cannot be chance
    with SimExchange(
        ["BTCUSDT"], start_time=START, history=HISTORY_S, trades_per_second=0.03, speed=60
    ) as s:
        yield s


@pytest.fixture(autouse=True)
def no_traps(sim):
    sim.inject("archive_clear")
    yield
    sim.inject("archive_clear")


def truth(sim: SimExchange, market: str) -> dict[int, str]:
    """The simulator's own trades before 2025-01-02: trade id → the taker's side."""
    return {
        t.trade_id: "sell" if t.buyer_is_maker else "buy"
        for t in venue_trades(sim, market)
        if t.time < JAN2
    }


def days_of(sim: SimExchange, market: str) -> dict[int, str]:
    """The simulator's own trades before 2025-01-02: trade id → its UTC day."""
    return {
        t.trade_id: str(np.datetime64(t.time, "ms").astype("datetime64[D]"))
        for t in venue_trades(sim, market)
        if t.time < JAN2
    }


def venue_trades(sim: SimExchange, market: str) -> list:
    return sim.kept_trades("BTCUSDT", perpetual=market == "um")


def stored_singles(ticks) -> dict[int, str]:
    """A perpetual's single trades as stored (``kind=single_trades``): trade id → side."""
    table = pq.read_table(str(ticks / "kind=single_trades"), columns=["trade_id", "side"])
    sells = sell_flags(table.column("side"))
    ids = table.column("trade_id").to_numpy()
    assert len(set(ids.tolist())) == len(ids)
    return {int(i): "sell" if s else "buy" for i, s in zip(ids, sells, strict=True)}


def test_a_perpetuals_one_sided_days_get_their_sides_from_the_archives_aggtrades(sim, tmp_path):
    sim.inject("archive_one_sided", "2024-12-31")  # USDⓈ-M's, as #476
    h = History(db=tmp_path / "m.sqlite", rest_url="http://127.0.0.1:9")
    report = h.download("BTCUSDT", "trades", *DAYS, market="um", archive_url=sim.archive_url)

    venue, days = truth(sim, "um"), days_of(sim, "um")
    assert 0.2 < sum(s == "sell" for s in venue.values()) / len(venue) < 0.8  # a real mix
    assert stored_singles(h.ticks) == venue  # every side the venue's, the trap undone

    sided = report[report["what"].str.startswith(ONE_SIDED)].sort_values("start")
    assert [str(t.date()) for t in sided["start"]] == ["2024-12-31", "2025-01-01"]
    assert list(sided["file"]) == [
        "BTCUSDT-trades-2024-12-31.zip",
        "BTCUSDT-trades-2025-01-01.zip",
    ]
    for row in sided.itertuples():
        day = [i for i, d in days.items() if d == str(row.start.date())]
        assert len(day) >= ONE_SIDED_MIN
        assert row.what.startswith(
            f"one-sided: every one of {len(day)} trades is a sell: the sides are not the "
            "venue's (binance-public-data #476"
        )
        assert f"repaired from BTCUSDT-aggTrades-{row.start.date()}.zip" in row.what
        assert (row.repaired, row.uncovered, row.filled) == (len(day), 0, True)
        assert (row.first_id, row.last_id) == (min(day), max(day))
    assert only_the_first_half_day(report[~report["what"].str.startswith(ONE_SIDED)])

    # the aggTrades fetched to repair were imported as any other file: a second run fetches
    # nothing and finds nothing one-sided
    served = sim.archive.requests
    again = h.download("BTCUSDT", "trades", *DAYS, market="um", archive_url=sim.archive_url)
    assert sim.archive.requests == served and only_the_first_half_day(again)
    assert len(h.trades("BTCUSDT-PERP", start=DEC31, end=JAN2 - 1)) == sum(
        1 for d in days.values() if d != "2024-12-30"
    )

    # a month's file: its one-sided day named with it, set from that day's aggTrades file
    m = History(db=tmp_path / "month.sqlite", rest_url="http://127.0.0.1:9")
    month = m.download("BTCUSDT", "trades", "2024-12", market="um", archive_url=sim.archive_url)
    (row,) = month[month["what"].str.startswith(ONE_SIDED)].itertuples()
    assert (row.file, str(row.start.date()), row.filled) == (
        "BTCUSDT-trades-2024-12.zip",
        "2024-12-31",
        True,
    )
    assert "repaired from BTCUSDT-aggTrades-2024-12-31.zip" in row.what
    assert stored_singles(m.ticks) == {i: s for i, s in venue.items() if days[i] < "2025-01-01"}


def only_the_first_half_day(others) -> bool:
    """Whether the audit said nothing else than that 2024-12-30, whose trading began at noon,
    is short (its sides were right: nothing is said of them)."""
    return (
        len(others) > 0
        and others["what"].str.startswith("short day").all()
        and {str(t.date()) for t in others["start"]} == {"2024-12-30"}
    )


def test_spot_one_sided_days_are_set_from_the_stored_aggtrades(sim, tmp_path):
    sim.inject("archive_one_sided", "2024-12-31:spot")
    h = History(db=tmp_path / "s.sqlite", rest_url=sim.rest_url)
    report = h.download("BTCUSDT", "trades,aggTrades", *DAYS, archive_url=sim.archive_url)
    stored = h.trades("BTCUSDT", end=JAN2 - 1)  # read back through the public reader
    assert dict(zip(stored["trade_id"], stored["side"].astype(str), strict=True)) == truth(
        sim, "spot"
    )
    sided = report[report["what"].str.startswith(ONE_SIDED)]
    assert len(sided) == 2 and sided["filled"].all() and (sided["uncovered"] == 0).all()
    assert sided["what"].str.contains("repaired from the stored aggTrades").all()
    assert only_the_first_half_day(report[~report["what"].str.startswith(ONE_SIDED)])


def test_a_day_whose_aggtrades_are_refused_stays_listed_and_says_so(sim, tmp_path, capsys):
    from marketlab.cli.main import main

    sim.inject("archive_one_sided", "2024-12-31")
    sim.inject(
        "archive_corrupt",
        "data/futures/um/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2025-01-01.zip",
    )
    db = tmp_path / "c.sqlite"
    argv = ["download", "--symbols", "BTCUSDT", "--kinds", "trades", "--start", DAYS[0]]
    argv += ["--end", DAYS[1], "--market", "um", "--db", str(db)]
    argv += ["--archive-url", sim.archive_url, "--binance-perp-rest-url", "http://127.0.0.1:9"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "3 hole(s) found, 2 open" in out  # the refused one and the short first half-day
    assert "one-sided: every one of" in out and "not repaired: " in out
    assert "1 day(s) of trades all of one side, each side set from its aggTrade:" in out
    assert "BTCUSDT-trades-2024-12-31.zip" in out
    report = History(db=db).archive_report().sort_values("start")
    assert only_the_first_half_day(report[~report["what"].str.startswith(ONE_SIDED)])
    fixed, broken = report[report["what"].str.startswith(ONE_SIDED)].itertuples()
    assert fixed.filled and fixed.repaired > ONE_SIDED_MIN
    assert not broken.filled and pd_na(broken.repaired)
    assert (
        "; not repaired: BTCUSDT-aggTrades-2025-01-01.zip refused (checksum mismatch: sha256 "
        in broken.what
    )
    stored = stored_singles(tmp_path / "c.ticks")
    venue, days = truth(sim, "um"), days_of(sim, "um")
    assert stored.keys() == venue.keys()
    for trade_id, side in stored.items():  # the refused day keeps the file's sides, said
        wanted = "sell" if days[trade_id] == "2025-01-01" else venue[trade_id]
        assert side == wanted, trade_id


def pd_na(value) -> bool:
    import pandas as pd

    return value is pd.NA or pd.isna(value)


def test_a_small_day_of_one_side_is_the_markets(tmp_path):
    """Below :data:`ONE_SIDED_MIN` trades a day of sells is said nothing of; at it, it is."""
    series = Series("spot", "trades", "BTCUSDT")
    for n, flagged in ((ONE_SIDED_MIN - 1, False), (ONE_SIDED_MIN, True)):
        root = tmp_path / str(n)
        times = DEC31 + np.arange(n, dtype=np.int64) * 1000
        table = trade_table_of(times, np.arange(1, n + 1), sells=np.ones(n, np.int8))
        import_ticks(root, series.file("daily", "2024-12-31"), table)
        holes = tick_holes(root, series, DEC31, DEC31 + DAY_MS, [])
        assert [h.what.startswith(ONE_SIDED) for h in holes] == ([True] if flagged else [])
    # a mixed day of many trades is a market's too
    root = tmp_path / "mixed"
    n = 5 * ONE_SIDED_MIN
    sells = np.ones(n, np.int8)
    sells[n // 2] = 0
    table = trade_table_of(DEC31 + np.arange(n, dtype=np.int64), np.arange(1, n + 1), sells)
    import_ticks(root, series.file("daily", "2024-12-31"), table)
    assert tick_holes(root, series, DEC31, DEC31 + DAY_MS, []) == []


def trade_table_of(times: np.ndarray, ids: np.ndarray, sells: np.ndarray):
    from marketlab.records import Trade

    return trade_table(
        [
            Trade("BTCUSDT", int(i), 100.0, 1.0, "sell" if s else "buy", int(t), int(t))
            for t, i, s in zip(times, ids, sells, strict=True)
        ]
    )


def test_sides_from_aggregate_trades_of_several_trades_each():
    # aggregate trades over trade ids 10-14 (buy), 15 (sell), 16-19 (sell), 22-30 (buy),
    # given out of order; 20, 21 and 31 are in none, 5 before every one
    aggs = Aggs.of(
        first_id=np.array([22, 10, 16, 15]),
        last_id=np.array([30, 14, 19, 15]),
        sell=np.array([0, 0, 1, 1]),
    )
    ids = np.array([5, 10, 12, 14, 15, 16, 19, 20, 21, 22, 26, 30, 31])
    sells, covered = sides_from_aggs(ids, aggs)
    assert covered.tolist() == [False] + [True] * 6 + [False, False] + [True] * 3 + [False]
    assert sells[covered].tolist() == [0, 0, 0, 1, 1, 1, 0, 0, 0]
    empty_sells, empty_covered = sides_from_aggs(ids, Aggs.of(*(np.zeros(0),) * 3))
    assert not empty_covered.any() and not empty_sells.any()
    # a day of a million trades in aggregate trades of 1 to 8 trades: each side its range's
    rng = np.random.default_rng(7)
    lengths = rng.integers(1, 9, 200_000)
    firsts = np.concatenate([[1], 1 + np.cumsum(lengths)[:-1]])
    sides = rng.integers(0, 2, len(lengths)).astype(np.int8)
    every = np.arange(1, int(firsts[-1] + lengths[-1]))
    got, all_covered = sides_from_aggs(every, Aggs.of(firsts, firsts + lengths - 1, sides))
    assert all_covered.all()
    assert (got == np.repeat(sides, lengths)).all()


JAN1 = parse_when("2025-01-01")
UM_HEADERS = {
    "trades": "id,price,qty,quote_qty,time,is_buyer_maker",
    "aggTrades": "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,"
    "is_buyer_maker",
}


def publish_um(root, kind: str, rows: list[str]) -> None:
    """A USDⓈ-M daily file of 2025-01-01 in a local copy of the archive, with its checksum."""
    f = Series("um", kind, "BTCUSDT").file("daily", "2025-01-01")
    path = root / f.key
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f.name[:-4] + ".csv", "\n".join([UM_HEADERS[kind], *rows]) + "\n")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (root / (f.key + ".CHECKSUM")).write_text(f"{digest}  {f.name}\n")


def aggs_rows(last_trade: int) -> list[str]:
    """Aggregate trades of five trades each over trade ids 1 to ``last_trade``, sides taking
    turns (sell, buy, …)."""
    return [
        f"{n},100.0,5.0,{first},{first + 4},{JAN1 + first},{'true' if n % 2 else 'false'}"
        for n, first in enumerate(range(1, last_trade + 1, 5), start=1)
    ]


def test_a_day_repaired_in_part_stays_listed_until_its_aggtrades_cover_it(tmp_path):
    root = tmp_path / "mirror"
    n = 2_000
    publish_um(root, "trades", [f"{i},100.0,1.0,100.0,{JAN1 + i},true" for i in range(1, n + 1)])
    publish_um(root, "aggTrades", aggs_rows(1_500))  # trades 1501-2000 in no aggregate trade
    h = History(db=tmp_path / "p.sqlite")

    def run():
        report = h.download(
            "BTCUSDT", "trades", "2025-01-01", market="um", fill=False, archive_url=root
        )
        (row,) = report[report["what"].str.startswith(ONE_SIDED)].itertuples()
        return row

    def expected(covered: int) -> dict[int, str]:
        # trade i is in aggregate trade (i - 1) // 5 + 1, a sell when that is odd
        return {
            i: ("sell" if ((i - 1) // 5 + 1) % 2 else "buy") if i <= covered else "sell"
            for i in range(1, n + 1)
        }

    first = run()
    assert (first.repaired, first.uncovered, first.filled) == (1_500, 500, False)
    assert first.what.startswith(f"one-sided: every one of {n} trades is a sell")
    assert "1500 sides set from their aggregate trades, 500 trades no aggregate trade" in first.what
    assert stored_singles(h.ticks) == expected(1_500)
    # the day's sides are mixed now, so no audit could find it: it stays listed all the same
    again = run()
    assert (again.repaired, again.uncovered, again.filled) == (1_500, 500, False)
    assert again.what.split("; ")[0] == first.what.split("; ")[0]
    # once its aggTrades cover every trade the day is whole, and said no more
    publish_um(root, "aggTrades", aggs_rows(n))
    whole = run()
    assert (whole.repaired, whole.uncovered, whole.filled) == (n, 0, True)
    assert stored_singles(h.ticks) == expected(n)
    # a manifest entry edited into something else is passed over, not a crash
    manifest = tmp_path / "p.archive.json"
    data = json.loads(manifest.read_text())
    data["sides"] = {"binance/BTCUSDT-PERP/trades/2025-01-01": {"when": "yesterday"}}
    manifest.write_text(json.dumps(data))
    last = h.download("BTCUSDT", "trades", "2025-01-01", market="um", fill=False, archive_url=root)
    assert not last["what"].str.startswith(ONE_SIDED).any()


def test_a_stored_day_in_overlapping_parts_is_rewritten_with_each_trade_once(tmp_path):
    ticks = tmp_path / "r.ticks"
    n = 1_200
    times = DEC31 + np.arange(n, dtype=np.int64) * 60_000
    ids = np.arange(1, n + 1)
    sells = np.ones(n, np.int8)
    for a, b in ((0, 800), (600, n)):  # two parts holding trades 601-800 both
        table = trade_table_of(times[a:b], ids[a:b], sells[a:b])
        write_id_parts(ticks, "trades", "binance", "BTCUSDT", table, "trade_id")
    # aggregate trades of three trades each over 1-1,197: buy, sell, buy, …
    firsts = np.arange(1, n - 2, 3)
    aggs = Aggs.of(firsts, firsts + 2, np.arange(len(firsts)) % 2)
    done = rewrite_day_sides(ticks, "trades", "binance", "BTCUSDT", "2024-12-31", aggs)
    assert (done.repaired, done.uncovered) == (n - 3, 3)
    assert done.changed == sum(((i - 1) // 3) % 2 == 0 for i in range(1, n - 2))
    assert len(list((ticks / "kind=trades").rglob("*.parquet"))) == 1
    stored = History(db=tmp_path / "r.sqlite").trades("BTCUSDT")  # its ticks: r.ticks
    assert list(stored["trade_id"]) == list(range(1, n + 1))
    want = ["sell" if ((i - 1) // 3) % 2 else "buy" for i in range(1, n - 2)] + ["sell"] * 3
    assert list(stored["side"].astype(str)) == want
