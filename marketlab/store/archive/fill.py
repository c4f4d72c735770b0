"""Holes the archive left, fetched over the venue's REST API where it still has them: candles
by time (``/api/v3/klines``, as a backfill pages them), trades by id
(``/api/v3/historicalTrades``), aggregate trades by id (``/api/v3/aggTrades``); for USDⓈ-M
perpetuals candles over ``/fapi/v1/klines`` and aggregate trades by id over
``/fapi/v1/aggTrades?fromId=`` (the perpetual REST client's). A perpetual's single trades
stay listed: ``/fapi/v1/historicalTrades`` wants an API key (Binance's futures connector:
"historical_trades requires api key in request header"), and marketlab holds no key."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import numpy as np
import pyarrow as pa

from marketlab.numbers import DECODE_ERRORS
from marketlab.records import Interval
from marketlab.store.archive.audit import Hole
from marketlab.store.archive.imports import tick_kind, unseen, write_id_parts
from marketlab.store.archive.layout import ArchiveError, Series
from marketlab.store.archive.reader import AGG_SCHEMA
from marketlab.store.backfill import closed_kline_pages
from marketlab.store.sqlite import UPSERT, connect, kline_row
from marketlab.store.ticks import trade_table
from marketlab.stream.rest import RestError

log = logging.getLogger("marketlab.archive")
_PAGE = 1000


class _AggRow(msgspec.Struct):
    a: int
    p: float
    q: float
    f: int
    l: int
    T: int
    m: bool


_agg_rows = msgspec.json.Decoder(list[_AggRow], strict=False)  # prices come as strings


async def fill_hole(
    hole: Hole, series: Series, db: Path, root: Path, rest: Any, rest_url: str
) -> bool:
    """Fetch what ``hole`` misses into the store; True when every missing row came."""
    try:
        if series.kind == "klines" and hole.what == "candles missing":
            return await _fill_klines(hole, series, db, rest)
        if hole.first_id is None or hole.last_id is None:
            return False  # a short day with its ids whole: nothing to fetch by id
        if series.market == "um" and series.kind == "trades":
            log.info("archive: %s %s left listed (no public REST by id)", hole.file, hole.what)
            return False
        if series.kind == "trades" or series.market == "um":  # the client's trades by id
            got = await _fill_trades(hole, series, root, rest)
        else:
            got = await _fill_aggs(hole, series, root, rest_url)
    except (RestError, ValueError, ArchiveError, aiohttp.ClientError, TimeoutError) as exc:
        log.warning("archive: %s %s not filled: %s", hole.file, hole.what, exc)
        return False
    return got == hole.last_id - hole.first_id + 1


async def _fill_klines(hole: Hole, series: Series, db: Path, rest: Any) -> bool:
    assert hole.start is not None and hole.end is not None and hole.missing is not None
    now = await rest.server_time()
    iv = Interval(series.interval)
    got = 0
    conn = connect(db)
    try:
        async for closed in closed_kline_pages(
            rest, series.store_symbol, iv, hole.start, hole.end, now
        ):
            rows = [kline_row(series.exchange, k, now) for k in closed if k.open_time <= hole.end]
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(UPSERT, rows)
            conn.execute("COMMIT")
            got += len(rows)
    finally:
        conn.close()
    return got >= hole.missing


async def _fill_trades(hole: Hole, series: Series, root: Path, rest: Any) -> int:
    """By id over the client's ``trades_from``: spot's single trades, or a perpetual's
    aggregated ones (its client gives them as trades, the aggregate id as the trade id)."""
    assert hole.first_id is not None and hole.last_id is not None
    got, cursor = 0, hole.first_id
    while cursor <= hole.last_id:
        trades = await rest.trades_from(
            series.store_symbol, cursor, min(_PAGE, hole.last_id - cursor + 1)
        )
        trades = [t for t in trades if cursor <= t.trade_id <= hole.last_id]
        if not trades:
            break
        got += _write(root, series, trade_table(trades))
        cursor = trades[-1].trade_id + 1
    return got


async def _fill_aggs(hole: Hole, series: Series, root: Path, rest_url: str) -> int:
    assert hole.first_id is not None and hole.last_id is not None
    got, cursor = 0, hole.first_id
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        while cursor <= hole.last_id:
            params: dict[str, str | int] = {
                "symbol": series.symbol,
                "fromId": cursor,
                "limit": _PAGE,
            }
            async with session.get(f"{rest_url}/api/v3/aggTrades", params=params) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise ArchiveError(f"/api/v3/aggTrades answered {resp.status}: {body[:200]!r}")
            try:
                rows = [r for r in _agg_rows.decode(body) if cursor <= r.a <= hole.last_id]
            except DECODE_ERRORS as exc:  # nesting past the decoder's depth included
                raise ArchiveError(f"/api/v3/aggTrades: {exc}") from None
            if not rows:
                break
            table = pa.Table.from_arrays(
                [
                    pa.array(np.array([r.T for r in rows], np.int64)),
                    pa.array(np.array([r.a for r in rows], np.int64)),
                    pa.array(np.array([r.p for r in rows], np.float64)),
                    pa.array(np.array([r.q for r in rows], np.float64)),
                    pa.array(np.array([r.f for r in rows], np.int64)),
                    pa.array(np.array([r.l for r in rows], np.int64)),
                    pa.DictionaryArray.from_arrays(
                        pa.array(np.array([r.m for r in rows], np.int8), pa.int8()),
                        pa.array(["buy", "sell"]),
                    ),
                ],
                schema=AGG_SCHEMA,
            )
            got += _write(root, series, table)
            cursor = rows[-1].a + 1
    return got


def _write(root: Path, series: Series, table: pa.Table) -> int:
    kind, id_col = tick_kind(series)
    n = table.num_rows
    table = unseen(root, kind, series.exchange, series.store_symbol, table, id_col)
    if table.num_rows:
        write_id_parts(root, kind, series.exchange, series.store_symbol, table, id_col)
    return n
