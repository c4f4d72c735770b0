"""Coinbase Advanced Trade public REST, paced under Coinbase's per-IP limit.

:class:`~marketlab.stream.rest.PacedRest` does the HTTP: the public ``/api/v3/brokerage/market/...``
endpoints and ``/api/v3/brokerage/time`` need no key. The public REST limit is about 10
requests a second per IP (secondary sources; Coinbase Exchange documents 10 with bursts of 15),
with HTTP 429 beyond it. :class:`SecondWindowPacer` (sans-I/O) keeps this client at 7 a second
(other clients may share the IP) and, after a 429, holds every request until it has surely
passed. Coinbase refuses with a 4xx and its error in the body (``{"error", "error_details",
"message"}``, or the grpc-gateway ``{"code", "message"}``): :meth:`CoinbaseRest.refusal`
quotes the venue's code and message in the :class:`~marketlab.stream.rest.RestError`.
"""

from __future__ import annotations

import math
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, TypeVar

from marketlab.records import BookSnapshot, Interval, Kline, Ticker, Trade
from marketlab.stream.rest import (
    QUOTED_BODY,
    Answer,
    GovernorStats,
    PacedRest,
    RestError,
    status_refusal,
)
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
T = TypeVar("T")


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


# --- refusals -----------------------------------------------------------------------------

# Error codes that say the request itself is wrong: no retry mends them, even in a 2xx.
REQUEST_ERRORS = frozenset({"INVALID_ARGUMENT"})


def _cut(text: str) -> str:
    """A field of the venue's error as text for a message, cut when long."""
    return text if len(text) <= QUOTED_BODY else text[:QUOTED_BODY] + "..."


def refusal(answer: Answer, request: str) -> RestError | None:
    """The error ``answer`` is, or None when it carries what was asked.

    By its status (:func:`~marketlab.stream.rest.status_refusal`): a 2xx is fine; 403, 408,
    418, 425, 429 and the 5xx may pass; another 4xx never does (400 a bad argument, 401 a path
    that needs a key, 404 an unknown product). The message names the request and quotes
    Coinbase's code and message when the body has them. A 2xx whose body is Coinbase's error
    instead of data is a refusal too, retryable unless its code says the request is wrong."""
    by_status = status_refusal(answer, request)
    said = cb.api_error(answer.body)
    if said is None:
        return by_status
    words = f"Coinbase error {_cut(said.code)}" + (
        f": {_cut(said.message)}" if said.message else ""
    )
    if by_status is None:
        retryable = said.code not in REQUEST_ERRORS
        return RestError(f"{request}: HTTP {answer.status}: {words}", retryable)
    return RestError(f"{request}: HTTP {answer.status}: {words}", by_status.retryable)


class CoinbaseRest(PacedRest):
    """The public REST endpoints a collector needs, as the same records as Binance's."""

    kline_page = cb.KLINE_LIMIT
    windowed = True  # a page is the window [start, start + limit bars)
    trade_page = cb.RECENT_TRADES_LIMIT
    recent_trades_limit = cb.RECENT_TRADES_LIMIT

    def __init__(self, base_url: str = cb.DEFAULT_REST_URL, *, timeout_s: float = 10.0):
        super().__init__(base_url, timeout_s=timeout_s)
        self.governor = SecondWindowPacer()

    def observe(self, answer: Answer) -> None:
        """The status and Retry-After reach the pacer (Coinbase sends no usage headers, and
        its bodies carry no rate-limit code apart from the 429's)."""
        self.governor.observe(answer.status, time.monotonic(), answer.headers.get("Retry-After"))

    def refusal(self, answer: Answer, request: str) -> RestError | None:
        return refusal(answer, request)

    async def _market(
        self, path: str, params: dict[str, object], reader: Callable[[bytes], T]
    ) -> T:
        """What ``reader`` makes of the public ``/market`` endpoint ``path``'s answer (one
        request of the limit)."""
        return await self._read(cb.MARKET_PATH + path, params, 1, reader)

    async def server_time(self) -> int:
        return await self._read(cb.TIME_PATH, {}, 1, cb.parse_time)

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
        params: dict[str, object] = {
            "granularity": cb.granularity(iv),
            "start": str(first // 1000),
            # the last second of the last bucket: inside it whether Coinbase's end is inclusive
            # or not, and short of the next bucket either way
            "end": str((last + iv.ms) // 1000 - 1),
        }
        rows = await self._market(
            f"/products/{_segment(symbol)}/candles",
            params,
            lambda body: cb.parse_candles(body, symbol, iv, now - CLOSED_AFTER_MS),
        )
        return [k for k in rows if first <= k.open_time <= last]

    async def listed_symbols(self) -> dict[str, float]:
        """Every spot product ``/market/products`` lists as online and trading, with its tick."""
        return await self._market("/products", {}, cb.parse_products)

    async def spot_symbols(self, quote: str) -> list[str]:
        """The spot products trading now quoted in ``quote``."""
        return await self._market("/products", {}, lambda body: cb.parse_spot_symbols(body, quote))

    async def depth(self, symbol: str, limit: int = cb.REST_BOOK_LIMIT) -> BookSnapshot:
        params: dict[str, object] = {
            "product_id": cb.product_id(symbol),
            "limit": max(1, min(limit, cb.REST_BOOK_LIMIT)),
        }
        return await self._market(
            "/product_book", params, lambda body: cb.parse_product_book(body, symbol)
        )

    async def recent_trades(
        self, symbol: str, limit: int = cb.RECENT_TRADES_LIMIT, *, end: int | None = None
    ) -> list[Trade]:
        """The last ``limit`` trades (at most 1000), oldest first; with ``end`` (unix seconds)
        the last ones up to it."""
        params: dict[str, object] = {"limit": max(1, min(limit, cb.RECENT_TRADES_LIMIT))}
        if end is not None:
            params["end"] = str(end)
        return await self._market(
            f"/products/{_segment(symbol)}/ticker",
            params,
            lambda body: cb.parse_market_trades(body, symbol),
        )

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
        params: dict[str, object] = {"product_ids": [cb.product_id(s) for s in symbols]}
        tickers = await self._market(
            "/products", params, lambda body: cb.parse_product_tickers(body, now)
        )
        return [t for t in tickers if t.symbol in wanted]


def _segment(symbol: str) -> str:
    """``symbol``'s Coinbase product id as a path segment (``BTCUSD`` → ``BTC-USD``)."""
    return urllib.parse.quote(cb.product_id(symbol), safe="")
