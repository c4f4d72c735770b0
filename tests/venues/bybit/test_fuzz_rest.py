"""What Bybit's REST client reads of every answer before its body's records (the envelope's
``retCode`` and ``retMsg``, for the pacer and for what the answer is), fed any bytes with any
status: a success or a :class:`RestError`, never another exception, and a success only for an
envelope with ``retCode`` 0 under a 2xx status."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from marketlab.stream.rest import Answer, RestError
from marketlab.venues.bybit.rest import BybitRest, refusal_of, ret_code
from tests.fuzzing import fuzz, mutated

GOOD = [
    b'{"retCode":0,"retMsg":"OK","result":{"timeSecond":"1767225600",'
    b'"timeNano":"1767225600000000000"},"retExtInfo":{},"time":1767225600000}',
    b'{"retCode":10001,"retMsg":"params error: symbol invalid","result":{},"retExtInfo":{},'
    b'"time":1767225600000}',
    b'{"retCode":10006,"retMsg":"Too many visits!","result":{},"retExtInfo":{},'
    b'"time":1767225600000}',
    b"<html><body><h1>403 Forbidden</h1>access too frequent</body></html>",
]
REQUEST = "GET /v5/market/time"


def check(status: int, body: bytes) -> None:
    answer = Answer(status, {"Content-Type": "application/json"}, body)
    code = ret_code(body)
    assert code is None or isinstance(code, int)
    error = refusal_of(answer, REQUEST)
    if error is None:
        assert 200 <= status < 300 and code == 0
    else:
        assert isinstance(error, RestError) and str(error).startswith(REQUEST)
    rest = BybitRest("http://127.0.0.1:9")  # the pacer is shown the answer: never a raise
    rest.observe(answer)
    assert rest.governor.stats.banned == (status == 403)


@fuzz(2)
@given(
    st.integers(100, 599),
    st.sampled_from(GOOD).flatmap(lambda good: st.just(good) | mutated(good)) | st.binary(),
)
@example(200, b'{"retCode":0,"retMsg":' + b"[" * 100_000)
@example(200, b'{"x":' + b"[" * 100_000 + b"]" * 100_000 + b',"retCode":0}')
@example(200, b'{"retCode":0,"retMsg":"OK","retCode":10001}')
@example(200, b'{"retCode":1e400}')
@example(200, b'{"retCode":18446744073709551616}')
@example(200, b'{"retCode":true}')
@example(403, b"")
def test_any_answer_is_a_success_or_a_rest_error(status, body):
    check(status, body)
