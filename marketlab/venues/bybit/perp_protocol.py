"""Bybit v5 linear perpetuals (USDT-margined), sans-I/O: names, topics, the URL and the
messages that go out. Frames coming in are :mod:`.perp_frames`, REST bodies
:mod:`.perp_payloads`.

Linear lives on its own WebSocket path, ``/v5/public/linear``, beside spot's on the same host,
and on the same REST host with ``category=linear``. Its topics are spot's
(``publicTrade.S``, ``orderbook.{depth}.S``, ``kline.{interval}.S``) plus what a perpetual
adds: ``tickers.S`` (mark and index price, funding rate and next funding time, open interest)
and ``allLiquidation.S``. Bybit calls the perpetual by its pair (``BTCUSDT``); ours is
``BTCUSDT-PERP``.

Limits (Bybit's "connect" and "rate limit" pages, as studied in the project's research notes):
futures have no limit of args per request (spot's is 10), the args of one connection total at
most 21,000 characters, and a ping is wanted every 20 s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from marketlab.records import Interval, is_perpetual, perpetual_of, underlying_of
from marketlab.settings import ws_url_at
from marketlab.venues.bybit.protocol import (
    DEFAULT_WS_URL,
    MAX_ARGS_CHARS,
    Topic,
    kline_interval,
)

LINEAR_PATH = "/v5/public/linear"
CATEGORY = "linear"  # every REST call names it
BOOK_DEPTH = 200  # ``orderbook.200``: 100 ms pushes on linear (50: 20 ms, 1000: 200 ms)
BOOK_DEPTHS = (1, 50, 200, 1000)  # linear's depths (500 went on 2025-09-11)
REST_BOOK_LIMIT = 1000  # /v5/market/orderbook on linear: [1, 1000]
RECENT_TRADES_LIMIT = 1000  # /v5/market/recent-trade on linear: [1, 1000]
FUNDING_HISTORY_LIMIT = 200  # /v5/market/funding/history: [1, 200]
OPEN_INTEREST_LIMIT = 200  # /v5/market/open-interest: [1, 200]
INSTRUMENTS_LIMIT = 1000  # /v5/market/instruments-info: [1, 1000], paged by cursor
OPEN_INTEREST_INTERVALS = ("5min", "15min", "30min", "1h", "4h", "1d")
LIQUIDATION_PUSH_MS = 500  # allLiquidation pushes every 500 ms, all liquidations of it

# Our channel names → Bybit's topic prefixes (klines are ``kline.<interval>``). ``mark``'s
# topic, the ticker, carries the open interest as well.
PERP_CHANNELS = ("trades", "book", "klines", "mark", "liquidations")
_PREFIXES = {
    "trades": "publicTrade",
    "book": f"orderbook.{BOOK_DEPTH}",
    "mark": "tickers",
    "liquidations": "allLiquidation",
}


def check_ws_url(value: Any, arg: str = "bybit_ws_url") -> str:
    """Bybit's public linear WebSocket URL: the full ``…/v5/public/linear``, or a bare base
    that gets it appended (``ws://127.0.0.1:9300`` → ``ws://127.0.0.1:9300/v5/public/linear``)."""
    return ws_url_at(arg, value, LINEAR_PATH, "Bybit's public linear WebSocket URL", DEFAULT_WS_URL)


def linear_url(base: str) -> str:
    """The linear URL on the host of ``base`` (a bare base, or spot's full URL)."""
    text = base.rstrip("/")
    for path in ("/v5/public/spot", LINEAR_PATH):
        if text.endswith(path):
            text = text[: -len(path)]
    return text + LINEAR_PATH


def venue_symbol(symbol: str) -> str:
    """Bybit's linear name of our perpetual (``BTCUSDT-PERP`` → ``BTCUSDT``); ValueError for
    a name that is not a perpetual's, so a spot symbol never reaches the linear API."""
    if not isinstance(symbol, str) or not is_perpetual(symbol):
        raise ValueError(f"{symbol!r} is not a perpetual (expected a name such as BTCUSDT-PERP)")
    return underlying_of(perpetual_of(symbol))


def symbol_of(name: str) -> str:
    """Bybit's linear symbol (``BTCUSDT``) → ours (``BTCUSDT-PERP``)."""
    return perpetual_of(name)


def topics_for(
    symbols: Sequence[str], intervals: Sequence[str | Interval], channels: Sequence[str]
) -> list[Topic]:
    """The linear topics of our perpetual channels, or ``ValueError`` naming what is wrong
    (an unknown channel, a spot symbol, an interval Bybit lacks)."""
    unknown = [c for c in channels if c not in PERP_CHANNELS]
    if unknown:
        raise ValueError(
            f"channel(s) {unknown} not collected for Bybit perpetuals: expected some of "
            f"{', '.join(PERP_CHANNELS)}"
        )
    names = [kline_interval(iv) for iv in intervals] if "klines" in channels else []
    out: list[Topic] = []
    for s in symbols:
        name = venue_symbol(s)
        out.extend(Topic(_PREFIXES[c], name) for c in channels if c in _PREFIXES)
        out.extend(Topic(f"kline.{n}", name) for n in names)
    return out


def _request(op: str, topics: Sequence[Topic], req_id: str | None) -> bytes:
    if not topics:
        raise ValueError(f"a Bybit {op} needs at least one topic")
    chars = sum(len(t.name) for t in topics)
    if chars > MAX_ARGS_CHARS:
        raise ValueError(
            f"the topics of a Bybit {op} total {chars} characters, over {MAX_ARGS_CHARS}"
        )
    body: dict[str, Any] = {"op": op, "args": [t.name for t in topics]}
    if req_id is not None:
        body["req_id"] = req_id
    return msgspec.json.encode(body)


def subscribe_message(topics: Sequence[Topic], req_id: str | None = None) -> bytes:
    """One linear subscribe request: any number of topics (linear has no args limit), up to
    21,000 characters of them."""
    return _request("subscribe", topics, req_id)


def unsubscribe_message(topics: Sequence[Topic], req_id: str | None = None) -> bytes:
    return _request("unsubscribe", topics, req_id)
