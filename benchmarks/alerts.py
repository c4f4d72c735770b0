"""Alert rules benchmark: ``python benchmarks/alerts.py [--minutes 60] [--speed 60] [--rounds 5]``.

1. A calm market: a Lab with the default alert rules (``Watch()``) collects every simulated
   symbol for ``--minutes`` of simulated market (no faults) and the market alerts raised are
   counted and printed: the goal is none.
2. What the rules cost: a recording of the simulator's stream is replayed as fast as it goes
   by ``Lab.replay()`` with and without ``alerts=Watch()``, in interleaved rounds; the CPU
   time of each replay (the collector's whole process: parser, books, frames and the watch's
   record hook and thread) is compared with the one without the watch of its own round, and
   the median of the per-round ratios is printed (the goal: under 1.05).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from marketlab.lab import Lab
from marketlab.sim import SimExchange
from marketlab.watch import MARKET_RULES, Watch

SYMBOLS = ["BTCUSDT", "ETHUSDT", "BNBUSDT", "ADAUSDT", "XRPUSDT", "DOGEUSDT"]
START = 1_767_225_600_000


def calm(minutes: float, speed: float) -> None:
    """Market alerts on a calm simulated market; also the rules' own CPU while it runs."""
    with SimExchange(SYMBOLS, speed=speed, seed=21, start_time=START) as sim:
        watch = Watch()
        lab = Lab(
            SYMBOLS,
            binance_ws_url=sim.ws_url,
            binance_rest_url=sim.rest_url,
            alerts=watch,
            idle_timeout=120.0,
        )
        with lab:
            lab.wait_ready(60)
            cpu, steps = time.process_time(), watch.steps
            rules_cpu = watch.step_cpu_s
            time.sleep(minutes * 60 / speed)
            cpu, steps = time.process_time() - cpu, watch.steps - steps
            rules_cpu = watch.step_cpu_s - rules_cpu
            frame = lab.alerts()
    market = frame[frame["rule"].isin(MARKET_RULES)]
    samples = minutes * 60 / speed / watch.settings.interval_s
    print(
        f"calm market: {len(SYMBOLS)} symbols, {minutes:g} simulated minutes at {speed:g}x, "
        f"~{samples:.0f} samples per symbol: {len(market)} market alert(s)"
    )
    for row in market.itertuples():
        print(f"  {row.rule}: {row.message}")
    print(
        f"  the rules' thread: {rules_cpu / max(steps, 1) * 1e3:.2f} ms CPU per observation "
        f"({steps} observations), {rules_cpu / cpu:.1%} of the process' CPU meanwhile "
        f"({cpu:.1f} s: collector, simulator and rules)"
    )


def record(path: Path, seconds: float, speed: float) -> None:
    with SimExchange(SYMBOLS, speed=speed, seed=22, start_time=START) as sim:
        lab = Lab(SYMBOLS, binance_ws_url=sim.ws_url, binance_rest_url=sim.rest_url, record=path)
        with lab:
            lab.wait_ready(60)
            time.sleep(seconds)


def replay_cpu(path: Path, watched: bool) -> tuple[float, int]:
    """CPU seconds of the whole process for one replay, and the entries replayed."""
    began = time.process_time()
    lab = Lab.replay(path, alerts=Watch() if watched else None).join(600)
    return time.process_time() - began, int(lab.summary()["replayed"])


def cost(rounds: int, seconds: float, speed: float) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "stream.mlrec"
        record(path, seconds, speed)
        ratios, bare, watched = [], [], []
        _, entries = replay_cpu(path, False)  # warm: imports, caches
        for _ in range(rounds):
            a, _ = replay_cpu(path, False)
            b, _ = replay_cpu(path, True)
            bare.append(a)
            watched.append(b)
            ratios.append(b / a)
    print(
        f"replay of {entries} entries ({seconds:g} s of {len(SYMBOLS)} symbols at {speed:g}x), "
        f"{rounds} interleaved rounds: CPU {statistics.median(bare):.2f} s without the watch, "
        f"{statistics.median(watched):.2f} s with it; median of per-round ratios "
        f"{statistics.median(ratios):.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--speed", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--record-seconds", type=float, default=60.0)
    parser.add_argument("--record-speed", type=float, default=600.0)
    parser.add_argument("--skip-calm", action="store_true")
    args = parser.parse_args()
    if not args.skip_calm:
        calm(args.minutes, args.speed)
    cost(args.rounds, args.record_seconds, args.record_speed)


if __name__ == "__main__":
    main()
