"""``marketlab`` command line: demo, sim, fault."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

from marketlab.cli.args import (
    URL_KEYS,
    bus_flags,
    channel_list,
    comma_list,
    count,
    interval_list,
    positive,
    replicas,
    symbol_list,
    symbols_or_all,
    venue_list,
)
from marketlab.cli.download import add_parser as add_download_parser
from marketlab.settings import DEFAULT_INTERVALS, DEFAULT_SYMBOLS
from marketlab.store.sqlite import StoreError
from marketlab.venues import registry


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0..65535, got {value}")
    return value


def _server_flags(parser: argparse.ArgumentParser, serve_flag: bool) -> None:
    if serve_flag:
        parser.add_argument(
            "--serve", action="store_true", help="also serve the REST/WebSocket API"
        )
    parser.add_argument("--host", default="127.0.0.1", help="API address (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=8000, help="API port (default 8000)")
    parser.add_argument(
        "--token",
        default=None,
        help="token for POST /start and /stop, required beyond loopback (or $MARKETLAB_TOKEN)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="marketlab", description="Live crypto market data for researchers."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run the whole thing offline against the simulator")
    demo.add_argument("--port", type=_port, default=8000, help="API server port (default 8000)")
    demo.add_argument("--sim-port", type=_port, default=9100, help="simulator port (default 9100)")
    demo.add_argument(
        "--db", default="data/demo.sqlite", help="SQLite history (default data/demo.sqlite)"
    )
    demo.add_argument("--duration", type=positive, help="stop after this many seconds")
    demo.add_argument("--symbols", type=symbol_list, default=list(DEFAULT_SYMBOLS[:3]))
    demo.add_argument("--speed", type=positive, default=60.0, help="exchange seconds per second")
    demo.add_argument(
        "--bus",
        action="store_true",
        help="also run a NATS JetStream bus: the collector publishes, a second Lab reads it",
    )
    demo.add_argument(
        "--bus-replicas",
        type=replicas,
        default=1,
        metavar="N",
        help="with --bus: a cluster of N nodes, the stream kept on all of them (default 1)",
    )
    demo.add_argument(
        "--exchanges",
        type=venue_list,
        default=None,
        metavar="VENUES",
        help="collect several of the simulator's venues in one Lab, e.g. "
        "binance,okx,bybit,coinbase (default binance)",
    )
    demo.add_argument(
        "--perpetuals",
        action="store_true",
        help="also collect each symbol's perpetual swap (BTCUSDT-PERP) where the venue has them "
        "(Binance, OKX, Bybit), beside its spot pair: funding, basis, open interest, liquidations",
    )

    collect = sub.add_parser("collect", help="collect live market data until stopped")
    serve = sub.add_parser(
        "serve", help="collect and serve the API (collect --serve)", add_help=True
    )
    collect.add_argument(
        "--exchange",
        default=None,
        choices=registry.names(),
        help=f"the venue: {', '.join(registry.names())} (default binance)",
    )
    collect.add_argument(
        "--exchanges",
        type=venue_list,
        default=None,
        help="several venues at once, e.g. binance,okx,bybit,coinbase (the first is the "
        "default for readers; instead of --exchange)",
    )
    collect.add_argument(
        "--fallback",
        default=None,
        choices=registry.names(),
        help="switch to this venue while the exchange is unreachable, and back",
    )
    collect.add_argument(
        "--failover-after",
        type=positive,
        default=None,
        help="seconds of WebSocket and REST failing before switching (default 30)",
    )
    collect.add_argument(
        "--symbols",
        type=symbols_or_all,
        default=None,
        help=f"comma-separated (default {','.join(DEFAULT_SYMBOLS)}), or all (with --quote)",
    )
    collect.add_argument(
        "--intervals",
        type=interval_list,
        default=None,
        help=f"comma-separated kline intervals (default {','.join(DEFAULT_INTERVALS)})",
    )
    collect.add_argument(
        "--channels",
        type=channel_list,
        default=None,
        help="comma-separated: trades,ticker,book,klines (default), "
        "bookTicker, aggTrades, miniTicker",
    )
    collect.add_argument(
        "--quote",
        default=None,
        help="with --symbols all: the quote asset (e.g. USDT) of every spot symbol collected",
    )
    collect.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="collect shard I of N of the symbols (stable on every host and restart)",
    )
    collect.add_argument("--db", default=None, help="SQLite file for closed klines")
    collect.add_argument(
        "--store",
        type=comma_list,
        default=None,
        help="what --db keeps: klines (default; with a perpetual's fundings and open interest), "
        "trades, book, book_deltas, liquidations (Parquet ticks beside it)",
    )
    collect.add_argument("--duration", type=positive, help="stop after this many seconds")
    collect.add_argument(
        "--config", default=None, help="a marketlab.toml (default: ./marketlab.toml if present)"
    )
    collect.add_argument(
        "--status-interval",
        type=positive,
        default=None,
        help="seconds between status lines (default: 1 on a terminal, 10 otherwise)",
    )
    for key in URL_KEYS:  # every registered venue's
        flag = "--" + key.replace("_", "-")
        collect.add_argument(flag, default=None, help=f"venue URL (or $MARKETLAB_{key.upper()})")
    collect.add_argument(
        "--memory-limit",
        default=None,
        metavar="SIZE",
        help="size every symbol's rolling buffers to fit this (e.g. 2GB)",
    )
    collect.add_argument(
        "--publish",
        default=None,
        metavar="NATS_URL",
        help="publish every record to this NATS JetStream bus (comma-separated: a cluster)",
    )
    collect.add_argument(
        "--from",
        dest="from_bus",
        default=None,
        metavar="NATS_URL",
        help="read what collectors publish on this bus instead of a venue",
    )
    bus_flags(collect)
    _server_flags(collect, serve_flag=True)
    collect.add_argument(
        "--metrics-port",
        type=_port,
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (no API server needed)",
    )

    record = sub.add_parser("record", help="collect and store every raw frame received, for replay")
    store = sub.add_parser(
        "store", help="write what collectors publish on the bus to history (--from, --db)"
    )
    for action in collect._actions:
        if action.dest not in ("help", "serve"):
            serve._add_action(action)
        if action.dest not in ("help", "serve", "host", "port", "token"):
            record._add_action(action)
        if action.dest not in (
            "help",
            "serve",
            "host",
            "port",
            "token",
            "publish",
            "fallback",
            "failover_after",
        ):
            store._add_action(action)
    store.add_argument(
        "--durable",
        default="marketlab-store",
        help="the consumer that remembers what is written (default marketlab-store)",
    )
    serve.set_defaults(serve=True)
    record.add_argument("--out", required=True, help="the recording to write (zstd-compressed)")

    replay = sub.add_parser("replay", help="feed a recording through the collector again")
    replay.add_argument("file", help="a recording written by `marketlab record`")
    replay.add_argument(
        "--speed",
        type=positive,
        default=None,
        help="replay at this multiple of the recorded pace (default: as fast as it goes)",
    )
    replay.add_argument("--db", default=None, help="SQLite file for the replayed closed klines")

    ingest = sub.add_parser(
        "ingest", help="store a recording's closed klines and trades as history"
    )
    ingest.add_argument("file", help="a recording written by `marketlab record`")
    ingest.add_argument(
        "--db", required=True, help="SQLite file (trades go to the .ticks beside it)"
    )

    export = sub.add_parser("export", help="export stored klines to Hive-partitioned Parquet")
    export.add_argument("--db", required=True, help="the SQLite file written by collect")
    export.add_argument("--out", required=True, help="Parquet directory (created if missing)")

    backfill = sub.add_parser("backfill", help="fetch historical klines into the SQLite file")
    backfill.add_argument("--symbols", type=symbol_list, required=True)
    backfill.add_argument("--intervals", type=interval_list, required=True)
    backfill.add_argument("--start", required=True, help="e.g. 2026-01-01 (UTC)")
    backfill.add_argument("--end", default=None, help="default: now")
    backfill.add_argument("--db", required=True)
    backfill.add_argument("--exchange", default="binance", choices=registry.names())
    # every venue's spot REST base (perpetuals are not backfilled by this command)
    for key in (k for k in URL_KEYS if k.endswith("_rest_url") and "_perp_" not in k):
        flag = "--" + key.replace("_", "-")
        backfill.add_argument(flag, default=None, help=f"venue URL (or $MARKETLAB_{key.upper()})")

    add_download_parser(sub)

    sim = sub.add_parser("sim", help="run the simulated exchange alone")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=_port, default=9100)
    sim.add_argument("--symbols", type=symbol_list, default=list(DEFAULT_SYMBOLS))
    sim.add_argument("--speed", type=positive, default=1.0, help="exchange seconds per second")
    sim.add_argument("--seed", type=int, default=7)
    sim.add_argument("--history", default="2h", help="history before start (default 2h)")
    sim.add_argument("--duration", type=positive, help="stop after this many seconds")
    sim.add_argument("--weight-limit", type=count, default=6000, help="REST weight per minute")
    sim.add_argument("--ping-interval", type=positive, default=20.0)
    sim.add_argument("--pong-timeout", type=positive, default=60.0)
    sim.add_argument(
        "--max-connection-age",
        type=positive,
        default=86400.0,
        help="seconds before the server closes a connection (Binance: 24h)",
    )
    sim.add_argument(
        "--okx-checksums",
        action="store_true",
        help="send OKX book checksums as before June 2026 (default: 0, as OKX does now)",
    )
    sim.add_argument(
        "--replay",
        default=None,
        metavar="FILE",
        help="serve this recording's frames on the Binance WebSocket paths",
    )
    sim.add_argument(
        "--tls-cert", default=None, help="serve TLS (https/wss) with this certificate (PEM)"
    )
    sim.add_argument("--tls-key", default=None, help="the certificate's private key (PEM)")
    sim.add_argument(
        "--replay-rate",
        type=positive,
        default=None,
        help="frames per second per client (default: as fast as the client reads)",
    )
    sim.add_argument(
        "--faults",
        default=None,
        help="scheduled faults, e.g. 'drop@30,stall@60:10,gap@90,malformed@100,"
        "rest429@120:3,refuse@150:20,bybit.outage@180:10,jump@200:BTCUSDT:300' (seconds "
        "after start; a VENUE. prefix hits that venue only)",
    )

    fault = sub.add_parser("fault", help="inject a fault into a running simulator")
    fault.add_argument(
        "name",
        help="drop, stall, gap, malformed, rest429, rest418 (Binance, OKX), rest403 (Bybit's "
        "ban), rest500, rest502, rest503, rest504, refuse, outage, shutdown, pause, resume; "
        "books: checksum and heartbeat (OKX), seqreset (OKX, Bybit); market anomalies of every "
        "venue: jump, spread, volume, silent, crossed",
    )
    fault.add_argument(
        "--venue",
        choices=("binance", "okx", "bybit", "coinbase"),
        default=None,
        help="the venue to hit (default: every venue that has the fault)",
    )
    fault.add_argument(
        "arg",
        nargs="?",
        help="seconds (stall, refuse, outage, rest403, shutdown on Bybit and Coinbase), "
        "count (gap, rest*, checksum), kind (malformed), symbol (heartbeat, seqreset), "
        "[SYMBOL][:AMOUNT] for an anomaly (jump: bps, e.g. BTCUSDT:-200; the others: seconds)",
    )
    fault.add_argument("--port", type=_port, default=9100)
    fault.add_argument("--host", default="127.0.0.1")
    return parser


async def _wait(duration: float | None) -> None:
    """Until the duration passes or SIGINT/SIGTERM arrives."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), duration)


def replay_market(path: str | None) -> dict[str, Any]:
    """The market a recording of the simulator was made from (its seed and start), so REST
    answers agree with the replayed frames."""
    if path is None:
        return {}
    from marketlab.recording.files import open_recording

    header, entries = open_recording(path)
    entries.close()
    extra = header.extra
    market: dict[str, Any] = {k: extra[k] for k in ("seed", "start_time", "history") if k in extra}
    return {"symbols": header.symbols, **market}


def _tls(cert: str | None, key: str | None) -> Any:
    if cert is None:
        return None
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def run_sim(args: argparse.Namespace) -> int:
    from marketlab.sim import SimExchange

    options: dict[str, Any] = dict(
        symbols=args.symbols, speed=args.speed, seed=args.seed, history=args.history
    )
    options.update(replay_market(args.replay))
    sim = SimExchange(
        host=args.host,
        port=args.port,
        weight_limit=args.weight_limit,
        ping_interval=args.ping_interval,
        pong_timeout=args.pong_timeout,
        max_connection_age=args.max_connection_age,
        okx_checksums=args.okx_checksums,
        faults=args.faults,
        replay=args.replay,
        replay_rate=args.replay_rate,
        ssl_context=_tls(args.tls_cert, args.tls_key),
        **options,
    )
    async with sim:
        print(
            f"simulated Binance Spot, OKX, Bybit and Coinbase: {', '.join(sim.symbol_names)}",
            flush=True,
        )
        print(f"  REST       {sim.rest_url}/api/v3/klines?symbol={sim.symbol_names[0]}&interval=1m")
        print(f"  WebSocket  {sim.ws_url}/stream?streams={sim.symbol_names[0].lower()}@trade")
        print(
            f"  OKX        {sim.rest_url}/api/v5/market/candles?instId=BTC-USDT and "
            f"{sim.okx_ws_url}"
        )
        print(f"  Bybit      {sim.rest_url}/v5/market/tickers?category=spot and {sim.bybit_ws_url}")
        print(
            f"  Coinbase   {sim.rest_url}/api/v3/brokerage/market/products and "
            f"{sim.coinbase_ws_url}"
        )
        print(f"  faults     marketlab fault --port {sim.port} [--venue V] drop|stall 10|gap|...")
        if sim.replay is not None:
            rate = (
                f"{sim.replay_rate:g} frames/s"
                if sim.replay_rate
                else "as fast as each client reads"
            )
            print(
                f"  replaying  {len(sim.replay.frames)} frames of {args.replay} to every client, "
                f"{rate}"
            )
        print(f"  speed {sim.speed}x, seed {sim.seed}; Ctrl-C to stop", flush=True)
        await _wait(args.duration)
    return 0


def run_fault(args: argparse.Namespace) -> int:
    query = {k: v for k, v in (("arg", args.arg), ("venue", args.venue)) if v}
    url = f"http://{args.host}:{args.port}/sim/v1/faults/{args.name}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=10) as r:
            print(r.read().decode())
    except urllib.error.HTTPError as exc:
        print(f"error: {exc.read().decode() or exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: no simulator at {args.host}:{args.port} ({exc})", file=sys.stderr)
        return 1
    return 0


def run_export(args: argparse.Namespace) -> int:
    from marketlab.store.parquet import export

    result = export(
        args.db,
        args.out,
        on_series=lambda line: print(f"  {line}") if not sys.stderr.isatty() else None,
    )
    print(
        f"exported {result.rows} new candle(s) from {result.series} series to {args.out} "
        f"({result.files} files)"
    )
    return 0


def run_backfill_command(args: argparse.Namespace) -> int:
    from marketlab.lab.options import venue_url
    from marketlab.store.history import History

    url = venue_url(f"{args.exchange}_rest_url", getattr(args, f"{args.exchange}_rest_url"))
    written = History(db=args.db, exchange=args.exchange).backfill(
        args.symbols, args.intervals, args.start, args.end, rest_url=url
    )
    print(f"backfilled {written} candle(s) into {args.db}")
    return 0


def _run_ingest(args: argparse.Namespace) -> int:
    from marketlab.cli.ingest import ingest

    done = ingest(args.file, args.db)
    rate = done["frames"] / max(done["seconds"], 1e-9)
    print(
        f"ingested {done['frames']:,} frames of {done['exchange']} {', '.join(done['symbols'])} in "
        f"{done['seconds']:.1f} s ({rate:,.0f} frames/s): "
        f"{done['klines_written']} candle write(s), {done['trades_written']:,} trade(s), "
        f"{done['books_written']:,} book snapshot(s) into {args.db}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "sim":
            return asyncio.run(run_sim(args))
        if args.command == "demo":
            from marketlab.cli.demo import run_demo

            return run_demo(args)
        if args.command == "fault":
            return run_fault(args)
        if args.command == "ingest":
            return _run_ingest(args)
        if args.command == "export":
            return run_export(args)
        if args.command == "backfill":
            return run_backfill_command(args)
        if args.command == "download":
            from marketlab.cli.download import run_download_command

            return run_download_command(args)
        if args.command in ("collect", "serve", "record", "store"):
            from marketlab.cli.collect import run_collect

            return run_collect(args)
        if args.command == "replay":
            from marketlab.cli.collect import run_replay

            return run_replay(args)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (ValueError, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 2  # pragma: no cover - argparse requires a command


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
