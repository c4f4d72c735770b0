"""``marketlab demo --exchanges``: the simulator's four venues in one Lab, run as a user runs it."""

import re
import signal
import subprocess
import sys
import time

import httpx

from tests.cli.demo import running_demo

VENUES = ["binance", "okx", "bybit", "coinbase"]


def test_demo_over_four_venues_names_each_serves_the_lab_and_stops_on_ctrl_c(tmp_path):
    with running_demo(
        tmp_path,
        "--exchanges",
        ",".join(VENUES),
        "--symbols",
        "BTCUSDT,ETHUSDT",
    ) as (proc, banner):
        api = re.search(r"API docs\s+(http://127\.0\.0\.1:\d+)/docs", banner)
        assert api, banner
        for venue in VENUES:  # every venue's face of the simulator, by name and address
            assert re.search(rf"^\s+{venue}\s+\S.*: ws://127\.0\.0\.1:\d+", banner, re.M), banner
        assert "from binance, okx, bybit, coinbase" in banner

        # the API server serves the Lab collecting the four venues
        deadline = time.monotonic() + 40
        prices: dict = {}
        while time.monotonic() < deadline:
            r = httpx.get(f"{api.group(1)}/api/v1/market/realtime/prices", timeout=5)
            if r.status_code == 200 and r.json().get("prices"):
                prices = r.json()
                break
            time.sleep(0.5)
        assert prices, "the API server never served prices"
        across = re.search(r"across venues\s+(http://\S+/bbo/BTCUSDT)", banner)
        assert across, banner
        deadline = time.monotonic() + 30
        bbo: dict = {}
        while time.monotonic() < deadline:  # every venue's book synced and taking part
            bbo = httpx.get(across.group(1), timeout=5).json()
            if sorted(bbo.get("venues", [])) == sorted(VENUES):
                break
            time.sleep(0.5)
        assert sorted(bbo["venues"]) == sorted(VENUES), bbo
        assert bbo["state"] in ("normal", "locked", "crossed")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    assert "stopping: flushing and closing connections" in out
    for symbol in ("BTCUSDT", "ETHUSDT"):
        line = re.search(rf"^across venues {symbol}: (.*)$", out, re.M)
        assert line, out
        assert re.search(r"best bid [\d,.]+ on \w+, best ask [\d,.]+ on \w+", line.group(1)), out
        mids = re.search(rf"^across venues {symbol}:.*\n\s+mids against .*: (.*)$", out, re.M)
        assert mids, out
        for venue in VENUES:
            assert re.search(rf"\b{venue} [\d,.]+ \([+-]\d+\.\d bps\)", mids.group(1)), out
    assert "served" in out


def test_demo_refuses_a_venue_the_simulator_does_not_serve():
    out = subprocess.run(
        [sys.executable, "-m", "marketlab", "demo", "--exchanges", "binance,kraken"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2 and "unknown venue(s) kraken" in out.stderr
