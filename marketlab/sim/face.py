"""What every protocol face of the simulator does with its WebSocket connections."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from typing import Any, ParamSpec, Protocol, TypeVar, cast

from aiohttp import WSMsgType

log = logging.getLogger("marketlab.sim")

P = ParamSpec("P")
T = TypeVar("T")


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


class SocketFace:
    """Closing and cutting connections; a face keeps ``connections`` and says how to ``_drop``
    one (forget its subscriptions)."""

    connections: set[Any]

    def _drop(self, conn: Any) -> None:
        raise NotImplementedError

    def _enqueue(self, conn: Any, data: bytes) -> None:
        """Queue a frame for the connection's writer; a consumer too slow to keep up is cut
        off with 1008, as the exchanges do."""
        if conn.closing:
            return
        try:
            conn.queue.put_nowait(data)
        except asyncio.QueueFull:
            conn.closing = True
            log.info("closing a slow WebSocket consumer (queue full)")
            asyncio.get_running_loop().create_task(self._close(conn, 1008, b"Too slow"))

    async def _close(self, conn: Any, code: int, reason: bytes) -> None:
        """Close with a close frame (as the exchange does when it ends a connection)."""
        conn.closing = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.ws.close(code=code, message=reason), 2.0)
        self._drop(conn)

    async def announce_and_close(
        self, notice: Callable[[Any], bytes], code: int, reason: bytes
    ) -> int:
        """Send every connection its ``notice(conn)`` frame, then close them all."""
        conns = list(self.connections)
        for conn in conns:
            with contextlib.suppress(Exception):
                await conn.ws.send_frame(notice(conn), WSMsgType.TEXT)
        await asyncio.sleep(0.05)
        for conn in conns:
            await self._close(conn, code, reason)
        return len(conns)

    def abort_all(self) -> int:
        """Cut every WebSocket connection without a close frame. Returns how many."""
        conns = list(self.connections)
        for conn in conns:
            conn.closing = True
            transport = conn.request.transport
            if transport is not None:
                transport.abort()
            self._drop(conn)
        return len(conns)
