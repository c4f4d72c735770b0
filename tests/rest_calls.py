"""A REST client's calls run to their end in a loop of their own, the client closed after."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from marketlab.records import BookSnapshot
from marketlab.stream.rest import PacedRest


def answered(rest: PacedRest, coro: Coroutine[Any, Any, Any]) -> Any:
    """What ``coro`` (calls of ``rest``) returns, ``rest``'s session closed in the same loop."""

    async def closing() -> Any:
        try:
            return await coro
        finally:
            await rest.close()

    return asyncio.run(closing())


async def filled_book(rest: Any, symbol: str, limit: int) -> BookSnapshot:
    """``rest``'s book of ``symbol`` once it has levels (the simulated book fills in its first
    instants)."""
    book = await rest.depth(symbol, limit)
    while not book.bids:
        await asyncio.sleep(0.1)
        book = await rest.depth(symbol, limit)
    return book
