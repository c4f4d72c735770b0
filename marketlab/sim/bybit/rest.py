"""The simulated Bybit's REST face: ``/v5/market/*`` in Bybit's envelope (``retCode``,
``retMsg``, ``result``, ``retExtInfo``, ``time``), its business errors (HTTP 200 with a non-zero
``retCode``), and its IP limit: 600 requests per 5 seconds, beyond which the IP gets HTTP 403
and is banned (10 minutes in production, ``bybit_ban_seconds``).

Also the numbers both halves of the face print: prices and sizes as trimmed strings, spot
trade ids as 19-digit strings that jump (never consecutive per symbol, as on Bybit spot, so a
client cannot find a missed trade by id), and the cross sequence ``seq`` shared by trades and
book updates of a symbol (monotonic, never +1).
"""

from __future__ import annotations

import re
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from marketlab.records import Interval
from marketlab.sim.host import BybitHost
from marketlab.sim.market import VenueMarket, fmt_units
from marketlab.sim.series import SECOND_MS, TradeEvent

# Bybit's kline interval names → the market's (all UTC-aligned; weeks open on Monday).
INTERVALS = {
    "1": "1m",
    "3": "3m",
    "5": "5m",
    "15": "15m",
    "30": "30m",
    "60": "1h",
    "120": "2h",
    "240": "4h",
    "360": "6h",
    "720": "12h",
    "D": "1d",
    "W": "1w",
    "M": "1M",
}
CATEGORIES = ("spot", "linear", "inverse", "option")
# REST orderbook depth on spot: [1, 1000] since 2026-05-18 (200 before), default 1; its ``u``
# is the 1000-level WebSocket stream's.
REST_BOOK_MAX = 1000
FULL_DEPTH = 1000
RECENT_TRADES_MAX = 60  # spot; other categories allow 1000
KLINES_MAX = 1000
RATE_WINDOW = 5.0  # seconds of the IP limit's window

# How Bybit answers a REST fault (HTTP status asked for → HTTP status, retCode, retMsg): past an
# endpoint's limit HTTP 200 with retCode 10006; a server error with 10016 (or 10000, timeout).
BYBIT_REST_FAULTS = {
    429: (200, 10006, "Too many visits!"),
    500: (500, 10016, "Internal system error."),
    502: (502, 10016, "Internal system error."),
    503: (503, 10016, "Service Unavailable"),
    504: (504, 10000, "Server Timeout"),
}

TRADE_ID_BASE = 2_290_000_000_000_000_000
SEQ_BASE = 40_000_000_000


def num(units: int, decimals: int) -> str:
    """Ticks or lots as Bybit prints them, without padding zeros (``6500010, 2`` → ``65000.1``)."""
    text = fmt_units(units, decimals, pad=0)
    return text.rstrip("0").rstrip(".") if "." in text else text


def trade_id(symbol: str, market_id: int) -> str:
    """The Bybit spot id of the market's trade ``market_id``: 19 digits, increasing, with gaps
    of 2 to 18 between one trade of a symbol and the next (Bybit numbers spot trades across
    its engine, so a symbol's ids jump)."""
    base = TRADE_ID_BASE + zlib.crc32(symbol.encode()) % 1000 * 10**15
    return str(base + market_id * 10 + zlib.crc32(f"{symbol}:{market_id}".encode()) % 9)


def trade_seq(m: VenueMarket, t: TradeEvent) -> int:
    """The cross sequence of a trade: below every book update after it, above every one
    before (see :func:`book_seq`)."""
    second = (t.time - m.genesis) // SECOND_MS
    return SEQ_BASE + 2 * (t.trade_id + second)


def book_seq(m: VenueMarket) -> int:
    """The cross sequence of the book as of the market's present (the end of its last second,
    after that second's trades): ``trade_seq`` of the second's trades < this < the next's."""
    second = (m.now - m.genesis) // SECOND_MS - 1
    return SEQ_BASE + 2 * (m.next_trade_id - 1 + second) + 1


def levels(m: VenueMarket, rows: list[tuple[int, int]]) -> list[list[str]]:
    pd, qd = m.spec.price_decimals, m.spec.qty_decimals
    return [[num(p, pd), num(q, qd)] for p, q in rows]


def ticker_24h(m: VenueMarket) -> dict[str, str]:
    """The 24-hour fields spot tickers share on the WebSocket and REST, in Bybit's order."""
    t = m.ticker()
    pd, qd = m.spec.price_decimals, m.spec.qty_decimals
    change = (t["last"] - t["open"]) / t["open"] if t["open"] else 0.0
    return {
        "symbol": m.spec.symbol,
        "lastPrice": num(t["last"], pd),
        "highPrice24h": num(t["high"], pd),
        "lowPrice24h": num(t["low"], pd),
        "prevPrice24h": num(t["open"], pd),
        "volume24h": num(t["volume"], qd),
        "turnover24h": num(t["quote"], pd + qd),
        "price24hPcnt": f"{change:.4f}",
        # the coin's USD index: only collateral coins quoted in dollars have one
        "usdIndexPrice": num(t["last"], pd) if m.spec.quote in ("USDT", "USDC") else "",
    }


class BybitError(Exception):
    """A business error: HTTP 200, Bybit's ``retCode`` and ``retMsg``."""

    def __init__(self, code: int, msg: str):
        super().__init__(msg)
        self.code, self.msg = code, msg


def _params_error(what: str) -> BybitError:
    return BybitError(10001, f"params error: {what}")


class BybitRest:
    """REST handlers and the IP limit of :class:`~marketlab.sim.bybit.BybitFace`."""

    sim: BybitHost
    markets: dict[str, VenueMarket]
    _calls: dict[str, deque[float]]
    _banned: dict[str, float]
    _ban_all_until: float
    _u: dict[tuple[str, int], int]
    # the linear face's handlers by path: ``category=linear`` requests (and linear-only paths)
    # go to them, on the same host and under the same IP limit
    linear_handlers: dict[str, Callable[[web.Request], Awaitable[Any]]]

    if TYPE_CHECKING:  # OutageFace's, beside this class in BybitFace (the faults live there)

        def refuse_in_outage(self, request: web.Request) -> web.Response | None: ...

    def _rest(
        self, handler: Callable[[web.Request], Awaitable[Any]]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            refused = self.refuse_in_outage(request)
            if refused is not None:
                return refused
            self.sim.stats["rest_requests"] += 1
            now = time.monotonic()
            ip = request.remote or ""
            if now < max(self._banned.get(ip, 0.0), self._ban_all_until):
                return self._forbidden()
            forced = self.sim.faults.take_rest_fault("bybit")
            if forced is not None:
                return self._fault_response(forced.status)
            calls = self._calls.setdefault(ip, deque())
            while calls and calls[0] <= now - RATE_WINDOW:
                calls.popleft()
            if len(calls) >= self.sim.bybit_rest_limit:
                self._banned[ip] = now + self.sim.bybit_ban_seconds
                calls.clear()  # the ban is the penalty: the count starts afresh after it
                return self._forbidden()
            calls.append(now)
            category = request.query.get("category") or (
                "linear" if request.path == "/v5/market/kline" else ""
            )
            chosen = self.linear_handlers.get(request.path) if category == "linear" else None
            try:
                result = await (chosen or handler)(request)
                code, msg = 0, "OK"
            except BybitError as err:
                result, code, msg = {}, err.code, err.msg
            body = {
                "retCode": code,
                "retMsg": msg,
                "result": result,
                "retExtInfo": {},
                "time": self.sim.now_ms(),
            }
            return web.Response(body=orjson.dumps(body), content_type="application/json")

        return wrapped

    def _fault_response(self, status: int) -> web.Response:
        """A REST fault in Bybit's envelope: past an endpoint's limit HTTP 200 with retCode
        10006 (and the limit headers at zero), a server error its HTTP status with 10016 or
        10000."""
        http, code, msg = BYBIT_REST_FAULTS[status]
        body = {
            "retCode": code,
            "retMsg": msg,
            "result": {},
            "retExtInfo": {},
            "time": self.sim.now_ms(),
        }
        headers = {}
        if code == 10006:
            reset = self.sim.now_ms() + 1000
            headers = {"X-Bapi-Limit-Status": "0", "X-Bapi-Limit-Reset-Timestamp": str(reset)}
        return web.Response(
            status=http, body=orjson.dumps(body), content_type="application/json", headers=headers
        )

    @staticmethod
    def _forbidden() -> web.Response:
        """What the edge answers a banned IP: a 403 page, not Bybit's JSON envelope."""
        return web.Response(
            status=403,
            text="<html><body><h1>403 Forbidden</h1>access too frequent</body></html>",
            content_type="text/html",
        )

    def ban(self, seconds: float | None = None) -> None:
        """Ban every client IP now, as Bybit does past its limit (``bybit_ban_seconds`` by
        default), without first spending 600 requests."""
        length = self.sim.bybit_ban_seconds if seconds is None else seconds
        self._ban_all_until = time.monotonic() + length

    # --- parameters ----------------------------------------------------------------------

    @staticmethod
    def _category(request: web.Request, default: str | None = None) -> str:
        category = request.query.get("category") or default
        if category is None:
            raise _params_error("category is required")
        if category not in CATEGORIES:
            raise _params_error("category invalid")
        return category

    def _market(self, request: web.Request, category: str) -> VenueMarket:
        """The spot symbol asked for: only spot is listed here, so another category's symbol
        is as unknown as a misspelt one."""
        symbol = request.query.get("symbol")
        if not symbol:
            raise _params_error("symbol is required")
        m = self.markets.get(symbol)  # case-sensitive, as Bybit is
        if m is None or category != "spot":
            raise _params_error("symbol invalid")
        return m

    # --- endpoints -----------------------------------------------------------------------

    async def server_time(self, request: web.Request) -> Any:
        now = self.sim.now_ms()
        return {"timeSecond": str(now // 1000), "timeNano": str(now * 1_000_000)}

    async def instruments(self, request: web.Request) -> Any:
        """Spot instruments, unpaged (``limit`` and ``cursor`` do nothing on spot); an unknown
        symbol is an empty list, not an error, as on Bybit spot."""
        category = self._category(request)
        if category != "spot":
            return {"category": category, "list": [], "nextPageCursor": ""}
        symbol = request.query.get("symbol")
        status = request.query.get("status") or "Trading"
        chosen = [
            m
            for s, m in self.markets.items()
            if (not symbol or s == symbol) and status == "Trading"
        ]
        return {"category": "spot", "list": [self._instrument(m) for m in chosen]}

    @staticmethod
    def _instrument(m: VenueMarket) -> dict[str, Any]:
        pd, qd = m.spec.price_decimals, m.spec.qty_decimals
        return {
            "symbolId": 1 + zlib.crc32(m.spec.symbol.encode()) % 100_000,
            "symbol": m.spec.symbol,
            "baseCoin": m.spec.base,
            "quoteCoin": m.spec.quote,
            "innovation": "0",
            "symbolType": "",
            "status": "Trading",
            "marginTrading": "utaOnly",
            "stTag": "0",
            "lotSizeFilter": {
                "basePrecision": num(1, qd),
                "quotePrecision": num(1, pd + qd),
                "minOrderQty": num(1, qd),
                "maxOrderQty": "10000",
                "minOrderAmt": "5",
                "maxOrderAmt": "8000000",
                "maxLimitOrderQty": "10000",
                "maxMarketOrderQty": "5000",
                "postOnlyMaxLimitOrderSize": "60000",
            },
            "priceFilter": {"tickSize": num(1, pd)},
            "riskParameters": {"priceLimitRatioX": "0.005", "priceLimitRatioY": "0.01"},
        }

    async def klines(self, request: web.Request) -> Any:
        """Candles newest first, the open one included, as ``[start, open, high, low, close,
        volume, turnover]`` strings. ``category`` defaults to linear (so a spot client must send
        it); with ``start`` the oldest ``limit`` from it, else the newest up to ``end``."""
        category = self._category(request, default="linear")
        m = self._market(request, category)
        q = request.query
        name = q.get("interval")
        if name not in INTERVALS:
            raise _params_error("interval invalid")
        limit = _int(q, "limit", 200)
        if not 1 <= limit <= KLINES_MAX:
            raise _params_error("limit invalid")
        start, end = _int(q, "start", None), _int(q, "end", None)
        rows = m.klines(Interval(INTERVALS[name]), start, end, limit)
        pd, qd = m.spec.price_decimals, m.spec.qty_decimals
        return {
            "symbol": m.spec.symbol,
            "category": category,
            "list": [
                [
                    str(t),
                    num(o, pd),
                    num(h, pd),
                    num(lo, pd),
                    num(c, pd),
                    num(v, qd),
                    num(qv, pd + qd),
                ]
                for t, o, h, lo, c, v, _close, qv, *_ in reversed(rows)
            ],
        }

    def book_u(self, symbol: str) -> int:
        """The REST book's ``u``: the 1000-level WebSocket stream's, "always in sequence"."""
        return self._u[(symbol, FULL_DEPTH)]

    async def orderbook(self, request: web.Request) -> Any:
        category = self._category(request)
        m = self._market(request, category)
        limit = _int(request.query, "limit", 1)
        if not 1 <= limit <= REST_BOOK_MAX:
            raise _params_error("limit invalid")
        _, bids, asks = m.book(limit)
        return {
            "s": m.spec.symbol,
            "b": levels(m, bids),
            "a": levels(m, asks),
            "ts": self.sim.now_ms(),
            "u": self.book_u(m.spec.symbol),
            "seq": book_seq(m),
            "cts": m.now,
        }

    async def recent_trades(self, request: web.Request) -> Any:
        """The latest trades, newest first: no id, time or cursor to ask for older ones."""
        category = self._category(request)
        m = self._market(request, category)
        limit = _int(request.query, "limit", RECENT_TRADES_MAX)
        if not 1 <= limit <= RECENT_TRADES_MAX:
            raise _params_error("limit invalid")
        pd, qd = m.spec.price_decimals, m.spec.qty_decimals
        newest = list(m.recent_trades)[-limit:][::-1]
        return {
            "category": "spot",
            "list": [
                {
                    "execId": trade_id(m.spec.symbol, t.trade_id),
                    "symbol": m.spec.symbol,
                    "price": num(t.price, pd),
                    "size": num(t.qty, qd),
                    "side": "Sell" if t.buyer_is_maker else "Buy",
                    "time": str(t.time),
                    "isBlockTrade": False,
                    "isRPITrade": False,
                    "seq": str(trade_seq(m, t)),
                }
                for t in newest
            ],
        }

    async def tickers(self, request: web.Request) -> Any:
        """Spot tickers, which on REST (unlike the WebSocket) carry the best bid and ask."""
        category = self._category(request)
        symbol = request.query.get("symbol")
        if category != "spot":
            if symbol:
                raise _params_error("symbol invalid")
            return {"category": category, "list": []}
        chosen = [self._market(request, category)] if symbol else list(self.markets.values())
        out = []
        for m in chosen:
            pd, qd = m.spec.price_decimals, m.spec.qty_decimals
            _, bids, asks = m.book(1)
            bid, bid_q = bids[0] if bids else (0, 0)
            ask, ask_q = asks[0] if asks else (0, 0)
            day = ticker_24h(m)
            out.append(
                {
                    "symbol": m.spec.symbol,
                    "bid1Price": num(bid, pd),
                    "bid1Size": num(bid_q, qd),
                    "ask1Price": num(ask, pd),
                    "ask1Size": num(ask_q, qd),
                    "lastPrice": day["lastPrice"],
                    "prevPrice24h": day["prevPrice24h"],
                    "price24hPcnt": day["price24hPcnt"],
                    "highPrice24h": day["highPrice24h"],
                    "lowPrice24h": day["lowPrice24h"],
                    "turnover24h": day["turnover24h"],
                    "volume24h": day["volume24h"],
                    "usdIndexPrice": day["usdIndexPrice"],
                }
            )
        return {"category": "spot", "list": out}


def _int(q: Any, name: str, default: int | None) -> Any:
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"-?[0-9]{1,19}", raw):
        raise _params_error(f"{name} invalid")
    return int(raw)
