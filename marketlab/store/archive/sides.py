"""Trades files whose sides are not the venue's, found and set right from the aggregate trades.

The archive has shipped trades files with ``is_buyer_maker`` true in every row: USDⓈ-M
futures from 2026-07-03 on ("all tickers are broken", binance/binance-public-data #476) and
COIN-M from 2026-07-01 on (#492, where the aggTrades archive "is healthy and disagrees with
the trades file for the same trade IDs"). Read as they are, every trade of those days is a
sell. A day is taken for such a file when all of at least :data:`ONE_SIDED_MIN` trades have
the same side. A real day of one-sided trading is possible only when it is tiny: one taker
order that sweeps the book fills many trades of one side, but a thousand trades on one side
and not one on the other is not a market, it is an export.

Every trade an aggregate trade aggregates (its ``first_id`` to ``last_id``) shares its taker
side, so each trade's side is the side of the aggregate trade whose id range holds its id:
:func:`sides_from_aggs` finds it for millions of trades by a binary search over the aggregate
trades' first ids. :func:`rewrite_day_sides` puts the sides into a stored day. Pure code over
arrays and the tick store's files; no network.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from marketlab.store.archive.imports import write_id_parts
from marketlab.store.parts import part_files
from marketlab.store.trade_parts import ascending, sell_flags

ONE_SIDED_MIN = 1_000  # trades of one day, all of one side, that cannot be the market's
ONE_SIDED = "one-sided"  # how the audit's entry for such a day begins
ISSUES = "binance-public-data #476, #492"
_SIDES = pa.array(["buy", "sell"])


def one_sided_what(trades: int, sells: int) -> str:
    """The audit's words for a day whose ``trades`` all went one way (``sells`` of them sells)."""
    side = "sell" if sells == trades else "buy"
    return (
        f"{ONE_SIDED}: every one of {trades} trades is a {side}: the sides are not the "
        f"venue's ({ISSUES})"
    )


def is_one_sided(trades: int, sells: int) -> bool:
    """Whether a day of ``trades`` with ``sells`` of them sells is an archive export's, not the
    market's: every trade the same side, and too many for chance."""
    return trades >= ONE_SIDED_MIN and sells in (0, trades)


@dataclass(frozen=True)
class Aggs:
    """Aggregate trades' trade id ranges and taker sides (1: sell), ordered by first id."""

    first_id: np.ndarray
    last_id: np.ndarray
    sell: np.ndarray

    @classmethod
    def of(cls, first_id: np.ndarray, last_id: np.ndarray, sell: np.ndarray) -> Aggs:
        order = np.argsort(first_id, kind="stable")
        return cls(
            np.asarray(first_id, np.int64)[order],
            np.asarray(last_id, np.int64)[order],
            np.asarray(sell, np.int8)[order],
        )

    @classmethod
    def from_table(cls, table: pa.Table) -> Aggs:
        """From a table with ``first_id``, ``last_id`` and ``side`` columns (the archive's
        aggTrades as read, or the tick store's ``kind=agg_trades`` parts)."""
        return cls.of(
            table.column("first_id").to_numpy(),
            table.column("last_id").to_numpy(),
            sell_flags(table.column("side")),
        )

    def __len__(self) -> int:
        return len(self.first_id)


def sides_from_aggs(trade_ids: np.ndarray, aggs: Aggs) -> tuple[np.ndarray, np.ndarray]:
    """Each trade's taker side (1: sell) from the aggregate trade whose ``first_id..last_id``
    holds its id, and whether one does; a trade no aggregate trade covers gets 0 and False."""
    ids = np.asarray(trade_ids, np.int64)
    if not len(aggs):
        return np.zeros(len(ids), np.int8), np.zeros(len(ids), bool)
    at = np.searchsorted(aggs.first_id, ids, side="right") - 1
    inside = at >= 0
    at = np.where(inside, at, 0)
    covered = inside & (ids <= aggs.last_id[at])
    return np.where(covered, aggs.sell[at], 0).astype(np.int8), covered


@dataclass(frozen=True)
class Repair:
    """What setting a day's sides did: trades given their aggregate trade's side, trades
    no aggregate trade covered (they keep the side the file gave), and how many of the
    first changed side."""

    repaired: int
    uncovered: int
    changed: int


def rewrite_day_sides(
    root: Path, kind: str, exchange: str, symbol: str, day: str, aggs: Aggs
) -> Repair:
    """Set the sides of one stored day of trades from ``aggs``: its parts read, each trade
    once in id order, replaced by one part with the sides set (written whole before the old
    parts go, as compaction does: a reader meanwhile sees each trade once by id)."""
    parts = part_files(root, kind, exchange, symbol, day, day)
    if not parts:
        return Repair(0, 0, 0)
    table = pq.read_table([str(p) for p in parts])
    ids = table.column("trade_id").to_numpy()
    if not ascending(ids):  # parts that meet or overlap: each trade once, in id order
        order = np.argsort(ids, kind="stable")
        first = np.ones(len(ids), dtype=bool)
        first[1:] = ids[order][1:] != ids[order][:-1]
        table = table.take(pa.array(order[first], pa.int64()))
        ids = ids[order][first]
    was = sell_flags(table.column("side"))
    sells, covered = sides_from_aggs(ids, aggs)
    now = np.where(covered, sells, was).astype(np.int8)
    result = Repair(int(covered.sum()), int((~covered).sum()), int((now != was).sum()))
    if result.changed == 0 and len(parts) == 1:
        return result
    side = pa.DictionaryArray.from_arrays(pa.array(now, pa.int8()), _SIDES)
    table = table.set_column(table.schema.get_field_index("side"), "side", side)
    write_id_parts(root, kind, exchange, symbol, table, "trade_id")
    for p in parts:  # the new part is down whole: the old ones may go
        p.unlink()
    return result
