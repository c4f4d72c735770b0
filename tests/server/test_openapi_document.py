"""The OpenAPI document, exactly: what ``/openapi.json`` serves equals, to the order of its keys,
the document kept beside this test (``openapi/*.json``), so a change to how the routes are
declared, matched or served cannot move the schema, the docs page or a client generator's input
unnoticed.

After a deliberate change of the API (or a FastAPI or pydantic release that writes the document
differently), write the documents anew and review their diff:
``python -m tests.server.test_openapi_document``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from marketlab.lab import Lab
from marketlab.server import create_app
from marketlab.server.runner import ServerThread

KEPT = Path(__file__).parent / "openapi"
TOKEN = "s3cret-token"
# the server's options behind each kept document: control behind a token, and on loopback
OPTIONS: dict[str, dict[str, Any]] = {
    "with_token": {"token": TOKEN, "require_token": True},
    "loopback": {},
}


def served_document(options: dict[str, Any]) -> str:
    """The document a server over a (never started) Lab serves, written as the kept ones are."""
    lab = Lab(["BTCUSDT", "ETHUSDT", "BTCUSDT-PERP"], intervals=["1m", "5m"])
    with ServerThread(create_app(lab, **options)) as server:
        served = httpx.get(server.url + "/openapi.json", timeout=10).json()
    return json.dumps(served, indent=1)


@pytest.mark.parametrize("name", list(OPTIONS))
def test_the_served_document_is_the_kept_one(name):
    kept = (KEPT / f"{name}.json").read_text()
    assert served_document(OPTIONS[name]) == kept


if __name__ == "__main__":
    for name, options in OPTIONS.items():
        (KEPT / f"{name}.json").write_text(served_document(options))
        print(f"wrote {KEPT / name}.json")
