"""What the API accepts, said once: the patterns and ranges that go into the OpenAPI document
are the ones the server enforces, so a request the schema allows is served and one it forbids
is refused (422, ``{"detail": "..."}``) — as client generators and API testers expect."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from marketlab.records import INTERVAL_NAMES

# A symbol as a path or list item: BTCUSDT, btcusdt, or with one separator (BTC-USDT, btc_usdt),
# and a perpetual's name, the pair's with -PERP (BTCUSDT-PERP, 1000PEPEUSDT-perp). Each allowed
# form names a pair of two characters at least: X-PERP (a one-letter "pair") is left out. The
# pattern is a plain regular expression (no look-around), as JSON Schema tools and pydantic's
# regex engine take it.
_ALNUM = "[A-Za-z0-9]"


def _either_case(char: str) -> str:
    return f"[{char.upper()}{char.lower()}]"


def _any_but(word: str) -> str:
    """Every run of ``len(word)`` letters or digits other than ``word`` in any case."""
    alternatives = []
    for i, char in enumerate(word):
        same = "".join(_either_case(c) for c in word[:i])
        others = "".join(
            f"{a}-{b}" if a != b else a
            for a, b in _ranges_without(char.upper()) + _ranges_without(char.lower())
        )
        rest = len(word) - i - 1
        alternatives.append(f"{same}[{others}0-9]" + (f"{_ALNUM}{{{rest}}}" if rest else ""))
    return "(?:" + "|".join(alternatives) + ")"


def _ranges_without(char: str) -> list[tuple[str, str]]:
    """The letters of ``char``'s case as ranges leaving ``char`` out."""
    first, last = ("A", "Z") if char.isupper() else ("a", "z")
    ranges = []
    if char > first:
        ranges.append((first, chr(ord(char) - 1)))
    if char < last:
        ranges.append((chr(ord(char) + 1), last))
    return ranges


_PERP = "-" + "".join(_either_case(c) for c in "perp")
_PAIR = (
    f"(?:{_ALNUM}{{2,20}}"
    f"|{_ALNUM}{{2,10}}[-_]{_ALNUM}{{1,10}}"
    f"|{_ALNUM}_{_ALNUM}{{1,10}}"
    f"|{_ALNUM}-(?:{_ALNUM}{{1,3}}|{_ALNUM}{{5,10}}|{_any_but('perp')}))"
)
SYMBOL = f"{_PAIR}(?:{_PERP})?"
SYMBOL_PATTERN = f"^{SYMBOL}$"
INTERVALS = tuple(INTERVAL_NAMES)
# A venue's name (binance, okx, ...): which venues a server collects is said by its 404.
EXCHANGE_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,31}$"
# Quote assets taken as the same: QUOTE:AS pairs, comma-separated (USD:USDT,USDC:USDT).
_ASSET = r"[A-Za-z0-9]{1,20}"
MAX_EQUIVALENTS = 20
QUOTE_EQUIVALENTS_PATTERN = f"^{_ASSET}:{_ASSET}(?:,{_ASSET}:{_ASSET}){{0,{MAX_EQUIVALENTS - 1}}}$"
MAX_EPOCH_MS = 4_102_444_800_000  # 2100-01-01: a time query beyond it is a mistake


def symbols_pattern(max_symbols: int) -> str:
    """Comma-separated symbols, at most ``max_symbols`` of them."""
    return f"^{SYMBOL}(?:,{SYMBOL}){{0,{max_symbols - 1}}}$"


TIME_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "integer", "minimum": 0, "maximum": MAX_EPOCH_MS, "description": "epoch ms"},
        {
            "type": "string",
            "format": "date-time",
            "description": "RFC 3339, e.g. 2026-01-01T00:00:00Z",
        },
        {"type": "string", "format": "date", "description": "a UTC day, e.g. 2026-01-01"},
    ],
    "description": "Epoch milliseconds, an RFC 3339 date-time or a date (UTC)",
}

_DATE_TIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


class BadParameter(ValueError):
    """A query parameter the schema forbids (answered 422)."""


def parse_quote_equivalents(value: str | None) -> dict[str, str] | None:
    """``"USD:USDT,USDC:USDT"`` → ``{"USD": "USDT", "USDC": "USDT"}`` (None: the Lab's own).
    What the schema's pattern allows is served: an asset named twice is taken as the later
    pair says, one taken as itself changes nothing. Else :class:`BadParameter`."""
    if value is None:
        return None
    out: dict[str, str] = {}
    for pair in value.split(","):
        asset, _, taken_as = pair.partition(":")
        asset, taken_as = asset.strip().upper(), taken_as.strip().upper()
        if not asset.isalnum() or not taken_as.isalnum():
            raise BadParameter(_MESSAGES["quote_equivalents"].format(input=value))
        out[asset] = taken_as
    return out


def parse_time(name: str, value: str | None) -> int | None:
    """Epoch ms from what :data:`TIME_SCHEMA` allows, else :class:`BadParameter`."""
    if value is None:
        return None
    if value.isascii() and value.isdigit():
        ms = int(value)
        if ms > MAX_EPOCH_MS:
            raise BadParameter(
                f"{name}: epoch milliseconds must be at most {MAX_EPOCH_MS}, got {value}"
            )
        return ms
    try:
        if _DATE.match(value):
            return int(
                datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC).timestamp()
                * 1000
            )
        m = _DATE_TIME.match(value)
        if m:
            text = value.upper().replace("Z", "+00:00")
            if m.group(6) == "60":  # a leap second: RFC 3339 allows it, Python does not
                text = text[:17] + "59" + text[19:]
            return int(datetime.fromisoformat(text).timestamp() * 1000)
    except ValueError:
        pass
    raise BadParameter(
        f"{name}: expected epoch milliseconds, an RFC 3339 date-time (2026-01-01T00:00:00Z) or a "
        f"date (2026-01-01), got {value!r}"
    )


_MESSAGES = {
    "symbol": "invalid symbol {input!r}: expected 2-20 letters or digits such as 'BTCUSDT'",
    "symbols": "symbols: expected comma-separated symbols such as BTCUSDT,ETHUSDT, got {input!r}",
    "interval": f"invalid interval {{input!r}}: expected one of {', '.join(INTERVALS)}",
    "exchange": "invalid exchange {input!r}: expected a venue's name such as binance or okx",
    "quote_equivalents": "quote_equivalents: expected QUOTE:AS pairs, comma-separated, such as "
    "USD:USDT or USD:USDT,USDC:USDT, got {input!r}",
}


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    """Every refusal in one shape, ``{"detail": "<what and why>"}``, like the other errors."""
    assert isinstance(exc, RequestValidationError)
    parts = []
    for err in exc.errors():
        name = str(err["loc"][-1]) if err.get("loc") else "request"
        value = err.get("input")
        template = _MESSAGES.get(name)
        if template is not None and isinstance(value, str):
            parts.append(template.format(input=value))
        else:
            parts.append(f"{name}: {err.get('msg', 'invalid')}, got {value!r}")
    return JSONResponse({"detail": "; ".join(parts)}, status_code=422)


def patch_openapi(spec: dict[str, Any]) -> dict[str, Any]:
    """Describe the time parameters as they are accepted (they arrive as text)."""
    for path in spec.get("paths", {}).values():
        for operation in path.values():
            for param in operation.get("parameters", []):
                if param.get("name") in ("start", "end") and param.get("in") == "query":
                    param["schema"] = TIME_SCHEMA
    return spec
