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
