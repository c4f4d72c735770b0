"""One WebSocket connection to a venue, kept alive until stopped.

Reconnected with capped exponential backoff and jitter (cut short when the venue answers
again), kept honest by keepalive pings and an idle watchdog for dead peers, its (un)subscribe
messages paced under the venue's incoming-message limit. What arrives goes to its feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from typing import TYPE_CHECKING, Any

import websockets
from websockets.asyncio.client import ClientConnection, connect

from marketlab.record import recording as rec
from marketlab.venues.pacing import MessagePacer

if TYPE_CHECKING:
    from marketlab.stream.feed import Feed

log = logging.getLogger("marketlab.feed")


class WsConnection:
    """One connection carrying ``streams``, kept alive until stopped.

    It opens ``url`` (which may name some streams itself) and subscribes to ``initial``.
    """

    def __init__(self, feed: Feed, url: str, streams: list[Any], initial: list[Any], name: str):
        self.feed = feed
        self.url = url
        self.streams = streams
        self.initial = initial
        self.name = name
        self.connected = False
        self.connected_at: float | None = None
        self.last_message: float | None = None
        self.messages = 0
        self.reconnects = 0
        self.retiring = False
        self.last_error = ""
        self.ws: ClientConnection | None = None
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._pacer = MessagePacer(feed.config.subscribe_per_second)
        self._request_id = 0
        self._wake = asyncio.Event()  # the venue answers again: stop backing off

    def wake(self) -> None:
        """Reconnect now rather than at the end of the backoff (the venue is back)."""
        if not self.connected:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"marketlab-{self.name}")

    async def stop(self) -> None:
        self._stopping = True
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 2)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def age(self) -> float:
        return time.monotonic() - self.connected_at if self.connected_at else 0.0

    async def _run(self) -> None:
        cfg = self.feed.config
        attempt = 0
        while not self._stopping:
            try:
                async with connect(self.url, open_timeout=cfg.open_timeout, ping_interval=cfg.ping_interval,
                                   ping_timeout=cfg.ping_timeout, close_timeout=2,
                                   max_size=2**24, max_queue=4096) as ws:  # fmt: skip
                    self.ws = ws
                    attempt = 0
                    self._wake.clear()
                    self.connected, self.connected_at = True, time.monotonic()
                    self.feed.on_connected(self)
                    if self.initial:
                        self.feed._spawn(self.subscribe(self.initial))
                    await self._pump(ws)
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, websockets.WebSocketException) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.info("%s: connection lost (%s)", self.name, self.last_error)
            finally:
                was_connected, self.connected, self.ws = self.connected, False, None
                if was_connected:
                    self.feed.on_disconnected(self)
            if self._stopping or self.retiring:
                return
            delay = cfg.backoff(attempt)
            attempt += 1
            self.reconnects += 1
            self.feed.reconnects += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            if self._wake.is_set():  # the venue answers again: the backoff starts over
                self._wake.clear()
                attempt = 0
                log.info("%s: the venue answers again, reconnecting now", self.name)
                await asyncio.sleep(random.uniform(0.0, cfg.backoff_initial))

    async def _pump(self, ws: ClientConnection) -> None:
        """Frames to the feed, one by one; a watchdog beside it cuts a silent connection (a
        timeout per frame would cost more than the rest of the frame's handling)."""
        self.last_message = time.monotonic()
        self._idle = ""
        watchdog = asyncio.create_task(self._watch(ws))
        recv, feed, monotonic = ws.recv, self.feed, time.monotonic
        try:
            while True:
                try:
                    frame = await recv(decode=False)
                except websockets.ConnectionClosed:
                    if self._idle:
                        return  # cut by the watchdog: reported there
                    raise
                self.last_message = monotonic()
                self.messages += 1
                if feed.tap is not None:
                    feed.tap(rec.WS, self.name, frame)
                feed.on_frame(frame, self)
        finally:
            watchdog.cancel()

    async def _watch(self, ws: ClientConnection) -> None:
        cfg = self.feed.config
        text_ping = self.feed.text_ping
        ping_after = cfg.text_ping_after if text_ping is not None else math.inf
        limit = cfg.idle_timeout + (ping_after if text_ping is not None else 0.0)
        pinged_at = -math.inf
        while True:
            await asyncio.sleep(min(cfg.idle_timeout, ping_after) / 4)
            silence = time.monotonic() - (self.last_message or 0.0)
            if silence >= ping_after and pinged_at < self.last_message:
                pinged_at = (
                    time.monotonic()
                )  # a venue that wants to hear from us before it gives up
                with contextlib.suppress(websockets.WebSocketException):
                    await ws.send(text_ping, text=True)  # type: ignore[arg-type]
            if silence >= limit:
                self._idle = self.last_error = f"no data for {silence:.0f} s"
                log.warning("%s: %s, reconnecting", self.name, self.last_error)
                ws.transport.abort()
                return

    async def subscribe(self, streams: list[Any], unsubscribe: bool = False) -> None:
        """(Un)subscribe in chunks, paced under the venue's incoming-message limit."""
        chunk = self.feed.config.subscribe_chunk
        for i in range(0, len(streams), chunk):
            await asyncio.sleep(self._pacer.delay(time.monotonic()))
            ws = self.ws
            if ws is None:
                return
            self._pacer.sent(time.monotonic())
            self._request_id += 1
            part = streams[i : i + chunk]
            await ws.send(
                self.feed.subscribe_message(part, self._request_id, unsubscribe), text=True
            )
            self.feed.on_subscribe_sent(self, part, unsubscribe)
