"""Bybit v5 public REST, paced under Bybit's per-IP limit.

:class:`~marketlab.stream.rest.PacedRest` does the HTTP; this module says what an answer means.

Bybit allows 600 requests per 5-second window per IP, counted over everything the IP sends to
it; beyond that it answers HTTP 403 "access too frequent" and bans the IP for at least 10
minutes, and any request during the ban prolongs nothing but still fails. :class:`IpWindowPacer`
(sans-I/O) keeps this client well under the limit (other clients may share the IP), and after
a 403 holds every request until the ban has surely lifted: it never retries into a ban.

Bybit answers its errors with HTTP 200 and an envelope whose ``retCode`` is not 0
(``{"retCode":10001,"retMsg":"params error: symbol invalid",...}``). :func:`refusal_of` reads
that envelope from any bytes and says whether trying again may help: a rate limit, a server
error or a timeout may pass; a bad symbol, parameter or path never does.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from marketlab.numbers import DECODE_ERRORS
from marketlab.records import BookSnapshot, Interval, Kline, Ticker, Trade
from marketlab.stream.rest import (
    QUOTED_BODY,
    Answer,
    GovernorStats,
    PacedRest,
    RestError,
    quoted,
    status_refusal,
)
from marketlab.venues import bybit
from marketlab.venues.bybit.protocol import BybitAPIError
from marketlab.venues.pacing import RequestWindow

LIMIT = 600  # requests per window per IP (Bybit's documented limit)
WINDOW_S = 5.0
BAN_S = 600.0  # a 403 bans the IP for 10 minutes
BAN_MARGIN_S = 15.0  # waited beyond the ban, so the first request after it is not too early
RATE_LIMIT_CODES = (10006, 10018)  # "Too many visits!", "Exceeded the IP Rate Limit"
# retCodes of a request that no retry mends: 10001 "Request parameter error" (an unknown
# symbol, category, interval or limit), 10017 "Route not found", 7001 "request params type
# error" and spot's 170130 "Data sent for parameter is not valid". Every other code a public
# GET meets is the venue's passing state (10000 "Server Timeout", 10016 "Server error", ...).
REFUSED_CODES = frozenset({7001, 10001, 10017, 170130})
UNKNOWN_SYMBOL = "Not supported symbols"  # the retMsg of an unlisted symbol, whatever its code


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


class _Envelope(msgspec.Struct):
    """The head of every Bybit answer; ``retMsg`` of any type, so a code is never lost to it."""

    retCode: int
    retMsg: Any = ""


_ENVELOPE = msgspec.json.Decoder(_Envelope)


def envelope(body: bytes) -> tuple[int, str] | None:
    """The ``retCode`` and ``retMsg`` of an answer's body, or None when the body is not Bybit's
    envelope (no JSON object, no integer ``retCode``). Never raises, whatever the bytes."""
    try:
        head = _ENVELOPE.decode(body)
    except DECODE_ERRORS:
        return None
    message = head.retMsg if isinstance(head.retMsg, str) else str(head.retMsg)
    return head.retCode, message[:QUOTED_BODY]


def ret_code(body: bytes) -> int | None:
    """The ``retCode`` of an answer's body, or None when it has none (or is no JSON)."""
    head = envelope(body)
    return None if head is None else head[0]


def refusal_of(answer: Answer, request: str) -> RestError | None:
    """The error ``answer`` to ``request`` is, or None when it carries what was asked.

    An envelope with ``retCode`` 0 is judged by its status alone. A code of Bybit's says more
    than the status: its rate limits may pass, and so may its other codes on a 2xx (a server
    error, a timeout: the venue's passing trouble); :data:`REFUSED_CODES` and an unlisted
    symbol never do. A 403 without an envelope is Bybit's IP ban, which the pacer waits out. A
    2xx answer that is no envelope at all (a proxy's page, a body cut short) is not Bybit's
    word: asked again later."""
    head = envelope(answer.body)
    succeeded = 200 <= answer.status < 300
    if head is None:
        if succeeded:
            body = quoted(answer.body) or "(empty body)"
            return RestError(
                f"{request}: HTTP {answer.status} without Bybit's envelope (no retCode): {body}",
                retryable=True,
            )
        if answer.status == 403:
            return RestError(
                f"{request}: HTTP 403, Bybit's IP ban (10 minutes; nothing is sent until it "
                f"is over): {quoted(answer.body) or '(empty body)'}",
                retryable=True,
            )
        return status_refusal(answer, request)
    code, message = head
    by_status = status_refusal(answer, request)
    if code == 0:
        return by_status
    if code in RATE_LIMIT_CODES:
        retryable = True
    elif code in REFUSED_CODES or UNKNOWN_SYMBOL in message:
        retryable = False
    else:
        retryable = by_status is None or by_status.retryable
    error = BybitAPIError(code, message, None if answer.status == 200 else answer.status)
    return RestError(f"{request}: {error}", retryable=retryable)


class BybitRest(PacedRest):
    """The public spot REST endpoints a collector needs, as the same records as Binance's."""

    kline_page = bybit.KLINE_LIMIT
    windowed = True  # a page is the window [start, start + limit bars)
    recent_trades_limit = bybit.RECENT_TRADES_LIMIT

    def __init__(self, base_url: str = bybit.DEFAULT_REST_URL, *, timeout_s: float = 10.0):
        super().__init__(base_url, timeout_s=timeout_s)
        self.governor = IpWindowPacer()

    def observe(self, answer: Answer) -> None:
        self.governor.observe(answer.status, time.monotonic(), ret_code(answer.body))

    def refusal(self, answer: Answer, request: str) -> RestError | None:
        return refusal_of(answer, request)

    async def server_time(self) -> int:
        return await self._read("/v5/market/time", {}, 1, bybit.parse_time)

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
        rows = await self._read(
            "/v5/market/kline", params, 1, lambda body: bybit.parse_klines(body, symbol, iv, now)
        )
        if start is not None:
            rows = [k for k in rows if k.open_time >= start]
        if end is not None:
            rows = [k for k in rows if k.open_time <= end]
        return rows

    async def listed_symbols(self) -> dict[str, float]:
        """Every spot symbol ``/v5/market/instruments-info`` lists as trading, with its tick."""
        params = {"category": "spot"}
        return await self._read("/v5/market/instruments-info", params, 1, bybit.parse_instruments)

    async def spot_symbols(self, quote: str) -> list[str]:
        """The spot symbols trading now quoted in ``quote``."""
        params = {"category": "spot"}
        return await self._read(
            "/v5/market/instruments-info",
            params,
            1,
            lambda body: bybit.parse_spot_symbols(body, quote),
        )

    async def depth(self, symbol: str, limit: int = bybit.REST_BOOK_LIMIT) -> BookSnapshot:
        params = {
            "category": bybit.CATEGORY,
            "symbol": bybit.bybit_symbol(symbol),
            "limit": max(1, min(limit, bybit.REST_BOOK_LIMIT)),
        }
        return await self._read(
            "/v5/market/orderbook", params, 1, lambda body: bybit.parse_orderbook(body, symbol)
        )

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
        return await self._read(
            "/v5/market/recent-trade",
            params,
            1,
            lambda body: bybit.parse_recent_trades(body, symbol),
        )

    async def tickers(self, symbols: list[str]) -> list[Ticker]:
        wanted = {bybit.bybit_symbol(s) for s in symbols}
        if len(wanted) == 1:  # one symbol: ask for it alone
            params = {"category": bybit.CATEGORY, "symbol": next(iter(wanted))}
        else:
            params = {"category": bybit.CATEGORY}
        tickers = await self._read("/v5/market/tickers", params, 1, bybit.parse_tickers)
        return [t for t in tickers if t.symbol in wanted]
