"""JSON nested thousands deep, where msgspec raises RecursionError rather than DecodeError
(even in a field it skips, or in a document never closed): every reader of outside bytes
gives its documented error — a frame decoder :class:`FrameError`, a REST reader
:class:`PayloadError`, a refusal reader its "no code here", a recording
:class:`RecordingError` — and the compiled readers pass such a frame to the careful path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest
import zstandard

from marketlab.recording import files as recording
from marketlab.records import Kline
from marketlab.stream.rest import Answer, RestError
from marketlab.venues import binance as bn
from marketlab.venues import bybit, coinbase, okx
from marketlab.venues.binance import frames as bn_frames
from marketlab.venues.binance import perp_frames as bn_perp_frames
from marketlab.venues.binance import perp_payloads as bn_perp
from marketlab.venues.bybit import frames as bybit_frames
from marketlab.venues.bybit import perp_frames as bybit_perp_frames
from marketlab.venues.bybit import perp_payloads as bybit_perp
from marketlab.venues.bybit import rest as bybit_rest
from marketlab.venues.coinbase import frames as cb_frames
from marketlab.venues.coinbase import rest as cb_rest
from marketlab.venues.errors import FrameError, PayloadError
from marketlab.venues.okx import frames as okx_frames
from marketlab.venues.okx import perp_frames as okx_perp_frames
from marketlab.venues.okx import perp_payloads as okx_perp
from marketlab.venues.okx import rest as okx_rest

DEPTH = 3000
ARRAYS = "[" * DEPTH + "]" * DEPTH
OBJECTS = '{"x":' * DEPTH + "1" + "}" * DEPTH


def nested_inputs(*shapes: str) -> list[bytes]:
    """Deep nesting never closed, closed, and inside a key no reader knows (skipped), then in
    each of ``shapes`` (``{}`` marks where the nesting goes)."""
    plain = ["[" * DEPTH, '{"x":' * DEPTH, ARRAYS, OBJECTS, '{"unknown":' + ARRAYS + "}"]
    placed = [s.replace("{}", deep) for s in shapes for deep in (ARRAYS, OBJECTS)]
    return [text.encode() for text in plain + placed]


class _OnlyB(msgspec.Struct):
    b: int


def test_msgspec_still_raises_recursion_error_on_deep_nesting():
    """Why the readers catch RecursionError: were msgspec to say DecodeError one day, these
    tests would still pass, and this one would say the catch is no longer needed."""
    with pytest.raises(RecursionError):
        msgspec.json.decode(b"[" * DEPTH)
    with pytest.raises(RecursionError):  # in a field the decoder skips, too
        msgspec.json.decode(b'{"a":' + ARRAYS.encode() + b',"b":1}', type=_OnlyB)


# --- frame decoders ----------------------------------------------------------------------------

FRAME_DECODERS: dict[str, tuple[Callable[[], Any], list[bytes]]] = {
    "binance": (
        bn.StreamDecoder,
        nested_inputs(
            '{"stream":"btcusdt@trade","data":{"e":"trade","x":{}}}',
            '{"stream":"btcusdt@trade","data":{}}',
            '{"e":"trade","E":1767225600000,"s":"BTCUSDT","x":{}}',
            '{"result":{},"id":1}',
        ),
    ),
    "binance perpetual": (
        bn_perp_frames.PerpDecoder,
        nested_inputs(
            '{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","x":{}}}',
            '{"stream":"btcusdt@markPrice@1s","data":{}}',
            '{"result":{},"id":1}',
        ),
    ),
    "okx": (
        okx_frames.OkxDecoder,
        nested_inputs(
            '{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"x":{}}]}',
            '{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot","data":{}}',
            '{"event":"subscribe","arg":{}}',
        ),
    ),
    "okx perpetual": (
        lambda: okx_perp_frames.OkxPerpDecoder({"BTCUSDT-PERP": 0.01}),
        nested_inputs(
            '{"arg":{"channel":"funding-rate","instId":"BTC-USDT-SWAP"},"data":[{"x":{}}]}',
            '{"arg":{"channel":"liquidation-orders","instType":"SWAP"},"data":{}}',
        ),
    ),
    "bybit": (
        bybit.BybitDecoder,
        nested_inputs(
            '{"topic":"publicTrade.BTCUSDT","ts":1767225600000,"type":"snapshot","data":[{"x":{}}]}',
            '{"topic":"orderbook.50.BTCUSDT","ts":1767225600000,"type":"snapshot","data":{}}',
            '{"success":true,"op":"subscribe","req_id":{}}',
        ),
    ),
    "bybit perpetual": (
        bybit_perp_frames.PerpDecoder,
        nested_inputs(
            '{"topic":"tickers.BTCUSDT","ts":1767225600000,"type":"snapshot","data":{"x":{}}}',
            '{"topic":"allLiquidation.BTCUSDT","ts":1767225600000,"type":"snapshot","data":{}}',
        ),
    ),
    "coinbase": (
        coinbase.CoinbaseDecoder,
        nested_inputs(
            '{"channel":"market_trades","timestamp":"2026-01-01T00:00:00Z","sequence_num":1,'
            '"events":[{"type":"update","trades":[{"x":{}}]}]}',
            '{"channel":"l2_data","timestamp":"2026-01-01T00:00:00Z","sequence_num":1,"events":{}}',
        ),
    ),
}


@pytest.mark.parametrize("venue", list(FRAME_DECODERS))
def test_a_deeply_nested_frame_is_a_frame_error(venue):
    make, frames = FRAME_DECODERS[venue]
    decoder = make()
    for frame in frames:
        with pytest.raises(FrameError):
            decoder.decode(frame)


BYBIT_TOPICS = ["publicTrade.BTCUSDT", "orderbook.50.BTCUSDT"]


@pytest.mark.parametrize(
    ("venue", "reader"),
    [
        ("okx", okx_frames.frame_reader),
        ("coinbase", cb_frames.frame_reader),
        (
            "bybit",
            lambda: bybit_frames.compiled_reader(["publicTrade.BTCUSDT", "orderbook.50.BTCUSDT"]),
        ),
    ],
)
def test_the_compiled_frame_readers_leave_deep_frames_to_the_careful_path(venue, reader):
    read = reader()
    if read is None:
        pytest.skip("no compiled frame reader in this build")  # pure Python: nothing to read
    for frame in FRAME_DECODERS[venue][1]:
        assert read(frame) is None


@pytest.mark.parametrize("record", [None, Kline], ids=["msgspec lane", "reader lane"])
def test_a_binance_lane_refuses_a_deep_payload_to_the_careful_path(record):
    """The feed's lanes (compiled, or Python with MARKETLAB_PURE_PYTHON=1) leave the frame to
    :class:`StreamDecoder` rather than let msgspec's RecursionError out."""
    taken: list[Any] = []
    lanes = bn_frames.lane_table()
    stream = bn.parse_stream("btcusdt@kline_1m")
    lane = bn_frames.lane_for(stream, lambda s, r, src: taken.append(r), None, record)
    lanes.add(b"btcusdt@kline_1m", *lane)
    for deep in (ARRAYS, OBJECTS):
        frame = '{"stream":"btcusdt@kline_1m","data":{"e":"kline","x":' + deep + "}}"
        assert bn_frames.take_combined(lanes, frame.encode()) is False
    assert taken == []


# --- REST readers ------------------------------------------------------------------------------

ENVELOPES = ('{"code":"0","msg":"","data":{}}', '{"retCode":0,"retMsg":"OK","result":{}}')
PAYLOAD_READERS: dict[str, Callable[[bytes], Any]] = {
    "binance time": bn.parse_server_time,
    "binance klines": lambda b: bn.parse_klines(b, "BTCUSDT", "1m", 1767225600000),
    "binance depth": lambda b: bn.parse_depth(b, "BTCUSDT"),
    "binance trades": lambda b: bn.parse_trades(b, "BTCUSDT"),
    "binance exchange info": bn.parse_exchange_info,
    "binance tickers": bn.parse_ticker_24hr,
    "binance perp depth": lambda b: bn_perp.depth(b, "BTCUSDT-PERP"),
    "binance perp aggTrades": lambda b: bn_perp.agg_trades(b, "BTCUSDT-PERP"),
    "binance perp premiumIndex": bn_perp.mark_price,
    "binance perp fundingRate": bn_perp.funding_history,
    "binance perp openInterest": bn_perp.open_interest,
    "binance perp openInterestHist": bn_perp.open_interest_history,
    "binance perp exchangeInfo": bn_perp.perpetuals,
    "okx time": okx.parse_time,
    "okx instruments": okx.parse_instruments,
    "okx spot symbols": lambda b: okx.parse_spot_symbols(b, "USDT"),
    "okx candles": lambda b: okx.parse_candles(b, "BTCUSDT", "1m"),
    "okx books": lambda b: okx.parse_books(b, "BTCUSDT"),
    "okx tickers": okx.parse_tickers,
    "okx history trades": lambda b: okx.parse_history_trades(b, "BTCUSDT"),
    "okx swaps": okx_perp.swap_contracts,
    "okx funding rate": okx_perp.funding_rate,
    "okx funding history": okx_perp.funding_history,
    "okx open interest": lambda b: okx_perp.open_interest(b, {"BTCUSDT-PERP": 0.01}),
    "okx open interest history": lambda b: okx_perp.open_interest_history(b, "BTCUSDT-PERP"),
    "okx mark prices": okx_perp.mark_prices,
    "okx swap books": lambda b: okx_perp.swap_books(b, "BTCUSDT-PERP", 0.01),
    "okx swap candles": lambda b: okx_perp.swap_candles(b, "BTCUSDT-PERP", "1m", 0.01),
    "okx swap trades": lambda b: okx_perp.swap_trades(b, "BTCUSDT-PERP", 0.01),
    "bybit time": bybit.parse_time,
    "bybit instruments": bybit.parse_instruments,
    "bybit spot symbols": lambda b: bybit.parse_spot_symbols(b, "USDT"),
    "bybit klines": lambda b: bybit.parse_klines(b, "BTCUSDT", "1m", 1767225600000),
    "bybit orderbook": lambda b: bybit.parse_orderbook(b, "BTCUSDT"),
    "bybit recent trades": lambda b: bybit.parse_recent_trades(b, "BTCUSDT"),
    "bybit tickers": bybit.parse_tickers,
    "bybit perpetuals": bybit_perp.perpetuals,
    "bybit funding history": bybit_perp.funding_history,
    "bybit open interest": bybit_perp.open_interest,
    "bybit perp tickers": bybit_perp.tickers,
    "bybit perp trades": lambda b: bybit_perp.recent_trades(b, "BTCUSDT-PERP", 60),
    "coinbase time": coinbase.parse_time,
    "coinbase products": coinbase.parse_products,
    "coinbase spot symbols": lambda b: coinbase.parse_spot_symbols(b, "USD"),
    "coinbase product tickers": lambda b: coinbase.parse_product_tickers(b, 1767225600000),
    "coinbase candles": lambda b: coinbase.parse_candles(b, "BTCUSD", "1m", 1767225600000),
    "coinbase product book": lambda b: coinbase.parse_product_book(b, "BTCUSD"),
    "coinbase market trades": lambda b: coinbase.parse_market_trades(b, "BTCUSD"),
}


@pytest.mark.parametrize("reader", list(PAYLOAD_READERS))
def test_a_deeply_nested_rest_body_is_a_payload_error(reader):
    for body in nested_inputs(*ENVELOPES):
        with pytest.raises(PayloadError):
            PAYLOAD_READERS[reader](body)


def test_the_error_body_readers_find_no_error_in_deep_nesting():
    for body in nested_inputs('{"code":-1121,"msg":{}}', '{"error":{}}'):
        assert bn.raise_for_error(body) is None
        assert bn_perp.error_of(body) is None
        assert coinbase.api_error(body) is None


def test_the_refusal_readers_find_no_code_in_deep_nesting_and_go_by_the_status():
    for body in nested_inputs('{"code":"50011","msg":{}}', '{"retCode":10006,"retMsg":{}}'):
        assert okx_rest.venue_code(body) is None
        assert bybit_rest.envelope(body) is None and bybit_rest.ret_code(body) is None
        ok, busy = Answer(200, {}, body), Answer(503, {}, body)
        # a 2xx: the reader is the one to say the body does not read (Bybit's refusal says a
        # 2xx without its envelope is to be asked again)
        assert okx_rest.refusal_of(ok, "GET /x") is None
        assert cb_rest.refusal(ok, "GET /x") is None
        refused = bybit_rest.refusal_of(ok, "GET /x")
        assert isinstance(refused, RestError) and refused.retryable
        for refusal in (okx_rest.refusal_of, bybit_rest.refusal_of, cb_rest.refusal):
            error = refusal(busy, "GET /x")
            assert isinstance(error, RestError) and error.retryable and "503" in str(error)
        assert okx_rest.pacing_status(ok) == 200


# --- recordings --------------------------------------------------------------------------------


def test_a_recording_whose_header_is_deeply_nested_is_a_recording_error(tmp_path):
    for header in nested_inputs('{"venue":"binance","symbols":{}}'):
        path = tmp_path / "deep.mlrec"
        path.write_bytes(zstandard.ZstdCompressor().compress(recording.MAGIC + header + b"\n"))
        with pytest.raises(recording.RecordingError, match="bad header"):
            recording.open_recording(path)


@pytest.mark.parametrize(
    "decode",
    [
        recording.decode_snapshot,
        recording.decode_klines,
        recording.decode_trades,
        recording.decode_tickers,
    ],
)
def test_a_recorded_record_nested_deeply_is_a_recording_error(decode):
    deep_array = b"\x91" * DEPTH + b"\xc0"  # msgpack: arrays of one, DEPTH deep
    deep_in_a_field = b"\x81\xa1x" + deep_array  # {"x": …}: a field the reader skips
    for data in (deep_array, deep_in_a_field, b"\x91" * DEPTH):
        with pytest.raises(recording.RecordingError, match="does not decode"):
            decode(data)
