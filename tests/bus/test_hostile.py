"""Messages on the bus that are not ours: the decoder names what is wrong, readers and the
history writer count and drop each one (naming its subject and sequence) and go on with the
next good message; nothing of them reaches frames, books or the store."""

from __future__ import annotations

import asyncio
import logging
import math
from pathlib import Path

import pytest

import marketlab as ml
from marketlab.bus import encoding as enc
from marketlab.bus.config import STREAM, BusConfig, close_quietly, connect, ensure_stream
from marketlab.bus.nats_server import NatsServer
from marketlab.bus.reader import BusFeed, BusSource
from marketlab.cli.collect import status_line
from marketlab.lab.market_state import MarketState
from marketlab.records import Interval
from tests.bus import hostile
from tests.bus.hostile import SYMBOL, kline, subject, trade
from tests.lab.test_lab import wait_for

CASES = hostile.cases()
CHANNELS = ["trades", "ticker", "book", "klines"]


def reader() -> tuple[BusFeed, MarketState]:
    state = MarketState([SYMBOL, "ETHUSDT"], [Interval("1m")], 10_000, 100, lambda k: None)
    feed = BusFeed(
        [SYMBOL, "ETHUSDT"],
        ["1m"],
        CHANNELS,
        None,
        state,
        source=BusSource(BusConfig("nats://127.0.0.1:4222")),
        exchange="binance",
    )
    return feed, state


def good_book() -> list[bytes]:
    state = enc.BookState(SYMBOL, 10, [(100.0, 1.0)], [(101.0, 1.0)], 0, "update id chain", True)
    return [
        enc.encode([state], "ws"),
        enc.encode([enc.BookChange(SYMBOL, 10, 11, [(100.0, 2.0)], [], 0)], "ws"),
    ]


@pytest.mark.parametrize(("name", "subj", "payload", "why"), CASES, ids=[c[0] for c in CASES])
def test_a_hostile_message_is_named_counted_dropped_and_the_next_one_taken(
    name: str, subj: str, payload: bytes, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    if subj.count(".") == 3 and subj.split(".")[2] in enc.KINDS:
        with pytest.raises(enc.BusFormatError) as caught:
            enc.decode(subj.split(".")[2], payload, SYMBOL)
        assert why in str(caught.value)
    feed, state = reader()
    book = subject("book")
    feed.on_message(subject("trade"), enc.encode([trade(1)], "ws"))
    feed.on_message(book, good_book()[0])
    feed.on_message(subject("kline"), enc.encode([kline(0)], "ws"))
    with caplog.at_level(logging.WARNING, logger="marketlab.bus"):
        feed.on_message(subj, payload)
    feed.on_message(subject("trade"), enc.encode([trade(2)], "ws"))
    feed.on_message(book, good_book()[1])
    feed.on_message(subject("kline"), enc.encode([kline(1)], "ws"))
    assert feed.bad_messages == 1 and feed.handler_errors == 0
    assert why in feed.last_bad_message and subj[:60] in feed.last_bad_message
    assert why in caplog.text and "sequence" in caplog.text
    assert state.trades[SYMBOL].frame()["trade_id"].tolist() == [1, 2]
    assert len(state.trades["ETHUSDT"].frame()) == 0
    closed = state.klines[(SYMBOL, "1m")].frame()
    assert closed.index.size == 2 and closed["close"].tolist() == [100.5, 100.5]
    view = feed.book_view(SYMBOL, 10)
    assert view.synced and view.last_update_id == 11 and view.bids == [(100.0, 2.0)]
    assert view.asks == [(101.0, 1.0)]


def test_a_message_for_a_symbol_not_read_is_not_looked_at() -> None:
    feed, _ = reader()
    feed.on_message(subject("trade", "SOLUSDT"), b"\x00 not even msgpack")
    assert feed.bad_messages == 0 and feed.link.messages == 1


def test_a_flood_of_bad_messages_is_said_at_most_once_a_second(
    caplog: pytest.LogCaptureFixture,
) -> None:
    feed, _ = reader()
    with caplog.at_level(logging.WARNING, logger="marketlab.bus"):
        for _ in range(1000):
            feed.on_message(subject("trade"), b"\xc1")
    assert feed.bad_messages == 1000
    assert 10 <= len(caplog.records) <= 12  # the first ten, then once a second


def test_the_publisher_never_seals_more_records_than_a_reader_takes() -> None:
    from marketlab.bus.publisher import Publisher

    pub = Publisher(BusConfig("nats://127.0.0.1:4222"), "binance")
    feed, state = reader()
    n = enc.MAX_RECORDS + 5
    for i in range(1, n + 1):
        pub.on_record(trade(i))
    pub._seal()
    assert [m.records for m in pub._outbox] == [enc.MAX_RECORDS, 5]
    for msg in pub._outbox:
        feed.on_message(msg.subject, msg.payload)
    assert feed.bad_messages == 0 and len(state.trades[SYMBOL].frame()) == min(n, 10_000)


# --- on a real server --------------------------------------------------------------------------


def published(url: str, messages: list[tuple[str, bytes]]) -> int:
    """``messages`` put raw on the stream, in order (as anyone allowed to publish could);
    the stream sequence of the last one."""

    async def put() -> int:
        nc = await connect(BusConfig(url), "stranger")
        try:
            js = nc.jetstream()
            await ensure_stream(js, BusConfig(url))
            seq = 0
            for subj, payload in messages:
                seq = (await js.publish(subj, payload)).seq
            return seq
        finally:
            await close_quietly(nc)

    return asyncio.run(put())


def test_readers_and_the_history_writer_count_hostile_messages_and_keep_every_good_record(
    nats: NatsServer, tmp_path: Path
) -> None:
    picked = [
        "garbage bytes",
        "another version",
        "a NaN price",
        "an id past int64",
        "another symbol's records",
        "a kline's time as text",
        "a kline of no interval",
        "an unknown kind",
        "a subject of five tokens",
        "an infinite ticker",
        "a cut whole book with a side empty",
        "nested past any depth",
    ]
    bad = [(s, p) for name, s, p, _ in CASES if name in picked]
    assert len(bad) == len(picked)
    good: list[tuple[str, bytes]] = []
    for m in range(6):  # trades 1-30 three at a time, and a closed candle a minute
        for at in (1, 4):
            good.append(
                (subject("trade"), enc.encode([trade(m * 6 + at + j) for j in range(3)], "ws"))
            )
        good.append((subject("kline"), enc.encode([kline(m)], "ws")))
    messages = []
    for i, message in enumerate(good):  # a hostile message after every good one, as long as any
        messages.append(message)
        if i < len(bad):
            messages.append(bad[i])
    messages.append((subject("trade", "SOLUSDT"), b"\x00 not read by anyone here"))
    last = published(nats.url, messages)

    db = tmp_path / "h.sqlite"
    lab = ml.Lab.from_bus(
        nats.url, [SYMBOL, "ETHUSDT"], ["1m"], channels=["trades", "klines"]
    ).start()
    writer = ml.Lab.from_bus(
        nats.url,
        [SYMBOL, "ETHUSDT"],
        ["1m"],
        channels=["trades", "klines"],
        durable="writer",
        db=db,
        store=("klines", "trades"),
    ).start()
    try:
        for who in (lab, writer):
            wait_for(
                lambda who=who: (
                    len(who.trades(SYMBOL)) == 36 and who.summary()["bus"]["position"] == last
                ),
                30,
                "every good record read",
            )
            assert who.trades(SYMBOL)["trade_id"].tolist() == list(range(1, 37))
            assert len(who.trades("ETHUSDT")) == 0
            candles = who.klines(SYMBOL, "1m")
            assert candles["closed"].sum() == 6 and candles["close"].tolist() == [100.5] * 6
            bus = who.summary()["bus"]
            assert bus["bad_messages"] == len(bad), bus["last_bad_message"]
            assert "sequence" in bus["last_bad_message"] and who.running
        assert f"{len(bad)} bad messages dropped" in status_line(writer)

        async def acknowledged() -> int:
            nc = await connect(BusConfig(nats.url), "check")
            try:
                info = await nc.jetstream().consumer_info(STREAM, "writer")
                return int(info.ack_floor.stream_seq)
            finally:
                await close_quietly(nc)

        # the writer acknowledged past the last message, the bad ones included (not read again)
        wait_for(lambda: asyncio.run(acknowledged()) == last, 10, "everything acknowledged")
    finally:
        lab.stop()
        writer.stop()
    history = ml.History(db=db, exchange="binance")
    stored = history.trades(SYMBOL)
    assert sorted(stored["trade_id"].tolist()) == list(range(1, 37))
    assert all(math.isfinite(p) and p > 0 for p in stored["price"])
    assert len(history.trades("ETHUSDT")) == 0
    assert len(history.klines(SYMBOL, "1m")) == 6
