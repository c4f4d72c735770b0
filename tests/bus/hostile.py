"""Messages no collector sends, for the tests of what readers do with them: each a subject, a
payload, and a piece of the reason a reader must give when it drops it."""

from __future__ import annotations

from typing import Any

import msgspec

from marketlab.bus import encoding as enc
from marketlab.records import Interval, Kline, Ticker, Trade

SYMBOL = "BTCUSDT"
T0 = 1_700_000_040_000  # a minute's start, in ms


def trade(i: int, symbol: str = SYMBOL) -> Trade:
    return Trade(symbol, i, 100.0 + i / 100, 0.5, "buy" if i % 2 else "sell", T0 + i, T0 + i)


def kline(minute: int, symbol: str = SYMBOL) -> Kline:
    start = T0 + minute * 60_000
    return Kline(
        symbol,
        Interval("1m"),
        start,
        100.0,
        101.0,
        99.5,
        100.5,
        3.0,
        start + 59_999,
        301.0,
        12,
        1.5,
        150.0,
        True,
        start + 60_000,
    )


def ticker(symbol: str = SYMBOL) -> Ticker:
    return Ticker(
        symbol,
        T0,
        100.0,
        0.1,
        99.9,
        1.0,
        100.1,
        1.0,
        98.0,
        101.0,
        97.0,
        1000.0,
        100_000.0,
        2.0,
        2.04,
        99.0,
        98.0,
        T0 - 86_400_000,
        T0,
        1,
        100,
        100,
    )


def subject(kind: str, symbol: str = SYMBOL) -> str:
    return enc.subject("binance", kind, symbol)


def batch(records: list[Any], v: Any = 1) -> bytes:
    """A batch of plain maps (any values, as a stranger would write them)."""
    return msgspec.msgpack.encode({"v": v, "source": "ws", "backfill": False, "records": records})


def plain(record: Any, **changed: Any) -> dict[str, Any]:
    """A record as the map it travels as, with fields changed."""
    out = msgspec.to_builtins(record, enc_hook=str)
    out.update(changed)
    return out


def _huge_count() -> bytes:
    head = msgspec.msgpack.encode({"v": 1, "source": "ws", "backfill": False})
    return b"\x84" + head[1:] + msgspec.msgpack.encode("records") + b"\xdd\xff\xff\xff\xff\x90"


def _deep() -> bytes:
    """Good records, then a field no reader knows nested 200,000 deep (skipped by recursion)."""
    head = batch([plain(trade(1))])
    return b"\x85" + head[1:] + msgspec.msgpack.encode("x") + b"\x91" * 200_000 + b"\xc0"


def _state(**changed: Any) -> dict[str, Any]:
    state = enc.BookState(SYMBOL, 10, [(100.0, 1.0)], [(101.0, 1.0)], T0, "update id chain", True)
    return {"type": "state", **plain(state, **changed)}


def cases() -> list[tuple[str, str, bytes, str]]:
    """(name, subject, payload, a piece of the reason) for messages a reader of BTCUSDT's
    trades, klines, tickers and book must drop (each on a subject it reads)."""
    t, k = trade(1), kline(0)
    return [
        ("garbage bytes", subject("trade"), b"\x00\xff\xfe garbage \x13\x37", "bad trade message"),
        ("not msgpack (JSON)", subject("trade"), b'{"v": 1, "records": []}', "bad trade message"),
        ("empty", subject("trade"), b"", "bad trade message"),
        ("another version", subject("trade"), batch([{"id": 1}], v=2), "version 2"),
        ("a version of another type", subject("trade"), batch([plain(t)], v="1"), "Expected `int`"),
        ("no records", subject("trade"), batch([]), "no records"),
        ("a huge record count", subject("trade"), _huge_count(), "bad trade message"),
        (
            "too many records",
            subject("trade"),
            batch([plain(t)] * (enc.MAX_RECORDS + 1)),
            "length <= 100000",
        ),
        ("nested past any depth", subject("trade"), _deep(), "recursion"),
        (
            "a string for a price",
            subject("trade"),
            batch([plain(t, price="100.5")]),
            "Expected `float`, got `str`",
        ),
        ("a NaN price", subject("trade"), batch([plain(t, price=float("nan"))]), "price = nan"),
        (
            "an infinite price",
            subject("trade"),
            batch([plain(t, price=float("inf"))]),
            "price = inf",
        ),
        ("a negative price", subject("trade"), batch([plain(t, price=-1.0)]), "price = -1.0"),
        ("a negative quantity", subject("trade"), batch([plain(t, qty=-0.5)]), "qty = -0.5"),
        (
            "an id past int64",
            subject("trade"),
            batch([plain(t, trade_id=2**64 - 1)]),
            "trade_id = 18446744073709551615",
        ),
        (
            "a time past 2100",
            subject("trade"),
            batch([plain(t, time=2**62)]),
            "time = 4611686018427387904",
        ),
        ("a negative id", subject("trade"), batch([plain(t, trade_id=-5)]), "trade_id = -5"),
        (
            "a bool for an id",
            subject("trade"),
            batch([plain(t, trade_id=True)]),
            "Expected `int`, got `bool`",
        ),
        ("a side no market has", subject("trade"), batch([plain(t, side="short")]), "side"),
        (
            "another symbol's records",
            subject("trade"),
            batch([plain(trade(2, "ETHUSDT"))]),
            "'ETHUSDT' on a BTCUSDT subject",
        ),
        (
            "a kline of no interval",
            subject("kline"),
            batch([plain(k, interval="7q")]),
            "not an interval",
        ),
        (
            "a kline's time as text",
            subject("kline"),
            batch([plain(k, open_time="now")]),
            "Expected `int`, got `str`",
        ),
        (
            "a kline closing before it opens",
            subject("kline"),
            batch([plain(k, close_time=k.open_time - 1)]),
            "before it opens",
        ),
        (
            "an infinite ticker",
            subject("ticker"),
            batch([plain(ticker(), high=float("inf"))]),
            "high = inf",
        ),
        ("a crossed whole book", subject("book"), batch([_state(bids=[(102.0, 1.0)])]), "crossed"),
        (
            "a whole book out of order",
            subject("book"),
            batch([_state(bids=[(99.0, 1.0), (100.0, 1.0)], asks=[(103.0, 1.0)])]),
            "falling",
        ),
        (
            "a cut whole book with a side empty",
            subject("book"),
            batch([_state(asks=[], cut=True)]),
            "side empty",
        ),
        (
            "huge levels",
            subject("book"),
            batch([_state(bids=[(1.0, 1.0)] * (enc.MAX_LEVELS + 1))]),
            "length <= 100000",
        ),
        (
            "a NaN level",
            subject("book"),
            batch([_state(asks=[(float("nan"), 1.0)])]),
            "Expected `float` > 0.0",
        ),
        (
            "a change going back",
            subject("book"),
            batch(
                [
                    {
                        "type": "change",
                        "symbol": SYMBOL,
                        "prev_id": 9,
                        "last_update_id": 8,
                        "bids": [],
                        "asks": [],
                        "event_time": T0,
                    }
                ]
            ),
            "not move the book forward",
        ),
        (
            "a record of no kind",
            subject("book"),
            batch([{"type": "order", "symbol": SYMBOL}]),
            "Invalid value 'order'",
        ),
        ("an unknown kind", subject("orders"), batch([plain(t)]), "not a marketlab subject"),
        (
            "a subject of five tokens",
            "marketlab.binance.trade.BTC.USDT",
            batch([plain(t)]),
            "not a marketlab subject",
        ),
    ]
