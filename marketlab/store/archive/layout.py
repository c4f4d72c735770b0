"""Where the archive keeps what: markets, kinds, periods and file names, as
binance/binance-public-data documents them, and which files a span of time needs.

``data/{spot|futures/um}/{monthly|daily}/{klines/<S>/<iv>|trades/<S>|aggTrades/<S>}/<S>-<kind>-<date>.zip``,
each with a ``.CHECKSUM`` beside it. Monthly files cover whole months, daily files single
UTC days; the calendar-month kline interval is spelled ``1mo`` (``1M`` would clash with ``1m``
on case-insensitive file systems). Pure code: no I/O, no clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from marketlab.records import Interval, perpetual_of
from marketlab.store.parts import day_of

DAY_MS = 86_400_000
MARKETS = {"spot": "spot", "um": "futures/um"}  # our name → the archive's folder
# Both markets are kept under the exchange the Lab collects them as: a USDⓈ-M perpetual is
# ``binance`` and its Lab name (``BTCUSDT-PERP``), so the archive and the collector meet.
EXCHANGE = "binance"
KINDS = ("klines", "trades", "aggTrades")
PERIODS = ("monthly", "daily")
DEFAULT_ARCHIVE_URL = "https://data.binance.vision"
# The site's own page lists files by script; the bucket behind it answers ``?prefix=`` in XML.
BUCKET_URL = "https://s3-ap-northeast-1.amazonaws.com/data.binance.vision"


class ArchiveError(Exception):
    """An archive file or answer that cannot be used; the message names it and says why."""


def archive_interval(interval: str) -> str:
    """A kline interval as the archive spells it in paths (``1M`` → ``1mo``)."""
    iv = Interval(interval)
    return "1mo" if iv.calendar else str(iv)


def interval_of(archive_name: str) -> str:
    """The archive's interval spelling as marketlab's (``1mo`` → ``1M``)."""
    return str(Interval("1M" if archive_name == "1mo" else archive_name))


@dataclass(frozen=True, order=True)
class Series:
    """One stream of files: a kind of one symbol in one market (klines of one interval)."""

    market: str
    kind: str
    symbol: str
    interval: str = ""  # marketlab's spelling ("1m", "1M"); "" for trades and aggTrades

    def __post_init__(self) -> None:
        if self.market not in MARKETS:
            raise ValueError(f"market {self.market!r} is not supported: use spot or um")
        if self.kind not in KINDS:
            raise ValueError(f"kind {self.kind!r} is not supported: use one of {', '.join(KINDS)}")
        if (self.kind == "klines") != bool(self.interval):
            raise ValueError(
                f"{self.kind} takes {'an' if self.kind == 'klines' else 'no'} interval"
            )
        if self.interval:
            Interval(self.interval)
        if not re.fullmatch(r"[A-Z0-9_]{2,40}", self.symbol):
            raise ValueError(f"symbol {self.symbol!r} is not an archive symbol (e.g. BTCUSDT)")

    @property
    def exchange(self) -> str:
        """The stores' exchange key (the Lab's: ``binance`` for spot and perpetuals alike)."""
        return EXCHANGE

    @property
    def store_symbol(self) -> str:
        """The symbol the stores keep it under, as the Lab names it: the pair for spot, the
        perpetual (``BTCUSDT-PERP``) for USDⓈ-M (the archive's files say ``BTCUSDT``)."""
        return perpetual_of(self.symbol) if self.market == "um" else self.symbol

    @property
    def label(self) -> str:
        """What the file names carry after the symbol: the interval or the kind."""
        return archive_interval(self.interval) if self.interval else self.kind

    def prefix(self, period: str) -> str:
        """The folder of this series' ``period`` files, as the listing is asked for it."""
        tail = f"{archive_interval(self.interval)}/" if self.interval else ""
        return f"data/{MARKETS[self.market]}/{period}/{self.kind}/{self.symbol}/{tail}"

    def file(self, period: str, day_or_month: str) -> ArchiveFile:
        return ArchiveFile(self, period, day_or_month)

    def __str__(self) -> str:
        return f"{self.market} {self.symbol} {self.interval or self.kind}"


def parse_kinds(text: str) -> list[tuple[str, str]]:
    """``klines:1m,klines:1h,trades,aggTrades`` → [(kind, interval)]; ValueError naming what is
    wrong."""
    out = []
    for word in (w.strip() for w in text.split(",")):
        if not word:
            continue
        kind, _, interval = word.partition(":")
        if kind not in KINDS:
            raise ValueError(f"kind {kind!r} is not supported: use one of {', '.join(KINDS)}")
        if kind == "klines":
            if not interval:
                raise ValueError("klines need an interval: klines:1m")
            interval = interval_of(interval)
        elif interval:
            raise ValueError(f"{kind} takes no interval, got {word!r}")
        out.append((kind, interval))
    if not out:
        raise ValueError("no kinds given: e.g. klines:1m,trades,aggTrades")
    return out


@dataclass(frozen=True, order=True)
class ArchiveFile:
    """One zip of the archive: a series' month (``2024-12``) or day (``2024-12-31``)."""

    series: Series
    period: str
    when: str  # YYYY-MM for monthly files, YYYY-MM-DD for daily ones

    def __post_init__(self) -> None:
        if self.period not in PERIODS:
            raise ValueError(f"period {self.period!r}: use monthly or daily")
        pattern = r"\d{4}-\d{2}" if self.period == "monthly" else r"\d{4}-\d{2}-\d{2}"
        if not re.fullmatch(pattern, self.when):
            raise ValueError(f"{self.period} file date {self.when!r} is not {pattern}")
        self.start_ms  # noqa: B018 - a date that does not exist is refused here

    @property
    def name(self) -> str:
        return f"{self.series.symbol}-{self.series.label}-{self.when}.zip"

    @property
    def key(self) -> str:
        """The file's path in the bucket (what the listing names and the URL ends in)."""
        return self.series.prefix(self.period) + self.name

    @property
    def start_ms(self) -> int:
        """The first millisecond it covers."""
        return _ms(_first_day(self.when))

    @property
    def end_ms(self) -> int:
        """The millisecond after the last it covers."""
        first = _first_day(self.when)
        if self.period == "daily":
            return _ms(first + timedelta(days=1))
        return _ms(_month_after(first))

    @property
    def days(self) -> list[str]:
        """The UTC days it covers, as ``YYYY-MM-DD``."""
        return [day_of(ms) for ms in range(self.start_ms, self.end_ms, DAY_MS)]

    def __str__(self) -> str:
        return self.name


def _first_day(when: str) -> date:
    try:
        return date.fromisoformat(when if len(when) == 10 else when + "-01")
    except ValueError:
        raise ValueError(f"{when!r} is not a date") from None


def _month_after(d: date) -> date:
    return date(d.year + 1, 1, 1) if d.month == 12 else date(d.year, d.month + 1, 1)


def _ms(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() * 1000)


_KEY = re.compile(
    r"data/(spot|futures/um)/(monthly|daily)/(klines|trades|aggTrades)/([A-Z0-9_]+)/"
    r"(?:([0-9]+[a-z]+)/)?([A-Z0-9_]+)-([0-9a-zA-Z]+)-(\d{4}-\d{2}(?:-\d{2})?)\.zip"
)


def parse_key(key: str) -> ArchiveFile | None:
    """The file a bucket key names (``.CHECKSUM`` keys and other objects: None)."""
    m = _KEY.fullmatch(key)
    if m is None:
        return None
    folder, period, kind, symbol, iv, name_symbol, label, when = m.groups()
    if name_symbol != symbol or (kind == "klines") != (iv is not None):
        return None
    try:
        interval = interval_of(iv) if iv else ""
        series = Series("spot" if folder == "spot" else "um", kind, symbol, interval)
        if label != series.label:
            return None
        return ArchiveFile(series, period, when)
    except ValueError:
        return None


def parse_when(text: str, *, end: bool = False) -> int:
    """``2024-12`` or ``2024-12-31`` → epoch ms: its first millisecond, or with ``end`` the
    millisecond after its last (an end month or day is included)."""
    text = str(text).strip()
    if not re.fullmatch(r"\d{4}-\d{2}(-\d{2})?", text):
        raise ValueError(f"{text!r} is not a month (2024-12) or a day (2024-12-31)")
    first = _first_day(text)
    if not end:
        return _ms(first)
    return _ms(first + timedelta(days=1)) if len(text) == 10 else _ms(_month_after(first))


@dataclass(frozen=True)
class Plan:
    """Which files a span needs, decided from what the listing holds."""

    files: list[ArchiveFile]  # to fetch, oldest first
    missing: list[str]  # days of the span in no listed file, inside what is published
    unpublished: list[str]  # days after the newest published one: not in the archive yet


def plan_files(series: Series, start_ms: int, end_ms: int, listed: set[str]) -> Plan:
    """Monthly files for the whole months of [start_ms, end_ms) that the listing holds, daily
    files for every other day; a day in neither is missing (inside the published span) or not
    published yet (after the newest listed day)."""
    first = _first_day(day_of(start_ms))
    days = [day_of(ms) for ms in range(_ms(first), end_ms, DAY_MS)]
    if not days:
        return Plan([], [], [])
    covered: dict[str, ArchiveFile] = {}
    months = sorted({d[:7] for d in days})
    for month in months:
        f = ArchiveFile(series, "monthly", month)
        if f.key in listed and all(d in days for d in f.days):
            for d in f.days:
                covered[d] = f
    for d in days:
        if d not in covered:
            f = ArchiveFile(series, "daily", d)
            if f.key in listed:
                covered[d] = f
    newest = max(
        (p.days[-1] for k in listed if (p := parse_key(k)) is not None and p.series == series),
        default="",
    )
    holes = [d for d in days if d not in covered]
    files = sorted(set(covered.values()), key=lambda f: (f.start_ms, f.period))
    return Plan(files, [d for d in holes if d <= newest], [d for d in holes if d > newest])
