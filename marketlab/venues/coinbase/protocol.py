"""Coinbase Advanced Trade public market data, sans-I/O: names, granularities, channels and the
messages that go out. Frames coming in are :mod:`.frames`, REST payloads :mod:`.payloads`. No
sockets, no asyncio, no clock reads.

Coinbase names a product ``BASE-QUOTE`` (``BTC-USD``); ours is ``BTCUSD``, so the quote is told
by the quote assets Coinbase trades in, longest first. The WebSocket takes one channel per
subscribe message (``{"type": "subscribe", "channel": ..., "product_ids": [...]}``); the
``level2`` subscription's data comes on the channel ``l2_data``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import msgspec

from marketlab.records import Interval
from marketlab.records import normalize_symbol as _normalize
from marketlab.settings import url
from marketlab.venues.errors import VenueAPIError

DEFAULT_WS_URL = "wss://advanced-trade-ws.coinbase.com"
DEFAULT_REST_URL = "https://api.coinbase.com"
MARKET_PATH = "/api/v3/brokerage/market"  # the public (no key) REST endpoints since 2025-01
TIME_PATH = "/api/v3/brokerage/time"

# Candles per /market/products/{id}/candles request: reports differ (fewer than 300 in 2023,
# 300 by ccxt's test in 2025, "at most 350" in later ones); 300 is inside every one of them.
KLINE_LIMIT = 300
RECENT_TRADES_LIMIT = 1000  # /market/products/{id}/ticker?limit= (ccxt caps it there)
REST_BOOK_LIMIT = 1000  # levels a side asked of /market/product_book

# Quote assets Coinbase trades in, longest first, to split our ``BTCUSD`` into ``BTC-USD``.
QUOTES = ("PYUSD", "USDC", "USDT", "EURC", "USD", "EUR", "GBP", "BTC", "ETH", "DAI")
_QUOTES_BY_LENGTH = sorted(QUOTES, key=len, reverse=True)

# Our intervals → the REST ``granularity``. The WebSocket's candles are 5-minute only, so every
# interval's candles come from REST.
GRANULARITIES = {
    "1m": "ONE_MINUTE",
    "5m": "FIVE_MINUTE",
    "15m": "FIFTEEN_MINUTE",
    "30m": "THIRTY_MINUTE",
    "1h": "ONE_HOUR",
    "2h": "TWO_HOUR",
    "6h": "SIX_HOUR",
    "1d": "ONE_DAY",
}
_INTERVALS = {g: iv for iv, g in GRANULARITIES.items()}

# Our channel names → Coinbase's subscription channels (klines are REST candles, see the feed).
CHANNELS = {"trades": "market_trades", "ticker": "ticker", "book": "level2"}
HEARTBEATS = "heartbeats"  # subscribed on every connection: a quiet one is closed in 60-90 s
# The channel a subscription's data comes on, where it is not the subscription's name.
DATA_CHANNEL = {"level2": "l2_data"}


def check_ws_url(value: Any, arg: str = "coinbase_ws_url") -> str:
    """Coinbase's market-data WebSocket URL. Its endpoint has no path, so the full URL and the
    bare base are one (``ws://127.0.0.1:9400``); a URL with a path is someone else's."""
    text = url(arg, value, ("ws", "wss")).rstrip("/")
    if urlsplit(text).path:
        raise ValueError(
            f"{arg} {value!r} should be Coinbase's market-data WebSocket URL, which has no path "
            f"(e.g. {DEFAULT_WS_URL})"
        )
    return text


class CoinbaseAPIError(VenueAPIError):
    """An error answer of the REST API: ``{"error", "error_details", "message"}`` or the
    grpc-gateway ``{"code", "message", "details"}``."""

    def __init__(self, code: str, message: str, status: int | None = None):
        self.code, self.message, self.status = code, message, status
        super().__init__(
            f"Coinbase error {code}: {message}" + (f" (HTTP {status})" if status else "")
        )


# --- names -----------------------------------------------------------------------------------


def product_id(symbol: str) -> str:
    """Our symbol (``BTCUSD``, ``btc/usd``, ``BTC-USD``) → Coinbase's product ``BTC-USD``, split
    at the longest known quote asset; ``ValueError`` for one whose quote cannot be told."""
    if isinstance(symbol, str) and "-" in symbol:
        base, _, quote = symbol.strip().upper().partition("-")
        _normalize(base + quote)
        if base and quote and "-" not in quote:
            return f"{base}-{quote}"
    canonical = _normalize(symbol)
    for quote in _QUOTES_BY_LENGTH:
        if canonical.endswith(quote) and len(canonical) > len(quote):
            return f"{canonical[: -len(quote)]}-{quote}"
    raise ValueError(
        f"cannot tell the quote asset of {symbol!r} for Coinbase (it quotes in "
        f"{', '.join(QUOTES)}): write it as BASE-QUOTE, e.g. 'BTC-USD'"
    )


def symbol_of(product: str) -> str:
    """Coinbase's ``BTC-USD`` → our ``BTCUSD``; ``ValueError`` for what is no product id."""
    base, dash, quote = product.partition("-") if isinstance(product, str) else ("", "", "")
    if not dash or not base or not quote or "-" in quote:
        raise ValueError(f"not a Coinbase product id: {product!r} (expected BASE-QUOTE)")
    return _normalize(base + quote)


def granularity(interval: str | Interval) -> str:
    """Our interval → Coinbase's candle ``granularity``; ``ValueError`` for one it lacks."""
    iv = Interval(interval)
    try:
        return GRANULARITIES[str(iv)]
    except KeyError:
        raise ValueError(
            f"Coinbase has no {iv} candles: use one of {', '.join(GRANULARITIES)}"
        ) from None


def interval_of(name: str) -> Interval:
    """Coinbase's ``granularity`` (``ONE_HOUR``) → our interval."""
    try:
        return Interval(_INTERVALS[name])
    except KeyError:
        raise ValueError(f"unknown Coinbase granularity {name!r}") from None


# --- subscriptions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Topic:
    """One subscription: a channel on one product (``product`` is "" for ``heartbeats``)."""

    channel: str
    product: str

    @property
    def symbol(self) -> str:
        return symbol_of(self.product) if self.product else ""


def topics_for(symbols: Sequence[str], channels: Sequence[str]) -> list[Topic]:
    """The subscriptions for our channel names, ``heartbeats`` first; ``ValueError`` naming what
    Coinbase lacks. Klines are no subscription: they come from REST."""
    missing = [c for c in channels if c not in CHANNELS and c != "klines"]
    if missing:
        raise ValueError(
            f"Coinbase has no {', '.join(missing)} channel: use some of "
            f"{', '.join([*CHANNELS, 'klines'])}"
        )
    products = [product_id(s) for s in symbols]
    out = [Topic(HEARTBEATS, "")]
    for ours, theirs in CHANNELS.items():
        if ours in channels:
            out.extend(Topic(theirs, p) for p in products)
    return out


def by_channel(topics: Iterable[Topic]) -> list[list[Topic]]:
    """Topics grouped by channel, in first-seen order: one subscribe message per group."""
    groups: dict[str, list[Topic]] = {}
    for t in topics:
        groups.setdefault(t.channel, []).append(t)
    return list(groups.values())


def _request(kind: str, channel: str, products: Sequence[str]) -> bytes:
    if not isinstance(channel, str) or not channel:
        raise ValueError("a Coinbase subscription names one channel")
    body: dict[str, Any] = {"type": kind, "channel": channel}
    if products:
        body["product_ids"] = list(dict.fromkeys(products))
    return msgspec.json.encode(body)


def subscribe_message(channel: str, products: Sequence[str] = ()) -> bytes:
    """``{"type": "subscribe", "channel": ..., "product_ids": [...]}``: one channel a message,
    as Coinbase requires (``product_ids`` left out when none, as for ``heartbeats``)."""
    return _request("subscribe", channel, products)


def unsubscribe_message(channel: str, products: Sequence[str] = ()) -> bytes:
    """The unsubscribe twin (with no products: the channel entirely)."""
    return _request("unsubscribe", channel, products)


def topics_message(topics: Sequence[Topic], unsubscribe: bool = False) -> bytes:
    """One (un)subscribe message for topics of one channel; ``ValueError`` for a mix."""
    channels = {t.channel for t in topics}
    if len(channels) != 1:
        raise ValueError(
            f"a Coinbase (un)subscribe message takes one channel, got {sorted(channels)}"
        )
    make = unsubscribe_message if unsubscribe else subscribe_message
    return make(channels.pop(), [t.product for t in topics if t.product])
