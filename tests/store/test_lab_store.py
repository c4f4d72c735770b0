"""History written by a running Lab and by backfill, checked against the exchange's record,
including a collector killed with SIGKILL mid-run."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from marketlab.lab import Lab
from marketlab.sim import SimExchange
from marketlab.store.history import History
from tests.lab.test_lab import FAST, wait_for
from tests.simproc import SimProcess

START = 1_767_225_600_000


def assert_contiguous_and_exact(df, oracle_klines, step=60_000):
    opens = list(df.index.asi8 // 1_000_000)
    assert opens == list(range(opens[0], opens[-1] + step, step)), "a stored candle is missing"
    oracle = oracle_klines(opens[0], opens[-1])
    assert [o["open_time"] for o in oracle] == opens
    for column in (
        "open",
        "high",
        "low",
        "close",
        "volume",
        "quote_volume",
        "trades",
        "taker_buy_volume",
        "taker_buy_quote_volume",
    ):
        assert list(df[column]) == [o[column] for o in oracle], column


def test_a_lab_with_db_stores_every_closed_kline_and_resumes_after_a_restart(tmp_path):
    db = tmp_path / "m.sqlite"
    with SimExchange(["BTCUSDT"], speed=60, seed=21) as sim:
        opts = dict(
            binance_ws_url=sim.ws_url,
            binance_rest_url=sim.rest_url,
            db=db,
            db_flush_interval=0.2,
            **FAST,
        )
        with Lab(["BTCUSDT"], intervals=["1m", "5m"], **opts) as lab:
            lab.wait_ready(30)
            time.sleep(3)
        first = History(db=db).klines("BTCUSDT", "1m")
        assert len(first) >= 30 + 2
        time.sleep(3)  # the collector is down for ~3 exchange minutes
        with Lab(["BTCUSDT"], intervals=["1m", "5m"], **opts) as lab:
            assert len(lab.klines("BTCUSDT", "1m")) >= len(first)  # warmed from the file
            lab.wait_ready(30)
            wait_for(
                lambda: lab.status().loc[("BTCUSDT", "kline_1m"), "backfilled"] >= 2,
                15,
                "the backfill",
            )
            time.sleep(2)
            assert lab.summary()["db_errors"] == 0
            lab_frame = lab.klines("BTCUSDT", "1m")
        stored = History(db=db).klines("BTCUSDT", "1m")
        oracle = lambda a, b: sim.klines("BTCUSDT", "1m", start=a, end=b, limit=1000)  # noqa: E731
        assert_contiguous_and_exact(stored, oracle)
        assert_contiguous_and_exact(
            lab.history.klines("BTCUSDT", "5m"),
            lambda a, b: sim.klines("BTCUSDT", "5m", start=a, end=b),
            300_000,
        )
        closed = lab_frame[lab_frame["closed"]]
        assert list(closed.index) == list(stored.index[-len(closed) :])


def test_backfill_pages_the_rest_api_and_resumes(tmp_path):
    db = tmp_path / "m.sqlite"
    with SimExchange(
        ["BTCUSDT", "ETHUSDT"], speed=1, seed=5, history="1d", start_time=START
    ) as sim:
        h = History(db=db, rest_url=sim.rest_url)
        written = h.backfill(
            ["BTCUSDT", "ETHUSDT"], ["1m", "1h"], start=START - 86_400_000, progress=False
        )
        assert written == 2 * (1440 + 24)
        df = h.klines("BTCUSDT", "1m")
        assert len(df) == 1440
        assert_contiguous_and_exact(
            df,
            lambda a, b: (
                sim.klines("BTCUSDT", "1m", start=a, end=b, limit=1000)
                + sim.klines("BTCUSDT", "1m", start=a + 1000 * 60_000, end=b, limit=1000)
            ),
        )
        before = sim.stats["rest_requests"]
        assert (
            h.backfill(
                ["BTCUSDT", "ETHUSDT"], ["1m", "1h"], start=START - 86_400_000, progress=False
            )
            == 0
        )
        assert sim.stats["rest_requests"] - before <= 6  # resumed at the end: no re-download
        with pytest.raises(ValueError, match="Invalid symbol"):
            h.backfill(["NOPEUSDT"], ["1m"], start=START - 3_600_000, progress=False)
        with pytest.raises(ValueError, match=r"end .* is before start"):
            h.backfill(["BTCUSDT"], ["1m"], start="2026-02-01", end="2026-01-01")


def test_backfill_and_export_from_the_cli(tmp_path):
    db, out = tmp_path / "m.sqlite", tmp_path / "pq"
    with SimExchange(["BTCUSDT"], speed=1, seed=5, history="3h", start_time=START) as sim:

        def run(*a):
            return subprocess.run(
                [sys.executable, "-m", "marketlab", *a], capture_output=True, text=True, timeout=120
            )

        r = run(
            "backfill",
            "--symbols",
            "BTCUSDT",
            "--intervals",
            "1m,15m",
            "--start",
            "2025-12-31 22:00",
            "--db",
            str(db),
            "--binance-rest-url",
            sim.rest_url,
        )
        assert r.returncode == 0, r.stderr
        assert "backfilled 128 candle(s)" in r.stdout  # 120 minutes + 8 quarter hours
        r = run("export", "--db", str(db), "--out", str(out))
        assert r.returncode == 0 and "exported 128 new candle(s) from 2 series" in r.stdout
        r = run("export", "--db", str(db), "--out", str(out))
        assert "exported 0 new candle(s)" in r.stdout
        bad = run("export", "--db", str(out), "--out", str(tmp_path / "x"))
        assert bad.returncode == 2 and "is a directory" in bad.stderr


def test_kill_9_leaves_a_valid_file_and_the_next_start_fills_the_hole(tmp_path):
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
        ]
        proc = subprocess.Popen(
            args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

        def stored() -> int:
            if not db.exists():
                return 0
            try:
                with sqlite3.connect(db) as conn:
                    return conn.execute("SELECT count(*) FROM klines").fetchone()[0]
            except sqlite3.OperationalError:
                return 0

        wait_for(lambda: stored() >= 25, 30, "klines in the file")
        time.sleep(0.35)  # somewhere inside a batch
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        time.sleep(3)  # candles close while nothing runs
        r = subprocess.run(
            [*args, "--duration", "6"], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert r.returncode == 0, r.stderr
        df = History(db=db).klines("BTCUSDT", "1m")
        assert_contiguous_and_exact(df, lambda a, b: sim.klines("BTCUSDT", "1m", a, b))
        assert len(df) >= 25 + 3 + 5
