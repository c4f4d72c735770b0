"""OKX v5 public REST over ccxt, paced under OKX's per-endpoint limits.

OKX counts requests per endpoint per two seconds (20 or 40 depending on the endpoint) and
answers HTTP 429 / code 50011 beyond that. :class:`WindowPacer` (sans-I/O) keeps each
endpoint under its limit and backs off after a 429.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import msgspec

from marketlab.records import BookSnapshot, Interval, Kline, Ticker, Trade
from marketlab.stream.ccxt_clients import ccxt_exchange
from marketlab.stream.rest import GovernorStats, PacedRest
from marketlab.venues import okx
from marketlab.venues.pacing import RequestWindow

# Requests per two seconds per IP (OKX's documented limits), with headroom for other clients.
LIMITS = {
    "time": 10,
    "instruments": 20,
    "ticker": 20,
    "tickers": 20,
    "books": 40,
    "candles": 40,
    "history-candles": 20,
    "history-trades": 20,
}
WINDOW_S = 2.0


class WindowPacer:
    """At most ``limit`` requests per endpoint in any ``WINDOW_S``; fed times by its owner."""

    def __init__(self, limits: dict[str, int], headroom: float = 0.75):
        self.limits = dict(limits)
        self.windows = {k: RequestWindow(int(v * headroom), WINDOW_S) for k, v in limits.items()}
        self.blocked_until = 0.0
        self.stats = GovernorStats()

    def delay(self, endpoint: str, now: float) -> float:
        if now < self.blocked_until:
            return self.blocked_until - now
        return self.windows[endpoint].delay(now)

    def sent(self, endpoint: str, now: float) -> None:
        self.windows[endpoint].sent(now)
        self.stats.requests += 1

    def usage(self, now: float) -> tuple[int, int]:
        """Of the endpoint nearest its limit: requests in its current window and OKX's limit."""
        usage = [(self.windows[k].used(now), limit) for k, limit in self.limits.items()]
        return max(usage, key=lambda pair: pair[0] / pair[1], default=(0, 0))

    def observe(self, status: int, now: float) -> None:
        if status == 429:
            self.stats.rate_limited += 1
            self.blocked_until = max(self.blocked_until, now + WINDOW_S)
        elif status >= 500:
            self.stats.server_errors += 1


@functools.cache
def _okx_class() -> type:
    """ccxt's OKX, subclassed on first use (see binance/rest.py's ccxt_binance)."""
    ccxt_okx_class: Any = ccxt_exchange("okx")  # ccxt is untyped

    class _Okx(ccxt_okx_class):
        pacer: WindowPacer

        def on_rest_response(
            self,
            code: Any,
            reason: Any,
            url: Any,
            method: Any,
            response_headers: Any,
            response_body: Any,
            request_headers: Any,
            request_body: Any,
        ) -> Any:
            self.pacer.observe(int(code), time.monotonic())
            return response_body

    return _Okx


class OkxRest(PacedRest):
    """The public REST endpoints a collector needs, as the same records as Binance's."""

    kline_page = okx.HISTORY_CANDLES_LIMIT  # the smaller of the two candle endpoints' pages
    windowed = True  # a page is the window [start, start + limit bars)

    def __init__(self, base_url: str = okx.DEFAULT_REST_URL, *, timeout_s: float = 10.0):
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.governor = WindowPacer(LIMITS)
        self._ex = _okx_class()({"enableRateLimit": False, "timeout": int(timeout_s * 1000)})
        self._ex.pacer = self.governor
        self._ex.urls["api"]["rest"] = self.base_url

    async def server_time(self) -> int:
        return okx.parse_time(await self._call("public_get_public_time", {}, "time"))

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
        """Candles oldest first: from ``start`` for ``limit`` bars (or the newest ``limit``),
        up to ``end``. Recent bars come from ``/market/candles``, older ones from
        ``/market/history-candles``; ``closed`` is OKX's own ``confirm`` flag."""
        iv = Interval(interval)
        params: dict[str, Any] = {"instId": okx.inst_id(symbol), "bar": okx.bar(iv)}
        endpoint = "candles"
        if start is None:
            params["limit"] = min(limit, okx.CANDLES_LIMIT)
        else:
            now = server_time if server_time is not None else await self.server_time()
            recent_from = iv.open_of(now) - (okx.RECENT_CANDLES - 1) * iv.ms
            if start < recent_from:
                endpoint, limit = "history-candles", min(limit, okx.HISTORY_CANDLES_LIMIT)
            else:
                limit = min(limit, okx.CANDLES_LIMIT)
            params.update(before=max(0, start - 1), after=start + limit * iv.ms, limit=limit)
        method = (
            "public_get_market_candles"
            if endpoint == "candles"
            else "public_get_market_history_candles"
        )
        payload = await self._call(method, params, endpoint)
        rows = okx.parse_candles(msgspec.json.encode(payload), symbol, iv)
        if start is not None:
            rows = [k for k in rows if k.open_time >= start]
        if end is not None:
            rows = [k for k in rows if k.open_time <= end]
        return rows

    async def listed_symbols(self) -> dict[str, float]:
        """Every spot instrument ``/api/v5/public/instruments`` lists, with its price tick."""
        payload = await self._call(
            "public_get_public_instruments", {"instType": "SPOT"}, "instruments"
        )
        return okx.parse_instruments(msgspec.json.encode(payload))

    async def spot_symbols(self, quote: str) -> list[str]:
        """The spot instruments trading now (state ``live``) quoted in ``quote``."""
        payload = await self._call(
            "public_get_public_instruments", {"instType": "SPOT"}, "instruments"
        )
        return okx.parse_spot_symbols(msgspec.json.encode(payload), quote)

    trade_page = 100  # trades per /market/history-trades request

    async def trades_from(self, symbol: str, from_id: int, limit: int = 100) -> list[Trade]:
        """Trades with ids from ``from_id`` on, oldest first: the page OKX pages backwards from
        ``after`` (ids below it), so ``after`` is set just past the last id wanted."""
        limit = max(1, min(limit, self.trade_page))
        params = {
            "instId": okx.inst_id(symbol),
            "type": "1",
            "after": str(from_id + limit),
            "limit": limit,
        }
        payload = await self._call("public_get_market_history_trades", params, "history-trades")
        return [
            t
            for t in okx.parse_history_trades(msgspec.json.encode(payload), symbol)
            if t.trade_id >= from_id
        ]

    async def depth(self, symbol: str, limit: int = 400) -> BookSnapshot:
        params = {"instId": okx.inst_id(symbol), "sz": min(limit, okx.BOOK_DEPTH)}
        payload = await self._call("public_get_market_books", params, "books")
        return okx.parse_books(msgspec.json.encode(payload), symbol)

    async def tickers(self, symbols: list[str]) -> list[Ticker]:
        wanted = {okx.symbol_of(okx.inst_id(s)) for s in symbols}
        payload = await self._call("public_get_market_tickers", {"instType": "SPOT"}, "tickers")
        return [t for t in okx.parse_tickers(msgspec.json.encode(payload)) if t.symbol in wanted]
