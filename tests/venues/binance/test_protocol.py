"""The Binance adapter on recorded frames and payloads (no sockets)."""

import contextlib
import itertools
import json

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketlab.records import (
    AggTrade,
    BookDelta,
    BookSnapshot,
    BookTicker,
    Kline,
    MiniTicker,
    SymbolInfo,
    Ticker,
    Trade,
)
from marketlab.venues import binance as bn

TRADE = {
    "e": "trade",
    "E": 1767225603000,
    "s": "BTCUSDT",
    "t": 1000012,
    "p": "65000.10",
    "q": "0.01200",
    "T": 1767225602991,
    "m": True,
    "M": True,
}
AGG = {
    "e": "aggTrade",
    "E": 1767225603000,
    "s": "BTCUSDT",
    "a": 77,
    "p": "65000.10",
    "q": "0.5",
    "f": 100,
    "l": 105,
    "T": 1767225602990,
    "m": False,
    "M": True,
}
KLINE = {
    "e": "kline",
    "E": 1767225662000,
    "s": "BTCUSDT",
    "k": {
        "t": 1767225600000,
        "T": 1767225659999,
        "s": "BTCUSDT",
        "i": "1m",
        "f": 1000001,
        "L": 1000040,
        "o": "65000.00",
        "c": "65001.20",
        "h": "65003.00",
        "l": "64998.50",
        "v": "1.23400",
        "n": 40,
        "x": True,
        "q": "80210.55",
        "V": "0.61000",
        "Q": "39650.12",
        "B": "0",
    },
}
TICKER = {
    "e": "24hrTicker",
    "E": 1767225603000,
    "s": "BTCUSDT",
    "p": "120.00",
    "P": "0.185",
    "w": "64950.3",
    "x": "64880.00",
    "c": "65000.00",
    "Q": "0.010",
    "b": "64999.99",
    "B": "1.2",
    "a": "65000.01",
    "A": "0.8",
    "o": "64880.00",
    "h": "65400.00",
    "l": "64500.00",
    "v": "12345.6",
    "q": "801234567.8",
    "O": 1767139203000,
    "C": 1767225603000,
    "F": 1,
    "L": 999,
    "n": 999,
}
MINI = {
    "e": "24hrMiniTicker",
    "E": 1767225603000,
    "s": "BTCUSDT",
    "c": "65000.00",
    "o": "64880.00",
    "h": "65400.00",
    "l": "64500.00",
    "v": "12345.6",
    "q": "801234567.8",
}
BOOK_TICKER = {
    "u": 400900217,
    "s": "BTCUSDT",
    "b": "64999.99",
    "B": "1.2",
    "a": "65000.01",
    "A": "0.8",
}
PARTIAL = {
    "lastUpdateId": 160,
    "bids": [["64999.99", "1.2"]],
    "asks": [["65000.01", "0.8"], ["65000.02", "3"]],
}
DIFF = {
    "e": "depthUpdate",
    "E": 1767225603000,
    "s": "BTCUSDT",
    "U": 157,
    "u": 160,
    "b": [["64999.99", "0.0"], ["64999.50", "2.5"]],
    "a": [["65000.01", "1.0"]],
}

EXPECTED = {
    "btcusdt@trade": (
        TRADE,
        Trade("BTCUSDT", 1000012, 65000.10, 0.012, "sell", 1767225602991, 1767225603000),
    ),
    "btcusdt@aggTrade": (
        AGG,
        AggTrade("BTCUSDT", 77, 65000.10, 0.5, "buy", 100, 105, 1767225602990, 1767225603000),
    ),
    "btcusdt@kline_1m": (
        KLINE,
        Kline(
            "BTCUSDT",
            "1m",
            1767225600000,
            65000.0,
            65003.0,
            64998.5,
            65001.2,
            1.234,
            1767225659999,
            80210.55,
            40,
            0.61,
            39650.12,
            True,
            1767225662000,
        ),
    ),
    "btcusdt@ticker": (
        TICKER,
        Ticker(
            "BTCUSDT",
            1767225603000,
            65000.0,
            0.01,
            64999.99,
            1.2,
            65000.01,
            0.8,
            64880.0,
            65400.0,
            64500.0,
            12345.6,
            801234567.8,
            120.0,
            0.185,
            64950.3,
            64880.0,
            1767139203000,
            1767225603000,
            1,
            999,
            999,
        ),
    ),
    "btcusdt@miniTicker": (
        MINI,
        MiniTicker(
            "BTCUSDT", 1767225603000, 65000.0, 64880.0, 65400.0, 64500.0, 12345.6, 801234567.8
        ),
    ),
    "btcusdt@bookTicker": (
        BOOK_TICKER,
        BookTicker("BTCUSDT", 400900217, 64999.99, 1.2, 65000.01, 0.8),
    ),
    "btcusdt@depth": (
        DIFF,
        BookDelta(
            "BTCUSDT", 157, 160, [(64999.99, 0.0), (64999.5, 2.5)], [(65000.01, 1.0)], 1767225603000
        ),
    ),
    "btcusdt@depth@100ms": (
        DIFF,
        BookDelta(
            "BTCUSDT", 157, 160, [(64999.99, 0.0), (64999.5, 2.5)], [(65000.01, 1.0)], 1767225603000
        ),
    ),
    "btcusdt@depth5": (
        PARTIAL,
        BookSnapshot("BTCUSDT", 160, [(64999.99, 1.2)], [(65000.01, 0.8), (65000.02, 3.0)]),
    ),
    "btcusdt@depth20@100ms": (
        PARTIAL,
        BookSnapshot("BTCUSDT", 160, [(64999.99, 1.2)], [(65000.01, 0.8), (65000.02, 3.0)]),
    ),
}


@pytest.mark.parametrize("stream", list(EXPECTED))
def test_combined_frames_become_records(stream):
    payload, record = EXPECTED[stream]
    frame = json.dumps({"stream": stream, "data": payload}).encode()
    assert bn.StreamDecoder().decode(frame) == [record]


@pytest.mark.parametrize("stream", list(EXPECTED))
def test_raw_frames_become_the_same_records(stream):
    payload, record = EXPECTED[stream]
    decoder = bn.StreamDecoder()
    # partial depth carries no symbol: the connection's stream name supplies it
    hint = stream if "lastUpdateId" in payload else None
    assert decoder.decode(json.dumps(payload), stream=hint) == [record]
    assert decoder.decode(json.dumps(payload).encode(), stream=stream) == [record]


def test_raw_partial_depth_without_a_stream_name_is_a_clear_error():
    with pytest.raises(bn.FrameError, match="no symbol"):
        bn.StreamDecoder().decode(json.dumps(PARTIAL))


def test_control_answers_are_events_not_records():
    d = bn.StreamDecoder()
    assert d.decode(b'{"result":null,"id":1}') == [bn.SubscriptionResult(1, None)]
    assert d.decode(b'{"result":["btcusdt@trade"],"id":"a7"}') == [
        bn.SubscriptionResult("a7", ["btcusdt@trade"])
    ]
    assert d.decode(b'{"code":2,"msg":"Invalid request","id":3}') == [
        bn.RequestError(3, 2, "Invalid request")
    ]


@pytest.mark.parametrize(
    "frame",
    [
        b'{"e":"serverShutdown","E":1767225603000}',
        b'{"stream":"serverShutdown","data":{"e":"serverShutdown","E":1767225603000}}',
        b'{"stream":"btcusdt@trade","data":{"e":"serverShutdown","E":1767225603000}}',
    ],
)
def test_server_shutdown_is_recognised_however_it_is_wrapped(frame):
    assert bn.StreamDecoder().decode(frame) == [bn.ServerShutdown(1767225603000)]


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (b'{"stream":"btcusdt@trade","data":{"e":"trade","E":17', "malformed JSON"),
        (b"\x00\x01 garbage", "malformed JSON"),
        (b"[1,2,3]", "not a Binance message"),
        (
            json.dumps({"stream": "btcusdt@trade", "data": {**TRADE, "p": "abc"}}).encode(),
            r"invalid payload.*\$\.p",
        ),
        (
            json.dumps(
                {"stream": "btcusdt@trade", "data": {k: v for k, v in TRADE.items() if k != "t"}}
            ).encode(),
            "missing required field `t`",
        ),
        (json.dumps({"e": "surprise", "E": 1}).encode(), "unknown event type 'surprise'"),
        (b'{"stream":"btcusdt@trade"}', "without 'data'"),
        (b'{"hello":"world"}', "unrecognised frame"),
    ],
)
def test_bad_frames_raise_typed_errors_that_say_what(frame, message):
    with pytest.raises(bn.FrameError, match=message) as info:
        bn.StreamDecoder().decode(frame)
    assert not isinstance(info.value, KeyError)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=2), children, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_ever_raise_frame_errors(frame):
    with contextlib.suppress(bn.FrameError):
        bn.StreamDecoder().decode(frame)


@settings(max_examples=300)
@given(
    st.sampled_from(list(EXPECTED)),
    st.dictionaries(st.sampled_from("eEstpqTmkUubaABlLcoh"), JSON_VALUES, max_size=4),
)
def test_mutated_payloads_only_ever_raise_frame_errors(stream, junk):
    payload = {**EXPECTED[stream][0], **junk}
    for frame in (json.dumps({"stream": stream, "data": payload}), json.dumps(payload)):
        with contextlib.suppress(bn.FrameError):
            bn.StreamDecoder().decode(frame, stream=stream)


def test_decoder_survives_a_bad_frame_between_good_ones():
    d = bn.StreamDecoder()
    good = json.dumps({"stream": "btcusdt@trade", "data": TRADE})
    assert d.decode(good)
    with pytest.raises(bn.FrameError):
        d.decode(good[:-5])
    assert d.decode(good) == [EXPECTED["btcusdt@trade"][1]]


# --- stream names, URLs, messages -----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "name"),
    [
        (("BTCUSDT", "trade"), {}, "btcusdt@trade"),
        (("ethusdt", "aggTrade"), {}, "ethusdt@aggTrade"),
        (("BTCUSDT", "kline"), {"interval": "1M"}, "btcusdt@kline_1M"),
        (("BTCUSDT", "ticker"), {}, "btcusdt@ticker"),
        (("BTCUSDT", "miniTicker"), {}, "btcusdt@miniTicker"),
        (("BTCUSDT", "bookTicker"), {}, "btcusdt@bookTicker"),
        (("BTCUSDT", "depth"), {}, "btcusdt@depth"),
        (("BTCUSDT", "depth"), {"fast": True}, "btcusdt@depth@100ms"),
        (("BTCUSDT", "depth"), {"levels": 10}, "btcusdt@depth10"),
        (("BTCUSDT", "depth"), {"levels": 20, "fast": True}, "btcusdt@depth20@100ms"),
    ],
)
def test_stream_names_build_and_parse_back(args, kwargs, name):
    assert bn.stream_name(*args, **kwargs) == name
    assert bn.parse_stream(name).name == name


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("BTCUSDT", "kline"), {}, "needs an interval"),
        (("BTCUSDT", "kline"), {"interval": "2m"}, "invalid interval"),
        (("BTCUSDT", "depth"), {"levels": 7}, "levels must be one of"),
        (("BTCUSDT", "candles"), {}, "unknown channel"),
        (("BTC USDT", "trade"), {}, "invalid symbol"),
    ],
)
def test_bad_stream_requests_say_why(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        bn.stream_name(*args, **kwargs)


@pytest.mark.parametrize(
    "name",
    [
        "btcusdt",
        "btcusdt@",
        "BTCUSDT@trade",
        "btcusdt@kline_2m",
        "btcusdt@depth7",
        "btcusdt@trade@100ms",
        "btcusdt@depth@250ms",
        "0",
    ],
)
def test_parse_stream_rejects_non_streams(name):
    with pytest.raises(bn.UnknownStreamError):
        bn.parse_stream(name)


def test_urls():
    assert bn.combined_stream_url(
        "wss://stream.binance.com:9443/", ["btcusdt@trade", "btcusdt@depth@100ms"]
    ) == ("wss://stream.binance.com:9443/stream?streams=btcusdt@trade/btcusdt@depth@100ms")
    assert (
        bn.raw_stream_url("ws://127.0.0.1:9100", "btcusdt@trade")
        == "ws://127.0.0.1:9100/ws/btcusdt@trade"
    )
    assert bn.raw_stream_url("ws://127.0.0.1:9100") == "ws://127.0.0.1:9100/ws"
    with pytest.raises(ValueError, match="1025 streams exceed"):
        bn.combined_stream_url("ws://x", [f"s{i}usdt@trade" for i in range(1025)])


def test_streams_are_split_into_connections_of_at_most_1024():
    streams = [f"sym{i}usdt@trade" for i in range(2500)] + ["sym0usdt@trade"]
    groups = bn.split_streams(streams)
    assert [len(g) for g in groups] == [1024, 1024, 452]
    assert [s for g in groups for s in g] == streams[:2500]
    with pytest.raises(ValueError):
        bn.split_streams(streams, per_connection=2000)


def test_subscription_messages():
    assert json.loads(bn.subscribe_message(["btcusdt@trade"], 1)) == {
        "method": "SUBSCRIBE",
        "params": ["btcusdt@trade"],
        "id": 1,
    }
    assert json.loads(bn.unsubscribe_message(["a@trade"], 2)) == {
        "method": "UNSUBSCRIBE",
        "params": ["a@trade"],
        "id": 2,
    }
    assert json.loads(bn.list_subscriptions_message(3)) == {"method": "LIST_SUBSCRIPTIONS", "id": 3}


@given(st.lists(st.floats(min_value=0, max_value=10), min_size=1, max_size=50))
def test_pacer_never_allows_more_than_its_rate(gaps):
    pacer = bn.MessagePacer(per_second=2)
    now, sent = 0.0, []
    for gap in gaps:
        now += gap
        now += pacer.delay(now)
        pacer.sent(now)
        sent.append(now)
    for earlier, later in itertools.pairwise(sent):
        assert later - earlier >= 0.5 - 1e-9


def test_pacer_refuses_rates_binance_would_drop():
    with pytest.raises(ValueError):
        bn.MessagePacer(per_second=6)


# --- REST payloads -----------------------------------------------------------------------


def test_rest_klines_mark_the_open_candle():
    rows = [
        [
            1767225600000,
            "65000.0",
            "65010.0",
            "64990.0",
            "65005.0",
            "1.5",
            1767225659999,
            "97500.0",
            12,
            "0.7",
            "45500.0",
            "0",
        ],
        [
            1767225660000,
            "65005.0",
            "65006.0",
            "65001.0",
            "65002.0",
            "0.2",
            1767225719999,
            "13000.4",
            3,
            "0.1",
            "6500.2",
            "0",
        ],
    ]
    klines = bn.parse_klines(json.dumps(rows), "BTCUSDT", "1m", server_time=1767225700000)
    assert [k.closed for k in klines] == [True, False]
    assert klines[0] == Kline(
        "BTCUSDT",
        "1m",
        1767225600000,
        65000.0,
        65010.0,
        64990.0,
        65005.0,
        1.5,
        1767225659999,
        97500.0,
        12,
        0.7,
        45500.0,
        True,
    )
    assert bn.parse_klines(rows, "BTCUSDT", "1m", server_time=1767225720000)[1].closed


def test_rest_payloads_with_the_wrong_shape_raise_payload_errors():
    with pytest.raises(bn.PayloadError, match="klines for BTCUSDT 1m"):
        bn.parse_klines('[[1, "x"]]', "BTCUSDT", "1m", server_time=0)
    with pytest.raises(bn.PayloadError, match="depth"):
        bn.parse_depth({"bids": []}, "BTCUSDT")


def test_rest_depth_ticker_and_exchange_info():
    snap = bn.parse_depth(
        {"lastUpdateId": 9, "bids": [["1.5", "2"]], "asks": [["1.6", "3"]]}, "btcusdt"
    )
    assert snap == BookSnapshot("BTCUSDT", 9, [(1.5, 2.0)], [(1.6, 3.0)])
    rest_ticker = {
        "symbol": "BTCUSDT",
        "priceChange": "120.00",
        "priceChangePercent": "0.185",
        "weightedAvgPrice": "64950.3",
        "prevClosePrice": "64880.00",
        "lastPrice": "65000.00",
        "lastQty": "0.010",
        "bidPrice": "64999.99",
        "bidQty": "1.2",
        "askPrice": "65000.01",
        "askQty": "0.8",
        "openPrice": "64880.00",
        "highPrice": "65400.00",
        "lowPrice": "64500.00",
        "volume": "12345.6",
        "quoteVolume": "801234567.8",
        "openTime": 1767139203000,
        "closeTime": 1767225603000,
        "firstId": 1,
        "lastId": 999,
        "count": 999,
    }
    assert bn.parse_ticker_24hr(rest_ticker) == [EXPECTED["btcusdt@ticker"][1]]
    assert (
        bn.parse_ticker_24hr(json.dumps([rest_ticker, rest_ticker]))
        == [EXPECTED["btcusdt@ticker"][1]] * 2
    )
    info = {
        "symbols": [
            {
                "symbol": "BTCUSDT",
                "status": "TRADING",
                "baseAsset": "BTC",
                "quoteAsset": "USDT",
                "filters": [
                    {"filterType": "PRICE_FILTER", "tickSize": "0.01", "minPrice": "0.01"},
                    {"filterType": "LOT_SIZE", "stepSize": "0.00001", "minQty": "0.00001"},
                    {"filterType": "NOTIONAL", "minNotional": "5.0"},
                ],
            }
        ]
    }
    assert bn.parse_exchange_info(json.dumps(info)) == [
        SymbolInfo("BTCUSDT", "TRADING", "BTC", "USDT", 0.01, 0.00001, 0.00001, 5.0)
    ]


def test_error_bodies_raise_api_errors():
    with pytest.raises(bn.BinanceAPIError, match="-1121: Invalid symbol") as info:
        bn.raise_for_error(b'{"code":-1121,"msg":"Invalid symbol."}', status=400)
    assert info.value.code == -1121 and info.value.status == 400
    bn.raise_for_error(b'{"lastUpdateId": 1, "bids": [], "asks": []}')  # not an error: no raise
    bn.raise_for_error(msgspec.json.encode([1, 2]))
