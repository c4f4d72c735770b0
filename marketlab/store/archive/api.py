"""What :class:`~marketlab.store.history.History` and ``marketlab download`` call: a whole
download from names and dates, and the report of the last one as a DataFrame."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd

from marketlab.records import is_perpetual, normalize_symbol, underlying_of
from marketlab.settings import url as url_check
from marketlab.store.archive.audit import Hole
from marketlab.store.archive.download import Outcome, run_download
from marketlab.store.archive.imports import Manifest
from marketlab.store.archive.layout import DEFAULT_ARCHIVE_URL, Series, parse_kinds, parse_when
from marketlab.store.ticks import ticks_root

REPORT_COLUMNS = (
    "file",
    "kind",
    "symbol",
    "what",
    "start",
    "end",
    "first_id",
    "last_id",
    "missing",
    "filled",
    "repaired",
    "uncovered",
)


def archive_url(value: str | os.PathLike[str] | None = None) -> str:
    """The archive base: given, else ``MARKETLAB_ARCHIVE_URL``, else data.binance.vision. A
    mirror is an ``http(s)://`` base answering ``?prefix=`` listings; a local copy (the same
    ``data/…`` tree with the ``.CHECKSUM`` files) is a folder or a ``file://`` URL."""
    chosen = value or os.environ.get("MARKETLAB_ARCHIVE_URL") or DEFAULT_ARCHIVE_URL
    text = os.fspath(chosen)
    if "://" not in text or text.startswith("file://"):
        folder = Path(urlsplit(text).path if text.startswith("file://") else text)
        if not (folder / "data").is_dir():
            raise ValueError(f"archive_url {text!r}: no data/ folder there (a local copy's root)")
        return folder.resolve().as_uri()
    return url_check("archive_url", text, ("http", "https")).rstrip("/")


def plan_series(
    symbols: Sequence[str] | str, kinds: Sequence[str] | str, market: str
) -> list[Series]:
    """The series to fetch. A perpetual may be named as the Lab names it (``BTCUSDT-PERP``) or
    as the archive does (``BTCUSDT`` with ``market="um"``); either way it is kept as the Lab's
    ``BTCUSDT-PERP``."""
    names = symbols.split(",") if isinstance(symbols, str) else list(symbols)
    text = kinds if isinstance(kinds, str) else ",".join(kinds)
    return [
        Series(market, kind, _archive_symbol(s, market), interval)
        for s in names
        if s.strip()
        for kind, interval in parse_kinds(text)
    ]


def _archive_symbol(name: str, market: str) -> str:
    symbol = normalize_symbol(name.strip())
    if is_perpetual(symbol) and market != "um":
        raise ValueError(f"{symbol} is a perpetual: its archive is market='um' (--market um)")
    return underlying_of(symbol)


async def download(
    db: str | os.PathLike[str],
    symbols: Sequence[str] | str,
    kinds: Sequence[str] | str,
    start: str,
    end: str | None = None,
    *,
    market: str = "spot",
    fill: bool = True,
    archive: str | os.PathLike[str] | None = None,
    rest_url: str | None = None,
    ticks: str | os.PathLike[str] | None = None,
    parallel: int = 4,
    progress: bool | None = None,
) -> Outcome:
    """Download ``kinds`` of ``symbols`` from month or day ``start`` to ``end`` (included;
    default: ``start``'s month) into the kline database ``db`` and its tick store."""
    series = plan_series(symbols, kinds, market)
    if not series:
        raise ValueError("download needs at least one symbol")
    if parallel < 1:
        raise ValueError(f"parallel must be >= 1, got {parallel}")
    first = parse_when(start)
    last = parse_when(end or start, end=True)
    if last <= first:
        raise ValueError(f"end {end!r} is before start {start!r}")
    show = sys.stderr.isatty() if progress is None else progress
    root = Path(ticks) if ticks is not None else ticks_root(db)
    return await run_download(
        Path(db),
        root,
        series,
        first,
        last,
        archive_url(archive),
        fill=fill,
        rest_url=rest_url,
        parallel=parallel,
        progress=show,
    )


def report_frame(holes: Sequence[Hole] | Sequence[dict]) -> pd.DataFrame:
    """Holes as a frame: one row each, times as UTC timestamps."""
    rows = [h.as_dict() if isinstance(h, Hole) else h for h in holes]
    df = pd.DataFrame(rows, columns=list(REPORT_COLUMNS))
    for c in ("start", "end"):
        df[c] = pd.to_datetime(df[c], unit="ms", utc=True)
    for c in ("first_id", "last_id", "missing", "repaired", "uncovered"):
        df[c] = df[c].astype("Int64")
    df["filled"] = df["filled"].astype(bool)
    return df


def last_report(db: str | os.PathLike[str]) -> pd.DataFrame:
    """The holes the last download into ``db`` listed (and whether each was filled)."""
    return report_frame(Manifest(Manifest.beside(db)).report)
