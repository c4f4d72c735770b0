"""The simulator's market anomalies against the alert rules, through a real Lab collecting
from it: each anomaly (a price jump, a spread blowout, a volume burst, a silent symbol, a
crossed book), injected by name as the CLI and the control endpoint do, is alerted by its
rule within 2 s of simulated time, and the alert is resolved once the market is calm again:
one raise and one resolve, no flapping."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketlab.lab import Lab
from marketlab.sim import SimExchange
from marketlab.sim.faults import anomaly_arg
from marketlab.sim.market import Market
from marketlab.watch import Watch
from tests.conftest import START
from tests.lab.test_lab import FAST, wait_for

# each anomaly on a symbol of its own, the rule that must see it, and how it is injected
ANOMALIES = {
    "BTCUSDT": ("jump", "BTCUSDT:-300", "price_jump"),
    "ETHUSDT": ("spread", "ETHUSDT:3", "spread_blowout"),
    "BNBUSDT": ("volume", "BNBUSDT:2", "volume_burst"),
    "ADAUSDT": ("silent", "ADAUSDT:4", "silence"),
    "XRPUSDT": ("crossed", "XRPUSDT:2", "crossed_book"),
}
SILENCE_S = 3.0  # the silence rule's threshold here (candles come every 2 s): its delay is
# counted from then on
DETECTED_WITHIN_S = 2.0


def test_each_anomaly_is_alerted_by_its_rule_within_2_s_and_resolved_once():
    symbols = list(ANOMALIES)
    watch = Watch(
        interval_s=0.25,
        health_interval_s=0.25,
        min_samples=12,
        resolve_after_s=1.0,
        silence_s=SILENCE_S,
        spread_for_s=0.5,
        crossed_for_s=0.5,
    )
    with SimExchange(symbols, speed=1, seed=31, start_time=START) as sim:
        lab = Lab(
            symbols,
            intervals=["1m"],
            binance_ws_url=sim.ws_url,
            binance_rest_url=sim.rest_url,
            alerts=watch,
            **FAST,
        )
        events: list[dict[str, Any]] = []
        seen_at: list[float] = []  # simulated time (s) of each event
        lock = threading.Lock()

        def on_alert(alert: dict[str, Any]) -> None:
            with lock:
                events.append(alert)
                seen_at.append(sim.now_ms() / 1000)

        lab.on_alert(on_alert)
        with lab:
            lab.wait_ready(30)
            time.sleep(0.25 * 12 + 0.5)  # the rolling windows fill up (min_samples looks)
            injected = sim.now_ms() / 1000
            for kind, arg, _ in ANOMALIES.values():
                sim.inject(kind, arg)

            def all_resolved() -> bool:
                with lock:
                    done = {
                        (a["rule"], a["symbol"])
                        for a in events
                        if a["state"] == "resolved" and a["time"] >= began
                    }
                return all((rule, s) in done for s, (_, _, rule) in ANOMALIES.items())

            began = time.time() - 0.5  # wall time of the injection, less the look's
            wait_for(all_resolved, 25, "every anomaly alerted and resolved")
            time.sleep(1.5)  # no second raise after the resolve
        with lock:
            history = list(zip(events, seen_at, strict=True))
    for symbol, (kind, _, rule) in ANOMALIES.items():
        mine = [
            (a, at)
            for a, at in history
            if a["rule"] == rule and a["symbol"] == symbol and a["time"] >= began
        ]
        streams = {a["stream"] for a, _ in mine}
        for stream in streams:
            states = [a["state"] for a, _ in mine if a["stream"] == stream]
            assert states == ["active", "resolved"], (kind, stream, states)
        raised_at = min(at for a, at in mine if a["state"] == "active")
        late = SILENCE_S if rule == "silence" else 0.0  # silence is alerted after its threshold
        delay = raised_at - injected - late
        assert delay <= DETECTED_WITHIN_S, (kind, delay)


def test_an_anomaly_changes_the_market_only_for_its_symbol_and_its_time():
    """Pure market: each anomaly shows what its rule looks for, on its symbol only, for its
    seconds, and the market is as it was after."""
    market = Market(["BTCUSDT", "ETHUSDT"], seed=5, genesis=START)
    for _ in range(20):
        market.step()
    btc, eth = market.symbols["BTCUSDT"], market.symbols["ETHUSDT"]

    def top(m) -> tuple[int, int]:
        _, bids, asks = m.book(1)
        return bids[0][0], asks[0][0]

    btc.anomaly("crossed", 3)
    crossed = [top(btc) for _ in range(4) if market.step()]
    assert [bid >= ask for bid, ask in crossed] == [True, True, True, False]
    assert all(bid < ask for bid, ask in [top(eth)])
    btc.anomaly("spread", 2)
    wide = []
    for _ in range(3):
        market.step()
        bid, ask = top(btc)
        wide.append((ask - bid) / ((ask + bid) / 2) * 1e4)
    assert wide[0] >= 59 and wide[1] >= 59 and wide[2] < 5
    before = sum(top(btc)) / 2
    btc.anomaly("jump", bps=-300)
    market.step()
    after = sum(top(btc)) / 2
    assert after / before - 1 == pytest.approx(-0.03, abs=0.003)
    calm = sum(t.qty for _ in range(10) for t in market.step()["BTCUSDT"].trades)
    btc.anomaly("volume", 10)
    burst = sum(t.qty for _ in range(10) for t in market.step()["BTCUSDT"].trades)
    assert burst > 20 * calm
    btc.anomaly("silent", 3)
    halted = [market.step()["BTCUSDT"] for _ in range(3)]
    assert all(not r.trades and r.depth is None for r in halted)
    again = [market.step()["BTCUSDT"] for _ in range(5)]
    assert any(r.trades for r in again) and any(r.depth is not None for r in again)
    with pytest.raises(ValueError, match="unknown anomaly"):
        btc.anomaly("meltdown")


def test_anomaly_arguments_and_their_errors():
    assert anomaly_arg("jump", "BTCUSDT:-150") == ("BTCUSDT", -150.0)
    assert anomaly_arg("jump", "250") == (None, 250.0)
    assert anomaly_arg("silent", "ethusdt:1m") == ("ethusdt", 60.0)
    assert anomaly_arg("spread", None) == (None, None)
    with pytest.raises(ValueError, match="two amounts"):
        anomaly_arg("volume", "5:6")
    with pytest.raises(ValueError, match="expected"):
        anomaly_arg("crossed", "BTCUSDT:ETHUSDT")
    with SimExchange(["BTCUSDT"], speed=1, seed=1, start_time=START) as sim:
        with pytest.raises(ValueError, match="unknown symbol"):
            sim.inject("jump", "DOGEUSDT:100")
        with pytest.raises(ValueError, match="no venue's"):
            sim.inject("spread", "5", venue="okx")


@given(st.text(max_size=40), st.sampled_from(["jump", "spread", "volume", "silent", "crossed"]))
def test_any_anomaly_argument_is_taken_or_refused_by_name(arg, name):
    """The control endpoint hands any text in: it is taken or refused with a ValueError."""
    try:
        symbol, amount = anomaly_arg(name, arg)
    except ValueError as exc:
        assert name in str(exc) or "duration" in str(exc)
    else:
        assert symbol is None or symbol in arg
        assert amount is None or isinstance(amount, float)
