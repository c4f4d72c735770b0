"""A Binance feed for tests that feed it frames by hand, and the frames to feed it."""

from __future__ import annotations

from typing import Any

import orjson

from marketlab.lab.market_state import MarketState
from marketlab.records import Interval
from marketlab.stream.config import FeedConfig
from marketlab.venues.binance.feed import BinanceFeed

SYMBOL = "BTCUSDT"
TRADE = b"btcusdt@trade"
T0 = 1_767_225_600_000  # 2026-01-01, in ms: the venue's times are of its years


class OfflineFeed(BinanceFeed):
    """A Binance feed into a Lab's state whose REST work is only written down (no loop, no
    socket)."""

    def __init__(self, max_levels: int = 8) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.state = MarketState([SYMBOL], [Interval("1m")], 50, 10, lambda k: None)
        config = FeedConfig(book_snapshot_limit=max_levels)
        super().__init__([SYMBOL], ["1m"], ["trades", "book"], config, self.state)

    def _schedule_snapshot(self, symbol: str) -> None:
        self.calls.append(("snapshot", symbol))

    def _schedule_trades(self, symbol: str, first: int, last: int) -> None:
        self.calls.append(("trades", symbol, first, last))


def frame(stream: bytes, data: dict[str, Any]) -> bytes:
    return b'{"stream":"' + stream + b'","data":' + orjson.dumps(data) + b"}"


def trade_frame(tid: int, price: float, qty: float, maker: bool) -> bytes:
    """A trade of SYMBOL as Binance sends it."""
    return frame(
        TRADE,
        {
            "e": "trade",
            "E": T0 + 1000 + tid,
            "s": SYMBOL,
            "t": tid,
            "p": str(price),
            "q": str(qty),
            "T": T0 + 900 + tid,
            "m": maker,
            "M": True,
        },
    )
