"""``marketlab collect`` of perpetual swaps: the perpetuals' URL flags, the banner naming the
futures WebSocket, and the closing report of their candles and books."""

from __future__ import annotations

import re

from tests.cli.test_collect import FAST_FEED, collect
from tests.simproc import SimProcess


def test_collect_takes_perpetuals_from_their_own_urls(tmp_path):
    with SimProcess("--symbols", "BTCUSDT,ETHUSDT", "--speed", "60") as sim:
        (tmp_path / "marketlab.toml").write_text(FAST_FEED)
        out = collect(
            "--symbols",
            "btcusdt-perp,ETHUSDT-PERP",
            "--intervals",
            "1m",
            "--binance-perp-ws-url",
            sim.ws_url,
            "--binance-perp-rest-url",
            sim.rest_url,
            "--duration",
            "8",
            "--status-interval",
            "2",
            cwd=tmp_path,
        )
    assert out.returncode == 0, out.stderr
    assert f"from binance ({sim.ws_url})" in out.stdout  # the futures URL, not spot's
    lines = dict(re.findall(r"^((?:klines|book) [A-Z-]+(?: \w+)?): (.*)$", out.stdout, re.M))
    for symbol in ("BTCUSDT-PERP", "ETHUSDT-PERP"):
        closed, state = re.match(r"(\d+) closed, (.*)", lines[f"klines {symbol} 1m"]).groups()
        assert int(closed) >= 20 and state == "contiguous", out.stdout
        assert lines[f"book {symbol}"] == "synced", out.stdout


def test_collect_takes_spot_and_perpetuals_from_three_venues_at_once(tmp_path):
    with SimProcess("--symbols", "BTCUSDT", "--speed", "60") as sim:
        # (OKX's line is kept alive by a text ping within the shortened idle timeout)
        (tmp_path / "marketlab.toml").write_text(FAST_FEED + "text_ping_after = 0.5\n")
        urls = []
        for venue in ("binance", "okx", "bybit"):
            spot_ws = sim.okx_ws_url if venue == "okx" else sim.ws_url
            urls += [f"--{venue}-ws-url", spot_ws, f"--{venue}-rest-url", sim.rest_url]
            urls += [f"--{venue}-perp-ws-url", sim.ws_url, f"--{venue}-perp-rest-url", sim.rest_url]
        out = collect(
            "--symbols",
            "BTCUSDT,BTCUSDT-PERP",
            "--exchanges",
            "binance,okx,bybit",
            "--intervals",
            "1m",
            *urls,
            "--duration",
            "10",
            "--status-interval",
            "2",
            cwd=tmp_path,
        )
    assert out.returncode == 0, out.stderr
    for venue in ("binance", "okx", "bybit"):
        for symbol in ("BTCUSDT", "BTCUSDT-PERP"):
            line = re.search(rf"^klines {venue} {symbol} 1m: (\d+) closed, (.*)$", out.stdout, re.M)
            assert line and int(line.group(1)) >= 15, out.stdout
            assert line.group(2) == "contiguous", out.stdout
            assert re.search(rf"^book {venue} {symbol}: synced$", out.stdout, re.M), out.stdout
    status = [line for line in out.stdout.splitlines() if "| msgs" in line][-1]
    assert "books 6/6 synced" in status, status
