"""``marketlab demo``: the whole thing on one machine with no network: the simulated exchange,
the collector with its history, the API server, and (``--bus``) a NATS JetStream bus with a
second Lab reading what the collector publishes. ``--exchanges binance,okx,bybit,coinbase``
collects several of the simulator's venues in one Lab and ends with how they compare;
``--perpetuals`` collects each symbol's perpetual swap beside it and ends with its funding and
basis."""

from __future__ import annotations

import argparse
import contextlib
import math
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from marketlab.bus.config import BusConfig
from marketlab.bus.nats_server import NatsServer, cluster
from marketlab.cli.collect import final_report, run_lab, stop_signals
from marketlab.lab import Lab
from marketlab.records import is_perpetual, perpetual_of
from marketlab.server import PREFIX, create_app
from marketlab.server.runner import ServerThread
from marketlab.sim import SimExchange

# what each venue's face of the simulator speaks
PROTOCOLS = {
    "binance": "Binance Spot",
    "okx": "OKX v5",
    "bybit": "Bybit v5 spot",
    "coinbase": "Coinbase Advanced Trade",
}
# the venues whose perpetual swaps the simulator serves, and what it speaks for them
PERPETUAL_PROTOCOLS = {
    "binance": "Binance USDⓈ-M",
    "okx": "OKX v5 swaps",
    "bybit": "Bybit v5 linear",
}


def venue_urls(sim: SimExchange, venues: list[str], perpetuals: bool = False) -> dict[str, Any]:
    """The Lab options that point each venue at the simulator (all on its one port), its
    perpetuals' too with ``perpetuals``."""
    ws = {"okx": sim.okx_ws_url, "bybit": sim.bybit_ws_url, "coinbase": sim.coinbase_ws_url}
    urls: dict[str, Any] = {}
    for venue in venues:
        urls[f"{venue}_ws_url"] = ws.get(venue, sim.ws_url)
        urls[f"{venue}_rest_url"] = sim.rest_url
        if perpetuals and venue in PERPETUAL_PROTOCOLS:
            urls[f"{venue}_perp_ws_url"] = sim.ws_url
            urls[f"{venue}_perp_rest_url"] = sim.rest_url
    return urls


def demo_symbols(spot: list[str], venues: list[str], perpetuals: bool) -> dict[str, list[str]]:
    """Each venue's symbols: the spot pairs, and with ``perpetuals`` each one's perpetual swap
    on the venues that have them."""
    return {
        venue: spot + ([perpetual_of(s) for s in spot] if venue in PERPETUAL_PROTOCOLS else [])
        if perpetuals
        else list(spot)
        for venue in venues
    }


def run_demo(args: argparse.Namespace) -> int:
    # Each demo exchange invents a new past, so its history starts in a fresh file.
    db = args.db or str(Path(tempfile.mkdtemp(prefix="marketlab-demo-")) / "demo.sqlite")
    with contextlib.ExitStack() as stack:
        stack.enter_context(stop_signals())  # a second Ctrl-C while stopping is not a crash
        sim = stack.enter_context(SimExchange(args.symbols, speed=args.speed, port=args.sim_port))
        replicas = getattr(args, "bus_replicas", 1) or 1
        nodes = stack.enter_context(bus_nodes(replicas)) if args.bus else []
        bus_url = ",".join(node.url for node in nodes)
        publish = BusConfig(bus_url, replicas=replicas) if nodes else None
        venues = [v.lower() for v in (getattr(args, "exchanges", None) or ["binance"])]
        several = len(venues) > 1
        perpetuals = bool(getattr(args, "perpetuals", False))
        lab = Lab(
            demo_symbols(sim.symbol_names, venues, perpetuals) if perpetuals else sim.symbol_names,
            intervals=["1m", "5m"],
            exchanges=venues if several and not perpetuals else None,
            db=db,
            publish=publish,
            **venue_urls(sim, venues, perpetuals),
        )
        reader = (
            Lab.from_bus(
                bus_url, sim.symbol_names, ["1m", "5m"], exchanges=venues if several else None
            ).start()
            if nodes
            else None
        )
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
            if several:
                print(
                    f"  across venues       {api}{PREFIX}/bbo/{first}   "
                    f"{api}{PREFIX}/consolidated_book/{first}   {api}{PREFIX}/divergence   "
                    f"(one venue's data: ?exchange={venues[1]})"
                )
                print(
                    f"  simulated exchange  {sim.rest_url}  ({len(venues)} venues on one port, "
                    f"{args.speed:g}x):"
                )
                for venue in venues:
                    ws_url = lab.urls[f"{venue}_ws_url"]
                    print(f"    {venue:<10} {PROTOCOLS.get(venue, venue)}: {ws_url}")
                print(
                    f"  collector           {', '.join(sim.symbol_names)} at 1m, 5m from "
                    f"{', '.join(venues)}: trades, tickers, books, klines; history in {db}"
                )
            else:
                print(
                    f"  simulated exchange  {sim.rest_url}  (Binance Spot protocol, "
                    f"{args.speed:g}x)"
                )
                print(
                    f"  collector           {', '.join(sim.symbol_names)} at 1m, 5m: "
                    f"trades, tickers, books, klines; history in {db}"
                )
            if perpetuals:
                perp = perpetual_of(first)
                print(
                    f"  perpetuals          {api}{PREFIX}/funding   "
                    f"{api}{PREFIX}/basis/{perp}   {api}{PREFIX}/open-interest/{perp}   "
                    f"{api}{PREFIX}/liquidations/{perp}"
                )
                for venue in venues:
                    if venue in PERPETUAL_PROTOCOLS:
                        ws_url = lab.urls[f"{venue}_perp_ws_url"]
                        print(f"    {venue:<10} {PERPETUAL_PROTOCOLS[venue]}: {ws_url}")
            if nodes:
                cluster_words = (
                    f"a {replicas}-node cluster, the stream on every node" if replicas > 1 else ""
                )
                print(
                    f"  bus                 {bus_url} (NATS JetStream"
                    + (f", {cluster_words}" if cluster_words else "")
                    + "): the collector publishes every record;"
                )
                print(f"                      a second Lab reads it: Lab.from_bus({bus_url!r})")
            print(
                "  stop with Ctrl-C" + (f" or wait {args.duration:g}s" if args.duration else ""),
                flush=True,
            )
            run_lab(lab, args.duration, None)
        for line in final_report(lab):
            print(line)
        if several:
            for line in venues_report(lab):
                print(line)
        if perpetuals:
            for line in perpetuals_report(lab):
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


@contextlib.contextmanager
def bus_nodes(size: int) -> Iterator[list[NatsServer]]:
    """A local JetStream bus: one node, or a cluster of ``size`` (each removed after)."""
    nodes = [NatsServer()] if size == 1 else cluster(size)
    try:
        for node in nodes:
            node.start()
        yield nodes
    finally:
        for node in nodes:
            node.remove()


def bus_report(collector: Lab, reader: Lab, wait: float = 10.0) -> str:
    """What the Lab reading the bus holds next to the collector's, once it has caught up, and
    how the collector's publishing went."""
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
    published = collector.summary().get("bus") or {}
    outages = published.get("outages", 0)
    if outages:
        report = (
            f"the bus failed {outages} time(s) (the last for {published['last_outage_s']} s, "
            f"{published['resent']} messages sent again); " + report
        )
    if equal:
        return report + "equal to the collector's"
    differs = [w for w, ok in (("trades", trades_equal), ("candles", klines_equal)) if not ok]
    bus = reader.summary().get("bus")
    return report + f"NOT equal to the collector's ({', '.join(differs)} differ; bus: {bus})"


def venues_report(lab: Lab) -> list[str]:
    """Per symbol, how the venues compare at the end: the consolidated best bid and ask (and
    whether the venues' quotes lock or cross each other) and each venue's mid against the
    venues' median."""
    lines = []
    divergence = lab.divergence()
    for symbol in lab.symbols:
        try:
            bbo = lab.bbo(symbol).attrs["bbo"]
        except ValueError as exc:  # a market only some venues hold, or quoted differently
            lines.append(f"across venues {symbol}: {exc}")
            continue
        lines.append(f"across venues {symbol}: {_consolidated(lab, symbol, bbo)}")
        if symbol in divergence.index.get_level_values("symbol"):
            rows = divergence.xs(symbol, level="symbol")
            mids = ", ".join(
                f"{venue} {_price(lab, symbol, str(venue), row['mid'], 1)} ({row['bps']:+.1f} bps)"
                for venue, row in rows.iterrows()
            )
            lines.append(f"  mids against the venues' median: {mids}")
    return lines


def perpetuals_report(lab: Lab) -> list[str]:
    """Per venue and perpetual at the end: the funding rate now running (and annualized) and the
    basis against the venue's own spot mid; with several venues, each venue's perpetual against
    the median of every venue's spot mid."""
    lines = []
    funding = lab.funding()
    by_venue = funding.index.nlevels == 2
    perpetuals: list[str] = []
    for venue, symbols in lab.venue_symbols.items():
        for symbol in filter(is_perpetual, symbols):
            perpetuals += [] if symbol in perpetuals else [symbol]
            key = (venue, symbol) if by_venue else symbol
            if key not in funding.index:
                lines.append(f"perpetual {venue} {symbol}: no funding rate yet")
                continue
            rate = cast(float, funding.loc[key, "funding_rate"])
            yearly = cast(float, funding.loc[key, "annualized_pct"])
            basis = lab.basis(symbol, exchange=venue)
            lines.append(
                f"perpetual {venue} {symbol}: funding {_signed(rate * 100, 4)} % "
                f"({_signed(yearly, 2)} % a year), basis "
                f"{_signed(basis['basis_bps'], 1)} bps against {venue}'s spot mid"
            )
    if len(lab.exchanges) > 1:
        for symbol in perpetuals:
            across = lab.basis_across(symbol)
            median = across.xs("median", level="spot_exchange")["basis_bps"]
            shown = ", ".join(f"{v} {_signed(bps, 1)} bps" for v, bps in median.items())
            lines.append(f"  {symbol} against the venues' median spot mid: {shown}")
    return lines


def _signed(value: float, decimals: int) -> str:
    return f"{value:+.{decimals}f}" if math.isfinite(value) else "n/a"


def _consolidated(lab: Lab, symbol: str, bbo: dict[str, Any]) -> str:
    if bbo["state"] in ("empty", "one-sided"):
        return f"consolidated quote {bbo['state']} (out of sync: {bbo['excluded'] or 'none'})"
    bid = _price(lab, symbol, bbo["best_bid_venue"], bbo["best_bid"])
    ask = _price(lab, symbol, bbo["best_ask_venue"], bbo["best_ask"])
    return (
        f"best bid {bid} on {bbo['best_bid_venue']}, best ask {ask} on {bbo['best_ask_venue']}, "
        f"{bbo['spread_bps']:+.2f} bps: {bbo['state']}"
        + (" across venues" if bbo["state"] in ("locked", "crossed") else "")
    )


def _price(lab: Lab, symbol: str, venue: str, value: float, extra: int = 0) -> str:
    """A price at the venue's tick (``extra`` decimals more for a mid, which may fall between
    two ticks)."""
    if not math.isfinite(value):
        return "n/a"
    try:
        decimals = lab.price_decimals(symbol, exchange=venue)
    except KeyError:
        decimals = None
    return f"{value:,.{decimals + extra}f}" if decimals is not None else f"{value:.8g}"
