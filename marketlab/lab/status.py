"""A feed's state as the Lab reports it: one row per symbol and stream, and the connection-wide
figures (what ``lab.status()`` and ``lab.summary()`` show, and the API's ``/status``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from marketlab.stream.feed import Feed

if TYPE_CHECKING:
    import pandas as pd

    from marketlab.bus.publisher import Publisher
    from marketlab.lab.failover import Failover
    from marketlab.rings import TradeBuffer
    from marketlab.store.ticks import TickWriter
    from marketlab.store.writer import KlineStore

COLUMNS = [
    "symbol",
    "stream",
    "connected",
    "source",
    "messages",
    "age_s",
    "reconnects",
    "book",
    "verified",
    "backfilled",
    "gaps",
]


def status_frame(feed: Feed | None) -> pd.DataFrame:
    """:func:`status_rows` as the frame ``lab.status()`` shows, indexed by symbol and stream."""
    import pandas as pd  # when a frame is asked for (a collector's status line reads rows)

    return pd.DataFrame(status_rows(feed), columns=COLUMNS).set_index(["symbol", "stream"])


def status_rows(feed: Feed | None) -> list[dict[str, Any]]:
    """One dict per symbol and stream (:data:`COLUMNS`) of what ``feed`` takes in."""
    now = time.time()
    rows = []
    if feed is not None:
        connected, reconnects = feed.connected, feed.reconnects
        for (symbol, stream), st in sorted(feed.stream_stats.items()):
            row = {
                "symbol": symbol,
                "stream": stream,
                "connected": connected,
                "source": st.source if feed.polling or st.source == "ws" else "ws",
                "messages": st.messages,
                "age_s": now - st.last_received if st.last_received else float("nan"),
                "reconnects": reconnects,
                "book": "",
                "verified": "",
                "backfilled": 0,
                "gaps": 0,
            }
            if stream == "depth":
                row["book"], row["verified"] = feed.book_state(symbol), feed.book_check(symbol)
            if stream.startswith("kline_"):
                ks = feed.kline_stats.get((symbol, stream[6:]))
                if ks is not None:
                    row["backfilled"], row["gaps"] = ks.backfilled, ks.gaps_detected
            if stream == "trade":
                ts = feed.trade_stats.get(symbol)
                if ts is not None:
                    row["backfilled"], row["gaps"] = ts.backfilled, ts.gaps
            rows.append(row)
    return rows


MANY_BOOKS = 20  # more books than this: waiting for them shows a progress bar


class SyncProgress:
    """Books synced (and deepened) as a progress bar while a Lab with many books gets ready;
    called in the wait loop with the Lab's feeds (one per venue), always True (the loop's own
    conditions decide)."""

    def __init__(self, feeds: Sequence[Feed | None]):
        books = sum(len(feed.books) for feed in feeds if feed is not None)
        self.bar: Any = None  # a tqdm bar
        if books > MANY_BOOKS:  # tqdm loads only then: a collector of a few books never needs it
            from tqdm.auto import tqdm

            self.bar = tqdm(total=books, desc="books synced", unit="book")

    def __call__(self, feeds: Sequence[Feed | None]) -> bool:
        bar = self.bar
        if bar is not None:
            synced = deep = 0
            for feed in feeds:
                if feed is None:
                    continue
                synced += sum(1 for s in feed.books if feed.book_state(s) == "synced")
                deep += feed.books_deep() if hasattr(feed, "books_deep") else 0
            bar.n = synced
            if deep:
                bar.set_postfix_str(f"{deep} deep", refresh=False)
            bar.refresh()
            if synced == bar.total:
                bar.close()
                self.bar = None
        return True


@dataclass(frozen=True)
class SummaryParts:
    """What :func:`lab_summary` reads of a Lab, handed over by ``Lab.summary()`` (the only
    user): the Lab's settings and the parts it runs, so the summary needs no way into the Lab."""

    running: bool
    exchange: str
    fallback: str | None  # the fallback venue's name, if the Lab has one
    failovers: int
    db: Path | None
    feed: Feed | None  # None until the Lab starts
    failover: Failover | None
    error: BaseException | None  # what stopped collection
    store: KlineStore | None
    ticks: TickWriter | None
    publisher: Publisher | None
    from_bus: bool  # the feed reads the bus: its bus status is the reader's
    trades: Mapping[str, TradeBuffer]


def lab_summary(lab: SummaryParts) -> dict[str, Any]:
    """What ``Lab.summary()`` shows (see there)."""
    feed = lab.feed
    if feed is None:
        return {"running": False, "source": None}
    failover = lab.failover
    fallback = failover.feed if failover is not None else None
    error, store, ticks = lab.error, lab.store, lab.ticks
    bus = lab.publisher.status() if lab.publisher is not None else None
    if lab.from_bus:
        bus = feed.bus_status()  # type: ignore[attr-defined]  # a BusFeed, not typed as a Feed
    return {
        "running": lab.running,
        "exchange": lab.exchange,
        "source": f"{lab.fallback}:{fallback.source}" if fallback is not None else feed.source,
        "fallback": lab.fallback,
        "failed_over": fallback is not None,
        "failover_since": failover.since if failover is not None else None,
        "failovers": lab.failovers,
        **feed_summary(feed),
        "trades_missed": {s: b.missed for s, b in lab.trades.items()},
        "error": f"{type(error).__name__}: {error}" if error else None,
        "db": str(lab.db) if lab.db else None,
        "db_written": store.written if store else None,
        "db_errors": store.errors if store else None,
        "store": store.status() if store else None,
        "ticks_written": ticks.written if ticks else None,
        "ticks_errors": ticks.last_error if ticks else None,
        "bus": bus,
    }


def feed_summary(feed: Feed) -> dict[str, Any]:
    """Connections, reconnects, bad frames and REST use of one feed."""
    rest = feed.rest.governor.stats if feed.rest is not None else None
    return {
        "connections": [
            {
                "name": c.name,
                "connected": c.connected,
                "streams": len(c.streams),
                "messages": c.messages,
                "bytes_received": c.bytes_received,
                "reconnects": c.reconnects,
                "age_s": round(c.age(), 1),
                "last_error": c.last_error,
            }
            for c in feed.connections
        ],
        "reconnects": feed.reconnects,
        "bad_frames": feed.bad_frames,
        "frames_failed": getattr(feed, "frames_failed", 0),  # of bad_frames: taking raised
        "last_bad_frame": feed.last_bad_frame,
        "rest_requests": rest.requests if rest else 0,
        "rest_rate_limited": (rest.rate_limited + rest.banned) if rest else 0,
        "bytes_received": feed.bytes_received(),
        "rest_forbidden": rest.forbidden if rest else 0,
        "rest_weight": feed.rest.weight_usage() if feed.rest is not None else None,
        "book_resyncs": {s: lb.book.stats.resyncs for s, lb in feed.books.items()},
        "replayed": getattr(feed, "entries_replayed", None),
        "books_deep": feed.books_deep() if hasattr(feed, "books_deep") else None,
        "trades_backfilled": {s: t.backfilled for s, t in feed.trade_stats.items()},
        "trade_holes": {s: list(t.holes) for s, t in feed.trade_stats.items() if t.holes},
        # venues whose trade ids skip (Bybit): interruptions across which trades are unchecked
        "trades_unverifiable": dict(feed.trades_unverifiable),
    }


def not_ready(
    feed: Feed | None, channels: Sequence[str], without_ticker: Callable[[], list[str]], books: bool
) -> str:
    """What a Lab still waits for before it is ready ("" once it is)."""
    if feed is None:
        return "not started"
    missing = []
    if not feed.symbols_confirmed.is_set():
        missing.append("symbols not yet confirmed by the venue")
    if "klines" in channels and not feed.ready.is_set():
        missing.append("klines not seeded")
    if "ticker" in channels and (absent := without_ticker()):
        missing.append(f"no price yet for {', '.join(absent)}")
    if books and feed.books:
        unsynced = [s for s in feed.books if feed.book_state(s) != "synced"]
        if unsynced:
            missing.append(f"books not synced: {', '.join(unsynced)}")
    return "; ".join(missing)
