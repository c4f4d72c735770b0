"""The FastAPI app over a running Lab: the realtime REST endpoints and the WebSocket."""

import asyncio
import hmac
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

import pandas as pd
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Security, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from marketlab.lab import Lab
from marketlab.records import Interval, normalize_symbol
from marketlab.server import models
from marketlab.server.hub import Hub
from marketlab.server.params import (
    INTERVALS,
    SYMBOL_PATTERN,
    BadParameter,
    parse_time,
    patch_openapi,
    symbols_pattern,
    validation_error,
)
from marketlab.settings import positive

PREFIX = "/api/v1/market/realtime"

if TYPE_CHECKING:
    IntervalName = str
else:  # a Literal of the names, made at run time, so that the OpenAPI schema lists them
    IntervalName = Literal[INTERVALS]

_ERRORS = {
    401: "A token is required (POST /start and /stop beyond loopback)",
    404: "Unknown symbol, or an interval this server does not collect",
    409: "History asked of a server that keeps none",
    422: "A parameter the schema forbids",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The documented error answers of an operation: one model, ``{"detail": "..."}``."""
    return {code: {"model": models.Error, "description": _ERRORS[code]} for code in codes}


def _clean(value: Any) -> Any:
    """NaN → None, numpy scalars → Python."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if hasattr(value, "item") else value


def shortcut_websocket(
    app: FastAPI, path: str, serve: Callable[[WebSocket], Awaitable[None]]
) -> None:
    """Connections to ``path`` go straight to ``serve``, past the middleware and router stack.

    A connection lives for hours, and every layer it passes stays on its stack for as long: 31
    coroutines a client through the full stack, 15 past it. At 1,000 clients that is ~60,000
    objects fewer for each of Python's full garbage collections to walk (a collection's pause
    is the fan-out's tail). The route stays declared: a path not matched here exactly (an app
    mounted under a root path) still reaches ``serve`` through the router.
    """
    build = app.build_middleware_stack

    def build_with_shortcut() -> ASGIApp:
        stack = build()

        async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "websocket" and scope["path"] == path:
                await serve(WebSocket(scope, receive, send))
            else:
                await stack(scope, receive, send)

        return asgi

    app.build_middleware_stack = build_with_shortcut  # type: ignore[method-assign]  # a wrapper


def create_app(
    lab: Lab,
    *,
    token: str | None = None,
    require_token: bool = False,
    max_symbols: int = 50,
    max_ws_clients: int = 500,
    max_subscriptions: int = 500,
    max_backlog: int = 1000,
    manage_lab: bool = False,
) -> FastAPI:
    """An app serving ``lab``. ``require_token`` (set when binding beyond loopback) makes
    ``POST /start`` and ``/stop`` demand ``Authorization: Bearer <token>``; ``manage_lab``
    starts the Lab with the app and stops it with the app."""
    for name, value in (
        ("max_symbols", max_symbols),
        ("max_ws_clients", max_ws_clients),
        ("max_subscriptions", max_subscriptions),
        ("max_backlog", max_backlog),
    ):
        positive(name, value, integer=True)
    if token is not None and (not isinstance(token, str) or not token.strip()):
        raise ValueError("token must be a non-empty string (or None for loopback-only control)")
    if require_token and not token:
        raise ValueError("serving beyond 127.0.0.1 needs a token (--token or MARKETLAB_TOKEN)")
    hub = Hub(
        lab,
        max_clients=max_ws_clients,
        max_subscriptions=max_subscriptions,
        max_backlog=max_backlog,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage_lab and not lab.running:
            await asyncio.to_thread(lab.start)
        hub.start()
        yield
        await hub.stop()
        if manage_lab:
            await asyncio.to_thread(lab.stop)

    app = FastAPI(
        title="marketlab realtime market data",
        version="0.1.0",
        exception_handlers={RequestValidationError: validation_error},
        description="Live prices, order books and klines collected by a marketlab Lab. "
        f'WebSocket: `{PREFIX}/ws`, send `{{"action": "subscribe", "symbols": [...], '
        '"channels": ["ticker", "trade", "depth", "kline_1m"]}`.',
        lifespan=lifespan,
    )
    app.state.lab = lab
    app.state.hub = hub
    router = APIRouter(prefix=PREFIX)

    def symbol_of(raw: str) -> str:
        s = normalize_symbol(raw)  # the schema's pattern has let only valid forms in
        if s not in lab.symbols:
            raise HTTPException(
                404, f"unknown symbol {raw!r}: this server collects {', '.join(lab.symbols)}"
            )
        return s

    bearer = HTTPBearer(auto_error=False, description="The server's token (--token)")

    def token_checked(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    ) -> None:
        given = credentials.credentials if credentials is not None else ""
        if not given or not hmac.compare_digest(given.encode(), (token or "").encode()):
            raise HTTPException(
                401,
                "a valid token is required: send 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )

    def loopback() -> None:
        """Served on loopback only: control needs no token."""

    authorized = token_checked if require_token else loopback
    control_errors = errors(401) if require_token else {}

    def price_rows(symbols: list[str]) -> models.Prices:
        rows = {r["symbol"]: r for r in lab.price_rows()}
        have = [s for s in symbols if s in rows]
        prices = [models.Price(**{k: _clean(v) for k, v in rows[s].items()}) for s in have]
        return models.Prices(prices=prices, missing=[s for s in symbols if s not in rows])

    def depth_of(symbol: str, limit: int) -> models.Depth:
        view = lab.book_levels(symbol, limit)
        b, a = view.bids, view.asks
        spread = a[0][0] - b[0][0] if a and b else None
        mid = (a[0][0] + b[0][0]) / 2 if a and b else None
        return models.Depth(
            symbol=symbol,
            synced=view.synced,
            reason=view.reason,
            verified=view.verified,
            last_update_id=view.last_update_id,
            bids=b,
            asks=a,
            spread=spread,
            mid=mid,
        )

    def candles(df: pd.DataFrame) -> list[models.Candle]:
        records = df.reset_index().to_dict("records")
        return [models.Candle(**{str(k): _clean(v) for k, v in r.items()}) for r in records]

    symbol_path = Path(pattern=SYMBOL_PATTERN, description="e.g. BTCUSDT (or btcusdt, BTC-USDT)")

    @router.get(
        "/prices", response_model=models.Prices, summary="Latest prices", responses=errors(404, 422)
    )
    def prices(
        symbols: Annotated[
            str | None,
            Query(
                pattern=symbols_pattern(max_symbols),
                description=f"Comma-separated, at most {max_symbols}, e.g. BTCUSDT,ETHUSDT; "
                "default all",
            ),
        ] = None,
    ) -> models.Prices:
        raw = [] if symbols is None else symbols.split(",")
        wanted = list(dict.fromkeys(symbol_of(s) for s in raw)) if raw else list(lab.symbols)
        return price_rows(wanted)

    @router.get(
        "/depth/{symbol}",
        response_model=models.Depth,
        summary="Order book",
        responses=errors(404, 422),
    )
    def depth(
        symbol: Annotated[str, symbol_path],
        limit: Annotated[int, Query(ge=1, le=1000, description="Levels per side")] = 20,
    ) -> models.Depth:
        return depth_of(symbol_of(symbol), limit)

    @router.get(
        "/klines/{symbol}",
        response_model=models.Klines,
        summary="Candles",
        responses=errors(404, 409, 422),
    )
    def klines(
        symbol: Annotated[str, symbol_path],
        interval: Annotated[IntervalName, Query(description="A kline interval")] = "1m",
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        history: Annotated[
            bool, Query(description="Read the stored history instead of the live frame")
        ] = False,
        start: Annotated[str | None, Query(description="With history: from this time")] = None,
        end: Annotated[str | None, Query(description="With history: up to this time")] = None,
    ) -> models.Klines:
        s = symbol_of(symbol)
        iv = Interval(interval)
        try:
            since, until = parse_time("start", start), parse_time("end", end)
        except BadParameter as exc:
            raise HTTPException(422, str(exc)) from None
        if history:
            if lab.db is None:
                raise HTTPException(409, "this server keeps no history (start it with --db)")
            if since is not None and until is not None and until < since:
                return models.Klines(
                    symbol=s, interval=iv, source="history", klines=[]
                )  # empty span
            df = lab.history.klines(s, iv, since, until)
            return models.Klines(
                symbol=s, interval=iv, source="history", klines=candles(df.tail(limit))
            )
        if iv not in lab.intervals:
            raise HTTPException(
                404, f"interval {iv} is not collected (intervals: {', '.join(lab.intervals)})"
            )
        return models.Klines(
            symbol=s, interval=iv, source="live", klines=candles(lab.klines(s, iv).tail(limit))
        )

    @router.get("/summary", response_model=models.Summary, summary="Market overview")
    def summary() -> models.Summary:
        df = lab.prices()
        rows = []
        for s in lab.symbols:
            p = df.loc[s] if s in df.index else None
            top = depth_of(s, 1)
            d = top if top.synced else None
            rows.append(
                models.SymbolSummary(
                    symbol=s,
                    last=_clean(p["last"]) if p is not None else None,
                    change_pct=_clean(p["change_pct"]) if p is not None else None,
                    volume=_clean(p["volume"]) if p is not None else None,
                    spread=d.spread if d else None,
                    spread_bps=(1e4 * d.spread / d.mid)
                    if d and d.spread is not None and d.mid
                    else None,
                    book_synced=d is not None,
                    age_s=_clean(p["age_s"]) if p is not None else None,
                    source=cast("str | None", p["source"]) if p is not None else None,
                )
            )
        return models.Summary(running=lab.running, source=lab.summary().get("source"), symbols=rows)

    @router.get("/all", response_model=models.All, summary="Everything at once")
    def everything() -> models.All:
        last: dict[str, dict[str, models.Candle | None]] = {}
        for s in lab.symbols:
            last[s] = {}
            for iv in lab.intervals:
                df = lab.klines(s, iv)
                last[s][str(iv)] = candles(df.tail(1))[0] if len(df) else None
        return models.All(
            summary=summary(),
            prices=price_rows(lab.symbols),
            depth={s: d if (d := depth_of(s, 5)).synced else None for s in lab.symbols},
            klines=last,
        )

    @router.get("/status", response_model=models.Status, summary="Collector status")
    def status() -> models.Status:
        st = lab.status()
        info = st.attrs
        streams = []
        for key, row in st.iterrows():
            sym, stream = cast("tuple[str, str]", key)  # the (symbol, stream) index
            fields = {str(k): _clean(v) for k, v in row.items()}
            streams.append(models.StreamStatus(symbol=sym, stream=stream, **fields))
        return models.Status(
            running=lab.running,
            source=info.get("source"),
            exchange=lab.exchange,
            symbols=lab.symbols,
            intervals=[str(i) for i in lab.intervals],
            reconnects=info.get("reconnects", 0),
            bad_frames=info.get("bad_frames", 0),
            websocket_clients=len(hub.clients),
            streams=streams,
            error=info.get("error"),
            store=info.get("store"),
            bus=info.get("bus"),
        )

    @router.post(
        "/start",
        response_model=models.Control,
        dependencies=[Depends(authorized)],
        summary="Start collecting",
        responses=control_errors,
    )
    async def start() -> models.Control:
        if lab.running:
            return models.Control(running=True, message="already running")
        await asyncio.to_thread(lab.start)
        return models.Control(running=lab.running, message="started")

    @router.post(
        "/stop",
        response_model=models.Control,
        dependencies=[Depends(authorized)],
        summary="Stop collecting",
        responses=control_errors,
    )
    async def stop() -> models.Control:
        if not lab.running:
            return models.Control(running=False, message="not running")
        await asyncio.to_thread(lab.stop)
        return models.Control(running=lab.running, message="stopped")

    @router.websocket("/ws")
    async def websocket(ws: WebSocket) -> None:
        await hub.serve(ws)

    app.include_router(router)
    shortcut_websocket(app, f"{PREFIX}/ws", hub.serve)

    @app.get("/health", response_model=models.Health, summary="Liveness")
    def health() -> models.Health:
        return models.Health(status="ok", running=lab.running)

    openapi = app.openapi

    def documented() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = patch_openapi(openapi())
        return app.openapi_schema

    app.openapi = documented  # type: ignore[method-assign]  # FastAPI's way to patch the schema
    return app
