"""A 3-node JetStream cluster run as operators run it: collectors from the command line with
``--bus-replicas 3``, the stream's leader killed with SIGKILL, a reader Lab and the history
writer holding every candle and trade id once; the collectors' status honest through the
election; and a collector asking for fewer replicas than the stream has never weakening it."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import marketlab as ml
from marketlab.bus.config import BusConfig, close_quietly, connect, ensure_stream
from marketlab.bus.nats_server import NatsServer
from marketlab.cli.collect import status_line
from marketlab.cli.demo import bus_nodes
from marketlab.lab.options import in_shard
from marketlab.sim import SimExchange
from tests.bus.conftest import end
from tests.bus.test_bus import (
    SYMBOLS,
    assert_contiguous,
    assert_stored_once,
    closed,
    collect_process,
    last_trade,
    store_writer,
    venue,
)
from tests.lab.test_lab import wait_for

CHANNELS = ["trades", "klines"]


@pytest.fixture
def nodes() -> Iterator[list[NatsServer]]:
    """Three nodes routed to each other, started; every one removed (process, port, store)
    however the test ends."""
    with bus_nodes(3) as started:
        yield started


def url_of(nodes: list[NatsServer]) -> str:
    return ",".join(node.url for node in nodes)


def stream_info(url: str) -> Any:
    """The stream as the cluster reports it (its config, its leader), asked afresh."""

    async def ask() -> Any:
        nc = await connect(BusConfig(url), "test-stream-info")
        try:
            return await nc.jetstream().stream_info("MARKETLAB")
        finally:
            await close_quietly(nc)

    return asyncio.run(asyncio.wait_for(ask(), 10))


def stream_info_or_none(url: str) -> Any:
    try:
        return stream_info(url)
    except Exception:  # not made yet, or the cluster still electing
        return None


def test_cli_collectors_with_three_replicas_lose_nothing_when_the_stream_leader_is_killed(
    sim: SimExchange, nodes: list[NatsServer], tmp_path: Path
) -> None:
    url = url_of(nodes)
    halves = [[s for s in SYMBOLS if in_shard(s, (i, 2))] for i in (0, 1)]
    assert all(halves)
    # shard 1/2 from the command line makes the stream, on three nodes
    shard1 = collect_process(url, sim, "--shard", "1/2", "--bus-replicas", "3")
    labs: list[ml.Lab] = []
    try:
        wait_for(lambda: stream_info_or_none(url) is not None, 30, "the stream made")
        assert stream_info(url).config.num_replicas == 3
        # shard 0/2 in this process, given no stream settings: it uses the stream as it is
        shard0 = ml.Lab(SYMBOLS, ["1m"], channels=CHANNELS, shard="0/2", publish=url, **venue(sim))
        labs.append(shard0.start())
        reader = ml.Lab.from_bus(url, SYMBOLS, ["1m"], channels=CHANNELS)
        labs.append(reader.start())
        writer = store_writer(url, tmp_path / "h.sqlite")
        labs.append(writer.start())
        wait_for(lambda: all(last_trade(reader, s) > 0 for s in SYMBOLS), 60, "both shards read")
        wait_for(lambda: shard0.summary()["bus"]["state"] == "up", 20, "shard 0 publishing")
        time.sleep(1)

        info = stream_info(url)
        assert info.config.num_replicas == 3 and len(info.cluster.replicas) == 2
        leader = next(node for node in nodes if node.name == info.cluster.leader)
        leader.stop(kill=True)  # the stream's leader gone, no goodbye
        lost_at = {s: last_trade(reader, s) for s in SYMBOLS}
        states, lines = set(), []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until records land again, every symbol's
            bus = shard0.summary()["bus"]
            states.add(bus["state"])
            if bus["state"] == "failing":
                lines.append(status_line(shard0))
            if all(last_trade(reader, s) > lost_at[s] for s in SYMBOLS) and bus["state"] == "up":
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"the bus did not flow again within 60 s: {shard0.summary()['bus']}")
        assert stream_info(url).cluster.leader != leader.name
        bus = shard0.summary()["bus"]
        # the election was seen and said, then cleared once publishes were acknowledged again
        assert "failing" in states and bus["outages"] >= 1 and bus["last_outage_s"] > 0
        assert bus["last_error"] == "" and bus["failing_since"] is None
        assert any("bus failing since" in line and "held" in line for line in lines), lines
        # held messages went again with a growing delay, not the whole window every few ms
        assert bus["resent"] <= bus["messages"], bus
        time.sleep(1)

        shard1.send_signal(signal.SIGTERM)
        assert shard1.wait(30) == 0
        shard0.stop()
        wait_for(
            lambda: all(last_trade(reader, s) == last_trade(shard0, s) for s in halves[0]),
            30,
            "the reader caught up with shard 0",
        )
        ends = {s: last_trade(reader, s) for s in SYMBOLS}
        wait_for(
            lambda: all(last_trade(writer, s) == ends[s] for s in SYMBOLS),
            30,
            "the history writer caught up",
        )
        for s in SYMBOLS:
            assert ends[s] > lost_at[s]
            assert_contiguous(reader.trades(s)["trade_id"], f"{s} trades across the kill")
            opens = closed(reader, s).index
            assert (
                opens.is_unique and (pd.Series(opens).diff().dropna() == pd.Timedelta("1min")).all()
            )
            pd.testing.assert_frame_equal(writer.trades(s), reader.trades(s))
        for s in halves[0]:  # what the collector in this process holds, the reader holds
            pd.testing.assert_frame_equal(reader.trades(s), shard0.trades(s))
            pd.testing.assert_frame_equal(closed(reader, s), closed(shard0, s))
        candles = {s: closed(reader, s).index for s in SYMBOLS}
        trades = {s: reader.trades(s)["trade_id"] for s in SYMBOLS}
    finally:
        end(shard1)
        for lab in labs:
            lab.stop()
    assert_stored_once(tmp_path / "h.sqlite", trades, candles)


def test_a_collector_asking_for_one_replica_leaves_a_three_replica_stream_as_it_is(
    sim: SimExchange, nodes: list[NatsServer]
) -> None:
    url = url_of(nodes)

    async def make(config: BusConfig) -> dict[str, Any]:
        nc = await connect(config, "test-make")
        try:
            return await ensure_stream(nc.jetstream(), config)
        finally:
            await close_quietly(nc)

    made: dict[str, Any] = {}

    def made_once() -> bool:  # a cluster just started has no JetStream leader for a moment
        try:
            made.update(asyncio.run(make(BusConfig(url, replicas=3, max_age=7 * 86400.0))))
        except Exception:
            return False
        return True

    wait_for(made_once, 30, "the stream made")
    assert made["replicas"] == 3
    made_info = stream_info(url)
    assert made_info.state.messages == 0
    proc = collect_process(
        url,
        sim,
        "--bus-replicas",
        "1",
        "--bus-max-age",
        "1h",
        "--status-interval",
        "0.5",
        symbols=["BTCUSDT"],
        capture=True,
    )
    try:
        wait_for(
            lambda: (stream_info_or_none(url) or made_info).state.messages > 0,
            60,
            "the collector publishing",
        )
        time.sleep(1.5)  # a status line or more
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        end(proc)
    assert proc.returncode == 0, err
    info = stream_info(url)
    assert info.config.num_replicas == 3 and len(info.cluster.replicas) == 2
    assert info.config.max_age == pytest.approx(7 * 86400.0)
    assert info.state.messages > 0  # it published, into the stream as it was
    said = [line for line in err.splitlines() if "used as it is" in line]
    assert len(said) == 1, err  # one line, naming both differences
    assert "replicas 3 (given: 1)" in said[0] and "max_age 604800 s (given: 3600 s)" in said[0]
    assert "bus up" in out

    # only an explicit update changes it
    changed = asyncio.run(make(BusConfig(url, replicas=1, update_stream=True)))
    assert changed["replicas"] == 1
    wait_for(lambda: stream_info(url).config.num_replicas == 1, 20, "the stream brought to 1")
    assert stream_info(url).config.max_age == pytest.approx(7 * 86400.0)  # not given: kept
