"""The simulated exchange process: clock, market engine, HTTP/WebSocket server, faults.

Use it from async code (``async with SimExchange(...) as sim``), from sync code, where it runs
its own event loop in a thread (``with SimExchange(...) as sim``), or from the CLI
(``marketlab sim``). Every public method may be called from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from aiohttp import web

from marketlab.records import Interval, normalize_symbol, parse_duration
from marketlab.sim.archive import ArchiveFace
from marketlab.sim.binance import BinanceFace
from marketlab.sim.binance.perp_face import BinancePerpFace
from marketlab.sim.bybit import BybitFace
from marketlab.sim.bybit.perp_face import BybitPerpFace
from marketlab.sim.coinbase import WS_PATH as COINBASE_WS
from marketlab.sim.coinbase import CoinbaseFace
from marketlab.sim.faults import (
    VENUES,
    FaultControls,
    Faults,
    ScheduledFault,
    is_ws_path,
    parse_fault_schedule,
    threadsafe,
    venue_of_path,
    venues_of,
)
from marketlab.sim.market import SECOND_MS, Market, StepResult, VenueMarket, offset_ticks
from marketlab.sim.okx.perp_face import OkxSwapFace
from marketlab.sim.replay_face import ReplayFace
from marketlab.sim.series import TradeEvent

log = logging.getLogger("marketlab.sim")

# Each venue's constant price offset from the one market, in basis points of a symbol's starting
# price (whole ticks), and its constant delivery latency in milliseconds: what makes the venues'
# views of one market differ a little, as real venues' do.
DEFAULT_VENUE_OFFSETS_BPS = {"binance": 0.0, "okx": 1.0, "bybit": -1.5, "coinbase": 2.5}
DEFAULT_VENUE_LATENCY_MS = {"binance": 0.0, "okx": 5.0, "bybit": 10.0, "coinbase": 20.0}

T = TypeVar("T")


class SimClock:
    """Exchange time: starts at ``start_ms`` and runs ``speed`` times faster than wall time."""

    def __init__(self, speed: float, start_ms: int):
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.speed = speed
        self._base_ex = start_ms
        self._base_wall = time.monotonic()
        self.paused = False

    def now_ms(self) -> int:
        if self.paused:
            return self._base_ex
        return self._base_ex + int((time.monotonic() - self._base_wall) * 1000 * self.speed)

    def pause(self) -> None:
        self._base_ex, self.paused = self.now_ms(), True

    def resume(self) -> None:
        self._base_wall, self.paused = time.monotonic(), False


class SimExchange(FaultControls):
    """Simulated Binance Spot, OKX v5, Bybit v5 spot and Coinbase Advanced Trade public market
    data on one loopback port, from one deterministic market (a seed gives the same trades,
    books and candles every run).

    The venues trade the same market but do not look identical: each shows every price a
    constant number of ticks away from the market's, ``venue_offsets_bps`` basis points of the
    symbol's starting price rounded to whole ticks (default binance 0, okx +1, bybit -1.5,
    coinbase +2.5; BTCUSDT at 65,000 and a 0.01 tick: 0, +650, -975 and +1,625 ticks), in
    everything it serves (trades, books, tickers, candles, REST and WebSocket alike, and
    :meth:`book` and :meth:`klines` for that venue); and each venue's WebSocket frames leave
    ``venue_latency_ms`` after the event (default binance 0, okx 5, bybit 10, coinbase 20 ms),
    in order. A venue left out of either dict gets 0; ``{}`` makes the four venues identical.
    """

    def __init__(
        self,
        symbols: Iterable[str] = ("BTCUSDT", "ETHUSDT"),
        *,
        speed: float = 1.0,
        seed: int = 7,
        host: str = "127.0.0.1",
        port: int = 0,
        start_time: int | None = None,
        history: str | float = "2h",
        trades_per_second: float | None = None,
        ping_interval: float = 20.0,
        pong_timeout: float = 60.0,
        max_connection_age: float = 86400.0,
        message_limit: int = 5,
        weight_limit: int = 6000,
        violations_before_ban: int = 3,
        ban_seconds: float = 120.0,
        okx_idle_timeout: float = 30.0,
        okx_checksums: bool = False,
        okx_book_heartbeat: float = 60.0,
        bybit_idle_timeout: float = 600.0,
        bybit_rest_limit: int = 600,
        bybit_ban_seconds: float = 600.0,
        coinbase_subscribe_timeout: float = 5.0,
        coinbase_idle_timeout: float = 60.0,
        coinbase_ws_message_limit: int = 8,
        coinbase_ws_connect_limit: int = 8,
        coinbase_rest_limit: int = 10,
        coinbase_max_candles: int = 350,
        replay: str | None = None,
        replay_rate: float | None = None,
        ssl_context: ssl.SSLContext | None = None,
        faults: str | list[ScheduledFault] | None = None,
        venue_offsets_bps: dict[str, float] | None = None,
        venue_latency_ms: dict[str, float] | None = None,
    ):
        self.symbol_names = [normalize_symbol(s) for s in symbols]
        if not self.symbol_names:
            raise ValueError("the simulator needs at least one symbol")
        self.speed, self.seed, self.host, self.port = speed, seed, host, port
        start = start_time if start_time is not None else int(time.time()) * SECOND_MS
        self.start_time = start - start % SECOND_MS
        history_s = parse_duration(history) if isinstance(history, str) else float(history)
        genesis = Interval("1m").open_of(self.start_time - int(history_s * 1000))
        self.market = Market(self.symbol_names, seed, genesis, trades_per_second)
        self.ping_interval, self.pong_timeout = ping_interval, pong_timeout
        self.max_connection_age, self.message_limit = max_connection_age, message_limit
        self.weight_limit, self.violations_before_ban = weight_limit, violations_before_ban
        self.ban_seconds = ban_seconds
        self.okx_idle_timeout = okx_idle_timeout
        # OKX retired its book checksum (always 0 since 2026-06-23); True sends the old CRC32.
        self.okx_checksums = okx_checksums
        self.okx_book_heartbeat = okx_book_heartbeat  # seconds a book may stay silent on OKX
        # Bybit cuts a connection that has not pinged for 10 minutes (its docs; it asks for a
        # ping every 20 s), allows 600 REST requests per 5 s per IP and bans for 10 minutes.
        self.bybit_idle_timeout = bybit_idle_timeout
        self.bybit_rest_limit, self.bybit_ban_seconds = bybit_rest_limit, bybit_ban_seconds
        # Coinbase disconnects a socket with no subscribe within 5 s, closes channels quiet for
        # 60-90 s unless heartbeats is subscribed (the short end here), takes 8 unauthenticated
        # messages and 8 connections per second per IP, about 10 public REST requests per
        # second per IP (429 beyond), and refuses candle windows of 350 buckets or more.
        self.coinbase_subscribe_timeout = coinbase_subscribe_timeout
        self.coinbase_idle_timeout = coinbase_idle_timeout
        self.coinbase_ws_message_limit = coinbase_ws_message_limit
        self.coinbase_ws_connect_limit = coinbase_ws_connect_limit
        self.coinbase_rest_limit = coinbase_rest_limit
        self.coinbase_max_candles = coinbase_max_candles
        self.replay_path, self.replay_rate = replay, replay_rate
        self.ssl_context = ssl_context  # TLS on loopback, for clients that insist on wss://
        self.replay: ReplayFace | None = None
        self.schedule = (
            parse_fault_schedule(faults) if isinstance(faults, str) else list(faults or [])
        )
        self.faults = Faults()
        self.clock: SimClock | None = None
        offsets = DEFAULT_VENUE_OFFSETS_BPS if venue_offsets_bps is None else venue_offsets_bps
        latency = DEFAULT_VENUE_LATENCY_MS if venue_latency_ms is None else venue_latency_ms
        for given in (offsets, latency):
            for v in given:
                venues_of(v)  # ValueError for a venue the simulator has not
        self.venue_offsets_bps = {v: float(offsets.get(v, 0.0)) for v in VENUES}
        self.venue_latency_ms = {v: float(latency.get(v, 0.0)) for v in VENUES}
        if any(ms < 0 for ms in self.venue_latency_ms.values()):
            raise ValueError(f"venue latency must not be negative: {self.venue_latency_ms}")
        self._venue_markets = {
            v: {
                s: VenueMarket(m, offset_ticks(m.spec, self.venue_offsets_bps[v]))
                for s, m in self.market.symbols.items()
            }
            for v in VENUES
        }
        self.binance = BinanceFace(self)
        self.binance_perp = BinancePerpFace(self)  # USDⓈ-M perpetuals, on the same market
        self.okx = OkxSwapFace(self)  # spot and SWAP instruments, on the same routes
        self.bybit = BybitFace(self)
        self.bybit_perp = BybitPerpFace(self, self.bybit)  # linear, on the spot face's host
        self.coinbase = CoinbaseFace(self)
        self.archive = ArchiveFace(self, perpetuals=lambda: self.binance_perp.markets)
        for v in VENUES:
            self._face(v).latency = self.venue_latency_ms[v] / 1000
        self.stats = {"rest_requests": 0, "ws_connections": 0}
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._loop_thread_id: int | None = None

    # --- addresses ---------------------------------------------------------------------

    @property
    def rest_url(self) -> str:
        """The REST base for every venue (``binance_rest_url=``, ``okx_rest_url=``, Bybit's):
        ``https`` when serving TLS. Known once started, since the port may be chosen then."""
        return f"{'https' if self.ssl_context else 'http'}://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """The WebSocket base (``binance_ws_url=``; OKX's paths are under it too, see
        :attr:`okx_ws_url`): ``wss`` when serving TLS."""
        return f"{'wss' if self.ssl_context else 'ws'}://{self.host}:{self.port}"

    @property
    def archive_url(self) -> str:
        """The public data archive's base (``archive_url=``): its listing and files, served
        from this market's history (see :mod:`marketlab.sim.archive`)."""
        return f"{self.rest_url}/archive"

    @property
    def okx_ws_url(self) -> str:
        """OKX's public WebSocket (candles are on ``/ws/v5/business`` beside it)."""
        return f"{self.ws_url}/ws/v5/public"

    @property
    def bybit_ws_url(self) -> str:
        """Bybit's public spot WebSocket (its REST is under :attr:`rest_url`, ``/v5/market``)."""
        return f"{self.ws_url}/v5/public/spot"

    @property
    def coinbase_ws_url(self) -> str:
        """Coinbase's market-data WebSocket, at the root path as on Coinbase (its REST is
        under :attr:`rest_url`, ``/api/v3/brokerage``)."""
        return f"{self.ws_url}{COINBASE_WS}"

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> SimExchange:
        """Serve on the running event loop (``async with`` calls it): the market warmed up with
        its history, both venues' routes, the fault endpoint and the engine that moves the
        market. Returns itself once it listens, so its URLs are known."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread_id = threading.get_ident()
        self.market.warm_up(self.start_time)
        self.clock = SimClock(self.speed, self.start_time)
        app = web.Application(middlewares=[self._refusals])
        if self.replay_path is not None:
            self.replay = ReplayFace(self.replay_path, self.replay_rate)
            self.binance.add_routes(app, streams=False)
            self.replay.add_routes(app)
            app.router.add_get("/api/v3/depth", self.replay.depth)
        else:
            self.binance.add_routes(app)
        self.binance_perp.add_routes(app)
        self.okx.add_routes(app)
        self.bybit.add_routes(app)
        self.bybit_perp.add_routes(app)
        self.coinbase.add_routes(app)
        self.archive.add_routes(app)
        app.router.add_post("/sim/v1/faults/{name}", self._fault_endpoint)
        app.router.add_get("/sim/v1/status", self._status_endpoint)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self.host, self.port, reuse_address=True, ssl_context=self.ssl_context
        )
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._tasks.append(asyncio.create_task(self._engine()))
        if self.schedule:
            self._tasks.append(asyncio.create_task(self._run_schedule()))
        log.info(
            "simulated exchange on %s (speed %s, seed %s)", self.rest_url, self.speed, self.seed
        )
        return self

    async def stop(self) -> None:
        """Stop the engine and the schedule, cut every client's connection and free the port."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._runner is not None:
            self.binance.abort_all()
            self.okx.abort_all()
            self.bybit.abort_all()
            self.bybit_perp.abort_all()
            self.coinbase.abort_all()
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SimExchange:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def __enter__(self) -> SimExchange:
        """Run in a background thread with its own event loop."""
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        self._thread = threading.Thread(target=run, name="marketlab-sim", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            self._thread = None
            raise failure[0]
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start_in_thread(self) -> SimExchange:
        """Start in a background thread (as ``with`` does), for notebooks; ``close()`` stops it."""
        return self.__enter__()

    def close(self) -> None:
        """Stop a simulator started in a background thread (``with`` or :meth:`start_in_thread`)
        and wait for the thread; nothing to do otherwise."""
        if self._thread is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            self._thread = None

    # --- the engine ----------------------------------------------------------------------

    def now_ms(self) -> int:
        """Exchange time now: the clock, but never outside the second the market is in. An
        overloaded simulator's market lags its clock; a server time ahead of the data it serves
        would call a half-built candle closed (a real exchange's clock and data agree)."""
        assert self.clock is not None, "the simulator is not started"
        market = self.market.now
        return max(market, min(self.clock.now_ms(), market + SECOND_MS - 1))

    async def _engine(self) -> None:
        assert self.clock is not None
        while True:
            target = self.clock.now_ms()
            steps = 0
            burst_ends = (
                time.monotonic() + 0.02
            )  # behind the clock: catch up in bursts, still serving
            while self.market.now + SECOND_MS <= target and time.monotonic() < burst_ends:
                results = self.market.step()
                self.binance.publish(self._at_venue("binance", results))
                self.binance_perp.publish(results)
                self.okx.publish(self._at_venue("okx", results))
                self.bybit.publish(self._at_venue("bybit", results))
                self.bybit_perp.publish(results)
                self.coinbase.publish(self._at_venue("coinbase", results))
                steps += 1
            if steps:
                await asyncio.sleep(0)
            else:
                wait = (self.market.now + SECOND_MS - target) / 1000 / self.speed
                await asyncio.sleep(min(0.05, max(0.001, wait)))

    def markets_of(self, venue: str) -> dict[str, VenueMarket]:
        """Each symbol's market as ``venue`` shows it (at its prices), by symbol."""
        return self._venue_markets[venue]

    def venue_offset(self, symbol: str, venue: str) -> int:
        """How many ticks ``venue``'s prices of ``symbol`` are from the market's."""
        (v,) = venues_of(venue)
        return self._venue_markets[v][normalize_symbol(symbol)].offset

    def _at_venue(self, venue: str, results: dict[str, StepResult]) -> dict[str, StepResult]:
        views = self._venue_markets[venue]
        return {s: views[s].shift(r) for s, r in results.items()}

    async def _run_schedule(self) -> None:
        began = time.monotonic()
        for fault in sorted(self.schedule, key=lambda f: f.at):
            await asyncio.sleep(max(0.0, began + fault.at - time.monotonic()))
            log.warning("injecting fault %s%s", fault.name, f" ({fault.arg})" if fault.arg else "")
            try:
                self.inject(fault.name, fault.arg, fault.venue)
            except ValueError as exc:
                log.warning("fault %s not injected: %s", fault.name, exc)

    # --- the simulator's own record ------------------------------------------------------

    @threadsafe
    def klines(
        self,
        symbol: str,
        interval: str,
        start: int | None = None,
        end: int | None = None,
        limit: int = 1000,
        venue: str = "binance",
    ) -> list[dict[str, Any]]:
        """Candles as ``venue`` holds them (at its prices), in float units (the test oracle)."""
        (v,) = venues_of(venue)
        m = self._venue_markets[v][normalize_symbol(symbol)]
        tick, lot = m.spec.tick, m.spec.lot
        keys = (
            "open_time",
            "open",
            "high",
            "low",
            "close",
            "volume",
            "close_time",
            "quote_volume",
            "trades",
            "taker_buy_volume",
            "taker_buy_quote_volume",
            "closed",
        )
        out = []
        for row in m.klines(Interval(interval), start, end, limit):
            d = dict(zip(keys, row, strict=True))
            for k in ("open", "high", "low", "close"):
                d[k] = round(d[k] * tick, m.spec.price_decimals)
            for k in ("volume", "taker_buy_volume"):
                d[k] = round(d[k] * lot, m.spec.qty_decimals)
            for k in ("quote_volume", "taker_buy_quote_volume"):
                d[k] = round(d[k] * tick * lot, m.spec.price_decimals + m.spec.qty_decimals)
            out.append(d)
        return out

    @threadsafe
    def kept_trades(self, symbol: str, *, perpetual: bool = False) -> list[TradeEvent]:
        """The trades Binance's spot market (USDⓈ-M's with ``perpetual``) still keeps of
        ``symbol``, oldest first, in the simulator's integer units: copied on its loop, which
        appends to them as it trades (the test oracle of the archive and the trade backfill)."""
        name = normalize_symbol(symbol)
        kept = self.binance_perp.markets[name] if perpetual else self.market.symbols[name]
        return list(kept.recent_trades)

    @threadsafe
    def book(self, symbol: str, limit: int | None = None, venue: str = "binance") -> dict[str, Any]:
        """The exchange's book as ``venue`` shows it (at its prices): ``{"last_update_id",
        "bids", "asks"}`` in floats, best first. The id is the venue's: Binance's update id,
        OKX's seqId (moved by seqId resets), the ``u`` of Bybit's deepest book stream with
        subscribers (else its REST book's), or on Coinbase (whose book has no id, only each
        connection's ``sequence_num``) the market's update id."""
        (v,) = venues_of(venue)
        m = self._venue_markets[v][normalize_symbol(symbol)]
        uid, bids, asks = m.book(limit)
        if venue == "bybit":
            try:
                uid = self.bybit.subscribed_u(m.spec.symbol)
            except LookupError:  # nobody watches a book stream: the REST book's
                uid = self.bybit.book_u(m.spec.symbol)
        elif venue == "okx":  # Coinbase's has no id
            uid = self.okx.seq_id(m.spec.symbol, uid)
        pd, qd = m.spec.price_decimals, m.spec.qty_decimals

        def conv(levels: list[tuple[int, int]]) -> list[tuple[float, float]]:
            return [(round(p * m.spec.tick, pd), round(q * m.spec.lot, qd)) for p, q in levels]

        return {"last_update_id": uid, "bids": conv(bids), "asks": conv(asks)}

    # --- HTTP plumbing -------------------------------------------------------------------

    @web.middleware
    async def _refusals(
        self, request: web.Request, handler: Callable[..., Any]
    ) -> web.StreamResponse:
        if request.path.startswith("/sim/"):
            return await handler(request)
        venue = venue_of_path(request.path)
        until = (
            self.faults.refuse_ws_until
            if is_ws_path(request.path)
            else self.faults.refuse_rest_until
        )
        if time.monotonic() < until[venue]:
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=503)
        return await handler(request)

    async def _fault_endpoint(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            self.inject(name, request.query.get("arg"), request.query.get("venue"))
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"ok": True, "fault": name})

    async def _status_endpoint(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "symbols": self.symbol_names,
                "speed": self.speed,
                "seed": self.seed,
                "exchange_time": self.now_ms(),
                "connections": len(self.binance.connections)
                + len(self.okx.connections)
                + len(self.bybit.connections)
                + len(self.coinbase.connections),
                **self.stats,
            }
        )
