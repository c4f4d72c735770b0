"""One market's names across venues: which symbol each venue lists for it, and in which quote
asset. Quote assets are never mixed silently: venues quoting in different assets are taken as
the same market only when ``quote_equivalents`` says so (``{"USD": "USDT"}``: USD taken as
USDT), and :func:`comparable_quotes` says which quote each venue stands for. Used by the Lab's
cross-venue views and by ``History.compare``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from marketlab.records import is_perpetual, normalize_symbol, split_symbol


def _equivalents(quote_equivalents: Mapping[str, str] | None) -> dict[str, str]:
    """``{"usd": "usdt"}`` → ``{"USD": "USDT"}`` (keys and values are case-insensitive)."""
    if quote_equivalents is None:
        return {}
    if not isinstance(quote_equivalents, Mapping):
        raise ValueError(
            "quote_equivalents must be a mapping such as {'USD': 'USDT'}, got "
            f"{type(quote_equivalents).__name__}: {quote_equivalents!r}"
        )
    out = {}
    for k, v in quote_equivalents.items():
        if not isinstance(k, str) or not isinstance(v, str) or not k.strip() or not v.strip():
            raise ValueError(
                f"quote_equivalents holds asset names, e.g. {{'USD': 'USDT'}}; got {k!r}: {v!r}"
            )
        out[k.strip().upper()] = v.strip().upper()
    return out


def comparable_quotes(
    symbols: Mapping[str, str], quote_equivalents: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Each venue's quote asset as compared: ``"USDT"``, or ``"USD as USDT"`` where an
    equivalent is taken as what it stands for. ValueError when two venues' quotes differ and
    nothing says they are the same."""
    taken = _equivalents(quote_equivalents)
    quotes = {venue: split_symbol(market)[1] for venue, market in symbols.items()}
    as_compared = {venue: taken.get(q, q) for venue, q in quotes.items()}
    if len(set(as_compared.values())) > 1:
        shown = ", ".join(f"{symbols[v]} on {v} ({q})" for v, q in quotes.items())
        raise ValueError(
            f"the venues quote in different assets: {shown}; compare them only if they are "
            "equivalent to you, e.g. quote_equivalents={'USD': 'USDT'}"
        )
    return {
        venue: f"{q} as {as_compared[venue]}" if q != as_compared[venue] else q
        for venue, q in quotes.items()
    }


def quotes_used(
    markets: Mapping[str, str], quote_equivalents: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Per venue, the quote its market is compared in (``"USDT"`` or ``"USD as USDT"``), so a
    view built from several venues says which quotes it put side by side."""
    return comparable_quotes(markets, quote_equivalents)


def _split(symbol: str) -> tuple[str, str] | None:
    try:
        return split_symbol(symbol)
    except ValueError:
        return None


def match_markets(
    symbol: str,
    venue_symbols: Mapping[str, Sequence[str]],
    quote_equivalents: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """For each venue (in order), the symbol it collects that is the same market as
    ``symbol``: the same symbol, else the same base in a quote that ``quote_equivalents`` makes
    equal (BTCUSD on a USD venue for BTCUSDT with ``{"USD": "USDT"}``, and the other way round).
    Where a venue collects several equal ones, the first it lists. Venues without it are absent.
    A perpetual swap and its spot pair are two markets: ``BTCUSDT-PERP`` matches perpetuals only,
    ``BTCUSDT`` spot symbols only.

    ValueError when no venue collects it (naming what each collects), or when a venue collects
    the same base only in a quote not declared equivalent: comparing BTCUSD with BTCUSDT is a
    choice the caller makes, never one made for them."""
    wanted = normalize_symbol(symbol)
    if not isinstance(venue_symbols, Mapping):
        raise ValueError(
            "venue_symbols maps each venue to the symbols it collects, e.g. "
            f"{{'binance': ['BTCUSDT']}}; got {type(venue_symbols).__name__}"
        )
    taken = _equivalents(quote_equivalents)
    parts = _split(wanted)
    matched: dict[str, str] = {}
    refused: list[str] = []
    collected: dict[str, list[str]] = {}
    for venue, symbols in venue_symbols.items():
        if isinstance(symbols, str) or not isinstance(symbols, Iterable):
            raise ValueError(f"venue_symbols[{venue!r}] must be a list of symbols, got {symbols!r}")
        names = [normalize_symbol(s) for s in symbols]
        collected[venue] = names
        names = [s for s in names if is_perpetual(s) == is_perpetual(wanted)]
        if wanted in names:
            matched[venue] = wanted
            continue
        if parts is None:
            continue
        base, quote = parts
        same_base = [(s, sp[1]) for s in names if (sp := _split(s)) is not None and sp[0] == base]
        equal = [s for s, q in same_base if taken.get(q, q) == taken.get(quote, quote)]
        if equal:
            matched[venue] = equal[0]
        elif same_base:
            other = same_base[0][1]
            shown = ", ".join(s for s, _ in same_base)
            refused.append(
                f"{venue} collects {shown}, not {wanted}: declare "
                f"quote_equivalents={{{other!r}: {quote!r}}} if they are the same to you "
                f"(or leave {venue} out)"
            )
    if refused:
        raise ValueError(f"{wanted} is quoted differently on some venues: " + "; ".join(refused))
    if not matched:
        shown = "; ".join(f"{v} collects {', '.join(s) or 'nothing'}" for v, s in collected.items())
        raise ValueError(f"no venue collects {wanted}: {shown or 'no venues given'}")
    return matched
