"""The simulated Binance USDⓈ-M perpetual futures: REST ``/fapi/v1/*`` (and open interest
history under ``/futures/data``) and the WebSocket on its two routes.

Written from Binance's futures documentation and its 2026 change notice, independently of
:mod:`marketlab.venues.binance`'s perpetual modules, so the two check each other. As the venue
does since 2026-04-23, book data (``@depth…``, ``@bookTicker``) is served on ``/public`` and
the regular market data (``@aggTrade``, ``@markPrice``, ``@kline_…``, ``@forceOrder``) on
``/market``: a stream subscribed on the other route is accepted and never sends a frame. It
enforces the futures limits: 2400 request weight a minute, 10 incoming messages a second, 200
streams a connection. Book events chain by ``pu``, their update ids jumping between events;
``@forceOrder`` sends only the latest liquidation of each second, as Binance does.

The perpetuals trade the spot market at a small premium (:mod:`marketlab.sim.perpetual`); a
perpetual's symbol here is its pair (``BTCUSDT``), as on Binance's futures API.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from marketlab.records import INTERVAL_NAMES, Interval
from marketlab.sim.binance import BinanceFace
from marketlab.sim.binance.rest import ApiError, Formatter, kline_event, kline_row
from marketlab.sim.binance.ws import Connection
from marketlab.sim.host import BinanceHost
from marketlab.sim.market import StepResult, VenueMarket
from marketlab.sim.perpetual import PerpetualSeries, PerpetualSpec

WEIGHT_LIMIT = 2400
MESSAGE_LIMIT = 10
MAX_STREAMS = 200
DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000)
OPEN_INTEREST_PERIODS = ("5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1d")
OPEN_INTEREST_DAYS = 30  # open interest history covers the last 30 days only
ID_STRIDE = 5  # futures update ids jump between events: the spot book's ids, times five

_STREAM_RE = re.compile(
    r"^(?P<sym>[a-z0-9]{2,20})@(?:(?P<simple>aggTrade|bookTicker|forceOrder)"
    r"|kline_(?P<iv>[0-9]+[smhdwM])|markPrice(?:@1s)?|depth(?:@(?:100|250|500)ms)?)$"
)
_PUBLIC = ("depth", "bookTicker")  # channels on /public; every other one is on /market


def route_of(stream: str) -> str:
    """The route a futures stream lives on: ``public`` or ``market``."""
    channel = stream.split("@", 2)[1]
    return "public" if channel.startswith(_PUBLIC) else "market"


def _int(q: Any, name: str) -> int | None:
    raw = q.get(name)
    if raw is None or raw == "":
        return None
    if not re.fullmatch(r"-?[0-9]{1,20}", raw):
        raise ApiError(
            400,
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.",
        )
    return int(raw)


class BinancePerpFace(BinanceFace):
    """REST routes, the two WebSocket routes and the step → stream fan-out of the perpetuals."""

    stream_pattern = _STREAM_RE
    max_streams = MAX_STREAMS

    def __init__(self, sim: BinanceHost, spec: PerpetualSpec | None = None):
        super().__init__(sim)
        self.perps = {
            s: PerpetualSeries(m, sim.market.seed, spec) for s, m in sim.market.symbols.items()
        }
        self.markets = {s: p.trading for s, p in self.perps.items()}
        self.formatters = {s: Formatter(m) for s, m in self.markets.items()}

    @property
    def weight_limit(self) -> int:
        return WEIGHT_LIMIT

    @property
    def message_limit(self) -> int:
        return MESSAGE_LIMIT

    def is_combined(self, path: str) -> bool:
        return path.endswith("/stream")

    # --- routes ------------------------------------------------------------------------

    def add_routes(self, app: web.Application, streams: bool = True) -> None:
        rest: list[tuple[str, Callable[[web.Request], Awaitable[Any]]]] = [
            ("/fapi/v1/ping", self.ping),
            ("/fapi/v1/time", self.server_time),
            ("/fapi/v1/exchangeInfo", self.perp_exchange_info),
            ("/fapi/v1/depth", self.perp_depth),
            ("/fapi/v1/klines", self.perp_klines),
            ("/fapi/v1/aggTrades", self.perp_agg_trades),
            ("/fapi/v1/premiumIndex", self.premium_index),
            ("/fapi/v1/fundingRate", self.funding_rate),
            ("/fapi/v1/openInterest", self.open_interest),
            ("/futures/data/openInterestHist", self.open_interest_hist),
        ]
        for path, handler in rest:
            app.router.add_get(path, self._rest(handler))
        for route in ("public", "market"):
            app.router.add_get(f"/{route}/ws", self.websocket)
            app.router.add_get(f"/{route}/ws/{{streams:.*}}", self.websocket)
            app.router.add_get(f"/{route}/stream", self.websocket)

    # --- REST ----------------------------------------------------------------------------

    def _perp(self, request: web.Request, required: bool = True) -> PerpetualSeries | None:
        m = self._market(request, required)
        return None if m is None else self.perps[m.spec.symbol]

    async def perp_exchange_info(self, request: web.Request) -> tuple[int, Any]:
        symbols = []
        for s, m in self.markets.items():
            spec, f = m.spec, self.formatters[s]
            symbols.append(
                {
                    "symbol": s,
                    "pair": s,
                    "contractType": "PERPETUAL",
                    "deliveryDate": 4133404800000,
                    "onboardDate": self.sim.market.genesis,
                    "status": "TRADING",
                    "baseAsset": spec.base,
                    "quoteAsset": spec.quote,
                    "marginAsset": spec.quote,
                    "pricePrecision": spec.price_decimals,
                    "quantityPrecision": spec.qty_decimals,
                    "filters": [
                        {"filterType": "PRICE_FILTER", "tickSize": f.p(1).rstrip("0")},
                        {
                            "filterType": "LOT_SIZE",
                            "stepSize": f.q(1).rstrip("0"),
                            "minQty": f.q(1).rstrip("0"),
                            "maxQty": "1000000",
                        },
                        {"filterType": "MIN_NOTIONAL", "notional": "5"},
                    ],
                }
            )
        return 1, {
            "timezone": "UTC",
            "serverTime": self.sim.now_ms(),
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": WEIGHT_LIMIT,
                }
            ],
            "symbols": symbols,
        }

    async def perp_depth(self, request: web.Request) -> tuple[int, Any]:
        m = self._market(request)
        assert m is not None
        limit = _int(request.query, "limit")
        limit = 500 if limit is None else limit
        if limit not in DEPTH_LIMITS:
            raise ApiError(400, -4021, f"Invalid depth limit. Valid limits: {list(DEPTH_LIMITS)}")
        weight = 2 if limit <= 50 else 5 if limit == 100 else 10 if limit == 500 else 20
        uid, bids, asks = m.book(limit)
        f, now = self.formatters[m.spec.symbol], self.sim.now_ms()
        return weight, {
            "lastUpdateId": self._snapshot_id(uid),
            "E": now,
            "T": now - 1,
            "bids": f.levels(bids),
            "asks": f.levels(asks),
        }

    async def perp_klines(self, request: web.Request) -> tuple[int, Any]:
        m = self._market(request)
        assert m is not None
        q = request.query
        name = q.get("interval")
        if not name:
            raise ApiError(400, -1102, "Mandatory parameter 'interval' was not sent.")
        if name not in INTERVAL_NAMES:
            raise ApiError(400, -1120, "Invalid interval.")
        start, end, limit = _int(q, "startTime"), _int(q, "endTime"), _int(q, "limit")
        limit = 500 if limit is None else limit
        if not 1 <= limit <= 1500:
            raise ApiError(400, -1130, "Data sent for parameter 'limit' is not valid.")
        if start is not None and end is not None and start > end:
            raise ApiError(400, -1023, "Start time is greater than end time.")
        weight = 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10
        rows = m.klines(Interval(name), start, end, limit)
        f = self.formatters[m.spec.symbol]
        return weight, [kline_row(f, r) for r in rows]

    async def perp_agg_trades(self, request: web.Request) -> tuple[int, Any]:
        _, rows = await self.agg_trades(request)  # the spot face's rule, by fromId
        for row in rows:
            del row["M"]  # futures rows carry no best-match flag
        return 20, rows

    def _mark_row(self, p: PerpetualSeries) -> dict[str, Any]:
        now = self.sim.now_ms()
        f = self._price_text(p)
        return {
            "symbol": p.symbol,
            "markPrice": f(p.mark()),
            "indexPrice": f(p.index()),
            "estimatedSettlePrice": f(p.index()),
            "lastFundingRate": f"{p.funding_rate(p.next_funding(now)):.8f}",
            "interestRate": "0.00010000",
            "nextFundingTime": p.next_funding(now),
            "time": now,
        }

    async def premium_index(self, request: web.Request) -> tuple[int, Any]:
        p = self._perp(request, required=False)
        if p is not None:
            return 1, self._mark_row(p)
        return 10, [self._mark_row(x) for x in self.perps.values()]

    async def funding_rate(self, request: web.Request) -> tuple[int, Any]:
        q = request.query
        p = self._perp(request, required=False)
        start, end, limit = _int(q, "startTime"), _int(q, "endTime"), _int(q, "limit")
        limit = 100 if limit is None else limit
        if not 1 <= limit <= 1000:
            raise ApiError(400, -1130, "Data sent for parameter 'limit' is not valid.")
        now = self.sim.now_ms()
        rows: list[dict[str, Any]] = []
        for x in [p] if p is not None else list(self.perps.values()):
            fundings = x.fundings(
                start if start is not None else 0, end if end is not None else now
            )
            # without startTime, the most recent ones
            fundings = fundings[:limit] if start is not None else fundings[-limit:]
            f = self._price_text(x)
            rows += [
                {
                    "symbol": x.symbol,
                    "fundingTime": t,
                    "fundingRate": f"{r:.8f}",
                    "markPrice": f(mk),
                }
                for t, r, mk in fundings
            ]
        rows.sort(key=lambda row: int(row["fundingTime"]))
        return 1, rows

    async def open_interest(self, request: web.Request) -> tuple[int, Any]:
        p = self._perp(request)
        assert p is not None
        now = self.sim.now_ms()
        f = self.formatters[p.symbol]
        return 1, {"openInterest": f.q(p.open_interest(now)), "symbol": p.symbol, "time": now}

    async def open_interest_hist(self, request: web.Request) -> tuple[int, Any]:
        p = self._perp(request)
        assert p is not None
        q = request.query
        period = q.get("period")
        if period not in OPEN_INTEREST_PERIODS:
            raise ApiError(400, -1102, "Mandatory parameter 'period' was not sent or is invalid.")
        start, end, limit = _int(q, "startTime"), _int(q, "endTime"), _int(q, "limit")
        limit = 30 if limit is None else limit
        if not 1 <= limit <= 500:
            raise ApiError(400, -1130, "Data sent for parameter 'limit' is not valid.")
        now = self.sim.now_ms()
        step = Interval(period).ms
        oldest = max(now - OPEN_INTEREST_DAYS * 86_400_000, p.spot.genesis)
        lo = max(start if start is not None else oldest, oldest)
        hi = min(end if end is not None else now, now)
        first = -(-lo // step) * step
        times = list(range(first, hi + 1, step))
        times = times[:limit] if start is not None else times[-limit:]
        f = self.formatters[p.symbol]
        unit = 10.0**-p.spot.spec.qty_decimals
        rows = []
        for t in times:
            oi = p.open_interest(t)
            value = oi * unit * p.mark(t) * 10.0**-p.spot.spec.price_decimals
            rows.append(
                {
                    "symbol": p.symbol,
                    "sumOpenInterest": f.q(oi),
                    "sumOpenInterestValue": f"{value:.8f}",
                    "timestamp": t,
                }
            )
        return 1, rows

    def _price_text(self, p: PerpetualSeries) -> Callable[[float], str]:
        """A price in ticks (a float: the mark and index are finer than the tick) as text."""
        tick = 10.0**-p.spot.spec.price_decimals
        return lambda ticks: f"{ticks * tick:.8f}"

    # --- update ids ----------------------------------------------------------------------

    @staticmethod
    def _event_ids(first: int, last: int) -> tuple[int, int, int]:
        """``(U, u, pu)`` of the futures event for the spot book's updates ``first..last``:
        ids jump between events, and ``pu`` is the previous event's ``u``."""
        return ID_STRIDE * first - 2, ID_STRIDE * last, ID_STRIDE * (first - 1)

    @staticmethod
    def _snapshot_id(uid: int) -> int:
        """The ``lastUpdateId`` of a snapshot after the spot book's update ``uid``: the ``u``
        of the event it is at, or (every other one) an id inside the next event, which then
        straddles it - both happen on Binance."""
        return ID_STRIDE * uid + (0 if uid % 2 == 0 else 3)

    # --- stream fan-out ------------------------------------------------------------------

    def _send(self, name: str, payload: dict[str, Any] | bytes) -> None:
        conns = self.subs.get(name)
        if not conns:
            return
        route = route_of(name)
        raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        wrapped = b'{"stream":"' + name.encode() + b'","data":' + raw + b"}"
        for conn in conns:
            if _route_of_connection(conn) != route:
                continue  # on the wrong route a stream sends nothing
            self._enqueue(conn, wrapped if conn.combined else raw)

    def publish(self, results: dict[str, StepResult]) -> None:
        """Send what one exchange second produced (the spot market's step, at the perpetuals'
        prices) to the subscribers of each stream."""
        if not self.subs:
            return
        for symbol, r in results.items():
            m = self.markets[symbol]
            self._publish_perp(self.perps[symbol], m, self.formatters[symbol], m.shift(r))

    def _publish_perp(
        self, p: PerpetualSeries, m: VenueMarket, f: Formatter, r: StepResult
    ) -> None:
        subs, sym = self.subs, m.spec.symbol
        s = sym.lower()
        if f"{s}@aggTrade" in subs:
            for t in r.trades:
                self._send(
                    f"{s}@aggTrade",
                    {
                        "e": "aggTrade",
                        "E": min(t.time + 3, r.end),
                        "s": sym,
                        "a": t.trade_id,
                        "p": f.p(t.price),
                        "q": f.q(t.qty),
                        "f": t.trade_id,
                        "l": t.trade_id,
                        "T": t.time,
                        "m": t.buyer_is_maker,
                    },
                )
        for iv in INTERVAL_NAMES:
            name = f"{s}@kline_{iv}"
            if name not in subs:
                continue
            closed = r.closed.get(iv)
            if closed is not None:
                self._send(name, kline_event(m, f, iv, closed, True, r.end))
            elif (r.second // 1000) % 2 == 0:
                self._send(name, kline_event(m, f, iv, m.candles[iv], False, r.end))
        if r.depth is not None:
            first, last, bids, asks = r.depth
            skip = self._skip_depth
            if skip and (skip.get(sym) or skip.get(None)):
                key = sym if skip.get(sym) else None
                skip[key] -= 1
                if not skip[key]:
                    del skip[key]
            else:
                U, u, pu = self._event_ids(first, last)
                payload = orjson.dumps(
                    {
                        "e": "depthUpdate",
                        "E": r.end,
                        "T": r.end - 1,
                        "s": sym,
                        "U": U,
                        "u": u,
                        "pu": pu,
                        "b": f.levels(bids),
                        "a": f.levels(asks),
                    }
                )
                for name in (
                    f"{s}@depth",
                    f"{s}@depth@100ms",
                    f"{s}@depth@250ms",
                    f"{s}@depth@500ms",
                ):
                    self._send(name, payload)
        if f"{s}@bookTicker" in subs:
            uid, bids, asks = m.book(1)
            if bids and asks:
                self._send(
                    f"{s}@bookTicker",
                    {
                        "e": "bookTicker",
                        "u": ID_STRIDE * uid,
                        "E": r.end,
                        "T": r.end - 1,
                        "s": sym,
                        "b": f.p(bids[0][0]),
                        "B": f.q(bids[0][1]),
                        "a": f.p(asks[0][0]),
                        "A": f.q(asks[0][1]),
                    },
                )
        marks = [n for n in (f"{s}@markPrice@1s", f"{s}@markPrice") if n in subs]
        if marks:
            text = self._price_text(p)
            event = orjson.dumps(
                {
                    "e": "markPriceUpdate",
                    "E": r.end,
                    "s": sym,
                    "p": text(p.mark(r.end)),
                    "P": text(p.index(r.end)),
                    "i": text(p.index(r.end)),
                    "r": f"{p.funding_rate(p.next_funding(r.end)):.8f}",
                    "T": p.next_funding(r.end),
                }
            )
            for name in marks:
                if name.endswith("@1s") or (r.end // 1000) % 3 == 0:
                    self._send(name, event)
        if f"{s}@forceOrder" in subs:
            liquidations = p.liquidations(r.second)
            if liquidations:
                last_one = liquidations[-1]  # only the latest of the second is pushed
                qty = f.q(last_one.qty)
                price = f.p(last_one.price)
                self._send(
                    f"{s}@forceOrder",
                    {
                        "e": "forceOrder",
                        "E": r.end,
                        "o": {
                            "s": sym,
                            "S": "SELL" if last_one.long else "BUY",
                            "o": "LIMIT",
                            "f": "IOC",
                            "q": qty,
                            "p": price,
                            "ap": price,
                            "X": "FILLED",
                            "l": qty,
                            "z": qty,
                            "T": last_one.time,
                        },
                    },
                )


def _route_of_connection(conn: Connection) -> str:
    """The route a connection was opened on (``/public/…`` or ``/market/…``)."""
    return conn.request.path.split("/", 2)[1]
