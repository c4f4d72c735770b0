"""The perpetual swaps' routes: funding now running, open interest, liquidations and the basis
against every venue's spot mid. A spot symbol, or a perpetual no venue collects, is a 404 that
says what is collected."""

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query

from marketlab.lab import Lab
from marketlab.records import is_perpetual, normalize_symbol
from marketlab.server import models
from marketlab.server.answers import documented_errors, json_rows
from marketlab.server.params import (
    EXCHANGE_PATTERN,
    QUOTE_EQUIVALENTS_PATTERN,
    SYMBOL_PATTERN,
    BadParameter,
    parse_quote_equivalents,
)

_ERRORS = {
    404: "A spot symbol, a perpetual not collected, or an unknown exchange",
    409: "Venues quoting the market in different assets not declared equivalent",
    422: "A parameter the schema forbids",
}


def _errors(*codes: int) -> dict[int | str, Any]:
    return documented_errors(_ERRORS, *codes)


def perpetual_router(lab: Lab, prefix: str) -> APIRouter:
    """The perpetual routes over ``lab``, under ``prefix`` (the realtime API's)."""
    router = APIRouter(prefix=prefix)

    def perpetual_of(raw: str, exchange: str | None) -> tuple[str, str]:
        """``(venue, perpetual)`` for a path's symbol: the venue asked for, else the first
        that collects it; 404 for a spot symbol or one not collected, naming what is."""
        try:
            symbol = normalize_symbol(raw)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        collected = {
            v: [s for s in symbols if is_perpetual(s)] for v, symbols in lab.venue_symbols.items()
        }
        shown = "; ".join(f"{v}: {', '.join(p) or 'none'}" for v, p in collected.items())
        if not is_perpetual(symbol):
            raise HTTPException(
                404,
                f"{symbol} is a spot symbol: ask for its perpetual, {symbol}-PERP "
                f"(perpetuals collected: {shown})",
            )
        if exchange is not None:
            venue = exchange.lower()
            if venue not in collected:
                raise HTTPException(
                    404,
                    f"unknown exchange {exchange!r}: this server collects "
                    f"{', '.join(lab.exchanges)}",
                )
            if symbol in collected[venue]:
                return venue, symbol
        else:
            for venue, perps in collected.items():
                if symbol in perps:
                    return venue, symbol
        where = f" from {exchange.lower()}" if exchange is not None else ""
        raise HTTPException(
            404, f"{symbol} is not collected{where} (perpetuals collected: {shown})"
        )

    collected = [s for symbols in lab.venue_symbols.values() for s in symbols if is_perpetual(s)]
    symbol_path = Path(
        pattern=SYMBOL_PATTERN,
        description="A perpetual, e.g. BTCUSDT-PERP (or btcusdt-perp)",
        examples=list(dict.fromkeys(collected))[:3] or ["BTCUSDT-PERP"],
    )
    exchange_query = Query(
        pattern=EXCHANGE_PATTERN,
        description=f"The venue: one of {', '.join(lab.exchanges)} "
        "(default the first collecting the perpetual)",
    )
    limit_query = Query(ge=1, le=10_000, description="The newest this many, oldest first")

    @router.get(
        "/funding",
        response_model=models.Funding,
        summary="Funding rates of the perpetuals",
        responses=_errors(404, 422),
    )
    def funding(
        exchange: Annotated[
            str | None,
            Query(
                pattern=EXCHANGE_PATTERN,
                description=f"Only this venue: one of {', '.join(lab.exchanges)} "
                "(default every venue)",
            ),
        ] = None,
    ) -> models.Funding:
        if exchange is not None and exchange.lower() not in lab.exchanges:
            raise HTTPException(
                404,
                f"unknown exchange {exchange!r}: this server collects {', '.join(lab.exchanges)}",
            )
        df = lab.funding()
        rows = json_rows(df)
        if len(lab.exchanges) == 1:
            rows = [{"exchange": lab.exchange, **r} for r in rows]
        if exchange is not None:
            rows = [r for r in rows if r["exchange"] == exchange.lower()]
        return models.Funding(
            funding_hours=df.attrs["funding_hours"],
            rows=[models.FundingRow(**r) for r in rows],
        )

    @router.get(
        "/open-interest/{symbol}",
        response_model=models.OpenInterest,
        summary="Open interest of a perpetual",
        responses=_errors(404, 422),
    )
    def open_interest(
        symbol: Annotated[str, symbol_path],
        exchange: Annotated[str | None, exchange_query] = None,
        limit: Annotated[int, limit_query] = 500,
    ) -> models.OpenInterest:
        venue, perp = perpetual_of(symbol, exchange)
        df = lab.open_interest(perp, exchange=venue).tail(limit)
        return models.OpenInterest(
            symbol=perp,
            exchange=venue,
            readings=[models.OpenInterestReading(**r) for r in json_rows(df)],
        )

    @router.get(
        "/liquidations/{symbol}",
        response_model=models.Liquidations,
        summary="Liquidations of a perpetual",
        responses=_errors(404, 422),
    )
    def liquidations(
        symbol: Annotated[str, symbol_path],
        exchange: Annotated[str | None, exchange_query] = None,
        limit: Annotated[int, limit_query] = 500,
    ) -> models.Liquidations:
        venue, perp = perpetual_of(symbol, exchange)
        df = lab.liquidations(perp, exchange=venue)
        return models.Liquidations(
            symbol=perp,
            exchange=venue,
            sampled=bool(df.attrs["sampled"]),
            liquidations=[models.LiquidationRow(**r) for r in json_rows(df.tail(limit))],
        )

    @router.get(
        "/basis/{symbol}",
        response_model=models.Basis,
        summary="A perpetual against every venue's spot mid",
        responses=_errors(404, 409, 422),
    )
    def basis(
        symbol: Annotated[str, symbol_path],
        quote_equivalents: Annotated[
            str | None,
            Query(
                pattern=QUOTE_EQUIVALENTS_PATTERN,
                description="Quote assets taken as the same, QUOTE:AS pairs comma-separated "
                "(USD:USDT), as for /bbo; default the Lab's own",
            ),
        ] = None,
    ) -> models.Basis:
        _, perp = perpetual_of(symbol, None)
        try:
            equivalents = parse_quote_equivalents(quote_equivalents)
        except BadParameter as exc:
            raise HTTPException(422, str(exc)) from None
        try:
            df = lab.basis_across(perp, equivalents)
        except ValueError as exc:
            if str(exc).startswith("no venue collects"):
                raise HTTPException(
                    404, f"the spot pair of {perp} is not collected: {exc}"
                ) from None
            raise HTTPException(409, str(exc)) from None
        return models.Basis(
            symbol=perp,
            spot_symbols=df.attrs["spot_symbols"],
            median_of=df.attrs["median_of"],
            funding_hours=df.attrs["funding_hours"],
            rows=[models.BasisRow(**r) for r in json_rows(df)],
        )

    return router
