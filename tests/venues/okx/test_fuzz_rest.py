"""Fuzz target of what the OKX REST client reads of every answer before its parsers do: the
venue's code and message (:func:`venue_code`), the refusal an answer is (:func:`refusal_of`)
and the status its pacer sees (:func:`pacing_status`). Any bytes with any status give None or a
:class:`RestError` (and a status), never another exception."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from marketlab.stream.rest import Answer, RestError
from marketlab.venues.okx.rest import pacing_status, refusal_of, venue_code
from tests.fuzzing import fuzz, mutated

GOOD_BODIES = [
    b'{"code":"0","msg":"","data":[{"ts":"1767225600000"}]}',
    b'{"code":"51001","msg":"Instrument ID does not exist.","data":[]}',
    b'{"code":"50011","msg":"Too Many Requests","data":[]}',
    b'{"code":"0","msg":"","data":[{"asks":[["41006.8","0.6","0","1"]],'
    b'"bids":[["41006.3","0.3","0","1"]],"ts":"1767225600000"}]}',
]
STATUSES = st.sampled_from([200, 400, 403, 404, 410, 418, 429, 500, 503]) | st.integers(0, 999)
BODIES = (
    st.sampled_from(GOOD_BODIES).flatmap(lambda good: mutated(good, max_edits=6))
    | st.binary(max_size=200)
    | st.sampled_from(GOOD_BODIES)
)
REQUEST = "GET /api/v5/market/books {'instId': 'BTC-USDT', 'sz': 5}"


@fuzz(2)
@given(STATUSES, BODIES)
@example(200, b'{"code":' + b"[" * 50_000 + b"]" * 50_000 + b"}")  # nesting past the limit
@example(200, b'{"code":"51001","msg":' + b"{" * 50_000 + b"}")
@example(200, b'{"code":"51001","msg":{"deep":[1,2]},"data":[]}')  # a message of another shape
@example(400, b'{"code":1e400,"msg":"x"}')
@example(400, b'{"code":"\xff\xfe","msg":"x"}')
@example(200, b"\x00")
def test_any_answer_is_none_or_a_rest_error(status, body):
    answer = Answer(status, {}, body)
    said = venue_code(body)
    assert said is None or all(isinstance(part, str) for part in said)
    problem = refusal_of(answer, REQUEST)
    assert problem is None or isinstance(problem, RestError)
    if problem is not None:
        assert str(problem).startswith(REQUEST) and isinstance(problem.retryable, bool)
    else:  # only a success is no refusal: a 2xx without a code, or with OKX's "0"
        assert 200 <= status < 300 and (said is None or said[0] == "0")
    assert pacing_status(answer) in (status, 429)
