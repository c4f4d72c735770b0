"""OKX v5 public market data, sans-I/O.

Instrument and bar names, subscription messages going out; WebSocket frames and REST payloads
coming in, turned into the same :mod:`marketlab.records` as Binance's. Order-book messages
keep the exchange's exact price and size strings, because OKX's CRC32 checksum is computed
over them. No sockets, no asyncio, no clock reads.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from marketlab.records import Interval, split_symbol
from marketlab.records import normalize_symbol as _normalize
from marketlab.settings import ws_url_at
from marketlab.venues.errors import VenueAPIError

DEFAULT_WS_URL = "wss://ws.okx.com/ws/v5/public"  # port 443: OKX closed 8443 on 2026-10-31
DEFAULT_REST_URL = "https://www.okx.com"
CHECKSUM_LEVELS = 25
IDLE_LIMIT_S = 30.0  # the server drops a connection that has had nothing pushed for this long
CANDLES_LIMIT = 300  # /market/candles page size
HISTORY_CANDLES_LIMIT = 100  # /market/history-candles page size
RECENT_CANDLES = 1440  # /market/candles serves only the latest 1440 bars
BOOK_DEPTH = 400  # levels per side of the ``books`` channel


# Our intervals → OKX bars. OKX aligns 6H and longer to Hong Kong time unless asked for the
# ``utc`` variant; Binance (and our Interval) align to UTC, so the UTC bars are used.
_BARS = {
    "1m": "1m",
    "3m": "3m",
    "5m": "5m",
    "15m": "15m",
    "30m": "30m",
    "1h": "1H",
    "2h": "2H",
    "4h": "4H",
    "6h": "6Hutc",
    "12h": "12Hutc",
    "1d": "1Dutc",
    "1w": "1Wutc",
    "1M": "1Mutc",
}
_INTERVALS = {b: iv for iv, b in _BARS.items()}

# Our channel names → OKX's (klines are ``candle<bar>``, on the business endpoint).
OKX_PUBLIC_PATH = "/ws/v5/public"
UNKNOWN_CHANNEL_OR_INSTRUMENT = "60018"  # a subscription to something OKX does not have
# Trades come from ``trades-all`` (every trade, on the business endpoint): ``trades`` pushes
# fills of one taker at one price as one aggregated trade, whose ids then skip.
CHANNELS = {"trades": "trades-all", "ticker": "tickers", "book": "books", "bookTicker": "bbo-tbt"}
BUSINESS_CHANNELS = ("trades-all",)


def check_ws_url(value: Any, arg: str = "okx_ws_url") -> str:
    """OKX's public WebSocket URL: the full ``…/ws/v5/public``, or a bare base that gets it
    appended (``ws://127.0.0.1:9100`` → ``ws://127.0.0.1:9100/ws/v5/public``)."""
    return ws_url_at(
        arg,
        value,
        OKX_PUBLIC_PATH,
        "OKX's public WebSocket URL",
        "wss://ws.okx.com (candles go to /ws/v5/business beside it)",
    )


class OkxAPIError(VenueAPIError):
    """An error body from the REST API (``code`` other than ``"0"``)."""

    def __init__(self, code: str, msg: str, status: int | None = None):
        self.code, self.msg, self.status = code, msg, status
        super().__init__(f"OKX error {code}: {msg}" + (f" (HTTP {status})" if status else ""))


# --- names -----------------------------------------------------------------------------------


def inst_id(symbol: str) -> str:
    """``BTCUSDT`` (or ``btc/usdt``, ``BTC-USDT``) → OKX's spot instrument ``BTC-USDT``."""
    if isinstance(symbol, str) and "-" in symbol:
        base, _, quote = symbol.strip().upper().partition("-")
        _normalize(base + quote)
        return f"{base}-{quote}"
    canonical = _normalize(symbol)
    try:
        base, quote = split_symbol(canonical)
    except ValueError:
        raise ValueError(
            f"cannot tell the quote currency of {symbol!r} for OKX: write it as BASE-QUOTE, e.g. "
            "'BTC-USDT'"
        ) from None
    return f"{base}-{quote}"


def symbol_of(inst: str) -> str:
    """``BTC-USDT`` → ``BTCUSDT``."""
    return inst.replace("-", "")


def bar(interval: str | Interval) -> str:
    """Our interval → the OKX bar with the same UTC boundaries."""
    iv = Interval(interval)
    try:
        return _BARS[str(iv)]
    except KeyError:
        raise ValueError(f"OKX has no {iv} candles: use one of {', '.join(_BARS)}") from None


def interval_of_bar(okx_bar: str) -> Interval:
    try:
        return Interval(_INTERVALS[okx_bar])
    except KeyError:
        raise ValueError(f"unsupported OKX bar {okx_bar!r}") from None


def business_url(public_url: str) -> str:
    """Candles are served on ``/ws/v5/business``, next to ``/ws/v5/public``."""
    base = public_url.rstrip("/")
    if base.endswith("/public"):
        return base[: -len("/public")] + "/business"
    raise ValueError(f"an OKX public WebSocket URL ends with /ws/v5/public, got {public_url!r}")


@dataclass(frozen=True, slots=True)
class Topic:
    """One subscription: a channel on one instrument."""

    channel: str
    inst_id: str

    @property
    def business(self) -> bool:
        return self.channel.startswith("candle") or self.channel in BUSINESS_CHANNELS

    @property
    def symbol(self) -> str:
        return symbol_of(self.inst_id)

    @property
    def interval(self) -> Interval | None:
        return interval_of_bar(self.channel[6:]) if self.channel.startswith("candle") else None

    def arg(self) -> dict[str, str]:
        return {"channel": self.channel, "instId": self.inst_id}


def topics_for(
    symbols: Sequence[str], intervals: Sequence[str], channels: Sequence[str]
) -> list[Topic]:
    """The subscriptions for our channel names, or ``ValueError`` naming what OKX lacks."""
    missing = [c for c in channels if c not in CHANNELS and c != "klines"]
    if missing:
        raise ValueError(
            f"OKX has no {', '.join(missing)} channel: use some of "
            f"{', '.join([*CHANNELS, 'klines'])}"
        )
    bars = [bar(iv) for iv in intervals] if "klines" in channels else []
    out: list[Topic] = []
    for s in symbols:
        inst = inst_id(s)
        out.extend(Topic(CHANNELS[c], inst) for c in channels if c in CHANNELS)
        out.extend(Topic(f"candle{b}", inst) for b in bars)
    return out


def subscribe_message(topics: Iterable[Topic]) -> bytes:
    return msgspec.json.encode({"op": "subscribe", "args": [t.arg() for t in topics]})


def unsubscribe_message(topics: Iterable[Topic]) -> bytes:
    return msgspec.json.encode({"op": "unsubscribe", "args": [t.arg() for t in topics]})


# --- the order-book checksum -----------------------------------------------------------------


def book_checksum(bids: Sequence[Sequence[str]], asks: Sequence[Sequence[str]]) -> int:
    """OKX's CRC32 over the top 25 levels, interleaved ``bid:ask`` level by level, as a signed
    32-bit integer. Levels are ``(price, size)`` in the exact strings the exchange sent."""
    parts: list[str] = []
    for i in range(min(CHECKSUM_LEVELS, max(len(bids), len(asks)))):
        if i < len(bids):
            parts += (bids[i][0], bids[i][1])
        if i < len(asks):
            parts += (asks[i][0], asks[i][1])
    crc = zlib.crc32(":".join(parts).encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc
