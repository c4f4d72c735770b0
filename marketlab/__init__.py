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


# Heavy parts (pandas, DuckDB, aiohttp) load on first use, so the CLI starts quickly.
_LAZY = {
    "Lab": "marketlab.lab.facade",
    "BusConfig": "marketlab.bus.config",
    "NatsServer": "marketlab.bus.nats_server",
    "History": "marketlab.store.history",
    "SimExchange": "marketlab.sim.exchange",
    "VenueError": "marketlab.stream.feed",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'marketlab' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "AggTrade",
    "BookDelta",
    "BookSnapshot",
    "BookTicker",
    "BusConfig",
    "History",
    "Interval",
    "Kline",
    "Lab",
    "MiniTicker",
    "NatsServer",
    "SimExchange",
    "SymbolInfo",
    "Ticker",
    "Trade",
    "VenueError",
    "__version__",
    "normalize_symbol",
]
