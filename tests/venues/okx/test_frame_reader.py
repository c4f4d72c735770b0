"""The compiled reader of OKX pushes (csrc/okx.c) against OkxDecoder, its independent twin in
Python: whatever the reader reads, it reads to exactly the records the decoder makes (floats to
the bit); it reads every push of the hot channels the simulated OKX sends; and it leaves to the
decoder (None) whatever is unusual, which the decoder then reads or names as a bad frame."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import pytest
import websockets
from hypothesis import given
from hypothesis import strategies as st

from marketlab.native import COMPILED
from marketlab.numbers import TIME_MAX_MS, TIME_MIN_MS
from marketlab.records import BookTicker, Kline, Ticker, Trade
from marketlab.sim import SimExchange
from marketlab.venues import okx
from marketlab.venues.okx.frames import BookMessage
from tests.fuzzing import fuzz
from tests.venues.okx.frames import GOOD, TS, agree, bbo, book, candle, push, read, ticker, trade

PURE = os.environ.get("MARKETLAB_PURE_PYTHON", "") not in ("", "0")
compiled_only = pytest.mark.skipif(
    not COMPILED and PURE, reason="MARKETLAB_PURE_PYTHON asks for the pure-Python twins"
)

# --- frames as the simulated OKX sends them ---------------------------------------------------

INSTS = ("BTC-USDT", "ETH-USDT")
PUBLIC = ("tickers", "trades", "books", "bbo-tbt", "books5")
BUSINESS = ("trades-all", "candle1m", "candle1H", "candle1Wutc", "candle1Mutc")
# what the reader leaves to the decoder, whoever sends it
LEFT = ("books5", "candle1Mutc")


@pytest.fixture(scope="module")
def sim_frames() -> list[bytes]:
    """Two seconds of every channel's pushes from the simulated OKX (at 60 times real speed),
    and its answers to the subscriptions."""

    async def record(url: str) -> list[bytes]:
        frames: list[bytes] = []
        async with (
            websockets.connect(url) as public,
            websockets.connect(okx.business_url(url)) as business,
        ):
            for ws, channels in ((public, PUBLIC), (business, BUSINESS)):
                topics = [okx.Topic(c, i) for c in channels for i in INSTS]
                await ws.send(okx.subscribe_message(topics).decode())
            loop = asyncio.get_running_loop()
            end = loop.time() + 2.0

            async def drain(ws: Any) -> None:
                while (left := end - loop.time()) > 0:
                    try:
                        frame = await asyncio.wait_for(ws.recv(), left)
                    except TimeoutError:
                        return
                    frames.append(frame.encode() if isinstance(frame, str) else frame)

            await asyncio.gather(drain(public), drain(business))
        return frames

    with SimExchange(["BTCUSDT", "ETHUSDT"], speed=60, seed=7, okx_checksums=True) as sim:
        return asyncio.run(record(sim.okx_ws_url))


@compiled_only
def test_every_push_of_a_hot_channel_the_simulated_okx_sends_is_read_as_the_decoder_reads_it(
    sim_frames,
):
    read_by_channel: dict[str, int] = {}
    for frame in sim_frames:
        message = json.loads(frame)
        got = agree(frame)
        channel = message.get("arg", {}).get("channel")
        if "event" in message or channel in LEFT:
            assert got is None, frame
        elif channel == "books":
            assert got is not None, frame
            key = f"books {message['action']}"
            read_by_channel[key] = read_by_channel.get(key, 0) + 1
        else:
            assert got is not None, frame
            read_by_channel[channel] = read_by_channel.get(channel, 0) + 1
    hot = {*PUBLIC, *BUSINESS} - {"books", *LEFT} | {"books snapshot", "books update"}
    assert set(read_by_channel) == hot, read_by_channel
    assert read_by_channel["books update"] >= 20 and read_by_channel["trades-all"] >= 20


# --- hand-written frames ------------------------------------------------------------------------

BIG = "1.7976931348623157e308"  # the largest double
LONG = "0.1000000000000000055511151231257827021181583404541015625"  # 0.1's exact value

# frames the reader reads (to the decoder's very records)
READ = {
    "pretty-printed": json.dumps(json.loads(GOOD["books update"]), indent=2).encode(),
    "whitespace around every token": b' \r\n{ "arg" :\t{"channel" : "trades-all" , "instId":'
    b'"BTC-USDT"} , "data" : [ {"instId":"BTC-USDT","tradeId":"7","px":"1.5","sz":"2",'
    b'"side":"sell","ts":"1767225600000"} ] } \n',
    "keys in another order": b'{"data":[["1767225600000","1","2","0.5","1.5","3","4","5","1"]],'
    b'"arg":{"instId":"BTC-USDT","channel":"candle1m"}}',
    "action after data": b'{"arg":{"channel":"books","instId":"BTC-USDT"},"data":[{"asks":[],'
    b'"bids":[],"ts":"1767225600000"}],"action":"snapshot"}',
    "unknown fields everywhere": push(
        "tickers",
        [ticker(extra={"a": [1, 2.5e3, None, True, False, "x"]}, more=[[]])],
        uid="42",
        arg2={"nested": {"deep": [1]}},
    ).replace(b'"channel":"tickers"', b'"channel":"tickers","instType":"SPOT","x":[1,{}]'),
    "exponents": push("trades", [trade(px="1.5e3", sz="1E-7")]),
    "many digits": push("trades", [trade(px=LONG, sz="123456789012345678901.5")]),
    "the largest double": push("tickers", [ticker(vol24h=BIG, volCcy24h=BIG, last=BIG)]),
    "the smallest doubles": push("tickers", [ticker(open24h="5e-324", lastSz="1e-400")]),
    "negative zero in a ticker": push("tickers", [ticker(askSz="-0", bidSz="-0.0")]),
    "negative zero in a book": push(
        "books", [book(bids=[["1", "-0"], ["0.5", "-0.0"]])], action="update"
    ),
    "negative zero in a bbo-tbt": push("bbo-tbt", [bbo(bids=[["1", "-0"]], asks=[["2", "-0.0"]])]),
    "numbers bare": push("trades-all", [trade(tradeId=7, px=1.5, sz=0, ts=int(TS))]),
    "a candle of bare numbers": push("candle1m", [[int(TS), 1, 2, 0.5, 1.5, 3, 4, 5, 1]]),
    "empty sides (OKX's heartbeat)": push(
        "books", [book(asks=[], bids=[], prevSeqId=5, seqId=5)], action="update"
    ),
    "no seqId, prevSeqId, checksum": push(
        "books", [{"asks": [["1", "2"]], "bids": [], "ts": TS}], action="snapshot"
    ),
    "checksum null": push("books", [book(checksum=None)], action="update"),
    "a level of two fields": push(
        "books", [book(asks=[["1", "2"], ["3", "4", "5"]])], action="update"
    ),
    "two rows": push("books", [book(), book(seqId=123458)], action="update"),
    "a bbo-tbt with an empty side, and one without": push("bbo-tbt", [bbo(bids=[]), bbo()]),
    "a bbo-tbt's second level is not checked": push(
        "bbo-tbt", [bbo(bids=[["1", "2"], ["x", "y", "z"], []])]
    ),
    "a candle still open, closed, and confirm 2": push(
        "candle1H", [candle(confirm="0"), candle(confirm="1"), candle(confirm="2")]
    ),
    "a candle's time off its bar's grid": push("candle1Wutc", [candle(ts="1767225600123")]),
    "a ticker of no open and no volume": push("tickers", [ticker(open24h="0", vol24h="0")]),
    "a ticker of a fall": push("tickers", [ticker(last="1", open24h="3")]),
    "a trade at the last time": push("trades", [trade(ts="4102444800000", tradeId="0")]),
    "a seqId of -1 in an update": push("books", [book(seqId="-1", prevSeqId="7")], action="update"),
}

# frames the reader leaves to the decoder (which may read them, or refuse them)
LEFT_FRAMES = {
    "an escape in a value": push("trades", [trade(px="1.5")]).replace(b'"1.5"', b'"1\\u002e5"'),
    "an escape in a key": push("trades", [trade()]).replace(b'"px"', b'"p\\u0078"'),
    "an escaped instId": push("trades", [trade()]).replace(b'"BTC-USDT"}', b'"BTC\\u002dUSDT"}'),
    "a field twice": push("trades", [trade()]).replace(b'"px":', b'"px":"2","px":'),
    "arg twice": push("trades", [trade()]).replace(b'"data"', b'"arg":{"channel":"x"},"data"'),
    "data twice": push("trades", [trade()])[:-1] + b',"data":[]}',
    "instId twice": push("trades", [trade()]).replace(b'"instId"', b'"instId":"X","instId"', 1),
    "a row's field missing": push("trades", [{k: v for k, v in trade().items() if k != "ts"}]),
    "books without bids": push("books", [{"asks": [], "ts": TS}], action="update"),
    "books without action": push("books", [book()]),
    "books with another action": push("books", [book()], action="partial"),
    "no instId": b'{"arg":{"channel":"trades"},"data":[]}',
    "no data": b'{"arg":{"channel":"trades","instId":"BTC-USDT"}}',
    "empty data": push("trades", []),
    "data of no list": push("trades", {"x": 1}),
    "arg null": b'{"arg":null,"data":[]}',
    "a bbo-tbt of empty sides only": push("bbo-tbt", [bbo(bids=[])]),
    "a price of 0": push("trades", [trade(px="0")]),
    "a negative size": push("trades", [trade(sz="-1e-300")]),
    "a number past the doubles": push("tickers", [ticker(high24h="1e400")]),
    "NaN": push("tickers", [ticker(high24h="nan")]),
    "an id past int64": push("trades", [trade(tradeId="9223372036854775808")]),
    "an id msgspec reads from an exponent": push("trades", [trade(tradeId="1e3")]),
    "a time before 2010": push("trades", [trade(ts="1262303999999")]),
    "a time after 2100": push("candle1m", [candle(ts="4102444800001")]),
    "a seqId below -1": push("books", [book(seqId=-2)], action="update"),
    "a checksum as a string": push("books", [book(checksum="5")], action="update"),
    "a level's price of 0": push("books", [book(bids=[["0", "1"]])], action="update"),
    "a level of one field": push("bbo-tbt", [bbo(bids=[["1"]])]),
    "a level with a number": push("books", [book(bids=[["1", "2", 0]])], action="update"),
    "a level's number with a space": push("books", [book(bids=[[" 1", "2"]])], action="update"),
    "a level's number with a plus": push("books", [book(bids=[["+1", "2"]])], action="update"),
    "a level's number with leading zeros": push(
        "books", [book(bids=[["01", "2"]])], action="update"
    ),
    "a candle of 8 values": push("candle1m", [candle()[:8]]),
    "a candle of 10 values": push("candle1m", [[*candle(), "0"]]),
    "a candle's confirm as a fraction": push("candle1m", [candle(confirm="1.0")]),
    "the calendar month's candle": push("candle1Mutc", [candle()]),
    "a bar OKX has not": push("candle7m", [candle()]),
    "a row of another instrument": push("trades", [trade(instId="ETH-USDT")]),
    "a ticker of another instrument": push("tickers", [ticker(instId="BTC-USDC")]),
    "another side": push("trades", [trade(side="BUY")]),
    "an unknown channel": push("books5", [book()]),
    "an event": b'{"event":"subscribe","arg":{"channel":"trades","instId":"BTC-USDT"}}',
    "an error": b'{"event":"error","code":"60012","msg":"Invalid request","connId":"a"}',
    "a notice": b'{"event":"notice","code":"64008","msg":"upgrade","connId":"a"}',
    "an event key on a push": push("trades", [trade()], event="subscribe"),
    "a code key on a push": push("trades", [trade()], code="0"),
    "pong": b"pong",
    "non-ASCII": push("trades", [trade(instId="BTC–USDT")], inst="BTC–USDT"),
    "truncated": GOOD["books update"][:-2],
    "trailing garbage": GOOD["trades"] + b"x",
    "a trailing comma": GOOD["trades"][:-2] + b",]}",
    "not JSON": b"\x00\x01 this is not json",
    "empty": b"",
}


@compiled_only
@pytest.mark.parametrize("name", sorted(READ))
def test_the_reader_reads_these_as_the_decoder_does(name):
    records = agree(READ[name])
    assert records, f"{name}: left to the decoder"


@compiled_only
@pytest.mark.parametrize("name", sorted(GOOD))
def test_every_hot_channel_is_read_as_the_decoder_reads_it(name):
    records = agree(GOOD[name])
    assert records is not None
    kind = {"tickers": Ticker, "bbo-tbt": BookTicker}.get(name, Trade)
    if name.startswith("books"):
        kind = BookMessage
    elif name.startswith("candle"):
        kind = Kline
    assert {type(r) for r in records} == {kind}


@compiled_only
@pytest.mark.parametrize("name", sorted(LEFT_FRAMES))
def test_the_unusual_is_left_to_the_decoder(name):
    assert agree(LEFT_FRAMES[name]) is None


@compiled_only
def test_a_text_frame_is_left_to_the_decoder():
    assert read(GOOD["trades"].decode()) is None


def test_where_the_compiled_part_is_not_in_use_the_decoder_reads_every_frame():
    if COMPILED:
        assert read(GOOD["trades"]) is not None
    else:
        assert all(read(f) is None for f in [*GOOD.values(), *READ.values()])


# --- numbers ----------------------------------------------------------------------------------

DECIMALS = st.builds(
    lambda v, d: f"{v:.{d}f}", st.floats(0, 1e7, allow_nan=False), st.integers(0, 12)
)
JSON_NUMBERS = st.from_regex(
    r"-?(0|[1-9][0-9]{0,24})(\.[0-9]{1,24})?([eE][+-]?[0-9]{1,3})?", fullmatch=True
)
NEAR_MISSES = st.from_regex(r"[-+0-9.eE]{1,8}", fullmatch=True) | st.sampled_from(
    ["-0", "-0.0", "-0e5", "00.5", "1.", ".5", "+1", "1e400", "1e-400", "nan", "Infinity", ""]
)
NUMBER_TEXT = DECIMALS | JSON_NUMBERS | NEAR_MISSES | st.builds(repr, st.floats(allow_nan=False))
INT_TEXT = st.integers(-(2**64), 2**64).map(str) | st.integers(TIME_MIN_MS, TIME_MAX_MS).map(str)


class Bare(str):
    """Number text written bare in the frame, not quoted."""


def _frame(channel: str, field: str, text: str) -> bytes:
    value: Any = str(text)
    if channel == "trades":
        frame = push("trades", [trade(**{field: value})])
    elif channel == "tickers":
        frame = push("tickers", [ticker(**{field: value})])
    elif channel in ("books", "bbo-tbt"):
        if field in ("px", "sz"):
            level = [text, "1"] if field == "px" else ["1", text]
            frame = push(channel, [book(bids=[level, ["0.5", "2"]])], action="update")
        else:
            frame = push(channel, [book(**{field: value})], action="update")
    else:
        row = candle()
        row[int(field)] = value
        frame = push(channel, [row])
    if isinstance(text, Bare):  # unquote it
        frame = frame.replace(f'"{text}"'.encode(), text.encode() or b"0", 1)
    return frame


FLOAT_FIELDS = (
    [("trades", f) for f in ("px", "sz")]
    + [("tickers", f) for f in ("last", "askSz", "open24h", "vol24h", "volCcy24h")]
    + [("books", "px"), ("books", "sz"), ("bbo-tbt", "px"), ("bbo-tbt", "sz")]
    + [("candle1m", str(i)) for i in range(1, 8)]
)
INT_FIELDS = [("trades", "tradeId"), ("trades", "ts"), ("tickers", "ts"), ("books", "ts")]
INT_FIELDS += [("books", "seqId"), ("books", "prevSeqId"), ("candle1m", "0"), ("candle1m", "8")]


@compiled_only
@fuzz()
@given(st.sampled_from(FLOAT_FIELDS), NUMBER_TEXT | JSON_NUMBERS.map(Bare))
def test_any_number_is_read_to_the_decoders_double_or_left(where, text):
    channel, field = where
    if channel in ("books", "bbo-tbt") and isinstance(text, Bare):
        text = str(text)  # a level holds strings only
    agree(_frame(channel, field, text))


@compiled_only
@fuzz()
@given(st.sampled_from(INT_FIELDS), INT_TEXT | INT_TEXT.map(Bare) | NEAR_MISSES)
def test_any_integer_is_read_to_the_decoders_int_or_left(where, text):
    agree(_frame(*where, text))
