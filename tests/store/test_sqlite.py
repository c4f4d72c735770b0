"""The SQLite kline store: batched, idempotent, migrated, crash-safe, clear about bad paths."""

import sqlite3
import threading
import time
from typing import Any

import pytest

from marketlab.records import Kline
from marketlab.store.sqlite import SCHEMA_VERSION, StoreError, connect
from marketlab.store.writer import KlineStore

T0 = 1_767_225_600_000


def kline(i: int, close: float = 100.0, symbol: str = "BTCUSDT", interval: str = "1m") -> Kline:
    t = T0 + i * 60_000
    return Kline(
        symbol, interval, t, 100.0, 101.0, 99.0, close, 2.5, t + 59_999, 250.0, 7, 1.25, 125.0, True
    )


def rows(path) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "SELECT symbol, interval, open_time, close, trades FROM klines ORDER BY 1, 2, 3"
        ).fetchall()


def test_round_trip_and_idempotent_upsert(tmp_path):
    db = tmp_path / "m.sqlite"
    with KlineStore(db) as store:
        store.add_many("binance", [kline(i) for i in range(5)])
        store.add("binance", kline(2))  # re-delivered: no duplicate
        store.add("binance", kline(3, close=105.5))  # corrected by a backfill: replaced
        store.flush()
        assert store.written >= 5
    got = rows(db)
    assert [r[2] for r in got] == [T0 + i * 60_000 for i in range(5)]
    assert got[3][3] == 105.5 and got[0][4] == 7
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert (
            conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
        )


def test_open_candles_are_refused(tmp_path):
    k = kline(0)
    still_open = Kline(
        k.symbol,
        k.interval,
        k.open_time,
        k.open,
        k.high,
        k.low,
        k.close,
        k.volume,
        k.close_time,
        k.quote_volume,
        k.trades,
        k.taker_buy_volume,
        k.taker_buy_quote_volume,
        False,
    )
    with (
        KlineStore(tmp_path / "m.sqlite") as store,
        pytest.raises(ValueError, match="only closed klines"),
    ):
        store.add("binance", still_open)


def test_batches_flush_on_size_and_on_age(tmp_path):
    db = tmp_path / "m.sqlite"
    with KlineStore(db, batch_size=4, flush_interval=0.5) as store:
        store.add_many("binance", [kline(i) for i in range(4)])
        deadline = time.monotonic() + 5
        while len(rows(db)) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(rows(db)) == 4 and store.batches == 1  # full batch: one transaction
        store.add("binance", kline(10))
        time.sleep(0.1)
        assert len(rows(db)) == 4  # not due yet
        deadline = time.monotonic() + 5
        while len(rows(db)) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(rows(db)) == 5 and store.batches == 2


def test_close_writes_everything_pending(tmp_path):
    db = tmp_path / "m.sqlite"
    store = KlineStore(db, batch_size=10_000, flush_interval=3600)
    store.add_many("binance", [kline(i) for i in range(1234)])
    store.close()
    assert len(rows(db)) == 1234


def test_a_failing_write_is_retried_and_nothing_is_lost(tmp_path):
    db = tmp_path / "m.sqlite"
    KlineStore(db).close()
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # another process holds the file
    store = KlineStore(db, batch_size=2, flush_interval=0.1, retry_interval=0.1, busy_timeout=0.05)
    try:
        store.add_many("binance", [kline(i) for i in range(3)])
        deadline = time.monotonic() + 5
        while store.errors == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert store.errors >= 1 and "locked" in store.last_error
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    store.flush(10)
    store.close()
    assert len(rows(db)) == 3


def test_writes_happen_off_the_calling_thread(tmp_path):
    with KlineStore(tmp_path / "m.sqlite") as store:
        assert store._thread is not threading.current_thread()
        began = time.perf_counter()
        store.add_many("binance", [kline(i) for i in range(2000)])
        assert time.perf_counter() - began < 5  # queued, not written inline
        store.flush()


def test_migrating_an_unversioned_file_and_refusing_a_newer_one(tmp_path):
    db = tmp_path / "old.sqlite"
    sqlite3.connect(db).close()  # an empty SQLite file: version 0
    connect(db).close()
    with sqlite3.connect(db) as conn:
        assert (
            conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
        )
        conn.execute("INSERT INTO schema_version VALUES (99)")
    with pytest.raises(StoreError, match="schema version 99"):
        connect(db)


def test_bad_paths_get_clear_errors(tmp_path):
    junk = tmp_path / "notes.txt"
    junk.write_text("hello, not a database")
    with pytest.raises(StoreError, match=r"notes.txt is not a SQLite file"):
        KlineStore(junk)
    assert junk.read_text() == "hello, not a database"  # untouched
    with pytest.raises(StoreError, match="is a directory"):
        KlineStore(tmp_path)
    with pytest.raises(StoreError, match="cannot create"):
        KlineStore("/proc/marketlab-test/m.sqlite")
    with pytest.raises(StoreError, match="does not exist"):
        connect(tmp_path / "missing.sqlite", readonly=True)


def test_a_version_1_file_keeps_its_rows_and_then_takes_candles_without_taker_volumes(tmp_path):
    from marketlab.store.sqlite import MIGRATIONS

    path = tmp_path / "v1.sqlite"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for statement in MIGRATIONS[1]:
        old.execute(statement)
    old.execute("INSERT INTO schema_version VALUES (1)")
    old.execute(
        "INSERT INTO klines VALUES ('binance','BTCUSDT','1m',0,1,2,0.5,1.5,10,15,3,4,6,59999,1)"
    )
    old.commit()
    old.close()
    okx_candle = Kline(
        "BTCUSDT", "1m", 60_000, 1, 2, 1, 2, 5, 119_999, 10, -1, float("nan"), float("nan"), True
    )
    with KlineStore(path) as store:
        store.add("okx", okx_candle)
    con = sqlite3.connect(path)
    assert (
        con.execute("SELECT max(version) FROM schema_version").fetchone()[0] == SCHEMA_VERSION == 4
    )
    got = con.execute(
        "SELECT exchange, open_time, trades, taker_buy_volume FROM klines ORDER BY open_time"
    ).fetchall()
    assert got == [("binance", 0, 3, 4.0), ("okx", 60_000, -1, None)]


def test_a_row_the_schema_refuses_is_reported_and_the_rest_are_written(tmp_path):
    path = tmp_path / "k.sqlite"
    no_open: Any = None  # a NULL open, which the schema refuses (a float to the type checker)
    bad = Kline("BTCUSDT", "1m", 120_000, no_open, 2, 1, 2, 5, 179_999, 10, 3, 1, 1, True)
    with KlineStore(path) as store:
        store.add_many("binance", [kline(0), bad, kline(3)])
        store.flush()
        assert store.rejected == 1 and store.written == 2
    assert [r[2] for r in rows(path)] == [T0, T0 + 180_000]


def test_a_version_2_file_keeps_its_rows_and_then_takes_candles_without_quote_volume(tmp_path):
    from marketlab.store.sqlite import MIGRATIONS

    path = tmp_path / "v2.sqlite"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for version in (1, 2):
        for statement in MIGRATIONS[version]:
            old.execute(statement)
        old.execute("INSERT INTO schema_version VALUES (?)", (version,))
    old.execute(
        "INSERT INTO klines VALUES ('okx','BTCUSDT','1m',0,1,2,0.5,1.5,10,15,-1,NULL,NULL,59999,1)"
    )
    old.commit()
    old.close()
    # Coinbase's candles carry prices and volume only
    coinbase_candle = Kline(
        "BTCUSDT",
        "1m",
        60_000,
        1,
        2,
        1,
        2,
        5,
        119_999,
        float("nan"),
        -1,
        float("nan"),
        float("nan"),
        True,
    )
    with KlineStore(path) as store:
        store.add("coinbase", coinbase_candle)
        store.flush()
        assert store.rejected == 0
    con = sqlite3.connect(path)
    assert con.execute("SELECT max(version) FROM schema_version").fetchone()[0] == 4
    got = con.execute(
        "SELECT exchange, open_time, volume, quote_volume FROM klines ORDER BY open_time"
    ).fetchall()
    assert got == [("okx", 0, 10.0, 15.0), ("coinbase", 60_000, 5.0, None)]
