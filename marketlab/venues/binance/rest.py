"""Binance's public REST, with the exchange's request-weight rules kept.

:class:`~marketlab.stream.rest.PacedRest` does the HTTP; :class:`WeightGovernor` (sans-I/O)
reads ``X-MBX-USED-WEIGHT-1M`` and ``Retry-After`` from every answer and says how long to wait
before the next request, so a collector backs off before Binance's 429, and obeys 429 and 418
when they come anyway.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import Any

import msgspec

from marketlab.records import BookSnapshot, Interval, Kline, Ticker, Trade, normalize_symbol
from marketlab.stream.rest import Answer, GovernorStats, PacedRest
from marketlab.venues import binance as bn

log = logging.getLogger("marketlab.rest")


class WeightGovernor:
    """Request pacing from Binance's weight headers and Retry-After, fed times by its owner.

    The weight window is the wall-clock minute; ``headroom`` keeps us below the limit so
    that other clients on the same IP, and requests in flight, do not tip it over.
    """

    def __init__(self, weight_limit: int = 6000, headroom: float = 0.8):
        self.weight_limit = weight_limit
        self.budget = int(weight_limit * headroom)
        self.used = 0
        self.window = -1
        self.blocked_until = 0.0
        self.stats = GovernorStats()

    def delay(self, weight: int, now: float) -> float:
        """Seconds to wait before sending a request of ``weight``."""
        if now < self.blocked_until:
            return self.blocked_until - now
        window = int(now // 60)
        used = self.used if window == self.window else 0
        if used + weight > self.budget:
            return (window + 1) * 60 - now + 0.05
        return 0.0

    def sent(self, weight: int, now: float) -> None:
        window = int(now // 60)
        if window != self.window:
            self.window, self.used = window, 0
        self.used += weight
        self.stats.requests += 1

    def usage(self, now: float) -> tuple[int, int]:
        """Weight used in the current minute (ours, or the venue's count when it said more)
        and the venue's limit."""
        return (self.used if int(now // 60) == self.window else 0), self.weight_limit

    def observe(self, status: int, headers: Mapping[str, str], now: float) -> None:
        """Take what an answer says about our standing."""
        used = _header(headers, "x-mbx-used-weight-1m")
        if used is not None and used.isdigit():
            window = int(now // 60)
            if window != self.window:  # the server's count for a minute we had not seen
                self.window, self.used = window, int(used)
            else:  # the server also counts other clients on this IP
                self.used = max(self.used, int(used))
        if status in (418, 429):
            retry = _header(headers, "retry-after")
            seconds = (
                float(retry) if retry and _is_number(retry) else (120.0 if status == 418 else 60.0)
            )
            self.blocked_until = max(self.blocked_until, now + seconds)
            if status == 418:
                self.stats.banned += 1
            else:
                self.stats.rate_limited += 1
            log.warning("Binance answered %s: pausing REST for %.0f s", status, seconds)
        elif status == 403:  # its web application firewall refused the request
            self.stats.forbidden += 1
        elif status >= 500:
            self.stats.server_errors += 1


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


class BinanceRest(PacedRest):
    """The public REST endpoints a collector needs, as records."""

    kline_page = 1000  # candles per /api/v3/klines request
    windowed = False  # a page starts at startTime and runs to the limit
    clock = staticmethod(time.time)  # Binance's weight window is the wall-clock minute

    def __init__(
        self,
        base_url: str = bn.DEFAULT_REST_URL,
        *,
        weight_limit: int = 6000,
        timeout_s: float = 10.0,
    ):
        super().__init__(base_url, timeout_s=timeout_s)
        self.governor = WeightGovernor(weight_limit)

    def observe(self, answer: Answer) -> None:
        self.governor.observe(answer.status, answer.headers, time.time())

    async def server_time(self) -> int:
        return await self._read("/api/v3/time", {}, 1, bn.parse_server_time)

    async def klines(
        self,
        symbol: str,
        interval: str,
        *,
        start: int | None = None,
        end: int | None = None,
        limit: int = 1000,
        server_time: int | None = None,
    ) -> list[Kline]:
        """Candles with open time in [start, end]; ``closed`` judged against server time."""
        params: dict[str, Any] = {
            "symbol": normalize_symbol(symbol),
            "interval": Interval(interval),
            "limit": limit,
        }
        if start is not None:
            params["startTime"] = start
        if end is not None:
            params["endTime"] = end
        now = server_time if server_time is not None else await self.server_time()
        return await self._read(
            "/api/v3/klines", params, 2, lambda body: bn.parse_klines(body, symbol, interval, now)
        )

    trade_page = 1000  # trades per /api/v3/historicalTrades request

    async def trades_from(self, symbol: str, from_id: int, limit: int = 1000) -> list[Trade]:
        """Trades with ids from ``from_id`` on, oldest first (weight 25); ids the venue no
        longer keeps are absent (the first id returned is then above ``from_id``)."""
        params = {"symbol": normalize_symbol(symbol), "fromId": from_id, "limit": limit}
        return await self._read(
            "/api/v3/historicalTrades", params, 25, lambda body: bn.parse_trades(body, symbol)
        )

    async def listed_symbols(self) -> dict[str, float]:
        """Every symbol ``/api/v3/exchangeInfo`` lists, with its price tick (weight 20)."""
        listed = await self._read("/api/v3/exchangeInfo", {}, 20, bn.parse_exchange_info)
        return {s.symbol: s.tick_size for s in listed}

    async def spot_symbols(self, quote: str) -> list[str]:
        """The symbols trading now (status ``TRADING``) whose quote asset is ``quote``."""
        listed = await self._read("/api/v3/exchangeInfo", {}, 20, bn.parse_exchange_info)
        return [s.symbol for s in listed if s.status == "TRADING" and s.quote_asset == quote]

    async def depth(self, symbol: str, limit: int = 1000) -> BookSnapshot:
        weight = 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250
        params = {"symbol": normalize_symbol(symbol), "limit": limit}
        return await self._read(
            "/api/v3/depth", params, weight, lambda body: bn.parse_depth(body, symbol)
        )

    async def tickers(self, symbols: list[str]) -> list[Ticker]:
        names = [normalize_symbol(s) for s in symbols]
        weight = 2 if len(names) <= 20 else 40 if len(names) <= 100 else 80
        params = {"symbols": msgspec.json.encode(names).decode()}
        return await self._read("/api/v3/ticker/24hr", params, weight, bn.parse_ticker_24hr)
