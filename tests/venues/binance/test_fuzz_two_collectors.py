"""Two collector threads in one process (a notebook that starts a second Lab) read their frames
at once: each record carries its own frame's levels, never the other thread's, however the
garbage collector and the GIL interleave them (run under AddressSanitizer by sanitized.py, where
a frame reading another's freed levels stops the run)."""

from __future__ import annotations

import gc
import sys
import threading
import time
from typing import Any

import msgspec
import pytest

from marketlab.native import COMPILED, compiled
from marketlab.records import BookDelta
from marketlab.venues.binance.frames import lane_for
from marketlab.venues.binance.protocol import parse_stream

pytestmark = pytest.mark.skipif(not COMPILED, reason="the compiled reader is not built")
take_compiled: Any = compiled("take_combined")


class _Yielding:
    """Garbage in a cycle whose finalizer lets go of the GIL: a collection that runs while a
    record is being made hands the interpreter to the other thread."""

    def __init__(self) -> None:
        self.me = self

    def __del__(self) -> None:
        time.sleep(0)


def _frame(lab: int, n: int, levels: int) -> tuple[bytes, list[list[float]]]:
    bids = [[float(lab * 1000 + i), float(n + 1)] for i in range(levels)]
    body = ",".join(f'["{p}","{q}"]' for p, q in bids)
    frame = (
        '{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1767225600000,'
        f'"s":"BTCUSDT","U":{n},"u":{n},"b":[{body}],"a":[]}}}}'
    ).encode()
    return frame, bids


def test_two_collector_threads_never_take_each_others_levels() -> None:
    wrong: list[str] = []
    rounds = 300

    def collector(lab: int) -> None:
        got: list[Any] = []

        def take(stats: Any, record: Any, source: str) -> None:
            got.append(record)

        lanes = compiled("LaneTable")(msgspec.DecodeError)
        lane = lane_for(parse_stream("btcusdt@depth@100ms"), take, None, BookDelta)
        lanes.add(b"btcusdt@depth@100ms", *lane)
        for n in range(rounds):
            # sizes that grow past any buffer of the other thread's: 1 level to 3,000
            frame, bids = _frame(lab, n, 1 + (n * 37 + lab * 11) % 3000)
            got.clear()
            _Yielding()  # garbage, collected at the first allocation the reader makes
            assert take_compiled(lanes, frame)
            levels = [list(level) for level in got[0].bids]
            if levels != bids:
                wrong.append(f"lab {lab} frame {n}: {levels[:2]}... for {bids[:2]}...")

    threshold = gc.get_threshold()
    interval = sys.getswitchinterval()
    gc.set_threshold(1, 1000, 1000)  # a collection at (almost) every allocation
    sys.setswitchinterval(1e-5)
    try:
        threads = [threading.Thread(target=collector, args=(lab,)) for lab in (1, 2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        gc.set_threshold(*threshold)
        sys.setswitchinterval(interval)
    assert wrong == []
