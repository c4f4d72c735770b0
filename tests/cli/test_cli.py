"""The command line, run as a user runs it: real processes, real ports."""

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

SCRIPT = Path(sys.executable).parent / "marketlab"


def run(*args: str, timeout: float = 60, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``marketlab *args`` as a process; ``cwd`` where it runs (the demo writes its history to
    ``data/demo.sqlite`` there: a folder of the test's own, so no earlier run's candles count)."""
    return subprocess.run(
        [sys.executable, "-m", "marketlab", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def test_console_script_is_installed():
    out = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    for command in ("demo", "sim", "fault"):
        assert command in out.stdout


def test_demo_starts_the_simulator_prints_where_and_stops_by_itself(tmp_path: Path):
    # long enough for the books to sync on a loaded machine (the suite runs 6 workers on 2
    # cores: 4 s once ended before the collector's WebSocket was open)
    out = run("demo", "--duration", "10", "--sim-port", "0", "--port", "0", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    url = re.search(r"simulated exchange\s+(http://127\.0\.0\.1:\d+)", out.stdout)
    assert url, out.stdout
    lines = out.stdout.splitlines()
    assert "API docs" in lines[1] and lines[1].rstrip().endswith("/docs")  # the docs link first
    assert "/api/v1/market/realtime/ws" in out.stdout
    assert "served" in out.stdout
    assert "klines BTCUSDT 1m:" in out.stdout and "contiguous" in out.stdout
    assert "book BTCUSDT: synced" in out.stdout


def test_demo_with_a_bus_shows_a_second_lab_reading_what_the_collector_publishes(tmp_path: Path):
    out = run("demo", "--bus", "--duration", "10", "--sim-port", "0", "--port", "0", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert re.search(r"bus\s+nats://127\.0\.0\.1:\d+ \(NATS JetStream\)", out.stdout), out.stdout
    report = re.search(
        r"the Lab reading the bus: (\d+) closed 1m candles and (\d+) trades, equal to", out.stdout
    )
    assert report and int(report.group(1)) > 0 and int(report.group(2)) > 0, out.stdout
    assert "Lab.from_bus" in out.stdout


@pytest.fixture
def sim_process():
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "marketlab",
            "sim",
            "--port",
            "0",
            "--symbols",
            "BTCUSDT,ethusdt",
            "--speed",
            "60",
            "--seed",
            "7",
            "--duration",
            "60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        while True:
            line = proc.stdout.readline()
            assert line, f"simulator exited early: {proc.stderr.read()}"
            lines.append(line)
            m = re.search(r"REST\s+http://127\.0\.0\.1:(\d+)", line)
            if m:
                yield proc, int(m.group(1)), lines
                break
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise


def test_sim_serves_until_interrupted_and_takes_faults_from_the_cli(sim_process):
    proc, port, lines = sim_process
    assert "BTCUSDT, ETHUSDT" in lines[0]
    rest = f"http://127.0.0.1:{port}"
    assert httpx.get(f"{rest}/api/v3/ping").status_code == 200
    out = run("fault", "--port", str(port), "rest503", "2")
    assert out.returncode == 0 and '"ok":true' in out.stdout.replace(" ", "")
    assert [httpx.get(f"{rest}/api/v3/ping").status_code for _ in range(3)] == [503, 503, 200]
    bad = run("fault", "--port", str(port), "explode")
    assert bad.returncode == 2 and "unknown fault" in bad.stderr
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=15) == 0


def test_sim_runs_a_fault_schedule():
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "marketlab",
            "sim",
            "--port",
            "0",
            "--symbols",
            "BTCUSDT",
            "--faults",
            "rest418@0:1",
            "--duration",
            "30",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = None
        while port is None:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            m = re.search(r"REST\s+http://127\.0\.0\.1:(\d+)", line)
            port = int(m.group(1)) if m else None
        time.sleep(0.3)
        first = httpx.get(f"http://127.0.0.1:{port}/api/v3/ping")
        assert first.status_code == 418 and "Retry-After" in first.headers
        assert httpx.get(f"http://127.0.0.1:{port}/api/v3/ping").status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sim", "--symbols", "BTC USDT"], "invalid symbol"),
        (["sim", "--speed", "-1"], "positive"),
        (["sim", "--port", "70000"], "port"),
        (["sim", "--faults", "boom@1"], "unknown fault"),
        (["demo", "--duration", "soon"], "expected a number"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(args, message):
    out = run(*args, "--duration", "1") if "--duration" not in args else run(*args)
    assert out.returncode == 2
    assert message in out.stderr


def test_fault_without_a_simulator_says_so():
    out = run("fault", "--port", "1", "drop")
    assert out.returncode == 1 and "no simulator" in out.stderr
