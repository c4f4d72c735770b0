"""The command line's argument types: each turns a flag's text into a value or says why not."""

from __future__ import annotations

import argparse

from marketlab.records import Interval, normalize_symbol
from marketlab.settings import CHANNELS


def _symbols(text: str) -> list[str]:
    try:
        return [normalize_symbol(s) for s in text.split(",") if s.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _symbols_or_all(text: str) -> list[str] | str:
    return "all" if text.strip().lower() == "all" else _symbols(text)


def _intervals(text: str) -> list[str]:
    try:
        return [str(Interval(s.strip())) for s in text.split(",") if s.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _channels(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [n for n in names if n not in CHANNELS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown channel(s) {', '.join(unknown)}: expected some of {', '.join(CHANNELS)}"
        )
    return names


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value
