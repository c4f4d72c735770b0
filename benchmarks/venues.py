"""Four venues in one Lab: ``python benchmarks/venues.py [--symbols 5] [--speed 50] [--rounds 5]``.

The live simulator, in its own process, serves Binance, OKX, Bybit v5 spot and Coinbase Advanced
Trade from one market on one loopback port, at a fixed ``--speed`` (exchange seconds per wall
second). Each venue's stream rate is then set by the simulator, the same for every client of a
round, and every client takes trades, 24h tickers, the order book's diff stream and 1m klines of
every symbol on each of its venues. Each client runs in its own process, after ``--warmup``
seconds counts the messages its WebSocket connections receive for ``--window`` seconds and the
CPU time its whole process spends meanwhile:

  websockets binance  floor: a bare ``websockets`` client on Binance's combined stream,
                      ``orjson.loads`` of each frame, discard (asyncio loop)
  marketlab binance   ``Lab`` on Binance alone (trades, ticker, klines, synced books)
  websockets x4       floor: bare ``websockets`` connections to all four venues in one asyncio
                      process, each speaking its venue's subscribe protocol for the channels
                      the Lab takes there (Binance's combined stream; OKX ``tickers``/``books``
                      on /ws/v5/public and ``trades-all``/``candle1m`` on /ws/v5/business;
                      Bybit ``publicTrade``/``tickers``/``orderbook.200``/``kline.1`` on
                      /v5/public/spot, 10 args a request; Coinbase ``heartbeats``,
                      ``market_trades``, ``ticker`` and ``level2``, one channel a message),
                      pinging as OKX and Bybit ask; ``orjson.loads``, discard
  marketlab x4        ``Lab(exchanges=["binance", "okx", "bybit", "coinbase"])``, the same
                      channels on every venue (Coinbase's klines are REST candles, as the Lab
                      always takes them there: the floor has no REST side)
  marketlab okx, ...  asked for by ``--clients``: one of the other venues alone beside its own
                      floor (``websockets okx``), to tell which venue's frames cost what

Why capacity: here the source sets the rate, not the reader. A client that keeps up receives
the same messages per second as its floor whatever its cost, so a rate ratio would read 1.0 for
a fast client and a slow one alike (until the slow one falls behind and the simulator's buffers
fill). What differs is the CPU each takes for them: messages per CPU-second is how many messages
a second the client could take on one core if the source were faster, which is what the replay
benchmark (``ingest.py``) measures directly by serving as fast as each client reads. So the
"x websockets" column is, per round, (messages / process CPU-seconds of the client) divided by
the same of its floor in that round, and the table gives the median over rounds (the machine
drifts by tens of percent from minute to minute; a ratio within a round cancels most of it).
Rows are interleaved round by round. The simulator's own CPU share over each window is
reported, and how fast its market moved (``sim speed``, market seconds per wall second, from
its server time): the simulator builds every frame in Python, so on a loaded machine a speed it
cannot hold makes it fall behind, and then its share of the CPU, not ``--speed``, sets the rate
(different for each client). A ``sim speed`` below ``--speed`` says so; lower ``--speed``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from processes import median, run_child, start_simulator

VENUES = ("binance", "okx", "bybit", "coinbase")
CHANNELS = ("trades", "ticker", "klines", "book")
NAMES = ["BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT", "LTCUSDT"]
CLIENTS = ("websockets binance", "marketlab binance", "websockets x4", "marketlab x4")
# one venue alone, each beside its own floor: not run unless asked (--clients "marketlab okx")
ONE_VENUE = tuple(f"{kind} {v}" for v in VENUES[1:] for kind in ("websockets", "marketlab"))
KNOWN = (*CLIENTS[:2], *ONE_VENUE, *CLIENTS[2:])
FLOOR_OF = {name: "websockets " + name.partition(" ")[2] for name in KNOWN}
PING_EVERY_S = 15.0  # OKX wants a text ping within 30 s of silence, Bybit a JSON one every 20 s


# --- measuring, in each client's process -------------------------------------------------------


def sim_cpu_s(pid: int) -> float | None:
    """The simulator's CPU seconds so far (user + system), or None off Linux."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def market_ms(port: int) -> int:
    """The simulator's market time (Binance's server time: the market's, to within a second)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v3/time", timeout=10) as r:
        return int(json.loads(r.read())["serverTime"])


class Window:
    """Messages, wall time, process CPU time, the simulator's CPU and how far its market moved
    over the window (read outside the client's CPU count)."""

    def __init__(self, sim_pid: int, port: int):
        self.sim_pid, self.port = sim_pid, port

    def open(self, count: int) -> None:
        self.m0 = market_ms(self.port)
        self.s0 = sim_cpu_s(self.sim_pid)
        self.n0, self.t0, self.c0 = count, time.perf_counter(), time.process_time()

    def close(self, count: int) -> None:
        self.n1, self.t1, self.c1 = count, time.perf_counter(), time.process_time()
        self.s1 = sim_cpu_s(self.sim_pid)
        self.m1 = market_ms(self.port)

    def result(self, **extra: Any) -> dict[str, Any]:
        n, wall, cpu = self.n1 - self.n0, self.t1 - self.t0, self.c1 - self.c0
        sim = (self.s1 - self.s0) / wall if self.s0 is not None and self.s1 is not None else None
        return {
            "messages": n,
            "wall_s": wall,
            "cpu_s": cpu,
            "msg_per_s": n / wall,
            "cpu_us_per_msg": cpu / max(n, 1) * 1e6,
            "msg_per_cpu_s": n / max(cpu, 1e-9),
            "sim_cpu_share": sim,
            "sim_speed": (self.m1 - self.m0) / 1000 / wall,  # market seconds per wall second
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            **extra,
        }


# --- the floors: bare websockets, every venue's own subscribe protocol -------------------------


def binance_plan(base: str, symbols: list[str]) -> list[tuple[str, list[bytes]]]:
    streams = [
        f"{s.lower()}@{k}" for s in symbols for k in ("trade", "depth@100ms", "kline_1m", "ticker")
    ]
    return [(f"{base}/stream?streams=" + "/".join(streams), [])]


def okx_plan(base: str, symbols: list[str]) -> list[tuple[str, list[bytes]]]:
    import orjson

    from marketlab.venues import okx

    insts = [okx.inst_id(s) for s in symbols]

    def sub(channels: tuple[str, ...]) -> bytes:
        args = [{"channel": c, "instId": i} for i in insts for c in channels]
        return orjson.dumps({"op": "subscribe", "args": args})

    return [
        (f"{base}/ws/v5/public", [sub(("tickers", "books"))]),
        (f"{base}/ws/v5/business", [sub(("trades-all", "candle1m"))]),
    ]


def bybit_plan(base: str, symbols: list[str]) -> list[tuple[str, list[bytes]]]:
    import orjson

    topics = [
        f"{t}.{s}" for s in symbols for t in ("publicTrade", "tickers", "orderbook.200", "kline.1")
    ]
    subs = [
        orjson.dumps({"op": "subscribe", "args": topics[i : i + 10]})
        for i in range(0, len(topics), 10)
    ]
    return [(f"{base}/v5/public/spot", subs)]


def coinbase_plan(base: str, symbols: list[str]) -> list[tuple[str, list[bytes]]]:
    import orjson

    from marketlab.venues.coinbase import product_id

    products = [product_id(s) for s in symbols]
    subs = [orjson.dumps({"type": "subscribe", "channel": "heartbeats"})]
    subs += [
        orjson.dumps({"type": "subscribe", "channel": c, "product_ids": products})
        for c in ("market_trades", "ticker", "level2")
    ]
    return [(f"{base}/", subs)]


PLANS = {"binance": binance_plan, "okx": okx_plan, "bybit": bybit_plan, "coinbase": coinbase_plan}
PINGS = {"okx": "ping", "bybit": '{"op":"ping"}'}


async def websockets_client(
    port: int, symbols: list[str], venues: tuple[str, ...], warmup: float, window: float, sim: int
) -> dict[str, Any]:
    import orjson
    import websockets

    base = f"ws://127.0.0.1:{port}"
    loads = orjson.loads
    boxes: dict[str, list[list[int]]] = {v: [] for v in venues}  # per connection: [count]
    stop = asyncio.Event()

    def counted() -> dict[str, int]:
        return {v: sum(b[0] for b in bs) for v, bs in boxes.items()}

    async def one(venue: str, url: str, subs: list[bytes]) -> None:
        async with websockets.connect(url, max_size=2**24, max_queue=4096, compression=None) as ws:
            for i, msg in enumerate(subs):
                if venue == "coinbase" and i:
                    await asyncio.sleep(0.15)  # Coinbase takes 8 messages a second an IP
                await ws.send(msg.decode())  # text frames, as the venues take
            ping = PINGS.get(venue)

            async def pinger(text: str) -> None:
                while True:
                    await asyncio.sleep(PING_EVERY_S)
                    await ws.send(text)

            pinging = asyncio.create_task(pinger(ping)) if ping else None
            recv = ws.recv
            box = [0]
            boxes[venue].append(box)
            try:
                while not stop.is_set():
                    loads(await recv(decode=False))
                    box[0] += 1
            finally:
                if pinging:
                    pinging.cancel()

    tasks = [
        asyncio.create_task(one(v, url, subs))
        for v in venues
        for url, subs in PLANS[v](base, symbols)
    ]
    meter = Window(sim, port)
    await asyncio.sleep(warmup)
    failed = [t for t in tasks if t.done() and t.exception() is not None]
    if failed:
        raise failed[0].exception()  # type: ignore[misc]  # not None: filtered so
    before = counted()
    meter.open(sum(before.values()))
    await asyncio.sleep(window)
    after = counted()
    meter.close(sum(after.values()))
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return meter.result(per_venue={v: after[v] - before[v] for v in venues}, connections=len(tasks))


# --- the Lab -----------------------------------------------------------------------------------


def lab_messages(lab: Any) -> dict[str, int]:
    """Messages received so far on each venue's connections (those of connections replaced by
    a reconnect are lost to the count: the run reports reconnects)."""
    out = {}
    for venue, side in lab._sides.items():
        feed = side.feed
        out[venue] = sum(c.messages for c in feed.connections) if feed is not None else 0
    return out


def marketlab_client(
    port: int, symbols: list[str], venues: tuple[str, ...], warmup: float, window: float, sim: int
) -> dict[str, Any]:
    from marketlab.lab import Lab

    http, ws = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
    urls: dict[str, str] = {}
    for v in venues:
        urls[f"{v}_ws_url"], urls[f"{v}_rest_url"] = ws, http
    lab = Lab(
        symbols,
        exchanges=list(venues),
        intervals=["1m"],
        channels=CHANNELS,
        seed_klines=5,
        **urls,
    )
    meter = Window(sim, port)
    lab.start()
    try:
        began = time.monotonic()
        lab.wait_ready(60)
        ready_s = time.monotonic() - began
        time.sleep(warmup)
        before = lab_messages(lab)
        meter.open(sum(before.values()))
        time.sleep(window)
        after = lab_messages(lab)
        meter.close(sum(after.values()))
        summary = lab.summary()
        venues_summary = summary.get("venues", {venues[0]: summary})
        reconnects = sum(s.get("reconnects", 0) or 0 for s in venues_summary.values())
        errors = [f"{v}: {s['error']}" for v, s in venues_summary.items() if s.get("error")]
        synced = sum(
            1 for v in venues for s in symbols if lab.book(s, exchange=v).attrs.get("synced")
        )
    finally:
        lab.stop()
    return meter.result(
        per_venue={v: after[v] - before[v] for v in venues},
        ready_s=ready_s,
        reconnects=reconnects,
        errors=errors,
        books_synced=f"{synced}/{len(venues) * len(symbols)}",
    )


def run_client(
    name: str, port: int, symbols: list[str], warmup: float, window: float, sim: int
) -> dict[str, Any]:
    kind, _, which = name.partition(" ")
    venues = VENUES if which == "x4" else (which,)
    if kind == "websockets":
        return asyncio.run(websockets_client(port, symbols, venues, warmup, window, sim))
    if kind == "marketlab":
        return marketlab_client(port, symbols, venues, warmup, window, sim)
    raise ValueError(name)


# --- the run -----------------------------------------------------------------------------------


def run_once(
    name: str, port: int, symbols: list[str], warmup: float, window: float, sim: int
) -> dict[str, Any]:
    flags = ["--client", name, "--port", str(port), "--names", ",".join(symbols)]
    flags += ["--warmup", str(warmup), "--window", str(window), "--sim-pid", str(sim)]
    return run_child(__file__, flags, timeout=300)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--symbols", type=int, default=5, help="symbols on every venue (at most 8)")
    ap.add_argument("--speed", type=float, default=50.0, help="simulator speed (fixed)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds; medians reported")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds after ready, not counted")
    ap.add_argument("--window", type=float, default=8.0, help="seconds measured per client")
    ap.add_argument(
        "--clients",
        default=",".join(CLIENTS),
        help=f"some of {', '.join(KNOWN)} (each brings its floor)",
    )
    ap.add_argument("--client", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--names", help=argparse.SUPPRESS)
    ap.add_argument("--sim-pid", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:  # a child process: one client, one JSON line
        try:
            result = run_client(
                args.client,
                args.port,
                args.names.split(","),
                args.warmup,
                args.window,
                args.sim_pid,
            )
        except Exception as exc:  # reported in the table, not a traceback
            result = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(result), flush=True)
        return
    symbols = NAMES[: max(1, min(args.symbols, len(NAMES)))]
    names = args.clients.split(",")
    unknown = set(names) - set(KNOWN)
    if unknown:
        ap.error(f"unknown client(s) {', '.join(sorted(unknown))}: expected some of {KNOWN}")
    for name in list(names):
        if FLOOR_OF[name] not in names:
            names.insert(0, FLOOR_OF[name])  # every ratio is against its floor
    names = [n for n in KNOWN if n in names]
    proc, port, log = start_simulator("--speed", f"{args.speed:g}", "--symbols", ",".join(symbols))
    rounds: list[dict[str, dict[str, Any]]] = []
    try:
        for i in range(args.rounds):
            results = {
                n: run_once(n, port, symbols, args.warmup, args.window, proc.pid) for n in names
            }
            rounds.append(results)
            brief = ", ".join(
                f"{n} {r['msg_per_s']:,.0f}/s {r['cpu_us_per_msg']:.1f}us"
                if "msg_per_s" in r
                else f"{n} - ({r.get('error')})"
                for n, r in results.items()
            )
            print(f"  round {i + 1}: {brief}", file=sys.stderr, flush=True)
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
    print(
        f"\nvenues: {len(symbols)} symbols ({', '.join(symbols)}) on every venue; channels "
        f"{', '.join(CHANNELS)} (1m); live simulator at speed {args.speed:g} in its own process; "
        f"{args.warmup:g} s warm-up, {args.window:g} s window; median of {args.rounds} "
        "interleaved rounds; x websockets = messages per CPU-second over the floor's, per round"
    )
    print(
        f"{'client':<20}{'msg/s':>9}{'x websockets':>14}{'CPU us/msg':>12}{'CPU %':>7}"
        f"{'sim CPU %':>11}{'sim speed':>11}{'peak RSS MB':>13}"
    )
    for name in names:
        ok = [r[name] for r in rounds if "msg_per_s" in r[name]]
        if not ok:
            errors = [r[name].get("error") for r in rounds]
            print(f"{name:<20}  could not run: {errors[0]}")
            continue
        floor = FLOOR_OF[name]
        per_round = [
            r[name]["msg_per_cpu_s"] / r[floor]["msg_per_cpu_s"]
            for r in rounds
            if "msg_per_cpu_s" in r[name] and "msg_per_cpu_s" in r.get(floor, {})
        ]
        ratio = f"{median(per_round):.2f}" if per_round else "-"
        sims = [r["sim_cpu_share"] for r in ok if r.get("sim_cpu_share") is not None]
        sim = f"{median(sims) * 100:.0f}" if sims else "-"
        print(
            f"{name:<20}{median([r['msg_per_s'] for r in ok]):>9,.0f}{ratio:>14}"
            f"{median([r['cpu_us_per_msg'] for r in ok]):>12.1f}"
            f"{median([r['cpu_s'] / r['wall_s'] for r in ok]) * 100:>7.0f}{sim:>11}"
            f"{median([r['sim_speed'] for r in ok]):>11.0f}"
            f"{max(r['peak_rss_mb'] for r in ok):>13.0f}"
        )
    for name in names:
        ok = [r[name] for r in rounds if "msg_per_s" in r[name]]
        ratios = [
            r[name]["msg_per_cpu_s"] / r[FLOOR_OF[name]]["msg_per_cpu_s"]
            for r in rounds
            if "msg_per_cpu_s" in r[name] and "msg_per_cpu_s" in r.get(FLOOR_OF[name], {})
        ]
        extra = ""
        if ok:
            last = ok[-1]
            rates = {v: round(n / last["wall_s"]) for v, n in last["per_venue"].items()}
            extra = f"; last round msg/s by venue {rates}"
            if "ready_s" in last:
                extra += (
                    f", ready in {last['ready_s']:.1f} s, books synced {last['books_synced']}, "
                    f"reconnects {last['reconnects']}"
                    + (f", errors {last['errors']}" if last["errors"] else "")
                )
        print(f"  {name}: per-round ratios {', '.join(f'{x:.2f}' for x in ratios)}{extra}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
