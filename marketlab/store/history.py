"""``History``: closed klines from SQLite and Parquet together, through DuckDB.

SQLite holds what the collector wrote; Parquet holds what was exported. A candle in both is
returned once (SQLite's copy: it is the newer write). DuckDB reads the Parquet directly and
the SQLite rows as Arrow (DuckDB's SQLite extension would have to be downloaded at run time).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from marketlab.markets import comparable_quotes
from marketlab.records import KLINE_VALUES, Interval, normalize_symbol
from marketlab.rings import KLINE_COLUMNS, KlineBuffer, epoch_ms, utc_index, utc_times
from marketlab.settings import one_of
from marketlab.settings import rest_url as rest_url_check
from marketlab.store.parquet import has_parquet, parquet_glob, read_sqlite
from marketlab.store.perpetual_queries import PerpetualQueries
from marketlab.store.sqlite import StoreError, connect, last_open_times
from marketlab.store.tick_history import BookQueries, TickQueries
from marketlab.store.ticks import ticks_root
from marketlab.store.times import TimeLike, time_clauses, time_range
from marketlab.store.warm import warm
from marketlab.store.writer import KlineStore
from marketlab.stream.blocking import run_coroutine
from marketlab.venues import registry

log = logging.getLogger("marketlab.history")

_OHLC_SUMS = ("volume", "quote_volume", "trades", "taker_buy_volume", "taker_buy_quote_volume")


def klines_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Rows with open_time in ms → the frame shape of ``Lab.klines``."""
    out = pd.DataFrame(
        {c: df[c].to_numpy() for c in KLINE_VALUES if c != "open_time"},
        index=utc_index(df["open_time"].to_numpy(dtype=np.int64), "open_time"),
    )
    out["close_time"] = utc_times(out["close_time"])
    out["trades"] = out["trades"].astype("int64")
    out["closed"] = df["closed"].to_numpy(dtype=bool) if "closed" in df else True
    return out[list(KLINE_COLUMNS)]


class History(TickQueries, BookQueries, PerpetualQueries):
    """What marketlab stored: closed klines (``History(db="data/marketlab.sqlite",
    parquet="data/parquet")``) and, with a tick store, every trade (``ticks=``, by default the
    ``.ticks`` directory beside ``db``)."""

    def __init__(
        self,
        db: str | os.PathLike[str] | None = None,
        parquet: str | os.PathLike[str] | None = None,
        *,
        exchange: str = "binance",
        rest_url: str | None = None,
        ticks: str | os.PathLike[str] | None = None,
    ):
        if db is None and parquet is None:
            raise ValueError(
                "History needs a SQLite file (db=) or a Parquet directory (parquet=), or both"
            )
        self.db = Path(db) if db is not None else None
        self.parquet = Path(parquet) if parquet is not None else None
        self.ticks = (
            Path(ticks) if ticks is not None else ticks_root(db) if db is not None else None
        )
        if self.parquet is not None and self.parquet.exists() and not self.parquet.is_dir():
            raise StoreError(f"{self.parquet} is not a directory")
        if self.db is not None and self.db.exists():
            connect(self.db, readonly=True).close()  # a clear error now if it is not ours
        self.exchange = one_of("exchange", exchange, registry.names())
        self.rest_url = rest_url if rest_url is None else rest_url_check(rest_url, "rest_url")

    def __repr__(self) -> str:
        db = str(self.db) if self.db else None
        parquet = str(self.parquet) if self.parquet else None
        return f"History(db={db!r}, parquet={parquet!r})"

    # --- DuckDB plumbing -------------------------------------------------------------------

    def _duck(self, where: str = "", params: tuple = ()) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with a ``klines`` view over both tiers, filtered by ``where``."""
        con = duckdb.connect()
        branches = []
        cols = "exchange, symbol, interval, " + ", ".join(KLINE_VALUES)
        if self.db is not None and self.db.exists():
            conn = connect(self.db, readonly=True)
            try:
                table = read_sqlite(conn, where, params)
            finally:
                conn.close()
            con.register("sqlite_klines", table)
            branches.append(f"SELECT {cols}, 0 AS tier FROM sqlite_klines")
        if self.parquet is not None and has_parquet(self.parquet):
            glob = parquet_glob(self.parquet).replace("'", "''")
            filt = _duck_where(where, params)
            branches.append(
                f"SELECT {cols}, 1 AS tier FROM read_parquet('{glob}', hive_partitioning = true) "
                f"{filt}"
            )
        if not branches:
            con.execute(
                "CREATE TABLE klines AS SELECT * FROM (SELECT ''::VARCHAR AS exchange, "
                "''::VARCHAR AS symbol, ''::VARCHAR AS interval, "
                f"{', '.join(f'0::{_duck_type(c)} AS {c}' for c in KLINE_VALUES)}) "
                "WHERE false"
            ).fetchall()
            return con
        if len(branches) == 1:  # one tier: nothing to deduplicate
            con.execute(f"CREATE VIEW klines AS SELECT {cols} FROM ({branches[0]})").fetchall()
            return con
        union = " UNION ALL ".join(branches)
        con.execute(
            f"""CREATE VIEW klines AS SELECT {cols} FROM (
                  SELECT *, row_number() OVER (
                    PARTITION BY exchange, symbol, interval, open_time ORDER BY tier) AS rn
                  FROM ({union})) WHERE rn = 1"""
        ).fetchall()
        return con

    # --- queries ---------------------------------------------------------------------------

    def klines(
        self,
        symbol: str,
        interval: str = "1m",
        start: TimeLike = None,
        end: TimeLike = None,
        *,
        exchange: str | None = None,
    ) -> pd.DataFrame:
        """Closed candles with open time in [start, end], oldest first, shaped like
        ``Lab.klines``."""
        sym, iv = normalize_symbol(symbol), Interval(interval)
        s, e = time_range(start, end)
        where, params = _where(exchange or self.exchange, sym, iv, s, e)
        con = self._duck(where, params)
        df = con.execute("SELECT * FROM klines ORDER BY open_time").df()
        return klines_frame(df)

    def compare(
        self,
        symbol: str,
        interval: str = "1m",
        exchanges: Sequence[str] | None = None,
        start: TimeLike = None,
        end: TimeLike = None,
        *,
        symbols: dict[str, str] | None = None,
        quote_equivalents: dict[str, str] | None = None,
    ) -> pd.DataFrame:
        """One market's closed candles from several venues side by side: each venue's close,
        how far it lies from the venues' median close at that open time (basis points), the
        median, the widest gap between two venues (``spread_bps``) and how many venues had the
        candle. For finding price discrepancies between venues after the fact.

        ``exchanges``: the venues to compare (default: every venue with stored candles of it).
        ``symbols``: a venue's own symbol where it differs (``{"coinbase": "BTCUSD"}``).
        Quotes are never mixed silently: venues quoting in different assets are compared only
        when ``quote_equivalents`` says so (``{"USD": "USDT"}``: USD taken as USDT); ``attrs``
        says which symbol and quote each venue's column holds."""
        sym, iv = normalize_symbol(symbol), Interval(interval)
        per_venue = {
            one_of("exchange", v, registry.names()): normalize_symbol(s)
            for v, s in (symbols or {}).items()
        }
        venues = list(exchanges) if exchanges is not None else self._venues_with(sym, iv, per_venue)
        if len(venues) < 2:
            raise ValueError(
                f"compare needs two venues or more, got {venues} (stored candles of {sym} "
                f"{iv} are compared; name them with exchanges=[...])"
            )
        wanted = {one_of("exchange", v, registry.names()): per_venue.get(v, sym) for v in venues}
        quotes = comparable_quotes(wanted, quote_equivalents)
        closes = {
            venue: self.klines(market, iv, start, end, exchange=venue)["close"]
            for venue, market in wanted.items()
        }
        frame = pd.DataFrame(closes)  # aligned on open time: a venue without a candle is NaN
        median = frame.median(axis=1)
        out = frame.copy()
        for venue in wanted:
            out[f"{venue}_bps"] = (frame[venue] / median - 1.0) * 1e4
        out["median"] = median
        out["spread_bps"] = (frame.max(axis=1) - frame.min(axis=1)) / median * 1e4
        out["venues"] = frame.notna().sum(axis=1).astype("int64")
        out.index.name = "open_time"
        out.attrs.update(symbols=wanted, quotes=quotes, interval=str(iv))
        return out

    def _venues_with(self, symbol: str, iv: Interval, symbols: dict[str, str]) -> list[str]:
        """Venues with stored candles of ``symbol`` (or of their own symbol for it)."""
        con = self._duck()
        rows = con.execute(
            "SELECT DISTINCT exchange, symbol FROM klines WHERE interval = ? ORDER BY exchange",
            [str(iv)],
        ).fetchall()
        return [v for v, s in rows if s == symbols.get(v, symbol)]

    def sql(self, query: str) -> pd.DataFrame:
        """Any DuckDB SQL over the view ``klines`` (exchange, symbol, interval, open_time ms, …)
        and, with stored ticks, ``trades`` (exchange, symbol, time ms, trade_id, price, qty, side)
        and ``book`` (exchange, symbol, time ms, update_id, bid_price, bid_qty, ask_price, ask_qty
        as lists, best first), and a perpetual's ``funding``, ``open_interest`` and
        ``liquidations`` (see :meth:`funding`, :meth:`open_interest`, :meth:`liquidations`)."""
        if not isinstance(query, str) or not query.strip():
            raise ValueError(
                'sql() needs a query, e.g. "select symbol, count(*) from klines group by 1"'
            )
        con = self._duck()
        self._trades_view(con)
        self._perpetual_views(con)
        try:
            return con.execute(query).df()
        except duckdb.Error as exc:
            raise ValueError(f"query failed: {exc}") from None

    def resample(
        self,
        symbol: str,
        source: str = "1m",
        target: str = "1h",
        start: TimeLike = None,
        end: TimeLike = None,
    ) -> pd.DataFrame:
        """``target`` candles built from stored ``source`` candles: open first, high max, low
        min, close last, volumes and trade counts summed. ``closed`` is True only for a candle
        built from every source candle it spans."""
        src, dst = Interval(source), Interval(target)
        if not dst.calendar and (src.calendar or dst.ms % src.ms or dst.ms <= src.ms):
            raise ValueError(f"cannot build {dst} candles from {src} candles")
        if dst.calendar and (src.calendar or src.ms > 86_400_000):
            raise ValueError(f"cannot build {dst} candles from {src} candles")
        base = self.klines(symbol, src, start, end)
        if base.empty:
            return base
        opens = epoch_ms(base.index)
        keys = (
            np.fromiter((dst.open_of(int(t)) for t in opens), np.int64, len(opens))
            if dst.calendar or dst == "1w"
            else (opens // dst.ms) * dst.ms
        )
        g = base.assign(_key=keys).groupby("_key", sort=True)
        out = pd.DataFrame(
            {
                "open": g["open"].first(),
                "high": g["high"].max(),
                "low": g["low"].min(),
                "close": g["close"].last(),
                **{c: g[c].sum() for c in _OHLC_SUMS},
            }
        )
        group_opens = out.index.to_numpy(dtype=np.int64)
        next_opens = np.fromiter(
            (dst.next_open(int(t)) for t in group_opens), np.int64, len(group_opens)
        )
        expected = (next_opens - group_opens) // src.ms
        out["close_time"] = utc_times(next_opens - 1)
        out["closed"] = g.size().to_numpy() == expected
        out.index = utc_index(group_opens, "open_time")
        out["trades"] = out["trades"].astype("int64")
        return out[list(KLINE_COLUMNS)]

    def gaps(
        self, symbol: str, interval: str = "1m", start: TimeLike = None, end: TimeLike = None
    ) -> pd.DataFrame:
        """Missing candles as ranges: ``start``, ``end`` (open times) and ``missing`` (count).

        Without ``start``/``end`` the span is from the first to the last stored candle.
        """
        iv = Interval(interval)
        df = self.klines(symbol, iv, start, end)
        s, e = time_range(start, end)
        opens = [int(t) for t in epoch_ms(df.index)]
        lo: int | None
        if s is not None:
            lo = iv.open_of(s)
            if lo < s:
                lo = iv.next_open(lo)
        else:
            lo = opens[0] if opens else None
        hi = iv.open_of(e) if e is not None else (opens[-1] if opens else None)
        rows = []
        if lo is not None and hi is not None:
            have = set(opens)
            t, gap_start, gap_end, count = lo, None, lo, 0
            while t <= hi:
                if t not in have:
                    gap_start = t if gap_start is None else gap_start
                    gap_end, count = t, count + 1
                elif gap_start is not None:
                    rows.append((gap_start, gap_end, count))
                    gap_start, count = None, 0
                t = iv.next_open(t)
            if gap_start is not None:
                rows.append((gap_start, gap_end, count))
        out = pd.DataFrame(rows, columns=["start", "end", "missing"])
        out["start"] = utc_times(out["start"])
        out["end"] = utc_times(out["end"])
        out["missing"] = out["missing"].astype("int64")
        return out

    def last_open_times(self) -> dict[tuple[str, str], int]:
        """The newest stored open time (epoch ms) per (symbol, interval) of this exchange: where
        a collector resumes, so a restart fetches only what it missed. Empty without a
        database."""
        if self.db is None or not self.db.exists():
            return {}
        conn = connect(self.db, readonly=True)
        try:
            return last_open_times(conn, self.exchange)
        finally:
            conn.close()

    def recent(self, symbol: str, interval: str, limit: int) -> pd.DataFrame:
        """The newest ``limit`` closed candles from SQLite (to warm a Lab's frames)."""
        if self.db is None or not self.db.exists():
            return klines_frame(pd.DataFrame(columns=list(KLINE_VALUES)))
        conn = connect(self.db, readonly=True)
        try:
            cur = conn.execute(
                f"SELECT {', '.join(KLINE_VALUES)} FROM klines WHERE exchange = ? AND symbol = ? "
                "AND interval = ? "
                "ORDER BY open_time DESC LIMIT ?",
                (self.exchange, symbol, str(interval), limit),
            )
            rows = cur.fetchall()[::-1]
        finally:
            conn.close()
        return klines_frame(pd.DataFrame(rows, columns=list(KLINE_VALUES)))

    def warm(
        self, buffers: dict[tuple[str, Interval], KlineBuffer], capacity: int
    ) -> dict[tuple[str, str], int]:
        """Load the newest stored candles into a Lab's ``buffers``; returns where each series
        resumes: its newest candle, or the last before the first hole in what was loaded
        (candles a store could not write before a stop), so the feed fetches everything after."""
        if self.db is None:
            return {}
        return warm(self.db, self.exchange, buffers, capacity)

    # --- backfill --------------------------------------------------------------------------

    def backfill(
        self,
        symbols: Sequence[str],
        intervals: Sequence[str],
        start: TimeLike,
        end: TimeLike = None,
        *,
        progress: bool | None = None,
        rest_url: str | None = None,
    ) -> int:
        """Fetch closed candles from the exchange's REST API into the SQLite file; resumable.

        Each series resumes after the newest candle already stored (when that is inside the
        range), pages 1000 candles a request and keeps within the request-weight limit.
        Returns the number of candles written.
        """
        from marketlab.store.backfill import run_backfill

        if self.db is None:
            raise ValueError("backfill needs a SQLite file: History(db=...)")
        syms = [normalize_symbol(s) for s in symbols]
        ivs = [Interval(iv) for iv in intervals]
        s, e = time_range(start, end)
        if s is None:
            raise ValueError("backfill needs a start, e.g. start='2026-01-01'")
        url = rest_url or self.rest_url
        show = sys.stderr.isatty() if progress is None else progress
        with KlineStore(self.db) as store:
            return run_coroutine(run_backfill(store, self.exchange, syms, ivs, s, e, url, show))

    # --- the public data archive ----------------------------------------------------------

    def download(
        self,
        symbols: Sequence[str] | str,
        kinds: Sequence[str] | str = "klines:1m",
        start: str = "",
        end: str | None = None,
        *,
        market: str = "spot",
        fill: bool = True,
        archive_url: str | os.PathLike[str] | None = None,
        rest_url: str | None = None,
        parallel: int = 4,
        progress: bool | None = None,
    ) -> pd.DataFrame:
        """Years of history from Binance's public data archive (``data.binance.vision``, or
        ``archive_url`` / ``MARKETLAB_ARCHIVE_URL``: a mirror, or a local copy's folder):
        ``kinds`` (``klines:1m``, ``trades``,
        ``aggTrades``) of ``symbols`` from month or day ``start`` to ``end`` (included), each
        file checked against its ``.CHECKSUM`` and imported once into this History's stores,
        then audited and (``fill``) its holes fetched over REST: ``rest_url``, else this
        History's own for ``market="spot"``; for ``market="um"`` the USDⓈ-M base
        (``MARKETLAB_BINANCE_PERP_REST_URL``, else ``https://fapi.binance.com``). Resumable: files
        imported before are not fetched again. Returns :meth:`archive_report`."""
        from marketlab.store.archive import api

        if self.db is None:
            raise ValueError("download needs a SQLite file: History(db=...)")
        if not start:
            raise ValueError("download needs a start, e.g. start='2024-12'")
        run_coroutine(
            api.download(
                self.db,
                symbols,
                kinds,
                start,
                end,
                market=market,
                fill=fill,
                archive=archive_url,
                # this History's rest_url is the spot API: a perpetual's holes are filled
                # over the USDⓈ-M one (its environment variable, else Binance's)
                rest_url=rest_url or (self.rest_url if market == "spot" else None),
                ticks=self.ticks,
                parallel=parallel,
                progress=progress,
            )
        )
        return self.archive_report()

    def archive_report(self) -> pd.DataFrame:
        """What the last archive download found missing: one row per hole or refused file
        (``file kind symbol what start end first_id last_id missing filled``), and per
        one-sided day of trades the ``repaired`` and ``uncovered`` counts of its sides."""
        from marketlab.store.archive import api

        if self.db is None:
            raise ValueError("the archive report sits beside a SQLite file: History(db=...)")
        return api.last_report(self.db)


def _where(
    exchange: str, symbol: str, interval: str, start: int | None, end: int | None
) -> tuple[str, tuple]:
    times, bounds = time_clauses("open_time", start, end)
    clauses = ["exchange = ?", "symbol = ?", "interval = ?", *times]
    return "WHERE " + " AND ".join(clauses), (exchange, symbol, str(interval), *bounds)


def _duck_where(where: str, params: tuple) -> str:
    """The same filter as SQL literals for the Parquet branch (values are ours, not user SQL)."""
    if not where:
        return ""
    out = where
    for p in params:
        literal = str(int(p)) if isinstance(p, int) else "'" + str(p).replace("'", "''") + "'"
        out = out.replace("?", literal, 1)
    return out


def _duck_type(column: str) -> str:
    return "BIGINT" if column in ("open_time", "close_time", "trades") else "DOUBLE"
