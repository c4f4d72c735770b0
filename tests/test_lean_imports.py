"""A process loads what it uses: a headless collector (`marketlab collect` as a shard, writing
SQLite and publishing to the bus), a history writer (`marketlab store --from`) and a Lab that
reads no frame load none of pandas, pyarrow, DuckDB or plotly; and none of them loads ccxt or
the libraries its base imports (requests, cryptography): the venues' public REST goes over
aiohttp, which the WebSocket connections load anyway.

Each check runs the command to its end in a process of its own and looks at ``sys.modules``
from inside it afterwards, and each run is shown to have done its work (candles in SQLite, the
modules of the paths it ran loaded): an import of those libraries added anywhere on the way, at
a module's top or in a function the run calls, fails here."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import zlib
from pathlib import Path

from marketlab.bus.config import ENV
from marketlab.bus.nats_server import NatsServer
from tests.simproc import SimProcess

HEAVY = {"pandas", "pyarrow", "duckdb", "plotly"}
REST_LIBRARIES = {"ccxt", "requests", "urllib3", "charset_normalizer", "cryptography"}
SYMBOLS = ["BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT"]
REPORT = "import json, sys; print('MODULES ' + json.dumps(sorted(sys.modules)), flush=True)"
RUN_CLI = f"import sys\nfrom marketlab.cli.main import main\ncode = main(sys.argv[1:])\n{REPORT}\n"


def environment() -> dict[str, str]:
    """This machine's environment without any bus settings (the tests say who they are)."""
    return {k: v for k, v in os.environ.items() if k not in ENV.values()}


def modules_of(stdout: str) -> set[str]:
    """The modules the process had loaded when it ended (its last ``MODULES`` line)."""
    lines = [line for line in stdout.splitlines() if line.startswith("MODULES ")]
    assert lines, f"the process did not report its modules: {stdout[-2000:]}"
    return set(json.loads(lines[-1][len("MODULES ") :]))


def heavy_in(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] in HEAVY}


def rest_libraries_in(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] in REST_LIBRARIES}


def cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", RUN_CLI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    )


def finish(proc: subprocess.Popen[str], timeout: float = 90) -> set[str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    return modules_of(out)


def closed_candles(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM klines").fetchone()[0])


def test_a_collector_shard_writing_sqlite_and_the_bus_and_a_history_writer_load_no_frames(
    tmp_path: Path,
) -> None:
    shard = f"{zlib.crc32(b'BTCUSDT') % 2}/2"  # the half of the market BTCUSDT falls in
    with (
        SimProcess("--symbols", ",".join(SYMBOLS), "--speed", "60") as sim,
        NatsServer(store_dir=tmp_path / "nats") as nats,
    ):
        collector = cli(
            "collect",
            "--symbols",
            "all",
            "--quote",
            "USDT",
            "--shard",
            shard,
            "--intervals",
            "1m",
            "--db",
            str(tmp_path / "collector.sqlite"),
            "--publish",
            nats.url,
            "--binance-ws-url",
            sim.ws_url,
            "--binance-rest-url",
            sim.rest_url,
            "--duration",
            "5",
        )
        collected = finish(collector)
        written = finish(  # the history writer, reading what the collector published
            cli(
                "store",
                "--from",
                nats.url,
                "--db",
                str(tmp_path / "history.sqlite"),
                "--intervals",
                "1m",
                "--duration",
                "4",
            )
        )
    assert not heavy_in(collected), heavy_in(collected)
    # it called the venue's REST (the candles' seed, the books' snapshots) without them
    assert "marketlab.venues.binance.rest" in collected
    assert not rest_libraries_in(collected), rest_libraries_in(collected)
    assert not rest_libraries_in(written), rest_libraries_in(written)
    assert not heavy_in(written), heavy_in(written)
    # they ran their paths: the venue's connection, SQLite, the bus, and candles to show for it
    assert {
        "marketlab.stream.connection",
        "marketlab.store.writer",
        "marketlab.bus.publisher",
    } <= collected
    assert {"marketlab.bus.reader", "marketlab.store.writer"} <= written
    assert closed_candles(tmp_path / "collector.sqlite") > 0
    assert closed_candles(tmp_path / "history.sqlite") > 0


LAB = """
import json, sys
import marketlab as ml

def heavy():
    return sorted(m for m in {heavy!r} if m in sys.modules)

def rest_libraries():
    return sorted(m for m in {rest!r} if m in sys.modules)

urls = dict(binance_ws_url=sys.argv[1], binance_rest_url=sys.argv[2])
lab = ml.Lab(["BTCUSDT"], intervals=["1m"], **urls)
lab.start().wait_ready(60)
prices = lab.price_rows()  # the plain readers a server uses
lab.stop()
before = heavy()
candles = len(lab.klines("BTCUSDT", "1m"))
rest = rest_libraries()
print(json.dumps({{"before": before, "after": heavy(), "candles": candles, "prices": len(prices),
                  "rest": rest}}))
"""


def test_a_lab_loads_pandas_when_a_frame_is_first_asked_for() -> None:
    with SimProcess("--symbols", "BTCUSDT") as sim:
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                LAB.format(heavy=HEAVY, rest=REST_LIBRARIES),
                sim.ws_url,
                sim.rest_url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env=environment(),
        )
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["before"] == [], "started, collected and stopped without reading a frame"
    assert seen["prices"] == 1
    assert seen["candles"] > 0
    assert seen["rest"] == []  # its REST calls (the seed, the books) loaded none of them
    assert "pandas" in seen["after"]  # the check sees a library once something loads it
