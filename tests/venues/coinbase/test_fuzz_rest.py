"""Coinbase's REST answers as the client judges them before any reader sees the body: any
bytes with any status and any Retry-After give None or a :class:`RestError` (never another
exception), and the pacer takes them without complaint."""

from __future__ import annotations

import msgspec
from hypothesis import example, given
from hypothesis import strategies as st
from multidict import CIMultiDict

from marketlab.stream.rest import Answer, RestError
from marketlab.venues.coinbase.rest import SecondWindowPacer, refusal
from tests.fuzzing import fuzz, mutated, restructured
from tests.venues.coinbase.test_rest_http import BOOK

REQUEST = "GET /api/v3/brokerage/market/product_book {'product_id': 'BTC-USD', 'limit': 5}"
BODIES = [
    msgspec.json.encode(body)
    for body in (
        {"error": "NOT_FOUND", "error_details": "product not found", "message": "not found"},
        {"code": 3, "message": "invalid product_id", "details": [{"@type": "x"}]},
        {"errors": [{"id": "rate_limit_exceeded", "message": "Too many requests"}]},
        BOOK,  # a product book as Coinbase answers it
    )
]
STATUSES = st.sampled_from([200, 204, 400, 401, 403, 404, 408, 418, 429, 500, 503]) | st.integers(
    100, 599
)
RETRY_AFTER = st.none() | st.sampled_from(["1", "-1", "nan", "inf", "1e400", "", "Wed, 21 Oct"])
BODY = (
    st.sampled_from(BODIES).flatmap(mutated)
    | st.sampled_from(BODIES).flatmap(restructured)
    | st.binary(max_size=300)
)


@fuzz(2)
@given(STATUSES, BODY, RETRY_AFTER | st.text(max_size=12))
@example(404, b'{"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}", None)  # deeper than decoders go
@example(200, b'{"code":123456789012345678901234567890,"message":1e400}', "1e400")
@example(429, b'{"error":"\\ud800","message":"\\u0000"}', "nan")
def test_any_answer_is_none_or_a_rest_error(status, body, retry_after):
    headers = CIMultiDict() if retry_after is None else CIMultiDict({"Retry-After": retry_after})
    answer = Answer(status, headers, body)
    judged = refusal(answer, REQUEST)
    assert judged is None or isinstance(judged, RestError)
    if judged is not None:
        assert str(judged).startswith(f"{REQUEST}: HTTP {status}: ")
    if not 200 <= status < 300:
        assert judged is not None  # no failed status passes as data
    pacer = SecondWindowPacer()
    pacer.observe(status, 100.0, headers.get("Retry-After"))
    assert 0.0 <= pacer.delay(1, 100.0) <= 60.0
