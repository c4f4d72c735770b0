"""The OKX swap feed against the simulator's OKX face: the book equal to the face's (in the base
asset) whenever synced, through a break of the seqId chain; every trade once; every closed
candle once and equal to the face's; funding rate, mark prices, the index (from
``index-tickers``, equal to the face's), open interest and liquidations arrive, sizes in BTC
from contracts of 0.01 BTC."""

from __future__ import annotations

import asyncio
import itertools
import time

import aiohttp
import orjson
import pytest

from marketlab.records import Interval, Kline, Liquidation, MarkPrice, OpenInterest, Trade
from marketlab.sim import SimExchange
from marketlab.sim.market import fmt_units
from marketlab.stream.config import FeedConfig
from marketlab.stream.rest import RestError
from marketlab.venues.okx.perp_feed import OKX_PERP_CHANNELS, OkxPerpFeed
from marketlab.venues.okx.perp_rest import OkxPerpRest
from tests.conftest import START
from tests.venues.perpetuals import until

SYMBOL = "BTCUSDT-PERP"


def _flat(levels) -> list[float]:
    return [x for level in levels for x in level]


def _base(market, levels) -> list[float]:
    """The face's levels (ticks and lots) as numbers, sizes in BTC."""
    pd = market.spec.price_decimals
    return _flat([(float(fmt_units(p, pd)), float(fmt_units(q, 5))) for p, q in levels])


def test_what_a_swap_collects_of_a_labs_channels():
    assert OkxPerpFeed.channels_of(["trades", "ticker", "book", "klines"]) == (
        "trades",
        "book",
        "klines",
        "mark",
        "funding",
        "open_interest",
        "liquidations",
    )
    with pytest.raises(ValueError, match="not perpetuals"):
        OkxPerpFeed(["BTCUSDT"], [], ["trades"], FeedConfig(), lambda rs, src: None)


async def test_the_swap_feed_keeps_everything_whole(perp_sim):
    got: list = []
    config = FeedConfig(ws_url=perp_sim.okx_ws_url, rest_url=perp_sim.rest_url, seed_klines=30)
    feed = OkxPerpFeed([SYMBOL], ["1m"], OKX_PERP_CHANNELS, config, lambda rs, src: got.extend(rs))
    run = asyncio.create_task(feed.run())
    face = perp_sim.okx
    market = face.swaps["BTC-USDT-SWAP"]
    try:
        await asyncio.wait_for(feed.ready.wait(), 20)
        lb = feed.books[SYMBOL]
        await until(lambda: lb.book.synced, 15)

        async def equal_seen(times: int) -> None:
            seen = 0
            deadline = time.monotonic() + 15
            while seen < times:
                assert time.monotonic() < deadline, "the book never matched the face's"
                uid, bids, asks = market.book(400)
                with lb.lock:
                    if lb.book.synced and lb.book.last_update_id == face.seq_id(SYMBOL, uid):
                        assert _flat(lb.book.bids(50)) == pytest.approx(_base(market, bids[:50]))
                        assert _flat(lb.book.asks(50)) == pytest.approx(_base(market, asks[:50]))
                        seen += 1
                await asyncio.sleep(0.01)

        await equal_seen(3)
        face.skip_books(1, SYMBOL)  # an update lost: the seqId chain breaks
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
    by_id = {t.trade_id: t for t in tuple(market.recent_trades)}
    for t in trades[-20:]:  # the face's own trade, its size in BTC
        assert t.qty == pytest.approx(float(fmt_units(by_id[t.trade_id].qty, 5)))

    closed = [k for k in got if isinstance(k, Kline) and k.closed]
    opens = sorted(k.open_time for k in closed)  # history seeded over REST may come after
    assert len(opens) >= 30 and len(opens) == len(set(opens))  # each once
    assert all(b - a == 60_000 for a, b in itertools.pairwise(opens))
    pd = market.spec.price_decimals
    rows = {r[0]: r for r in market.klines(Interval("1m"), opens[0], opens[-1], 1000)}
    for k in closed:  # each equal to the face's own candle
        _t, o, h, lo, c, v, close_time, q, _n, _tv, _tq, was_closed = rows[k.open_time]
        assert [k.open, k.high, k.low, k.close] == [float(fmt_units(x, pd)) for x in (o, h, lo, c)]
        assert k.volume == pytest.approx(float(fmt_units(v, 5)))  # BTC, not contracts
        assert k.quote_volume == pytest.approx(float(fmt_units(q, pd + 5)))
        assert (k.close_time, was_closed) == (close_time, True)

    perp = market.perp
    records = [r for r in got if r.symbol == SYMBOL]
    marks = [r for r in records if isinstance(r, MarkPrice) and r.mark == r.mark]
    assert len(marks) >= 100
    indexes = [r for r in records if isinstance(r, MarkPrice) and r.index == r.index]
    assert len(indexes) >= 20
    for r in indexes:  # the index alone, equal to the perpetual's index (the spot price) then
        assert r.index == float(fmt_units(round(perp.index(r.event_time)), pd))
        assert r.mark != r.mark and r.funding_rate != r.funding_rate
    fundings = [r for r in records if isinstance(r, MarkPrice) and r.funding_rate == r.funding_rate]
    assert fundings
    for f in fundings:  # the perpetual's rate for the next settlement, and its time
        assert f.next_funding_time == perp.next_funding(f.event_time)
        assert f.funding_rate == perp.funding_rate(f.next_funding_time)
    interest = [r for r in records if isinstance(r, OpenInterest)]
    assert len(interest) >= 20
    for oi in interest:  # the face's open interest, in BTC
        assert oi.open_interest == pytest.approx(float(fmt_units(perp.open_interest(oi.time), 5)))
    liquidations = [r for r in got if isinstance(r, Liquidation)]
    assert liquidations and all(r.sampled and r.symbol == SYMBOL for r in liquidations)


async def test_the_swap_rest_client_reads_the_face_in_base_units():
    # 17 hours of history: two fundings settled (every 8 h from midnight UTC) before START
    async with SimExchange(["BTCUSDT"], speed=60, seed=5, start_time=START, history="17h") as sim:
        await _rest_client_reads(sim)


async def _rest_client_reads(sim: SimExchange) -> None:
    rest = OkxPerpRest(sim.rest_url)
    market = sim.okx.swaps["BTC-USDT-SWAP"]
    perp = market.perp
    try:
        assert await rest.listed_symbols() == {SYMBOL: 0.01}  # the price tick
        assert await rest.contract_value(SYMBOL) == 0.01
        now = await rest.funding_rate(SYMBOL)
        assert now.next_funding_time == perp.next_funding(now.event_time)
        assert now.funding_rate == perp.funding_rate(now.next_funding_time)
        history = await rest.funding_history(SYMBOL)
        eight_hours = perp.funding_ms
        assert [f.funding_time for f in history] == [START - eight_hours, START]
        assert [f.rate for f in history] == [perp.funding_rate(f.funding_time) for f in history]
        older = await rest.funding_history(SYMBOL, after=START, limit=5)
        assert [f.funding_time for f in older] == [START - eight_hours]  # before START only
        newer = await rest.funding_history(SYMBOL, before=START - eight_hours)
        assert [f.funding_time for f in newer] == [START]
        oi = await rest.open_interest(SYMBOL)
        assert oi.open_interest == pytest.approx(float(fmt_units(perp.open_interest(oi.time), 5)))
        mark = await rest.mark_price(SYMBOL)
        assert mark.mark == float(fmt_units(round(perp.mark(mark.event_time)), 2))
        # the face's book fills in its first moments: asked once it holds five levels a side
        await until(lambda: all(len(side) == 5 for side in market.book(5)[1:]), 10)
        snap = await rest.depth(SYMBOL, 5)
        assert snap.symbol == SYMBOL and len(snap.bids) == 5
        want = list(market.recent_trades[-10:])
        trades = await rest.trades_from(SYMBOL, want[0].trade_id, 10)
        assert [t.trade_id for t in trades] == [t.trade_id for t in want]
        assert [t.qty for t in trades] == pytest.approx([float(fmt_units(t.qty, 5)) for t in want])
        with pytest.raises(RestError, match="no linear swap XRPUSDT-PERP"):
            await rest.contract_value("XRPUSDT-PERP")
    finally:
        await rest.close()


async def test_the_face_serves_a_swaps_index_by_its_underlying_and_refuses_another(perp_sim):
    """``index-tickers`` is subscribed by the index's name (``BTC-USDT``); a name that is no
    index of the face (a swap's name, a pair it does not list) is refused with 60018."""
    perp = perp_sim.okx.swaps["BTC-USDT-SWAP"].perp
    args = [
        {"channel": "index-tickers", "instId": "BTC-USDT"},
        {"channel": "index-tickers", "instId": "BTC-USDT-SWAP"},
        {"channel": "index-tickers", "instId": "XRP-USDT"},
    ]
    async with aiohttp.ClientSession() as http, http.ws_connect(perp_sim.okx_ws_url) as ws:
        await ws.send_str(orjson.dumps({"op": "subscribe", "args": args}).decode())
        answers, pushes = [], []
        deadline = time.monotonic() + 10
        while len(answers) < 3 or len(pushes) < 3:
            assert time.monotonic() < deadline, (answers, pushes)
            msg = orjson.loads((await ws.receive(timeout=5)).data)
            (pushes if "data" in msg else answers).append(msg)
    assert answers[0] == {"event": "subscribe", "arg": args[0], "connId": answers[0]["connId"]}
    assert [(a["event"], a["code"]) for a in answers[1:]] == [("error", "60018")] * 2
    for p in pushes:
        assert p["arg"] == args[0]
        (row,) = p["data"]
        assert row["instId"] == "BTC-USDT"
        assert float(row["idxPx"]) == float(fmt_units(round(perp.index(int(row["ts"]))), 2))
        assert float(row["low24h"]) <= float(row["idxPx"]) <= float(row["high24h"])
