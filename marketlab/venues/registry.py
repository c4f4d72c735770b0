"""The venues marketlab collects from, by name. A venue is one package under ``venues/`` that
defines ``VENUE`` (a :class:`Venue`); adding one is adding its package and one line here."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from marketlab.records import Interval
from marketlab.settings import rest_url

REGISTRY = {
    "binance": "marketlab.venues.binance",
    "okx": "marketlab.venues.okx",
    "bybit": "marketlab.venues.bybit",
    "coinbase": "marketlab.venues.coinbase",
}


@dataclass(frozen=True)
class Venue:
    """What the collector needs to know of a venue, all of it in the venue's own package."""

    name: str
    title: str  # as the venue writes its name, for messages
    ws_url: str  # the public default
    rest_url: str
    channels: tuple[str, ...]  # which of marketlab's channel names it serves
    check_ws_url: Callable[[str], str]  # refuses a wrong URL, or returns it as the client uses it
    check_interval: Callable[[Interval], Any]  # raises ValueError for a kline interval it lacks
    feed: str  # "module:Class" of its Feed, imported when collecting starts
    rest: str  # "module:Class" of its REST client
    # its perpetual swaps (``BTCUSDT-PERP``), where collected: their feed ("module:Class", whose
    # ``channels_of(lab_channels)`` says what it takes of a Lab's channels), the public URLs of
    # that market and the check of a WebSocket URL for it
    perp_feed: str | None = None
    perp_ws_url: str = ""
    perp_rest_url: str = ""
    check_perp_ws_url: Callable[[str], str] | None = None

    @property
    def ws_env(self) -> str:
        return f"MARKETLAB_{self.name.upper()}_WS_URL"

    @property
    def rest_env(self) -> str:
        return f"MARKETLAB_{self.name.upper()}_REST_URL"

    def check_rest_url(self, url: str) -> str:
        return rest_url(url, f"{self.name}_rest_url")

    @property
    def perp_ws_env(self) -> str:
        return f"MARKETLAB_{self.name.upper()}_PERP_WS_URL"

    @property
    def perp_rest_env(self) -> str:
        return f"MARKETLAB_{self.name.upper()}_PERP_REST_URL"

    def feed_class(self) -> type:
        return _load(self.feed)

    def perp_feed_class(self) -> type:
        """The feed of the venue's perpetuals (``ValueError`` where they are not collected)."""
        if self.perp_feed is None:
            raise ValueError(f"perpetuals are not collected from {self.title} yet")
        return _load(self.perp_feed)

    def rest_client(self, url: str | None = None) -> Any:
        """A REST client at ``url`` (the venue's own by default); ``await close()`` it."""
        return _load(self.rest)(url or self.rest_url)


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def url_names() -> list[str]:
    """The names of every venue URL setting (``binance_ws_url``, ``binance_perp_rest_url``…):
    keywords of a Lab, flags of the command line, keys of ``marketlab.toml``'s ``[venues]``."""
    out = []
    for name in REGISTRY:
        out += [f"{name}_ws_url", f"{name}_rest_url"]
        if get(name).perp_feed is not None:
            out += [f"{name}_perp_ws_url", f"{name}_perp_rest_url"]
    return out


def get(name: str) -> Venue:
    """The venue called ``name``, or ``ValueError`` naming the ones there are."""
    module = REGISTRY.get(name) if isinstance(name, str) else None
    if module is None:
        raise ValueError(f"exchange {name!r} is not supported: use one of {', '.join(REGISTRY)}")
    return importlib.import_module(module).VENUE


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)
