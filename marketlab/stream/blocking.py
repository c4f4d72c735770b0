"""Sync code waiting on a coroutine: a notebook cell, a command's setup, a store's backfill
(without the Lab's own loop, and without loading any store)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to the end from sync code, even inside a running loop (a Jupyter cell)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="marketlab-sync") as pool:
        return pool.submit(asyncio.run, coro).result()
