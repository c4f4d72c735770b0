"""OKX end to end over real sockets: the adapter on every channel, book integrity faults,
the 30-second rule, kline backfill, and failover from Binance to OKX and back."""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator

import pytest
import websockets

from marketlab.lab import Lab
from marketlab.records import BookTicker, Interval, Kline, Ticker, Trade
from marketlab.sim import SimExchange
from marketlab.venues import okx
from tests.lab.test_lab import (
    FAST,
    assert_book_matches_exchange,
    running_lab,
    venue_options,
    wait_for,
)


@pytest.fixture
def sim() -> Iterator[SimExchange]:
    with SimExchange(["BTCUSDT", "ETHUSDT"], speed=60, seed=11) as exchange:
        yield exchange


okx_lab = functools.partial(running_lab, exchange="okx")


def assert_okx_klines_exact(
    lab: Lab,
    sim: SimExchange,
    symbol: str,
    interval: str,
    stream: list[Kline],
    exchange: str | None = None,
) -> int:
    """Closed candles equal the exchange's (OKX publishes no trade counts or taker volumes)."""
    df = lab.klines(symbol, interval, exchange=exchange)
    closed = df[df["closed"]]
    opens = [int(t.value // 1_000_000) for t in closed.index]
    step = Interval(interval).ms
    assert len(opens) >= 2 and opens == list(range(opens[0], opens[-1] + step, step)), (
        "a closed candle is missing"
    )
    oracle = sim.klines(
        symbol, interval, start=opens[0], end=opens[-1], limit=1000, venue=exchange or "okx"
    )
    assert [o["open_time"] for o in oracle] == opens
    for column in ("open", "high", "low", "close", "volume"):
        assert list(closed[column]) == [o[column] for o in oracle], column
    assert [round(q, 6) for q in closed["quote_volume"]] == [
        round(o["quote_volume"], 6) for o in oracle
    ]
    assert (closed["trades"] == -1).all() and closed["taker_buy_volume"].isna().all()
    mine = [k.open_time for k in stream if k.symbol == symbol and k.interval == interval]
    assert not [t for t, n in Counter(mine).items() if n > 1], "closed candles delivered twice"
    return len(opens)


def klines_whole(lab: Lab, symbol: str, interval: str = "1m") -> bool:
    """No closed candle missing between the first and the last closed one."""
    closed = lab.klines(symbol, interval).query("closed").index.asi8 // 1_000_000
    step = Interval(interval).ms
    return len(closed) >= 2 and list(closed) == list(range(closed[0], closed[-1] + step, step))


def test_okx_lab_collects_every_channel_into_frames(sim):
    seen: Counter[type] = Counter()
    with okx_lab(
        sim,
        symbols=("BTCUSDT", "ETHUSDT"),
        intervals=("1m", "5m"),
        channels=("trades", "ticker", "book", "klines", "bookTicker"),
    ) as (lab, closed):
        lab.subscribe(lambda r: seen.update([type(r)]))
        wait_for(lambda: len(lab.trades("ETHUSDT")) > 20, what="trades")
        prices = lab.prices()
        assert list(prices.index) == ["BTCUSDT", "ETHUSDT"] and (prices["source"] == "ws").all()
        assert (prices["bid"] < prices["ask"]).all()
        trades = lab.trades("BTCUSDT")
        assert set(trades["side"]) <= {"buy", "sell"} and trades["trade_id"].is_monotonic_increasing
        assert lab.book("BTCUSDT", 10).attrs["synced"]
        wait_for(
            lambda: all(seen[t] for t in (Trade, Ticker, BookTicker, Kline)), 10, "every channel"
        )
        status = lab.status()
        assert set(status.index.get_level_values("stream")) == {
            "trade",
            "ticker",
            "depth",
            "bookTicker",
            "kline_1m",
            "kline_5m",
        }
        assert (status["messages"] > 0).all() and lab.summary()["exchange"] == "okx"
        time.sleep(2)
        assert assert_okx_klines_exact(lab, sim, "ETHUSDT", "1m", closed) >= 30
        assert_book_matches_exchange(lab, sim, "BTCUSDT")


def test_a_wrong_checksum_resubscribes_and_the_book_comes_back_exact():
    """A feed that still sends checksums (OKX before June 2026, older recordings)."""
    with (
        SimExchange(["BTCUSDT"], speed=60, seed=11, okx_checksums=True) as sim,
        okx_lab(sim, channels=("book",)) as (lab, _),
    ):
        feed = lab._feed
        assert lab.book("BTCUSDT").attrs["verified"] == "seqId chain + checksum"
        sim.corrupt_checksums(1, "BTCUSDT")
        wait_for(lambda: feed.books["BTCUSDT"].book.checksum_failures == 1, 10, "the mismatch")
        wait_for(lambda: lab.book("BTCUSDT").attrs["synced"], 10, "a new snapshot")
        assert feed.books["BTCUSDT"].book.checksums_verified >= 2
        assert_book_matches_exchange(lab, sim, "BTCUSDT")


def test_books_as_okx_sends_them_today_stay_synced_through_heartbeats_and_a_seq_reset():
    """Checksum 0 on every message; a quiet book gets OKX's heartbeat; maintenance resets
    the seqId. None of it may cost a resubscription."""
    with (
        SimExchange(["BTCUSDT"], speed=30, seed=3, okx_book_heartbeat=1.0) as sim,
        okx_lab(sim, channels=("book",), idle_timeout=4.0) as (lab, _),
    ):
        book = lab._feed.books["BTCUSDT"].book
        df = lab.book("BTCUSDT", 5)
        assert df.attrs["synced"] and df.attrs["verified"] == "seqId chain" and len(df) == 10
        assert lab.status().loc[("BTCUSDT", "depth"), "verified"] == "seqId chain"
        wait_for(lambda: book.stats.applied > 20, 10, "updates")
        sim.pause()  # the book stops changing: OKX says so about once a period
        wait_for(lambda: book.stats.heartbeats >= 2, 10, "heartbeats of a quiet book")
        sim.resume()
        sim.book_heartbeat("BTCUSDT")  # and one while it moves
        sim.reset_book_seq("BTCUSDT")
        wait_for(lambda: book.stats.seq_resets == 1, 10, "the seqId reset")
        time.sleep(1)
        assert book.stats.heartbeats >= 3 and book.stats.resyncs == 0 and book.stats.gaps == 0
        assert book.checksum_failures == 0 and book.checksums_verified == 0
        assert lab._feed.resubscribed == 0 and lab.book("BTCUSDT").attrs["synced"]
        assert_book_matches_exchange(lab, sim, "BTCUSDT")
        assert lab.book("BTCUSDT").attrs["last_update_id"] < 1_000_000  # counting from the reset


def test_okx_in_production_mode_keeps_candles_and_book_exact_through_every_fault(sim):
    """Checksum 0 everywhere (as OKX sends today); drops, a seqId gap, a garbage frame and
    REST 429s: every closed candle is the exchange's, and the book equals its top levels."""
    with okx_lab(
        sim, symbols=("BTCUSDT", "ETHUSDT"), channels=("trades", "ticker", "book", "klines")
    ) as (lab, closed):
        book = lab._feed.books["BTCUSDT"].book
        sim.fail_rest(429, 3, venue="okx")
        sim.drop_connections(venue="okx")
        time.sleep(1.5)
        wait_for(lambda: lab.book("BTCUSDT").attrs["synced"], 15, "the book after the drop")
        sim.skip_depth_updates(1, "BTCUSDT", venue="okx")
        wait_for(lambda: book.stats.gaps >= 1, 10, "the broken chain")
        sim.send_malformed("garbage", venue="okx")
        wait_for(lambda: lab.summary()["bad_frames"] >= 1, 10, "the garbage frame")
        sim.fail_rest(429, 4, venue="okx")
        sim.drop_connections(venue="okx")
        time.sleep(2)
        wait_for(lambda: lab._feed.connected, 20, "reconnection")
        wait_for(
            lambda: all(lab.book(s).attrs["synced"] for s in ("BTCUSDT", "ETHUSDT")), 15, "books"
        )
        # the backfill waits out each 429 (OKX's 2-second window) before it fetches the hole
        wait_for(
            lambda: all(klines_whole(lab, s) for s in ("BTCUSDT", "ETHUSDT")), 20, "the backfill"
        )
        assert book.checksum_failures == 0 and lab.summary()["rest_rate_limited"] >= 1
        for symbol in ("BTCUSDT", "ETHUSDT"):
            assert assert_okx_klines_exact(lab, sim, symbol, "1m", closed) >= 30
            assert lab.book(symbol).attrs["verified"] == "seqId chain"
            assert_book_matches_exchange(lab, sim, symbol)


def test_a_lost_book_update_resubscribes(sim):
    with okx_lab(sim, channels=("book",)) as (lab, _):
        book = lab._feed.books["BTCUSDT"].book
        sim.skip_depth_updates(1, "BTCUSDT", venue="okx")
        wait_for(lambda: book.stats.gaps == 1, 10, "the broken chain")
        wait_for(lambda: lab.book("BTCUSDT").attrs["synced"], 10, "a new snapshot")
        assert_book_matches_exchange(lab, sim, "BTCUSDT")


def test_dropped_connections_are_backfilled_without_holes_or_repeats(sim):
    with okx_lab(sim, symbols=("BTCUSDT", "ETHUSDT")) as (lab, closed):
        for _ in range(3):
            time.sleep(1.5)
            sim.drop_connections(venue="okx")
        sim.refuse_connections(4, venue="okx")
        sim.drop_connections(venue="okx")
        time.sleep(5)
        wait_for(lambda: lab._feed.connected, 20, "reconnection")
        time.sleep(1.5)
        assert lab.summary()["reconnects"] >= 4
        assert lab._feed.kline_stats[("BTCUSDT", "1m")].backfilled >= 1
        for symbol in ("BTCUSDT", "ETHUSDT"):
            assert assert_okx_klines_exact(lab, sim, symbol, "1m", closed) >= 30


def test_the_30_second_rule_closes_a_silent_connection_and_ping_keeps_one_open():
    async def probe(sim: SimExchange) -> tuple[int | None, bool]:
        async with websockets.connect(sim.okx_ws_url) as silent:
            try:
                await asyncio.wait_for(silent.recv(), 3)
            except websockets.ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else None
        async with websockets.connect(sim.okx_ws_url) as pinging:
            for _ in range(6):
                await pinging.send("ping")
                assert await asyncio.wait_for(pinging.recv(), 1) == "pong"
                await asyncio.sleep(0.4)
            alive = pinging.state is websockets.State.OPEN
        return code, alive

    with SimExchange(["BTCUSDT"], speed=1, okx_idle_timeout=1.0) as exchange:
        code, alive = asyncio.run(probe(exchange))
    assert code == 4004 and alive


def test_the_collector_pings_through_a_quiet_market():
    with (
        SimExchange(["BTCUSDT"], speed=30, okx_idle_timeout=1.5) as exchange,
        okx_lab(exchange, channels=("ticker",), idle_timeout=3.0) as (lab, _),
    ):
        exchange.pause()  # nothing happens, nothing is pushed: only our pings keep the line
        time.sleep(4)
        exchange.resume()
        assert lab.summary()["reconnects"] == 0
        assert lab.summary()["connections"][0]["connected"]


def test_the_exchange_answers_bad_subscriptions_and_the_collector_goes_on(sim):
    async def ask() -> list[str]:
        async with websockets.connect(sim.okx_ws_url) as ws:
            await ws.send(okx.subscribe_message([okx.Topic("candle1m", "BTC-USDT")]).decode())
            await ws.send(okx.subscribe_message([okx.Topic("tickers", "NOPE-USDT")]).decode())
            await ws.send("{not json")
            return [await asyncio.wait_for(ws.recv(), 2) for _ in range(3)]

    replies = [okx.OkxDecoder().decode(r)[0] for r in asyncio.run(ask())]
    assert [r.code for r in replies] == ["60018", "60018", "60012"]
    with okx_lab(sim, channels=("ticker",)) as (lab, _):
        sim.send_malformed("bad_field", venue="okx")
        sim.send_malformed("truncated", venue="okx")
        wait_for(lambda: lab.summary()["bad_frames"] >= 2, 5, "the bad frames to be counted")
        before = lab.prices()["event_time"].iloc[0]
        wait_for(lambda: lab.prices()["event_time"].iloc[0] > before, 5, "collection to go on")


def test_okx_rest_fallback_polls_when_the_websocket_is_refused(sim):
    with okx_lab(sim, channels=("ticker", "book", "klines")) as (lab, closed):
        sim.refuse_connections(8, venue="okx")
        sim.drop_connections(venue="okx")
        wait_for(lambda: (lab.prices()["source"] == "rest").all(), 15, "prices over REST")
        wait_for(lambda: lab.book("BTCUSDT").attrs["synced"], 5, "a polled book")
        wait_for(lambda: (lab.prices()["source"] == "ws").all(), 30, "the WebSocket to return")
        wait_for(lambda: lab.book("BTCUSDT").attrs["synced"], 10, "the streamed book")
        time.sleep(1.5)
        assert assert_okx_klines_exact(lab, sim, "BTCUSDT", "1m", closed) >= 30
        assert_book_matches_exchange(lab, sim, "BTCUSDT")


def test_failover_to_okx_and_back_loses_no_binance_kline(sim, tmp_path):
    db = tmp_path / "h.sqlite"
    lab = Lab(
        ["BTCUSDT", "ETHUSDT"],
        intervals=["1m"],
        db=db,
        fallback="okx",
        failover_after=1.5,
        **{**FAST, **venue_options(sim), **venue_options(sim, "okx"), "fallback_after": 0.5},
    )
    binance_closed: list[Kline] = []
    sources: set[str] = set()
    lab.subscribe(
        lambda r: (
            binance_closed.append(r)
            if isinstance(r, Kline) and r.closed and r.trades >= 0
            else None
        )
    )
    with lab:
        lab.wait_ready(30)
        assert not lab.failed_over
        sim.refuse_connections(10, rest=True, venue="binance")
        sim.drop_connections(venue="binance")
        wait_for(lambda: lab.failed_over, 15, "the failover")
        wait_for(lambda: (lab.prices()["source"] == "okx:ws").all(), 10, "prices from OKX")
        wait_for(lambda: lab.book("BTCUSDT").attrs["synced"], 10, "a book from OKX")
        assert lab.book_levels("BTCUSDT").exchange == "okx"
        assert lab.book("BTCUSDT").attrs["verified"] == "seqId chain"  # checksum 0, as today
        assert_book_matches_exchange(lab, sim, "BTCUSDT")
        assert lab.summary()["source"] == "okx:ws"
        wait_for(
            lambda: lab.klines("BTCUSDT", exchange="okx")["closed"].sum() >= 3, 10, "OKX candles"
        )
        sources |= set(lab.prices()["source"])
        wait_for(lambda: not lab.failed_over, 30, "the fail-back")
        wait_for(lambda: (lab.prices()["source"] == "ws").all(), 10, "prices from Binance")
        wait_for(
            lambda: (
                lab.book_levels("BTCUSDT").exchange == "binance"
                and lab.book("BTCUSDT").attrs["synced"]
            ),
            10,
            "Binance's book",
        )
        time.sleep(2)
        assert lab.summary()["failovers"] == 1
        from tests.lab.test_lab import assert_klines_exact

        for symbol in ("BTCUSDT", "ETHUSDT"):
            assert assert_klines_exact(lab, sim, symbol, "1m", binance_closed) >= 30
        assert assert_okx_klines_exact(lab, sim, "BTCUSDT", "1m", [], exchange="okx") >= 3
    assert sources == {"okx:ws"}
    con = sqlite3.connect(db)
    rows = dict(con.execute("SELECT exchange, count(*) FROM klines GROUP BY exchange").fetchall())
    assert rows["binance"] >= 60 and rows["okx"] >= 6
    # never mixed: every Binance row has Binance's own fields, every OKX row OKX's
    assert (
        con.execute(
            "SELECT count(*) FROM klines WHERE exchange='binance' AND trades < 0"
        ).fetchone()[0]
        == 0
    )
    assert (
        con.execute(
            "SELECT count(*) FROM klines WHERE exchange='okx' AND taker_buy_volume IS NOT NULL"
        ).fetchone()[0]
        == 0
    )
    binance = lab.history.klines("BTCUSDT", "1m")
    opens = binance.index.asi8 // 1_000_000
    step = 60_000
    assert list(opens) == list(range(opens[0], opens[-1] + step, step)), (
        "the stored Binance series has a hole"
    )
    assert not binance["taker_buy_volume"].isna().any()


def test_subscriptions_lost_in_a_stall_are_sent_again(sim):
    with okx_lab(sim, channels=("ticker",), subscribe_timeout=1.0) as (lab, _):
        sim.stall(3, venue="okx")  # the client reconnects mid-stall; its subscriptions vanish
        time.sleep(3.5)
        wait_for(lambda: lab.prices()["age_s"].iloc[0] < 0.5, 10, "data after the stall")
        assert lab.summary()["reconnects"] >= 1 and lab._feed.resubscribed >= 1


def test_a_service_upgrade_notice_moves_to_new_connections_without_losing_candles(sim):
    with okx_lab(sim, symbols=("BTCUSDT",)) as (lab, closed):
        time.sleep(1)
        sim.server_shutdown(venue="okx")
        time.sleep(3)
        wait_for(lambda: lab._feed.connected, 10, "new connections")
        assert lab.summary()["bad_frames"] == 0
        assert any(
            "notice 64008" in c["last_error"] or c["connected"]
            for c in lab.summary()["connections"]
        )
        assert assert_okx_klines_exact(lab, sim, "BTCUSDT", "1m", closed) >= 30
        assert_book_matches_exchange(lab, sim, "BTCUSDT")


@pytest.mark.parametrize("kind", ["id_past_int64", "nan_price"])
def test_an_okx_trade_with_hostile_numbers_is_a_bad_frame_and_trades_go_on(sim, kind):
    with okx_lab(sim, channels=("trades",)) as (lab, _):
        wait_for(lambda: len(lab.trades("BTCUSDT")) > 5, 10, "trades")
        sim.send_malformed(kind, venue="okx")
        wait_for(lambda: lab.summary()["bad_frames"] >= 1, 5, "the bad frame to be counted")
        before = len(lab.trades("BTCUSDT"))
        wait_for(lambda: len(lab.trades("BTCUSDT")) > before + 5, 10, "trades to go on")
        trades = lab.trades("BTCUSDT")
        assert trades["trade_id"].max() < 2**62 and trades["price"].notna().all()
