"""Binance Spot. ``marketlab.venues.binance`` is its sans-I/O side: names, URLs and messages
(:mod:`.protocol`), WebSocket frames (:mod:`.frames`) and REST payloads (:mod:`.payloads`). The
REST client (:mod:`.rest`) and the feed (:mod:`.feed`) load when collection starts."""

from marketlab.settings import CHANNELS
from marketlab.venues.binance import perp_protocol
from marketlab.venues.binance.frames import (
    ControlEvent,
    RequestError,
    ServerShutdown,
    StreamDecoder,
    SubscriptionResult,
)
from marketlab.venues.binance.payloads import (
    parse_depth,
    parse_exchange_info,
    parse_klines,
    parse_server_time,
    parse_ticker_24hr,
    parse_trades,
    raise_for_error,
)
from marketlab.venues.binance.protocol import (
    DEFAULT_REST_URL,
    DEFAULT_WS_URL,
    DEPTH_LEVELS,
    MAX_STREAMS_PER_CONNECTION,
    BinanceAPIError,
    Stream,
    check_ws_url,
    combined_stream_url,
    list_subscriptions_message,
    parse_stream,
    raw_stream_url,
    split_streams,
    stream_name,
    subscribe_message,
    unsubscribe_message,
)
from marketlab.venues.errors import FrameError, PayloadError, UnknownStreamError
from marketlab.venues.pacing import MAX_INCOMING_MESSAGES_PER_SECOND, MessagePacer
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
    perp_feed="marketlab.venues.binance.perp_feed:BinancePerpFeed",
    perp_ws_url=perp_protocol.DEFAULT_WS_URL,
    perp_rest_url=perp_protocol.DEFAULT_REST_URL,
    check_perp_ws_url=perp_protocol.check_ws_url,
)

__all__ = [
    "DEFAULT_REST_URL",
    "DEFAULT_WS_URL",
    "DEPTH_LEVELS",
    "MAX_INCOMING_MESSAGES_PER_SECOND",
    "MAX_STREAMS_PER_CONNECTION",
    "VENUE",
    "BinanceAPIError",
    "ControlEvent",
    "FrameError",
    "MessagePacer",
    "PayloadError",
    "RequestError",
    "ServerShutdown",
    "Stream",
    "StreamDecoder",
    "SubscriptionResult",
    "UnknownStreamError",
    "check_ws_url",
    "combined_stream_url",
    "list_subscriptions_message",
    "parse_depth",
    "parse_exchange_info",
    "parse_klines",
    "parse_server_time",
    "parse_stream",
    "parse_ticker_24hr",
    "parse_trades",
    "raise_for_error",
    "raw_stream_url",
    "split_streams",
    "stream_name",
    "subscribe_message",
    "unsubscribe_message",
]
