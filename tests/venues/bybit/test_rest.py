"""Bybit's REST, sans-I/O: its pacing (well under 600 requests per 5 s per IP, and after a 403,
an IP ban of 10 minutes, nothing at all until the ban is over) and what each answer is (Bybit
sends its errors with HTTP 200 and a ``retCode``: which of them may pass, and which never)."""

from __future__ import annotations

import pytest

from marketlab.stream.rest import Answer, RestError
from marketlab.venues.bybit.rest import (
    BAN_S,
    LIMIT,
    WINDOW_S,
    BybitRest,
    IpWindowPacer,
    refusal_of,
    ret_code,
)


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


# --- what an answer is: hand-made answers, including those the simulator never gives ------

REQUEST = "GET /v5/market/kline {'category': 'spot', 'symbol': 'NOPEUSDT'}"
JSON = {"Content-Type": "application/json"}


def envelope_of(code: int, msg: str) -> bytes:
    return b'{"retCode":%d,"retMsg":"%s","result":{},"retExtInfo":{},"time":1767225600000}' % (
        code,
        msg.encode(),
    )


def refused(status: int, body: bytes) -> RestError:
    error = refusal_of(Answer(status, JSON, body), REQUEST)
    assert isinstance(error, RestError), f"HTTP {status} {body!r} taken for a success"
    return error


def test_an_envelope_with_ret_code_0_is_a_success():
    body = b'{"retCode":0,"retMsg":"OK","result":{"list":[]},"retExtInfo":{},"time":1}'
    assert refusal_of(Answer(200, JSON, body), REQUEST) is None


@pytest.mark.parametrize(
    ("code", "msg"),
    [
        (10001, "params error: symbol invalid"),  # an unlisted symbol on spot
        (10001, "Not supported symbols"),  # an unlisted symbol on linear
        (10001, "params error: interval invalid"),
        (10017, "Route not found"),
        (7001, "request params type error"),
        (170130, "Data sent for paramter 'limit' is not valid."),
        (99999, "Not supported symbols"),  # the message names an unlisted symbol: any code
    ],
)
def test_a_bad_symbol_parameter_or_path_is_refused_for_good_naming_the_request_and_code(code, msg):
    error = refused(200, envelope_of(code, msg))
    assert not error.retryable
    assert REQUEST in str(error) and str(code) in str(error) and msg in str(error)


@pytest.mark.parametrize(
    ("code", "msg"),
    [
        (10006, "Too many visits!"),
        (10018, "Exceeded the IP Rate Limit"),
        (10016, "Server error."),
        (10000, "Server Timeout"),
        (170007, "Timeout waiting for response from backend server."),
    ],
)
def test_a_rate_limit_or_the_venues_own_trouble_may_pass(code, msg):
    error = refused(200, envelope_of(code, msg))
    assert error.retryable and str(code) in str(error) and msg in str(error)


def test_a_403_page_is_the_ip_ban_and_may_pass():
    error = refused(403, b"<html><body><h1>403 Forbidden</h1>access too frequent</body></html>")
    assert error.retryable
    assert "403" in str(error) and "ban" in str(error) and "access too frequent" in str(error)


def test_the_status_decides_when_the_body_says_nothing_of_bybits():
    assert refused(429, b"").retryable
    assert refused(502, b"<html>bad gateway</html>").retryable
    assert refused(504, b"").retryable
    gone = refused(404, b"Not Found")
    assert not gone.retryable and "404" in str(gone)
    assert not refused(401, b"").retryable


def test_bybits_code_on_an_error_status_says_more_than_the_status():
    server = refused(500, envelope_of(10016, "Internal system error."))
    assert server.retryable and "10016" in str(server) and "HTTP 500" in str(server)
    assert refused(400, envelope_of(10006, "Too many visits!")).retryable  # a rate limit
    assert not refused(503, envelope_of(10001, "params error: symbol invalid")).retryable
    assert not refused(404, envelope_of(12345, "category invalid")).retryable  # as its status


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<html>maintenance</html>",
        b'{"result":{"list":[]}}',  # no retCode
        b'{"retCode":"0","retMsg":"OK"}',  # a code that is no integer
        b'[{"retCode":0}]',
        b'{"retCode":0,"retMsg":"OK","result":' + b"[" * 100_000,
    ],
)
def test_a_2xx_answer_that_is_not_bybits_envelope_is_asked_again(body):
    error = refused(200, body)
    assert error.retryable and REQUEST in str(error) and "retCode" in str(error)


def test_a_message_of_another_type_or_length_still_names_the_code():
    odd = refused(200, b'{"retCode":10001,"retMsg":{"why":["symbol"]}}')
    assert not odd.retryable and "10001" in str(odd) and "symbol" in str(odd)
    long = refused(200, envelope_of(10001, "x" * 100_000))
    assert not long.retryable and len(str(long)) < 1000


def test_the_client_shows_the_pacer_each_answer_before_judging_it():
    rest = BybitRest("http://127.0.0.1:9")  # nothing is sent: answers are handed in
    rest.observe(Answer(200, JSON, envelope_of(10018, "Exceeded the IP Rate Limit")))
    assert rest.governor.stats.rate_limited == 1
    assert 0 < rest.governor.delay(1, rest.clock()) <= WINDOW_S
    rest.observe(Answer(403, {}, b"access too frequent"))
    assert (rest.governor.stats.banned, rest.governor.stats.forbidden) == (1, 1)
    assert rest.governor.delay(1, rest.clock()) >= BAN_S
    rest.observe(Answer(502, JSON, envelope_of(10016, "Internal system error.")))
    assert rest.governor.stats.server_errors == 1
    error = rest.refusal(Answer(200, JSON, envelope_of(10001, "symbol invalid")), REQUEST)
    assert error is not None and not error.retryable
