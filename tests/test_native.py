"""The compiled hot path (csrc/native.c) against its pure-Python twins: the same
operations give the same answers, so which one ran never shows in the data."""

from __future__ import annotations

import os
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketlab.native import COMPILED, compiled, maker
from marketlab.venues.book import BookSide, OrderBook

CompiledSide: Any = compiled("Side")  # None where the compiled part is not in use
take_compiled: Any = compiled("take_combined")
pytestmark = pytest.mark.skipif(
    not COMPILED and os.environ.get("MARKETLAB_PURE_PYTHON", "") not in ("", "0"),
    reason="MARKETLAB_PURE_PYTHON asks for the pure-Python twins",
)


def test_the_compiled_core_was_built() -> None:
    # `pip install` builds it wherever a C compiler is; a silent fallback would hide a broken build
    assert COMPILED and CompiledSide is not None
    assert OrderBook("X")._bids.__class__ is CompiledSide


PRICES = st.sampled_from([99.5, 100.0, 100.25, 100.5, 101.0, 101.5, 102.0, 103.0, 250.0, 1e-8])
QTYS = st.sampled_from([0.0, 0.0, 1.0, 2.5, 0.001, 7.0])
LEVELS = st.lists(st.tuples(PRICES, QTYS), max_size=12)
SIGN = st.sampled_from([1.0, -1.0])
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("apply"), LEVELS, SIGN),
        st.tuples(st.just("load"), LEVELS, SIGN),
        st.tuples(st.just("set"), PRICES, st.sampled_from([1.0, 3.0])),
        st.tuples(st.just("pop"), PRICES),
        st.tuples(st.just("trim"), st.integers(0, 6)),
        st.tuples(st.just("bound"), PRICES),
        st.tuples(
            st.just("clear"),
        ),
    ),
    max_size=40,
)


def _observe(side: object) -> tuple:
    s = side  # type: ignore[assignment]
    best = s.best() if len(s) else None  # type: ignore[attr-defined]
    peek = s.peekitem(0) if len(s) else None  # type: ignore[attr-defined]
    return (len(s), bool(s), s.items(), s.first(3), s.known, best, peek, 100.0 in s)  # type: ignore[attr-defined, arg-type, operator]


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_a_compiled_side_answers_as_the_python_side_does(ops: list[tuple]) -> None:
    py, c = BookSide(), CompiledSide()
    for op in ops:
        results = []
        for side in (py, c):
            name, *args = op
            if name == "apply":
                side.apply(*args)
            elif name == "load":
                side.load(*args)
            elif name == "set":
                side[args[0]] = args[1]
            elif name == "pop":
                results.append(side.pop(args[0], "absent"))
            elif name == "trim":
                results.append(sorted(side.trim(args[0])))
            elif name == "bound":
                side.set_bound(args[0])
            else:
                side.clear()
            results.append(_observe(side))
        assert results[: len(results) // 2] == results[len(results) // 2 :], op


DELTAS = st.lists(
    st.tuples(
        LEVELS,
        LEVELS,
        st.sampled_from([None, 100.0, 101.0, 250.0]),  # a bid bound (a cut snapshot's floor)
        st.sampled_from([None, 100.25, 102.0]),  # an ask bound
    ),
    max_size=25,
)


@settings(max_examples=300, deadline=None)
@given(DELTAS, st.integers(-2, 6), st.integers(-1, 4))
def test_a_delta_is_applied_and_checked_by_the_compiled_book_as_by_the_python_one(
    deltas: list[tuple], keep: int, min_known: int
) -> None:
    """The compiled ``apply_delta`` (one call per delta on both sides) against its twin: the
    same sides after, the same answer (settled, beyond the known range, crossed)."""
    from marketlab.venues.book import apply_delta_python

    apply_compiled = compiled("apply_delta")
    books = [(BookSide(), BookSide()), (CompiledSide(), CompiledSide())]
    for bid_changes, ask_changes, bid_floor, ask_ceiling in deltas:
        answers = []
        for (bids, asks), apply in zip(books, (apply_delta_python, apply_compiled), strict=True):
            if bid_floor is not None:
                bids.set_bound(-bid_floor)
            if ask_ceiling is not None:
                asks.set_bound(ask_ceiling)
            found = apply(bids, asks, bid_changes, ask_changes, keep, min_known)
            answers.append((found, _observe(bids), _observe(asks)))
        assert answers[0] == answers[1]


def test_a_bad_delta_changes_neither_side_of_a_compiled_book() -> None:
    bids, asks = CompiledSide(), CompiledSide()
    apply = compiled("apply_delta")
    assert apply(bids, asks, [(99.0, 1.0)], [(101.0, 2.0)], 10, 1) == 0
    with pytest.raises(TypeError, match="level 0 is not a"):
        apply(bids, asks, [(98.0, 1.0)], [(5.0,)], 10, 1)
    assert bids.items() == [(-99.0, 1.0)] and asks.items() == [(101.0, 2.0)]
    assert apply(bids, asks, [(102.0, 1.0)], [], 10, 1) == 2  # crossed
    with pytest.raises(TypeError, match="Side"):
        apply(BookSide(), asks, [], [], 10, 1)


def test_a_compiled_side_says_what_is_wrong_with_its_input() -> None:
    side = CompiledSide()
    with pytest.raises(TypeError, match="level 1 is not a"):
        side.apply([(1.0, 2.0), (3.0,)], 1.0)
    assert side.items() == []  # every level is checked before any is applied
    with pytest.raises(ValueError, match="level 0 has no price"):
        side.apply([(float("nan"), 2.0)], 1.0)
    with pytest.raises(TypeError):
        side.apply([("x", 1.0)], 1.0)
    with pytest.raises(IndexError):
        CompiledSide().best()
    with pytest.raises(KeyError):
        del side[5.0]


NAMES = st.sampled_from([b"btcusdt@trade", b"ethusdt@depth@100ms", b"x", b""])
PAYLOADS = st.sampled_from([b'{"e":"trade","p":"1.5"}', b"{}", b"", b'"data":1', b'{"a":"}"}'])
FRAMES = st.one_of(
    st.builds(lambda n, p: b'{"stream":"' + n + b'","data":' + p + b"}", NAMES, PAYLOADS),
    st.builds(lambda n, p: b'{"stream":"' + n + b'","data":' + p, NAMES, PAYLOADS),  # cut
    st.builds(lambda n: b'{"stream":"' + n + b'"}', NAMES),
    st.binary(max_size=40),
    st.just('{"stream":"x","data":{}}'),  # text, not bytes: the careful path takes it
)


def _lanes(names: set[bytes], out: list, table: Any = None) -> Any:
    def take(stats, record, source) -> None:
        out.append((stats, record, source))

    lanes = (table or compiled("LaneTable"))(msgspec.DecodeError)
    for n in names:  # payload "": it goes to `decode` (any JSON here) whichever reader cuts it
        lanes.add(n, "", None, take, n, "", "", msgspec.json.decode, lambda w: w)
    return lanes


@settings(max_examples=400, deadline=None)
@given(FRAMES, st.sets(NAMES, max_size=3))
def test_a_frame_is_cut_by_the_compiled_reader_as_by_the_python_one(frame, names) -> None:
    from marketlab.venues.binance.frames import LaneTablePython, take_combined_python

    c_out: list = []
    py_out: list = []
    took_c = take_compiled(_lanes(names, c_out), frame)
    assert took_c == take_combined_python(_lanes(names, py_out, LaneTablePython), frame)
    assert c_out == py_out


def test_a_cut_frame_gives_its_lane_exactly_its_payload() -> None:
    out: list = []
    frame = b'{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT"}}'
    assert take_compiled(_lanes({b"btcusdt@trade"}, out), frame)
    assert out == [(b"btcusdt@trade", {"e": "trade", "s": "BTCUSDT"}, "ws")]
    assert not take_compiled(_lanes(set(), out), frame)


class _InOrder(msgspec.Struct):
    symbol: str
    price: float


class _Reordered(msgspec.Struct):
    price: float
    symbol: str


def test_a_record_is_made_by_its_class_or_by_name_as_the_values_are_ordered() -> None:
    # a compiled reader hands a record's values in the order it names them; a class that
    # takes them so is called itself, any other through an adapter giving each its name
    names = ("symbol", "price")
    assert maker(_InOrder, names) is _InOrder
    make = maker(_Reordered, names)
    assert make is not _Reordered
    assert make("BTCUSDT", 1.5) == _Reordered(price=1.5, symbol="BTCUSDT")
    with pytest.raises(ValueError):  # a value too many is not dropped unseen
        make("BTCUSDT", 1.5, 2.0)
