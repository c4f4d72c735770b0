"""The venues' decoders of frames and REST bodies, fed mutated and hostile input: each either
gives records that keep the numbers' rules or raises its own documented error (a bad frame, a
bad payload, the venue's error answer), never anything else."""

from __future__ import annotations

import math
from typing import Any

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from marketlab.venues import binance as bn
from marketlab.venues import okx
from marketlab.venues.binance import payloads as bn_payloads
from marketlab.venues.errors import FrameError, PayloadError
from marketlab.venues.okx import payloads as okx_payloads
from tests.fuzzing import fuzz, mutated

TS = "1767225600000"


def _okx(channel: str, data: list[Any], **extra: Any) -> bytes:
    push = {"arg": {"channel": channel, "instId": "BTC-USDT"}, "data": data, **extra}
    return msgspec.json.encode(push)


OKX_FRAMES = [
    _okx(
        "tickers",
        [
            {
                "instType": "SPOT",
                "instId": "BTC-USDT",
                "last": "100",
                "lastSz": "0.5",
                "askPx": "101",
                "askSz": "2",
                "bidPx": "99",
                "bidSz": "3",
                "open24h": "80",
                "high24h": "120",
                "low24h": "70",
                "volCcy24h": "5000",
                "vol24h": "50",
                "ts": TS,
            }
        ],
    ),
    _okx(
        "trades",
        [
            {
                "instId": "BTC-USDT",
                "tradeId": "7",
                "px": "100.5",
                "sz": "0.1",
                "side": "sell",
                "ts": TS,
                "count": "1",
            }
        ],
    ),
    _okx(
        "bbo-tbt",
        [
            {
                "asks": [["101", "2", "0", "1"]],
                "bids": [["99", "3", "0", "4"]],
                "ts": TS,
                "seqId": 42,
            }
        ],
    ),
    _okx(
        "books",
        [
            {
                "asks": [["101.0", "2", "0", "1"]],
                "bids": [["99", "1", "0", "2"]],
                "ts": TS,
                "seqId": 9,
                "prevSeqId": 8,
            }
        ],
        action="update",
    ),
    _okx("candle1m", [[TS, "1", "3", "0.5", "2", "10", "25", "25", "1"]]),
    b'{"event":"error","code":"60018","msg":"Wrong URL","connId":"a"}',
    b'{"event":"notice","code":"64008","msg":"upgrade","connId":"a"}',
]
HOSTILE = ["nan", "NaN", "inf", "-1", "1e400", "9223372036854775808", "-0", "", "x", "5"]


def _lawful(record: Any) -> None:
    """A record's numbers by the rules, checked by hand (see marketlab.numbers)."""
    if not isinstance(record, msgspec.Struct):
        return
    for name, value in msgspec.structs.asdict(record).items():
        if isinstance(value, float) and name not in ("change", "change_pct"):
            assert math.isnan(value) or 0.0 <= value < math.inf, (name, value)  # NaN: "unknown"
        elif isinstance(value, int) and not isinstance(value, bool):
            assert -1 <= value <= 2**63 - 1, (name, value)
            if name.endswith("time") and value != -1:
                assert 1_262_304_000_000 <= value <= 4_102_444_800_000, (name, value)


@fuzz(2)
@given(st.sampled_from(OKX_FRAMES).flatmap(mutated))
def test_okx_frames_give_lawful_records_or_a_frame_error(frame):
    try:
        events = okx.OkxDecoder().decode(frame)
    except FrameError:
        return
    for event in events:
        _lawful(event)
        if isinstance(event, okx.BookMessage):
            for price, size in [*event.bids, *event.asks]:
                assert 0.0 <= float(price) < math.inf and 0.0 <= float(size) < math.inf


@fuzz()
@given(st.integers(0, 4), st.sampled_from(HOSTILE), st.data())
def test_a_hostile_okx_number_is_a_frame_error(which, value, data):
    frames = [
        _okx(
            "trades",
            [
                {
                    "instId": "BTC-USDT",
                    "tradeId": "7",
                    "px": value,
                    "sz": "1",
                    "side": "buy",
                    "ts": TS,
                }
            ],
        ),
        _okx(
            "trades",
            [
                {
                    "instId": "BTC-USDT",
                    "tradeId": value,
                    "px": "1",
                    "sz": "1",
                    "side": "buy",
                    "ts": TS,
                }
            ],
        ),
        _okx(
            "books",
            [{"asks": [[value, "2", "0", "1"]], "bids": [], "ts": TS, "seqId": 9, "prevSeqId": 8}],
            action="update",
        ),
        _okx(
            "books",
            [{"asks": [], "bids": [["1", value, "0", "1"]], "ts": TS, "seqId": 9, "prevSeqId": 8}],
            action="update",
        ),
        _okx("candle1m", [[TS, "1", value, "0.5", "2", "10", "25", "25", "1"]]),
    ]
    frame = frames[which]
    if value in ("-0", "5") or (value == "9223372036854775808" and which != 1):
        return  # lawful here (a zero; five; a large finite amount)
    try:
        okx.OkxDecoder().decode(frame)
    except FrameError:
        return
    raise AssertionError(f"{value!r} taken: {frame!r}")


REST_BODIES: list[tuple[Any, bytes]] = [
    (
        lambda b: bn_payloads.parse_klines(b, "BTCUSDT", "1m", 2 * 10**12),
        b'[[1767225600000,"1.0","2.0","0.5","1.5","10.0",1767225659999,"15.0",7,"5.0","7.5","0"]]',
    ),
    (
        lambda b: bn_payloads.parse_depth(b, "BTCUSDT"),
        b'{"lastUpdateId":1027024,"bids":[["4.00000000","431.00000000"]],'
        b'"asks":[["4.00000200","12.00000000"]]}',
    ),
    (
        lambda b: bn_payloads.parse_trades(b, "BTCUSDT"),
        b'[{"id":28457,"price":"4.00000100","qty":"12.00000000","quoteQty":"48.000012",'
        b'"time":1767225600000,"isBuyerMaker":true,"isBestMatch":true}]',
    ),
    (
        bn_payloads.parse_ticker_24hr,
        b'{"symbol":"BNBBTC","priceChange":"-94.99999800","priceChangePercent":"-95.960",'
        b'"weightedAvgPrice":"0.29628482","prevClosePrice":"0.10002000","lastPrice":"4.00000200",'
        b'"lastQty":"200.00000000","bidPrice":"4.00000000","bidQty":"100.00000000",'
        b'"askPrice":"4.00000200","askQty":"100.00000000","openPrice":"99.00000000",'
        b'"highPrice":"100.00000000","lowPrice":"0.10000000","volume":"8913.30000000",'
        b'"quoteVolume":"15.30000000","openTime":1767139200000,"closeTime":1767225600000,'
        b'"firstId":28385,"lastId":28460,"count":76}',
    ),
    (
        bn_payloads.parse_exchange_info,
        b'{"symbols":[{"symbol":"ETHBTC","status":"TRADING","baseAsset":"ETH","quoteAsset":"BTC",'
        b'"filters":[{"filterType":"PRICE_FILTER","tickSize":"0.00001"}]}]}',
    ),
    (bn_payloads.raise_for_error, b'{"code":-1121,"msg":"Invalid symbol."}'),
    (bn_payloads.parse_server_time, b'{"serverTime":1767225600000}'),
    (
        lambda b: okx_payloads.parse_candles(b, "BTCUSDT", "1m"),
        b'{"code":"0","msg":"","data":[["1767225600000","1","3","0.5","2","10","25","25","1"]]}',
    ),
    (
        lambda b: okx_payloads.parse_books(b, "BTCUSDT"),
        b'{"code":"0","msg":"","data":[{"asks":[["41006.8","0.6","0","1"]],'
        b'"bids":[["41006.3","0.3","0","1"]],"ts":"1767225600000"}]}',
    ),
    (
        okx_payloads.parse_tickers,
        b'{"code":"0","msg":"","data":[{"instId":"BTC-USDT","last":"100","lastSz":"0.5",'
        b'"askPx":"101","askSz":"2","bidPx":"99","bidSz":"3","open24h":"80","high24h":"120",'
        b'"low24h":"70","volCcy24h":"5000","vol24h":"50","ts":"1767225600000"}]}',
    ),
    (
        lambda b: okx_payloads.parse_history_trades(b, "BTCUSDT"),
        b'{"code":"0","msg":"","data":[{"instId":"BTC-USDT","side":"sell","sz":"0.1","px":"100",'
        b'"tradeId":"130639474","ts":"1767225600000"}]}',
    ),
    (
        okx_payloads.parse_instruments,
        b'{"code":"0","msg":"","data":[{"instId":"BTC-USDT","tickSz":"0.1","quoteCcy":"USDT"}]}',
    ),
    (okx_payloads.parse_time, b'{"code":"0","msg":"","data":[{"ts":"1767225600000"}]}'),
]
DOCUMENTED = (PayloadError, bn.BinanceAPIError, okx.OkxAPIError)


@fuzz(3)
@given(
    st.sampled_from(range(len(REST_BODIES))).flatmap(
        lambda i: (
            st.tuples(st.just(i), mutated(REST_BODIES[i][1]))
            | st.tuples(st.just(i), st.just(REST_BODIES[i][1]))
        )
    )
)
def test_rest_bodies_give_lawful_records_or_a_payload_error(case):
    which, body = case
    parse = REST_BODIES[which][0]
    try:
        out = parse(body)
    except DOCUMENTED:
        return
    for record in out if isinstance(out, list) else [out]:
        _lawful(record)
        for side in ("bids", "asks"):
            for price, qty in getattr(record, side, []):
                assert 0.0 <= price < math.inf and 0.0 <= qty < math.inf
