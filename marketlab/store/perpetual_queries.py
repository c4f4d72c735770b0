"""Questions asked of a perpetual's stored history: the fundings settled and open interest
(SQLite, beside the klines) and the liquidations (Parquet, beside the trades).

Mixed into :class:`marketlab.store.history.History`. Each funding, reading and liquidation
counts once however many times it was written.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from marketlab.records import normalize_symbol
from marketlab.rings import utc_index
from marketlab.store.liquidation_parts import liquidations_query
from marketlab.store.parts import day_of, has_parts, kind_glob, part_files
from marketlab.store.perpetuals import funding_frame, open_interest_frame
from marketlab.store.sqlite import connect
from marketlab.store.times import TimeLike, time_clauses, time_range

_LIQUIDATED = pd.CategoricalDtype(["long", "short"])
_TABLES = {  # the perpetuals' tables of the database, as History.sql shows them
    "funding": "exchange, symbol, funding_time, rate, mark",
    "open_interest": "exchange, symbol, time, open_interest, value",
}


class PerpetualQueries:
    db: Path | None
    ticks: Path | None
    exchange: str

    def funding(
        self,
        symbol: str,
        start: TimeLike = None,
        end: TimeLike = None,
        *,
        exchange: str | None = None,
    ) -> pd.DataFrame:
        """Fundings settled with ``funding_time`` in [start, end], oldest first: index
        ``funding_time`` (UTC), ``rate`` (a fraction per funding interval; positive: longs paid
        shorts) and ``mark`` (the mark price settled at; NaN where the venue does not say)."""
        s, e = time_range(start, end)
        return self._sqlite(funding_frame, symbol, s, e, exchange, "funding_time", ("rate", "mark"))

    def open_interest(
        self,
        symbol: str,
        start: TimeLike = None,
        end: TimeLike = None,
        *,
        exchange: str | None = None,
    ) -> pd.DataFrame:
        """Open interest with ``time`` in [start, end], oldest first: index ``time`` (UTC),
        ``open_interest`` (base asset) and ``value`` (quote asset; NaN where not given): what
        the collector read live (one reading every 10 s at most) and the venue's history of
        every 5 minutes (Binance's last 30 days, OKX's last five, Bybit's back to the launch)."""
        s, e = time_range(start, end)
        columns = ("open_interest", "value")
        return self._sqlite(open_interest_frame, symbol, s, e, exchange, "time", columns)

    def _sqlite(
        self,
        frame_of: Callable[[sqlite3.Connection, str, str, int | None, int | None], pd.DataFrame],
        symbol: str,
        start: int | None,
        end: int | None,
        exchange: str | None,
        index: str,
        columns: tuple[str, ...],
    ) -> pd.DataFrame:
        empty = pd.DataFrame(
            {c: np.array([], np.float64) for c in columns},
            index=utc_index(np.array([], np.int64), index),
        )
        if self.db is None or not self.db.exists():
            return empty
        conn = connect(self.db, readonly=True)
        try:
            return frame_of(conn, exchange or self.exchange, normalize_symbol(symbol), start, end)
        except sqlite3.OperationalError:  # a file written before perpetuals were kept
            return empty
        finally:
            conn.close()

    def _perpetual_views(self, con: duckdb.DuckDBPyConnection) -> None:
        """Views ``funding`` (exchange, symbol, funding_time ms, rate, mark) and
        ``open_interest`` (exchange, symbol, time ms, open_interest, value) of the database and,
        with stored liquidations, ``liquidations`` (exchange, symbol, time ms, side, price, qty,
        order_price, sampled, event_time), each liquidation once."""
        if self.db is not None and self.db.exists():
            conn = connect(self.db, readonly=True)
            try:
                for table, columns in _TABLES.items():
                    try:
                        rows = pd.read_sql_query(f"SELECT {columns} FROM {table}", conn)
                    except pd.errors.DatabaseError:  # a file from before perpetuals were kept
                        continue
                    con.register(f"sqlite_{table}", rows)
                    con.execute(f"CREATE VIEW {table} AS SELECT * FROM sqlite_{table}")
            finally:
                conn.close()
        if self.ticks is not None and has_parts(self.ticks, "liquidations"):
            glob = kind_glob(self.ticks, "liquidations").replace("'", "''")
            con.execute(
                "CREATE VIEW liquidations AS SELECT exchange, symbol, time, side::VARCHAR AS side, "
                "price, qty, order_price, sampled, event_time "
                f"FROM read_parquet('{glob}', hive_partitioning = true) QUALIFY row_number() "
                "OVER (PARTITION BY exchange, symbol, time, side, price, qty) = 1"
            )

    def liquidations(
        self,
        symbol: str,
        start: TimeLike = None,
        end: TimeLike = None,
        *,
        exchange: str | None = None,
    ) -> pd.DataFrame:
        """Stored liquidations (``store=(..., "liquidations")``) with ``time`` in [start, end],
        oldest first, each once: index ``time`` (UTC), ``side`` (the liquidated position's:
        long/short), ``price`` (average fill), ``qty`` (base asset), ``notional``,
        ``order_price`` and ``sampled`` (the venue streams a sample, not every one)."""
        if self.ticks is None:
            raise ValueError("this History has no tick store: create it with db= or ticks=")
        s, e = time_range(start, end)
        files = part_files(
            self.ticks,
            "liquidations",
            exchange or self.exchange,
            normalize_symbol(symbol),
            day_of(s) if s is not None else "",
            day_of(e) if e is not None else "9999-12-31",
        )
        if files:
            clauses, params = time_clauses("time", s, e)
            where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
            con = duckdb.connect()
            try:
                df = con.execute(liquidations_query(files, where), params).df()
            finally:
                con.close()
        else:
            df = pd.DataFrame(
                {
                    "time": np.array([], np.int64),
                    "side": np.array([], object),
                    **{c: np.array([], np.float64) for c in ("price", "qty", "order_price")},
                    "sampled": np.array([], bool),
                }
            )
        price, qty = df["price"].to_numpy(np.float64), df["qty"].to_numpy(np.float64)
        return pd.DataFrame(
            {
                "side": pd.Categorical(df["side"].to_numpy(object), dtype=_LIQUIDATED),
                "price": price,
                "qty": qty,
                "notional": price * qty,
                "order_price": df["order_price"].to_numpy(np.float64),
                "sampled": df["sampled"].to_numpy(bool),
            },
            index=utc_index(df["time"].to_numpy(np.int64), "time"),
        )
