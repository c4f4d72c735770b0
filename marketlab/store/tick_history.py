"""Questions asked of stored trades: the trades themselves, VWAP, and candles rebuilt from them.

Mixed into :class:`marketlab.store.history.History`. Each trade counts once however many times
it was written (the store may hold a repeat until a day is compacted).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from marketlab.records import Interval, normalize_symbol
from marketlab.rings import KLINE_COLUMNS, book_frame, utc_index, utc_times
from marketlab.store.parts import (
    DAY_MS,
    day_of,
    has_parts,
    kind_glob,
    overlapping,
    part_files,
    sql_files,
)
from marketlab.store.times import time_clauses, time_range
from marketlab.store.trade_parts import TRADE_COLUMNS, read_apart

_SIDES = pd.CategoricalDtype(["buy", "sell"])
_BY_ID = "ORDER BY trade_id"


class TickQueries:
    ticks: Path | None
    exchange: str

    def _trades_view(self, con: duckdb.DuckDBPyConnection) -> bool:
        """A ``trades`` view (exchange, symbol, time ms, trade_id, price, qty, side), each trade
        once, and a ``book`` view of the stored snapshots; False when no trade is stored."""
        if self.ticks is not None and has_parts(self.ticks, "book"):
            books = kind_glob(self.ticks, "book").replace("'", "''")
            con.execute(
                "CREATE VIEW book AS SELECT exchange, symbol, time, update_id, bid_price, bid_qty, "
                f"ask_price, ask_qty FROM read_parquet('{books}', hive_partitioning = true)"
            )
        if self.ticks is None or not has_parts(self.ticks, "trades"):
            return False
        glob = kind_glob(self.ticks, "trades").replace("'", "''")
        con.execute(
            "CREATE VIEW trades AS SELECT exchange, symbol, time, trade_id, price, qty, side "
            f"FROM read_parquet('{glob}', hive_partitioning = true) "
            "QUALIFY row_number() OVER (PARTITION BY exchange, symbol, trade_id) = 1"
        )
        return True

    def _trade_files(
        self, symbol: str, start: int | None, end: int | None, exchange: str | None
    ) -> list[Path]:
        if self.ticks is None:
            raise ValueError("this History has no tick store: create it with db= or ticks=")
        return part_files(
            self.ticks,
            "trades",
            exchange or self.exchange,
            normalize_symbol(symbol),
            *_days(start, end),
        )

    @staticmethod
    def _select_trades(
        select: str, files: list[Path], start: int | None, end: int | None, tail: str = ""
    ) -> pd.DataFrame:
        """``select`` over the trades of one symbol's ``files`` (:meth:`_trade_files`) in
        [start, end], each once, as rows of (time, trade_id, price, qty, sell): ``sell`` is 1
        when the taker sold."""
        con = duckdb.connect()
        try:
            if not files:
                return con.execute(
                    f"SELECT {select} FROM (SELECT 0::BIGINT AS time, 0::BIGINT AS "
                    "trade_id, 0.0::DOUBLE AS price, 0.0::DOUBLE AS qty, "
                    "0::TINYINT AS sell) WHERE false"
                ).df()
            names, where, params = _files_and_times(files, start, end)
            # parts name their id range: only overlapping parts can hold a trade twice
            once = (
                "QUALIFY row_number() OVER (PARTITION BY trade_id) = 1"
                if overlapping(files)
                else ""
            )
            rows = (
                "SELECT time, trade_id, price, qty, (side = 'sell')::TINYINT AS sell "
                f"FROM read_parquet([{names}]) WHERE {where} {once}"
            )
            if tail == _BY_ID and not once:
                tail = ""  # parts apart, each in id order and read in id order: already sorted
            return con.execute(f"SELECT {select} FROM ({rows}) {tail}", params).df()
        finally:
            con.close()

    def trades(
        self, symbol: str, start: Any = None, end: Any = None, *, exchange: str | None = None
    ) -> pd.DataFrame:
        """Stored trades with time in [start, end], oldest first, shaped like ``Lab.trades``."""
        s, e = time_range(start, end)
        files = self._trade_files(symbol, s, e, exchange)
        cols = read_apart(files, s, e) if files and not overlapping(files) else None
        if cols is None:  # a trade may be held twice (or a part is unusual): DuckDB keeps one
            df = self._select_trades("*", files, s, e, _BY_ID)
            cols = {name: df[name].to_numpy(dtype=dtype) for name, dtype in TRADE_COLUMNS.items()}
        sides = pd.Categorical.from_codes(cols["sell"], dtype=_SIDES)
        return pd.DataFrame(
            {
                "price": cols["price"],
                "qty": cols["qty"],
                "side": sides,
                "trade_id": cols["trade_id"],
            },
            index=utc_index(cols["time"], "time"),
            copy=False,
        )

    def trade_bars(
        self,
        symbol: str,
        interval: str = "1m",
        start: Any = None,
        end: Any = None,
        *,
        exchange: str | None = None,
    ) -> pd.DataFrame:
        """Candles rebuilt from stored trades, shaped like ``Lab.klines`` (open and close by
        trade id, taker buy volumes from buyer-taker trades). Intervals up to a day."""
        ms = _fixed_ms(interval)
        s, e = time_range(start, end)
        df = self._select_trades(
            f"(time // {ms}) * {ms} AS open_time, arg_min(price, trade_id) AS open, max(price) AS "
            "high, "
            "min(price) AS low, arg_max(price, trade_id) AS close, sum(qty) AS volume, "
            "sum(price * qty) AS quote_volume, count(*) AS trades, "
            "coalesce(sum(qty) FILTER (WHERE sell = 0), 0) AS taker_buy_volume, "
            "coalesce(sum(price * qty) FILTER (WHERE sell = 0), 0) AS taker_buy_quote_volume",
            self._trade_files(symbol, s, e, exchange),
            s,
            e,
            "GROUP BY 1 ORDER BY 1",
        )
        opens = df["open_time"].to_numpy(dtype=np.int64)
        out = pd.DataFrame(
            {c: df[c].to_numpy() for c in KLINE_COLUMNS[:9]}, index=utc_index(opens, "open_time")
        )
        out["trades"] = out["trades"].astype("int64")
        out["close_time"] = utc_times(opens + ms - 1)
        out["closed"] = True
        return out[list(KLINE_COLUMNS)]

    def vwap(
        self,
        symbol: str,
        interval: str = "1m",
        start: Any = None,
        end: Any = None,
        *,
        exchange: str | None = None,
    ) -> pd.DataFrame:
        """Volume-weighted average price per ``interval`` from stored trades, with its volume and
        trade count."""
        ms = _fixed_ms(interval)
        s, e = time_range(start, end)
        df = self._select_trades(
            f"(time // {ms}) * {ms} AS open_time, sum(price * qty) / sum(qty) AS vwap, "
            "sum(qty) AS volume, count(*) AS trades",
            self._trade_files(symbol, s, e, exchange),
            s,
            e,
            "GROUP BY 1 ORDER BY 1",
        )
        return pd.DataFrame(
            {
                "vwap": df["vwap"].to_numpy(dtype=np.float64),
                "volume": df["volume"].to_numpy(dtype=np.float64),
                "trades": df["trades"].to_numpy(dtype=np.int64),
            },
            index=utc_index(df["open_time"].to_numpy(dtype=np.int64), "open_time"),
        )


def _book_frame_at(row: Mapping[Hashable, Any]) -> pd.DataFrame:
    bids = list(zip(row["bid_price"], row["bid_qty"], strict=True))
    asks = list(zip(row["ask_price"], row["ask_qty"], strict=True))
    df = book_frame(bids, asks)
    df.attrs.update(
        time=pd.Timestamp(int(row["time"]), unit="ms", tz="UTC"), update_id=int(row["update_id"])
    )
    return df


def _files_and_times(
    files: list[Path], start: int | None, end: int | None
) -> tuple[str, str, list[Any]]:
    """``read_parquet``'s file list, and the WHERE clause and parameters of a time range."""
    clauses, params = time_clauses("time", start, end)
    return sql_files(files), " AND ".join(["true", *clauses]), params


class BookQueries:
    """Stored book snapshots (``store=(..., "book")``): one at a time, as series, and the
    spread and imbalance researchers compute from them."""

    ticks: Path | None
    exchange: str

    def _books(
        self,
        symbol: str,
        start: int | None,
        end: int | None,
        exchange: str | None,
        select: str = "*",
        tail: str = "ORDER BY time, update_id",
        kind: str = "book",
    ) -> pd.DataFrame:
        if self.ticks is None:
            raise ValueError("this History has no tick store: create it with db= or ticks=")
        files = part_files(
            self.ticks,
            kind,
            exchange or self.exchange,
            normalize_symbol(symbol),
            *_days(start, end),
        )
        relation = (
            "SELECT 0::BIGINT AS time, 0::BIGINT AS first_update_id, 0::BIGINT AS update_id, "
            "[]::DOUBLE[] AS bid_price, []::DOUBLE[] AS bid_qty, []::DOUBLE[] AS ask_price, "
            "[]::DOUBLE[] AS ask_qty WHERE false"
        )
        if kind == "book":
            relation = relation.replace("0::BIGINT AS first_update_id, ", "")
        names, where, params = _files_and_times(files, start, end)
        if files:  # a snapshot stored twice (a recording ingested again) is read once
            once = (
                "QUALIFY row_number() OVER (PARTITION BY update_id) = 1"
                if overlapping(files)
                else ""
            )
            relation = f"SELECT * FROM read_parquet([{names}]) WHERE {where} {once}"
        else:
            params = []
        con = duckdb.connect()
        try:
            return con.execute(f"SELECT {select} FROM ({relation}) {tail}", params).df()
        finally:
            con.close()

    def book(self, symbol: str, at: Any = None, *, exchange: str | None = None) -> pd.DataFrame:
        """The stored book as it was at ``at`` (the newest snapshot at or before it; the newest
        of all without it), shaped like ``Lab.book``; ``attrs`` carry its time and update id."""
        from marketlab.store.times import to_ms

        when = to_ms(at, "at")
        df = self._books(
            symbol, None, when, exchange, tail="ORDER BY time DESC, update_id DESC LIMIT 1"
        )
        if df.empty:
            raise LookupError(
                f"no stored book of {normalize_symbol(symbol)}"
                + (f" at or before {pd.Timestamp(when, unit='ms', tz='UTC')}" if when else "")
            )
        return _book_frame_at(df.iloc[0].to_dict())

    def book_series(
        self,
        symbol: str,
        start: Any = None,
        end: Any = None,
        levels: int = 5,
        *,
        exchange: str | None = None,
    ) -> pd.DataFrame:
        """One row per stored snapshot: ``bid_price_0`` … ``ask_qty_<levels-1>`` (0 is the best)."""
        if not isinstance(levels, int) or levels < 1:
            raise ValueError(f"levels must be a positive integer, got {levels!r}")
        s, e = time_range(start, end)
        cols = ", ".join(
            f"{side}_{what}[{i + 1}] AS {side}_{what}_{i}"
            for side in ("bid", "ask")
            for what in ("price", "qty")
            for i in range(levels)
        )
        df = self._books(symbol, s, e, exchange, f"time, update_id, {cols}")
        out = df.drop(columns=["time"]).set_index(
            utc_index(df["time"].to_numpy(dtype=np.int64), "time")
        )
        return out

    def book_deltas(
        self, symbol: str, start: Any = None, end: Any = None, *, exchange: str | None = None
    ) -> pd.DataFrame:
        """Every stored book update (``store=(..., "book_deltas")``) as it came: its update ids
        and the levels it set, a quantity of 0 removing the level."""
        s, e = time_range(start, end)
        df = self._books(symbol, s, e, exchange, tail="ORDER BY update_id", kind="book_delta")
        return df.drop(columns=["time"]).set_index(
            utc_index(df["time"].to_numpy(dtype=np.int64), "time")
        )

    def spread(
        self, symbol: str, start: Any = None, end: Any = None, *, exchange: str | None = None
    ) -> pd.DataFrame:
        """Best bid and ask of each stored snapshot, the mid, the spread and the spread in basis
        points of the mid."""
        series = self.book_series(symbol, start, end, levels=1, exchange=exchange)
        bid, ask = series["bid_price_0"], series["ask_price_0"]
        mid = (bid + ask) / 2
        return pd.DataFrame(
            {
                "bid": bid,
                "ask": ask,
                "mid": mid,
                "spread": ask - bid,
                "spread_bps": (ask - bid) / mid * 1e4,
            }
        )

    def imbalance(
        self,
        symbol: str,
        start: Any = None,
        end: Any = None,
        levels: int = 5,
        *,
        exchange: str | None = None,
    ) -> pd.Series:
        """(bid quantity - ask quantity) / (both) over the top ``levels`` of each snapshot:
        +1 all bids, -1 all asks."""
        series = self.book_series(symbol, start, end, levels=levels, exchange=exchange)
        bids = series[[f"bid_qty_{i}" for i in range(levels)]].sum(axis=1, min_count=1)
        asks = series[[f"ask_qty_{i}" for i in range(levels)]].sum(axis=1, min_count=1)
        return ((bids - asks) / (bids + asks)).rename("imbalance")


def _fixed_ms(interval: str) -> int:
    iv = Interval(interval)
    if iv.ms > DAY_MS or iv.ms <= 0:
        raise ValueError(
            f"interval {interval!r}: bars from trades are built for intervals up to 1d "
            "(weeks and months do not start on epoch boundaries)"
        )
    return iv.ms


def _days(start: int | None, end: int | None) -> tuple[str, str]:
    """The ``date=`` partitions a time range [start, end] can touch."""
    return (
        day_of(start) if start is not None else "",
        day_of(end) if end is not None else "9999-12-31",
    )
