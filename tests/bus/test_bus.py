"""Collectors publishing to a real JetStream server, Labs and the history writer reading it:
frames equal to the collector's, every closed candle and trade once, through a collector
killed with SIGKILL, a bus that goes away and a cluster node lost."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

import marketlab as ml
from marketlab.bus.config import BusConfig
from marketlab.bus.nats_server import NatsServer, cluster
from marketlab.bus.publisher import Publisher
from marketlab.cli.collect import status_line
from marketlab.server import PREFIX, create_app
from marketlab.server.runner import ServerThread
from marketlab.sim import SimExchange
from marketlab.store.history import History
from tests.bus.conftest import end
from tests.lab.test_lab import wait_for

CHANNELS = ["trades", "ticker", "book", "klines"]
SYMBOLS = ["BTCUSDT", "ETHUSDT"]
PRICE_COLUMNS = ["open", "high", "low", "close", "volume", "closed"]


def venue(sim: SimExchange) -> dict[str, str]:
    return {"binance_ws_url": sim.ws_url, "binance_rest_url": sim.rest_url}


def closed(lab: ml.Lab, symbol: str) -> pd.DataFrame:
    df = lab.klines(symbol, "1m")
    return df[df["closed"]][PRICE_COLUMNS]


def holds_every_id_since(lab: ml.Lab, first: int, symbol: str = "BTCUSDT") -> bool:
    ids = lab.trades(symbol)["trade_id"].to_numpy()
    ids = ids[ids >= first]
    return len(ids) > 0 and ids[0] == first and bool((ids[1:] - ids[:-1] == 1).all())


def last_trade(lab: ml.Lab, symbol: str) -> int:
    ids = lab.trades(symbol)["trade_id"]
    return int(ids.iloc[-1]) if len(ids) else -1


def store_writer(url: str, db: Path, durable: str = "writer") -> ml.Lab:
    return ml.Lab.from_bus(
        url,
        SYMBOLS,
        ["1m"],
        channels=["trades", "klines"],
        durable=durable,
        db=db,
        store=("klines", "trades"),
    )


def assert_contiguous(ids: pd.Series, what: str) -> None:
    assert ids.is_unique, f"{what}: repeated ids"
    assert (ids.diff().dropna() == 1).all(), f"{what}: ids skipped"


def assert_stored_once(
    db: Path, trades: dict[str, pd.Series], candles: dict[str, pd.Index]
) -> None:
    history = History(db=db, exchange="binance")
    for s in trades:
        stored = history.trades(s)["trade_id"].sort_values().reset_index(drop=True)
        assert_contiguous(stored, f"stored {s} trades")
        assert set(trades[s]) <= set(stored), f"{s}: trades missing from the store"
        opens = history.klines(s, "1m").index
        assert opens.is_unique and set(candles[s]) <= set(opens), (
            f"{s}: candles missing from the store"
        )


def test_readers_and_the_history_writer_see_what_the_collector_saw(
    sim: SimExchange, nats: NatsServer, tmp_path: Path
) -> None:
    collector = ml.Lab(SYMBOLS, ["1m"], channels=CHANNELS, publish=nats.url, **venue(sim)).start()
    reader = ml.Lab.from_bus(nats.url, SYMBOLS, ["1m"], channels=CHANNELS).start()
    writer = store_writer(nats.url, tmp_path / "h.sqlite").start()
    try:
        collector.wait_ready(30)
        reader.wait_ready(30)
        time.sleep(3)
        late = ml.Lab.from_bus(nats.url, channels=CHANNELS).start()  # every symbol on the bus
        assert late.symbols == SYMBOLS
        late.wait_ready(30)
        collector.stop()
        for lab in (reader, late):
            wait_for(
                lambda lab=lab: all(
                    last_trade(lab, s) == last_trade(collector, s)
                    and lab.book(s).attrs["last_update_id"]
                    == collector.book(s).attrs["last_update_id"]
                    for s in SYMBOLS
                ),
                20,
                "readers caught up",
            )
            for s in SYMBOLS:
                pd.testing.assert_frame_equal(closed(lab, s), closed(collector, s))
                pd.testing.assert_frame_equal(lab.trades(s), collector.trades(s))
                pd.testing.assert_frame_equal(lab.book(s, 50), collector.book(s, 50))
                assert lab.prices().loc[s, "last"] == collector.prices().loc[s, "last"]
            status = lab.status()
            assert set(status.index.get_level_values("stream")) == {
                "trade",
                "ticker",
                "depth",
                "kline_1m",
            }
            assert (status.xs("depth", level="stream")["book"] == "synced").all()
            assert lab.summary()["bus"]["caught_up"]
            assert lab.summary()["bus"]["bad_messages"] == 0  # a collector's are all taken
        published = collector.summary()["bus"]
        assert (
            published["connected"] is False
            and published["held"] == 0
            and published["published"] > 0
        )
        wait_for(
            lambda: all(last_trade(writer, s) == last_trade(collector, s) for s in SYMBOLS), 20
        )
    finally:
        for lab in (collector, reader, writer, locals().get("late")):
            if lab is not None:
                lab.stop()
    trades = {s: collector.trades(s)["trade_id"] for s in SYMBOLS}
    assert_stored_once(
        tmp_path / "h.sqlite", trades, {s: closed(collector, s).index for s in SYMBOLS}
    )


def collect_process(
    url: str, sim: SimExchange, *extra: str, symbols: list[str] = SYMBOLS, capture: bool = False
) -> subprocess.Popen[str]:
    """``marketlab collect --publish url`` on the simulator, in a process of its own (trades and
    1m klines of ``symbols``); ``extra`` flags after the others (a flag given again wins);
    ``capture``: its output and errors kept to read, as text."""
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "marketlab",
            "collect",
            "--symbols",
            ",".join(symbols),
            "--intervals",
            "1m",
            "--channels",
            "trades,klines",
            "--publish",
            url,
            "--binance-ws-url",
            sim.ws_url,
            "--binance-rest-url",
            sim.rest_url,
            "--status-interval",
            "60",
            *extra,
        ],
        stdout=out,
        stderr=out,
        text=True,
    )


def test_a_collector_killed_and_restarted_loses_nothing_and_repeats_nothing(
    sim: SimExchange, nats: NatsServer, tmp_path: Path
) -> None:
    reader = ml.Lab.from_bus(nats.url, SYMBOLS, ["1m"], channels=["trades", "klines"]).start()
    writer = store_writer(nats.url, tmp_path / "h.sqlite").start()
    shard = collect_process(nats.url, sim)
    try:
        wait_for(lambda: all(last_trade(reader, s) > 0 for s in SYMBOLS), 30, "trades on the bus")
        time.sleep(2)
        shard.send_signal(signal.SIGKILL)  # no goodbye: whatever was in flight is gone
        shard.wait()
        before = {s: last_trade(reader, s) for s in SYMBOLS}
        time.sleep(3)  # trades and candles the exchange makes while no one collects
        shard = collect_process(nats.url, sim)
        wait_for(
            lambda: all(reader.summary()["trades_backfilled"].get(s, 0) > 0 for s in SYMBOLS),
            30,
            "the restarted collector fetched what it missed",
        )
        time.sleep(2)
        shard.send_signal(signal.SIGTERM)
        assert shard.wait(20) == 0
        ends = {s: last_trade(reader, s) for s in SYMBOLS}
        assert all(ends[s] > before[s] for s in SYMBOLS)
        for s in SYMBOLS:
            assert_contiguous(reader.trades(s)["trade_id"], f"{s} trades across the kill")
            opens = closed(reader, s).index
            assert (
                opens.is_unique and (pd.Series(opens).diff().dropna() == pd.Timedelta("1min")).all()
            )
        wait_for(
            lambda: all(last_trade(writer, s) == ends[s] for s in SYMBOLS), 20, "writer caught up"
        )
        candles = {s: closed(reader, s).index for s in SYMBOLS}
        trades = {s: reader.trades(s)["trade_id"] for s in SYMBOLS}
    finally:
        end(shard)
        reader.stop()
        writer.stop()
    assert_stored_once(tmp_path / "h.sqlite", trades, candles)


def test_a_history_writer_killed_mid_way_writes_everything_once_when_restarted(
    sim: SimExchange, nats: NatsServer, tmp_path: Path
) -> None:
    collector = ml.Lab(
        SYMBOLS, ["1m"], channels=["trades", "klines"], publish=nats.url, **venue(sim)
    ).start()
    db = tmp_path / "h.sqlite"
    writer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "marketlab",
            "store",
            "--from",
            nats.url,
            "--db",
            str(db),
            "--symbols",
            ",".join(SYMBOLS),
            "--intervals",
            "1m",
            "--channels",
            "trades,klines",
            "--store",
            "klines,trades",
            "--status-interval",
            "60",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        collector.wait_ready(30)
        time.sleep(4)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        time.sleep(1)
        collector.stop()
        restarted = store_writer(nats.url, db).start()  # the same durable consumer, in-process
        wait_for(
            lambda: all(last_trade(restarted, s) == last_trade(collector, s) for s in SYMBOLS), 30
        )
        restarted.stop()
    finally:
        end(writer)
        collector.stop()
    assert_stored_once(
        db,
        {s: collector.trades(s)["trade_id"] for s in SYMBOLS},
        {s: closed(collector, s).index for s in SYMBOLS},
    )


def test_while_the_bus_is_away_the_collector_holds_what_it_takes_and_publishes_it_after(
    sim: SimExchange, tmp_path: Path
) -> None:
    nats = NatsServer(store_dir=tmp_path / "nats").start()
    collector = ml.Lab(
        SYMBOLS, ["1m"], channels=["trades", "klines"], publish=nats.url, **venue(sim)
    ).start()
    reader = ml.Lab.from_bus(
        nats.url, SYMBOLS, ["1m"], channels=["trades", "klines"], stale_after=1.0
    ).start()
    server = ServerThread(create_app(collector)).__enter__()
    try:
        collector.wait_ready(30)
        wait_for(lambda: all(last_trade(reader, s) > 0 for s in SYMBOLS), 30)
        wait_for(lambda: collector.summary()["bus"]["state"] == "up", 10, "publishes acknowledged")
        assert "| bus up: " in status_line(collector)
        wait_for(lambda: reader.summary()["bus"]["caught_up"], 10, "the reader caught up")
        nats.stop()
        wait_for(lambda: collector.summary()["bus"]["connected"] is False, 10, "the outage seen")
        time.sleep(2)
        bus = collector.summary()["bus"]
        assert bus["held"] > 0 and bus["dropped"] == 0
        # said where an operator looks: summary, the status line and the API's /status
        assert bus["state"] == "failing" and bus["failing_since"] and bus["last_error"]
        line = status_line(collector)
        assert (
            f"| bus failing since {bus['failing_since']}: " in line and " held, 0 dropped)" in line
        )
        served = httpx.get(server.url + PREFIX + "/status").json()["bus"]
        assert served["state"] == "failing" and served["held"] >= bus["held"]
        # the reader's stream stopped moving: stale, not caught up
        read = reader.summary()["bus"]
        assert read["stale"] and not read["caught_up"] and read["state"] == "stale"
        assert "| bus STALE: nothing new for " in status_line(reader)
        assert collector.running and last_trade(collector, SYMBOLS[0]) > last_trade(
            reader, SYMBOLS[0]
        )
        nats.start()
        wait_for(lambda: collector.summary()["bus"]["state"] == "up", 20, "publishes acked again")
        bus = collector.summary()["bus"]
        assert bus["last_error"] == "" and bus["failing_since"] is None and bus["outages"] == 1
        assert bus["last_outage_s"] >= 2
        wait_for(lambda: not reader.summary()["bus"]["stale"], 20, "the reader moving again")
        collector.stop()
        wait_for(
            lambda: all(last_trade(reader, s) == last_trade(collector, s) for s in SYMBOLS), 30
        )
        for s in SYMBOLS:
            assert_contiguous(reader.trades(s)["trade_id"], f"{s} trades across the outage")
            pd.testing.assert_frame_equal(reader.trades(s), collector.trades(s))
            pd.testing.assert_frame_equal(closed(reader, s), closed(collector, s))
    finally:
        server.__exit__(None, None, None)
        collector.stop()
        reader.stop()
        nats.remove()


@pytest.mark.parametrize("url", ["http://127.0.0.1:4222", "127.0.0.1:4222"])
def test_a_bus_address_that_is_not_one_is_refused_at_once(url: str) -> None:
    with pytest.raises(ValueError, match="nats://host:port"):
        ml.Lab(["BTCUSDT"], publish=url)
    assert os.environ.get("MARKETLAB_LOOP", "") in ("", "asyncio", "uvloop")


def test_a_port_taken_before_the_server_binds_it_is_chosen_again() -> None:
    # a free port handed out can be taken by another process's connection before nats-server
    # binds it (xdist workers start servers side by side): the server then starts on another
    import socket

    nodes = cluster(2)
    with socket.socket() as client, socket.socket() as router:
        client.bind(("127.0.0.1", nodes[0].port))  # held as an outgoing connection holds it
        router.bind(("127.0.0.1", nodes[1].cluster_port))
        taken = (nodes[0].port, nodes[1].cluster_port)
        try:
            for node in nodes:
                node.start()
            assert nodes[0].port != taken[0] and nodes[1].cluster_port != taken[1]
            for node in nodes:
                socket.create_connection(("127.0.0.1", node.port), 2).close()
        finally:
            for node in nodes:
                node.remove()


async def test_a_closed_publisher_is_not_taken_for_connected(nats: NatsServer) -> None:
    # a stopped collector's publisher, started again, must wait for its new connection before
    # asking where the bus ends: a closed one's answer cannot be had, and it must not be empty
    # (the collector would then start afresh and publish again what the bus holds)
    publisher = Publisher(BusConfig(nats.url), "binance")
    task = asyncio.create_task(publisher.run())
    for _ in range(200):
        if publisher.connected:
            break
        await asyncio.sleep(0.05)
    assert publisher.connected
    assert await publisher.last_published() == ({}, {})  # nothing published yet: the bus says so
    await publisher.close(1.0)
    task.cancel()
    assert not publisher.connected
    with pytest.raises(ConnectionError, match="not connected"):
        await publisher.last_published()


def test_a_collector_stopped_and_started_again_publishes_again_and_once(
    sim: SimExchange, nats: NatsServer
) -> None:
    collector = ml.Lab(
        ["BTCUSDT"], ["1m"], channels=["trades", "klines"], publish=nats.url, **venue(sim)
    )
    reader = ml.Lab.from_bus(nats.url, ["BTCUSDT"], ["1m"], channels=["trades", "klines"]).start()
    try:
        collector.start().wait_ready(30)
        wait_for(lambda: last_trade(reader, "BTCUSDT") > 0, 30, "trades on the bus")
        collector.stop()
        first_run = last_trade(collector, "BTCUSDT")
        collector.start().wait_ready(30)
        # the second run's trades, and the stop's gap fetched by id (the first trade after it
        # is already 20 ids on: stopped before the fetch, the gap would stay one)
        wait_for(
            lambda: (
                last_trade(reader, "BTCUSDT") > first_run + 20
                and holds_every_id_since(reader, first_run)
            ),
            30,
            "the second run's trades and the gap's",
        )
        collector.stop()
        wait_for(lambda: last_trade(reader, "BTCUSDT") == last_trade(collector, "BTCUSDT"), 20)
        assert_contiguous(reader.trades("BTCUSDT")["trade_id"], "trades over two runs")
        assert collector._state.callbacks.count(collector._publisher.on_record) == 1
        assert reader._feed.duplicates == 0  # each record published once
        assert reader.summary()["trades_backfilled"]["BTCUSDT"] > 0  # the stop's gap fetched by id
    finally:
        collector.stop()
        reader.stop()


def test_okx_books_and_candles_read_from_the_bus_equal_the_collectors(
    sim: SimExchange, nats: NatsServer
) -> None:
    collector = ml.Lab(
        SYMBOLS,
        ["1m"],
        exchange="okx",
        channels=["trades", "book", "klines"],
        publish=nats.url,
        okx_ws_url=sim.okx_ws_url,
        okx_rest_url=sim.rest_url,
    ).start()
    reader = ml.Lab.from_bus(
        nats.url, SYMBOLS, ["1m"], exchange="okx", channels=["trades", "book", "klines"]
    ).start()
    try:
        collector.wait_ready(30)
        reader.wait_ready(30)
        time.sleep(2)
        collector.stop()
        for s in SYMBOLS:
            want = collector.book(s, 50)
            wait_for(
                lambda s=s, want=want: (
                    reader.book(s, 50).attrs["last_update_id"] == want.attrs["last_update_id"]
                ),
                20,
                "the reader's OKX book caught up",
            )
            got = reader.book(s, 50)
            pd.testing.assert_frame_equal(got, want)
            assert got.attrs["verified"] == want.attrs["verified"] == "seqId chain"
            pd.testing.assert_frame_equal(closed(reader, s), closed(collector, s))
            assert reader.summary()["bad_frames"] == 0
    finally:
        collector.stop()
        reader.stop()


def test_four_venues_publish_to_one_bus_and_a_reader_keeps_them_apart(
    sim: SimExchange, nats: NatsServer, tmp_path: Path
) -> None:
    from tests.lab.test_several_venues import VENUES, every_venue

    channels = ["trades", "book", "klines"]
    collector = ml.Lab(
        SYMBOLS, ["1m"], exchanges=VENUES, channels=channels, publish=nats.url, **every_venue(sim)
    ).start()
    writer = ml.Lab.from_bus(
        nats.url,
        SYMBOLS,
        ["1m"],
        exchanges=VENUES,
        channels=["trades", "klines"],
        durable="writer",
        db=tmp_path / "four.sqlite",
        store=("klines", "trades"),
    ).start()
    reader = None
    try:
        collector.wait_ready(60)
        time.sleep(1)
        # every venue's symbols as the bus holds them
        reader = ml.Lab.from_bus(nats.url, None, ["1m"], exchanges=VENUES, channels=channels)
        reader.start().wait_ready(30)
        assert reader.venue_symbols == dict.fromkeys(VENUES, SYMBOLS)
        time.sleep(2)
        collector.stop()
        for v in VENUES:
            for s in SYMBOLS:
                want = collector.book(s, 50, exchange=v)
                wait_for(
                    lambda s=s, v=v, want=want: (
                        reader.book(s, 50, exchange=v).attrs["last_update_id"]
                        == want.attrs["last_update_id"]
                        and len(reader.trades(s, exchange=v))
                        == len(collector.trades(s, exchange=v))
                    ),
                    20,
                    f"the reader's {v} {s} caught up",
                )
                pd.testing.assert_frame_equal(reader.book(s, 50, exchange=v), want)
                pd.testing.assert_frame_equal(
                    reader.trades(s, exchange=v), collector.trades(s, exchange=v)
                )
                got = reader.klines(s, "1m", exchange=v)
                pd.testing.assert_frame_equal(
                    got[got["closed"]][PRICE_COLUMNS],
                    collector.klines(s, "1m", exchange=v).pipe(
                        lambda df: df[df["closed"]][PRICE_COLUMNS]
                    ),
                )
        # the venues' trades differ: nothing of one venue went under another's name
        assert not reader.trades("BTCUSDT", exchange="okx").equals(
            reader.trades("BTCUSDT", exchange="bybit")
        )
        wait_for(
            lambda: all(
                len(writer.trades(s, exchange=v)) == len(collector.trades(s, exchange=v))
                for v in VENUES
                for s in SYMBOLS
            ),
            20,
            "the writer caught up",
        )
    finally:
        for lab in (collector, reader, writer):
            if lab is not None:
                lab.stop()
    for v in VENUES:
        stored = History(db=tmp_path / "four.sqlite", exchange=v).trades("BTCUSDT")
        assert stored["trade_id"].is_unique
        assert set(collector.trades("BTCUSDT", exchange=v)["trade_id"]) <= set(stored["trade_id"])
