"""The simulated Binance's REST face: ``/api/v3/*`` with request weight per minute (429 with
Retry-After, then a 418 ban), Binance's error bodies and its parameter rules."""

from __future__ import annotations

import itertools
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from marketlab.records import INTERVAL_NAMES, Interval
from marketlab.sim.face import request_json
from marketlab.sim.host import BinanceHost, RestFault
from marketlab.sim.market import Candle, VenueMarket, fmt_units

log = logging.getLogger("marketlab.sim.binance")

_SYMBOL_PARAM_RE = re.compile(r"^[A-Z0-9\-_.]{1,20}$")


class ApiError(Exception):
    def __init__(self, status: int, code: int, msg: str, retry_after: int | None = None):
        super().__init__(msg)
        self.status, self.code, self.msg, self.retry_after = status, code, msg, retry_after


def _error_response(err: RestFault, weight_used: int | None = None) -> web.Response:
    headers = {}
    if err.retry_after is not None:
        headers["Retry-After"] = str(err.retry_after)
    if weight_used is not None:
        headers["X-MBX-USED-WEIGHT-1M"] = str(weight_used)
    return web.Response(
        body=orjson.dumps({"code": err.code, "msg": err.msg}),
        status=err.status,
        content_type="application/json",
        headers=headers,
    )


def _mandatory(name: str) -> ApiError:
    return ApiError(
        400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


def _illegal(name: str, legal: str) -> ApiError:
    return ApiError(
        400, -1100, f"Illegal characters found in parameter '{name}'; legal range is '{legal}'."
    )


def _int_param(q: Any, name: str) -> int | None:
    raw = q.get(name)
    if raw is None or raw == "":
        return None
    if not re.fullmatch(r"-?[0-9]{1,20}", raw):
        raise _illegal(name, "^[0-9]{1,20}$")
    return int(raw)


def _trade_rows(f: Formatter, trades: list[Any]) -> list[dict[str, Any]]:
    """Trades as ``/api/v3/trades`` and ``/api/v3/historicalTrades`` give them."""
    return [
        {
            "id": t.trade_id,
            "price": f.p(t.price),
            "qty": f.q(t.qty),
            "quoteQty": f.quote(t.price * t.qty),
            "time": t.time,
            "isBuyerMaker": t.buyer_is_maker,
            "isBestMatch": True,
        }
        for t in trades
    ]


def _newest(kept: Any, n: int) -> list[Any]:
    return list(itertools.islice(kept, max(0, len(kept) - n), None))


# --- payload formatting --------------------------------------------------------------------


class Formatter:
    """Ticks and lots of one symbol → Binance's decimal strings."""

    def __init__(self, m: VenueMarket):
        self.pd, self.qd = m.spec.price_decimals, m.spec.qty_decimals

    def p(self, ticks: int) -> str:
        return fmt_units(ticks, self.pd)

    def q(self, lots: int) -> str:
        return fmt_units(lots, self.qd)

    def quote(self, units: int) -> str:
        return fmt_units(units, self.pd + self.qd)

    def levels(self, levels: list[tuple[int, int]]) -> list[list[str]]:
        return [[self.p(p), self.q(q)] for p, q in levels]


def kline_row(f: Formatter, row: tuple) -> list:
    t, o, h, l, c, v, close_time, q, n, tv, tq, _closed = row
    return [
        t,
        f.p(o),
        f.p(h),
        f.p(l),
        f.p(c),
        f.q(v),
        close_time,
        f.quote(q),
        n,
        f.q(tv),
        f.quote(tq),
        "0",
    ]


def kline_event(
    m: VenueMarket, f: Formatter, iv: str, c: Candle, closed: bool, event_time: int
) -> dict:
    o, h, l, cl = c.ohlc()
    return {
        "e": "kline",
        "E": event_time,
        "s": m.spec.symbol,
        "k": {
            "t": c.open_time,
            "T": c.next_open - 1,
            "s": m.spec.symbol,
            "i": iv,
            "f": c.f,
            "L": c.L,
            "o": f.p(o),
            "c": f.p(cl),
            "h": f.p(h),
            "l": f.p(l),
            "v": f.q(c.v),
            "n": c.n,
            "x": closed,
            "q": f.quote(c.q),
            "V": f.q(c.tv),
            "Q": f.quote(c.tq),
            "B": "0",
        },
    }


def ticker_fields(m: VenueMarket, f: Formatter, now: int) -> dict[str, Any]:
    t = m.ticker()
    _, bids, asks = m.book(1)
    bid, bid_q = bids[0] if bids else (0, 0)
    ask, ask_q = asks[0] if asks else (0, 0)
    change = t["last"] - t["open"]
    pct = 100.0 * change / t["open"] if t["open"] else 0.0
    # quote is in ticks x lots and volume in lots, so their ratio is a price in ticks
    wavg = t["quote"] / t["volume"] * f_tick(m) if t["volume"] else 0.0
    return {
        "symbol": m.spec.symbol,
        "priceChange": f.p(change),
        "priceChangePercent": f"{pct:.3f}",
        "weightedAvgPrice": f"{wavg:.8f}",
        "prevClosePrice": f.p(t["prev_close"]),
        "lastPrice": f.p(t["last"]),
        "lastQty": f.q(t["last_qty"]),
        "bidPrice": f.p(bid),
        "bidQty": f.q(bid_q),
        "askPrice": f.p(ask),
        "askQty": f.q(ask_q),
        "openPrice": f.p(t["open"]),
        "highPrice": f.p(t["high"]),
        "lowPrice": f.p(t["low"]),
        "volume": f.q(t["volume"]),
        "quoteVolume": f.quote(t["quote"]),
        "openTime": now - 86_400_000,
        "closeTime": now,
        "firstId": t["first_id"],
        "lastId": t["last_id"],
        "count": t["count"],
    }


def f_tick(m: VenueMarket) -> float:
    return 10.0**-m.spec.price_decimals


class BinanceRest:
    """REST handlers and limits of :class:`~marketlab.sim.binance.BinanceFace`."""

    sim: BinanceHost
    markets: dict[str, VenueMarket]
    formatters: dict[str, Formatter]
    _weight_window: int
    _weight_used: int
    _violations: int
    _banned_until: float
    _retry_until: float

    # --- REST: limits and errors -------------------------------------------------------

    @property
    def weight_limit(self) -> int:
        """Request weight a minute (the futures face has its own)."""
        return self.sim.weight_limit

    def _rest(
        self, handler: Callable[[web.Request], Awaitable[Any]]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            self.sim.stats["rest_requests"] += 1
            now = time.time()
            if now < self._banned_until:
                return _error_response(self._ban_error(now))
            forced = self.sim.faults.take_rest_fault()
            if forced is not None:
                return _error_response(forced)
            try:
                weight, payload = await handler(request)
            except ApiError as err:
                return _error_response(err, self._weight_used)
            window = int(now // 60)
            if window != self._weight_window:
                self._weight_window, self._weight_used = window, 0
            if self._weight_used + weight > self.weight_limit:
                return _error_response(self._over_limit(now))
            self._weight_used += weight
            return web.Response(
                body=orjson.dumps(payload),
                content_type="application/json",
                headers={"X-MBX-USED-WEIGHT-1M": str(self._weight_used)},
            )

        return wrapped

    def _over_limit(self, now: float) -> ApiError:
        retry_after = max(1, math.ceil((self._weight_window + 1) * 60 - now))
        if now < self._retry_until:
            self._violations += 1  # still asking during the back-off it was given
            if self._violations >= self.sim.violations_before_ban:
                self._banned_until = now + self.sim.ban_seconds
                return self._ban_error(now)
        self._retry_until = now + retry_after
        return ApiError(
            429,
            -1003,
            f"Too much request weight used; current limit is {self.weight_limit} "
            "request weight per 1 MINUTE. Please use WebSocket Streams for live updates "
            "to avoid polling the API.",
            retry_after,
        )

    def _ban_error(self, now: float) -> ApiError:
        until = int(self._banned_until * 1000)
        return ApiError(
            418,
            -1003,
            f"Way too much request weight used; IP banned until {until}. Please use WebSocket "
            "Streams for live updates to avoid bans.",
            max(1, math.ceil(self._banned_until - now)),
        )

    def _market(self, request: web.Request, required: bool = True) -> VenueMarket | None:
        symbol = request.query.get("symbol")
        if not symbol:
            if required:
                raise _mandatory("symbol")
            return None
        if not _SYMBOL_PARAM_RE.match(symbol):
            raise _illegal("symbol", "^[A-Z0-9-_.]{1,20}$")
        m = self.markets.get(symbol)
        if m is None:
            raise ApiError(400, -1121, "Invalid symbol.")
        return m

    def _markets(self, request: web.Request) -> list[VenueMarket] | None:
        """``symbol=X`` or ``symbols=["A","B"]`` (not both); None for all."""
        raw = request.query.get("symbols")
        single = self._market(request, required=False)
        if single is not None and raw is not None:
            raise ApiError(400, -1128, "Combination of optional parameters invalid.")
        if single is not None:
            return [single]
        if raw is None:
            return None
        try:
            names = request_json(raw)
        except orjson.JSONDecodeError:
            raise _illegal(
                "symbols", '^\\["[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}\\]$'
            ) from None
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise _illegal("symbols", '^\\["[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}\\]$')
        out = []
        for name in names:
            m = self.markets.get(name)
            if m is None:
                raise ApiError(400, -1121, "Invalid symbol.")
            out.append(m)
        return out

    # --- REST: endpoints ---------------------------------------------------------------

    async def ping(self, request: web.Request) -> tuple[int, Any]:
        return 1, {}

    async def server_time(self, request: web.Request) -> tuple[int, Any]:
        return 1, {"serverTime": self.sim.now_ms()}

    async def exchange_info(self, request: web.Request) -> tuple[int, Any]:
        markets = self._markets(request)
        chosen = markets if markets is not None else list(self.markets.values())
        return 20, {
            "timezone": "UTC",
            "serverTime": self.sim.now_ms(),
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": self.sim.weight_limit,
                },
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
                {
                    "rateLimitType": "RAW_REQUESTS",
                    "interval": "MINUTE",
                    "intervalNum": 5,
                    "limit": 61000,
                },
            ],
            "exchangeFilters": [],
            "symbols": [self._symbol_info(m) for m in chosen],
        }

    def _symbol_info(self, m: VenueMarket) -> dict[str, Any]:
        s = m.spec
        f = self.formatters[s.symbol]
        return {
            "symbol": s.symbol,
            "status": "TRADING",
            "baseAsset": s.base,
            "baseAssetPrecision": 8,
            "quoteAsset": s.quote,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8,
            "orderTypes": [
                "LIMIT",
                "LIMIT_MAKER",
                "MARKET",
                "STOP_LOSS_LIMIT",
                "TAKE_PROFIT_LIMIT",
            ],
            "icebergAllowed": True,
            "ocoAllowed": True,
            "otoAllowed": True,
            "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": True,
            "cancelReplaceAllowed": True,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": f.p(1),
                    "maxPrice": "1000000.00000000",
                    "tickSize": f.p(1),
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": f.q(1),
                    "maxQty": "9000.00000000",
                    "stepSize": f.q(1),
                },
                {
                    "filterType": "NOTIONAL",
                    "minNotional": "5.00000000",
                    "applyMinToMarket": True,
                    "maxNotional": "9000000.00000000",
                    "applyMaxToMarket": False,
                    "avgPriceMins": 5,
                },
            ],
            "permissions": [],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }

    async def klines(self, request: web.Request) -> tuple[int, Any]:
        m = self._market(request)
        assert m is not None
        q = request.query
        name = q.get("interval")
        if not name:
            raise _mandatory("interval")
        if name not in INTERVAL_NAMES:
            raise ApiError(400, -1120, "Invalid interval.")
        start, end = _int_param(q, "startTime"), _int_param(q, "endTime")
        limit = _int_param(q, "limit")
        limit = 500 if limit is None else limit
        if limit < 1:
            raise ApiError(400, -1130, "Invalid data sent for a parameter.")
        if start is not None and end is not None and start > end:
            raise ApiError(400, -1023, "Start time is greater than end time.")
        rows = m.klines(Interval(name), start, end, min(limit, 1000))
        f = self.formatters[m.spec.symbol]
        return 2, [kline_row(f, r) for r in rows]

    async def depth(self, request: web.Request) -> tuple[int, Any]:
        m = self._market(request)
        assert m is not None
        limit = _int_param(request.query, "limit")
        limit = 100 if limit is None else limit
        if limit < 1:
            raise ApiError(400, -1130, "Invalid data sent for a parameter.")
        limit = min(limit, 5000)
        weight = 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250
        uid, bids, asks = m.book(limit)
        f = self.formatters[m.spec.symbol]
        return weight, {"lastUpdateId": uid, "bids": f.levels(bids), "asks": f.levels(asks)}

    async def trades(self, request: web.Request) -> tuple[int, Any]:
        m = self._market(request)
        assert m is not None
        limit = _int_param(request.query, "limit")
        limit = min(1000, 500 if limit is None else max(1, limit))
        return 25, _trade_rows(self.formatters[m.spec.symbol], _newest(m.recent_trades, limit))

    async def historical_trades(self, request: web.Request) -> tuple[int, Any]:
        """Old trade lookup: from ``fromId`` on (the newest without it), oldest first; ids the
        simulator no longer keeps are simply absent, as on a venue that pruned them."""
        m, chosen = self._kept_from(request)
        return 25, _trade_rows(self.formatters[m.spec.symbol], chosen)

    def _kept_from(self, request: web.Request) -> tuple[VenueMarket, list[Any]]:
        """The kept trades a ``fromId`` lookup selects: from that id on (the newest without
        it), oldest first, at most ``limit`` (500 by default, 1000 at most)."""
        m = self._market(request)
        assert m is not None
        limit = _int_param(request.query, "limit")
        limit = min(1000, 500 if limit is None else max(1, limit))
        from_id = _int_param(request.query, "fromId")
        kept = m.recent_trades
        if from_id is None or not kept:
            return m, _newest(kept, limit)
        start = max(0, from_id - kept[0].trade_id)
        return m, list(itertools.islice(kept, start, start + limit))

    async def agg_trades(self, request: web.Request) -> tuple[int, Any]:
        """Aggregate trades from ``fromId`` on (the newest without it), oldest first: each
        simulated trade is one taker filling at one price, so one aggregate, its agg id its
        trade id (the archive's aggTrades files say the same)."""
        m, chosen = self._kept_from(request)
        f = self.formatters[m.spec.symbol]
        rows = [
            {
                "a": t.trade_id,
                "p": f.p(t.price),
                "q": f.q(t.qty),
                "f": t.trade_id,
                "l": t.trade_id,
                "T": t.time,
                "m": t.buyer_is_maker,
                "M": True,
            }
            for t in chosen
        ]
        return 4, rows

    def _ticker_weight(self, markets: list[VenueMarket] | None, one: int, many: int) -> int:
        if markets is None:
            return many
        n = len(markets)
        return one if n <= 20 else 40 if n <= 100 else many

    async def ticker_24hr(self, request: web.Request) -> tuple[int, Any]:
        markets = self._markets(request)
        chosen = markets if markets is not None else list(self.markets.values())
        now = self.sim.market.now
        rows = [ticker_fields(m, self.formatters[m.spec.symbol], now) for m in chosen]
        single = request.query.get("symbol") is not None
        return self._ticker_weight(markets, 2, 80), rows[0] if single else rows

    async def ticker_price(self, request: web.Request) -> tuple[int, Any]:
        markets = self._markets(request)
        chosen = markets if markets is not None else list(self.markets.values())
        rows = [
            {"symbol": m.spec.symbol, "price": self.formatters[m.spec.symbol].p(m.last_price)}
            for m in chosen
        ]
        single = request.query.get("symbol") is not None
        return (2 if markets is not None else 4), rows[0] if single else rows

    async def book_ticker(self, request: web.Request) -> tuple[int, Any]:
        markets = self._markets(request)
        chosen = markets if markets is not None else list(self.markets.values())
        rows = []
        for m in chosen:
            f = self.formatters[m.spec.symbol]
            _, bids, asks = m.book(1)
            (bp, bq), (ap, aq) = bids[0] if bids else (0, 0), asks[0] if asks else (0, 0)
            rows.append(
                {
                    "symbol": m.spec.symbol,
                    "bidPrice": f.p(bp),
                    "bidQty": f.q(bq),
                    "askPrice": f.p(ap),
                    "askQty": f.q(aq),
                }
            )
        single = request.query.get("symbol") is not None
        return (2 if markets is not None else 4), rows[0] if single else rows
