"""Bybit v5 public spot market data, sans-I/O: names, intervals, topics and the messages that
go out. Frames coming in are :mod:`.frames`, REST payloads :mod:`.payloads`. No sockets, no
asyncio, no clock reads.

Bybit spot names an instrument as we do (``BTCUSDT``), and its topics are
``publicTrade.S``, ``tickers.S``, ``orderbook.{depth}.S`` and ``kline.{interval}.S``, all
case-sensitive. Spot refuses a request of more than 10 args (``"args size >10"``), so larger
lists go as several requests.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from marketlab.records import Interval
from marketlab.records import normalize_symbol as _normalize
from marketlab.settings import ws_url_at
from marketlab.venues.errors import VenueAPIError

DEFAULT_WS_URL = "wss://stream.bybit.com"
DEFAULT_REST_URL = "https://api.bybit.com"
SPOT_PATH = "/v5/public/spot"
CATEGORY = "spot"  # every REST call names it: /v5/market/kline defaults to linear otherwise

MAX_ARGS_PER_REQUEST = 10  # spot: "args size >10" beyond it
MAX_ARGS_CHARS = 21_000  # the total length of the args one public connection may subscribe
BOOK_DEPTHS = (50, 200)  # the depths kept as books (1 is the best bid/ask, 1000 too heavy)
BOOK_DEPTH = 200  # the depth the ``book`` channel subscribes: 100 ms pushes on spot
TICKER_DEPTH = 1  # ``orderbook.1``: snapshot-only best bid and ask, our ``bookTicker``
KLINE_LIMIT = 1000  # candles per /v5/market/kline request
RECENT_TRADES_LIMIT = 60  # spot /v5/market/recent-trade serves at most the last 60 trades
REST_BOOK_LIMIT = 200  # spot /v5/market/orderbook: 1000 in the current docs, 200 in older ones
PING_INTERVAL_S = 20.0  # Bybit asks for a ping every 20 s

# Our intervals → Bybit's kline interval names. Bybit has no 1s, 8h or 3d candles.
_INTERVALS = {
    "1m": "1",
    "3m": "3",
    "5m": "5",
    "15m": "15",
    "30m": "30",
    "1h": "60",
    "2h": "120",
    "4h": "240",
    "6h": "360",
    "12h": "720",
    "1d": "D",
    "1w": "W",
    "1M": "M",
}
_OURS = {b: iv for iv, b in _INTERVALS.items()}

# Our channel names → Bybit's topic prefixes (klines are ``kline.<interval>``).
CHANNELS = {
    "trades": "publicTrade",
    "ticker": "tickers",
    "book": f"orderbook.{BOOK_DEPTH}",
    "bookTicker": f"orderbook.{TICKER_DEPTH}",
}


def check_ws_url(value: Any, arg: str = "bybit_ws_url") -> str:
    """Bybit's public spot WebSocket URL: the full ``…/v5/public/spot``, or a bare base that
    gets it appended (``ws://127.0.0.1:9300`` → ``ws://127.0.0.1:9300/v5/public/spot``)."""
    return ws_url_at(
        arg, value, SPOT_PATH, "Bybit's public spot WebSocket URL", "wss://stream.bybit.com"
    )


class BybitAPIError(VenueAPIError):
    """An error answer of the REST API: ``retCode`` other than 0 (sent with HTTP 200)."""

    def __init__(self, code: int, msg: str, status: int | None = None):
        self.code, self.msg, self.status = code, msg, status
        super().__init__(f"Bybit error {code}: {msg}" + (f" (HTTP {status})" if status else ""))


# --- names -----------------------------------------------------------------------------------


def symbol_of(name: str) -> str:
    """Bybit's spot symbol (``BTCUSDT``) → ours, which is the same name."""
    return _normalize(name)


def bybit_symbol(symbol: str) -> str:
    """Our symbol (``BTCUSDT``, ``btc/usdt``, ``BTC-USDT``) → Bybit's spot ``BTCUSDT``."""
    return _normalize(symbol)


def kline_interval(interval: str | Interval) -> str:
    """Our interval → Bybit's kline interval name; ``ValueError`` for one Bybit lacks."""
    iv = Interval(interval)
    try:
        return _INTERVALS[str(iv)]
    except KeyError:
        raise ValueError(f"Bybit has no {iv} candles: use one of {', '.join(_INTERVALS)}") from None


def interval_of(name: str) -> Interval:
    """Bybit's kline interval name (``"60"``, ``"D"``) → ours."""
    try:
        return Interval(_OURS[name])
    except KeyError:
        raise ValueError(f"unknown Bybit kline interval {name!r}") from None


# --- topics and messages ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Topic:
    """One subscription: ``prefix`` (``publicTrade``, ``orderbook.200``, ``kline.1``) on one
    symbol; its ``name`` is what Bybit calls it."""

    prefix: str
    symbol: str

    @property
    def name(self) -> str:
        return f"{self.prefix}.{self.symbol}"

    @property
    def interval(self) -> Interval | None:
        return interval_of(self.prefix[6:]) if self.prefix.startswith("kline.") else None

    @property
    def book_depth(self) -> int | None:
        """The depth of an ``orderbook.N`` topic (None for others, ``orderbook.rpi`` too)."""
        tail = self.prefix[10:] if self.prefix.startswith("orderbook.") else ""
        return int(tail) if tail.isascii() and tail.isdigit() and len(tail) <= 4 else None


def parse_topic(name: str) -> Topic:
    """``orderbook.200.BTCUSDT`` → its :class:`Topic`; ``ValueError`` for a shape we do not
    know (the symbol is the last dotted part, the prefix the rest)."""
    prefix, _, symbol = name.rpartition(".")
    if not prefix or not symbol:
        raise ValueError(f"not a Bybit topic: {name!r}")
    return Topic(prefix, symbol)


def topics_for(
    symbols: Sequence[str], intervals: Sequence[str], channels: Sequence[str]
) -> list[Topic]:
    """The subscriptions for our channel names, or ``ValueError`` naming what Bybit lacks."""
    missing = [c for c in channels if c not in CHANNELS and c != "klines"]
    if missing:
        raise ValueError(
            f"Bybit has no {', '.join(missing)} channel: use some of "
            f"{', '.join([*CHANNELS, 'klines'])}"
        )
    names = [kline_interval(iv) for iv in intervals] if "klines" in channels else []
    out: list[Topic] = []
    for s in symbols:
        name = bybit_symbol(s)
        out.extend(Topic(CHANNELS[c], name) for c in channels if c in CHANNELS)
        out.extend(Topic(f"kline.{n}", name) for n in names)
    return out


def split_for_connections(topics: Sequence[Topic], per_connection: int) -> list[list[Topic]]:
    """Topics in groups for one connection each: at most ``per_connection`` and at most
    :data:`MAX_ARGS_CHARS` characters of topic names, Bybit's limit per public connection."""
    groups: list[list[Topic]] = []
    group: list[Topic] = []
    chars = 0
    for t in topics:
        n = len(t.name)
        if group and (len(group) >= per_connection or chars + n > MAX_ARGS_CHARS):
            groups.append(group)
            group, chars = [], 0
        group.append(t)
        chars += n
    if group:
        groups.append(group)
    return groups


def _request(op: str, topics: Sequence[Topic], req_id: str | None) -> bytes:
    if not 0 < len(topics) <= MAX_ARGS_PER_REQUEST:
        raise ValueError(
            f"a Bybit spot {op} takes 1 to {MAX_ARGS_PER_REQUEST} args, got {len(topics)}: "
            "split them (subscribe_messages does)"
        )
    body: dict[str, Any] = {"op": op, "args": [t.name for t in topics]}
    if req_id is not None:
        body["req_id"] = req_id
    return msgspec.json.encode(body)


def subscribe_message(topics: Sequence[Topic], req_id: str | None = None) -> bytes:
    """One subscribe request of at most 10 topics (``ValueError`` beyond)."""
    return _request("subscribe", topics, req_id)


def unsubscribe_message(topics: Sequence[Topic], req_id: str | None = None) -> bytes:
    """One unsubscribe request of at most 10 topics (``ValueError`` beyond)."""
    return _request("unsubscribe", topics, req_id)


def _chunks(topics: Iterable[Topic]) -> list[list[Topic]]:
    items = list(topics)
    return [items[i : i + MAX_ARGS_PER_REQUEST] for i in range(0, len(items), MAX_ARGS_PER_REQUEST)]


def subscribe_messages(topics: Iterable[Topic]) -> list[bytes]:
    """Subscribe requests for any number of topics, 10 to a request."""
    return [subscribe_message(part) for part in _chunks(topics)]


def unsubscribe_messages(topics: Iterable[Topic]) -> list[bytes]:
    """Unsubscribe requests for any number of topics, 10 to a request."""
    return [unsubscribe_message(part) for part in _chunks(topics)]


def ping_message(req_id: str | None = None) -> bytes:
    """The application-level ping Bybit wants every 20 s (it sends no protocol pings)."""
    return msgspec.json.encode(
        {"op": "ping"} if req_id is None else {"op": "ping", "req_id": req_id}
    )
