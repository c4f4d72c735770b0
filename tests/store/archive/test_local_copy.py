"""A local copy of the archive (its data/ tree with the .CHECKSUM files) as the base: listed
from its folders, each file checked in place and never deleted, a mismatch refused by name."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from marketlab.store.archive.imports import Manifest, import_ticks
from marketlab.store.archive.layout import Series
from marketlab.store.archive.reader import read_archive
from marketlab.store.history import History

JAN1 = 1_735_689_600_000


def publish(root: Path, name_day: str, text: str, *, wrong_checksum: bool = False) -> Path:
    f = Series("spot", "trades", "BTCUSDT").file("daily", name_day)
    path = root / f.key
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f.name[:-4] + ".csv", text)
    digest = hashlib.sha256(path.read_bytes() + (b"x" if wrong_checksum else b"")).hexdigest()
    (root / (f.key + ".CHECKSUM")).write_text(f"{digest}  {f.name}\n")
    return path


def test_a_local_copy_imports_in_place_and_refuses_a_mismatch(tmp_path, capsys):
    root = tmp_path / "mirror"
    good = publish(
        root,
        "2025-01-01",
        f"1,100.5,0.25,25.125,{(JAN1 + 5) * 1000},True,True\n"
        f"2,100.7,0.5,50.35,{(JAN1 + 9) * 1000 + 7},False,True\n",
    )
    publish(root, "2025-01-02", "3,1,1,1,1735776000000000,True,True\n", wrong_checksum=True)
    h = History(db=tmp_path / "m.sqlite")
    report = h.download(
        "BTCUSDT", "trades", "2025-01-01", "2025-01-03", archive_url=root, progress=True
    )
    bar = capsys.readouterr().err  # tqdm: bytes read, files and rows imported
    assert "archive" in bar and "files=1/2" in bar and "rows=2" in bar
    trades = h.trades("BTCUSDT")
    assert list(trades["trade_id"]) == [1, 2]
    assert [int(t.value // 1_000_000) for t in trades.index] == [JAN1 + 5, JAN1 + 9]
    assert list(trades["side"]) == ["sell", "buy"]
    whats = dict(zip(report["file"], report["what"], strict=True))
    assert whats["BTCUSDT-trades-2025-01-02.zip"].startswith("refused: checksum mismatch")
    assert whats["BTCUSDT-trades-2025-01-03.zip"] == "not yet published: 2025-01-03 to 2025-01-03"
    assert good.exists()  # read in place, not consumed
    # a second run: the imported file is not read again; the refused one is refused again
    good.write_bytes(b"changed after import")
    again = h.download(
        "BTCUSDT", "trades", "2025-01-01", "2025-01-03", archive_url=f"file://{root}"
    )
    assert list(h.trades("BTCUSDT")["trade_id"]) == [1, 2]
    assert again["what"].str.startswith("refused").sum() == 1
    with pytest.raises(ValueError, match="no data/ folder"):
        h.download("BTCUSDT", "trades", "2025-01-01", archive_url=tmp_path / "nowhere")


def test_usdm_aggtrades_land_where_the_lab_keeps_a_perpetuals_trades(tmp_path):
    root = tmp_path / "mirror"
    f = Series("um", "aggTrades", "BTCUSDT").file("daily", "2025-01-01")
    path = root / f.key
    path.parent.mkdir(parents=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(
            f.name[:-4] + ".csv",
            "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,"
            f"is_buyer_maker\n7,95000.5,0.01,70,72,{JAN1 + 3},true\n",
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (root / (f.key + ".CHECKSUM")).write_text(f"{digest}  {f.name}\n")
    h = History(db=tmp_path / "m.sqlite")
    # named as the Lab names it; market="um" with "BTCUSDT" is the same series
    h.download("BTCUSDT-PERP", "aggTrades", "2025-01-01", market="um", archive_url=root)
    rows = h.sql(
        f"select exchange, symbol, trade_id, time, price, qty, side from read_parquet("
        f"'{tmp_path}/m.ticks/kind=trades/**/*.parquet', hive_partitioning = true)"
    )
    assert rows.to_dict("records") == [
        {
            "exchange": "binance",
            "symbol": "BTCUSDT-PERP",
            "trade_id": 7,
            "time": JAN1 + 3,
            "price": 95000.5,
            "qty": 0.01,
            "side": "sell",
        }
    ]
    assert list(h.trades("BTCUSDT-PERP")["trade_id"]) == [7]
    assert not (tmp_path / "m.ticks" / "kind=agg_trades").exists()
    with pytest.raises(ValueError, match="is a perpetual: its archive is market='um'"):
        h.download("BTCUSDT-PERP", "aggTrades", "2025-01-01", archive_url=root)


def test_a_month_over_days_imported_before_writes_each_trade_once(tmp_path):
    s = Series("spot", "trades", "BTCUSDT")
    rows = [f"{i},100,1,100,{(JAN1 + i * 3_600_000) * 1000},True,True\n" for i in range(1, 40)]
    root = tmp_path / "ticks"
    for f, text in (
        (s.file("daily", "2025-01-01"), "".join(rows[:20])),  # ids 1-20, the first day
        (s.file("monthly", "2025-01"), "".join(rows)),  # ids 1-39 over two days
    ):
        path = tmp_path / f.name
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr(f.name[:-4] + ".csv", text)
        written = sum(import_ticks(root, f, t) for t in read_archive(path, f))
        assert written == (20 if f.period == "daily" else 19)
    on_disk = pq.read_table(str(root / "kind=trades")).column("trade_id").to_pylist()
    assert sorted(on_disk) == list(range(1, 40))  # each id once in the files themselves


def test_a_manifest_entry_kept_under_another_name_is_imported_again(tmp_path):
    spot = Series("spot", "trades", "BTCUSDT").file("daily", "2025-01-01")
    perp = Series("um", "aggTrades", "BTCUSDT").file("daily", "2025-01-01")
    path = tmp_path / "m.archive.json"
    # entries as written before perpetuals were kept under the Lab's name (no stored_as)
    old = {k.key: {"sha256": "ab" * 32, "rows": 5} for k in (spot, perp)}
    path.write_text(json.dumps({"imported": old, "report": []}))
    m = Manifest(path)
    assert m.done(spot) and not m.done(perp)  # the perpetual's rows went elsewhere then
    m.add(perp, "cd" * 32, 5)
    again = Manifest(path)
    assert again.done(perp) and again.done(perp, "cd" * 32) and not again.done(perp, "ab" * 32)
