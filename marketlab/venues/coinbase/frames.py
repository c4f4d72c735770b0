"""Coinbase Advanced Trade WebSocket frames → records and events, sans-I/O: ``l2_data`` (book
snapshots and updates), ``market_trades``, ``ticker`` / ``ticker_batch``, ``heartbeats``,
``subscriptions`` and the bare ``{"type": "error"}`` answer.

Every message is an envelope ``{channel, client_id, timestamp, sequence_num, events}``; its
``sequence_num`` counts every message of the connection, so each decoded message says its
number (:class:`Message`) and the feed checks the chain. Prices and sizes are strings, read as
numbers by the rules of :mod:`marketlab.numbers` while msgspec decodes; times are RFC 3339 with
up to nanoseconds, truncated to milliseconds.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast

import msgspec

from marketlab.native import compiled, maker
from marketlab.numbers import (
    DECODE_ERRORS,
    INT64_MAX,
    TIME_MAX_MS,
    TIME_MIN_MS,
    Amount,
    Change,
    Id,
    Price,
)
from marketlab.records import Level, Ticker, Trade
from marketlab.venues.coinbase.protocol import symbol_of
from marketlab.venues.errors import FrameError, UnknownStreamError

# --- what a frame gives ----------------------------------------------------------------------
# The values of every message (Message, BookMessage, Heartbeat) are msgspec Structs, made at the
# cost of a tuple (a frozen dataclass's __init__ sets each field through object.__setattr__);
# gc=False: they hold numbers, strings and lists of them, never a cycle.


class BookMessage(msgspec.Struct, frozen=True, gc=False):
    """One product's ``l2_data`` event: a snapshot (the whole book) or an update (absolute
    sizes; 0 removes), numbered by its message's ``sequence_num``."""

    symbol: str
    action: Literal["snapshot", "update"]
    bids: list[Level]
    asks: list[Level]
    sequence_num: int
    time: int  # the envelope's timestamp (ms): per-level event_time is not monotonic


class Heartbeat(msgspec.Struct, frozen=True, gc=False):
    """A ``heartbeats`` event: once a second per connection."""

    counter: int
    current_time: str  # Go's time.String(), not RFC 3339: kept as text


@dataclass(frozen=True, slots=True)
class Subscriptions:
    """The answer to a (un)subscribe: every subscription the connection now has, by channel."""

    channels: dict[str, list[str]]


@dataclass(frozen=True, slots=True)
class ErrorMessage:
    """``{"type": "error", "message": ...}`` (Coinbase Exchange adds a ``reason``)."""

    message: str
    reason: str = ""


class Message(msgspec.Struct, frozen=True, gc=False):
    """One decoded message: its connection ``sequence_num`` (None for an error, which has
    none), its channel and what it carries (records, :class:`BookMessage`, :class:`Heartbeat`,
    :class:`Subscriptions`, :class:`ErrorMessage`)."""

    sequence_num: int | None
    channel: str
    events: list[Any] = msgspec.field(default_factory=list)


# --- time ------------------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})"
)


def rfc3339_general(text: Any, what: str = "time") -> int:
    """An RFC 3339 time (``2023-02-09T20:32:50.714964855Z``) → ms since the epoch, the
    fraction truncated; ``ValueError`` for another shape or a time outside the venues' years.
    Every form RFC 3339 allows (any offset, ``t`` or a space between date and time); the
    measure :func:`rfc3339_ms` is held to."""
    m = _RFC3339.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"{what} {text!r} is not an RFC 3339 time")
    y, mo, d, h, mi, s, frac, zone = m.groups()
    try:
        seconds = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), tzinfo=UTC)
    except ValueError as exc:
        raise ValueError(f"{what} {text!r}: {exc}") from None
    ms = int(seconds.timestamp()) * 1000 + (int((frac + "00")[:3]) if frac else 0)
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        ms -= sign * (int(zone[1:3]) * 60 + int(zone[4:6])) * 60_000
    if not TIME_MIN_MS <= ms <= TIME_MAX_MS:
        raise ValueError(f"{what} {text!r} is outside the venues' years")
    return ms


# Whole minutes already read (``2023-02-09T20:32`` → its ms since the epoch): a message's
# timestamp and its trades' times mostly share their first 16 characters with the previous
# message's, so the date and clock are read (regex, datetime) about once a minute instead of
# for every time. (A minute, not a second: a simulator run at speed goes through many.)
_MINUTES: dict[str, int] = {}
_MINUTES_KEPT = 4096  # emptied when full: a minute's entry is wanted for about a minute

# What the rest of a time is worth in ms, read by lookup (which checks it as it reads it): its
# ``:SS`` (a leap second 60 is no datetime: refused by the general parser) and the first
# three digits of its fraction.
_SECOND_MS = {f":{s:02d}": s * 1000 for s in range(60)}
_MILLIS = {f"{ms:03d}": ms for ms in range(1000)}


def rfc3339_ms(text: Any, what: str = "time") -> int:
    """An RFC 3339 time (``2023-02-09T20:32:50.714964855Z``) → ms since the epoch, the
    fraction truncated; ``ValueError`` for another shape or a time outside the venues' years.

    The hot path of every frame (a third of it when each time went through the regex and
    datetime): the shapes Coinbase sends, ``YYYY-MM-DDTHH:MM:SS`` then ``Z`` or a fraction of
    3 to 9 digits and ``Z``, are read by slicing and lookups, the whole minute in
    ``_MINUTES``. Anything else (a minute not seen yet, offsets, a short fraction, a bad time)
    goes to :func:`rfc3339_general`, so the answers and the errors are its own."""
    if type(text) is str:
        n = len(text)
        second = _SECOND_MS.get(text[16:19])
        if second is not None and text[-1:] in ("Z", "z"):
            within = -1
            if n == 20:
                within = second
            # digits past the third: only checked (isdecimal is the regex's \d, Unicode Nd)
            elif 24 <= n <= 30 and text[19] == "." and (n == 24 or text[23:-1].isdecimal()):
                millis = _MILLIS.get(text[20:23])
                if millis is not None:
                    within = second + millis
            if within >= 0:
                minute = _MINUTES.get(text[:16])
                if minute is None:
                    ms = rfc3339_general(text, what)  # a valid time, or its error
                    if len(_MINUTES) >= _MINUTES_KEPT:
                        _MINUTES.clear()
                    _MINUTES[text[:16]] = ms - within
                    return ms
                ms = minute + within
                if TIME_MIN_MS <= ms <= TIME_MAX_MS:
                    return ms
    return rfc3339_general(text, what)


def trade_id(text: str) -> int:
    """A trade id (a string of digits) as the int our records carry; ``ValueError`` else."""
    if not (isinstance(text, str) and text.isascii() and text.isdigit()) or len(text) > 19:
        raise ValueError(f"trade id {text!r} is not a string of digits")
    value = int(text)
    if value > INT64_MAX:
        raise ValueError(f"trade id {text!r} is past int64")
    return value


def taker_side(maker_side: str) -> Literal["buy", "sell"]:
    """Coinbase's trade ``side`` → the taker's (ours). The docs: "Each market trade belongs to
    a side, which refers to the makers side"; a recorded trade at the best ask says SELL. So a
    BUY print is a resting buyer hit by a seller: the taker sold."""
    if maker_side == "BUY":
        return "sell"
    if maker_side == "SELL":
        return "buy"
    raise ValueError(f"trade side {maker_side!r} is neither BUY nor SELL")


# --- wire schemas ----------------------------------------------------------------------------


# gc=False: a decoded frame holds only numbers, strings and lists of them (never in a cycle).
class _Envelope(msgspec.Struct, gc=False):
    channel: str | None = None
    timestamp: str | None = None
    sequence_num: Id | None = None
    events: msgspec.Raw = msgspec.Raw(b"")
    type: str | None = None
    message: str = ""
    reason: str = ""


class _L2Update(msgspec.Struct, gc=False):
    side: Literal["bid", "offer"]
    price_level: Price
    new_quantity: Amount
    event_time: str = ""  # per level, not monotonic (and 1970 in snapshots): not used


class _L2Event(msgspec.Struct, gc=False):
    type: Literal["snapshot", "update"]
    product_id: str
    updates: list[_L2Update]


class TradeWire(msgspec.Struct, gc=False):
    """A trade as the WebSocket and REST ``ticker`` send it."""

    trade_id: str
    product_id: str
    price: Price
    size: Amount
    side: str
    time: str


class _TradesEvent(msgspec.Struct, gc=False):
    trades: list[TradeWire]
    type: str = ""


class TickerWire(msgspec.Struct, gc=False):
    """A ``ticker`` row; ``ticker_batch`` has no best bid and ask (NaN then)."""

    product_id: str
    price: Price
    volume_24_h: Amount = math.nan
    low_24_h: Amount = math.nan
    high_24_h: Amount = math.nan
    price_percent_chg_24_h: Change = math.nan
    best_bid: Amount = math.nan
    best_bid_quantity: Amount = math.nan
    best_ask: Amount = math.nan
    best_ask_quantity: Amount = math.nan


class _TickerEvent(msgspec.Struct, gc=False):
    tickers: list[TickerWire]
    type: str = ""


class _HeartbeatEvent(msgspec.Struct, gc=False):
    current_time: str = ""
    heartbeat_counter: Id | str = 0  # a string in the docs, an integer in production


class _SubscriptionsEvent(msgspec.Struct, gc=False):
    subscriptions: dict[str, list[str]]


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_L2 = msgspec.json.Decoder(list[_L2Event], strict=False)
_TRADES = msgspec.json.Decoder(list[_TradesEvent], strict=False)
_TICKERS = msgspec.json.Decoder(list[_TickerEvent], strict=False)
_HEARTBEATS = msgspec.json.Decoder(list[_HeartbeatEvent])
_SUBSCRIPTIONS = msgspec.json.Decoder(list[_SubscriptionsEvent])


# Product ids already named (``BTC-USD`` → ``BTCUSD``): every trade, ticker and book event
# names one, and a feed has few.
_SYMBOLS: dict[str, str] = {}
_SYMBOLS_KEPT = 4096  # emptied when full (a feed on more products than that only pays more)


def _symbol(product: str) -> str:
    """:func:`~marketlab.venues.coinbase.protocol.symbol_of`, remembered per product id (an
    id it refuses is not remembered: it raises each time). The hot paths look in ``_SYMBOLS``
    themselves and call this on a miss."""
    symbol = _SYMBOLS.get(product)
    if symbol is None:
        symbol = symbol_of(product)
        if len(_SYMBOLS) >= _SYMBOLS_KEPT:
            _SYMBOLS.clear()
        _SYMBOLS[product] = symbol
    return symbol


# The maker's side → the taker's (see :func:`taker_side`, which refuses anything else)
_TAKER: dict[str, Literal["buy", "sell"]] = {"BUY": "sell", "SELL": "buy"}


def trade_of(t: TradeWire, event_time: int | None = None) -> Trade:
    """A Coinbase trade → ours (the taker's side; see :func:`taker_side`); ``event_time`` is
    the message's, or the trade's own time where there is none (REST)."""
    when = rfc3339_ms(t.time, "trade time")
    symbol = _SYMBOLS.get(t.product_id) or _symbol(t.product_id)
    tid = t.trade_id
    # up to 18 ASCII digits is always an int64 (the hot path); anything else: trade_id says
    number = int(tid) if len(tid) <= 18 and tid.isdigit() and tid.isascii() else trade_id(tid)
    side = _TAKER.get(t.side) or taker_side(t.side)
    return Trade(
        symbol, number, t.price, t.size, side, when, when if event_time is None else event_time
    )


# A message's trades, oldest first per product: Coinbase sends them newest first
_BY_PRODUCT_AND_ID = operator.attrgetter("symbol", "trade_id")


def ticker_of(t: TickerWire, event_time: int) -> Ticker:
    """A ticker row → ours. Coinbase gives the 24 h change in percent, not the price 24 h ago:
    ``open`` is worked back from it. It says nothing of the last size, the quote volume, the
    previous close, trade ids or counts (NaN and -1 say so)."""
    pct = t.price_percent_chg_24_h
    open_ = t.price / (1.0 + pct / 100.0) if math.isfinite(pct) and pct > -100.0 else math.nan
    return Ticker(
        _SYMBOLS.get(t.product_id) or _symbol(t.product_id),
        event_time,
        t.price,
        math.nan,
        t.best_bid,
        t.best_bid_quantity,
        t.best_ask,
        t.best_ask_quantity,
        open_,
        t.high_24_h,
        t.low_24_h,
        t.volume_24_h,
        math.nan,
        t.price - open_,
        pct,
        math.nan,
        math.nan,
        event_time - 86_400_000,
        event_time,
        -1,
        -1,
        -1,
    )


# The channels read here (``candles``, ``status`` and any new one are passed over, numbered).
KNOWN_CHANNELS = frozenset(
    ("l2_data", "market_trades", "ticker", "ticker_batch", "heartbeats", "subscriptions")
)


class CoinbaseDecoder:
    """Turns Coinbase Advanced Trade WebSocket frames into :class:`Message` values.

    Bad frames raise :class:`FrameError` (what is wrong, on which channel); a message of a
    channel not read here comes back with its number and no events (Coinbase may add message
    types at any time, and asks clients to ignore those they do not support), and one with no
    channel that is no error is an :class:`UnknownStreamError`.
    """

    def decode(self, frame: bytes | str) -> Message:
        try:
            env = _ENVELOPE.decode(frame)
        except msgspec.ValidationError as exc:
            raise FrameError(f"not a Coinbase message ({exc})", frame) from None
        except DECODE_ERRORS as exc:
            raise FrameError(f"malformed JSON ({exc})", frame) from None
        if env.channel is None:
            if env.type == "error":
                return Message(None, "error", [ErrorMessage(env.message, env.reason)])
            raise UnknownStreamError("a message with no channel", frame)
        channel = env.channel
        if channel not in KNOWN_CHANNELS and env.sequence_num is not None:
            # Coinbase may add message types at any time and asks clients to ignore those they
            # do not read; its number still counts in the connection's chain
            return Message(env.sequence_num, channel, [])
        if env.sequence_num is None or env.timestamp is None or not env.events:
            raise FrameError("a message without sequence_num, timestamp or events", frame, channel)
        try:
            ts = rfc3339_ms(env.timestamp, "timestamp")
            events = self._events(channel, env.events, ts, env.sequence_num, frame)
            return Message(env.sequence_num, channel, events)
        except (*DECODE_ERRORS, ValueError, TypeError) as exc:
            if isinstance(exc, FrameError):
                raise
            raise FrameError(f"invalid {channel} events ({exc})", frame, channel) from None

    @staticmethod
    def _events(channel: str, raw: msgspec.Raw, ts: int, seq: int, frame: bytes | str) -> list[Any]:
        if channel == "l2_data":
            out: list[BookMessage] = []
            at: dict[str, int] = {}  # each product's last message in ``out``
            for e in _L2.decode(raw):
                # each side's (price, qty) tuples in one pass: rows the book's compiled
                # apply_delta reads as they are (``side`` is "bid" or "offer": decoded so)
                bids: list[Level] = []
                asks: list[Level] = []
                for u in e.updates:
                    (bids if u.side == "bid" else asks).append((u.price_level, u.new_quantity))
                symbol = _SYMBOLS.get(e.product_id) or _symbol(e.product_id)
                i = at.get(symbol)
                if i is not None and e.type == out[i].action == "update":
                    # one product's updates in one message are one change of its book (they
                    # share the message's number), applied in the order sent
                    was = out[i]
                    out[i] = BookMessage(
                        symbol, "update", was.bids + bids, was.asks + asks, seq, ts
                    )
                    continue
                at[symbol] = len(out)
                out.append(BookMessage(symbol, e.type, bids, asks, seq, ts))
            return out
        if channel == "market_trades":
            trades = [trade_of(t, ts) for e in _TRADES.decode(raw) for t in e.trades]
            if len(trades) > 1:
                # oldest first per product, as the intake finds skipped ids by order
                trades.sort(key=_BY_PRODUCT_AND_ID)
            return trades
        if channel in ("ticker", "ticker_batch"):
            return [ticker_of(t, ts) for e in _TICKERS.decode(raw) for t in e.tickers]
        if channel == "heartbeats":
            beats = []
            for h in _HEARTBEATS.decode(raw):
                counter = h.heartbeat_counter
                if isinstance(counter, str):
                    if not (counter.isascii() and counter.isdigit()) or len(counter) > 18:
                        raise ValueError(f"heartbeat_counter {counter!r} is not a count")
                    counter = int(counter)
                beats.append(Heartbeat(counter, h.current_time))
            return beats
        if channel == "subscriptions":
            return [Subscriptions(e.subscriptions) for e in _SUBSCRIPTIONS.decode(raw)]
        raise UnknownStreamError(f"unknown channel {channel!r}", frame, channel)


# --- the compiled reader of the hot channels -------------------------------------------------

# What csrc/coinbase.c makes, by record: the names of the values it hands each record's maker,
# in that order (empty where the compiled part is not in use)
COINBASE_RECORDS: dict[str, tuple[str, ...]] = compiled("COINBASE_RECORDS", {})
_CompiledReader: Any = compiled("CoinbaseReader")  # None where it is not in use
_RECORDS: dict[str, type] = {
    "message": Message,
    "book": BookMessage,
    "trade": Trade,
    "ticker": Ticker,
    "heartbeat": Heartbeat,
}


def _leaves_every_frame(frame: bytes | str) -> Message | None:
    return None


def frame_reader() -> Callable[[bytes | str], Message | None]:
    """The compiled reader of the hot channels (``l2_data``, ``market_trades``, ``ticker``,
    ``ticker_batch``, ``heartbeats``): a frame → the :class:`Message`
    :meth:`CoinbaseDecoder.decode` gives for it, or None for anything else or anything unusual
    (another channel, an error, escapes, a missing or repeated field, a number out of its rule,
    a time in another shape), which :meth:`CoinbaseDecoder.decode` then reads or names. Where
    the compiled part is not in use, a reader that leaves every frame to the decoder: the
    decoder is the reader's pure-Python twin. Each reader keeps the product ids it has named
    (by :func:`~marketlab.venues.coinbase.protocol.symbol_of`, as the decoder names them)."""
    if _CompiledReader is None:
        return _leaves_every_frame
    makers = [maker(record, COINBASE_RECORDS[name]) for name, record in _RECORDS.items()]
    reader = _CompiledReader(*makers, symbol_of)
    return cast(Callable[[bytes | str], Message | None], reader.read)
