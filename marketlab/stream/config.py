"""How a feed behaves on the wire: timeouts, backoff, rollover, pacing, REST polling. The
defaults suit the real venues; tests shorten them. Every value is checked when it is given."""

from __future__ import annotations

import random
from dataclasses import dataclass

from marketlab.settings import positive

# The most streams a feed puts on one connection, whatever the venue: a setting above it is
# refused when it is given. A venue whose own limit is lower enforces that itself.
MAX_STREAMS_PER_CONNECTION = 1024


@dataclass
class FeedConfig:
    """Connection behaviour; the defaults suit the real exchange, tests shorten them."""

    ws_url: str = ""  # the venue's; a Lab fills them from its settings
    rest_url: str = ""
    open_timeout: float = 10.0
    ping_interval: float = 20.0  # our own keepalive pings
    ping_timeout: float = 20.0  # no pong within this → the peer is dead
    idle_timeout: float = 30.0  # no frame at all within this → the peer is dead
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    max_connection_age: float = 23.5 * 3600  # roll over before Binance's 24 h disconnect
    rollover_overlap: float = 3.0
    fallback_after: float = 15.0  # WebSocket down this long → poll REST
    poll_interval: float = 2.0
    streams_per_connection: int = MAX_STREAMS_PER_CONNECTION
    subscribe_per_second: float = 2.0
    url_streams: int = 200  # streams named in the URL; the rest go by SUBSCRIBE
    subscribe_chunk: int = 200  # streams per SUBSCRIBE message
    book_snapshot_limit: int = 1000
    weight_limit: int = 6000
    seed_klines: int = 1440
    text_ping_after: float = 20.0  # OKX: silent this long → send "ping" (the server cuts at 30 s)
    subscribe_timeout: float = 5.0  # OKX: a subscription not acknowledged by then is sent again

    def __post_init__(self) -> None:
        """Refuse a setting that cannot work now, not later inside the collector."""
        for name, f in self.__dataclass_fields__.items():
            if name in ("ws_url", "rest_url"):
                continue
            integer = f.type in ("int", int)
            zero = name in ("rollover_overlap", "seed_klines", "url_streams")
            positive(name, getattr(self, name), integer=integer, zero=zero)
        if self.backoff_max < self.backoff_initial:
            raise ValueError(
                f"backoff_max ({self.backoff_max}) must be >= "
                f"backoff_initial ({self.backoff_initial})"
            )
        if self.streams_per_connection > MAX_STREAMS_PER_CONNECTION:
            raise ValueError(
                f"streams_per_connection must be <= {MAX_STREAMS_PER_CONNECTION} (the most "
                f"streams one connection carries), got {self.streams_per_connection}"
            )
        if not 1 <= self.book_snapshot_limit <= 5000:
            raise ValueError(
                "book_snapshot_limit must be 1..5000 (the deepest snapshot asked of a venue), "
                f"got {self.book_snapshot_limit}"
            )

    def backoff(self, attempt: int) -> float:
        """Exponential with full jitter in [50%, 100%], capped."""
        ceiling = min(self.backoff_max, self.backoff_initial * 2**attempt)
        return ceiling * random.uniform(0.5, 1.0)
