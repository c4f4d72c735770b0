"""A REST ban counted where it happens and exposed: Bybit answers 403 to a client past its
limit (its ban), and the exposition shows the 403 beside the REST weight it allows."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from marketlab.sim import SimExchange
from marketlab.venues.binance.rest import WeightGovernor
from marketlab.venues.bybit.rest import IpWindowPacer
from marketlab.venues.coinbase.rest import SecondWindowPacer
from marketlab.venues.okx.rest import WindowPacer
from marketlab.watch.metrics import exposition, lab_registry
from tests.lab.test_lab import running_lab, wait_for
from tests.venues.bybit.test_lab_sim import SYMBOLS


def test_a_bybit_403_is_exposed_as_forbidden_and_as_a_ban():
    with (
        SimExchange(list(SYMBOLS), speed=60, seed=17) as sim,
        running_lab(sim, symbols=SYMBOLS, exchange="bybit") as (lab, _),
    ):
        families = {
            f.name: f.samples
            for f in text_string_to_metric_families(exposition(lab_registry(lab)).decode())
        }
        assert [s.value for s in families["marketlab_rest_forbidden"]] == [0.0]
        limit = families["marketlab_rest_weight_limit"][0]
        assert (limit.labels, limit.value) == ({"venue": "bybit"}, 600.0)  # per 5 s per IP
        sim.inject("rest403", venue="bybit")  # every REST request now answers 403
        sim.inject("drop", venue="bybit")  # the reconnection asks REST for recent trades
        wait_for(lambda: lab.summary()["rest_forbidden"] >= 1, 15, "the 403 counted")
        # the Lab goes on asking (and being refused) while the exposition is read: what it
        # shows lies between the counts just before and just after
        before = lab.summary()["rest_forbidden"]
        text = exposition(lab_registry(lab)).decode()
        after = lab.summary()["rest_forbidden"]
        families = {f.name: f.samples for f in text_string_to_metric_families(text)}
    forbidden = families["marketlab_rest_forbidden"][0]
    assert forbidden.labels == {"venue": "bybit"}
    assert before <= forbidden.value <= after
    banned = families["marketlab_rest_rate_limited"][0]  # a ban is also a refusal
    assert banned.value >= forbidden.value >= 1
    used = families["marketlab_rest_weight_used"][0]
    assert 0 <= used.value <= 600


def test_each_governor_says_the_weight_used_in_its_window_and_the_venue_s_limit():
    """Sans-I/O, times handed in: what each venue counts and over which window."""
    binance = WeightGovernor()
    binance.sent(25, 60.0)  # a depth snapshot of 500 levels, in the minute [60, 120)
    binance.sent(5, 119.0)
    assert binance.usage(119.5) == (30, 6000)  # Binance's REQUEST_WEIGHT per minute
    binance.observe(200, {"x-mbx-used-weight-1m": "140"}, 119.6)  # others on the same IP
    assert binance.usage(119.7) == (140, 6000)
    assert binance.usage(120.0) == (0, 6000)  # a new minute
    binance.observe(403, {}, 121.0)  # its firewall
    assert (binance.stats.forbidden, binance.stats.rate_limited, binance.stats.banned) == (1, 0, 0)

    bybit = IpWindowPacer()
    for t in (0.0, 1.0, 4.0):
        bybit.sent(None, t)
    assert bybit.usage(4.5) == (3, 600)  # 600 requests in any 5 s per IP
    assert bybit.usage(5.5) == (2, 600)  # the first has left the window
    bybit.observe(403, 6.0)
    assert (bybit.stats.forbidden, bybit.stats.banned) == (1, 1)  # its 403 is its ban

    okx = WindowPacer({"books": 40, "time": 10})
    okx.sent("books", 0.0)
    for t in (0.1, 0.2, 0.3):
        okx.sent("time", t)
    assert okx.usage(0.5) == (3, 10)  # the endpoint nearest its limit (3/10 > 1/40)
    assert okx.usage(2.15) == (2, 10)

    coinbase = SecondWindowPacer()
    coinbase.sent(None, 0.0)
    coinbase.sent(None, 0.5)
    assert coinbase.usage(0.9) == (2, 10)
    assert coinbase.usage(1.2) == (1, 10)
