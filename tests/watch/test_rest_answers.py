"""A REST ban counted where it happens and exposed: Bybit answers 403 to a client past its
limit (its ban), and the exposition shows the 403 beside the REST weight it allows."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from marketlab.sim import SimExchange
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
        text = exposition(lab_registry(lab)).decode()
        families = {f.name: f.samples for f in text_string_to_metric_families(text)}
    summary = lab.summary()
    forbidden = families["marketlab_rest_forbidden"][0]
    assert (forbidden.labels, forbidden.value) == ({"venue": "bybit"}, summary["rest_forbidden"])
    banned = families["marketlab_rest_rate_limited"][0]  # a ban is also a refusal
    assert banned.value >= forbidden.value >= 1
    used = families["marketlab_rest_weight_used"][0]
    assert 0 <= used.value <= 600
