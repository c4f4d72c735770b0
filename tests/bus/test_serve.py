"""``marketlab serve --from nats://...``: every endpoint served from the bus, in a process of
its own, equal to the collector that published."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import httpx
import websockets.sync.client

import marketlab as ml
from marketlab.bus.nats_server import NatsServer
from marketlab.sim import SimExchange
from tests.bus.conftest import end
from tests.lab.test_lab import wait_for

PREFIX = "/api/v1/market/realtime"


def test_the_api_served_from_the_bus_equals_the_collector(
    sim: SimExchange, nats: NatsServer
) -> None:
    collector = ml.Lab(
        ["BTCUSDT", "ETHUSDT"],
        ["1m"],
        publish=nats.url,
        binance_ws_url=sim.ws_url,
        binance_rest_url=sim.rest_url,
    ).start()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "marketlab",
            "serve",
            "--from",
            nats.url,
            "--intervals",
            "1m",
            "--port",
            "0",
            "--status-interval",
            "60",
            "--duration",
            "60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        assert "from the bus" in first and "BTCUSDT, ETHUSDT" in first
        port = re.search(
            r"API docs http://127\.0\.0\.1:(\d+)/docs", server.stdout.readline()
        ).group(1)  # type: ignore[union-attr]  # the server prints its port
        api = f"http://127.0.0.1:{port}{PREFIX}"
        wait_for(
            lambda: not httpx.get(api + "/prices").json()["missing"], 30, "prices from the bus"
        )
        with websockets.sync.client.connect(f"ws://127.0.0.1:{port}{PREFIX}/ws") as ws:
            ws.send(
                json.dumps({"action": "subscribe", "symbols": ["BTCUSDT"], "channels": ["ticker"]})
            )
            got = [json.loads(ws.recv(timeout=10)) for _ in range(3)]
        assert any(m.get("symbol") == "BTCUSDT" for m in got), got
        collector.stop()
        for s in ("BTCUSDT", "ETHUSDT"):
            want = collector.book(s, 20)
            wait_for(
                lambda s=s, want=want: (
                    httpx.get(f"{api}/depth/{s}").json()["last_update_id"]
                    == want.attrs["last_update_id"]
                ),
                20,
                "the served book caught up",
            )
            depth = httpx.get(f"{api}/depth/{s}", params={"limit": 20}).json()
            assert depth["synced"]
            bids = want[want.side == "bid"]
            assert [tuple(level) for level in depth["bids"]] == list(
                zip(bids.price, bids.qty, strict=True)
            )
            served = httpx.get(
                f"{api}/klines/{s}", params={"interval": "1m", "limit": 1000}
            ).json()["klines"]
            closed = collector.klines(s, "1m").tail(len(served))
            assert [c["close"] for c in served] == closed["close"].tolist()
        status = httpx.get(api + "/status").json()
        assert status["source"] == "bus" and status["symbols"] == ["BTCUSDT", "ETHUSDT"]
        assert (
            status["bus"]["reading"]
            and status["bus"]["caught_up"]
            and status["bus"]["position"] > 0
        )
        server.send_signal(signal.SIGINT)
        assert server.wait(30) == 0
    finally:
        collector.stop()
        end(server)
