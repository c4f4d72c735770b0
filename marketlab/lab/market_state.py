"""What the collector has taken in, held for readers in other threads: rolling trades and
klines per series, the newest prices, and the subscribers records go to. Fed record by record
on the collector thread through an entry per kind (the hot path: no lock but a rolling
buffer's block write), read as fresh copies."""

from __future__ import annotations

import functools
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from marketlab.records import (
    BookDelta,
    Interval,
    Kline,
    Liquidation,
    MarkPrice,
    OpenInterest,
    Record,
    Ticker,
    Trade,
)
from marketlab.rings import KlineBuffer, TradeBuffer

log = logging.getLogger("marketlab.lab")

PERPETUAL_HISTORY = 10_000  # liquidations and open interest readings kept per perpetual

_NO_PRICE = {
    "last": float("nan"),
    "bid": float("nan"),
    "ask": float("nan"),
    "change_pct": float("nan"),
    "volume": float("nan"),
}


class MarketState:
    def __init__(
        self,
        symbols: Sequence[str],
        intervals: Sequence[Interval],
        trade_capacity: int,
        kline_capacity: int,
        closed_kline: Callable[[Kline], None],
    ):
        """``closed_kline(k)`` is called for every closed kline (the store takes them)."""
        self.symbols = list(symbols)
        self.trades = {s: TradeBuffer(trade_capacity) for s in self.symbols}
        self._rings = {s: buf.ring for s, buf in self.trades.items()}  # (the hot path's)
        self.klines = {
            (s, iv): KlineBuffer(iv, kline_capacity) for s in self.symbols for iv in intervals
        }
        self.closed_kline = closed_kline
        # keeps every trade when ticks are stored: the trade buffers hand it their column
        # blocks (see ``store_trades``), backfilled trades come as records (``add_many``)
        self.trade_store: Any = None
        self.delta_store: Any = None  # keeps every book update (``add_delta``) when asked to
        self.callbacks: list[Callable[[Record], Any]] = []
        # symbol → (ticker, event time shown, received at, source); replaced whole, never
        # changed in place, so readers in other threads need no lock
        self._tickers: dict[str, tuple[Ticker, int, float, str]] = {}
        # perpetuals: the newest mark price (with the funding rate) per symbol, replaced whole;
        # the latest liquidations and open interest readings, bounded
        self.marks: dict[str, MarkPrice] = {}
        self.liquidations: dict[str, deque[Liquidation]] = {}
        self.open_interest: dict[str, deque[OpenInterest]] = {}
        # keeps a perpetual's fundings, open interest and liquidations when history is kept
        self.perpetual_store: Callable[[Record], None] | None = None

    def on_records(self, records: Sequence[Record], source: str) -> None:
        for r in records:
            # type(r) is X, not isinstance: exactly these kinds (and mypy narrows ``r`` on it)
            if type(r) is Trade:
                self.on_trade(r, source)
            elif type(r) is Kline:
                self.on_kline(r, source)
            elif type(r) is Ticker:
                self.on_ticker(r, source)
            else:
                if type(r) is MarkPrice:
                    self.marks[r.symbol] = merged_mark(self.marks.get(r.symbol), r)
                elif type(r) is Liquidation:
                    self._kept(self.liquidations, r.symbol).append(r)
                elif type(r) is OpenInterest:
                    self._kept(self.open_interest, r.symbol).append(r)
                if self.perpetual_store is not None:
                    self.perpetual_store(r)
                if self.callbacks:
                    self.notify(r)

    @staticmethod
    def _kept(held: dict[str, deque[Any]], symbol: str) -> deque[Any]:
        kept = held.get(symbol)
        if kept is None:
            kept = held[symbol] = deque(maxlen=PERPETUAL_HISTORY)
        return kept

    # One entry per kind, called by the feed for each record (the hot path).

    def on_trade(self, r: Trade, source: str) -> None:
        # the ring keeps the newest trade too: merged into prices when they are read
        self._rings[r.symbol].add(r.time, r.price, r.qty, r.side, r.trade_id, time.time(), source)
        if self.callbacks:
            self.notify(r)

    def store_trades(self, store: Any) -> None:
        """Every trade taken from now on also goes to ``store`` (None: no longer)."""
        self.trade_store = store
        for symbol, buf in self.trades.items():
            buf.store_blocks(None if store is None else functools.partial(store.add_block, symbol))

    def flush_trades(self) -> None:
        """Trades still pending in the buffers into their columns (and so to the store)."""
        for buf in self.trades.values():
            buf.flush()

    def on_backfilled_trades(self, symbol: str, trades: list[Trade], source: str) -> None:
        """Trades a gap skipped, fetched late: put in their place by id, not appended."""
        buf = self.trades.get(symbol)
        if buf is not None:
            buf.merge(trades)
        if self.trade_store is not None:
            self.trade_store.add_many(trades)
        if self.callbacks:
            for t in trades:
                self.notify(t)

    def on_kline(self, k: Kline, source: str) -> None:
        key = (k.symbol, k.interval)
        buf = self.klines.get(key)  # type: ignore[arg-type]  # a str finds its Interval key
        if buf is not None:
            buf.upsert(k)
        if k.closed:
            self.closed_kline(k)
        if self.callbacks:
            self.notify(k)

    def on_ticker(self, t: Ticker, source: str) -> None:
        held = self._tickers.get(t.symbol)  # self.ticker(t, source), inlined: once per ticker
        shown = t.event_time if held is None or held[1] <= t.event_time else held[1]
        self._tickers[t.symbol] = (t, shown, time.time(), source)
        if self.callbacks:
            self.notify(t)

    def on_delta(self, d: BookDelta, source: str) -> None:
        if self.delta_store is not None:  # the feed keeps the book; a store may keep each update
            self.delta_store.add_delta(d, source)
        if self.callbacks:
            self.notify(d)

    def notify(self, r: Record) -> None:
        for cb in tuple(self.callbacks):
            try:
                cb(r)
            except Exception:
                log.exception("subscriber %r failed on %s", cb, type(r).__name__)

    def ticker(self, t: Ticker, source: str) -> None:
        """A ticker for prices: kept as it came (a row is made of it when prices are read);
        the event time shown never goes back."""
        held = self._tickers.get(t.symbol)
        shown = t.event_time if held is None or held[1] <= t.event_time else held[1]
        self._tickers[t.symbol] = (t, shown, time.time(), source)

    def without_ticker(self) -> list[str]:
        """Symbols with no price yet (a perpetual's is its mark price)."""
        tickers, marks = self._tickers, self.marks
        return [s for s in self.symbols if s not in tickers and s not in marks]

    def price_rows(self) -> list[dict[str, Any]]:
        """One dict per symbol with a price (times in epoch ms): cheap, for servers."""
        now = time.time()
        tickers = dict(self._tickers)
        rows = []
        for s in self.symbols:
            held, trade = tickers.get(s), self._rings[s].newest()
            row: dict[str, Any] | None = None
            if held is not None:
                t, shown, received, source = held
                row = {
                    "last": t.last,
                    "bid": t.bid,
                    "ask": t.ask,
                    "change_pct": t.change_pct,
                    "volume": t.volume,
                    "event_time": shown,
                    "received_at": received,
                    "source": source,
                }
            if trade is not None and (row is None or trade[1] >= row["event_time"]):
                row = row or dict(_NO_PRICE)
                row.update(
                    last=trade[0],
                    event_time=trade[1],
                    received_at=max(trade[2], row.get("received_at", 0.0)),
                    source=trade[3],
                )
            if row is not None:
                rows.append({"symbol": s, **row})
        for row in rows:
            row["age_s"] = now - row["received_at"]
            row["received_at"] = round(row["received_at"] * 1000)
        return rows


def merged_mark(held: MarkPrice | None, new: MarkPrice) -> MarkPrice:
    """``new`` with what it leaves unsaid (NaN, a time of -1) taken from ``held``: a venue that
    pushes the funding rate and the mark price on separate channels (OKX) sends each with the
    other's fields unknown, and the newest of each is what a reader wants."""
    if held is None:
        return new
    return MarkPrice(
        new.symbol,
        max(new.event_time, held.event_time),
        held.mark if math.isnan(new.mark) else new.mark,
        held.index if math.isnan(new.index) else new.index,
        held.settle_estimate if math.isnan(new.settle_estimate) else new.settle_estimate,
        held.funding_rate if math.isnan(new.funding_rate) else new.funding_rate,
        held.next_funding_time if new.next_funding_time < 0 else new.next_funding_time,
    )
