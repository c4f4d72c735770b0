"""The Bybit feed's own part, without a network: how it plans connections and subscriptions,
what its frames become, and how it answers a book break and a refused subscription. (The feed
end to end, over sockets, needs the simulator's Bybit face.)"""

from __future__ import annotations

import asyncio

import msgspec

from marketlab.records import Ticker, Trade
from marketlab.stream.config import FeedConfig
from marketlab.stream.connection import WsConnection
from marketlab.venues import bybit
from marketlab.venues.bybit.feed import BybitFeed
from tests.venues.bybit.test_protocol import TICKER, TRADE

URL = bybit.check_ws_url("ws://127.0.0.1:9300")


def make_feed(symbols=("BTCUSDT",), channels=("trades", "ticker", "book"), **config) -> tuple:
    got: list = []
    cfg = FeedConfig(ws_url=URL, rest_url="http://127.0.0.1:9301", **config)
    feed = BybitFeed(list(symbols), [], list(channels), cfg, lambda rs, src: got.extend(rs))
    return feed, got


def connection(feed: BybitFeed) -> WsConnection:
    """A connection of the feed's topics, never started: the feed is handed its frames."""
    return WsConnection(
        URL,
        feed.topics,
        feed.topics,
        "bybit-test",
        config=feed.config,
        events=feed,
        spawn=lambda coro: asyncio.get_running_loop().create_task(coro),
        subscribe_message=feed.subscribe_message,
    )


def book_frame(kind: str, u: int, bids: list, asks: list) -> bytes:
    return msgspec.json.encode(
        {
            "topic": "orderbook.200.BTCUSDT",
            "ts": 1767225600000 + u,
            "type": kind,
            "data": {"s": "BTCUSDT", "b": bids, "a": asks, "u": u, "seq": 7 * u},
            "cts": 1767225600000,
        }
    )


def test_the_feed_claims_no_trade_gap_detection_and_pings_with_json():
    assert BybitFeed.venue == "bybit" and BybitFeed.trades_by_id is False
    assert msgspec.json.decode(BybitFeed.text_ping) == {"op": "ping"}


def test_connections_go_to_the_spot_url_and_requests_carry_at_most_ten_topics():
    symbols = [f"C{i}USDT" for i in range(30)]
    feed, _ = make_feed(symbols, streams_per_connection=40)
    plans = feed.connection_plans()
    assert [len(streams) for _, streams, _ in plans] == [40, 40, 10]
    assert all(url == "ws://127.0.0.1:9300/v5/public/spot" for url, _, _ in plans)
    assert all(streams == initial for _, streams, initial in plans)
    assert feed.config.subscribe_chunk == 10  # the connections send 10 topics a request
    first = msgspec.json.decode(feed.subscribe_message(plans[0][1][:10], 1, False))
    second = msgspec.json.decode(feed.subscribe_message(plans[1][1][:10], 1, True))
    assert first["op"] == "subscribe" and len(first["args"]) == 10
    assert second["op"] == "unsubscribe" and first["req_id"] != second["req_id"]


def test_trades_and_tickers_reach_the_sink():
    feed, got = make_feed()
    conn = connection(feed)
    feed.on_frame(TRADE, conn)
    feed.on_frame(TICKER, conn)
    feed.on_frame(b"garbage", conn)
    assert [type(r) for r in got] == [Trade, Trade, Ticker]
    assert feed.bad_frames == 1 and "malformed JSON" in feed.last_bad_frame


def test_a_u_break_takes_the_book_out_of_sync_until_the_next_snapshot():
    async def run() -> None:
        feed, _ = make_feed(channels=("book",))
        conn = connection(feed)
        feed.on_frame(book_frame("snapshot", 41, [["99", "1"]], [["100", "2"]]), conn)
        assert feed.book_state("BTCUSDT") == "synced"
        assert feed.book_check("BTCUSDT") == "u chain"
        feed.on_frame(book_frame("delta", 42, [["99", "0"], ["98", "3"]], []), conn)
        view = feed.book_view("BTCUSDT", 5)
        assert view.synced and view.bids == [(98.0, 3.0)] and view.last_update_id == 42
        feed.on_frame(book_frame("delta", 44, [], [["101", "1"]]), conn)  # 43 lost
        assert feed.book_state("BTCUSDT").startswith("out of sync: gap")
        await asyncio.sleep(0.01)  # the resubscription runs (no socket: nothing is sent)
        feed.on_frame(book_frame("snapshot", 50, [["97", "1"]], [["100", "2"]]), conn)
        view = feed.book_view("BTCUSDT", 5)
        assert view.synced and view.bids == [(97.0, 1.0)] and view.exchange == "bybit"

    asyncio.run(run())


def test_a_subscription_bybit_refuses_stops_collection_and_says_why():
    feed, _ = make_feed()
    conn = connection(feed)
    req = msgspec.json.decode(feed.subscribe_message(feed.topics[:1], 1, False))["req_id"]
    ok = {"success": True, "ret_msg": "subscribe", "conn_id": "c", "req_id": req, "op": "subscribe"}
    feed.on_frame(msgspec.json.encode(ok), conn)
    assert feed.fatal is None
    refused = {**ok, "success": False, "ret_msg": "Invalid symbol :[publicTrade.BTCUSDT]"}
    feed.on_frame(msgspec.json.encode(refused), conn)
    assert feed.fatal is not None and "Invalid symbol" in str(feed.fatal)


def test_a_broken_connection_marks_its_trades_unverifiable_a_rollover_does_not():
    async def run() -> None:
        feed, _ = make_feed(symbols=("BTCUSDT", "ETHUSDT"), channels=("trades", "book"))
        conn = connection(feed)
        feed.on_connected(conn)
        assert feed.trades_unverifiable == {}
        conn.retiring = True  # rolled over: its successor overlapped it
        feed.on_disconnected(conn)
        feed.on_connected(conn)
        assert feed.trades_unverifiable == {}
        conn.retiring = False
        feed.on_disconnected(conn)  # dropped: trades may have been missed
        feed.on_connected(conn)
        assert feed.trades_unverifiable == {"BTCUSDT": 1, "ETHUSDT": 1}
        await asyncio.sleep(0.01)  # the recent-trade look-up (no REST client here: none)

    asyncio.run(run())
