"""Every alert rule, evaluated on one :class:`Observation` of the Lab at a time handed in:
sans-I/O (the Lab is read, and the clock, by :class:`marketlab.watch.Watch`), so tests feed
hand-made observations and times."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import pandas as pd

from marketlab.watch.alerts import Finding
from marketlab.watch.market import (
    Persisting,
    PriceJump,
    SpreadBlowout,
    VolumeBurst,
    outside_book_bps,
    spread_bps,
)
from marketlab.watch.settings import AlertSettings, off


@dataclass(frozen=True)
class StreamRow:
    """One (venue, symbol, stream) row of ``lab.status()``."""

    venue: str
    symbol: str
    stream: str
    connected: bool
    age_s: float  # NaN before its first message
    book: str = ""  # depth rows: "synced" or why not


@dataclass(frozen=True)
class VenueRow:
    """A venue's figures of ``lab.summary()``."""

    venue: str
    connected: bool
    reconnects: int
    rest_rate_limited: int
    trade_holes: Mapping[str, int] = field(default_factory=dict)  # symbol → unfilled holes


class Quote(NamedTuple):
    """A venue's best bid and ask for a symbol, and the venue's time of them (ms; NaN when
    unknown)."""

    venue: str
    symbol: str
    bid: float
    ask: float
    time_ms: float = math.nan


class Print(NamedTuple):
    """A trade taken since the last observation (a tuple: one is made per trade)."""

    venue: str
    symbol: str
    price: float
    qty: float
    time_ms: float = math.nan  # the venue's time of the trade


# a trade is judged against the quote before it only when the venue's times of the two are
# this close (a replay or a late batch of trades is not compared with a quote long after)
QUOTE_AGE_MS = 2_000


@dataclass(frozen=True)
class Observation:
    """What the rules see of the Lab at one moment."""

    streams: Sequence[StreamRow] = ()
    venues: Sequence[VenueRow] = ()
    store_failing: bool = False
    store_error: str = ""
    store_awaiting_backfill: int = 0
    bus_connected: bool | None = None  # None: no bus
    bus_error: str = ""
    quotes: Sequence[Quote] = ()
    prints: Sequence[Print] = ()
    divergence: Sequence[tuple[str, str, float]] = ()  # (symbol, venue, bps from the median)
    health: bool = True  # False: the Lab's status was not read (the health rules skip it)
    # volume traded per (venue, symbol) since the last observation; None: the prints' sum
    # (the watch hands only each symbol's highest and lowest trade, with the whole volume)
    volumes: Mapping[tuple[str, str], float] | None = None


def observe(
    status: pd.DataFrame | None,
    exchange: str,
    price_rows: Iterable[Mapping[str, Any]] = (),
    prints: Sequence[Print] = (),
    divergence: pd.DataFrame | None = None,
    volumes: Mapping[tuple[str, str], float] | None = None,
) -> Observation:
    """An observation from the Lab's own reports: ``lab.status()`` (its ``attrs`` hold the
    summary; None: only the market is observed), ``lab.price_rows()``, the trades taken since
    the last one, ``lab.divergence()`` (several venues). ``exchange`` is the Lab's first venue
    (a one-venue status has no exchange level)."""
    quotes = [
        Quote(
            str(row["exchange"]),
            str(row["symbol"]),
            float(row["bid"]),
            float(row["ask"]),
            float(row["event_time"] or math.nan),
        )
        for row in price_rows
    ]
    spread: list[tuple[str, str, float]] = []
    if divergence is not None:
        bps_of: dict[tuple[str, str], float] = divergence["bps"].to_dict()  # type: ignore[assignment]
        for (symbol, venue), bps in bps_of.items():
            if not math.isnan(bps):
                spread.append((str(symbol), str(venue), float(bps)))
    if status is None:
        return Observation(
            quotes=quotes, prints=prints, divergence=spread, health=False, volumes=volumes
        )
    summary = status.attrs
    keys: list[tuple[str, ...]] = status.index.tolist()
    if status.index.nlevels == 2:  # one venue: (symbol, stream)
        keys = [(exchange, *key) for key in keys]
    streams = [
        StreamRow(venue, symbol, stream, bool(connected), float(age), str(book))
        for (venue, symbol, stream), connected, age, book in zip(
            keys,
            status["connected"].tolist(),
            status["age_s"].tolist(),
            status["book"].tolist(),
            strict=True,
        )
    ]
    venues_info: Mapping[str, Mapping[str, Any]] = summary.get("venues") or {exchange: summary}
    venues = []
    for venue, info in venues_info.items():
        connections = info.get("connections") or []
        venues.append(
            VenueRow(
                venue,
                bool(connections) and all(c["connected"] for c in connections),
                int(info.get("reconnects") or 0),
                int(info.get("rest_rate_limited") or 0),
                {s: len(spans) for s, spans in (info.get("trade_holes") or {}).items()},
            )
        )
    store = summary.get("store") or {}
    bus = summary.get("bus")
    return Observation(
        streams=streams,
        venues=venues,
        store_failing=store.get("state") == "failing",
        store_error=str(store.get("error") or ""),
        store_awaiting_backfill=int(store.get("awaiting_backfill") or 0),
        bus_connected=None if not bus else bus_working(bus),
        bus_error=str((bus or {}).get("last_error") or (bus or {}).get("state") or ""),
        quotes=quotes,
        prints=prints,
        divergence=spread,
        volumes=volumes,
    )


class Since:
    """When each subject's condition began (for "longer than N s" rules)."""

    def __init__(self) -> None:
        self.began: dict[Any, float] = {}

    def held(self, key: Any, now: float, holds: bool) -> float:
        """Seconds the condition has held (0 when it does not)."""
        if not holds:
            self.began.pop(key, None)
            return 0.0
        return now - self.began.setdefault(key, now)


class Rules:
    """Every rule's state between observations; :meth:`evaluate` gives the findings of one."""

    def __init__(self, settings: AlertSettings):
        self.s = settings
        self.unsynced = Since()
        self.store_down = Since()
        self.bus_down = Since()
        self.reconnects: dict[str, deque[tuple[float, int]]] = {}
        self.rate_limited: dict[str, deque[tuple[float, int]]] = {}
        self.jumps: dict[tuple[str, str], PriceJump] = {}
        self.spreads: dict[tuple[str, str], SpreadBlowout] = {}
        self.volumes: dict[tuple[str, str], VolumeBurst] = {}
        self.crossed: dict[tuple[str, str], Persisting] = {}
        self.wide: dict[tuple[str, str], Persisting] = {}
        self.diverging: dict[tuple[str, str], Persisting] = {}
        self.last_quotes: dict[tuple[str, str], Quote] = {}

    def evaluate(self, now: float, seen: Observation) -> list[Finding]:
        """The findings of every rule (of the market rules only, for an observation without
        the Lab's status)."""
        health = self.health(now, seen) if seen.health else []
        return [*health, *self.market(now, seen)]

    # --- health ----------------------------------------------------------------------------

    def health(self, now: float, seen: Observation) -> list[Finding]:
        s, out = self.s, []
        for row in seen.streams:
            if not off(s.silence_s) and row.connected and row.age_s > s.silence_s:
                out.append(
                    Finding(
                        "silence",
                        row.venue,
                        row.symbol,
                        row.age_s,
                        s.silence_s,
                        f"{row.venue} {row.symbol} {row.stream}: no message for "
                        f"{row.age_s:.0f} s while the venue is connected",
                        row.stream,
                    )
                )
            if row.stream == "depth" and not off(s.book_unsynced_s):
                held = self.unsynced.held((row.venue, row.symbol), now, row.book != "synced")
                if held > s.book_unsynced_s:
                    out.append(
                        Finding(
                            "book_unsynced",
                            row.venue,
                            row.symbol,
                            held,
                            s.book_unsynced_s,
                            f"{row.venue} {row.symbol}: book out of sync for {held:.0f} s "
                            f"({row.book or 'not synced'})",
                        )
                    )
        for venue in seen.venues:
            out.extend(self._venue(now, venue))
        held = self.store_down.held("store", now, seen.store_failing)
        if seen.store_failing and held >= s.store_failing_s:
            out.append(
                Finding(
                    "store_failing",
                    "",
                    "",
                    held,
                    s.store_failing_s,
                    f"the store cannot write for {held:.0f} s: {seen.store_error or 'failing'}",
                )
            )
        if seen.store_awaiting_backfill:
            out.append(
                Finding(
                    "trade_holes",
                    "",
                    "",
                    seen.store_awaiting_backfill,
                    0,
                    f"{seen.store_awaiting_backfill} candle(s) the store dropped are not yet "
                    "fetched again",
                    "klines",
                )
            )
        down = seen.bus_connected is False
        held = self.bus_down.held("bus", now, down)
        if down and held >= s.bus_down_s:
            out.append(
                Finding(
                    "bus_down",
                    "",
                    "",
                    held,
                    s.bus_down_s,
                    f"the bus is unreachable for {held:.0f} s: {seen.bus_error or 'disconnected'}",
                )
            )
        return out

    def _venue(self, now: float, venue: VenueRow) -> list[Finding]:
        s, out = self.s, []
        added = _increase(self.reconnects, venue.venue, now, venue.reconnects, s.reconnect_window_s)
        if added > s.max_reconnects:
            out.append(
                Finding(
                    "reconnects",
                    venue.venue,
                    "",
                    added,
                    s.max_reconnects,
                    f"{venue.venue}: {added} reconnects within {s.reconnect_window_s:g} s",
                )
            )
        limited = _increase(
            self.rate_limited, venue.venue, now, venue.rest_rate_limited, s.rest_limited_window_s
        )
        if limited > 0:
            out.append(
                Finding(
                    "rest_limited",
                    venue.venue,
                    "",
                    limited,
                    0,
                    f"{venue.venue}: {limited} REST answer(s) 429/418 within "
                    f"{s.rest_limited_window_s:g} s: the request weight is at the venue's limit",
                )
            )
        for symbol, holes in venue.trade_holes.items():
            if holes:
                out.append(
                    Finding(
                        "trade_holes",
                        venue.venue,
                        symbol,
                        holes,
                        0,
                        f"{venue.venue} {symbol}: {holes} trade-id hole(s) the backfill "
                        "could not fill",
                        "trade",
                    )
                )
        return out

    # --- market ----------------------------------------------------------------------------

    def market(self, now: float, seen: Observation) -> list[Finding]:
        s, out = self.s, []
        volume: dict[tuple[str, str], float] = {}
        for p in seen.prints:
            key = (p.venue, p.symbol)
            volume[key] = volume.get(key, 0.0) + p.qty
            out.extend(self._print(p))
        if seen.volumes is not None:
            volume = dict(seen.volumes)
        quotes = {(q.venue, q.symbol): q for q in seen.quotes}
        for key in quotes.keys() | volume.keys():
            venue, symbol = key
            if not off(s.volume_factor):
                span = max(1, round(s.volume_span_s / s.interval_s))
                burst = self.volumes.setdefault(
                    key, VolumeBurst(s.window, s.min_samples, s.volume_factor, span)
                ).update(volume.get(key, 0.0))
                if burst is not None:
                    out.append(
                        Finding(
                            "volume_burst",
                            venue,
                            symbol,
                            burst,
                            s.volume_factor,
                            f"{venue} {symbol}: {burst:.1f}x the rolling mean volume of "
                            f"{max(s.volume_span_s, s.interval_s):g} s traded",
                        )
                    )
        for key, q in quotes.items():
            out.extend(self._quote(now, key, q))
        self.last_quotes.update(quotes)
        for symbol, venue, bps in seen.divergence:
            state = self.diverging.setdefault((venue, symbol), Persisting(s.divergence_for_s))
            if not off(s.divergence_bps) and state.update(now, abs(bps) > s.divergence_bps):
                out.append(
                    Finding(
                        "divergence",
                        venue,
                        symbol,
                        bps,
                        s.divergence_bps,
                        f"{venue} {symbol}: mid {bps:+.1f} bps from the venues' median",
                    )
                )
        return out

    def _print(self, p: Print) -> list[Finding]:
        s = self.s
        if off(s.outside_book_bps):
            return []
        key = (p.venue, p.symbol)
        quote = self.last_quotes.get(key)
        if quote is None or abs(p.time_ms - quote.time_ms) > QUOTE_AGE_MS:
            return []  # (NaN times compare False: judged)
        bps = outside_book_bps(p.price, quote.bid, quote.ask)
        if bps <= s.outside_book_bps:
            return []
        return [
            Finding(
                "trade_outside_book",
                p.venue,
                p.symbol,
                bps,
                s.outside_book_bps,
                f"{p.venue} {p.symbol}: trade at {p.price:g} printed {bps:.0f} bps outside "
                f"the book ({quote.bid:g} / {quote.ask:g})",
            )
        ]

    def _quote(self, now: float, key: tuple[str, str], q: Quote) -> list[Finding]:
        s, out = self.s, list[Finding]()
        venue, symbol = key
        spread = spread_bps(q.bid, q.ask)
        if math.isnan(spread):
            return out
        crossed = self.crossed.setdefault(key, Persisting(s.crossed_for_s))
        if crossed.update(now, spread <= 0):
            word = "crossed" if spread < 0 else "locked"
            out.append(
                Finding(
                    "crossed_book",
                    venue,
                    symbol,
                    spread,
                    0,
                    f"{venue} {symbol}: book {word} (bid {q.bid:g} >= ask {q.ask:g})",
                )
            )
            return out  # a crossed quote says nothing about spread or mid
        if not off(s.spread_factor):
            ratio = self.spreads.setdefault(
                key, SpreadBlowout(s.window, s.min_samples, s.spread_factor, s.spread_min_bps)
            ).update(spread)
            wide = self.wide.setdefault(key, Persisting(s.spread_for_s))
            if wide.update(now, ratio is not None) and ratio is not None:
                out.append(
                    Finding(
                        "spread_blowout",
                        venue,
                        symbol,
                        ratio,
                        s.spread_factor,
                        f"{venue} {symbol}: spread {spread:.1f} bps, {ratio:.1f}x its rolling "
                        "median",
                    )
                )
        if not off(s.jump_z):
            jump = self.jumps.setdefault(
                key, PriceJump(s.window, s.min_samples, s.jump_z, s.jump_min_bps)
            ).update((q.bid + q.ask) / 2)
            if jump is not None:
                r, z = jump
                out.append(
                    Finding(
                        "price_jump",
                        venue,
                        symbol,
                        z,
                        s.jump_z,
                        f"{venue} {symbol}: mid moved {r:+.1f} bps in {s.interval_s:g} s "
                        f"({z:+.1f} robust sigmas)",
                    )
                )
        return out


def _increase(
    history: dict[str, deque[tuple[float, int]]], key: str, now: float, total: int, window: float
) -> int:
    """How much a running total grew within the last ``window`` seconds."""
    seen = history.setdefault(key, deque())
    seen.append((now, total))
    while len(seen) > 1 and now - seen[1][0] >= window:
        seen.popleft()
    return max(0, total - seen[0][1])


# A bus that takes records: a publisher whose publishes are acknowledged, a reader not stale
BUS_WORKING = ("up", "caught up", "catching up")


def bus_working(bus: Mapping[str, Any]) -> bool:
    """Whether ``summary()["bus"]`` says the bus takes records (its ``state``; a connection
    alone is not enough: a cluster electing a stream leader is connected and takes nothing)."""
    state = bus.get("state")
    return state in BUS_WORKING if state is not None else bool(bus.get("connected"))
