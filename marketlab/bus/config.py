"""Where the bus is and the limits of its stream, checked once (Lab, CLI and readers share it)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from marketlab.settings import positive

log = logging.getLogger("marketlab.bus")

STREAM = "MARKETLAB"


@dataclass(frozen=True)
class BusConfig:
    """``url``: one or several comma-separated ``nats://host:port`` (a cluster's nodes).

    The stream keeps what collectors publish for ``max_age`` seconds and at most
    ``max_bytes``, on ``replicas`` nodes; a message sent twice within ``duplicate_window``
    seconds is stored once. A collector holds at most ``buffer_limit`` records while the bus
    is away (the oldest go first, counted) and seals a message every ``flush_interval`` s.
    """

    url: str
    stream: str = STREAM
    max_age: float = 24 * 3600.0
    max_bytes: int = 10 * 2**30
    replicas: int = 1
    duplicate_window: float = 120.0
    buffer_limit: int = 1_000_000
    flush_interval: float = 0.002
    snapshot_interval: float = 10.0  # a whole book at least this often, for readers joining late
    ack_timeout: float = 5.0

    def __post_init__(self) -> None:
        if not all(u.strip().startswith(("nats://", "tls://")) for u in self.url.split(",")):
            raise ValueError(
                f"bus url {self.url!r}: expected nats://host:port (comma-separated for a cluster)"
            )
        for name in (
            "max_age",
            "duplicate_window",
            "flush_interval",
            "snapshot_interval",
            "ack_timeout",
        ):
            positive(name, getattr(self, name))
        for name in ("max_bytes", "replicas", "buffer_limit"):
            positive(name, getattr(self, name), integer=True)

    @property
    def servers(self) -> list[str]:
        return [u.strip() for u in self.url.split(",")]


def bus_config(bus: str | BusConfig, **options: Any) -> BusConfig:
    return bus if isinstance(bus, BusConfig) else BusConfig(bus, **options)


async def connect(config: BusConfig, name: str, on_state: Any = None) -> Any:
    """A NATS connection that reconnects forever; ``on_state(connected, error)`` hears of it."""
    import nats

    async def disconnected() -> None:
        if on_state is not None:
            on_state(False, "disconnected")

    async def reconnected() -> None:
        if on_state is not None:
            on_state(True, "")

    async def error(exc: Exception) -> None:
        if on_state is not None:
            on_state(None, f"{type(exc).__name__}: {exc}")

    return await nats.connect(servers=config.servers, name=name, max_reconnect_attempts=-1,
                              reconnect_time_wait=0.5, connect_timeout=2, disconnected_cb=disconnected,
                              reconnected_cb=reconnected, error_cb=error)  # fmt: skip


async def ensure_stream(js: Any, config: BusConfig) -> None:
    """The stream with our limits, created or brought to them."""
    from nats.js.api import StorageType, StreamConfig
    from nats.js.errors import NotFoundError

    wanted = StreamConfig(name=config.stream, subjects=["marketlab.>"], max_age=config.max_age,
                          max_bytes=config.max_bytes, num_replicas=config.replicas,
                          duplicate_window=config.duplicate_window, storage=StorageType.FILE)  # fmt: skip
    try:
        await js.stream_info(config.stream)
    except NotFoundError:
        await js.add_stream(wanted)
        return
    await js.update_stream(wanted)


async def close_quietly(nc: Any) -> None:
    """Close a connection that may already be gone."""
    if nc is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), 2.0)
