"""Coinbase's RFC 3339 times: the fast reading of the shape Coinbase sends gives exactly what
the general parser gives, the same ms or the same error, for every time and near-time."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from marketlab.venues.coinbase import frames


def _answer(fn: object, text: object) -> tuple[str, object]:
    """What ``fn`` says of ``text``: its ms, or its error's type and message."""
    try:
        return ("ms", fn(text, "trade time"))  # type: ignore[operator]
    except ValueError as exc:
        return ("error", str(exc))


def _same(text: object) -> None:
    """Asked twice (the second time its minute is known), as the general parser answers."""
    want = _answer(frames.rfc3339_general, text)
    assert _answer(frames.rfc3339_ms, text) == want
    assert _answer(frames.rfc3339_ms, text) == want


_DATES = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59))
_FRACTIONS = st.one_of(st.just(""), st.text("0123456789", min_size=1, max_size=11))


@st.composite
def _times(draw: st.DrawFn) -> str:
    """Coinbase's shape (``YYYY-MM-DDTHH:MM:SS[.frac]Z``), sometimes with one thing changed."""
    when = draw(_DATES)
    frac = draw(_FRACTIONS)
    text = when.strftime("%Y-%m-%dT%H:%M:%S").rjust(19, "0") + ("." + frac if frac else "")
    text += draw(st.sampled_from(["Z", "z", "+01:00", "-00:30", "", "ZZ"]))
    if draw(st.booleans()):
        i = draw(st.integers(0, len(text) - 1))
        text = text[:i] + draw(st.sampled_from("0912:.-TtZ ٣²x")) + text[i + 1 :]
    return text


@settings(max_examples=2000)
@given(_times())
@example("2023-02-09T20:32:50.714964855Z")
@example("2023-02-09T20:32:50Z")
@example("2023-02-09T20:32:50.7Z")
@example("2023-02-09T20:32:50.71Z")
@example("2023-02-09T20:32:50.Z")
@example("2023-02-09T20:32:50.1234567890Z")
@example("2023-02-09T20:32:60Z")
@example("2023-02-30T20:32:50Z")
@example("1970-01-01T00:00:00Z")
@example("2099-12-31T23:59:59.999Z")
@example("2100-01-01T00:00:00.000Z")
@example("2023-02-09T20:32:50.٣Z")
@example("٢023-02-09T20:32:50.5Z")
@example("2023-02-09 20:32:50.5z")
@example("2023-02-09T20:32:59.999999999Z")
@example("2023-02-09T20:32:5xZ")
@example("2023-02-09T20:32:-1Z")
@example("2023-02-09T20:32:00+00:00")
@example("2023-02-09T20:32:7.5Z")
@example("2023-02-09T20:32:50.123²Z")
@example("2023-02-09T20:32:50.12٣Z")
@example("2023-02-09T20:32:50.123٣Z")
@example("2023-02-09T20:32:50.1234Z")
def test_the_fast_reading_answers_as_the_general_parser(text: str) -> None:
    _same(text)


@given(st.text(max_size=32))
def test_any_text_is_answered_as_the_general_parser(text: str) -> None:
    _same(text)


@pytest.mark.parametrize("value", [None, 1675974770, b"2023-02-09T20:32:50Z", ""])
def test_what_is_no_text_is_refused_as_before(value: object) -> None:
    _same(value)


def test_a_known_minute_then_a_time_past_the_venues_years_is_still_refused() -> None:
    # the minute is known, the rest read fast: still checked against the years
    assert frames.rfc3339_ms("2099-12-31T23:59:59Z") == int(
        datetime(2099, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp() * 1000
    )
    _same("2099-12-31T23:59:59.999999Z")


def test_the_minutes_known_are_bounded() -> None:
    for i in range(frames._MINUTES_KEPT + 10):
        frames.rfc3339_ms(f"2024-01-{1 + i // 1440:02d}T{i // 60 % 24:02d}:{i % 60:02d}:00Z")
    assert len(frames._MINUTES) <= frames._MINUTES_KEPT
