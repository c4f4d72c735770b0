"""Coinbase Advanced Trade, sans-I/O: names, granularities, URLs and subscribe messages out;
WebSocket messages and REST payloads in, as Coinbase documents them (the example frames and
bodies below are the ones quoted in /work/research/coinbase.md, §3a and §7)."""

from __future__ import annotations

import math

import msgspec
import pytest

from marketlab.records import Kline, Ticker, Trade
from marketlab.venues import coinbase as cb
from marketlab.venues import registry

# --- names, intervals, URLs ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ("BTCUSD", "BTC-USD"),
        ("BTCUSDT", "BTC-USDT"),
        ("ETHBTC", "ETH-BTC"),
        ("ETHUSDC", "ETH-USDC"),
        ("USDTUSDC", "USDT-USDC"),
        ("EURCUSD", "EURC-USD"),
        ("BTCEUR", "BTC-EUR"),
        ("BTCEURC", "BTC-EURC"),
        ("1INCHUSD", "1INCH-USD"),
    ],
)
def test_symbols_map_both_ways_at_the_longest_quote(ours, theirs):
    assert cb.product_id(ours) == theirs
    assert cb.symbol_of(theirs) == ours


def test_other_spellings_of_a_symbol_and_what_cannot_be_mapped():
    assert cb.product_id("btc/usd") == "BTC-USD"
    assert cb.product_id("BTC-USD") == "BTC-USD"
    assert cb.product_id("doge-xyz") == "DOGE-XYZ"  # the dash says where the quote starts
    with pytest.raises(ValueError, match="cannot tell the quote asset of 'BTCXYZ' for Coinbase"):
        cb.product_id("BTCXYZ")
    with pytest.raises(ValueError, match="cannot tell"):
        cb.product_id("USD")  # a quote alone has no base
    for bad in ("BTCUSD", "-USD", "BTC-", "A-B-C", 7):
        with pytest.raises(ValueError):
            cb.symbol_of(bad)  # type: ignore[arg-type]


def test_granularities_map_both_ways_and_others_are_refused_naming_the_choices():
    pairs = {
        "1m": "ONE_MINUTE",
        "5m": "FIVE_MINUTE",
        "15m": "FIFTEEN_MINUTE",
        "30m": "THIRTY_MINUTE",
        "1h": "ONE_HOUR",
        "2h": "TWO_HOUR",
        "6h": "SIX_HOUR",
        "1d": "ONE_DAY",
    }
    for ours, theirs in pairs.items():
        assert cb.granularity(ours) == theirs
        assert cb.interval_of(theirs) == ours
    for missing in ("1s", "3m", "4h", "8h", "12h", "3d", "1w", "1M"):
        with pytest.raises(ValueError, match=f"Coinbase has no {missing} candles: use one of 1m"):
            cb.VENUE.check_interval(missing)
    with pytest.raises(ValueError, match="unknown Coinbase granularity"):
        cb.interval_of("FOUR_HOUR")


def test_ws_url_is_the_bare_base_and_the_rest_url_a_base():
    assert cb.check_ws_url("ws://127.0.0.1:9400") == "ws://127.0.0.1:9400"
    assert cb.check_ws_url("ws://127.0.0.1:9400/") == "ws://127.0.0.1:9400"
    assert cb.check_ws_url("wss://advanced-trade-ws.coinbase.com") == cb.DEFAULT_WS_URL
    with pytest.raises(ValueError, match="has no path"):
        cb.check_ws_url("wss://ws-feed.exchange.coinbase.com/feed")
    with pytest.raises(ValueError):
        cb.check_ws_url("https://advanced-trade-ws.coinbase.com")
    assert cb.VENUE.check_rest_url("https://api.coinbase.com") == "https://api.coinbase.com"
    assert registry.get("coinbase") is cb.VENUE
    assert cb.VENUE.ws_env == "MARKETLAB_COINBASE_WS_URL"


def test_subscriptions_are_one_channel_a_message_with_heartbeats_first():
    topics = cb.topics_for(["BTCUSD", "ETHUSD"], ["book", "trades", "klines"])
    assert [(t.channel, t.product) for t in topics] == [
        ("heartbeats", ""),
        ("market_trades", "BTC-USD"),
        ("market_trades", "ETH-USD"),
        ("level2", "BTC-USD"),
        ("level2", "ETH-USD"),
    ]
    groups = cb.by_channel(topics)
    assert [g[0].channel for g in groups] == ["heartbeats", "market_trades", "level2"]
    messages = [msgspec.json.decode(cb.topics_message(g)) for g in groups]
    assert messages[0] == {"type": "subscribe", "channel": "heartbeats"}
    level2 = next(m for m in messages if m["channel"] == "level2")
    # as the docs' example: {"type": "subscribe", "product_ids": [...], "channel": "level2"}
    assert level2 == {
        "type": "subscribe",
        "channel": "level2",
        "product_ids": ["BTC-USD", "ETH-USD"],
    }
    off = msgspec.json.decode(cb.topics_message(groups[1], unsubscribe=True))
    assert off["type"] == "unsubscribe" and len(off["product_ids"]) == 2
    with pytest.raises(ValueError, match="one channel"):
        cb.topics_message(topics)
    with pytest.raises(ValueError, match="Coinbase has no bookTicker channel"):
        cb.topics_for(["BTCUSD"], ["bookTicker"])


# --- WebSocket messages (the docs' examples) ---------------------------------------------------

HEARTBEAT = (
    b'{"channel":"heartbeats","client_id":"","timestamp":"2023-06-23T20:31:26.122969572Z",'
    b'"sequence_num":0,"events":[{"current_time":'
    b'"2023-06-23 20:31:56.121961769 +0000 UTC m=+91717.525857105","heartbeat_counter":"3049"}]}'
)
HEARTBEAT_PRODUCTION = (
    b'{"channel":"heartbeats","client_id":"","timestamp":"2023-10-23T14:43:13.362842145Z",'
    b'"sequence_num":150,"events":[{"current_time":'
    b'"2023-10-23 14:43:13.362521689 +0000 UTC m=+425760.164580852","heartbeat_counter":14191}]}'
)
MARKET_TRADES = (
    b'{"channel":"market_trades","client_id":"","timestamp":"2023-02-09T20:19:35.39625135Z",'
    b'"sequence_num":0,"events":[{"type":"snapshot","trades":[{"trade_id":"000000000",'
    b'"product_id":"ETH-USD","price":"1260.01","size":"0.3","side":"BUY",'
    b'"time":"2019-08-14T20:42:27.265Z"}]}]}'
)
TICKER = (
    b'{"channel":"ticker","client_id":"","timestamp":"2023-02-09T20:30:37.167359596Z",'
    b'"sequence_num":0,"events":[{"type":"snapshot","tickers":[{"type":"ticker",'
    b'"product_id":"BTC-USD","price":"21932.98","volume_24_h":"16038.28770938",'
    b'"low_24_h":"21835.29","high_24_h":"23011.18","low_52_w":"15460","high_52_w":"48240",'
    b'"price_percent_chg_24_h":"-4.15775596190603","best_bid":"21931.98",'
    b'"best_bid_quantity":"8000.21","best_ask":"21933.98",'
    b'"best_ask_quantity":"8038.07770938"}]}]}'
)
L2_SNAPSHOT = (
    b'{"channel":"l2_data","client_id":"","timestamp":"2023-02-09T20:32:50.714964855Z",'
    b'"sequence_num":0,"events":[{"type":"snapshot","product_id":"BTC-USD","updates":['
    b'{"side":"bid","event_time":"1970-01-01T00:00:00Z","price_level":"21921.73",'
    b'"new_quantity":"0.06317902"},{"side":"bid","event_time":"1970-01-01T00:00:00Z",'
    b'"price_level":"21921.3","new_quantity":"0.02"}]}]}'
)
L2_UPDATE = (
    b'{"channel":"l2_data","client_id":"","timestamp":"2024-10-08T09:10:36.120390407Z",'
    b'"sequence_num":14,"events":[{"type":"update","product_id":"BTC-USD","updates":['
    b'{"side":"bid","event_time":"2024-10-08T09:10:35.171517Z","price_level":"62317.89",'
    b'"new_quantity":"0.032355"},{"side":"offer","event_time":"2024-10-08T09:10:35.171517Z",'
    b'"price_level":"62394.77","new_quantity":"0.0170024"}]}]}'
)
SUBSCRIPTIONS = (
    b'{"channel":"subscriptions","client_id":"","timestamp":"2026-04-07T14:30:00.000000Z",'
    b'"sequence_num":0,"events":[{"subscriptions":{"level2":["BTC-USD"],'
    b'"market_trades":["BTC-USD","ETH-USD"]}}]}'
)
ERROR = b'{"type":"error","message":"failure to subscribe"}'
CANDLES = (
    b'{"channel":"candles","client_id":"","timestamp":"2023-06-09T20:19:35.39625135Z",'
    b'"sequence_num":3,"events":[{"type":"snapshot","candles":[{"start":"1688998200",'
    b'"high":"1867.72","low":"1865.63","open":"1867.38","close":"1866.81",'
    b'"volume":"0.20269406","product_id":"ETH-USD"}]}]}'
)

FRAMES = [
    HEARTBEAT,
    HEARTBEAT_PRODUCTION,
    MARKET_TRADES,
    TICKER,
    L2_SNAPSHOT,
    L2_UPDATE,
    SUBSCRIPTIONS,
    ERROR,
    CANDLES,
]

decode = cb.CoinbaseDecoder().decode


def test_heartbeats_counter_as_the_docs_write_it_and_as_production_sends_it():
    doc, prod = decode(HEARTBEAT), decode(HEARTBEAT_PRODUCTION)
    assert (doc.channel, doc.sequence_num, doc.events[0].counter) == ("heartbeats", 0, 3049)
    assert (prod.sequence_num, prod.events[0].counter) == (150, 14191)
    assert prod.events[0].current_time.startswith("2023-10-23 14:43:13.362521689")


def test_market_trades_are_taken_on_the_takers_side():
    msg = decode(MARKET_TRADES)
    # 2019-08-14T20:42:27.265Z and 2023-02-09T20:19:35.396Z, worked out by hand
    assert msg.events == [
        Trade("ETHUSD", 0, 1260.01, 0.3, "sell", 1565815347265, 1675973975396)
    ]  # the docs: side is the maker's; a resting BUY was hit by a seller


def test_a_ticker_gives_the_best_bid_and_ask_and_works_the_open_back_from_the_change():
    (t,) = decode(TICKER).events
    assert isinstance(t, Ticker) and t.symbol == "BTCUSD" and t.event_time == 1675974637167
    assert (t.last, t.bid, t.bid_qty, t.ask, t.ask_qty) == (
        21932.98,
        21931.98,
        8000.21,
        21933.98,
        8038.07770938,
    )
    assert (t.high, t.low, t.volume, t.change_pct) == (
        23011.18,
        21835.29,
        16038.28770938,
        -4.15775596190603,
    )
    assert t.open == pytest.approx(22884.46, abs=0.01)  # 21932.98 / (1 - 0.0415775596)
    assert t.change == pytest.approx(21932.98 - 22884.46, abs=0.01)
    assert math.isnan(t.last_qty) and t.trades == -1


def test_level2_snapshot_and_update_with_the_offer_side_as_asks():
    snap = decode(L2_SNAPSHOT)
    assert snap.channel == "l2_data" and snap.sequence_num == 0
    (b,) = snap.events
    assert b == cb.BookMessage(
        "BTCUSD", "snapshot", [(21921.73, 0.06317902), (21921.3, 0.02)], [], 0, 1675974770714
    )  # the envelope's time: the levels' 1970 event_time is not one
    (u,) = decode(L2_UPDATE).events
    assert (u.action, u.bids, u.asks, u.sequence_num) == (
        "update",
        [(62317.89, 0.032355)],
        [(62394.77, 0.0170024)],
        14,
    )


def test_subscriptions_errors_and_channels_not_read_here():
    (subs,) = decode(SUBSCRIPTIONS).events
    assert subs.channels == {"level2": ["BTC-USD"], "market_trades": ["BTC-USD", "ETH-USD"]}
    err = decode(ERROR)
    assert err.sequence_num is None and err.events == [cb.ErrorMessage("failure to subscribe")]
    exchange = decode(
        b'{"type":"error","message":"Failed to subscribe",'
        b'"reason":"GIBBERISH-USD is not a valid product"}'
    )
    assert exchange.events[0].reason == "GIBBERISH-USD is not a valid product"
    candles = decode(CANDLES)  # passed over, but its number counts in the chain
    assert (candles.channel, candles.sequence_num, candles.events) == ("candles", 3, [])


def test_a_message_without_client_id_is_read_too():
    frame = L2_UPDATE.replace(b'"client_id":"",', b"")
    assert decode(frame).events == decode(L2_UPDATE).events


@pytest.mark.parametrize(
    ("frame", "says"),
    [
        (b"{not json", "malformed JSON"),
        (b'{"channel":"l2_data","timestamp":"2024-10-08T09:10:36Z","events":[]}', "sequence_num"),
        (L2_UPDATE.replace(b'"offer"', b'"ask"'), "invalid l2_data"),
        (L2_UPDATE.replace(b'"62317.89"', b'"-1"'), "invalid l2_data"),
        (L2_UPDATE.replace(b'"0.032355"', b'"nan"'), "invalid l2_data"),
        (L2_UPDATE.replace(b'"BTC-USD"', b'"BTCUSD"'), "not a Coinbase product id"),
        (L2_UPDATE.replace(b'"sequence_num":14', b'"sequence_num":-1'), "not a Coinbase"),
        (L2_UPDATE.replace(b"2024-10-08T09:10:36.120390407Z", b"yesterday"), "RFC 3339"),
        (L2_UPDATE.replace(b"2024-10-08T09:10:36", b"1999-10-08T09:10:36"), "venues' years"),
        (MARKET_TRADES.replace(b'"BUY"', b'"B"'), "neither BUY nor SELL"),
        (MARKET_TRADES.replace(b'"000000000"', b'"12a"'), "trade id"),
        (MARKET_TRADES.replace(b'"000000000"', b'"99999999999999999999"'), "trade id"),
        (HEARTBEAT.replace(b'"3049"', b'"x"'), "heartbeat_counter"),
        (b'{"type":"hello"}', "no channel"),
    ],
)
def test_bad_messages_raise_a_frame_error_saying_what_and_where(frame, says):
    with pytest.raises(cb.FrameError, match=says):
        decode(frame)


def test_rfc3339_times_to_ms_truncated_with_zones():
    assert cb.rfc3339_ms("2023-02-09T20:32:50.714964855Z") == 1675974770714
    assert cb.rfc3339_ms("2023-02-09T20:32:50Z") == 1675974770000
    assert cb.rfc3339_ms("2023-02-09T20:32:50.7Z") == 1675974770700
    assert cb.rfc3339_ms("2023-02-09T21:32:50.714+01:00") == 1675974770714
    for bad in ("2023-02-30T00:00:00Z", "2023-02-09T20:32:50", "2023-02-09T20:32:50.Z", ""):
        with pytest.raises(ValueError):
            cb.rfc3339_ms(bad)


# --- REST payloads (§3a's shapes) -------------------------------------------------------------

PRODUCTS = (
    b'{"products":[{"product_id":"BTC-USD","price":"64000.5","price_percentage_change_24h":'
    b'"2.5","volume_24h":"1234.5","quote_increment":"0.01","price_increment":"0.01",'
    b'"status":"online","trading_disabled":false,"product_type":"SPOT","alias_to":["BTC-USDC"]},'
    b'{"product_id":"ETH-BTC","price":"0.05","quote_increment":"0.00001","status":"online",'
    b'"product_type":"SPOT"},'
    b'{"product_id":"OLD-USD","price":"1","status":"delisted","product_type":"SPOT"},'
    b'{"product_id":"BIT-28NOV26-CDE","price":"1","status":"online","product_type":"FUTURE"},'
    b'{"product_id":"ABC-XYZ","price":"1","status":"online","product_type":"SPOT"}],'
    b'"num_products":5}'
)
CANDLES_REST = (
    b'{"candles":[{"start":"1767225660","low":"2","high":"4","open":"3","close":"3.5",'
    b'"volume":"2"},{"start":"1767225600","low":"0.5","high":"3","open":"1","close":"2",'
    b'"volume":"10"}]}'
)
BOOK = (
    b'{"pricebook":{"product_id":"BTC-USD","bids":[{"price":"64000.01","size":"0.5"}],'
    b'"asks":[{"price":"64000.5","size":"1.25"}],"time":"2026-01-01T00:00:01.5Z"},'
    b'"last":"64000.2","mid_market":"64000.255","spread_bps":"0.07","spread_absolute":"0.49"}'
)
RECENT = (
    b'{"trades":[{"trade_id":"102","product_id":"BTC-USD","price":"64000.5","size":"0.1",'
    b'"time":"2026-01-01T00:00:02.000Z","side":"SELL","bid":"","ask":"","exchange":"coinbase"},'
    b'{"trade_id":"101","product_id":"BTC-USD","price":"64000.01","size":"0.2",'
    b'"time":"2026-01-01T00:00:01.000Z","side":"BUY","bid":"","ask":"","exchange":"coinbase"}],'
    b'"best_bid":"64000.01","best_ask":"64000.5"}'
)


def test_time_and_the_listing_of_spot_products_trading():
    body = (
        b'{"iso":"2024-02-27T03:37:14Z","epochSeconds":"1709005034","epochMillis":"1709005034333"}'
    )
    assert cb.parse_time(body) == 1709005034333
    # online spot products whose name maps both ways; the delisted, the future and ABC-XYZ not
    assert cb.parse_products(PRODUCTS) == {"BTCUSD": 0.01, "ETHBTC": 0.00001}
    assert cb.parse_spot_symbols(PRODUCTS, "BTC") == ["ETHBTC"]
    tickers = {t.symbol: t for t in cb.parse_product_tickers(PRODUCTS, 1767225600000)}
    t = tickers["BTCUSD"]
    assert (t.last, t.volume, t.change_pct, t.event_time) == (64000.5, 1234.5, 2.5, 1767225600000)
    assert math.isnan(tickers["ETHBTC"].change_pct) and math.isnan(t.bid)
    assert t.open == pytest.approx(64000.5 / 1.025)


def test_candles_newest_first_become_klines_oldest_first_closed_by_server_time():
    rows = cb.parse_candles(CANDLES_REST, "BTCUSD", "1m", 1767225690000)
    assert [(k.open_time, k.open, k.high, k.low, k.close, k.volume, k.closed) for k in rows] == [
        (1767225600000, 1.0, 3.0, 0.5, 2.0, 10.0, True),
        (1767225660000, 3.0, 4.0, 2.0, 3.5, 2.0, False),  # ends at ...719999, after the time
    ]
    assert isinstance(rows[0], Kline) and rows[0].close_time == 1767225659999
    assert math.isnan(rows[0].quote_volume) and rows[0].trades == -1
    with pytest.raises(cb.PayloadError, match="off its boundary"):
        cb.parse_candles(CANDLES_REST, "BTCUSD", "5m", 1767225690000)
    with pytest.raises(cb.PayloadError, match="two candles"):
        cb.parse_candles(CANDLES_REST.replace(b"1767225660", b"1767225600"), "BTCUSD", "1m", 0)


def test_the_product_book_and_recent_trades():
    book = cb.parse_product_book(BOOK, "BTCUSD")
    assert (book.symbol, book.bids, book.asks) == ("BTCUSD", [(64000.01, 0.5)], [(64000.5, 1.25)])
    assert book.last_update_id == book.event_time == 1767225601500
    with pytest.raises(cb.PayloadError, match="a book of 'BTC-USD'"):
        cb.parse_product_book(BOOK, "ETHUSD")
    trades = cb.parse_market_trades(RECENT, "BTCUSD")
    assert [(t.trade_id, t.side, t.time, t.event_time) for t in trades] == [
        (101, "sell", 1767225601000, 1767225601000),  # BUY is the maker's side
        (102, "buy", 1767225602000, 1767225602000),
    ]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (
            b'{"error":"NOT_FOUND","error_details":"product not found","message":"not found"}',
            "NOT_FOUND",
        ),
        (b'{"error":"UNAUTHORIZED","code":16,"message":"Unauthorized"}', "UNAUTHORIZED"),
        (b'{"code":5,"message":"product not found","details":[]}', "5"),
    ],
)
def test_error_bodies_are_the_venues_error(body, code):
    with pytest.raises(cb.CoinbaseAPIError) as caught:
        cb.parse_candles(body, "BTCUSD", "1m", 0)
    assert caught.value.code == code
    err = cb.api_error(body, 404)
    assert err is not None and err.status == 404 and code in str(err)


def test_a_body_of_another_shape_is_a_payload_error():
    with pytest.raises(cb.PayloadError, match="candles"):
        cb.parse_candles(b'{"rows":[]}', "BTCUSD", "1m", 0)
    with pytest.raises(cb.PayloadError, match="epochMillis"):
        cb.parse_time(b'{"epochMillis":"soon"}')
    assert cb.api_error(b"<html>") is None and cb.api_error(b"{}") is None


def test_one_products_updates_in_one_message_are_one_change_in_order():
    two = L2_UPDATE.replace(
        b'"new_quantity":"0.0170024"}]}]}',
        b'"new_quantity":"0.0170024"}]},{"type":"update","product_id":"ETH-USD","updates":['
        b'{"side":"offer","event_time":"","price_level":"2400.5","new_quantity":"3"}]},'
        b'{"type":"update","product_id":"BTC-USD","updates":[{"side":"bid","event_time":"",'
        b'"price_level":"62317.89","new_quantity":"0"}]}]}',
    )
    btc, eth = decode(two).events
    assert btc.bids == [(62317.89, 0.032355), (62317.89, 0.0)]  # set, then removed
    assert btc.asks == [(62394.77, 0.0170024)] and btc.sequence_num == 14
    assert (eth.symbol, eth.asks) == ("ETHUSD", [(2400.5, 3.0)])
