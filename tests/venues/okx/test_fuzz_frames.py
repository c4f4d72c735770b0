"""OKX pushes, mutated, through the compiled reader (csrc/okx.c) and OkxDecoder side by side:
whatever a frame holds, the reader never fails and never reads past it; it either leaves the
frame to the decoder (None) or makes exactly the records the decoder makes, and those keep the
numbers' rules. The decoder, for its part, makes records or names a bad frame, nothing else."""

from __future__ import annotations

import math
import os
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from marketlab.native import COMPILED
from marketlab.numbers import INT64_MAX, TIME_MAX_MS, TIME_MIN_MS
from marketlab.venues.okx.frames import BookMessage
from tests.fuzzing import fuzz, mutated
from tests.venues.okx.frames import GOOD, agree

pytestmark = pytest.mark.skipif(
    not COMPILED and os.environ.get("MARKETLAB_PURE_PYTHON", "") not in ("", "0"),
    reason="MARKETLAB_PURE_PYTHON asks for the pure-Python twins",
)
FRAMES = st.sampled_from(sorted(GOOD.values()))
DAY_MS, WEEK_MS = 86_400_000, 7 * 86_400_000  # a ticker's window, the longest candle


def _lawful(records: list[Any] | None) -> None:
    """The reader's records keep the rules of marketlab.numbers, checked here by hand."""
    for record in records or []:
        if isinstance(record, BookMessage):
            for price, size in [*(record.bid_changes or []), *(record.ask_changes or [])]:
                assert 0.0 < price < math.inf and 0.0 <= size < math.inf
            assert TIME_MIN_MS <= record.time <= TIME_MAX_MS
            assert -1 <= record.seq_id <= INT64_MAX and -1 <= record.prev_seq_id <= INT64_MAX
            continue
        assert "-" not in record.symbol  # its push's instId, as ours
        for name in type(record).__struct_fields__:
            value = getattr(record, name)
            if isinstance(value, float) and name not in ("change", "change_pct"):
                assert math.isnan(value) or 0.0 <= value < math.inf, (name, value)
                assert not math.isnan(value) or name.startswith(("weighted", "prev", "taker"))
            elif name.endswith("time") and isinstance(value, int):  # a window's ends too
                assert TIME_MIN_MS - DAY_MS <= value <= TIME_MAX_MS + WEEK_MS, (name, value)


@fuzz(2)
@given(FRAMES.flatmap(mutated))
@example(GOOD["bbo-tbt"].replace(b'"41006.3","0.3","0","2"', b'"41006.3"'))
def test_a_mutated_push_is_read_as_the_decoder_reads_it_or_left(frame):
    _lawful(agree(frame))


@fuzz()
@given(FRAMES, FRAMES, st.integers(0, 400), st.integers(0, 400))
def test_two_pushes_spliced_are_read_alike_or_left(a, b, cut_a, cut_b):
    _lawful(agree(a[:cut_a] + b[cut_b:]))


def test_a_push_cut_at_every_length_is_left_to_the_decoder():
    for frame in GOOD.values():
        for end in range(len(frame)):
            assert agree(frame[:end]) is None, frame[:end]
