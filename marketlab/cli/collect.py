"""``marketlab collect``: a Lab run from the command line, with a live status line."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from marketlab.bus.config import (
    MAX_REPLICAS,
    SECURITY,
    STREAM_SETTINGS,
    BusConfig,
    env_settings,
    merge_settings,
)
from marketlab.cli.args import URL_KEYS, duration, size
from marketlab.lab import Lab
from marketlab.records import Interval, is_perpetual, normalize_symbol
from marketlab.settings import DEFAULT_CHANNELS, DEFAULT_INTERVALS, DEFAULT_SYMBOLS
from marketlab.stream.config import FeedConfig

if TYPE_CHECKING:  # alert rules and metrics load where they are asked for
    from marketlab.watch import AlertSettings

CONFIG_NAME = "marketlab.toml"
# [collect] keys of marketlab.toml, each also a flag of `marketlab collect`
COLLECT_KEYS = (
    "exchange",
    "exchanges",
    "fallback",
    "failover_after",
    "symbols",
    "intervals",
    "channels",
    "db",
    "store",
    "quote",
    "shard",
    "publish",
    "memory_limit",
)


@dataclass
class CollectSettings:
    """What to collect, merged from defaults, ``marketlab.toml`` and flags (flags win)."""

    exchange: str = "binance"
    exchanges: list[str] | None = None  # several venues at once (the first is the default)
    fallback: str | None = None
    failover_after: float = 30.0
    symbols: list[str] | str = field(default_factory=lambda: list(DEFAULT_SYMBOLS))  # or "all"
    quote: str | None = None
    shard: str | None = None
    publish: str | None = None  # a NATS JetStream bus every record goes to
    # BusConfig's keywords ([bus], --bus-* flags): who we are to the bus, its TLS, the stream
    bus: dict[str, Any] = field(default_factory=dict)
    memory_limit: str | None = None  # what every symbol's buffers share (e.g. "2GB")
    intervals: list[str] = field(default_factory=lambda: list(DEFAULT_INTERVALS))
    channels: list[str] = field(default_factory=lambda: list(DEFAULT_CHANNELS))
    db: str | None = None
    store: list[str] = field(default_factory=lambda: ["klines"])
    urls: dict[str, Any] = field(default_factory=dict)  # Lab's *_url keywords (str values)
    feed: dict[str, Any] = field(default_factory=dict)
    alerts: AlertSettings | None = None  # [alerts]: run the alert rules with these
    source: str = "defaults"


def load_settings(args: argparse.Namespace) -> CollectSettings:
    settings = CollectSettings()
    path = Path(args.config) if args.config else Path(CONFIG_NAME)
    if args.config and not path.is_file():
        raise ValueError(f"config file {path} does not exist")
    if path.is_file():
        _apply_toml(settings, path)
    for name in COLLECT_KEYS:
        value = getattr(args, name, None)
        if value is not None:
            setattr(settings, name, value)
    for key in URL_KEYS:
        value = getattr(args, key, None) or os.environ.get(f"MARKETLAB_{key.upper()}")
        if value:
            settings.urls[key] = value
    flags = {name: getattr(args, f"bus_{name}", None) for name in SECURITY}
    from_file = settings.bus
    settings.bus = merge_settings(flags, env_settings(), from_file)
    for name in BUS_TUNING:  # the stream's settings and the staleness bound: flag, else file
        value = getattr(args, f"bus_{name}", None)
        value = from_file.get(name) if value is None else value
        if value is not None:
            settings.bus[name] = value
    if getattr(args, "bus_update_stream", None):
        settings.bus["update_stream"] = True
    return settings


BUS_TUNING = (*STREAM_SETTINGS, "stale_after")  # [bus] keys beside the security ones


def bus_of(url: str, settings: CollectSettings) -> BusConfig:
    """The bus at ``url`` with the security settings of the flags, environment and file."""
    return BusConfig(url, **settings.bus)


def _apply_toml(settings: CollectSettings, path: Path) -> None:
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML ({exc})") from None
    section = data.get("collect", {})
    unknown = set(section) - set(COLLECT_KEYS)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) in [collect]: {', '.join(sorted(unknown))}")
    if "exchange" in section:
        settings.exchange = str(section["exchange"])
    if "fallback" in section:
        settings.fallback = str(section["fallback"])
    if "failover_after" in section:
        value = section["failover_after"]
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise ValueError(
                f"{path}: [collect] failover_after must be a positive number, got {value!r}"
            )
        settings.failover_after = float(value)
    try:
        if "symbols" in section:
            names = _list(section["symbols"], path, "symbols")
            all_of = [n.lower() for n in names] == ["all"]
            settings.symbols = "all" if all_of else [normalize_symbol(s) for s in names]
        if "intervals" in section:
            settings.intervals = [
                str(Interval(s)) for s in _list(section["intervals"], path, "intervals")
            ]
    except ValueError as exc:
        message = str(exc)
        raise ValueError(
            message if message.startswith(str(path)) else f"{path}: {message}"
        ) from None
    if "channels" in section:
        settings.channels = _list(section["channels"], path, "channels")
    if "exchanges" in section:
        settings.exchanges = _list(section["exchanges"], path, "exchanges")
    if "db" in section:
        settings.db = str(section["db"])
    for key in ("quote", "shard", "publish", "memory_limit"):
        if key in section:
            setattr(settings, key, str(section[key]))
    if "store" in section:
        settings.store = _list(section["store"], path, "store")
    venues = data.get("venues", {})
    unknown = set(venues) - set(URL_KEYS)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) in [venues]: {', '.join(sorted(unknown))}")
    settings.urls.update({k: str(v) for k, v in venues.items()})
    feed = data.get("feed", {})
    allowed = {f.name for f in fields(FeedConfig)} - {"ws_url", "rest_url"}  # URLs: [venues]
    bad = sorted(set(feed) - allowed)
    if bad:
        raise ValueError(
            f"{path}: unknown key(s) in [feed]: {', '.join(bad)} (venue URLs go in [venues])"
        )
    for key, value in feed.items():
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ValueError(f"{path}: [feed] {key} must be a number, got {value!r}")
    settings.feed = dict(feed)
    settings.bus = _bus_table(data.get("bus", {}), path)
    if "alerts" in data:
        from marketlab.watch import AlertSettings

        settings.alerts = AlertSettings.from_mapping(data["alerts"], f"{path}: [alerts]")
    unknown_tables = set(data) - {"collect", "venues", "feed", "bus", "alerts"}
    if unknown_tables:
        raise ValueError(
            f"{path}: unknown table(s) {', '.join(sorted(unknown_tables))}: expected [collect], "
            "[venues], [feed], [bus], [alerts]"
        )
    settings.source = str(path)


def _bus_table(bus: dict[str, Any], path: Path) -> dict[str, Any]:
    """marketlab.toml's [bus]: security settings (text) and the stream's (numbers, or text
    such as "24h" and "10GB"), each checked here, naming the file and the key."""
    stray = sorted(set(bus) - set(SECURITY) - set(BUS_TUNING))
    if stray:
        raise ValueError(
            f"{path}: unknown key(s) in [bus]: {', '.join(stray)}"
            f" (expected some of {', '.join((*SECURITY, *BUS_TUNING))})"
        )
    out: dict[str, Any] = {}
    for key, value in bus.items():
        if key in SECURITY:
            if not isinstance(value, str) or not value:
                raise ValueError(
                    f"{path}: [bus] {key} must be non-empty text, got a {type(value).__name__}"
                )
            out[key] = value
            continue
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(f"{path}: [bus] {key} must be a number, got {value!r}")
        if key == "replicas":
            if not isinstance(value, int) or not 1 <= value <= MAX_REPLICAS:
                raise ValueError(
                    f"{path}: [bus] replicas must be a whole number 1..{MAX_REPLICAS}, "
                    f"got {value!r}"
                )
            out[key] = value
            continue
        parse = size if key == "max_bytes" else duration
        try:
            out[key] = parse(str(value))
        except argparse.ArgumentTypeError as exc:
            raise ValueError(f"{path}: [bus] {key}: {exc}") from None
    return out


def _list(value: Any, path: Path, name: str) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise ValueError(
        f"{path}: [collect] {name} must be a list of strings or a comma-separated string"
    )


def status_line(lab: Lab) -> str:
    several = len(lab.exchanges) > 1
    parts = [
        (f"{row['exchange']}:" if several else "") + f"{row['symbol']} {row['last']:.8g}"
        for row in lab.price_rows()
    ]
    summary = lab.summary()
    status = lab.status_rows()
    books = [row["book"] for row in status if row["stream"] == "depth"]
    synced = sum(1 for b in books if b == "synced")
    messages = sum(row["messages"] for row in status)
    line = " | ".join(parts) or "waiting for data"
    store = summary.get("store") or {}
    bus = summary.get("bus") or {}
    trouble = bus_words(bus) if bus else ""
    trouble += (
        (
            f" | store failing since {store['failing_since']}: {store['error']} "
            f"({store['pending']} pending, {store['dropped']} dropped)"
        )
        if store.get("state") == "failing"
        else ""
    )
    deep = summary.get("books_deep")
    depth = f" ({deep} deep)" if deep is not None and deep < synced else ""
    venues = summary.get("venues") or {lab.exchange: summary}
    reconnects = sum(v["reconnects"] for v in venues.values())
    bad_frames = sum(v["bad_frames"] for v in venues.values())
    via = ", ".join(str(v["source"]) for v in venues.values())
    stopped = [f"{name} stopped: {v['error']}" for name, v in venues.items() if v.get("error")]
    if several and stopped:
        trouble += " | " + "; ".join(stopped)
    return (
        f"{line} | msgs {messages} | books {synced}/{len(books)} synced{depth} | "
        f"reconnects {reconnects} | bad frames {bad_frames} | via {via}"
        f"{trouble}"
    )


def bus_words(bus: dict[str, Any]) -> str:
    """The status line's part for the bus: what a publisher or a reader says of it."""
    if bus.get("reading"):
        if bus.get("stale"):
            words = f" | bus STALE: nothing new for {bus['quiet_s']:.0f} s at {bus['position']}" + (
                f" ({bus['last_error']})" if bus.get("last_error") else ""
            )
        else:
            words = f" | bus {bus['state']} at {bus['position']}"
        if bus.get("bad_messages"):
            words += f", {bus['bad_messages']} bad messages dropped"
        return words
    counts = f"{bus['held']} held, {bus['dropped']} dropped"
    state = bus.get("state")
    if state == "failing":
        return f" | bus failing since {bus['failing_since']}: {bus['last_error']} ({counts})"
    if state == "refused":
        return f" | bus refused: {bus['refused']}"
    if state == "up":
        return f" | bus up: {bus['published']} published, " + (
            counts if bus["dropped"] else f"{bus['held']} held"
        )
    return f" | bus {state}: {counts}"


def final_report(lab: Lab) -> list[str]:
    """One line per kline series (closed candles and whether they are contiguous) and book."""
    lines = []
    for venue, symbols in lab.venue_symbols.items():
        name = f"{venue} " if len(lab.exchanges) > 1 else ""
        for symbol in symbols:
            for iv in lab.intervals:
                opens = lab.closed_open_times(symbol, iv, exchange=venue)
                holes = sum(1 for a, b in pairwise(opens) if Interval(iv).next_open(a) != b)
                state = "contiguous" if not holes else f"{holes} hole(s)"
                lines.append(f"klines {name}{symbol} {iv}: {len(opens)} closed, {state}")
            if "book" in lab.channels:
                book = lab.book_levels(symbol, 5, exchange=venue)
                lines.append(
                    f"book {name}{symbol}: "
                    + ("synced" if book.synced else f"not synced ({book.reason})")
                )
    return lines


@contextmanager
def stop_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM, with the old handlers restored afterwards."""
    stop = threading.Event()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda *_: stop.set())
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


STOP_TIMEOUT = 8.0  # seconds from Ctrl-C / SIGTERM to exit, whatever the store is doing


def run_lab(
    lab: Lab, duration: float | None, interval: float | None, out: TextIO = sys.stdout
) -> None:
    """Run ``lab`` until the duration passes or a signal arrives, printing status lines."""
    tty = out.isatty()
    every = interval or (1.0 if tty else 10.0)
    began = time.monotonic()
    with stop_signals() as stop:
        lab.start()
        next_line = began + min(every, 2.0)
        while not stop.is_set():
            now = time.monotonic()
            if duration is not None and now - began >= duration:
                break
            if not lab.running:  # stopped by what the venue said, or a failure
                break
            if now >= next_line:
                line = status_line(lab)
                out.write(("\r\x1b[2K" + line) if tty else line + "\n")
                out.flush()
                next_line = now + every
            stop.wait(0.1)
        if tty:
            out.write("\n")
        out.write("stopping: flushing and closing connections…\n")
        out.flush()
        lab.stop(timeout=STOP_TIMEOUT)


def make_lab(args: argparse.Namespace, settings: CollectSettings) -> Lab:
    """The Lab a command runs: on a venue, or (``--from``) on the bus."""
    bus = getattr(args, "from_bus", None)
    if args.command == "store" and not (bus and settings.db):
        raise ValueError(
            "marketlab store reads a bus and writes history: give --from nats://... and --db"
        )
    if bus:
        symbols = None if args.symbols is None else settings.symbols
        if symbols == "all":
            raise ValueError("--from takes --symbols as a list (default: every symbol on the bus)")
        config = bus_of(bus, settings)
        lab = Lab.from_bus(
            config,
            symbols,
            settings.intervals,
            settings.exchange,
            exchanges=settings.exchanges,
            durable=getattr(args, "durable", None),
            db=settings.db,
            store=settings.store,
            channels=settings.channels,
        )
        print(
            f"reading {', '.join(lab.symbols)} at {', '.join(lab.intervals)} "
            f"({', '.join(lab.exchanges)}) from the bus "
            f"{config.display_url}",
            flush=True,
        )
        return lab
    publish = bus_of(settings.publish, settings) if settings.publish else None
    alerts = None
    if settings.alerts is not None:
        from marketlab.watch import Watch

        alerts = Watch(settings.alerts)
    several = settings.exchanges is not None and len(settings.exchanges) > 1
    lab = Lab(
        settings.symbols,
        intervals=settings.intervals,
        exchange=None if settings.exchanges else settings.exchange,
        exchanges=settings.exchanges,
        db=settings.db,
        store=settings.store,
        quote=settings.quote,
        shard=settings.shard,
        channels=settings.channels,
        fallback=settings.fallback,
        failover_after=settings.failover_after,
        record=getattr(args, "out", None),
        publish=publish,
        memory_limit=settings.memory_limit,
        alerts=alerts,
        **settings.urls,
        **settings.feed,
    )
    also = f", falling back to {settings.fallback}" if settings.fallback else ""
    also += f", publishing to {publish.display_url}" if publish else ""
    venues = ", ".join(f"{v} ({_ws_url(lab, v)})" for v in lab.exchanges)
    print(
        f"collecting {', '.join(lab.symbols)} at {', '.join(lab.intervals)} from "
        f"{venues}{also}; settings from {settings.source}",
        flush=True,
    )
    if several:
        for venue, symbols in lab.venue_symbols.items():
            if symbols != lab.symbols:
                print(f"  {venue}: {', '.join(symbols)}", flush=True)
    return lab


def alert_line(alert: Mapping[str, Any]) -> str:
    """An alert raised or resolved, as ``marketlab collect`` prints it."""
    word = "ALERT" if alert["state"] == "active" else "resolved"
    return f"{word} [{alert['rule']}] {alert['message']}"


def run_collect(args: argparse.Namespace) -> int:
    with stop_signals():  # a second Ctrl-C while stopping does not cut the shutdown short
        return _run_collect(args)


def _run_collect(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    lab = make_lab(args, settings)
    if lab.watch is not None:
        lab.on_alert(lambda alert: print(alert_line(alert), flush=True))
    metrics = None
    if getattr(args, "metrics_port", None):
        from marketlab.watch.metrics import serve_metrics

        metrics = serve_metrics(lab, args.host, args.metrics_port)
        print(f"metrics at http://{args.host}:{args.metrics_port}/metrics", flush=True)
    if getattr(args, "serve", False):
        from marketlab.server import PREFIX, create_app
        from marketlab.server.runner import ServerThread, is_loopback

        token = args.token or os.environ.get("MARKETLAB_TOKEN")
        app = create_app(lab, token=token, require_token=not is_loopback(args.host))
        with ServerThread(app, host=args.host, port=args.port) as server:
            print(
                f"API docs {server.url}/docs; REST {server.url}{PREFIX}/prices; "
                f"WebSocket {server.url.replace('http', 'ws', 1)}{PREFIX}/ws",
                flush=True,
            )
            run_lab(lab, args.duration, args.status_interval)
    else:
        run_lab(lab, args.duration, args.status_interval)
    if metrics is not None:
        metrics.shutdown()
    for line in final_report(lab):
        print(line)
    if settings.db:
        print(f"history: {lab.last_db_written} candle write(s) committed to {settings.db}")
    if lab.store_report:
        print(f"history: {lab.store_report}", flush=True)
    error = lab.summary().get("error")
    if error:
        print(f"error: collection stopped: {error}", file=sys.stderr)
        return 1
    if lab.record_path is not None:
        recorded = lab.recorded()
        print(
            f"recorded {recorded['entries']} entries ({recorded['raw_bytes'] / 1e6:.1f} MB, "
            f"{recorded['file_bytes'] / 1e6:.1f} MB compressed) to {lab.record_path}"
        )
    return 0


def run_replay(args: argparse.Namespace) -> int:
    began = time.monotonic()
    lab = Lab.replay(args.file, speed=args.speed, db=args.db).join()
    took = time.monotonic() - began
    entries = lab.summary()["replayed"]
    print(
        f"replayed {entries} entries of {args.file} in {took:.2f} s "
        f"({entries / max(took, 1e-9):,.0f}/s)"
    )
    for line in final_report(lab):
        print(line)
    if args.db:
        print(f"history: {lab.last_db_written} candle write(s) committed to {args.db}")
    return 0


def _ws_url(lab: Lab, venue: str) -> str:
    """The WebSocket a venue is collected from: its perpetuals' where the Lab takes those."""
    perpetual = all(is_perpetual(s) for s in lab.symbols_of(venue))
    return lab.urls[f"{venue}_perp_ws_url" if perpetual else f"{venue}_ws_url"]
