"""Faults a simulated exchange can suffer, per venue: from Python, from the command line
(``marketlab fault``), the control endpoint, or a schedule given at start."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from marketlab.records import normalize_symbol, parse_duration
from marketlab.sim.binance import ApiError
from marketlab.sim.host import PausableClock

if TYPE_CHECKING:
    from marketlab.sim.binance import BinanceFace
    from marketlab.sim.okx import OkxFace

T = TypeVar("T")

REST_FAULT_MESSAGES = {
    429: (-1003, "Too many requests; please use WebSocket Streams for live updates."),
    418: (-1003, "Way too much request weight used; IP banned. Please use WebSocket Streams."),
    500: (-1000, "An unknown error occurred while processing the request."),
    502: (-1000, "Bad gateway."),
    503: (-1008, "Server is currently overloaded with other requests. Please try again later."),
    504: (-1007, "Timeout waiting for response from backend server. Send status unknown."),
}


VENUES = ("binance", "okx")


class Faults:
    """Fault state the protocol faces consult, per venue."""

    def __init__(self) -> None:
        self.stall_until = dict.fromkeys(VENUES, 0.0)
        self.refuse_ws_until = dict.fromkeys(VENUES, 0.0)
        self.refuse_rest_until = dict.fromkeys(VENUES, 0.0)
        self.rest_errors: dict[str, deque[ApiError]] = {v: deque() for v in VENUES}

    def stalled(self, venue: str = "binance") -> bool:
        return time.monotonic() < self.stall_until[venue]

    def take_rest_fault(self, venue: str = "binance") -> ApiError | None:
        errors = self.rest_errors[venue]
        return errors.popleft() if errors else None


def venues_of(venue: str | None) -> tuple[str, ...]:
    if venue is None:
        return VENUES
    if venue not in VENUES:
        raise ValueError(f"unknown venue {venue!r}: expected one of {', '.join(VENUES)}")
    return (venue,)


def venue_of_path(path: str) -> str:
    return "okx" if path.startswith(("/ws/v5/", "/api/v5/")) else "binance"


def threadsafe(fn: Callable[..., T]) -> Callable[..., T]:
    """Run the method on the simulator's loop when called from another thread."""

    @functools.wraps(fn)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> T:
        loop = self._loop
        if loop is None or self._thread is None or threading.get_ident() == self._loop_thread_id:
            return fn(self, *args, **kwargs)

        async def call() -> T:
            return fn(self, *args, **kwargs)

        return asyncio.run_coroutine_threadsafe(call(), loop).result(timeout=30)

    return wrapper


@dataclass(frozen=True, slots=True)
class ScheduledFault:
    at: float  # seconds after start
    name: str
    arg: str | None = None


def parse_fault_schedule(text: str) -> list[ScheduledFault]:
    """``"drop@30,stall@60:10,rest429@90:3"`` → faults at those seconds after start."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, rest = part.partition("@")
        if not sep:
            raise ValueError(f"fault {part!r}: expected NAME@SECONDS[:ARG], e.g. stall@60:10")
        at, _, arg = rest.partition(":")
        if name not in FAULT_NAMES:
            raise ValueError(f"unknown fault {name!r}: expected one of {', '.join(FAULT_NAMES)}")
        out.append(ScheduledFault(parse_duration(at), name, arg or None))
    return out


FAULT_NAMES = (
    "drop",
    "stall",
    "gap",
    "malformed",
    "rest429",
    "rest418",
    "rest500",
    "rest503",
    "refuse",
    "shutdown",
    "pause",
    "resume",
    "checksum",
    "heartbeat",
    "seqreset",
)


class FaultControls:
    """The fault methods of :class:`~marketlab.sim.exchange.SimExchange` (every one may be called
    from any thread)."""

    faults: Faults
    binance: BinanceFace
    okx: OkxFace
    clock: PausableClock | None
    _loop: asyncio.AbstractEventLoop | None
    _thread: threading.Thread | None
    _loop_thread_id: int | None

    @threadsafe
    def drop_connections(self, venue: str | None = None) -> int:
        """Cut every WebSocket connection (of ``venue``) abruptly, without a close frame."""
        venues = venues_of(venue)
        return (self.binance.abort_all() if "binance" in venues else 0) + (
            self.okx.abort_all() if "okx" in venues else 0
        )

    @threadsafe
    def stall(self, seconds: float, venue: str | None = None) -> None:
        """Stop sending anything (data, pings) on open connections without closing them."""
        for v in venues_of(venue):
            self.faults.stall_until[v] = time.monotonic() + seconds

    @threadsafe
    def skip_depth_updates(
        self, events: int = 1, symbol: str | None = None, venue: str | None = None
    ) -> None:
        """Lose the next ``events`` depth events (Binance diff depth, OKX ``books`` updates):
        clients see a gap in update ids or a break in the prevSeqId chain."""
        sym = normalize_symbol(symbol) if symbol else None
        venues = venues_of(venue)
        if "binance" in venues:
            self.binance.skip_depth(events, sym)
        if "okx" in venues:
            self.okx.skip_books(events, sym)

    @threadsafe
    def corrupt_checksums(self, events: int = 1, symbol: str | None = None) -> None:
        """Send the next ``events`` OKX ``books`` updates with a wrong checksum."""
        self.okx.corrupt_checksums(events, normalize_symbol(symbol) if symbol else None)

    @threadsafe
    def book_heartbeat(self, symbol: str | None = None) -> int:
        """Send OKX's "book unchanged" push (empty sides, seqId == prevSeqId) on every
        ``books`` subscription (of ``symbol``) now; returns how many were sent."""
        return self.okx.book_heartbeat(normalize_symbol(symbol) if symbol else None)

    @threadsafe
    def reset_book_seq(self, symbol: str | None = None) -> None:
        """Restart OKX's seqId of the book(s) at the next update, as its maintenance does."""
        self.okx.reset_seq(normalize_symbol(symbol) if symbol else None)

    @threadsafe
    def send_malformed(self, kind: str = "truncated", venue: str | None = None) -> int:
        """Send one malformed frame to every connection: truncated, garbage, bad_field or
        unknown_event; or a well-formed trade with hostile numbers to every connection that
        carries trades: id_past_int64 (a trade id of 2**63) or nan_price."""
        venues = venues_of(venue)
        return (self.binance.send_malformed(kind) if "binance" in venues else 0) + (
            self.okx.send_malformed(kind) if "okx" in venues else 0
        )

    @threadsafe
    def fail_rest(
        self,
        status: int = 429,
        count: int = 1,
        retry_after: int | None = None,
        venue: str = "binance",
    ) -> None:
        """Answer the next ``count`` REST requests of ``venue`` with ``status`` (429, 418 or
        5xx)."""
        if status not in REST_FAULT_MESSAGES:
            raise ValueError(f"status must be one of {sorted(REST_FAULT_MESSAGES)}, got {status}")
        code, msg = REST_FAULT_MESSAGES[status]
        if retry_after is None and status in (429, 418):
            retry_after = 1
        (v,) = venues_of(venue)
        for _ in range(count):
            self.faults.rest_errors[v].append(ApiError(status, code, msg, retry_after))

    @threadsafe
    def refuse_connections(
        self, seconds: float, rest: bool = False, venue: str | None = None
    ) -> None:
        """Refuse new WebSocket connections (and REST requests with ``rest``) for a while."""
        until = time.monotonic() + seconds
        for v in venues_of(venue):
            self.faults.refuse_ws_until[v] = until
            if rest:
                self.faults.refuse_rest_until[v] = until

    @threadsafe
    def server_shutdown(self, venue: str | None = None) -> None:
        """Announce a shutdown (Binance ``serverShutdown``, OKX notice 64008), then close
        every connection."""
        assert self._loop is not None
        venues = venues_of(venue)
        if "binance" in venues:
            self._loop.create_task(self.binance.shutdown_notice())
        if "okx" in venues:
            self._loop.create_task(self.okx.shutdown_notice())

    @threadsafe
    def pause(self) -> None:
        """Freeze exchange time: no trades, no book changes, no candles."""
        assert self.clock is not None
        self.clock.pause()

    @threadsafe
    def resume(self) -> None:
        """Let exchange time run again after :meth:`pause`, from where it stopped: the paused
        stretch never happens on the exchange, so no burst of catch-up trades follows. Pause
        and resume bracket a moment when the market must hold still (to compare a client's
        book or candles with :meth:`book` or :meth:`klines`)."""
        assert self.clock is not None
        self.clock.resume()

    def inject(self, name: str, arg: str | None = None, venue: str | None = None) -> None:
        """Apply a fault by name (as the CLI and the control endpoint do), to ``venue`` or
        to both venues."""
        if name == "drop":
            self.drop_connections(venue)
        elif name == "stall":
            self.stall(parse_duration(arg or "10"), venue)
        elif name == "gap":
            self.skip_depth_updates(int(arg or 1), venue=venue)
        elif name == "checksum":
            self.corrupt_checksums(int(arg or 1))
        elif name == "heartbeat":
            self.book_heartbeat(arg)
        elif name == "seqreset":
            self.reset_book_seq(arg)
        elif name == "malformed":
            self.send_malformed(arg or "truncated", venue)
        elif name.startswith("rest") and name[4:].isdigit():
            for v in venues_of(venue):
                self.fail_rest(int(name[4:]), int(arg or 1), venue=v)
        elif name == "refuse":
            self.refuse_connections(parse_duration(arg or "20"), rest=False, venue=venue)
        elif name == "shutdown":
            self.server_shutdown(venue)
        elif name == "pause":
            self.pause()
        elif name == "resume":
            self.resume()
        else:
            raise ValueError(f"unknown fault {name!r}: expected one of {', '.join(FAULT_NAMES)}")
