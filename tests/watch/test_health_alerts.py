"""Health alerts against the simulator's named faults, through a real Lab: each rule raised
once and resolved once, seen by lab.alerts(), lab.on_alert() and a webhook receiver on
loopback (a real HTTP server)."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from marketlab.lab import Lab
from marketlab.server import PREFIX, create_app
from marketlab.server.runner import ServerThread
from marketlab.watch import Watch
from tests.lab.test_lab import FAST, wait_for


class Receiver:
    """A webhook receiver: every JSON body POSTed to it, in order; ``fail_first`` answers
    503 to that many requests first (the sender must try again)."""

    def __init__(self, fail_first: int = 0):
        self.bodies: list[dict[str, Any]] = []
        self.requests = 0
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests += 1
                if receiver.requests <= receiver.fail_first:
                    self.send_response(503)
                else:
                    receiver.bodies.append(json.loads(body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(fail_first=2) as r:
        yield r


def settled(events: list[dict[str, Any]], rule: str) -> bool:
    """``rule`` raised at least once, and each of its alerts (one per subject) raised once
    and resolved once."""
    subjects: dict[tuple[str, str, str], list[str]] = {}
    for e in events:
        if e["rule"] == rule:
            subjects.setdefault((e["venue"], e["symbol"], e["stream"]), []).append(e["state"])
    return bool(subjects) and all(s == ["active", "resolved"] for s in subjects.values())


def test_health_rules_raise_and_resolve_on_the_simulator_s_faults(fresh_sim, receiver):
    watch = Watch(
        interval_s=0.2,
        health_interval_s=0.2,
        resolve_after_s=0.6,
        silence_s=1.0,
        book_unsynced_s=0.2,
        max_reconnects=1,
        reconnect_window_s=3.0,
        rest_limited_window_s=2.0,
        webhook=receiver.url,
        # the market rules are tested on their own (test_market_rules, test_calm_market)
        jump_z=0,
        spread_factor=0,
        volume_factor=0,
        outside_book_bps=0,
        divergence_bps=0,
    )
    lab = Lab(
        ["BTCUSDT"],
        binance_ws_url=fresh_sim.ws_url,
        binance_rest_url=fresh_sim.rest_url,
        alerts=watch,
        **{**FAST, "idle_timeout": 60.0},
    )
    events: list[dict[str, Any]] = []
    lab.on_alert(events.append)
    with lab, ServerThread(create_app(lab)) as server, contextlib.ExitStack() as stack:
        lab.wait_ready(30)
        wait_for(lambda: not lab.alerts()["state"].eq("active").any(), 10, "a quiet start")
        start = len(events)  # (books unsynced while the Lab starts are alerts too)
        pushed: list[dict[str, Any]] = []
        client = stack.enter_context(connect(server.url.replace("http", "ws", 1) + PREFIX + "/ws"))

        def read() -> None:
            with contextlib.suppress(ConnectionClosed):
                pushed.extend(map(json.loads, client))

        reader = threading.Thread(target=read)
        reader.start()

        def done(rule: str) -> bool:
            return settled(events[start:], rule)

        fresh_sim.stall(1.8)  # nothing on the line: every stream silent past 1 s
        wait_for(lambda: done("silence"), 15, "silence raised and resolved")
        silent = {e["stream"] for e in events[start:] if e["rule"] == "silence"}
        assert {"trade", "depth", "ticker"} <= silent

        for _ in range(2):  # two reconnects in quick succession: over the limit of 1 in 3 s
            before = lab.summary()["reconnects"]
            fresh_sim.drop_connections()
            wait_for(lambda b=before: lab.summary()["reconnects"] > b, 15, "a reconnect")
            wait_for(lambda: lab.status()["connected"].all(), 15, "connected again")
        wait_for(lambda: done("reconnects"), 15, "reconnects raised and resolved")
        lab.wait_ready(15)

        fresh_sim.fail_rest(429, count=2)  # the book's snapshot refused twice ...
        fresh_sim.skip_depth_updates(1)  # ... when a gap in its updates calls for one
        wait_for(lambda: done("book_unsynced"), 20, "book_unsynced raised and resolved")
        wait_for(lambda: done("rest_limited"), 20, "rest_limited raised and resolved")

        frame = lab.alerts()
        assert set(frame["state"]) <= {"active", "resolved"}
        for rule in ("silence", "reconnects", "book_unsynced", "rest_limited"):
            assert (frame[frame["rule"] == rule]["state"] == "resolved").all(), rule
        assert (frame["kind"] == "health").all()
        assert frame["time"].dt.tz is not None
        wait_for(lambda: len(receiver.bodies) == len(events), 15, "every alert POSTed")
        wait_for(lambda: len(pushed) == len(events) - start, 10, "every alert on the WebSocket")
        client.close()
        reader.join(5)
    assert pushed == [{"type": "alert", **e} for e in events[start:]]
    assert receiver.bodies == events  # in order, after two refused tries
    assert receiver.requests == len(events) + 2
    for body in receiver.bodies:
        assert {"time", "venue", "symbol", "rule", "value", "threshold", "message"} <= set(body)
