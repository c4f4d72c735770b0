"""The Binance USDⓈ-M feed against the simulator's futures face: books that equal the face's
whenever synced (through a break of the pu chain), every aggregated trade once, every closed
candle once and equal to the face's REST candles, mark prices every second and the
liquidation sample."""

from __future__ import annotations

import asyncio
import itertools
import time

from marketlab.records import Interval, Kline, Liquidation, MarkPrice, Trade
from marketlab.sim.market import fmt_units
from marketlab.stream.config import FeedConfig
from marketlab.venues.binance.perp_feed import PERP_CHANNELS, BinancePerpFeed
from tests.venues.perpetuals import face_levels, until


async def test_the_perpetual_feed_keeps_everything_whole(perp_sim):
    got: list = []
    config = FeedConfig(ws_url=perp_sim.ws_url, rest_url=perp_sim.rest_url, seed_klines=30)
    feed = BinancePerpFeed(
        ["BTCUSDT-PERP"], ["1m"], PERP_CHANNELS, config, lambda rs, src: got.extend(rs)
    )
    run = asyncio.create_task(feed.run())
    try:
        await asyncio.wait_for(feed.ready.wait(), 20)
        lb = feed.books["BTCUSDT-PERP"]
        await until(lambda: lb.book.synced, 15)
        market = perp_sim.binance_perp.markets["BTCUSDT"]

        async def equal_seen(times: int) -> None:
            seen = 0
            deadline = time.monotonic() + 15
            while seen < times:
                assert time.monotonic() < deadline, "the book never matched the face's"
                uid, bids, asks = market.book(1000)
                with lb.lock:
                    if lb.book.synced and lb.book.last_update_id == 5 * uid:
                        assert lb.book.bids(50) == face_levels(market, bids[:50])
                        assert lb.book.asks(50) == face_levels(market, asks[:50])
                        seen += 1
                await asyncio.sleep(0.01)

        await equal_seen(3)
        perp_sim.binance_perp.skip_depth(1, "BTCUSDT")  # an event lost: the pu chain breaks
        await until(lambda: lb.book.stats.gaps >= 1, 10)
        await equal_seen(3)
        await asyncio.sleep(2.5)  # a few more simulated minutes
    finally:
        await feed.stop()
        await run
    assert feed.fatal is None and feed.bad_frames == 0

    trades = [r for r in got if isinstance(r, Trade)]
    ids = [t.trade_id for t in trades]
    assert len(ids) > 50 and ids == list(range(ids[0], ids[0] + len(ids)))  # each once, no hole

    closed = [k for k in got if isinstance(k, Kline) and k.closed]
    opens = sorted(k.open_time for k in closed)  # history seeded over REST may come after
    assert len(opens) >= 30 and len(opens) == len(set(opens))  # live closes: each once
    assert all(b - a == 60_000 for a, b in itertools.pairwise(opens))
    pd, qd = market.spec.price_decimals, market.spec.qty_decimals
    rows = {r[0]: r for r in market.klines(Interval("1m"), opens[0], opens[-1], 1000)}
    for k in closed:  # each equal to the face's own candle
        _t, o, h, lo, c, v, close_time, _q, n, _tv, _tq, was_closed = rows[k.open_time]
        want = [float(fmt_units(x, pd)) for x in (o, h, lo, c)] + [float(fmt_units(v, qd))]
        assert [k.open, k.high, k.low, k.close, k.volume] == want
        assert (k.close_time, k.trades, was_closed) == (close_time, n, True)

    marks = [r for r in got if isinstance(r, MarkPrice)]
    assert len(marks) >= 100 and all(m.symbol == "BTCUSDT-PERP" for m in marks)
    liquidations = [r for r in got if isinstance(r, Liquidation)]
    assert liquidations and all(r.sampled for r in liquidations)
