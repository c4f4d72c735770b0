"""What a Lab is asked to collect, checked against the venue when it is given: symbols,
channels and intervals the venue has, and its URLs from argument, environment or default."""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from marketlab.lab.failover import FALLBACK_CHANNELS
from marketlab.records import Interval, is_perpetual, normalize_symbol
from marketlab.rings import TRADE_BLOCK
from marketlab.settings import CHANNELS, STORE_KINDS, one_of, rest_url
from marketlab.stream.config import FeedConfig
from marketlab.venues import registry


class LabWatch(Protocol):
    """What a Lab runs beside its collector when given ``alerts=`` (``marketlab.watch.Watch``):
    attached when the Lab starts and detached when it stops; the Lab's :meth:`alerts` and
    :meth:`on_alert` are its."""

    def attach(self, lab: Any) -> None: ...

    def detach(self) -> None: ...

    def frame(self) -> Any: ...  # a pandas DataFrame of active and recent alerts

    def on_alert(self, callback: Callable[[Mapping[str, Any]], Any]) -> Callable[[], None]: ...


def check_symbols(symbols: str | Sequence[str]) -> list[str]:
    """Canonical names, each once, or ``ValueError`` naming the bad one."""
    if isinstance(symbols, str):
        symbols = [symbols]
    out = []
    for s in symbols:
        try:
            out.append(normalize_symbol(s))
        except ValueError as exc:
            raise ValueError(f"symbols: {exc}") from None
    if not out:
        raise ValueError("symbols: a Lab needs at least one symbol, e.g. ['BTCUSDT']")
    return list(dict.fromkeys(out))


def parse_shard(shard: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"i/n"`` or ``(i, n)``: this collector's share is shard ``i`` of ``n`` (0 <= i < n)."""
    if shard is None:
        return None
    try:
        i, n = (
            (int(x) for x in shard.split("/"))
            if isinstance(shard, str)
            else (int(shard[0]), int(shard[1]))
        )
    except (ValueError, TypeError, IndexError):
        raise ValueError(
            f"shard={shard!r}: expected 'i/n' such as '0/4' (or a pair (i, n))"
        ) from None
    if not 0 <= i < n:
        raise ValueError(f"shard={shard!r}: expected 0 <= i < n, such as '0/4'")
    return i, n


def in_shard(symbol: str, shard: tuple[int, int]) -> bool:
    """Stable on every host and restart: the symbol's CRC-32 modulo the shard count."""
    return zlib.crc32(symbol.encode()) % shard[1] == shard[0]


def universe(
    symbols: str | Sequence[str],
    quote: str | None,
    shard: str | tuple[int, int] | None,
    exchange: str,
    rest_url: str,
) -> list[str]:
    """The symbols a Lab collects: the list given, or ``"all"`` of the venue's spot symbols
    quoted in ``quote`` (asked of the venue now), then this shard's share of them."""
    part = parse_shard(shard)
    if isinstance(symbols, str) and symbols.lower() == "all":
        if not quote or not isinstance(quote, str):
            raise ValueError("symbols='all' needs quote=, such as quote='USDT'")
        from marketlab.stream.blocking import run_coroutine

        async def listed() -> list[str]:
            rest = registry.get(exchange).rest_client(rest_url)
            try:
                return await rest.spot_symbols(quote.upper())
            finally:
                await rest.close()

        chosen = sorted(run_coroutine(listed()))
        if not chosen:
            raise ValueError(
                f"symbols='all': {exchange} lists no spot symbol quoted in {quote.upper()}"
            )
    else:
        if quote is not None:
            raise ValueError("quote= goes with symbols='all'; a list of symbols names its own")
        chosen = check_symbols(symbols)
    if part is not None:
        chosen = [s for s in chosen if in_shard(s, part)]
        if not chosen:
            raise ValueError(
                f"shard {part[0]}/{part[1]} of these symbols is empty: use fewer shards"
            )
    return chosen


def check_perpetuals(
    chosen: Mapping[str, Sequence[str]],
    fallbacks: Mapping[str, str],
    recording: bool,
) -> None:
    """Perpetuals (``BTCUSDT-PERP``) only where they are collected: a venue with a perpetual
    feed, no fallback venue and no recording (``ValueError`` saying which)."""
    for venue, symbols in chosen.items():
        perps = [s for s in symbols if is_perpetual(s)]
        if not perps:
            continue
        info = registry.get(venue)
        if info.perp_feed is None:
            having = [n for n in registry.names() if registry.get(n).perp_feed is not None]
            raise ValueError(
                f"symbols: perpetuals are not collected from {info.title} yet "
                f"({', '.join(perps)}); they are from {', '.join(having)}"
            )
        if venue in fallbacks:
            raise ValueError(
                f"fallback: a venue collected with its perpetuals ({info.title}: "
                f"{', '.join(perps)}) has no fallback venue"
            )
        if recording:
            raise ValueError("record=: perpetuals' connections are not recorded yet")


def check_store(
    store: str | Sequence[str], db: object, channels: Sequence[str] = CHANNELS
) -> tuple[str, ...]:
    """What the Lab keeps besides frames (``klines`` in SQLite; ``trades``, ``book`` snapshots
    and ``book_deltas`` as Parquet ticks), each with the channel that brings it."""
    kinds = (store,) if isinstance(store, str) else tuple(store)
    unknown = [k for k in kinds if k not in STORE_KINDS]
    if unknown or not kinds:
        raise ValueError(f"store={store!r}: expected some of {', '.join(STORE_KINDS)}")
    if db is None and kinds != ("klines",):
        raise ValueError(f"store={store!r} keeps data on disk: give db='data/marketlab.sqlite' too")
    for kind, channel in (("book", "book"), ("book_deltas", "book"), ("trades", "trades")):
        if kind in kinds and channel not in channels:
            raise ValueError(
                f"store=... '{kind}' keeps what the '{channel}' channel brings: add it to channels"
            )
    return kinds


def check_channels(channels: str | Sequence[str], exchange: str) -> tuple[str, ...]:
    """Channel names the venue serves, each once, or ``ValueError`` naming what it lacks."""
    if isinstance(channels, str):
        channels = [channels]
    unknown = [c for c in channels if c not in CHANNELS]
    if unknown:
        raise ValueError(
            f"channels: unknown {', '.join(map(repr, unknown))}: use some of {', '.join(CHANNELS)}"
        )
    venue = registry.get(exchange)
    missing = [c for c in channels if c not in venue.channels]
    if missing:
        raise ValueError(
            f"channels: {venue.title} has no {', '.join(missing)} channel: use some of "
            f"{', '.join(venue.channels)}"
        )
    return tuple(dict.fromkeys(channels))


def check_intervals(intervals: str | Sequence[str], exchange: str, needed: bool) -> list[Interval]:
    """Kline intervals the venue has (OKX lacks 1s, 8h and 3d), or ``ValueError``."""
    if isinstance(intervals, str):
        intervals = [intervals]
    venue = registry.get(exchange)
    try:
        out = [Interval(iv) for iv in dict.fromkeys(intervals)]
        for iv in out:
            venue.check_interval(iv)
    except ValueError as exc:
        raise ValueError(f"intervals: {exc}") from None
    if needed and not out:
        raise ValueError("intervals: the klines channel needs at least one interval, e.g. ['1m']")
    return out


def venue_url(name: str, given: str | None) -> str:
    """``<venue>_ws_url`` or ``<venue>_rest_url`` from the argument, else its environment
    variable (``MARKETLAB_<VENUE>_WS_URL``), else the venue's public default; unchecked."""
    venue_name, _, kind = name.partition("_")
    venue = registry.get(venue_name)
    if kind == "ws_url":
        return given or os.environ.get(venue.ws_env) or venue.ws_url
    if kind == "rest_url":
        return given or os.environ.get(venue.rest_env) or venue.rest_url
    if kind == "perp_ws_url":
        return given or os.environ.get(venue.perp_ws_env) or venue.perp_ws_url
    if kind == "perp_rest_url":
        return given or os.environ.get(venue.perp_rest_env) or venue.perp_rest_url
    raise ValueError(
        f"unknown venue setting {name!r}: expected <venue>_ws_url or <venue>_rest_url "
        "(or <venue>_perp_ws_url / <venue>_perp_rest_url for its perpetuals)"
    )


def venue_urls(given: dict[str, str | None], in_use: Sequence[str]) -> dict[str, str]:
    """Every registered venue's two URLs; those of the venues ``in_use`` checked (a wrong
    scheme or path refused now, not in the collector thread)."""
    urls = {}
    for name in registry.names():
        venue = registry.get(name)
        ws = venue_url(f"{name}_ws_url", given.get(f"{name}_ws_url"))
        rest = venue_url(f"{name}_rest_url", given.get(f"{name}_rest_url"))
        if name in in_use:
            ws, rest = venue.check_ws_url(ws), venue.check_rest_url(rest)
        urls[f"{name}_ws_url"], urls[f"{name}_rest_url"] = ws, rest
        if venue.perp_feed is not None and venue.check_perp_ws_url is not None:
            ws = venue_url(f"{name}_perp_ws_url", given.get(f"{name}_perp_ws_url"))
            rest = venue_url(f"{name}_perp_rest_url", given.get(f"{name}_perp_rest_url"))
            if name in in_use:
                ws = venue.check_perp_ws_url(ws)
                rest = rest_url(rest, f"{name}_perp_rest_url")
            urls[f"{name}_perp_ws_url"], urls[f"{name}_perp_rest_url"] = ws, rest
    return urls


def plan_venues(
    symbols: str | Sequence[str] | Mapping[str, str | Sequence[str]],
    exchange: str | None,
    exchanges: Sequence[str] | None,
    fallback: str | Mapping[str, str] | None,
) -> tuple[list[str], dict[str, str | Sequence[str]], dict[str, str]]:
    """The venues a Lab collects (the first is the readers' default), what each is asked for,
    and each one's fallback venue, checked against the registry.

    ``symbols`` is one list for every venue, or a mapping venue → its own list (its keys are
    the venues unless ``exchanges`` names them); ``fallback`` a venue for the first (as a
    one-venue Lab has always taken it) or a mapping venue → fallback."""
    names = registry.names()
    if exchanges is not None:
        if isinstance(exchanges, str):
            exchanges = [e.strip() for e in exchanges.split(",") if e.strip()]
        venues = [one_of("exchanges", e, names) for e in dict.fromkeys(exchanges)]
        if not venues:
            raise ValueError("exchanges: name at least one venue, e.g. ['binance', 'okx']")
        if exchange is not None and exchange != venues[0]:
            raise ValueError(
                f"exchange={exchange!r} with exchanges={venues}: exchange= names one venue, "
                "exchanges= several (the first is the default for readers); give one of them"
            )
    elif isinstance(symbols, Mapping):
        venues = [one_of("symbols", e, names) for e in symbols]
        if exchange is not None and exchange != venues[0]:
            raise ValueError(
                f"exchange={exchange!r}: symbols= names the venues ({', '.join(venues)}); "
                "leave exchange= out or list it first"
            )
    else:
        venues = [one_of("exchange", exchange or "binance", names)]
    if isinstance(symbols, Mapping):
        missing = [v for v in venues if v not in symbols]
        extra = [v for v in symbols if v not in venues]
        if missing or extra:
            raise ValueError(
                f"symbols: give every venue of exchanges= its symbols "
                f"(missing: {', '.join(missing) or '-'}; not collected: {', '.join(extra) or '-'})"
            )
        wanted: dict[str, str | Sequence[str]] = {v: symbols[v] for v in venues}
    else:
        wanted = dict.fromkeys(venues, symbols)
    if fallback is None:
        fallbacks: dict[str, str] = {}
    elif isinstance(fallback, str):
        fallbacks = {venues[0]: fallback}
    else:
        fallbacks = dict(fallback)
    for venue, stand_in in fallbacks.items():
        if venue not in venues:
            raise ValueError(f"fallback: {venue!r} is not collected (venues: {', '.join(venues)})")
        one_of("fallback", stand_in, [e for e in names if e != venue])
    return venues, wanted, fallbacks


def feed_configs(
    venues: Sequence[str],
    fallbacks: Mapping[str, str],
    channels: Sequence[str],
    intervals: Sequence[Interval],
    given: dict[str, str | None],
    options: dict[str, Any],
) -> tuple[dict[str, str], dict[str, FeedConfig], dict[str, FeedConfig], dict[str, FeedConfig]]:
    """Every venue's URLs, each collected venue's feed settings, each fallback's (keyed by
    the venue it stands in for) and those of each collected venue's perpetuals where it has
    them (checked: a setting the feed does not have, or a fallback lacking a channel or
    interval, is refused)."""
    options = dict(options)
    taken = set(registry.url_names())
    for name in [k for k in options if k in taken]:  # a venue without a keyword of its own
        given = {**given, name: options.pop(name)}
    urls = venue_urls(given, [*venues, *fallbacks.values()])
    unknown = set(options) - set(FeedConfig.__dataclass_fields__) - {"ws_url", "rest_url"}
    if unknown:
        hint = ""
        if any(k.endswith("_url") for k in unknown):
            hint = f" (the venue URLs taken: {', '.join(sorted(taken))})"
        raise TypeError(f"unknown Lab option(s): {', '.join(sorted(unknown))}{hint}")
    options = {k: v for k, v in options.items() if k not in ("ws_url", "rest_url")}

    def config(venue: str, market: str = "") -> FeedConfig:
        return FeedConfig(
            ws_url=urls[f"{venue}_{market}ws_url"],
            rest_url=urls[f"{venue}_{market}rest_url"],
            **options,
        )

    stand_in = tuple(c for c in channels if c in FALLBACK_CHANNELS)
    for fallback in fallbacks.values():
        try:
            check_channels(stand_in, fallback)
            check_intervals(intervals, fallback, needed="klines" in stand_in)
        except ValueError as exc:
            raise ValueError(f"fallback {fallback}: {exc}") from None
    return (
        urls,
        {v: config(v) for v in venues},
        {v: config(fallback) for v, fallback in fallbacks.items()},
        {v: config(v, "perp_") for v in venues if f"{v}_perp_ws_url" in urls},
    )


# Bytes one row or level takes where the Lab keeps it (the columns of the rolling buffers; a
# book level in its dict and heap), for sizing buffers within a memory budget.
TRADE_ROW_BYTES = 40
KLINE_ROW_BYTES = 96
BOOK_LEVEL_BYTES = 120
MIN_TRADES = 1_000  # a symbol's rolling trades can be no shorter than this
_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
}


def parse_bytes(value: str | int) -> int:
    """``"2GB"``, ``"512MiB"``, ``2_000_000_000``: a size in bytes."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    text = str(value).strip().upper().replace(" ", "")
    number = text.rstrip("KMGIB")
    unit = text[len(number) :]
    try:
        size = float(number) * _UNITS[unit]
    except (ValueError, KeyError):
        raise ValueError(
            f"memory_limit={value!r}: expected a size such as '2GB' or '512MiB'"
        ) from None
    if size <= 0:
        raise ValueError(f"memory_limit={value!r} must be positive")
    return int(size)


def buffer_sizes(
    memory_limit: str | int | None,
    symbols: Sequence[str],
    intervals: Sequence[str],
    channels: Sequence[str],
    book_levels: int,
    trade_capacity: int,
    kline_capacity: int,
) -> tuple[int, int]:
    """Rolling trades and candles per series within ``memory_limit`` for what the Lab holds
    (books first, then candles, the rest to trades; the interpreter and libraries not counted),
    instead of the defaults for each of hundreds of symbols. Unchanged without a limit."""
    if memory_limit is None:
        return trade_capacity, kline_capacity
    budget = parse_bytes(memory_limit)
    n = max(1, len(symbols))
    books = n * 2 * book_levels * BOOK_LEVEL_BYTES if "book" in channels else 0
    series = n * len(intervals) if "klines" in channels else 0
    if series:  # candles take at most half of what the books leave
        kline_capacity = max(
            100, min(kline_capacity, (budget - books) // 2 // (series * KLINE_ROW_BYTES))
        )
    left = budget - books - series * kline_capacity * KLINE_ROW_BYTES
    # (a ring also gathers a block of trades before they go into its columns)
    trades = left // (n * TRADE_ROW_BYTES) - TRADE_BLOCK if "trades" in channels else trade_capacity
    if trades < MIN_TRADES:
        need = (
            books
            + series * kline_capacity * KLINE_ROW_BYTES
            + n * (MIN_TRADES + TRADE_BLOCK) * TRADE_ROW_BYTES
        )
        raise ValueError(
            f"memory_limit={memory_limit!r} is too small for {n} symbol(s) (books, candles and "
            f"{MIN_TRADES} trades each need about {need / 1e6:.0f} MB)"
        )
    return int(min(trades, 10_000_000)), int(kline_capacity)
