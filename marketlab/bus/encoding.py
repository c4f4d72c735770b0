"""What goes on the bus, sans-I/O: subjects, message ids and the versioned encoding.

A message holds the records one collector took in for one (kind, symbol) within one flush
(a few milliseconds): ``marketlab.<exchange>.<kind>.<symbol>`` with kind ``trade``,
``ticker``, ``kline`` (closed candles, every interval), ``kline_open`` (updates of the open
candle), ``book``, or a perpetual's ``mark`` (mark price and the funding rate running),
``funding`` (fundings settled), ``open_interest`` or ``liquidation``. The payload is msgpack, a
map ``{"v": 1, "source": "ws", "backfill": false, "records": [...]}`` whose records are maps
with the field names of :mod:`marketlab.records` (trades, tickers, klines, the perpetuals'
records) or, for books,
:class:`BookState` (the collector's whole synced book) and :class:`BookChange` (one update
applied to it, chained by update id). ``Nats-Msg-Id`` names a message by its first and last
record ids, so a message sent twice (an ack lost, a collector restarted) is stored once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import pairwise
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from marketlab.numbers import DECODE_ERRORS, INT64_MAX, TIME_MAX_MS, Id, Level
from marketlab.records import (
    INTERVAL_NAMES,
    Funding,
    Kline,
    Liquidation,
    MarkPrice,
    OpenInterest,
    Ticker,
    Trade,
)

VERSION = 1
PREFIX = "marketlab"
KINDS = (
    "trade",
    "ticker",
    "kline",
    "kline_open",
    "book",
    "mark",
    "funding",
    "open_interest",
    "liquidation",
)

# What a reader takes from the bus at most (anything beyond is not one of ours): NATS's own
# ceiling for a message, records in one message (a collector's hold a few milliseconds' worth;
# it never seals more) and levels on a side of one book message.
MAX_PAYLOAD = 64 * 2**20
MAX_RECORDS = 100_000
MAX_LEVELS = 100_000
MAX_ID = INT64_MAX  # ids are int64 in frames and stores
MAX_TIME = TIME_MAX_MS  # times are ms since the epoch before 2100 (frames hold them in ns)

# a time from 1970 on (a venue's times are from 2010 on: the bus takes what any collector took)
_Time = Annotated[int, Meta(ge=0, le=MAX_TIME)]
_Levels = Annotated[list[Level], Meta(max_length=MAX_LEVELS)]
_Text = Annotated[str, Meta(max_length=64)]


class BookState(msgspec.Struct, frozen=True, tag="state"):
    """The collector's synced book at ``last_update_id`` (every level it knows). ``fresh``: a
    new chain starts here (the collector resynced); readers on an older chain start over."""

    symbol: str
    last_update_id: Id
    bids: _Levels
    asks: _Levels
    event_time: _Time
    verified: _Text
    fresh: bool
    cut: bool = False  # a side ends at the snapshot's limit: levels beyond it are unknown


class BookChange(msgspec.Struct, frozen=True, tag="change"):
    """One update applied to the book at ``prev_id``, giving the book at ``last_update_id``
    (quantity 0 removes a level)."""

    symbol: str
    prev_id: Id
    last_update_id: Id
    bids: _Levels
    asks: _Levels
    event_time: _Time


class _Batch(msgspec.Struct, frozen=True):
    v: int
    source: _Text
    backfill: bool
    records: list[Any]


class TradeBatch(_Batch, frozen=True):
    records: Annotated[list[Trade], Meta(max_length=MAX_RECORDS)]


class TickerBatch(_Batch, frozen=True):
    records: Annotated[list[Ticker], Meta(max_length=MAX_RECORDS)]


class KlineBatch(_Batch, frozen=True):
    records: Annotated[list[Kline], Meta(max_length=MAX_RECORDS)]


class BookBatch(_Batch, frozen=True):
    records: Annotated[list[BookState | BookChange], Meta(max_length=MAX_RECORDS)]


class MarkBatch(_Batch, frozen=True):
    records: Annotated[list[MarkPrice], Meta(max_length=MAX_RECORDS)]


class FundingBatch(_Batch, frozen=True):
    records: Annotated[list[Funding], Meta(max_length=MAX_RECORDS)]


class OpenInterestBatch(_Batch, frozen=True):
    records: Annotated[list[OpenInterest], Meta(max_length=MAX_RECORDS)]


class LiquidationBatch(_Batch, frozen=True):
    records: Annotated[list[Liquidation], Meta(max_length=MAX_RECORDS)]


class _Version(msgspec.Struct):
    v: int


_BATCHES: dict[str, type[_Batch]] = {
    "trade": TradeBatch,
    "ticker": TickerBatch,
    "kline": KlineBatch,
    "kline_open": KlineBatch,
    "book": BookBatch,
    "mark": MarkBatch,
    "funding": FundingBatch,
    "open_interest": OpenInterestBatch,
    "liquidation": LiquidationBatch,
}
PERPETUAL_KINDS: dict[type, str] = {
    MarkPrice: "mark",
    Funding: "funding",
    OpenInterest: "open_interest",
    Liquidation: "liquidation",
}
"""The kind of each perpetual's record on the bus."""
_ENCODER = msgspec.msgpack.Encoder(enc_hook=str)  # Interval (a str subclass) as its text
DECODERS = {kind: msgspec.msgpack.Decoder(cls) for kind, cls in _BATCHES.items()}


class BusFormatError(ValueError):
    """A message on the bus that is not one of ours (or of a version this reader does not
    know): the one error :func:`decode` and :func:`parse_subject` raise, saying why."""


def subject(exchange: str, kind: str, symbol: str) -> str:
    return f"{PREFIX}.{exchange}.{kind}.{symbol}"


def subjects(exchange: str) -> str:
    """Every subject of one exchange (a consumer's filter)."""
    return f"{PREFIX}.{exchange}.>"


def parse_subject(name: str) -> tuple[str, str, str]:
    """``(exchange, kind, symbol)`` of a subject; BusFormatError for anything else."""
    parts = name.split(".")
    if len(parts) != 4 or parts[0] != PREFIX or parts[2] not in _BATCHES or not parts[3]:
        shown = name if len(name) <= 120 else name[:117] + "..."
        raise BusFormatError(f"not a marketlab subject: {shown!r}")
    return parts[1], parts[2], parts[3]


def encode(records: list[Any], source: str, backfill: bool = False) -> bytes:
    return _ENCODER.encode(_Batch(VERSION, source, backfill, records))


def decode(kind: str, payload: bytes, symbol: str | None = None) -> _Batch:
    """A message's batch, every record checked: BusFormatError (saying why) for anything else:
    not msgpack, another version, a wrong shape or type, more than :data:`MAX_RECORDS` records
    or :data:`MAX_LEVELS` levels a side, a value no market has (a NaN, infinite, zero or
    negative price, a negative quantity, an id outside int64, a time (ms) outside 1970-2100,
    an unknown interval, a change that does not move its book forward, a crossed or unordered
    whole book), or a record of another symbol than ``symbol`` (the subject's)."""
    decoder = DECODERS.get(kind)
    if decoder is None:
        raise BusFormatError(f"unknown kind {kind!r}: expected one of {', '.join(KINDS)}")
    if len(payload) > MAX_PAYLOAD:
        raise BusFormatError(f"{kind} message of {len(payload)} bytes (at most {MAX_PAYLOAD})")
    batch: _Batch | None = None
    try:
        decoded = decoder.decode(payload)
    except DECODE_ERRORS as exc:  # ValidationError included; nesting
        version = _version(payload)
        if version is None or version == VERSION:
            raise BusFormatError(f"bad {kind} message ({len(payload)} bytes): {exc}") from None
    else:
        batch, version = decoded, decoded.v
    if version != VERSION:
        raise BusFormatError(
            f"{kind} message of encoding version {version}; this reader knows {VERSION}"
        )
    assert batch is not None
    if not batch.records:
        raise BusFormatError(f"{kind} message with no records")
    problem = _CHECKS[kind](batch.records, symbol)
    if problem:
        raise BusFormatError(f"bad {kind} message: {problem}")
    return batch


def _version(payload: bytes) -> int | None:
    try:
        return _VERSION.decode(payload).v
    except DECODE_ERRORS:
        return None


_VERSION = msgspec.msgpack.Decoder(_Version)


# --- the checks of records (a decoded record is of the right types; these say whether its
# values are ones a market has). The fast path is one comparison chain per record.

_INF = math.inf


def _at(i: int, record: Any, symbol: str | None) -> str:
    """What is wrong with ``record`` (records[i]), for a record that failed the fast check."""
    if symbol is not None and record.symbol != symbol:
        return f"records[{i}] of symbol {_short(record.symbol)} on a {symbol} subject"
    for name in record.__struct_fields__:
        value = getattr(record, name)
        why = _FIELD_CHECKS.get((type(record), name), _any)(value)
        if why:
            return f"records[{i}].{name} = {_short(value)}: {why}"
    return f"records[{i}]: {_short(record)}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _any(value: Any) -> str:
    return ""


def _id(value: int) -> str:
    return "" if 0 <= value <= MAX_ID else f"expected an id in 0..{MAX_ID}"


def _time(value: int) -> str:
    return "" if 0 <= value <= MAX_TIME else f"expected a time in ms in 0..{MAX_TIME}"


def _count(value: int) -> str:  # -1: the venue does not say
    return "" if -1 <= value <= MAX_ID else f"expected -1 (unknown) or a count/id up to {MAX_ID}"


def _price(value: float) -> str:
    return "" if 0.0 < value < _INF else "expected a finite price > 0"


def _amount(value: float) -> str:
    return "" if 0.0 <= value < _INF else "expected a finite amount >= 0"


def _optional(value: float) -> str:  # NaN: the venue does not say
    return "" if value != value or 0.0 <= value < _INF else "expected NaN (unknown) or >= 0"


def _finite_or_nan(value: float) -> str:
    return "" if value != value or -_INF < value < _INF else "expected NaN (unknown) or finite"


def _rate(value: float) -> str:
    return "" if -_INF < value < _INF else "expected a finite rate"


def _time_or_unknown(value: int) -> str:  # -1: the venue does not give it
    return "" if -1 <= value <= MAX_TIME else f"expected -1 (unknown) or a time in ms to {MAX_TIME}"


def _interval(value: str) -> str:
    return "" if value in INTERVAL_NAMES else "not an interval"


def _event_time(value: int | None) -> str:
    return "" if value is None else _time(value)


_FIELD_CHECKS: dict[tuple[type, str], Callable[[Any], str]] = {
    (Trade, "trade_id"): _id,
    **{(Trade, n): _time for n in ("time", "event_time")},
    (Trade, "price"): _price,
    (Trade, "qty"): _amount,
    **{(Kline, n): _time for n in ("open_time", "close_time")},
    (Kline, "event_time"): _event_time,
    (Kline, "interval"): _interval,
    (Kline, "trades"): _count,
    **{(Kline, n): _amount for n in ("open", "high", "low", "close", "volume")},
    **{
        (Kline, n): _optional
        for n in ("quote_volume", "taker_buy_volume", "taker_buy_quote_volume")
    },
    **{(Ticker, n): _time for n in ("event_time", "open_time", "close_time")},
    **{(Ticker, n): _count for n in ("first_trade_id", "last_trade_id", "trades")},
    (Ticker, "last"): _amount,
    **{
        (Ticker, n): _optional
        for n in (
            "last_qty",
            "bid",
            "bid_qty",
            "ask",
            "ask_qty",
            "open",
            "high",
            "low",
            "volume",
            "quote_volume",
            "weighted_avg",
            "prev_close",
        )
    },
    **{(Ticker, n): _finite_or_nan for n in ("change", "change_pct")},
    (MarkPrice, "event_time"): _time,
    **{(MarkPrice, n): _optional for n in ("mark", "index", "settle_estimate")},
    (MarkPrice, "funding_rate"): _finite_or_nan,
    (MarkPrice, "next_funding_time"): _time_or_unknown,
    (Funding, "funding_time"): _time,
    (Funding, "rate"): _rate,
    (Funding, "mark"): _optional,
    (OpenInterest, "time"): _time,
    (OpenInterest, "open_interest"): _amount,
    (OpenInterest, "value"): _optional,
    **{(Liquidation, n): _time for n in ("time", "event_time")},
    (Liquidation, "price"): _price,
    (Liquidation, "qty"): _amount,
    (Liquidation, "order_price"): _optional,
}


def _check_trades(records: list[Trade], symbol: str | None) -> str:
    for i, t in enumerate(records):
        if (
            (t.symbol == symbol or symbol is None)
            and 0 <= t.trade_id <= MAX_ID
            and 0.0 < t.price < _INF
            and 0.0 <= t.qty < _INF
            and 0 <= t.time <= MAX_TIME
            and 0 <= t.event_time <= MAX_TIME
        ):
            continue
        return _at(i, t, symbol)
    return ""


def _check_each(records: list[Any], symbol: str | None) -> str:
    for i, r in enumerate(records):
        if symbol is not None and r.symbol != symbol:
            return _at(i, r, symbol)
        for name in r.__struct_fields__:
            check = _FIELD_CHECKS.get((type(r), name))
            if check is not None and check(getattr(r, name)):
                return _at(i, r, symbol)
    return ""


def _check_klines(records: list[Kline], symbol: str | None) -> str:
    problem = _check_each(records, symbol)
    if problem:
        return problem
    for i, k in enumerate(records):
        if k.close_time < k.open_time:
            return f"records[{i}] closes ({k.close_time}) before it opens ({k.open_time})"
    return ""


def _check_books(records: list[BookState | BookChange], symbol: str | None) -> str:
    for i, r in enumerate(records):
        if symbol is not None and r.symbol != symbol:
            return f"records[{i}] of symbol {_short(r.symbol)} on a {symbol} subject"
        if isinstance(r, BookChange):  # no subclasses: the same as type(r) is BookChange
            if r.last_update_id <= r.prev_id:
                return (
                    f"records[{i}]: a change from {r.prev_id} to {r.last_update_id} does "
                    "not move the book forward"
                )
            continue
        bids, asks = r.bids, r.asks
        if any(a[0] <= b[0] for a, b in pairwise(bids)):
            return f"records[{i}]: bids not in strictly falling price order"
        if any(a[0] >= b[0] for a, b in pairwise(asks)):
            return f"records[{i}]: asks not in strictly rising price order"
        if bids and asks and bids[0][0] >= asks[0][0]:
            return f"records[{i}]: a crossed book (bid {bids[0][0]} >= ask {asks[0][0]})"
        if r.cut and not (bids and asks):
            return f"records[{i}]: cut at a limit with a side empty"
    return ""


_CHECKS: dict[str, Callable[[list[Any], str | None], str]] = {
    "trade": _check_trades,
    "ticker": _check_each,
    "kline": _check_klines,
    "kline_open": _check_klines,
    "book": _check_books,
    "mark": _check_each,
    "funding": _check_each,
    "open_interest": _check_each,
    "liquidation": _check_each,
}


def mark(kind: str, record: Any) -> str:
    """What orders a record within its subject (its id, as text)."""
    if kind == "trade":
        return str(record.trade_id)
    if kind == "ticker":
        return str(record.event_time)
    if kind.startswith("kline"):
        return f"{record.interval}/{record.open_time}/{record.trades}{'c' if record.closed else ''}"
    if kind == "mark":
        return str(record.event_time)
    if kind == "funding":
        return str(record.funding_time)
    if kind == "open_interest":
        return str(record.time)
    if kind == "liquidation":  # no id: known by its time, side, size and price
        return f"{record.time}{record.side[0]}{record.qty!r}@{record.price!r}"
    return f"{'s' if isinstance(record, BookState) else ''}{record.last_update_id}"


def message_id(exchange: str, kind: str, symbol: str, records: list[Any], backfill: bool) -> str:
    """The same records give the same id, whoever sends them (JetStream's duplicate window)."""
    first, last = mark(kind, records[0]), mark(kind, records[-1])
    return f"{exchange}.{kind}.{symbol}.{'b' if backfill else ''}{first}-{last}.{len(records)}"
