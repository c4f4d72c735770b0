"""What goes on the bus, without a bus: encoding, message ids, and books and trades carried
from a collector's publisher to a reader's feed."""

from __future__ import annotations

import random
import time

import msgspec
import pytest

from marketlab.bus import encoding as enc
from marketlab.bus.config import BusConfig
from marketlab.bus.publisher import Publisher
from marketlab.bus.reader import BusFeed, BusSource
from marketlab.lab.market_state import MarketState
from marketlab.records import (
    BookDelta,
    BookSnapshot,
    Funding,
    Interval,
    Kline,
    Liquidation,
    MarkPrice,
    OpenInterest,
    Ticker,
    Trade,
)
from marketlab.venues.book import OrderBook

CONFIG = BusConfig("nats://127.0.0.1:4222", snapshot_interval=1e9)


def trade(i: int, symbol: str = "BTCUSDT") -> Trade:
    return Trade(
        symbol,
        i,
        100.0 + i / 100,
        0.5,
        "buy" if i % 2 else "sell",
        1_700_000_000_000 + i,
        1_700_000_000_000 + i,
    )


def kline(open_time: int, closed: bool) -> Kline:
    return Kline(
        "BTCUSDT",
        Interval("1m"),
        open_time,
        1.0,
        2.0,
        0.5,
        1.5,
        10.0,
        open_time + 59_999,
        15.0,
        7,
        4.0,
        6.0,
        closed,
    )


def reader(symbols: list[str] = ["BTCUSDT"]) -> tuple[BusFeed, MarketState]:  # noqa: B006
    state = MarketState(symbols, [Interval("1m")], 10_000, 100, lambda k: None)
    feed = BusFeed(
        symbols,
        ["1m"],
        ["trades", "ticker", "book", "klines"],
        None,
        state,
        source=BusSource(CONFIG),
        exchange="binance",
    )
    return feed, state


def carry(pub: Publisher, feed: BusFeed) -> list[str]:
    """What the publisher sealed, delivered to the reader in order; returns the message ids."""
    pub._seal()
    ids = []
    while pub._outbox:
        msg = pub._outbox.popleft()
        ids.append(msg.msg_id)
        feed.on_message(msg.subject, msg.payload)
    return ids


def test_every_kind_round_trips_with_the_version_and_field_names() -> None:
    records = {
        "trade": [trade(1), trade(2)],
        "kline": [kline(0, True)],
        "kline_open": [kline(60_000, False)],
        "ticker": [Ticker("BTCUSDT", 5, *([1.0] * 15), 0, 1, 1, 2, 3)],
        "book": [
            enc.BookState("BTCUSDT", 9, [(1.0, 2.0)], [(1.5, 1.0)], 5, "update id chain", True),
            enc.BookChange("BTCUSDT", 9, 10, [(1.0, 0.0)], [], 6),
        ],
    }
    for kind, recs in records.items():
        payload = enc.encode(recs, "ws")
        plain = msgspec.msgpack.decode(payload)  # readable by any msgpack reader: a documented map
        assert plain["v"] == enc.VERSION and plain["source"] == "ws" and plain["backfill"] is False
        assert len(plain["records"]) == len(recs)
        assert enc.decode(kind, payload).records == recs
    assert msgspec.msgpack.decode(enc.encode([trade(3)], "ws"))["records"][0]["trade_id"] == 3


def test_a_message_of_another_version_or_shape_is_refused_with_a_reason() -> None:
    future = msgspec.msgpack.encode({"v": 2, "source": "ws", "backfill": False, "records": []})
    with pytest.raises(enc.BusFormatError, match="version 2"):
        enc.decode("trade", future)
    with pytest.raises(enc.BusFormatError, match="bad trade message"):
        enc.decode("trade", b"\x93not msgpack")
    with pytest.raises(enc.BusFormatError, match="not a marketlab subject"):
        enc.parse_subject("marketlab.binance.orders.BTCUSDT")
    feed, _ = reader()
    feed.on_message("marketlab.binance.trade.BTCUSDT", b"\x00junk")
    assert feed.bad_frames == 1 and "bad trade message" in feed.last_bad_frame


def test_message_ids_name_the_records_so_a_repeat_is_recognised() -> None:
    a = enc.message_id("binance", "trade", "BTCUSDT", [trade(1), trade(2)], False)
    assert a == enc.message_id("binance", "trade", "BTCUSDT", [trade(1), trade(2)], False)
    assert a != enc.message_id("binance", "trade", "BTCUSDT", [trade(1), trade(3)], False)
    assert a != enc.message_id("binance", "trade", "BTCUSDT", [trade(1), trade(2)], True)
    open_k = enc.message_id("binance", "kline_open", "BTCUSDT", [kline(0, False)], False)
    assert open_k != enc.message_id("binance", "kline", "BTCUSDT", [kline(0, True)], False)


def test_trades_klines_and_tickers_reach_the_reader_once_in_order() -> None:
    pub, (feed, state) = Publisher(CONFIG, "binance"), reader()
    for i in range(1, 6):
        pub.on_record(trade(i))
    pub.on_record(kline(0, False))
    pub.on_record(kline(0, True))
    carry(pub, feed)
    for i in (4, 5, 6, 7):  # 4 and 5 again (an overlapping connection): the reader drops them
        pub.on_record(trade(i))
    pub.on_record(kline(0, True))  # a candle published twice is delivered once
    carry(pub, feed)
    assert state.trades["BTCUSDT"].frame()["trade_id"].tolist() == [1, 2, 3, 4, 5, 6, 7]
    closed = state.klines[("BTCUSDT", "1m")].frame()
    assert (
        closed["closed"].tolist() == [True] and feed.kline_stats[("BTCUSDT", "1m")].duplicates == 1
    )


NAN = float("nan")


def test_a_perpetuals_records_reach_the_reader_and_its_store_as_sent() -> None:
    perp = "BTCUSDT-PERP"
    mark = MarkPrice(perp, 1_000, 100.5, 100.4, NAN, 1e-4, 28_800_000)
    funding = Funding(perp, 28_800_000, -2.5e-4, 100.2)
    oi = OpenInterest(perp, 1_500, 1_234.5, NAN)
    liquidations = [
        Liquidation(perp, 2_000, "long", 99.5, 0.25, 99.0, True, 2_001),
        Liquidation(perp, 2_000, "short", 101.5, 0.5, NAN, True, 2_001),
    ]
    pub, (feed, state) = Publisher(CONFIG, "binance"), reader([perp])
    kept: list[object] = []
    state.perpetual_store = kept.append
    for r in (mark, funding, oi, *liquidations):
        pub.on_record(r)
    ids = carry(pub, feed)
    assert len(ids) == 4 and feed.bad_messages == 0
    assert state.marks[perp].mark == 100.5 and state.marks[perp].next_funding_time == 28_800_000
    same = repr  # NaN (not given) is not equal to itself: records compared as they print
    assert list(map(same, state.open_interest[perp])) == [same(oi)]
    assert list(map(same, state.liquidations[perp])) == list(map(same, liquidations))
    assert list(map(same, kept)) == list(map(same, [mark, funding, oi, *liquidations]))
    # the same records sent again have the same message ids (JetStream stores them once)
    for r in (mark, funding, oi, *liquidations):
        pub.on_record(r)
    pub._seal()
    assert sorted(m.msg_id for m in pub._outbox) == sorted(ids)
    a, b = liquidations
    assert enc.message_id("binance", "liquidation", perp, [a], False) != enc.message_id(
        "binance", "liquidation", perp, [b], False
    )


@pytest.mark.parametrize(
    ("kind", "record", "said"),
    [
        ("funding", Funding("X", 1, NAN, 1.0), "rate"),
        ("funding", Funding("X", -5, 1e-4, 1.0), "funding_time"),
        ("open_interest", OpenInterest("X", 1, -1.0, NAN), "open_interest"),
        ("mark", MarkPrice("X", 1, -100.0, 1.0, NAN, 0.0, -1), "mark"),
        ("mark", MarkPrice("X", 1, 100.0, 1.0, NAN, float("inf"), -1), "funding_rate"),
        ("mark", MarkPrice("X", 1, 100.0, 1.0, NAN, 0.0, -2), "next_funding_time"),
        ("liquidation", Liquidation("X", 1, "long", 0.0, 1.0, NAN, True, 1), "price"),
        ("liquidation", Liquidation("X", 1, "long", 1.0, NAN, NAN, True, 1), "qty"),
    ],
)
def test_a_perpetuals_record_no_market_has_is_refused_by_its_field(kind, record, said) -> None:
    with pytest.raises(enc.BusFormatError, match=f"records\\[0\\]\\.{said} = "):
        enc.decode(kind, enc.encode([record], "ws"), "X")


def test_trades_fetched_late_go_in_their_place_by_id() -> None:
    pub, (feed, state) = Publisher(CONFIG, "binance"), reader()
    for i in (1, 2, 6, 7):  # 3-5 skipped by the stream: the collector fetches them later
        pub.on_record(trade(i))
    carry(pub, feed)
    assert feed.trade_stats["BTCUSDT"].gaps == 1
    for i in (5, 3, 4):
        pub.on_record(trade(i))
    ids = carry(pub, feed)
    assert any(".b3-5." in i for i in ids)  # one backfill message, in id order
    assert state.trades["BTCUSDT"].frame()["trade_id"].tolist() == list(range(1, 8))
    assert feed.trade_stats["BTCUSDT"].backfilled == 3


def test_held_records_beyond_the_bound_let_the_oldest_go_and_count_them() -> None:
    pub = Publisher(BusConfig(CONFIG.url, buffer_limit=10), "binance")
    for i in range(1, 8):
        pub.on_record(trade(i))
    pub._seal()
    for i in range(8, 15):
        pub.on_record(trade(i))
    pub._seal()  # 14 held > 10: the first message (7 trades) goes
    assert pub.dropped == 7 and pub.status()["held"] == 7


class CollectorBook:
    """A collector's book with the publisher hearing of it, as a feed wires them."""

    def __init__(self, pub: Publisher):
        self.book, self.pub = OrderBook("BTCUSDT"), pub

    def snapshot(self, lid: int, bids: dict[float, float], asks: dict[float, float]) -> None:
        self.book.on_snapshot(
            BookSnapshot(
                "BTCUSDT", lid, sorted(bids.items(), reverse=True), sorted(asks.items()), 0
            )
        )
        if self.book.synced:
            self.pub.on_book(self.book, None, (), (), 0)

    def delta(self, d: BookDelta) -> None:
        was = self.book.last_update_id if self.book.synced else None
        self.book.on_delta(d)
        self.pub.on_book(self.book, was, d.bids, d.asks, d.event_time)


def test_books_rebuilt_by_readers_equal_the_collectors_through_gaps_and_resyncs() -> None:
    rng = random.Random(5)
    pub = Publisher(BusConfig(CONFIG.url, snapshot_interval=1e9), "binance")
    feed, _ = reader()
    late, _ = reader()  # joins after the first messages: waits for a whole book
    collector = CollectorBook(pub)
    bids = {100.0 - i: 1.0 + i for i in range(30)}
    asks = {101.0 + i: 1.0 + i for i in range(30)}
    collector.snapshot(100, bids, asks)
    uid, checked = 100, 0
    for step in range(400):
        first = uid + 1
        uid += rng.randint(1, 3)
        d = BookDelta(
            "BTCUSDT",
            first,
            uid,
            [(round(100.0 - rng.randint(0, 40), 1), rng.choice([0.0, 2.0, 3.5]))],
            [(round(101.0 + rng.randint(0, 40), 1), rng.choice([0.0, 1.0]))],
            step,
        )
        if step == 150:  # the collector misses an update: its book resyncs from a new snapshot
            uid += 5
            d = BookDelta("BTCUSDT", first + 5, uid, d.bids, d.asks, step)
        collector.delta(d)
        if not collector.book.synced:
            collector.snapshot(
                uid,
                {p: q for p, q in collector_levels(rng, 100.0, -1)},
                {p: q for p, q in collector_levels(rng, 101.0, 1)},
            )
        pub._seal()
        while pub._outbox:
            msg = pub._outbox.popleft()
            feed.on_message(msg.subject, msg.payload)
            if step >= 160:
                late.on_message(msg.subject, msg.payload)
        if step == 200:  # a periodic whole book: the late reader syncs from it
            pub._snapshot_due["BTCUSDT"] = 0.0
        want = (collector.book.bids(), collector.book.asks(), collector.book.last_update_id)
        view = feed.book_view("BTCUSDT", 10_000)
        assert view.synced and (view.bids, view.asks, view.last_update_id) == want
        if step > 200:
            late_view = late.book_view("BTCUSDT", 10_000)
            assert late_view.synced and (late_view.bids, late_view.asks) == want[:2]
            checked += 1
        elif step >= 160:
            assert not late.book_view("BTCUSDT", 10).synced  # joined mid-chain: no book yet
    assert checked > 150


def collector_levels(rng: random.Random, start: float, sign: int) -> list[tuple[float, float]]:
    return [(start + sign * i, float(rng.randint(1, 5))) for i in range(25)]


def test_a_break_in_the_chain_on_the_bus_waits_for_the_next_whole_book() -> None:
    feed, _ = reader()
    state = enc.BookState("BTCUSDT", 10, [(100.0, 1.0)], [(101.0, 1.0)], 0, "update id chain", True)
    feed.on_message("marketlab.binance.book.BTCUSDT", enc.encode([state], "ws"))
    assert feed.book_view("BTCUSDT", 5).synced
    lost = enc.BookChange("BTCUSDT", 11, 12, [(100.0, 2.0)], [], 0)  # 10 → 11 never arrived
    feed.on_message("marketlab.binance.book.BTCUSDT", enc.encode([lost], "ws"))
    view = feed.book_view("BTCUSDT", 5)
    assert not view.synced and "gap" in view.reason
    later = enc.BookState(
        "BTCUSDT", 12, [(100.0, 2.0)], [(101.0, 1.0)], 0, "update id chain", False
    )
    feed.on_message("marketlab.binance.book.BTCUSDT", enc.encode([later], "ws"))
    view = feed.book_view("BTCUSDT", 5)
    assert view.synced and view.bids == [(100.0, 2.0)] and view.last_update_id == 12


def test_a_message_sent_again_after_later_ones_is_taken_once_in_its_place() -> None:
    pub, (feed, state) = Publisher(CONFIG, "binance"), reader()
    sealed = []
    for batch in ([1, 2], [3, 4], [5, 6]):
        for i in batch:
            pub.on_record(trade(i))
        pub._seal()
        sealed.append(pub._outbox.pop())
    first, lost, last = sealed
    for msg in (first, last, lost, last, lost):  # [3, 4] landed after [5, 6]; then both again
        feed.on_message(msg.subject, msg.payload)
    assert state.trades["BTCUSDT"].frame()["trade_id"].tolist() == [1, 2, 3, 4, 5, 6]
    assert feed.duplicates == 4 and feed.trade_stats["BTCUSDT"].backfilled == 2


def test_a_change_of_another_chain_arriving_late_is_never_applied() -> None:
    feed, _ = reader()
    topic = "marketlab.binance.book.BTCUSDT"
    fresh = enc.BookState("BTCUSDT", 50, [(100.0, 1.0)], [(101.0, 1.0)], 0, "update id chain", True)
    feed.on_message(topic, enc.encode([fresh], "ws"))
    # an update of the collector's previous chain (40 → 60), sent again after its new whole book:
    # it overlaps the book's id, so it is of no chain the book is on: dropped and counted, the
    # book still right at 50
    stale = enc.BookChange("BTCUSDT", 40, 60, [(100.5, 9.0)], [], 0)
    feed.on_message(topic, enc.encode([stale], "ws"))
    view = feed.book_view("BTCUSDT", 5)
    assert view.synced and view.last_update_id == 50 and view.bids == [(100.0, 1.0)]
    assert feed.bad_messages == 1 and "another chain" in feed.last_bad_message
    feed.on_message(
        topic, enc.encode([enc.BookChange("BTCUSDT", 50, 51, [(100.0, 2.0)], [], 0)], "ws")
    )
    view = feed.book_view("BTCUSDT", 5)
    assert view.synced and view.last_update_id == 51 and view.bids == [(100.0, 2.0)]
    # a change from beyond the book (52-53 never arrived): out of sync until a whole book
    feed.on_message(
        topic, enc.encode([enc.BookChange("BTCUSDT", 53, 54, [(100.5, 9.0)], [], 0)], "ws")
    )
    view = feed.book_view("BTCUSDT", 5)
    assert not view.synced and "gap on the bus" in view.reason
    assert (100.5, 9.0) not in feed.books["BTCUSDT"].book.bids()
    again = enc.BookState(
        "BTCUSDT", 54, [(100.0, 2.0)], [(101.0, 1.0)], 0, "update id chain", False
    )
    feed.on_message(topic, enc.encode([again], "ws"))
    assert feed.book_view("BTCUSDT", 5).bids == [(100.0, 2.0)]
    assert feed.bad_messages == 1  # a gap is no bad message: messages can be missed


def test_a_fallback_venues_records_stay_off_the_exchanges_subjects() -> None:
    from marketlab import Lab
    from marketlab.lab.bus_link import attach

    lab = Lab(["BTCUSDT"], fallback="okx", publish="nats://127.0.0.1:4222")
    pub = lab._publisher
    seen: list[int] = []
    lab.subscribe(lambda r: seen.append(r.trade_id))
    attach(pub, lab._state, lab._failover)
    lab._failover.deliver(trade(7), "okx:ws")  # what the fallback venue's feed hands the Lab
    assert not pub._open and seen == [7]  # other subscribers still hear of it
    lab._state.on_trade(trade(8), "ws")  # the exchange's own
    assert [r.trade_id for r in pub._open[("trade", "BTCUSDT", False)]] == [8] and seen == [7, 8]


def test_a_quiet_book_is_still_sent_whole_and_a_silent_one_goes_out_of_sync() -> None:
    pub = Publisher(BusConfig(CONFIG.url, snapshot_interval=10.0), "binance")
    feed, _ = reader()
    feed.bus = BusSource(pub.config)
    collector = CollectorBook(pub)
    collector.snapshot(100, {100.0: 1.0}, {101.0: 1.0})
    carry(pub, feed)
    now = time.monotonic()
    pub.quiet_books(now + 5)  # within the interval: nothing
    assert not pub._open
    pub.quiet_books(now + 11)  # no change for 10 s: the book goes out whole all the same
    assert [type(r).__name__ for r in pub._open[("book", "BTCUSDT", False)]] == ["BookState"]
    carry(pub, feed)
    feed.check_books(time.monotonic() + 29)
    assert feed.book_view("BTCUSDT", 5).synced  # heard of within three intervals
    feed.check_books(time.monotonic() + 31)  # the collector has gone quiet: it may be gone
    view = feed.book_view("BTCUSDT", 5)
    assert not view.synced and "no word of this book" in view.reason
    pub._snapshot_due["BTCUSDT"], pub._quiet_check = 0.0, 0.0
    pub.quiet_books(time.monotonic())  # it speaks again: the reader syncs from the whole book
    carry(pub, feed)
    assert feed.book_view("BTCUSDT", 5).bids == [(100.0, 1.0)]


def test_a_writer_takes_nothing_past_a_delivery_it_did_not_see() -> None:
    # A durable writer acknowledges with AckPolicy.ALL: a message handed to a fetch that had
    # already given up would be covered by the next acknowledgement, unread. A hole in the
    # consumer's delivery numbers stops the batch there (the consumer is then made again).
    from types import SimpleNamespace

    pub, (feed, state) = Publisher(CONFIG, "binance"), reader()
    sent = []
    for i in range(1, 7):
        pub.on_record(trade(i))
        pub._seal()
        sent.append(pub._outbox.popleft())

    def delivered(seq: int, msg) -> SimpleNamespace:
        meta = SimpleNamespace(sequence=SimpleNamespace(consumer=seq, stream=seq), num_pending=0)
        return SimpleNamespace(subject=msg.subject, data=msg.payload, metadata=meta)

    taken, lost = feed._take_in_order([delivered(1, sent[0]), delivered(2, sent[1])])
    assert len(taken) == 2 and lost == ""
    taken, lost = feed._take_in_order(
        [delivered(3, sent[2]), delivered(5, sent[4]), delivered(6, sent[5])]
    )
    assert len(taken) == 1 and "delivery 5 after 3" in lost
    assert state.trades["BTCUSDT"].frame()["trade_id"].tolist() == [1, 2, 3]  # nothing past it
