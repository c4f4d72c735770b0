"""What the collector has taken in, held for readers in other threads: rolling trades and
klines per series, the newest prices, and the subscribers records go to. Fed in batches on
the collector thread (the hot path: no locks but the prices'), read as fresh copies."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from marketlab.frames import KlineBuffer, TradeBuffer
from marketlab.records import BookDelta, Interval, Kline, Record, Ticker, Trade

log = logging.getLogger("marketlab.lab")

_NO_PRICE = {"last": float("nan"), "bid": float("nan"), "ask": float("nan"),
             "change_pct": float("nan"), "volume": float("nan")}  # fmt: skip


class MarketState:
    def __init__(self, symbols: Sequence[str], intervals: Sequence[Interval], trade_capacity: int,
                 kline_capacity: int, closed_kline: Callable[[Kline], None]):  # fmt: skip
        """``closed_kline(k)`` is called for every closed kline (the store takes them)."""
        self.symbols = list(symbols)
        self.trades = {s: TradeBuffer(trade_capacity) for s in self.symbols}
        self.klines = {
            (s, iv): KlineBuffer(iv, kline_capacity) for s in self.symbols for iv in intervals
        }
        self.closed_kline = closed_kline
        self.callbacks: list[Callable[[Record], Any]] = []
        self._prices: dict[str, dict[str, Any]] = {}
        self._last_trade: dict[
            str, tuple[float, int, float, str]
        ] = {}  # price, time, received, source
        self._lock = threading.Lock()

    def on_records(self, records: Sequence[Record], source: str) -> None:
        for r in records:
            kind = type(r)
            if kind is Trade:
                self.trades[r.symbol].add(r)  # type: ignore[arg-type]
                # the newest trade is merged into prices when they are read: no lock, no dict work
                self._last_trade[r.symbol] = (r.price, r.time, time.time(), source)  # type: ignore[union-attr]
            elif kind is BookDelta:
                pass  # the feed keeps the book
            elif isinstance(r, Kline):
                buf = self.klines.get((r.symbol, r.interval))  # type: ignore[call-overload]
                if buf is not None:
                    buf.upsert(r)
                if r.closed:
                    self.closed_kline(r)
            elif isinstance(r, Ticker):
                self.ticker(r, source)
            if self.callbacks:
                self.notify(r)

    def notify(self, r: Record) -> None:
        for cb in tuple(self.callbacks):
            try:
                cb(r)
            except Exception:
                log.exception("subscriber %r failed on %s", cb, type(r).__name__)

    def ticker(self, t: Ticker, source: str) -> None:
        """A ticker's row of prices (the newest trade is merged in when prices are read)."""
        with self._lock:
            row = self._prices.setdefault(t.symbol, {"event_time": 0})
            row.update(last=t.last, bid=t.bid, ask=t.ask, change_pct=t.change_pct, volume=t.volume,
                       event_time=max(t.event_time, row["event_time"]), received_at=time.time(),
                       source=source)  # fmt: skip

    def without_ticker(self) -> list[str]:
        with self._lock:
            return [s for s in self.symbols if s not in self._prices]

    def price_rows(self) -> list[dict[str, Any]]:
        """One dict per symbol with a price (times in epoch ms): cheap, for servers."""
        now = time.time()
        with self._lock:
            tickers = {s: dict(self._prices[s]) for s in self.symbols if s in self._prices}
        rows = []
        for s in self.symbols:
            row, trade = tickers.get(s), self._last_trade.get(s)
            if trade is not None and (row is None or trade[1] >= row["event_time"]):
                row = row or dict(_NO_PRICE)
                row.update(last=trade[0], event_time=trade[1], received_at=max(trade[2], row.get("received_at", 0.0)),
                           source=trade[3])  # fmt: skip
            if row is not None:
                rows.append({"symbol": s, **row})
        for row in rows:
            row["age_s"] = now - row["received_at"]
            row["received_at"] = round(row["received_at"] * 1000)
        return rows
