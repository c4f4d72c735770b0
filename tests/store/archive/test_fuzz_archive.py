"""Fuzz targets for the archive's readers of outside bytes: a zip's CSV, a bucket listing, a
``.CHECKSUM`` line. Whatever the bytes, each gives rows, or raises ArchiveError naming the
file; nothing else escapes, and rows that come out lie in the file's own day. An aggTrades
file's rows that come out give trades their sides only from an aggregate trade holding them."""

from __future__ import annotations

import io
import zipfile
from unittest import mock

import numpy as np
from hypothesis import given

from marketlab.store.archive import reader
from marketlab.store.archive.layout import ArchiveError, Series
from marketlab.store.archive.listing import parse_checksum, parse_listing
from marketlab.store.archive.reader import read_archive
from marketlab.store.archive.sides import Aggs, sides_from_aggs
from tests.fuzzing import fuzz, mutated

JAN1 = 1_735_689_600_000
TRADES = Series("spot", "trades", "BTCUSDT").file("daily", "2025-01-01")
KLINES = Series("um", "klines", "BTCUSDT", "1m").file("daily", "2025-01-01")
AGGS = Series("um", "aggTrades", "BTCUSDT").file("daily", "2025-01-01")
GOOD_TRADES = (
    f"1,100.5,0.25,25.125,{JAN1 * 1000 + 5},True,True\n"
    f"2,100.6,0.5,50.3,{JAN1 * 1000 + 9000},False,True\n"
).encode()
GOOD_KLINES = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
    f"taker_buy_quote_volume,ignore\n{JAN1},1,2,0.5,1.5,10,{JAN1 + 59_999},15,3,5,7,0\n"
).encode()
GOOD_AGGS = (
    "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker\n"
    f"7,100.5,0.25,10,14,{JAN1 + 5},true\n8,100.6,0.5,15,15,{JAN1 + 9},false\n"
    f"9,100.4,1.5,18,21,{JAN1 + 12},true\n"
).encode()
GOOD_LISTING = (
    b'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult '
    b'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><IsTruncated>true</IsTruncated>'
    b"<NextMarker>data/b</NextMarker><Contents><Key>data/a.zip</Key></Contents>"
    b"</ListBucketResult>"
)


def _read(tmp_dir, file, body: bytes, raw_zip: bool = False) -> list:
    path = tmp_dir / file.name
    if raw_zip:
        path.write_bytes(body)
    else:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(file.name[:-4] + ".csv", body)
        path.write_bytes(out.getvalue())
    tables = []
    try:
        for table in read_archive(path, file):
            times = table.column("open_time" if "open_time" in table.column_names else "time")
            assert all(file.start_ms <= t < file.end_ms for t in times.to_pylist())
            tables.append(table)
    except ArchiveError as exc:
        assert file.name in str(exc)
    return tables


@fuzz(0.5)
@given(mutated(GOOD_TRADES))
def test_fuzz_trades_csv(tmp_path_factory, body):
    _read(tmp_path_factory.mktemp("f"), TRADES, body)


@fuzz(0.5)
@given(mutated(GOOD_KLINES))
def test_fuzz_klines_csv(tmp_path_factory, body):
    _read(tmp_path_factory.mktemp("f"), KLINES, body)


@fuzz(0.5)
@given(mutated(GOOD_AGGS))
def test_fuzz_aggtrades_csv_and_the_sides_they_give(tmp_path_factory, body):
    for table in _read(tmp_path_factory.mktemp("f"), AGGS, body):
        aggs = Aggs.from_table(table)
        ids = np.arange(0, 40, dtype=np.int64)
        sells, covered = sides_from_aggs(ids, aggs)
        for trade_id, sell in zip(ids[covered], sells[covered], strict=True):
            holding = (aggs.first_id <= trade_id) & (trade_id <= aggs.last_id)
            assert sell in aggs.sell[holding]


def _zip_of(body: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(TRADES.name[:-4] + ".csv", body)
    return out.getvalue()


@fuzz(0.5)
@given(mutated(_zip_of(GOOD_TRADES), max_edits=3))
def test_fuzz_zip_bytes(tmp_path_factory, body):
    _read(tmp_path_factory.mktemp("f"), TRADES, body, raw_zip=True)


@fuzz(0.5)
@given(mutated(_zip_of(GOOD_TRADES * 50), max_edits=3))
def test_fuzz_zip_bytes_inflated_a_chunk_at_a_time(tmp_path_factory, body):
    # as a CSV above the in-memory size is read: inflated and parsed a block at a time
    with mock.patch.object(reader, "_BIG", 0), mock.patch.object(reader, "_BLOCK", 4096):
        _read(tmp_path_factory.mktemp("f"), TRADES, body, raw_zip=True)


@fuzz()
@given(mutated(GOOD_LISTING))
def test_fuzz_listing(body):
    try:
        page = parse_listing(body)
    except ArchiveError:
        return
    assert all(isinstance(k, str) and k for k in page.keys)


@fuzz()
@given(mutated(b"ab" * 32 + b"  X.zip\n"))
def test_fuzz_checksum(body):
    try:
        digest = parse_checksum(body, "X.zip")
    except ArchiveError:
        return
    assert len(digest) == 64 and int(digest, 16) >= 0
