"""The stream's settings where operators set them (flags, marketlab.toml's [bus], BusConfig),
who makes the stream, and a publisher whose stream stops answering: said as failing with the
reason, tried again with a growing delay (not the whole window every few milliseconds), and up
again with its reason cleared once the bus acknowledges."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

import marketlab as ml
from marketlab.bus.config import BusConfig, close_quietly, connect, ensure_stream
from marketlab.bus.nats_server import NatsServer
from marketlab.bus.publisher import Publisher
from marketlab.cli.collect import bus_of, load_settings
from marketlab.cli.main import build_parser
from marketlab.records import Trade
from tests.lab.test_lab import wait_for

T0 = 1_767_225_600_000


def settings_of(tmp_path: Path, toml: str, *flags: str) -> Any:
    config = tmp_path / "marketlab.toml"
    config.write_text(toml)
    args = build_parser().parse_args(["collect", "--config", str(config), *flags])
    return load_settings(args)


def test_stream_settings_come_from_the_file_and_flags_win(tmp_path: Path) -> None:
    toml = '[bus]\nreplicas = 3\nmax_age = "7d"\nmax_bytes = "200GB"\nstale_after = 45\n'
    settings = settings_of(tmp_path, toml)
    config = bus_of("nats://a:4222,nats://b:4222,nats://c:4222", settings)
    assert (config.replicas, config.max_age, config.max_bytes) == (3, 7 * 86400, 200 * 10**9)
    assert config.stale_after == 45 and config.update_stream is False
    assert config.duplicate_window is None  # not given: the stream's own, or the default
    settings = settings_of(
        tmp_path, toml, "--bus-replicas", "1", "--bus-max-age", "90m", "--bus-update-stream"
    )
    config = bus_of("nats://a:4222", settings)
    assert (config.replicas, config.max_age, config.max_bytes) == (1, 5400, 200 * 10**9)
    assert config.update_stream is True


@pytest.mark.parametrize(
    ("toml", "said"),
    [
        ("[bus]\nreplicas = 7\n", "replicas must be a whole number 1..5"),
        ("[bus]\nreplicas = 2.5\n", "replicas must be a whole number"),
        ('[bus]\nmax_age = "soon"\n', "max_age: expected seconds or a duration"),
        ('[bus]\nmax_bytes = "lots"\n', "max_bytes: expected a size"),
        ("[bus]\nstale_after = true\n", "stale_after must be a number"),
        ("[bus]\nreplica = 3\n", "unknown key(s) in [bus]: replica"),
    ],
)
def test_bad_stream_settings_in_the_file_are_refused_by_name(
    tmp_path: Path, toml: str, said: str
) -> None:
    with pytest.raises(ValueError, match=r"marketlab\.toml: \[bus\] |unknown key") as caught:
        settings_of(tmp_path, toml)
    assert said in str(caught.value)


@pytest.mark.parametrize(
    ("flag", "value", "said"),
    [
        ("--bus-replicas", "6", "at most 5 nodes"),
        ("--bus-replicas", "0", "whole number >= 1"),
        ("--bus-max-age", "-1h", "positive duration"),
        ("--bus-max-bytes", "ten", "expected a size"),
    ],
)
def test_bad_stream_flags_are_refused(
    flag: str, value: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["collect", f"{flag}={value}"])
    assert said in capsys.readouterr().err


def test_a_bus_config_refuses_settings_no_stream_can_have() -> None:
    with pytest.raises(ValueError, match="at most 5"):
        BusConfig("nats://a:4222", replicas=9)
    with pytest.raises(ValueError, match="max_age must be a number > 0"):
        BusConfig("nats://a:4222", max_age=0)
    with pytest.raises(ValueError, match="update_stream must be True or False"):
        BusConfig("nats://a:4222", update_stream="yes")  # type: ignore[arg-type]
    assert "replicas" not in repr(BusConfig("nats://a:4222"))  # not given: not shown


async def stream_of(url: str) -> Any:
    nc = await connect(BusConfig(url), "test-stream")
    try:
        return await nc.jetstream().stream_info("MARKETLAB")
    finally:
        await close_quietly(nc)


def test_a_reader_makes_the_stream_only_when_given_its_settings(nats: NatsServer) -> None:
    plain = ml.Lab.from_bus(nats.url, ["BTCUSDT"], ["1m"], channels=["trades"]).start()
    try:
        wait_for(lambda: plain.summary()["bus"]["connected"], 10, "the reader connected")
        time.sleep(0.5)
        with pytest.raises(Exception, match="stream not found"):
            asyncio.run(stream_of(nats.url))
        given = ml.Lab.from_bus(
            nats.url, ["BTCUSDT"], ["1m"], channels=["trades"], max_age=3600.0
        ).start()
        try:
            wait_for(lambda: given.summary()["bus"]["connected"], 10, "the second reader")
            wait_for(lambda: _stream_or_none(nats.url) is not None, 10, "the stream made")
        finally:
            given.stop()
    finally:
        plain.stop()
    info = asyncio.run(stream_of(nats.url))
    assert info.config.max_age == pytest.approx(3600.0) and info.config.num_replicas == 1


def _stream_or_none(url: str) -> Any:
    try:
        return asyncio.run(stream_of(url))
    except Exception:
        return None


async def test_a_stream_gone_is_said_tried_again_slowly_and_cleared_when_it_answers(
    nats: NatsServer,
) -> None:
    config = BusConfig(nats.url)
    publisher = Publisher(config, "binance")
    task = asyncio.create_task(publisher.run())
    admin = await connect(config, "test-admin")
    js = admin.jetstream()
    trade_id = 0

    async def publish_for(seconds: float) -> None:
        nonlocal trade_id
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            trade_id += 1
            publisher.on_record(Trade("BTCUSDT", trade_id, 100.0, 0.1, "buy", T0, T0))
            await asyncio.sleep(0.005)

    try:
        await publish_for(1.0)
        assert publisher.status()["state"] == "up" and publisher.published > 0
        await js.delete_stream("MARKETLAB")  # the stream gone: nothing answers a publish
        await publish_for(1.0)
        failing = publisher.status()
        assert failing["state"] == "failing" and failing["failing_since"]
        assert "no stream answered" in failing["last_error"] and failing["held"] > 0
        resent_then = failing["resent"]
        await publish_for(2.0)
        # 3 s of failing: a try now and then (at least 50 ms apart, growing), not a storm
        assert publisher.resent - resent_then <= 3 * 2 + 1, publisher.status()
        assert publisher.resent <= 3.0 / 0.05, publisher.status()
        assert publisher.status()["state"] == "failing" and publisher.dropped == 0
        await ensure_stream(js, config)  # made again (by an operator)
        for _ in range(100):
            await publish_for(0.05)
            if publisher.status()["state"] == "up":
                break
        back = publisher.status()
        assert back["state"] == "up" and back["last_error"] == "" and back["failing_since"] is None
        assert back["outages"] == 1 and back["last_outage_s"] >= 3
        for _ in range(100):
            if publisher.status()["held"] == 0:
                break
            await asyncio.sleep(0.05)
        assert publisher.status()["held"] == 0 and publisher.dropped == 0
    finally:
        await close_quietly(admin)
        await publisher.close(1.0)
        task.cancel()
