"""Memory soak: ``python benchmarks/soak.py [--minutes 5] [--speed 600] [--symbols 20]``.

The simulator, in its own process, runs ``--speed`` times faster than the clock for ``--symbols``
symbols; a Lab collects trades, tickers, books and 1m/1h klines into SQLite for ``--minutes``
of wall time — many simulated hours or days. Its resident memory is sampled throughout: once
the rolling buffers have filled (the warm-up), it must stay flat. Prints the samples and the
growth after warm-up.
"""

from __future__ import annotations

import argparse
import gc
import re
import tempfile
import time
from pathlib import Path

from processes import start_simulator

from marketlab.lab import Lab

NAMES = ["BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT"]


def rss_mb() -> float:
    text = Path("/proc/self/status").read_text()
    found = re.search(r"VmRSS:\s+(\d+)", text)
    assert found is not None  # every Linux process has a resident size
    return int(found.group(1)) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--speed", type=float, default=600.0)
    ap.add_argument("--symbols", type=int, default=20)
    ap.add_argument("--every", type=float, default=15.0, help="seconds between samples")
    ap.add_argument("--trade-capacity", type=int, default=20_000, help="trades kept per symbol")
    args = ap.parse_args()
    symbols = (NAMES + [f"X{i:02d}USDT" for i in range(args.symbols)])[: args.symbols]
    sim, port, log = start_simulator(
        "--speed",
        str(args.speed),
        "--symbols",
        ",".join(symbols),
        "--history",
        "10m",
        "--ping-interval",
        "5",
    )
    samples = []
    with tempfile.TemporaryDirectory() as tmp:
        lab = Lab(
            symbols,
            intervals=["1m", "1h"],
            db=Path(tmp) / "soak.sqlite",
            trade_capacity=args.trade_capacity,
            binance_ws_url=f"ws://127.0.0.1:{port}",
            binance_rest_url=f"http://127.0.0.1:{port}",
            seed_klines=60,
        )
        try:
            lab.start().wait_ready(120)
            began = time.monotonic()
            first_time = None
            while time.monotonic() - began < args.minutes * 60:
                time.sleep(args.every)
                gc.collect()
                prices = lab.prices()
                exchange_ms = int(prices["event_time"].max().value // 1_000_000)
                first_time = first_time or exchange_ms
                trades = sum(len(b) for b in lab._trades.values())
                status = lab.status()
                samples.append(
                    (
                        time.monotonic() - began,
                        (exchange_ms - first_time) / 3_600_000,
                        int(status["messages"].sum()),
                        trades,
                        rss_mb(),
                    )
                )
                print(
                    f"  {samples[-1][0]:7.0f} s  {samples[-1][1]:7.1f} h simulated  "
                    f"{samples[-1][2]:>11,} msgs  "
                    f"{samples[-1][4]:7.1f} MB RSS",
                    flush=True,
                )
            summary = lab.summary()
            books = sum(1 for s in symbols if lab.book(s).attrs["synced"])
        finally:
            lab.stop()
            sim.terminate()
            sim.wait(10)
            log.close()
    warm = samples[len(samples) // 3]
    last = samples[-1]
    peak_after = max(s[4] for s in samples[len(samples) // 3 :])
    print(
        f"\nsoak: {args.symbols} symbols at {args.speed:g}x for {args.minutes:g} min: "
        f"{last[1]:.1f} simulated hours, {last[2]:,} messages, "
        f"{books}/{len(symbols)} books synced, "
        f"{summary['reconnects']} reconnects, db {summary['db_written']} candle writes"
    )
    print(
        f"RSS after warm-up ({warm[0]:.0f} s): {warm[4]:.1f} MB; at the end: {last[4]:.1f} MB; "
        f"peak after warm-up {peak_after:.1f} MB; growth {last[4] - warm[4]:+.1f} MB "
        f"({(last[4] - warm[4]) / max(last[2] - warm[2], 1) * 1e6:+.2f} bytes per message)"
    )


if __name__ == "__main__":
    main()
