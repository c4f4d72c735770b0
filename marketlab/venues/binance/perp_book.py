"""A Binance USDⓈ-M futures book, sans-I/O: the REST snapshot bridged to the diff stream by
the futures rules, which differ from spot's.

On futures the update ids of consecutive events are not consecutive (an event ``U..u`` may
start well past the previous ``u``), so spot's "the next event starts at ``u + 1``" cannot
find a gap. Each event instead says the ``u`` of the one before it (``pu``), and the docs'
procedure is: drop events older than the snapshot (``u`` < ``lastUpdateId``), the first one
applied must straddle it (``U`` <= ``lastUpdateId`` <= ``u``), and every later event's ``pu``
must equal the previous event's ``u``; anything else means events were lost, and the book is
fetched again.
"""

from __future__ import annotations

from marketlab.records import BookDelta, BookSnapshot
from marketlab.venues.binance.perp_frames import PerpDepth
from marketlab.venues.book import Action, OrderBook


class PerpBook(OrderBook):
    """One perpetual's book, fed :class:`PerpDepth` (``on_depth``) and REST snapshots
    (``on_snapshot``); act on the returned :class:`Action` as for any :class:`OrderBook`."""

    def __init__(self, symbol: str, max_levels: int = 1000, max_buffer: int = 10_000):
        super().__init__(symbol, max_levels=max_levels, max_buffer=max_buffer)
        # ``pu`` of the events not yet applied, by their ``u`` (a BookDelta has no room for it)
        self._previous: dict[int, int] = {}
        self._snapshot_id = -1  # the snapshot the book was last bridged from

    def on_depth(self, message: PerpDepth) -> Action:
        """One event of the diff stream."""
        if len(self._previous) >= 2 * self.max_buffer:
            # the links of events already applied go, and of the rest only the newest that the
            # buffer can hold (older ones have left it)
            at = self.last_update_id if self.synced else -1
            kept = [(u, pu) for u, pu in self._previous.items() if u > at]
            self._previous = dict(kept[-self.max_buffer :])
        self._previous[message.delta.last_update_id] = message.prev_update_id
        return self.on_delta(message.delta)

    def on_snapshot(self, snapshot: BookSnapshot, limit: int | None = None) -> Action:
        self._snapshot_id = snapshot.last_update_id
        action = super().on_snapshot(snapshot, limit)
        if self.synced:
            bridged = self.last_update_id
            self._previous = {u: pu for u, pu in self._previous.items() if u > bridged}
        return action

    def _break(self, delta: BookDelta, at: int) -> str | None:
        previous = self._previous.get(delta.last_update_id)
        if previous is not None and previous == at:
            return None  # the event right after the one the book is at
        if at == self._snapshot_id and delta.first_update_id <= at:
            return None  # the first event after the snapshot, straddling it
        if previous is None:
            return f"update {delta.last_update_id} came without the update before it (pu)"
        if at == self._snapshot_id:
            return (
                f"snapshot {at} is not bridged: the first newer event covers "
                f"{delta.first_update_id}..{delta.last_update_id}"
            )
        return f"gap: event {delta.last_update_id} follows update {previous}, the book is at {at}"
