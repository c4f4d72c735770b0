"""Parquet export and DuckDB queries over SQLite + Parquet."""

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from marketlab.records import Kline
from marketlab.store.history import History
from marketlab.store.parquet import export
from marketlab.store.sqlite import StoreError
from marketlab.store.writer import KlineStore

T0 = 1_767_225_600_000  # 2026-01-01


def candles(n: int, symbol: str = "BTCUSDT", start: int = 0, seed: int = 1) -> list[Kline]:
    rng = np.random.default_rng(seed)
    out, price = [], 100.0
    for i in range(start, start + n):
        o = price
        c = round(o + rng.normal(0, 1), 2)
        h, l = (
            max(o, c) + round(abs(rng.normal(0, 0.5)), 2),
            min(o, c) - round(abs(rng.normal(0, 0.5)), 2),
        )
        v = round(abs(rng.normal(5, 2)), 5)
        t = T0 + i * 60_000
        out.append(
            Kline(
                symbol,
                "1m",
                t,
                o,
                h,
                l,
                c,
                v,
                t + 59_999,
                round(v * c, 4),
                int(rng.integers(1, 50)),
                round(v / 2, 5),
                round(v * c / 2, 4),
                True,
            )
        )
        price = c
    return out


def store(db, klines) -> None:
    with KlineStore(db) as s:
        s.add_many("binance", klines)


def test_round_trip_values_are_exact(tmp_path):
    db = tmp_path / "m.sqlite"
    ks = candles(90)
    store(db, ks)
    df = History(db=db).klines("BTCUSDT", "1m")
    assert len(df) == 90 and df.index.name == "open_time" and str(df.index.tz) == "UTC"
    assert list(df["close"]) == [k.close for k in ks] and list(df["trades"]) == [
        k.trades for k in ks
    ]
    assert df["closed"].all()
    part = History(db=db).klines("btcusdt", "1m", start="2026-01-01 00:10", end=T0 + 19 * 60_000)
    assert len(part) == 10 and part.index[0] == pd.Timestamp("2026-01-01 00:10", tz="UTC")


def test_export_is_hive_partitioned_zstd_and_incremental(tmp_path):
    db, out = tmp_path / "m.sqlite", tmp_path / "pq"
    store(db, candles(100) + candles(50, symbol="ETHUSDT", seed=2))
    first = export(db, out)
    assert (first.rows, first.series) == (150, 2)
    part = out / "exchange=binance" / "symbol=BTCUSDT" / "interval=1m" / "year=2026" / "month=1"
    files = list(part.glob("*.parquet"))
    assert files and pq.ParquetFile(files[0]).metadata.row_group(0).column(0).compression == "ZSTD"
    assert export(db, out).rows == 0  # nothing new, nothing written
    store(db, [*candles(20, start=100), candles(1, start=500)[0]])
    assert export(db, out).rows == 21
    counts = History(parquet=out).sql(
        "select count(*) n, count(distinct (symbol, open_time)) d from klines"
    )
    assert counts["n"].iloc[0] == counts["d"].iloc[0] == 171


def test_sqlite_and_parquet_together_hold_no_duplicates(tmp_path):
    db, out = tmp_path / "m.sqlite", tmp_path / "pq"
    ks = candles(120)
    store(db, ks[:80])
    export(db, out)  # candles 0..79 now in both tiers
    store(db, ks[60:])  # 60..119 in SQLite (60..79 in both)
    h = History(db=db, parquet=out)
    df = h.klines("BTCUSDT", "1m")
    assert list(df.index.asi8 // 1_000_000) == [k.open_time for k in ks]
    assert list(df["close"]) == [k.close for k in ks]
    only_parquet = History(parquet=out).klines("BTCUSDT", "1m")
    assert len(only_parquet) == 80
    n = h.sql("select count(*) as n from klines where symbol = 'BTCUSDT'")["n"].iloc[0]
    assert n == 120


def test_resample_equals_a_direct_computation(tmp_path):
    db = tmp_path / "m.sqlite"
    ks = candles(60 * 5 + 17)  # five whole hours and a partial one
    store(db, ks)
    h = History(db=db)
    got = h.resample("BTCUSDT", "1m", "1h")
    minute = h.klines("BTCUSDT", "1m")
    want = minute.resample("1h").agg(
        {
            "open": "first",
            "high": "max",
            "low": "min",
            "close": "last",
            "volume": "sum",
            "quote_volume": "sum",
            "trades": "sum",
            "taker_buy_volume": "sum",
            "taker_buy_quote_volume": "sum",
        }
    )
    pd.testing.assert_frame_equal(got[want.columns], want, check_freq=False, check_names=False)
    assert list(got["closed"]) == [True] * 5 + [False]  # the last hour is incomplete
    assert got["close_time"].iloc[0] == pd.Timestamp("2026-01-01 00:59:59.999", tz="UTC")
    with pytest.raises(ValueError, match="cannot build 1m candles from 1h"):
        h.resample("BTCUSDT", "1h", "1m")


def test_gap_report(tmp_path):
    db = tmp_path / "m.sqlite"
    ks = candles(30)
    store(db, [k for i, k in enumerate(ks) if i not in (5, 6, 7, 20)])
    gaps = History(db=db).gaps("BTCUSDT", "1m")
    assert list(gaps["missing"]) == [3, 1]
    assert gaps["start"].iloc[0] == pd.Timestamp(T0 + 5 * 60_000, unit="ms", tz="UTC")
    assert gaps["end"].iloc[0] == pd.Timestamp(T0 + 7 * 60_000, unit="ms", tz="UTC")
    wider = History(db=db).gaps("BTCUSDT", "1m", start=T0 - 120_000, end=T0 + 31 * 60_000)
    assert list(wider["missing"]) == [2, 3, 1, 2]


def test_bad_queries_name_the_problem(tmp_path):
    db = tmp_path / "m.sqlite"
    store(db, candles(5))
    h = History(db=db)
    with pytest.raises(ValueError, match=r"end .* is before start"):
        h.klines("BTCUSDT", "1m", start="2026-02-01", end="2026-01-01")
    with pytest.raises(ValueError, match="invalid interval"):
        h.klines("BTCUSDT", "2m")
    with pytest.raises(ValueError, match="invalid symbol"):
        h.klines("BTC USDT", "1m")
    with pytest.raises(ValueError, match="cannot read 'yesterday-ish'"):
        h.klines("BTCUSDT", "1m", start="yesterday-ish")
    with pytest.raises(ValueError, match="query failed"):
        h.sql("select nope from klines")
    assert h.klines("ETHUSDT", "1m").empty  # a symbol with no data is not an error
    with pytest.raises(ValueError, match="needs a SQLite file"):
        History()
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(StoreError, match=r"junk.db is not a SQLite file"):
        History(db=junk)
    with pytest.raises(StoreError, match="not a directory"):
        export(db, junk)


def shifted(klines: list[Kline], symbol: str, factor: float, skip: int | None = None) -> list:
    """The same candles on another venue: its symbol, prices times ``factor``, one missing."""
    out = []
    for i, k in enumerate(klines):
        if i == skip:
            continue
        o, h, l, c = (round(x * factor, 6) for x in (k.open, k.high, k.low, k.close))
        out.append(
            Kline(symbol, k.interval, k.open_time, o, h, l, c, *[getattr(k, f) for f in TAIL])
        )
    return out


TAIL = (
    "volume",
    "close_time",
    "quote_volume",
    "trades",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "closed",
)


def test_compare_puts_each_venues_close_against_the_median_and_never_mixes_quotes(tmp_path):
    db = tmp_path / "m.sqlite"
    base = candles(30)
    with KlineStore(db) as s:
        s.add_many("binance", base)
        s.add_many("okx", shifted(base, "BTCUSDT", 1.001))
        s.add_many("bybit", shifted(base, "BTCUSDT", 0.998, skip=5))
        s.add_many("okx", shifted(base, "BTCUSDC", 1.0))
    h = History(db=db)
    df = h.compare("BTCUSDT", "1m")  # the venues with stored BTCUSDT candles
    assert list(df.columns[:3]) == ["binance", "bybit", "okx"] and len(df) == 30
    assert df.attrs["quotes"] == {"binance": "USDT", "bybit": "USDT", "okx": "USDT"}
    row = df.iloc[0]
    median = sorted([base[0].close, base[0].close * 1.001, base[0].close * 0.998])[1]
    assert row["median"] == pytest.approx(median)
    assert row["okx_bps"] == pytest.approx((base[0].close * 1.001 / median - 1) * 1e4, abs=0.01)
    assert row["spread_bps"] == pytest.approx(30.0, abs=0.05)  # 1.001 against 0.998
    assert row["venues"] == 3
    gap = df.iloc[5]  # bybit has no candle there: the others are compared, bybit's cells empty
    assert gap["venues"] == 2 and np.isnan(gap["bybit"]) and np.isnan(gap["bybit_bps"])
    with pytest.raises(ValueError, match=r"different assets.*BTCUSDC on okx"):
        h.compare("BTCUSDT", "1m", ["binance", "okx"], symbols={"okx": "BTCUSDC"})
    both = h.compare(
        "BTCUSDT",
        "1m",
        ["binance", "okx"],
        symbols={"okx": "BTCUSDC"},
        quote_equivalents={"usdc": "usdt"},
    )
    assert both.attrs["quotes"] == {"binance": "USDT", "okx": "USDC as USDT"}
    assert both.attrs["symbols"] == {"binance": "BTCUSDT", "okx": "BTCUSDC"}
    assert (both["spread_bps"].abs() < 1e-6).all()
    with pytest.raises(ValueError, match="two venues or more"):
        h.compare("ETHUSDT", "1m")
