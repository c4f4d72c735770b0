"""OKX's ``books`` channel kept as a local book, sans-I/O."""

from __future__ import annotations

from operator import itemgetter

from marketlab.records import BookDelta
from marketlab.venues.book import (
    CROSSED,
    SEQ_CHAIN,
    SEQ_CHAIN_AND_CHECKSUM,
    Action,
    BookSide,
    BookState,
    OrderBook,
)
from marketlab.venues.okx.frames import BookMessage, NumLevel, StrLevel
from marketlab.venues.okx.protocol import book_checksum

_PRICE = itemgetter(0)  # a level's price


class OkxBook(OrderBook):
    """One symbol's book from OKX's ``books`` channel: a snapshot, then updates chained by
    ``prevSeqId`` → ``seqId``.

    OKX retired the book checksum in June 2026: the field is still sent, always 0, and the
    ``seqId`` chain alone vouches for the book. A non-zero checksum (older recordings, feeds
    that still send one) is checked against our CRC32 of the top 25 levels, so the exact price
    and size strings are kept beside the numbers. As OKX documents, a "nothing changed" push
    (empty sides, ``seqId == prevSeqId``) and a ``seqId`` reset (maintenance: ``seqId`` below
    ``prevSeqId``) both continue the chain, since their ``prevSeqId`` is the last ``seqId``.

    Any break (a lost update, a checksum mismatch, a crossed book) empties the book and
    returns :attr:`Action.RESUBSCRIBE`: the channel's next snapshot is the only way back.
    """

    def __init__(self, symbol: str, max_levels: int = 400):
        super().__init__(symbol, max_levels=max_levels)
        self.reason = "waiting for the first snapshot"
        self._bid_text: dict[float, tuple[str, str]] = {}
        self._ask_text: dict[float, tuple[str, str]] = {}
        self.checksum_failures = 0
        self.checksums_verified = 0
        self.unverified = 0  # messages whose checksum was absent or 0 (retired)
        self.verified_by = SEQ_CHAIN

    def on_message(self, msg: BookMessage) -> Action:
        if msg.action == "snapshot":
            self._resync("replaced by a snapshot", None)
            self.stats.resyncs -= 1
            self._snapshot_requested = False
            found = self._set(msg)
            self.state = BookState.SYNCED
            self.reason = ""
            return self._check(msg, found)
        if not self.synced:
            self.stats.ignored += 1  # waiting for the snapshot of a new subscription
            if not self._snapshot_requested:  # forgotten (invalidated) while the stream runs on
                self._snapshot_requested = True
                return Action.RESUBSCRIBE
            return Action.NONE
        if msg.prev_seq_id != self.last_update_id:
            self.stats.gaps += 1
            return self._lost(
                f"gap: update {msg.seq_id} follows {msg.prev_seq_id}, the book is at "
                f"{self.last_update_id}"
            )
        if msg.seq_id == msg.prev_seq_id and not msg.bids and not msg.asks:
            self.stats.heartbeats += 1  # the venue says the book is unchanged
            self.event_time = msg.time
            return self._verify(msg)
        if msg.seq_id < msg.prev_seq_id:
            self.stats.seq_resets += 1  # the venue restarted its sequence; the chain goes on
        return self._check(msg, self._set(msg))

    def _set(self, msg: BookMessage) -> int:
        """Apply the message's levels through the book's (compiled) ``apply_delta`` in one
        call, and note each level's text for the checksum; returns what ``apply_delta`` found
        (:data:`CROSSED` or not; the book has no cut snapshot's range, so never beyond it).

        The text of a level is noted even when its size is 0: it is then the text of a key
        no longer in the side, never read by :meth:`checksum` (which reads only the side's
        keys, each set last by a level of non-zero size), and such leftovers, like the text of
        levels trimmed off, are dropped when they outnumber the side's levels.
        """
        bid_changes = msg.bid_changes if msg.bid_changes is not None else _numbers(msg.bids)
        ask_changes = msg.ask_changes if msg.ask_changes is not None else _numbers(msg.asks)
        found: int = self._apply(
            self._bids, self._asks, bid_changes, ask_changes, self.max_levels, 0
        )
        self._bid_text.update(zip(map(_PRICE, bid_changes), msg.bids, strict=True))
        self._ask_text.update(zip(map(_PRICE, ask_changes), msg.asks, strict=True))
        self.last_update_id = msg.seq_id
        self.event_time = msg.time
        self.stats.applied += 1
        if len(self._bid_text) > 2 * len(self._bids) + 64:
            self._bid_text = _kept(self._bid_text, self._bids, -1.0)
        if len(self._ask_text) > 2 * len(self._asks) + 64:
            self._ask_text = _kept(self._ask_text, self._asks, 1.0)
        return found

    def _check(self, msg: BookMessage, found: int) -> Action:
        if found == CROSSED:
            self.stats.crossed += 1
            return self._lost(
                f"crossed book at seq {msg.seq_id}: bid {self.best_bid()} >= ask {self.best_ask()}"
            )
        return self._verify(msg)

    def _verify(self, msg: BookMessage) -> Action:
        """Check the message's checksum when it carries one (0 means retired, not sent)."""
        if not msg.checksum:
            self.unverified += 1
            self.verified_by = SEQ_CHAIN
            return Action.NONE
        ours = self.checksum()
        if ours != msg.checksum:
            self.checksum_failures += 1
            return self._lost(
                f"checksum mismatch at seq {msg.seq_id}: exchange {msg.checksum}, ours {ours}"
            )
        self.checksums_verified += 1
        self.verified_by = SEQ_CHAIN_AND_CHECKSUM
        return Action.NONE

    def checksum(self) -> int:
        """The CRC32 of our top 25 levels, as OKX computed it before retiring it."""
        n = 25
        bids = [self._bid_text[-k] for k, _ in self._bids.first(n)]
        asks = [self._ask_text[k] for k, _ in self._asks.first(n)]
        return book_checksum(bids, asks)

    def _lost(self, reason: str) -> Action:
        self._resync(reason, None)
        return Action.RESUBSCRIBE

    def _resync(self, reason: str, first: BookDelta | None) -> Action:
        self._bid_text.clear()
        self._ask_text.clear()
        return super()._resync(reason, first)


def _numbers(levels: list[StrLevel]) -> list[NumLevel]:
    """Levels of a message made by hand (no ``bid_changes``/``ask_changes``) as floats."""
    return [(float(p), float(q)) for p, q in levels]


def _kept(text: dict[float, StrLevel], side: BookSide, sign: float) -> dict[float, StrLevel]:
    """``text`` (by price) of only the levels ``side`` holds (keyed by ``sign * price``)."""
    return {sign * key: text[sign * key] for key, _ in side.items()}
