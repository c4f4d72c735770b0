"""Bybit's ``orderbook.{50|200}`` channel kept as a local book, sans-I/O."""

from __future__ import annotations

from marketlab.venues.book import CROSSED, SETTLED, Action, BookState, OrderBook
from marketlab.venues.bybit.frames import BookMessage

# How a synced Bybit book is known to equal the venue's: each delta's ``u`` follows the last.
U_CHAIN = "u chain"


class BybitBook(OrderBook):
    """One symbol's book from Bybit's ``orderbook.N`` channel: a snapshot, then deltas whose
    ``u`` is the previous ``u`` + 1.

    Any snapshot replaces the book whole: the one a subscription starts with, one Bybit
    re-sends when something went wrong on its side, and the one with ``u`` = 1 after a service
    restart (a snapshot, whatever its ``u``, is the truth; only deltas are chained). Bybit
    sends no checksum: the ``u`` chain alone vouches for the book.

    A broken chain (a lost or repeated delta) or a crossed book empties the book and returns
    :attr:`Action.RESUBSCRIBE`: a new subscription's snapshot is the only way back.
    """

    def __init__(self, symbol: str, max_levels: int = 1000):
        super().__init__(symbol, max_levels=max_levels)
        self.verified_by = U_CHAIN
        self.snapshots = 0  # snapshots taken (the first, re-sent ones, restarts)

    def on_message(self, msg: BookMessage) -> Action:
        if msg.action == "snapshot":
            self._resync("replaced by a snapshot", None)
            self.stats.resyncs -= 1  # a replacement, not a loss
            self._snapshot_requested = False
            self._bids.load(msg.bids, -1.0)
            self._asks.load(msg.asks, 1.0)
            self.last_update_id = msg.update_id
            self.event_time = msg.time
            self.state = BookState.SYNCED
            self.reason = ""
            self.verified_by = U_CHAIN  # (a REST poll's reset said otherwise)
            self.snapshots += 1
            self.stats.applied += 1
            if self._crossed():
                self.stats.crossed += 1
                return self._lost(f"crossed snapshot at u {msg.update_id}")
            return Action.NONE
        if not self.synced:
            self.stats.ignored += 1  # waiting for the snapshot of a new subscription
            if not self._snapshot_requested:  # forgotten (invalidated) while the stream runs on
                self._snapshot_requested = True
                return Action.RESUBSCRIBE
            return Action.NONE
        if msg.update_id != self.last_update_id + 1:
            self.stats.gaps += 1
            return self._lost(
                f"gap: delta u {msg.update_id} does not follow u {self.last_update_id}"
            )
        found = self._apply(
            self._bids, self._asks, msg.bids, msg.asks, self.max_levels, self._min_known
        )
        self.last_update_id = msg.update_id
        self.event_time = msg.time
        self.stats.applied += 1
        if found == SETTLED:
            return Action.NONE
        if found == CROSSED:
            self.stats.crossed += 1
            return self._lost(
                f"crossed book at u {msg.update_id}: bid {self.best_bid()} >= ask {self.best_ask()}"
            )
        # BEYOND_RANGE needs a cut REST snapshot's bounds, which a stream snapshot never sets
        return self._lost(f"price moved beyond the known range at u {msg.update_id}")

    def _lost(self, reason: str) -> Action:
        self._resync(reason, None)
        return Action.RESUBSCRIBE
