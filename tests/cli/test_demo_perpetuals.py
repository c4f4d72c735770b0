"""``marketlab demo --perpetuals``: each symbol's perpetual beside its spot pair on the venues
that have them, served by the API while it runs, with funding and basis in the closing report."""

import re
import signal
import time

import httpx

from tests.cli.demo import running_demo

VENUES = ["binance", "okx", "bybit", "coinbase"]  # Coinbase has no perpetuals: spot only


def test_demo_with_perpetuals_serves_them_and_reports_funding_and_basis(tmp_path):
    with running_demo(
        tmp_path,
        "--exchanges",
        ",".join(VENUES),
        "--perpetuals",
        "--symbols",
        "BTCUSDT",
    ) as (proc, banner):
        basis_url = re.search(r"perpetuals\s+.*?(http://\S+/basis/BTCUSDT-PERP)", banner)
        assert basis_url, banner
        for venue, protocol in (
            ("binance", "Binance USDⓈ-M"),
            ("okx", "OKX v5 swaps"),
            ("bybit", "Bybit v5 linear"),
        ):
            assert re.search(rf"^\s+{venue}\s+{protocol}: ws://127\.0\.0\.1:\d+", banner, re.M)
        assert "coinbase   Coinbase" in banner and "Coinbase perpetual" not in banner

        # served while it runs: the perpetual on its three venues against every venue's spot,
        # and each venue's funding rate (OKX pushes its own channel for it, which may come
        # after the first mark on a busy machine: the closing report needs it)
        funding_url = basis_url.group(1).replace("/basis/BTCUSDT-PERP", "/funding")
        deadline = time.monotonic() + 40
        body: dict = {}
        rates: dict = {}
        while time.monotonic() < deadline:
            r = httpx.get(basis_url.group(1), timeout=5)
            if r.status_code == 200:
                body = r.json()
            f = httpx.get(funding_url, timeout=5)
            if f.status_code == 200:
                rates = {row["exchange"]: row["funding_rate"] for row in f.json()["rows"]}
            if (
                body
                and all(row["basis_bps"] is not None for row in body["rows"])
                and len(rates) == 3
                and None not in rates.values()
            ):
                break
            time.sleep(0.5)
        assert body and all(row["basis_bps"] is not None for row in body["rows"]), body
        assert set(rates) == {"binance", "okx", "bybit"} and None not in rates.values(), rates
        perps = {row["exchange"] for row in body["rows"]}
        spots = {row["spot_exchange"] for row in body["rows"]}
        assert perps == {"binance", "okx", "bybit"} and spots == {*VENUES, "median"}
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    for venue in ("binance", "okx", "bybit"):
        assert re.search(rf"^book {venue} BTCUSDT-PERP: synced$", out, re.M), out
        line = re.search(
            rf"^perpetual {venue} BTCUSDT-PERP: funding ([+-]\d+\.\d{{4}}) % "
            rf"\(([+-]\d+\.\d\d) % a year\), basis ([+-]\d+\.\d|n/a) bps",
            out,
            re.M,
        )
        assert line, out
        # a rate a period, three periods a day: the annualized rate (to the shown decimals)
        assert abs(float(line.group(2)) - float(line.group(1)) * 3 * 365) <= 0.06
    assert re.search(
        r"^  BTCUSDT-PERP against the venues' median spot mid: binance [+-]\d+\.\d bps, "
        r"okx [+-]\d+\.\d bps, bybit [+-]\d+\.\d bps$",
        out,
        re.M,
    ), out
    assert "book coinbase BTCUSDT-PERP" not in out
