"""The FastAPI app over a running Lab: the realtime REST endpoints and the WebSocket."""

import asyncio
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

import pandas as pd
from fastapi import (
    APIRouter,
    Depends,
    FastAPI,
    HTTPException,
    Path,
    Query,
    Response,
    Security,
    WebSocket,
)
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from marketlab.lab import Lab
from marketlab.records import Interval, normalize_symbol
from marketlab.server import models
from marketlab.server.answers import documented_errors, json_answer, json_cell
from marketlab.server.hub import Hub
from marketlab.server.params import (
    EXCHANGE_PATTERN,
    INTERVALS,
    QUOTE_EQUIVALENTS_PATTERN,
    SYMBOL_PATTERN,
    BadParameter,
    parse_quote_equivalents,
    parse_time,
    patch_openapi,
    symbols_pattern,
    validation_error,
)
from marketlab.server.perpetuals import perpetual_router
from marketlab.server.query_route import QueryRoute
from marketlab.settings import positive
from marketlab.watch import Watch
from marketlab.watch.metrics import CONTENT_TYPE_LATEST, exposition, lab_registry

PREFIX = "/api/v1/market/realtime"

if TYPE_CHECKING:
    IntervalName = str
else:  # a Literal of the names, made at run time, so that the OpenAPI schema lists them
    IntervalName = Literal[INTERVALS]

_ERRORS = {
    401: "A token is required (POST /start and /stop beyond loopback)",
    404: "Unknown symbol or exchange, or an interval this server does not collect",
    409: "History asked of a server that keeps none, or venues quoting a market in different "
    "assets not declared equivalent (quote_equivalents)",
    422: "A parameter the schema forbids",
}


def errors(*codes: int) -> dict[int | str, Any]:
    """The documented error answers of an operation: one model, ``{"detail": "..."}``."""
    return documented_errors(_ERRORS, *codes)


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
        forget_alerts = _alerts_to_clients(lab, hub, asyncio.get_running_loop())
        yield
        forget_alerts()
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

    # Declared first: a request is matched against the routes in the order they were declared,
    # and the liveness probe, asked for most often, is then matched at the first try rather
    # than after every route of the realtime and perpetual routers.
    @app.get("/health", response_model=models.Health, summary="Liveness")
    async def health() -> Response:
        return json_answer(models.Health(status="ok", running=lab.running))

    router = APIRouter(prefix=PREFIX)

    def venue_of(raw: str | None) -> str:
        """The venue asked for (the Lab's first when None), or 404 naming the venues."""
        if raw is None:
            return lab.exchange
        venue = raw.lower()
        if venue not in lab.exchanges:
            raise HTTPException(
                404, f"unknown exchange {raw!r}: this server collects {', '.join(lab.exchanges)}"
            )
        return venue

    def symbol_of(raw: str, venue: str | None = None) -> str:
        """``raw`` as ``venue`` collects it (the first venue when None), or 404 saying what
        it collects."""
        s = normalize_symbol(raw)  # the schema's pattern has let only valid forms in
        venue = venue or lab.exchange
        known = lab.symbols_of(venue)
        if s not in known:
            where = f" from {venue}" if len(lab.exchanges) > 1 else ""
            raise HTTPException(
                404, f"unknown symbol {raw!r}: this server collects {', '.join(known)}{where}"
            )
        return s

    def any_symbol_of(raw: str) -> str:
        """``raw`` as some venue collects it, or 404 saying what each collects."""
        if len(lab.exchanges) == 1:
            return symbol_of(raw)
        s = normalize_symbol(raw)
        collected = lab.venue_symbols
        if not any(s in symbols for symbols in collected.values()):
            shown = "; ".join(f"{v}: {', '.join(symbols)}" for v, symbols in collected.items())
            raise HTTPException(404, f"unknown symbol {raw!r}: this server collects {shown}")
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

    def price_rows(symbols: list[str] | None, venue: str | None) -> models.Prices:
        """The price rows of ``venue`` (every venue's, in order, when None), per symbol asked
        for (each venue's own symbols when None), and those with no price yet."""
        rows = {(r["exchange"], r["symbol"]): r for r in lab.price_rows()}
        prices: list[dict[str, Any]] = []
        missing_on: dict[str, list[str]] = {}
        for v in [venue] if venue is not None else lab.exchanges:
            collected = lab.symbols_of(v)
            if symbols is None:
                wanted = collected
            else:
                have = set(collected)
                wanted = [s for s in symbols if s in have]
            for s in wanted:
                row = rows.get((v, s))
                if row is None:
                    missing_on.setdefault(v, []).append(s)
                else:
                    prices.append(row)
        missing = list(dict.fromkeys(s for absent in missing_on.values() for s in absent))
        # validated as a whole in one call (the Lab's rows hold plain numbers: a NaN is
        # written null, as a None would be)
        return models.Prices.model_validate(
            {"prices": prices, "missing": missing, "missing_by_exchange": missing_on}
        )

    def depth_of(symbol: str, limit: int, venue: str | None = None) -> models.Depth:
        venue = venue or lab.exchange
        view = lab.book_levels(symbol, limit, exchange=venue)
        b, a = view.bids, view.asks
        spread = a[0][0] - b[0][0] if a and b else None
        mid = (a[0][0] + b[0][0]) / 2 if a and b else None
        return models.Depth(
            symbol=symbol,
            exchange=view.exchange or venue,
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
        return [models.Candle(**{str(k): json_cell(v) for k, v in r.items()}) for r in records]

    def equivalents_of(raw: str | None) -> dict[str, str] | None:
        try:
            return parse_quote_equivalents(raw)
        except BadParameter as exc:
            raise HTTPException(422, str(exc)) from None

    def across(raw: str, view: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        """A cross-venue view; a symbol no venue collects is a 404, venues quoting it in
        assets not declared equivalent a 409 (both in the Lab's words)."""
        try:
            return view()
        except ValueError as exc:
            s = normalize_symbol(raw)
            if not any(s in symbols for symbols in lab.venue_symbols.values()):
                raise HTTPException(404, f"unknown symbol {raw!r}: {exc}") from None
            raise HTTPException(409, str(exc)) from None

    symbol_path = Path(pattern=SYMBOL_PATTERN, description="e.g. BTCUSDT (or btcusdt, BTC-USDT)")
    venues = ", ".join(lab.exchanges)
    exchange_query = Query(
        pattern=EXCHANGE_PATTERN,
        description=f"The venue: one of {venues} (default {lab.exchange})",
    )
    all_venues_query = Query(
        pattern=EXCHANGE_PATTERN,
        description=f"Only this venue: one of {venues} (default every venue)",
    )
    equivalents_query = Query(
        pattern=QUOTE_EQUIVALENTS_PATTERN,
        description="Quote assets taken as the same, QUOTE:AS pairs comma-separated "
        "(USD:USDT: a venue's BTCUSD is compared with BTCUSDT; an asset named twice is taken "
        "as the later pair says); default the Lab's own "
        f"({_pairs(lab.quote_equivalents) or 'none'})",
    )

    async def prices(
        symbols: Annotated[
            str | None,
            Query(
                pattern=symbols_pattern(max_symbols),
                description=f"Comma-separated, at most {max_symbols}, e.g. BTCUSDT,ETHUSDT; "
                "default all",
            ),
        ] = None,
        exchange: Annotated[str | None, all_venues_query] = None,
    ) -> Response:
        venue = venue_of(exchange) if exchange is not None else None
        if symbols is None:
            answer = price_rows(None, venue)
        elif venue is not None:
            answer = price_rows(
                list(dict.fromkeys(symbol_of(s, venue) for s in symbols.split(","))), venue
            )
        else:
            answer = price_rows(
                list(dict.fromkeys(any_symbol_of(s) for s in symbols.split(","))), None
            )
        return json_answer(answer)

    # Asked for many times a second: served by a QueryRoute, and declared on the app itself
    # ahead of the routers, as /health is (an included router's routes cost more to try).
    app.router.add_api_route(
        PREFIX + "/prices",
        prices,
        methods=["GET"],
        response_model=models.Prices,
        summary="Latest prices",
        responses=errors(404, 422),
        route_class_override=QueryRoute,
    )

    @router.get(
        "/depth/{symbol}",
        response_model=models.Depth,
        summary="Order book",
        responses=errors(404, 422),
    )
    def depth(
        symbol: Annotated[str, symbol_path],
        limit: Annotated[int, Query(ge=1, le=1000, description="Levels per side")] = 20,
        exchange: Annotated[str | None, exchange_query] = None,
    ) -> models.Depth:
        venue = venue_of(exchange)
        return depth_of(symbol_of(symbol, venue), limit, venue)

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
        exchange: Annotated[str | None, exchange_query] = None,
    ) -> models.Klines:
        venue = venue_of(exchange)
        s = symbol_of(symbol, venue)
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
                    symbol=s, exchange=venue, interval=iv, source="history", klines=[]
                )  # empty span
            df = lab.history.klines(s, iv, since, until, exchange=venue)
            return models.Klines(
                symbol=s,
                exchange=venue,
                interval=iv,
                source="history",
                klines=candles(df.tail(limit)),
            )
        if iv not in lab.intervals:
            raise HTTPException(
                404, f"interval {iv} is not collected (intervals: {', '.join(lab.intervals)})"
            )
        frame = lab.klines(s, iv, exchange=venue).tail(limit)
        return models.Klines(
            symbol=s, exchange=venue, interval=iv, source="live", klines=candles(frame)
        )

    def symbol_rows(venue: str, rows: list[dict[str, Any]]) -> list[models.SymbolSummary]:
        """``/summary``'s rows of one venue, from the Lab's price rows."""
        latest = {r["symbol"]: r for r in rows if r["exchange"] == venue}
        out = []
        for s in lab.symbols_of(venue):
            p = latest.get(s)
            top = depth_of(s, 1, venue)
            d = top if top.synced else None
            out.append(
                models.SymbolSummary(
                    symbol=s,
                    last=json_cell(p["last"]) if p is not None else None,
                    change_pct=json_cell(p["change_pct"]) if p is not None else None,
                    volume=json_cell(p["volume"]) if p is not None else None,
                    spread=d.spread if d else None,
                    spread_bps=(1e4 * d.spread / d.mid)
                    if d and d.spread is not None and d.mid
                    else None,
                    book_synced=d is not None,
                    age_s=json_cell(p["age_s"]) if p is not None else None,
                    source=cast("str | None", p["source"]) if p is not None else None,
                )
            )
        return out

    def per_venue(info: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
        """Each venue's own summary from the Lab's (a one-venue Lab's is its venue's)."""
        venues = info.get("venues")
        return dict(venues) if isinstance(venues, Mapping) else {lab.exchange: info}

    def summary_of(exchange: str | None) -> models.Summary:
        venue = venue_of(exchange)
        info = per_venue(lab.summary())
        rows = lab.price_rows()

        def part(v: str) -> models.VenueSummary:
            mine = info.get(v, {})
            return models.VenueSummary(
                running=bool(mine.get("running", False)),
                source=mine.get("source"),
                symbols=symbol_rows(v, rows),
            )

        top = part(venue)
        several = exchange is None and len(lab.exchanges) > 1
        return models.Summary(
            running=lab.running if exchange is None else top.running,
            source=top.source,
            exchange=venue,
            exchanges=list(lab.exchanges),
            symbols=top.symbols,
            venues={v: top if v == venue else part(v) for v in lab.exchanges} if several else None,
        )

    @router.get(
        "/summary",
        response_model=models.Summary,
        summary="Market overview",
        responses=errors(404, 422),
    )
    def summary(exchange: Annotated[str | None, all_venues_query] = None) -> models.Summary:
        return summary_of(exchange)

    @router.get(
        "/all",
        response_model=models.All,
        summary="Everything at once",
        responses=errors(404, 422),
    )
    def everything(exchange: Annotated[str | None, all_venues_query] = None) -> models.All:
        venue = venue_of(exchange)
        last: dict[str, dict[str, models.Candle | None]] = {}
        for s in lab.symbols_of(venue):
            last[s] = {}
            for iv in lab.intervals:
                df = lab.klines(s, iv, exchange=venue)
                last[s][str(iv)] = candles(df.tail(1))[0] if len(df) else None
        return models.All(
            summary=summary_of(exchange),
            prices=price_rows(None, venue if exchange is not None else None),
            depth={
                s: d if (d := depth_of(s, 5, venue)).synced else None for s in lab.symbols_of(venue)
            },
            klines=last,
        )

    @router.get(
        "/status",
        response_model=models.Status,
        summary="Collector status",
        responses=errors(404, 422),
    )
    def status(exchange: Annotated[str | None, all_venues_query] = None) -> models.Status:
        venue = venue_of(exchange)
        st = lab.status()
        info = st.attrs
        venues_info = per_venue(cast("dict[str, Any]", info))
        several = len(lab.exchanges) > 1
        streams = []
        for key, row in st.iterrows():
            if several:  # the (exchange, symbol, stream) index
                ex, sym, stream = cast("tuple[str, str, str]", key)
            else:  # the (symbol, stream) index
                ex, (sym, stream) = lab.exchange, cast("tuple[str, str]", key)
            if exchange is not None and ex != venue:
                continue
            fields = {str(k): json_cell(v) for k, v in row.items()}
            streams.append(models.StreamStatus(exchange=ex, symbol=sym, stream=stream, **fields))

        def part(v: str) -> models.VenueStatus:
            mine = venues_info.get(v, {})
            return models.VenueStatus(
                running=bool(mine.get("running", False)),
                source=mine.get("source"),
                symbols=lab.symbols_of(v),
                reconnects=mine.get("reconnects", 0),
                bad_frames=mine.get("bad_frames", 0),
                error=mine.get("error"),
                bus=mine.get("bus"),
            )

        top = part(venue)
        return models.Status(
            running=lab.running if exchange is None else top.running,
            source=top.source,
            exchange=venue,
            exchanges=list(lab.exchanges),
            symbols=top.symbols,
            intervals=[str(i) for i in lab.intervals],
            reconnects=top.reconnects,
            bad_frames=top.bad_frames,
            websocket_clients=len(hub.clients),
            streams=streams,
            error=top.error,
            store=info.get("store"),
            bus=top.bus,
            venues={v: part(v) for v in lab.exchanges} if several and exchange is None else None,
        )

    @router.get(
        "/bbo/{symbol}",
        response_model=models.BBO,
        summary="Best bid and ask across venues",
        responses=errors(404, 409, 422),
    )
    def bbo(
        symbol: Annotated[str, symbol_path],
        quote_equivalents: Annotated[str | None, equivalents_query] = None,
    ) -> models.BBO:
        s = normalize_symbol(symbol)
        equivalents = equivalents_of(quote_equivalents)
        df = across(symbol, lambda: lab.bbo(s, equivalents))
        best = df.attrs["bbo"]
        scalars = (
            "best_bid",
            "best_bid_venue",
            "bid_qty",
            "best_ask",
            "best_ask_venue",
            "ask_qty",
            "mid",
            "spread",
            "spread_bps",
        )
        return models.BBO(
            symbol=s,
            **{k: json_cell(best[k]) for k in scalars},
            state=best["state"],
            venues=list(best["venues"]),
            excluded=dict(best["excluded"]),
            symbols=dict(df.attrs["symbols"]),
            quotes=dict(df.attrs["quotes"]),
            per_venue=[
                models.VenueTop(**{str(k): json_cell(v) for k, v in r.items()})
                for r in df.reset_index().to_dict("records")
            ],
        )

    @router.get(
        "/consolidated_book/{symbol}",
        response_model=models.ConsolidatedBook,
        summary="Every venue's book merged",
        responses=errors(404, 409, 422),
    )
    def consolidated_book(
        symbol: Annotated[str, symbol_path],
        depth: Annotated[int, Query(ge=1, le=1000, description="Levels per side")] = 20,
        quote_equivalents: Annotated[str | None, equivalents_query] = None,
    ) -> models.ConsolidatedBook:
        s = normalize_symbol(symbol)
        equivalents = equivalents_of(quote_equivalents)
        df = across(symbol, lambda: lab.consolidated_book(s, depth, equivalents))
        sides: dict[str, list[models.BookLevel]] = {"bid": [], "ask": []}
        for r in df.to_dict("records"):
            sides[str(r["side"])].append(
                models.BookLevel(
                    price=r["price"], qty=r["qty"], exchange=r["exchange"], cum_qty=r["cum_qty"]
                )
            )
        return models.ConsolidatedBook(
            symbol=s,
            depth=depth,
            bids=sides["bid"],
            asks=sides["ask"],
            venues=list(df.attrs["venues"]),
            excluded=dict(df.attrs["excluded"]),
            crossed=bool(df.attrs["crossed"]),
            symbols=dict(df.attrs["symbols"]),
            quotes=dict(df.attrs["quotes"]),
        )

    @router.get(
        "/divergence",
        response_model=models.Divergence,
        summary="Each venue's mid against the venues' median",
        responses=errors(409, 422),
    )
    def divergence(
        quote_equivalents: Annotated[str | None, equivalents_query] = None,
    ) -> models.Divergence:
        equivalents = equivalents_of(quote_equivalents)
        try:
            df = lab.divergence(equivalents)
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from None
        return models.Divergence(
            rows=[
                models.DivergenceRow(**{str(k): json_cell(v) for k, v in r.items()})
                for r in df.reset_index().to_dict("records")
            ],
            markets={s: dict(m) for s, m in df.attrs["markets"].items()},
            quotes={s: dict(q) for s, q in df.attrs["quotes"].items()},
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

    @router.get("/alerts", summary="Active alerts, then recently resolved ones (Lab alerts=)")
    def alerts() -> list[dict[str, Any]]:
        watch = lab.watch
        return watch.rows() if isinstance(watch, Watch) else []

    @router.websocket("/ws")
    async def websocket(ws: WebSocket) -> None:
        await hub.serve(ws)

    app.include_router(router)
    app.include_router(perpetual_router(lab, PREFIX))
    shortcut_websocket(app, f"{PREFIX}/ws", hub.serve)

    registry = lab_registry(lab)

    # Prometheus' text format, for a scraper: not part of the JSON API's schema
    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(exposition(registry), media_type=CONTENT_TYPE_LATEST)

    openapi = app.openapi

    def documented() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = patch_openapi(openapi())
            # /health, declared first to be matched first, is listed after the market data
            spec["paths"]["/health"] = spec["paths"].pop("/health")
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = documented  # type: ignore[method-assign]  # FastAPI's way to patch the schema
    return app


def _alerts_to_clients(lab: Lab, hub: Hub, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
    """Every alert the Lab raises or resolves (``alerts=``) to every WebSocket client, as
    ``{"type": "alert", ...}``; returns what stops it."""
    if not isinstance(lab.watch, Watch):
        return lambda: None

    def send(alert: Mapping[str, Any]) -> None:
        message = {"type": "alert", **alert}
        for client in list(hub.clients):
            client.reply(message)

    def on_alert(alert: Mapping[str, Any]) -> None:  # on the rules' thread
        loop.call_soon_threadsafe(send, alert)

    return lab.on_alert(on_alert)


def _pairs(equivalents: Mapping[str, str]) -> str:
    """``{"USD": "USDT"}`` as the query parameter says it: ``USD:USDT``."""
    return ",".join(f"{k}:{v}" for k, v in equivalents.items())
