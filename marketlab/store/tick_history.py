"""Questions asked of stored trades: the trades themselves, VWAP, and candles rebuilt from them.

Mixed into :class:`marketlab.store.history.History`. Each trade counts once however many times
it was written (the store may hold a repeat until a day is compacted).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from marketlab.frames import KLINE_COLUMNS, utc_index, utc_times
from marketlab.records import Interval, normalize_symbol
from marketlab.store.ticks import has_trades, trades_glob
from marketlab.store.times import _range

_SIDES = pd.CategoricalDtype(["buy", "sell"])
_DAY_MS = 86_400_000


class TickQueries:
    ticks: Path | None
    exchange: str

    def _trades_view(self, con: duckdb.DuckDBPyConnection) -> bool:
        """A ``trades`` view (exchange, symbol, time ms, trade_id, price, qty, side), each trade
        once; False when nothing is stored."""
        if self.ticks is None or not has_trades(self.ticks):
            return False
        glob = trades_glob(self.ticks).replace("'", "''")
        con.execute(
            "CREATE VIEW trades AS SELECT exchange, symbol, time, trade_id, price, qty, side "
            f"FROM read_parquet('{glob}', hive_partitioning = true) "
            "QUALIFY row_number() OVER (PARTITION BY exchange, symbol, trade_id) = 1"
        )
        return True

    def _select_trades(self, select: str, symbol: str, start: int | None, end: int | None,
                       exchange: str | None, tail: str = "") -> pd.DataFrame:  # fmt: skip
        """``select`` over one symbol's stored trades in [start, end], each once, as rows of
        (time, trade_id, price, qty, sell): ``sell`` is 1 when the taker sold."""
        if self.ticks is None:
            raise ValueError("this History has no tick store: create it with db= or ticks=")
        files = _trade_files(
            self.ticks, exchange or self.exchange, normalize_symbol(symbol), start, end
        )
        con = duckdb.connect()
        try:
            if not files:
                return con.execute(f"SELECT {select} FROM (SELECT 0::BIGINT AS time, 0::BIGINT AS "
                                   "trade_id, 0.0::DOUBLE AS price, 0.0::DOUBLE AS qty, "
                                   "0::TINYINT AS sell) WHERE false").df()  # fmt: skip
            names = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
            where, params = ["true"], []
            if start is not None:
                where.append("time >= ?")
                params.append(start)
            if end is not None:
                where.append("time <= ?")
                params.append(end)
            # parts name their id range: only overlapping parts can hold a trade twice
            once = (
                "QUALIFY row_number() OVER (PARTITION BY trade_id) = 1" if _overlap(files) else ""
            )
            rows = (
                "SELECT time, trade_id, price, qty, (side = 'sell')::TINYINT AS sell "
                f"FROM read_parquet([{names}]) WHERE {' AND '.join(where)} {once}"
            )
            return con.execute(f"SELECT {select} FROM ({rows}) {tail}", params).df()
        finally:
            con.close()

    def trades(self, symbol: str, start: Any = None, end: Any = None, *,
               exchange: str | None = None) -> pd.DataFrame:  # fmt: skip
        """Stored trades with time in [start, end], oldest first, shaped like ``Lab.trades``."""
        s, e = _range(start, end)
        df = self._select_trades("*", symbol, s, e, exchange, "ORDER BY trade_id")
        sides = pd.Categorical.from_codes(df["sell"].to_numpy(dtype=np.int8), dtype=_SIDES)
        return pd.DataFrame(
            {"price": df["price"].to_numpy(dtype=np.float64), "qty": df["qty"].to_numpy(dtype=np.float64),
             "side": sides, "trade_id": df["trade_id"].to_numpy(dtype=np.int64)},
            index=utc_index(df["time"].to_numpy(dtype=np.int64), "time"),
        )  # fmt: skip

    def trade_bars(self, symbol: str, interval: str = "1m", start: Any = None, end: Any = None,
                   *, exchange: str | None = None) -> pd.DataFrame:  # fmt: skip
        """Candles rebuilt from stored trades, shaped like ``Lab.klines`` (open and close by
        trade id, taker buy volumes from buyer-taker trades). Intervals up to a day."""
        ms = _fixed_ms(interval)
        s, e = _range(start, end)
        df = self._select_trades(
            f"(time // {ms}) * {ms} AS open_time, arg_min(price, trade_id) AS open, max(price) AS high, "
            "min(price) AS low, arg_max(price, trade_id) AS close, sum(qty) AS volume, "
            "sum(price * qty) AS quote_volume, count(*) AS trades, "
            "coalesce(sum(qty) FILTER (WHERE sell = 0), 0) AS taker_buy_volume, "
            "coalesce(sum(price * qty) FILTER (WHERE sell = 0), 0) AS taker_buy_quote_volume",
            symbol, s, e, exchange, "GROUP BY 1 ORDER BY 1",
        )  # fmt: skip
        opens = df["open_time"].to_numpy(dtype=np.int64)
        out = pd.DataFrame(
            {c: df[c].to_numpy() for c in KLINE_COLUMNS[:9]}, index=utc_index(opens, "open_time")
        )
        out["trades"] = out["trades"].astype("int64")
        out["close_time"] = utc_times(opens + ms - 1)
        out["closed"] = True
        return out[list(KLINE_COLUMNS)]

    def vwap(self, symbol: str, interval: str = "1m", start: Any = None, end: Any = None, *,
             exchange: str | None = None) -> pd.DataFrame:  # fmt: skip
        """Volume-weighted average price per ``interval`` from stored trades, with its volume and
        trade count."""
        ms = _fixed_ms(interval)
        s, e = _range(start, end)
        df = self._select_trades(
            f"(time // {ms}) * {ms} AS open_time, sum(price * qty) / sum(qty) AS vwap, "
            "sum(qty) AS volume, count(*) AS trades",
            symbol, s, e, exchange, "GROUP BY 1 ORDER BY 1",
        )  # fmt: skip
        return pd.DataFrame(
            {"vwap": df["vwap"].to_numpy(dtype=np.float64), "volume": df["volume"].to_numpy(dtype=np.float64),
             "trades": df["trades"].to_numpy(dtype=np.int64)},
            index=utc_index(df["open_time"].to_numpy(dtype=np.int64), "open_time"),
        )  # fmt: skip


def _trade_files(root: Path, exchange: str, symbol: str, start: int | None,
                 end: int | None) -> list[Path]:  # fmt: skip
    """The parts of one symbol whose day can hold a time in [start, end]."""
    base = root / "kind=trades" / f"exchange={exchange}" / f"symbol={symbol}"
    if not base.is_dir():
        return []
    first = _day(start) if start is not None else ""
    last = _day(end) if end is not None else "9999-12-31"
    return sorted(f for d in base.glob("date=*") if first <= d.name[5:] <= last
                  for f in d.glob("part-*.parquet"))  # fmt: skip


def _overlap(files: list[Path]) -> bool:
    """True when two parts' id ranges (``part-<first>-<last>-…``) meet or a name is foreign."""
    ranges = []
    for f in files:
        pieces = f.name.split("-")
        if len(pieces) < 3 or not (pieces[1].isdigit() and pieces[2].isdigit()):
            return True
        ranges.append((int(pieces[1]), int(pieces[2])))
    ranges.sort()
    return any(b[0] <= a[1] for a, b in itertools.pairwise(ranges))


def _fixed_ms(interval: str) -> int:
    iv = Interval(interval)
    if iv.ms > _DAY_MS or iv.ms <= 0:
        raise ValueError(
            f"interval {interval!r}: bars from trades are built for intervals up to 1d "
            "(weeks and months do not start on epoch boundaries)"
        )
    return iv.ms


def _day(ms: int) -> str:
    return pd.Timestamp(ms, unit="ms", tz="UTC").strftime("%Y-%m-%d")
