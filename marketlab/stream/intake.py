"""What a feed takes in: every record counted on its (symbol, stream) row, a repeat dropped,
the rest delivered to the sink through the entry for its kind. A venue's frame reader hands a
record of a stream it knows straight to its kind's taker (``Intake.takers``: the hot path); any
other record (from REST, or from the venue's careful decoder) first has its row and taker looked
up by its kind."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from marketlab.records import (
    AggTrade,
    BookDelta,
    BookSnapshot,
    BookTicker,
    Kline,
    MiniTicker,
    Record,
    Ticker,
    Trade,
)
from marketlab.stream.state import StreamStats

Sink = Callable[[Sequence[Record], str], None]
Deliver = Callable[[Any, str], None]  # one record and its source


class TypedSink(Protocol):
    """A sink with an entry per kind of record, so the hot path skips a dispatch per record
    (:class:`marketlab.lab.market_state.MarketState`); any kind it lacks goes to ``on_records``."""

    def on_records(self, records: Sequence[Record], source: str) -> None: ...


# What orders each kind of record, so a repeat can be recognised (klines are handled apart).
_MARKS: dict[type, Callable[[Any], int]] = {
    Trade: lambda r: r.trade_id,
    AggTrade: lambda r: r.agg_id,
    Ticker: lambda r: r.event_time,
    MiniTicker: lambda r: r.event_time,
    BookTicker: lambda r: r.update_id,
    BookDelta: lambda r: r.last_update_id,
}

_KEYS: dict[type, str] = {
    Trade: "trade",
    AggTrade: "aggTrade",
    Ticker: "ticker",
    MiniTicker: "miniTicker",
    BookTicker: "bookTicker",
    BookDelta: "depth",
    BookSnapshot: "depth",
}

# The kinds a venue pushes alone (a push holds nothing else) whose row is fixed by the kind.
_ROWS = {kind: _KEYS[kind] for kind in (Trade, AggTrade, Ticker, MiniTicker, BookTicker)}


class Intake:
    """Mixed into :class:`~marketlab.stream.feed.Feed`."""

    stream_stats: dict[tuple[str, str], StreamStats]
    duplicates: int
    _kline: Callable[[Kline, str, bool], bool]  # the feed's kline integrity
    _trade_gap: Callable[[str, int, int], None]  # the feed's trade integrity

    def _init_intake(self, sink: Sink | TypedSink) -> None:
        if hasattr(sink, "on_records"):  # a TypedSink
            self.sink: Sink = sink.on_records
        else:
            self.sink = sink
        self.deliver: dict[type, Deliver] = {
            kind: _entry(sink, kind, self.sink) for kind in _ENTRIES
        }
        self._deliver_kline = self.deliver[Kline]
        self._deliver_trade = self.deliver[Trade]
        self._deliver_ticker = self.deliver[Ticker]
        self._deliver_delta = self.deliver[BookDelta]
        backfilled = getattr(sink, "on_backfilled_trades", None)
        self._deliver_backfilled: Callable[[str, list[Trade], str], None] = backfilled or (
            lambda symbol, trades, source: self.sink(trades, source)
        )
        self.takers: dict[type, Callable[[StreamStats, Any, str], None]] = {
            Trade: self._take_trade,
            BookDelta: self._take_delta,
            Ticker: self._take_ticker,
            Kline: self._take_kline,
        }

    def _record(self, record: Record, source: str) -> None:
        """Any record from any path (REST, a venue's decoder): to its taker below."""
        kind = type(record)
        if type(record) is Kline:  # (not ``kind``: mypy narrows ``record`` on this form only)
            key = (record.symbol, f"kline_{record.interval}")
        else:
            key = (record.symbol, _KEYS.get(kind, kind.__name__))
        stats = self.stream_stats.get(key)
        if stats is None:
            stats = self.stream_stats[key] = StreamStats()
        self.takers.get(kind, self._take)(stats, record, source)

    def _take_pushed(self, records: Sequence[Any], source: str) -> bool:
        """A venue's push of records of one kind (trades, a ticker): each counted on the row of
        the status table its symbol has (what :meth:`_record` would look up) and straight to
        its taker, without a look per record. False, taking nothing, for any other push
        (candles, whose row is per interval; book messages; control events)."""
        row = _ROWS.get(type(records[0])) if records else None
        if row is None:
            return False
        take = self.takers.get(type(records[0]), self._take)
        rows = self.stream_stats
        for record in records:
            key = (record.symbol, row)
            stats = rows.get(key)
            if stats is None:
                stats = rows[key] = StreamStats()
            take(stats, record, source)
        return True

    # Takers: one record of a (symbol, stream) row, counted on ``stats``, which also holds the
    # newest id delivered (overlapping connections repeat what the other delivered). A venue's
    # decoder calls them directly for the streams it knows (the hot path); one per busy kind.

    def _take(self, stats: StreamStats, record: Record, source: str) -> None:
        mark = _MARKS.get(type(record))
        if mark is not None:
            value = mark(record)
            if value <= stats.mark:
                self.duplicates += 1
                return
            stats.mark = value
        stats.messages += 1
        stats.last_received = time.time()
        stats.source = source
        self.deliver.get(type(record), self._deliver_other)(record, source)

    def _take_trade(self, stats: StreamStats, trade: Trade, source: str) -> None:
        if trade.trade_id <= stats.mark:
            self.duplicates += 1
            return
        if trade.trade_id > stats.mark + 1 and stats.mark >= 0:  # ids skipped: fetch them
            self._trade_gap(trade.symbol, stats.mark + 1, trade.trade_id - 1)
        stats.mark = trade.trade_id
        stats.messages += 1
        stats.last_received = time.time()
        stats.source = source
        self._deliver_trade(trade, source)

    def _take_delta(self, stats: StreamStats, delta: BookDelta, source: str) -> None:
        if delta.last_update_id <= stats.mark:
            self.duplicates += 1
            return
        stats.mark = delta.last_update_id
        stats.messages += 1
        stats.last_received = time.time()
        stats.source = source
        self._delta(delta)
        self._deliver_delta(delta, source)

    def _take_ticker(self, stats: StreamStats, ticker: Ticker, source: str) -> None:
        if ticker.event_time <= stats.mark:
            self.duplicates += 1
            return
        stats.mark = ticker.event_time
        stats.messages += 1
        stats.last_received = time.time()
        stats.source = source
        self._deliver_ticker(ticker, source)

    def _take_kline(self, stats: StreamStats, kline: Kline, source: str) -> None:
        stats.messages += 1
        stats.last_received = time.time()
        stats.source = source
        self._kline(kline, source, True)

    def _count(self, key: tuple[str, str], source: str) -> None:
        """One more message on a (symbol, stream) row of the status table."""
        stats = self.stream_stats.get(key)
        if stats is None:
            stats = self.stream_stats[key] = StreamStats()
        stats.messages += 1
        stats.last_received = time.time()
        stats.source = source

    def _deliver_other(self, record: Record, source: str) -> None:
        self.sink((record,), source)

    def _delta(self, delta: BookDelta) -> None:
        """Diff-depth events; venues whose books are kept from them override this."""


_ENTRIES: dict[type, str] = {
    Trade: "on_trade",
    Kline: "on_kline",
    Ticker: "on_ticker",
    BookDelta: "on_delta",
}


def _entry(sink: Any, kind: type, on_records: Sink) -> Deliver:
    """``sink``'s entry for ``kind``, or one that hands the record to ``on_records``."""
    entry = getattr(sink, _ENTRIES[kind], None)
    if entry is not None:
        return entry

    def deliver(record: Any, source: str) -> None:
        on_records((record,), source)

    return deliver
