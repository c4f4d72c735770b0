"""A perpetual's funding and open interest history from the venue's REST, and every funding as
it settles.

On start each perpetual's past is fetched from where the store ends (or ``LOOKBACK_MS`` back):
the fundings settled (Binance ``/fapi/v1/fundingRate``, OKX ``funding-rate-history`` (three
months), Bybit ``/v5/market/funding/history``) and open interest every 5 minutes as far back as
the venue keeps it (Binance ``/futures/data/openInterestHist``: 30 days; OKX
``/api/v5/rubik/stat/contracts/open-interest-history``: the latest 1,440, five days; Bybit
``/v5/market/open-interest``: back to the launch).
No stream says a funding was settled, so while collecting the fundings since the newest known
are asked for again once the venue's next funding time (from the mark price stream) has passed,
and every ``RECHECK_S`` otherwise. Fundings go where live records go (the state, the bus and the
store); past open interest only to the store (the live readings are the state's).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any

from marketlab.records import Funding, OpenInterest
from marketlab.stream.rest import RestError

log = logging.getLogger("marketlab.backfill")

LOOKBACK_MS = 30 * 86_400_000  # how far back an empty store is filled
RECHECK_S = 1800.0  # at most this long between asking for new fundings
SETTLE_WAIT_S = 5.0  # after a funding time, before asking for it (the venue publishes it late)
RETRY_S = 10.0  # after a failed request
LISTED_LATE_S = 30.0  # between asking for a funding settled and not listed yet


async def _retrying(what: str, call: Callable[[], Any]) -> Any:
    """``call()`` until it answers (a refusal that will not pass: None, said once)."""
    while True:
        try:
            return await call()
        except RestError as exc:
            if not exc.retryable:
                log.warning("%s: %s", what, exc)
                return None
            log.warning("%s: %s; retrying", what, exc)
        await asyncio.sleep(RETRY_S)


async def keep_perpetual_history(
    rest: Any,
    symbols: Sequence[str],
    last_fundings: dict[str, int],
    last_open_interest: dict[str, int],
    on_fundings: Callable[[list[Funding]], None],
    on_open_interest: Callable[[list[OpenInterest]], None] | None,
    next_funding_of: Callable[[str], int],
) -> None:
    """Backfill ``symbols``' history from ``rest`` (a venue's perpetual REST client), then hand
    every funding settled while running to ``on_fundings``, each once. ``last_fundings`` and
    ``last_open_interest`` say where the store ends per symbol (updated as fundings come);
    ``next_funding_of(symbol)`` is the venue's next funding time as last streamed (-1:
    unknown). Runs until cancelled."""
    now = await _retrying("server time", rest.server_time)
    if now is None:
        return
    if on_open_interest is not None:
        for symbol in symbols:
            rows = await _since(rest.open_interest_between, symbol, last_open_interest, now)
            if rows:
                on_open_interest(rows)
    for symbol in symbols:
        await _new_fundings(rest, symbol, now, last_fundings, on_fundings)
    awaited = {s: next_funding_of(s) for s in symbols}  # the funding time each waits for
    not_before = dict.fromkeys(symbols, 0.0)  # a funding settled and not listed yet: asked later
    last_check = asyncio.get_running_loop().time()
    while True:
        await asyncio.sleep(SETTLE_WAIT_S)
        clock = asyncio.get_running_loop().time()
        every = clock - last_check >= RECHECK_S
        due = []
        for symbol in symbols:
            upcoming = next_funding_of(symbol)
            # the venue moved its next funding time on: the awaited one has settled
            settled = 0 < awaited[symbol] < upcoming and clock >= not_before[symbol]
            if every or settled:
                due.append(symbol)
            elif awaited[symbol] <= 0:
                awaited[symbol] = upcoming
        if not due:
            continue
        now = await _retrying("server time", rest.server_time)
        if now is None:
            return
        for symbol in due:
            settled_at = awaited[symbol]
            await _new_fundings(rest, symbol, now, last_fundings, on_fundings)
            if settled_at <= 0 or last_fundings.get(symbol, -1) >= settled_at or every:
                awaited[symbol] = next_funding_of(symbol)  # listed: wait for the next one
            else:  # the venue lists it late: ask again a little later
                not_before[symbol] = clock + LISTED_LATE_S
        if every:
            last_check = clock


async def _new_fundings(
    rest: Any,
    symbol: str,
    now: int,
    last_fundings: dict[str, int],
    on_fundings: Callable[[list[Funding]], None],
) -> None:
    rows = await _since(rest.fundings_between, symbol, last_fundings, now)
    if rows:
        on_fundings(rows)
        last_fundings[symbol] = max(f.funding_time for f in rows)


async def _since(
    between: Callable[[str, int, int], Any], symbol: str, last: dict[str, int], now: int
) -> Any:
    """``between(symbol, start, now)`` from after the newest stored (or ``LOOKBACK_MS`` back)."""
    start = last.get(symbol, now - LOOKBACK_MS - 1) + 1
    what = f"{between.__name__.replace('_between', '').replace('_', ' ')} of {symbol}"
    return await _retrying(what, functools.partial(between, symbol, start, now))
