"""The simulated OKX's REST face: ``/api/v5/*`` with OKX's paging and error bodies, and its
per-endpoint limit of requests per two seconds (HTTP 429, code 50011)."""

from __future__ import annotations

import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from marketlab.records import Interval
from marketlab.sim.host import OkxHost
from marketlab.sim.market import VenueMarket, fmt_units

log = logging.getLogger("marketlab.sim.okx")

# OKX bar → our interval. Only UTC-aligned bars: the market's candles open on UTC boundaries
# (OKX's plain 6H/12H/1D/1W/1M follow Hong Kong time and are refused here).
BARS = {
    "1m": "1m",
    "3m": "3m",
    "5m": "5m",
    "15m": "15m",
    "30m": "30m",
    "1H": "1h",
    "2H": "2h",
    "4H": "4h",
    "6Hutc": "6h",
    "12Hutc": "12h",
    "1Dutc": "1d",
    "1Wutc": "1w",
    "1Mutc": "1M",
}
PUBLIC_CHANNELS = ("tickers", "trades", "books", "books5", "bbo-tbt")
BOOK_LEVELS = 400
# Requests per 2 seconds per IP, by endpoint (OKX's documented rate limits).
RATE_LIMITS = {
    "time": 10,
    "instruments": 20,
    "ticker": 20,
    "tickers": 20,
    "books": 40,
    "candles": 40,
    "history-candles": 20,
    "history-trades": 20,
}


class OkxError(Exception):
    def __init__(self, status: int, code: str, msg: str):
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


def num(units: int, decimals: int) -> str:
    """Ticks or lots as OKX prints them: no padding zeros (``6500010, 2`` → ``65000.1``)."""
    text = fmt_units(units, decimals, pad=0)
    return text.rstrip("0").rstrip(".") if "." in text else text


class OkxRest:
    """REST handlers and limits of :class:`~marketlab.sim.okx.OkxFace`."""

    sim: OkxHost
    inst: dict[str, VenueMarket]
    _inst_of: dict[str, str]
    _calls: dict[str, deque[float]]
    rate_limits: dict[str, int] = RATE_LIMITS  # by endpoint name (a face adding routes adds its)

    def _rest(
        self, name: str, handler: Callable[[web.Request], Awaitable[Any]]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            self.sim.stats["rest_requests"] += 1
            now = time.monotonic()
            calls = self._calls.setdefault(name, deque())
            while calls and calls[0] <= now - 2.0:
                calls.popleft()
            forced = self.sim.faults.take_rest_fault("okx")
            try:
                if forced is not None:
                    status = forced.status
                    raise OkxError(
                        status,
                        "50011" if status == 429 else "50001",
                        "Too Many Requests" if status == 429 else "Service temporarily unavailable",
                    )
                if len(calls) >= self.rate_limits[name]:
                    raise OkxError(429, "50011", "Too Many Requests")
                calls.append(now)
                data = await handler(request)
            except OkxError as err:
                return web.Response(
                    body=orjson.dumps({"code": err.code, "msg": err.msg, "data": []}),
                    status=err.status,
                    content_type="application/json",
                )
            return web.Response(
                body=orjson.dumps({"code": "0", "msg": "", "data": data}),
                content_type="application/json",
            )

        return wrapped

    def _market(self, request: web.Request) -> VenueMarket:
        inst = request.query.get("instId")
        if not inst:
            raise OkxError(400, "50014", "Parameter instId can not be empty.")
        m = self.inst.get(inst)
        if m is None:
            raise OkxError(400, "51001", "Instrument ID does not exist.")
        return m

    # --- REST: endpoints ---------------------------------------------------------------

    async def server_time(self, request: web.Request) -> Any:
        return [{"ts": str(self.sim.now_ms())}]

    async def instruments(self, request: web.Request) -> Any:
        kind = request.query.get("instType")
        if not kind:
            raise OkxError(400, "50014", "Parameter instType can not be empty.")
        if kind != "SPOT":
            return []
        return [
            {
                "instType": "SPOT",
                "instId": inst,
                "uly": "",
                "instFamily": "",
                "baseCcy": m.spec.base,
                "quoteCcy": m.spec.quote,
                "settleCcy": "",
                "ctVal": "",
                "ctMult": "",
                "ctValCcy": "",
                "optType": "",
                "stk": "",
                "listTime": "1606468572000",
                "expTime": "",
                "lever": "10",
                "tickSz": num(1, m.spec.price_decimals),
                "lotSz": num(1, m.spec.qty_decimals),
                "minSz": num(1, m.spec.qty_decimals),
                "ctType": "",
                "alias": "",
                "state": "live",
                "maxLmtSz": "9999999999",
                "maxMktSz": "1000000",
                "maxTwapSz": "",
                "maxIcebergSz": "",
                "maxTriggerSz": "",
                "maxStopSz": "",
                "ruleType": "normal",
            }
            for inst, m in self.inst.items()
        ]

    def _ticker(self, inst: str, m: VenueMarket, now: int) -> dict[str, str]:
        t = m.ticker()
        pd, qd = m.spec.price_decimals, m.spec.qty_decimals
        _, bids, asks = m.book(1)
        bid, bid_q = bids[0] if bids else (0, 0)
        ask, ask_q = asks[0] if asks else (0, 0)
        return {
            "instType": "SPOT",
            "instId": inst,
            "last": num(t["last"], pd),
            "lastSz": num(t["last_qty"], qd),
            "askPx": num(ask, pd),
            "askSz": num(ask_q, qd),
            "bidPx": num(bid, pd),
            "bidSz": num(bid_q, qd),
            "open24h": num(t["open"], pd),
            "high24h": num(t["high"], pd),
            "low24h": num(t["low"], pd),
            "volCcy24h": num(t["quote"], pd + qd),
            "vol24h": num(t["volume"], qd),
            "sodUtc0": num(t["open"], pd),
            "sodUtc8": num(t["open"], pd),
            "ts": str(now),
        }

    async def ticker(self, request: web.Request) -> Any:
        m = self._market(request)
        return [self._ticker(request.query["instId"], m, self.sim.now_ms())]

    async def tickers(self, request: web.Request) -> Any:
        kind = request.query.get("instType")
        if not kind:
            raise OkxError(400, "50014", "Parameter instType can not be empty.")
        now = self.sim.now_ms()
        return [self._ticker(i, m, now) for i, m in self.inst.items()] if kind == "SPOT" else []

    def _levels(self, m: VenueMarket, levels: list[tuple[int, int]]) -> list[list[str]]:
        pd, qd = m.spec.price_decimals, m.spec.qty_decimals
        return [[num(p, pd), num(q, qd), "0", "1"] for p, q in levels]

    async def books(self, request: web.Request) -> Any:
        m = self._market(request)
        sz = _int(request.query, "sz", 1)
        if not 1 <= sz <= BOOK_LEVELS:
            raise OkxError(400, "51000", "Parameter sz error")
        _, bids, asks = m.book(sz)
        return [
            {
                "asks": self._levels(m, asks),
                "bids": self._levels(m, bids),
                "ts": str(self.sim.now_ms()),
            }
        ]

    async def history_trades(self, request: web.Request) -> Any:
        """Trades newest first, each one (not aggregated): ``type=1`` pages by trade id
        (``after``: older than it, ``before``: newer), ``type=2`` by time; at most 100."""
        m = self._market(request)
        q = request.query
        kind = q.get("type", "1") or "1"
        if kind not in ("1", "2"):
            raise OkxError(400, "51000", "Parameter type error")
        limit = _int(q, "limit", 100)
        if limit < 1:
            raise OkxError(400, "51000", "Parameter limit error")
        after, before = _int(q, "after", None), _int(q, "before", None)
        key = (lambda t: t.trade_id) if kind == "1" else (lambda t: t.time)
        kept = [
            t
            for t in m.recent_trades
            if (after is None or key(t) < after) and (before is None or key(t) > before)
        ]
        chosen = kept[-min(limit, 100) :][::-1]  # the newest that qualify, newest first
        pd, qd = m.spec.price_decimals, m.spec.qty_decimals
        inst = self._inst_of[m.spec.symbol]
        return [
            {
                "instId": inst,
                "side": "sell" if t.buyer_is_maker else "buy",
                "sz": num(t.qty, qd),
                "px": num(t.price, pd),
                "source": "0",
                "tradeId": str(t.trade_id),
                "ts": str(t.time),
            }
            for t in chosen
        ]

    async def candles(self, request: web.Request) -> Any:
        return self._candles(request, history=False)

    async def history_candles(self, request: web.Request) -> Any:
        return self._candles(request, history=True)

    def _candles(self, request: web.Request, history: bool) -> Any:
        m = self._market(request)
        q = request.query
        name = q.get("bar", "1m")
        if name not in BARS:
            raise OkxError(400, "51000", "Parameter bar error")
        iv = Interval(BARS[name])
        cap = 100 if history else 300
        limit = _int(q, "limit", 100)
        if limit < 1:
            raise OkxError(400, "51000", "Parameter limit error")
        limit = min(limit, cap)
        after, before = _int(q, "after", None), _int(q, "before", None)
        newest = iv.open_of(m.now - 1)
        hi = newest if after is None else min(newest, iv.open_of(after - 1))
        lo = iv.open_of(self.sim.market.genesis)
        if lo < self.sim.market.genesis:
            lo = iv.next_open(lo)
        if not history:  # /candles serves the latest 1440 bars only
            lo = max(lo, _back(iv, newest, 1439))
        if before is not None:
            lo = max(lo, iv.next_open(iv.open_of(before)))
        if hi < lo:
            return []
        if before is not None and after is None:
            rows = m.klines(iv, lo, hi, 10**9)[-limit:]  # OKX: the newest bars after ``before``
        else:
            rows = m.klines(iv, max(lo, _back(iv, hi, limit - 1)), hi, limit)
        pd, qd = m.spec.price_decimals, m.spec.qty_decimals
        out = []
        for t, o, h, l, c, v, _close_time, qv, _n, _tv, _tq, closed in reversed(rows):
            out.append(
                [
                    str(t),
                    num(o, pd),
                    num(h, pd),
                    num(l, pd),
                    num(c, pd),
                    num(v, qd),
                    num(qv, pd + qd),
                    num(qv, pd + qd),
                    "1" if closed else "0",
                ]
            )
        return out


def _int(q: Any, name: str, default: int | None) -> Any:
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"-?[0-9]{1,20}", raw):
        raise OkxError(400, "51000", f"Parameter {name} error")
    return int(raw)


def _back(iv: Interval, t: int, n: int) -> int:
    """The open ``n`` candles before ``t``."""
    if not iv.calendar:
        return t - n * iv.ms
    for _ in range(n):
        t = iv.open_of(t - 1)
    return t
