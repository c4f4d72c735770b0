"""Bybit v5 public REST over ccxt, paced under Bybit's per-IP limit.

Bybit allows 600 requests per 5-second window per IP, counted over everything the IP sends to
it; beyond that it answers HTTP 403 "access too frequent" and bans the IP for at least 10
minutes, and any request during the ban prolongs nothing but still fails. :class:`IpWindowPacer`
(sans-I/O) keeps this client well under the limit (other clients may share the IP), and after
a 403 holds every request until the ban has surely lifted: it never retries into a ban.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import msgspec

from marketlab.records import BookSnapshot, Interval, Kline, Ticker, Trade
from marketlab.stream.ccxt_clients import ccxt_exchange
from marketlab.stream.rest import GovernorStats, PacedRest
from marketlab.venues import bybit
from marketlab.venues.pacing import RequestWindow

LIMIT = 600  # requests per window per IP (Bybit's documented limit)
WINDOW_S = 5.0
BAN_S = 600.0  # a 403 bans the IP for 10 minutes
BAN_MARGIN_S = 15.0  # waited beyond the ban, so the first request after it is not too early
RATE_LIMIT_CODES = (10006, 10018)  # "Too many visits!", "Exceeded the IP Rate Limit"


class IpWindowPacer:
    """At most ``limit * headroom`` requests in any ``WINDOW_S``; after a 403, nothing until
    the ban is over. Fed times by its owner (``delay(cost, now)``, ``sent(cost, now)``)."""

    def __init__(self, limit: int = LIMIT, headroom: float = 0.5):
        self.limit = limit
        self.window = RequestWindow(int(limit * headroom), WINDOW_S)
        self.blocked_until = 0.0
        self.stats = GovernorStats()

    def delay(self, cost: Any, now: float) -> float:
        if now < self.blocked_until:
            return self.blocked_until - now
        return self.window.delay(now)

    def sent(self, cost: Any, now: float) -> None:
        self.window.sent(now)
        self.stats.requests += 1

    def usage(self, now: float) -> tuple[int, int]:
        """Requests in the current window and Bybit's limit per window."""
        return self.window.used(now), self.limit

    def observe(self, status: int, now: float, ret_code: int | None = None) -> None:
        """An answer's HTTP status (and ``retCode``, when the body has one)."""
        if status == 403:  # the IP is banned: wait it out
            self.stats.banned += 1
            self.stats.forbidden += 1
            self.blocked_until = max(self.blocked_until, now + BAN_S + BAN_MARGIN_S)
        elif status == 429 or ret_code in RATE_LIMIT_CODES:
            self.stats.rate_limited += 1
            self.blocked_until = max(self.blocked_until, now + WINDOW_S)
        elif status >= 500:
            self.stats.server_errors += 1


class _RetCode(msgspec.Struct):
    retCode: int | None = None


_RET_CODE = msgspec.json.Decoder(_RetCode)


def ret_code(body: Any) -> int | None:
    """The ``retCode`` of an answer's body, or None when it has none (or is no JSON)."""
    if not isinstance(body, str | bytes) or not body:
        return None
    try:
        return _RET_CODE.decode(body).retCode
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None


@functools.cache
def _bybit_class() -> type:
    """ccxt's Bybit, subclassed on first use (see okx/rest.py's _okx_class): every answer's
    status reaches the pacer before ccxt turns it into an error."""
    ccxt_bybit_class: Any = ccxt_exchange("bybit")  # ccxt is untyped

    class _Bybit(ccxt_bybit_class):
        pacer: IpWindowPacer

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
            self.pacer.observe(int(code), time.monotonic(), ret_code(response_body))
            return response_body

    return _Bybit


class BybitRest(PacedRest):
    """The public spot REST endpoints a collector needs, as the same records as Binance's."""

    kline_page = bybit.KLINE_LIMIT
    windowed = True  # a page is the window [start, start + limit bars)
    recent_trades_limit = bybit.RECENT_TRADES_LIMIT

    def __init__(self, base_url: str = bybit.DEFAULT_REST_URL, *, timeout_s: float = 10.0):
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.governor = IpWindowPacer()
        self._ex = _bybit_class()({"enableRateLimit": False, "timeout": int(timeout_s * 1000)})
        self._ex.pacer = self.governor
        for name in list(self._ex.urls["api"]):
            self._ex.urls["api"][name] = self.base_url

    async def _get(self, method: str, params: dict[str, Any]) -> bytes:
        return msgspec.json.encode(await self._call(method, params, 1))

    async def server_time(self) -> int:
        return bybit.parse_time(await self._get("public_get_v5_market_time", {}))

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
        limit = max(1, min(limit, bybit.KLINE_LIMIT))
        params: dict[str, Any] = {
            "category": bybit.CATEGORY,
            "symbol": bybit.bybit_symbol(symbol),
            "interval": bybit.kline_interval(iv),
            "limit": limit,
        }
        if start is not None:
            window_end = start + limit * iv.ms - 1
            params.update(start=start, end=window_end if end is None else min(end, window_end))
        elif end is not None:
            params["end"] = end
        now = server_time if server_time is not None else await self.server_time()
        body = await self._get("public_get_v5_market_kline", params)
        rows = bybit.parse_klines(body, symbol, iv, now)
        if start is not None:
            rows = [k for k in rows if k.open_time >= start]
        if end is not None:
            rows = [k for k in rows if k.open_time <= end]
        return rows

    async def listed_symbols(self) -> dict[str, float]:
        """Every spot symbol ``/v5/market/instruments-info`` lists as trading, with its tick."""
        body = await self._get("public_get_v5_market_instruments_info", {"category": "spot"})
        return bybit.parse_instruments(body)

    async def spot_symbols(self, quote: str) -> list[str]:
        """The spot symbols trading now quoted in ``quote``."""
        body = await self._get("public_get_v5_market_instruments_info", {"category": "spot"})
        return bybit.parse_spot_symbols(body, quote)

    async def depth(self, symbol: str, limit: int = bybit.REST_BOOK_LIMIT) -> BookSnapshot:
        params = {
            "category": bybit.CATEGORY,
            "symbol": bybit.bybit_symbol(symbol),
            "limit": max(1, min(limit, bybit.REST_BOOK_LIMIT)),
        }
        body = await self._get("public_get_v5_market_orderbook", params)
        return bybit.parse_orderbook(body, symbol)

    async def recent_trades(
        self, symbol: str, limit: int = bybit.RECENT_TRADES_LIMIT
    ) -> list[Trade]:
        """The last ``limit`` (at most 60) spot trades, oldest first: Bybit looks trades up by
        nothing else (no id, no time), so what an outage lost beyond them is gone."""
        params = {
            "category": bybit.CATEGORY,
            "symbol": bybit.bybit_symbol(symbol),
            "limit": max(1, min(limit, bybit.RECENT_TRADES_LIMIT)),
        }
        body = await self._get("public_get_v5_market_recent_trade", params)
        return bybit.parse_recent_trades(body, symbol)

    async def tickers(self, symbols: list[str]) -> list[Ticker]:
        wanted = {bybit.bybit_symbol(s) for s in symbols}
        if len(wanted) == 1:  # one symbol: ask for it alone
            params = {"category": bybit.CATEGORY, "symbol": next(iter(wanted))}
        else:
            params = {"category": bybit.CATEGORY}
        body = await self._get("public_get_v5_market_tickers", params)
        return [t for t in bybit.parse_tickers(body) if t.symbol in wanted]
