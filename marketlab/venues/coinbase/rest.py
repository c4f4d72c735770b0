"""Coinbase Advanced Trade public REST over ccxt, paced under Coinbase's per-IP limit.

ccxt's ``coinbase`` serves the public ``/api/v3/brokerage/market/...`` endpoints and
``/api/v3/brokerage/time`` without keys (its ``v3`` public API: only the ``private`` ones sign),
so it does the HTTP here as elsewhere. The public REST limit is about 10 requests a second per
IP (secondary sources; Coinbase Exchange documents 10 with bursts of 15), with HTTP 429 beyond
it. :class:`SecondWindowPacer` (sans-I/O) keeps this client at 7 a second (other clients may
share the IP) and, after a 429, holds every request until it has surely passed.
"""

from __future__ import annotations

import functools
import math
import time
from typing import Any

import msgspec

from marketlab.records import BookSnapshot, Interval, Kline, Ticker, Trade
from marketlab.stream.ccxt_clients import ccxt_errors, ccxt_exchange
from marketlab.stream.rest import GovernorStats, PacedRest
from marketlab.venues import coinbase as cb
from marketlab.venues.pacing import RequestWindow

LIMIT = 10  # public requests per second per IP
WINDOW_S = 1.0
PAUSE_S = 2.0  # held after a 429 without Retry-After, doubled while they keep coming
MAX_PAUSE_S = 60.0
MAX_TRADE_PAGES = 10  # recent-trade pages looked back through to fill one gap
# A candle is taken as closed this long after its end, not at once: its last trades may still
# be on their way into the venue's candles (Coinbase's rows carry no "closed" flag).
CLOSED_AFTER_MS = 1000


class SecondWindowPacer:
    """At most ``limit * headroom`` requests in any second; after a 429, nothing until the
    pause (Retry-After, else 2 s doubling to 60 s) is over. Fed times by its owner."""

    def __init__(self, limit: int = LIMIT, headroom: float = 0.7):
        self.limit = limit
        self.window = RequestWindow(int(limit * headroom), WINDOW_S)
        self.blocked_until = 0.0
        self.pause = PAUSE_S
        self.stats = GovernorStats()

    def delay(self, cost: Any, now: float) -> float:
        if now < self.blocked_until:
            return self.blocked_until - now
        return self.window.delay(now)

    def sent(self, cost: Any, now: float) -> None:
        self.window.sent(now)
        self.stats.requests += 1

    def usage(self, now: float) -> tuple[int, int]:
        """Requests in the current second and Coinbase's limit per second."""
        return self.window.used(now), self.limit

    def observe(self, status: int, now: float, retry_after: str | None = None) -> None:
        """An answer's HTTP status (and its Retry-After header, when there is one)."""
        if status == 429:
            self.stats.rate_limited += 1
            wait = _seconds(retry_after)
            if wait is None:
                wait, self.pause = self.pause, min(MAX_PAUSE_S, self.pause * 2)
            self.blocked_until = max(self.blocked_until, now + wait)
            return
        if status < 400:
            self.pause = PAUSE_S
        elif status >= 500:
            self.stats.server_errors += 1


def _seconds(text: str | None) -> float | None:
    try:
        value = float(text) if text else math.nan
    except ValueError:
        return None
    return min(value, MAX_PAUSE_S) if math.isfinite(value) and value >= 0 else None


def _header(headers: Any, name: str) -> str | None:
    for key, value in dict(headers or {}).items():
        if str(key).lower() == name:
            return str(value)
    return None


# Client errors that no retry mends (a bad argument, an unknown product, a path needing a key).
REFUSED = (400, 401, 404)


@functools.cache
def _coinbase_class() -> type:
    """ccxt's Coinbase, subclassed on first use (see okx/rest.py's _okx_class): every answer's
    status reaches the pacer before ccxt turns it into an error, and a refusal (400, 401, 404)
    becomes ccxt's BadRequest, which the stream layer does not retry (ccxt would make a 404 an
    ExchangeNotAvailable, and Coinbase's ``NOT_FOUND`` an ExchangeError, both retried)."""
    ccxt_coinbase_class: Any = ccxt_exchange("coinbase")  # ccxt is untyped

    class _Coinbase(ccxt_coinbase_class):
        pacer: SecondWindowPacer

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
            retry = _header(response_headers, "retry-after")
            self.pacer.observe(int(code), time.monotonic(), retry)
            return response_body

        def handle_errors(
            self,
            code: Any,
            reason: Any,
            url: Any,
            method: Any,
            headers: Any,
            body: Any,
            response: Any,
            request_headers: Any,
            request_body: Any,
        ) -> Any:
            if int(code) in REFUSED:
                err = cb.api_error(body or b"{}", int(code))
                why = str(err) if err is not None else f"HTTP {code} {reason}"
                raise ccxt_errors().BadRequest(f"coinbase refused {url}: {why}")
            return super().handle_errors(
                code, reason, url, method, headers, body, response, request_headers, request_body
            )

    return _Coinbase


class CoinbaseRest(PacedRest):
    """The public REST endpoints a collector needs, as the same records as Binance's."""

    kline_page = cb.KLINE_LIMIT
    windowed = True  # a page is the window [start, start + limit bars)
    trade_page = cb.RECENT_TRADES_LIMIT
    recent_trades_limit = cb.RECENT_TRADES_LIMIT

    def __init__(self, base_url: str = cb.DEFAULT_REST_URL, *, timeout_s: float = 10.0):
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.governor = SecondWindowPacer()
        self._ex = _coinbase_class()({"enableRateLimit": False, "timeout": int(timeout_s * 1000)})
        self._ex.pacer = self.governor
        self._ex.urls["api"]["rest"] = self.base_url

    async def _get(self, method: str, params: dict[str, Any]) -> bytes:
        return msgspec.json.encode(await self._call(method, params, 1))

    async def server_time(self) -> int:
        return cb.parse_time(await self._get("v3_public_get_brokerage_time", {}))

    async def klines(
        self,
        symbol: str,
        interval: str,
        *,
        start: int | None = None,
        end: int | None = None,
        limit: int = cb.KLINE_LIMIT,
        server_time: int | None = None,
    ) -> list[Kline]:
        """Candles oldest first: from ``start`` for ``limit`` bars (or the newest ``limit``),
        up to ``end``; closed when they ended ``CLOSED_AFTER_MS`` before the server's time.
        Coinbase takes the window in unix seconds and leaves out buckets with no trade."""
        iv = Interval(interval)
        limit = max(1, min(limit, cb.KLINE_LIMIT))
        now = server_time if server_time is not None else await self.server_time()
        first = start if start is not None else iv.open_of(now) - (limit - 1) * iv.ms
        first = iv.open_of(max(0, first))
        last = iv.open_of(first + (limit - 1) * iv.ms)
        if end is not None:
            last = min(last, end)
        if last < first:
            return []  # nothing asked for (Coinbase refuses an end before the start)
        params = {
            "product_id": cb.product_id(symbol),
            "granularity": cb.granularity(iv),
            "start": str(first // 1000),
            # the last second of the last bucket: inside it whether Coinbase's end is inclusive
            # or not, and short of the next bucket either way
            "end": str((last + iv.ms) // 1000 - 1),
        }
        body = await self._get("v3_public_get_brokerage_market_products_product_id_candles", params)
        rows = cb.parse_candles(body, symbol, iv, now - CLOSED_AFTER_MS)
        return [k for k in rows if first <= k.open_time <= last]

    async def listed_symbols(self) -> dict[str, float]:
        """Every spot product ``/market/products`` lists as online and trading, with its tick."""
        return cb.parse_products(await self._get("v3_public_get_brokerage_market_products", {}))

    async def spot_symbols(self, quote: str) -> list[str]:
        """The spot products trading now quoted in ``quote``."""
        body = await self._get("v3_public_get_brokerage_market_products", {})
        return cb.parse_spot_symbols(body, quote)

    async def depth(self, symbol: str, limit: int = cb.REST_BOOK_LIMIT) -> BookSnapshot:
        params = {
            "product_id": cb.product_id(symbol),
            "limit": max(1, min(limit, cb.REST_BOOK_LIMIT)),
        }
        body = await self._get("v3_public_get_brokerage_market_product_book", params)
        return cb.parse_product_book(body, symbol)

    async def recent_trades(
        self, symbol: str, limit: int = cb.RECENT_TRADES_LIMIT, *, end: int | None = None
    ) -> list[Trade]:
        """The last ``limit`` trades (at most 1000), oldest first; with ``end`` (unix seconds)
        the last ones up to it."""
        params: dict[str, Any] = {
            "product_id": cb.product_id(symbol),
            "limit": max(1, min(limit, cb.RECENT_TRADES_LIMIT)),
        }
        if end is not None:
            params["end"] = str(end)
        body = await self._get("v3_public_get_brokerage_market_products_product_id_ticker", params)
        return cb.parse_market_trades(body, symbol)

    async def trades_from(self, symbol: str, from_id: int, limit: int = 1000) -> list[Trade]:
        """Trades with ids from ``from_id`` on, oldest first, as far back as Coinbase's recent
        trades reach: it looks trades up by time only (``end``, in seconds), never by id, so
        pages of the newest trades are taken going back (at most ``MAX_TRADE_PAGES``) until one
        reaches ``from_id``. Ids it no longer reaches are absent (the first id returned is then
        above ``from_id``). ``limit`` is not the page asked: the newest trades come first, so
        the page is always the largest."""
        found: dict[int, Trade] = {}
        end: int | None = None
        for _ in range(MAX_TRADE_PAGES):
            page = await self.recent_trades(symbol, self.trade_page, end=end)
            found.update((t.trade_id, t) for t in page)
            if not page or page[0].trade_id <= from_id or len(page) < self.trade_page:
                break
            older = page[0].time // 1000 + 1  # the second of the oldest, which it may share
            if end is not None and older >= end:
                break  # a page all in one second: nothing older is reachable by time
            end = older
        return [found[i] for i in sorted(found) if i >= from_id]

    async def tickers(self, symbols: list[str]) -> list[Ticker]:
        """The last price, 24 h volume and change of ``symbols`` from ``/market/products``
        (no best bid or ask there), at the server's time."""
        wanted = {cb.symbol_of(cb.product_id(s)) for s in symbols}
        now = await self.server_time()
        params = {"product_ids": [cb.product_id(s) for s in symbols]}
        body = await self._get("v3_public_get_brokerage_market_products", params)
        return [t for t in cb.parse_product_tickers(body, now) if t.symbol in wanted]
