"""The compiled book side (``marketlab._native.Side``) against its Python twin (``BookSide``):
the same levels after any changes and snapshots — repeated prices, 0.0 and -0.0, removals of
what is not there, NaN prices (refused by both, nothing applied) — and a level whose number
changes the list being applied cannot make the compiled side read freed memory."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketlab.native import COMPILED, compiled
from marketlab.venues.book import BookSide
from tests.fuzzing import fuzz

pytestmark = pytest.mark.skipif(not COMPILED, reason="the compiled side is not built")
CompiledSide: Any = compiled("Side")

PRICES = st.sampled_from([0.0, -0.0, 1.0, 1.5, 2.0, 100.25, 1e-8, 1e300, math.nan, 2, "1.5"])
QTYS = st.sampled_from([0.0, 1.0, 2.5, 1e-8, 3, "q"])
LEVELS = st.lists(st.tuples(PRICES, QTYS), max_size=8)
OPS = st.lists(
    st.tuples(st.sampled_from(["apply", "load", "trim"]), LEVELS, st.sampled_from([1.0, -1.0])),
    max_size=20,
)


def _do(side: Any, op: str, levels: list[tuple[float, float]], sign: float) -> str:
    try:
        if op == "trim":
            return repr(sorted(side.trim(len(levels))))  # the keys dropped, in no order
        getattr(side, op)(levels, sign)
    except (ValueError, TypeError) as exc:
        return type(exc).__name__
    return "ok"


def _items(side: Any) -> list[str]:
    """Levels down to their bits (0.0 and -0.0 apart)."""
    return [f"{k.hex()} {q.hex()}" for k, q in side.items()]


@fuzz(2)
@given(OPS)
def test_a_compiled_side_keeps_the_levels_its_python_twin_keeps(ops) -> None:
    compiled, python = CompiledSide(), BookSide()  # type: ignore[union-attr]  # skipped without it
    for op, levels, sign in ops:
        assert _do(compiled, op, levels, sign) == _do(python, op, levels, sign), (op, levels)
        assert _items(compiled) == _items(python), (op, levels)
        assert len(compiled) == len(python)


def test_zero_and_minus_zero_keep_the_first_key_and_the_later_quantity() -> None:
    for side in (CompiledSide(), BookSide()):  # type: ignore[union-attr]  # skipped without it
        side.load([(0.0, 1.0), (-0.0, 2.0)], 1.0)
        assert _items(side) == [f"{(0.0).hex()} {(2.0).hex()}"]


def test_a_level_that_empties_the_list_being_applied_is_read_safely() -> None:
    levels: list[Any] = []

    class Emptying:
        """A number whose conversion empties the list of levels it stands in."""

        def __init__(self, value: float):
            self.value = value

        def __float__(self) -> float:
            levels.clear()  # the list being applied, and the rows in it, go
            return self.value

    levels.extend([(Emptying(1.0), 1.0), [3.0, Emptying(4.0)], (5.0, 6.0)])
    side = CompiledSide()  # skipped without it
    side.apply(levels, 1.0)
    assert side.items() == [(1.0, 1.0), (3.0, 4.0), (5.0, 6.0)]


def test_a_nan_price_changes_nothing_in_either_side() -> None:
    for side in (CompiledSide(), BookSide()):  # type: ignore[union-attr]  # skipped without it
        side.load([(1.0, 1.0), (2.0, 2.0), (3.0, 3.0)], 1.0)
        with pytest.raises(ValueError, match="level 1 has no price"):
            side.apply([(2.0, 0.0), (math.nan, 5.0)], 1.0)
        assert side.items() == [(1.0, 1.0), (2.0, 2.0), (3.0, 3.0)]
