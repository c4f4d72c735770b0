"""The common case of the busiest streams taken in compiled code (``csrc/quick.c``):
a trade right after the one before it, a book update right after the book's last one, with no
subscriber, no store of every update and no bus watching — no record made, its fields straight
into the status row, the trade ring, the book. Everything else goes to the Python takers, which
stay the reference: a quick taker stands for one fixed chain of them, so one is made only where
that very chain is in place (not where a subclass or another sink changed a link of it)."""

from __future__ import annotations

from typing import Any

from marketlab.lab.market_state import MarketState
from marketlab.native import native
from marketlab.rings import RingBuffer, TradeBuffer
from marketlab.stream.intake import Intake
from marketlab.stream.state import StreamStats


def market_state(feed: Intake) -> MarketState | None:
    """The feed's sink when it is a :class:`MarketState` (the Lab's), else None."""
    sink = getattr(feed.sink, "__self__", None)
    return sink if type(sink) is MarketState else None


def quick_trade(feed: Intake, stats: StreamStats, symbol: str) -> Any:
    """``Intake._take_trade`` → ``MarketState.on_trade`` → ``TradeBuffer.add``, compiled; None
    where that is not the chain a trade of ``symbol`` goes through."""
    state = market_state(feed)
    if native is None or state is None or type(stats) is not StreamStats:
        return None
    buffer = state.trades.get(symbol)
    if (
        type(feed)._take_trade is not Intake._take_trade
        or feed._deliver_trade != state.on_trade
        or type(buffer) is not TradeBuffer
        or type(buffer.ring) is not RingBuffer
        or RingBuffer.BLOCK != native.RING_BLOCK
    ):
        return None
    return native.QuickTrade(stats, state, buffer, symbol)
