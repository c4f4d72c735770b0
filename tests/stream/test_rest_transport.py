"""The paced REST transport every venue's client shares, over real sockets to the simulator:
what reaches the caller as records, and what as a :class:`RestError` that says whether trying
again can help (the stream layer retries only those)."""

from __future__ import annotations

import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketlab.sim import SimExchange
from marketlab.stream.rest import Answer, RestError, status_refusal
from marketlab.venues.binance.rest import BinanceRest
from tests.conftest import START
from tests.fuzzing import fuzz, mutated
from tests.rest_calls import answered, filled_book

BINANCE_REFUSAL = b'{"code":-1121,"msg":"Invalid symbol."}'


def test_records_come_from_the_bodies_as_the_venue_sent_them(sim):
    rest = BinanceRest(sim.rest_url)

    async def calls():
        now = await rest.server_time()
        book = await filled_book(rest, "BTCUSDT", 5)
        trades = await rest.trades_from("BTCUSDT", 1, 3)  # public, keyless
        return now, book, trades

    now, book, trades = answered(rest, calls())
    assert abs(now - sim.now_ms()) < 60_000
    assert len(book.bids) == 5 and book.bids[0][0] < book.asks[0][0]
    assert [t.trade_id for t in trades] == [1, 2, 3]
    assert rest.governor.stats.requests >= 3 and rest.last_failure is None
    used, limit = rest.weight_usage()
    assert limit == 6000 and used >= 1 + 5 + 25


def test_an_unknown_symbol_is_refused_for_good_with_the_venues_words(sim):
    rest = BinanceRest(sim.rest_url)
    with pytest.raises(RestError) as caught:
        answered(rest, rest.depth("NOPEUSDT", 5))
    assert not caught.value.retryable
    text = str(caught.value)
    assert "/api/v3/depth" in text and "NOPEUSDT" in text and "HTTP 400" in text
    assert "-1121" in text  # Binance's own code and message, quoted
    assert rest.last_failure is not None


def test_a_rate_limit_is_retryable_and_holds_the_next_request():
    # The venue counts less weight than the client believes it may use: its 429 must stop us.
    with SimExchange(["BTCUSDT"], speed=60, seed=3, start_time=START, weight_limit=60) as sim:
        rest = BinanceRest(sim.rest_url, weight_limit=6000)

        async def until_refused():
            for _ in range(10):
                await rest.depth("BTCUSDT", 1000)  # weight 50
            return None

        with pytest.raises(RestError) as caught:
            answered(rest, until_refused())
    assert caught.value.retryable and "HTTP 429" in str(caught.value)
    assert rest.governor.stats.rate_limited == 1
    assert rest.governor.delay(1, rest.clock()) > 0  # Retry-After is kept


def test_no_answer_is_retryable_and_recovery_is_reported(sim):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    rest = BinanceRest(dead, timeout_s=2)
    with pytest.raises(RestError) as caught:
        answered(rest, rest.server_time())
    assert caught.value.retryable and "GET /api/v3/time" in str(caught.value)

    recovered = []
    rest.base_url = sim.rest_url  # the venue is back
    rest.on_recovered = lambda: recovered.append(True)
    answered(rest, rest.server_time())
    assert recovered == [True]


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        *[(400, False), (401, False), (404, False), (405, False), (451, False)],
        *[(403, True), (408, True), (418, True), (429, True), (500, True), (503, True)],
    ],
)
def test_the_status_says_whether_a_retry_can_help(status, retryable):
    problem = status_refusal(Answer(status, {}, BINANCE_REFUSAL), "GET /api/v3/depth")
    assert problem is not None and problem.retryable is retryable
    assert str(problem).startswith(f"GET /api/v3/depth: HTTP {status}: ")
    assert "Invalid symbol." in str(problem)


def test_successes_are_no_refusal_and_long_or_empty_bodies_are_quoted_short():
    for status in (200, 201, 204):
        assert status_refusal(Answer(status, {}, b"x"), "GET /x") is None
    empty = status_refusal(Answer(502, {}, b""), "GET /x")
    assert empty is not None and str(empty) == "GET /x: HTTP 502: (empty body)"
    long = status_refusal(Answer(400, {}, b"<html>" + b"y" * 100_000), "GET /x")
    assert long is not None and len(str(long)) < 400 and str(long).endswith("...")


@fuzz()
@given(st.integers(100, 599), mutated(BINANCE_REFUSAL) | st.binary(max_size=2000))
def test_any_answer_is_a_success_or_a_refusal_with_a_short_message(status, body):
    problem = status_refusal(Answer(status, {}, body), "GET /api/v3/depth")
    assert (problem is None) == (200 <= status < 300)
    if problem is not None:
        assert len(str(problem)) < 400
