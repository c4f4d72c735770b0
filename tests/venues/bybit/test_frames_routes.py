"""What the decoder remembers of a topic (its route) changes nothing it gives: the same records
and the same errors on every push of a topic, bad names refused every time, candles of every
interval bounded as :func:`frames.kline` bounds them."""

from __future__ import annotations

import pytest

from marketlab.records import Interval
from marketlab.venues import bybit
from marketlab.venues.bybit import frames

WEEK_START = 1704067200000  # 2024-01-01 00:00 UTC, a Monday
MONTH_START = 1706745600000  # 2024-02-01 00:00 UTC


def _candle(interval: str, start: int, symbol: str = "BTCUSDT", row_interval: str = "") -> bytes:
    return (
        f'{{"topic":"kline.{interval}.{symbol}","type":"snapshot","ts":1706745600001,'
        f'"data":[{{"start":{start},"end":{start + 59_999},"interval":"{row_interval or interval}",'
        '"open":"1","close":"2","high":"3","low":"0.5","volume":"4","turnover":"5",'
        '"confirm":true,"timestamp":1706745600001}]}'
    ).encode()


def _outcome(decoder: bybit.BybitDecoder, frame: bytes) -> object:
    try:
        return decoder.decode(frame)
    except bybit.FrameError as exc:
        return (type(exc), str(exc))


@pytest.mark.parametrize(
    ("interval", "start"),
    [
        ("1", WEEK_START + 60_000),
        ("60", WEEK_START + 3_600_000),
        ("D", WEEK_START + 86_400_000),
        ("W", WEEK_START),
        ("W", WEEK_START + 86_400_000),  # a Tuesday: off the week's boundary
        ("M", MONTH_START),
        ("M", MONTH_START + 86_400_000),  # off the month's boundary
        ("5", WEEK_START + 60_000),  # off the 5-minute boundary
    ],
)
def test_a_candle_is_bounded_as_kline_bounds_it(interval: str, start: int) -> None:
    decoder = bybit.BybitDecoder()
    iv = Interval(bybit.interval_of(interval))
    first = _outcome(decoder, _candle(interval, start))
    assert _outcome(decoder, _candle(interval, start)) == first  # the route remembered
    if iv.open_of(start) != start:
        assert isinstance(first, tuple) and "off its boundary" in first[1]
        return
    values = (1.0, 3.0, 0.5, 2.0, 4.0, 5.0)
    assert first == [frames.kline("BTCUSDT", iv, start, values, True, 1706745600001)]


def test_bad_topics_are_refused_every_time_and_not_remembered() -> None:
    decoder = bybit.BybitDecoder()
    for frame in (
        _candle("7", WEEK_START),  # no such interval
        _candle("1", WEEK_START, symbol="B"),  # no symbol of ours
        _candle("1", WEEK_START, row_interval="5"),  # a candle of another interval
        b'{"topic":"orderbook.rpi.BTCUSDT","type":"snapshot","ts":1,"data":{"s":"BTCUSDT"}}',
    ):
        first = _outcome(decoder, frame)
        assert isinstance(first, tuple) and first == _outcome(decoder, frame)
    assert set(decoder._routes) <= {"kline.1.BTCUSDT", "orderbook.rpi.BTCUSDT"}


def test_the_routes_kept_are_bounded() -> None:
    decoder = bybit.BybitDecoder()
    for i in range(frames.MAX_ROUTES + 10):
        decoder.decode(_candle("1", WEEK_START, symbol=f"S{i}USDT"))
    assert len(decoder._routes) <= frames.MAX_ROUTES
    trade = (
        b'{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1706745600001,"data":[{"T":'
        b'1706745600000,"s":"ETHUSDT","S":"Buy","v":"1","p":"2","i":"1"}]}'
    )
    with pytest.raises(bybit.FrameError, match="a row of ETHUSDT on the stream of BTCUSDT"):
        decoder.decode(trade)
