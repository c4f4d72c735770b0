"""A recording decompressed a few blocks ahead of its reader, on a thread of its own.

python-zstandard lets go of the GIL while it decompresses, so on a second core the
decompression of a replay costs the thread that feeds the collector nothing but the hand-over
of each block (measured: a replay's decompression is about a tenth of its work)."""

from __future__ import annotations

import queue
import threading
from typing import IO

_DONE = object()


class ReadAhead:
    """``read()`` gives the next decompressed block (``b""`` at the end), re-raising on the
    reader's side whatever the decompression raised; the thread starts with the first read.
    ``close()`` stops it and closes the stream, at any point."""

    def __init__(self, stream: IO[bytes], block: int = 1 << 20, depth: int = 8):
        self._stream = stream
        self._block = block
        self._blocks: queue.Queue[object] = queue.Queue(depth)
        self._stop = threading.Event()
        self._ended = False
        self._thread = threading.Thread(target=self._run, name="marketlab-readahead", daemon=True)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                block = self._stream.read(self._block)
                self._put(block)
                if not block:
                    return
        except BaseException as exc:  # handed to the reader, which says what broke
            self._put(exc)
        finally:
            self._put(_DONE)

    def _put(self, item: object) -> None:
        while not self._stop.is_set():
            try:
                self._blocks.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def read(self, size: int = -1) -> bytes:
        """The next block, however large ``size`` (a reader loops until it has enough)."""
        if self._ended:
            return b""
        if not self._thread.is_alive() and self._thread.ident is None:
            self._thread.start()  # on the first read: a recording opened for its header only
        item = self._blocks.get()
        if isinstance(item, BaseException):
            self._ended = True
            raise item
        if item is _DONE or not item:
            self._ended = True
            return b""
        return item  # type: ignore[return-value]

    def close(self) -> None:
        self._stop.set()
        while self._thread.ident is not None and self._thread.is_alive():
            try:  # a thread waiting to hand over a block sees the stop once the queue has room
                while True:
                    self._blocks.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(0.05)
        self._stream.close()
