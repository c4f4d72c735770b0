"""The collector against the simulator, through every fault it injects.

Each test checks what a researcher sees: closed klines identical to the exchange's own record
(none missing, none twice), a book equal to the exchange's book, a collector still running.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from marketlab.lab import Lab
from marketlab.records import Interval, Kline, Trade
from marketlab.sim import SimExchange
from tests.simproc import SimProcess

FAST = dict(
    idle_timeout=2.0,
    ping_interval=1.0,
    ping_timeout=2.0,
    backoff_initial=0.1,
    backoff_max=1.0,
    fallback_after=3.0,
    poll_interval=0.5,
    seed_klines=30,
)


def venue_options(sim: SimExchange, exchange: str = "binance") -> dict:
    """The Lab options that point ``exchange`` at the simulator (and keep OKX's line alive in
    a test's shortened timings)."""
    if exchange == "okx":
        return {"okx_ws_url": sim.okx_ws_url, "okx_rest_url": sim.rest_url, "text_ping_after": 0.5}
    if exchange == "bybit":
        return {"bybit_ws_url": sim.ws_url, "bybit_rest_url": sim.rest_url}
    if exchange == "coinbase":
        return {"coinbase_ws_url": sim.ws_url, "coinbase_rest_url": sim.rest_url}
    return {"binance_ws_url": sim.ws_url, "binance_rest_url": sim.rest_url}


@contextlib.contextmanager
def running_lab(
    sim: SimExchange, symbols=("BTCUSDT",), intervals=("1m",), exchange: str = "binance", **options
) -> Iterator[tuple[Lab, list]]:
    lab = Lab(
        list(symbols),
        intervals=list(intervals),
        exchange=exchange,
        **{**FAST, **venue_options(sim, exchange), **options},
    )
    closed: list[Kline] = []
    lock = threading.Lock()

    def collect(record):
        if isinstance(record, Kline) and record.closed:
            with lock:
                closed.append(record)

    lab.subscribe(collect)
    lab.start()
    try:
        lab.wait_ready(30)
        yield lab, closed
    finally:
        lab.stop()
        assert not lab.running


def wait_for(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def assert_klines_exact(
    lab: Lab, sim: SimExchange, symbol: str, interval: str, closed_stream: list[Kline]
) -> int:
    """Every closed candle in the frame equals the exchange's; the stream has no repeats or
    holes."""
    df = lab.klines(symbol, interval)
    closed = df[df["closed"]]
    assert len(closed) >= 2
    opens = [int(t.value // 1_000_000) for t in closed.index]
    step = Interval(interval).ms
    assert opens == list(range(opens[0], opens[-1] + step, step)), "a closed candle is missing"
    oracle = sim.klines(symbol, interval, start=opens[0], end=opens[-1], limit=1000)
    assert [o["open_time"] for o in oracle] == opens
    for column in (
        "open",
        "high",
        "low",
        "close",
        "volume",
        "quote_volume",
        "trades",
        "taker_buy_volume",
        "taker_buy_quote_volume",
    ):
        assert list(closed[column]) == [o[column] for o in oracle], column
    mine = [k.open_time for k in closed_stream if k.symbol == symbol and k.interval == interval]
    repeated = [t for t, n in Counter(mine).items() if n > 1]
    assert not repeated, f"closed candles delivered twice: {repeated}"
    in_range = sorted(t for t in mine if opens[0] <= t <= opens[-1])
    assert in_range == [t for t in opens if t >= min(mine)], "the closed-kline stream has a hole"
    return len(opens)


def assert_book_matches_exchange(lab: Lab, sim: SimExchange, symbol: str) -> None:
    """The book equals the exchange's at the exchange's own id (OKX: its seqId).

    The exchange is paused to compare; a paused exchange sends nothing, so a Lab with a short
    idle timeout may cut the line and forget its book meanwhile: then the exchange resumes,
    the book resyncs, and the comparison is made again."""
    venue = lab.book_levels(symbol).exchange or lab.exchange

    def caught_up() -> bool:  # at the exchange's id, or past it (then compared again)
        return lab.book(symbol).attrs["last_update_id"] >= target

    for _ in range(5):
        sim.pause()
        try:
            # the exchange's book and its id read together: a paused exchange may still send
            # what was due when it paused, and the book then passes through ``target``
            truth = sim.book(symbol, 50, venue=venue)
            target = truth["last_update_id"]
            wait_for(lambda: caught_up() or not lab.book(symbol).attrs["synced"], 15, "the book")
            df = lab.book(symbol, 50)
            if df.attrs["last_update_id"] == target:  # the levels read at that very id
                bids = df[df.side == "bid"]
                asks = df[df.side == "ask"]
                assert list(zip(bids.price, bids.qty, strict=True)) == truth["bids"]
                assert list(zip(asks.price, asks.qty, strict=True)) == truth["asks"]
                return
        finally:
            sim.resume()
        wait_for(lambda: lab.book(symbol).attrs["synced"], 15, "the book to resync")
    raise AssertionError("the book never caught up with the paused exchange")


def trades_unique(lab: Lab, symbol: str) -> None:
    ids = list(lab.trades(symbol)["trade_id"])
    assert ids == sorted(set(ids)), "a trade appears twice or out of order"


@pytest.fixture
def sim() -> Iterator[SimExchange]:
    with SimExchange(["BTCUSDT", "ETHUSDT"], speed=60, seed=5) as exchange:
        yield exchange


def test_collects_frames_with_the_documented_columns(sim):
    with running_lab(sim, symbols=("BTCUSDT", "ETHUSDT"), intervals=("1m", "5m")) as (lab, closed):
        wait_for(lambda: len(lab.trades("ETHUSDT")) > 20, what="trades")
        prices = lab.prices()
        assert list(prices.index) == ["BTCUSDT", "ETHUSDT"]
        assert list(prices.columns) == [
            "last",
            "bid",
            "ask",
            "change_pct",
            "volume",
            "event_time",
            "received_at",
            "age_s",
            "source",
        ]
        assert (prices["bid"] < prices["ask"]).all() and (prices["source"] == "ws").all()
        assert str(prices["event_time"].dt.tz) == "UTC" and (prices["age_s"] < 5).all()
        k = lab.klines("ETHUSDT", "5m")
        assert (
            k.index.is_monotonic_increasing and k["closed"].iloc[:-1].all()
        )  # only the newest may be open
        book = lab.book("BTCUSDT", depth=10)
        assert book.attrs["synced"] and len(book) == 20
        assert book[book.side == "bid"].price.iloc[0] < book[book.side == "ask"].price.iloc[0]
        status = lab.status()
        assert status.loc[("BTCUSDT", "depth"), "book"] == "synced"
        assert status.attrs["source"] == "ws" and status.attrs["reconnects"] == 0
        with pytest.raises(KeyError, match="not collected"):
            lab.trades("XRPUSDT")
        with pytest.raises(KeyError, match="interval 15m"):
            lab.klines("BTCUSDT", "15m")
        time.sleep(2)
        assert_klines_exact(lab, sim, "ETHUSDT", "1m", closed)


def test_dropped_connections_lose_no_kline_and_resync_the_book(sim):
    with running_lab(sim, symbols=("BTCUSDT", "ETHUSDT")) as (lab, closed):
        time.sleep(1.5)
        for _ in range(3):
            sim.drop_connections()
            time.sleep(2.5)  # ~2.5 exchange minutes pass each time
        wait_for(lambda: lab.summary()["connections"][0]["connected"], what="reconnect")
        time.sleep(1.5)
        assert lab.summary()["reconnects"] >= 3
        for symbol in ("BTCUSDT", "ETHUSDT"):
            assert assert_klines_exact(lab, sim, symbol, "1m", closed) >= 30
            trades_unique(lab, symbol)
        wait_for(lambda: lab.book("BTCUSDT").attrs["synced"], what="book resync")
        assert_book_matches_exchange(lab, sim, "BTCUSDT")


def test_a_stalled_connection_is_detected_and_replaced(sim):
    with running_lab(sim) as (lab, closed):
        time.sleep(1)
        sim.stall(3.0)
        wait_for(lambda: lab.summary()["reconnects"] >= 1, 10, "a reconnect after the stall")
        time.sleep(3)
        assert (
            "no data" in lab.summary()["connections"][0]["last_error"]
            or lab.summary()["reconnects"] >= 1
        )
        assert_klines_exact(lab, sim, "BTCUSDT", "1m", closed)
        wait_for(lambda: lab.book("BTCUSDT").attrs["synced"], what="book resync")
        assert_book_matches_exchange(lab, sim, "BTCUSDT")


def test_a_gap_in_depth_ids_resyncs_the_book(sim):
    with running_lab(sim, symbols=("BTCUSDT", "ETHUSDT")) as (lab, _):
        sim.skip_depth_updates(2, symbol="BTCUSDT")
        wait_for(lambda: lab.status().loc[("BTCUSDT", "depth"), "messages"] > 0, what="depth")
        time.sleep(1.0)
        wait_for(lambda: lab.book("BTCUSDT").attrs["synced"], what="book resync")
        feed = lab._feed
        assert feed.books["BTCUSDT"].book.stats.gaps >= 1
        assert feed.books["ETHUSDT"].book.stats.gaps == 0
        assert_book_matches_exchange(lab, sim, "BTCUSDT")


def test_an_out_of_sync_book_is_never_served():
    with SimExchange(["BTCUSDT"], speed=60, seed=9) as sim, running_lab(sim) as (lab, _):
        sim.fail_rest(503, count=1000)  # no snapshot can be had
        sim.skip_depth_updates(1)
        wait_for(lambda: not lab.book("BTCUSDT").attrs["synced"], 10, "the gap to be noticed")
        df = lab.book("BTCUSDT")
        assert df.empty and "gap" in df.attrs["reason"]
        assert "out of sync" in lab.status().loc[("BTCUSDT", "depth"), "book"]
        sim.faults.rest_errors["binance"].clear()
        wait_for(lambda: lab.book("BTCUSDT").attrs["synced"], 20, "resync once REST answers")


@pytest.mark.parametrize(
    "kind", ["truncated", "garbage", "bad_field", "unknown_event", "id_past_int64", "nan_price"]
)
def test_a_malformed_frame_is_skipped_and_collection_goes_on(sim, kind):
    with running_lab(sim) as (lab, closed):
        before = len(lab.trades("BTCUSDT"))
        sim.send_malformed(kind)
        wait_for(lambda: lab.summary()["bad_frames"] >= 1, 10, "the bad frame")
        assert lab.running and lab.summary()["reconnects"] == 0
        wait_for(lambda: len(lab.trades("BTCUSDT")) > before + 20, 10, "more trades")
        trades = lab.trades("BTCUSDT")  # every trade id the venue's, none past int64 or NaN
        assert trades["trade_id"].is_monotonic_increasing and trades["price"].notna().all()
        assert lab.summary()["bad_frames"] >= 1
        time.sleep(1.5)
        assert_klines_exact(lab, sim, "BTCUSDT", "1m", closed)


def test_rest_429_then_success_is_waited_out(sim):
    sim.fail_rest(429, count=2, retry_after=1)
    began = time.monotonic()
    with running_lab(sim) as (lab, closed):
        assert time.monotonic() - began >= 0.9  # the Retry-After was honoured
        assert lab.summary()["rest_rate_limited"] >= 1
        time.sleep(1.5)
        assert_klines_exact(lab, sim, "BTCUSDT", "1m", closed)


def test_refused_connections_fall_back_to_rest_and_back(sim):
    with running_lab(sim, symbols=("BTCUSDT", "ETHUSDT")) as (lab, closed):
        sim.refuse_connections(20)
        sim.drop_connections()
        wait_for(lambda: lab.summary()["source"] == "rest", 15, "the REST fallback")
        wait_for(lambda: (lab.prices()["source"] == "rest").all(), 10, "prices over REST")
        wait_for(lambda: lab.book("BTCUSDT").attrs["synced"], 5, "a polled book")  # same poll cycle
        status = lab.status()
        assert (
            not status["connected"].any()
            and (status.loc[(slice(None), "ticker"), "source"] == "rest").all()
        )
        wait_for(lambda: lab.summary()["source"] == "ws", 30, "the WebSocket to return")
        wait_for(lambda: (lab.prices()["source"] == "ws").all(), 10, "prices over the WebSocket")
        wait_for(lambda: lab.book("BTCUSDT").attrs["synced"], 10, "book resync")
        time.sleep(1.5)
        for symbol in ("BTCUSDT", "ETHUSDT"):
            assert assert_klines_exact(lab, sim, symbol, "1m", closed) >= 40
        assert_book_matches_exchange(lab, sim, "BTCUSDT")


def test_connections_roll_over_before_the_exchange_cuts_them():
    with (
        SimExchange(["BTCUSDT"], speed=60, seed=3, max_connection_age=6.0) as sim,
        running_lab(sim, max_connection_age=2.5, rollover_overlap=0.5) as (lab, closed),
    ):
        seen: set[str] = set()
        trades: list[Trade] = []
        lab.subscribe(lambda r: trades.append(r) if isinstance(r, Trade) else None)
        end = time.monotonic() + 9
        while time.monotonic() < end:
            seen |= {c["name"] for c in lab.summary()["connections"]}
            time.sleep(0.1)
        assert len(seen) >= 3, seen  # rolled over at least twice
        assert lab.summary()["reconnects"] == 0  # never cut: always replaced in time
        ids = [t.trade_id for t in trades]
        assert ids == sorted(set(ids)) and ids[-1] - ids[0] + 1 == len(ids)  # no repeat, no loss
        assert_klines_exact(lab, sim, "BTCUSDT", "1m", closed)
        assert_book_matches_exchange(lab, sim, "BTCUSDT")


def test_server_shutdown_notice_moves_to_a_new_connection(sim):
    with running_lab(sim) as (lab, closed):
        time.sleep(0.5)
        first = lab.summary()["connections"][0]["name"]
        sim.server_shutdown()
        wait_for(
            lambda: first not in {c["name"] for c in lab.summary()["connections"]},
            10,
            "the new connection",
        )
        time.sleep(1.5)
        assert_klines_exact(lab, sim, "BTCUSDT", "1m", closed)


def test_subscriptions_beyond_the_url_are_paced_under_the_message_limit(sim):
    with running_lab(
        sim,
        symbols=("BTCUSDT", "ETHUSDT"),
        intervals=("1m", "3m", "5m"),
        url_streams=1,
        subscribe_chunk=1,
    ) as (lab, closed):
        wait_for(lambda: len(lab.status()) == 2 * 6, 15, "every stream to deliver")
        assert lab.summary()["reconnects"] == 0
        assert_klines_exact(lab, sim, "ETHUSDT", "1m", closed)


def test_a_busy_notebook_cell_does_not_stall_collection():
    # The exchange is another process, as in real life; the connection keeps Binance's timings.
    with (
        SimProcess("--symbols", "BTCUSDT", "--speed", "60", "--seed", "4") as sim,
        running_lab(sim, idle_timeout=30, ping_interval=20, ping_timeout=20) as (lab, closed),
    ):
        began = time.monotonic()
        x = 0
        while time.monotonic() - began < 10:  # pure Python, holding the GIL as much as it can
            x += 1
        assert lab.summary()["reconnects"] == 0
        time.sleep(1.5)
        assert assert_klines_exact(lab, sim, "BTCUSDT", "1m", closed) >= 10


def test_callbacks_errors_are_contained(sim):
    with running_lab(sim) as (lab, _):
        calls = []

        def bad(record):
            calls.append(record)
            raise RuntimeError("user bug")

        unsubscribe = lab.subscribe(bad)
        wait_for(lambda: len(calls) > 5, what="callbacks")
        unsubscribe()
        n = len(calls)
        time.sleep(0.5)
        assert len(calls) == n and lab.running


def test_bad_lab_arguments():
    with pytest.raises(ValueError, match="invalid symbol"):
        Lab(["BTC USDT"])
    with pytest.raises(ValueError, match="invalid interval"):
        Lab(["BTCUSDT"], intervals=["7m"])
    with pytest.raises(ValueError, match="channels: unknown 'candles'"):
        Lab(["BTCUSDT"], channels=["candles"])  # refused when given, not at start()
    with pytest.raises(TypeError, match="unknown Lab option"):
        Lab(["BTCUSDT"], ping_everyone=True)
    # a venue URL of a venue, but not one the Lab takes: refused by name, never dropped
    with pytest.raises(
        TypeError, match=r"coinbase_perp_ws_url \(the venue URLs taken: binance_perp_rest"
    ):
        Lab(["BTCUSDT"], coinbase_perp_ws_url="ws://127.0.0.1:1")
    with pytest.raises(TypeError, match="okx_business_url"):
        Lab(["BTCUSDT"], okx_business_url="ws://127.0.0.1:1")


def test_history_is_seeded_even_when_the_stream_closes_candles_first():
    # REST is slow to answer at start-up while the stream already delivers closed candles.
    with SimExchange(["BTCUSDT"], speed=600, seed=6) as sim:
        sim.fail_rest(503, count=4)
        with running_lab(sim) as (lab, closed):
            time.sleep(0.5)
            n = assert_klines_exact(lab, sim, "BTCUSDT", "1m", closed)
            assert n >= 30 + 1  # the seeded past and what closed since
