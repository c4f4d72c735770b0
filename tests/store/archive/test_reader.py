"""The archive's files read right, from bytes written here as the archive writes them (columns
from binance/binance-public-data's README): header rows or none, milliseconds before
2025-01-01 and microseconds after, typed columns, and bad files refused by name."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from marketlab.store.archive.layout import (
    ArchiveError,
    ArchiveFile,
    Series,
    parse_key,
    parse_kinds,
    parse_when,
    plan_files,
)
from marketlab.store.archive.listing import parse_checksum, parse_listing
from marketlab.store.archive.reader import read_archive

DEC31 = 1_735_603_200_000  # 2024-12-31T00:00Z
JAN1 = 1_735_689_600_000  # 2025-01-01T00:00Z


def write_zip(path: Path, csv_name: str, text: str) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(csv_name, text)
    return path


def rows_of(tmp_path: Path, f: ArchiveFile, text: str) -> dict:
    path = write_zip(tmp_path / f.name, f.name[:-4] + ".csv", text)
    tables = list(read_archive(path, f))
    out: dict = {}
    for t in tables:
        for k, v in t.to_pydict().items():
            out.setdefault(k, []).extend(v)
    return out


def test_keys_name_the_documented_layout_and_parse_back():
    f = Series("spot", "klines", "BTCUSDT", "1M").file("monthly", "2024-12")
    assert f.key == "data/spot/monthly/klines/BTCUSDT/1mo/BTCUSDT-1mo-2024-12.zip"
    g = Series("um", "aggTrades", "ETHUSDT").file("daily", "2025-01-01")
    assert g.key == "data/futures/um/daily/aggTrades/ETHUSDT/ETHUSDT-aggTrades-2025-01-01.zip"
    for x in (f, g):
        assert parse_key(x.key) == x
    assert parse_key(g.key + ".CHECKSUM") is None
    assert parse_key("data/spot/daily/trades/BTCUSDT/ETHUSDT-trades-2025-01-01.zip") is None
    assert parse_kinds("klines:1m,trades,aggTrades,klines:1mo") == [
        ("klines", "1m"),
        ("trades", ""),
        ("aggTrades", ""),
        ("klines", "1M"),
    ]
    with pytest.raises(ValueError, match="klines need an interval"):
        parse_kinds("klines")
    with pytest.raises(ValueError, match="not a date"):
        Series("spot", "trades", "BTCUSDT").file("daily", "2025-02-30")


def test_whole_months_come_monthly_the_rest_daily_and_absent_days_are_named():
    s = Series("spot", "trades", "BTCUSDT")
    listed = {
        s.file("monthly", "2024-11").key,
        s.file("monthly", "2024-12").key,
        *(s.file("daily", f"2025-01-0{d}").key for d in (1, 2, 4)),
    }
    plan = plan_files(s, parse_when("2024-11-15"), parse_when("2025-01", end=True), listed)
    names = [f.name for f in plan.files]
    # November is not whole in the span: its days come daily, and none is listed
    assert names == [
        "BTCUSDT-trades-2024-12.zip",
        "BTCUSDT-trades-2025-01-01.zip",
        "BTCUSDT-trades-2025-01-02.zip",
        "BTCUSDT-trades-2025-01-04.zip",
    ]
    assert plan.missing == [f"2024-11-{d}" for d in range(15, 31)] + ["2025-01-03"]
    assert plan.unpublished == [f"2025-01-{d:02d}" for d in range(5, 32)]


def test_spot_milliseconds_before_2025_and_microseconds_after(tmp_path):
    s = Series("spot", "trades", "BTCUSDT")
    dec = rows_of(
        tmp_path, s.file("daily", "2024-12-31"), f"7,100.5,0.25,25.125,{DEC31 + 5},True,True\n"
    )
    jan = rows_of(
        tmp_path,
        s.file("daily", "2025-01-01"),
        f"8,101.0,0.5,50.5,{(JAN1 + 7) * 1000 + 123},False,True\n"
        f"9,101.5,1.0,101.5,{(JAN1 + 9) * 1000},True,True\n",
    )
    assert dec == {
        "time": [DEC31 + 5],
        "trade_id": [7],
        "price": [100.5],
        "qty": [0.25],
        "side": ["sell"],
    }
    assert jan["time"] == [JAN1 + 7, JAN1 + 9] and jan["trade_id"] == [8, 9]
    assert jan["side"] == ["buy", "sell"]
    # a monthly aggTrades file across nothing but December, in ms
    agg = rows_of(
        tmp_path,
        Series("spot", "aggTrades", "BTCUSDT").file("monthly", "2024-12"),
        f"3,100.0,2.0,10,12,{DEC31 + 1},False,True\n",
    )
    assert agg == {
        "time": [DEC31 + 1],
        "agg_id": [3],
        "price": [100.0],
        "qty": [2.0],
        "first_id": [10],
        "last_id": [12],
        "side": ["buy"],
    }


def test_futures_header_rows_and_their_shorter_column_lists(tmp_path):
    um = rows_of(
        tmp_path,
        Series("um", "trades", "BTCUSDT").file("daily", "2025-01-01"),
        f"id,price,qty,quote_qty,time,is_buyer_maker\n11,95000.1,0.002,190.0002,{JAN1 + 1},true\n",
    )
    assert um["time"] == [JAN1 + 1] and um["side"] == ["sell"]
    kl = rows_of(
        tmp_path,
        Series("um", "klines", "BTCUSDT", "1m").file("daily", "2025-01-01"),
        "open_time,open,high,low,close,volume,close_time,quote_volume,count,"
        "taker_buy_volume,taker_buy_quote_volume,ignore\n"
        f"{JAN1},1,2,0.5,1.5,10,{JAN1 + 59_999},15,3,5,7,0\n",
    )
    assert kl["open_time"] == [JAN1] and kl["close_time"] == [JAN1 + 59_999]
    assert kl["trades"] == [3] and kl["quote_volume"] == [15.0]
    agg = rows_of(
        tmp_path,
        Series("um", "aggTrades", "BTCUSDT").file("daily", "2025-01-01"),
        "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker\n"
        f"5,1.5,2,20,21,{JAN1 + 3},false\n",
    )
    assert agg["agg_id"] == [5] and agg["first_id"] == [20] and agg["last_id"] == [21]


def test_spot_klines_in_microseconds_keep_their_close_times(tmp_path):
    f = Series("spot", "klines", "BTCUSDT", "1m").file("daily", "2025-01-01")
    kl = rows_of(
        tmp_path,
        f,
        f"{JAN1 * 1000},1,2,0.5,1.5,10,{(JAN1 + 60_000) * 1000 - 1},15,3,5,7,0\n",
    )
    assert kl["open_time"] == [JAN1] and kl["close_time"] == [JAN1 + 59_999]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (f"1,100,1,100,{DEC31},True,True\n", "neither milliseconds nor microseconds"),
        (f"1,100,1,100,{JAN1 + 1},True,True\n2,100,1,100,{JAN1 * 2},True,True\n", "row 2"),
        (f"1,100,1,100,{JAN1 + 1},maybe,True\n", "BTCUSDT-trades-2025-01-01.zip"),
        (f"1,100,1,{JAN1 + 1}\n", "4 columns"),
        (f"1,,1,100,{JAN1 + 1},True,True\n", "row 1 has no price"),
        (f"1,-5,1,100,{JAN1 + 1},True,True\n", "row 1 has price"),
        (f"1,inf,1,100,{JAN1 + 1},True,True\n", "row 1 has price"),
    ],
)
def test_a_bad_file_is_refused_by_name_and_place(tmp_path, text, error):
    f = Series("spot", "trades", "BTCUSDT").file("daily", "2025-01-01")
    with pytest.raises(ArchiveError, match=error) as info:
        rows_of(tmp_path, f, text)
    assert f.name in str(info.value)


def test_not_a_zip_and_a_misaligned_candle_are_refused(tmp_path):
    f = Series("spot", "klines", "BTCUSDT", "1h").file("daily", "2024-12-31")
    (tmp_path / f.name).write_bytes(b"<html>not found</html>")
    with pytest.raises(ArchiveError, match="not a zip"):
        list(read_archive(tmp_path / f.name, f))
    with pytest.raises(ArchiveError, match="not a 1h candle"):
        rows_of(tmp_path, f, f"{DEC31 + 60_000},1,1,1,1,1,{DEC31 + 3_659_999},1,1,1,1,0\n")


def test_listing_pages_and_checksum_lines():
    page = parse_listing(
        b'<?xml version="1.0" encoding="UTF-8"?>'
        b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<Name>data.binance.vision</Name><Prefix>data/</Prefix><Marker></Marker>"
        b"<IsTruncated>true</IsTruncated>"
        b"<Contents><Key>data/a.zip</Key><Size>1234</Size></Contents>"
        b"<Contents><Key>data/b.zip</Key></Contents>"
        b"</ListBucketResult>"
    )
    assert page.keys == ["data/a.zip", "data/b.zip"] and page.next_marker == "data/b.zip"
    assert page.sizes == [1234, 0]
    last = parse_listing(
        b"<ListBucketResult><IsTruncated>false</IsTruncated><NextMarker>x</NextMarker>"
        b"</ListBucketResult>"
    )
    assert last.keys == [] and last.next_marker is None
    with pytest.raises(ArchiveError, match="NoSuchBucket"):
        parse_listing(b"<Error><Code>NoSuchBucket</Code></Error>")
    digest = "ab" * 32
    assert (
        parse_checksum(f"{digest}  X-trades-2025-01-01.zip\n".encode(), "X-trades-2025-01-01.zip")
        == digest
    )
    with pytest.raises(ArchiveError, match="names another file"):
        parse_checksum(f"{digest}  Y.zip\n".encode(), "X.zip")
    with pytest.raises(ArchiveError, match="not a 'sha256  name' line"):
        parse_checksum(b"<html>", "X.zip")


def test_a_large_file_is_read_in_blocks_with_the_same_rows(tmp_path, monkeypatch):
    from marketlab.store.archive import reader

    f = Series("spot", "trades", "BTCUSDT").file("daily", "2025-01-01")
    text = "".join(
        f"{i},100.5,0.25,25.125,{(JAN1 + i) * 1000},{i % 2 == 0},True\n" for i in range(1, 2001)
    )
    whole = rows_of(tmp_path, f, text)
    monkeypatch.setattr(reader, "_BIG", 1000)  # any CSV above 1000 bytes goes in blocks
    monkeypatch.setattr(reader, "_BLOCK", 4096)
    path = write_zip(tmp_path / "again.zip", f.name[:-4] + ".csv", text)
    tables = list(read_archive(path, f))
    assert len(tables) > 5  # read a block at a time
    blocks: dict = {}
    for t in tables:
        for k, v in t.to_pydict().items():
            blocks.setdefault(k, []).extend(v)
    assert blocks == whole and whole["trade_id"] == list(range(1, 2001))
    assert whole["time"][:2] == [JAN1 + 1, JAN1 + 2]


def read_in_blocks(monkeypatch, streamed: bool) -> None:
    """With ``streamed``, any CSV above 1000 bytes is inflated and parsed a block at a time."""
    from marketlab.store.archive import reader

    if streamed:
        monkeypatch.setattr(reader, "_BIG", 1000)
        monkeypatch.setattr(reader, "_BLOCK", 4096)


def _trades_text(n: int) -> str:
    return "".join(
        f"{i},100.5,0.25,25.125,{(JAN1 + i) * 1000},{i % 2 == 0},True\n" for i in range(1, n + 1)
    )


def _patch_crc(path: Path, crc: int) -> None:
    """Write another CRC-32 into the zip's local header and its central directory entry."""
    data = bytearray(path.read_bytes())
    for signature, at in ((b"PK\x03\x04", 14), (b"PK\x01\x02", 16)):
        start = data.index(signature)
        data[start + at : start + at + 4] = crc.to_bytes(4, "little")
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("streamed", [False, True])
def test_a_member_whose_crc_is_wrong_is_a_damaged_zip(tmp_path, monkeypatch, streamed):
    read_in_blocks(monkeypatch, streamed)
    f = Series("spot", "trades", "BTCUSDT").file("daily", "2025-01-01")
    text = _trades_text(500)
    path = write_zip(tmp_path / f.name, f.name[:-4] + ".csv", text)
    good = zipfile.ZipFile(path).getinfo(f.name[:-4] + ".csv").CRC
    _patch_crc(path, good ^ 1)
    with pytest.raises(ArchiveError, match=r"BTCUSDT-trades-2025-01-01\.zip: damaged zip.*CRC"):
        list(read_archive(path, f))


@pytest.mark.parametrize("streamed", [False, True])
def test_stored_members_and_deflated_ones_give_the_same_rows(tmp_path, monkeypatch, streamed):
    read_in_blocks(monkeypatch, streamed)
    f = Series("spot", "trades", "BTCUSDT").file("daily", "2025-01-01")
    text = _trades_text(300)
    deflated = rows_of(tmp_path, f, text)
    stored = tmp_path / "stored.zip"
    with zipfile.ZipFile(stored, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(f.name[:-4] + ".csv", text)
    tables = list(read_archive(stored, f))
    got: dict = {}
    for t in tables:
        for k, v in t.to_pydict().items():
            got.setdefault(k, []).extend(v)
    assert got == deflated and deflated["trade_id"] == list(range(1, 301))


@pytest.mark.parametrize("streamed", [False, True])
def test_a_member_longer_than_its_directory_says_is_a_damaged_zip(tmp_path, monkeypatch, streamed):
    read_in_blocks(monkeypatch, streamed)
    f = Series("spot", "trades", "BTCUSDT").file("daily", "2025-01-01")
    text = _trades_text(400)
    path = write_zip(tmp_path / f.name, f.name[:-4] + ".csv", text)
    data = bytearray(path.read_bytes())
    size = len(text).to_bytes(4, "little")
    smaller = (len(text) - 10).to_bytes(4, "little")
    for signature, at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # the inflated size
        start = data.index(signature)
        assert data[start + at : start + at + 4] == size
        data[start + at : start + at + 4] = smaller
    path.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match=r"damaged zip.*inflates to more"):
        list(read_archive(path, f))
