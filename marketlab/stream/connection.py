"""One WebSocket connection to a venue, kept alive until stopped.

Reconnected with capped exponential backoff and jitter (cut short when the venue answers
again), kept honest by keepalive pings and an idle watchdog for dead peers, its (un)subscribe
messages paced under the venue's incoming-message limit. What arrives goes to its owner.

Like cryptofeed's ConnectionHandler, a connection is handed what it needs and never imports the
feed that owns it: its settings (a :class:`~marketlab.stream.config.FeedConfig`), an events
object implementing the :class:`ConnectionEvents` protocol to report to, and two callables,
``spawn`` (runs a task the owner keeps) and ``subscribe_message`` (the venue's (un)subscribe
message for some streams). The feed sits above it and can change without it.

The transport is aiohttp's WebSocket client (its C frame reader is the fastest we measured
among well-kept clients; see ``benchmarks/ingest.py``), with text frames kept as bytes and the
control frames handled here: the venue's pings answered with their payload, ours sent every
``ping_interval`` and the connection cut when no pong comes within ``ping_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Coroutine
from typing import Any, Literal, Protocol

import aiohttp
from aiohttp import ClientWebSocketResponse, WSMsgType

from marketlab.recording import files as rec
from marketlab.stream.config import FeedConfig
from marketlab.venues.pacing import MessagePacer

log = logging.getLogger("marketlab.feed")


class ConnectionEvents(Protocol):
    """What a connection tells its owner: frames, failures, (dis)connections, reconnect
    attempts and subscriptions sent.

    Implemented by :class:`marketlab.stream.feed.Feed` (every venue's feed hands itself in).
    It exists so that this module depends on what it calls, not on the feed class: the feed
    imports the connection, never the other way round. Members are looked up at each use, as
    a stopping feed redirects ``on_frame`` and clears ``tap`` while its connections close.
    """

    tap: Callable[[int, str, bytes], None] | None  # a recorder of every frame, if any

    def on_frame(self, frame: bytes, conn: WsConnection) -> None: ...

    def frame_failed(self, exc: Exception, where: str) -> None: ...

    def on_connected(self, conn: WsConnection) -> None: ...

    def on_disconnected(self, conn: WsConnection) -> None: ...

    def on_reconnecting(self, conn: WsConnection) -> None: ...

    def on_subscribe_sent(
        self, conn: WsConnection, streams: list[Any], unsubscribe: bool
    ) -> None: ...


# what a connection runs beside itself (its first subscriptions): the owner keeps the task
Spawn = Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]]
# the socket as opened here (``decode_text=False``: text frames come as bytes)
Socket = ClientWebSocketResponse[Literal[False]]
# the venue's (un)subscribe message for some streams: (streams, request id, unsubscribe) → bytes
SubscribeMessage = Callable[[list[Any], int, bool], bytes]


class WsConnection:
    """One connection carrying ``streams``, kept alive until stopped.

    It opens ``url`` (which may name some streams itself) and subscribes to ``initial``;
    ``text_ping`` is the venue's keepalive text for venues that want one (else None): sent
    after ``text_ping_after`` of silence, or every ``text_ping_every`` seconds whatever the
    traffic (at least as often as our own pings) for a venue that asks for it so (Bybit).
    """

    def __init__(
        self,
        url: str,
        streams: list[Any],
        initial: list[Any],
        name: str,
        *,
        config: FeedConfig,
        events: ConnectionEvents,
        spawn: Spawn,
        subscribe_message: SubscribeMessage,
        text_ping: str | None = None,
        text_ping_every: float | None = None,
    ):
        self.url = url
        self.streams = streams
        self.initial = initial
        self.name = name
        self.config = config
        self.events = events
        self.spawn = spawn
        self.subscribe_message = subscribe_message
        self.text_ping = text_ping
        self.text_ping_every = text_ping_every
        self.connected = False
        self.connected_at: float | None = None
        self.last_message: float | None = None
        self.messages = 0
        self.bytes_received = 0  # frames' payloads taken
        self.reconnects = 0
        self.retiring = False
        self.last_error = ""
        self.ws: Socket | None = None
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._pacer = MessagePacer(config.subscribe_per_second)
        self._request_id = 0
        self._wake = asyncio.Event()  # the venue answers again: stop backing off
        self._idle = ""
        self.last_pong = 0.0

    def wake(self) -> None:
        """Reconnect now rather than at the end of the backoff (the venue is back)."""
        if not self.connected:
            self._wake.set()

    def start(self) -> None:
        """Connect, and keep connecting until :meth:`stop`, in a task of its own (the caller
        goes on at once; :attr:`connected` says when it is up)."""
        self._task = asyncio.create_task(self._run(), name=f"marketlab-{self.name}")

    async def stop(self) -> None:
        """Close for good: no reconnect follows, and this returns once the task has ended (the
        close handshake is given 2 s, as a dead peer never answers it)."""
        self._stopping = True
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 2)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def age(self) -> float:
        """Seconds since this connection was last opened (0 before): the owner rolls it over
        before the venue's connection age limit cuts it."""
        return time.monotonic() - self.connected_at if self.connected_at else 0.0

    async def _run(self) -> None:
        cfg = self.config
        attempt = 0
        async with aiohttp.ClientSession() as session:
            while not self._stopping:
                try:
                    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                    # that lands as the connection opens, and stop() would wait forever
                    async with asyncio.timeout(cfg.open_timeout):
                        ws = await session.ws_connect(
                            self.url,
                            autoping=False,
                            max_msg_size=2**24,
                            compress=0,
                            decode_text=False,
                            timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
                        )
                    async with ws:
                        self.ws = ws
                        attempt = 0
                        self._wake.clear()
                        self.connected, self.connected_at = True, time.monotonic()
                        self.events.on_connected(self)
                        if self.initial:
                            self.spawn(self.subscribe(self.initial))
                        await self._pump(ws)
                except asyncio.CancelledError:
                    raise
                except (OSError, TimeoutError, aiohttp.ClientError, ConnectionLost) as exc:
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    log.info("%s: connection lost (%s)", self.name, self.last_error)
                finally:
                    was_connected, self.connected, self.ws = self.connected, False, None
                    if was_connected:
                        self.events.on_disconnected(self)
                if self._stopping or self.retiring:
                    return
                woken = await self._back_off(attempt)
                attempt = 0 if woken else attempt + 1

    async def _back_off(self, attempt: int) -> bool:
        """Wait before the next attempt; True when cut short because the venue answers again."""
        cfg = self.config
        self.reconnects += 1
        self.events.on_reconnecting(self)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(cfg.backoff(attempt)):
                await self._wake.wait()
        if not self._wake.is_set():
            return False
        self._wake.clear()  # the venue answers again: the backoff starts over
        log.info("%s: the venue answers again, reconnecting now", self.name)
        await asyncio.sleep(random.uniform(0.0, cfg.backoff_initial))
        return True

    async def _pump(self, ws: Socket) -> None:
        """Frames to the owner, one by one; a watchdog beside it cuts a silent connection (a
        timeout per frame would cost more than the rest of the frame's handling)."""
        self.last_message = self.last_pong = time.monotonic()
        self._idle = ""
        watchdog = asyncio.create_task(self._watch(ws))
        receive, events, monotonic = ws.receive, self.events, time.monotonic
        text, binary = WSMsgType.TEXT, WSMsgType.BINARY
        try:
            while True:
                msg = await receive()
                kind = msg.type
                if kind is text or kind is binary:
                    frame = msg.data
                    self.messages += 1  # the watchdog sees it (no clock read per frame)
                    self.bytes_received += len(frame)  # (text: characters; venues send ASCII)
                    if events.tap is not None:
                        events.tap(rec.WS, self.name, frame)
                    try:
                        events.on_frame(frame, self)
                    except Exception as exc:  # one frame never ends the stream
                        events.frame_failed(exc, self.name)
                elif kind is WSMsgType.PING:  # control frames are not data: the watchdog
                    await ws.pong(msg.data)  # a copy of the payload, as the venues require
                elif kind is WSMsgType.PONG:
                    self.last_pong = monotonic()
                elif self._idle:
                    return  # cut by the watchdog: reported there
                elif kind is WSMsgType.ERROR:
                    raise ConnectionLost(f"{type(msg.data).__name__}: {msg.data}")
                else:  # CLOSE, CLOSING, CLOSED
                    code = ws.close_code if ws.close_code is not None else msg.data
                    raise ConnectionLost(
                        f"closed by the venue (code {code}{f': {msg.extra}' if msg.extra else ''})"
                    )
        finally:
            watchdog.cancel()

    async def _watch(self, ws: Socket) -> None:
        """Keepalive and dead-peer detection: our pings (a pong must follow within
        ``ping_timeout``), the venue's text ping when it wants one, and a cut after
        ``idle_timeout`` of silence."""
        cfg = self.config
        text_ping = self.text_ping
        ping_after = cfg.text_ping_after if text_ping is not None else math.inf
        every = math.inf  # the venue's text ping whatever the traffic (infinite: only if quiet)
        if text_ping is not None and self.text_ping_every is not None:
            every = min(self.text_ping_every, cfg.ping_interval)
        limit = cfg.idle_timeout + (ping_after if text_ping is not None else 0.0)
        text_pinged = -math.inf
        regular = time.monotonic()  # when the venue's text ping last went out whatever came
        pinged = self.last_pong  # no ping outstanding yet
        tick = min(cfg.idle_timeout, ping_after, every, cfg.ping_interval, cfg.ping_timeout) / 4
        seen = self.messages
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            if self.messages != seen:  # frames came since the last look
                seen, self.last_message = self.messages, now
            last_message = self.last_message or 0.0  # set by _pump before this starts
            silence = now - last_message
            dead = ""
            # (ping_after is infinite when there is no text_ping)
            quiet = silence >= ping_after and text_pinged < last_message
            if text_ping is not None and (quiet or now - regular >= every):
                text_pinged = regular = now  # a venue that wants to hear from us
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.send_str(text_ping)
            if self.last_pong < pinged:  # our ping is unanswered
                if now - pinged >= cfg.ping_timeout:
                    dead = f"no pong within {cfg.ping_timeout:g} s"
            elif now - pinged >= cfg.ping_interval:
                pinged = now
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.ping()
            if silence >= limit:
                dead = f"no data for {silence:.0f} s"
            if dead:
                self._idle = self.last_error = dead
                log.warning("%s: %s, reconnecting", self.name, dead)
                _abort(ws)
                return

    async def subscribe(self, streams: list[Any], unsubscribe: bool = False) -> None:
        """(Un)subscribe in chunks, paced under the venue's incoming-message limit."""
        chunk = self.config.subscribe_chunk
        for i in range(0, len(streams), chunk):
            await asyncio.sleep(self._pacer.delay(time.monotonic()))
            ws = self.ws
            if ws is None:
                return
            self._pacer.sent(time.monotonic())
            self._request_id += 1
            part = streams[i : i + chunk]
            message = self.subscribe_message(part, self._request_id, unsubscribe)
            try:
                await ws.send_str(message.decode())  # control messages are text frames
            except (ConnectionError, RuntimeError) as exc:  # the connection went meanwhile
                log.info("%s: (un)subscribe not sent: %s", self.name, exc)
                return
            self.events.on_subscribe_sent(self, part, unsubscribe)


class ConnectionLost(Exception):
    """The venue closed the connection, or it failed; says how."""


def _abort(ws: Socket) -> None:
    """Cut the connection at once (a dead peer would keep a close handshake waiting)."""
    connection = getattr(ws, "_conn", None)  # aiohttp exposes no abort: its connection's transport
    transport = getattr(connection, "transport", None)
    if transport is not None:
        transport.abort()
    else:
        asyncio.get_running_loop().create_task(ws.close())
