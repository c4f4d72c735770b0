"""A Lab's side of the bus: publishing what it collects (``Lab(publish=...)``) and reading
from the bus instead of a venue (``Lab.from_bus``).

The Lab hands these functions the parts they work on (its feed, its state, its failover);
nothing here reaches into the Lab itself."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from marketlab.bus import encoding as enc
from marketlab.bus.config import BusConfig, BusRefused, bus_config, close_quietly, connect
from marketlab.bus.publisher import Publisher
from marketlab.bus.reader import BusFeed, BusSource
from marketlab.stream.blocking import run_coroutine

if TYPE_CHECKING:
    from marketlab.lab.failover import Failover
    from marketlab.lab.market_state import MarketState
    from marketlab.stream.feed import Feed

log = logging.getLogger("marketlab.bus")

STOP_PUBLISHING = 5.0  # seconds a stopping collector gives the bus (within collect's 8 s to exit)
RESUME_WAIT = 3.0  # seconds a starting collector waits for the bus to say where it left off
# keyword arguments of Lab.from_bus that are the bus's (BusConfig's fields: token=, ca=, …)
BUS_OPTIONS = frozenset(f.name for f in dataclasses.fields(BusConfig)) - {"url"}
_SYMBOL = re.compile(r"[A-Za-z0-9_-]{1,64}")  # a subject's symbol token that can be one


def make_publisher(bus: str | BusConfig | None, exchange: str) -> Publisher | None:
    return None if bus is None else Publisher(bus_config(bus), exchange)


def feed_class(source: BusSource, exchange: str) -> Any:
    return functools.partial(BusFeed, source=source, exchange=exchange)


async def start_publishing(
    publisher: Publisher,
    feed: Feed,
    state: MarketState,
    failover: Failover | None,
    symbols: Sequence[str],
    resume: bool,
) -> asyncio.Task[None]:
    """The publisher's task, publishing what ``feed`` brings into ``state`` (``failover``'s
    records kept off the bus). With ``resume`` (a collector that is not a replay) it first
    learns where its records on the bus end, so what it missed while down is fetched (trades
    by id, candles) and published."""
    attach(publisher, state, failover)
    feed.book_tap = publisher.on_book
    task = asyncio.create_task(publisher.run())
    task.add_done_callback(lambda _: _refused(feed, publisher))
    if resume:
        for _ in range(int(RESUME_WAIT / 0.05)):
            if publisher.ready or publisher.refused:
                break
            await asyncio.sleep(0.05)
        if publisher.refused:
            return task
        try:
            trades, klines = await asyncio.wait_for(
                publisher.last_published(), RESUME_WAIT + len(symbols) / 50
            )
        except Exception as exc:  # the bus is away: collect now, the bus gets it when back
            log.warning("bus: where the last run ended is unknown (%s); starting afresh", exc)
        else:
            feed.resume_trades({s: i for s, i in trades.items() if s in symbols})
            feed.resume_klines(klines)
    return task


def _refused(feed: Feed, publisher: Publisher) -> None:
    """A collector the bus refuses (its credentials, its TLS) stops, saying why: what it was
    asked to publish would otherwise be held, then dropped, unseen."""
    fail = getattr(feed, "fail", None)
    if publisher.refused and fail is not None:
        fail(publisher.refused)


async def stop_publishing(publisher: Any, task: asyncio.Task[None]) -> None:
    """Publish what is held (within the Lab's stop timeout), then let the bus go."""
    await publisher.close(STOP_PUBLISHING)
    task.cancel()


def attach(publisher: Publisher, state: MarketState, failover: Failover | None) -> None:
    """Every record a Lab takes in from its exchange (into ``state``) to ``publisher``; the
    fallback venue's (through ``failover``) are not this exchange's: they are kept off the bus."""
    if publisher.on_record in state.callbacks:
        return  # a Lab started again: attached already
    state.callbacks.append(publisher.on_record)
    if failover is not None:
        failover.deliver = _muted(publisher, failover.deliver)


def _muted(publisher: Publisher, deliver: Any) -> Any:
    def deliver_unpublished(record: Any, source: str) -> None:
        publisher.muted = True
        try:
            deliver(record, source)
        finally:
            publisher.muted = False

    return deliver_unpublished


def bus_symbols(bus: str | BusConfig, exchange: str, timeout: float = 10.0) -> list[str]:
    """Every symbol of ``exchange`` with records on the bus (works inside Jupyter's loop too)."""
    config = bus_config(bus)

    async def ask() -> list[str]:
        nc = await connect(config, "marketlab-symbols")
        try:
            info = await nc.jetstream().stream_info(
                config.stream, subjects_filter=enc.subjects(exchange)
            )
            return sorted(_symbols(info.state.subjects or {}))
        finally:
            await close_quietly(nc)

    try:
        found = run_coroutine(asyncio.wait_for(ask(), timeout))
    except BusRefused:
        raise
    except Exception as exc:
        raise ConnectionError(
            f"bus {config.display_url}: cannot list symbols: {type(exc).__name__}: {exc}"
        ) from exc
    if not found:
        raise ValueError(
            f"bus {config.display_url}: no {exchange} symbols in stream {config.stream}"
        )
    return found


def _symbols(subjects: Any) -> set[str]:
    """The symbols of our subjects (any other subject, or a token no symbol has, left out)."""
    found = set()
    for name in subjects:
        try:
            symbol = enc.parse_subject(name)[2]
        except enc.BusFormatError:
            continue
        if _SYMBOL.fullmatch(symbol):
            found.add(symbol)
    return found


def bus_source(
    bus: str | BusConfig,
    symbols: Sequence[str] | Mapping[str, Sequence[str]] | None,
    exchanges: Sequence[str],
    since: float | str | None,
    durable: str | None,
    options: dict[str, Any],
) -> tuple[dict[str, Sequence[str]], BusSource]:
    """What ``Lab.from_bus`` reads: each venue's symbols (every one of that venue on the bus
    when None; one list for every venue, or a mapping venue → list) and the source its feeds
    read them from. Takes the bus's own keyword arguments (``token=``, ``ca=``, …) out of
    ``options``; the rest are the Lab's."""
    config = bus_config(bus, **{k: options.pop(k) for k in list(options) if k in BUS_OPTIONS})
    wanted: dict[str, Sequence[str]] = {}
    for exchange in exchanges:
        if symbols is None:
            wanted[exchange] = bus_symbols(config, exchange)
        elif isinstance(symbols, Mapping):
            wanted[exchange] = symbols[exchange]
        else:
            wanted[exchange] = symbols
    return wanted, BusSource(config, since, durable)


def venue_source(source: BusSource, exchange: str, several: bool) -> BusSource:
    """The source one venue's feed reads: with several venues, each remembers its own place
    (a durable consumer of its own, named after the venue)."""
    if not several or source.durable is None:
        return source
    return dataclasses.replace(source, durable=f"{source.durable}-{exchange}")
