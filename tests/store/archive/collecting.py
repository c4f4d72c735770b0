"""A Lab run after an archive download until it has taken over: the helper the spot and the
perpetual end-to-end tests share."""

from __future__ import annotations

import time

from marketlab.lab import Lab
from marketlab.sim import SimExchange
from tests.lab.test_lab import wait_for


def collect_past_the_archive(lab: Lab, sim: SimExchange, symbol: str) -> int:
    """Run ``lab`` (collecting ``symbol`` into the downloaded store) until a live trade came,
    two simulated minutes passed and every trade made by then is held; returns the last trade
    id the market had made."""
    market = sim.market.symbols["BTCUSDT"]

    def lab_newest() -> int:
        frame = lab.trades(symbol)
        return int(frame["trade_id"].max()) if len(frame) else 0

    with lab:
        lab.wait_ready(30)
        began = sim.now_ms()
        at_start = market.next_trade_id - 1
        # the trades made since the archive's end are fetched when a live one shows the gap
        wait_for(lambda: lab_newest() > at_start, 30, "a live trade")
        wait_for(lambda: sim.now_ms() > began + 2 * 60_000, 30, "two simulated minutes")
        traded = market.next_trade_id - 1
        wait_for(lambda: lab_newest() >= traded, 10, "the latest trade")
        time.sleep(0.5)
    return traded
