"""What a market's number may be: the rules every venue's wire schemas are typed with, so a
number is checked once, where it enters (msgspec checks them while it decodes), and a bad one
makes its frame a bad frame before anything is touched; the bus's messages keep the same rules.

A price or quantity that is NaN, infinite or negative would move the wrong level of a book (NaN
equals no key) or poison every sum after it; an id past int64 cannot be stored and silences its
stream (every later id looks older); a time decades away from now is no venue's clock. The
compiled frame reader (``csrc/binance.c``) keeps the same rules: it reads only
what passes them and leaves the rest to the careful path, which names what is wrong.

The bounds are constants, not readings of the clock: the decoders stay pure functions of their
bytes.
"""

from __future__ import annotations

import re
import sys
from typing import Annotated

import msgspec

INT64_MAX = 2**63 - 1
FLOAT_MAX = sys.float_info.max  # the largest finite double: le=FLOAT_MAX refuses inf
# Times in ms since the epoch: 2010-01-01 to 2100-01-01 UTC (no venue traded before; a time
# past 2100 is a unit mistake or damage).
TIME_MIN_MS = 1_262_304_000_000
TIME_MAX_MS = 4_102_444_800_000

# A quantity, a volume, a quoted price that may be absent (a ticker's bid of no bids is 0):
# finite and not negative (-0.0 is 0).
Amount = Annotated[float, msgspec.Meta(ge=0.0, le=FLOAT_MAX)]
# The price of a trade or of a book level: finite and above 0 (what the bus takes, too).
Price = Annotated[float, msgspec.Meta(gt=0.0, le=FLOAT_MAX)]
# A change (24h price change, its percent): finite, either sign.
Change = Annotated[float, msgspec.Meta(ge=-FLOAT_MAX, le=FLOAT_MAX)]
# An id, a sequence number or a count: an int64 that is not negative.
Id = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]
# An id where the venue writes -1 for "none" (a ticker's first and last trade of no trades,
# OKX's seqId of a REST book).
IdOrNone = Annotated[int, msgspec.Meta(ge=-1, le=INT64_MAX)]
# A time in ms since the epoch, within the venues' years.
TimeMs = Annotated[int, msgspec.Meta(ge=TIME_MIN_MS, le=TIME_MAX_MS)]
# A book level: (price, quantity; 0 removes the level).
Level = tuple[Price, Amount]

# What msgspec's decoders raise on bytes that are not what they were asked for: DecodeError
# (ValidationError is one) and RecursionError, which they raise on arrays or objects nested
# deeper than the interpreter's recursion limit (about a thousand levels), even inside a field
# they skip or in a document never closed. Every reader of outside bytes catches both.
DECODE_ERRORS = (msgspec.DecodeError, RecursionError)


# A number given as text, as JSON writes one (Python's float() also takes "1_000", " 1 ",
# "inf" and other scripts' digits: msgspec, which reads every other number, takes none)
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def _number(text: str, what: str) -> float:
    if not isinstance(text, str) or _NUMBER.fullmatch(text) is None:
        raise ValueError(f"{what} {text!r} is not a number")
    return float(text)


def amount(text: str, what: str) -> float:
    """A quantity given as text (OKX's levels), by the rules of :data:`Amount`; ``ValueError``
    naming ``what`` when it breaks them."""
    value = _number(text, what)
    if not 0.0 <= value <= FLOAT_MAX:  # NaN fails both
        raise ValueError(f"{what} {text!r} is not a finite amount >= 0")
    return value


def price(text: str, what: str) -> float:
    """A price given as text (OKX's levels), by the rules of :data:`Price`; ``ValueError``
    naming ``what`` when it breaks them."""
    value = _number(text, what)
    if not 0.0 < value <= FLOAT_MAX:  # NaN fails both
        raise ValueError(f"{what} {text!r} is not a finite price > 0")
    return value
