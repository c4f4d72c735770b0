"""memory_limit: the rolling buffers of every symbol sized to fit one budget."""

from __future__ import annotations

import pytest

from marketlab import Lab
from marketlab.lab.options import BOOK_LEVEL_BYTES, buffer_sizes, parse_bytes

SYMBOLS = [f"C{i:03d}USDT" for i in range(300)]


def held_bytes(lab: Lab) -> int:
    """What the Lab's buffers take once full: their columns, and its books' levels."""
    trades = sum(buf.ring.nbytes for buf in lab._state.trades.values())
    klines = sum(col.nbytes for buf in lab._state.klines.values() for col in buf.cols.values())
    books = (
        len(lab.symbols) * 2 * lab.config.book_snapshot_limit * BOOK_LEVEL_BYTES
        if "book" in lab.channels
        else 0
    )
    return trades + klines + books


def test_sizes_read_as_people_write_them() -> None:
    assert parse_bytes("2GB") == 2 * 10**9 and parse_bytes("512MiB") == 512 * 2**20
    assert parse_bytes("1.5 gb") == 1_500_000_000 and parse_bytes(10_000) == 10_000
    for bad in ("two gigs", "-1GB", "0", "12XB"):
        with pytest.raises(ValueError, match="memory_limit"):
            parse_bytes(bad)


@pytest.mark.parametrize("limit", ["200MB", "2GB"])
def test_every_symbols_buffers_together_fit_the_budget(limit: str) -> None:
    lab = Lab(SYMBOLS, intervals=["1m", "1h"], memory_limit=limit)
    assert held_bytes(lab) <= parse_bytes(limit)
    assert lab.trade_capacity >= 1_000 and all(
        b.ring.capacity == lab.trade_capacity for b in lab._state.trades.values()
    )


def test_a_larger_budget_or_fewer_symbols_keep_more_trades() -> None:
    small = buffer_sizes(
        "500MB", SYMBOLS, ["1m"], ["trades", "book", "klines"], 1000, 100_000, 1440
    )
    large = buffer_sizes("4GB", SYMBOLS, ["1m"], ["trades", "book", "klines"], 1000, 100_000, 1440)
    few = buffer_sizes(
        "500MB", SYMBOLS[:30], ["1m"], ["trades", "book", "klines"], 1000, 100_000, 1440
    )
    assert small[0] < large[0] and small[0] < few[0]
    assert buffer_sizes(None, SYMBOLS, ["1m"], ["trades"], 1000, 123, 45) == (123, 45)


def test_a_budget_too_small_says_what_it_would_take() -> None:
    with pytest.raises(ValueError, match=r"too small for 300 symbol\(s\).*about \d+ MB"):
        Lab(SYMBOLS, memory_limit="50MB")
