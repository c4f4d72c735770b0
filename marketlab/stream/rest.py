"""The paced REST path every venue's client shares: one public GET at a time over aiohttp,
held back by the venue's governor (sans-I/O pacing rules), each answer's status and headers
shown to that governor, and failures turned into :class:`RestError` that says whether trying
again may help: a failed request, the venue's refusal, and an answer whose body does not read.

The bodies are handed on as the venue sent them, to the venue's own readers
(``marketlab.venues.<venue>``'s ``parse_*``), which check every field. Public market data
needs no signing and no venue-specific HTTP beyond a path and a query, so no exchange library
sits in between: ccxt's, which the collector once used here, imports requests, urllib3,
charset_normalizer and cryptography at its top (about 17 MB of a collector's resident memory),
parsed each body for us to encode again, and made some refusals retryable (a 404 an
``ExchangeNotAvailable``) and some public paths signed (Binance's ``historicalTrades``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from marketlab.venues.errors import UNREADABLE_BODY_ERRORS

if TYPE_CHECKING:  # aiohttp loads with the first request: RestError's importers need none
    import aiohttp

# Statuses that say "not now" rather than "never": rate limits and bans (the governor has
# already been told and holds the next request back), a request timeout, the server's errors.
RETRYABLE_STATUSES = frozenset({403, 408, 418, 425, 429})
QUOTED_BODY = 300  # characters of a refusal's body quoted in its message
T = TypeVar("T")

log = logging.getLogger("marketlab.rest")


@dataclass(slots=True)
class GovernorStats:
    requests: int = 0
    rate_limited: int = 0  # 429 answers
    banned: int = 0  # a ban: 418 answers (Binance, OKX), 403 (Bybit's)
    forbidden: int = 0  # 403 answers (Bybit's ban, Binance's firewall)
    server_errors: int = 0
    waited_s: float = 0.0


class RestError(Exception):
    """A REST request that failed; ``retryable`` says whether trying later may help."""

    def __init__(self, message: str, retryable: bool):
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer as the venue sent it: ``headers`` look names up in any case."""

    status: int
    headers: Mapping[str, str]
    body: bytes


def quoted(body: bytes) -> str:
    """The start of a body, as text fit for an error message."""
    text = body[: QUOTED_BODY * 4].decode("utf-8", "replace").strip()
    return text if len(text) <= QUOTED_BODY else text[:QUOTED_BODY] + "..."


def status_refusal(answer: Answer, request: str) -> RestError | None:
    """What any venue's HTTP status alone says: None for a success; else a
    :class:`RestError`, retryable for the statuses in :data:`RETRYABLE_STATUSES` and the
    server's errors, not for the other client errors (a bad argument, an unknown symbol, a
    path that needs a key: no retry mends them)."""
    if 200 <= answer.status < 300:
        return None
    retryable = answer.status in RETRYABLE_STATUSES or answer.status >= 500
    body = quoted(answer.body) or "(empty body)"
    return RestError(f"{request}: HTTP {answer.status}: {body}", retryable=retryable)


class PacedRest:
    """One public GET at a time to a venue, paced by its governor.

    Subclasses set ``governor`` (``delay(cost, now)``, ``sent(cost, now)``, ``usage(now)``,
    ``stats``), say which clock it counts in, and define :meth:`observe` (what the governor
    learns from an answer) and, where the venue reports errors in a successful answer's body,
    :meth:`refusal`.
    """

    clock: Any = staticmethod(time.monotonic)
    governor: Any

    def __init__(self, base_url: str, *, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None
        self.last_success: float | None = None  # monotonic times, for "is the venue reachable"
        self.last_failure: float | None = None
        self.on_recovered: Callable[[], None] | None = None  # the venue answers again

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def weight_usage(self) -> tuple[int, int]:
        """The request weight used in the venue's current window and the venue's limit of it
        (its governor's ``usage``: Binance's weight per minute, requests per window elsewhere)."""
        used, limit = self.governor.usage(self.clock())
        return int(used), int(limit)

    def observe(self, answer: Answer) -> None:
        """Show the governor what an answer says about our standing (its status, the venue's
        weight and Retry-After headers, a rate-limit code in its body)."""
        raise NotImplementedError

    def refusal(self, answer: Answer, request: str) -> RestError | None:
        """The error an answer is, or None when it carries what was asked. By the status
        alone unless the venue says more (OKX and Bybit answer errors with 200 and a code)."""
        return status_refusal(answer, request)

    async def _read(
        self, path: str, params: Mapping[str, object], cost: Any, reader: Callable[[bytes], T]
    ) -> T:
        """What ``reader`` (the venue's sans-I/O reader) makes of the body of
        ``GET base_url + path?params``, sent when the governor allows ``cost``. Anything the
        venue sent that is not what was asked is a :class:`RestError`, the only error of a
        request: a failed request or the venue's refusal (retryable as :meth:`refusal` says),
        and a complete answer whose body does not read (a shape other than the documented one,
        the venue's error envelope: retryable, the next answer may read). A list value repeats
        its key (Coinbase's ``product_ids``); True and False are sent as JSON has them."""
        request = f"GET {path} {dict(params)}" if params else f"GET {path}"
        body = await self._answered(path, params, cost, request)
        try:
            read = reader(body)
        except UNREADABLE_BODY_ERRORS as exc:
            self.last_failure = time.monotonic()
            error = RestError(f"{request}: the answer does not read: {exc}", retryable=True)
            log.warning("%s", error)  # each time: the venue may have changed what it sends
            raise error from exc
        failing = self.last_failure is not None and (
            self.last_success is None or self.last_success < self.last_failure
        )
        self.last_success = time.monotonic()
        if failing and self.on_recovered is not None:
            self.on_recovered()
        return read

    async def _answered(
        self, path: str, params: Mapping[str, object], cost: Any, request: str
    ) -> bytes:
        """The body of a request the venue answered and did not refuse; else a
        :class:`RestError` (``last_failure`` set)."""
        async with self._lock:  # one at a time: the governor's view stays exact
            while (wait := self.governor.delay(cost, self.clock())) > 0:
                self.governor.stats.waited_s += wait
                await asyncio.sleep(min(wait, 5.0))
            self.governor.sent(cost, self.clock())
        query = urllib.parse.urlencode({k: _query_value(v) for k, v in params.items()}, doseq=True)
        url = f"{self.base_url}{path}?{query}" if query else f"{self.base_url}{path}"
        try:
            answer = await self._fetch(url)
        except Exception as exc:  # the connection, the timeout: nothing was answered
            if not _is_transport_error(exc):
                raise
            self.last_failure = time.monotonic()
            detail = str(exc) or "no answer"
            raise RestError(f"{request}: {type(exc).__name__}: {detail}", retryable=True) from exc
        self.observe(answer)
        problem = self.refusal(answer, request)
        if problem is not None:
            self.last_failure = time.monotonic()
            raise problem
        return answer.body

    async def _fetch(self, url: str) -> Answer:
        import aiohttp
        import yarl

        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(
                total=self.timeout_s, sock_connect=self.timeout_s, sock_read=self.timeout_s
            )
            self._session = aiohttp.ClientSession(timeout=timeout)
        async with self._session.get(yarl.URL(url, encoded=True)) as response:
            body = await response.read()
            return Answer(response.status, response.headers, body)


def _query_value(value: object) -> str | list[str]:
    if isinstance(value, list | tuple):
        return [str(_query_value(v)) for v in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _is_transport_error(exc: Exception) -> bool:
    """Whether ``exc`` is the network's doing (refused, reset, timed out, a broken answer)."""
    import aiohttp

    return isinstance(exc, aiohttp.ClientError | asyncio.TimeoutError | OSError)
