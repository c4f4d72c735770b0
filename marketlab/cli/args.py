"""The command line's argument types: each turns a flag's text into a value or says why not."""

from __future__ import annotations

import argparse

from marketlab.bus.config import MAX_REPLICAS
from marketlab.records import Interval, normalize_symbol
from marketlab.settings import CHANNELS
from marketlab.venues import registry

# every registered venue's URLs: flags, environment variables and marketlab.toml's [venues]
URL_KEYS = tuple(registry.url_names())


def symbol_list(text: str) -> list[str]:
    try:
        return [normalize_symbol(s) for s in text.split(",") if s.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def symbols_or_all(text: str) -> list[str] | str:
    return "all" if text.strip().lower() == "all" else symbol_list(text)


def interval_list(text: str) -> list[str]:
    try:
        return [str(Interval(s.strip())) for s in text.split(",") if s.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def channel_list(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [n for n in names if n not in CHANNELS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown channel(s) {', '.join(unknown)}: expected some of {', '.join(CHANNELS)}"
        )
    return names


def venue_list(text: str) -> list[str]:
    """``binance,okx,bybit``: registered venues, each once, in the order given."""
    names = list(dict.fromkeys(s.strip().lower() for s in text.split(",") if s.strip()))
    unknown = [n for n in names if n not in registry.names()]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown venue(s) {', '.join(unknown) or '(none given)'}: expected some of "
            f"{', '.join(registry.names())}"
        )
    return names


def positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def duration(text: str) -> float:
    """``90``, ``90s``, ``30m``, ``24h``, ``7d``: seconds (> 0)."""
    raw = str(text).strip().lower()
    unit = raw[-1:] if raw[-1:] in _DURATION_UNITS else ""
    try:
        value = float(raw[: len(raw) - len(unit)]) * _DURATION_UNITS.get(unit, 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected seconds or a duration such as 90s, 30m, 24h or 7d, got {text!r}"
        ) from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive duration, got {text!r}")
    return value


def size(text: str) -> int:
    """``10GB``, ``512MiB``, ``1000000``: bytes (> 0)."""
    from marketlab.lab.options import parse_bytes

    try:
        return parse_bytes(str(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a size such as 10GB, 512MiB or a number of bytes, got {text!r}"
        ) from None


def replicas(text: str) -> int:
    value = count(text)
    if value > MAX_REPLICAS:
        raise argparse.ArgumentTypeError(
            f"JetStream keeps a stream on at most {MAX_REPLICAS} nodes, got {value}"
        )
    return value


# The bus's security settings (BusConfig's fields), each also $MARKETLAB_BUS_<NAME> and a key
# of marketlab.toml's [bus] table; flags win over the environment, which wins over the file.
_BUS_SECURITY_FLAGS = (
    ("token", "TOKEN", "authenticate with this token"),
    ("user", "USER", "authenticate as this user (with --bus-password)"),
    ("password", "PASSWORD", "the user's password"),
    ("creds", "FILE", "authenticate with this .creds file (a user JWT and its NKey seed)"),
    ("nkey", "FILE", "authenticate with this NKey seed file"),
    ("ca", "FILE", "check the bus's TLS certificate against this CA (default: the system's)"),
    ("cert", "FILE", "show this client certificate (mutual TLS; with --bus-key)"),
    ("key", "FILE", "the client certificate's private key"),
)
# The stream's settings and the reader's staleness bound (BusConfig's fields), each also a key
# of marketlab.toml's [bus] table; flags win over the file.
BUS_STREAM_FLAGS = (
    ("replicas", replicas, "N", "nodes the stream is kept on (default 1; 3 on a 3-node cluster)"),
    ("max_age", duration, "DURATION", "how long the stream keeps a record (default 24h)"),
    ("max_bytes", size, "SIZE", "the most the stream keeps, e.g. 10GB (default 10GiB)"),
    (
        "duplicate_window",
        duration,
        "DURATION",
        "a message sent twice within this is stored once (default 2m)",
    ),
    (
        "stale_after",
        duration,
        "DURATION",
        "a reader with nothing new for this long says it is stale (default 30s)",
    ),
)


def bus_flags(parser: argparse.ArgumentParser) -> None:
    """The ``--bus-*`` flags of every command that takes ``--publish`` or ``--from``."""
    for name, metavar, what in _BUS_SECURITY_FLAGS:
        env = f"MARKETLAB_BUS_{name.upper()}"
        secret = (
            " (a flag shows in the process list: prefer the variable)"
            if name in ("token", "password")
            else ""
        )
        parser.add_argument(
            f"--bus-{name}",
            dest=f"bus_{name}",
            default=None,
            metavar=metavar,
            help=f"bus (--publish/--from): {what}; or ${env}{secret}",
        )
    for name, kind, metavar, what in BUS_STREAM_FLAGS:
        parser.add_argument(
            "--bus-" + name.replace("_", "-"),
            dest=f"bus_{name}",
            type=kind,
            default=None,
            metavar=metavar,
            help=f"bus: {what}; or {name} in [bus] of marketlab.toml"
            + ("" if name == "stale_after" else "; a stream already made keeps its own"),
        )
    parser.add_argument(
        "--bus-update-stream",
        dest="bus_update_stream",
        action="store_true",
        default=None,
        help="bring a stream already made to the --bus-* stream settings given (without it, "
        "the stream is used as it is and a difference is only said)",
    )
