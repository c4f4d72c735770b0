"""The request-weight governor, fed times and headers (no sockets)."""

import pytest

from marketlab.venues.binance.rest import WeightGovernor


def test_waits_for_the_next_minute_before_the_budget_runs_out():
    g = WeightGovernor(weight_limit=100, headroom=0.8)
    now = 60 * 1000 + 10.0  # ten seconds into a minute
    for _ in range(8):
        assert g.delay(10, now) == 0
        g.sent(10, now)
    assert g.delay(10, now) == pytest.approx(50.05)
    assert g.delay(10, now + 50.1) == 0  # a new minute, a new budget


def test_the_servers_count_wins_when_it_is_higher():
    g = WeightGovernor(weight_limit=100, headroom=0.8)
    g.sent(1, 120.0)
    g.observe(200, {"X-MBX-USED-WEIGHT-1M": "79"}, 121.0)  # other clients on this IP
    assert g.used == 79 and g.delay(2, 121.0) > 0
    g.observe(200, {"x-mbx-used-weight-1m": "3"}, 185.0)  # next minute: the server's fresh count
    assert g.used == 3 and g.delay(2, 185.0) == 0


def test_429_and_418_block_for_retry_after():
    g = WeightGovernor()
    g.observe(429, {"Retry-After": "7"}, 1000.0)
    assert g.delay(1, 1000.0) == 7 and g.delay(1, 1007.0) == 0 and g.stats.rate_limited == 1
    g.observe(418, {}, 2000.0)  # a ban without a Retry-After: assume the documented minimum
    assert g.delay(1, 2000.0) == 120 and g.stats.banned == 1
    g.observe(503, {}, 2000.0)
    assert g.stats.server_errors == 1
