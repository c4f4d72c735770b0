"""An independent client, ccxt, speaks to the simulator as to Binance."""

import asyncio
import time

import ccxt
import ccxt.pro
import pytest

OPTIONS = {"options": {"fetchCurrencies": False, "fetchMarkets": {"types": ["spot"]}}}


def rest_client(sim) -> ccxt.binance:
    ex = ccxt.binance(OPTIONS)
    ex.urls["api"]["public"] = f"{sim.rest_url}/api/v3"
    return ex


def test_ccxt_rest_markets_klines_depth_and_tickers(sim):
    ex = rest_client(sim)
    markets = ex.load_markets()
    assert {"BTC/USDT", "ETH/USDT"} <= set(markets)
    assert markets["BTC/USDT"]["precision"]["price"] == 0.01
    ohlcv = ex.fetch_ohlcv("BTC/USDT", "1m", limit=5)
    assert len(ohlcv) == 5 and all(row[2] >= max(row[1], row[4]) for row in ohlcv)
    oracle = sim.klines("BTCUSDT", "1m", start=ohlcv[0][0], limit=4)
    assert [row[4] for row in ohlcv[:4]] == [o["close"] for o in oracle]
    book = ex.fetch_order_book("ETH/USDT", limit=20)
    assert len(book["bids"]) == 20 and book["bids"][0][0] < book["asks"][0][0] and book["nonce"] > 0
    ticker = ex.fetch_ticker("BTC/USDT")
    assert ticker["bid"] < ticker["ask"] and ticker["last"] > 0
    assert set(ex.fetch_tickers()) == {"BTC/USDT", "ETH/USDT"}


def follow_book(sim, ex, venue: str = "binance") -> None:
    """Follow BTC/USDT for a while, freeze the exchange, and check the book equals its own."""

    async def watch():
        nonces = []
        try:
            began = time.monotonic()
            while time.monotonic() - began < 4:
                book = await ex.watch_order_book("BTC/USDT")
                nonces.append(book["nonce"])
                assert book["bids"][0][0] < book["asks"][0][0]
            sim.pause()
            await asyncio.sleep(0.3)
            truth = sim.book("BTCUSDT", venue=venue)
            while book["nonce"] < truth["last_update_id"]:
                book = await asyncio.wait_for(ex.watch_order_book("BTC/USDT"), 5)
            return nonces, book, truth
        finally:
            sim.resume()
            await ex.close()

    nonces, book, truth = asyncio.run(watch())
    assert len(nonces) > 20 and nonces == sorted(nonces)
    assert book["nonce"] == truth["last_update_id"]
    assert [tuple(level[:2]) for level in book["bids"][:50]] == truth["bids"][:50]
    assert [tuple(level[:2]) for level in book["asks"][:50]] == truth["asks"][:50]


def test_ccxt_pro_follows_the_order_book_without_sequence_errors(sim):
    ex = ccxt.pro.binance(OPTIONS)
    ex.urls["api"]["public"] = f"{sim.rest_url}/api/v3"
    ex.urls["api"]["ws"]["spot"] = f"{sim.ws_url}/ws"
    follow_book(sim, ex)


OKX_OPTIONS = {"options": {"fetchMarkets": {"types": ["spot"]}}}


def okx_client(sim, cls=ccxt.okx):
    ex = cls(OKX_OPTIONS)
    ex.urls["api"]["rest"] = sim.rest_url
    return ex


def test_ccxt_okx_rest_markets_candles_books_and_tickers(sim):
    ex = okx_client(sim)
    markets = ex.load_markets()
    assert {"BTC/USDT", "ETH/USDT"} <= set(markets)
    assert markets["BTC/USDT"]["precision"]["price"] == 0.01
    ohlcv = ex.fetch_ohlcv("BTC/USDT", "1m", limit=5)
    assert len(ohlcv) == 5 and [r[0] for r in ohlcv] == sorted(r[0] for r in ohlcv)
    oracle = sim.klines("BTCUSDT", "1m", start=ohlcv[0][0], limit=4, venue="okx")
    assert [row[4] for row in ohlcv[:4]] == [o["close"] for o in oracle]
    since = ohlcv[0][0] - 30 * 60_000
    older = ex.fetch_ohlcv("BTC/USDT", "1m", since=since, limit=10)
    assert [r[0] for r in older] == [since + i * 60_000 for i in range(10)]
    book = ex.fetch_order_book("ETH/USDT", limit=20)
    assert len(book["bids"]) == 20 and book["bids"][0][0] < book["asks"][0][0]
    ticker = ex.fetch_ticker("BTC/USDT")
    assert ticker["bid"] < ticker["ask"] and ticker["last"] > 0
    assert {"BTC/USDT", "ETH/USDT"} <= set(ex.fetch_tickers())
    with pytest.raises(ccxt.BadSymbol):
        ex.public_get_market_candles({"instId": "NOPE-USDT", "bar": "1m"})


def test_ccxt_pro_okx_follows_the_order_book_without_sequence_errors(sim):
    ex = okx_client(sim, ccxt.pro.okx)
    ex.urls["api"]["ws"] = f"ws://127.0.0.1:{sim.port}/ws/v5"
    follow_book(sim, ex, venue="okx")
