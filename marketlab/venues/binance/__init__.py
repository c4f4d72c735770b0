"""Binance Spot. ``marketlab.venues.binance`` is its sans-I/O protocol (:mod:`.protocol`); the
REST client (:mod:`.rest`) and the feed (:mod:`.feed`) load when collection starts."""

from marketlab.defaults import CHANNELS
from marketlab.venues.binance.protocol import *  # noqa: F403 - the protocol is the package's face
from marketlab.venues.binance.protocol import DEFAULT_REST_URL, DEFAULT_WS_URL, check_ws_url
from marketlab.venues.binance.protocol import __all__ as _protocol
from marketlab.venues.registry import Venue

VENUE = Venue(
    name="binance",
    title="Binance",
    ws_url=DEFAULT_WS_URL,
    rest_url=DEFAULT_REST_URL,
    channels=CHANNELS,
    check_ws_url=check_ws_url,
    check_interval=lambda iv: iv,  # every interval marketlab knows is Binance's
    feed="marketlab.venues.binance.feed:BinanceFeed",
    rest="marketlab.venues.binance.rest:BinanceRest",
)

__all__ = [*_protocol, "VENUE"]
