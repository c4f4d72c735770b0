"""The Bybit linear feed against the simulator's linear face: the book equal to the face's
whenever synced (through a break of the ``u`` chain), every trade once (also across a dropped
connection, as far as Bybit lets it be known), every closed candle once and equal to the
face's REST candles, mark prices with funding and open interest, and every liquidation the
face pushed, once."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from marketlab.records import Interval, Kline, Liquidation, MarkPrice, OpenInterest, Trade
from marketlab.sim.market import fmt_units
from marketlab.stream.config import FeedConfig
from marketlab.venues.bybit.perp_feed import PERP_CHANNELS, BybitPerpFeed
from marketlab.venues.bybit.perp_rest import BybitPerpRest
from tests.conftest import START
from tests.venues.perpetuals import face_levels, until

EIGHT_HOURS = 8 * 3_600_000


async def test_the_linear_feed_keeps_everything_whole(perp_sim):
    got: list = []
    config = FeedConfig(ws_url=perp_sim.bybit_ws_url, rest_url=perp_sim.rest_url, seed_klines=30)
    feed = BybitPerpFeed(
        ["BTCUSDT-PERP"], ["1m"], PERP_CHANNELS, config, lambda rs, src: got.extend(rs)
    )
    face = perp_sim.bybit_perp
    market = face.markets["BTCUSDT"]
    run = asyncio.create_task(feed.run())
    try:
        await asyncio.wait_for(feed.ready.wait(), 20)
        lb = feed.books["BTCUSDT-PERP"]
        await until(lambda: lb.book.synced, 15)

        async def equal_seen(times: int) -> None:
            """The book equal to the face's ``times`` times, each with the simulator paused
            until the feed has what the face sent (on a loaded machine a running face can
            stay a step ahead of the book for longer than any deadline)."""
            for _ in range(times):
                perp_sim.pause()
                try:
                    await asyncio.sleep(0.2)  # the step that was due when paused ends
                    deadline = time.monotonic() + 15
                    while True:
                        assert time.monotonic() < deadline, "the book never matched the face's"
                        try:
                            sent = face.subscribed_u("BTCUSDT")
                        except LookupError:  # resubscribing (after a break): not yet back
                            sent = None
                        with lb.lock:
                            if lb.book.synced and lb.book.last_update_id == sent:
                                _, bids, asks = market.book(200)
                                assert lb.book.bids(50) == face_levels(market, bids[:50])
                                assert lb.book.asks(50) == face_levels(market, asks[:50])
                                break
                        await asyncio.sleep(0.01)
                finally:
                    perp_sim.resume()
                await asyncio.sleep(0.1)

        await equal_seen(3)
        face.skip_books(1, "BTCUSDT")  # a delta lost: the u chain breaks
        await until(lambda: lb.book.stats.gaps >= 1, 10)
        await equal_seen(3)
        await asyncio.sleep(1.0)
        dropped_at = perp_sim.now_ms()
        face.drop()  # every connection cut: trades across it cannot be checked whole
        await until(lambda: feed.trades_unverifiable.get("BTCUSDT-PERP", 0) >= 1, 15)
        await until(lambda: lb.book.synced, 15)
        back_at = perp_sim.now_ms()
        await equal_seen(2)
        await asyncio.sleep(1.5)  # a few more simulated minutes
    finally:
        await feed.stop()
        await run
    assert feed.fatal is None and feed.bad_frames == 0

    # every trade once, in the venue's order, and each equal to the face's trade
    trades = [r for r in got if isinstance(r, Trade)]
    ids = [t.trade_id for t in trades]
    assert len(ids) > 100 and ids == sorted(set(ids))
    pd, qd = market.spec.price_decimals, market.spec.qty_decimals
    sent = [
        (t.time, float(fmt_units(t.price, pd)), float(fmt_units(t.qty, qd)), t.buyer_is_maker)
        for t in tuple(market.recent_trades)
        if trades[0].time <= t.time <= trades[-1].time
    ]
    taken = [(t.time, t.price, t.qty, t.side == "sell") for t in trades]
    assert [r for r in sent if r in set(taken)] == taken  # each the face's, in its order
    # and none missing but across the drop (the feed said so: recent-trade gives back the
    # last 1,000, which covers a short drop; a loaded machine may make it longer)
    missing = [r for r in sent if r not in set(taken)]
    assert all(r[0] >= dropped_at - 1_000 for r in missing), missing[:3]

    closed = [k for k in got if isinstance(k, Kline) and k.closed]
    opens = sorted(k.open_time for k in closed)
    assert len(opens) >= 30 and len(opens) == len(set(opens))  # each once
    assert all(b - a == 60_000 for a, b in itertools.pairwise(opens))
    rows = {r[0]: r for r in market.klines(Interval("1m"), opens[0], opens[-1], 1000)}
    for k in closed:  # each equal to the face's own candle
        _t, o, h, lo, c, v, close_time, *_ = rows[k.open_time]
        want = [float(fmt_units(x, pd)) for x in (o, h, lo, c)] + [float(fmt_units(v, qd))]
        assert [k.open, k.high, k.low, k.close, k.volume] == want
        assert k.close_time == close_time

    marks = [r for r in got if isinstance(r, MarkPrice)]
    assert len(marks) >= 100 and all(m.symbol == "BTCUSDT-PERP" for m in marks)
    perp = face.perps["BTCUSDT"]
    for m in marks:  # funding as the face's series has it, for the next 8-hour boundary
        assert m.next_funding_time == (m.event_time // EIGHT_HOURS + 1) * EIGHT_HOURS
        assert m.funding_rate == perp.funding_rate(m.next_funding_time)
        assert abs(m.mark / m.index - 1) < 0.002
    times = [m.event_time for m in marks]
    assert times == sorted(set(times))
    interest = [r for r in got if isinstance(r, OpenInterest)]
    assert len(interest) >= 50
    for oi in interest[-20:]:  # the face's open interest at that time, in the base coin
        assert oi.open_interest == float(fmt_units(perp.open_interest(oi.time), qd))

    liquidations = [r for r in got if isinstance(r, Liquidation)]
    assert liquidations and not any(r.sampled for r in liquidations)
    keys = [(r.time, r.side, r.qty, r.price) for r in liquidations]
    assert len(keys) == len(set(keys))
    # every liquidation the face pushed while connected, once (those of the drop are lost)
    first, last = liquidations[0].time, liquidations[-1].time
    expected = [
        e
        for second in range(first // 1000 * 1000, last + 1, 1000)
        for e in perp.liquidations(second)
        if first <= e.time <= last and not dropped_at - 1000 <= e.time <= back_at
    ]
    by_time = {r.time: r for r in liquidations}
    assert len(expected) >= 5 and all(e.time in by_time for e in expected)
    for e in expected:
        r = by_time[e.time]
        assert r.side == ("long" if e.long else "short")
        assert (r.price, r.qty) == (
            float(fmt_units(e.price, pd)),
            float(fmt_units(e.qty, qd)),
        )


async def test_the_linear_rest_client_against_the_face(perp_sim):
    rest = BybitPerpRest(perp_sim.rest_url)
    face = perp_sim.bybit_perp
    market, perp = face.markets["BTCUSDT"], face.perps["BTCUSDT"]
    try:
        assert await rest.listed_symbols() == {"BTCUSDT-PERP": 0.01}
        perp_sim.pause()  # the book read by REST and from the face at the same step
        try:
            assert perp_sim.clock is not None  # a loaded market steps on until the pause
            await until(lambda: perp_sim.now_ms() == perp_sim.clock.now_ms(), 30)
            snapshot = await rest.depth("BTCUSDT-PERP", 50)
            _, bids, asks = market.book(50)
        finally:
            perp_sim.resume()
        assert snapshot.symbol == "BTCUSDT-PERP" and snapshot.bids == face_levels(market, bids)
        assert snapshot.asks == face_levels(market, asks)
        mark, oi = await rest.mark_and_open_interest("BTCUSDT-PERP")
        assert mark.next_funding_time == START + EIGHT_HOURS
        assert oi.open_interest > 0 and oi.value > 0
        rows, cursor = await rest.open_interest("BTCUSDT-PERP", "5min", limit=3)
        assert [r.time for r in rows] == sorted(r.time for r in rows) and len(rows) == 3
        assert int(cursor) == rows[0].time - 300_000
        assert rows[-1].open_interest == float(
            fmt_units(perp.open_interest(rows[-1].time), market.spec.qty_decimals)
        )
        assert await rest.funding_history("BTCUSDT-PERP") == []  # 30 minutes: none settled
        klines = await rest.klines("BTCUSDT-PERP", "1m", limit=5)
        assert len(klines) == 5 and {k.symbol for k in klines} == {"BTCUSDT-PERP"}
        recent = await rest.recent_trades("BTCUSDT-PERP", 200)
        # each one of the face's trades, oldest first (the market may move on meanwhile)
        times = {t.time for t in tuple(market.recent_trades)}
        assert 0 < len(recent) <= 200 and all(t.time in times for t in recent)
        assert [t.time for t in recent] == sorted(t.time for t in recent)
        with pytest.raises(ValueError, match="not a perpetual"):
            await rest.depth("BTCUSDT")
    finally:
        await rest.close()
