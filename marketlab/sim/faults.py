"""Faults a simulated exchange can suffer, per venue: from Python, from the command line
(``marketlab fault``), the control endpoint, or a schedule given at start."""

from __future__ import annotations

import asyncio
import functools
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from marketlab.records import normalize_symbol, parse_duration
from marketlab.sim.archive import TRAPS as ARCHIVE_TRAPS
from marketlab.sim.binance import ApiError
from marketlab.sim.bybit.rest import BYBIT_REST_FAULTS
from marketlab.sim.coinbase.rest import COINBASE_REST_FAULTS
from marketlab.sim.face import SocketFace
from marketlab.sim.host import PausableClock
from marketlab.sim.market import ANOMALIES, JUMP_BPS

if TYPE_CHECKING:
    from marketlab.sim.archive import ArchiveFace
    from marketlab.sim.binance import BinanceFace
    from marketlab.sim.bybit import BybitFace
    from marketlab.sim.coinbase import CoinbaseFace
    from marketlab.sim.market import Market
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


VENUES = ("binance", "okx", "bybit", "coinbase")

# Each named fault → the venues that have such a thing (pause and resume stop the one market
# every venue shows, so they are no venue's).
FAULT_VENUES: dict[str, tuple[str, ...]] = {
    "drop": VENUES,
    "stall": VENUES,
    "gap": VENUES,
    "malformed": VENUES,
    "rest429": VENUES,
    "rest418": ("binance", "okx"),
    "rest403": ("bybit",),
    "rest500": VENUES,
    "rest502": VENUES,
    "rest503": VENUES,
    "rest504": VENUES,
    "refuse": VENUES,
    "outage": VENUES,
    "shutdown": VENUES,
    "pause": (),
    "resume": (),
    "checksum": ("okx",),
    "heartbeat": ("okx",),
    "seqreset": ("okx", "bybit"),
    # market anomalies: the one market every venue shows (see marketlab.sim.market.ANOMALIES)
    **dict.fromkeys(ANOMALIES, ()),
    # the public data archive's traps (Binance's; see marketlab.sim.archive)
    **{f"archive_{trap}": ("binance",) for trap in ARCHIVE_TRAPS},
}
FAULT_NAMES = tuple(FAULT_VENUES)

REST_STATUSES = {
    "binance": tuple(REST_FAULT_MESSAGES),
    "okx": tuple(REST_FAULT_MESSAGES),
    "bybit": tuple(BYBIT_REST_FAULTS),
    "coinbase": tuple(COINBASE_REST_FAULTS),
}


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
    """Every venue for None, else the one named (ValueError for an unknown name)."""
    if venue is None:
        return VENUES
    if venue not in VENUES:
        raise ValueError(f"unknown venue {venue!r}: expected one of {', '.join(VENUES)}")
    return (venue,)


def fault_venues(name: str, venue: str | None) -> tuple[str, ...]:
    """The venues a named fault hits: those that have it (for None), or the one named, which
    must have it (ValueError saying which venues do)."""
    have = FAULT_VENUES.get(name)
    if have is None:
        raise ValueError(f"unknown fault {name!r}: expected one of {', '.join(FAULT_NAMES)}")
    if venue is None:
        return have
    (v,) = venues_of(venue)
    if v not in have:
        where = (
            f"only {', '.join(have)} ha{'s' if len(have) == 1 else 've'} it"
            if have
            else ("it is no venue's (the one market every venue shows)")
        )
        raise ValueError(f"fault {name!r} does not exist on {v}: {where}")
    return (v,)


def venue_of_path(path: str) -> str:
    """The venue a request's path belongs to: OKX's ``/ws/v5/`` and ``/api/v5/``, Bybit's
    ``/v5/``, Coinbase's REST under ``/api/v3/brokerage`` and its WebSocket at the root path
    ``/``; Binance's everything else."""
    if path.startswith(("/ws/v5/", "/api/v5/")):
        return "okx"
    if path.startswith("/v5/"):
        return "bybit"
    if path == "/" or path.startswith("/api/v3/brokerage/"):
        return "coinbase"
    return "binance"


def is_ws_path(path: str) -> bool:
    """Whether the path is one of a venue's WebSocket endpoints (else REST)."""
    return path in ("/", "/ws") or path.startswith(("/ws/", "/stream", "/v5/public/"))


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
    venue: str | None = None  # None: every venue that has it


def parse_fault_schedule(text: str) -> list[ScheduledFault]:
    """``"drop@30,stall@60:10,rest429@90:3,bybit.gap@120:2"`` → faults at those seconds after
    start; a ``VENUE.`` prefix aims one at that venue (else every venue that has it)."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, rest = part.partition("@")
        if not sep:
            raise ValueError(
                f"fault {part!r}: expected [VENUE.]NAME@SECONDS[:ARG], e.g. stall@60:10"
            )
        venue, dot, bare = name.rpartition(".")
        at, _, arg = rest.partition(":")
        fault_venues(bare, venue if dot else None)  # ValueError for an unknown name or venue
        out.append(ScheduledFault(parse_duration(at), bare, arg or None, venue or None))
    return out


class FaultControls:
    """The fault methods of :class:`~marketlab.sim.exchange.SimExchange` (every one may be called
    from any thread). A ``venue`` of None hits every venue that has the fault; naming a venue
    that has no such thing is a ValueError saying which venues have it."""

    faults: Faults
    market: Market
    binance: BinanceFace
    archive: ArchiveFace
    okx: OkxFace
    bybit: BybitFace
    coinbase: CoinbaseFace
    clock: PausableClock | None
    _loop: asyncio.AbstractEventLoop | None
    _thread: threading.Thread | None
    _loop_thread_id: int | None

    def _face(self, venue: str) -> SocketFace:
        faces: dict[str, SocketFace] = {
            "binance": self.binance,
            "okx": self.okx,
            "bybit": self.bybit,
            "coinbase": self.coinbase,
        }
        return faces[venue]

    def _outage_face(self, venue: str) -> BybitFace | CoinbaseFace:
        return self.bybit if venue == "bybit" else self.coinbase

    @threadsafe
    def drop_connections(self, venue: str | None = None) -> int:
        """Cut every WebSocket connection (of ``venue``) abruptly, without a close frame."""
        return sum(self._face(v).abort_all() for v in fault_venues("drop", venue))

    @threadsafe
    def stall(self, seconds: float, venue: str | None = None) -> None:
        """Stop sending anything (data, pings) on open connections without closing them."""
        for v in fault_venues("stall", venue):
            self.faults.stall_until[v] = time.monotonic() + seconds

    @threadsafe
    def skip_depth_updates(
        self, events: int = 1, symbol: str | None = None, venue: str | None = None
    ) -> None:
        """Lose the next ``events`` book events: Binance diff depth (a gap in update ids), OKX
        ``books`` updates (a break in the prevSeqId chain), Bybit book pushes (``u`` jumps);
        on Coinbase, whose numbers are per connection, the next ``events`` messages of every
        connection (``sequence_num`` jumps; ``symbol`` does not narrow it)."""
        sym = normalize_symbol(symbol) if symbol else None
        for v in fault_venues("gap", venue):
            if v == "binance":
                self.binance.skip_depth(events, sym)
            elif v == "okx":
                self.okx.skip_books(events, sym)
            elif v == "bybit":
                self.bybit.skip_books(events, sym)
            else:
                self.coinbase.skip_messages(events)

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
    def reset_book_seq(self, symbol: str | None = None, venue: str | None = "okx") -> None:
        """Restart the book chain at the next update, as a venue's maintenance does: OKX's
        seqId (that update's seqId is 0, below its prevSeqId), Bybit's ``u`` (a new snapshot
        with ``u`` = 1). ``venue`` None resets both."""
        sym = normalize_symbol(symbol) if symbol else None
        for v in fault_venues("seqreset", venue):
            if v == "okx":
                self.okx.reset_seq(sym)
            else:
                self.bybit.reset_books(sym)

    @threadsafe
    def send_malformed(self, kind: str = "truncated", venue: str | None = None) -> int:
        """Send one malformed frame to every connection: truncated, garbage, bad_field or
        unknown_event; or a well-formed trade with hostile numbers to every connection that
        carries trades: id_past_int64 (a trade id of 2**63) or nan_price. Coinbase has
        garbage, truncated and new_channel (a well-formed message of a channel it never had).
        ``venue`` None sends the kind to every venue that has it."""
        if venue is not None:
            (v,) = venues_of(venue)
            kinds = self._face(v).MALFORMED_KINDS
            if kind not in kinds:
                raise ValueError(
                    f"unknown malformed kind {kind!r} on {v}: expected one of {', '.join(kinds)}"
                )
            targets: tuple[str, ...] = (v,)
        else:
            targets = tuple(v for v in VENUES if kind in self._face(v).MALFORMED_KINDS)
            if not targets:
                every = dict.fromkeys(k for v in VENUES for k in self._face(v).MALFORMED_KINDS)
                raise ValueError(
                    f"unknown malformed kind {kind!r}: expected one of {', '.join(every)}"
                )
        return sum(self._face(v).send_malformed(kind) for v in targets)

    @threadsafe
    def fail_rest(
        self,
        status: int = 429,
        count: int = 1,
        retry_after: int | None = None,
        venue: str = "binance",
    ) -> None:
        """Answer the next ``count`` REST requests of ``venue`` with ``status``, in the venue's
        own way: Binance's and OKX's bodies (429, 418, 5xx), Bybit's envelope (429 is HTTP 200
        with retCode 10006, 5xx with retCode 10016 or 10000; its 403 is :meth:`ban_rest`),
        Coinbase's error body (429 ``RESOURCE_EXHAUSTED``, 5xx)."""
        (v,) = venues_of(venue)
        statuses = REST_STATUSES[v]
        if status not in statuses:
            have = [w for w in VENUES if status in REST_STATUSES[w]]
            raise ValueError(
                f"status {status} on {v}: expected one of {sorted(statuses)}"
                + (f" ({status} exists on {', '.join(have)})" if have else "")
            )
        code, msg = REST_FAULT_MESSAGES.get(status, (0, ""))
        if retry_after is None and status in (429, 418):
            retry_after = 1
        for _ in range(count):
            self.faults.rest_errors[v].append(ApiError(status, code, msg, retry_after))

    @threadsafe
    def ban_rest(self, seconds: float | None = None, venue: str = "bybit") -> None:
        """Ban every client IP from Bybit's REST for ``seconds`` (``bybit_ban_seconds`` by
        default), as Bybit does past its limit: HTTP 403 "access too frequent"."""
        fault_venues("rest403", venue)
        self.bybit.ban(seconds)

    @threadsafe
    def refuse_connections(
        self, seconds: float, rest: bool = False, venue: str | None = None
    ) -> None:
        """Refuse new WebSocket connections (and REST requests with ``rest``) for a while."""
        until = time.monotonic() + seconds
        for v in fault_venues("refuse", venue):
            self.faults.refuse_ws_until[v] = until
            if rest:
                self.faults.refuse_rest_until[v] = until

    @threadsafe
    def outage(self, seconds: float, venue: str | None = None) -> int:
        """The venue goes away for ``seconds``: every connection is cut without a close frame,
        new connections and REST requests are refused until it is back. Returns how many
        connections were cut."""
        cut = 0
        for v in fault_venues("outage", venue):
            if v in ("bybit", "coinbase"):
                cut += self._outage_face(v).outage(seconds)
            else:
                self.refuse_connections(seconds, rest=True, venue=v)
                cut += self._face(v).abort_all()
        return cut

    @threadsafe
    def server_shutdown(self, venue: str | None = None, seconds: float = 2.0) -> None:
        """Announce a shutdown (Binance ``serverShutdown``, OKX notice 64008), then close
        every connection. Bybit and Coinbase announce none: there the service goes away for
        ``seconds`` (their :meth:`outage`)."""
        assert self._loop is not None
        for v in fault_venues("shutdown", venue):
            if v == "binance":
                self._loop.create_task(self.binance.shutdown_notice())
            elif v == "okx":
                self._loop.create_task(self.okx.shutdown_notice())
            else:
                self._outage_face(v).outage(seconds)

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

    @threadsafe
    def anomaly(
        self,
        kind: str,
        symbol: str | None = None,
        seconds: float = 10.0,
        bps: float = JUMP_BPS,
    ) -> None:
        """Make the market (as every venue shows it) of ``symbol`` (every symbol for None)
        show an anomaly from its next second, for ``seconds`` of market time: ``jump`` (the
        mid moves ``bps`` at once), ``spread`` (blown out), ``volume`` (a burst), ``silent``
        (halted: no trade, no book change) or ``crossed`` (a bid above the best ask); see
        :meth:`marketlab.sim.market.SymbolMarket.anomaly`."""
        if kind not in ANOMALIES:
            raise ValueError(f"unknown anomaly {kind!r}: expected one of {', '.join(ANOMALIES)}")
        if not (seconds > 0 and math.isfinite(seconds) and math.isfinite(bps)):
            raise ValueError(f"anomaly {kind}: seconds {seconds} and bps {bps} must be finite")
        markets = self.market.symbols
        if symbol is not None:
            name = normalize_symbol(symbol)
            if name not in markets:
                raise ValueError(
                    f"anomaly {kind}: unknown symbol {symbol!r} (simulated: {', '.join(markets)})"
                )
            targets = [markets[name]]
        else:
            targets = list(markets.values())
        for market in targets:
            market.anomaly(kind, seconds, bps)

    def inject(self, name: str, arg: str | None = None, venue: str | None = None) -> None:
        """Apply a fault by name (as the CLI, the control endpoint and the schedule do), to
        ``venue`` or to every venue that has it; see :data:`FAULT_VENUES` for which do."""
        venues = fault_venues(name, venue)  # ValueError for an unknown name or a wrong venue
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
            self.reset_book_seq(arg, venue)
        elif name == "malformed":
            self.send_malformed(arg or "truncated", venue)
        elif name == "rest403":
            self.ban_rest(parse_duration(arg) if arg else None)
        elif name.startswith("rest"):
            for v in venues:
                self.fail_rest(int(name[4:]), int(arg or 1), venue=v)
        elif name == "refuse":
            self.refuse_connections(parse_duration(arg or "20"), rest=False, venue=venue)
        elif name == "outage":
            self.outage(parse_duration(arg or "10"), venue)
        elif name == "shutdown":
            self.server_shutdown(venue, parse_duration(arg or "2"))
        elif name == "pause":
            self.pause()
        elif name == "resume":
            self.resume()
        elif name.startswith("archive_"):
            self.archive.trap(name.removeprefix("archive_"), arg)
        elif name in ANOMALIES:
            symbol, amount = anomaly_arg(name, arg)
            if name == "jump":
                self.anomaly(name, symbol, bps=JUMP_BPS if amount is None else amount)
            else:
                self.anomaly(name, symbol, seconds=10.0 if amount is None else amount)


def anomaly_arg(name: str, arg: str | None) -> tuple[str | None, float | None]:
    """An anomaly's argument, ``[SYMBOL][:AMOUNT]`` in any order (``BTCUSDT:300``, ``-150``,
    ``ETHUSDT``): the symbol (None: every symbol) and the amount, bps for ``jump`` (signed),
    a duration for the others (None: the default)."""
    symbol: str | None = None
    amount: float | None = None
    for part in filter(None, (arg or "").split(":")):
        try:
            value = float(part) if name == "jump" else parse_duration(part)
        except ValueError:
            if symbol is not None:
                raise ValueError(
                    f"anomaly {name}: argument {arg!r}: expected [SYMBOL][:"
                    f"{'BPS' if name == 'jump' else 'SECONDS'}], e.g. BTCUSDT:"
                    f"{'200' if name == 'jump' else '10'}"
                ) from None
            symbol = part
            continue
        if amount is not None:
            raise ValueError(f"anomaly {name}: argument {arg!r} gives two amounts")
        amount = value
    return symbol, amount
