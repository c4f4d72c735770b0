"""What the fuzz targets share (``tests/**/test_fuzz_*.py``, one beside each reader of bytes
from outside): their hypothesis settings and byte mutations of good input.

The targets run with the suite (``MARKETLAB_FUZZ_EXAMPLES`` examples each, 100 by default), and
under AddressSanitizer and UndefinedBehaviorSanitizer by ``python tests/sanitized.py``, which
builds the extension with ``-fsanitize=address,undefined``, loads it in place of the installed
one and runs them with more examples (``.ci/run`` does). An input that ever failed stays as an
``@example`` or a test of its own.
"""

from __future__ import annotations

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


@st.composite
def mutated(draw: Any, good: bytes, max_edits: int = 4) -> bytes:
    """``good`` with one to ``max_edits`` random edits, as a fuzzer makes them: flipped bits,
    bytes replaced, inserted and deleted, a piece repeated, the input cut anywhere."""
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
                    [b"-", b"1e400", b"NaN", b'"nan"', b"9223372036854775808", b"\\u0000"]
                )
            )
        elif op == "delete" and data:
            del data[at : at + draw(st.integers(1, 8))]
        elif op == "repeat" and data:
            data[at:at] = data[at : at + draw(st.integers(1, 16))]
        elif op == "cut":
            del data[at:]
    return bytes(data)
