"""Bybit linear perpetuals, sans-I/O: topics and requests, frames (tickers merged from their
deltas, trades numbered by their match, complete liquidations) and REST bodies to records.
Expected values are read off the frames in tests/venues/bybit/perp_frames.py by hand."""

from __future__ import annotations

import math

import msgspec
import orjson
import pytest

from marketlab.records import Funding, Kline, Liquidation, MarkPrice, OpenInterest, Trade
from marketlab.venues.bybit import perp_payloads as payloads
from marketlab.venues.bybit.frames import BookMessage, Pong, SubscriptionResult
from marketlab.venues.bybit.perp_frames import PerpDecoder
from marketlab.venues.bybit.perp_protocol import (
    check_ws_url,
    linear_url,
    subscribe_message,
    topics_for,
    venue_symbol,
)
from marketlab.venues.bybit.protocol import BybitAPIError, Topic
from marketlab.venues.errors import FrameError, PayloadError
from tests.venues.bybit import perp_frames as F

T0 = F.T0
SHIFT = 2**20  # a trade id: seq times 2^20 plus the fill's place in its match

# --- names, topics, requests -----------------------------------------------------------------


def test_names_urls_and_topics():
    assert venue_symbol("BTCUSDT-PERP") == "BTCUSDT"
    with pytest.raises(ValueError, match="not a perpetual"):
        venue_symbol("BTCUSDT")
    assert check_ws_url("ws://127.0.0.1:9300") == "ws://127.0.0.1:9300/v5/public/linear"
    assert check_ws_url("wss://stream.bybit.com/v5/public/linear").endswith("/linear")
    with pytest.raises(ValueError):
        check_ws_url("wss://stream.bybit.com/v5/public/spot")
    assert linear_url("ws://h:1/v5/public/spot") == "ws://h:1/v5/public/linear"
    names = [
        t.name
        for t in topics_for(["BTCUSDT-PERP"], ["1m", "1h"], ["trades", "book", "klines", "mark"])
    ]
    assert names == [
        "publicTrade.BTCUSDT",
        "orderbook.200.BTCUSDT",
        "tickers.BTCUSDT",
        "kline.1.BTCUSDT",
        "kline.60.BTCUSDT",
    ]
    assert [t.name for t in topics_for(["ETHUSDT-PERP"], [], ["liquidations"])] == [
        "allLiquidation.ETHUSDT"
    ]
    with pytest.raises(ValueError, match="ticker"):
        topics_for(["BTCUSDT-PERP"], [], ["ticker"])
    with pytest.raises(ValueError, match="not a perpetual"):
        topics_for(["BTCUSDT"], [], ["trades"])


def test_linear_takes_more_than_ten_args_but_not_more_than_21000_characters():
    many = [Topic("publicTrade", f"S{i:04d}USDT") for i in range(30)]
    assert orjson.loads(subscribe_message(many, "7")) == {
        "op": "subscribe",
        "args": [t.name for t in many],
        "req_id": "7",
    }
    huge = [Topic("publicTrade", f"S{i:04d}USDT") for i in range(1000)]  # 21 chars each
    assert sum(len(t.name) for t in huge) == 21_000
    subscribe_message(huge)
    with pytest.raises(ValueError, match="21000"):
        subscribe_message([*huge, Topic("tickers", "BTCUSDT")])


# --- frames ----------------------------------------------------------------------------------


def test_a_ticker_snapshot_gives_mark_price_and_open_interest():
    mark, oi = PerpDecoder().decode(F.TICKER_SNAPSHOT)
    assert (mark.symbol, mark.event_time, mark.mark, mark.index) == (
        "BTCUSDT-PERP",
        T0 + 1000,
        17217.33,
        17227.36,
    )
    assert (mark.funding_rate, mark.next_funding_time) == (-0.000212, 1767254400000)
    assert isinstance(mark, MarkPrice) and math.isnan(mark.settle_estimate)
    assert oi == OpenInterest("BTCUSDT-PERP", T0 + 1000, 68744.761, 1183601235.91)


def test_ticker_deltas_are_merged_into_the_last_snapshot():
    d = PerpDecoder()
    d.decode(F.TICKER_SNAPSHOT)
    assert d.decode(F.TICKER_BOOK_DELTA) == []  # nothing of a mark or an open interest moved
    (mark,) = d.decode(F.TICKER_MARK_DELTA)
    # the new mark, everything else from the snapshot
    assert (mark.event_time, mark.mark, mark.index, mark.funding_rate) == (
        T0 + 1200,
        17220.10,
        17227.36,
        -0.000212,
    )
    assert mark.next_funding_time == 1767254400000
    (oi,) = d.decode(F.TICKER_OI_DELTA)
    assert oi == OpenInterest("BTCUSDT-PERP", T0 + 1300, 68750.5, 1183601235.91)


def test_a_delta_before_its_snapshot_and_a_bad_delta_are_refused_and_change_nothing():
    d = PerpDecoder()
    with pytest.raises(FrameError, match="before its snapshot") as err:
        d.decode(F.TICKER_MARK_DELTA)
    assert err.value.stream == "tickers.BTCUSDT"
    d.decode(F.TICKER_SNAPSHOT)
    bad = F.push("tickers.BTCUSDT", "delta", {"symbol": "BTCUSDT", "markPrice": "-5"})
    with pytest.raises(FrameError, match=r"tickers\.BTCUSDT"):
        d.decode(bad)
    other = F.push("tickers.BTCUSDT", "delta", {"symbol": "ETHUSDT", "markPrice": "5"})
    with pytest.raises(FrameError, match="ETHUSDT"):
        d.decode(other)
    (mark,) = d.decode(F.TICKER_MARK_DELTA)
    assert mark.mark == 17220.10  # the bad ones were not merged


def test_trades_are_numbered_by_their_match():
    out = PerpDecoder().decode(F.TRADES)
    assert out == [
        Trade("BTCUSDT-PERP", 1783284617 * SHIFT, 16578.5, 0.001, "buy", T0 + 900, T0 + 1000),
        Trade("BTCUSDT-PERP", 1783284617 * SHIFT + 1, 16578.0, 0.25, "sell", T0 + 900, T0 + 1000),
        Trade("BTCUSDT-PERP", 1783284620 * SHIFT, 16577.5, 0.5, "sell", T0 + 950, T0 + 1000),
    ]


def test_a_match_split_over_two_messages_goes_on_numbering():
    rows = orjson.loads(F.TRADES)["data"]
    first = F.push("publicTrade.BTCUSDT", "snapshot", rows[:1])
    rest = F.push("publicTrade.BTCUSDT", "snapshot", rows[1:])
    d = PerpDecoder()
    ids = [t.trade_id for t in d.decode(first) + d.decode(rest)]
    assert ids == [1783284617 * SHIFT, 1783284617 * SHIFT + 1, 1783284620 * SHIFT]


def test_liquidations_are_complete_and_buy_is_a_long_liquidated():
    out = PerpDecoder().decode(F.LIQUIDATIONS)
    assert out == [
        Liquidation("BTCUSDT-PERP", T0 + 700, "long", 16400.5, 0.012, 16400.5, False, T0 + 1000),
        Liquidation("BTCUSDT-PERP", T0 + 800, "short", 16700.0, 2.0, 16700.0, False, T0 + 1000),
    ]


def test_book_kline_and_control_frames_read_as_on_spot_named_as_ours():
    d = PerpDecoder()
    (book,) = d.decode(F.BOOK)
    assert book == BookMessage(
        "BTCUSDT-PERP",
        200,
        "snapshot",
        [(16493.5, 0.006), (16493.0, 0.1)],
        [(16611.0, 0.029)],
        18521288,
        7961638724,
        T0 + 1000,
    )
    (k,) = d.decode(F.KLINE)
    assert isinstance(k, Kline) and (k.symbol, k.interval, k.open_time, k.close_time) == (
        "BTCUSDT-PERP",
        "1m",
        T0,
        T0 + 59_999,
    )
    assert (k.open, k.high, k.low, k.close, k.volume, k.closed) == (
        16649.5,
        16677.0,
        16608.0,
        16677.0,
        2.081,
        True,
    )
    assert d.decode(F.ACK) == [SubscriptionResult("subscribe", True, "", "")]
    assert d.decode(F.PONG) == [Pong("")]


@pytest.mark.parametrize(
    "frame, said",
    [
        (b"{", "malformed JSON"),
        (F.push("publicTrade.BTCUSDT", "snapshot", [{"T": 1}]), r"publicTrade\.BTCUSDT"),
        (F.push("allLiquidation.BTCUSDT", "snapshot", [{"s": "X"}]), "allLiquidation"),
        (F.push("tickers.BTCUSDT", "update", {"symbol": "BTCUSDT"}), "type 'update'"),
        (
            F.push(
                "publicTrade.BTCUSDT",
                "snapshot",
                [{"T": T0, "s": "BTCUSDT", "S": "Buy", "v": "1", "p": "1", "i": "x", "seq": 2**44}],
            ),
            "seq",
        ),
    ],
)
def test_bad_frames_say_what_and_where(frame, said):
    with pytest.raises(FrameError, match=said):
        PerpDecoder().decode(frame)


# --- REST ------------------------------------------------------------------------------------


def test_instruments_list_perpetuals_with_their_funding_interval():
    listed, cursor = payloads.perpetuals(F.REST["instruments"])
    assert listed == [
        payloads.LinearInstrument(
            "BTCUSDT-PERP", "Trading", "BTC", "USDT", 0.1, 0.001, 0.001, 5.0, 480
        )
    ]
    assert cursor == "first%3DBTCUSDT%26last%3DBTCUSDT"


def test_funding_history_oldest_first():
    out = payloads.funding_history(F.REST["funding"])
    assert [(f.symbol, f.funding_time, f.rate) for f in out] == [
        ("BTCUSDT-PERP", T0, -0.00005),
        ("BTCUSDT-PERP", T0 + 8 * 3_600_000, 0.0001),
    ]
    assert all(isinstance(f, Funding) and math.isnan(f.mark) for f in out)


def test_open_interest_oldest_first_in_base_coin():
    out, cursor = payloads.open_interest(F.REST["open_interest"])
    assert [(o.time, o.open_interest) for o in out] == [
        (T0, 461134292.0),
        (T0 + 300_000, 461134384.0),
    ]
    assert cursor == "" and all(math.isnan(o.value) for o in out)


def test_tickers_give_mark_and_open_interest_as_of_the_answer():
    ((mark, oi),) = payloads.tickers(F.REST["tickers"])
    assert (mark.symbol, mark.event_time, mark.mark, mark.index, mark.funding_rate) == (
        "BTCUSDT-PERP",
        T0 + 5000,
        16596.0,
        16598.54,
        0.0001,
    )
    assert mark.next_funding_time == T0 + 8 * 3_600_000
    assert oi == OpenInterest("BTCUSDT-PERP", T0 + 5000, 22192.34, 368308488.64)


def test_recent_trades_oldest_first_numbered_as_on_the_stream():
    out = payloads.recent_trades(F.REST["recent"], "BTCUSDT-PERP", 1000)
    assert [(t.trade_id, t.price, t.side) for t in out] == [
        (500 * SHIFT, 16598.0, "sell"),
        (500 * SHIFT + 1, 16599.0, "sell"),
        (501 * SHIFT, 16600.0, "buy"),
    ]
    # a full answer may have cut its oldest match: its fills are left out
    cut = payloads.recent_trades(F.REST["recent"], "BTCUSDT-PERP", 3)
    assert [t.trade_id for t in cut] == [501 * SHIFT]


def test_bad_rest_bodies_name_their_endpoint():
    with pytest.raises(PayloadError, match="funding/history"):
        payloads.funding_history(F.envelope({"list": [{"symbol": "BTCUSDT"}]}))
    with pytest.raises(PayloadError, match="open-interest"):
        payloads.open_interest(b"[]")
    error = b'{"retCode":10001,"retMsg":"params error: symbol invalid","result":{}}'
    with pytest.raises(BybitAPIError, match="10001"):
        payloads.tickers(error)
    assert msgspec.json.decode(F.REST["tickers"])["retCode"] == 0
