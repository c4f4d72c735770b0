"""What every protocol face of the simulator does with its WebSocket connections."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from typing import Any, ParamSpec, Protocol, TypeVar, cast

import orjson
from aiohttp import WSMsgType, web

from marketlab.sim.host import FaceHost

log = logging.getLogger("marketlab.sim")

P = ParamSpec("P")
T = TypeVar("T")


# How deep a client's request may nest arrays and objects. No venue's request goes past three
# levels; a deeper one is read as JSON no venue's reader takes, answered as any malformed
# request is (orjson itself stops at 1024, Python's recursion near there, orjson's encoder
# of an echoed value at 254: none of them may end a connection's handler).
MAX_REQUEST_DEPTH = 64


def request_json(text: str | bytes) -> Any:
    """A client's request as JSON: ``orjson.JSONDecodeError`` for text that is not JSON, or
    JSON nested deeper than :data:`MAX_REQUEST_DEPTH` (each face answers both alike)."""
    value = orjson.loads(text)
    if _deeper_than(value, MAX_REQUEST_DEPTH):
        raise orjson.JSONDecodeError(
            f"nested deeper than {MAX_REQUEST_DEPTH} levels", str(text)[:200], 0
        )
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` nests lists and dicts more than ``limit`` deep (measured without
    recursion, so any depth is measured)."""
    level: list[Any] = [value]
    for _ in range(limit):
        level = [
            inner
            for v in level
            if isinstance(v, list | dict)
            for inner in (v.values() if isinstance(v, dict) else v)
        ]
        if not level:
            return False
    return any(isinstance(v, list | dict) for v in level)


class OnLoop(Protocol):
    """A face that knows the simulator's event loop once it serves (None before)."""

    loop: asyncio.AbstractEventLoop | None


def on_loop(fn: Callable[P, T]) -> Callable[P, T]:
    """Run a face's fault method on the simulator's event loop when called from another
    thread (a test beside a simulator running in its thread): connections and their queues
    belong to the loop. The face (``OnLoop``) learns its loop when its routes are added."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        loop = cast(OnLoop, args[0]).loop
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if loop is None or here is loop or not loop.is_running():
            return fn(*args, **kwargs)

        async def call() -> T:
            return fn(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(call(), loop).result(timeout=30)

    return wrapper


# What ``send_malformed`` sends on a venue whose trades carry numbers the client checks: broken
# JSON, a field of the wrong type, an event no one subscribed to, and well-formed trades with
# hostile numbers (an id past int64, a NaN price).
HOSTILE_FRAMES = (
    "truncated",
    "garbage",
    "bad_field",
    "unknown_event",
    "id_past_int64",
    "nan_price",
)


class SocketFace:
    """Closing and cutting connections, and the writer every connection's frames leave by; a
    face keeps ``connections`` and says how to ``_drop`` one (forget its subscriptions).

    Every frame a face sends waits in its connection's queue (FIFO, so never reordered) until
    ``latency`` seconds after it was queued: the venue's constant delivery delay. While the
    venue is stalled (a fault) the writer sends nothing and forgets what it takes."""

    venue: str
    sim: Any  # the face's host (a FaceHost; each face narrows it to its own Protocol)
    connections: set[Any]
    latency: float = 0.0  # seconds from an event to its frame leaving
    MALFORMED_KINDS: tuple[str, ...] = ()  # what ``send_malformed`` knows

    def _drop(self, conn: Any) -> None:
        raise NotImplementedError

    def send_malformed(self, kind: str) -> int:
        raise NotImplementedError

    def _enqueue(self, conn: Any, data: bytes) -> None:
        """Queue a frame for the connection's writer; a consumer too slow to keep up is cut
        off with 1008, as the exchanges do."""
        if conn.closing:
            return
        try:
            conn.queue.put_nowait((time.monotonic() + self.latency, data))
        except asyncio.QueueFull:
            conn.closing = True
            log.info("closing a slow WebSocket consumer (queue full)")
            asyncio.get_running_loop().create_task(self._close(conn, 1008, b"Too slow"))

    async def _writer(self, conn: Any) -> None:
        """Send the connection's queued frames in order, each once its latency has passed."""
        faults = cast(FaceHost, self.sim).faults
        while True:
            due, data = await conn.queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if data is None:  # the cut, as late as what was sent before it
                self._abort(conn)
                return
            if faults.stalled(self.venue):
                continue  # a stalled link: nothing arrives, nothing is closed
            try:
                await conn.ws.send_frame(data, WSMsgType.TEXT)
            except (ConnectionResetError, RuntimeError):
                return
            self._sent(conn)

    def _sent(self, conn: Any) -> None:
        """A frame left on ``conn`` (a face that keeps time of it says so here)."""

    async def _close(self, conn: Any, code: int, reason: bytes) -> None:
        """Close with a close frame (as the exchange does when it ends a connection)."""
        conn.closing = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.ws.close(code=code, message=reason), 2.0)
        self._drop(conn)

    async def announce_and_close(
        self, notice: Callable[[Any], bytes], code: int, reason: bytes
    ) -> int:
        """Send every connection its ``notice(conn)`` frame (after what it was already sent),
        then close them all."""
        conns = list(self.connections)
        for conn in conns:
            self._enqueue(conn, notice(conn))
        await asyncio.sleep(0.05 + self.latency)
        for conn in conns:
            await self._close(conn, code, reason)
        return len(conns)

    def abort_all(self) -> int:
        """Cut every WebSocket connection without a close frame. Returns how many.

        The venue sends nothing more at once; the cut reaches the client after what was sent
        before it, ``latency`` later, as a reset travels the same link as the frames."""
        conns = list(self.connections)
        for conn in conns:
            conn.closing = True
            self._cut_later(conn)
            self._drop(conn)
        return len(conns)

    def _cut_later(self, conn: Any) -> None:
        if self.latency <= 0:
            self._abort(conn)
            return
        try:
            conn.queue.put_nowait((time.monotonic() + self.latency, None))
        except asyncio.QueueFull:
            self._abort(conn)
            return
        # in case the writer is held up by a client that does not read
        asyncio.get_running_loop().call_later(self.latency + 1.0, self._abort, conn)

    @staticmethod
    def _abort(conn: Any) -> None:
        transport = conn.request.transport
        if transport is not None:
            transport.abort()


class OutageFace(SocketFace):
    """A face whose venue can go away as a whole (Bybit's, Coinbase's): its WebSocket and REST
    handlers refuse while :meth:`outage_active`."""

    _outage_until: float = 0.0
    loop: asyncio.AbstractEventLoop | None

    def outage_active(self) -> bool:
        return time.monotonic() < self._outage_until

    def refuse_in_outage(self, request: web.Request) -> web.Response | None:
        """The answer to a request during an outage (the connection cut), or None."""
        if not self.outage_active():
            return None
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=503)

    @on_loop
    def drop(self) -> int:
        """Cut every connection without a close frame; returns how many."""
        return self.abort_all()

    @on_loop
    def outage(self, seconds: float) -> int:
        """The venue goes away for ``seconds``: every connection is cut without a close frame,
        and new connections and REST requests are refused until it is back. Returns how many
        connections were cut."""
        self._outage_until = time.monotonic() + seconds
        return self.abort_all()
