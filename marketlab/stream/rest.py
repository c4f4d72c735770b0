"""The paced REST path every venue's client shares: one request at a time through the venue's
ccxt client, held back by the venue's governor (sans-I/O pacing rules), with failures turned
into :class:`RestError` that says whether trying again may help."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from marketlab.stream.ccxt_clients import ccxt_errors


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


def rest_error(method: str, params: dict[str, Any], exc: Exception) -> RestError:
    """A ccxt error as a :class:`RestError` that says whether retrying can help."""
    errors = ccxt_errors()
    if isinstance(exc, errors.BadSymbol | errors.BadRequest):
        return RestError(f"{method} {params}: {exc}", retryable=False)
    # network, rate limits (the caller's pacing now waits), 5xx
    return RestError(f"{method} {params}: {type(exc).__name__}: {exc}", retryable=True)


class PacedRest:
    """One request at a time through a venue's ccxt client, paced by its governor.

    Subclasses set ``_ex`` (the ccxt client) and ``governor`` (``delay(cost, now)``,
    ``sent(cost, now)``, ``stats``) and say which clock the governor counts in.
    """

    clock: Any = staticmethod(time.monotonic)
    _ex: Any
    governor: Any

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self.last_success: float | None = None  # monotonic times, for "is the venue reachable"
        self.last_failure: float | None = None
        self.on_recovered: Callable[[], None] | None = None  # the venue answers again

    async def close(self) -> None:
        await self._ex.close()

    def weight_usage(self) -> tuple[int, int]:
        """The request weight used in the venue's current window and the venue's limit of it
        (its governor's ``usage``: Binance's weight per minute, requests per window elsewhere)."""
        used, limit = self.governor.usage(self.clock())
        return int(used), int(limit)

    async def _call(self, method: str, params: dict[str, Any], cost: Any) -> Any:
        async with self._lock:  # one at a time: the governor's view stays exact
            while (wait := self.governor.delay(cost, self.clock())) > 0:
                self.governor.stats.waited_s += wait
                await asyncio.sleep(min(wait, 5.0))
            self.governor.sent(cost, self.clock())
        try:
            result = await getattr(self._ex, method)(params)
        except ccxt_errors().BaseError as exc:
            self.last_failure = time.monotonic()
            raise rest_error(method, params, exc) from exc
        failing = self.last_failure is not None and (
            self.last_success is None or self.last_success < self.last_failure
        )
        self.last_success = time.monotonic()
        if failing and self.on_recovered is not None:
            self.on_recovered()
        return result
