"""Bybit's ``orderbook.{50|200}`` channel kept as a local book, sans-I/O."""

from __future__ import annotations

from marketlab.venues.book import Action, StreamBook
from marketlab.venues.bybit.frames import BookMessage

# How a synced Bybit book is known to equal the venue's: each delta's ``u`` follows the last.
U_CHAIN = "u chain"


class BybitBook(StreamBook):
    """One symbol's book from Bybit's ``orderbook.N`` channel: a snapshot, then deltas whose
    ``u`` is the previous ``u`` + 1.

    Any snapshot replaces the book whole: the one a subscription starts with, one Bybit
    re-sends when something went wrong on its side, and the one with ``u`` = 1 after a service
    restart (a snapshot, whatever its ``u``, is the truth; only deltas are chained). Bybit
    sends no checksum: the ``u`` chain alone vouches for the book.

    A broken chain (a lost or repeated delta) or a crossed book empties the book and returns
    :attr:`Action.RESUBSCRIBE`: a new subscription's snapshot is the only way back.
    """

    chain = U_CHAIN
    numbered = "u"

    def __init__(self, symbol: str, max_levels: int = 1000):
        super().__init__(symbol, max_levels)

    def on_message(self, msg: BookMessage) -> Action:
        if msg.action == "snapshot":
            return self._replace(msg.bids, msg.asks, msg.update_id, msg.time)
        if not self.synced:
            return self._waiting()  # the snapshot of a new subscription comes first
        if msg.update_id != self.last_update_id + 1:
            self.stats.gaps += 1
            return self._lost(
                f"gap: delta u {msg.update_id} does not follow u {self.last_update_id}"
            )
        return self._update(msg.bids, msg.asks, msg.update_id, msg.time)
