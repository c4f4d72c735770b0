"""Recordings become history: ``marketlab ingest session.mlrec --db data/marketlab.sqlite``.

A recording is fed through the very decoder, books and integrity checks of live collection (a
replay, as fast as it goes) into the stored tables: closed klines in SQLite and every trade in
the tick store beside it, and books sampled on the recording's clock as live collection samples
them. Ingesting the same recording twice adds nothing: klines are keyed by
open time and trades by id.
"""

from __future__ import annotations

import os
import time
from typing import Any

from marketlab.lab import Lab
from marketlab.recording.files import open_recording


def ingest(path: str | os.PathLike[str], db: str | os.PathLike[str]) -> dict[str, Any]:
    """Store what ``path`` recorded under ``db``; returns what was read and written."""
    header, entries = open_recording(path)  # a file that is not a recording fails here, first
    entries.close()
    began = time.monotonic()
    kinds = (
        "klines",
        *(k for k, c in (("trades", "trades"), ("book", "book")) if c in header.channels),
    )
    lab = Lab.replay(path, db=db, store=kinds).join()
    frames = sum(c["messages"] for c in lab.summary().get("connections", ()))
    return {
        "exchange": header.exchange,
        "symbols": list(header.symbols),
        "frames": frames,
        "seconds": time.monotonic() - began,
        "klines_written": lab.last_db_written,
        "trades_written": lab.last_ticks_written,
        "books_written": lab.last_books_written,
    }
