"""Fuzz target of the QueryRoute's reading of a query string (bytes from outside): for any query
string, a route served by it answers exactly what the same declaration answers through FastAPI's
general handler — the same values read, the same 422 with the same errors, never a 5xx.

Raw query strings (good ones mutated as a fuzzer mutates them: cut, bits flipped, bytes
inserted, ``%`` escapes broken) go to the app as uvicorn hands them over, in the ASGI scope."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import pytest
from fastapi import FastAPI, Query, Response
from fastapi.routing import APIRoute
from hypothesis import example, given
from hypothesis import strategies as st

from marketlab.server.params import EXCHANGE_PATTERN, symbols_pattern
from marketlab.server.query_route import QueryRoute
from tests.fuzzing import fuzz, mutated

GOOD = [
    b"",
    b"symbols=BTCUSDT",
    b"symbols=btcusdt,ETH-USDT&exchange=binance",
    b"exchange=okx&limit=5",
    b"symbols=BTCUSDT&symbols=ETHUSDT&limit=1000",
    b"limit=0&symbols=&exchange=",
]


async def echo(
    symbols: Annotated[str | None, Query(pattern=symbols_pattern(3), description="Symbols")] = None,
    exchange: Annotated[str | None, Query(pattern=EXCHANGE_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> Response:
    """What the route was called with, as JSON."""
    called = {"symbols": symbols, "exchange": exchange, "limit": limit}
    return Response(json.dumps(called), media_type="application/json")


def both_ways() -> FastAPI:
    """The same endpoint and declaration at /general (FastAPI's handler) and /query."""
    app = FastAPI()
    app.router.add_api_route("/general", echo, methods=["GET"], route_class_override=APIRoute)
    app.router.add_api_route("/query", echo, methods=["GET"], route_class_override=QueryRoute)
    return app


APP = both_ways()


async def answer(path: str, query: bytes) -> tuple[int, Any]:
    """The app's status and JSON body for GET ``path?query``."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await APP(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body)


def test_a_good_query_is_read_as_fastapi_reads_it():
    assert asyncio.run(answer("/query", b"symbols=BTCUSDT&symbols=ethusdt&limit=7")) == (
        200,
        {"symbols": "ethusdt", "exchange": None, "limit": 7},  # the last of a repeated one
    )
    status, body = asyncio.run(answer("/query", b"symbols=&limit=0"))
    assert status == 422
    assert [e["loc"] for e in body["detail"]] == [["query", "symbols"], ["query", "limit"]]


@fuzz()
@given(query=st.sampled_from(GOOD).flatmap(mutated))
@example(query=b"")
@example(query=b"symbols=BTC%ZZUSDT&limit=%")
@example(query=b"symbols=BTCUSDT%0A")
@example(query=b"limit=1e3&exchange=\xff")
def test_any_query_is_answered_as_fastapi_answers_it(query):
    general = asyncio.run(answer("/general", query))
    served = asyncio.run(answer("/query", query))
    assert served == general, query
    assert served[0] in (200, 422)


async def by_path(symbol: str) -> Response:
    return Response(symbol)


def sync_endpoint(symbols: str | None = None) -> Response:
    return Response(symbols)


async def validation_alias(
    symbols: Annotated[str | None, Query(validation_alias="s")] = None,
) -> Response:
    return Response(symbols)


async def list_default(symbols: Annotated[list[str], Query()] = []) -> Response:  # noqa: B006
    return Response(",".join(symbols))


@pytest.mark.parametrize(
    ("path", "endpoint", "refusal"),
    [
        ("/depth/{symbol}", by_path, "query parameters only"),
        ("/prices", sync_endpoint, "async def"),
        ("/prices", list_default, "has a default of None, a string, a number or a bool"),
        ("/prices", validation_alias, "by its alias only"),
    ],
)
def test_an_endpoint_a_query_route_cannot_serve_is_refused_when_declared(path, endpoint, refusal):
    app = FastAPI()
    with pytest.raises(TypeError, match=refusal):
        app.router.add_api_route(path, endpoint, methods=["GET"], route_class_override=QueryRoute)
