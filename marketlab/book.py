"""Moved: the local book is :mod:`marketlab.venues.book` now, OKX's in
:mod:`marketlab.venues.okx.book`. This module re-exports the old names for one release."""

import warnings

from marketlab.venues.book import Action, BookSide, BookState, BookStats, OrderBook
from marketlab.venues.okx.book import OkxBook

warnings.warn(
    "marketlab.book is deprecated: import from marketlab.venues.book (OrderBook) or "
    "marketlab.venues.okx.book (OkxBook)",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["Action", "BookSide", "BookState", "BookStats", "OkxBook", "OrderBook"]
