"""Coinbase's ``level2`` channel kept as local books, sans-I/O, vouched for by the connection's
``sequence_num`` chain.

Coinbase numbers messages per connection, not per product: ``sequence_num`` counts every message
on the socket (every channel, ``subscriptions`` and ``heartbeats`` included) from 0, one up each
time. Its ``l2_data`` events carry no number of their own and no checksum. So a book is known to
equal the venue's only while its connection's chain is unbroken: one message missing may have
held any product's update, and every book on that connection is out of sync until a new
subscription's snapshot. :class:`SequenceChain` watches a connection's chain; :class:`CoinbaseBook`
is one product's book, told by its owner when the chain breaks.
"""

from __future__ import annotations

from dataclasses import dataclass

from marketlab.venues.book import Action, StreamBook
from marketlab.venues.coinbase.frames import BookMessage

# How a synced Coinbase book is known to equal the venue's.
SEQUENCE_CHAIN = "sequence_num chain"


@dataclass(frozen=True, slots=True)
class Break:
    """A connection's chain broke: ``expected`` was due, ``got`` came (below it: a repeat or a
    count started again; above: ``got - expected`` messages lost)."""

    expected: int
    got: int

    @property
    def lost(self) -> int:
        return max(0, self.got - self.expected)

    def __str__(self) -> str:
        if self.got > self.expected:
            return (
                f"sequence gap: expected message {self.expected}, got {self.got} ({self.lost} lost)"
            )
        return f"sequence broken: expected message {self.expected}, got {self.got} again"


class SequenceChain:
    """One connection's ``sequence_num`` chain: the first message is 0, each next one up by 1.

    :meth:`observe` each message's number; it answers the :class:`Break` when the number is not
    the one due, and goes on from the number seen (nothing Coinbase sends can fill a gap, so
    the chain is only ever checked forward from where it stands).
    """

    __slots__ = ("breaks", "last", "lost")

    def __init__(self) -> None:
        self.last = -1  # nothing seen: 0 is due
        self.breaks = 0
        self.lost = 0

    def observe(self, sequence_num: int) -> Break | None:
        expected = self.last + 1
        self.last = sequence_num
        if sequence_num == expected:
            return None
        found = Break(expected, sequence_num)
        self.breaks += 1
        self.lost += found.lost
        return found


class CoinbaseBook(StreamBook):
    """One product's book from Coinbase's ``level2`` channel: a snapshot (the whole book, both
    sides in one list), then updates of absolute sizes ("0" removes a level).

    Any snapshot replaces the book whole. An update is applied only to a synced book; the
    ``sequence_num`` chain itself is the connection's (:class:`SequenceChain`): the owner calls
    :meth:`lost` on every book of a connection whose chain broke. ``last_update_id`` is the
    ``sequence_num`` of the last message applied.

    A lost message or a crossed book empties the book and returns :attr:`Action.RESUBSCRIBE`:
    a new subscription's snapshot is the only way back (Coinbase keeps no replay, and its REST
    book has no sequence to stitch on).
    """

    chain = SEQUENCE_CHAIN
    numbered = "sequence_num"

    def __init__(self, symbol: str, max_levels: int = 5000):
        super().__init__(symbol, max_levels)
        self._snapshot_requested = True  # the first subscription brings it

    def on_message(self, msg: BookMessage) -> Action:
        if msg.action == "snapshot":
            return self._replace(msg.bids, msg.asks, msg.sequence_num, msg.time)
        if not self.synced:
            return self._waiting()  # the snapshot of a new subscription comes first
        return self._update(msg.bids, msg.asks, msg.sequence_num, msg.time)

    def lost(self, reason: str) -> Action:
        """The connection's chain broke (``reason`` says where): the book may have missed any
        update. It empties and asks for a new subscription, even when it waits for one already:
        the snapshot asked for may have been in what was lost."""
        self.stats.gaps += 1
        return self._lost(reason)

    def unsubscribed(self, reason: str) -> None:
        """Our own unsubscribe (half of a resubscription) took effect: no update comes until
        the new subscription's snapshot, which is already asked for, so until then the book is
        out of sync (a snapshot of the old subscription may have synced it meanwhile)."""
        self._resync(reason, None)
