"""OKX v5 public REST, paced under OKX's per-endpoint limits.

OKX counts requests per endpoint per two seconds (20 or 40 depending on the endpoint) and
answers HTTP 429 with code 50011 beyond that. :class:`WindowPacer` (sans-I/O) keeps each
endpoint under its limit and backs off after a 429 (or a rate-limit code in a body).

OKX says what went wrong in the body, ``{"code":"51001","msg":"...","data":[]}``, with an
HTTP status that does not always say as much (a timeout of its own is HTTP 400 with 50004, a
busy system HTTP 200 with 50013): :func:`refusal_of` reads that code before the status, and
never raises on any bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import msgspec

from marketlab.numbers import DECODE_ERRORS
from marketlab.records import BookSnapshot, Interval, Kline, Ticker, Trade
from marketlab.stream.rest import (
    RETRYABLE_STATUSES,
    Answer,
    GovernorStats,
    PacedRest,
    RestError,
    quoted,
    status_refusal,
)
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
# Each endpoint's path under the REST base, by the name its limit is kept under.
PATHS = {
    "time": "/api/v5/public/time",
    "instruments": "/api/v5/public/instruments",
    "ticker": "/api/v5/market/ticker",
    "tickers": "/api/v5/market/tickers",
    "books": "/api/v5/market/books",
    "candles": "/api/v5/market/candles",
    "history-candles": "/api/v5/market/history-candles",
    "history-trades": "/api/v5/market/history-trades",
}
WINDOW_S = 2.0
T = TypeVar("T")

# OKX's codes (its REST error-code table), by what a client can do about them:
# "rate limit reached" and "sub-account rate limit reached": wait, then ask again (a 429)
RATE_LIMIT_CODES = frozenset({"50011", "50061"})
# the venue's own trouble: service temporarily unavailable, endpoint request timeout, API
# offline or unavailable, system busy, system error
VENUE_TROUBLE_CODES = frozenset({"50001", "50004", "50005", "50013", "50026"})
# the request is wrong and stays wrong: body empty, JSON syntax, content type, a parameter
# empty / one of two required / not matching another / both given / too many, a parameter's
# value, an instrument that does not exist or does not match its index
REQUEST_FAULT_CODES = frozenset(
    {
        "50000",
        "50002",
        "50006",
        "50014",
        "50015",
        "50016",
        "50024",
        "50025",
        "51000",
        "51001",
        "51002",
    }
)


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


class _Outcome(msgspec.Struct):
    """What any OKX body says of itself, read tolerantly: the code (a string as OKX sends
    it; a number is taken too) and the message, as JSON text of any shape."""

    code: str | int | None = None
    msg: msgspec.Raw = msgspec.Raw(b'""')


def venue_code(body: bytes) -> tuple[str, str] | None:
    """The venue's ``code`` and ``msg`` of a body, or None for a body that has no code (not
    JSON, not an object, a code of another type): never raises."""
    try:
        outcome = msgspec.json.decode(body, type=_Outcome, strict=False)
    except DECODE_ERRORS:
        return None
    if outcome.code is None:
        return None
    try:
        msg = msgspec.json.decode(outcome.msg, type=str)
    except DECODE_ERRORS:
        msg = quoted(bytes(outcome.msg))
    return str(outcome.code), msg


def refusal_of(answer: Answer, request: str) -> RestError | None:
    """The error an OKX answer is, or None when it carries what was asked.

    The body's code decides where there is one: a rate limit and the venue's own trouble are
    retryable (the pacer has already been told of a rate limit), a wrong request and an unknown
    instrument are not; another code is as retryable as its HTTP status says, a success status
    counting as "try later" (the venue refused for a reason of its own). Without a code, or with
    code ``"0"``, the status alone decides (:func:`~marketlab.stream.rest.status_refusal`).
    """
    said = venue_code(answer.body)
    if said is None or said[0] == "0":
        return status_refusal(answer, request)
    code, msg = said
    if code in RATE_LIMIT_CODES or code in VENUE_TROUBLE_CODES:
        retryable = True
    elif code in REQUEST_FAULT_CODES:
        retryable = False
    else:
        status = answer.status
        retryable = 200 <= status < 300 or status in RETRYABLE_STATUSES or status >= 500
    return RestError(
        f"{request}: HTTP {answer.status}: OKX code {code}: {msg or '(no message)'}",
        retryable=retryable,
    )


def pacing_status(answer: Answer) -> int:
    """The status a pacer should see: a rate-limit code counts as the 429 it is, whatever
    status it came with."""
    said = venue_code(answer.body) if answer.status != 429 else None
    return 429 if said is not None and said[0] in RATE_LIMIT_CODES else answer.status


class OkxRest(PacedRest):
    """The public REST endpoints a collector needs, as the same records as Binance's."""

    kline_page = okx.HISTORY_CANDLES_LIMIT  # the smaller of the two candle endpoints' pages
    windowed = True  # a page is the window [start, start + limit bars)
    trade_page = 100  # trades per /market/history-trades request
    paths: Mapping[str, str] = PATHS

    def __init__(self, base_url: str = okx.DEFAULT_REST_URL, *, timeout_s: float = 10.0):
        super().__init__(base_url, timeout_s=timeout_s)
        self.governor = WindowPacer(LIMITS)

    def observe(self, answer: Answer) -> None:
        self.governor.observe(pacing_status(answer), self.clock())

    def refusal(self, answer: Answer, request: str) -> RestError | None:
        return refusal_of(answer, request)

    async def _ask(
        self, endpoint: str, params: Mapping[str, Any], reader: Callable[[bytes], T]
    ) -> T:
        """What ``reader`` makes of ``endpoint``'s answer (by the name its limit is kept
        under)."""
        return await self._read(self.paths[endpoint], params, endpoint, reader)

    async def server_time(self) -> int:
        return await self._ask("time", {}, okx.parse_time)

    async def _candles(
        self,
        inst: str,
        iv: Interval,
        start: int | None,
        limit: int,
        server_time: int | None,
        reader: Callable[[bytes], T],
    ) -> T:
        """What ``reader`` makes of a page of ``inst``'s candles (newest first, as OKX sends
        them): the newest ``limit`` without ``start``, else ``limit`` bars from ``start``, from
        ``/market/candles`` while they are among its recent 1,440 and
        ``/market/history-candles`` before."""
        params: dict[str, Any] = {"instId": inst, "bar": okx.bar(iv)}
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
        return await self._ask(endpoint, params, reader)

    async def _trades(
        self, inst: str, from_id: int, limit: int, reader: Callable[[bytes], list[Trade]]
    ) -> list[Trade]:
        """What ``reader`` makes of a page of ``inst``'s trades by id, ``after`` just past the
        last id wanted: OKX pages backwards from it (ids below it)."""
        limit = max(1, min(limit, self.trade_page))
        params = {"instId": inst, "type": "1", "after": str(from_id + limit), "limit": limit}
        return await self._ask("history-trades", params, reader)

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
        rows = await self._candles(
            okx.inst_id(symbol),
            iv,
            start,
            limit,
            server_time,
            lambda body: okx.parse_candles(body, symbol, iv),
        )
        return [
            k
            for k in rows
            if (start is None or k.open_time >= start) and (end is None or k.open_time <= end)
        ]

    async def listed_symbols(self) -> dict[str, float]:
        """Every spot instrument ``/api/v5/public/instruments`` lists, with its price tick."""
        return await self._ask("instruments", {"instType": "SPOT"}, okx.parse_instruments)

    async def spot_symbols(self, quote: str) -> list[str]:
        """The spot instruments trading now (state ``live``) quoted in ``quote``."""
        return await self._ask(
            "instruments", {"instType": "SPOT"}, lambda body: okx.parse_spot_symbols(body, quote)
        )

    async def trades_from(self, symbol: str, from_id: int, limit: int = 100) -> list[Trade]:
        """Trades with ids from ``from_id`` on, oldest first."""
        trades = await self._trades(
            okx.inst_id(symbol), from_id, limit, lambda body: okx.parse_history_trades(body, symbol)
        )
        return [t for t in trades if t.trade_id >= from_id]

    async def depth(self, symbol: str, limit: int = 400) -> BookSnapshot:
        params = {"instId": okx.inst_id(symbol), "sz": min(limit, okx.BOOK_DEPTH)}
        return await self._ask("books", params, lambda body: okx.parse_books(body, symbol))

    async def tickers(self, symbols: list[str]) -> list[Ticker]:
        wanted = {okx.symbol_of(okx.inst_id(s)) for s in symbols}
        tickers = await self._ask("tickers", {"instType": "SPOT"}, okx.parse_tickers)
        return [t for t in tickers if t.symbol in wanted]
