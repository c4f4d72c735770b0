"""What a Coinbase answer that is not data becomes: a :class:`RestError` that names the request
and quotes Coinbase's code and message, retryable only when trying later may help (the stream
layer retries those and gives up on the others). Over a real socket against the simulator's
Coinbase face where it can answer so (an unknown product, a window too wide, a rate limit, a
server error), with hand-made answers for what it cannot (401, 403, Retry-After, an error in a
2xx, bodies that are no JSON)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import msgspec
import pytest
from multidict import CIMultiDict

from marketlab.sim import SimExchange
from marketlab.stream.rest import Answer, RestError
from marketlab.venues.coinbase.rest import CoinbaseRest, refusal
from tests.conftest import START

REQUEST = "GET /api/v3/brokerage/market/products/BTC-USD/candles {'granularity': 'ONE_MINUTE'}"
MAX_CANDLES = 100  # the simulator's window, narrower than the client's page of 300


@pytest.fixture(scope="module")
def sim() -> Iterator[SimExchange]:
    with SimExchange(
        ["BTCUSDT"], speed=60, seed=5, start_time=START, coinbase_max_candles=MAX_CANDLES
    ) as exchange:
        yield exchange


def failure(rest: CoinbaseRest, call) -> RestError:
    """The RestError ``call`` (a coroutine of ``rest``) ends in, the client closed after."""

    async def run() -> RestError:
        try:
            await call
        except RestError as exc:
            return exc
        finally:
            await rest.close()
        raise AssertionError("the venue's refusal was answered as a success")

    return asyncio.run(run())


def test_an_unknown_product_is_refused_for_good_with_coinbases_words(sim):
    rest = CoinbaseRest(sim.rest_url)
    exc = failure(rest, rest.depth("NOPEUSDT", 5))
    assert not exc.retryable
    text = str(exc)
    assert "/api/v3/brokerage/market/product_book" in text and "NOPE-USDT" in text
    assert "HTTP 404" in text and "NOT_FOUND" in text
    assert "product NOPE-USDT not found" in text  # the simulator's message, quoted
    assert rest.last_failure is not None and rest.last_success is None
    assert rest.governor.stats.rate_limited == rest.governor.stats.server_errors == 0


def test_an_unknown_product_in_the_path_is_refused_for_good(sim):
    rest = CoinbaseRest(sim.rest_url)
    exc = failure(rest, rest.recent_trades("NOPEUSDT", 5))
    assert not exc.retryable
    assert "/market/products/NOPE-USDT/ticker" in str(exc) and "NOT_FOUND" in str(exc)


def test_a_window_the_venue_refuses_is_not_retried(sim):
    rest = CoinbaseRest(sim.rest_url)
    now = START + 3 * 3_600_000
    exc = failure(rest, rest.klines("BTCUSDT", "1m", start=START, limit=300, server_time=now))
    assert not exc.retryable
    text = str(exc)
    assert "HTTP 400" in text and "INVALID_ARGUMENT" in text
    assert f"less than {MAX_CANDLES}" in text  # the venue's reason


def test_a_rate_limit_is_retryable_and_holds_the_next_request(sim):
    rest = CoinbaseRest(sim.rest_url)

    async def run() -> tuple[RestError, int, int]:
        try:
            sim.inject("rest429", "1", venue="coinbase")
            try:
                await rest.server_time()
            except RestError as exc:
                refused = exc
            else:
                raise AssertionError("a 429 answered as a success")
            asked = sim.stats["rest_requests"]
            late = asyncio.create_task(rest.server_time())
            await asyncio.sleep(0.5)
            assert not late.done() and sim.stats["rest_requests"] == asked  # held, not sent
            now = await late  # sent once the pause is over, and answered
            return refused, asked, now
        finally:
            await rest.close()

    refused, asked, now = asyncio.run(run())
    assert refused.retryable
    assert "HTTP 429" in str(refused) and "RESOURCE_EXHAUSTED" in str(refused)
    assert sim.stats["rest_requests"] == asked + 1 and abs(now - sim.now_ms()) < 600_000
    assert rest.governor.stats.rate_limited == 1
    assert rest.governor.stats.waited_s >= 1.5  # the 2 s pause after a 429 without Retry-After


def test_a_server_error_is_retryable_and_counted(sim):
    rest = CoinbaseRest(sim.rest_url)
    sim.inject("rest503", "1", venue="coinbase")
    exc = failure(rest, rest.listed_symbols())
    assert exc.retryable and "HTTP 503" in str(exc) and "UNAVAILABLE" in str(exc)
    assert rest.governor.stats.server_errors == 1
    assert rest.governor.stats.rate_limited == 0


def answer(status: int, body: object, **headers: str) -> Answer:
    raw = body if isinstance(body, bytes) else msgspec.json.encode(body)
    return Answer(status, CIMultiDict(headers), raw)


@pytest.mark.parametrize(
    ("status", "body", "retryable", "words"),
    [
        # a path that needs a key: never mended by waiting
        (401, {"error": "UNAUTHENTICATED", "message": "Unauthorized"}, False, "UNAUTHENTICATED"),
        # the grpc-gateway's shape, a bad argument
        (400, {"code": 3, "message": "invalid product_id", "details": []}, False, "3: invalid"),
        (405, b"Method Not Allowed", False, "Method Not Allowed"),
        # a ban or a firewall's refusal passes; the pacer waits it out
        (403, {"error": "PERMISSION_DENIED", "message": "blocked"}, True, "PERMISSION_DENIED"),
        (408, b"", True, "(empty body)"),
        (418, b"teapot", True, "teapot"),
        (502, b"<html><body>Bad gateway</body></html>", True, "<html><body>Bad gateway"),
        # the v2 API's list of errors on the same host
        (429, {"errors": [{"id": "rate_limit_exceeded", "message": "Too many"}]}, True, "rate_"),
        # Coinbase's error in a 2xx, instead of data
        (200, {"error": "INTERNAL", "message": "try again"}, True, "INTERNAL: try again"),
        (200, {"error": "INVALID_ARGUMENT", "error_details": "bad end"}, False, "bad end"),
        (200, {"code": 13, "message": "internal"}, True, "Coinbase error 13: internal"),
    ],
)
def test_each_refusal_says_what_and_whether_to_try_again(status, body, retryable, words):
    exc = refusal(answer(status, body), REQUEST)
    assert isinstance(exc, RestError)
    assert exc.retryable is retryable
    assert str(exc).startswith(f"{REQUEST}: HTTP {status}: ")
    assert words in str(exc)


@pytest.mark.parametrize(
    "body",
    [
        {"candles": [{"start": "1767225600", "open": "1"}]},
        {"products": [], "num_products": 0},
        {"code": 0, "message": ""},  # grpc-gateway's OK
        {"error": None, "message": "no error named"},
        b"[]",
        b"not json at all",
    ],
)
def test_a_2xx_that_names_no_error_is_no_refusal(body):
    assert refusal(answer(200, body), REQUEST) is None


def test_an_odd_envelope_keeps_the_body_quoted():
    # values of other types than the envelope's: the status decides, the body is quoted
    exc = refusal(answer(404, {"error": ["NOT_FOUND"], "message": {"x": 1}}), REQUEST)
    assert isinstance(exc, RestError) and not exc.retryable
    assert '"NOT_FOUND"' in str(exc)
    long_message = "m" * 5000
    exc = refusal(answer(400, {"error": "INVALID_ARGUMENT", "message": long_message}), REQUEST)
    assert isinstance(exc, RestError) and len(str(exc)) < len(REQUEST) + 400


def test_retry_after_in_any_case_holds_the_pacer_that_long():
    rest = CoinbaseRest("http://127.0.0.1:1")
    rest.observe(answer(429, {"error": "RESOURCE_EXHAUSTED"}, **{"retry-after": "7"}))
    assert 6.5 < rest.governor.delay(1, rest.clock()) <= 7.0
    assert rest.governor.stats.rate_limited == 1
    rest.observe(answer(200, {"iso": ""}))
    rest.observe(answer(429, b"", **{"RETRY-AFTER": "30"}))
    assert 29.5 < rest.governor.delay(1, rest.clock()) <= 30.0
    rest.observe(answer(500, b""))
    assert rest.governor.stats.server_errors == 1 and rest.governor.stats.rate_limited == 2
