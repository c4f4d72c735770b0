"""Alert rules benchmark: ``python benchmarks/alerts.py [--minutes 60] [--speed 60] [--rounds 5]``.

1. A calm market: a Lab with the default alert rules (``Watch()``) collects every simulated
   symbol for ``--minutes`` of simulated market (no faults) and the market alerts raised are
   counted and printed: the goal is none.
2. Detection: the simulator's market anomalies (a price jump, a spread blowout, a volume
   burst, a silent symbol, a crossed book), each on a symbol of its own, against the default
   rules (the silence threshold lowered to ``--silence`` seconds, so the run is short) at
   speed 1: the delay from the injection to the alert of the matching rule, in simulated
   seconds (the silence rule's beyond its threshold), and whether it was resolved once. The
   goal: every one within 2 s.
3. What the rules cost: a recording of the simulator's stream is replayed as fast as it goes
   by ``Lab.replay()`` with and without ``alerts=Watch()``, in interleaved rounds; the CPU
   time of each replay (the collector's whole process: parser, books, frames and the watch's
   record hook and thread) is compared with the one without the watch of its own round, and
   the median of the per-round ratios is printed (the goal: under 1.05); then what one look
   costs per symbol with new trades once its trade ring is full (the rules copy the ring's
   columns: a cost of the ring's capacity, not of the rate).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from marketlab.lab import Lab
from marketlab.rings import DEFAULT_TRADE_CAPACITY, TradeBuffer
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
        f"({cpu:.1f} s: collector, simulator and rules); {load()}"
    )


# each anomaly on a symbol of its own: how it is injected and the rule that must see it
ANOMALIES = {
    "BTCUSDT": ("jump", "BTCUSDT:-300", "price_jump"),
    "ETHUSDT": ("spread", "ETHUSDT:10", "spread_blowout"),
    "BNBUSDT": ("volume", "BNBUSDT:5", "volume_burst"),
    "ADAUSDT": ("silent", "ADAUSDT:15", "silence"),
    "XRPUSDT": ("crossed", "XRPUSDT:5", "crossed_book"),
}


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} {five:.1f} {fifteen:.1f}"


def detection(silence_s: float) -> None:
    """Each anomaly's detection delay (simulated seconds) and its raise and resolve count."""
    symbols = list(ANOMALIES)
    watch = Watch(silence_s=silence_s)
    with SimExchange(symbols, speed=1, seed=23, start_time=START) as sim:
        lab = Lab(symbols, binance_ws_url=sim.ws_url, binance_rest_url=sim.rest_url, alerts=watch)
        events: list[tuple[dict[str, Any], float]] = []
        lock = threading.Lock()

        def on_alert(alert: dict[str, Any]) -> None:
            with lock:
                events.append((alert, sim.now_ms() / 1000))

        lab.on_alert(on_alert)
        with lab:
            lab.wait_ready(60)
            s = watch.settings
            time.sleep(s.interval_s * s.min_samples + 2)  # the rolling windows fill up
            began, injected = time.time() - s.interval_s, sim.now_ms() / 1000
            for kind, arg, _ in ANOMALIES.values():
                sim.inject(kind, arg)
            time.sleep(silence_s + 15 + s.resolve_after_s + 3)  # the longest is over, resolved
    print(f"detection at speed 1, default thresholds but silence_s={silence_s:g} ({load()}):")
    for symbol, (kind, _, rule) in ANOMALIES.items():
        mine = [
            (a, at)
            for a, at in events
            if a["rule"] == rule and a["symbol"] == symbol and a["time"] >= began
        ]
        raised = [at for a, at in mine if a["state"] == "active"]
        resolved = sum(a["state"] == "resolved" for a, _ in mine)
        if not raised:
            print(f"  {kind:8} {symbol}: NOT DETECTED by {rule}")
            continue
        # silence is alerted once its threshold has passed since the stream's last message
        # (which came before the injection): the figure is the delay beyond the threshold
        late = silence_s if rule == "silence" else 0.0
        print(
            f"  {kind:8} {symbol}: {rule} after {min(raised) - injected:.2f} s"
            f"{f' ({min(raised) - injected - late:+.2f} s from its threshold)' if late else ''}"
            f"; raised {len(raised)}, resolved {resolved} (streams: "
            f"{len({a['stream'] for a, _ in mine})})"
        )
    others = [
        a
        for a, _ in events
        if a["state"] == "active"
        and a["time"] >= began
        and a["kind"] == "market"
        and ANOMALIES.get(a["symbol"], ("", "", ""))[2] != a["rule"]
    ]
    print(f"  other market alerts meanwhile: {len(others)}")
    for a in others:
        print(f"    {a['rule']}: {a['message']}")


def full_ring_read(rounds: int) -> None:
    """What a look costs per symbol with new trades once its trade ring is full: the rules
    read the ring's columns (a copy of every trade it holds), so this grows with the ring's
    capacity, not with the rate."""
    ring = TradeBuffer(DEFAULT_TRADE_CAPACITY)
    for i in range(DEFAULT_TRADE_CAPACITY):
        ring.ring.add(START + i, 100.0 + i % 7, 0.5, "buy", i + 1, 0.0, "ws")
    ring.flush()
    took = []
    for _ in range(rounds):
        began = time.perf_counter()
        for _ in range(20):
            ring.arrays()
        took.append((time.perf_counter() - began) / 20)
    per_look = statistics.median(took)
    print(
        f"a full ring of {DEFAULT_TRADE_CAPACITY:,} trades read: {per_look * 1e3:.2f} ms per "
        f"symbol with new trades per look; at a look every 0.5 s, {per_look / 0.5:.1%} of a core "
        f"per such symbol ({load()})"
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
    print(load())
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
    parser.add_argument("--silence", type=float, default=5.0)
    parser.add_argument("--skip-calm", action="store_true")
    parser.add_argument("--skip-detection", action="store_true")
    parser.add_argument("--skip-cost", action="store_true")
    args = parser.parse_args()
    if not args.skip_calm:
        calm(args.minutes, args.speed)
    if not args.skip_detection:
        detection(args.silence)
    if not args.skip_cost:
        cost(args.rounds, args.record_seconds, args.record_speed)
        full_ring_read(args.rounds)


if __name__ == "__main__":
    main()
