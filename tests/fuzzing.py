"""What the fuzz targets share (``tests/**/test_fuzz_*.py``, one beside each reader of bytes
from outside): their hypothesis settings and byte mutations of good input.

The targets run with the suite (``MARKETLAB_FUZZ_EXAMPLES`` examples each, 100 by default), and
under AddressSanitizer and UndefinedBehaviorSanitizer by ``python tests/sanitized.py``, which
builds the extension with ``-fsanitize=address,undefined``, loads it in place of the installed
one and runs them with more examples (``.ci/run`` does). An input that ever failed stays as an
``@example`` or a test of its own.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("MARKETLAB_FUZZ_EXAMPLES", "100"))


def fuzz(scale: float = 1.0) -> settings:
    """The settings of a fuzz target: ``scale`` times the run's examples (a slow target less)."""
    return settings(
        max_examples=max(10, int(EXAMPLES * scale)),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# bytes that matter to the readers: JSON's structure, digits, signs, quotes, escapes, NUL
_INTERESTING = b'{}[]",:0123456789-+.eE\\\x00\xff nulltruefalseNaNinf'
# how deep a nesting edit goes: past msgspec's recursion (about a thousand levels, where it
# raises RecursionError, not DecodeError) and orjson's limit (1024), far past the compiled
# readers' (32)
DEEP = 3000


@st.composite
def mutated(draw: Any, good: bytes, max_edits: int = 4) -> bytes:
    """``good`` with one to ``max_edits`` random edits, as a fuzzer makes them: flipped bits,
    bytes replaced, inserted (among them :data:`DEEP` unclosed arrays or objects) and deleted,
    a piece repeated, the input cut anywhere."""
    data = bytearray(good)
    for _ in range(draw(st.integers(1, max_edits))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "repeat", "cut"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[at] = draw(st.sampled_from(_INTERESTING))
        elif op == "insert":
            data[at:at] = draw(
                st.binary(min_size=1, max_size=4)
                | st.sampled_from(
                    [
                        b"-",
                        b"1e400",
                        b"NaN",
                        b'"nan"',
                        b"9223372036854775808",
                        b"\\u0000",
                        b"[" * DEEP,  # nesting never closed
                        b'{"x":' * DEEP,
                    ]
                )
            )
        elif op == "delete" and data:
            del data[at : at + draw(st.integers(1, 8))]
        elif op == "repeat" and data:
            data[at:at] = data[at : at + draw(st.integers(1, 16))]
        elif op == "cut":
            del data[at:]
    return bytes(data)


class _Raw(str):
    """JSON text written as it is (a number no Python value gives, deep nesting)."""


# values a near-valid frame puts where another belongs: wrong types, nesting where a scalar
# belongs, numbers at and past the limits of doubles and int64, dates that are not, and the
# strings that look like numbers, sides, actions and products
ODD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1.5,
    [],
    {},
    [[]],
    [{}],
    [1, 2, 3],
    ["1", "2"],
    [["1", "2", "3"]],
    {"a": {"b": [1, {"c": None}]}},
    _Raw("-0"),
    _Raw("-0.0"),
    _Raw("1e400"),
    _Raw("-1e400"),
    _Raw("0.1e-400"),
    _Raw("-1e-400"),
    _Raw("1E5"),
    _Raw("123456789012345678901234567890"),
    _Raw("[" * 40 + "]" * 40),
    999_999_999_999_999_999,
    2**63 - 1,
    2**63,
    -(2**63),
    2**64,
    "NaN",
    "nan",
    "Infinity",
    "-0",
    "1e400",
    "0.1e-400",
    "-1e-400",
    "",
    " ",
    "1 ",
    "1.5",
    "0",
    "-1",
    "999999999999999999",
    "9223372036854775807",
    "9223372036854775808",
    "0000000000000000001",
    "123456789012345678901234567890.5",
    "2024-02-30T00:00:00Z",
    "2023-02-29T12:00:00Z",
    "2024-02-29T12:00:00.123456789Z",
    "2100-12-31T23:59:59.999Z",
    "2100-01-01T00:00:00.000Z",
    "2100-01-01T00:00:00.001Z",
    "2009-12-31T23:59:59.999Z",
    "2010-01-01T00:00:00Z",
    "2024-01-01T00:00:00.12Z",
    "BUY",
    "SELL",
    "Buy",
    "Sell",
    "bid",
    "offer",
    "snapshot",
    "update",
    "delta",
    "BTC-USD",
    "btc-usd",
    "BT-CUSD",
    "BTC-USD-X",
    "BTCUSDT",
    "BTCUSDC",
]


def _json(value: Any) -> str:
    if isinstance(value, _Raw):
        return str(value)
    if isinstance(value, tuple):  # an object's (key, value) pairs, duplicates and all
        return "{" + ",".join(f"{json.dumps(k)}:{_json(v)}" for k, v in value) + "}"
    if isinstance(value, dict):
        return _json(tuple(value.items()))
    if isinstance(value, list):
        return "[" + ",".join(_json(v) for v in value) + "]"
    return json.dumps(value)


def _places(value: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The path of every value inside ``value`` (the document itself excluded)."""
    found = [at] if at else []
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, inner in items:
        found += _places(inner, (*at, key))
    return found


@st.composite
def restructured(draw: Any, good: bytes, max_edits: int = 3) -> bytes:
    """``good`` (a JSON object) still JSON but with one to ``max_edits`` edits of its structure:
    a value replaced by an odd one (:data:`ODD_VALUES`), a key given twice with another value,
    a key dropped, a value wrapped in a list or an object (once, or :data:`DEEP` times), a
    list's item repeated up to 600 times. What a byte mutation seldom makes: valid JSON whose
    types and shapes are wrong."""
    doc = json.loads(good)
    for _ in range(draw(st.integers(1, max_edits))):
        places = _places(doc)
        if not places:
            break
        path = draw(st.sampled_from(places))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        op = draw(st.sampled_from(["odd", "odd", "twice", "drop", "wrap", "nest", "repeat"]))
        if op == "odd":
            parent[key] = copy.deepcopy(draw(st.sampled_from(ODD_VALUES)))
        elif op == "twice" and isinstance(parent, dict):
            pairs = list(parent.items())
            other = draw(st.sampled_from(ODD_VALUES) | st.just(parent[key]))
            pairs.insert(draw(st.integers(0, len(pairs))), (key, copy.deepcopy(other)))
            if len(path) == 1:
                return _json(tuple(pairs)).encode()
            grand = doc
            for k in path[:-2]:
                grand = grand[k]
            grand[path[-2]] = tuple(pairs)  # written as it is from here on: the last edit
            return _json(doc).encode()
        elif op == "drop" and isinstance(parent, dict):
            del parent[key]
        elif op == "wrap":
            parent[key] = draw(st.sampled_from([[parent[key]], {"x": parent[key]}]))
        elif op == "nest":  # written as it is: no JSON encoder goes that deep
            opened, closed = draw(st.sampled_from([("[", "]"), ('{"x":', "}")]))
            parent[key] = _Raw(opened * DEEP + _json(parent[key]) + closed * DEEP)
        elif op == "repeat" and isinstance(parent, list):
            times = draw(st.sampled_from([1, 2, 63, 64, 65, 129, 600]))
            parent[key + 1 : key + 1] = [copy.deepcopy(parent[key]) for _ in range(times)]
    return _json(doc).encode()
