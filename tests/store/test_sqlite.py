"""The SQLite kline store: batched, idempotent, migrated, crash-safe, clear about bad paths."""

import sqlite3
import threading
import time

import pytest

from marketlab.records import Kline
from marketlab.store.sqlite import SCHEMA_VERSION, KlineStore, StoreError, connect

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
    still_open = Kline(k.symbol, k.interval, k.open_time, k.open, k.high, k.low, k.close, k.volume, k.close_time,
                       k.quote_volume, k.trades, k.taker_buy_volume, k.taker_buy_quote_volume, False)  # fmt: skip
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
