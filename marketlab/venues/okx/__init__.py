"""OKX v5 public market data. ``marketlab.venues.okx`` is its sans-I/O protocol
(:mod:`.protocol`); the book (:mod:`.book`), REST client (:mod:`.rest`) and feed (:mod:`.feed`)
load when collection starts."""

from marketlab.venues.okx.protocol import *  # noqa: F403 - the protocol is the package's face
from marketlab.venues.okx.protocol import CHANNELS as _CHANNELS
from marketlab.venues.okx.protocol import DEFAULT_REST_URL, DEFAULT_WS_URL, bar, check_ws_url
from marketlab.venues.okx.protocol import __all__ as _protocol
from marketlab.venues.registry import Venue

VENUE = Venue(
    name="okx",
    title="OKX",
    ws_url=DEFAULT_WS_URL,
    rest_url=DEFAULT_REST_URL,
    channels=(*_CHANNELS, "klines"),
    check_ws_url=check_ws_url,
    check_interval=bar,  # OKX lacks 1s, 8h and 3d candles
    feed="marketlab.venues.okx.feed:OkxFeed",
    rest="marketlab.venues.okx.rest:OkxRest",
)

__all__ = [*_protocol, "VENUE"]
