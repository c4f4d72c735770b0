"""A Lab's perpetuals kept as history: fundings and open interest beside the klines (SQLite),
liquidations beside the trades (Parquet), the fundings settled fetched from the venue's REST
(no stream says one was settled) and handed on like any record (to the frames' subscribers and
the bus).

The Lab hands these functions the parts they work on; nothing here reaches into the Lab."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from marketlab.records import Funding, Liquidation, OpenInterest, Record
from marketlab.store.perpetual_backfill import keep_perpetual_history

KEEP_EVERY_MS = 10_000  # open interest kept of a symbol at most this often (venue time)

if TYPE_CHECKING:
    from marketlab.lab.market_state import MarketState
    from marketlab.store.perpetuals import PerpetualStore
    from marketlab.store.ticks import TickWriter


def perpetual_sink(
    exchange: str, store: PerpetualStore | None, ticks: TickWriter | None
) -> Callable[[Record], None] | None:
    """What keeps a venue's perpetual records: fundings and open interest to ``store`` (a
    reading every ``KEEP_EVERY_MS`` at most: a venue pushing it with every ticker would fill
    the file), liquidations to ``ticks`` (None where neither is kept)."""
    if store is None and ticks is None:
        return None
    kept_at: dict[str, int] = {}  # the time of the last open interest reading kept, per symbol

    def keep(r: Record) -> None:
        if type(r) is Liquidation:
            if ticks is not None:
                ticks.add_liquidation(r)
        elif store is not None:
            if type(r) is Funding:
                store.add(exchange, (r,))
            elif type(r) is OpenInterest and r.time >= kept_at.get(r.symbol, 0) + KEEP_EVERY_MS:
                kept_at[r.symbol] = r.time
                store.add(exchange, (r,))

    return keep


async def keep_history(
    exchange: str,
    perpetuals: Sequence[str],
    state: MarketState,
    rest: Any,
    store: PerpetualStore | None,
) -> None:
    """The perpetuals' past from ``rest`` (from where ``store`` ends), then every funding as it
    settles, into ``state`` (and so to its subscribers and its store). Runs until cancelled."""
    last_fundings, last_open_interest = store.last_times(exchange) if store else ({}, {})

    def fundings(rows: list[Funding]) -> None:
        state.on_records(rows, "rest")

    def open_interest(rows: list[OpenInterest]) -> None:
        assert store is not None
        store.add(exchange, rows)

    def next_funding_of(symbol: str) -> int:
        mark = state.marks.get(symbol)
        return mark.next_funding_time if mark is not None else -1

    try:
        await keep_perpetual_history(
            rest,
            perpetuals,
            {s: t for s, t in last_fundings.items() if s in perpetuals},
            {s: t for s, t in last_open_interest.items() if s in perpetuals},
            fundings,
            open_interest if store is not None else None,
            next_funding_of,
        )
    finally:
        await rest.close()
