"""Binance USDⓈ-M perpetuals, sans-I/O: the routes streams live on since 2026-04-23, frames and
REST bodies to records, and the book bridged and chained by ``pu``."""

from __future__ import annotations

import math

import pytest

from marketlab.records import (
    AggTrade,
    BookSnapshot,
    Funding,
    Kline,
    Liquidation,
    MarkPrice,
    OpenInterest,
    is_perpetual,
    perpetual_of,
    underlying_of,
)
from marketlab.venues.binance import perp_payloads as payloads
from marketlab.venues.binance.frames import RequestError, SubscriptionResult
from marketlab.venues.binance.perp_book import PerpBook
from marketlab.venues.binance.perp_frames import PerpDecoder, PerpDepth
from marketlab.venues.binance.perp_protocol import (
    PerpStream,
    parse_stream,
    split_by_route,
    stream_url,
    venue_symbol,
)
from marketlab.venues.book import Action
from marketlab.venues.errors import FrameError, PayloadError, UnknownStreamError
from tests.venues.binance import perp_frames as F

# --- names and routes ------------------------------------------------------------------------


def test_a_perpetual_is_its_pair_with_perp():
    assert perpetual_of("btc/usdt") == "BTCUSDT-PERP"
    assert perpetual_of("ethusdt-perp") == "ETHUSDT-PERP"
    assert is_perpetual("BTCUSDT-PERP") and not is_perpetual("BTCUSDT")
    assert underlying_of("BTCUSDT-PERP") == "BTCUSDT" and underlying_of("BTCUSDT") == "BTCUSDT"
    assert venue_symbol("BTCUSDT-PERP") == "BTCUSDT"
    with pytest.raises(ValueError, match="not a perpetual"):
        venue_symbol("BTCUSDT")  # a spot name never reaches the futures API


@pytest.mark.parametrize(
    ("name", "route"),
    [
        ("btcusdt@depth@100ms", "public"),
        ("btcusdt@depth", "public"),
        ("btcusdt@bookTicker", "public"),
        ("btcusdt@aggTrade", "market"),
        ("btcusdt@markPrice@1s", "market"),
        ("btcusdt@kline_1m", "market"),
        ("btcusdt@forceOrder", "market"),
    ],
)
def test_each_stream_knows_its_route_and_its_name(name, route):
    stream = parse_stream(name)
    assert stream.symbol == "BTCUSDT-PERP"
    assert stream.route == route
    assert stream.name == name


def test_a_url_carries_only_its_routes_streams():
    assert (
        stream_url("wss://fstream.binance.com", "market", ["btcusdt@aggTrade", "ethusdt@kline_1m"])
        == "wss://fstream.binance.com/market/stream?streams=btcusdt@aggTrade/ethusdt@kline_1m"
    )
    with pytest.raises(ValueError, match="not on the /market route"):
        stream_url("wss://fstream.binance.com", "market", ["btcusdt@depth@100ms"])
    names = ["btcusdt@depth@100ms", "btcusdt@aggTrade", "ethusdt@depth@100ms", "btcusdt@forceOrder"]
    assert split_by_route(names) == {
        "public": ["btcusdt@depth@100ms", "ethusdt@depth@100ms"],
        "market": ["btcusdt@aggTrade", "btcusdt@forceOrder"],
    }


@pytest.mark.parametrize("name", ["btcusdt@trade", "btcusdt@kline_7m", "BTCUSDT@aggTrade", "x"])
def test_a_name_not_read_here_is_refused(name):
    with pytest.raises(UnknownStreamError):
        parse_stream(name)


def test_mark_price_speeds_name_their_stream():
    assert PerpStream("BTCUSDT-PERP", "markPrice", None, 1000).name == "btcusdt@markPrice@1s"
    assert PerpStream("BTCUSDT-PERP", "markPrice", None, 3000).name == "btcusdt@markPrice"


# --- frames ----------------------------------------------------------------------------------


def test_frames_to_records():
    decode = PerpDecoder().decode
    [depth] = decode(F.FRAMES[0])
    assert isinstance(depth, PerpDepth)
    assert depth.prev_update_id == 9 and depth.transaction_time == F.T0
    d = depth.delta
    assert (d.symbol, d.first_update_id, d.last_update_id) == ("BTCUSDT-PERP", 10, 15)
    assert (d.bids, d.asks, d.event_time) == ([(64000.0, 1.5)], [(64001.0, 0.0)], F.T0 + 5)

    assert decode(F.AGG_TRADE) == [
        AggTrade("BTCUSDT-PERP", 5933014, 64001.1, 0.25, "sell", 100, 105, F.T0 + 2, F.T0 + 7)
    ]  # m: the buyer was the maker, so the taker sold
    assert decode(F.MARK_PRICE) == [
        MarkPrice(
            "BTCUSDT-PERP", F.T0 + 1000, 64010.5, 64005.25, 64020.0, -0.000125, F.T0 + 28_800_000
        )
    ]
    assert decode(F.FORCE_ORDER) == [
        Liquidation("BTCUSDT-PERP", F.T0 + 1, "long", 63950.5, 0.014, 63900.0, True, F.T0 + 3)
    ]  # a SELL liquidation order closes a long
    [kline] = decode(F.KLINE)
    assert kline == Kline(
        "BTCUSDT-PERP",
        "1m",
        F.T0,
        64000.0,
        64020.0,
        63990.0,
        64010.0,
        12.5,
        F.T0 + 59_999,
        800000.0,
        101,
        6.0,
        384000.0,
        False,
        F.T0 + 30_000,
    )
    assert decode(F.FRAMES[5]) == [SubscriptionResult(1, None)]
    assert decode(F.FRAMES[6]) == [RequestError(3, 2, "Invalid request: unknown variant")]


def test_a_payload_of_another_symbol_or_interval_is_a_bad_frame():
    other = F.AGG_TRADE.replace(b'"s":"BTCUSDT"', b'"s":"ETHUSDT"')
    with pytest.raises(FrameError, match="a payload of ETHUSDT on another stream"):
        PerpDecoder().decode(other)
    other_interval = F.KLINE.replace(b'"i":"1m"', b'"i":"5m"')
    with pytest.raises(FrameError, match="5m kline on another stream"):
        PerpDecoder().decode(other_interval)


@pytest.mark.parametrize(
    ("frame", "said"),
    [
        (F.MARK_PRICE.replace(b'"p":"64010.50000000"', b'"p":"-1"'), "invalid markPrice"),
        (F.AGG_TRADE.replace(b'"l":105', b'"l":99'), "ends before|before its first"),
        (F.FORCE_ORDER.replace(b'"S":"SELL"', b'"S":"HOLD"'), "invalid forceOrder"),
        (b'{"stream":"btcusdt@trade","data":{}}', "unknown stream"),
        (b'{"stream":"btcusdt@aggTrade"}', "without 'data'"),
        (b"{not json", "malformed JSON"),
        (b'{"hello":1}', "unrecognised frame"),
    ],
)
def test_bad_frames_say_what_and_where(frame, said):
    with pytest.raises(FrameError, match=said):
        PerpDecoder().decode(frame)


# --- REST ------------------------------------------------------------------------------------


def test_rest_bodies_to_records():
    snap = payloads.depth(F.REST["depth"], "BTCUSDT-PERP")
    assert snap == BookSnapshot(
        "BTCUSDT-PERP", 1027024, [(64000.0, 4.5)], [(64000.1, 12.0)], 1767225600010
    )
    assert payloads.agg_trades(F.REST["aggTrades"], "BTCUSDT-PERP") == [
        AggTrade("BTCUSDT-PERP", 26129, 64000.01, 4.7, "sell", 27781, 27781, F.T0, F.T0)
    ]
    assert payloads.mark_price(F.REST["premiumIndex"]) == MarkPrice(
        "BTCUSDT-PERP", F.T0, 64010.5, 64005.25, 64004.1, 0.0001, 1767254400000
    )
    first, second = payloads.funding_history(F.REST["fundingRate"])
    assert first == Funding("BTCUSDT-PERP", F.T0, -0.0003, 64000.0)
    assert (second.rate, second.funding_time) == (0.0001, 1767254400000)
    assert math.isnan(second.mark)  # an old row without its mark price
    oi = payloads.open_interest(F.REST["openInterest"])
    assert (oi.symbol, oi.time, oi.open_interest) == ("BTCUSDT-PERP", F.T0, 10659.509)
    assert math.isnan(oi.value)
    assert payloads.open_interest_history(F.REST["openInterestHist"]) == [
        OpenInterest("BTCUSDT-PERP", F.T0, 20403.637, 1306000000.5)
    ]
    [listed] = payloads.perpetuals(F.REST["exchangeInfo"])  # the quarterly contract left out
    assert (listed.symbol, listed.base_asset, listed.quote_asset) == ("BTCUSDT-PERP", "BTC", "USDT")
    assert (listed.tick_size, listed.step_size, listed.min_qty, listed.min_notional) == (
        0.1,
        0.001,
        0.001,
        100.0,
    )


def test_bad_rest_bodies_name_their_endpoint():
    with pytest.raises(PayloadError, match="/fapi/v1/premiumIndex"):
        payloads.mark_price(F.REST["premiumIndex"].replace(b'"markPrice":"64010.5"', b'"x":1'))
    with pytest.raises(PayloadError, match="markPrice 'abc' is not a number"):
        payloads.funding_history(F.REST["fundingRate"].replace(b'"64000.0"', b'"abc"'))
    err = payloads.error_of(b'{"code":-1121,"msg":"Invalid symbol."}', 400)
    assert err is not None and err.code == -1121 and "Invalid symbol" in str(err)
    assert payloads.error_of(F.REST["openInterest"]) is None


# --- the book --------------------------------------------------------------------------------


def _depth(U: int, u: int, pu: int, bids=(), asks=()) -> PerpDepth:
    [message] = PerpDecoder().decode(F.depth(U, u, pu, bids, asks))
    return message


def _snapshot(lid: int) -> BookSnapshot:
    return BookSnapshot("BTCUSDT-PERP", lid, [(100.0, 1.0), (99.0, 2.0)], [(101.0, 1.0)], F.T0)


def test_the_snapshot_is_bridged_by_the_event_straddling_it_then_chained_by_pu():
    book = PerpBook("BTCUSDT-PERP")
    assert book.on_depth(_depth(90, 95, 80)) is Action.FETCH_SNAPSHOT
    book.on_depth(_depth(96, 104, 95, bids=[("100", "0")]))  # older than the snapshot: dropped
    book.on_depth(_depth(108, 120, 104, bids=[("99.5", "3")]))  # straddles 110
    assert book.on_snapshot(_snapshot(110)) is Action.NONE
    assert book.synced and book.last_update_id == 120
    assert book.bids() == [(100.0, 1.0), (99.5, 3.0), (99.0, 2.0)]
    # ids jump between events: only pu chains them
    assert book.on_depth(_depth(150, 160, 120, asks=[("101", "0"), ("102", "4")])) is Action.NONE
    assert book.asks() == [(102.0, 4.0)] and book.last_update_id == 160


def test_an_event_ending_at_the_snapshot_is_dropped_and_the_next_chains_to_it():
    book = PerpBook("BTCUSDT-PERP")
    book.on_depth(_depth(100, 110, 95))  # ends at the snapshot: already in it
    book.on_depth(_depth(130, 140, 110, bids=[("98", "1")]))  # starts past it, pu says it follows
    assert book.on_snapshot(_snapshot(110)) is Action.NONE
    assert book.synced and book.last_update_id == 140 and (98.0, 1.0) in book.bids()


def test_a_broken_pu_chain_is_a_gap_and_asks_for_a_new_snapshot():
    book = PerpBook("BTCUSDT-PERP")
    book.on_depth(_depth(105, 115, 100))
    book.on_snapshot(_snapshot(110))
    assert book.synced
    action = book.on_depth(_depth(130, 140, 120))  # the event ending at 120 was lost
    assert action is Action.FETCH_SNAPSHOT and not book.synced
    assert "follows update 120, the book is at 115" in book.reason
    assert book.stats.gaps == 1


def test_a_snapshot_the_stream_does_not_reach_is_stale():
    book = PerpBook("BTCUSDT-PERP")
    book.on_depth(_depth(130, 140, 120))  # the first event held starts past the snapshot
    assert book.on_snapshot(_snapshot(110)) is Action.FETCH_SNAPSHOT
    assert not book.synced and book.stats.stale_snapshots == 1


def test_a_gap_among_buffered_events_is_found_when_they_are_applied():
    book = PerpBook("BTCUSDT-PERP")
    book.on_depth(_depth(105, 115, 100))
    book.on_depth(_depth(130, 140, 125))  # pu 125: the event ending at 125 never came
    assert book.on_snapshot(_snapshot(110)) is Action.FETCH_SNAPSHOT
    assert not book.synced and "follows update 125" in book.reason
