"""Bybit linear: frames and REST bodies mutated as a fuzzer mutates them give records that keep
the numbers' rules or the reader's documented error; a decoder that refused a frame goes on
reading good ones as if it had never seen it (nothing of a bad ticker delta is merged)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from marketlab.venues.bybit import perp_payloads as payloads
from marketlab.venues.bybit.perp_frames import PerpDecoder
from marketlab.venues.bybit.protocol import BybitAPIError
from marketlab.venues.errors import FrameError, PayloadError
from tests.fuzzing import fuzz, mutated
from tests.venues.bybit import perp_frames as F
from tests.venues.perpetuals import check_numbers


def _lawful(record: Any) -> None:
    if isinstance(record, tuple):
        for part in record:
            _lawful(part)
        return
    check_numbers(record)


@fuzz(2)
@given(st.sampled_from(F.FRAMES).flatmap(mutated))
def test_linear_frames_give_lawful_records_or_a_frame_error(frame):
    decoder = PerpDecoder()
    decoder.decode(F.TICKER_SNAPSHOT)  # so a mutated delta has a ticker to merge into
    try:
        events = decoder.decode(frame)
    except FrameError:
        events = []
    for event in events:
        _lawful(event)


@fuzz(1)
@given(st.sampled_from([F.TICKER_MARK_DELTA, F.TICKER_OI_DELTA]).flatmap(mutated))
def test_a_refused_delta_leaves_the_merged_ticker_as_it_was(frame):
    decoder = PerpDecoder()
    decoder.decode(F.TICKER_SNAPSHOT)
    try:
        decoder.decode(frame)
    except FrameError:
        (mark,) = decoder.decode(F.TICKER_MARK_DELTA)
        # the snapshot's index and rate with the good delta's mark: nothing of the bad one
        assert (mark.mark, mark.index, mark.funding_rate) == (17220.10, 17227.36, -0.000212)


READERS = {
    "instruments": payloads.perpetuals,
    "funding": payloads.funding_history,
    "open_interest": payloads.open_interest,
    "tickers": payloads.tickers,
    "recent": lambda b: payloads.recent_trades(b, "BTCUSDT-PERP", 1000),
}


@fuzz(2)
@given(
    st.sampled_from(sorted(READERS)).flatmap(
        lambda name: st.tuples(st.just(name), mutated(F.REST[name]) | st.just(F.REST[name]))
    )
)
def test_linear_rest_bodies_give_lawful_records_or_a_payload_error(case):
    name, body = case
    try:
        out = READERS[name](body)
    except (PayloadError, BybitAPIError):
        return
    rows = out[0] if isinstance(out, tuple) else out
    for row in rows:
        if isinstance(row, payloads.LinearInstrument):
            assert row.tick_size >= 0 and row.funding_interval_min >= 0
        else:
            _lawful(row)
