"""Bybit v5 linear REST, as records named as ours (``BTCUSDT-PERP``): the spot client's
transport, its reading of refusals and its pacer (Bybit's 600 requests per 5 s is per IP,
spot and linear together), every call with ``category=linear``."""

from __future__ import annotations

from typing import Any

import msgspec

from marketlab.records import BookSnapshot, Funding, Interval, Kline, MarkPrice, OpenInterest, Trade
from marketlab.venues.bybit import parse_klines, parse_orderbook
from marketlab.venues.bybit import perp_payloads as payloads
from marketlab.venues.bybit.perp_protocol import (
    CATEGORY,
    FUNDING_HISTORY_LIMIT,
    INSTRUMENTS_LIMIT,
    OPEN_INTEREST_LIMIT,
    RECENT_TRADES_LIMIT,
    REST_BOOK_LIMIT,
    venue_symbol,
)
from marketlab.venues.bybit.protocol import KLINE_LIMIT, kline_interval
from marketlab.venues.bybit.rest import BybitRest
from marketlab.venues.errors import PayloadError

MAX_INSTRUMENT_PAGES = 50  # linear lists some hundreds of contracts: a few pages


def _ticker_of(body: bytes, symbol: str) -> tuple[MarkPrice, OpenInterest]:
    """The mark price and open interest of ``symbol`` (ours) in a ``/v5/market/tickers``
    answer; :class:`PayloadError` when the answer has not exactly one ticker of it."""
    pairs = [pair for pair in payloads.tickers(body) if pair[0].symbol == symbol]
    if len(pairs) != 1:
        raise PayloadError(f"/v5/market/tickers: {len(pairs)} tickers of {symbol}, not one")
    return pairs[0]


class BybitPerpRest(BybitRest):
    """The public linear endpoints a perpetual collector needs."""

    recent_trades_limit = RECENT_TRADES_LIMIT

    def _params(self, symbol: str, **more: Any) -> dict[str, Any]:
        return {"category": CATEGORY, "symbol": venue_symbol(symbol), **more}

    async def listed_symbols(self) -> dict[str, float]:
        """Every linear perpetual trading (as ours), with its price tick, over every page."""
        return {i.symbol: i.tick_size for i in await self.perpetuals() if i.status == "Trading"}

    async def perpetuals(self) -> list[payloads.LinearInstrument]:
        """Every linear perpetual ``instruments-info`` lists (with its funding interval)."""
        out: list[payloads.LinearInstrument] = []
        params: dict[str, Any] = {"category": CATEGORY, "limit": INSTRUMENTS_LIMIT}
        for _ in range(MAX_INSTRUMENT_PAGES):
            page, cursor = await self._read(
                "/v5/market/instruments-info", params, 1, payloads.perpetuals
            )
            out.extend(page)
            if not cursor:
                break
            params = {**params, "cursor": cursor}
        return out

    async def klines(
        self,
        symbol: str,
        interval: str,
        *,
        start: int | None = None,
        end: int | None = None,
        limit: int = 200,
        server_time: int | None = None,
    ) -> list[Kline]:
        """Candles oldest first: from ``start`` for ``limit`` bars (or the newest ``limit``),
        up to ``end``; closed when they ended before the server's time."""
        iv = Interval(interval)
        limit = max(1, min(limit, KLINE_LIMIT))
        params = self._params(symbol, interval=kline_interval(iv), limit=limit)
        if start is not None:
            window_end = start + limit * iv.ms - 1
            params.update(start=start, end=window_end if end is None else min(end, window_end))
        elif end is not None:
            params["end"] = end
        now = server_time if server_time is not None else await self.server_time()
        rows = await self._read(  # spot's shape, Bybit's name
            "/v5/market/kline",
            params,
            1,
            lambda body: parse_klines(body, venue_symbol(symbol), iv, now),
        )
        return [
            msgspec.structs.replace(k, symbol=symbol)
            for k in rows
            if (start is None or k.open_time >= start) and (end is None or k.open_time <= end)
        ]

    async def depth(self, symbol: str, limit: int = REST_BOOK_LIMIT) -> BookSnapshot:
        params = self._params(symbol, limit=max(1, min(limit, REST_BOOK_LIMIT)))
        snapshot = await self._read(  # spot's shape, Bybit's name
            "/v5/market/orderbook",
            params,
            1,
            lambda body: parse_orderbook(body, venue_symbol(symbol)),
        )
        return msgspec.structs.replace(snapshot, symbol=symbol)

    async def recent_trades(self, symbol: str, limit: int = RECENT_TRADES_LIMIT) -> list[Trade]:
        """The last ``limit`` (at most 1,000) trades, oldest first, numbered as the stream's
        (see :func:`~.perp_payloads.recent_trades`)."""
        limit = max(1, min(limit, RECENT_TRADES_LIMIT))
        return await self._read(
            "/v5/market/recent-trade",
            self._params(symbol, limit=limit),
            1,
            lambda body: payloads.recent_trades(body, symbol, limit),
        )

    async def mark_and_open_interest(self, symbol: str) -> tuple[MarkPrice, OpenInterest]:
        """The ticker's mark price (index, funding rate, next funding) and open interest now."""
        return await self._read(
            "/v5/market/tickers", self._params(symbol), 1, lambda body: _ticker_of(body, symbol)
        )

    async def funding_history(
        self, symbol: str, start: int | None = None, end: int | None = None, limit: int = 200
    ) -> list[Funding]:
        """Settled fundings, oldest first: the newest ``limit`` up to ``end`` (from ``start``
        when given; Bybit refuses ``start`` without ``end``, so ``end`` is then now)."""
        params = self._params(symbol, limit=max(1, min(limit, FUNDING_HISTORY_LIMIT)))
        if start is not None:
            params["startTime"] = start
            params["endTime"] = end if end is not None else await self.server_time()
        elif end is not None:
            params["endTime"] = end
        return await self._read("/v5/market/funding/history", params, 1, payloads.funding_history)

    async def open_interest(
        self,
        symbol: str,
        interval: str = "5min",
        start: int | None = None,
        end: int | None = None,
        limit: int = 50,
        cursor: str = "",
    ) -> tuple[list[OpenInterest], str]:
        """Open interest at each ``interval`` (``5min`` … ``1d``), oldest first, and the cursor
        of the page before (``""``: none; Bybit keeps it back to the contract's launch)."""
        params = self._params(
            symbol, intervalTime=interval, limit=max(1, min(limit, OPEN_INTEREST_LIMIT))
        )
        if start is not None:
            params["startTime"] = start
        if end is not None:
            params["endTime"] = end
        if cursor:
            params["cursor"] = cursor
        return await self._read("/v5/market/open-interest", params, 1, payloads.open_interest)

    async def fundings_between(self, symbol: str, start: int, end: int) -> list[Funding]:
        """Every funding settled in [start, end], oldest first: pages of 200 backwards from
        ``end`` (Bybit answers the newest of a range)."""
        pages: list[list[Funding]] = []
        cursor = end
        while cursor >= start:
            page = await self.funding_history(symbol, start, cursor, FUNDING_HISTORY_LIMIT)
            page = [f for f in page if start <= f.funding_time <= cursor]
            pages.append(page)
            if len(page) < FUNDING_HISTORY_LIMIT:
                break
            cursor = page[0].funding_time - 1
        return [f for page in reversed(pages) for f in page]

    async def open_interest_between(self, symbol: str, start: int, end: int) -> list[OpenInterest]:
        """Open interest at each 5 minutes in [start, end], oldest first (pages of 200 followed
        by Bybit's cursor, newest first)."""
        pages: list[list[OpenInterest]] = []
        cursor = ""
        while True:
            page, cursor = await self.open_interest(
                symbol, "5min", start, end, OPEN_INTEREST_LIMIT, cursor
            )
            pages.append([o for o in page if start <= o.time <= end])
            if not cursor or not page:
                break
        return [o for page in reversed(pages) for o in page]
