"""The simulated Bybit's linear perpetuals: the WebSocket ``/v5/public/linear`` and the REST
endpoints with ``category=linear``, on the spot face's host.

Written from Bybit's v5 documentation (as the project's research notes quote it), independently
of :mod:`marketlab.venues.bybit`'s perpetual modules, so the two check each other. The
perpetuals trade the spot market at a small premium (:mod:`marketlab.sim.perpetual`); Bybit
calls one by its pair (``BTCUSDT``).

What linear does differently from spot, and this face with it:

- a request takes any number of topics (spot: 10), up to 21,000 characters a connection;
  answers say ``"ret_msg": ""`` and ``"req_id": ""`` when none was sent; a topic already held
  is refused (``error:already subscribed,topic:…``) where spot says nothing; an unknown topic,
  depth, interval or symbol is ``error:handler not found,topic:…``;
- trades carry a UUID as id, their tick direction ``L`` and the cross sequence ``seq`` (here
  each of the market's trades is a match of its own);
- ``tickers.S`` sends a snapshot on subscription, then each second a delta holding only the
  fields that changed (with ``symbol``): mark and index price, funding rate and next funding
  time, open interest and its value, the 24 h figures and the best bid and ask;
- ``allLiquidation.S`` sends every liquidation, batched every 500 ms (a push only when there
  is one), ``S`` = ``Buy`` when a long was liquidated, ``p`` the bankruptcy price;
- REST: ``instruments-info`` (paged by cursor, ``fundingInterval`` in minutes),
  ``funding/history`` (newest first; ``startTime`` alone is refused), ``open-interest``
  (``intervalTime``, paged back to the launch by cursor), ``tickers`` and ``recent-trade``
  (up to 1,000) for linear. The spot face's IP limit (600 requests / 5 s, then 403 and a
  ban) counts both, as Bybit counts an IP's every request.

The book, klines, ping rules, the idle cut and the faults (``skip_books``, ``reset_books``,
``drop``, ``outage``, ``send_malformed``) are the spot face's, on the perpetuals' markets.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import Any

import orjson
from aiohttp import web

from marketlab.sim.bybit import BybitFace
from marketlab.sim.bybit.rest import (
    INTERVALS,
    BybitError,
    book_seq,
    levels,
    num,
    ticker_24h,
    trade_seq,
)
from marketlab.sim.bybit.ws import (
    MAX_ARGS_CHARS,
    PUSH_DELAY_MS,
    TRADES_PER_MESSAGE,
    BybitConnection,
)
from marketlab.sim.face import request_json
from marketlab.sim.host import BybitHost
from marketlab.sim.market import StepResult, VenueMarket
from marketlab.sim.perpetual import HOUR_MS, PerpetualSeries, PerpetualSpec

LINEAR_DEPTHS = ("1", "50", "200", "1000")
RECENT_TRADES_MAX = 1000
FUNDING_LIMIT = 200
OPEN_INTEREST_LIMIT = 200
OPEN_INTEREST_INTERVALS = {
    "5min": 300_000,
    "15min": 900_000,
    "30min": 1_800_000,
    "1h": HOUR_MS,
    "4h": 4 * HOUR_MS,
    "1d": 24 * HOUR_MS,
}
INSTRUMENTS_MAX = 1000
LIQUIDATION_BATCH_MS = 500
_UUIDS = uuid.UUID("6f1c3a52-3f0e-4d8e-9a7b-1b2c3d4e5f60")  # the namespace of trade ids


def linear_trade_id(symbol: str, market_id: int) -> str:
    """The UUID Bybit linear would give the market's trade ``market_id`` (the same on the
    WebSocket and REST)."""
    return str(uuid.uuid5(_UUIDS, f"{symbol}:{market_id}"))


def _params_error(what: str) -> BybitError:
    return BybitError(10001, f"params error: {what}")


def _int(q: Any, name: str, default: int | None) -> Any:
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"-?[0-9]{1,19}", raw):
        raise _params_error(f"{name} invalid")
    return int(raw)


def rate_text(rate: float) -> str:
    """A funding rate as Bybit prints it (``-0.000212``, ``0.0001``)."""
    text = f"{rate:.8f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


class BybitPerpFace(BybitFace):
    """The linear WebSocket, its REST handlers (served through ``spot``'s routes and limit)
    and the step → topic fan-out of the perpetuals."""

    def __init__(self, sim: BybitHost, spot: BybitFace, spec: PerpetualSpec | None = None):
        super().__init__(sim)
        self.perps = {
            s: PerpetualSeries(m, sim.market.seed, spec) for s, m in sim.market.symbols.items()
        }
        self.markets = {s: p.trading for s, p in self.perps.items()}
        self._tickers: dict[str, dict[str, str]] = {}  # each ticker as last pushed
        self._last_price: dict[str, tuple[int, str]] = {}  # last trade price, tick direction
        spot.linear_handlers.update(
            {
                "/v5/market/instruments-info": self.instruments,
                "/v5/market/kline": self.klines,
                "/v5/market/orderbook": self.orderbook,
                "/v5/market/recent-trade": self.recent_trades,
                "/v5/market/tickers": self.tickers,
                "/v5/market/funding/history": self.funding_history,
                "/v5/market/open-interest": self.open_interest,
            }
        )

    def add_routes(self, app: web.Application) -> None:
        """The linear WebSocket (its REST goes through the spot face's routes)."""
        self.loop = asyncio.get_running_loop()
        app.router.add_get("/v5/public/linear", self.websocket)

    # --- WebSocket requests ------------------------------------------------------------

    def _control(self, conn: BybitConnection, text: str) -> list[bytes]:
        try:
            msg = request_json(text)
        except orjson.JSONDecodeError:
            return [self._undecodable(conn, text)]
        if not isinstance(msg, dict):
            return [self._undecodable(conn, text)]
        op, req_id = msg.get("op"), msg.get("req_id")
        req = "" if req_id is None else req_id  # linear says "" where none was sent
        if op == "ping":
            conn.last_ping = time.monotonic()
            return [self._answer(conn, "ping", True, "pong", req)]
        if op not in ("subscribe", "unsubscribe"):
            return [self._answer(conn, str(op or ""), False, "error:invalid op", req)]
        args = msg.get("args")
        if not isinstance(args, list) or not args:
            return [self._answer(conn, op, False, "args is empty", req)]
        for arg in args:  # one bad topic refuses the request: nothing of it is (un)subscribed
            problem = self._check_topic(arg)
            if problem is not None:
                return [self._answer(conn, op, False, problem, req)]
        topics: list[str] = list(dict.fromkeys(args))
        if op == "unsubscribe":
            for topic in topics:
                self._unsubscribe(conn, topic)
            return [self._answer(conn, op, True, "", req)]
        held = [t for t in topics if t in conn.topics]
        if held:
            return [self._answer(conn, op, False, f"error:already subscribed,topic:{held[0]}", req)]
        if sum(map(len, conn.topics)) + sum(map(len, topics)) > MAX_ARGS_CHARS:
            return [self._answer(conn, op, False, f"args length exceeds {MAX_ARGS_CHARS}", req)]
        replies = [self._answer(conn, op, True, "", req)]
        for topic in topics:
            conn.topics.add(topic)
            self.subs.setdefault(topic, set()).add(conn)
            if topic.startswith("orderbook."):
                replies.append(self._book_snapshot(topic))
            elif topic.startswith("tickers."):
                replies.append(self._ticker_snapshot(topic))
        return replies

    def _check_topic(self, topic: Any) -> str | None:
        """Linear's refusal of a topic, or None (topics and symbols are case-sensitive)."""
        if not isinstance(topic, str):
            return f"error:handler not found,topic:{orjson.dumps(topic).decode()}"
        parts = topic.split(".")
        shape = {"publicTrade": 2, "tickers": 2, "allLiquidation": 2, "orderbook": 3, "kline": 3}
        if (
            shape.get(parts[0]) != len(parts)
            or (parts[0] == "kline" and parts[1] not in INTERVALS)
            or (parts[0] == "orderbook" and parts[1] not in LINEAR_DEPTHS)
            or parts[-1] not in self.markets
        ):
            return f"error:handler not found,topic:{topic}"
        return None

    def _book_message(
        self,
        topic: str,
        m: VenueMarket,
        kind: str,
        bids: list[tuple[int, int]],
        asks: list[tuple[int, int]],
        u: int,
    ) -> bytes:
        """Futures' order (but for level 1): ``type`` before ``ts``, ``cts`` at the top level."""
        cts = m.now
        data = {"s": m.spec.symbol, "b": levels(m, bids), "a": levels(m, asks)}
        return orjson.dumps(
            {
                "topic": topic,
                "type": kind,
                "ts": cts + PUSH_DELAY_MS,
                "data": {**data, "u": u, "seq": book_seq(m)},
                "cts": cts,
            }
        )

    # --- tickers -------------------------------------------------------------------------

    def ticker_fields(self, symbol: str) -> dict[str, str]:
        """A linear ticker now, every field, in Bybit's order."""
        p, m = self.perps[symbol], self.markets[symbol]
        pd, qd = m.spec.price_decimals, m.spec.qty_decimals
        now = m.now
        day = ticker_24h(m)
        _, bids, asks = m.book(1)
        bid, bid_q = bids[0] if bids else (0, 0)
        ask, ask_q = asks[0] if asks else (0, 0)
        mark = p.mark(now)
        oi = p.open_interest(now)
        value = oi * 10.0**-qd * mark * 10.0**-pd
        next_funding = p.next_funding(now)
        return {
            "symbol": symbol,
            "tickDirection": self._last_price.get(symbol, (0, "ZeroPlusTick"))[1],
            "price24hPcnt": day["price24hPcnt"],
            "lastPrice": day["lastPrice"],
            "prevPrice24h": day["prevPrice24h"],
            "highPrice24h": day["highPrice24h"],
            "lowPrice24h": day["lowPrice24h"],
            "markPrice": num(round(mark), pd),
            "indexPrice": num(round(p.index(now)), pd),
            "openInterest": num(oi, qd),
            "openInterestValue": f"{value:.2f}",
            "turnover24h": day["turnover24h"],
            "volume24h": day["volume24h"],
            "nextFundingTime": str(next_funding),
            "fundingRate": rate_text(p.funding_rate(next_funding)),
            "bid1Price": num(bid, pd),
            "bid1Size": num(bid_q, qd),
            "ask1Price": num(ask, pd),
            "ask1Size": num(ask_q, qd),
            "fundingIntervalHour": str(p.spec.funding_hours),
            "fundingCap": "0.0075",
        }

    def _ticker_snapshot(self, topic: str) -> bytes:
        """What a new subscriber gets: the ticker as the topic's deltas last left it, so the
        next delta applies to it."""
        symbol = topic.split(".")[1]
        fields = self._tickers.get(symbol)
        if fields is None:
            fields = self._tickers[symbol] = self.ticker_fields(symbol)
        return orjson.dumps(self._ticker_push(topic, "snapshot", fields))

    def _ticker_push(self, topic: str, kind: str, data: dict[str, str]) -> dict[str, Any]:
        m = self.markets[topic.split(".")[1]]
        return {"topic": topic, "type": kind, "data": data, "cs": book_seq(m), "ts": m.now}

    # --- fan-out -----------------------------------------------------------------------

    def publish(self, results: dict[str, StepResult]) -> None:
        """One market second at the perpetuals' prices (with nobody subscribed only the REST
        book's ``u`` moves, which needs no prices)."""
        if self.subs:
            results = {s: self.markets[s].shift(r) for s, r in results.items()}
        super().publish(results)

    def _publish(self, symbol: str, m: VenueMarket, r: StepResult) -> None:
        subs = self.subs
        pd, qd = m.spec.price_decimals, m.spec.qty_decimals
        topic = f"publicTrade.{symbol}"
        if r.trades:
            items = []
            last = self._last_price.get(symbol, (0, "ZeroPlusTick"))
            for t in r.trades:
                direction = (
                    "PlusTick"
                    if t.price > last[0]
                    else "MinusTick"
                    if t.price < last[0]
                    else "ZeroPlusTick"
                    if last[1].endswith("PlusTick")
                    else "ZeroMinusTick"
                )
                last = (t.price, direction)
                items.append(
                    {
                        "T": t.time,
                        "s": symbol,
                        "S": "Sell" if t.buyer_is_maker else "Buy",
                        "v": num(t.qty, qd),
                        "p": num(t.price, pd),
                        "L": direction,
                        "i": linear_trade_id(symbol, t.trade_id),
                        "BT": False,
                        "RPI": False,
                        "seq": trade_seq(m, t),
                    }
                )
            self._last_price[symbol] = last
            if topic in subs:
                for at in range(0, len(items), TRADES_PER_MESSAGE):
                    self._send(
                        topic,
                        {
                            "topic": topic,
                            "type": "snapshot",
                            "ts": r.end + PUSH_DELAY_MS,
                            "data": items[at : at + TRADES_PER_MESSAGE],
                        },
                    )
        topic = f"tickers.{symbol}"
        if topic in subs:
            fields = self.ticker_fields(symbol)
            before = self._tickers.get(symbol, {})
            changed = {k: v for k, v in fields.items() if before.get(k) != v}
            self._tickers[symbol] = fields
            if changed:
                delta = {**changed, "symbol": symbol}
                self._send(topic, self._ticker_push(topic, "delta", delta))
        else:
            self._tickers.pop(symbol, None)
        for name, iv in INTERVALS.items():
            topic = f"kline.{name}.{symbol}"
            if topic not in subs:
                continue
            closed = r.closed.get(iv)
            for candle, confirm in ((closed, True), (m.candles[iv], False)):
                if candle is not None:
                    self._send(
                        topic,
                        {
                            "topic": topic,
                            "data": [self._kline(m, name, candle, confirm, r.end)],
                            "ts": r.end + PUSH_DELAY_MS,
                            "type": "snapshot",
                        },
                    )
        topic = f"allLiquidation.{symbol}"
        if topic in subs:
            p = self.perps[symbol]
            batches: dict[int, list[dict[str, Any]]] = {}
            for liq in p.liquidations(r.second):
                at = r.second + (liq.time - r.second) // LIQUIDATION_BATCH_MS * LIQUIDATION_BATCH_MS
                batches.setdefault(at + LIQUIDATION_BATCH_MS, []).append(
                    {
                        "T": liq.time,
                        "s": symbol,
                        "S": "Buy" if liq.long else "Sell",  # the side of the position
                        "v": num(liq.qty, qd),
                        "p": num(liq.price, pd),
                    }
                )
            for ts, data in sorted(batches.items()):
                self._send(topic, {"topic": topic, "type": "snapshot", "ts": ts, "data": data})

    # --- REST ----------------------------------------------------------------------------

    def _market(self, request: web.Request, category: str) -> VenueMarket:
        """The perpetual asked for: only linear is listed here."""
        symbol = request.query.get("symbol")
        if not symbol:
            raise _params_error("symbol is required")
        m = self.markets.get(symbol)
        if m is None or category != "linear":
            raise _params_error("symbol invalid")
        return m

    def _perp(self, request: web.Request) -> PerpetualSeries:
        m = self._market(request, self._category(request))
        return self.perps[m.spec.symbol]

    async def instruments(self, request: web.Request) -> Any:
        """Linear perpetuals, paged by ``limit`` and ``cursor`` (the first symbol of the next
        page, opaque to a client); an unknown symbol is an error on linear."""
        category = self._category(request)
        if category != "linear":
            raise _params_error("category invalid")
        q = request.query
        symbol = q.get("symbol")
        if symbol and symbol not in self.markets:
            raise _params_error("symbol invalid")
        limit = _int(q, "limit", 500)
        if not 1 <= limit <= INSTRUMENTS_MAX:
            raise _params_error("limit invalid")
        names = [s for s in sorted(self.markets) if not symbol or s == symbol]
        cursor = q.get("cursor") or ""
        if cursor:
            if not cursor.startswith("next%3D") or cursor[7:] not in names:
                raise _params_error("cursor invalid")
            names = names[names.index(cursor[7:]) :]
        page, rest = names[:limit], names[limit:]
        return {
            "category": "linear",
            "list": [self._linear_instrument(self.markets[s]) for s in page],
            "nextPageCursor": f"next%3D{rest[0]}" if rest else "",
        }

    def _linear_instrument(self, m: VenueMarket) -> dict[str, Any]:
        pd, qd = m.spec.price_decimals, m.spec.qty_decimals
        p = self.perps[m.spec.symbol]
        return {
            "symbol": m.spec.symbol,
            "contractType": "LinearPerpetual",
            "status": "Trading",
            "baseCoin": m.spec.base,
            "quoteCoin": m.spec.quote,
            "launchTime": str(self.sim.market.genesis),
            "deliveryTime": "0",
            "deliveryFeeRate": "",
            "priceScale": str(pd),
            "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
            "priceFilter": {
                "minPrice": num(1, pd),
                "maxPrice": "1999999.80",
                "tickSize": num(1, pd),
            },
            "lotSizeFilter": {
                "maxOrderQty": "1190",
                "maxMktOrderQty": "500",
                "minOrderQty": num(1, qd),
                "qtyStep": num(1, qd),
                "postOnlyMaxOrderQty": "1190",
                "minNotionalValue": "5",
            },
            "unifiedMarginTrade": True,
            "fundingInterval": p.spec.funding_hours * 60,
            "settleCoin": m.spec.quote,
            "copyTrading": "both",
            "upperFundingRate": "0.0075",
            "lowerFundingRate": "-0.0075",
            "symbolType": "",
            "displayName": "",
        }

    async def recent_trades(self, request: web.Request) -> Any:
        """The latest linear trades (up to 1,000), newest first; no id or time to ask by."""
        category = self._category(request)
        m = self._market(request, category)
        limit = _int(request.query, "limit", 500)
        if not 1 <= limit <= RECENT_TRADES_MAX:
            raise _params_error("limit invalid")
        pd, qd = m.spec.price_decimals, m.spec.qty_decimals
        sym = m.spec.symbol
        return {
            "category": "linear",
            "list": [
                {
                    "execId": linear_trade_id(sym, t.trade_id),
                    "symbol": sym,
                    "price": num(t.price, pd),
                    "size": num(t.qty, qd),
                    "side": "Sell" if t.buyer_is_maker else "Buy",
                    "time": str(t.time),
                    "isBlockTrade": False,
                    "isRPITrade": False,
                    "seq": str(trade_seq(m, t)),
                }
                for t in list(m.recent_trades)[-limit:][::-1]
            ],
        }

    async def tickers(self, request: web.Request) -> Any:
        category = self._category(request)
        if category != "linear":
            raise _params_error("category invalid")
        symbol = request.query.get("symbol")
        chosen = [self._market(request, category).spec.symbol] if symbol else sorted(self.markets)
        return {"category": "linear", "list": [self.ticker_fields(s) for s in chosen]}

    async def funding_history(self, request: web.Request) -> Any:
        """Settled fundings newest first: the latest ``limit`` up to ``endTime`` (now without
        it), from ``startTime`` when both are given; ``startTime`` alone is refused."""
        p = self._perp(request)
        q = request.query
        limit = _int(q, "limit", FUNDING_LIMIT)
        if not 1 <= limit <= FUNDING_LIMIT:
            raise _params_error("limit invalid")
        start, end = _int(q, "startTime", None), _int(q, "endTime", None)
        if start is not None and end is None:
            raise _params_error("endTime is required when startTime is given")
        if start is not None and end is not None and start > end:
            raise _params_error("startTime must be before endTime")
        settled = p.fundings(0 if start is None else start, p.spot.now if end is None else end)
        return {
            "category": "linear",
            "list": [
                {"symbol": p.symbol, "fundingRate": rate_text(rate), "fundingRateTimestamp": str(t)}
                for t, rate, _mark in settled[::-1][:limit]
            ],
        }

    async def open_interest(self, request: web.Request) -> Any:
        """Open interest at each ``intervalTime`` boundary, newest first, back to the launch;
        ``cursor`` (from ``nextPageCursor``) goes on with older rows."""
        p = self._perp(request)
        m = self.markets[p.symbol]
        q = request.query
        step = OPEN_INTEREST_INTERVALS.get(q.get("intervalTime") or "")
        if step is None:
            raise _params_error("intervalTime invalid")
        limit = _int(q, "limit", 50)
        if not 1 <= limit <= OPEN_INTEREST_LIMIT:
            raise _params_error("limit invalid")
        start, end = _int(q, "startTime", None), _int(q, "endTime", None)
        newest = min(end if end is not None else m.now, m.now) // step * step
        cursor = q.get("cursor") or ""
        if cursor:
            if not cursor.isdigit():
                raise _params_error("cursor invalid")
            newest = min(newest, int(cursor))
        oldest = max(start if start is not None else 0, -(-self.sim.market.genesis // step) * step)
        times = list(range(newest, oldest - 1, -step))[: limit + 1]
        page = times[:limit]
        qd = m.spec.qty_decimals
        return {
            "symbol": p.symbol,
            "category": "linear",
            "list": [
                {"openInterest": num(p.open_interest(t), qd), "timestamp": str(t)} for t in page
            ],
            "nextPageCursor": str(times[limit]) if len(times) > limit else "",
        }
