"""The public data archive of the simulated Binance, served from the simulator's own history:
the same trades and candles its REST API gives, as ``data.binance.vision`` lays them out.

Under ``<rest_url>/archive`` (the archive base a client is given): the bucket's listing
(``/archive/?prefix=…&marker=…&max-keys=…&delimiter=/``, S3 ``ListBucketResult`` XML, 1000
keys a page), and zips under
``/archive/data/{spot|futures/um}/{daily|monthly}/{klines/<S>/<iv>|trades/<S>|aggTrades/<S>}/``,
each with its ``.CHECKSUM`` (``sha256  name``). A day's files appear once the day is over, a
month's once the month is; spot times are in microseconds from 2025-01-01 on, as the real
archive's are. USDⓈ-M files (the perpetuals' market, as ``/fapi/v1`` serves it) carry a header
row and no best-match column, times in milliseconds, as binance/binance-public-data's futures
files do. Every simulated taker fills at one price, so each trade is one aggregate trade (its
agg id is its trade id). Trades are served only while the simulator still keeps them.

The archive's known traps are faults (``sim.inject("archive_<trap>", arg)``): ``corrupt`` a
file (its name, in either market, or its key; bytes differ from its checksum), ``missing`` a
day (its daily files gone, its rows gone from the month's), ``hole`` in a day's trade ids
(``2024-12-31`` or ``2024-12-31:5``: that many trades left out mid-day), ``short`` a day (its
files end at noon), ``unpublished`` from a day on (the archive lags behind), ``one_sided``
trades files from a day on (``2026-07-03``: USDⓈ-M's; ``2026-07-03:spot``: spot's): every
row's is_buyer_maker ``true``, in the daily files of those days and in those days' rows of the
months, while the aggTrades files keep the right sides, as the archive's USDⓈ-M and COIN-M
trades files were from July 2026 (binance/binance-public-data #476, #492). ``clear`` lifts them all.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape

from aiohttp import web

from marketlab.records import INTERVAL_NAMES, Interval
from marketlab.sim.binance.rest import Formatter, kline_row
from marketlab.sim.host import FaceHost
from marketlab.sim.market import TRADE_HISTORY, VenueMarket

DAY_MS = 86_400_000
MICROS_FROM = "2025-01-01"  # spot files of this day on give times in microseconds
PAGE = 1000
_ZIP_TIME = (2020, 1, 1, 0, 0, 0)  # fixed, so a file's bytes (and checksum) never change
# the USDⓈ-M files' header rows (binance-public-data #283: futures CSVs have one, spot's none)
UM_HEADERS = {
    "klines": "open_time,open,high,low,close,volume,close_time,quote_volume,count,"
    "taker_buy_volume,taker_buy_quote_volume,ignore",
    "trades": "id,price,qty,quote_qty,time,is_buyer_maker",
    "aggTrades": "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,"
    "is_buyer_maker",
}
FOLDERS = {"spot": "spot", "um": "futures/um"}
TRAPS = ("corrupt", "missing", "hole", "short", "unpublished", "one_sided", "clear")
ARCHIVE_INTERVALS = tuple(iv for iv in INTERVAL_NAMES if iv != "1s")


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%d")


def _ms(day: str) -> int:
    d = datetime.strptime(day[:10] if len(day) >= 10 else day + "-01", "%Y-%m-%d")
    return int(d.replace(tzinfo=UTC).timestamp() * 1000)


def _month_end(month: str) -> int:
    y, m = int(month[:4]), int(month[5:7])
    return _ms(f"{y + 1}-01-01" if m == 12 else f"{y}-{m + 1:02d}-01")


@dataclass
class Traps:
    """The archive's faults in force."""

    corrupt: set[str] = field(default_factory=set)  # file names
    missing: set[str] = field(default_factory=set)  # days
    holes: dict[str, int] = field(default_factory=dict)  # day → trades left out
    short: set[str] = field(default_factory=set)  # days cut at noon
    unpublished_from: str = ""  # days from this on are not out yet
    one_sided_from: dict[str, str] = field(default_factory=dict)  # market → first day all sells


class ArchiveFace:
    """The archive routes of a simulated exchange (Binance's spot market)."""

    def __init__(
        self, host: FaceHost, perpetuals: Callable[[], dict[str, VenueMarket]] | None = None
    ):
        self.host = host
        self._perpetuals = perpetuals  # the USDⓈ-M markets, by their futures symbol
        self.traps = Traps()
        self.micros_from = MICROS_FROM
        self.requests = 0  # file and checksum requests served (not the listing)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/archive/", self.listing)
        app.router.add_get("/archive/data/{key:.+}", self.file)

    # --- faults ------------------------------------------------------------------------------

    def trap(self, name: str, arg: str | None) -> None:
        """Switch a trap on (see the module's docstring); ValueError for a wrong one."""
        if name not in TRAPS:
            raise ValueError(f"archive trap {name!r}: use one of {', '.join(TRAPS)}")
        if name == "clear":
            self.traps = Traps()
            return
        if not arg:
            raise ValueError(f"archive trap {name} needs an argument (a day or a file name)")
        if name == "corrupt":
            self.traps.corrupt.add(arg)
            return
        day, _, count = arg.partition(":")
        _ms(day)  # ValueError for a day that is not one
        if name == "one_sided":
            market = count or "um"
            if market not in FOLDERS:
                raise ValueError(f"archive trap one_sided: market {market!r}, use um or spot")
            self.traps.one_sided_from[market] = day
        elif name == "missing":
            self.traps.missing.add(day)
        elif name == "hole":
            self.traps.holes[day] = int(count or 3)
        elif name == "short":
            self.traps.short.add(day)
        else:
            self.traps.unpublished_from = day

    # --- what exists -------------------------------------------------------------------------

    def _markets(self, market: str = "spot") -> dict[str, VenueMarket]:
        if market == "um":
            return self._perpetuals() if self._perpetuals is not None else {}
        return self.host.markets_of("binance")

    def _published_days(self, m: VenueMarket) -> list[str]:
        """Days over (and out, unless the archive lags), from the symbol's first."""
        now = self.host.now_ms()
        days, t = [], m.genesis - m.genesis % DAY_MS
        while t + DAY_MS <= now:
            day = _day(t)
            if self.traps.unpublished_from and day >= self.traps.unpublished_from:
                break
            days.append(day)
            t += DAY_MS
        kept = m.recent_trades
        if len(kept) >= TRADE_HISTORY:  # older trades forgotten: those days cannot be served
            days = [d for d in days if _ms(d) >= kept[0].time]
        return days

    def _keys(self) -> list[str]:
        keys = []
        for market, top in FOLDERS.items():
            for symbol, m in self._markets(market).items():
                days = self._published_days(m)
                months = sorted({d[:7] for d in days if _month_end(d[:7]) <= self.host.now_ms()})
                for period, whens in (("daily", days), ("monthly", months)):
                    for when in whens:
                        if period == "daily" and when in self.traps.missing:
                            continue
                        for folder, label in self._series(symbol):
                            name = f"{symbol}-{label}-{when}.zip"
                            key = f"data/{top}/{period}/{folder}{name}"
                            keys += [key, key + ".CHECKSUM"]
        return sorted(keys)

    @staticmethod
    def _series(symbol: str) -> list[tuple[str, str]]:
        out = [(f"trades/{symbol}/", "trades"), (f"aggTrades/{symbol}/", "aggTrades")]
        for iv in ARCHIVE_INTERVALS:
            name = "1mo" if Interval(iv).calendar else iv
            out.append((f"klines/{symbol}/{name}/", name))
        return out

    # --- routes ------------------------------------------------------------------------------

    async def listing(self, request: web.Request) -> web.Response:
        q = request.query
        prefix, marker, delimiter = q.get("prefix", ""), q.get("marker", ""), q.get("delimiter", "")
        try:
            limit = max(1, min(PAGE, int(q.get("max-keys", PAGE))))
        except ValueError:
            return _s3_error(400, "InvalidArgument", "max-keys must be an integer")
        keys = [k for k in self._keys() if k.startswith(prefix) and k > marker]
        contents: list[str] = []
        prefixes: list[str] = []
        last = ""
        for k in keys:
            if len(contents) + len(prefixes) == limit:
                break
            rest = k[len(prefix) :]
            if delimiter and delimiter in rest:
                common = prefix + rest[: rest.index(delimiter) + 1]
                if prefixes and prefixes[-1] == common:
                    last = k
                    continue
                prefixes.append(common)
            else:
                contents.append(k)
            last = k
        truncated = bool(keys) and last != keys[-1]
        body = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">',
            "<Name>data.binance.vision</Name>",
            f"<Prefix>{escape(prefix)}</Prefix><Marker>{escape(marker)}</Marker>",
            f"<MaxKeys>{limit}</MaxKeys>",
            f"<Delimiter>{escape(delimiter)}</Delimiter>" if delimiter else "",
            f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>",
            f"<NextMarker>{escape(last)}</NextMarker>" if truncated and delimiter else "",
        ]
        for k in contents:
            body.append(
                f"<Contents><Key>{escape(k)}</Key><Size>0</Size>"
                "<StorageClass>STANDARD</StorageClass></Contents>"
            )
        for p in prefixes:
            body.append(f"<CommonPrefixes><Prefix>{escape(p)}</Prefix></CommonPrefixes>")
        body.append("</ListBucketResult>")
        return web.Response(body="".join(body).encode(), content_type="application/xml")

    async def file(self, request: web.Request) -> web.Response:
        key = "data/" + request.match_info["key"]
        self.requests += 1
        checksum = key.endswith(".CHECKSUM")
        zip_key = key.removesuffix(".CHECKSUM")
        if zip_key not in set(self._keys()):
            return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
        name = zip_key.rsplit("/", 1)[1]
        data = self._zip(zip_key)
        if checksum:
            return web.Response(body=f"{hashlib.sha256(data).hexdigest()}  {name}\n".encode())
        if name in self.traps.corrupt or zip_key in self.traps.corrupt:
            middle = len(data) // 2
            data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]
        return web.Response(body=data, content_type="application/zip")

    # --- the files ---------------------------------------------------------------------------

    def _zip(self, key: str) -> bytes:
        market = "um" if key.startswith("data/futures/um/") else "spot"
        _, _, period, kind, symbol, *rest = key.removeprefix("data/futures").split("/")
        name = rest[-1]
        when = name.removesuffix(".zip").rsplit("-", 3 if period == "daily" else 2)[1:]
        when_text = "-".join(when)
        start = _ms(when_text)
        end = start + DAY_MS if period == "daily" else _month_end(when_text)
        m = self._markets(market)[symbol]
        micros = market == "spot"  # USDⓈ-M files keep milliseconds
        if kind == "klines":
            iv = Interval("1M" if rest[0] == "1mo" else rest[0])
            rows = self._klines(m, iv, start, end, micros)
        else:
            sells_from = self.traps.one_sided_from.get(market, "")
            rows = self._trades(m, kind, start, end, micros, sells_from)
        lines = [UM_HEADERS[kind]] if market == "um" else []
        if market == "um" and kind != "klines":
            rows = [r[:-1] for r in rows]  # no best-match column
        text = _futures_text if market == "um" else str
        lines += [",".join(map(text, r)) for r in rows]
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
            info = zipfile.ZipInfo(name.removesuffix(".zip") + ".csv", _ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, "".join(line + "\n" for line in lines))
        return out.getvalue()

    def _dropped(self, t: int) -> bool:
        day = _day(t)
        return day in self.traps.missing or (
            day in self.traps.short and t - _ms(day) >= DAY_MS // 2
        )

    def _scale(self, t: int, micros: bool = True) -> int:
        return t * 1000 if micros and _day(t) >= self.micros_from else t

    def _klines(
        self, m: VenueMarket, iv: Interval, start: int, end: int, micros: bool
    ) -> list[list[Any]]:
        f = Formatter(m)
        rows = []
        for row in m.klines(iv, start, end - 1, limit=10**9):
            if not row[-1] or self._dropped(row[0]):
                continue
            r = kline_row(f, row)
            r[0] = self._scale(r[0], micros)
            r[6] = r[6] * 1000 + 999 if micros and _day(row[0]) >= self.micros_from else r[6]
            rows.append(r)
        return rows

    def _trades(
        self, m: VenueMarket, kind: str, start: int, end: int, micros: bool, sells_from: str = ""
    ) -> list[list[Any]]:
        """A span's trades (or aggTrades) as rows; with ``sells_from`` (a day) the trades of
        that day on say the buyer was the maker whatever the taker did, the aggTrades not."""
        f = Formatter(m)
        trades = [t for t in m.recent_trades if start <= t.time < end and not self._dropped(t.time)]
        for day, count in self.traps.holes.items():
            of_day = [t for t in trades if _day(t.time) == day]
            if len(of_day) > count:
                mid = len(of_day) // 2
                gone = {t.trade_id for t in of_day[mid : mid + count]}
                trades = [t for t in trades if t.trade_id not in gone]
        if kind == "trades":
            return [
                [
                    t.trade_id,
                    f.p(t.price),
                    f.q(t.qty),
                    f.quote(t.price * t.qty),
                    self._scale(t.time, micros),
                    t.buyer_is_maker or bool(sells_from and _day(t.time) >= sells_from),
                    True,
                ]
                for t in trades
            ]
        return [
            [
                t.trade_id,
                f.p(t.price),
                f.q(t.qty),
                t.trade_id,
                t.trade_id,
                self._scale(t.time, micros),
                t.buyer_is_maker,
                True,
            ]
            for t in trades
        ]


def _futures_text(value: Any) -> str:
    """A field as the futures files write it (their booleans in lower case: ``true``)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _s3_error(status: int, code: str, message: str) -> web.Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Error><Code>{code}</Code><Message>{escape(message)}</Message></Error>"
    )
    return web.Response(status=status, body=body.encode(), content_type="application/xml")
