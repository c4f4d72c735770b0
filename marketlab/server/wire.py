"""Fan-out on the wire: one text frame built per update, written to every client's socket.

Through ASGI, each client's copy of an update goes through Starlette, uvicorn and the
``websockets`` protocol object (a frame built and masked-checked per client, ~30 µs); for a
thousand clients that is the whole latency budget. When the server is uvicorn's
``websockets-sansio`` protocol with no extension negotiated (this server offers none), the same
frame bytes are valid for every client, so :class:`RawSocket` writes them straight to the
client's transport — only while the socket is open, writable and not backed up; otherwise (or
with any other server) the caller takes the ordinary ASGI path.
"""

from __future__ import annotations

import struct
from typing import Any

MAX_BUFFERED = 1 << 20  # bytes waiting in a client's transport before the queued path takes over


def text_frame(payload: bytes) -> bytes:
    """An unmasked, unfragmented text frame (server to client) carrying ``payload``."""
    n = len(payload)
    if n < 126:
        return b"\x81" + bytes((n,)) + payload
    if n < 1 << 16:
        return b"\x81\x7e" + struct.pack("!H", n) + payload
    return b"\x81\x7f" + struct.pack("!Q", n) + payload


class RawSocket:
    """The transport under a Starlette ``WebSocket``, when it can be written directly."""

    def __init__(self, protocol: Any):
        self.protocol = protocol
        self.transport = protocol.transport

    @classmethod
    def of(cls, ws: Any) -> RawSocket | None:
        protocol = _protocol_of(getattr(ws, "_send", None))
        if protocol is None:
            return None
        conn = protocol.conn
        if getattr(conn, "extensions", None):  # a negotiated extension changes the frames
            return None
        return cls(protocol)

    def write(self, frame: bytes) -> bool:
        """Write ``frame`` now; False when the socket cannot take it now (closing, paused by
        flow control, or backed up), so the caller queues it instead."""
        p, t = self.protocol, self.transport
        if p.close_sent or t.is_closing() or not p.writable.is_set():
            return False
        if t.get_write_buffer_size() > MAX_BUFFERED:
            return False
        if getattr(p.conn.state, "name", "OPEN") != "OPEN":
            return False
        t.write(frame)
        return True


def _protocol_of(send: Any, depth: int = 0) -> Any:
    """uvicorn's sansio protocol behind an ASGI ``send`` (Starlette wraps it in closures)."""
    if send is None or depth > 6:
        return None
    owner = getattr(send, "__self__", None)
    if owner is not None and all(
        hasattr(owner, a) for a in ("conn", "transport", "writable", "close_sent")
    ):
        module = type(owner).__module__
        return (
            owner if module.startswith("uvicorn.protocols.websockets.websockets_sansio") else None
        )
    for cell in getattr(send, "__closure__", None) or ():
        try:
            inner = cell.cell_contents
        except ValueError:
            continue
        if callable(inner):
            found = _protocol_of(inner, depth + 1)
            if found is not None:
                return found
    return None
