"""Checks for what users configure: refused when given, with the argument, the value and what
would be accepted, instead of failing later inside the collector thread.

Pure functions, no I/O: the Lab, History, the API app and the CLI share them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

# Names shared by the CLI, the collector and the config file.
DEFAULT_SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "ADAUSDT", "XRPUSDT", "DOGEUSDT")
DEFAULT_INTERVALS = ("1m", "5m", "15m", "1h")
CHANNELS = ("trades", "ticker", "book", "klines", "bookTicker", "aggTrades", "miniTicker")
DEFAULT_CHANNELS = ("trades", "ticker", "book", "klines")
# What Lab(store=...) can keep: klines in SQLite (a perpetual's funding and open interest go
# beside them), the rest as the tick store's Parquet parts
STORE_KINDS = ("klines", "trades", "book", "book_deltas", "liquidations")


def one_of(arg: str, value: Any, choices: Iterable[str]) -> str:
    options = tuple(choices)
    if value not in options:
        raise ValueError(f"{arg} {value!r} is not supported: use one of {', '.join(options)}")
    return value


def positive(arg: str, value: Any, *, integer: bool = False, zero: bool = False) -> Any:
    """A number > 0 (>= 0 with ``zero``); ``integer`` also refuses fractions and booleans."""
    kind = "a whole number" if integer else "a number"
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type or (not integer and not math.isfinite(value)):
        raise ValueError(f"{arg} must be {kind}, got {value!r}")
    if value < 0 or (value == 0 and not zero):
        bound = ">= 0" if zero else "> 0"
        raise ValueError(f"{arg} must be {kind} {bound}, got {value!r}")
    return value


def url(arg: str, value: Any, schemes: tuple[str, ...]) -> str:
    """An absolute URL with one of ``schemes`` and a host."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{arg} must be a URL such as {schemes[-1]}://host:port, got {value!r}")
    parts = urlsplit(value.strip())
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(
            f"{arg} {value!r} is not a {' or '.join(s + '://' for s in schemes)} URL with a host "
            f"(e.g. {schemes[-1]}://127.0.0.1:9100)"
        )
    try:
        parts.port  # noqa: B018 - parsing it is the check
    except ValueError:
        raise ValueError(f"{arg} {value!r} has an invalid port") from None
    if parts.query or parts.fragment:
        raise ValueError(f"{arg} {value!r}: a base URL takes no query or fragment")
    return value.strip()


def base_url(arg: str, value: Any, schemes: tuple[str, ...], example: str, appends: str) -> str:
    """A URL with no path: the client appends its own (``appends`` says which)."""
    base = url(arg, value, schemes).rstrip("/")
    if urlsplit(base).path:
        raise ValueError(
            f"{arg} {value!r} should be a base without a path (e.g. {example}): the client "
            f"appends {appends} itself"
        )
    return base


def ws_url_at(arg: str, value: Any, path: str, what: str, base: str) -> str:
    """A venue's WebSocket URL ending in ``path``, or a bare base that gets ``path`` appended
    (``ws://127.0.0.1:9100`` → ``ws://127.0.0.1:9100/ws/v5/public``); ``what`` names the URL
    and ``base`` gives an example base, for the message that refuses anything else."""
    text = url(arg, value, ("ws", "wss")).rstrip("/")
    at = urlsplit(text).path
    if not at:
        return text + path
    if at.endswith(path):
        return text
    raise ValueError(
        f"{arg} {value!r} should be {what} ending in {path} or a bare base such as {base}"
    )


def rest_url(value: Any, arg: str) -> str:
    """A REST base such as ``https://api.binance.com``: the client appends ``/api/...``."""
    return base_url(arg, value, ("http", "https"), "https://api.binance.com", "/api/v3 or /api/v5")
