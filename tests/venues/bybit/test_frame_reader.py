"""The compiled reader of Bybit spot pushes (csrc/bybit.c) against its twin, the Python decoder
(msgspec's typed structs): whatever the compiled reader reads, it reads to exactly the records
the decoder gives; it reads every push the simulator's face sends; and it leaves (None) what is
unusual, which the decoder then takes and names."""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import sys
import threading
import time
from typing import Any

import aiohttp
import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketlab.native import COMPILED, takes_in_order
from marketlab.records import BookTicker, Kline, Ticker, Trade
from marketlab.sim import SimExchange
from marketlab.venues import bybit
from marketlab.venues.bybit.frames import BYBIT_VALUES, BookMessage, compiled_reader
from tests.conftest import START
from tests.venues.bybit.test_protocol import (
    BOOK_DELTA,
    BOOK_L1,
    BOOK_SNAPSHOT,
    CONTROL,
    KLINE,
    KLINE_SPOT,
    TICKER,
    TRADE,
)

PURE = os.environ.get("MARKETLAB_PURE_PYTHON", "") not in ("", "0")
needs_compiled = pytest.mark.skipif(
    not COMPILED, reason="the compiled reader is not in use (MARKETLAB_PURE_PYTHON or not built)"
)

# The topics of the frames above, and what a Lab on two symbols subscribes
TOPICS = [
    "publicTrade.BTCUSDT",
    "tickers.BTCUSDT",
    "orderbook.50.BTCUSDT",
    "orderbook.1.BTCUSDT",
    "kline.5.BTCUSDT",
    "kline.1.BTCUSDC",
]


def same(a: Any, b: Any) -> bool:
    """Equal to the bit: the same types, floats with the same sign (0.0 is not -0.0) and NaN
    where the other has NaN (which == never says)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
        )
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, msgspec.Struct):
        return same(msgspec.structs.astuple(a), msgspec.structs.astuple(b))
    return bool(a == b)


def check(read: Any, frame: bytes) -> list[Any] | None:
    """The compiled reader's records of ``frame``, which must be the decoder's to the bit (and
    the decoder must take the frame) whenever it reads it."""
    got = read(frame)
    if got is not None:
        want = bybit.BybitDecoder().decode(frame)
        assert same(got, want), (frame, got, want)
    return got


@pytest.fixture
def read() -> Any:
    reader = compiled_reader(TOPICS)
    assert reader is not None
    return reader


def test_without_the_compiled_part_the_decoder_reads_every_frame():
    if COMPILED:
        assert compiled_reader(TOPICS) is not None
    else:
        assert compiled_reader(TOPICS) is None


@needs_compiled
def test_the_records_take_the_values_in_the_order_the_reader_declares():
    records = {
        "trade": Trade,
        "ticker": Ticker,
        "kline": Kline,
        "book": BookMessage,
        "book_ticker": BookTicker,
    }
    assert set(BYBIT_VALUES) == set(records)
    for name, cls in records.items():
        assert takes_in_order(cls, BYBIT_VALUES[name]), name  # no adapter on the hot path


@needs_compiled
@pytest.mark.parametrize(
    "frame", [TRADE, TICKER, BOOK_SNAPSHOT, BOOK_DELTA, BOOK_L1, KLINE, KLINE_SPOT]
)
def test_the_documented_pushes_are_read_compiled_as_the_decoder_reads_them(read, frame):
    got = check(read, frame)
    assert got, frame


@needs_compiled
@pytest.mark.parametrize("frame", CONTROL)
def test_answers_and_pongs_are_left_to_the_decoder(read, frame):
    assert read(frame) is None
    assert bybit.BybitDecoder().decode(frame)  # which knows them


@needs_compiled
def test_a_topic_not_added_and_a_calendar_month_are_left_to_the_decoder():
    read = compiled_reader(["publicTrade.ETHUSDT", "kline.M.BTCUSDT", "orderbook.rpi.BTCUSDT"])
    assert read is not None
    assert read(TRADE) is None  # BTCUSDT's trades: not a topic of this reader
    month = KLINE.replace(b"kline.5.", b"kline.M.").replace(b'"interval":"5"', b'"interval":"M"')
    month = month.replace(b"1672324800000", b"1672531200000")  # 2023-01-01, a month's open
    assert read(month) is None
    assert bybit.BybitDecoder().decode(month)[0].interval == "1M"


# --- hand-written edge cases ---------------------------------------------------------------

# Frames the reader must read (the decoder's records, to the bit)
USUAL = {
    "exponents": TRADE.replace(b'"118067.5"', b'"1.180675E5"').replace(b'"0.01"', b'"1e-2"'),
    "many digits": TRADE.replace(b'"118067.5"', b'"118067.50000000000000000000001"'),
    "many digits, rounded up": TRADE.replace(b'"0.01"', b'"0.1000000000000000055511151231257"'),
    "negative zero size": BOOK_DELTA.replace(b'"0"]', b'"-0.0"]', 1),
    "negative zero int text": BOOK_DELTA.replace(b'"0"]', b'"-0"]', 1),
    "a bare number": BOOK_DELTA.replace(b'["30247.20","30.028"]', b"[30247.20, 30.028e0]"),
    "huge": TICKER.replace(b'"141946527.22907118"', b'"1.7976931348623157e308"'),
    "tiny": TICKER.replace(b'"6780.866843"', b'"4.9e-324"'),
    "zero volume": TICKER.replace(b'"6780.866843"', b'"0"'),
    "negative change": TICKER.replace(b'"0.0196"', b'"-0.0196"'),
    "best bid and ask": TICKER.replace(
        b'"symbol":"BTCUSDT",', b'"symbol":"BTCUSDT","bid1Price":"1.5","ask1Size":"2",'
    ),
    "no trades": TRADE[: TRADE.index(b"[")] + b"[]}",
    "an empty side": BOOK_SNAPSHOT.replace(
        b'"b":[["16493.50","0.006"],["16493.00","0.100"]]', b'"b":[]'
    ),
    "level 1 with an empty side": BOOK_L1.replace(b'"a":[["106285.9","1.269905"]]', b'"a":[]'),
    "level 1 without seq": BOOK_L1.replace(b',"seq":75829523783', b""),
    "no candles": KLINE[: KLINE.index(b"[")] + b"[]," + KLINE[KLINE.index(b'"ts"') :],
    "unknown fields": TRADE.replace(
        b'"BT":false', b'"BT":{"x":[1,2.5e3,null,true,"s"]},"mP":"","L":"PlusTick"'
    ).replace(b'"type"', b'"id":"a","cts":1760117214051,"type"'),
    "whitespace": json.dumps(json.loads(TICKER), indent=2).encode(),
    "data before topic": b'{"data":'
    + BOOK_DELTA[BOOK_DELTA.index(b"{", 1) : BOOK_DELTA.index(b',"cts"')]
    + b',"type":"delta","ts":1687940967466,"topic":"orderbook.50.BTCUSDT"}',
    "type null on trades": TRADE.replace(b'"snapshot"', b"null"),
    "leading zeros in a trade id": TRADE.replace(
        b'"2290000000908760214"', b'"0000000000000000007"'
    ),
    "the largest trade id": TRADE.replace(b'"2290000000908760214"', b'"9223372036854775807"'),
}

# Frames the reader must leave to the decoder
UNUSUAL = {
    "an escape in the topic": TRADE.replace(b"publicTrade.BTCUSDT", b"publicTrade.BTC\\u0055SDT"),
    "an escape in a row's symbol": TRADE.replace(b'"s":"BTCUSDT"', b'"s":"BTC\\u0055SDT"', 1),
    "an escape in an unknown field": TRADE.replace(b'"S":"Sell"', b'"S":"Sell","x":"\\n"'),
    "non-ASCII in an unknown field": TRADE.replace(b'"S":"Sell"', b'"S":"Sell","x":"\xc3\xa9"'),
    "a row's field twice": TRADE.replace(b'"p":"118067.5"', b'"p":"118067.5","p":"1"'),
    "ts twice": TRADE.replace(b'"ts":1760117214060', b'"ts":1760117214060,"ts":1760117214061'),
    "data twice": KLINE.replace(b'"ts":', b'"data":[],"ts":'),
    "a row without its id": TRADE.replace(b'"i":"2290000000908760214",', b""),
    "a ticker without its change": TICKER.replace(b'"price24hPcnt":"0.0196",', b""),
    "a book without u": BOOK_SNAPSHOT.replace(b',"u":18521288', b""),
    "a push without ts": TRADE.replace(b'"ts":1760117214060,', b""),
    "ts null": TRADE.replace(b"1760117214060", b"null"),
    "a push without data": TRADE[: TRADE.index(b',"data"')] + b"}",
    "a time before 2010": TRADE.replace(b'"T":1760117214051', b'"T":1162304000000', 1),
    "a time as text": TRADE.replace(b'"T":1760117214051', b'"T":"1760117214051"', 1),
    "ts as a fraction": TRADE.replace(b"1760117214060", b"1760117214060.0"),
    "out of range": TICKER.replace(b'"141946527.22907118"', b'"1e309"'),
    "nan": TRADE.replace(b'"118067.5"', b'"nan"'),
    "a plus sign": TRADE.replace(b'"118067.5"', b'"+118067.5"'),
    "a leading zero": TRADE.replace(b'"118067.5"', b'"0118067.5"'),
    "a zero price": TRADE.replace(b'"118067.5"', b'"0"'),
    "a negative size": TRADE.replace(b'"0.01"', b'"-0.01"'),
    "a negative level size": BOOK_DELTA.replace(b'"30.028"', b'"-1"'),
    "a zero level price": BOOK_DELTA.replace(b'"30247.20"', b'"0.0"'),
    "a level of three": BOOK_DELTA.replace(b'["30247.20","30.028"]', b'["30247.20","30.028","1"]'),
    "u past int64": BOOK_DELTA.replace(b"177400507", b"9223372036854775808"),
    "a negative u": BOOK_DELTA.replace(b"177400507", b"-1"),
    "a trade id past int64": TRADE.replace(b'"2290000000908760214"', b'"9223372036854775808"'),
    "a trade id of 20 digits": TRADE.replace(b'"2290000000908760214"', b'"00000000000000000007"'),
    "a linear trade id": TRADE.replace(
        b'"2290000000908760214"', b'"20f43950-d8dd-5b31-9112-a178eb6023af"'
    ),
    "an empty trade id": TRADE.replace(b'"2290000000908760214"', b'""'),
    "a side of neither": TRADE.replace(b'"Sell"', b'"sell"'),
    "a row of another symbol": TRADE.replace(b'"s":"BTCUSDT"', b'"s":"ETHUSDT"', 1),
    "a ticker of another symbol": TICKER.replace(b'"symbol":"BTCUSDT"', b'"symbol":"ETHUSDT"'),
    "a delta ticker": TICKER.replace(b'"snapshot"', b'"delta"'),
    "a book of no type": BOOK_SNAPSHOT.replace(b'"type":"snapshot",', b""),
    "a book of another type": BOOK_SNAPSHOT.replace(b'"snapshot"', b'"partial"'),
    "a candle of another interval": KLINE.replace(b'"interval":"5"', b'"interval":"1"'),
    "a candle off its boundary": KLINE.replace(b"1672324800000", b"1672324860000"),
    "confirm as text": KLINE.replace(b'"confirm":false', b'"confirm":"false"'),
    "an answer's fields": TRADE.replace(b'"type"', b'"success":true,"type"'),
    "an op": TRADE.replace(b'"type"', b'"op":"subscribe","type"'),
    "trailing bytes": TRADE + b"x",
    "two objects": TRADE + TRADE,
    "truncated": TRADE[:-1],
    "a list": b"[" + TRADE + b"]",
    "empty": b"",
    "a topic of another shape": TRADE.replace(b'"publicTrade.BTCUSDT"', b'["publicTrade"]'),
}


@pytest.mark.parametrize("case", list(USUAL))
def test_what_the_reader_reads_is_to_the_bit_what_the_decoder_reads(case):
    records = bybit.BybitDecoder().decode(USUAL[case])  # a push the decoder takes
    assert all(not isinstance(r, bybit.SubscriptionResult | bybit.Pong) for r in records)
    if COMPILED:
        read = compiled_reader(TOPICS)
        assert check(read, USUAL[case]) is not None, case


@needs_compiled
@pytest.mark.parametrize("case", list(UNUSUAL))
def test_what_is_unusual_is_left_to_the_decoder(read, case):
    assert read(UNUSUAL[case]) is None, case


@needs_compiled
def test_only_bytes_are_read_and_bad_topics_are_refused_when_added(read):
    assert read(TRADE.decode()) is None  # a str frame: the decoder's
    assert read(bytearray(TRADE)) is None
    table = type(read.__self__)
    with pytest.raises(TypeError, match="must be callable"):
        table({"trade": Trade})
    with pytest.raises(ValueError, match="step > 0"):
        read.__self__.add(b"kline.M.X", "kline", "X", "X", 0, "M", "1M", 0, 0)
    with pytest.raises(ValueError, match="no kind"):
        read.__self__.add(b"x.X", "aggTrade", "X", "X", 0, "", "", 0, 0)


# --- numbers of every shape, in pushes of any key order and spacing ----------------------------

JSON_NUMBERS = st.from_regex(
    r"-?(0|[1-9][0-9]{0,24})(\.[0-9]{1,24})?([eE][+-]?[0-9]{1,3})?", fullmatch=True
)
NEAR_MISSES = st.from_regex(r"[-+0-9.eE]{1,8}", fullmatch=True) | st.sampled_from(
    ["-0", "-0.0", "00.5", "1.", ".5", "+1", "1e400", "nan", "Infinity", " 1", ""]
)
# Bybit's decimals ("118067.5", "0.000061")
DECIMALS = st.builds(lambda v, d: f"{v:.{d}f}", st.floats(1e-8, 1e7), st.integers(0, 10))


class _Bare(str):
    """Number text written bare (not quoted)."""


# a number field: Bybit's decimal text four times in five, else any JSON number, bare or as
# text, or a near miss (a push has up to ten numbers: most pushes keep to the rules)
NUMBER = st.integers(0, 4).flatmap(
    lambda k: DECIMALS if k else JSON_NUMBERS | JSON_NUMBERS.map(_Bare) | NEAR_MISSES
)


def _json(value: Any, rnd: random.Random) -> str:
    """``value`` as JSON, its keys in any order, with spaces anywhere a reader must take them."""

    def sp() -> str:
        return rnd.choice(["", "", " ", "\n "])

    if isinstance(value, _Bare):
        return str(value)
    if isinstance(value, dict):
        items = list(value.items())
        rnd.shuffle(items)
        return (
            "{"
            + ",".join(f"{sp()}{json.dumps(k)}{sp()}:{sp()}{_json(v, rnd)}" for k, v in items)
            + sp()
            + "}"
        )
    if isinstance(value, list):
        return "[" + ",".join(sp() + _json(v, rnd) for v in value) + sp() + "]"
    return json.dumps(value)


@st.composite
def pushes(draw: Any) -> bytes:
    kind = draw(st.sampled_from(["trade", "ticker", "book", "level1", "kline"]))
    ts = draw(st.integers(1_262_304_000_000 - 5, 4_102_444_800_000 + 5))

    def n() -> Any:
        return draw(NUMBER)

    if kind == "trade":
        rows = [
            {
                "T": ts,
                "s": "BTCUSDT",
                "S": draw(st.sampled_from(["Buy", "Sell"])),
                "v": n(),
                "p": n(),
                "i": str(draw(st.integers(0, 2**63))),
                "BT": False,
            }
            for _ in range(draw(st.integers(0, 3)))
        ]
        push: dict[str, Any] = {"topic": "publicTrade.BTCUSDT", "type": "snapshot", "data": rows}
    elif kind == "ticker":
        fields = [
            "lastPrice",
            "highPrice24h",
            "lowPrice24h",
            "prevPrice24h",
            "volume24h",
            "turnover24h",
            "price24hPcnt",
        ]
        data = {"symbol": "BTCUSDT"} | {f: n() for f in fields}
        if draw(st.booleans()):
            data |= {"bid1Price": n(), "ask1Size": n()}
        push = {"topic": "tickers.BTCUSDT", "type": "snapshot", "cs": 1, "data": data}
    elif kind in ("book", "level1"):
        levels = st.lists(st.tuples(NUMBER, NUMBER).map(list), max_size=3)
        data = {
            "s": "BTCUSDT",
            "b": draw(levels),
            "a": draw(levels),
            "u": draw(st.integers(-1, 2**63)),
            "seq": draw(st.integers(0, 2**40)),
        }
        topic = "orderbook.50.BTCUSDT" if kind == "book" else "orderbook.1.BTCUSDT"
        push = {"topic": topic, "type": draw(st.sampled_from(["snapshot", "delta"])), "data": data}
    else:
        start = 1_672_324_800_000 + 300_000 * draw(st.integers(-2, 2))
        row = {
            "start": start,
            "end": start + 299_999,
            "interval": "5",
            "confirm": False,
            "timestamp": ts,
        } | {f: n() for f in ("open", "close", "high", "low", "volume", "turnover")}
        push = {"topic": "kline.5.BTCUSDT", "type": "snapshot", "data": [row]}
    push["ts"] = ts
    return _json(push, random.Random(draw(st.integers(0, 2**16)))).encode()


@needs_compiled
@settings(max_examples=200, deadline=None)
@given(pushes())
def test_numbers_of_any_shape_read_as_msgspec_reads_them(frame):
    """Every push the decoder takes is read compiled (its numbers, msgspec's or not, are
    within JSON's grammar and the cursor's), to the same records."""
    read = compiled_reader(TOPICS)
    if check(read, frame) is None:
        with pytest.raises(bybit.FrameError):
            bybit.BybitDecoder().decode(frame)


# --- every push the simulator's face sends ------------------------------------------------------

FACE_TOPICS = [
    f"{prefix}.{symbol}"
    for symbol in ("BTCUSDT", "ETHUSDT")
    for prefix in (
        "publicTrade",
        "tickers",
        "orderbook.50",
        "orderbook.200",
        "orderbook.1",
        "kline.1",
        "kline.60",
        "kline.D",
        "kline.W",
    )
]


@needs_compiled
async def test_every_push_of_the_simulators_face_is_read_compiled_as_the_decoder_reads_it():
    frames: list[bytes] = []
    async with (
        SimExchange(
            ["BTCUSDT", "ETHUSDT"], speed=60, seed=7, start_time=START, history="30m"
        ) as sim,
        aiohttp.ClientSession() as http,
        http.ws_connect(sim.bybit_ws_url) as ws,
    ):
        for at in range(0, len(FACE_TOPICS), 10):
            await ws.send_str(
                bybit.subscribe_message(
                    [bybit.parse_topic(t) for t in FACE_TOPICS[at : at + 10]]
                ).decode()
            )
        loop = asyncio.get_running_loop()
        until = loop.time() + 2.5
        while loop.time() < until:
            msg = await ws.receive(timeout=5)
            assert msg.type == aiohttp.WSMsgType.TEXT
            frames.append(msg.data.encode())
    read = compiled_reader(FACE_TOPICS)
    seen: dict[str, int] = {}
    for frame in frames:
        topic = orjson.loads(frame).get("topic")
        got = check(read, frame)
        if topic is None:
            assert got is None  # the answers to the subscriptions
            continue
        assert got is not None, frame
        seen[topic.split(".")[0]] = seen.get(topic.split(".")[0], 0) + 1
    assert set(seen) == {"publicTrade", "tickers", "orderbook", "kline"}, seen


@needs_compiled
def test_threads_reading_while_topics_are_added_get_the_decoders_records():
    """Feeds' threads reading through one table while another adds topics to it (its slots
    and routes grow under them), the GIL let go inside every maker: each push is still read
    to the decoder's records."""

    def yielding(make: Any) -> Any:
        def made(*values: Any) -> Any:
            time.sleep(0)  # another thread runs here
            return make(*values)

        return made

    records = {"trade": Trade, "ticker": Ticker, "kline": Kline, "book": BookMessage}
    table = type(compiled_reader(TOPICS).__self__)(  # type: ignore[union-attr]
        {name: yielding(make) for name, make in (records | {"book_ticker": BookTicker}).items()}
    )
    table.add(b"publicTrade.BTCUSDT", "trade", "BTCUSDT", "BTCUSDT", 0, "", "", 0, 0)
    table.add(b"orderbook.50.BTCUSDT", "book", "BTCUSDT", "BTCUSDT", 50, "", "", 0, 0)
    pushes = [TRADE, BOOK_SNAPSHOT, BOOK_DELTA]
    wanted = [bybit.BybitDecoder().decode(p) for p in pushes]
    wrong: list[bytes] = []
    read: list[int] = []
    adding = True

    def work() -> None:
        while True:
            for push, want in zip(pushes, wanted, strict=True):
                if not same(table.read(push), want):
                    wrong.append(push)
            read.append(len(pushes))
            if not adding:
                return

    switching = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    threads = [threading.Thread(target=work) for _ in range(2)]
    deadline = time.monotonic() + 60
    try:
        for t in threads:
            t.start()
        k = 0
        # at least 3000 topics, and on until both threads have read while they were added (a
        # loaded machine may start a thread only after thousands of adds)
        while k < 3000 or (len(read) < 4 and time.monotonic() < deadline):
            name = f"X{k}USDT"
            table.add(f"publicTrade.{name}".encode(), "trade", name, name, 0, "", "", 0, 0)
            if k % 100 == 0:  # a topic added again takes its new route
                table.add(b"publicTrade.BTCUSDT", "trade", "BTCUSDT", "BTCUSDT", 0, "", "", 0, 0)
            k += 1
        read_while_adding = len(read)
    finally:
        adding = False
        for t in threads:
            t.join()
        sys.setswitchinterval(switching)
    assert wrong == []
    assert read_while_adding >= 4  # read while the topics were added, not only after
    assert len(table) == k + 2  # the topics added, and the two of the start
