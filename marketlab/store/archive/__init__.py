"""Binance's public data archive (``data.binance.vision``): which files exist (the bucket's
listing), whether a file is the one published (its ``.CHECKSUM``), reading its CSV right
(header rows, milliseconds or microseconds, typed columns), importing it once into the kline
and tick stores, and auditing what was imported for holes, filled over REST where the venue
still has them.

The readers (:mod:`.layout`, :mod:`.listing` with the checksums, :mod:`.reader`) are pure code;
:mod:`.download` is the asyncio layer on top.
"""

from marketlab.store.archive.layout import ArchiveError, ArchiveFile, Series
from marketlab.store.archive.reader import read_archive

__all__ = ["ArchiveError", "ArchiveFile", "Series", "read_archive"]
