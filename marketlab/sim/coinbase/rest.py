"""The simulated Coinbase Advanced Trade's public REST: ``/api/v3/brokerage/time`` and
``/api/v3/brokerage/market/*`` (products, product_book, a product's ticker of recent trades and
its candles), every number a string, errors in the grpc-gateway body Coinbase answers with
(``{"error", "error_details", "message"}``), and the public limit per IP (10 requests per
second, ``coinbase_rest_limit``; HTTP 429 beyond it).

Also the numbers both halves of the face print: product ids (``BTCUSDT`` → ``BTC-USDT``), trade
ids that are consecutive integers per product (written as strings), the maker's side of a trade
(what Coinbase's docs say ``side`` is), and RFC 3339 times.
"""

from __future__ import annotations

import re
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from marketlab.records import Interval
from marketlab.sim.host import CoinbaseHost
from marketlab.sim.market import VenueMarket, fmt_units
from marketlab.sim.series import TradeEvent

# Coinbase's candle granularities → the market's intervals. FOUR_HOUR is in some client
# libraries but in no Coinbase source the research found, so it is refused.
GRANULARITIES = {
    "ONE_MINUTE": "1m",
    "FIVE_MINUTE": "5m",
    "FIFTEEN_MINUTE": "15m",
    "THIRTY_MINUTE": "30m",
    "ONE_HOUR": "1h",
    "TWO_HOUR": "2h",
    "SIX_HOUR": "6h",
    "ONE_DAY": "1d",
}
# Quote assets a market symbol may end with, longest first where one is a prefix of another.
QUOTES = ("USDT", "USDC", "USD", "EUR", "GBP", "DAI", "BTC", "ETH")
RATE_WINDOW = 1.0  # seconds of the public limit's window
# How Coinbase answers a REST fault: HTTP status → the error name its body carries (gRPC's
# codes) and its message; 429 is also what it answers past the public limit.
COINBASE_REST_FAULTS = {
    429: ("RESOURCE_EXHAUSTED", "Too many requests"),
    500: ("INTERNAL", "Internal error"),
    502: ("UNKNOWN", "Bad gateway"),
    503: ("UNAVAILABLE", "Service unavailable"),
    504: ("DEADLINE_EXCEEDED", "Deadline exceeded"),
}
TICKER_MAX = 1000  # trades one ticker request may ask for
TRADE_ID_BASE = 700_000_000


def product_id(symbol: str) -> str:
    """The Coinbase product id of a market symbol: the base and the quote joined by a dash,
    the quote kept as it is (``BTCUSDT`` → ``BTC-USDT``, ``BTCUSD`` → ``BTC-USD``), since
    Coinbase lists USD and USDT books apart and a client must not mix them silently."""
    for quote in QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return f"{symbol[: -len(quote)]}-{quote}"
    return f"{symbol}-USD"


def num(units: int, decimals: int) -> str:
    """Ticks or lots as a decimal string without padding zeros (``6500010, 2`` →
    ``65000.1``): Coinbase's strings vary in their trailing zeros, a client compares numbers."""
    text = fmt_units(units, decimals, pad=0)
    return text.rstrip("0").rstrip(".") if "." in text else text


def rfc3339(ms: int, digits: int = 6, extra_ns: int = 0) -> str:
    """Exchange time as RFC 3339 in UTC with ``digits`` fractional digits (6 for trade times,
    9 for envelope timestamps); ``extra_ns`` fills the digits below the millisecond."""
    whole = datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    nanos = (ms % 1000) * 1_000_000 + extra_ns % 1_000_000
    return f"{whole}.{nanos:09d}"[: 20 + digits] + "Z"


def trade_id(product: str, market_id: int) -> str:
    """The Coinbase id of the market's trade ``market_id``: consecutive integers per product
    (so a missed trade is found by its id), offset per product so products do not share ids."""
    return str(TRADE_ID_BASE + zlib.crc32(product.encode()) % 100_000_000 + market_id)


def maker_side(t: TradeEvent) -> str:
    """``side`` of a Coinbase market trade: the maker's side, as the docs say (a buy that
    lifts the ask prints ``SELL``)."""
    return "BUY" if t.buyer_is_maker else "SELL"


def trade_json(m: VenueMarket, product: str, t: TradeEvent) -> dict[str, str]:
    pd, qd = m.spec.price_decimals, m.spec.qty_decimals
    return {
        "trade_id": trade_id(product, t.trade_id),
        "product_id": product,
        "price": num(t.price, pd),
        "size": num(t.qty, qd),
        "side": maker_side(t),
        "time": rfc3339(t.time),
    }


class CoinbaseError(Exception):
    """A refusal: its HTTP status and Coinbase's grpc-gateway code name."""

    def __init__(self, status: int, error: str, message: str):
        super().__init__(message)
        self.status, self.error, self.message = status, error, message

    def response(self) -> web.Response:
        body = {"error": self.error, "error_details": self.message, "message": self.message}
        return web.Response(
            status=self.status, body=orjson.dumps(body), content_type="application/json"
        )


def _invalid(message: str) -> CoinbaseError:
    return CoinbaseError(400, "INVALID_ARGUMENT", message)


class CoinbaseRest:
    """REST handlers and the public limit of :class:`~marketlab.sim.coinbase.CoinbaseFace`."""

    sim: CoinbaseHost
    products: dict[str, VenueMarket]
    _calls: dict[str, deque[float]]
    _rest_faults: int

    if TYPE_CHECKING:  # OutageFace's, beside this class in CoinbaseFace (the faults live there)

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
            calls = self._calls.setdefault(request.remote or "", deque())
            while calls and calls[0] <= now - RATE_WINDOW:
                calls.popleft()
            forced = self.sim.faults.take_rest_fault("coinbase")
            if forced is None and self._rest_faults:
                self._rest_faults -= 1
                forced_status: int | None = 429
            else:
                forced_status = forced.status if forced is not None else None
            if forced_status is None and len(calls) >= self.sim.coinbase_rest_limit:
                forced_status = 429
            if forced_status is not None:
                error, message = COINBASE_REST_FAULTS[forced_status]
                return CoinbaseError(forced_status, error, message).response()
            calls.append(now)
            try:
                body = await handler(request)
            except CoinbaseError as err:
                return err.response()
            return web.Response(body=orjson.dumps(body), content_type="application/json")

        return wrapped

    # --- parameters ----------------------------------------------------------------------

    def _product(self, name: str | None) -> tuple[str, VenueMarket]:
        if not name:
            raise _invalid("product_id is required")
        m = self.products.get(name)
        if m is None:
            raise CoinbaseError(404, "NOT_FOUND", f"product {name} not found")
        return name, m

    # --- endpoints -----------------------------------------------------------------------

    async def server_time(self, request: web.Request) -> Any:
        now = self.sim.now_ms()
        return {
            "iso": rfc3339(now, 3),
            "epochSeconds": str(now // 1000),
            "epochMillis": str(now),
        }

    async def list_products(self, request: web.Request) -> Any:
        wanted = request.query.getall("product_ids", [])
        chosen = [(p, m) for p, m in self.products.items() if not wanted or p in wanted]
        return {
            "products": [self._product_json(p, m) for p, m in chosen],
            "num_products": len(chosen),
        }

    async def get_product(self, request: web.Request) -> Any:
        return self._product_json(*self._product(request.match_info["product_id"]))

    @staticmethod
    def _product_json(product: str, m: VenueMarket) -> dict[str, Any]:
        pd, qd = m.spec.price_decimals, m.spec.qty_decimals
        t = m.ticker()
        change = (t["last"] - t["open"]) / t["open"] * 100 if t["open"] else 0.0
        base, quote = product.split("-", 1)
        _, bids, asks = m.book(1)
        mid = (bids[0][0] + asks[0][0]) / 2 * m.spec.tick if bids and asks else 0.0
        return {
            "product_id": product,
            "price": num(t["last"], pd),
            "price_percentage_change_24h": f"{change:.8f}",
            "volume_24h": num(t["volume"], qd),
            "volume_percentage_change_24h": "0",
            "base_increment": num(1, qd),
            "quote_increment": num(1, pd),
            "quote_min_size": "1",
            "quote_max_size": "150000000",
            "base_min_size": num(1, qd),
            "base_max_size": "3400",
            "base_name": base,
            "quote_name": quote,
            "watched": False,
            "is_disabled": False,
            "new": False,
            "status": "online",
            "cancel_only": False,
            "limit_only": False,
            "post_only": False,
            "trading_disabled": False,
            "auction_mode": False,
            "product_type": "SPOT",
            "quote_currency_id": quote,
            "base_currency_id": base,
            "fcm_trading_session_details": None,
            "mid_market_price": f"{mid:.{pd + 1}f}" if mid else "",
            "alias": "",
            "alias_to": [],
            "base_display_symbol": base,
            "quote_display_symbol": quote,
            "view_only": False,
            "price_increment": num(1, pd),
            "display_name": f"{base}/{quote}",
            "product_venue": "CBE",
        }

    async def product_book(self, request: web.Request) -> Any:
        """The aggregated book, best first, without any sequence (Coinbase's has none)."""
        product, m = self._product(request.query.get("product_id"))
        limit = _int(request.query, "limit", None)
        if limit is not None and limit < 1:
            raise _invalid("limit must be positive")
        _, bids, asks = m.book(limit)
        pd, qd = m.spec.price_decimals, m.spec.qty_decimals

        def side(rows: list[tuple[int, int]]) -> list[dict[str, str]]:
            return [{"price": num(p, pd), "size": num(q, qd)} for p, q in rows]

        out: dict[str, Any] = {
            "pricebook": {
                "product_id": product,
                "bids": side(bids),
                "asks": side(asks),
                "time": rfc3339(m.now),
            },
            "last": num(m.last_price, pd),
        }
        if bids and asks:
            spread = asks[0][0] - bids[0][0]
            mid = (asks[0][0] + bids[0][0]) / 2
            out["mid_market"] = f"{mid * m.spec.tick:.{pd + 1}f}"
            out["spread_bps"] = f"{spread / mid * 10_000:.6f}"
            out["spread_absolute"] = num(spread, pd)
        return out

    async def market_trades(self, request: web.Request) -> Any:
        """A product's recent trades, newest first (``limit`` required; ``start`` and ``end``
        in unix seconds narrow them), with the best bid and ask now."""
        product, m = self._product(request.match_info["product_id"])
        q = request.query
        limit = _int(q, "limit", None)
        if limit is None:
            raise _invalid("limit is required")
        if not 1 <= limit <= TICKER_MAX:
            raise _invalid(f"limit must be between 1 and {TICKER_MAX}")
        start, end = _int(q, "start", None), _int(q, "end", None)
        chosen = []
        for t in reversed(m.recent_trades):
            if end is not None and t.time >= (end + 1) * 1000:
                continue
            if start is not None and t.time < start * 1000:
                break
            chosen.append(
                {**trade_json(m, product, t), "bid": "", "ask": "", "exchange": "coinbase"}
            )
            if len(chosen) == limit:
                break
        _, bids, asks = m.book(1)
        pd = m.spec.price_decimals
        return {
            "trades": chosen,
            "best_bid": num(bids[0][0], pd) if bids else "",
            "best_ask": num(asks[0][0], pd) if asks else "",
        }

    async def candles(self, request: web.Request) -> Any:
        """Candles newest first, the open one included, each bucket with a trade only (an
        empty bucket is absent); ``start`` and ``end`` (unix seconds) are required and bound
        the buckets' start times, inclusive; a window of ``coinbase_max_candles`` buckets or
        more is refused."""
        _, m = self._product(request.match_info["product_id"])
        q = request.query
        start, end = _int(q, "start", None), _int(q, "end", None)
        name = q.get("granularity")
        if start is None or end is None:
            raise _invalid("start and end are required")
        if name not in GRANULARITIES:
            raise _invalid(f"granularity {name or ''} is invalid")
        iv = Interval(GRANULARITIES[name])
        if end < start:
            raise _invalid("start must be before end")
        cap = self.sim.coinbase_max_candles
        if (end - start) * 1000 // iv.ms >= cap:
            raise _invalid(
                "start and end argument is invalid - number of candles requested should be "
                f"less than {cap}"
            )
        limit = _int(q, "limit", None)
        limit = cap if limit is None else limit
        if not 1 <= limit <= cap:
            raise _invalid(f"limit must be between 1 and {cap}")
        rows = m.klines(iv, start * 1000, end * 1000, cap + 1)
        pd, qd = m.spec.price_decimals, m.spec.qty_decimals
        traded = [r for r in reversed(rows) if r[8] > 0][:limit]
        return {
            "candles": [
                {
                    "start": str(t // 1000),
                    "low": num(lo, pd),
                    "high": num(h, pd),
                    "open": num(o, pd),
                    "close": num(c, pd),
                    "volume": num(v, qd),
                }
                for t, o, h, lo, c, v, *_ in traded
            ]
        }


def _int(q: Any, name: str, default: int | None) -> int | None:
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"-?[0-9]{1,19}", raw):
        raise _invalid(f"{name} is invalid")
    return int(raw)
