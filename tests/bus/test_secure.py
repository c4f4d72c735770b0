"""A bus that lets no stranger in: a real nats-server with authorization and TLS (certificates
made here), readers and collectors without the right credentials or CA refused at once with
the reason, the ones with them served; and the settings' checks, sources and masking."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import nkeys
import pandas as pd
import pytest

import marketlab as ml
from marketlab.bus.config import BusConfig, BusRefused, connect
from marketlab.bus.nats_server import NatsServer
from marketlab.cli.collect import bus_of, load_settings
from marketlab.cli.main import build_parser
from marketlab.sim import SimExchange
from tests.bus.certs import Certs
from tests.bus.conftest import end
from tests.lab.test_lab import wait_for

TOKEN = "tok-3f9a1c-never-shown"
PASSWORD = "pw-77e0b2-never-shown"
SYMBOLS = ["BTCUSDT", "ETHUSDT"]
CHANNELS = ["trades", "klines"]
REFUSED_WITHIN = 10.0  # seconds: a refusal is an answer, never a wait for a timeout


def venue(sim: SimExchange) -> dict[str, str]:
    return {"binance_ws_url": sim.ws_url, "binance_rest_url": sim.rest_url}


def last_trade(lab: ml.Lab, symbol: str) -> int:
    ids = lab.trades(symbol)["trade_id"]
    return int(ids.iloc[-1]) if len(ids) else -1


def refused(lab: ml.Lab, reason: str) -> str:
    """``lab`` started, refused by the bus within REFUSED_WITHIN seconds for ``reason``."""
    began = time.monotonic()
    lab.start()
    try:
        with pytest.raises(RuntimeError, match=reason) as caught:
            lab.wait_ready(30)
        assert time.monotonic() - began < REFUSED_WITHIN
        # the collector thread ends on its own after the refusal (its shutdown may still run)
        deadline = time.monotonic() + 5
        while lab.running and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not lab.running
    finally:
        lab.stop()
    return str(caught.value)


def test_a_bus_with_authorization_and_tls_serves_only_who_it_should(
    sim: SimExchange, certs: Certs, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bus = NatsServer(
        store_dir=tmp_path / "nats",
        token=TOKEN,
        tls_cert=certs.server_cert,
        tls_key=certs.server_key,
    )
    labs: list[ml.Lab] = []
    try:
        bus.start()
        assert bus.url.startswith("tls://")
        # a stranger: the right CA, no credentials
        stranger = ml.Lab.from_bus(
            BusConfig(bus.url, ca=certs.ca), SYMBOLS, ["1m"], channels=CHANNELS
        )
        said = refused(stranger, "authorization violation")
        assert "gave none" in said and stranger.summary()["bus"]["connected"] is False
        # a wrong token, given as from_bus's keyword arguments
        wrong = ml.Lab.from_bus(
            bus.url, SYMBOLS, ["1m"], channels=CHANNELS, token="guess", ca=str(certs.ca)
        )
        refused(wrong, "authorization violation: the server does not accept a token")
        # the right token and a CA that did not sign the server's certificate
        fooled = ml.Lab.from_bus(
            bus.url, SYMBOLS, ["1m"], channels=CHANNELS, token=TOKEN, ca=str(certs.other_ca)
        )
        refused(fooled, "certificate is not trusted")
        # nor the system's CAs (no CA given)
        refused(
            ml.Lab.from_bus(bus.url, SYMBOLS, ["1m"], channels=CHANNELS, token=TOKEN), "not trusted"
        )
        # every symbol on the bus, asked without credentials: refused, not a timeout
        began = time.monotonic()
        with pytest.raises(BusRefused, match="authorization violation"):
            ml.Lab.from_bus(BusConfig(bus.url, ca=certs.ca))
        assert time.monotonic() - began < REFUSED_WITHIN

        config = BusConfig(bus.url, token=TOKEN, ca=certs.ca)
        collector = ml.Lab(SYMBOLS, ["1m"], channels=CHANNELS, publish=config, **venue(sim))
        labs.append(collector.start())
        reader = ml.Lab.from_bus(
            bus.url, SYMBOLS, ["1m"], channels=CHANNELS, token=TOKEN, ca=certs.ca
        )
        labs.append(reader.start())
        collector.wait_ready(30)
        reader.wait_ready(30)
        wait_for(lambda: all(last_trade(reader, s) > 0 for s in SYMBOLS), 30, "trades over TLS")
        time.sleep(1)
        collector.stop()
        wait_for(
            lambda: all(last_trade(reader, s) == last_trade(collector, s) for s in SYMBOLS),
            20,
            "the reader caught up",
        )
        for s in SYMBOLS:
            pd.testing.assert_frame_equal(reader.trades(s), collector.trades(s))
        published, read = collector.summary()["bus"], reader.summary()["bus"]
        assert published["published"] > 0 and published["refused"] == ""
        assert read["bad_messages"] == 0 and read["url"] == bus.url
        shown = f"{published} {read} {reader.status()} {config!r} {caplog.text}"
        assert TOKEN not in shown and "token='***'" in repr(config)
    finally:
        for lab in labs:
            lab.stop()
        bus.remove()


def test_a_collector_the_bus_refuses_stops_and_says_why(
    sim: SimExchange, certs: Certs, tmp_path: Path
) -> None:
    bus = NatsServer(
        store_dir=tmp_path / "nats",
        users={"collector": PASSWORD},
        tls_cert=certs.server_cert,
        tls_key=certs.server_key,
    )
    try:
        bus.start()
        config = BusConfig(bus.url, user="collector", password="not it", ca=certs.ca)
        collector = ml.Lab(SYMBOLS, ["1m"], channels=CHANNELS, publish=config, **venue(sim))
        said = refused(collector, "authorization violation")
        assert "user 'collector'" in said and "not it" not in said
        assert collector.summary()["bus"]["refused"]
        # the command line says it and exits non-zero; the password came from the environment
        env = {**os.environ, "MARKETLAB_BUS_USER": "collector", "MARKETLAB_BUS_PASSWORD": "not it"}
        began = time.monotonic()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "marketlab",
                "collect",
                "--symbols",
                "BTCUSDT",
                "--intervals",
                "1m",
                "--channels",
                "trades",
                "--publish",
                bus.url,
                "--bus-ca",
                str(certs.ca),
                "--binance-ws-url",
                sim.ws_url,
                "--binance-rest-url",
                sim.rest_url,
                "--status-interval",
                "60",
                "--duration",
                "60",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 1 and time.monotonic() - began < 30
        assert (
            "authorization violation" in proc.stderr and "not it" not in proc.stderr + proc.stdout
        )
    finally:
        bus.remove()


async def test_mutual_tls_user_password_and_nkeys_let_in_only_the_holders(
    certs: Certs, tmp_path: Path
) -> None:
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    seed_file = tmp_path / "user.nk"
    seed_file.write_bytes(seed)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    bus = NatsServer(
        store_dir=tmp_path / "nats",
        users={"alice": PASSWORD},
        nkeys=[public],
        tls_cert=certs.server_cert,
        tls_key=certs.server_key,
        tls_ca=certs.ca,
        tls_verify=True,
    )
    client = {"ca": certs.ca, "cert": certs.client_cert, "key": certs.client_key}
    try:
        bus.start()
        for who in ({"user": "alice", "password": PASSWORD}, {"nkey": seed_file}):
            nc = await connect(BusConfig(bus.url, **who, **client), "test")
            try:
                info = await nc.jetstream().account_info()  # JetStream answers this client
                assert info is not None and nc.is_connected
            finally:
                await nc.close()
        other = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
        (tmp_path / "other.nk").write_bytes(other)
        for who, reason in (
            ({"user": "alice", "password": "wrong"}, "user 'alice'"),
            ({"nkey": tmp_path / "other.nk"}, "NKey seed"),
        ):
            with pytest.raises(BusRefused, match=f"authorization violation.*{reason}"):
                await asyncio.wait_for(
                    connect(BusConfig(bus.url, **who, **client), "test"), REFUSED_WITHIN
                )
    finally:
        bus.remove()


async def test_tls_wanted_from_a_server_without_it_sends_nothing() -> None:
    # A server (or someone in between) that does not start TLS: nats-py alone would go on in
    # the clear and send CONNECT, the token in it. The client refuses before saying anything.
    heard = bytearray()

    async def plain_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b'INFO {"server_id":"x","version":"2.10.0","proto":1,"max_payload":1048576,'
            b'"auth_required":true}\r\n'
        )
        await writer.drain()
        try:
            while data := await asyncio.wait_for(reader.read(1024), 2):
                heard.extend(data)
        except (TimeoutError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(plain_server, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(BusRefused, match="does not offer it: nothing sent"):
            await asyncio.wait_for(
                connect(BusConfig(f"tls://127.0.0.1:{port}", token=TOKEN), "t"), REFUSED_WITHIN
            )
        await asyncio.sleep(0.2)
        assert TOKEN.encode() not in heard and b"CONNECT" not in heard
    finally:
        server.close()
        await server.wait_closed()


# --- the settings, without a server ----------------------------------------------------------


def test_bad_combinations_are_refused_naming_the_setting(
    certs: Certs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "tls://127.0.0.1:4222"
    cases = [
        (
            {"token": "t", "user": "u", "password": "p"},
            r"token \(token=\) and user \(user=\): give one way",
        ),
        ({"user": "u"}, r"user \(user=\) needs a password"),
        ({"password": "p"}, r"password \(password=\) needs a user"),
        ({"token": "t", "creds": certs.ca}, "token .* and creds .*: give one way"),
        (
            {"ca": tmp_path / "nowhere.pem"},
            r"bus ca '.*nowhere.pem' \(ca=\): a CA certificate file that does not exist",
        ),
        ({"cert": certs.client_cert}, r"bus cert .* needs its key too"),
        ({"ca": certs.client_key}, "not a PEM CA certificate"),
        (
            {"cert": certs.client_cert, "key": certs.server_key},
            "not a PEM certificate and its private key",
        ),
        ({"token": ""}, "token .* must be non-empty"),
    ]
    for given, message in cases:
        with pytest.raises(ValueError, match=message):
            BusConfig(url, **given)
    with pytest.raises(ValueError, match="carries credentials and token"):
        BusConfig("nats://someone:secret@127.0.0.1:4222", token="t")
    with pytest.raises(ValueError, match="nats://host:port or tls://host:port"):
        ml.Lab(["BTCUSDT"], publish="https://127.0.0.1:4222")
    monkeypatch.setenv("MARKETLAB_BUS_CA", str(tmp_path / "gone.pem"))
    with pytest.raises(
        ValueError, match=r"\(MARKETLAB_BUS_CA\): a CA certificate file that does not exist"
    ):
        BusConfig(url)


def test_settings_come_from_arguments_environment_and_file_and_secrets_never_show(
    certs: Certs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "tls://127.0.0.1:4222"
    monkeypatch.setenv("MARKETLAB_BUS_TOKEN", TOKEN)
    monkeypatch.setenv("MARKETLAB_BUS_CA", str(certs.ca))
    config = BusConfig(url)
    assert (config.token, config.ca) == (TOKEN, str(certs.ca))
    # a way to authenticate given as an argument replaces the environment's whole
    given = BusConfig(url, user="alice", password=PASSWORD)
    assert (given.token, given.user, given.password, given.ca) == (
        None,
        "alice",
        PASSWORD,
        str(certs.ca),
    )
    for shown in (repr(config), str(given), repr(ml.BusConfig("nats://bob:hunter2@h:4222"))):
        assert TOKEN not in shown and PASSWORD not in shown and "hunter2" not in shown
    assert "nats://***@h:4222" in repr(ml.BusConfig("nats://bob:hunter2@h:4222"))
    assert BusConfig("nats://bob:hunter2@h:4222").token is None  # the URL's credentials stand alone

    # the command line: flags win over the environment, which wins over marketlab.toml
    toml = tmp_path / "marketlab.toml"
    toml.write_text(
        f'[bus]\nuser = "carol"\npassword = "from-file"\nca = "{certs.other_ca}"\n'
        f'cert = "{certs.client_cert}"\nkey = "{certs.client_key}"\n'
    )
    args = build_parser().parse_args(
        ["store", "--from", url, "--db", str(tmp_path / "h.sqlite"), "--config", str(toml)]
    )
    config = bus_of(url, load_settings(args))
    assert (config.token, config.user, config.ca) == (TOKEN, None, str(certs.ca))  # environment
    assert (config.cert, config.key) == (str(certs.client_cert), str(certs.client_key))  # file
    monkeypatch.delenv("MARKETLAB_BUS_TOKEN")
    config = bus_of(url, load_settings(args))
    assert (config.user, config.password) == ("carol", "from-file")  # the file's
    args = build_parser().parse_args(
        [
            "collect",
            "--publish",
            url,
            "--config",
            str(toml),
            "--bus-nkey",
            str(certs.ca),
            "--bus-ca",
            str(certs.other_ca),
        ]
    )
    settings = load_settings(args)
    assert settings.bus["nkey"] == str(certs.ca) and "user" not in settings.bus  # the flag's
    assert settings.bus["ca"] == str(certs.other_ca)
    bad = tmp_path / "bad.toml"
    bad.write_text('[bus]\nsecret = "x"\n')
    with pytest.raises(ValueError, match=r"unknown key\(s\) in \[bus\]: secret"):
        load_settings(build_parser().parse_args(["collect", "--config", str(bad)]))


def test_a_cli_history_writer_reads_a_secured_bus(
    sim: SimExchange, certs: Certs, tmp_path: Path
) -> None:
    bus = NatsServer(
        store_dir=tmp_path / "nats",
        token=TOKEN,
        tls_cert=certs.server_cert,
        tls_key=certs.server_key,
    )
    writer = None
    try:
        bus.start()
        collector = ml.Lab(
            ["BTCUSDT"],
            ["1m"],
            channels=CHANNELS,
            publish=BusConfig(bus.url, token=TOKEN, ca=certs.ca),
            **venue(sim),
        ).start()
        collector.wait_ready(30)
        time.sleep(1)
        db = tmp_path / "h.sqlite"
        env = {**os.environ, "MARKETLAB_BUS_TOKEN": TOKEN}
        writer = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "marketlab",
                "store",
                "--from",
                bus.url,
                "--bus-ca",
                str(certs.ca),
                "--db",
                str(db),
                "--intervals",
                "1m",
                "--channels",
                "trades,klines",
                "--store",
                "klines,trades",
                "--status-interval",
                "60",
                "--duration",
                "8",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        out, err = writer.communicate(timeout=60)
        collector.stop()
        assert writer.returncode == 0, err
        assert f"from the bus {bus.url}" in out and TOKEN not in out + err
        stored = ml.History(db=db, exchange="binance").trades("BTCUSDT")
        assert len(stored) > 0 and stored["trade_id"].is_unique
    finally:
        if writer is not None:
            end(writer)
        bus.remove()
