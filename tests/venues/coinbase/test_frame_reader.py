"""The compiled reader of Coinbase's hot channels (csrc/coinbase.c) against the Python decoder
(msgspec's typed structs, ``CoinbaseDecoder.decode``): whatever message the compiled reader
gives, it is the one the decoder gives, to the bit; it reads every message the simulator's
Coinbase face sends on those channels; and it leaves to the decoder (None) everything else and
everything unusual, which the decoder then reads or names."""

from __future__ import annotations

import dataclasses
import json
import os
import struct
import sys
import threading
import time
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.sync.client import connect

from marketlab.native import COMPILED, takes_in_order
from marketlab.records import Ticker, Trade
from marketlab.sim import SimExchange
from marketlab.venues import coinbase as cb
from marketlab.venues.coinbase.frames import COINBASE_RECORDS, frame_reader
from tests.venues.coinbase.test_protocol import FRAMES

pytestmark = pytest.mark.skipif(
    not COMPILED and os.environ.get("MARKETLAB_PURE_PYTHON", "") not in ("", "0"),
    reason="MARKETLAB_PURE_PYTHON asks for the pure-Python twins",
)

HOT = ("l2_data", "market_trades", "ticker", "ticker_batch", "heartbeats")
decoder = cb.CoinbaseDecoder()


def same(a: Any, b: Any) -> bool:
    """Equal to the bit: the same types, floats of the same bits (NaN, -0.0), all the way in."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, msgspec.Struct):
        return same(msgspec.structs.astuple(a), msgspec.structs.astuple(b))
    if dataclasses.is_dataclass(a):
        return same(
            [getattr(a, f.name) for f in dataclasses.fields(a)],
            [getattr(b, f.name) for f in dataclasses.fields(b)],
        )
    return bool(a == b)


def python(frame: bytes) -> Any:
    """The decoder's message, or the error it names the frame with."""
    try:
        return decoder.decode(frame)
    except (cb.FrameError, cb.UnknownStreamError) as exc:
        return exc


def check(frame: bytes, read: Any = None) -> Any:
    """The compiled reader's answer for ``frame``, after checking that a message it gives is the
    decoder's to the bit."""
    got = (read or frame_reader())(frame)
    if got is not None:
        want = python(frame)
        assert isinstance(want, cb.Message), (frame, want)
        assert same(got, want), (frame, got, want)
    return got


def envelope(
    channel: str, events: Any, seq: int = 7, ts: str = "2026-01-01T00:00:01.500123456Z"
) -> bytes:
    body = {"channel": channel, "client_id": "", "timestamp": ts, "sequence_num": seq}
    return json.dumps(body | {"events": events}, separators=(",", ":")).encode()


def trade(tid: str = "700123", product: str = "BTC-USD", **over: Any) -> dict[str, Any]:
    row = {
        "trade_id": tid,
        "product_id": product,
        "price": "65000.12",
        "size": "0.015",
        "side": "BUY",
        "time": "2026-01-01T00:00:01.250000Z",
    }
    return row | over


def trades(*rows: dict[str, Any], **event: Any) -> bytes:
    return envelope("market_trades", [{"type": "update", "trades": list(rows)} | event])


def level(side: str = "bid", price: Any = "65000.1", qty: Any = "0.5", **over: Any) -> Any:
    row = {"side": side, "event_time": "2026-01-01T00:00:01.2Z", "price_level": price}
    return row | {"new_quantity": qty} | over


def book(*events: tuple[str, str, list[Any]]) -> bytes:
    return envelope(
        "l2_data", [{"type": t, "product_id": p, "updates": updates} for t, p, updates in events]
    )


def ticker(channel: str = "ticker", **over: Any) -> bytes:
    row = {
        "type": "ticker",
        "product_id": "BTC-USD",
        "price": "65000.5",
        "volume_24_h": "1234.5678",
        "low_24_h": "64000",
        "high_24_h": "66000.25",
        "low_52_w": "15460",
        "high_52_w": "73000",
        "price_percent_chg_24_h": "-1.25",
        "best_bid": "65000.4",
        "best_bid_quantity": "0.3",
        "best_ask": "65000.6",
        "best_ask_quantity": "0.7",
    }
    row = {k: v for k, v in (row | over).items() if v is not None}
    return envelope(channel, [{"type": "update", "tickers": [row]}])


def beats(**event: Any) -> bytes:
    return envelope("heartbeats", [event])


# --- frames as the simulator's Coinbase face sends them ------------------------------------


@pytest.fixture(scope="module")
def sim_frames() -> list[bytes]:
    """Frames of every channel the face serves, over a real WebSocket: each channel's snapshot
    on subscribing, then a market run at 120 times its pace until a heartbeat has come (about a
    second) and 1.5 s more."""
    subscriptions = [
        {"type": "subscribe", "channel": "heartbeats"},
        *(
            {"type": "subscribe", "channel": ch, "product_ids": ["BTC-USDT", "ETH-USDT"]}
            for ch in ("market_trades", "ticker", "ticker_batch", "level2")
        ),
    ]
    frames: list[bytes] = []
    with (
        SimExchange(["BTCUSDT", "ETHUSDT"], speed=120, seed=5) as sim,
        connect(sim.coinbase_ws_url, max_size=None) as ws,
    ):
        for message in subscriptions:
            ws.send(json.dumps(message))
        start, beats = time.monotonic(), 0  # heartbeats come once a second of the wall clock
        while time.monotonic() < start + (1.5 if beats else 20.0):
            try:
                got = ws.recv(timeout=0.5)
            except TimeoutError:
                continue
            frames.append(got if isinstance(got, bytes) else got.encode())
            beats += b'"channel":"heartbeats"' in frames[-1]
    return frames


def test_every_message_of_the_hot_channels_the_face_sends_is_read_as_the_decoder_reads_it(
    sim_frames,
):
    read = frame_reader()
    channels: dict[str, int] = {}
    kinds: set[str] = set()
    for frame in sim_frames:
        channel = json.loads(frame)["channel"]
        got = check(frame, read)
        if channel in HOT:
            assert got is not None, frame
            channels[channel] = channels.get(channel, 0) + 1
            kinds.update(
                e.action if isinstance(e, cb.BookMessage) else type(e).__name__ for e in got.events
            )
        else:
            assert got is None, frame  # subscriptions: the decoder's
    assert set(channels) == set(HOT), channels
    assert {"snapshot", "update", "Trade", "Ticker", "Heartbeat"} <= kinds
    assert read.__self__.products() == 2  # type: ignore[attr-defined]


def test_the_docs_examples_of_the_hot_channels_are_read_and_the_others_left():
    for frame in FRAMES:
        channel = json.loads(frame).get("channel")
        assert (check(frame) is not None) == (channel in HOT), frame


# --- hand-written cases ----------------------------------------------------------------------

# read exactly as the decoder reads them
READ = {
    "a trade": trades(trade()),
    "trades of two products, newest first, sorted oldest first per product": trades(
        trade("12"), trade("9", "ETH-USD"), trade("11"), trade("10", "ETH-USD"), trade("10")
    ),
    "trades with one id twice keep their order": trades(
        trade("5", price="1"), trade("5", price="2"), trade("4")
    ),
    "18-digit and zero-led trade ids": trades(trade("999999999999999999"), trade("000000000")),
    "a taker buy": trades(trade(side="SELL")),
    "no trades": trades(),
    "no events": envelope("market_trades", []),
    "an event without its type": envelope("market_trades", [{"trades": [trade()]}]),
    "numbers with exponents and many digits": trades(
        trade(price="6.500012e4", size="1E-3"),
        trade("1", price="0.12345678901234567890123", size="123456789012345678901234567890"),
        trade("2", price="1e-300", size="1.7976931348623157e308"),
    ),
    "negative zero sizes": book(
        ("update", "BTC-USD", [level(qty="-0"), level(qty="-0.0"), level("offer", qty=-0.0)])
    ),
    "bare numbers": trades(trade(price=65000.12, size=0)),
    "a book snapshot": book(
        (
            "snapshot",
            "BTC-USD",
            [level(price=str(1000 - i), qty="1.5") for i in range(200)]
            + [level("offer", price=str(1001 + i)) for i in range(150)],
        )
    ),
    "updates of one product in one message are one update": book(
        ("update", "BTC-USD", [level(), level("offer")]),
        ("update", "ETH-USD", [level(price="3000")]),
        ("update", "BTC-USD", [level("offer", price="65001")]),
    ),
    "a snapshot then an update: two": book(
        ("snapshot", "BTC-USD", [level()]),
        ("update", "BTC-USD", [level("offer")]),
        ("update", "BTC-USD", [level(qty="0")]),
    ),
    "an update then a snapshot then an update: three": book(
        ("update", "BTC-USD", [level()]),
        ("snapshot", "BTC-USD", [level("offer")]),
        ("update", "BTC-USD", [level(qty="0")]),
    ),
    "no updates": book(("update", "BTC-USD", [])),
    "a level without its event time": book(
        ("update", "BTC-USD", [{"side": "bid", "price_level": "1", "new_quantity": "2"}])
    ),
    "a ticker": ticker(),
    "a ticker_batch, without the best bid and ask": ticker(
        "ticker_batch",
        best_bid=None,
        best_bid_quantity=None,
        best_ask=None,
        best_ask_quantity=None,
    ),
    "a ticker with the price alone": ticker(
        volume_24_h=None,
        low_24_h=None,
        high_24_h=None,
        price_percent_chg_24_h=None,
        best_bid=None,
        best_bid_quantity=None,
        best_ask=None,
        best_ask_quantity=None,
    ),
    "a ticker down 100%: no open": ticker(price_percent_chg_24_h="-100"),
    "a ticker down more than 100%": ticker(price_percent_chg_24_h="-150.5"),
    "a ticker a hair above -100%": ticker(price_percent_chg_24_h="-99.99999999999999"),
    "a ticker with a tiny change": ticker(price_percent_chg_24_h="1e-300"),
    "a heartbeat counting in a string": beats(
        current_time="2026-01-01 00:00:01", heartbeat_counter="3049"
    ),
    "a heartbeat counting in a number": beats(heartbeat_counter=14191),
    "a heartbeat with nothing": beats(),
    "a heartbeat with an 18-digit count": beats(heartbeat_counter="123456789012345678"),
    "unknown fields everywhere": envelope(
        "market_trades",
        [{"type": "update", "x": [1, {"y": None}], "trades": [trade(extra={"a": [True, 1.5]})]}],
    )[:-1]
    + b',"more":{"deep":[[[]]],"n":-1.5e-3,"t":false}}',
    "a second's worth of whitespace": b' \n{ "channel" : "heartbeats" ,\t"timestamp" :\r\n'
    b' "2026-01-01T00:00:01Z" , "sequence_num" : 3 , "events" : [ { "heartbeat_counter" :'
    b" 1 } , { } ] }\n ",
    "no client_id, as production sends the envelope": b'{"channel":"ticker_batch",'
    b'"timestamp":"2026-01-01T00:00:05.000000001Z","sequence_num":12,"events":[{"type":'
    b'"update","tickers":[{"type":"ticker","product_id":"ETH-USD","price":"3000.5",'
    b'"volume_24_h":"10","low_24_h":"2900","high_24_h":"3100","price_percent_chg_24_h":"1.5"}]}]}',
    "events before the channel": b'{"events":[{"type":"update","trades":[]}],"timestamp":'
    b'"2026-01-01T00:00:01.123Z","sequence_num":0,"channel":"market_trades"}',
    "a leap day": trades(trade(time="2024-02-29T23:59:59.999Z")),
    "times of every length read": trades(
        *(
            trade(str(i), time="2026-03-31T12:34:56." + "987654321"[: 3 + i] + "Z")
            for i in range(7)
        ),
        trade("9", time="2026-12-31T23:59:59Z"),
    ),
    "the first and last ms of the venues' years": trades(
        trade("1", time="2010-01-01T00:00:00.000Z"), trade("2", time="2100-01-01T00:00:00Z")
    ),
    "a sequence number as big as they come": envelope(
        "heartbeats", [{"heartbeat_counter": 1}], seq=2**63 - 1
    ),
}


@pytest.mark.parametrize("frame", list(READ.values()), ids=list(READ))
def test_what_the_reader_reads_is_read_as_the_decoder_reads_it(frame):
    assert check(frame) is not None


# left to the decoder: it reads them (with the error it names, where it has one)
LEFT = {
    "an escape in a string": trades(trade(product="BTC\\u002dUSD")).replace(b"\\\\", b"\\"),
    "an escape in a key": trades(trade()).replace(b'"price"', b'"pric\\u0065"'),
    "non-ASCII text": trades(trade(product="BTC-US\u00d0")).replace(b"\\u00d0", "\u00d0".encode()),
    "a field twice": trades(trade()).replace(b'"size"', b'"size":"1","size"'),
    "a key of the envelope twice": envelope("heartbeats", [])[:-1] + b',"sequence_num":8}',
    "a field missing": trades({k: v for k, v in trade().items() if k != "side"}),
    "no product": book(("update", "BTCUSD", [level()])),
    "a price of 0": trades(trade(price="0")),
    "a negative size": trades(trade(size="-1")),
    "a number too big": trades(trade(price="1e309")),
    "a number in no JSON form": trades(trade(price="1.")),
    "an id of 19 digits": trades(trade("1234567890123456789")),
    "an id that is no number": trades(trade("12a")),
    "an empty id": trades(trade("")),
    "a side of neither": trades(trade(side="buy")),
    "a time with a 2-digit fraction": trades(trade(time="2026-01-01T00:00:01.25Z")),
    "a time with 10 digits of fraction": trades(trade(time="2026-01-01T00:00:01.1234567890Z")),
    "a time with an offset": trades(trade(time="2026-01-01T00:00:01.250+00:00")),
    "a time in lower case": trades(trade(time="2026-01-01t00:00:01.250z")),
    "a time with a space": envelope("heartbeats", [], ts="2026-01-01 00:00:01.250Z"),
    "the 29th of February of a common year": trades(trade(time="2023-02-29T00:00:00Z")),
    "the 31st of April": trades(trade(time="2026-04-31T00:00:00Z")),
    "month 13": trades(trade(time="2026-13-01T00:00:00Z")),
    "month 0": trades(trade(time="2026-00-01T00:00:00Z")),
    "hour 24": trades(trade(time="2026-01-01T24:00:00Z")),
    "minute 60": trades(trade(time="2026-01-01T00:60:00Z")),
    "a leap second": trades(trade(time="2016-12-31T23:59:60Z")),
    "before the venues' years": trades(trade(time="2009-12-31T23:59:59.999Z")),
    "after them": trades(trade(time="2100-01-01T00:00:00.001Z")),
    "a ticker without its price": ticker(price=None),
    "a ticker with a negative bid": ticker(best_bid="-1"),
    "a ticker's number in a list": ticker(volume_24_h=["1"]),
    "a heartbeat count too long": beats(heartbeat_counter="1234567890123456789"),
    "a heartbeat count empty": beats(heartbeat_counter=""),
    "a negative heartbeat count": beats(heartbeat_counter=-1),
    "a heartbeat count with a fraction": beats(heartbeat_counter=1.0),
    "a sequence number past int64": envelope("heartbeats", [], seq=2**63),
    "a negative sequence number": envelope("heartbeats", [], seq=-1),
    "no sequence number": b'{"channel":"heartbeats","timestamp":"2026-01-01T00:00:01Z",'
    b'"events":[]}',
    "no timestamp": b'{"channel":"heartbeats","sequence_num":1,"events":[]}',
    "no events": b'{"channel":"heartbeats","timestamp":"2026-01-01T00:00:01Z","sequence_num":1}',
    "events not a list": envelope("heartbeats", {}),
    "an event not an object": envelope("market_trades", [[]]),
    "a level not an object": book(("update", "BTC-USD", [["bid", "1", "2"]])),
    "a side of a level of neither": book(("update", "BTC-USD", [level("ask")])),
    "an action of neither": book(("delta", "BTC-USD", [level()])),
    "a channel not read here": envelope("candles", []),
    "subscriptions": envelope("subscriptions", [{"subscriptions": {}}]),
    "a channel that is no string": envelope("heartbeats", []).replace(b'"heartbeats"', b"null"),
    "an error": b'{"type":"error","message":"failure to subscribe"}',
    "an error's field in a message": envelope("heartbeats", [])[:-1] + b',"type":"x"}',
    "more after the message": envelope("heartbeats", []) + b"x",
    "two messages": envelope("heartbeats", []) * 2,
    "cut short": envelope("heartbeats", [])[:-1],
    "not an object": b"[1,2]",
    "nothing": b"",
    "too many products in one message": book(
        *[("update", f"P{i}-USD", [level()]) for i in range(65)]
    ),
}


@pytest.mark.parametrize("frame", list(LEFT.values()), ids=list(LEFT))
def test_what_is_unusual_is_left_to_the_decoder(frame):
    assert check(frame) is None


def test_every_record_is_made_by_its_own_class_from_the_values_as_the_reader_orders_them():
    classes = {
        "message": cb.Message,
        "book": cb.BookMessage,
        "trade": Trade,
        "ticker": Ticker,
        "heartbeat": cb.Heartbeat,
    }
    assert set(COINBASE_RECORDS) == set(classes)
    for name, record in classes.items():
        assert takes_in_order(record, COINBASE_RECORDS[name]), name  # no adapter in between


def test_a_text_frame_is_left_to_the_decoder():
    frame = envelope("heartbeats", [{"heartbeat_counter": 1}])
    read = frame_reader()
    assert read(frame) is not None
    assert read(frame.decode()) is None
    assert read(bytearray(frame)) is None  # type: ignore[arg-type]


def test_named_products_are_kept_up_to_a_bound_and_read_alike_after_it():
    read = frame_reader()
    many = trades(*(trade(str(i), f"C{i}-USD") for i in range(5000)))
    assert check(many, read) is not None
    assert 0 < read.__self__.products() <= 4096  # type: ignore[attr-defined]
    assert check(trades(trade()), read) is not None


# Number text: Coinbase's decimals, any JSON number, and near misses msgspec refuses
NUMBERS = (
    st.builds(lambda v, d: f"{v:.{d}f}", st.floats(0, 1e7, allow_nan=False), st.integers(0, 12))
    | st.from_regex(r"-?(0|[1-9][0-9]{0,24})(\.[0-9]{1,24})?([eE][+-]?[0-9]{1,3})?", fullmatch=True)
    | st.from_regex(r"[-+0-9.eE]{1,8}", fullmatch=True)
    | st.builds(repr, st.floats(allow_nan=False))
)


@settings(max_examples=150, deadline=None)
@given(NUMBERS, NUMBERS, NUMBERS, st.booleans())
def test_numbers_are_read_to_the_doubles_msgspec_reads_or_left(price, size, change, bare):
    def put(frame: bytes) -> bytes:
        """The numbers' text in place of their markers, in strings (as Coinbase sends them)
        or bare (a JSON number, or whatever the text is)."""
        for marker, text in ((b"@P", price), (b"@S", size), (b"@C", change)):
            frame = frame.replace(
                b'"' + marker + b'"', text.encode() if bare else b'"%s"' % text.encode()
            )
        return frame

    check(put(trades(trade(price="@P", size="@S"))))
    check(put(book(("update", "BTC-USD", [level(price="@P", qty="@S")]))))
    check(put(ticker(price="@P", best_ask="@S", price_percent_chg_24_h="@C")))


def test_threads_reading_one_reader_while_python_runs_get_the_decoders_messages():
    """Two feeds' threads on one reader, the GIL let go inside symbol_of and every maker (as
    Python code may let it go): the product table is filled and emptied under them, and each
    message is still the decoder's."""

    def yielding(make: Any) -> Any:
        def made(*values: Any) -> Any:
            time.sleep(0)  # another thread runs here
            return make(*values)

        return made

    makers = [cb.Message, cb.BookMessage, Trade, Ticker, cb.Heartbeat]
    reader = type(frame_reader().__self__)(  # type: ignore[attr-defined]
        *map(yielding, makers), yielding(cb.symbol_of)
    )
    frames = []
    for k in range(220):  # 4,400 products, past the 4,096 names kept: the table is emptied
        news = [trade(str(j), f"N{k}X{j}-USD") for j in range(20)]
        frames.append(trades(*news, trade(str(k), "BTC-USD"), trade(str(k + 1), "BTC-USD")))
        products = [(f"N{k}X{j}-USD", [level()]) for j in range(0, 20, 4)]
        frames.append(book(*(("update", p, lv) for p, lv in products), ("update", "BTC-USD", [])))
    wanted = [decoder.decode(f) for f in frames]
    wrong: list[bytes] = []

    def work(start: int) -> None:
        for i in range(len(frames)):
            at = (start + i) % len(frames)
            if not same(reader.read(frames[at]), wanted[at]):
                wrong.append(frames[at])

    switching = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=work, args=(s,)) for s in (0, 220)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(switching)
    assert wrong == []
    assert 0 < reader.products() <= 4096
