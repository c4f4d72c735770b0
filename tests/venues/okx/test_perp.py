"""OKX swaps, sans-I/O: names, channels and the URL each lives on, pushes and REST bodies to
records with sizes turned from contracts into the base asset (0.01 BTC a contract for
BTC-USDT-SWAP, as OKX lists it). Expected values are worked out by hand from the bodies."""

from __future__ import annotations

import math

import msgspec
import pytest

from marketlab.records import BookSnapshot, Funding, Kline, Liquidation, MarkPrice, OpenInterest
from marketlab.records import Trade as TradeRecord
from marketlab.venues.book import Action
from marketlab.venues.errors import FrameError, PayloadError
from marketlab.venues.okx.book import OkxBook
from marketlab.venues.okx.frames import BookMessage, Pong, RequestError
from marketlab.venues.okx.perp_frames import OkxPerpDecoder, PerpSubscriptionResult
from marketlab.venues.okx.perp_payloads import (
    funding_history,
    funding_rate,
    mark_prices,
    open_interest,
    swap_books,
    swap_candles,
    swap_contracts,
    swap_trades,
)
from marketlab.venues.okx.perp_protocol import (
    PerpTopic,
    perp_symbol_of,
    perp_topics_for,
    subscribe_message,
    swap_inst_id,
)
from marketlab.venues.okx.protocol import OkxAPIError

BTC = "BTC-USDT-SWAP"
VALUES = {"BTCUSDT-PERP": 0.01, "ETHUSDT-PERP": 0.1}
T0 = 1_743_588_686_000  # 2025-04-02 10:11:26 UTC, the time of OKX's funding-rate example


def push(channel: str, data: list, inst: str = BTC, **extra: object) -> bytes:
    return msgspec.json.encode({"arg": {"channel": channel, "instId": inst}, **extra, "data": data})


def book(action: str, bids, asks, seq: int, prev: int) -> bytes:
    row = {"asks": asks, "bids": bids, "ts": str(T0), "checksum": 0, "seqId": seq}
    return push("books", [{**row, "prevSeqId": prev}], action=action)


def rest(data: list) -> bytes:
    return msgspec.json.encode({"code": "0", "msg": "", "data": data})


SNAPSHOT = book("snapshot", [["65000.1", "12", "0", "3"]], [["65000.2", "0.5", "0", "1"]], 10, -1)
TRADE = push(
    "trades-all",
    [
        {
            "instId": BTC,
            "tradeId": "130639474",
            "px": "42219.9",
            "sz": "3",
            "side": "buy",
            "source": "0",
            "ts": str(T0),
        }
    ],
)
CANDLE = push(
    "candle1m",
    [["1700000040000", "65000", "65010", "64990", "65005", "250", "2.5", "162512.5", "1"]],
)
FUNDING = push(
    "funding-rate",
    [
        {
            "instType": "SWAP",
            "instId": BTC,
            "method": "current_period",
            "formulaType": "withRate",
            "fundingRate": "0.0001",
            "nextFundingRate": "",
            "fundingTime": "1743609600000",  # 2025-04-02 16:00 UTC: the next settlement
            "nextFundingTime": "1743638400000",  # 2025-04-03 00:00 UTC: the one after it
            "minFundingRate": "-0.0075",
            "maxFundingRate": "0.0075",
            "settState": "settled",
            "settFundingRate": "0.00012",
            "premium": "0.0001",
            "interestRate": "0.0001",
            "impactValue": "20000",
            "ts": str(T0),
        }
    ],
)
MARK = push("mark-price", [{"instType": "SWAP", "instId": BTC, "markPx": "42310.6", "ts": str(T0)}])
# an index-tickers push: its fields as OKX documents them, named by the index (the underlying)
INDEX = push(
    "index-tickers",
    [
        {
            "instId": "BTC-USDT",
            "idxPx": "42305.2",
            "open24h": "41000",
            "high24h": "42500.5",
            "low24h": "40800.1",
            "sodUtc0": "41800",
            "sodUtc8": "41650",
            "ts": str(T0 + 100),
        }
    ],
    inst="BTC-USDT",
)
OPEN_INTEREST = push(
    "open-interest",
    [
        {
            "instType": "SWAP",
            "instId": BTC,
            "oi": "2216113.01",
            "oiCcy": "22161.1301",
            "oiUsd": "1939251795.54",
            "ts": str(T0),
        }
    ],
)
LIQUIDATIONS = msgspec.json.encode(
    {
        "arg": {"channel": "liquidation-orders", "instType": "SWAP"},
        "data": [
            {
                "instType": "SWAP",
                "instId": BTC,
                "instFamily": "BTC-USDT",
                "uly": "BTC-USDT",
                "details": [
                    {
                        "side": "sell",
                        "posSide": "net",
                        "bkPx": "64000.5",
                        "sz": "20",
                        "bkLoss": "0",
                        "ccy": "",
                        "ts": str(T0),
                    },
                    {
                        "side": "buy",
                        "posSide": "short",
                        "bkPx": "66000",
                        "sz": "1.5",
                        "bkLoss": "0",
                        "ccy": "",
                        "ts": str(T0 + 7),
                    },
                ],
            },
            {  # a swap this reader was not told of: the channel carries every swap's
                "instType": "SWAP",
                "instId": "DOGE-USDT-SWAP",
                "details": [{"side": "buy", "posSide": "net", "bkPx": "0.2", "sz": "5", "ts": "1"}],
            },
        ],
    }
)
FRAMES = [SNAPSHOT, TRADE, CANDLE, FUNDING, MARK, INDEX, OPEN_INTEREST, LIQUIDATIONS]


# --- names and channels ----------------------------------------------------------------------


def test_a_swap_is_our_perpetual_and_a_spot_name_never_reaches_it():
    assert swap_inst_id("BTCUSDT-PERP") == "BTC-USDT-SWAP"
    assert swap_inst_id("ethusdt-perp") == "ETH-USDT-SWAP"
    assert perp_symbol_of("BTC-USDT-SWAP") == "BTCUSDT-PERP"
    with pytest.raises(ValueError, match="not a perpetual"):
        swap_inst_id("BTCUSDT")
    with pytest.raises(ValueError, match="not an OKX swap"):
        perp_symbol_of("BTC-USDT")


def test_each_channel_is_on_its_url_and_liquidations_are_subscribed_by_type():
    topics = perp_topics_for(
        ["BTCUSDT-PERP"],
        ["1m"],
        ["trades", "book", "klines", "mark", "funding", "open_interest", "liquidations"],
    )
    by_channel = {t.channel: t for t in topics}
    assert {c for c, t in by_channel.items() if t.business} == {"trades-all", "candle1m"}
    assert {c for c, t in by_channel.items() if not t.business} == {
        "books",
        "mark-price",
        "index-tickers",
        "funding-rate",
        "open-interest",
        "liquidation-orders",
    }
    assert by_channel["candle1m"].interval == "1m"
    assert by_channel["books"].symbol == "BTCUSDT-PERP"
    assert by_channel["index-tickers"] == PerpTopic("index-tickers", "BTC-USDT")  # the underlying
    assert by_channel["index-tickers"].symbol == "BTCUSDT-PERP"
    assert msgspec.json.decode(subscribe_message([by_channel["liquidation-orders"]])) == {
        "op": "subscribe",
        "args": [{"channel": "liquidation-orders", "instType": "SWAP"}],
    }
    assert msgspec.json.decode(subscribe_message([by_channel["funding-rate"]])) == {
        "op": "subscribe",
        "args": [{"channel": "funding-rate", "instId": "BTC-USDT-SWAP"}],
    }
    two = perp_topics_for(["BTCUSDT-PERP", "ETHUSDT-PERP"], [], ["liquidations"])
    assert two == [PerpTopic("liquidation-orders")]  # one subscription for every swap
    with pytest.raises(ValueError, match="ticker"):
        perp_topics_for(["BTCUSDT-PERP"], [], ["ticker"])
    with pytest.raises(ValueError, match="not a perpetual"):
        perp_topics_for(["BTCUSDT"], [], ["trades"])


# --- pushes ----------------------------------------------------------------------------------


def test_a_book_push_keeps_okxs_strings_and_gives_base_sizes():
    (msg,) = OkxPerpDecoder(VALUES).decode(SNAPSHOT)
    assert isinstance(msg, BookMessage)
    assert (msg.symbol, msg.action, msg.seq_id, msg.prev_seq_id) == (
        "BTCUSDT-PERP",
        "snapshot",
        10,
        -1,
    )
    assert msg.bids == [("65000.1", "12")] and msg.asks == [("65000.2", "0.5")]
    assert msg.bid_changes == [(65000.1, pytest.approx(0.12))]  # 12 contracts of 0.01 BTC
    assert msg.ask_changes == [(65000.2, pytest.approx(0.005))]


def test_the_book_follows_the_seq_chain_in_base_sizes_and_a_gap_resubscribes():
    decoder = OkxPerpDecoder(VALUES)
    b = OkxBook("BTCUSDT-PERP")
    assert b.on_message(decoder.decode(SNAPSHOT)[0]) is Action.NONE
    update = book("update", [["65000.1", "0", "0", "0"], ["64999", "100", "0", "2"]], [], 11, 10)
    assert b.on_message(decoder.decode(update)[0]) is Action.NONE
    assert b.bids() == [(64999.0, pytest.approx(1.0))]  # 100 contracts = 1 BTC
    assert b.asks() == [(65000.2, pytest.approx(0.005))]
    gap = book("update", [["64998", "1", "0", "1"]], [], 14, 13)
    assert b.on_message(decoder.decode(gap)[0]) is Action.RESUBSCRIBE
    assert not b.synced


def test_trades_candles_funding_mark_and_open_interest_in_base_units():
    decoder = OkxPerpDecoder(VALUES)
    assert decoder.decode(TRADE) == [
        TradeRecord("BTCUSDT-PERP", 130639474, 42219.9, pytest.approx(0.03), "buy", T0, T0)
    ]
    (k,) = decoder.decode(CANDLE)
    assert isinstance(k, Kline)
    assert (k.symbol, k.interval, k.open_time, k.close_time) == (
        "BTCUSDT-PERP",
        "1m",
        1_700_000_040_000,
        1_700_000_099_999,
    )
    assert (k.open, k.high, k.low, k.close, k.closed) == (65000, 65010, 64990, 65005, True)
    assert k.volume == pytest.approx(2.5)  # 250 contracts of 0.01 BTC (= volCcy)
    assert k.quote_volume == 162512.5
    (f,) = decoder.decode(FUNDING)
    assert isinstance(f, MarkPrice)
    assert (f.symbol, f.event_time, f.funding_rate) == ("BTCUSDT-PERP", T0, 0.0001)
    assert f.next_funding_time == 1_743_609_600_000  # fundingTime, not nextFundingTime
    assert math.isnan(f.mark) and math.isnan(f.index)
    (m,) = decoder.decode(MARK)
    assert (m.symbol, m.event_time, m.mark, m.next_funding_time) == (
        "BTCUSDT-PERP",
        T0,
        42310.6,
        -1,
    )
    assert math.isnan(m.funding_rate)
    (oi,) = decoder.decode(OPEN_INTEREST)
    assert isinstance(oi, OpenInterest)
    assert oi.open_interest == pytest.approx(22161.1301)  # oi × 0.01 = OKX's own oiCcy
    assert oi.value == 1939251795.54 and oi.time == T0


def test_an_index_push_is_a_mark_price_record_of_the_index_alone():
    decoder = OkxPerpDecoder(VALUES)
    (m,) = decoder.decode(INDEX)
    assert (m.symbol, m.event_time, m.index, m.next_funding_time) == (
        "BTCUSDT-PERP",
        T0 + 100,
        42305.2,
        -1,
    )
    assert all(math.isnan(x) for x in (m.mark, m.settle_estimate, m.funding_rate))
    with pytest.raises(FrameError, match="no contract value known for SOL-USDT"):
        decoder.decode(INDEX.replace(b"BTC-USDT", b"SOL-USDT"))  # a swap it was not told of
    with pytest.raises(FrameError, match=r"invalid index-tickers payload.*idxPx"):
        decoder.decode(INDEX.replace(b'"42305.2"', b'"-1"'))
    with pytest.raises(FrameError, match="not an OKX index"):
        decoder.decode(INDEX.replace(b'"BTC-USDT"', b'"BTC-USDT-SWAP"'))
    stray = push("index-tickers", [{"instId": "ETH-USDT", "idxPx": "1", "ts": str(T0)}], "BTC-USDT")
    with pytest.raises(FrameError, match="a row of ETH-USDT on the stream of BTC-USDT"):
        decoder.decode(stray)


def test_every_trade_of_a_push_is_read():
    two = msgspec.json.decode(TRADE)
    second = {**two["data"][0], "tradeId": "130639475", "sz": "0.25", "side": "sell"}
    two["data"].append(second)
    trades = OkxPerpDecoder(VALUES).decode(msgspec.json.encode(two))
    assert [(t.trade_id, t.side) for t in trades] == [(130639474, "buy"), (130639475, "sell")]
    assert trades[1].qty == pytest.approx(0.0025)


def test_liquidations_are_a_sample_of_the_known_swaps_with_the_side_liquidated():
    out = OkxPerpDecoder(VALUES).decode(LIQUIDATIONS)
    assert all(isinstance(x, Liquidation) for x in out)
    # net mode, a sell order: a long closed; hedge mode names the position (short)
    assert [(x.symbol, x.time, x.side, x.price, x.qty, x.event_time) for x in out] == [
        ("BTCUSDT-PERP", T0, "long", 64000.5, pytest.approx(0.2), T0),
        ("BTCUSDT-PERP", T0 + 7, "short", 66000.0, pytest.approx(0.015), T0 + 7),
    ]
    assert all(x.sampled and math.isnan(x.order_price) for x in out)


def test_a_swap_of_unknown_contract_value_or_a_row_of_another_is_a_frame_error():
    with pytest.raises(FrameError, match="no contract value known for BTC-USDT-SWAP"):
        OkxPerpDecoder({"ETHUSDT-PERP": 0.1}).decode(TRADE)
    stray = push("mark-price", [{"instId": "ETH-USDT-SWAP", "markPx": "1", "ts": str(T0)}])
    with pytest.raises(FrameError, match="a row of ETH-USDT-SWAP on the stream of BTC-USDT"):
        OkxPerpDecoder(VALUES).decode(stray)
    with pytest.raises(FrameError, match="action"):
        OkxPerpDecoder(VALUES).decode(SNAPSHOT.replace(b'"snapshot"', b'"partial"'))
    with pytest.raises(ValueError, match="no positive number"):
        OkxPerpDecoder({"BTCUSDT-PERP": 0.0})


def test_events_and_pong():
    decoder = OkxPerpDecoder(VALUES)
    assert decoder.decode(b"pong") == [Pong()]
    ack = b'{"event":"subscribe","arg":{"channel":"liquidation-orders","instType":"SWAP"}}'
    assert decoder.decode(ack) == [
        PerpSubscriptionResult("subscribe", PerpTopic("liquidation-orders"))
    ]
    err = b'{"event":"error","code":"60018","msg":"Wrong URL or channel"}'
    assert decoder.decode(err) == [RequestError("60018", "Wrong URL or channel")]


# --- REST ------------------------------------------------------------------------------------

INSTRUMENTS = rest(
    [
        {
            "instType": "SWAP",
            "instId": BTC,
            "ctType": "linear",
            "ctVal": "0.01",
            "ctMult": "1",
            "ctValCcy": "BTC",
            "settleCcy": "USDT",
            "tickSz": "0.1",
            "lotSz": "0.01",
            "minSz": "0.01",
            "state": "live",
        },
        {
            "instType": "SWAP",
            "instId": "ETH-USDT-SWAP",
            "ctType": "linear",
            "ctVal": "0.1",
            "ctMult": "10",  # a multiplier other than 1 (none is seen today): 1 ETH a contract
            "ctValCcy": "ETH",
            "settleCcy": "USDT",
            "tickSz": "0.01",
            "lotSz": "1",
            "minSz": "1",
            "state": "suspend",
        },
        {  # inverse: a contract is 100 USD, no fixed amount of BTC
            "instType": "SWAP",
            "instId": "BTC-USD-SWAP",
            "ctType": "inverse",
            "ctVal": "100",
            "ctMult": "1",
            "ctValCcy": "USD",
            "settleCcy": "BTC",
            "tickSz": "0.1",
            "lotSz": "1",
            "minSz": "1",
            "state": "live",
        },
    ]
)


def test_instruments_give_each_linear_swaps_contract_value():
    contracts = swap_contracts(INSTRUMENTS)
    assert sorted(contracts) == ["BTCUSDT-PERP", "ETHUSDT-PERP"]
    btc = contracts["BTCUSDT-PERP"]
    assert (btc.inst_id, btc.contract_value, btc.settle_asset) == (BTC, 0.01, "USDT")
    assert (btc.tick_size, btc.lot_size, btc.min_size, btc.state) == (0.1, 0.01, 0.01, "live")
    assert contracts["ETHUSDT-PERP"].contract_value == pytest.approx(1.0)  # 0.1 × 10
    bad = INSTRUMENTS.replace(b'"ctVal":"0.01"', b'"ctVal":"0"')
    with pytest.raises(PayloadError, match="ctVal of BTC-USDT-SWAP"):
        swap_contracts(bad)


def test_funding_now_and_its_history_oldest_first_with_the_settled_rate():
    (now,) = funding_rate(rest([msgspec.json.decode(FUNDING)["data"][0]]))
    assert (now.symbol, now.funding_rate, now.next_funding_time) == (
        "BTCUSDT-PERP",
        0.0001,
        1_743_609_600_000,
    )
    history = rest(
        [
            {  # newest first, as OKX sends
                "instType": "SWAP",
                "instId": BTC,
                "formulaType": "withRate",
                "fundingRate": "0.0001",
                "realizedRate": "0.00009",
                "fundingTime": "1743609600000",
                "method": "current_period",
            },
            {
                "instType": "SWAP",
                "instId": BTC,
                "fundingRate": "-0.0002",
                "fundingTime": "1743580800000",
                "method": "next_period",
            },
        ]
    )
    out = funding_history(history)
    assert [(f.funding_time, f.rate) for f in out] == [
        (1_743_580_800_000, -0.0002),  # no realizedRate: the rate it was predicted at
        (1_743_609_600_000, 0.00009),
    ]
    assert all(isinstance(f, Funding) and math.isnan(f.mark) for f in out)


def test_open_interest_and_mark_prices():
    body = rest(
        [
            {
                "instType": "SWAP",
                "instId": BTC,
                "oi": "150",
                "oiCcy": "1.5",
                "oiUsd": "97500",
                "ts": str(T0),
            },
            {"instType": "SWAP", "instId": "XRP-USDT-SWAP", "oi": "1", "ts": str(T0)},
        ]
    )
    assert open_interest(body, VALUES) == [
        OpenInterest("BTCUSDT-PERP", T0, pytest.approx(1.5), 97500.0)
    ]
    (mark,) = mark_prices(
        rest([{"instType": "SWAP", "instId": BTC, "markPx": "65001.3", "ts": str(T0)}])
    )
    assert (mark.symbol, mark.mark, mark.event_time) == ("BTCUSDT-PERP", 65001.3, T0)


def test_books_candles_and_trades_of_a_swap_in_base_units():
    books = rest(
        [
            {
                "asks": [["65000.2", "3", "0", "1"]],
                "bids": [["65000", "250", "0", "4"]],
                "ts": str(T0),
            }
        ]
    )
    snap = swap_books(books, "BTCUSDT-PERP", 0.01)
    assert isinstance(snap, BookSnapshot) and snap.symbol == "BTCUSDT-PERP"
    assert snap.bids == [(65000.0, pytest.approx(2.5))] and snap.asks == [
        (65000.2, pytest.approx(0.03))
    ]
    candles = rest(
        [
            ["1700000100000", "2", "3", "1", "2.5", "40", "0.4", "1", "0"],
            ["1700000040000", "1", "2", "1", "2", "10", "0.1", "0.15", "1"],
        ]
    )
    klines = swap_candles(candles, "BTCUSDT-PERP", "1m", 0.01)
    assert [(k.open_time, k.volume, k.closed) for k in klines] == [
        (1_700_000_040_000, pytest.approx(0.1), True),
        (1_700_000_100_000, pytest.approx(0.4), False),
    ]
    assert {k.symbol for k in klines} == {"BTCUSDT-PERP"}
    trades = rest(
        [
            {
                "instId": BTC,
                "tradeId": "8",
                "px": "65000",
                "sz": "2",
                "side": "sell",
                "ts": str(T0),
            },
            {
                "instId": BTC,
                "tradeId": "7",
                "px": "64999",
                "sz": "0.5",
                "side": "buy",
                "ts": str(T0),
            },
        ]
    )
    assert [(t.symbol, t.trade_id, t.qty) for t in swap_trades(trades, "BTCUSDT-PERP", 0.01)] == [
        ("BTCUSDT-PERP", 7, pytest.approx(0.005)),
        ("BTCUSDT-PERP", 8, pytest.approx(0.02)),
    ]
    with pytest.raises(ValueError, match="not a perpetual"):
        swap_books(books, "BTCUSDT", 0.01)


def test_an_error_body_and_a_wrong_shape_are_said_by_endpoint():
    with pytest.raises(OkxAPIError, match="51001"):
        mark_prices(b'{"code":"51001","msg":"Instrument ID does not exist.","data":[]}')
    with pytest.raises(PayloadError, match="/api/v5/public/funding-rate-history"):
        funding_history(rest([{"instId": BTC, "fundingTime": "x", "fundingRate": "0"}]))
    with pytest.raises(PayloadError, match=r"/api/v5/public/mark-price: .*not an OKX swap"):
        mark_prices(rest([{"instId": "BTC-USDT", "markPx": "1", "ts": str(T0)}]))
