"""Binance USDⓈ-M futures frames and REST bodies as the venue documents them (the examples of
its WebSocket market streams and market data pages, with our own numbers): what the perpetual
tests and fuzz targets start from."""

from __future__ import annotations

from typing import Any

import msgspec

T0 = 1_767_225_600_000  # 2026-01-01


def combined(stream: str, data: dict[str, Any]) -> bytes:
    return msgspec.json.encode({"stream": stream, "data": data})


def depth(U: int, u: int, pu: int, bids: Any = (), asks: Any = (), t: int = T0) -> bytes:
    return combined(
        "btcusdt@depth@100ms",
        {
            "e": "depthUpdate",
            "E": t + 5,
            "T": t,
            "s": "BTCUSDT",
            "U": U,
            "u": u,
            "pu": pu,
            "b": [list(level) for level in bids],
            "a": [list(level) for level in asks],
        },
    )


AGG_TRADE = combined(
    "btcusdt@aggTrade",
    {
        "e": "aggTrade",
        "E": T0 + 7,
        "s": "BTCUSDT",
        "a": 5933014,
        "p": "64001.10",
        "q": "0.250",
        "f": 100,
        "l": 105,
        "T": T0 + 2,
        "m": True,
    },
)
MARK_PRICE = combined(
    "btcusdt@markPrice@1s",
    {
        "e": "markPriceUpdate",
        "E": T0 + 1000,
        "s": "BTCUSDT",
        "p": "64010.50000000",
        "P": "64020.00000000",
        "i": "64005.25000000",
        "r": "-0.00012500",
        "T": T0 + 8 * 3_600_000,
    },
)
FORCE_ORDER = combined(
    "btcusdt@forceOrder",
    {
        "e": "forceOrder",
        "E": T0 + 3,
        "o": {
            "s": "BTCUSDT",
            "S": "SELL",
            "o": "LIMIT",
            "f": "IOC",
            "q": "0.014",
            "p": "63900",
            "ap": "63950.5",
            "X": "FILLED",
            "l": "0.014",
            "z": "0.014",
            "T": T0 + 1,
        },
    },
)
KLINE = combined(
    "btcusdt@kline_1m",
    {
        "e": "kline",
        "E": T0 + 30_000,
        "s": "BTCUSDT",
        "k": {
            "t": T0,
            "T": T0 + 59_999,
            "s": "BTCUSDT",
            "i": "1m",
            "f": 100,
            "L": 200,
            "o": "64000.0",
            "c": "64010.0",
            "h": "64020.0",
            "l": "63990.0",
            "v": "12.5",
            "n": 101,
            "x": False,
            "q": "800000.0",
            "V": "6.0",
            "Q": "384000.0",
            "B": "0",
        },
    },
)
FRAMES = [
    depth(10, 15, 9, bids=[("64000.0", "1.5")], asks=[("64001.0", "0")]),
    AGG_TRADE,
    MARK_PRICE,
    FORCE_ORDER,
    KLINE,
    b'{"result":null,"id":1}',
    b'{"code":2,"msg":"Invalid request: unknown variant","id":3}',
]

REST = {
    "depth": b'{"lastUpdateId":1027024,"E":1767225600010,"T":1767225600005,'
    b'"bids":[["64000.00","4.5"]],"asks":[["64000.10","12.0"]]}',
    "aggTrades": b'[{"a":26129,"p":"64000.01","q":"4.70","f":27781,"l":27781,'
    b'"T":1767225600000,"m":true}]',
    "premiumIndex": b'{"symbol":"BTCUSDT","markPrice":"64010.5","indexPrice":"64005.25",'
    b'"estimatedSettlePrice":"64004.1","lastFundingRate":"0.00010000",'
    b'"interestRate":"0.00010000","nextFundingTime":1767254400000,"time":1767225600000}',
    "fundingRate": b'[{"symbol":"BTCUSDT","fundingRate":"-0.00030000",'
    b'"fundingTime":1767225600000,"markPrice":"64000.0"},'
    b'{"symbol":"BTCUSDT","fundingRate":"0.00010000","fundingTime":1767254400000,'
    b'"markPrice":""}]',
    "openInterest": b'{"openInterest":"10659.509","symbol":"BTCUSDT","time":1767225600000}',
    "openInterestHist": b'[{"symbol":"BTCUSDT","sumOpenInterest":"20403.63700000",'
    b'"sumOpenInterestValue":"1306000000.5","timestamp":1767225600000}]',
    "exchangeInfo": b'{"symbols":[{"symbol":"BTCUSDT","pair":"BTCUSDT",'
    b'"contractType":"PERPETUAL","status":"TRADING","baseAsset":"BTC","quoteAsset":"USDT",'
    b'"filters":[{"filterType":"PRICE_FILTER","tickSize":"0.10","minPrice":"556.80"},'
    b'{"filterType":"LOT_SIZE","stepSize":"0.001","minQty":"0.001"},'
    b'{"filterType":"MIN_NOTIONAL","notional":"100"}]},'
    b'{"symbol":"BTCUSDT_261225","pair":"BTCUSDT","contractType":"CURRENT_QUARTER",'
    b'"status":"TRADING","baseAsset":"BTC","quoteAsset":"USDT","filters":[]}]}',
}
