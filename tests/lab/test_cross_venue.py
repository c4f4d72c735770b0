"""Cross-venue views on hand-built books: every expected number below is worked out by hand
from the levels in the test, never taken from the code's output."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketlab.lab.cross_venue import (
    bbo,
    bbo_frame,
    consolidated_book,
    consolidated_book_frame,
    divergence_frame,
    divergence_rows,
    mid_of,
)
from marketlab.markets import comparable_quotes, match_markets, quotes_used
from marketlab.stream.state import BookView


def book(bids, asks, venue: str = "", synced: bool = True, reason: str = "") -> BookView:
    return BookView(
        synced=synced,
        last_update_id=7 if synced else 0,
        bids=[(float(p), float(q)) for p, q in bids],
        asks=[(float(p), float(q)) for p, q in asks],
        reason=reason,
        exchange=venue,
    )


def unsynced(reason: str) -> BookView:
    return book([], [], synced=False, reason=reason)


# --- match_markets and quotes -----------------------------------------------------------------


def test_match_markets_takes_the_same_symbol_on_each_venue_in_order():
    venues = {
        "okx": ["ETHUSDT", "BTCUSDT"],
        "binance": ["BTCUSDT"],
        "bybit": ["SOLUSDT"],  # no BTC at all: simply absent
    }
    got = match_markets("btc/usdt", venues)
    assert got == {"okx": "BTCUSDT", "binance": "BTCUSDT"}
    assert list(got) == ["okx", "binance"]


def test_match_markets_takes_an_equivalent_quote_only_when_declared_both_ways():
    venues = {"binance": ["BTCUSDT", "ETHUSDT"], "coinbase": ["ETHUSD", "BTCUSD"]}
    assert match_markets("BTCUSDT", venues, {"USD": "USDT"}) == {
        "binance": "BTCUSDT",
        "coinbase": "BTCUSD",
    }
    # the same declaration lets a USD request find the USDT market; case does not matter
    assert match_markets("BTCUSD", venues, {"usd": "UsdT"}) == {
        "binance": "BTCUSDT",
        "coinbase": "BTCUSD",
    }


def test_match_markets_prefers_the_exact_symbol_over_an_equivalent_one():
    venues = {"kraken": ["BTCUSD", "BTCUSDT"]}
    assert match_markets("BTCUSDT", venues, {"USD": "USDT"}) == {"kraken": "BTCUSDT"}


def test_match_markets_refuses_an_undeclared_quote_and_names_the_fix():
    venues = {"binance": ["BTCUSDT"], "coinbase": ["BTCUSD"]}
    with pytest.raises(ValueError) as err:
        match_markets("BTCUSDT", venues)
    message = str(err.value)
    assert "coinbase" in message and "BTCUSD" in message
    assert "quote_equivalents={'USD': 'USDT'}" in message
    assert "if they are the same to you" in message


def test_match_markets_refuses_when_no_venue_collects_it_and_says_what_each_collects():
    venues = {"binance": ["ETHUSDT", "SOLUSDT"], "okx": ["XRPUSDT"]}
    with pytest.raises(ValueError) as err:
        match_markets("BTCUSDT", venues)
    message = str(err.value)
    assert "no venue collects BTCUSDT" in message
    for name in ("binance", "ETHUSDT", "SOLUSDT", "okx", "XRPUSDT"):
        assert name in message
    with pytest.raises(ValueError, match="no venue"):
        match_markets("BTCUSDT", {})


def test_quotes_used_says_which_quote_stood_for_which():
    markets = {"binance": "BTCUSDT", "coinbase": "BTCUSD"}
    assert quotes_used(markets, {"USD": "USDT"}) == {
        "binance": "USDT",
        "coinbase": "USD as USDT",
    }
    assert quotes_used({"binance": "BTCUSDT", "okx": "BTCUSDT"}, None) == {
        "binance": "USDT",
        "okx": "USDT",
    }
    assert quotes_used({}, None) == {}
    with pytest.raises(ValueError, match=r"quote_equivalents=\{'USD': 'USDT'\}"):
        quotes_used(markets, None)
    with pytest.raises(ValueError, match="different assets"):
        comparable_quotes({"a": "BTCEUR", "b": "BTCUSDT"}, {"USD": "USDT"})


# --- BBO ---------------------------------------------------------------------------------------


def test_bbo_takes_the_best_bid_and_ask_from_different_venues():
    books = {
        "binance": book([(100.0, 1.0), (99.0, 2.0)], [(101.0, 1.5), (102.0, 1.0)]),
        "okx": book([(100.5, 3.0)], [(101.5, 2.0)]),
        "coinbase": book([(99.5, 4.0)], [(100.8, 0.5)]),
    }
    got = bbo(books)
    assert (got["best_bid"], got["best_bid_venue"], got["bid_qty"]) == (100.5, "okx", 3.0)
    assert (got["best_ask"], got["best_ask_venue"], got["ask_qty"]) == (100.8, "coinbase", 0.5)
    assert got["mid"] == pytest.approx(100.65)  # (100.5 + 100.8) / 2
    assert got["spread"] == pytest.approx(0.3)
    assert got["spread_bps"] == pytest.approx(0.3 / 100.65 * 1e4)  # 29.806 bps
    assert got["state"] == "normal"
    assert got["venues"] == ["binance", "okx", "coinbase"]
    assert got["excluded"] == {}
    tops = {r["exchange"]: (r["bid"], r["ask"]) for r in got["per_venue"]}
    assert tops == {"binance": (100.0, 101.0), "okx": (100.5, 101.5), "coinbase": (99.5, 100.8)}


def test_bbo_locked_when_one_venue_bids_what_another_asks():
    books = {"a": book([(100.0, 1.0)], [(101.0, 1.0)]), "b": book([(99.0, 1.0)], [(100.0, 2.0)])}
    got = bbo(books)
    assert got["state"] == "locked"
    assert (got["best_bid_venue"], got["best_ask_venue"]) == ("a", "b")
    assert got["spread"] == 0.0 and got["spread_bps"] == 0.0
    assert got["mid"] == 100.0


def test_bbo_crossed_when_one_venue_bids_above_another_ask():
    books = {"a": book([(100.0, 1.0)], [(101.0, 1.0)]), "b": book([(99.0, 1.0)], [(99.5, 2.0)])}
    got = bbo(books)
    assert got["state"] == "crossed"
    assert (got["best_bid"], got["best_ask"]) == (100.0, 99.5)
    assert got["spread"] == -0.5
    assert got["mid"] == 99.75
    assert got["spread_bps"] == pytest.approx(-0.5 / 99.75 * 1e4)


def test_bbo_leaves_out_books_out_of_sync_or_empty_with_their_reason():
    books = {
        "binance": book([(100.0, 1.0)], [(101.0, 1.0)]),
        # would win both sides if it were taken
        "okx": book([(200.0, 1.0)], [(50.0, 1.0)], synced=False, reason="sequence gap"),
        "bybit": book([], []),
    }
    got = bbo(books)
    assert got["venues"] == ["binance"]
    assert got["excluded"] == {"okx": "sequence gap", "bybit": "empty book"}
    assert (got["best_bid"], got["best_ask"]) == (100.0, 101.0)
    assert got["best_bid_venue"] == got["best_ask_venue"] == "binance"
    okx = next(r for r in got["per_venue"] if r["exchange"] == "okx")
    assert math.isnan(okx["bid"]) and not okx["synced"] and okx["reason"] == "sequence gap"


def test_bbo_tie_goes_to_the_venue_first_in_order():
    a = book([(100.0, 1.0)], [(101.0, 1.0)])
    b = book([(100.0, 2.0)], [(101.0, 3.0)])
    first_a = bbo({"a": a, "b": b})
    assert (first_a["best_bid_venue"], first_a["bid_qty"]) == ("a", 1.0)
    assert (first_a["best_ask_venue"], first_a["ask_qty"]) == ("a", 1.0)
    first_b = bbo({"b": b, "a": a})
    assert (first_b["best_bid_venue"], first_b["bid_qty"]) == ("b", 2.0)
    assert (first_b["best_ask_venue"], first_b["ask_qty"]) == ("b", 3.0)


def test_bbo_of_nothing_is_empty_not_an_error():
    got = bbo({})
    assert got["state"] == "empty" and got["venues"] == [] and got["per_venue"] == []
    assert math.isnan(got["best_bid"]) and got["best_bid_venue"] is None
    one_sided = bbo({"a": book([(100.0, 1.0)], [])})
    assert one_sided["state"] == "one-sided" and one_sided["best_bid"] == 100.0
    assert one_sided["best_ask_venue"] is None and math.isnan(one_sided["mid"])


def test_bbo_refuses_what_is_not_a_book():
    with pytest.raises(ValueError, match="BookView"):
        bbo({"a": {"bids": []}})  # type: ignore[dict-item]


def test_bbo_frame_shows_every_venue_and_marks_the_winners():
    books = {
        "binance": book([(100.0, 1.0)], [(101.0, 1.5)]),
        "okx": book([(100.5, 3.0)], [(101.5, 2.0)]),
        "bybit": unsynced("no snapshot yet"),
    }
    markets = {"binance": "BTCUSDT", "okx": "BTCUSDT", "bybit": "BTCUSDT"}
    quotes = {"binance": "USDT", "okx": "USDT", "bybit": "USDT"}
    frame = bbo_frame(markets, books, quotes)
    assert list(frame.index) == ["binance", "okx", "bybit"]
    assert frame.index.name == "exchange"
    assert list(frame.columns) == [
        "bid",
        "bid_qty",
        "ask",
        "ask_qty",
        "mid",
        "spread_bps",
        "synced",
        "reason",
        "best_bid",
        "best_ask",
    ]
    assert frame["best_bid"].tolist() == [False, True, False]
    assert frame["best_ask"].tolist() == [True, False, False]
    assert frame.loc["binance", "mid"] == 100.5
    assert frame.loc["okx", "spread_bps"] == pytest.approx(1.0 / 101.0 * 1e4)
    assert frame["synced"].tolist() == [True, True, False]
    assert frame.loc["bybit", "reason"] == "no snapshot yet"
    assert math.isnan(frame.loc["bybit", "bid"])
    assert frame.attrs["bbo"]["best_bid"] == 100.5
    assert frame.attrs["bbo"]["excluded"] == {"bybit": "no snapshot yet"}
    assert frame.attrs["symbols"] == markets
    assert frame.attrs["quotes"] == quotes
    # one symbol for all venues
    assert bbo_frame("btcusdt", books, quotes).attrs["symbols"]["okx"] == "BTCUSDT"
    assert bbo_frame("BTCUSDT", {}, {}).empty


# --- consolidated book --------------------------------------------------------------------------

A = book([(100.0, 1.0), (99.0, 2.0), (98.0, 3.0)], [(101.0, 1.0), (102.0, 2.0)])
B = book([(100.0, 5.0), (99.5, 1.0)], [(101.0, 4.0), (101.5, 1.0)])


def test_consolidated_book_merges_levels_best_first_same_price_in_venue_order():
    bids, asks, excluded = consolidated_book({"a": A, "b": B, "c": unsynced("stale")})
    assert bids == [
        (100.0, 1.0, "a"),
        (100.0, 5.0, "b"),
        (99.5, 1.0, "b"),
        (99.0, 2.0, "a"),
        (98.0, 3.0, "a"),
    ]
    assert asks == [(101.0, 1.0, "a"), (101.0, 4.0, "b"), (101.5, 1.0, "b"), (102.0, 2.0, "a")]
    assert excluded == {"c": "stale"}
    bids_ba, asks_ba, _ = consolidated_book({"b": B, "a": A})
    assert bids_ba[:2] == [(100.0, 5.0, "b"), (100.0, 1.0, "a")]
    assert asks_ba[:2] == [(101.0, 4.0, "b"), (101.0, 1.0, "a")]


def test_consolidated_book_keeps_the_best_depth_levels_per_side():
    bids, asks, _ = consolidated_book({"a": A, "b": B}, depth=3)
    assert bids == [(100.0, 1.0, "a"), (100.0, 5.0, "b"), (99.5, 1.0, "b")]
    assert asks == [(101.0, 1.0, "a"), (101.0, 4.0, "b"), (101.5, 1.0, "b")]
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="depth"):
            consolidated_book({"a": A}, depth=bad)  # type: ignore[arg-type]
    assert consolidated_book({}) == ([], [], {})


def test_consolidated_book_frame_sums_each_side_from_its_best():
    frame = consolidated_book_frame({"a": A, "b": B, "c": book([], [])})
    assert list(frame.columns) == ["side", "price", "qty", "exchange", "cum_qty"]
    assert frame["side"].tolist() == ["bid"] * 5 + ["ask"] * 4
    assert frame["price"].tolist() == [100.0, 100.0, 99.5, 99.0, 98.0, 101.0, 101.0, 101.5, 102.0]
    assert frame["exchange"].tolist() == ["a", "b", "b", "a", "a", "a", "b", "b", "a"]
    # bids 1, 1+5, +1, +2, +3; asks 1, 1+4, +1, +2
    assert frame["cum_qty"].tolist() == [1.0, 6.0, 7.0, 9.0, 12.0, 1.0, 5.0, 6.0, 8.0]
    assert frame.attrs["venues"] == ["a", "b"]
    assert frame.attrs["excluded"] == {"c": "empty book"}
    assert frame.attrs["crossed"] is False
    assert consolidated_book_frame({}).empty


def test_consolidated_book_frame_crossed_when_the_venues_books_overlap():
    high_bid = book([(101.0, 1.0)], [(103.0, 1.0)])
    low_ask = book([(99.0, 1.0)], [(101.0, 2.0)])  # locked counts: bid >= ask
    assert consolidated_book_frame({"x": high_bid, "y": low_ask}).attrs["crossed"] is True
    lower_ask = book([(99.0, 1.0)], [(100.0, 2.0)])
    assert consolidated_book_frame({"x": high_bid, "y": lower_ask}).attrs["crossed"] is True
    assert consolidated_book_frame({"x": high_bid}).attrs["crossed"] is False


# --- divergence ----------------------------------------------------------------------------------


def test_divergence_of_three_venues_against_their_median():
    markets = {"BTCUSDT": {"a": "BTCUSDT", "b": "BTCUSDT", "c": "BTCUSDT"}}
    mids = {("a", "BTCUSDT"): 100.0, ("b", "BTCUSDT"): 101.0, ("c", "BTCUSDT"): 103.0}
    rows = divergence_rows(markets, mids)
    assert [r["exchange"] for r in rows] == ["a", "b", "c"]
    assert all(r["median"] == 101.0 and r["venues"] == 3 for r in rows)
    assert rows[0]["bps"] == pytest.approx(-99.00990099)  # (100/101 - 1) * 1e4
    assert rows[1]["bps"] == 0.0
    assert rows[2]["bps"] == pytest.approx(198.01980198)  # (103/101 - 1) * 1e4


def test_divergence_of_four_venues_takes_the_mean_of_the_middle_two():
    markets = {"ETH": {v: "ETHUSDT" for v in "abcd"}}
    mids = {("a", "ETHUSDT"): 100.0, ("b", "ETHUSDT"): 110.0, ("c", "ETHUSDT"): 103.0}
    mids[("d", "ETHUSDT")] = 101.0
    frame = divergence_frame(markets, mids)
    assert frame.index.names == ["symbol", "exchange"]
    assert list(frame.columns) == ["mid", "median", "bps", "venues"]
    assert (frame["median"] == 102.0).all()  # (101 + 103) / 2
    assert (frame["venues"] == 4).all()
    assert frame.loc[("ETH", "a"), "bps"] == pytest.approx(-196.07843137)  # 100/102
    assert frame.loc[("ETH", "b"), "bps"] == pytest.approx(784.31372549)  # 110/102


def test_divergence_without_a_mid_shows_nan_and_does_not_count():
    markets = {
        "BTC": {"a": "BTCUSDT", "b": "BTCUSDT", "c": "BTCUSDT", "d": "BTCUSDT"},
        "SOL": {"a": "SOLUSDT", "b": "SOLUSDT", "c": "SOLUSDT"},
    }
    mids: dict[tuple[str, str], float | None] = {
        ("a", "BTCUSDT"): 100.0,
        ("b", "BTCUSDT"): None,
        ("c", "BTCUSDT"): float("nan"),
        ("d", "BTCUSDT"): 104.0,  # median of two: 102
        ("a", "SOLUSDT"): 150.0,  # the only SOL mid; b has none, c is not in mids at all
        ("b", "SOLUSDT"): None,
    }
    frame = divergence_frame(markets, mids)
    btc, sol = frame.loc["BTC"], frame.loc["SOL"]
    assert (btc["venues"] == 2).all() and (btc["median"] == 102.0).all()
    assert btc.loc["a", "bps"] == pytest.approx(-196.07843137)
    assert btc.loc["d", "bps"] == pytest.approx(196.07843137)
    assert math.isnan(btc.loc["b", "mid"]) and math.isnan(btc.loc["b", "bps"])
    assert math.isnan(btc.loc["c", "mid"]) and math.isnan(btc.loc["c", "bps"])
    assert (sol["venues"] == 1).all()
    assert sol.loc["a", "median"] == 150.0
    assert sol["bps"].isna().all()  # one venue: nothing to diverge from
    empty = divergence_rows({"X": {"a": "XUSDT"}}, {})
    assert empty[0]["venues"] == 0 and math.isnan(empty[0]["median"])


def test_divergence_keeps_quotes_apart_unless_declared():
    markets = {"BTCUSDT": {"binance": "BTCUSDT", "coinbase": "BTCUSD"}}
    mids = {("binance", "BTCUSDT"): 100.0, ("coinbase", "BTCUSD"): 101.0}
    with pytest.raises(ValueError, match=r"quote_equivalents=\{'USD': 'USDT'\}"):
        divergence_rows(markets, mids)
    frame = divergence_frame(markets, mids, {"USD": "USDT"})
    assert frame.attrs["quotes"] == {"BTCUSDT": {"binance": "USDT", "coinbase": "USD as USDT"}}
    assert frame.attrs["markets"] == markets
    assert (frame["median"] == 100.5).all()
    assert divergence_frame({}, {}).empty
    with pytest.raises(ValueError, match="positive"):
        divergence_rows({"B": {"a": "BTCUSDT"}}, {("a", "BTCUSDT"): -1.0})


def test_mid_of_prefers_the_synced_book_then_the_price_row():
    row = {"symbol": "BTCUSDT", "bid": 99.0, "ask": 100.0, "exchange": "okx"}
    assert mid_of(book([(100.0, 1.0)], [(102.0, 1.0)]), row) == 101.0
    assert mid_of(unsynced("gap"), row) == 99.5
    assert mid_of(None, row) == 99.5
    assert mid_of(book([(100.0, 1.0)], []), row) == 99.5  # one side: not a mid
    assert math.isnan(mid_of(None, {"bid": float("nan"), "ask": 100.0}))
    assert math.isnan(mid_of(None, {"bid": None, "ask": None}))
    assert math.isnan(mid_of(unsynced("gap"), None))
    assert math.isnan(mid_of(None, None))


# --- properties ----------------------------------------------------------------------------------


@st.composite
def venue_books(draw) -> dict[str, BookView]:
    names = draw(st.lists(st.sampled_from("abcdef"), min_size=1, max_size=5, unique=True))
    out = {}
    for name in names:
        # prices on a coarse grid so venues often share a price
        bid_prices = draw(st.lists(st.integers(1, 40), max_size=8, unique=True))
        ask_prices = draw(st.lists(st.integers(1, 40), max_size=8, unique=True))
        qty = st.integers(1, 1000).map(lambda q: q / 10)
        bids = [(p / 2, draw(qty)) for p in sorted(bid_prices, reverse=True)]
        asks = [(p / 2, draw(qty)) for p in sorted(ask_prices)]
        synced = draw(st.booleans()) or draw(st.booleans())
        out[name] = book(bids, asks, name, synced=synced, reason="" if synced else "lost")
    return out


@given(venue_books(), st.integers(1, 60))
def test_consolidated_book_properties(books, depth):
    bids, asks, excluded = consolidated_book(books, depth)
    assert all(x[0] >= y[0] for x, y in itertools.pairwise(bids))
    assert all(x[0] <= y[0] for x, y in itertools.pairwise(asks))
    taking = {v: b for v, b in books.items() if b.synced and (b.bids or b.asks)}
    assert set(excluded) == set(books) - set(taking)
    for side, merged in (("bids", bids), ("asks", asks)):
        given_levels = Counter((p, q, v) for v, b in taking.items() for p, q in getattr(b, side))
        taken = Counter(merged)
        # each merged level is one input level, none used twice, none made up
        assert all(taken[lv] <= given_levels[lv] for lv in taken)
        assert len(merged) == min(depth, sum(given_levels.values()))
    venue_best_bids = [b.bids[0][0] for b in taking.values() if b.bids]
    if venue_best_bids:
        assert bids[0][0] == max(venue_best_bids)
        assert bbo(books)["best_bid"] == max(venue_best_bids)
    else:
        assert bids == []
    venue_best_asks = [b.asks[0][0] for b in taking.values() if b.asks]
    if venue_best_asks:
        assert asks[0][0] == min(venue_best_asks)


def test_match_markets_never_takes_a_perpetual_for_its_spot_pair_or_the_other_way_round():
    venues = {
        "binance": ["BTCUSDT", "BTCUSDT-PERP"],
        "okx": ["BTCUSDT-PERP"],
        "bybit": ["BTCUSDT"],
        "coinbase": ["BTCUSD"],
    }
    equivalents = {"USD": "USDT"}
    assert match_markets("BTCUSDT", venues, equivalents) == {
        "binance": "BTCUSDT",
        "bybit": "BTCUSDT",
        "coinbase": "BTCUSD",
    }
    assert match_markets("btcusdt-perp", venues, equivalents) == {
        "binance": "BTCUSDT-PERP",
        "okx": "BTCUSDT-PERP",
    }
    with pytest.raises(ValueError, match="no venue collects ETHUSDT-PERP"):
        match_markets("ETHUSDT-PERP", {"binance": ["ETHUSDT"]})
