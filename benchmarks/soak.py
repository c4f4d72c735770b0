"""Memory soak: ``python benchmarks/soak.py [--minutes 5] [--speed 600] [--symbols 3,20]``.

For each symbol count, in a process of its own (so one run's memory is never another's): the
simulator, in its own process, runs ``--speed`` times faster than the clock; a Lab collects
trades, tickers, books and 1m/1h klines into SQLite for ``--minutes`` of wall time — many
simulated hours or days — with the default buffer capacities unless told otherwise. Its
resident memory is sampled throughout, without reading a frame (as a headless collector):
once the rolling buffers have filled (the warm-up) it must stay flat.

Prints each run's samples, then one row per symbol count: RSS after the warm-up and at the
end, split into the rolling buffers' own bytes (what they say they hold) and the rest (the
interpreter, the libraries loaded, books, queues), and which heavy libraries the process
loaded. The trades' columns (megabytes each, mapped) are allocated at their capacities up front
but become resident only as rows fill them, so the rest is RSS less the bytes of the rows held.
The candles' columns grow with the candles held (from 16 rows, doubling to the capacity), so
they too are counted as the rows they hold. Goals: the rest <= 80 MB whatever the symbol count;
3 symbols <= 100 MB in all.

``--collect-seconds N`` also runs ``marketlab collect`` (the first symbol count, SQLite) as an
operator would and reports its RSS after N seconds.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from processes import start_simulator

NAMES = ["BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT"]
# what a headless collector should not load: frames' libraries, the server's, and an exchange
# library with what its base imports (the venues' public REST goes over aiohttp)
HEAVY = ["pandas", "pyarrow", "duckdb", "plotly", "prometheus_client", "fastapi"]
HEAVY += ["ccxt", "requests", "cryptography"]
REST_GOAL_MB = 80.0
THREE_SYMBOLS_GOAL_MB = 100.0


def rss_mb(pid: int | str = "self") -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"VmRSS:\s+(\d+)", text)
    assert found is not None  # every Linux process has a resident size
    return int(found.group(1)) / 1024


def symbols_of(count: int) -> list[str]:
    return (NAMES + [f"X{i:02d}USDT" for i in range(count)])[:count]


def heavy_loaded(modules: list[str]) -> list[str]:
    """Which of :data:`HEAVY` are among ``modules``."""
    return [name for name in HEAVY if any(m == name or m.startswith(name + ".") for m in modules)]


def soak(args: argparse.Namespace, count: int) -> dict:
    """One run, in this process: the samples and the split at the end."""
    from marketlab.lab import Lab
    from marketlab.rings import DEFAULT_TRADE_CAPACITY

    symbols = symbols_of(count)
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
            trade_capacity=args.trade_capacity or DEFAULT_TRADE_CAPACITY,
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
                exchange_ms = max(row["event_time"] for row in lab.price_rows())
                first_time = first_time or exchange_ms
                messages = sum(c["messages"] for c in lab.summary()["connections"])
                sample = {
                    "s": time.monotonic() - began,
                    "simulated_h": (exchange_ms - first_time) / 3_600_000,
                    "messages": messages,
                    "rss_mb": rss_mb(),
                    "buffers_mb": lab.buffer_nbytes() / 2**20,
                    "held_mb": lab.buffer_nbytes(held=True) / 2**20,
                }
                samples.append(sample)
                print(
                    f"  {count:>3} symbols {sample['s']:7.0f} s  "
                    f"{sample['simulated_h']:7.1f} h simulated  {messages:>11,} msgs  "
                    f"{sample['rss_mb']:7.1f} MB RSS (buffers {sample['held_mb']:.1f} of "
                    f"{sample['buffers_mb']:.1f} MB held)",
                    file=sys.stderr,
                    flush=True,
                )
            summary = lab.summary()
            books = sum(1 for s in symbols if lab.book_levels(s, 1).synced)
        finally:
            lab.stop()
            sim.terminate()
            sim.wait(10)
            log.close()
    return {
        "symbols": count,
        "samples": samples,
        "books_synced": books,
        "reconnects": summary["reconnects"],
        "db_written": summary["db_written"],
        "heavy": heavy_loaded(list(sys.modules)),
    }


def collect_rss(count: int, seconds: float) -> dict:
    """``marketlab collect`` (SQLite) against the simulator: its RSS after ``seconds`` and the
    heavy libraries it had loaded when it exited."""
    symbols = ",".join(symbols_of(count))
    sim, port, log = start_simulator("--symbols", symbols)
    report = (  # the collector's own main, then what it loaded, from inside its process
        "import sys, runpy\n"
        "try:\n"
        "    runpy.run_module('marketlab', run_name='__main__')\n"
        "finally:\n"
        "    import json\n"
        "    print('MODULES', json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    report,
                    "collect",
                    "--symbols",
                    symbols,
                    "--intervals",
                    "1m,1h",
                    "--db",
                    f"{tmp}/collect.sqlite",
                    "--binance-ws-url",
                    f"ws://127.0.0.1:{port}",
                    "--binance-rest-url",
                    f"http://127.0.0.1:{port}",
                    "--duration",
                    str(seconds + 3),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            time.sleep(seconds)
            rss = rss_mb(proc.pid)
            _, err = proc.communicate(timeout=60)
    finally:
        sim.terminate()
        sim.wait(10)
        log.close()
    reported = [line for line in err.splitlines() if line.startswith("MODULES ")]
    heavy = heavy_loaded(json.loads(reported[-1][len("MODULES ") :])) if reported else ["?"]
    return {"rss_mb": rss, "exit": proc.returncode, "heavy": ", ".join(heavy) or "-"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--speed", type=float, default=600.0)
    ap.add_argument("--symbols", default="3,20", help="symbol counts, each run on its own")
    ap.add_argument("--every", type=float, default=15.0, help="seconds between samples")
    ap.add_argument(
        "--trade-capacity", type=int, default=0, help="trades kept per symbol (0: the default)"
    )
    ap.add_argument("--collect-seconds", type=float, default=12.0, help="0: no collect run")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child's symbol count
    args = ap.parse_args()
    if args.one:
        print(json.dumps(soak(args, args.one)))
        return

    counts = [int(c) for c in args.symbols.split(",")]
    runs = []
    for count in counts:
        flags = ["--minutes", str(args.minutes), "--speed", str(args.speed), "--every"]
        flags += [str(args.every), "--trade-capacity", str(args.trade_capacity)]
        out = subprocess.run(
            [sys.executable, __file__, *flags, "--one", str(count)],
            stdout=subprocess.PIPE,
            text=True,
            check=True,
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    load = os.getloadavg()
    print(
        f"\nsoak: {args.speed:g}x for {args.minutes:g} min per run, 1m/1h klines, books, trades, "
        f"SQLite; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(
        f"{'symbols':>7}{'sim h':>7}{'messages':>12}{'RSS warm':>10}{'RSS end':>9}"
        f"{'held':>7}{'alloc':>7}{'rest':>7}{'growth':>8}  books  heavy libraries loaded"
    )
    for run in runs:
        samples = run["samples"]
        warm, last = samples[len(samples) // 3], samples[-1]
        rest = last["rss_mb"] - last["held_mb"]
        print(
            f"{run['symbols']:>7}{last['simulated_h']:>7.1f}{last['messages']:>12,}"
            f"{warm['rss_mb']:>10.1f}{last['rss_mb']:>9.1f}{last['held_mb']:>7.1f}"
            f"{last['buffers_mb']:>7.1f}{rest:>7.1f}{last['rss_mb'] - warm['rss_mb']:>+8.1f}"
            f"  {run['books_synced']:>2}/{run['symbols']:<2}  {', '.join(run['heavy']) or '-'}"
        )
    print(
        "(MB; held / alloc: the bytes of the rows the rolling trades' and candles' columns "
        "hold / are allocated for, as the buffers count them; rest: RSS less held)"
    )
    for run in runs:
        last = run["samples"][-1]
        rest = last["rss_mb"] - last["held_mb"]
        verdict = "met" if rest <= REST_GOAL_MB else "NOT met"
        print(f"goal rest <= {REST_GOAL_MB:g} MB, {run['symbols']} symbols: {verdict}")
        if run["symbols"] == 3:
            verdict = "met" if last["rss_mb"] <= THREE_SYMBOLS_GOAL_MB else "NOT met"
            print(f"goal 3 symbols <= {THREE_SYMBOLS_GOAL_MB:g} MB in all: {verdict}")
    if args.collect_seconds:
        c = collect_rss(counts[0], args.collect_seconds)
        print(
            f"\nmarketlab collect, {counts[0]} symbols, SQLite: {c['rss_mb']:.1f} MB RSS after "
            f"{args.collect_seconds:g} s (exit {c['exit']}); heavy libraries loaded: {c['heavy']}"
        )


if __name__ == "__main__":
    main()
