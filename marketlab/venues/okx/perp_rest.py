"""OKX v5 public REST of swaps, paced under OKX's limits per endpoint: the swaps listed
with their contract values, candles, book snapshots and trades of a swap (sizes in the base
asset), the funding rate now and its history, open interest and mark prices.

Every size of a swap is converted by the swap's contract value, which the client reads from
``/api/v5/public/instruments?instType=SWAP`` before it reads anything sized (and again when it
meets a swap it does not know yet).
"""

from __future__ import annotations

from typing import Any

from marketlab.records import BookSnapshot, Funding, Interval, Kline, MarkPrice, OpenInterest, Trade
from marketlab.stream.rest import RestError
from marketlab.venues import okx
from marketlab.venues.okx import perp_payloads as payloads
from marketlab.venues.okx.perp_payloads import SwapContract
from marketlab.venues.okx.perp_protocol import FUNDING_RATE_HISTORY_LIMIT, swap_inst_id
from marketlab.venues.okx.rest import LIMITS, PATHS, OkxRest, WindowPacer

# Requests per two seconds per IP of what swaps add (OKX's documented limits)
PERP_LIMITS = {
    **LIMITS,
    "funding-rate": 10,
    "funding-rate-history": 10,
    "open-interest": 20,
    "mark-price": 10,
    "open-interest-history": 10,
}
PERP_PATHS = {
    **PATHS,
    "funding-rate": "/api/v5/public/funding-rate",
    "funding-rate-history": "/api/v5/public/funding-rate-history",
    "open-interest": "/api/v5/public/open-interest",
    "mark-price": "/api/v5/public/mark-price",
    "open-interest-history": "/api/v5/rubik/stat/contracts/open-interest-history",
}
OPEN_INTEREST_HISTORY_LIMIT = 100  # rows per open-interest-history request at most


class OkxPerpRest(OkxRest):
    """The public REST endpoints a collector of swaps needs, as records named as ours
    (``BTCUSDT-PERP``), quantities in the base asset."""

    paths = PERP_PATHS

    def __init__(self, base_url: str = okx.DEFAULT_REST_URL, *, timeout_s: float = 10.0):
        super().__init__(base_url, timeout_s=timeout_s)
        self.governor = WindowPacer(PERP_LIMITS)
        self.contracts: dict[str, SwapContract] = {}

    async def swap_contracts(self) -> dict[str, SwapContract]:
        """Every linear swap listed, by our name, with its contract value (kept for sizes)."""
        self.contracts = await self._ask(
            "instruments", {"instType": "SWAP"}, payloads.swap_contracts
        )
        return self.contracts

    async def contract_value(self, symbol: str) -> float:
        """The base asset one contract of ``symbol`` is; a swap OKX does not list is refused
        (``RestError``, not retryable)."""
        if symbol not in self.contracts:
            await self.swap_contracts()
        contract = self.contracts.get(symbol)
        if contract is None:
            raise RestError(f"OKX lists no linear swap {symbol}", retryable=False)
        return contract.contract_value

    async def listed_symbols(self) -> dict[str, float]:
        """Every linear swap trading now (state ``live``), with its price tick."""
        contracts = await self.swap_contracts()
        return {s: c.tick_size for s, c in contracts.items() if c.state == "live"}

    async def klines(
        self,
        symbol: str,
        interval: str,
        *,
        start: int | None = None,
        end: int | None = None,
        limit: int = 100,
        server_time: int | None = None,
    ) -> list[Kline]:
        """A swap's candles oldest first (see :meth:`OkxRest.klines` for the paging), volume in
        the base asset."""
        iv = Interval(interval)
        value = await self.contract_value(symbol)
        rows = await self._candles(
            swap_inst_id(symbol),
            iv,
            start,
            limit,
            server_time,
            lambda body: payloads.swap_candles(body, symbol, iv, value),
        )
        return [
            k
            for k in rows
            if (start is None or k.open_time >= start) and (end is None or k.open_time <= end)
        ]

    async def trades_from(self, symbol: str, from_id: int, limit: int = 100) -> list[Trade]:
        """A swap's trades with ids from ``from_id`` on, oldest first (``after`` just past the
        last id wanted: OKX pages backwards from it)."""
        value = await self.contract_value(symbol)
        trades = await self._trades(
            swap_inst_id(symbol),
            from_id,
            limit,
            lambda body: payloads.swap_trades(body, symbol, value),
        )
        return [t for t in trades if t.trade_id >= from_id]

    async def depth(self, symbol: str, limit: int = 400) -> BookSnapshot:
        value = await self.contract_value(symbol)
        params = {"instId": swap_inst_id(symbol), "sz": min(limit, okx.BOOK_DEPTH)}
        return await self._ask(
            "books", params, lambda body: payloads.swap_books(body, symbol, value)
        )

    async def funding_rate(self, symbol: str) -> MarkPrice:
        """The rate now in force and the next funding time (``fundingTime``)."""
        params = {"instId": swap_inst_id(symbol)}
        rows = await self._ask("funding-rate", params, payloads.funding_rate)
        if not rows:
            raise RestError(f"OKX sent no funding rate of {symbol}", retryable=True)
        return rows[0]

    async def funding_history(
        self, symbol: str, before: int | None = None, after: int | None = None, limit: int = 400
    ) -> list[Funding]:
        """Settled fundings oldest first: those after funding time ``before`` and before
        ``after`` (each exclusive; the newest ``limit`` of them; OKX keeps three months)."""
        params: dict[str, Any] = {
            "instId": swap_inst_id(symbol),
            "limit": min(limit, FUNDING_RATE_HISTORY_LIMIT),
        }
        if before is not None:
            params["before"] = before
        if after is not None:
            params["after"] = after
        return await self._ask("funding-rate-history", params, payloads.funding_history)

    async def fundings_between(self, symbol: str, start: int, end: int) -> list[Funding]:
        """Every funding settled in [start, end] that OKX still keeps (three months), oldest
        first: pages of 400 backwards from ``end`` (OKX answers the newest of a range)."""
        pages: list[list[Funding]] = []
        cursor = end + 1  # ``after``: older than this funding time
        while cursor > start:
            page = await self.funding_history(symbol, before=start - 1, after=cursor)
            pages.append([f for f in page if start <= f.funding_time <= end])
            if len(page) < FUNDING_RATE_HISTORY_LIMIT:
                break
            cursor = page[0].funding_time
        return [f for page in reversed(pages) for f in page]

    async def open_interest(self, symbol: str) -> OpenInterest:
        """Open interest now, in the base asset."""
        value = await self.contract_value(symbol)
        params = {"instType": "SWAP", "instId": swap_inst_id(symbol)}
        rows = await self._ask(
            "open-interest", params, lambda body: payloads.open_interest(body, {symbol: value})
        )
        if not rows:
            raise RestError(f"OKX sent no open interest of {symbol}", retryable=True)
        return rows[0]

    async def open_interest_history(
        self, symbol: str, begin: int | None = None, end: int | None = None, period: str = "5m"
    ) -> list[OpenInterest]:
        """Open interest at each ``period`` newer than ``begin`` and older than ``end`` (each
        exclusive; the newest 100 of them), oldest first, in the base asset: OKX's trading
        statistics keep the latest 1,440 of a period."""
        params: dict[str, Any] = {
            "instId": swap_inst_id(symbol),
            "period": period,
            "limit": OPEN_INTEREST_HISTORY_LIMIT,
        }
        if begin is not None:
            params["begin"] = begin
        if end is not None:
            params["end"] = end
        return await self._ask(
            "open-interest-history",
            params,
            lambda body: payloads.open_interest_history(body, symbol),
        )

    async def open_interest_between(self, symbol: str, start: int, end: int) -> list[OpenInterest]:
        """Open interest at each 5 minutes in [start, end] that OKX still keeps (the latest
        1,440: five days), oldest first: pages of 100 backwards from ``end``."""
        pages: list[list[OpenInterest]] = []
        cursor = end + 1  # ``end``: older than this time
        while cursor > start:
            page = await self.open_interest_history(symbol, begin=start - 1, end=cursor)
            pages.append([o for o in page if start <= o.time <= end])
            if len(page) < OPEN_INTEREST_HISTORY_LIMIT:
                break
            cursor = page[0].time
        return [o for page in reversed(pages) for o in page]

    async def mark_price(self, symbol: str) -> MarkPrice:
        params = {"instType": "SWAP", "instId": swap_inst_id(symbol)}
        rows = await self._ask("mark-price", params, payloads.mark_prices)
        if not rows:
            raise RestError(f"OKX sent no mark price of {symbol}", retryable=True)
        return rows[0]
