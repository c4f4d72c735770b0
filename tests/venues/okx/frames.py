"""OKX pushes for the tests of the compiled frame reader (csrc/okx.c): good frames of every hot
channel as OKX writes them, and the check that the reader and OkxDecoder agree."""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec

from marketlab.venues.errors import FrameError
from marketlab.venues.okx.frames import OkxDecoder, frame_reader

read = frame_reader()
TS = "1767225600000"  # 2026-01-01 00:00 UTC


def push(channel: str, data: Any, inst: str = "BTC-USDT", **extra: Any) -> bytes:
    """A push ``{"arg":{"channel","instId"}, ...extra, "data"}`` in compact JSON."""
    return msgspec.json.encode({"arg": {"channel": channel, "instId": inst}, **extra, "data": data})


def trade(**fields: Any) -> dict[str, Any]:
    row = {"instId": "BTC-USDT", "tradeId": "130639474", "px": "42219.9", "sz": "0.12060306"}
    return row | {"side": "buy", "ts": TS, "count": "1", "source": "0"} | fields


def ticker(**fields: Any) -> dict[str, Any]:
    row = {"instType": "SPOT", "instId": "BTC-USDT", "last": "9999.99", "lastSz": "0.1"}
    row |= {"askPx": "9999.99", "askSz": "11", "bidPx": "8888.88", "bidSz": "5"}
    row |= {"open24h": "9000", "high24h": "10000", "low24h": "8888.88", "volCcy24h": "2222"}
    return row | {"vol24h": "2222", "sodUtc0": "0.1", "sodUtc8": "0.1", "ts": TS} | fields


def book(**fields: Any) -> dict[str, Any]:
    row = {"asks": [["41006.8", "0.60038921", "0", "1"], ["41007.1", "0", "0", "0"]]}
    row |= {"bids": [["41006.3", "0.30178218", "0", "2"]], "ts": TS, "checksum": -855196043}
    return row | {"prevSeqId": 123456, "seqId": 123457} | fields


def bbo(**fields: Any) -> dict[str, Any]:
    row = {"asks": [["41006.8", "0.6", "0", "1"]], "bids": [["41006.3", "0.3", "0", "2"]]}
    return row | {"ts": TS, "seqId": 99} | fields


def candle(ts: Any = TS, confirm: Any = "0") -> list[Any]:
    """``[ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]``"""
    return [
        ts,
        "8533.02",
        "8553.74",
        "8527.17",
        "8548.26",
        "45247",
        "529.5858061",
        "529.58",
        confirm,
    ]


GOOD = {
    "trades-all": push("trades-all", [trade()]),
    "trades": push("trades", [trade(), trade(tradeId="130639475", side="sell")]),
    "tickers": push("tickers", [ticker()]),
    "books snapshot": push("books", [book(prevSeqId=-1)], action="snapshot"),
    "books update": push("books", [book()], action="update"),
    "bbo-tbt": push("bbo-tbt", [bbo()]),
    "candle1m": push("candle1m", [candle()]),
    "candle1Wutc": push("candle1Wutc", [candle("1767484800000", "1")]),
}


def bits(value: Any) -> Any:
    """A decoded value down to its floats' bits (-0.0 is not 0.0, each NaN shows) and the
    exact type of everything (a str is not a str subclass), records by their fields."""
    if isinstance(value, float):
        return value.hex()
    if isinstance(value, list | tuple):
        return type(value).__name__, [bits(v) for v in value]
    if isinstance(value, msgspec.Struct):
        return type(value).__name__, [bits(v) for v in msgspec.structs.astuple(value)]
    if dataclasses.is_dataclass(value):
        fields = dataclasses.fields(value)
        return type(value).__name__, [bits(getattr(value, f.name)) for f in fields]
    return type(value).__name__, value


def agree(frame: Any) -> list[Any] | None:
    """What the compiled reader makes of ``frame`` (None: left to the decoder), after checking
    that whatever it made is exactly what OkxDecoder makes of the same frame."""
    got = read(frame)
    try:
        want: list[Any] | None = OkxDecoder().decode(frame)
    except FrameError:
        want = None
    if got is not None:
        assert want is not None, f"the decoder refuses a frame the reader read: {frame!r}"
        assert bits(got) == bits(want), frame
    return got
