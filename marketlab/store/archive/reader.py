"""An archive zip read right: its one CSV, a header row or none, milliseconds or microseconds,
every column typed, every row checked to lie in the file's own day or month. Pure code over a
file on disk (no network); a bad file raises :class:`ArchiveError` naming it and what is wrong.

The columns follow binance/binance-public-data's README: klines have twelve (the last
ignored); spot trades seven (id, price, qty, quote qty, time, buyer is maker, best match),
USDⓈ-M trades six (no best match); spot aggTrades eight (agg id, price, qty, first and last
trade id, time, buyer is maker, best match), USDⓈ-M aggTrades seven. Futures files carry a
header row where spot files do not (binance-public-data #283), so a header is recognised per
file by its first byte, and the column count picks the layout. Spot files from 2025-01-01 on
give times in microseconds (the README's note of 2025-01-09): the unit is decided per file
from where its first time falls, and every time is then checked against the file's span.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, BinaryIO, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv

from marketlab.records import Interval
from marketlab.store.archive import inflate
from marketlab.store.archive.layout import ArchiveError, ArchiveFile

_BIG = 256 * 1024 * 1024  # a CSV larger than this is read in blocks, not whole
_BLOCK = 64 * 1024 * 1024
_SIDES = pa.array(["buy", "sell"])

KLINE_COLUMNS = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "trades",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "ignore",
)
_TRADE_COLUMNS = ("trade_id", "price", "qty", "quote_qty", "time", "buyer_maker", "best_match")
_AGG_COLUMNS = (
    "agg_id",
    "price",
    "qty",
    "first_id",
    "last_id",
    "time",
    "buyer_maker",
    "best_match",
)
# the layouts a file may have, by kind: its column names by field count
_LAYOUTS: dict[str, dict[int, tuple[str, ...]]] = {
    "klines": {12: KLINE_COLUMNS},
    "trades": {7: _TRADE_COLUMNS, 6: _TRADE_COLUMNS[:6]},
    "aggTrades": {8: _AGG_COLUMNS, 7: _AGG_COLUMNS[:7]},
}
_INTS = {"open_time", "close_time", "trades", "trade_id", "time", "agg_id", "first_id", "last_id"}
_BOOLS = {"buyer_maker", "best_match"}

_AGG_FIELDS: list[tuple[str, pa.DataType]] = [
    ("time", pa.int64()),
    ("agg_id", pa.int64()),
    ("price", pa.float64()),
    ("qty", pa.float64()),
    ("first_id", pa.int64()),
    ("last_id", pa.int64()),
    ("side", pa.dictionary(pa.int8(), pa.string())),
]
AGG_SCHEMA = pa.schema(_AGG_FIELDS)


def read_archive(path: Path, file: ArchiveFile) -> Iterator[pa.Table]:
    """The rows of ``file`` (downloaded to ``path``) as marketlab's tables, a block at a time:
    klines with the kline store's columns (times in ms), trades with the tick store's
    (:data:`marketlab.store.ticks.TRADE_SCHEMA`), aggTrades with :data:`AGG_SCHEMA`."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as exc:
        raise ArchiveError(f"{file.name}: not a zip file ({exc})") from None
    with zf, path.open("rb") as raw:
        members = [i for i in zf.infolist() if not i.is_dir()]
        if len(members) != 1 or not members[0].filename.endswith(".csv"):
            names = [i.filename for i in members][:5]
            raise ArchiveError(f"{file.name}: expected one CSV inside, found {names}")
        info = members[0]
        try:
            yield from _read(_opener(zf, raw, info), info.file_size <= _BIG, file)
        except (
            zipfile.BadZipFile,
            EOFError,
            OSError,
            zlib.error,
            NotImplementedError,
            RuntimeError,
        ) as exc:  # damaged, of an unknown method or version, encrypted
            raise ArchiveError(f"{file.name}: damaged zip ({exc})") from None


def _opener(zf: zipfile.ZipFile, raw: BinaryIO, info: zipfile.ZipInfo) -> Callable[[], IO[bytes]]:
    """What opens the CSV (each call from its start): inflated whole in one call up to
    :data:`_BIG` bytes, a chunk at a time above; by ISA-L where the member is plain (stored or
    deflated, as the archive's are), else by :mod:`zipfile`."""
    if not inflate.plain(info):
        return lambda: zf.open(info)
    if info.file_size > _BIG:
        return lambda: inflate.open_member(raw, info)
    whole = pa.py_buffer(inflate.read_member(raw, info))
    return lambda: cast(IO[bytes], pa.BufferReader(whole))


def _read(open_csv: Callable[[], IO[bytes]], whole: bool, file: ArchiveFile) -> Iterator[pa.Table]:
    kind = file.series.kind
    with open_csv() as f:
        first = f.read(4096)
    if not first.strip():
        return  # an empty file: nothing in it (the audit finds the day short)
    header = not first[:1].isdigit()
    line_end = first.find(b"\n")
    data_line = first
    if header:
        if line_end < 0:
            return  # a header and nothing else
        data_line = first[line_end + 1 :]
    fields = data_line.split(b"\n", 1)[0].rstrip(b"\r").count(b",") + 1
    names = _LAYOUTS[kind].get(fields)
    if names is None:
        expected = " or ".join(str(n) for n in _LAYOUTS[kind])
        raise ArchiveError(f"{file.name}: {fields} columns, {kind} files have {expected}")
    types = {
        n: pa.int64() if n in _INTS else pa.bool_() if n in _BOOLS else pa.float64()
        for n in names
        if n not in ("ignore", "best_match", "quote_qty")
    }
    read_options = csv.ReadOptions(
        column_names=list(names), skip_rows=1 if header else 0, block_size=_BLOCK
    )
    convert = csv.ConvertOptions(
        column_types=types, include_columns=list(types), quoted_strings_can_be_null=False
    )
    parse = csv.ParseOptions(newlines_in_values=False)
    unit: int | None = None
    try:
        with open_csv() as f:
            if whole:  # parsed on every core at once
                blocks: Iterator[pa.Table] = iter([csv.read_csv(f, read_options, parse, convert)])
            else:
                reader = csv.open_csv(f, read_options, parse, convert)
                blocks = (pa.Table.from_batches([b]) for b in reader)
            for table in blocks:
                if table.num_rows == 0:
                    continue
                unit = unit or _unit(table, file)
                yield _normalise(table, file, unit)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ArchiveError(f"{file.name}: {_first_line(exc)}") from None


def _first_line(exc: Exception) -> str:
    return str(exc).strip().split("\n")[0][:300]


def _time_column(kind: str) -> str:
    return "open_time" if kind == "klines" else "time"


def _unit(table: pa.Table, file: ArchiveFile) -> int:
    """1 when times are in milliseconds, 1000 in microseconds: where the first time falls."""
    t = table.column(_time_column(file.series.kind))[0].as_py()
    if t is None:
        raise ArchiveError(f"{file.name}: the first row has no time")
    if file.start_ms <= t < file.end_ms:
        return 1
    if file.start_ms * 1000 <= t < file.end_ms * 1000:
        return 1000
    raise ArchiveError(
        f"{file.name}: the first time {t} is in neither milliseconds nor microseconds of "
        f"{file.when}"
    )


def _normalise(table: pa.Table, file: ArchiveFile, unit: int) -> pa.Table:
    for name in table.column_names:
        col = table.column(name)
        if col.null_count:
            row = int(pc.index(pc.is_null(col), True).as_py())
            raise ArchiveError(f"{file.name}: row {row + 1} has no {name}")
    kind = file.series.kind
    cols = {n: table.column(n).to_numpy() for n in table.column_names}
    for n in ("open_time", "close_time", "time"):
        if n in cols and unit != 1:
            cols[n] = cols[n] // unit
    times = cols[_time_column(kind)]
    outside = (times < file.start_ms) | (times >= file.end_ms)
    if outside.any():
        row = int(np.argmax(outside))
        raise ArchiveError(
            f"{file.name}: row {row + 1}'s time {int(times[row])} is not in {file.when}"
        )
    for n in ("price", "qty", "open", "high", "low", "close", "volume"):
        if n in cols and not (np.isfinite(cols[n]).all() and (cols[n] >= 0).all()):
            row = int(np.argmax(~(np.isfinite(cols[n]) & (cols[n] >= 0))))
            raise ArchiveError(f"{file.name}: row {row + 1} has {n} {cols[n][row]}")
    if kind == "klines":
        return _klines(cols, file)
    sides = pa.DictionaryArray.from_arrays(
        pa.array(cols["buyer_maker"].astype(np.int8), pa.int8()), _SIDES
    )
    if kind == "trades":
        from marketlab.store.ticks import TRADE_SCHEMA

        return pa.Table.from_arrays(
            [*(pa.array(cols[n]) for n in ("time", "trade_id", "price", "qty")), sides],
            schema=TRADE_SCHEMA,
        )
    return pa.Table.from_arrays(
        [
            *(pa.array(cols[n]) for n in ("time", "agg_id", "price", "qty", "first_id", "last_id")),
            sides,
        ],
        schema=AGG_SCHEMA,
    )


def _klines(cols: dict[str, np.ndarray], file: ArchiveFile) -> pa.Table:
    iv = Interval(file.series.interval)
    opens, closes = cols["open_time"], cols["close_time"]
    if iv.calendar or iv == "1w":
        nexts = np.array([iv.next_open(int(t)) for t in opens], dtype=np.int64)
        aligned = np.array([iv.open_of(int(t)) == t for t in opens], dtype=bool)
    else:
        nexts, aligned = opens + iv.ms, opens % iv.ms == 0
    wrong = ~aligned | (closes != nexts - 1)
    if wrong.any():
        row = int(np.argmax(wrong))
        raise ArchiveError(
            f"{file.name}: row {row + 1} is not a {iv} candle (open {int(opens[row])}, "
            f"close {int(closes[row])})"
        )
    names = [n for n in KLINE_COLUMNS if n != "ignore"]
    return pa.table({n: pa.array(cols[n]) for n in names})
