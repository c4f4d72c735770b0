"""A REST client's calls run to their end in a loop of their own, the client closed after."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from marketlab.stream.rest import PacedRest


def answered(rest: PacedRest, coro: Coroutine[Any, Any, Any]) -> Any:
    """What ``coro`` (calls of ``rest``) returns, ``rest``'s session closed in the same loop."""

    async def closing() -> Any:
        try:
            return await coro
        finally:
            await rest.close()

    return asyncio.run(closing())
