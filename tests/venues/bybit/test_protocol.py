"""Bybit v5 spot, sans-I/O: names, topics and messages out; frames and REST payloads in, as
Bybit documents them (examples from its docs and from captures, see /work/research/bybit.md)."""

from __future__ import annotations

import math

import msgspec
import pytest

from marketlab.records import BookSnapshot, BookTicker, Kline, Ticker, Trade
from marketlab.venues import bybit

# --- names, intervals, URLs -----------------------------------------------------------------


def test_spot_symbols_are_ours_and_intervals_map_both_ways():
    assert bybit.bybit_symbol("BTCUSDT") == "BTCUSDT"
    assert bybit.bybit_symbol("eth/usdc") == "ETHUSDC"
    assert bybit.symbol_of("SOLUSDT") == "SOLUSDT"
    pairs = {
        "1m": "1",
        "3m": "3",
        "5m": "5",
        "15m": "15",
        "30m": "30",
        "1h": "60",
        "2h": "120",
        "4h": "240",
        "6h": "360",
        "12h": "720",
        "1d": "D",
        "1w": "W",
        "1M": "M",
    }
    for ours, theirs in pairs.items():
        assert bybit.kline_interval(ours) == theirs
        assert bybit.interval_of(theirs) == ours


@pytest.mark.parametrize("missing", ["1s", "8h", "3d"])
def test_an_interval_bybit_lacks_is_refused_by_name(missing):
    with pytest.raises(ValueError, match=f"Bybit has no {missing} candles"):
        bybit.kline_interval(missing)
    with pytest.raises(ValueError, match="no"):
        bybit.VENUE.check_interval(missing)


def test_ws_url_takes_a_bare_base_or_the_full_spot_url():
    assert bybit.check_ws_url("ws://127.0.0.1:9300") == "ws://127.0.0.1:9300/v5/public/spot"
    assert bybit.check_ws_url("ws://127.0.0.1:9300/") == "ws://127.0.0.1:9300/v5/public/spot"
    full = "wss://stream.bybit.com/v5/public/spot"
    assert bybit.check_ws_url(full) == full
    assert bybit.check_ws_url(bybit.DEFAULT_WS_URL) == full
    with pytest.raises(ValueError, match="/v5/public/spot"):
        bybit.check_ws_url("wss://stream.bybit.com/v5/public/linear")
    with pytest.raises(ValueError):
        bybit.check_ws_url("https://stream.bybit.com")
    assert bybit.VENUE.check_rest_url(bybit.DEFAULT_REST_URL) == "https://api.bybit.com"


def test_topics_name_channels_as_bybit_does():
    topics = bybit.topics_for(
        ["BTCUSDT"], ["1m", "1h", "1d"], ["trades", "ticker", "book", "bookTicker", "klines"]
    )
    assert [t.name for t in topics] == [
        "publicTrade.BTCUSDT",
        "tickers.BTCUSDT",
        "orderbook.200.BTCUSDT",
        "orderbook.1.BTCUSDT",
        "kline.1.BTCUSDT",
        "kline.60.BTCUSDT",
        "kline.D.BTCUSDT",
    ]
    assert [t.interval for t in topics[4:]] == ["1m", "1h", "1d"]
    assert topics[2].book_depth == 200 and topics[0].book_depth is None
    assert bybit.parse_topic("orderbook.50.ETHUSDT") == bybit.Topic("orderbook.50", "ETHUSDT")
    with pytest.raises(ValueError, match="no aggTrades channel"):
        bybit.topics_for(["BTCUSDT"], [], ["aggTrades"])
    with pytest.raises(ValueError, match="no 8h candles"):
        bybit.topics_for(["BTCUSDT"], ["8h"], ["klines"])


def test_requests_carry_at_most_ten_args_and_larger_lists_are_split():
    topics = bybit.topics_for([f"C{i}USDT" for i in range(23)], [], ["trades"])
    messages = [msgspec.json.decode(m) for m in bybit.subscribe_messages(topics)]
    assert [len(m["args"]) for m in messages] == [10, 10, 3]
    assert all(m["op"] == "subscribe" for m in messages)
    assert [a for m in messages for a in m["args"]] == [f"publicTrade.C{i}USDT" for i in range(23)]
    assert msgspec.json.decode(bybit.unsubscribe_messages(topics[:2])[0]) == {
        "op": "unsubscribe",
        "args": ["publicTrade.C0USDT", "publicTrade.C1USDT"],
    }
    one = msgspec.json.decode(bybit.subscribe_message(topics[:1], "7"))
    assert one == {"op": "subscribe", "args": ["publicTrade.C0USDT"], "req_id": "7"}
    with pytest.raises(ValueError, match="1 to 10 args"):
        bybit.subscribe_message(topics[:11])
    assert msgspec.json.decode(bybit.ping_message()) == {"op": "ping"}


def test_connections_keep_under_the_args_length_limit():
    topics = [bybit.Topic("orderbook.200", f"S{i:06d}USDT") for i in range(2000)]
    groups = bybit.split_for_connections(topics, 1024)
    assert [t for g in groups for t in g] == topics
    assert all(sum(len(t.name) for t in g) <= 21_000 for g in groups)
    assert all(len(g) <= 1024 for g in groups)
    assert len(bybit.split_for_connections(topics[:30], 10)) == 3


# --- frames ----------------------------------------------------------------------------------

# The spot trade items as captured (no L), in a push shaped as the docs' example.
TRADE = (
    b'{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1760117214060,"data":['
    b'{"i":"2290000000908760214","T":1760117214051,"p":"118067.5","v":"0.000061","S":"Sell",'
    b'"seq":87416325577,"s":"BTCUSDT","BT":false,"RPI":false},'
    b'{"i":"2290000000908760215","T":1760117214051,"p":"118067.6","v":"0.01","S":"Buy",'
    b'"seq":87416325578,"s":"BTCUSDT","BT":false,"RPI":false}]}'
)
TICKER = (
    b'{"topic":"tickers.BTCUSDT","ts":1673853746003,"type":"snapshot","cs":2588407389,"data":'
    b'{"symbol":"BTCUSDT","lastPrice":"21109.77","highPrice24h":"21426.99","lowPrice24h":"20575",'
    b'"prevPrice24h":"20704.93","volume24h":"6780.866843","turnover24h":"141946527.22907118",'
    b'"price24hPcnt":"0.0196","usdIndexPrice":"21120.2400136"}}'
)
BOOK_SNAPSHOT = (
    b'{"topic":"orderbook.50.BTCUSDT","type":"snapshot","ts":1672304484978,"data":'
    b'{"s":"BTCUSDT","b":[["16493.50","0.006"],["16493.00","0.100"]],'
    b'"a":[["16611.00","0.029"],["16612.00","0.213"]],"u":18521288,"seq":7961638724},'
    b'"cts":1672304484976}'
)
BOOK_DELTA = (
    b'{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1687940967466,"data":{"s":"BTCUSDT",'
    b'"b":[["30247.20","30.028"],["30245.40","0.224"],["30242.10","1.593"],["30240.30","1.305"],'
    b'["30240.00","0"]],"a":[["30248.70","0"],["30249.30","0.892"],["30249.50","1.778"],'
    b'["30249.60","0"],["30251.90","2.947"],["30252.20","0.659"],["30252.50","4.591"]],'
    b'"u":177400507,"seq":66544703342},"cts":1687940967464}'
)
BOOK_L1 = (
    b'{"topic":"orderbook.1.BTCUSDT","ts":1748980103101,"type":"snapshot","data":{"s":"BTCUSDT",'
    b'"b":[["106285.8","0.794865"]],"a":[["106285.9","1.269905"]],"u":943951,'
    b'"seq":75829523783},"cts":1748980103098}'
)
KLINE = (
    b'{"topic":"kline.5.BTCUSDT","data":[{"start":1672324800000,"end":1672325099999,'
    b'"interval":"5","open":"16649.5","close":"16677","high":"16677","low":"16608",'
    b'"volume":"2.081","turnover":"34666.4005","confirm":false,"timestamp":1672324988882}],'
    b'"ts":1672324988882,"type":"snapshot"}'
)
KLINE_SPOT = (
    b'{"type": "snapshot", "topic": "kline.1.BTCUSDC", "data": [{"start": 1788791460000, '
    b'"end": 1788791519999, "interval": "1", "open": "79050", "close": "79036.9", '
    b'"high": "79061.3", "low": "79036.9", "volume": "0.773761", "turnover": "61165.4975707", '
    b'"confirm": true, "timestamp": 1788791520154}], "ts": 1788791520154}'
)
CONTROL = [
    b'{"success": true, "ret_msg": "subscribe", "conn_id": "2324d924-aa4d-45b0-a858-7b8be29ab52b",'
    b' "req_id": "10001", "op": "subscribe"}',
    b'{"success":true,"ret_msg":"subscribe","conn_id":"f6b17b77-0","op":"subscribe"}',
    b'{"success": true, "ret_msg": "unsubscribe", "req_id": "unsub", "op": "unsubscribe"}',
    b'{"success": false, "ret_msg": "Invalid symbol :[kline.1.NOPEUSDC]", "conn_id": "c",'
    b' "req_id": "3", "op": "subscribe"}',
    b'{"success": false, "ret_msg": "args size >10", "conn_id": "c", "op": "subscribe"}',
    b'{"success": true, "ret_msg": "pong", "conn_id": "0970e817-0", "op": "ping"}',
    b'{"success": true, "ret_msg": "pong", "conn_id": "c", "req_id": "p1", "op": "ping"}',
    b'{"success": true, "ret_msg": "pong", "conn_id": "c", "op": "pong"}',
]
FRAMES = [TRADE, TICKER, BOOK_SNAPSHOT, BOOK_DELTA, BOOK_L1, KLINE, KLINE_SPOT, *CONTROL]


def test_trades_are_the_takers_side_with_the_digit_ids_as_ints():
    trades = bybit.BybitDecoder().decode(TRADE)
    assert trades == [
        Trade(
            "BTCUSDT", 2290000000908760214, 118067.5, 0.000061, "sell", 1760117214051, 1760117214060
        ),
        Trade("BTCUSDT", 2290000000908760215, 118067.6, 0.01, "buy", 1760117214051, 1760117214060),
    ]


def test_a_trade_id_that_is_no_spot_id_is_a_frame_error():
    linear = TRADE.replace(b'"2290000000908760214"', b'"20f43950-d8dd-5b31-9112-a178eb6023af"')
    with pytest.raises(bybit.FrameError, match="not a spot trade id"):
        bybit.BybitDecoder().decode(linear)
    too_big = TRADE.replace(b'"2290000000908760214"', b'"9223372036854775808"')
    with pytest.raises(bybit.FrameError, match=r"publicTrade\.BTCUSDT"):
        bybit.BybitDecoder().decode(too_big)


def test_a_spot_ticker_has_its_24h_figures_and_no_bid_or_ask():
    (t,) = bybit.BybitDecoder().decode(TICKER)
    assert isinstance(t, Ticker)
    assert (t.symbol, t.event_time, t.last, t.high, t.low, t.open) == (
        "BTCUSDT",
        1673853746003,
        21109.77,
        21426.99,
        20575.0,
        20704.93,
    )
    assert (t.volume, t.quote_volume) == (6780.866843, 141946527.22907118)
    assert t.change == pytest.approx(21109.77 - 20704.93)
    assert t.change_pct == pytest.approx(1.96)
    assert all(math.isnan(v) for v in (t.bid, t.ask, t.bid_qty, t.ask_qty, t.last_qty))
    assert (t.first_trade_id, t.last_trade_id, t.trades) == (-1, -1, -1)
    delta = TICKER.replace(b'"type":"snapshot"', b'"type":"delta"')
    with pytest.raises(bybit.FrameError, match="snapshots only"):
        bybit.BybitDecoder().decode(delta)


def test_book_snapshots_and_deltas_keep_u_seq_and_the_levels():
    d = bybit.BybitDecoder()
    (snap,) = d.decode(BOOK_SNAPSHOT)
    assert snap == bybit.BookMessage(
        "BTCUSDT",
        50,
        "snapshot",
        [(16493.5, 0.006), (16493.0, 0.1)],
        [(16611.0, 0.029), (16612.0, 0.213)],
        18521288,
        7961638724,
        1672304484978,
    )
    (delta,) = d.decode(BOOK_DELTA)
    assert delta.action == "delta" and delta.update_id == 177400507
    assert delta.bids[-1] == (30240.0, 0.0) and delta.asks[0] == (30248.7, 0.0)
    assert len(delta.bids) == 5 and len(delta.asks) == 7
    one_side = BOOK_DELTA.replace(
        b'"b":[["30247.20","30.028"],["30245.40","0.224"],["30242.10","1.593"],'
        b'["30240.30","1.305"],["30240.00","0"]]',
        b'"b":[]',
    )
    (delta,) = d.decode(one_side)
    assert delta.bids == [] and len(delta.asks) == 7  # no change on that side, not a clear


def test_level_one_is_the_best_bid_and_ask():
    assert bybit.BybitDecoder().decode(BOOK_L1) == [
        BookTicker("BTCUSDT", 75829523783, 106285.8, 0.794865, 106285.9, 1.269905)
    ]  # numbered by seq: u starts again at 1 after a restart, seq does not


def test_klines_are_closed_when_bybit_confirms_them():
    (k,) = bybit.BybitDecoder().decode(KLINE)
    assert isinstance(k, Kline)
    assert (k.symbol, k.interval, k.open_time, k.close_time, k.closed, k.event_time) == (
        "BTCUSDT",
        "5m",
        1672324800000,
        1672325099999,
        False,
        1672324988882,
    )
    assert (k.open, k.high, k.low, k.close, k.volume, k.quote_volume) == (
        16649.5,
        16677.0,
        16608.0,
        16677.0,
        2.081,
        34666.4005,
    )
    # Bybit gives no trade count and no taker-buy volumes
    assert (
        k.trades == -1 and math.isnan(k.taker_buy_volume) and math.isnan(k.taker_buy_quote_volume)
    )
    (k,) = bybit.BybitDecoder().decode(KLINE_SPOT)
    assert (k.symbol, k.interval, k.open_time, k.close_time, k.closed) == (
        "BTCUSDC",
        "1m",
        1788791460000,
        1788791519999,
        True,
    )
    assert (k.open, k.high, k.low, k.close, k.volume, k.quote_volume) == (
        79050.0,
        79061.3,
        79036.9,
        79036.9,
        0.773761,
        61165.4975707,
    )


def test_control_answers():
    d = bybit.BybitDecoder()
    answers = [d.decode(f)[0] for f in CONTROL]
    assert answers[0] == bybit.SubscriptionResult("subscribe", True, "subscribe", "10001")
    assert answers[1] == bybit.SubscriptionResult("subscribe", True, "subscribe", None)
    assert answers[2] == bybit.SubscriptionResult("unsubscribe", True, "unsubscribe", "unsub")
    assert answers[3] == bybit.SubscriptionResult(
        "subscribe", False, "Invalid symbol :[kline.1.NOPEUSDC]", "3"
    )
    assert answers[4].success is False and answers[4].ret_msg == "args size >10"
    assert answers[5:] == [bybit.Pong(None), bybit.Pong("p1"), bybit.Pong(None)]


@pytest.mark.parametrize(
    ("frame", "what"),
    [
        (b"Failed to decode incoming data:readObjectStart", "malformed JSON"),
        (b'{"topic":"orderbook.50.BTCUSDT","ts":1672304484978,"data":{}}', "orderbook.50"),
        (b'{"topic":"nope.BTCUSDT","ts":1672304484978,"type":"snapshot","data":[]}', "unknown"),
        (b'{"topic":"publicTrade.BTCUSDT","type":"snapshot","data":[]}', "without data or ts"),
        (TRADE.replace(b'"p":"118067.5"', b'"p":"-1"'), "publicTrade.BTCUSDT"),
        (BOOK_DELTA.replace(b'"30249.30"', b'"nan"'), "orderbook.50.BTCUSDT"),
        (KLINE.replace(b'"interval":"5"', b'"interval":"1"'), "a '1' candle"),
        (TRADE.replace(b'"s":"BTCUSDT"', b'"s":"ETHUSDT"', 1), "a row of ETHUSDT"),
        (b'{"op":"auth","success":true}', "unrecognised"),
        (BOOK_SNAPSHOT.replace(b"orderbook.50.", b"orderbook.rpi."), "unknown topic"),
    ],
)
def test_bad_frames_raise_a_frame_error_saying_what_and_where(frame, what):
    with pytest.raises(bybit.FrameError, match=what):
        bybit.BybitDecoder().decode(frame)


# --- REST payloads ---------------------------------------------------------------------------


def test_server_time_is_read_in_ms():
    body = (
        b'{"retCode":0,"retMsg":"OK","result":{"timeSecond":"1688639403",'
        b'"timeNano":"1688639403423213947"},"retExtInfo":{},"time":1688639403423}'
    )
    assert bybit.parse_time(body) == 1688639403423


def test_instruments_give_the_trading_spot_symbols_with_their_tick():
    body = msgspec.json.encode(
        {
            "retCode": 0,
            "retMsg": "OK",
            "result": {
                "category": "spot",
                "list": [
                    {
                        "symbolId": 1,
                        "symbol": "BTCUSDT",
                        "baseCoin": "BTC",
                        "quoteCoin": "USDT",
                        "innovation": "0",
                        "status": "Trading",
                        "marginTrading": "utaOnly",
                        "lotSizeFilter": {"basePrecision": "0.000001", "minOrderAmt": "5"},
                        "priceFilter": {"tickSize": "0.01"},
                        "riskParameters": {"priceLimitRatioX": "0.01"},
                    },
                    {
                        "symbolId": 2,
                        "symbol": "ETHBTC",
                        "quoteCoin": "BTC",
                        "status": "Trading",
                        "priceFilter": {"tickSize": "0.00001"},
                    },
                ],
            },
            "retExtInfo": {},
            "time": 1767225600000,
        }
    )
    assert bybit.parse_instruments(body) == {"BTCUSDT": 0.01, "ETHBTC": 0.00001}
    assert bybit.parse_spot_symbols(body, "USDT") == ["BTCUSDT"]


def test_rest_klines_come_oldest_first_and_closed_by_server_time():
    body = (
        b'{"retCode":0,"retMsg":"OK","result":{"symbol":"BTCUSDT","category":"spot","list":['
        b'["1670608800000","17071","17073","17027","17055.5","268611","15.74462667"],'
        b'["1670605200000","17071.5","17071.5","17061","17071","4177","0.24469757"],'
        b'["1670601600000","17086.5","17088","16978","17071.5","6356","0.37288112"]]},'
        b'"retExtInfo":{},"time":1672025956592}'
    )
    now = 1670608800000 + 60_000  # inside the newest hour
    rows = bybit.parse_klines(body, "BTCUSDT", "1h", now)
    assert [k.open_time for k in rows] == [1670601600000, 1670605200000, 1670608800000]
    assert [k.closed for k in rows] == [True, True, False]
    assert (rows[0].open, rows[0].high, rows[0].low, rows[0].close) == (
        17086.5,
        17088.0,
        16978.0,
        17071.5,
    )
    assert rows[0].volume == 6356.0 and rows[0].quote_volume == 0.37288112
    assert rows[0].close_time == 1670605199999
    assert all(k.closed for k in bybit.parse_klines(body, "BTCUSDT", "1h", 1670612400000))


def test_rest_orderbook_is_a_snapshot_at_u():
    body = (
        b'{"retCode":0,"retMsg":"OK","result":{"s":"BTCUSDT","a":[["65557.7","16.606555"]],'
        b'"b":[["65485.47","47.081829"]],"ts":1716863719031,"u":230704,"seq":1432604333,'
        b'"cts":1716863718905},"retExtInfo":{},"time":1716863719382}'
    )
    assert bybit.parse_orderbook(body, "BTCUSDT") == BookSnapshot(
        "BTCUSDT", 230704, [(65485.47, 47.081829)], [(65557.7, 16.606555)], 1716863719031
    )


def test_recent_trades_come_oldest_first():
    item = (
        '{{"execId":"{id}","symbol":"BTCUSDT","price":"16618.49","size":"0.00012",'
        '"side":"{side}","time":"1672052955758","isBlockTrade":false,"isRPITrade":true,'
        '"seq":"123456"}}'
    )
    rows = ",".join(
        [
            item.format(id="2100000000007764264", side="Sell"),
            item.format(id="2100000000007764263", side="Buy"),
        ]
    )
    body = (
        f'{{"retCode":0,"retMsg":"OK","result":{{"category":"spot","list":[{rows}]}},'
        '"time":1672052955760}'
    )
    trades = bybit.parse_recent_trades(body.encode(), "BTCUSDT")
    assert [(t.trade_id, t.side) for t in trades] == [
        (2100000000007764263, "buy"),
        (2100000000007764264, "sell"),
    ]
    assert trades[0].price == 16618.49 and trades[0].time == 1672052955758


def test_rest_tickers_have_the_best_bid_and_ask():
    body = msgspec.json.encode(
        {
            "retCode": 0,
            "retMsg": "OK",
            "result": {
                "category": "spot",
                "list": [
                    {
                        "symbol": "BTCUSDT",
                        "bid1Price": "20517.96",
                        "bid1Size": "2",
                        "ask1Price": "20527.77",
                        "ask1Size": "1.862172",
                        "lastPrice": "20533.13",
                        "prevPrice24h": "20393.48",
                        "price24hPcnt": "0.0068",
                        "highPrice24h": "21128.12",
                        "lowPrice24h": "20318.89",
                        "turnover24h": "243765620.65899866",
                        "volume24h": "11801.27771",
                        "usdIndexPrice": "20784.12009279",
                    }
                ],
            },
            "retExtInfo": {},
            "time": 1673859087947,
        }
    )
    (t,) = bybit.parse_tickers(body)
    assert (t.symbol, t.event_time, t.last, t.bid, t.bid_qty, t.ask, t.ask_qty) == (
        "BTCUSDT",
        1673859087947,
        20533.13,
        20517.96,
        2.0,
        20527.77,
        1.862172,
    )
    assert t.change_pct == pytest.approx(0.68)


def test_an_error_answer_is_the_venues_error_and_a_bad_body_a_payload_error():
    body = (
        b'{"retCode":10001,"retMsg":"params error: symbol invalid","result":{"category":"",'
        b'"list":[],"nextPageCursor":""},"retExtInfo":{},"time":1767225600000}'
    )
    with pytest.raises(bybit.BybitAPIError, match="10001: params error: symbol invalid") as err:
        bybit.parse_orderbook(body, "NOPEUSDT")
    assert err.value.code == 10001
    with pytest.raises(bybit.PayloadError, match="/v5/market/kline"):
        bybit.parse_klines(b'{"retCode":0,"result":{"list":[["x"]]}}', "BTCUSDT", "1m", 0)
    with pytest.raises(bybit.PayloadError):
        bybit.parse_time(b"<html>403 Forbidden</html>")
    empty = (
        b'{"retCode":0,"retMsg":"OK","result":{"category":"spot","list":[]},"time":1767225600000}'
    )
    assert bybit.parse_instruments(empty) == {}  # an unknown symbol on spot: an empty list
