"""The compiled hot path (csrc/native.c) against its pure-Python twins: the same
operations give the same answers, so which one ran never shows in the data."""

from __future__ import annotations

import os
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketlab.native import COMPILED, compiled
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
