"""Binance USDⓈ-M futures public REST (``/fapi/v1``, ``/futures/data``), with the futures
weight rules kept (2400 a minute, the same headers and bans as spot), as records named as ours
(``BTCUSDT-PERP``)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from marketlab.records import (
    AggTrade,
    BookSnapshot,
    Funding,
    Interval,
    Kline,
    MarkPrice,
    OpenInterest,
    Trade,
)
from marketlab.stream.rest import Answer, PacedRest
from marketlab.venues import binance as bn
from marketlab.venues.binance import perp_payloads as payloads
from marketlab.venues.binance.perp_protocol import (
    DEFAULT_REST_URL,
    REST_WEIGHT_PER_MINUTE,
    depth_weight,
    venue_symbol,
)
from marketlab.venues.binance.rest import WeightGovernor
from marketlab.venues.pacing import RequestWindow

DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000)
FUNDING_PAGE = 1000  # /fapi/v1/fundingRate's most (default 100)
OPEN_INTEREST_PAGE = 500  # /futures/data/openInterestHist's most (default 30)
OPEN_INTEREST_PERIOD = "5m"  # its finest period
OPEN_INTEREST_STEP = 300_000
OPEN_INTEREST_DAYS = 30  # "only the data of the latest 30 days is available"
# /fapi/v1/fundingRate "shares 500/5min/IP rate limit with GET /fapi/v1/fundingInfo": kept
# under nine tenths of it, apart from the request weights
FUNDING_REQUESTS = 450
FUNDING_WINDOW_S = 300.0


def _klines_weight(limit: int) -> int:
    return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10


def as_trade(agg: AggTrade) -> Trade:
    """An aggregated trade as the trade our records keep of a perpetual: its aggregate id is
    the trade id (Binance's futures trade stream is the aggregated one, its ids consecutive, so
    a skipped id is a missed trade)."""
    return Trade(agg.symbol, agg.agg_id, agg.price, agg.qty, agg.side, agg.time, agg.event_time)


class BinancePerpRest(PacedRest):
    """The public futures endpoints a collector needs, as records."""

    kline_page = 1500  # candles per /fapi/v1/klines request
    trade_page = 1000  # aggregated trades per /fapi/v1/aggTrades request
    windowed = False
    clock = staticmethod(time.time)  # the weight window is the wall-clock minute

    def __init__(
        self,
        base_url: str = DEFAULT_REST_URL,
        *,
        weight_limit: int = REST_WEIGHT_PER_MINUTE,
        timeout_s: float = 10.0,
    ):
        super().__init__(base_url, timeout_s=timeout_s)
        self.governor = WeightGovernor(weight_limit)
        self.funding_window = RequestWindow(FUNDING_REQUESTS, FUNDING_WINDOW_S)

    def observe(self, answer: Answer) -> None:
        self.governor.observe(answer.status, answer.headers, time.time())

    async def server_time(self) -> int:
        return await self._read("/fapi/v1/time", {}, 1, bn.parse_server_time)

    async def listed_symbols(self) -> dict[str, float]:
        """Every perpetual ``/fapi/v1/exchangeInfo`` lists (as ours), with its price tick."""
        listed = await self._read("/fapi/v1/exchangeInfo", {}, 1, payloads.perpetuals)
        return {s.symbol: s.tick_size for s in listed}

    async def klines(
        self,
        symbol: str,
        interval: str,
        *,
        start: int | None = None,
        end: int | None = None,
        limit: int = 1500,
        server_time: int | None = None,
    ) -> list[Kline]:
        """Candles with open time in [start, end]; ``closed`` judged against server time."""
        params: dict[str, Any] = {
            "symbol": venue_symbol(symbol),
            "interval": Interval(interval),
            "limit": limit,
        }
        if start is not None:
            params["startTime"] = start
        if end is not None:
            params["endTime"] = end
        now = server_time if server_time is not None else await self.server_time()
        return await self._read(
            "/fapi/v1/klines",
            params,
            _klines_weight(limit),
            lambda body: bn.parse_klines(body, symbol, interval, now),
        )

    async def depth(self, symbol: str, limit: int = 1000) -> BookSnapshot:
        limit = min((x for x in DEPTH_LIMITS if x >= limit), default=1000)
        params = {"symbol": venue_symbol(symbol), "limit": limit}
        return await self._read(
            "/fapi/v1/depth", params, depth_weight(limit), lambda body: payloads.depth(body, symbol)
        )

    async def agg_trades_from(self, symbol: str, from_id: int, limit: int = 1000) -> list[AggTrade]:
        params = {"symbol": venue_symbol(symbol), "fromId": from_id, "limit": limit}
        return await self._read(
            "/fapi/v1/aggTrades", params, 20, lambda body: payloads.agg_trades(body, symbol)
        )

    async def trades_from(self, symbol: str, from_id: int, limit: int = 1000) -> list[Trade]:
        """Aggregated trades from id ``from_id`` on, as trades (see :func:`as_trade`)."""
        return [as_trade(a) for a in await self.agg_trades_from(symbol, from_id, limit)]

    async def mark_price(self, symbol: str) -> MarkPrice:
        params = {"symbol": venue_symbol(symbol)}
        return await self._read("/fapi/v1/premiumIndex", params, 1, payloads.mark_price)

    async def funding_history(
        self, symbol: str, start: int | None = None, end: int | None = None, limit: int = 1000
    ) -> list[Funding]:
        """Settled fundings, oldest first, in [start, end] (the newest ``limit`` without
        ``start``)."""
        params: dict[str, Any] = {"symbol": venue_symbol(symbol), "limit": limit}
        if start is not None:
            params["startTime"] = start
        if end is not None:
            params["endTime"] = end
        await asyncio.sleep(self.funding_window.delay(time.monotonic()))
        self.funding_window.sent(time.monotonic())
        return await self._read("/fapi/v1/fundingRate", params, 1, payloads.funding_history)

    async def open_interest(self, symbol: str) -> OpenInterest:
        params = {"symbol": venue_symbol(symbol)}
        return await self._read("/fapi/v1/openInterest", params, 1, payloads.open_interest)

    async def open_interest_history(
        self, symbol: str, period: str = "5m", start: int | None = None, limit: int = 500
    ) -> list[OpenInterest]:
        """Open interest at each ``period``'s end (Binance keeps the last 30 days)."""
        params: dict[str, Any] = {"symbol": venue_symbol(symbol), "period": period, "limit": limit}
        if start is not None:
            params["startTime"] = start
        return await self._read(
            "/futures/data/openInterestHist", params, 1, payloads.open_interest_history
        )

    async def fundings_between(self, symbol: str, start: int, end: int) -> list[Funding]:
        """Every funding settled in [start, end], oldest first (pages of 1,000 forward from
        ``start``: Binance answers a range larger than its limit from the start)."""
        out: list[Funding] = []
        cursor = start
        while cursor <= end:
            page = await self.funding_history(symbol, cursor, end, FUNDING_PAGE)
            out += [f for f in page if cursor <= f.funding_time <= end]
            if len(page) < FUNDING_PAGE:
                break
            cursor = page[-1].funding_time + 1
        return out

    async def open_interest_between(self, symbol: str, start: int, end: int) -> list[OpenInterest]:
        """Open interest at each 5 minutes in [start, end], oldest first (pages of 500 forward;
        Binance keeps the last 30 days, so the start is moved up to then)."""
        start = max(start, end - OPEN_INTEREST_DAYS * 86_400_000 + OPEN_INTEREST_STEP)
        out: list[OpenInterest] = []
        cursor = start
        while cursor <= end:
            page = await self.open_interest_history(
                symbol, OPEN_INTEREST_PERIOD, cursor, OPEN_INTEREST_PAGE
            )
            out += [o for o in page if cursor <= o.time <= end]
            if len(page) < OPEN_INTEREST_PAGE or page[-1].time >= end:
                break
            cursor = page[-1].time + 1
        return out
