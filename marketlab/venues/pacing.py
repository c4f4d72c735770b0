"""Pacing what a client sends on a connection, sans-I/O: venues drop clients that send fast."""

from __future__ import annotations

from bisect import bisect_right
from collections import deque

# Binance's limit, the strictest of the venues here: the default ceiling for every venue.
MAX_INCOMING_MESSAGES_PER_SECOND = 5


class MessagePacer:
    """Keeps control messages under a venue's incoming-message limit, sans-I/O.

    Binance drops a connection that sends more than 5 messages a second (pings, pongs and
    JSON messages all count), and one client saw a SUBSCRIBE every 250 ms dropped while one
    every 500 ms held, so the default here is 2 per second. Feed it times, ask it when.
    """

    def __init__(self, per_second: float = 2.0, ceiling: float = MAX_INCOMING_MESSAGES_PER_SECOND):
        if not 0 < per_second <= ceiling:
            raise ValueError(f"per_second must be in (0, {ceiling:g}]")
        self.interval = 1.0 / per_second
        self._last: float | None = None

    def delay(self, now: float) -> float:
        """Seconds to wait from ``now`` before the next message may go."""
        if self._last is None:
            return 0.0
        return max(0.0, self._last + self.interval - now)

    def sent(self, now: float) -> None:
        self._last = max(now, self._last + self.interval) if self._last is not None else now


class RequestWindow:
    """At most ``limit`` requests in any ``window_s`` seconds, sans-I/O: the sliding window
    the venues' REST pacers share (each adds what its venue says after a refusal). Feed it
    times, ask it when."""

    def __init__(self, limit: int, window_s: float):
        self.limit = max(1, limit)
        self.window_s = window_s
        self.sent_at: deque[float] = deque()

    def delay(self, now: float) -> float:
        """Seconds to wait from ``now`` before the next request may go."""
        sent = self.sent_at
        while sent and sent[0] <= now - self.window_s:
            sent.popleft()
        if len(sent) >= self.limit:
            return sent[0] + self.window_s - now + 0.01
        return 0.0

    def sent(self, now: float) -> None:
        self.sent_at.append(now)

    def used(self, now: float) -> int:
        """Requests sent within the window ending at ``now``."""
        held = list(self.sent_at)  # (a copy: read from another thread than the sender's)
        return len(held) - bisect_right(held, now - self.window_s)
