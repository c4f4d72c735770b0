"""Bybit's REST pacing, sans-I/O: well under 600 requests per 5 s per IP, and after a 403 (an
IP ban of 10 minutes) nothing at all until the ban is over."""

from __future__ import annotations

from marketlab.venues.bybit.rest import BAN_S, LIMIT, WINDOW_S, IpWindowPacer, ret_code


def send_all(pacer: IpWindowPacer, now: float, n: int) -> float:
    """Send ``n`` requests as soon as the pacer lets each go; returns when the last went."""
    for _ in range(n):
        now += pacer.delay(1, now)
        pacer.sent(1, now)
    return now


def test_no_window_of_five_seconds_holds_more_than_the_limit_with_a_margin():
    pacer = IpWindowPacer()
    times = []
    now = 1000.0
    for _ in range(2000):
        now += pacer.delay(1, now)
        pacer.sent(1, now)
        times.append(now)
    most = max(sum(1 for t in times if s <= t < s + WINDOW_S) for s in times)
    assert most <= LIMIT * 0.6  # other clients may share the IP
    assert most >= LIMIT * 0.4  # and yet it does not crawl


def test_a_403_holds_every_request_until_the_ban_is_over():
    pacer = IpWindowPacer()
    send_all(pacer, 0.0, 3)
    pacer.observe(403, 10.0)
    assert pacer.stats.banned == 1
    for at in (10.0, 11.0, 300.0, 10.0 + BAN_S - 1):
        assert pacer.delay(1, at) > 0
        assert at + pacer.delay(1, at) >= 10.0 + BAN_S  # never a request into the ban
    assert pacer.delay(1, 10.0 + BAN_S + 60.0) == 0.0


def test_a_rate_limit_answer_backs_off_for_a_window():
    pacer = IpWindowPacer()
    pacer.observe(200, 5.0, ret_code(b'{"retCode":10018,"retMsg":"Exceeded the IP Rate Limit"}'))
    assert pacer.stats.rate_limited == 1 and 0 < pacer.delay(1, 5.0) <= WINDOW_S
    pacer.observe(200, 20.0, ret_code(b'{"retCode":0,"retMsg":"OK","result":{}}'))
    pacer.observe(502, 20.0, ret_code(b"<html>bad gateway</html>"))
    assert pacer.stats.rate_limited == 1 and pacer.stats.server_errors == 1
    assert pacer.delay(1, 20.0) == 0.0
