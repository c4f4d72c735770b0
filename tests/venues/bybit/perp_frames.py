"""Bybit linear frames and REST bodies, shaped as Bybit's docs show them (values chosen by
hand), for the perpetual tests and their fuzz target."""

from __future__ import annotations

import orjson

T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC, ms


def push(topic: str, kind: str, data: object, ts: int = T0 + 1000) -> bytes:
    return orjson.dumps({"topic": topic, "type": kind, "data": data, "cs": 9, "ts": ts})


TICKER_SNAPSHOT = push(
    "tickers.BTCUSDT",
    "snapshot",
    {
        "symbol": "BTCUSDT",
        "tickDirection": "PlusTick",
        "price24hPcnt": "0.017103",
        "lastPrice": "17216.00",
        "prevPrice24h": "16926.50",
        "highPrice24h": "17281.50",
        "lowPrice24h": "16915.00",
        "prevPrice1h": "17238.00",
        "markPrice": "17217.33",
        "indexPrice": "17227.36",
        "openInterest": "68744.761",
        "openInterestValue": "1183601235.91",
        "turnover24h": "1570383121.943499",
        "volume24h": "91705.276",
        "nextFundingTime": "1767254400000",
        "fundingRate": "-0.000212",
        "bid1Price": "17215.50",
        "bid1Size": "84.489",
        "ask1Price": "17216.00",
        "ask1Size": "83.020",
        "fundingIntervalHour": "8",
        "fundingCap": "0.005",
    },
)
# only the best bid and ask changed: no mark price, no open interest to give
TICKER_BOOK_DELTA = push(
    "tickers.BTCUSDT",
    "delta",
    {"symbol": "BTCUSDT", "bid1Price": "17215.00", "bid1Size": "1.2"},
    T0 + 1100,
)
TICKER_MARK_DELTA = push(
    "tickers.BTCUSDT", "delta", {"symbol": "BTCUSDT", "markPrice": "17220.10"}, T0 + 1200
)
TICKER_OI_DELTA = push(
    "tickers.BTCUSDT",
    "delta",
    {"symbol": "BTCUSDT", "openInterest": "68750.5", "singleOpenInterestValue": "1"},
    T0 + 1300,
)
TRADES = push(
    "publicTrade.BTCUSDT",
    "snapshot",
    [
        {
            "T": T0 + 900,
            "s": "BTCUSDT",
            "S": "Buy",
            "v": "0.001",
            "p": "16578.50",
            "L": "PlusTick",
            "i": "20f43950-d8dd-5b31-9112-a178eb6023af",
            "BT": False,
            "RPI": False,
            "seq": 1783284617,
        },
        {
            "T": T0 + 900,
            "s": "BTCUSDT",
            "S": "Sell",
            "v": "0.25",
            "p": "16578.00",
            "L": "MinusTick",
            "i": "e8a1d07f-2905-5a0a-ab79-cf9ce5665d90",
            "BT": False,
            "RPI": False,
            "seq": 1783284617,
        },
        {
            "T": T0 + 950,
            "s": "BTCUSDT",
            "S": "Sell",
            "v": "0.5",
            "p": "16577.5",
            "L": "MinusTick",
            "i": "0a1b2c3d-0000-5a0a-ab79-cf9ce5665d90",
            "BT": False,
            "RPI": True,
            "seq": 1783284620,
        },
    ],
)
LIQUIDATIONS = push(
    "allLiquidation.BTCUSDT",
    "snapshot",
    [
        {"T": T0 + 700, "s": "BTCUSDT", "S": "Buy", "v": "0.012", "p": "16400.5"},
        {"T": T0 + 800, "s": "BTCUSDT", "S": "Sell", "v": "2", "p": "16700"},
    ],
)
BOOK = orjson.dumps(
    {
        "topic": "orderbook.200.BTCUSDT",
        "type": "snapshot",
        "ts": T0 + 1000,
        "data": {
            "s": "BTCUSDT",
            "b": [["16493.50", "0.006"], ["16493.00", "0.100"]],
            "a": [["16611.00", "0.029"]],
            "u": 18521288,
            "seq": 7961638724,
        },
        "cts": T0 + 998,
    }
)
KLINE = orjson.dumps(
    {
        "topic": "kline.1.BTCUSDT",
        "data": [
            {
                "start": T0,
                "end": T0 + 59_999,
                "interval": "1",
                "open": "16649.5",
                "close": "16677",
                "high": "16677",
                "low": "16608",
                "volume": "2.081",
                "turnover": "34666.4005",
                "confirm": True,
                "timestamp": T0 + 60_100,
            }
        ],
        "ts": T0 + 60_100,
        "type": "snapshot",
    }
)
ACK = b'{"success":true,"ret_msg":"","conn_id":"3cd84cb1","req_id":"","op":"subscribe"}'
PONG = b'{"success":true,"ret_msg":"pong","conn_id":"465772b1","req_id":"","op":"ping"}'

FRAMES = [
    TICKER_SNAPSHOT,
    TICKER_BOOK_DELTA,
    TICKER_MARK_DELTA,
    TICKER_OI_DELTA,
    TRADES,
    LIQUIDATIONS,
    BOOK,
    KLINE,
    ACK,
    PONG,
]


def envelope(result: object, time: int = T0 + 5000) -> bytes:
    return orjson.dumps(
        {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": time}
    )


REST = {
    "instruments": envelope(
        {
            "category": "linear",
            "list": [
                {
                    "symbol": "BTCUSDT",
                    "contractType": "LinearPerpetual",
                    "status": "Trading",
                    "baseCoin": "BTC",
                    "quoteCoin": "USDT",
                    "launchTime": "1585526400000",
                    "priceScale": "2",
                    "priceFilter": {
                        "minPrice": "0.10",
                        "maxPrice": "199999.80",
                        "tickSize": "0.10",
                    },
                    "lotSizeFilter": {
                        "maxOrderQty": "1190.000",
                        "minOrderQty": "0.001",
                        "qtyStep": "0.001",
                        "minNotionalValue": "5",
                    },
                    "fundingInterval": 480,
                    "settleCoin": "USDT",
                },
                {
                    "symbol": "BTC-26DEC25",
                    "contractType": "LinearFutures",
                    "status": "Trading",
                    "baseCoin": "BTC",
                    "quoteCoin": "USDT",
                    "priceFilter": {"tickSize": "0.50"},
                    "lotSizeFilter": {"qtyStep": "0.001", "minOrderQty": "0.001"},
                    "fundingInterval": 0,
                },
            ],
            "nextPageCursor": "first%3DBTCUSDT%26last%3DBTCUSDT",
        }
    ),
    "funding": envelope(
        {
            "category": "linear",
            "list": [
                {
                    "symbol": "BTCUSDT",
                    "fundingRate": "0.0001",
                    "fundingRateTimestamp": str(T0 + 8 * 3_600_000),
                },
                {"symbol": "BTCUSDT", "fundingRate": "-0.00005", "fundingRateTimestamp": str(T0)},
            ],
        }
    ),
    "open_interest": envelope(
        {
            "symbol": "BTCUSDT",
            "category": "linear",
            "list": [
                {"openInterest": "461134384.00000000", "timestamp": str(T0 + 300_000)},
                {"openInterest": "461134292.00000000", "timestamp": str(T0)},
            ],
            "nextPageCursor": "",
        }
    ),
    "tickers": envelope(
        {
            "category": "linear",
            "list": [
                {
                    "symbol": "BTCUSDT",
                    "lastPrice": "16597.00",
                    "indexPrice": "16598.54",
                    "markPrice": "16596.00",
                    "openInterest": "22192.34",
                    "openInterestValue": "368308488.64",
                    "fundingRate": "0.0001",
                    "nextFundingTime": str(T0 + 8 * 3_600_000),
                    "bid1Price": "16596.00",
                    "ask1Price": "16597.50",
                }
            ],
        }
    ),
    "recent": envelope(
        {
            "category": "linear",
            "list": [  # newest first
                {
                    "execId": "c",
                    "symbol": "BTCUSDT",
                    "price": "16600",
                    "size": "0.3",
                    "side": "Buy",
                    "time": str(T0 + 30),
                    "isBlockTrade": False,
                    "isRPITrade": False,
                    "seq": "501",
                },
                {
                    "execId": "b",
                    "symbol": "BTCUSDT",
                    "price": "16599",
                    "size": "0.2",
                    "side": "Sell",
                    "time": str(T0 + 20),
                    "isBlockTrade": False,
                    "isRPITrade": False,
                    "seq": "500",
                },
                {
                    "execId": "a",
                    "symbol": "BTCUSDT",
                    "price": "16598",
                    "size": "0.1",
                    "side": "Sell",
                    "time": str(T0 + 20),
                    "isBlockTrade": False,
                    "isRPITrade": False,
                    "seq": "500",
                },
            ],
        }
    ),
}
