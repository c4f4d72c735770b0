"""What goes on the bus, sans-I/O: subjects, message ids and the versioned encoding.

A message holds the records one collector took in for one (kind, symbol) within one flush
(a few milliseconds): ``marketlab.<exchange>.<kind>.<symbol>`` with kind ``trade``,
``ticker``, ``kline`` (closed candles, every interval), ``kline_open`` (updates of the open
candle) or ``book``. The payload is msgpack, a
map ``{"v": 1, "source": "ws", "backfill": false, "records": [...]}`` whose records are maps
with the field names of :mod:`marketlab.records` (trades, tickers, klines) or, for books,
:class:`BookState` (the collector's whole synced book) and :class:`BookChange` (one update
applied to it, chained by update id). ``Nats-Msg-Id`` names a message by its first and last
record ids, so a message sent twice (an ack lost, a collector restarted) is stored once.
"""

from __future__ import annotations

from typing import Any

import msgspec

from marketlab.records import Kline, Level, Ticker, Trade

VERSION = 1
PREFIX = "marketlab"
KINDS = ("trade", "ticker", "kline", "kline_open", "book")


class BookState(msgspec.Struct, frozen=True, tag="state"):
    """The collector's synced book at ``last_update_id`` (every level it knows). ``fresh``: a
    new chain starts here (the collector resynced); readers on an older chain start over."""

    symbol: str
    last_update_id: int
    bids: list[Level]
    asks: list[Level]
    event_time: int
    verified: str
    fresh: bool
    cut: bool = False  # a side ends at the snapshot's limit: levels beyond it are unknown


class BookChange(msgspec.Struct, frozen=True, tag="change"):
    """One update applied to the book at ``prev_id``, giving the book at ``last_update_id``
    (quantity 0 removes a level)."""

    symbol: str
    prev_id: int
    last_update_id: int
    bids: list[Level]
    asks: list[Level]
    event_time: int


class _Batch(msgspec.Struct, frozen=True):
    v: int
    source: str
    backfill: bool
    records: list[Any]


class TradeBatch(_Batch, frozen=True):
    records: list[Trade]


class TickerBatch(_Batch, frozen=True):
    records: list[Ticker]


class KlineBatch(_Batch, frozen=True):
    records: list[Kline]


class BookBatch(_Batch, frozen=True):
    records: list[BookState | BookChange]


_BATCHES: dict[str, type[_Batch]] = {"trade": TradeBatch, "ticker": TickerBatch, "kline": KlineBatch,
                                     "kline_open": KlineBatch, "book": BookBatch}  # fmt: skip
_ENCODER = msgspec.msgpack.Encoder(enc_hook=str)  # Interval (a str subclass) as its text
DECODERS = {kind: msgspec.msgpack.Decoder(cls) for kind, cls in _BATCHES.items()}


class BusFormatError(ValueError):
    """A message on the bus that is not one of ours (or of a version this reader does not know)."""


def subject(exchange: str, kind: str, symbol: str) -> str:
    return f"{PREFIX}.{exchange}.{kind}.{symbol}"


def subjects(exchange: str) -> str:
    """Every subject of one exchange (a consumer's filter)."""
    return f"{PREFIX}.{exchange}.>"


def parse_subject(name: str) -> tuple[str, str, str]:
    """``(exchange, kind, symbol)`` of a subject; BusFormatError for anything else."""
    parts = name.split(".")
    if len(parts) != 4 or parts[0] != PREFIX or parts[2] not in _BATCHES:
        raise BusFormatError(f"not a marketlab subject: {name!r}")
    return parts[1], parts[2], parts[3]


def encode(records: list[Any], source: str, backfill: bool = False) -> bytes:
    return _ENCODER.encode(_Batch(VERSION, source, backfill, records))


def decode(kind: str, payload: bytes) -> _Batch:
    """A message's batch; BusFormatError (saying why) when it is not one this reader knows."""
    try:
        batch = DECODERS[kind].decode(payload)
    except (msgspec.DecodeError, KeyError) as exc:
        raise BusFormatError(f"bad {kind} message ({len(payload)} bytes): {exc}") from None
    if batch.v != VERSION:
        raise BusFormatError(
            f"{kind} message of encoding version {batch.v}; this reader knows {VERSION}"
        )
    return batch


def mark(kind: str, record: Any) -> str:
    """What orders a record within its subject (its id, as text)."""
    if kind == "trade":
        return str(record.trade_id)
    if kind == "ticker":
        return str(record.event_time)
    if kind.startswith("kline"):
        return f"{record.interval}/{record.open_time}/{record.trades}{'c' if record.closed else ''}"
    return f"{'s' if isinstance(record, BookState) else ''}{record.last_update_id}"


def message_id(exchange: str, kind: str, symbol: str, records: list[Any], backfill: bool) -> str:
    """The same records give the same id, whoever sends them (JetStream's duplicate window)."""
    first, last = mark(kind, records[0]), mark(kind, records[-1])
    return f"{exchange}.{kind}.{symbol}.{'b' if backfill else ''}{first}-{last}.{len(records)}"
