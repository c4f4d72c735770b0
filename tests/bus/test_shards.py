"""Two shards publishing, one of them killed with SIGKILL and restarted, a reader Lab and the
history writer on the bus: frames equal to a Lab collecting directly from the exchange, and
every closed candle and trade once in the store."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

import marketlab as ml
from marketlab.bus.nats_server import NatsServer
from marketlab.lab.options import in_shard
from marketlab.sim import SimExchange
from tests.bus.conftest import end
from tests.bus.test_bus import assert_contiguous, assert_stored_once, closed, last_trade
from tests.conftest import START
from tests.lab.test_lab import assert_book_matches_exchange, wait_for

SYMBOLS = ["ADAUSDT", "BNBUSDT", "BTCUSDT", "ETHUSDT"]
CHANNELS = ["trades", "ticker", "book", "klines"]


@pytest.fixture(scope="module")
def sim() -> Iterator[SimExchange]:
    with SimExchange(SYMBOLS, speed=60, seed=13, start_time=START) as exchange:
        yield exchange


def shard_process(url: str, sim: SimExchange) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "marketlab",
            "collect",
            "--symbols",
            ",".join(SYMBOLS),
            "--shard",
            "1/2",
            "--intervals",
            "1m",
            "--channels",
            ",".join(CHANNELS),
            "--publish",
            url,
            "--binance-ws-url",
            sim.ws_url,
            "--binance-rest-url",
            sim.rest_url,
            "--status-interval",
            "60",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_two_shards_through_a_kill_give_a_reader_what_a_direct_lab_has(
    sim: SimExchange, nats: NatsServer, tmp_path: Path
) -> None:
    halves = [[s for s in SYMBOLS if in_shard(s, (i, 2))] for i in (0, 1)]
    assert all(halves) and sorted(halves[0] + halves[1]) == SYMBOLS  # each symbol in one shard
    urls = {"binance_ws_url": sim.ws_url, "binance_rest_url": sim.rest_url}
    direct = ml.Lab(SYMBOLS, ["1m"], channels=CHANNELS, **urls).start()
    shard0 = ml.Lab(
        SYMBOLS, ["1m"], channels=CHANNELS, shard="0/2", publish=nats.url, **urls
    ).start()
    assert shard0.symbols == halves[0]
    shard1 = shard_process(nats.url, sim)
    reader = writer = None
    try:
        wait_for(lambda: len(nats_symbols(nats.url)) == len(SYMBOLS), 30, "both shards on the bus")
        reader = ml.Lab.from_bus(nats.url, intervals=["1m"], channels=CHANNELS).start()
        writer = ml.Lab.from_bus(
            nats.url,
            SYMBOLS,
            ["1m"],
            channels=["trades", "klines"],
            durable="w",
            db=tmp_path / "h.sqlite",
            store=("klines", "trades"),
        ).start()
        assert reader.symbols == SYMBOLS
        reader.wait_ready(30)
        time.sleep(2)
        shard1.send_signal(signal.SIGKILL)
        shard1.wait()
        time.sleep(2)
        shard1 = shard_process(nats.url, sim)
        wait_for(
            lambda: all(reader.summary()["trades_backfilled"].get(s, 0) for s in halves[1]),
            30,
            "the restarted shard's gap filled",
        )
        time.sleep(1)
        for s in SYMBOLS:
            if s in halves[0]:
                assert_book_matches_exchange(shard0, sim, s)  # the collector's own book first
            assert_book_matches_exchange(reader, sim, s)
        direct.stop()  # what it holds, the reader must hold too (and maybe a little more)
        shard1.send_signal(signal.SIGTERM)
        assert shard1.wait(20) == 0
        shard0.stop()
        ends = {s: last_trade(direct, s) for s in SYMBOLS}
        wait_for(
            lambda: all(last_trade(reader, s) >= ends[s] for s in SYMBOLS),
            30,
            "the reader caught up",
        )
        wait_for(lambda: all(last_trade(writer, s) == last_trade(reader, s) for s in SYMBOLS), 30)
        for s in SYMBOLS:
            ours = reader.trades(s)
            assert_contiguous(ours["trade_id"], f"{s} trades read from the bus")
            theirs = direct.trades(s)
            start = max(
                ours.trade_id.iloc[0], theirs.trade_id.iloc[0]
            )  # both held every trade since
            span = ours.trade_id.between(start, ends[s])
            pd.testing.assert_frame_equal(ours[span], theirs[theirs.trade_id >= start])
            a, b = closed(reader, s), closed(direct, s)
            common = a.index.intersection(b.index)
            assert len(common) > 0
            pd.testing.assert_frame_equal(a.loc[common], b.loc[common])
            assert (pd.Series(a.index).diff().dropna() == pd.Timedelta("1min")).all()
        candles = {s: closed(reader, s).index for s in SYMBOLS}
        trades = {s: reader.trades(s)["trade_id"] for s in SYMBOLS}
    finally:
        end(shard1)
        for lab in (direct, shard0, reader, writer):
            if lab is not None:
                lab.stop()
    assert_stored_once(tmp_path / "h.sqlite", trades, candles)


def nats_symbols(url: str) -> list[str]:
    from marketlab.lab.bus_link import bus_symbols

    try:
        return bus_symbols(url, "binance", timeout=2)
    except (ValueError, ConnectionError):
        return []
