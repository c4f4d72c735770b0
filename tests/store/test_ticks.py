"""Every trade kept as Parquet ticks: written by a running Lab, each trade once across drops and
a kill -9, queried like klines, and candles rebuilt from trades equal to the exchange's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from marketlab.lab import Lab
from marketlab.records import Trade
from marketlab.sim import SimExchange
from marketlab.store.history import History
from marketlab.store.sqlite import StoreError
from marketlab.store.ticks import TickWriter, compact, ticks_root
from tests.lab.test_lab import FAST, venue_options, wait_for
from tests.simproc import SimProcess


def trade(i: int, t: int = 1_767_225_600_000) -> Trade:
    return Trade(
        "BTCUSDT", i, 100.0 + i, 0.5, "buy" if i % 3 else "sell", t + i * 1000, t + i * 1000
    )


def test_a_trade_written_twice_is_read_once_and_compaction_keeps_one_copy(tmp_path):
    db = tmp_path / "m.sqlite"
    writer = TickWriter(ticks_root(db), "binance", flush_interval=0.05)
    writer.add_many([trade(i) for i in range(1, 11)])
    time.sleep(0.3)
    writer.add_many([trade(i) for i in range(5, 16)])  # a replay or a backfill overlapping
    writer.close()
    history = History(db=db)
    df = history.trades("BTCUSDT")
    assert list(df["trade_id"]) == list(range(1, 16))
    assert list(df["price"]) == [100.0 + i for i in range(1, 16)]
    assert list(df["side"]) == ["buy" if i % 3 else "sell" for i in range(1, 16)]
    assert df.index[0] == pd.Timestamp(trade(1).time, unit="ms", tz="UTC")
    folder = next(ticks_root(db).glob("kind=trades/*/*/date=*"))
    assert len(list(folder.glob("*.parquet"))) == 2
    assert compact(ticks_root(db), today="2100-01-01") == 1
    assert len(list(folder.glob("*.parquet"))) == 1
    assert list(History(db=db).trades("BTCUSDT")["trade_id"]) == list(range(1, 16))
    count = history.sql("select count(*) as n, count(distinct trade_id) as d from trades")
    assert (count["n"][0], count["d"][0]) == (15, 15)


def test_parts_apart_are_read_as_duckdb_reads_them(tmp_path, monkeypatch):
    # parts that cannot hold a trade twice are read with pyarrow: the same frame, any range
    from marketlab.store import tick_history

    db = tmp_path / "m.sqlite"
    writer = TickWriter(ticks_root(db), "binance", flush_interval=0.05)
    hourly = [
        Trade(
            "BTCUSDT",
            i,
            100.0 + i,
            0.25 * i,
            "buy" if i % 3 else "sell",
            1_767_225_600_000 + i * 3_600_000,
            0,
        )
        for i in range(1, 61)
    ]
    for first in range(0, 60, 20):  # three flushes: parts apart, over three days
        writer.add_many(hourly[first : first + 20])
        time.sleep(0.3)
    writer.close()
    history = History(db=db)
    ranges = [
        (None, None),
        (hourly[10].time, hourly[45].time),
        (hourly[10].time + 1, None),
        (None, hourly[3].time - 1),
        (hourly[59].time + 1, None),
    ]
    read_apart, by_arrow = tick_history.read_apart, []

    def spied(*args):
        cols = read_apart(*args)
        by_arrow.append(cols is not None)
        return cols

    monkeypatch.setattr(tick_history, "read_apart", spied)

    def check(read: dict) -> None:  # what each range holds, from the trades themselves
        for (start, end), df in read.items():
            want = [
                t
                for t in hourly
                if (start is None or t.time >= start) and (end is None or t.time <= end)
            ]
            assert list(df["trade_id"]) == [t.trade_id for t in want]
            assert list(df["side"]) == [t.side for t in want]
            assert list(df["qty"]) == [t.qty for t in want]

    read = {r: history.trades("BTCUSDT", *r) for r in ranges}
    assert len(by_arrow) == len(ranges) and all(by_arrow)
    check(read)
    assert compact(ticks_root(db), min_parts=1, today="2100-01-01") == 3  # DuckDB writes days
    check({r: history.trades("BTCUSDT", *r) for r in ranges})  # (its sides: plain strings)
    assert all(by_arrow[len(ranges) :])
    monkeypatch.setattr(tick_history, "read_apart", lambda *a: None)  # DuckDB's way
    for r, df in read.items():
        pd.testing.assert_frame_equal(df, history.trades("BTCUSDT", *r))


def test_bad_store_settings_say_what_would_work(tmp_path):
    with pytest.raises(ValueError, match="expected some of klines, trades"):
        Lab(["BTCUSDT"], db=tmp_path / "m.sqlite", store=("klines", "books!"))
    with pytest.raises(ValueError, match="give db="):
        Lab(["BTCUSDT"], store=("klines", "trades"))
    with pytest.raises(ValueError, match="'trades' keeps what the 'trades' channel brings"):
        Lab(["BTCUSDT"], db=tmp_path / "m.sqlite", store=("trades",), channels=("ticker",))
    with pytest.raises(ValueError, match="'book' keeps what the 'book' channel brings"):
        Lab(["BTCUSDT"], db=tmp_path / "m.sqlite", store=("book",), channels=("ticker",))
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(StoreError, match="cannot write ticks"):
        TickWriter(blocked / "ticks", "binance")
    with pytest.raises(ValueError, match="up to 1d"):
        History(db=tmp_path / "m.sqlite").trade_bars("BTCUSDT", "1w")


def test_stored_trades_survive_drops_and_rebuild_the_exchanges_candles(tmp_path):
    db = tmp_path / "m.sqlite"
    with SimExchange(["BTCUSDT"], speed=60, seed=11) as sim:
        lab = Lab(["BTCUSDT"], db=db, store=("klines", "trades"), **{**FAST, **venue_options(sim)})
        with lab:
            lab.wait_ready(30)
            time.sleep(2.0)
            sim.refuse_connections(1.5)
            sim.drop_connections()
            time.sleep(3.0)
            wait_for(
                lambda: lab.summary()["trades_backfilled"].get("BTCUSDT", 0) > 0, 15, "a backfill"
            )
            time.sleep(1.0)
            live = lab.trades("BTCUSDT")
        history = History(db=db)
        stored = history.trades("BTCUSDT")
        ids = list(stored["trade_id"])
        assert ids == list(range(ids[0], ids[0] + len(ids))), "a stored trade is missing or twice"
        assert set(live["trade_id"]) <= set(ids)
        # candles rebuilt from the stored trades, for the minutes they cover whole
        bars = history.trade_bars("BTCUSDT", "1m")
        first_whole = bars.index[1].value // 1_000_000
        last_whole = bars.index[-2].value // 1_000_000
        exchange = sim.klines("BTCUSDT", "1m", first_whole, last_whole)
        assert len(exchange) >= 5
        rebuilt = bars.loc[
            pd.Timestamp(first_whole, unit="ms", tz="UTC") : pd.Timestamp(
                last_whole, unit="ms", tz="UTC"
            )
        ]
        assert [int(t.value // 1_000_000) for t in rebuilt.index] == [
            k["open_time"] for k in exchange
        ]
        for column in ("open", "high", "low", "close", "trades"):
            assert list(rebuilt[column]) == [k[column] for k in exchange], column
        for column in ("volume", "quote_volume", "taker_buy_volume", "taker_buy_quote_volume"):
            assert list(rebuilt[column]) == pytest.approx(
                [k[column] for k in exchange], rel=1e-9
            ), column
        vwap = history.vwap("BTCUSDT", "1m")
        row = vwap.loc[rebuilt.index[0]]
        assert row["vwap"] == pytest.approx(
            rebuilt["quote_volume"].iloc[0] / rebuilt["volume"].iloc[0]
        )
        assert row["trades"] == rebuilt["trades"].iloc[0]


def test_after_kill_9_the_next_start_fetches_the_trades_it_missed(tmp_path):
    db = tmp_path / "m.sqlite"
    (tmp_path / "marketlab.toml").write_text(
        "[feed]\nidle_timeout = 2.0\nbackoff_max = 1.0\nseed_klines = 20\n"
    )
    with SimProcess("--symbols", "BTCUSDT", "--speed", "60", "--seed", "8") as sim:
        args = [
            sys.executable,
            "-m",
            "marketlab",
            "collect",
            "--symbols",
            "BTCUSDT",
            "--intervals",
            "1m",
            "--binance-ws-url",
            sim.ws_url,
            "--binance-rest-url",
            sim.rest_url,
            "--db",
            str(db),
            "--store",
            "klines,trades",
        ]
        proc = subprocess.Popen(
            args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

        def stored_parts() -> int:
            return len(list(ticks_root(db).rglob("*.parquet")))

        wait_for(lambda: stored_parts() >= 3, 40, "trades in the store")
        time.sleep(0.4)  # somewhere inside a batch
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        before = History(db=db).trades("BTCUSDT")
        time.sleep(3)  # trades happen while nothing runs
        parts = stored_parts()
        # the next start runs until it has stored more (however long starting takes on a busy
        # machine), then stops as an operator stops it
        again = subprocess.Popen(
            args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            wait_for(lambda: stored_parts() >= parts + 3, 60, "the next start's trades stored")
            again.send_signal(signal.SIGINT)
            _, err = again.communicate(timeout=60)
        finally:
            if again.poll() is None:
                again.kill()
                again.wait()
        assert again.returncode == 0, err
    after = History(db=db).trades("BTCUSDT")
    ids = list(after["trade_id"])
    assert ids[0] == before["trade_id"].iloc[0]
    assert ids == list(range(ids[0], ids[0] + len(ids))), "trades of the downtime are missing"
    assert ids[-1] > before["trade_id"].iloc[-1] + 100


def test_a_recording_ingested_twice_stores_what_live_collection_stored_once(tmp_path):
    live_db, ingested_db, session = (
        tmp_path / "live.sqlite",
        tmp_path / "ing.sqlite",
        tmp_path / "s.mlrec",
    )
    with SimExchange(["BTCUSDT"], speed=60, seed=12) as sim:
        lab = Lab(
            ["BTCUSDT"],
            db=live_db,
            store=("klines", "trades", "book"),
            record=session,
            book_interval=0.2,
            **{**FAST, **venue_options(sim)},
        )
        with lab:
            lab.wait_ready(30)
            time.sleep(2.5)
            sim.drop_connections()
            time.sleep(2.0)
    for _ in range(2):
        r = subprocess.run(
            [sys.executable, "-m", "marketlab", "ingest", str(session), "--db", str(ingested_db)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr
        assert "ingested" in r.stdout and "trade(s)" in r.stdout
    live, ingested = History(db=live_db), History(db=ingested_db)
    pd.testing.assert_frame_equal(ingested.trades("BTCUSDT"), live.trades("BTCUSDT"))
    pd.testing.assert_frame_equal(ingested.klines("BTCUSDT"), live.klines("BTCUSDT"))
    # books sampled on the recording's clock (1 s, the default), once each however often ingested
    replayed, stored = (
        ingested.book_series("BTCUSDT", levels=5),
        live.book_series("BTCUSDT", levels=5),
    )
    assert len(replayed) >= 3 and replayed["update_id"].is_unique
    assert (
        replayed["update_id"].is_monotonic_increasing
        and (replayed["bid_price_0"] < replayed["ask_price_0"]).all()
    )
    assert stored["update_id"].min() <= replayed["update_id"].min()
    assert replayed["update_id"].max() <= stored["update_id"].max()
    span = (replayed.index[-1] - replayed.index[0]).total_seconds()
    assert span >= 60 * (len(replayed) - 2) * 0.5  # a second apart on the recording's clock (60x)
    not_one = tmp_path / "notes.txt"
    not_one.write_text("hello")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "marketlab",
            "ingest",
            str(not_one),
            "--db",
            str(tmp_path / "x.sqlite"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "not a marketlab recording" in r.stderr
    assert not (tmp_path / "x.sqlite").exists() and not (tmp_path / "x.ticks").exists()


def test_book_snapshots_are_stored_and_read_back_as_the_exchange_held_them(tmp_path):
    db = tmp_path / "m.sqlite"
    with SimExchange(["BTCUSDT"], speed=60, seed=13) as sim:
        lab = Lab(
            ["BTCUSDT"],
            db=db,
            store=("klines", "book"),
            book_levels=10,
            book_interval=0.2,
            **{**FAST, **venue_options(sim)},
        )
        with lab:
            lab.wait_ready(30)
            wait_for(lambda: lab.book("BTCUSDT").attrs["synced"], 20, "a synced book")
            time.sleep(2.0)
            # paused until the Lab has stopped: a snapshot sampled after a resume would be
            # newer than the book compared here
            sim.pause()
            # the exchange's book read again each time: a paused exchange on a busy machine
            # may still make the step that was due when it paused
            for _ in range(5):
                truth = sim.book("BTCUSDT", 10)
                wait_for(
                    lambda truth=truth: (
                        lab.book("BTCUSDT", 10).attrs["last_update_id"] >= truth["last_update_id"]
                    ),
                    20,
                    "the book at the exchange's",
                )
                live = lab.book("BTCUSDT", 10)
                time.sleep(1.5)  # sampled (0.2 s) and written (1 s batches)
                still = sim.book("BTCUSDT", 10)["last_update_id"]
                if live.attrs["last_update_id"] == truth["last_update_id"] == still:
                    break
    history = History(db=db)
    stored = history.book("BTCUSDT")
    assert stored.attrs["update_id"] == live.attrs["last_update_id"]
    bids = stored[stored.side == "bid"]
    asks = stored[stored.side == "ask"]
    assert list(zip(bids.price, bids.qty, strict=True)) == [tuple(level) for level in truth["bids"]]
    assert list(zip(asks.price, asks.qty, strict=True)) == [tuple(level) for level in truth["asks"]]
    series = history.book_series("BTCUSDT", levels=3)
    assert len(series) >= 5 and series["update_id"].is_monotonic_increasing
    assert (series["bid_price_0"] < series["ask_price_0"]).all()
    assert (series["bid_price_1"] < series["bid_price_0"]).all()
    spread = history.spread("BTCUSDT")
    assert (spread["spread"] > 0).all()
    assert spread["mid"].iloc[-1] == pytest.approx((bids.price.iloc[0] + asks.price.iloc[0]) / 2)
    imbalance = history.imbalance("BTCUSDT", levels=3)
    assert imbalance.between(-1, 1).all() and len(imbalance) == len(series)
    earlier = history.book("BTCUSDT", at=series.index[0])
    assert earlier.attrs["update_id"] == series["update_id"].iloc[0]
    with pytest.raises(LookupError, match="no stored book"):
        history.book("BTCUSDT", at="2000-01-01")
    counted = history.sql("select count(*) as n from book")
    assert counted["n"][0] == len(series)


def test_every_book_update_is_stored_when_asked(tmp_path):
    db = tmp_path / "m.sqlite"
    with SimExchange(["BTCUSDT"], speed=60, seed=14) as sim:
        lab = Lab(
            ["BTCUSDT"], db=db, store=("klines", "book_deltas"), **{**FAST, **venue_options(sim)}
        )
        with lab:
            lab.wait_ready(30)
            time.sleep(2.5)
        taken = int(lab.status().loc[("BTCUSDT", "depth"), "messages"])
    deltas = History(db=db).book_deltas("BTCUSDT")
    assert len(deltas) == taken > 10
    ids = deltas[["first_update_id", "update_id"]].to_numpy()
    assert (ids[1:, 0] == ids[:-1, 1] + 1).all(), "an update is missing between two stored ones"
    assert all(
        len(p) == len(q) for p, q in zip(deltas["bid_price"], deltas["bid_qty"], strict=True)
    )
