"""When the store cannot write (a full disk, a lock held by another process, a read-only file):
collection goes on, the queue stays bounded, stop() returns on time and says what it could not
write, and once the fault clears history is whole: no gap, no duplicate. Real SQLite files."""

from __future__ import annotations

import os
import re
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from marketlab.lab import Lab
from marketlab.sim import SimExchange
from marketlab.store.writer import KlineStore
from tests.lab.test_lab import FAST, venue_options, wait_for
from tests.simproc import SimProcess

SYMBOLS = ["BTCUSDT", "ETHUSDT"]


class Fault:
    """One way for SQLite to refuse writes, made deterministic, and its end."""

    def __init__(self, kind: str, lab: Lab):
        self.kind, self.lab = kind, lab
        self.blocker: sqlite3.Connection | None = None

    def start(self) -> None:
        store = self.lab._store
        assert store is not None
        if self.kind == "disk full":  # no page beyond the file's current size
            store.on_writer(
                lambda c: c.execute(
                    f"PRAGMA max_page_count = {c.execute('PRAGMA page_count').fetchone()[0]}"
                )
            )
        elif self.kind == "read-only":
            store.on_writer(lambda c: c.execute("PRAGMA query_only = 1"))
        else:  # another process's exclusive lock
            self.blocker = sqlite3.connect(self.lab.db, isolation_level=None)
            self.blocker.execute("BEGIN EXCLUSIVE")

    def clear(self) -> None:
        store = self.lab._store
        if self.kind == "disk full" and store is not None:
            store.on_writer(lambda c: c.execute("PRAGMA max_page_count = 1073741823"))
        elif self.kind == "read-only" and store is not None:
            store.on_writer(lambda c: c.execute("PRAGMA query_only = 0"))
        elif self.blocker is not None:
            self.blocker.execute("ROLLBACK")
            self.blocker.close()
            self.blocker = None


def stored(db, symbol: str) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute(
            "SELECT open_time, open, high, low, close, volume, trades FROM klines "
            "WHERE exchange = 'binance' AND symbol = ? AND interval = '1m' ORDER BY open_time",
            (symbol,),
        ).fetchall()
    finally:
        con.close()


def assert_history_whole(db, sim: SimExchange, symbol: str) -> int:
    """Contiguous 1m candles equal to the exchange's, each once."""
    rows = stored(db, symbol)
    opens = [r[0] for r in rows]
    assert len(opens) == len(set(opens)), "a candle is stored twice"
    assert opens == list(range(opens[0], opens[-1] + 60_000, 60_000)), "stored history has a hole"
    oracle = sim.klines(symbol, "1m", start=opens[0], end=opens[-1], limit=1000)
    assert [
        (o["open_time"], o["open"], o["high"], o["low"], o["close"], o["volume"], o["trades"])
        for o in oracle
    ] == rows
    return len(rows)


def store_state(lab: Lab) -> dict:
    return lab.summary()["store"]


@pytest.mark.parametrize("kind", ["disk full", "locked", "read-only"])
def test_a_failing_store_keeps_collecting_bounds_its_queue_and_fills_the_hole_after(kind, tmp_path):
    db = tmp_path / "h.sqlite"
    with SimExchange(SYMBOLS, speed=120, seed=9) as sim:
        lab = Lab(
            SYMBOLS,
            intervals=["1m"],
            db=db,
            channels=("trades", "klines"),
            db_max_pending=6,
            db_flush_interval=0.2,
            **{**FAST, **venue_options(sim)},
        )
        fault = Fault(kind, lab)
        try:
            with lab:
                lab.wait_ready(30)
                wait_for(lambda: store_state(lab)["written"] > 10, 20, "first writes")
                fault.start()
                wait_for(lambda: store_state(lab)["state"] == "failing", 15, "the store to fail")
                state = store_state(lab)
                assert kind in state["error"] and state["failing_since"]
                trades = len(lab.trades("BTCUSDT"))
                peak = 0
                deadline = time.monotonic() + 20
                while store_state(lab)["dropped"] == 0 and time.monotonic() < deadline:
                    peak = max(peak, store_state(lab)["pending"])
                    time.sleep(0.05)
                state = store_state(lab)
                assert state["dropped"] > 0 and state["awaiting_backfill"] > 0, state
                assert peak <= 6 + 10  # the bound, plus what arrives while a write waits on a lock
                assert lab.status().attrs["store"]["state"] == "failing"
                assert len(lab.trades("BTCUSDT")) > trades  # collection never waited on the store
                closed_while_failing = lab.klines("BTCUSDT")["closed"].sum()
                fault.clear()
                wait_for(
                    lambda: (
                        store_state(lab)["state"] == "ok"
                        and store_state(lab)["pending"] == 0
                        and store_state(lab)["awaiting_backfill"] == 0
                    ),
                    30,
                    "the store to catch up",
                )
                assert lab.klines("BTCUSDT")["closed"].sum() >= closed_while_failing
        finally:
            fault.clear()
        assert lab.store_report == ""
        for symbol in SYMBOLS:
            assert assert_history_whole(db, sim, symbol) >= 30


@pytest.mark.parametrize("kind", ["disk full", "locked", "read-only"])
def test_stop_returns_on_time_says_what_waits_and_the_next_start_fills_it(kind, tmp_path):
    db = tmp_path / "h.sqlite"
    with SimExchange(SYMBOLS, speed=120, seed=9) as sim:
        options = {**FAST, **venue_options(sim)}
        lab = Lab(
            SYMBOLS, intervals=["1m"], db=db, channels=("klines",), db_flush_interval=0.2, **options
        )
        fault = Fault(kind, lab)
        lab.start()
        try:
            lab.wait_ready(30)
            wait_for(lambda: store_state(lab)["written"] > 10, 20, "first writes")
            fault.start()
            wait_for(
                lambda: store_state(lab)["state"] == "failing" and store_state(lab)["pending"] >= 4,
                20,
                "candles waiting",
            )
            began = time.monotonic()
            lab.stop(timeout=4)
            took = time.monotonic() - began
        finally:
            fault.clear()
            lab.stop()
        assert took < 4.5, f"stop took {took:.1f} s"
        report = lab.store_report
        assert re.match(r"\d+ kline\(s\) not written to .*h\.sqlite", report), report
        assert kind in report and "binance BTCUSDT 1m" in report and "next start" in report
        assert len(report.splitlines()) == 1
        with Lab(SYMBOLS, intervals=["1m"], db=db, channels=("klines",), **options) as again:
            again.wait_ready(30)
            wait_for(
                lambda: store_state(again)["written"] > 0 and store_state(again)["pending"] == 0,
                20,
                "the hole written",
            )
            time.sleep(1)
        assert again.store_report == ""
        for symbol in SYMBOLS:
            assert assert_history_whole(db, sim, symbol) >= 30


def test_a_kline_store_closes_on_time_while_another_process_holds_the_lock(tmp_path):
    from tests.store.test_sqlite import kline

    db = tmp_path / "k.sqlite"
    KlineStore(db).close()
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        store = KlineStore(db, flush_interval=0.05, retry_interval=30.0)
        store.add_many("binance", [kline(i) for i in range(5)])
        time.sleep(0.7)  # the write failed on the lock; the next try is 30 s away
        began = time.monotonic()
        report = store.close(timeout=2)
        assert time.monotonic() - began < 2.5
        assert report.startswith("5 kline(s) not written") and "locked" in report, report
        assert sum(n for *_, n in store.unwritten.values()) == 5
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def test_rows_dropped_from_a_full_queue_are_counted_in_the_closing_report(tmp_path):
    from tests.store.test_sqlite import kline

    db = tmp_path / "k.sqlite"
    KlineStore(db).close()
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        store = KlineStore(db, flush_interval=0.05, retry_interval=30.0, max_pending=2)
        store.add_many("binance", [kline(i) for i in range(2)])
        wait_for(lambda: not store.health.ok, 5, "the first write to fail")
        store.add_many("binance", [kline(i) for i in range(2, 10)])  # over the bound: dropped
        wait_for(lambda: store.health.dropped == 8, 5, "the oldest rows let go of")
        report = store.close(timeout=2)
        assert report.startswith("10 kline(s) not written"), report
        assert sum(n for *_, n in store.unwritten.values()) == 10
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def _fill_the_disk_at(limit: int) -> Callable[[], None]:
    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_file_size


def test_collect_exits_within_10_s_of_sigterm_with_a_full_disk(tmp_path):
    db = tmp_path / "h.sqlite"
    KlineStore(db).close()
    with SimProcess("--symbols", "BTCUSDT,ETHUSDT", "--speed", "120", "--seed", "9") as sim:
        limit = os.path.getsize(db) + 48_000  # a few batches of candles, then no more room
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "marketlab",
                "collect",
                "--symbols",
                "BTCUSDT,ETHUSDT",
                "--intervals",
                "1m",
                "--channels",
                "klines",
                "--db",
                str(db),
                "--status-interval",
                "0.5",
                "--binance-ws-url",
                sim.ws_url,
                "--binance-rest-url",
                sim.rest_url,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            preexec_fn=_fill_the_disk_at(limit),
        )
        try:
            assert proc.stdout is not None
            lines = []
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                line = proc.stdout.readline()
                assert line, f"collect exited early: {proc.stderr.read() if proc.stderr else ''}"
                lines.append(line)
                if "store failing" in line and "disk full" in line:
                    break
            else:
                raise AssertionError("the store never failed:\n" + "".join(lines[-5:]))
            began = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=15)
            took = time.monotonic() - began
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert took < 10, f"exited {took:.1f} s after SIGTERM"
    assert proc.returncode == 0, err
    report = [line for line in out.splitlines() if "not written" in line]
    assert len(report) == 1 and "disk full" in report[0] and "next start" in report[0], out
