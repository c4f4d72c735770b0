"""A recording's blocks made ahead of their reader, on a thread of its own.

python-zstandard lets go of the GIL while it decompresses, and so does the compiled reader of
a block's frames (``marketlab._native.read_block``): on a second core, the thread that feeds
the collector then only takes over finished blocks (measured: decompression is about a tenth
of a replay's work, reading the frames another fifth)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

_T_co = TypeVar("_T_co", covariant=True)


class ClosingIterator(Iterator[_T_co], Protocol[_T_co]):
    """An iterator to close when left before its end (it lets go of its thread and file)."""

    def close(self) -> None: ...


_DONE = object()


class ReadAhead:
    """Iterates what ``items`` yields, made on a thread that runs up to ``depth`` items ahead;
    whatever making them raised is raised here, in its place. The thread starts with the
    first item asked for; ``close()`` stops it at any point and then calls ``closing``."""

    def __init__(self, items: Iterator[Any], closing: Callable[[], None], depth: int = 8):
        self._items = items
        self._closing = closing
        self._made: queue.Queue[object] = queue.Queue(depth)
        self._stop = threading.Event()
        self._ended = False
        self._thread = threading.Thread(target=self._run, name="marketlab-readahead", daemon=True)

    def _run(self) -> None:
        try:
            for item in self._items:
                if not self._put(item):
                    break
                del item  # not held while the next is made (blocks are megabytes)
        except BaseException as exc:  # handed to the reader, which says what broke
            self._put(exc)
        finally:
            close = getattr(self._items, "close", None)
            if close is not None:
                close()  # a generator is closed on the thread that ran it
            self._put(_DONE)

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._made.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> ReadAhead:
        return self

    def __next__(self) -> Any:
        if self._ended:
            raise StopIteration
        if self._thread.ident is None:
            self._thread.start()  # on the first item: a recording opened for its header only
        item = self._made.get()
        if isinstance(item, BaseException):
            self._ended = True
            raise item
        if item is _DONE:
            self._ended = True
            raise StopIteration
        return item

    def close(self) -> None:
        self._stop.set()
        while self._thread.ident is not None and self._thread.is_alive():
            try:  # a thread waiting to hand over an item sees the stop once the queue has room
                while True:
                    self._made.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(0.05)
        self._closing()
