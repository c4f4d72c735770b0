"""A coroutine on its own event loop in a daemon thread: the collector behaves the same in a
script and in a Jupyter kernel (whose loop it never touches), and a blocking cell does not
stall it. What ends it with an exception is kept for whoever asks."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("marketlab.lab")

LOOP_VARIABLE = "MARKETLAB_LOOP"  # "asyncio" keeps asyncio's own loop where uvloop is installed
GC_VARIABLE = "MARKETLAB_GC_FREEZE"  # "0": leave Python's garbage collector as it is

_frozen_by = 0  # collectors running with the objects of their start frozen
_frozen_lock = threading.Lock()


def freeze_garbage_collection() -> bool:
    """Leave the objects alive now out of Python's full garbage collections while a collector
    runs (``gc.freeze``): every full collection otherwise walks each object of pandas, numpy
    and the notebook — tens of milliseconds, several times a minute on a busy feed, stalling
    the stream. Refcounting still frees them; only cycles among them wait for the unfreeze."""
    global _frozen_by
    if os.environ.get(GC_VARIABLE, "").strip() == "0":
        return False
    with _frozen_lock:
        _frozen_by += 1
        gc.freeze()
    return True


def unfreeze_garbage_collection() -> None:
    """The last collector to stop gives the frozen objects back to the collector."""
    global _frozen_by
    with _frozen_lock:
        _frozen_by -= 1
        if _frozen_by == 0:
            gc.unfreeze()


def new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed (Linux, macOS), else asyncio's: only the collector's
    thread runs it, so a notebook's own loop is never replaced."""
    choice = os.environ.get(LOOP_VARIABLE, "").strip().lower()
    if choice not in ("", "uvloop", "asyncio"):
        raise ValueError(f"{LOOP_VARIABLE}={choice!r}: expected 'uvloop' or 'asyncio'")
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise ValueError(f"{LOOP_VARIABLE}=uvloop but uvloop is not installed") from None
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class Background:
    def __init__(self, name: str, quiet: tuple[type[BaseException], ...] = ()):
        """``quiet``: exceptions already reported where they happened (kept, not logged)."""
        self.name = name
        self.quiet = quiet
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def started(self) -> bool:
        return self._thread is not None

    def start(self, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``main()`` on a new loop in a new thread; returns once the loop exists."""
        ready = threading.Event()
        self.error = None

        def run() -> None:
            loop = new_loop()
            self.loop = loop
            asyncio.set_event_loop(loop)
            frozen = freeze_garbage_collection()
            ready.set()
            try:
                loop.run_until_complete(main())
            except self.quiet as exc:
                self.error = exc
            except BaseException as exc:  # kept for status(); the thread must not die silently
                self.error = exc
                log.exception("%s stopped with an error", self.name)
            finally:
                loop.close()
                if frozen:
                    unfreeze_garbage_collection()

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()
        ready.wait()

    def call_soon(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Schedule ``coro`` on the loop, if it still runs (else it is closed unrun)."""
        if self.loop is not None and self.loop.is_running():
            asyncio.run_coroutine_threadsafe(coro, self.loop)
        else:
            coro.close()

    def join(self, timeout: float | None) -> bool:
        """Wait for the thread; True when it has ended."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.alive

    def forget(self) -> None:
        self._thread = None
