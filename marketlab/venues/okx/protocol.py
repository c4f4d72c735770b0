"""OKX v5 public market data, sans-I/O.

Instrument and bar names, subscription messages going out; WebSocket frames and REST payloads
coming in, turned into the same :mod:`marketlab.records` as Binance's. Order-book messages
keep the exchange's exact price and size strings, because OKX's CRC32 checksum is computed
over them. No sockets, no asyncio, no clock reads.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec

from marketlab.records import BookSnapshot, BookTicker, Interval, Kline, Ticker, Trade
from marketlab.records import normalize_symbol as _normalize
from marketlab.settings import url
from marketlab.venues.errors import FrameError, PayloadError, UnknownStreamError

__all__ = [
    "BOOK_DEPTH",
    "CANDLES_LIMIT",
    "CHANNELS",
    "CHECKSUM_LEVELS",
    "DEFAULT_REST_URL",
    "DEFAULT_WS_URL",
    "HISTORY_CANDLES_LIMIT",
    "IDLE_LIMIT_S",
    "OKX_PUBLIC_PATH",
    "RECENT_CANDLES",
    "UNKNOWN_CHANNEL_OR_INSTRUMENT",
    "BookMessage",
    "FrameError",
    "Notice",
    "OkxAPIError",
    "OkxDecoder",
    "PayloadError",
    "Pong",
    "RequestError",
    "StrLevel",
    "SubscriptionResult",
    "Topic",
    "UnknownStreamError",
    "bar",
    "book_checksum",
    "business_url",
    "candle",
    "check_ws_url",
    "inst_id",
    "interval_of_bar",
    "parse_books",
    "parse_candles",
    "parse_instruments",
    "parse_tickers",
    "parse_time",
    "subscribe_message",
    "symbol_of",
    "topics_for",
    "unsubscribe_message",
]

DEFAULT_WS_URL = "wss://ws.okx.com:8443/ws/v5/public"
DEFAULT_REST_URL = "https://www.okx.com"
CHECKSUM_LEVELS = 25
IDLE_LIMIT_S = 30.0  # the server drops a connection that has had nothing pushed for this long
CANDLES_LIMIT = 300  # /market/candles page size
HISTORY_CANDLES_LIMIT = 100  # /market/history-candles page size
RECENT_CANDLES = 1440  # /market/candles serves only the latest 1440 bars
BOOK_DEPTH = 400  # levels per side of the ``books`` channel

# Quote currencies, longest first, to split a canonical symbol into OKX's BASE-QUOTE.
_QUOTES = ("FDUSD", "USDT", "USDC", "EURT", "BUSD", "USD", "EUR", "BTC", "ETH", "OKB", "DAI",
           "TRY", "BRL", "GBP", "AUD", "SGD", "AED", "USDG")  # fmt: skip
_QUOTES_BY_LENGTH = sorted(_QUOTES, key=len, reverse=True)

# Our intervals → OKX bars. OKX aligns 6H and longer to Hong Kong time unless asked for the
# ``utc`` variant; Binance (and our Interval) align to UTC, so the UTC bars are used.
_BARS = {"1m": "1m", "3m": "3m", "5m": "5m", "15m": "15m", "30m": "30m", "1h": "1H",
         "2h": "2H", "4h": "4H", "6h": "6Hutc", "12h": "12Hutc", "1d": "1Dutc",
         "1w": "1Wutc", "1M": "1Mutc"}  # fmt: skip
_INTERVALS = {b: iv for iv, b in _BARS.items()}

# Our channel names → OKX's (klines are ``candle<bar>``, on the business endpoint).
OKX_PUBLIC_PATH = "/ws/v5/public"
UNKNOWN_CHANNEL_OR_INSTRUMENT = "60018"  # a subscription to something OKX does not have
CHANNELS = {"trades": "trades", "ticker": "tickers", "book": "books", "bookTicker": "bbo-tbt"}


def check_ws_url(value: Any, arg: str = "okx_ws_url") -> str:
    """OKX's public WebSocket URL: the full ``…/ws/v5/public``, or a bare base that gets it
    appended (``ws://127.0.0.1:9100`` → ``ws://127.0.0.1:9100/ws/v5/public``)."""
    text = url(arg, value, ("ws", "wss")).rstrip("/")
    path = urlsplit(text).path
    if not path:
        return text + OKX_PUBLIC_PATH
    if path.endswith(OKX_PUBLIC_PATH):
        return text
    raise ValueError(
        f"{arg} {value!r} should be OKX's public WebSocket URL ending in {OKX_PUBLIC_PATH} "
        "or a bare base such as wss://ws.okx.com:8443 (candles go to /ws/v5/business beside it)"
    )


class OkxAPIError(Exception):
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
    for quote in _QUOTES_BY_LENGTH:
        if canonical.endswith(quote) and len(canonical) > len(quote):
            return f"{canonical[: -len(quote)]}-{quote}"
    raise ValueError(
        f"cannot tell the quote currency of {symbol!r} for OKX: write it as BASE-QUOTE, e.g. 'BTC-USDT'"
    )


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
        return self.channel.startswith("candle")

    @property
    def symbol(self) -> str:
        return symbol_of(self.inst_id)

    @property
    def interval(self) -> Interval | None:
        return interval_of_bar(self.channel[6:]) if self.business else None

    def arg(self) -> dict[str, str]:
        return {"channel": self.channel, "instId": self.inst_id}


def topics_for(
    symbols: Sequence[str], intervals: Sequence[str], channels: Sequence[str]
) -> list[Topic]:
    """The subscriptions for our channel names, or ``ValueError`` naming what OKX lacks."""
    missing = [c for c in channels if c not in CHANNELS and c != "klines"]
    if missing:
        raise ValueError(
            f"OKX has no {', '.join(missing)} channel: use some of {', '.join([*CHANNELS, 'klines'])}"
        )
    bars = [bar(iv) for iv in intervals] if "klines" in channels else []
    out = []
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


# --- WebSocket frames ------------------------------------------------------------------------

StrLevel = tuple[str, str]


@dataclass(frozen=True, slots=True)
class BookMessage:
    """A ``books`` push: a snapshot or an update, in the exchange's strings."""

    symbol: str
    action: Literal["snapshot", "update"]
    bids: list[StrLevel]
    asks: list[StrLevel]
    seq_id: int
    prev_seq_id: int
    checksum: int | None  # None when the exchange sent none
    time: int


@dataclass(frozen=True, slots=True)
class SubscriptionResult:
    event: str  # "subscribe" | "unsubscribe"
    topic: Topic | None


@dataclass(frozen=True, slots=True)
class RequestError:
    code: str
    msg: str


@dataclass(frozen=True, slots=True)
class Notice:
    """A service notice; code 64008 announces the connection will close for an upgrade."""

    code: str
    msg: str

    @property
    def closing(self) -> bool:
        return self.code == "64008"


@dataclass(frozen=True, slots=True)
class Pong:
    pass


class _Arg(msgspec.Struct):
    channel: str
    instId: str = ""


class _Push(msgspec.Struct):
    arg: _Arg | None = None
    data: msgspec.Raw = msgspec.Raw(b"")
    action: str | None = None
    event: str | None = None
    code: str | None = None
    msg: str = ""


class _Ticker(msgspec.Struct):
    instId: str
    last: float
    lastSz: float
    askPx: float
    askSz: float
    bidPx: float
    bidSz: float
    open24h: float
    high24h: float
    low24h: float
    vol24h: float
    volCcy24h: float
    ts: int


class _Trade(msgspec.Struct):
    instId: str
    tradeId: int
    px: float
    sz: float
    side: Literal["buy", "sell"]
    ts: int


class _Book(msgspec.Struct):
    asks: list[list[str]]
    bids: list[list[str]]
    ts: int
    seqId: int = -1
    prevSeqId: int = -1
    checksum: int | None = None


_DATA = {
    "tickers": msgspec.json.Decoder(list[_Ticker], strict=False),
    "trades": msgspec.json.Decoder(list[_Trade], strict=False),
    "books": msgspec.json.Decoder(list[_Book], strict=False),
    "bbo-tbt": msgspec.json.Decoder(list[_Book], strict=False),
}
_CANDLES = msgspec.json.Decoder(list[tuple[int, float, float, float, float, float, float, float, int]], strict=False)  # fmt: skip
_PUSH = msgspec.json.Decoder(_Push)


def _ticker(t: _Ticker) -> Ticker:
    change = t.last - t.open24h
    pct = 100.0 * change / t.open24h if t.open24h else 0.0
    wavg = t.volCcy24h / t.vol24h if t.vol24h else math.nan
    # OKX says nothing of trade counts, trade ids or the previous close: NaN and -1 say so.
    return Ticker(symbol_of(t.instId), t.ts, t.last, t.lastSz, t.bidPx, t.bidSz, t.askPx, t.askSz,
                  t.open24h, t.high24h, t.low24h, t.vol24h, t.volCcy24h, change, pct, wavg, math.nan,
                  t.ts - 86_400_000, t.ts, -1, -1, -1)  # fmt: skip


def candle(symbol: str, iv: Interval, row: Sequence[Any], event_time: int | None = None) -> Kline:
    """A candle row ``[ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]`` → a kline.

    Spot volume ``vol`` is in the base currency and ``volCcyQuote`` in the quote currency.
    OKX gives no trade count and no taker-buy volumes: ``trades`` is -1, the volumes NaN.
    """
    ts, o, h, lo, c, vol, _vol_ccy, vol_quote, confirm = row
    return Kline(symbol, str(iv), int(ts), float(o), float(h), float(lo), float(c), float(vol),
                 iv.close_of(int(ts)), float(vol_quote), -1, math.nan, math.nan, int(confirm) == 1,
                 event_time)  # fmt: skip


def _levels(rows: list[list[str]]) -> list[StrLevel]:
    return [(r[0], r[1]) for r in rows]


class OkxDecoder:
    """Turns OKX public WebSocket frames into records and control events.

    Bad frames raise :class:`FrameError`; nothing one bad frame does carries over.
    """

    def decode(self, frame: bytes | str) -> list[Any]:
        if frame in (b"pong", "pong"):
            return [Pong()]
        try:
            push = _PUSH.decode(frame)
        except msgspec.ValidationError as exc:
            raise FrameError(f"not an OKX message ({exc})", frame) from None
        except msgspec.DecodeError as exc:
            raise FrameError(f"malformed JSON ({exc})", frame) from None
        if push.event is not None:
            return [self._event(push)]
        if push.arg is None or not push.data:
            raise UnknownStreamError("unrecognised frame", frame)
        channel, inst = push.arg.channel, push.arg.instId
        try:
            if channel.startswith("candle"):
                iv = interval_of_bar(channel[6:])
                symbol = symbol_of(inst)
                return [candle(symbol, iv, r) for r in _CANDLES.decode(push.data)]
            decoder = _DATA.get(channel)
            if decoder is None:
                raise UnknownStreamError(f"unknown channel {channel!r}", frame, channel)
            rows = decoder.decode(push.data)
        except (msgspec.ValidationError, msgspec.DecodeError, ValueError, TypeError) as exc:
            if isinstance(exc, FrameError):
                raise
            raise FrameError(f"invalid {channel} payload ({exc})", frame, channel) from None
        if channel == "trades":
            return [
                Trade(symbol_of(t.instId), t.tradeId, t.px, t.sz, t.side, t.ts, t.ts) for t in rows
            ]
        if channel == "tickers":
            return [_ticker(t) for t in rows]
        symbol = symbol_of(inst)
        if channel == "bbo-tbt":
            return [
                BookTicker(symbol, b.seqId, float(b.bids[0][0]), float(b.bids[0][1]),
                           float(b.asks[0][0]), float(b.asks[0][1]))
                for b in rows if b.bids and b.asks
            ]  # fmt: skip
        action = push.action
        if action not in ("snapshot", "update"):
            raise FrameError(f"books push with action {action!r}", frame, channel)
        return [
            BookMessage(symbol, action, _levels(b.bids), _levels(b.asks), b.seqId, b.prevSeqId,
                        b.checksum, b.ts)
            for b in rows
        ]  # fmt: skip

    @staticmethod
    def _event(push: _Push) -> Any:
        if push.event in ("subscribe", "unsubscribe"):
            topic = Topic(push.arg.channel, push.arg.instId) if push.arg else None
            return SubscriptionResult(push.event, topic)
        if push.event == "error":
            return RequestError(push.code or "", push.msg)
        return Notice(push.code or "", push.msg or push.event or "")


# --- REST payloads ---------------------------------------------------------------------------


class _Envelope(msgspec.Struct):
    code: str
    msg: str = ""
    data: msgspec.Raw = msgspec.Raw(b"")


def _data(payload: bytes | str | Any, what: str) -> msgspec.Raw:
    raw = payload if isinstance(payload, bytes | str) else msgspec.json.encode(payload)
    try:
        env = msgspec.json.decode(raw, type=_Envelope, strict=False)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise PayloadError(f"{what}: {exc}") from None
    if env.code != "0":
        raise OkxAPIError(env.code, env.msg)
    if not env.data:
        raise PayloadError(f"{what}: no data")
    return env.data


def _rows(payload: bytes | str | Any, typ: Any, what: str) -> Any:
    data = _data(payload, what)
    try:
        return msgspec.json.decode(data, type=typ, strict=False)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise PayloadError(f"{what}: {exc}") from None


def parse_time(payload: bytes | str | Any) -> int:
    """``/api/v5/public/time`` → server time in ms."""
    rows = _rows(payload, list[dict[str, int]], "/api/v5/public/time")
    if not rows or "ts" not in rows[0]:
        raise PayloadError("/api/v5/public/time: no ts")
    return int(rows[0]["ts"])


def parse_instruments(payload: bytes | str | Any) -> dict[str, float]:
    """``/api/v5/public/instruments`` → our symbol → price tick (``tickSz``) of each listed."""
    rows = _rows(payload, list[dict[str, Any]], "/api/v5/public/instruments")
    out = {}
    for r in rows:
        inst, tick = r.get("instId"), r.get("tickSz")
        if isinstance(inst, str):
            try:
                out[symbol_of(inst)] = float(tick) if tick else 0.0
            except (TypeError, ValueError):
                out[symbol_of(inst)] = 0.0
    return out


def parse_candles(payload: bytes | str | Any, symbol: str, interval: str) -> list[Kline]:
    """``/market/candles`` or ``/market/history-candles`` (newest first) → klines, oldest first."""
    iv = Interval(interval)
    rows = _rows(payload, list[tuple[int, float, float, float, float, float, float, float, int]],
                 f"/api/v5/market/candles for {symbol} {iv}")  # fmt: skip
    return [candle(_normalize(symbol), iv, r) for r in reversed(rows)]


def parse_books(payload: bytes | str | Any, symbol: str) -> BookSnapshot:
    """``/market/books`` → a snapshot. REST books carry no sequence id: ``last_update_id`` is
    the book's time, which says how fresh it is and nothing about the stream."""
    rows = _rows(payload, list[_Book], f"/api/v5/market/books for {symbol}")
    if not rows:
        raise PayloadError(f"/api/v5/market/books for {symbol}: empty data")
    b = rows[0]
    return BookSnapshot(_normalize(symbol), b.ts,
                        [(float(p), float(q)) for p, q, *_ in b.bids],
                        [(float(p), float(q)) for p, q, *_ in b.asks], b.ts)  # fmt: skip


def parse_tickers(payload: bytes | str | Any) -> list[Ticker]:
    """``/market/ticker`` or ``/market/tickers`` → tickers."""
    return [_ticker(t) for t in _rows(payload, list[_Ticker], "/api/v5/market/tickers")]
