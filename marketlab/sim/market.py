"""The simulated market: deterministic prices, trades, candles and an order book.

Pure code: it advances one exchange second per :meth:`SymbolMarket.step` and never reads a
clock. Prices are integer ticks and quantities integer lots, so every candle aggregated from
seconds (REST) equals the candle built incrementally (WebSocket) to the last digit, as on
the real exchange. Two random streams per symbol keep the price path the same whether or not
the book is simulated.
"""

from __future__ import annotations

import math
import random
import zlib
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import overload

import numpy as np

from marketlab.records import INTERVAL_NAMES, Interval
from marketlab.sim.series import (
    NO_HIGH,
    NO_LOW,
    SECOND_MS,
    Candle,
    RollingWindow,
    Seconds,
    StepResult,
    TradeEvent,
)


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """How one simulated symbol trades."""

    symbol: str
    base: str
    quote: str
    price: float
    price_decimals: int
    qty_decimals: int
    trades_per_second: float = 2.0
    volatility: float = 0.0002  # stdev of the log price change per second
    typical_qty: float = 0.05  # median trade size in base units

    @property
    def tick(self) -> float:
        return 10.0**-self.price_decimals

    @property
    def lot(self) -> float:
        return 10.0**-self.qty_decimals


_KNOWN = {
    "BTCUSDT": ("BTC", "USDT", 65000.0, 2, 5, 0.02),
    "ETHUSDT": ("ETH", "USDT", 3500.0, 2, 4, 0.3),
    "BNBUSDT": ("BNB", "USDT", 600.0, 2, 3, 1.0),
    "ADAUSDT": ("ADA", "USDT", 0.45, 4, 1, 500.0),
    "XRPUSDT": ("XRP", "USDT", 0.55, 4, 0, 400.0),
    "DOGEUSDT": ("DOGE", "USDT", 0.15, 5, 0, 2000.0),
    "SOLUSDT": ("SOL", "USDT", 150.0, 2, 3, 2.0),
}
_QUOTES = ("USDT", "USDC", "FDUSD", "BTC", "ETH", "BNB", "EUR", "TRY")


def spec_for(symbol: str) -> SymbolSpec:
    """The spec of a well-known symbol, or a plausible one derived from the name."""
    if symbol in _KNOWN:
        base, quote, price, pd, qd, qty = _KNOWN[symbol]
        return SymbolSpec(symbol, base, quote, price, pd, qd, typical_qty=qty)
    quote = next((q for q in _QUOTES if symbol.endswith(q) and len(symbol) > len(q)), "USDT")
    base = symbol[: -len(quote)] if symbol.endswith(quote) else symbol
    price = 1.0 + zlib.crc32(symbol.encode()) % 500
    return SymbolSpec(symbol, base, quote, price, 2, 3, typical_qty=1.0)


def fmt_units(units: int, decimals: int, pad: int = 8) -> str:
    """An integer count of 10**-decimals as Binance prints it
    (``6500010, 2`` → ``65000.10000000``)."""
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(int(units)), 10**decimals)
    if decimals == 0:
        return f"{sign}{whole}." + "0" * pad if pad else f"{sign}{whole}"
    return f"{sign}{whole}.{frac:0{decimals}d}" + "0" * max(0, pad - decimals)


TRADE_HISTORY = 50_000  # trades per symbol the simulator keeps for lookups by id

# The market anomalies a symbol can be made to show (SymbolMarket.anomaly), each what one alert
# rule watches for: a price jump, a spread blowout, a volume burst, a silent symbol, a crossed book
ANOMALIES = ("jump", "spread", "volume", "silent", "crossed")
JUMP_BPS = 200.0  # a jump's size unless given (bps of the mid, signed)
WIDE_BPS = 60.0  # a blown-out spread's width (bps of the mid)
BURST_QTY, BURST_TRADES = 20, 5.0  # a volume burst: each trade this many times larger, and more


@dataclass(slots=True)
class Anomalies:
    """The anomalies a symbol is showing: until which market second (a count of the symbol's
    seconds) each lasts, and a jump waiting for the next second."""

    jump_bps: float = 0.0
    wide_from: int = 0
    wide_until: int = 0
    burst_until: int = 0
    silent_until: int = 0
    crossed_until: int = 0


class SymbolMarket:
    """One symbol's market, advanced a second at a time from ``genesis`` (ms)."""

    BOOK_LEVELS = 200

    def __init__(self, spec: SymbolSpec, seed: int, genesis: int):
        if genesis % SECOND_MS:
            raise ValueError("genesis must be a whole second")
        self.spec = spec
        key = zlib.crc32(spec.symbol.encode())
        self._price_rng = random.Random(f"{seed}:{spec.symbol}:price")
        self._book_rng = random.Random(f"{seed}:{spec.symbol}:book")
        self._spread_rng = random.Random(f"{seed}:{spec.symbol}:spread")
        self._liquidity = 0.0  # log of the spread's multiple of its calm width
        self.genesis = genesis
        self.seconds = Seconds()
        self.mid = spec.price / spec.tick  # in ticks, float
        self.last_price = round(self.mid)
        self.last_qty = 0
        self.next_trade_id = 1
        self.update_id = 1_000_000 + key % 1_000_000
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.candles = {
            iv: self._new_candle(Interval(iv), genesis, self.last_price) for iv in INTERVAL_NAMES
        }
        self.window = RollingWindow()
        # what the venue still serves by trade id (/api/v3/historicalTrades); older ids are gone
        self.recent_trades: deque[TradeEvent] = deque(maxlen=TRADE_HISTORY)
        self._qty_mu = math.log(max(spec.typical_qty / spec.lot, 1.0))
        self.anomalies = Anomalies()

    def anomaly(self, kind: str, seconds: float = 10.0, bps: float = JUMP_BPS) -> None:
        """Show one of :data:`ANOMALIES` from the next second on, for ``seconds`` of market
        time: ``jump`` moves the mid by ``bps`` at once (the book and trades follow it);
        ``spread`` quotes the touch :data:`WIDE_BPS` wide (the levels inside are pulled);
        ``volume`` trades :data:`BURST_TRADES` times as often, each trade :data:`BURST_QTY`
        times its usual size; ``silent`` halts the symbol (no trade, no book change, the price
        held); ``crossed`` shows a bid above the best ask."""
        until = self.seconds.n + max(1, math.ceil(seconds))
        a = self.anomalies
        if kind == "jump":
            a.jump_bps = bps
        elif kind == "spread":
            a.wide_from, a.wide_until = self.seconds.n, until
        elif kind == "volume":
            a.burst_until = until
        elif kind == "silent":
            a.silent_until = until
        elif kind == "crossed":
            a.crossed_until = until
        else:
            raise ValueError(f"unknown anomaly {kind!r}: expected one of {', '.join(ANOMALIES)}")

    # --- stepping ----------------------------------------------------------------------

    @property
    def now(self) -> int:
        """End of the last simulated second (ms): the market's present."""
        return self.genesis + self.seconds.n * SECOND_MS

    def step(self, with_book: bool = True) -> StepResult:
        second = self.now
        rng = self._price_rng
        spec = self.spec
        index, a = self.seconds.n, self.anomalies
        silent, burst = index < a.silent_until, index < a.burst_until
        best_bid, best_ask = self._top()
        rate = spec.trades_per_second * (BURST_TRADES if burst else 1.0)
        n = 0 if silent else _poisson(rng, rate)
        size = BURST_QTY if burst else 1
        trades: list[TradeEvent] = []
        for off in sorted(rng.randrange(SECOND_MS) for _ in range(n)):
            buy = rng.random() < 0.5
            qty = max(1, round(rng.lognormvariate(self._qty_mu, 1.0))) * size
            price = best_ask if buy else best_bid
            trades.append(TradeEvent(self.next_trade_id, price, qty, second + off, not buy))
            self.next_trade_id += 1
        row = self._second_row(trades)
        self.seconds.append(row)
        self.window.push(self.seconds.n - 1, row)
        if trades:
            self.last_price, self.last_qty = trades[-1].price, trades[-1].qty
            self.recent_trades.extend(trades)
        if not silent:  # a halted symbol's price holds
            self.mid *= math.exp(spec.volatility * rng.gauss(0.0, 1.0))
            self._breathe(n)
        if a.jump_bps:
            self.mid *= math.exp(a.jump_bps / 1e4)
            a.jump_bps = 0.0
        self.mid = max(self.mid, 10.0)
        end = second + SECOND_MS
        closed: dict[str, Candle] = {}
        for name, candle in self.candles.items():
            candle.add(row)
            if end == candle.next_open:
                closed[name] = candle
        for name in closed:
            self.candles[name] = self._new_candle(Interval(name), end, self.last_price)
        depth = self._update_book() if with_book and not silent else None
        return StepResult(second, end, trades, depth, closed)

    def _new_candle(self, iv: Interval, at: int, prev_close: int) -> Candle:
        open_time = iv.open_of(at)
        return Candle(open_time, iv.next_open(open_time), prev_close)

    def _second_row(self, trades: list[TradeEvent]) -> tuple[int, ...]:
        if not trades:
            p = self.last_price
            return (p, NO_HIGH, int(NO_LOW), p, 0, 0, 0, 0, 0, -1, -1)
        prices = [t.price for t in trades]
        v = q = tv = tq = 0
        for t in trades:
            v += t.qty
            q += t.qty * t.price
            if not t.buyer_is_maker:
                tv += t.qty
                tq += t.qty * t.price
        return (
            prices[0],
            max(prices),
            min(prices),
            prices[-1],
            v,
            q,
            len(trades),
            tv,
            tq,
            trades[0].trade_id,
            trades[-1].trade_id,
        )

    # --- the book ----------------------------------------------------------------------

    def _breathe(self, trades: int) -> None:
        """The spread widens with activity and shocks (a gap: the touch's levels pulled) and
        narrows back as liquidity returns: a mean-reverting log multiple of its calm width."""
        rng = self._spread_rng
        expected = max(self.spec.trades_per_second, 1e-9)
        surprise = (trades - expected) / math.sqrt(expected)
        shock = 1.2 if rng.random() < 0.015 else 0.0
        level = 0.85 * self._liquidity + 0.25 * rng.gauss(0.0, 1.0) + 0.1 * surprise + shock
        self._liquidity = min(2.5, max(-1.5, level))

    def _top(self) -> tuple[int, int]:
        """Best bid and ask implied by the mid and the liquidity (the book's top follows)."""
        calm = max(1.0, self.mid * 0.00001)
        spread = max(1, round(calm * math.exp(self._liquidity)))
        # (a book of the seconds after the one asked in: the trades of that one are at its top)
        if self.anomalies.wide_from < self.seconds.n <= self.anomalies.wide_until:
            spread = max(spread, round(self.mid * WIDE_BPS / 1e4))
        bid = math.floor(self.mid) - spread // 2
        return bid, bid + spread

    def _update_book(self) -> tuple[int, int, list[tuple[int, int]], list[tuple[int, int]]] | None:
        """Move the book to the new mid; return the changed levels as one depth event."""
        rng = self._book_rng
        best_bid, best_ask = self._top()
        grid = max(1, round(self.mid * 0.00002))
        slots = self.BOOK_LEVELS  # new levels land within this many grid steps of the top

        def qty() -> int:
            return max(1, round(rng.lognormvariate(self._qty_mu + 1.0, 1.0)))

        sides = ((self.bids, best_bid, -1), (self.asks, best_ask, 1))
        changes: list[dict[int, int]] = []
        for side, best, sign in sides:
            far = best + sign * grid * (slots * 3 // 2)
            lo, hi = (far, best) if sign < 0 else (best, far)
            # levels that would cross the new top, or drifted too far, go
            ch: dict[int, int] = {p: 0 for p in side if p < lo or p > hi}
            if best not in side:
                ch[best] = qty()
            for _ in range(rng.randint(1, 3)):
                p = best + sign * grid * rng.randrange(1, slots)
                ch[p] = 0 if p in side and rng.random() < 0.3 else qty()
            live = len(side) + sum(
                (1 if v else -1) for p, v in ch.items() if (p in side) != bool(v)
            )
            while live < self.BOOK_LEVELS:
                p = best + sign * grid * rng.randrange(1, slots)
                if not ch.get(p, p in side):
                    ch[p] = qty()
                    live += 1
            changes.append(ch)
        if self.seconds.n <= self.anomalies.crossed_until:
            # a bid above the best ask (the range above pulls it once the anomaly is over)
            changes[0][best_ask + max(1, best_ask - best_bid)] = qty()
        count = sum(len(ch) for ch in changes)
        if not count:
            return None
        for (side, _, _), ch in zip(sides, changes, strict=True):
            for p, v in ch.items():
                if v:
                    side[p] = v
                else:
                    side.pop(p, None)
        first = self.update_id + 1
        self.update_id += count
        return first, self.update_id, list(changes[0].items()), list(changes[1].items())

    def book(
        self, limit: int | None = None
    ) -> tuple[int, list[tuple[int, int]], list[tuple[int, int]]]:
        """``(last_update_id, bids best first, asks best first)`` in ticks and lots."""
        bids = sorted(self.bids.items(), reverse=True)[:limit]
        asks = sorted(self.asks.items())[:limit]
        return self.update_id, bids, asks

    # --- candles -----------------------------------------------------------------------

    def open_candle(self, interval: str) -> Candle:
        return self.candles[Interval(interval)]

    def klines(
        self, interval: str, start: int | None = None, end: int | None = None, limit: int = 500
    ) -> list[tuple]:
        """Candles as Binance's /api/v3/klines selects them (open time in [start, end]).

        Rows are ``(open_time, o, h, l, c, v, close_time, q, n, tv, tq, closed)`` in ticks/lots.
        Without ``start`` the newest ``limit`` candles up to ``end`` (or now) are returned; the
        open candle is included when it falls in range.
        """
        iv = Interval(interval)
        now = self.now
        if self.seconds.n == 0:
            return []
        first_open = iv.open_of(self.genesis)
        last_open = iv.open_of(now - 1) if now % SECOND_MS == 0 else iv.open_of(now)
        lo = max(first_open, iv.open_of(start) if start is not None else first_open)
        if start is not None and lo < start:
            lo = iv.next_open(lo)
        hi = min(last_open, end if end is not None else last_open)
        if hi < lo:
            return []
        opens = self._opens(iv, lo, hi)
        opens = opens[:limit] if start is not None else opens[-limit:]
        return self._aggregate(iv, opens)

    def _opens(self, iv: Interval, lo: int, hi: int) -> list[int]:
        if not iv.calendar:
            first = iv.open_of(lo)
            if first < lo:
                first += iv.ms
            return list(range(first, hi + 1, iv.ms))
        out, t = [], iv.open_of(lo)
        while t <= hi:
            if t >= lo:
                out.append(t)
            t = iv.next_open(t)
        return out

    def _aggregate(self, iv: Interval, opens: list[int]) -> list[tuple]:
        if not opens:
            return []
        s = self.seconds
        n = s.n
        starts = np.array([max(0, (t - self.genesis) // SECOND_MS) for t in opens], dtype=np.int64)
        ends = np.array(
            [min(n, (iv.next_open(t) - self.genesis) // SECOND_MS) for t in opens], dtype=np.int64
        )
        trades = s["trades"]
        idx = np.arange(n, dtype=np.int64)
        nonempty_idx = np.where(trades > 0, idx, n)
        cum = {
            c: np.concatenate(([0], np.cumsum(s[c])))
            for c in ("volume", "quote", "trades", "tb_volume", "tb_quote")
        }
        rows = []
        highs, lows, opens_col, closes = s["high"], s["low"], s["open"], s["close"]
        for t, a, b in zip(opens, starts.tolist(), ends.tolist(), strict=True):
            first_trade = int(nonempty_idx[a:b].min()) if b > a else n
            if first_trade < b:
                o = int(opens_col[first_trade])
                h = int(highs[a:b].max())
                l = int(lows[a:b].min())
            c = int(closes[b - 1])
            if first_trade >= b:  # no trade: the previous close, zero volume
                o = h = l = c
            sums = [
                int(cum[k][b] - cum[k][a])
                for k in ("volume", "quote", "trades", "tb_volume", "tb_quote")
            ]
            close_time = iv.next_open(t) - 1
            closed = close_time < self.now
            rows.append(
                (t, o, h, l, c, sums[0], close_time, sums[1], sums[2], sums[3], sums[4], closed)
            )
        return rows

    # --- 24h ticker ----------------------------------------------------------------------

    def ticker(self) -> dict[str, int]:
        """Rolling 24-hour statistics in ticks and lots, as of :attr:`now`."""
        w = self.window
        if w.rows:
            _first_idx, first_row = w.rows[0]
            open_ = first_row[0]
            first_id, last_id = first_row[9], w.rows[-1][1][10]
            high, low = w.highs[0][1], w.lows[0][1]
        else:
            open_ = high = low = self.last_price
            first_id = last_id = -1
        return {
            "open": open_,
            "high": high,
            "low": low,
            "last": self.last_price,
            "last_qty": self.last_qty,
            "volume": w.v,
            "quote": w.q,
            "count": w.n,
            "first_id": first_id,
            "last_id": last_id,
            "prev_close": w.prev_close or open_,
        }


def _poisson(rng: random.Random, lam: float) -> int:
    """Knuth's method: fine for the small rates used here."""
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


class Market:
    """All simulated symbols, advanced together."""

    def __init__(
        self, symbols: list[str], seed: int, genesis: int, trades_per_second: float | None = None
    ):
        self.seed = seed
        specs = [spec_for(s) for s in symbols]
        if trades_per_second is not None:  # a quieter (or busier) market than the default
            specs = [replace(spec, trades_per_second=trades_per_second) for spec in specs]
        self.symbols = {spec.symbol: SymbolMarket(spec, seed, genesis) for spec in specs}
        self.genesis = genesis

    @property
    def now(self) -> int:
        return self.genesis + next(iter(self.symbols.values())).seconds.n * SECOND_MS

    def warm_up(self, until: int) -> None:
        """Simulate history up to ``until`` without a book (fast)."""
        while self.now + SECOND_MS <= until:
            for m in self.symbols.values():
                m.step(with_book=False)

    def step(self) -> dict[str, StepResult]:
        return {s: m.step() for s, m in self.symbols.items()}


class ShiftedTrades(Sequence[TradeEvent]):
    """A venue's view of a symbol's kept trades: the market's, each price moved by ``offset``."""

    __slots__ = ("_offset", "_trades")

    def __init__(self, trades: deque[TradeEvent], offset: int):
        self._trades, self._offset = trades, offset

    def _shift(self, t: TradeEvent) -> TradeEvent:
        return TradeEvent(t.trade_id, t.price + self._offset, t.qty, t.time, t.buyer_is_maker)

    def __len__(self) -> int:
        return len(self._trades)

    @overload
    def __getitem__(self, index: int) -> TradeEvent: ...
    @overload
    def __getitem__(self, index: slice) -> list[TradeEvent]: ...
    def __getitem__(self, index: int | slice) -> TradeEvent | list[TradeEvent]:
        if isinstance(index, slice):
            return [self._shift(t) for t in list(self._trades)[index]]
        return self._shift(self._trades[index])

    def __iter__(self) -> Iterator[TradeEvent]:
        return map(self._shift, self._trades)

    def __reversed__(self) -> Iterator[TradeEvent]:
        return map(self._shift, reversed(self._trades))


class ShiftedCandles(Mapping[str, Candle]):
    """A venue's view of a symbol's open candles, each shifted when it is looked up."""

    __slots__ = ("_candles", "_offset")

    def __init__(self, candles: dict[str, Candle], offset: int):
        self._candles, self._offset = candles, offset

    def __getitem__(self, interval: str) -> Candle:
        return shift_candle(self._candles[interval], self._offset)

    def __iter__(self) -> Iterator[str]:
        return iter(self._candles)

    def __len__(self) -> int:
        return len(self._candles)


def shift_candle(c: Candle, offset: int) -> Candle:
    """The candle with its prices ``offset`` ticks away (and its quote volumes to match)."""
    if not offset:
        return c
    traded = c.n > 0
    return Candle(
        c.open_time,
        c.next_open,
        c.prev_close + offset,
        c.o + offset if traded else c.o,
        c.h + offset if traded else c.h,
        c.l + offset if traded else c.l,
        c.c + offset if traded else c.c,
        c.v,
        c.q + offset * c.v,
        c.n,
        c.tv,
        c.tq + offset * c.tv,
        c.f,
        c.L,
    )


class VenueMarket:
    """One venue's view of a symbol's market: the same trades, book and candles, every price
    ``offset`` ticks away from the market's (quote volumes to match), so venues that trade one
    market still quote a few basis points apart. Everything a face shows of the symbol comes
    through it, so what one venue shows agrees with itself."""

    def __init__(self, market: SymbolMarket, offset: int = 0):
        self.market, self.offset = market, offset
        self.spec = market.spec
        self.genesis = market.genesis

    @property
    def now(self) -> int:
        return self.market.now

    @property
    def next_trade_id(self) -> int:
        return self.market.next_trade_id

    @property
    def update_id(self) -> int:
        return self.market.update_id

    @property
    def last_price(self) -> int:
        return self.market.last_price + self.offset

    @property
    def last_qty(self) -> int:
        return self.market.last_qty

    @property
    def recent_trades(self) -> Sequence[TradeEvent]:
        trades = self.market.recent_trades
        return ShiftedTrades(trades, self.offset) if self.offset else trades

    @property
    def candles(self) -> Mapping[str, Candle]:
        if not self.offset:
            return self.market.candles
        return ShiftedCandles(self.market.candles, self.offset)

    def open_candle(self, interval: str) -> Candle:
        return shift_candle(self.market.open_candle(interval), self.offset)

    def book(
        self, limit: int | None = None
    ) -> tuple[int, list[tuple[int, int]], list[tuple[int, int]]]:
        """``(last_update_id, bids best first, asks best first)`` in ticks and lots."""
        uid, bids, asks = self.market.book(limit)
        if not self.offset:
            return uid, bids, asks
        off = self.offset
        return uid, [(p + off, q) for p, q in bids], [(p + off, q) for p, q in asks]

    def klines(
        self, interval: str, start: int | None = None, end: int | None = None, limit: int = 500
    ) -> list[tuple]:
        """The market's :meth:`SymbolMarket.klines`, at this venue's prices."""
        rows = self.market.klines(interval, start, end, limit)
        off = self.offset
        if not off:
            return rows
        return [
            (t, o + off, h + off, lo + off, c + off, v, ct, q + off * v, n, tv, tq + off * tv, cl)
            for t, o, h, lo, c, v, ct, q, n, tv, tq, cl in rows
        ]

    def ticker(self) -> dict[str, int]:
        """The market's rolling 24-hour statistics, at this venue's prices."""
        t = self.market.ticker()
        off = self.offset
        if off:
            for k in ("open", "high", "low", "last", "prev_close"):
                t[k] += off
            t["quote"] += off * t["volume"]
        return t

    def shift(self, r: StepResult) -> StepResult:
        """What one market second produced, at this venue's prices."""
        off = self.offset
        if not off:
            return r
        depth = None
        if r.depth is not None:
            first, last, bids, asks = r.depth
            depth = (first, last, [(p + off, q) for p, q in bids], [(p + off, q) for p, q in asks])
        return StepResult(
            r.second,
            r.end,
            [
                TradeEvent(t.trade_id, t.price + off, t.qty, t.time, t.buyer_is_maker)
                for t in r.trades
            ],
            depth,
            {iv: shift_candle(c, off) for iv, c in r.closed.items()},
        )


def offset_ticks(spec: SymbolSpec, bps: float) -> int:
    """``bps`` basis points of the symbol's starting price, in whole ticks (rounded)."""
    return round(spec.price * bps / 10_000 / spec.tick)
