"""The simulated OKX's perpetual swaps (``instType`` SWAP, ``BTC-USDT-SWAP``), served by the OKX
face beside its spot instruments, on the same routes, as OKX serves them.

Written from OKX's documentation, independently of :mod:`marketlab.venues.okx`'s swap modules,
so the two check each other. A swap trades the spot market at OKX's prices shifted by the
perpetual's premium (:mod:`marketlab.sim.perpetual`, the same on every venue's face), and every
size on the wire counts contracts of ``ctVal`` of the base asset (0.01 BTC for BTC-USDT-SWAP,
as OKX lists it): books, ``trades``/``trades-all``, candles' ``vol`` (``volCcy`` in the base
asset, ``volCcyQuote`` in USDT), tickers, open interest's ``oi`` and liquidations' ``sz``.

What swaps add, on ``/ws/v5/public`` only (the business URL refuses them with 60018, as OKX
does): ``funding-rate`` (every 30 s; ``fundingTime`` the next settlement, ``nextFundingTime``
the one after), ``mark-price`` (every second), ``open-interest`` (every 3 s) and
``liquidation-orders`` (subscribed by ``instType``, every swap's; the latest liquidation of each
swap per second, a sample as OKX warns) and ``index-tickers`` (named by the index, the swap's
underlying ``BTC-USDT``; pushed when the index changes, else once a minute, as OKX says; an
index it does not have is refused with 60018). REST: ``/public/instruments?instType=SWAP``,
``/public/funding-rate``, ``/public/funding-rate-history`` (newest first, 3 months, 400 a page,
``before``/``after`` by funding time), ``/public/open-interest`` and ``/public/mark-price``,
each with OKX's limit per two seconds. A swap's faults are named by its perpetual's name
(``skip_books(n, "BTCUSDT-PERP")``).
"""

from __future__ import annotations

import dataclasses
import re
import time
from decimal import Decimal
from typing import Any

import orjson
from aiohttp import web

from marketlab.sim.face import request_json
from marketlab.sim.host import OkxHost
from marketlab.sim.market import Candle, StepResult, SymbolMarket, VenueMarket
from marketlab.sim.okx import OkxFace
from marketlab.sim.okx.rest import RATE_LIMITS, OkxError, num
from marketlab.sim.okx.ws import OkxConnection
from marketlab.sim.perpetual import HOUR_MS, INTEREST, RATE_CAP, PerpetualSeries, PerpetualSpec
from marketlab.sim.series import SECOND_MS

# OKX's ctVal of its linear USDT swaps, as powers of ten of the base asset (0.01 BTC, ...)
CONTRACT_EXPONENTS = {"BTC": -2, "ETH": -1, "SOL": 0, "BNB": -2, "XRP": 2, "ADA": 2, "DOGE": 3}
INDEX_CHANNEL = "index-tickers"
SWAP_CHANNELS = ("funding-rate", "mark-price", "open-interest", "liquidation-orders", INDEX_CHANNEL)
SWAP_RATE_LIMITS = {
    **RATE_LIMITS,
    "funding-rate": 10,
    "funding-rate-history": 10,
    "open-interest": 20,
    "mark-price": 10,
    "open-interest-history": 10,
}
FUNDING_PUSH_MS = 30_000  # "Data will be pushed in 30s to 90s"
OPEN_INTEREST_PUSH_MS = 3_000  # "every 3 seconds when there are updates"
INDEX_QUIET_PUSH_MS = (
    60_000  # index-tickers: on a change (every 100 ms at most), else once a minute
)
DAY_MS = 24 * HOUR_MS
FUNDING_HISTORY_LIMIT = 400
FUNDING_HISTORY_DAYS = 90  # funding-rate-history goes back three months
OPEN_INTEREST_HISTORY_LIMIT = 100  # rows per open-interest-history request at most
OPEN_INTEREST_HISTORY_ROWS = 1_440  # "the latest 1,440 data entries" of a period
OPEN_INTEREST_PERIODS = {  # the periods of an hour or less (longer ones are on UTC+8 bars)
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1H": HOUR_MS,
    "2H": 2 * HOUR_MS,
    "4H": 4 * HOUR_MS,
}


def query_int(q: Any, name: str, default: int | None) -> int | None:
    """An integer query parameter (``default`` when absent), else OKX's 51000 naming it."""
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"-?[0-9]{1,20}", raw):
        raise OkxError(400, "51000", f"Parameter {name} error")
    return int(raw)


def scaled(text: str, exponent: int) -> str:
    """A decimal ``text`` times ten to ``exponent``, printed as OKX prints numbers."""
    value = Decimal(text).scaleb(exponent)
    out = format(value, "f")
    return out.rstrip("0").rstrip(".") if "." in out else out


class SwapMarket(VenueMarket):
    """A swap's market: the spot market at OKX's prices plus the premium, named ``BTCUSDT-PERP``
    and counted in contracts (its spec's ``qty_decimals`` print a lot as contracts, so every
    size the face writes is one); ``base_decimals`` print a lot in the base asset."""

    def __init__(
        self, market: SymbolMarket, offset: int, perp: PerpetualSeries, inst: str, exponent: int
    ):
        super().__init__(market, offset)
        self.perp, self.inst, self.exponent = perp, inst, exponent
        self.base_decimals = market.spec.qty_decimals
        self.spec = dataclasses.replace(
            market.spec,
            symbol=f"{market.spec.symbol}-PERP",
            qty_decimals=max(0, market.spec.qty_decimals + exponent),
        )

    @property
    def contract_value(self) -> str:
        return scaled("1", self.exponent)

    @property
    def index_inst(self) -> str:
        """The name of the swap's index: its underlying (``BTC-USDT``)."""
        return self.inst[: -len("-SWAP")]


class OkxSwapFace(OkxFace):
    """The OKX face with SWAP instruments beside the spot ones."""

    rate_limits = SWAP_RATE_LIMITS

    def __init__(self, sim: OkxHost, spec: PerpetualSpec | None = None):
        super().__init__(sim)
        self.swaps: dict[str, SwapMarket] = {}
        self._swap_of: dict[str, SwapMarket] = {}  # spot symbol → its swap
        for m in sim.markets_of("okx").values():
            perp = PerpetualSeries(m.market, sim.market.seed, spec)
            s = m.spec
            inst = f"{s.base}-{s.quote}-SWAP"
            exponent = CONTRACT_EXPONENTS.get(s.base, 0)
            if s.qty_decimals + exponent < 0:  # a lot must be a whole number of contract units
                exponent = -s.qty_decimals
            swap = SwapMarket(m.market, m.offset + perp.trading.offset, perp, inst, exponent)
            self.swaps[inst] = self._swap_of[s.symbol] = swap
            self.inst[inst] = swap
            self._inst_of[swap.spec.symbol] = inst
        self._index_of = {w.index_inst: w for w in self.swaps.values()}  # index → its swap
        self._index_sent: dict[str, tuple[str, int]] = {}  # index → (idxPx, time) last pushed
        # premium shift of a step already at OKX's prices
        self._premium = {
            s: VenueMarket(w.market, w.perp.trading.offset) for s, w in self._swap_of.items()
        }

    # --- routes ------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        super().add_routes(app)
        for path, name, handler in (
            ("/api/v5/public/funding-rate", "funding-rate", self.funding_rate),
            ("/api/v5/public/funding-rate-history", "funding-rate-history", self.funding_history),
            ("/api/v5/public/open-interest", "open-interest", self.open_interest),
            ("/api/v5/public/mark-price", "mark-price", self.mark_price),
            (
                "/api/v5/rubik/stat/contracts/open-interest-history",
                "open-interest-history",
                self.open_interest_history,
            ),
        ):
            app.router.add_get(path, self._rest(name, handler))

    # --- what a swap shows differently ---------------------------------------------------

    @classmethod
    def _candle(cls, m: VenueMarket, c: Candle, confirm: str) -> list[str]:
        row = super()._candle(m, c, confirm)
        if isinstance(m, SwapMarket):  # vol in contracts, volCcy in base, volCcyQuote in USDT
            row[6] = num(c.v, m.base_decimals)
            row[7] = num(c.q, m.spec.price_decimals + m.base_decimals)
        return row

    def _ticker(self, inst: str, m: VenueMarket, now: int) -> dict[str, str]:
        row = super()._ticker(inst, m, now)
        if isinstance(m, SwapMarket):  # sizes in contracts; volCcy24h in the base asset
            row["instType"] = "SWAP"
            row["volCcy24h"] = scaled(row["vol24h"], m.exponent)
        return row

    async def instruments(self, request: web.Request) -> Any:
        if request.query.get("instType") != "SWAP":
            rows = await super().instruments(request)
            return [r for r in rows if r["instId"] not in self.swaps]
        return [
            {
                "instType": "SWAP",
                "instId": inst,
                "uly": inst[: -len("-SWAP")],
                "instFamily": inst[: -len("-SWAP")],
                "baseCcy": "",
                "quoteCcy": "",
                "settleCcy": m.market.spec.quote,
                "ctVal": m.contract_value,
                "ctMult": "1",
                "ctValCcy": m.market.spec.base,
                "ctType": "linear",
                "listTime": str(self.sim.market.genesis),
                "expTime": "",
                "lever": "100",
                "tickSz": num(1, m.spec.price_decimals),
                "lotSz": num(1, m.spec.qty_decimals),
                "minSz": num(1, m.spec.qty_decimals),
                "state": "live",
                "maxLmtSz": "100000000",
                "maxMktSz": "5000",
                "ruleType": "normal",
            }
            for inst, m in self.swaps.items()
        ]

    async def tickers(self, request: web.Request) -> Any:
        kind = request.query.get("instType")
        if kind != "SWAP":
            rows = await super().tickers(request)
            return [r for r in rows if r["instId"] not in self.swaps]
        now = self.sim.now_ms()
        return [self._ticker(i, m, now) for i, m in self.swaps.items()]

    def _candles(self, request: web.Request, history: bool) -> Any:
        rows = super()._candles(request, history)
        m = self.swaps.get(request.query.get("instId", ""))
        if m is not None:  # quote volumes were printed at contract decimals
            for row in rows:
                row[6] = scaled(row[5], m.exponent)
                row[7] = scaled(row[7], m.exponent)
        return rows

    # --- REST: what swaps add ------------------------------------------------------------

    def _swaps_asked(self, request: web.Request, by_type: bool) -> list[SwapMarket]:
        q = request.query
        if by_type:
            kind = q.get("instType")
            if not kind:
                raise OkxError(400, "50014", "Parameter instType can not be empty.")
            if kind != "SWAP":
                return []
        inst = q.get("instId")
        if not inst:
            if by_type:
                return list(self.swaps.values())
            raise OkxError(400, "50014", "Parameter instId can not be empty.")
        if inst == "ANY" and not by_type:
            return list(self.swaps.values())
        m = self.swaps.get(inst)
        if m is None:
            raise OkxError(400, "51001", "Instrument ID does not exist.")
        return [m]

    def _funding_row(self, m: SwapMarket, now: int) -> dict[str, str]:
        p = m.perp
        settle = p.next_funding(now)
        rate = p.funding_rate(settle)
        return {
            "instType": "SWAP",
            "instId": m.inst,
            "method": "current_period",
            "formulaType": "withRate",
            "fundingRate": f"{rate:.8f}",
            "nextFundingRate": "",
            "fundingTime": str(settle),
            "nextFundingTime": str(settle + p.funding_ms),
            "minFundingRate": f"{-RATE_CAP:.8f}",
            "maxFundingRate": f"{RATE_CAP:.8f}",
            "settState": "settled",
            "settFundingRate": f"{p.funding_rate(settle - p.funding_ms):.8f}",
            "premium": f"{p.premium(now):.8f}",
            "interestRate": f"{INTEREST:.8f}",
            "impactValue": "",
            "ts": str(now),
        }

    async def funding_rate(self, request: web.Request) -> Any:
        now = self.sim.now_ms()
        return [self._funding_row(m, now) for m in self._swaps_asked(request, by_type=False)]

    async def funding_history(self, request: web.Request) -> Any:
        """Settled fundings newest first: ``after`` older than a funding time, ``before`` newer
        than one; at most 400, the last three months."""
        q = request.query
        limit = query_int(q, "limit", FUNDING_HISTORY_LIMIT)
        if limit is None or limit < 1:
            raise OkxError(400, "51000", "Parameter limit error")
        after, before = query_int(q, "after", None), query_int(q, "before", None)
        now = self.sim.now_ms()
        oldest = now - FUNDING_HISTORY_DAYS * 24 * HOUR_MS
        rows = []
        for m in self._swaps_asked(request, by_type=False):
            for t, rate, _mark in m.perp.fundings(oldest, now):
                if (after is None or t < after) and (before is None or t > before):
                    rows.append((t, m.inst, rate))
        rows.sort()
        chosen = rows[-min(limit, FUNDING_HISTORY_LIMIT) :][::-1]
        return [
            {
                "instType": "SWAP",
                "instId": inst,
                "formulaType": "withRate",
                "fundingRate": f"{rate:.8f}",
                "realizedRate": f"{rate:.8f}",
                "fundingTime": str(t),
                "method": "current_period",
            }
            for t, inst, rate in chosen
        ]

    def _open_interest_row(self, m: SwapMarket, now: int) -> dict[str, str]:
        lots = m.perp.open_interest(now)
        base = Decimal(num(lots, m.base_decimals))
        mark = Decimal(num(round(m.perp.mark(now)), m.spec.price_decimals))
        return {
            "instType": "SWAP",
            "instId": m.inst,
            "oi": num(lots, m.spec.qty_decimals),
            "oiCcy": num(lots, m.base_decimals),
            "oiUsd": scaled(str(base * mark), 0),
            "ts": str(now),
        }

    async def open_interest(self, request: web.Request) -> Any:
        now = self.sim.now_ms()
        return [self._open_interest_row(m, now) for m in self._swaps_asked(request, by_type=True)]

    async def open_interest_history(self, request: web.Request) -> Any:
        """Open interest at each ``period`` (default 5m), newest first: the latest 1,440 of the
        period, ``end`` older than and ``begin`` newer than a time (each exclusive), at most 100
        rows ``[ts, oi, oiCcy, oiUsd]``."""
        q = request.query
        asked = self._swaps_asked(request, by_type=False)
        if len(asked) != 1:  # one swap at a time (``ANY`` is not one)
            raise OkxError(400, "51001", "Instrument ID does not exist.")
        m = asked[0]
        step = OPEN_INTEREST_PERIODS.get(q.get("period") or "5m")
        if step is None:
            raise OkxError(400, "51000", "Parameter period error")
        limit = query_int(q, "limit", OPEN_INTEREST_HISTORY_LIMIT)
        if limit is None or limit < 1:
            raise OkxError(400, "51000", "Parameter limit error")
        begin, end = query_int(q, "begin", None), query_int(q, "end", None)
        newest = self.sim.now_ms() // step * step
        oldest = max(
            newest - (OPEN_INTEREST_HISTORY_ROWS - 1) * step, -(-m.perp.spot.genesis // step) * step
        )
        rows = []
        for t in range(newest, oldest - 1, -step):
            if (end is None or t < end) and (begin is None or t > begin):
                row = self._open_interest_row(m, t)
                rows.append([row["ts"], row["oi"], row["oiCcy"], row["oiUsd"]])
                if len(rows) == min(limit, OPEN_INTEREST_HISTORY_LIMIT):
                    break
        return rows

    def _mark_row(self, m: SwapMarket, now: int) -> dict[str, str]:
        mark = num(round(m.perp.mark(now)), m.spec.price_decimals)
        return {"instType": "SWAP", "instId": m.inst, "markPx": mark, "ts": str(now)}

    def _index_row(self, m: SwapMarket, now: int) -> dict[str, str]:
        """The swap's index at ``now`` as ``index-tickers`` pushes it, with its 24-hour open,
        high and low and its price at the start of the day in UTC and in UTC+8."""
        p, pd = m.perp, m.spec.price_decimals
        spot = p.spot
        closes = spot.seconds["close"]
        last = (now - spot.genesis) // SECOND_MS  # the seconds closed by ``now``
        first = max(0, last - DAY_MS // SECOND_MS)
        index = round(p.index(now))
        window = closes[first : max(first, min(last, len(closes)))]
        high = max(int(window.max()), index) if len(window) else index
        low = min(int(window.min()), index) if len(window) else index
        utc8 = 8 * HOUR_MS

        def at(t: int) -> str:
            return num(round(p.index(t)), pd)

        return {
            "instId": m.index_inst,
            "idxPx": num(index, pd),
            "open24h": at(now - DAY_MS),
            "high24h": num(high, pd),
            "low24h": num(low, pd),
            "sodUtc0": at(now // DAY_MS * DAY_MS),
            "sodUtc8": at((now + utc8) // DAY_MS * DAY_MS - utc8),
            "ts": str(now),
        }

    async def mark_price(self, request: web.Request) -> Any:
        now = self.sim.now_ms()
        return [self._mark_row(m, now) for m in self._swaps_asked(request, by_type=True)]

    # --- WebSocket: what swaps add -------------------------------------------------------

    def _control(self, conn: OkxConnection, text: str) -> list[bytes]:
        """Subscriptions of the swap channels answered here; every other one by the spot
        face (a request of both kinds counts once, against OKX's 480 an hour)."""
        try:
            msg = request_json(text)
        except orjson.JSONDecodeError:
            msg = None
        args = msg.get("args") if isinstance(msg, dict) else None
        if not isinstance(args, list) or msg.get("op") not in ("subscribe", "unsubscribe"):
            return super()._control(conn, text)
        ours = [a for a in args if isinstance(a, dict) and a.get("channel") in SWAP_CHANNELS]
        if not ours:
            return super()._control(conn, text)
        rest = [a for a in args if a not in ours]
        replies = (
            super()._control(conn, orjson.dumps({**msg, "args": rest}).decode()) if rest else []
        )
        if rest and replies and b'"60014"' in replies[0]:
            return replies  # too many requests: none of it was done
        if not rest:
            now = time.monotonic()
            while conn.requests and conn.requests[0] <= now - 3600:
                conn.requests.popleft()
            if len(conn.requests) >= 480:
                return [self._error(conn, "60014", "Requests too frequent.")]
            conn.requests.append(now)
        for arg in ours:
            replies.append(self._swap_subscription(conn, msg["op"], arg))
        return replies

    def _swap_subscription(self, conn: OkxConnection, op: str, arg: dict[str, Any]) -> bytes:
        channel = arg["channel"]
        if channel == "liquidation-orders":
            target, echo = (
                arg.get("instType", ""),
                {"channel": channel, "instType": arg.get("instType", "")},
            )
            valid = target == "SWAP"
        elif channel == INDEX_CHANNEL:
            target = arg.get("instId", "")
            echo = {"channel": channel, "instId": target}
            valid = target in self._index_of
        else:
            target, echo = (
                arg.get("instId", ""),
                {"channel": channel, "instId": arg.get("instId", "")},
            )
            valid = target in self.swaps
        if conn.business or not valid:
            return self._error(
                conn,
                "60018",
                f"Wrong URL or channel:{channel},instId:{target} doesn't exist. Please use the "
                "correct URL, channel and parameters referring to API document.",
            )
        key = (channel, target)
        if op == "subscribe":
            conn.topics.add(key)
            self.subs.setdefault(key, set()).add(conn)
        else:
            self._unsubscribe(conn, key)
        return orjson.dumps({"event": op, "arg": echo, "connId": conn.conn_id})

    def publish(self, results: dict[str, StepResult]) -> None:
        """The spot instruments' step, then each swap's (the step at the premium's prices)."""
        super().publish(results)
        if not any(
            inst in self.swaps or inst in self._index_of or inst == "SWAP" for _, inst in self.subs
        ):
            return  # no swap subscribed: nothing to shift
        for symbol, r in results.items():
            m = self._swap_of[symbol]
            shifted = self._premium[symbol].shift(r)
            self._publish(m.inst, m, shifted)
            self._publish_swap(m, shifted)

    def _publish_swap(self, m: SwapMarket, r: StepResult) -> None:
        subs, inst, end = self.subs, m.inst, r.end
        arg = {"instId": inst}
        if ("mark-price", inst) in subs:
            data = [self._mark_row(m, end)]
            self._send(
                ("mark-price", inst), {"arg": {"channel": "mark-price", **arg}, "data": data}
            )
        if ("funding-rate", inst) in subs and r.second % FUNDING_PUSH_MS == 0:
            data = [self._funding_row(m, end)]
            self._send(
                ("funding-rate", inst), {"arg": {"channel": "funding-rate", **arg}, "data": data}
            )
        if ("open-interest", inst) in subs and r.second % OPEN_INTEREST_PUSH_MS == 0:
            data = [self._open_interest_row(m, end)]
            self._send(
                ("open-interest", inst), {"arg": {"channel": "open-interest", **arg}, "data": data}
            )
        index_key = (INDEX_CHANNEL, m.index_inst)
        if index_key in subs:
            index_row = self._index_row(m, end)
            px, sent = index_row["idxPx"], self._index_sent.get(m.index_inst)
            if sent is None or sent[0] != px or end - sent[1] >= INDEX_QUIET_PUSH_MS:
                self._index_sent[m.index_inst] = (px, end)
                arg_index = {"channel": INDEX_CHANNEL, "instId": m.index_inst}
                self._send(index_key, {"arg": arg_index, "data": [index_row]})
        key = ("liquidation-orders", "SWAP")
        if key in subs:
            liquidations = m.perp.liquidations(r.second)
            if liquidations:
                last = liquidations[-1]  # a sample: the latest of the second
                detail = {
                    "side": "sell" if last.long else "buy",
                    "posSide": "net",
                    "bkPx": num(last.price, m.spec.price_decimals),
                    "sz": num(last.qty, m.spec.qty_decimals),
                    "bkLoss": "0",
                    "ccy": "",
                    "ts": str(last.time),
                }
                row = {
                    "instType": "SWAP",
                    "instId": inst,
                    "instFamily": inst[: -len("-SWAP")],
                    "uly": inst[: -len("-SWAP")],
                    "details": [detail],
                }
                self._send(
                    key,
                    {"arg": {"channel": "liquidation-orders", "instType": "SWAP"}, "data": [row]},
                )
