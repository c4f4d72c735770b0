"""Serving a recording over the simulator's Binance WebSocket paths.

Every client gets the recording's frames from the start, filtered to the streams it asked for
(in the URL, or by ``SUBSCRIBE`` — the stream starts once its subscriptions have settled), wrapped
as combined-stream frames or bare as a raw stream expects, at a chosen rate or as fast as the
client reads. Frames are framed once and written in large chunks, so the exchange side costs
next to nothing and a benchmark measures the client. ``/api/v3/depth`` answers with the
recording's book snapshots, which the recorded diff stream continues.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Iterable
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from marketlab.recording import files as rec
from marketlab.sim.face import request_json

log = logging.getLogger("marketlab.sim.replay_face")

SETTLE_S = 0.5  # a SUBSCRIBE client's stream starts this long after its last SUBSCRIBE
CHUNK = 1 << 18
HIGH_WATER = 1 << 22


def ws_frame(payload: bytes) -> bytes:
    """One unmasked, final text frame (server to client)."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x81, n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x81, 126, n)
    else:
        head = struct.pack("!BBQ", 0x81, 127, n)
    return head + payload


def stream_of(frame: bytes) -> str | None:
    """The stream name of a combined frame ``{"stream":"…","data":…}``."""
    if not frame.startswith(b'{"stream":"'):
        return None
    end = frame.find(b'"', 11)
    return frame[11:end].decode() if end > 0 else None


def _canonical(stream: str) -> str:
    # the sim sends the same diff events on @depth and @depth@100ms
    return stream[: -len("@100ms")] if stream.endswith("@depth@100ms") else stream


class ReplayFace:
    """The recording's frames, indexed by stream, served to whoever connects."""

    def __init__(self, path: str, rate: float | None = None):
        self.rate = rate
        self.frames: list[tuple[str, bytes]] = []  # (canonical stream, combined frame)
        self.snapshots: dict[str, dict[str, Any]] = {}
        header, entries = rec.open_recording(path)
        self.header = header
        for e in entries:
            if e.kind == rec.WS:
                name = stream_of(e.data)
                if name is not None:
                    self.frames.append((_canonical(name), e.data))
            elif e.kind == rec.SNAPSHOT and e.tag not in self.snapshots:
                snap = rec.decode_snapshot(e.data)
                self.snapshots[e.tag] = {
                    "lastUpdateId": snap.last_update_id,
                    "bids": [[repr(p), repr(q)] for p, q in snap.bids],
                    "asks": [[repr(p), repr(q)] for p, q in snap.asks],
                }
        self.clients = 0
        self.served = 0

    def count(self, streams: Iterable[str]) -> int:
        wanted = {_canonical(s) for s in streams}
        return sum(1 for name, _ in self.frames if name in wanted)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/ws", self.websocket)
        app.router.add_get("/ws/{streams:.*}", self.websocket)
        app.router.add_get("/stream", self.websocket)

    async def depth(self, request: web.Request) -> web.Response:
        symbol = request.query.get("symbol", "")
        snap = self.snapshots.get(symbol)
        if snap is None:
            return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)
        limit = int(request.query.get("limit", "100") or 100)
        body = {**snap, "bids": snap["bids"][:limit], "asks": snap["asks"][:limit]}
        return web.Response(
            body=orjson.dumps(body),
            content_type="application/json",
            headers={"X-MBX-USED-WEIGHT-1M": "1"},
        )

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        combined = request.path.startswith("/stream")
        source = (
            request.query.get("streams", "") if combined else request.match_info.get("streams", "")
        )
        streams = {s for s in source.split("/") if "@" in s}
        ws = web.WebSocketResponse(autoping=True, max_msg_size=1 << 20)
        await ws.prepare(request)
        self.clients += 1
        subscribed = asyncio.Event()
        last_subscribe = [time.monotonic()]
        pending: set[str] = set()

        async def read() -> None:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    body = request_json(msg.data)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(body, dict) and body.get("method") == "SUBSCRIBE":
                    params = body.get("params")
                    names = params if isinstance(params, list) else []
                    pending.update(p for p in names if isinstance(p, str))
                    last_subscribe[0] = time.monotonic()
                    subscribed.set()
                    await ws.send_str(orjson.dumps({"result": None, "id": body.get("id")}).decode())

        async def subscriptions() -> None:
            """Each settled batch of SUBSCRIBEs gets its streams from the start of the recording."""
            while True:
                await subscribed.wait()
                subscribed.clear()
                while time.monotonic() - last_subscribe[0] < SETTLE_S:
                    await asyncio.sleep(0.05)
                batch = set(pending)
                pending.clear()
                pumps.append(asyncio.create_task(self._pump(request, batch, combined)))

        pumps = [asyncio.create_task(self._pump(request, streams, combined))] if streams else []
        reader = asyncio.create_task(read())
        subscriber = asyncio.create_task(subscriptions())
        try:
            await reader  # the recording's end does not close: the client leaves when it is done
        finally:
            for task in (subscriber, *pumps):
                task.cancel()
        return ws

    async def _pump(self, request: web.Request, streams: set[str], combined: bool) -> None:
        transport = request.transport
        assert transport is not None
        wanted = {_canonical(s) for s in streams}
        chunk: list[bytes] = []
        size = 0
        per_chunk_s = 0.0
        sent = 0
        began = time.monotonic()
        for name, frame in self.frames:
            if name not in wanted:
                continue
            payload = frame if combined else frame[frame.index(b',"data":') + 8 : -1]
            data = ws_frame(payload)
            chunk.append(data)
            size += len(data)
            sent += 1
            if size >= CHUNK or (self.rate and sent % max(1, int(self.rate / 100)) == 0):
                await self._write(transport, chunk)
                chunk, size = [], 0
                if self.rate:
                    per_chunk_s = began + sent / self.rate - time.monotonic()
                    if per_chunk_s > 0:
                        await asyncio.sleep(per_chunk_s)
        if chunk:
            await self._write(transport, chunk)
        while transport.get_write_buffer_size() > 0 and not transport.is_closing():
            await asyncio.sleep(0.002)
        self.served += sent

    @staticmethod
    async def _write(transport: asyncio.Transport, chunk: list[bytes]) -> None:
        if transport.is_closing():
            raise ConnectionResetError("the client went away")
        transport.write(b"".join(chunk))
        while transport.get_write_buffer_size() > HIGH_WATER:
            await asyncio.sleep(0.001)
            if transport.is_closing():
                raise ConnectionResetError("the client went away")
