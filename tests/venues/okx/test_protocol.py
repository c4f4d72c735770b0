"""OKX v5 adapter and book, sans-I/O: frames and payloads in, records and actions out."""

from __future__ import annotations

import contextlib
import math
import zlib

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketlab.records import BookTicker, Kline, Ticker, Trade
from marketlab.venues import okx


def signed_crc(text: str) -> int:
    value = zlib.crc32(text.encode())
    return value - 2**32 if value >= 2**31 else value


def test_names_map_both_ways():
    assert okx.inst_id("BTCUSDT") == "BTC-USDT"
    assert okx.inst_id("eth/btc") == "ETH-BTC"
    assert okx.inst_id("SOL-USDC") == "SOL-USDC"
    assert okx.symbol_of("DOGE-USDT") == "DOGEUSDT"
    assert [okx.bar(iv) for iv in ("1m", "1h", "4h", "1d", "1w", "1M")] == [
        "1m",
        "1H",
        "4H",
        "1Dutc",
        "1Wutc",
        "1Mutc",
    ]
    assert okx.interval_of_bar("1Dutc") == "1d"
    assert okx.business_url("ws://127.0.0.1:1/ws/v5/public") == "ws://127.0.0.1:1/ws/v5/business"
    with pytest.raises(ValueError, match="no 1s candles"):
        okx.bar("1s")
    with pytest.raises(ValueError, match="quote currency"):
        okx.inst_id("FOOBAR")
    with pytest.raises(ValueError, match="no aggTrades"):
        okx.topics_for(["BTCUSDT"], ["1m"], ["aggTrades"])


def test_subscribe_messages_name_channel_and_instrument():
    topics = okx.topics_for(["BTCUSDT"], ["1m", "1h"], ["ticker", "book", "klines"])
    assert [t.channel for t in topics] == ["tickers", "books", "candle1m", "candle1H"]
    assert [t.business for t in topics] == [False, False, True, True]
    msg = msgspec.json.decode(okx.subscribe_message(topics[:2]))
    assert msg == {
        "op": "subscribe",
        "args": [
            {"channel": "tickers", "instId": "BTC-USDT"},
            {"channel": "books", "instId": "BTC-USDT"},
        ],
    }
    assert msgspec.json.decode(okx.unsubscribe_message(topics[1:2]))["op"] == "unsubscribe"


def test_checksum_interleaves_bid_and_ask_levels_with_the_exact_strings():
    bids = [("3366.1", "7.0"), ("3366", "6")]
    asks = [("3366.8", "9"), ("3368", "8"), ("3372", "8")]
    assert okx.book_checksum(bids, asks) == signed_crc("3366.1:7.0:3366.8:9:3366:6:3368:8:3372:8")
    # only the top 25 levels of each side count
    many = [(str(100 - i), "1") for i in range(30)]
    expected = ":".join(f"{100 - i}:1" for i in range(25))
    assert okx.book_checksum(many, []) == signed_crc(expected)


def frame(channel: str, data: list, **extra) -> bytes:
    return msgspec.json.encode(
        {"arg": {"channel": channel, "instId": "BTC-USDT"}, "data": data, **extra}
    )


def test_every_channel_decodes_to_the_common_records():
    d = okx.OkxDecoder()
    (t,) = d.decode(
        frame(
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
                    "sodUtc0": "1",
                    "sodUtc8": "1",
                    "ts": "1700000000000",
                }
            ],
        )
    )
    assert (
        isinstance(t, Ticker) and t.symbol == "BTCUSDT" and (t.last, t.bid, t.ask) == (100, 99, 101)
    )
    assert t.change == 20 and t.change_pct == 25 and (t.volume, t.quote_volume) == (50, 5000)
    assert t.weighted_avg == 100 and math.isnan(t.prev_close) and t.trades == -1
    trades = d.decode(
        frame(
            "trades",
            [
                {
                    "instId": "BTC-USDT",
                    "tradeId": "7",
                    "px": "100.5",
                    "sz": "0.1",
                    "side": "sell",
                    "ts": "1700000000001",
                    "count": "1",
                }
            ],
        )
    )
    assert trades == [Trade("BTCUSDT", 7, 100.5, 0.1, "sell", 1700000000001, 1700000000001)]
    (bbo,) = d.decode(
        frame(
            "bbo-tbt",
            [
                {
                    "asks": [["101", "2", "0", "1"]],
                    "bids": [["99", "3", "0", "4"]],
                    "ts": "1767225600005",
                    "seqId": 42,
                }
            ],
        )
    )
    assert bbo == BookTicker("BTCUSDT", 42, 99.0, 3.0, 101.0, 2.0)
    (book,) = d.decode(
        frame(
            "books",
            [
                {
                    "asks": [["101.0", "2", "0", "1"]],
                    "bids": [],
                    "ts": "1767225600005",
                    "checksum": -3,
                    "seqId": 9,
                    "prevSeqId": 8,
                }
            ],
            action="update",
        )
    )
    assert isinstance(book, okx.BookMessage)
    assert (book.action, book.asks, book.seq_id, book.prev_seq_id, book.checksum) == (
        "update",
        [("101.0", "2")],
        9,
        8,
        -3,
    )
    c = frame("candle1H", [["1699999200000", "1", "3", "0.5", "2", "10", "25", "25", "1"]])
    (k,) = d.decode(c.replace(b"BTC-USDT", b"ETH-USDT"))
    assert isinstance(k, Kline) and (k.symbol, k.interval, k.closed) == ("ETHUSDT", "1h", True)
    assert (k.open, k.high, k.low, k.close, k.volume, k.quote_volume) == (1, 3, 0.5, 2, 10, 25)
    assert (
        k.close_time == 1699999200000 + 3_600_000 - 1
        and k.trades == -1
        and math.isnan(k.taker_buy_volume)
    )
    assert d.decode(b"pong") == [okx.Pong()]
    (ev,) = d.decode(b'{"event":"error","code":"60018","msg":"Wrong URL","connId":"a"}')
    assert ev == okx.RequestError("60018", "Wrong URL")
    (notice,) = d.decode(b'{"event":"notice","code":"64008","msg":"upgrade","connId":"a"}')
    assert notice.closing


@pytest.mark.parametrize(
    "bad, reason",
    [
        (b'{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"px', "malformed JSON"),
        (
            b'{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"x"}]}',
            "invalid trades payload",
        ),
        (b'{"arg":{"channel":"surprise","instId":"BTC-USDT"},"data":[{}]}', "unknown channel"),
        (
            b'{"arg":{"channel":"books","instId":"BTC-USDT"},"data":[{"asks":[],"bids":[],"ts":"1767225600001"}]}',
            "action None",
        ),
        (b"[1,2]", "not an OKX message"),
    ],
)
def test_bad_frames_say_what_is_wrong(bad, reason):
    with pytest.raises(okx.FrameError, match=reason):
        okx.OkxDecoder().decode(bad)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_bytes_give_records_or_a_frame_error(data):
    with contextlib.suppress(okx.FrameError):
        okx.OkxDecoder().decode(data)


def envelope(data) -> bytes:
    return msgspec.json.encode({"code": "0", "msg": "", "data": data})


def test_rest_payloads_become_records_oldest_first():
    rows = [
        ["1700000060000", "2", "2", "2", "2", "1", "2", "2", "0"],
        ["1700000000000", "1", "1", "1", "1", "1", "1", "1", "1"],
    ]
    klines = okx.parse_candles(envelope(rows), "BTCUSDT", "1m")
    assert [k.open_time for k in klines] == [1700000000000, 1700000060000]
    assert [k.closed for k in klines] == [True, False]
    snap = okx.parse_books(
        envelope(
            [
                {
                    "asks": [["101", "1", "0", "2"]],
                    "bids": [["99", "2", "0", "1"]],
                    "ts": "1767225600123",
                }
            ]
        ),
        "BTCUSDT",
    )
    assert (snap.bids, snap.asks, snap.last_update_id) == (
        [(99.0, 2.0)],
        [(101.0, 1.0)],
        1767225600123,
    )
    assert okx.parse_time(envelope([{"ts": "1700000000000"}])) == 1700000000000
    with pytest.raises(okx.OkxAPIError, match="51001"):
        okx.parse_candles(
            b'{"code":"51001","msg":"Instrument ID does not exist.","data":[]}', "X", "1m"
        )
    with pytest.raises(okx.PayloadError, match="candles"):
        okx.parse_candles(envelope([["x"]]), "BTCUSDT", "1m")
