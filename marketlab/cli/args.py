"""The command line's argument types: each turns a flag's text into a value or says why not."""

from __future__ import annotations

import argparse

from marketlab.records import Interval, normalize_symbol
from marketlab.settings import CHANNELS
from marketlab.venues import registry

# every registered venue's URLs: flags, environment variables and marketlab.toml's [venues]
URL_KEYS = tuple(f"{venue}_{kind}_url" for venue in registry.names() for kind in ("ws", "rest"))


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
