"""`marketlab collect` as a user runs it, against a simulator process injecting faults."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.simproc import SimProcess

FAST_FEED = """
[feed]
idle_timeout = 2.0
ping_interval = 1.0
ping_timeout = 2.0
backoff_initial = 0.1
backoff_max = 1.0
fallback_after = 5.0
seed_klines = 20
"""


def collect(*args: str, cwd=None, env=None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "marketlab", "collect", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
    )


def report(stdout: str) -> dict[str, str]:
    return dict(re.findall(r"^((?:klines|book) [A-Z]+(?: \w+)?): (.*)$", stdout, re.M))


def test_collect_runs_through_injected_faults_and_ends_complete(tmp_path):
    # (a second malformed frame late on: the first may find the collector between connections
    # when it started late on a busy machine)
    faults = (
        "drop@6,gap@8,malformed@9:garbage,rest429@10:2,stall@12:3,shutdown@17,malformed@20:garbage"
    )
    with SimProcess(
        "--symbols", "BTCUSDT,ETHUSDT,BNBUSDT", "--speed", "60", "--faults", faults
    ) as sim:
        (tmp_path / "marketlab.toml").write_text(FAST_FEED)
        out = collect(
            "--symbols",
            "BTCUSDT,ETHUSDT,BNBUSDT",
            "--intervals",
            "1m,5m",
            "--binance-ws-url",
            sim.ws_url,
            "--binance-rest-url",
            sim.rest_url,
            "--duration",
            "24",
            "--status-interval",
            "2",
            cwd=tmp_path,
        )
    assert out.returncode == 0, out.stderr
    lines = report(out.stdout)
    for symbol in ("BTCUSDT", "ETHUSDT", "BNBUSDT"):
        closed, state = re.match(r"(\d+) closed, (.*)", lines[f"klines {symbol} 1m"]).groups()
        assert int(closed) >= 20 + 15 and state == "contiguous", out.stdout
        assert lines[f"klines {symbol} 5m"].endswith("contiguous")
        assert lines[f"book {symbol}"] == "synced", out.stdout
    status_lines = [line for line in out.stdout.splitlines() if "| msgs" in line]
    assert len(status_lines) >= 5
    assert re.search(r"reconnects [1-9]", status_lines[-1]) and re.search(
        r"bad frames [1-9]", status_lines[-1]
    )
    assert "settings from marketlab.toml" in out.stdout


def test_collect_from_okx_runs_through_faults_and_ends_complete(tmp_path):
    faults = "drop@6,gap@8,checksum@9,malformed@10:bad_field,stall@12:3"
    with SimProcess("--symbols", "BTCUSDT,ETHUSDT", "--speed", "60", "--faults", faults) as sim:
        (tmp_path / "marketlab.toml").write_text(
            FAST_FEED + "text_ping_after = 0.5\nsubscribe_timeout = 1.0\n"
        )
        db = tmp_path / "okx.sqlite"
        out = collect(
            "--exchange",
            "okx",
            "--symbols",
            "BTCUSDT,ETHUSDT",
            "--intervals",
            "1m",
            "--okx-ws-url",
            sim.okx_ws_url,
            "--okx-rest-url",
            sim.rest_url,
            "--db",
            str(db),
            "--duration",
            "18",
            "--status-interval",
            "2",
            cwd=tmp_path,
        )
    assert out.returncode == 0, out.stderr
    assert "from okx" in out.stdout
    lines = report(out.stdout)
    for symbol in ("BTCUSDT", "ETHUSDT"):
        closed, state = re.match(r"(\d+) closed, (.*)", lines[f"klines {symbol} 1m"]).groups()
        assert int(closed) >= 20 + 10 and state == "contiguous", out.stdout
        assert lines[f"book {symbol}"] == "synced", out.stdout
    import sqlite3

    stored = (
        sqlite3.connect(db)
        .execute("SELECT exchange, count(*) FROM klines GROUP BY exchange")
        .fetchall()
    )
    assert [e for e, _ in stored] == ["okx"] and stored[0][1] >= 60


def test_collect_stops_cleanly_on_sigterm():
    with SimProcess("--symbols", "BTCUSDT", "--speed", "60") as sim:
        proc = subprocess.Popen(
            [
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
                "--status-interval",
                "0.5",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            began = time.monotonic()
            while "| msgs" not in proc.stdout.readline():
                assert time.monotonic() - began < 30
            proc.send_signal(signal.SIGTERM)
            stdout, stderr = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, stderr
    assert "stopping" in stdout and "klines BTCUSDT 1m:" in stdout


def test_watchlist_from_config_file_env_urls_and_flags_override(tmp_path):
    with SimProcess("--symbols", "ETHUSDT,ADAUSDT", "--speed", "60") as sim:
        (tmp_path / "watch.toml").write_text(
            '[collect]\nsymbols = ["ETHUSDT", "ADAUSDT"]\n'
            'intervals = "5m"\nchannels = ["klines", "ticker"]\n' + FAST_FEED
        )
        env = {
            **os.environ,
            "MARKETLAB_BINANCE_WS_URL": sim.ws_url,
            "MARKETLAB_BINANCE_REST_URL": sim.rest_url,
        }
        out = collect("--config", str(tmp_path / "watch.toml"), "--duration", "3", env=env)
        assert out.returncode == 0, out.stderr
        assert "collecting ETHUSDT, ADAUSDT at 5m" in out.stdout and sim.ws_url in out.stdout
        assert "book ETHUSDT" not in out.stdout  # the book channel is off
        out = collect(
            "--config",
            str(tmp_path / "watch.toml"),
            "--symbols",
            "ETHUSDT",
            "--duration",
            "2",
            env=env,
        )
        assert "collecting ETHUSDT at 5m" in out.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[collect]\nsymbols = [", "not valid TOML"),
        ("[collect]\nsymbol = ['BTCUSDT']", "unknown key(s) in [collect]"),
        ("[feed]\nping_everyone = 1", "unknown key(s) in [feed]"),
        ("[feed]\nidle_timeout = 'soon'", "must be a number"),
        ("[collect]\nintervals = ['7m']", "invalid interval"),
        ("[collector]\n", "unknown table"),
    ],
)
def test_bad_config_files_are_named_and_explained(tmp_path, content, message):
    path = tmp_path / "bad.toml"
    path.write_text(content)
    out = collect("--config", str(path), "--duration", "1")
    assert out.returncode == 2
    assert message in out.stderr and "bad.toml" in out.stderr


def test_bad_collect_flags():
    out = collect("--symbols", "BTC USDT")
    assert out.returncode == 2 and "invalid symbol" in out.stderr
    out = collect("--intervals", "2m")
    assert out.returncode == 2 and "invalid interval" in out.stderr
    out = collect("--channels", "candles")
    assert out.returncode == 2 and "unknown channel" in out.stderr
    out = collect("--config", "/nonexistent/marketlab.toml")
    assert out.returncode == 2 and "does not exist" in out.stderr


def test_serve_exposes_the_api_and_guards_control_beyond_loopback():
    with SimProcess("--symbols", "BTCUSDT", "--speed", "60") as sim:
        refused = collect(
            "--symbols",
            "BTCUSDT",
            "--serve",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--duration",
            "1",
            "--binance-ws-url",
            sim.ws_url,
            "--binance-rest-url",
            sim.rest_url,
        )
        assert refused.returncode == 2 and "needs a token" in refused.stderr
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "marketlab",
                "serve",
                "--symbols",
                "BTCUSDT",
                "--intervals",
                "1m",
                "--host",
                "0.0.0.0",
                "--port",
                "0",
                "--token",
                "s3cret",
                "--binance-ws-url",
                sim.ws_url,
                "--binance-rest-url",
                sim.rest_url,
                "--duration",
                "30",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            line = proc.stdout.readline() + proc.stdout.readline()
            port = re.search(r"API docs http://0\.0\.0\.0:(\d+)/docs", line).group(1)
            api = f"http://127.0.0.1:{port}/api/v1/market/realtime"
            import httpx

            deadline = time.monotonic() + 20
            while httpx.get(api + "/prices").json()["missing"] and time.monotonic() < deadline:
                time.sleep(0.2)
            assert httpx.get(api + "/prices").json()["prices"][0]["symbol"] == "BTCUSDT"
            assert httpx.post(api + "/stop").status_code == 401
            stopped = httpx.post(
                api + "/stop", headers={"Authorization": "Bearer s3cret"}, timeout=30
            )
            assert stopped.json() == {"running": False, "message": "stopped"}
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


def test_collect_takes_several_venues_and_reports_each(tmp_path):
    with SimProcess("--symbols", "BTCUSDT,ETHUSDT", "--speed", "60") as sim:
        # (OKX's line is kept alive by a text ping within the shortened idle timeout)
        (tmp_path / "marketlab.toml").write_text(FAST_FEED + "text_ping_after = 0.5\n")
        out = collect(
            "--exchanges",
            "bybit,okx,coinbase",
            "--okx-ws-url",
            sim.okx_ws_url,
            "--okx-rest-url",
            sim.rest_url,
            "--symbols",
            "BTCUSDT,ETHUSDT",
            "--channels",
            "trades,ticker,book,klines",
            "--bybit-ws-url",
            sim.ws_url,
            "--bybit-rest-url",
            sim.rest_url,
            "--coinbase-ws-url",
            sim.ws_url,
            "--coinbase-rest-url",
            sim.rest_url,
            "--duration",
            "12",
            "--status-interval",
            "2",
            cwd=tmp_path,
        )
    assert out.returncode == 0, out.stderr
    assert "from bybit (" in out.stdout and "okx (" in out.stdout and "coinbase (" in out.stdout
    for venue in ("bybit", "okx", "coinbase"):
        for symbol in ("BTCUSDT", "ETHUSDT"):
            line = re.search(rf"^klines {venue} {symbol} 1m: (\d+) closed, (.*)$", out.stdout, re.M)
            assert line and int(line.group(1)) >= 20 and line.group(2) == "contiguous", out.stdout
            assert re.search(rf"^book {venue} {symbol}: synced$", out.stdout, re.M), out.stdout
    status = [line for line in out.stdout.splitlines() if "| msgs" in line][-1]
    for venue in ("bybit", "okx", "coinbase"):
        assert f"{venue}:BTCUSDT " in status
    assert "books 6/6 synced" in status


def test_collect_refuses_an_unknown_venue_in_exchanges():
    out = collect("--exchanges", "binance,kraken", "--duration", "1")
    assert out.returncode != 0 and "kraken" in out.stderr and "bybit" in out.stderr
