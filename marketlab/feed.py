"""Moved: the feed machinery is :mod:`marketlab.stream` now, each venue's feed in its package
(``marketlab.venues.binance.feed``, ``marketlab.venues.okx.feed``). This module re-exports the
old names for one release."""

import warnings

from marketlab.stream.config import FeedConfig
from marketlab.stream.connection import WsConnection
from marketlab.stream.feed import Feed, LockedBook, Sink, VenueError
from marketlab.venues.binance.feed import BinanceFeed, streams_for

warnings.warn(
    "marketlab.feed is deprecated: import from marketlab.stream.feed (Feed, FeedConfig) or "
    "marketlab.venues.binance.feed (BinanceFeed)",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = [
    "BinanceFeed",
    "Feed",
    "FeedConfig",
    "LockedBook",
    "Sink",
    "VenueError",
    "WsConnection",
    "streams_for",
]
