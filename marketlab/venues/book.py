"""A local order book kept from a REST snapshot plus a diff stream, sans-I/O.

Follows Binance's documented procedure: buffer the stream, take a snapshot, drop buffered
events already in it, demand that the first applied event bridges the snapshot, and call for a
resync on any gap. It never guesses: when it cannot prove it equals the exchange's book at its
update id, it says so (``synced`` is False) and asks for a new snapshot.
"""

from __future__ import annotations

import enum
import heapq
import math
import operator
from collections import deque
from dataclasses import dataclass
from typing import Any

from marketlab.native import compiled
from marketlab.records import BookDelta, BookSnapshot, Level


class BookState(enum.Enum):
    BUFFERING = "buffering"  # waiting for a snapshot, keeping stream events
    SYNCED = "synced"  # equals the exchange's book at last_update_id


class Action(enum.Enum):
    """What the owner of the book must do next."""

    NONE = "none"
    FETCH_SNAPSHOT = "fetch_snapshot"
    RESUBSCRIBE = "resubscribe"  # OKX: the stream's own snapshot comes with a new subscription


@dataclass(slots=True)
class BookStats:
    resyncs: int = 0
    gaps: int = 0
    crossed: int = 0
    stale_snapshots: int = 0
    applied: int = 0
    ignored: int = 0
    heartbeats: int = 0  # OKX: "nothing changed" pushes (empty sides, seqId == prevSeqId)
    seq_resets: int = 0  # OKX: the venue restarted its seqId (maintenance)


# How a synced book is known to equal the venue's (``lab.book().attrs["verified"]``).
UPDATE_ID_CHAIN = "update id chain"
REST_SNAPSHOT = "REST snapshot"
SEQ_CHAIN = "seqId chain"
SEQ_CHAIN_AND_CHECKSUM = "seqId chain + checksum"


_ABSENT = object()


def _priced(levels: list[Level]) -> list[tuple[float, float]]:
    """``levels`` as (price, qty) floats, every one converted before any is applied (as the
    compiled side does): a row that is no pair, a value that is no number, or a NaN price (NaN
    equals no key, so it would stay in the book for good) is refused and nothing changes."""
    out = []
    for i, level in enumerate(levels):
        try:
            price, qty = level
        except (TypeError, ValueError):
            raise TypeError(f"level {i} is not a (price, qty) pair") from None
        if type(price) is not float or type(qty) is not float:
            price, qty = _as_float(price, i), _as_float(qty, i)
        if price != price:
            raise ValueError(f"level {i} has no price (NaN)")
        out.append((price, qty))
    return out


def _as_float(value: Any, i: int) -> float:
    """A number as the compiled side takes one (``__float__`` or ``__index__``; text is not)."""
    if isinstance(value, str | bytes | bytearray):
        raise TypeError(f"level {i}: {type(value).__name__} is not a number")
    return float(value)


class BookSide:
    """One side's levels by key (ask price, or minus the bid price: smaller is better).

    Quantities live in a dict and the order in a heap with lazy deletion, so a level coming or
    going costs a dict operation and at most a heap push — far less than keeping a sorted
    list, when books churn at every update — and the best level is the heap's top. ``known``
    counts the levels at or inside ``bound`` (the range a cut snapshot vouches for).
    """

    __slots__ = ("bound", "heap", "known", "levels")

    def __init__(self) -> None:
        self.levels: dict[float, float] = {}
        self.heap: list[float] = []
        self.bound = math.inf
        self.known = 0

    def __len__(self) -> int:
        return len(self.levels)

    def __bool__(self) -> bool:
        return bool(self.levels)

    def __contains__(self, key: float) -> bool:
        return key in self.levels

    def __setitem__(self, key: float, qty: float) -> None:
        levels = self.levels
        if key not in levels:
            heap = self.heap
            heapq.heappush(heap, key)
            if len(heap) > 2 * len(levels) + 64:  # mostly keys long gone: rebuild
                self.heap = heap = [*levels, key]
                heapq.heapify(heap)
            if key <= self.bound:
                self.known += 1
        levels[key] = qty

    def pop(self, key: float, default: Any = None) -> Any:
        qty = self.levels.pop(key, _ABSENT)
        if qty is _ABSENT:
            return default
        if key <= self.bound:
            self.known -= 1
        return qty

    def clear(self) -> None:
        self.levels.clear()
        self.heap.clear()
        self.bound, self.known = math.inf, 0

    def set_bound(self, bound: float) -> None:
        self.bound = bound
        self.known = sum(1 for k in self.levels if k <= bound)

    def peekitem(self, index: int = 0) -> tuple[float, float]:
        """The best level (only ``index`` 0 is kept at hand)."""
        if index != 0:
            raise IndexError("only the best level is at hand")
        key = self.best()
        return key, self.levels[key]

    def first(self, n: int) -> list[tuple[float, float]]:
        """The ``n`` best levels, best first."""
        levels = self.levels
        return [(k, levels[k]) for k in heapq.nsmallest(n, levels)]

    def items(self) -> list[tuple[float, float]]:
        """Every level, best first."""
        return self.first(len(self.levels))

    def best(self) -> float:
        """The best key (IndexError when empty), dropping heap keys no longer in the book."""
        heap, levels = self.heap, self.levels
        while heap[0] not in levels:
            heapq.heappop(heap)
        return heap[0]

    def load(self, levels: list[Level], sign: float) -> None:
        """The side becomes ``levels`` (price, qty) keyed by ``sign * price`` (qty 0 skipped)."""
        levels = _priced(levels)
        self.clear()
        for price, qty in levels:
            if qty:
                self[sign * price] = qty

    def apply(self, changes: list[Level], sign: float) -> None:
        """``changes`` (price, qty) keyed by ``sign * price``; qty 0 removes. (The hot path of
        every book: the bookkeeping of ``__setitem__`` and ``pop`` inlined.)"""
        changes = _priced(changes)
        levels, heap, bound = self.levels, self.heap, self.bound
        known = self.known
        push = heapq.heappush
        for price, qty in changes:
            key = sign * price
            if qty:
                if key not in levels:
                    push(heap, key)
                    if key <= bound:
                        known += 1
                levels[key] = qty
            elif levels.pop(key, None) is not None and key <= bound:
                known -= 1
        self.known = known
        if len(heap) > 2 * len(levels) + 64:  # mostly keys long gone: rebuild
            self.heap = heap = list(levels)
            heapq.heapify(heap)

    def trim(self, keep: int) -> list[float]:
        """Drop all but the ``keep`` best levels; returns the keys dropped."""
        kept = heapq.nsmallest(keep, self.levels)
        dropped = [k for k in self.levels if k > kept[-1]] if kept else list(self.levels)
        for k in dropped:
            self.pop(k)
        self.heap = kept  # sorted, so already a heap
        return dropped


# The compiled twin of BookSide (csrc/native.c: levels in a sorted array), when in use.
Side: type[BookSide] = compiled("Side", BookSide)

# What applying a delta found (apply_delta's answer)
SETTLED, BEYOND_RANGE, CROSSED = 0, 1, 2


def apply_delta_python(
    bids: BookSide,
    asks: BookSide,
    bid_changes: list[Level],
    ask_changes: list[Level],
    keep: int,
    min_known: int,
) -> int:
    """A book's delta on its two sides (bids keyed by minus the price), then what the book must
    check of itself: a side grown past ``keep`` and a tenth is cut to its ``keep`` best (levels
    no event touches would otherwise linger); :data:`BEYOND_RANGE` when a side bounded by a cut
    snapshot holds fewer than ``min_known`` known levels, else :data:`CROSSED` when the best bid
    reaches the best ask, else :data:`SETTLED`. Every level is converted before any is set.
    The twin of the compiled ``apply_delta`` (one call per delta, the hot path of every book)."""
    bid_changes, ask_changes = _priced(bid_changes), _priced(ask_changes)
    keep, min_known = max(0, operator.index(keep)), operator.index(min_known)
    if bid_changes:
        bids.apply(bid_changes, -1.0)
    if ask_changes:
        asks.apply(ask_changes, 1.0)
    slack = keep + keep // 10
    for side in (bids, asks):
        if len(side) > slack:
            side.trim(keep)
    if any(side.bound != math.inf and side.known < min_known for side in (bids, asks)):
        return BEYOND_RANGE
    if bids and asks and -bids.best() >= asks.best():
        return CROSSED
    return SETTLED


apply_delta = compiled("apply_delta", apply_delta_python)


class OrderBook:
    """One symbol's book. Feed it :class:`BookDelta` and :class:`BookSnapshot`; act on the
    returned :class:`Action`.

    ``max_levels`` bounds each side: a snapshot holds at most 5000 levels, and levels outside
    it that no event touches would otherwise linger forever.
    """

    def __init__(
        self,
        symbol: str,
        max_levels: int = 5000,
        max_buffer: int = 10_000,
        min_known_levels: int = 20,
        python_sides: bool = False,
    ):
        """``python_sides``: the book on the pure-Python twins of its compiled parts even where
        those are in use (to compare the two)."""
        if max_levels < 1:
            raise ValueError(f"max_levels must be at least 1, got {max_levels}")
        self.symbol = symbol
        self.max_levels = max_levels
        self.min_known_levels = min_known_levels
        self.max_buffer = max_buffer
        self.state = BookState.BUFFERING
        self.last_update_id = 0
        self.reason = "waiting for the first snapshot"
        self.stats = BookStats()
        sides = BookSide if python_sides else Side
        self._apply = apply_delta_python if python_sides else apply_delta
        self._bids = sides()  # key: -price (best first)
        self._asks = sides()  # key: price
        self._buffer: deque[BookDelta] = deque()
        # A snapshot cut at its limit says nothing of levels beyond its worst price: only the
        # range [bid_floor, ask_ceiling] is known to equal the exchange's book.
        self.bid_floor = -math.inf
        self.ask_ceiling = math.inf
        self._min_known = min_known_levels
        self._snapshot_requested = False
        self.event_time: int | None = None
        self.verified_by = UPDATE_ID_CHAIN

    @property
    def synced(self) -> bool:
        return self.state is BookState.SYNCED

    # --- input ---------------------------------------------------------------------------

    def on_delta(self, delta: BookDelta) -> Action:
        if self.state is BookState.BUFFERING:
            if len(self._buffer) >= self.max_buffer:
                self._buffer.popleft()  # too old to bridge any snapshot we will get
            self._buffer.append(delta)
            if not self._snapshot_requested:
                self._snapshot_requested = True
                return Action.FETCH_SNAPSHOT
            return Action.NONE
        last = delta.last_update_id
        if last <= self.last_update_id:
            self.stats.ignored += 1  # already in the book (e.g. a duplicate on rollover)
            return Action.NONE
        broken = self._break(delta, self.last_update_id)
        if broken is not None:
            self.stats.gaps += 1
            return self._resync(broken, delta)
        # the hot path of every book: one call applies the delta and checks the book
        found = self._apply(
            self._bids, self._asks, delta.bids, delta.asks, self.max_levels, self._min_known
        )
        self.last_update_id = last
        self.event_time = delta.event_time
        self.stats.applied += 1
        if found == SETTLED:
            return Action.NONE
        if found == BEYOND_RANGE:
            return self._resync(
                f"price moved beyond the snapshot's range after update {last}", None
            )
        self.stats.crossed += 1
        return self._resync(
            f"crossed book after update {last}: bid {self.best_bid()} >= ask {self.best_ask()}",
            None,
        )

    def on_snapshot(self, snapshot: BookSnapshot, limit: int | None = None) -> Action:
        """Apply a REST snapshot to the buffered events (steps 3-6 of the procedure).

        ``limit`` is the depth it was asked with (default ``max_levels``): a side that fills
        it may have more levels the snapshot did not show.
        """
        self._snapshot_requested = False
        if self.state is BookState.SYNCED:
            return Action.NONE  # a late answer to an old request: the book is already good
        lid = snapshot.last_update_id
        while self._buffer and self._buffer[0].last_update_id <= lid:
            self._buffer.popleft()
        if self._buffer and self._break(self._buffer[0], lid) is not None:
            # the snapshot is older than the stream we hold: events between are lost to us
            self.stats.stale_snapshots += 1
            self.reason = (
                f"snapshot {lid} older than buffered update {self._buffer[0].first_update_id}"
            )
            self._snapshot_requested = True
            return Action.FETCH_SNAPSHOT
        self._bids.load(snapshot.bids, -1.0)
        self._asks.load(snapshot.asks, 1.0)
        limit = self.max_levels if limit is None else limit
        self._min_known = min(self.min_known_levels, max(1, limit // 2))
        self.bid_floor = snapshot.bids[-1][0] if len(snapshot.bids) >= limit else -math.inf
        self.ask_ceiling = snapshot.asks[-1][0] if len(snapshot.asks) >= limit else math.inf
        self._bids.set_bound(-self.bid_floor)
        self._asks.set_bound(self.ask_ceiling)
        self.last_update_id = lid
        self.event_time = snapshot.event_time
        self.verified_by = UPDATE_ID_CHAIN
        self.state = BookState.SYNCED
        self.reason = ""
        buffered, self._buffer = self._buffer, deque()
        for delta in buffered:
            action = self.on_delta(delta)
            if self.state is not BookState.SYNCED:
                return action
        if self._crossed():
            self.stats.crossed += 1
            return self._resync(f"crossed snapshot {lid}", None)
        return Action.NONE

    def invalidate(self, reason: str) -> None:
        """Forget the book (the stream was interrupted): the next delta asks for a snapshot."""
        self._resync(reason, None)
        self._snapshot_requested = False

    def reset(self, snapshot: BookSnapshot, limit: int | None = None) -> None:
        """Take a snapshot as the whole truth (REST polling, no stream to bridge)."""
        self._resync("replaced by a snapshot", None)
        self.stats.resyncs -= 1
        self.on_snapshot(snapshot, limit)
        self.verified_by = REST_SNAPSHOT  # polled: no stream vouches for it between polls

    # --- internals -----------------------------------------------------------------------

    def _break(self, delta: BookDelta, at: int) -> str | None:
        """Why ``delta`` (newer than update ``at``) does not continue a book at ``at``, or None
        when it does. Spot's rule: update ids are consecutive, so the delta must start at or
        before ``at + 1`` (a venue whose ids jump chains its events another way, and says so
        by overriding this)."""
        if delta.first_update_id > at + 1:
            return f"gap: expected update {at + 1}, got {delta.first_update_id}"
        return None

    def _crossed(self) -> bool:
        bids, asks = self._bids, self._asks
        if not bids or not asks:
            return False
        return -bids.best() >= asks.best()

    def _resync(self, reason: str, first: BookDelta | None) -> Action:
        self.stats.resyncs += 1
        self.state = BookState.BUFFERING
        self.reason = reason
        self._bids.clear()
        self._asks.clear()
        self._buffer.clear()
        self.bid_floor, self.ask_ceiling = -math.inf, math.inf
        if first is not None:
            self._buffer.append(first)
        self._snapshot_requested = True
        return Action.FETCH_SNAPSHOT

    # --- output --------------------------------------------------------------------------

    def best_bid(self) -> Level | None:
        if not self._bids:
            return None
        key, qty = self._bids.peekitem(0)
        return (-key, qty)

    def best_ask(self) -> Level | None:
        return self._asks.peekitem(0) if self._asks else None

    def bids(self, depth: int | None = None) -> list[Level]:
        """Bid levels, best first (empty while not synced)."""
        if not self.synced:
            return []
        known = self._bids.known
        n = known if depth is None else min(depth, known)
        return [(-k, v) for k, v in self._bids.first(n)]

    def asks(self, depth: int | None = None) -> list[Level]:
        if not self.synced:
            return []
        known = self._asks.known
        n = known if depth is None else min(depth, known)
        return self._asks.first(n)

    def __len__(self) -> int:
        return len(self._bids) + len(self._asks)


class StreamBook(OrderBook):
    """A book whose stream brings its own snapshots (Bybit, Coinbase): any snapshot replaces
    the book whole, updates follow the venue's chain, and a book that loses the chain empties
    and asks for a new subscription (:attr:`Action.RESUBSCRIBE`: its snapshot is the only way
    back). A subclass checks its venue's chain and calls the steps here; ``chain`` names how a
    synced book is known to equal the venue's (``verified_by``), ``numbered`` what its
    updates are numbered by (for the reasons a book gives)."""

    chain = ""
    numbered = ""

    def __init__(self, symbol: str, max_levels: int):
        super().__init__(symbol, max_levels=max_levels)
        self.verified_by = self.chain
        self.snapshots = 0  # snapshots taken (the first, re-sent ones, restarts)

    def _replace(self, bids: list[Level], asks: list[Level], update_id: int, time: int) -> Action:
        """A snapshot: the whole book, at ``update_id`` (how the venue numbers it)."""
        self._resync("replaced by a snapshot", None)
        self.stats.resyncs -= 1  # a replacement, not a loss
        self._snapshot_requested = False
        self._bids.load(bids, -1.0)
        self._asks.load(asks, 1.0)
        self.last_update_id = update_id
        self.event_time = time
        self.state = BookState.SYNCED
        self.reason = ""
        self.verified_by = self.chain  # (a REST poll's reset said otherwise)
        self.snapshots += 1
        self.stats.applied += 1
        if self._crossed():
            self.stats.crossed += 1
            return self._lost(f"crossed snapshot at {self.numbered} {update_id}")
        return Action.NONE

    def _waiting(self) -> Action:
        """An update while out of sync: dropped until the new subscription's snapshot, asked
        for again if the book was forgotten (invalidated) while the stream ran on."""
        self.stats.ignored += 1
        if not self._snapshot_requested:
            self._snapshot_requested = True
            return Action.RESUBSCRIBE
        return Action.NONE

    def _update(self, bids: list[Level], asks: list[Level], update_id: int, time: int) -> Action:
        """An update that follows the chain, applied; a crossed book is lost."""
        found = self._apply(self._bids, self._asks, bids, asks, self.max_levels, self._min_known)
        self.last_update_id = update_id
        self.event_time = time
        self.stats.applied += 1
        if found == SETTLED:
            return Action.NONE
        if found == CROSSED:
            self.stats.crossed += 1
            return self._lost(
                f"crossed book at {self.numbered} {update_id}: bid {self.best_bid()} >= ask "
                f"{self.best_ask()}"
            )
        # BEYOND_RANGE needs a cut REST snapshot's bounds, which a stream snapshot never sets
        return self._lost(f"price moved beyond the known range at {self.numbered} {update_id}")

    def _lost(self, reason: str) -> Action:
        self._resync(reason, None)
        return Action.RESUBSCRIBE
