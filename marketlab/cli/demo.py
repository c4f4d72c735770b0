"""``marketlab demo``: the whole thing on one machine with no network: the simulated exchange,
the collector with its history, the API server, and (``--bus``) a NATS JetStream bus with a
second Lab reading what the collector publishes."""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

from marketlab.bus.nats_server import NatsServer
from marketlab.cli.collect import final_report, run_lab, stop_signals
from marketlab.lab import Lab
from marketlab.server import PREFIX, create_app
from marketlab.server.runner import ServerThread
from marketlab.sim import SimExchange


def run_demo(args: argparse.Namespace) -> int:
    # Each demo exchange invents a new past, so its history starts in a fresh file.
    db = args.db or str(Path(tempfile.mkdtemp(prefix="marketlab-demo-")) / "demo.sqlite")
    with contextlib.ExitStack() as stack:
        stack.enter_context(stop_signals())  # a second Ctrl-C while stopping is not a crash
        sim = stack.enter_context(SimExchange(args.symbols, speed=args.speed, port=args.sim_port))
        bus = stack.enter_context(NatsServer()) if args.bus else None
        lab = Lab(
            sim.symbol_names,
            intervals=["1m", "5m"],
            binance_ws_url=sim.ws_url,
            binance_rest_url=sim.rest_url,
            db=db,
            publish=bus.url if bus else None,
        )
        reader = Lab.from_bus(bus.url, sim.symbol_names, ["1m", "5m"]).start() if bus else None
        with ServerThread(create_app(lab), port=args.port) as server:
            api = server.url
            ws_api = api.replace("http", "ws", 1)
            first = sim.symbol_names[0]
            print(
                "marketlab demo: everything below runs on this machine, no network needed",
                flush=True,
            )
            print(f"  API docs            {api}/docs")
            print(
                f"  REST                {api}{PREFIX}/prices   {api}{PREFIX}/depth/{first}   "
                f"{api}{PREFIX}/klines/{first}?interval=1m"
            )
            print(
                f'  WebSocket           {ws_api}{PREFIX}/ws  (send {{"action": "subscribe", '
                f'"symbols": ["{first}"], "channels": ["ticker"]}})'
            )
            print(f"  simulated exchange  {sim.rest_url}  (Binance Spot protocol, {args.speed:g}x)")
            print(
                f"  collector           {', '.join(sim.symbol_names)} at 1m, 5m: "
                f"trades, tickers, books, klines; history in {db}"
            )
            if bus is not None:
                print(
                    f"  bus                 {bus.url} (NATS JetStream): "
                    "the collector publishes every record;"
                )
                print(f"                      a second Lab reads it: Lab.from_bus({bus.url!r})")
            print(
                "  stop with Ctrl-C" + (f" or wait {args.duration:g}s" if args.duration else ""),
                flush=True,
            )
            run_lab(lab, args.duration, None)
        for line in final_report(lab):
            print(line)
        if reader is not None:
            print(bus_report(lab, reader))
            reader.stop()
        print(
            f"the exchange served {sim.stats['rest_requests']} REST requests and "
            f"{sim.stats['ws_connections']} WebSocket connections",
            flush=True,
        )
    return 0


def bus_report(collector: Lab, reader: Lab, wait: float = 10.0) -> str:
    """What the Lab reading the bus holds next to the collector's, once it has caught up."""
    deadline = time.monotonic() + wait
    symbols = collector.symbols

    def same(s: str) -> bool:
        a, b = collector.trades(s), reader.trades(s)
        return len(a) == len(b) and (
            len(a) == 0 or a["trade_id"].iloc[-1] == b["trade_id"].iloc[-1]
        )

    while time.monotonic() < deadline and not all(same(s) for s in symbols):
        time.sleep(0.1)
    candles = sum(int(reader.klines(s, "1m")["closed"].sum()) for s in symbols)
    trades_equal = all(same(s) for s in symbols)
    # the collector's frames also hold what it loaded from its own history; compare the closed
    # candles both hold (an open candle's last update may still be on its way to the reader)
    columns = ["open", "high", "low", "close", "volume"]

    def closed_alike(s: str, iv: str) -> bool:
        mine = reader.klines(s, iv)
        mine = mine[mine["closed"]]
        theirs = collector.klines(s, iv)
        return bool(mine.index.isin(theirs.index).all()) and mine[columns].equals(
            theirs.loc[mine.index, columns]
        )

    klines_equal = all(closed_alike(s, iv) for s in symbols for iv in reader.intervals)
    equal = trades_equal and klines_equal
    trades = sum(len(reader.trades(s)) for s in symbols)
    report = f"the Lab reading the bus: {candles} closed 1m candles and {trades} trades, "
    if equal:
        return report + "equal to the collector's"
    differs = [w for w, ok in (("trades", trades_equal), ("candles", klines_equal)) if not ok]
    bus = reader.summary().get("bus")
    return report + f"NOT equal to the collector's ({', '.join(differs)} differ; bus: {bus})"
