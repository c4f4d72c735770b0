"""The simulator serving a recording: every client gets the frames it asked for, in order."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
import websockets

from marketlab.lab import Lab
from marketlab.recording.files import SNAPSHOT, WS, open_recording
from marketlab.sim import SimExchange
from marketlab.sim.generate import generate_recording
from marketlab.sim.replay_face import stream_of
from tests.lab.test_lab import FAST, wait_for

START = 1_767_225_600_000


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    path = tmp_path_factory.mktemp("rec") / "gen.mlrec"
    n = generate_recording(str(path), ["BTCUSDT", "ETHUSDT"], 120, seed=7, start_time=START)
    return path, n


def test_a_generated_recording_holds_snapshots_and_ordered_frames(recording):
    path, n = recording
    header, entries = open_recording(path)
    assert header.extra["seed"] == 7 and header.symbols == ["BTCUSDT", "ETHUSDT"]
    kinds = [e.kind for e in entries]
    assert kinds[:2] == [SNAPSHOT, SNAPSHOT] and kinds.count(WS) == n > 500
    _, entries = open_recording(path)
    depth_ids = [
        orjson.loads(e.data)["data"]["U"]
        for e in entries
        if e.kind == WS and stream_of(e.data) == "btcusdt@depth@100ms"
    ]
    assert depth_ids == sorted(depth_ids)


def test_a_combined_client_gets_every_frame_of_its_streams_and_a_lab_syncs_its_book(recording):
    path, _ = recording
    with SimExchange(
        ["BTCUSDT", "ETHUSDT"], seed=7, start_time=START, history="10m", replay=str(path)
    ) as sim:
        wanted = ["btcusdt@trade", "ethusdt@depth@100ms"]
        expect = sim.replay.count(wanted)

        async def read() -> list[str]:
            url = f"{sim.ws_url}/stream?streams={'/'.join(wanted)}"
            async with websockets.connect(url, max_size=2**24) as ws:
                return [
                    orjson.loads(await asyncio.wait_for(ws.recv(), 5))["stream"]
                    for _ in range(expect)
                ]

        got = asyncio.run(read())
        assert set(got) == set(wanted) and len(got) == expect
        lab = Lab(
            ["BTCUSDT", "ETHUSDT"],
            binance_ws_url=sim.ws_url,
            binance_rest_url=sim.rest_url,
            channels=("trades", "book"),
            **FAST,
        )
        with lab:
            wait_for(
                lambda: lab.book("ETHUSDT").attrs["synced"] and len(lab.trades("BTCUSDT")) > 100,
                20,
                "the replayed stream",
            )
            book = lab._feed.books["ETHUSDT"].book
            wait_for(lambda: book.stats.applied >= 100, 10, "the diff stream applied")
            assert book.stats.gaps == 0


def test_a_subscribe_client_gets_bare_frames_and_a_rate_is_kept(recording):
    path, _ = recording
    with SimExchange(
        ["BTCUSDT", "ETHUSDT"], seed=7, start_time=START, replay=str(path), replay_rate=200
    ) as sim:
        expect = sim.replay.count(["ethusdt@ticker"])

        async def read() -> tuple[list[dict], float]:
            async with websockets.connect(f"{sim.ws_url}/ws/1") as ws:
                await ws.send(
                    orjson.dumps(
                        {"method": "SUBSCRIBE", "params": ["ethusdt@ticker"], "id": 5}
                    ).decode()
                )
                assert orjson.loads(await ws.recv()) == {"result": None, "id": 5}
                began = time.monotonic()
                frames = [orjson.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(expect)]
                return frames, time.monotonic() - began

        frames, took = asyncio.run(read())
    assert {f["e"] for f in frames} == {"24hrTicker"} and {f["s"] for f in frames} == {"ETHUSDT"}
    assert took >= expect / 200 * 0.8
