"""marketlab: live crypto market data for researchers, in pandas."""

from marketlab.records import (
    AggTrade,
    BookDelta,
    BookSnapshot,
    BookTicker,
    Interval,
    Kline,
    MiniTicker,
    SymbolInfo,
    Ticker,
    Trade,
    normalize_symbol,
)

__version__ = "0.1.0"

__all__ = [
    "AggTrade",
    "BookDelta",
    "BookSnapshot",
    "BookTicker",
    "Interval",
    "Kline",
    "MiniTicker",
    "SymbolInfo",
    "Ticker",
    "Trade",
    "__version__",
    "normalize_symbol",
]
