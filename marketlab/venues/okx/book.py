"""OKX's ``books`` channel kept as a local book, sans-I/O."""

from __future__ import annotations

from marketlab.records import BookDelta
from marketlab.venues.book import (
    SEQ_CHAIN,
    SEQ_CHAIN_AND_CHECKSUM,
    Action,
    BookState,
    OrderBook,
)
from marketlab.venues.okx.frames import BookMessage
from marketlab.venues.okx.protocol import book_checksum


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
            self._set(msg)
            self.state = BookState.SYNCED
            self.reason = ""
            return self._check(msg)
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
        self._set(msg)
        return self._check(msg)

    def _set(self, msg: BookMessage) -> None:
        bids, asks, bid_text, ask_text = self._bids, self._asks, self._bid_text, self._ask_text
        for level in msg.bids:
            price, qty = float(level[0]), float(level[1])
            if qty:
                bids[-price] = qty
                bid_text[price] = level
            else:
                bids.pop(-price, None)
                bid_text.pop(price, None)
        for level in msg.asks:
            price, qty = float(level[0]), float(level[1])
            if qty:
                asks[price] = qty
                ask_text[price] = level
            else:
                asks.pop(price, None)
                ask_text.pop(price, None)
        self.last_update_id = msg.seq_id
        self.event_time = msg.time
        self.stats.applied += 1
        slack = self.max_levels + self.max_levels // 10
        for side, text, sign in ((bids, bid_text, -1), (asks, ask_text, 1)):
            if len(side) > slack:
                for key in side.trim(self.max_levels):
                    text.pop(sign * key, None)

    def _check(self, msg: BookMessage) -> Action:
        if self._crossed():
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
