"""OKX v5 WebSocket pushes → records, sans-I/O: tickers, trades, books (snapshot and update,
with the exact strings), bbo-tbt, candles, and the events (subscribe, error, notice, pong).

:func:`frame_reader` gives the compiled reader of the hot channels (``csrc/okx.c``), which
reads a push to the very records :class:`OkxDecoder` makes of it, or leaves it to the decoder.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter, itemgetter
from typing import Any, Literal, cast

import msgspec

from marketlab.native import compiled, maker
from marketlab.numbers import DECODE_ERRORS, Amount, Id, IdOrNone, Price, TimeMs, amount, price
from marketlab.records import INTERVAL_NAMES, BookTicker, Interval, Kline, Ticker, Trade
from marketlab.venues.errors import FrameError, UnknownStreamError
from marketlab.venues.okx.protocol import Topic, bar, interval_of_bar, symbol_of

# --- WebSocket frames ------------------------------------------------------------------------

StrLevel = tuple[str, str]
NumLevel = tuple[float, float]


# gc=False: it holds strings, numbers and lists of them (never part of a cycle); a Struct is
# made in a tenth of a frozen dataclass's time, once per book push.
class BookMessage(msgspec.Struct, frozen=True, gc=False):
    """A ``books`` push: a snapshot or an update, in the exchange's strings.

    ``bid_changes`` and ``ask_changes`` are the same levels as (price, size) floats, checked
    by the decoder, in the form the compiled ``apply_delta`` takes, so the book applies them
    in one call; None (a message made by hand) has the book convert the strings itself.
    """

    symbol: str
    action: Literal["snapshot", "update"]
    bids: list[StrLevel]
    asks: list[StrLevel]
    seq_id: int
    prev_seq_id: int
    checksum: int | None  # None when the exchange sent none
    time: int
    bid_changes: list[NumLevel] | None = None
    ask_changes: list[NumLevel] | None = None


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


# gc=False: a decoded payload holds only numbers, strings and lists of them (never part of a
# cycle), so the garbage collector need not track one per message.
class _Arg(msgspec.Struct, gc=False):
    channel: str
    instId: str = ""


class _Push(msgspec.Struct, gc=False):
    arg: _Arg | None = None
    data: msgspec.Raw = msgspec.Raw(b"")
    action: str | None = None
    event: str | None = None
    code: str | None = None
    msg: str = ""


class TickerWire(msgspec.Struct, gc=False):
    instId: str
    last: Amount
    lastSz: Amount
    askPx: Amount
    askSz: Amount
    bidPx: Amount
    bidSz: Amount
    open24h: Amount
    high24h: Amount
    low24h: Amount
    vol24h: Amount
    volCcy24h: Amount
    ts: TimeMs


class _Trade(msgspec.Struct, gc=False):
    instId: str
    tradeId: Id
    px: Price
    sz: Amount
    side: Literal["buy", "sell"]
    ts: TimeMs


class BookWire(msgspec.Struct, gc=False):
    asks: list[list[str]]
    bids: list[list[str]]
    ts: TimeMs
    seqId: IdOrNone = -1
    prevSeqId: IdOrNone = -1
    checksum: int | None = None


_DATA: dict[str, msgspec.json.Decoder[list[Any]]] = {
    "tickers": msgspec.json.Decoder(list[TickerWire], strict=False),
    "trades": msgspec.json.Decoder(list[_Trade], strict=False),
    "trades-all": msgspec.json.Decoder(list[_Trade], strict=False),
    "books": msgspec.json.Decoder(list[BookWire], strict=False),
    "bbo-tbt": msgspec.json.Decoder(list[BookWire], strict=False),
}
# [ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]
CandleRow = tuple[TimeMs, Amount, Amount, Amount, Amount, Amount, Amount, Amount, int]
_CANDLES = msgspec.json.Decoder(list[CandleRow], strict=False)
_PUSH = msgspec.json.Decoder(_Push)


def ticker_of(t: TickerWire) -> Ticker:
    change = t.last - t.open24h
    pct = 100.0 * change / t.open24h if t.open24h else 0.0
    wavg = t.volCcy24h / t.vol24h if t.vol24h else math.nan
    # OKX says nothing of trade counts, trade ids or the previous close: NaN and -1 say so.
    return Ticker(
        symbol_of(t.instId),
        t.ts,
        t.last,
        t.lastSz,
        t.bidPx,
        t.bidSz,
        t.askPx,
        t.askSz,
        t.open24h,
        t.high24h,
        t.low24h,
        t.vol24h,
        t.volCcy24h,
        change,
        pct,
        wavg,
        math.nan,
        t.ts - 86_400_000,
        t.ts,
        -1,
        -1,
        -1,
    )


def candle(symbol: str, iv: Interval, row: Sequence[Any], event_time: int | None = None) -> Kline:
    """A candle row ``[ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]`` → a kline.

    Spot volume ``vol`` is in the base currency and ``volCcyQuote`` in the quote currency.
    OKX gives no trade count and no taker-buy volumes: ``trades`` is -1, the volumes NaN.
    """
    ts, o, h, lo, c, vol, _vol_ccy, vol_quote, confirm = row
    return Kline(
        symbol,
        str(iv),
        int(ts),
        float(o),
        float(h),
        float(lo),
        float(c),
        float(vol),
        iv.close_of(int(ts)),
        float(vol_quote),
        -1,
        math.nan,
        math.nan,
        int(confirm) == 1,
        event_time,
    )


_PRICE_AND_SIZE = itemgetter(0, 1)


class _NumLevel(msgspec.Struct, array_like=True, gc=False):
    """A level ``[price, size, ...]`` as numbers, read from its strings by the rules of
    marketlab.numbers (msgspec reads a string as a number only if it is a JSON number; the
    bounds of Price and Amount refuse NaN, infinities and negatives); later fields ignored."""

    px: Price
    sz: Amount


class _BookNumbers(msgspec.Struct, gc=False):
    """A ``books`` row's levels as numbers: the same data decoded a second time, so msgspec
    converts and checks every level in C instead of a function call per string."""

    asks: list[_NumLevel]
    bids: list[_NumLevel]


_BOOK_NUMBERS = msgspec.json.Decoder(list[_BookNumbers], strict=False)
_PAIR = attrgetter("px", "sz")


def _book_numbers(data: msgspec.Raw) -> list[_BookNumbers] | None:
    """The levels of a ``books`` push as numbers; None when a level breaks the rules (then
    :func:`_checked_levels` finds the first bad one and names it, as the error always has)."""
    try:
        return _BOOK_NUMBERS.decode(data)
    except msgspec.ValidationError:
        return None


def _checked_levels(rows: list[list[str]]) -> tuple[list[StrLevel], list[NumLevel]]:
    """A book's levels as OKX wrote them (the text its checksum was of) and as numbers, each
    checked as a number by the rules of marketlab.numbers, one at a time: ``ValueError``
    naming the first bad one."""
    for r in rows:
        if len(r) < 2:
            raise ValueError(f"a level of {len(r)} fields: {r!r}")
        price(r[0], "price")
        amount(r[1], "size")
    return [(r[0], r[1]) for r in rows], [(float(r[0]), float(r[1])) for r in rows]


def _top(levels: list[list[str]], side: str) -> NumLevel:
    """The best level of a ``bbo-tbt`` side as (price, size), checked by the rules of
    marketlab.numbers: ``ValueError`` naming what is wrong."""
    level = levels[0]
    if len(level) < 2:
        raise ValueError(f"a {side} level of {len(level)} fields: {level!r}")
    return price(level[0], side), amount(level[1], f"{side} size")


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
        except DECODE_ERRORS as exc:
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
            return self._records(channel, inst, push.action, rows, frame, push.data)
        except (*DECODE_ERRORS, ValueError, TypeError) as exc:
            if isinstance(exc, FrameError):
                raise
            raise FrameError(f"invalid {channel} payload ({exc})", frame, channel) from None

    @staticmethod
    def _records(
        channel: str,
        inst: str,
        action: str | None,
        rows: list[Any],
        frame: bytes | str,
        data: msgspec.Raw,
    ) -> list[Any]:
        if channel in ("trades-all", "trades", "tickers"):
            for row in rows:  # a row of another instrument than its push's stream
                if row.instId != inst:
                    raise ValueError(f"a row of {row.instId} on the stream of {inst}")
        if channel == "trades-all" or channel == "trades":
            symbol = symbol_of(inst)  # every row's, checked above
            return [Trade(symbol, t.tradeId, t.px, t.sz, t.side, t.ts, t.ts) for t in rows]
        if channel == "tickers":
            return [ticker_of(t) for t in rows]
        symbol = symbol_of(inst)
        if channel == "bbo-tbt":
            return [
                BookTicker(symbol, b.seqId, *_top(b.bids, "bid"), *_top(b.asks, "ask"))
                for b in rows
                if b.bids and b.asks
            ]
        if action not in ("snapshot", "update"):
            raise FrameError(f"books push with action {action!r}", frame, channel)
        kind = cast('Literal["snapshot", "update"]', action)  # checked just above
        numbers = _book_numbers(data)
        out = []
        for i, b in enumerate(rows):
            if numbers is None:
                bids, bid_changes = _checked_levels(b.bids)
                asks, ask_changes = _checked_levels(b.asks)
            else:  # every level has a price and a size, both within the rules
                n = numbers[i]
                bids, asks = list(map(_PRICE_AND_SIZE, b.bids)), list(map(_PRICE_AND_SIZE, b.asks))
                bid_changes, ask_changes = list(map(_PAIR, n.bids)), list(map(_PAIR, n.asks))
            out.append(
                BookMessage(
                    symbol,
                    kind,
                    bids,
                    asks,
                    b.seqId,
                    b.prevSeqId,
                    b.checksum,
                    b.ts,
                    bid_changes,
                    ask_changes,
                )
            )
        return out

    @staticmethod
    def _event(push: _Push) -> Any:
        if push.event in ("subscribe", "unsubscribe"):
            topic = Topic(push.arg.channel, push.arg.instId) if push.arg else None
            return SubscriptionResult(push.event, topic)
        if push.event == "error":
            return RequestError(push.code or "", push.msg)
        return Notice(push.code or "", push.msg or push.event or "")


# --- the compiled reader of the hot channels ---------------------------------------------------

# What the compiled reader makes, by kind: the names of each record's values, in the order it
# hands them to the record's maker (csrc/okx.c declares them; {} where it is not in use).
OKX_VALUES: dict[str, tuple[str, ...]] = compiled("OKX_VALUES", {})
_RECORDS: dict[str, type] = {
    "trade": Trade,
    "ticker": Ticker,
    "kline": Kline,
    "book_ticker": BookTicker,
    "book": BookMessage,
}


def candle_bars() -> dict[str, tuple[str, int, int]]:
    """OKX's candle bars of a fixed length → ``(interval, step_ms, phase_ms)``: a candle of the
    bar opens at ``phase_ms + k * step_ms`` (a week's on a Monday, not on the epoch's
    Thursday). The calendar month's bar is not here: its candles are left to the decoder."""
    table = {}
    for name in INTERVAL_NAMES:
        iv = Interval(name)
        try:
            okx_bar = bar(iv)
        except ValueError:  # an interval OKX has no candles of
            continue
        if not iv.calendar:
            table[okx_bar] = (str(iv), iv.ms, iv.open_of(0) % iv.ms)
    return table


def _leave_to_decoder(frame: bytes) -> list[Any] | None:
    """The compiled reader's pure-Python twin: :class:`OkxDecoder` reads every frame itself."""
    return None


def frame_reader() -> Callable[[bytes], list[Any] | None]:
    """``read(frame)``: the records of an OKX push of the hot channels (trades, tickers,
    books, bbo-tbt, fixed-length candles) exactly as :class:`OkxDecoder` makes them, or None
    for any other frame and anything unusual, which the decoder then reads (and names what is
    wrong with it). Compiled where the compiled part is in use; else it leaves every frame."""
    reader = compiled("OkxFrameReader")
    if reader is None:
        return _leave_to_decoder
    makers = {kind: maker(record, OKX_VALUES[kind]) for kind, record in _RECORDS.items()}
    read: Callable[[bytes], list[Any] | None] = reader(makers, candle_bars()).read
    return read
