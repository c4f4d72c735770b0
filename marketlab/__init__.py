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


def __getattr__(name: str) -> object:
    # Lab pulls in pandas and ccxt: load it on first use so the CLI starts quickly.
    if name == "Lab":
        from marketlab.lab import Lab

        return Lab
    raise AttributeError(f"module 'marketlab' has no attribute {name!r}")


__all__ = [
    "AggTrade",
    "BookDelta",
    "BookSnapshot",
    "BookTicker",
    "Interval",
    "Kline",
    "Lab",
    "MiniTicker",
    "SymbolInfo",
    "Ticker",
    "Trade",
    "__version__",
    "normalize_symbol",
]
