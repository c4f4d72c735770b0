"""Draw the README's chart from the simulator: ``python docs/make_pictures.py``.

Writes ``docs/candles.html`` (plotly, opens in any browser): the same candlestick + volume
figure ``lab.chart()`` shows live, filled by the same update code; and ``docs/candles.png``
when a Chromium is installed to take the screenshot (none is downloaded). The live notebooks
themselves, in JupyterLab, are photographed by ``docs/make_screenshots.py``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from marketlab.charts import candle_figure, candle_traces
from marketlab.lab import Lab
from marketlab.sim import SimExchange

OUT = Path(__file__).parent / "candles.html"
PNG = OUT.with_suffix(".png")


def main() -> Path:
    with SimExchange(["BTCUSDT"], speed=60, seed=7, history="6h") as sim:
        lab = Lab(
            ["BTCUSDT"],
            intervals=["5m"],
            binance_ws_url=sim.ws_url,
            binance_rest_url=sim.rest_url,
            seed_klines=72,
            channels=["klines"],
        )
        with lab:
            lab.wait_ready(60, books=False)
            df = lab.klines("BTCUSDT", "5m")
            decimals = lab.price_decimals("BTCUSDT")
    figure = candle_figure("BTCUSDT 5m — simulated exchange", "BTCUSDT", decimals)
    candle_traces(figure, df)
    figure.write_html(OUT, include_plotlyjs="cdn", full_html=True)
    browser = (
        shutil.which("chromium")
        or shutil.which("chromium-browser")
        or shutil.which("google-chrome")
    )
    if browser:
        with tempfile.TemporaryDirectory() as d:
            page = Path(d) / "page.html"
            # offline: inline plotly.js
            figure.write_html(page, include_plotlyjs=True, full_html=True)
            command = [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--disable-background-networking",
                "--no-first-run",
                f"--user-data-dir={d}/profile",
                f"--screenshot={PNG}",
                "--window-size=1000,540",
                "--virtual-time-budget=5000",
                page.as_uri(),
            ]
            subprocess.run(command, check=True, capture_output=True, timeout=120)
    else:
        print("no Chromium found: skipped the PNG")
    return OUT


if __name__ == "__main__":
    print(main())
