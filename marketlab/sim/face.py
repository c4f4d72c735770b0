"""What every protocol face of the simulator does with its WebSocket connections."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


class SocketFace:
    """Closing and cutting connections; a face keeps ``connections`` and says how to ``_drop``
    one (forget its subscriptions)."""

    connections: set[Any]

    def _drop(self, conn: Any) -> None:
        raise NotImplementedError

    async def _close(self, conn: Any, code: int, reason: bytes) -> None:
        """Close with a close frame (as the exchange does when it ends a connection)."""
        conn.closing = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.ws.close(code=code, message=reason), 2.0)
        self._drop(conn)

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
