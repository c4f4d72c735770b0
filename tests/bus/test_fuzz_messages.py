"""Fuzzing what comes off the bus (sans-I/O, no server): random bytes, real messages with bytes
flipped, inserted, deleted and cut, and real records with a field set to anything msgpack can
say. The decoder raises nothing but BusFormatError, and whatever it lets through holds values
a market has (checked here a second way); a reader's message handler never raises, never
fails after decoding, and the good messages between the hostile ones land exactly."""

from __future__ import annotations

import math
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketlab.bus import encoding as enc
from marketlab.bus.config import BusConfig
from marketlab.bus.reader import BusFeed, BusSource
from marketlab.lab.market_state import MarketState
from marketlab.records import (
    Funding,
    Interval,
    Kline,
    Liquidation,
    MarkPrice,
    OpenInterest,
    Ticker,
    Trade,
)
from tests.bus.hostile import kline, subject, ticker, trade

OTHER = "ETHUSDT"  # the hostile messages' symbol; the good ones are BTCUSDT's
MAX = 2**63 - 1
MAX_TIME = 4_102_444_800_000  # 2100-01-01 in ms: frames hold times in ns of int64
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def seeds(symbol: str) -> list[tuple[str, bytes]]:
    """One real message of each kind, as a collector encodes it."""
    state = enc.BookState(
        symbol, 10, [(100.0, 1.0), (99.0, 2.0)], [(101.0, 1.0)], 5, "update id chain", True
    )
    change = enc.BookChange(symbol, 10, 12, [(100.0, 0.0)], [(101.5, 3.0)], 6)
    open_k = Kline(
        symbol,
        Interval("1m"),
        kline(3).open_time,
        1.0,
        2.0,
        0.5,
        1.5,
        1.0,
        kline(3).close_time,
        float("nan"),
        -1,
        float("nan"),
        float("nan"),
        False,
        None,
    )
    return [
        ("trade", enc.encode([trade(7, symbol), trade(8, symbol)], "ws")),
        ("trade", enc.encode([trade(3, symbol)], "ws", backfill=True)),
        ("kline", enc.encode([kline(0, symbol)], "ws")),
        ("kline_open", enc.encode([open_k], "ws")),
        ("ticker", enc.encode([ticker(symbol)], "ws")),
        ("book", enc.encode([state, change], "ws")),
        (
            "mark",
            enc.encode([MarkPrice(symbol, 5, 100.5, 100.4, float("nan"), 1e-4, 28_800_000)], "ws"),
        ),
        ("funding", enc.encode([Funding(symbol, 28_800_000, -2e-4, float("nan"))], "ws")),
        ("open_interest", enc.encode([OpenInterest(symbol, 9, 1_234.5, float("nan"))], "ws")),
        (
            "liquidation",
            enc.encode(
                [
                    Liquidation(symbol, 11, "long", 99.5, 0.25, 99.0, True, 12),
                    Liquidation(symbol, 11, "short", 101.5, 0.5, float("nan"), True, 12),
                ],
                "ws",
            ),
        ),
    ]


SEEDS = seeds(OTHER)
KIND_OF_SEED = st.sampled_from(SEEDS)

# anything msgpack can say, small
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [0, -1, 1, MAX, MAX + 1, MAX_TIME, MAX_TIME + 1, 0.0, -0.0, 1e308, -1e-308, float("nan")]
    ),
    st.text(max_size=12),
    st.sampled_from(["", "1m", "7q", "buy", "sell", "state", "change", "BTCUSDT", OTHER, "100.5"]),
    st.binary(max_size=12),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    """A real message with bytes flipped, set, inserted, deleted, repeated or cut."""
    kind, payload = draw(KIND_OF_SEED)
    data = bytearray(payload)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "repeat", "cut"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[at] = draw(
                st.sampled_from(
                    [0x00, 0x7F, 0x80, 0xC0, 0xC1, 0xCB, 0xCF, 0xD3, 0xDC, 0xDD, 0xDE, 0xDF, 0xFF]
                )
            )
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=9))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 9))]
        elif op == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 32))]
        elif op == "cut":
            del data[at:]
    return kind, bytes(data)


@st.composite
def structured(draw: st.DrawFn) -> tuple[str, bytes]:
    """A real message decoded to plain maps, one field of the batch or of a record (or of a
    book's level) set to anything, dropped, or one added."""
    kind, payload = draw(KIND_OF_SEED)
    message = msgspec.msgpack.decode(payload)
    record = message["records"][draw(st.integers(0, len(message["records"]) - 1))]
    target = draw(st.sampled_from(["batch", "record", "record", "record", "level"]))
    where: dict[str, Any] = message if target == "batch" else record
    if target == "level" and "bids" in record:
        side = draw(st.sampled_from(["bids", "asks"]))
        levels = record[side] or [[100.0, 1.0]]
        levels[draw(st.integers(0, len(levels) - 1))] = [draw(VALUES), draw(VALUES)]
        record[side] = levels
    else:
        name = draw(st.sampled_from(sorted(where)))
        action = draw(st.sampled_from(["set", "set", "set", "drop", "add"]))
        if action == "set":
            where[name] = draw(VALUES)
        elif action == "drop":
            del where[name]
        else:
            where[draw(st.text(max_size=8))] = draw(VALUES)
    return kind, msgspec.msgpack.encode(message)


HOSTILE = st.one_of(
    mutated(), structured(), st.tuples(st.sampled_from(enc.KINDS), st.binary(max_size=300))
)


def sane(kind: str, r: Any, symbol: str) -> None:
    """What a record let through must hold, checked apart from the decoder's own checks."""
    assert r.symbol == symbol

    def ids(*values: Any, low: int = 0) -> None:
        assert all(type(v) is int and low <= v <= MAX for v in values), values

    def times(*values: Any) -> None:
        assert all(type(v) is int and 0 <= v <= MAX_TIME for v in values), values

    def amounts(*values: float, nan: bool = False, low_open: bool = False) -> None:
        for v in values:
            assert type(v) is float and not math.isinf(v)
            assert (nan and math.isnan(v)) or (v > 0 if low_open else v >= 0), v

    if isinstance(r, Trade):
        ids(r.trade_id)
        times(r.time, r.event_time)
        amounts(r.price, low_open=True)
        amounts(r.qty)
        assert r.side in ("buy", "sell")
    elif isinstance(r, Kline):
        times(r.open_time, r.close_time, *([] if r.event_time is None else [r.event_time]))
        ids(r.trades, low=-1)
        assert r.close_time >= r.open_time and Interval(r.interval)
        amounts(r.open, r.high, r.low, r.close, r.volume)
        amounts(r.quote_volume, r.taker_buy_volume, r.taker_buy_quote_volume, nan=True)
    elif isinstance(r, Ticker):
        times(r.event_time, r.open_time, r.close_time)
        ids(r.first_trade_id, r.last_trade_id, r.trades, low=-1)
        amounts(r.last)
        floats = [getattr(r, f) for f in Ticker.__struct_fields__ if type(getattr(r, f)) is float]
        assert not any(math.isinf(v) for v in floats)
    elif isinstance(r, MarkPrice):
        times(r.event_time)
        amounts(r.mark, r.index, r.settle_estimate, nan=True)
        assert type(r.funding_rate) is float and not math.isinf(r.funding_rate)
        assert type(r.next_funding_time) is int and -1 <= r.next_funding_time <= MAX_TIME
    elif isinstance(r, Funding):
        times(r.funding_time)
        assert type(r.rate) is float and math.isfinite(r.rate)
        amounts(r.mark, nan=True)
    elif isinstance(r, OpenInterest):
        times(r.time)
        amounts(r.open_interest)
        amounts(r.value, nan=True)
    elif isinstance(r, Liquidation):
        times(r.time, r.event_time)
        assert r.side in ("long", "short") and type(r.sampled) is bool
        amounts(r.price, low_open=True)
        amounts(r.qty)
        amounts(r.order_price, nan=True)
    else:
        ids(r.last_update_id)
        times(r.event_time)
        for side in (r.bids, r.asks):
            for price, qty in side:
                amounts(price, low_open=True)
                amounts(qty)
        if isinstance(r, enc.BookChange):
            ids(r.prev_id)
            assert r.prev_id < r.last_update_id
        else:
            bids, asks = [p for p, _ in r.bids], [p for p, _ in r.asks]
            assert bids == sorted(set(bids), reverse=True) and asks == sorted(set(asks))
            assert not (bids and asks) or bids[0] < asks[0]
            assert not r.cut or (bids and asks)


def decoded_or_refused(kind: str, payload: bytes, symbol: str) -> Any:
    """The batch, or None when the decoder refused it with its own error (nothing else)."""
    try:
        batch = enc.decode(kind, payload, symbol)
    except enc.BusFormatError as exc:
        assert str(exc)  # says why
        return None
    for r in batch.records:
        sane(kind, r, symbol)
    return batch


def reader() -> tuple[BusFeed, MarketState]:
    state = MarketState(["BTCUSDT", OTHER], [Interval("1m")], 10_000, 100, lambda k: None)
    feed = BusFeed(
        ["BTCUSDT", OTHER],
        ["1m"],
        ["trades", "ticker", "book", "klines"],
        None,
        state,
        source=BusSource(BusConfig("nats://127.0.0.1:4222")),
        exchange="binance",
    )
    return feed, state


@FUZZ
@given(HOSTILE)
def test_the_decoder_raises_only_its_own_error_and_lets_through_only_sane_records(
    message: tuple[str, bytes],
) -> None:
    kind, payload = message
    decoded_or_refused(kind, payload, OTHER)
    decoded_or_refused(kind, payload, "BTCUSDT")  # another symbol's: refused, never taken


def test_the_seeds_themselves_are_taken() -> None:
    for kind, payload in SEEDS:
        assert decoded_or_refused(kind, payload, OTHER) is not None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(HOSTILE, st.sampled_from(["own", "own", "good's", "strange"])), max_size=12),
    st.randoms(use_true_random=False),
)
def test_a_reader_takes_every_good_message_whatever_comes_between(
    hostile: list[tuple[tuple[str, bytes], str]], rng: Any
) -> None:
    feed, state = reader()
    good_state = enc.BookState(
        "BTCUSDT", 100, [(100.0, 1.0)], [(101.0, 1.0)], 0, "update id chain", True
    )
    good: list[tuple[str, bytes]] = [(subject("book"), enc.encode([good_state], "ws"))]
    for i in range(1, 9):
        good.append((subject("trade"), enc.encode([trade(2 * i - 1), trade(2 * i)], "ws")))
        change = enc.BookChange(
            "BTCUSDT", 99 + i, 100 + i, [(100.0, float(i))], [(101.0 + i, 1.0)], i
        )
        good.append((subject("book"), enc.encode([change], "ws")))
    good.append((subject("kline"), enc.encode([kline(0)], "ws")))
    stream = [(s, p, True) for s, p in good]
    refused = 0
    for (kind, payload), where in hostile:
        if where == "own":  # on its own symbol's subject: maybe taken, if sane
            subj = subject(kind, OTHER)
        elif where == "strange":  # a subject no collector uses
            subj = rng.choice(
                [
                    "marketlab.binance.orders.BTCUSDT",
                    "marketlab.binance.trade",
                    "marketlab..book.",
                    f"marketlab.binance.{kind}.BTCUSDT.x",
                    "other.binance.trade.BTCUSDT",
                ]
            )
        else:  # on the good messages' subject: a record of another symbol, refused
            subj = subject(kind, "BTCUSDT")
        accepted, symbol = False, ""
        try:
            _, k, symbol = enc.parse_subject(subj)
            accepted = decoded_or_refused(k, payload, symbol) is not None
        except enc.BusFormatError:
            pass
        if accepted and symbol == "BTCUSDT":
            continue  # a mutation made a well-formed message of the good symbol: it would count
        refused += not accepted
        stream.insert(rng.randint(1, len(stream)), (subj, payload, False))
    for subj, payload, _ in stream:
        feed.on_message(subj, payload)  # never raises
    assert feed.handler_errors == 0
    assert feed.bad_messages >= refused  # plus any change of another chain on OTHER's book
    assert state.trades["BTCUSDT"].frame()["trade_id"].tolist() == list(range(1, 17))
    view = feed.book_view("BTCUSDT", 100)
    assert view.synced and view.last_update_id == 108
    assert view.bids == [(100.0, 8.0)] and view.asks == [(101.0, 1.0)] + [
        (101.0 + i, 1.0) for i in range(1, 9)
    ]
    closed = state.klines[("BTCUSDT", "1m")].frame()
    assert closed.index.size == 1 and closed["close"].iloc[0] == 100.5
    # what the other symbol took is sane all the way to its frames and book
    other = state.trades[OTHER].frame()
    assert other.empty or (other["price"] > 0).all()
    book = feed.book_view(OTHER, 1000)
    if book.synced:
        assert [p for p, _ in book.bids] == sorted((p for p, _ in book.bids), reverse=True)
        assert all(q > 0 and math.isfinite(q) for _, q in book.bids + book.asks)
