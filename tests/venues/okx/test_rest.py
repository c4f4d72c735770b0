"""OKX's public REST over the shared transport, against the simulator's OKX face on a real
socket: records from the bodies as sent, and each refusal as a :class:`RestError` that says
whether trying again can help (OKX's code in the body decides before the HTTP status), the
pacer told of every rate limit. Codes the face never sends are checked on hand-made answers."""

from __future__ import annotations

import json
import time

import pytest

from marketlab.sim import SimExchange
from marketlab.stream.rest import Answer, RestError
from marketlab.venues.okx.perp_rest import OkxPerpRest
from marketlab.venues.okx.rest import LIMITS, WINDOW_S, OkxRest, WindowPacer, refusal_of
from tests.conftest import START
from tests.rest_calls import answered, filled_book


def test_records_come_from_the_bodies_as_the_venue_sent_them(sim):
    rest = OkxRest(sim.rest_url)

    async def calls():
        now = await rest.server_time()
        book = await filled_book(rest, "BTCUSDT", 5)
        listed = await rest.listed_symbols()
        candles = await rest.klines("BTCUSDT", "1m", limit=3)
        (ticker,) = await rest.tickers(["BTCUSDT"])
        return now, book, listed, candles, ticker

    now, book, listed, candles, ticker = answered(rest, calls())
    assert abs(now - sim.now_ms()) < 60_000
    assert len(book.bids) == 5 and book.bids[0][0] < book.asks[0][0]
    assert set(listed) == {"BTCUSDT", "ETHUSDT"}
    oracle = sim.klines("BTCUSDT", "1m", start=candles[0].open_time, limit=2, venue="okx")
    assert [(k.open_time, k.close) for k in candles[:2]] == [
        (k["open_time"], k["close"]) for k in oracle
    ]
    assert ticker.symbol == "BTCUSDT" and ticker.bid <= ticker.ask
    assert rest.governor.stats.requests >= 5 and rest.last_failure is None


def test_an_unknown_instrument_is_refused_for_good_with_the_venues_words(sim):
    rest = OkxRest(sim.rest_url)
    with pytest.raises(RestError) as caught:
        answered(rest, rest.depth("NOPEUSDT", 5))
    assert not caught.value.retryable
    text = str(caught.value)
    assert "/api/v5/market/books" in text and "NOPE-USDT" in text
    assert "51001" in text and "Instrument ID does not exist" in text  # OKX's code and words
    assert rest.last_failure is not None and rest.governor.stats.rate_limited == 0


def test_an_unknown_swap_is_refused_for_good_with_the_venues_words(sim):
    rest = OkxPerpRest(sim.rest_url)  # a call that asks before reading the swaps listed
    with pytest.raises(RestError) as caught:
        answered(rest, rest.open_interest_history("NOPEUSDT-PERP"))
    assert not caught.value.retryable
    text = str(caught.value)
    assert "/api/v5/rubik/stat/contracts/open-interest-history" in text
    assert "51001" in text and "NOPE-USDT-SWAP" in text


def test_a_bad_parameter_is_refused_for_good(sim):
    rest = OkxRest(sim.rest_url)
    with pytest.raises(RestError) as caught:
        answered(rest, rest.depth("BTCUSDT", 0))  # sz=0: OKX's 51000
    assert not caught.value.retryable
    assert "51000" in str(caught.value) and "sz" in str(caught.value)


def test_the_venues_own_rate_limit_is_retryable_and_holds_the_next_request():
    # The client believes it may ask more often than the venue allows: its 429 must stop us.
    with SimExchange(["BTCUSDT"], speed=60, seed=3, start_time=START) as sim:
        rest = OkxRest(sim.rest_url)
        rest.governor = WindowPacer({**LIMITS, "time": 1000})

        async def until_refused():
            for _ in range(4 * LIMITS["time"]):
                await rest.server_time()

        with pytest.raises(RestError) as caught:
            answered(rest, until_refused())
        assert caught.value.retryable
        assert "HTTP 429" in str(caught.value) and "50011" in str(caught.value)
        assert rest.governor.stats.rate_limited == 1
        held = rest.governor.delay("time", rest.clock())
        assert WINDOW_S / 2 < held <= WINDOW_S  # the whole endpoint waits, not only `time`
        assert rest.governor.delay("books", rest.clock()) > 0

        began = time.monotonic()
        assert answered(rest, rest.server_time()) > 0  # asked again once the wait is over
        assert time.monotonic() - began >= held - 0.1
        assert rest.governor.stats.waited_s >= held - 0.1


def test_a_server_error_is_retryable_and_counted(fresh_sim):
    fresh_sim.fail_rest(503, venue="okx")
    rest = OkxRest(fresh_sim.rest_url)
    with pytest.raises(RestError) as caught:
        answered(rest, rest.server_time())
    assert caught.value.retryable and "HTTP 503" in str(caught.value)
    assert "50001" in str(caught.value)  # the face's "service temporarily unavailable"
    assert rest.governor.stats.server_errors == 1
    assert rest.governor.delay("time", rest.clock()) == 0  # no rate limit: no wait
    assert answered(rest, rest.server_time()) > 0  # the next answer is a good one


# --- the codes the face never sends, on answers made by hand ---------------------------------


def _answer(status: int, body: bytes) -> Answer:
    return Answer(status, {"Content-Type": "application/json"}, body)


def _code(code: str, msg: str = "words") -> bytes:
    return b'{"code":"%s","msg":"%s","data":[]}' % (code.encode(), msg.encode())


@pytest.mark.parametrize(
    ("status", "body", "retryable"),
    [
        (200, _code("50013", "System is busy, please try again later."), True),
        (400, _code("50004", "Endpoint request timeout."), True),  # a 400 that is no fault of ours
        (503, _code("50001", "Service temporarily unavailable."), True),
        (410, _code("50005", "API is offline or unavailable."), True),
        (500, _code("50026", "System error."), True),
        (429, _code("50061", "Sub-account rate limit reached."), True),
        (200, _code("50011", "Rate limit reached."), True),
        (200, _code("51001", "Instrument ID does not exist."), False),  # a refusal sent as 200
        (400, _code("50014", "Parameter instId can not be empty."), False),
        (400, _code("50025", "Parameter count exceeds the limit."), False),
        (200, b'{"code":51001,"msg":"Instrument ID does not exist.","data":[]}', False),
        (200, _code("59999", "Something new."), True),  # an unknown refusal: try later
        (404, _code("59999", "Something new."), False),  # ... unless its status says never
        (502, _code("59999", "Something new."), True),
    ],
)
def test_okx_codes_decide_before_the_status(status, body, retryable):
    problem = refusal_of(_answer(status, body), "GET /api/v5/market/books {'instId': 'X-Y'}")
    assert isinstance(problem, RestError) and problem.retryable is retryable
    text, sent = str(problem), json.loads(body)
    assert text.startswith("GET /api/v5/market/books {'instId': 'X-Y'}: ")  # the request
    assert f"HTTP {status}" in text and f"code {sent['code']}: {sent['msg']}" in text


@pytest.mark.parametrize(
    ("status", "body", "retryable"),
    [
        (502, b"<html><body>502 Bad Gateway</body></html>", True),
        (404, b"<html>Not Found</html>", False),
        (403, b"", True),  # a firewall's refusal: not now
        (429, b"slow down", True),
        (400, b'{"error":"no code here"}', False),
        (500, b'{"code":"0","msg":"","data":[]}', True),  # a success code does not mend a 500
    ],
)
def test_an_answer_without_an_okx_code_is_judged_by_its_status(status, body, retryable):
    problem = refusal_of(_answer(status, body), "GET /api/v5/public/time")
    assert isinstance(problem, RestError) and problem.retryable is retryable
    assert f"HTTP {status}" in str(problem)


def test_a_success_is_no_refusal():
    body = b'{"code":"0","msg":"","data":[{"ts":"1767225600000"}]}'
    assert refusal_of(_answer(200, body), "GET /api/v5/public/time") is None


def test_a_rate_limit_code_reaches_the_pacer_as_a_429_whatever_its_status():
    rest = OkxRest("http://127.0.0.1:9")  # never asked: answers are handed to it
    rest.observe(_answer(200, _code("50011", "Rate limit reached.")))
    assert rest.governor.stats.rate_limited == 1
    assert rest.governor.delay("books", rest.clock()) > WINDOW_S / 2
    rest.observe(_answer(429, _code("50061")))  # counted once, not as a 429 and a code
    assert rest.governor.stats.rate_limited == 2
    rest.observe(_answer(200, _code("50013")))  # busy, not a limit: no wait added
    rest.observe(_answer(503, _code("50001")))
    assert (rest.governor.stats.rate_limited, rest.governor.stats.server_errors) == (2, 1)
