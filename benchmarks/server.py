"""API server benchmark:
``python benchmarks/server.py [--seconds 5] [--concurrency 32] [--rounds 3]``.

Runs the simulator, a Lab and the API server in this process and loads them from separate
processes. Prints, from this machine:
  1. HTTP: requests per second and p50/p99 latency of two floors served by uvicorn with the
     same settings in this process (a bare ASGI app; a FastAPI app of one route), of our
     GET /health and of GET /prices, in ``--http-rounds`` interleaved rounds (every other one
     in the reverse order); then the medians of the per-round ratios against their goals:
     /health against the FastAPI floor (1x), /prices against /health (0.9x); and the same
     endpoints' CPU time per request inside the app (ASGI calls on this thread's CPU clock,
     which a loaded machine moves far less than a throughput);
  2. WebSocket fan-out: latency from the exchange's ticker event to its delivery, for 1, 100
     and 1000 subscribed clients spread over ``--load-procs`` processes; the medians of
     ``--rounds`` runs (the machine drifts from run to run), with each run's p99. The clients
     are picows's (the bench extra), which stamp a frame in the callback that reads it, or
     aiohttp's where picows is missing (a stamp then also holds the load generator's own
     queue of clients waking in turn).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import orjson
import uvicorn

try:  # the WebSocket load generator: picows when installed (the bench extra), else aiohttp
    import picows  # noqa: F401

    WS_CLIENT = "picows"
except ImportError:
    WS_CLIENT = "aiohttp"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def http_load(url: str, concurrency: int, seconds: float) -> dict:
    import aiohttp  # a fast client, so the server is what gets measured

    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                async with session.get(url) as r:
                    await r.read()
                    errors += r.status != 200
                latencies.append(time.perf_counter() - began)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * percentile(latencies, 0.5),
        "p99_ms": 1000 * percentile(latencies, 0.99),
        "errors": errors,
    }


async def ws_load(
    url: str, clients: int, seconds: float, symbols: list[str], offset_ms: float
) -> dict:
    """``offset_ms``: wall clock minus the exchange's clock, so event times convert to wall time.

    aiohttp's client (its C frame reader), each frame stamped when its client's coroutine wakes
    and decoded after the run: the load generator must cost far less than the server it
    measures."""
    import aiohttp

    frames: list[tuple[float, str]] = []  # (receive time, payload), decoded after the run
    subscribe = orjson.dumps(
        {"action": "subscribe", "symbols": symbols, "channels": ["ticker"]}
    ).decode()
    ready = 0

    async def one(session: aiohttp.ClientSession, start: asyncio.Event) -> None:
        nonlocal ready
        async with session.ws_connect(url, compress=0, max_msg_size=0) as ws:
            await ws.send_str(subscribe)
            await ws.receive()  # the subscription's answer
            ready += 1
            await start.wait()
            while True:  # cancelled at the end (a timeout per receive would cost more than it)
                msg = await ws.receive()
                now = time.time() * 1000
                if msg.type != aiohttp.WSMsgType.TEXT:
                    return
                frames.append((now, msg.data))

    start = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = [asyncio.create_task(one(session, start)) for _ in range(clients)]
        while ready < clients and not any(t.done() for t in tasks):
            await asyncio.sleep(0.05)
        start.set()  # every client subscribed: measure from here
        await asyncio.sleep(seconds)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return samples(frames, offset_ms)


async def ws_load_picows(
    url: str, clients: int, seconds: float, symbols: list[str], offset_ms: float
) -> dict:
    """As :func:`ws_load`, with picows (Cython): each frame is stamped in the callback that reads
    it off the socket, before any other client's frame is looked at, and decoded after the run;
    with aiohttp every client's coroutine wakes in turn, so a stamp also holds the load
    generator's own queue of clients. ``picows`` comes with the bench extra."""
    import picows

    loop = asyncio.get_running_loop()
    subscribe = orjson.dumps({"action": "subscribe", "symbols": symbols, "channels": ["ticker"]})
    frames: list[tuple[float, bytes]] = []  # (receive time, payload), decoded after the run
    measuring = False

    class Listener(picows.WSListener):  # type: ignore[misc]  # picows is untyped
        def on_ws_connected(self, transport: Any) -> None:
            self.answered = loop.create_future()
            transport.send(picows.WSMsgType.TEXT, subscribe)

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            now = time.time() * 1000
            if frame.msg_type != picows.WSMsgType.TEXT:
                return
            if not self.answered.done():
                self.answered.set_result(None)  # the subscription's answer
            elif measuring:
                frames.append((now, frame.get_payload_as_bytes()))

    conns: list[tuple[Any, Any]] = []
    for first in range(0, clients, 100):  # connect in waves: the accept backlog is finite
        conns += await asyncio.gather(
            *(picows.ws_connect(Listener, url) for _ in range(first, min(clients, first + 100)))
        )
    await asyncio.gather(*(listener.answered for _, listener in conns))
    measuring = True  # every client subscribed: measure from here
    await asyncio.sleep(seconds)
    measuring = False
    for transport, _ in conns:
        transport.disconnect()
    return samples(frames, offset_ms)


def samples(frames: list[tuple[float, Any]], offset_ms: float) -> dict:
    """Each ticker's delay from its exchange event, and its receive times by update."""
    lags: list[float] = []
    arrivals: dict[tuple[str, int], list[float]] = {}  # (symbol, event time) → receive times
    for now, payload in frames:
        data = orjson.loads(payload)
        if data.get("type") == "ticker":
            event = data["data"]["event_time"]
            lags.append(now - (event + offset_ms))
            arrivals.setdefault((data["symbol"], event), []).append(now)
    return {"lags": lags, "arrivals": [[s, e, times] for (s, e), times in arrivals.items()]}


def ws_summary(parts: list[dict], clients: int) -> dict:
    """The load processes' samples together; the spread is each delivery after the first of the
    same update, over updates every client received (no clock offset in it: one machine)."""
    lags = [lag for part in parts for lag in part["lags"]]
    arrivals: dict[tuple[str, int], list[float]] = {}
    for part in parts:
        for symbol, event, times in part["arrivals"]:
            arrivals.setdefault((symbol, event), []).extend(times)
    spread = [t - min(times) for times in arrivals.values() if len(times) == clients for t in times]
    return {
        "samples": len(lags),
        "p50_ms": percentile(lags, 0.5),
        "p99_ms": percentile(lags, 0.99),
        "mean_ms": statistics.fmean(lags) if lags else float("nan"),
        "spread_p99_ms": percentile(spread, 0.99),
    }


def load(*args: str) -> dict:
    """Run this file as the load generator in a separate process."""
    return load_many([list(args)])[0]


def load_many(arg_lists: list[list[str]]) -> list[dict]:
    """Load generators in processes of their own, all at once."""
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, *a],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for a in arg_lists
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(err)
        results.append(json.loads(out))
    return results


def floor_app() -> Any:
    """The FastAPI floor: one route answering what our /health answers, nothing else, declared
    as ours is (``async def``: a sync route would add FastAPI's thread-pool hop to the floor
    alone)."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "running": True}

    return app


HEALTH_BODY = b'{"status":"ok","running":true}'


async def bare_asgi_health(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The bare floor: uvicorn and an ASGI callable, no framework (lifespan accepted)."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    headers = [(b"content-type", b"application/json"), (b"content-length", b"30")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": HEALTH_BODY})


def in_app_table(args: argparse.Namespace, server: Any, fastapi_floor: Any, prefix: str) -> None:
    """CPU time per request inside the app: the ASGI call alone (no socket, no HTTP parsing),
    timed on this thread's CPU clock, which other processes on a shared machine barely move;
    interleaved rounds, medians of the per-round ratios (as throughputs: above 1x is faster)."""
    import uvloop

    app = server.server.config.app
    targets = {
        "FastAPI, one route": (fastapi_floor.server.config.app, "/health", b""),
        "GET /health": (app, "/health", b""),
        "GET /prices": (app, prefix + "/prices", b""),
        "  ?symbols=both": (app, prefix + "/prices", b"symbols=BTCUSDT,ETHUSDT"),
    }
    requests = 2000

    async def cost(app: Any, path: str, query: bytes) -> float:
        """Microseconds of this thread's CPU per GET ``path``."""

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and message["status"] != 200:
                raise RuntimeError(f"{path} answered {message['status']}")

        began = time.thread_time()
        for _ in range(requests):
            scope = {
                "type": "http",
                "asgi": {"version": "3.0"},
                "http_version": "1.1",
                "method": "GET",
                "scheme": "http",
                "path": path,
                "raw_path": path.encode(),
                "root_path": "",
                "query_string": query,
                "headers": [(b"host", b"127.0.0.1"), (b"accept", b"*/*")],
                "client": ("127.0.0.1", 50000),
                "server": ("127.0.0.1", 80),
            }
            await app(scope, receive, send)
        return 1e6 * (time.thread_time() - began) / requests

    async def measure() -> list[dict[str, float]]:
        rounds = []
        for i in range(args.http_rounds):
            order = list(targets) if i % 2 == 0 else list(reversed(targets))
            rounds.append({name: await cost(*targets[name]) for name in order})
        return rounds

    rounds = uvloop.run(measure())
    print(
        f"Inside the app: this thread's CPU per request, {requests} requests each, "
        f"{args.http_rounds} interleaved rounds (medians)"
    )
    print(f"{'endpoint':<22}{'us/request':>12}")
    for name in targets:
        print(f"{name:<22}{statistics.median(r[name] for r in rounds):>12.1f}")
    ratio = {
        "/health vs the FastAPI floor": ("GET /health", "FastAPI, one route", 1.0),
        "/prices vs /health": ("GET /prices", "GET /health", 0.9),
    }
    for label, (top, bottom, goal) in ratio.items():
        each = [r[bottom] / r[top] for r in rounds]
        print(
            f"{label}: {statistics.median(each):.2f}x "
            f"(rounds: {' '.join(f'{x:.2f}' for x in each)}); goal {goal:.2f}x"
        )
    print()


def http_table(
    args: argparse.Namespace, server: Any, fastapi_floor: Any, bare_floor: Any, prefix: str
) -> None:
    """Each endpoint loaded in turn, round after round (the machine drifts: a ratio is taken
    within a round), from a process of its own; medians over the rounds. Every other round
    loads them in the reverse order, so a drift within rounds favours no endpoint."""
    targets = {
        "uvicorn, bare ASGI": bare_floor.url + "/health",
        "FastAPI, one route": fastapi_floor.url + "/health",
        "GET /health": server.url + "/health",
        "GET /prices": server.url + prefix + "/prices",
    }
    c, s = str(args.concurrency), str(args.seconds)
    rounds = []
    for i in range(args.http_rounds):
        order = list(targets) if i % 2 == 0 else list(reversed(targets))
        rounds.append(
            {
                name: load("--load-http", targets[name], "--concurrency", c, "--seconds", s)
                for name in order
            }
        )
    config = server.server.config
    load_avg = os.getloadavg()
    print(
        f"HTTP, {args.concurrency} concurrent connections from another process, {args.seconds:g} s "
        f"each, {args.http_rounds} interleaved rounds (medians); uvicorn {uvicorn.__version__}, "
        f"parser {config.http_protocol_class.__name__}, loop "
        f"{'uvloop' if 'uvloop' in sys.modules else 'asyncio'}; load average "
        f"{load_avg[0]:.2f} {load_avg[1]:.2f} {load_avg[2]:.2f}"
    )
    print(f"{'endpoint':<22}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    for name in targets:
        med = {k: statistics.median(r[name][k] for r in rounds) for k in rounds[0][name]}
        print(
            f"{name:<22}{med['rps']:>10.0f}{med['p50_ms']:>10.2f}{med['p99_ms']:>10.2f}"
            f"{med['errors']:>8.0f}"
        )
    # (top, bottom, the goal of top / bottom or None)
    ratio = {
        "/health vs the FastAPI floor": ("GET /health", "FastAPI, one route", 1.0),
        "/health vs bare uvicorn": ("GET /health", "uvicorn, bare ASGI", None),
        "/prices vs /health": ("GET /prices", "GET /health", 0.9),
    }
    for label, (top, bottom, goal) in ratio.items():
        each = [r[top]["rps"] / r[bottom]["rps"] for r in rounds]
        print(
            f"{label}: {statistics.median(each):.2f}x "
            f"(rounds: {' '.join(f'{x:.2f}' for x in each)})"
            + (f"; goal {goal:.2f}x" if goal is not None else "")
        )
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--clients", default="1,100,1000", help="0: no WebSocket fan-out")
    parser.add_argument("--http-rounds", type=int, default=3, help="interleaved HTTP rounds")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="fan-out runs per client count; the table gives their medians",
    )
    parser.add_argument(
        "--load-procs", type=int, default=2, help="processes the WebSocket clients are spread over"
    )
    parser.add_argument("--load-http", help=argparse.SUPPRESS)
    parser.add_argument("--load-ws", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--offset", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_http:
        print(json.dumps(asyncio.run(http_load(args.load_http, args.concurrency, args.seconds))))
        return
    if args.load_ws:
        symbols = ["BTCUSDT", "ETHUSDT"]
        run = ws_load_picows if WS_CLIENT == "picows" else ws_load
        result = asyncio.run(run(args.load_ws, args.n, args.seconds, symbols, args.offset))
        print(json.dumps(result))
        return

    from marketlab.lab import Lab
    from marketlab.server import PREFIX, create_app
    from marketlab.server.runner import ServerThread
    from marketlab.sim import SimExchange

    # speed 1: exchange time is wall time, so event → delivery latency is measurable
    with SimExchange(["BTCUSDT", "ETHUSDT"], speed=1.0) as sim:
        lab = Lab(
            ["BTCUSDT", "ETHUSDT"],
            intervals=["1m"],
            binance_ws_url=sim.ws_url,
            binance_rest_url=sim.rest_url,
        ).start()
        lab.wait_ready(60)
        with (
            ServerThread(create_app(lab, max_ws_clients=5000, max_backlog=10_000)) as server,
            ServerThread(floor_app()) as fastapi_floor,
            ServerThread(bare_asgi_health) as bare_floor,  # type: ignore[arg-type]
        ):
            http_table(args, server, fastapi_floor, bare_floor, PREFIX)
            in_app_table(args, server, fastapi_floor, PREFIX)
            if args.clients == "0":
                lab.stop()
                return
            print(
                "WebSocket fan-out: exchange ticker event → delivered to each client "
                f"(2 symbols, 1/s each; {WS_CLIENT} clients)"
            )
            print(
                f"{'clients':>8}{'samples':>10}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}"
                f"{'spread p99':>12}{'server p99':>12}   p99 of each round"
            )
            hub = server.server.config.app.state.hub
            ws_url = server.url.replace("http", "ws", 1) + PREFIX + "/ws"
            for n in (int(x) for x in args.clients.split(",")):
                hub.fanout_s.clear()
                procs = max(1, min(args.load_procs, n))
                shares = [n // procs + (i < n % procs) for i in range(procs)]
                rounds = []
                for _ in range(args.rounds):
                    quiet = time.monotonic() + 30  # the last round's clients all gone first
                    while hub.clients and time.monotonic() < quiet:
                        time.sleep(0.05)
                    time.sleep(1.0)
                    offset = time.time() * 1000 - sim.now_ms()  # the exchange's clock runs behind
                    rounds.append(
                        ws_summary(
                            load_many(
                                [
                                    [
                                        "--load-ws",
                                        ws_url,
                                        "--n",
                                        str(k),
                                        "--seconds",
                                        str(max(args.seconds, 4.0)),
                                        "--offset",
                                        str(offset),
                                    ]
                                    for k in shares
                                ]
                            ),
                            n,
                        )
                    )
                r = {k: statistics.median(x[k] for x in rounds) for k in rounds[0]}  # medians
                each = " ".join(f"{x['p99_ms']:.1f}" for x in rounds)
                print(
                    f"{n:>8}{r['samples']:>10.0f}{r['p50_ms']:>10.1f}{r['p99_ms']:>10.1f}{r['mean_ms']:>10.1f}"
                    f"{r['spread_p99_ms']:>12.1f}"
                    f"{1000 * percentile(list(hub.fanout_s), 0.99):>12.1f}   {each}"
                )
        lab.stop()


if __name__ == "__main__":
    main()
