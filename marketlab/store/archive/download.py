"""The archive fetched, verified, imported, audited and filled: the asyncio layer over the pure
readers. A bounded number of files download at once, each streamed to disk with its SHA-256
worked out on the way and compared with its ``.CHECKSUM`` before anything is read; a mismatch
is fetched again, then refused by name. Imports run one at a time off the event loop. A run
stopped anywhere and started again fetches nothing already imported (the manifest beside the
database says what was). A day of trades whose sides are all one way (:mod:`.sides`) gets
each trade's side from the same day's aggTrades: the stored ones, else the archive's file."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from marketlab.store.archive.audit import Hole, kind_label, kline_holes, tick_holes
from marketlab.store.archive.fill import fill_hole
from marketlab.store.archive.imports import (
    Manifest,
    import_klines,
    import_ticks,
    stored_as,
    tick_kind,
)
from marketlab.store.archive.layout import (
    BUCKET_URL,
    EXCHANGE,
    PERIODS,
    ArchiveError,
    ArchiveFile,
    Plan,
    Series,
    plan_files,
)
from marketlab.store.archive.listing import parse_checksum, parse_listing, sha256_of
from marketlab.store.archive.reader import read_archive
from marketlab.store.archive.sides import ONE_SIDED, Aggs, rewrite_day_sides
from marketlab.store.parts import day_of, part_files
from marketlab.venues import registry
from marketlab.venues.binance.perp_rest import BinancePerpRest

log = logging.getLogger("marketlab.archive")
_CHUNK = 1 << 20


@dataclass
class Outcome:
    """What a download did: files imported (and skipped as imported before), rows written,
    and every hole and refusal, as :meth:`History.archive_report` lists them."""

    imported: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    rows: int = 0
    bytes: int = 0
    holes: list[Hole] = field(default_factory=list)

    @property
    def refused(self) -> list[Hole]:
        return [h for h in self.holes if h.what.startswith("refused")]


def listing_url(archive_url: str) -> str:
    """Where ``?prefix=`` is answered: the bucket behind ``data.binance.vision`` (its own
    page lists by script), any other base (a mirror, the simulator) itself."""
    return BUCKET_URL if urlsplit(archive_url).hostname == "data.binance.vision" else archive_url


def local_root(archive_url: str) -> Path | None:
    """The folder of a local copy of the archive (``file:///path``), else None."""
    parts = urlsplit(archive_url)
    return Path(parts.path) if parts.scheme == "file" else None


async def list_keys(
    session: aiohttp.ClientSession, archive_url: str, prefix: str
) -> dict[str, int]:
    """Every key under ``prefix`` with its size in bytes (0 where the listing does not say),
    page after page (a local copy: its folder's files)."""
    root = local_root(archive_url)
    if root is not None:
        folder = root / prefix
        if not folder.is_dir():
            return {}
        return {prefix + p.name: p.stat().st_size for p in folder.iterdir() if p.is_file()}
    keys: dict[str, int] = {}
    marker: str | None = ""
    base = listing_url(archive_url).rstrip("/")
    while marker is not None:
        params = {"prefix": prefix, "delimiter": "/", "marker": marker}
        async with session.get(f"{base}/", params=params) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise ArchiveError(f"listing {prefix}: HTTP {resp.status}")
        page = parse_listing(body, f"listing {prefix}")
        keys.update(zip(page.keys, page.sizes, strict=True))
        if page.next_marker is not None and page.next_marker <= (marker or ""):
            raise ArchiveError(f"listing {prefix}: the next page does not move on")
        marker = page.next_marker
    return keys


class Downloader:
    """One download run over some series and a span (see :func:`run_download`)."""

    def __init__(
        self,
        db: Path,
        ticks: Path,
        archive_url: str,
        *,
        parallel: int = 4,
        retries: int = 2,
        progress: bool = False,
        work_dir: Path | None = None,
    ):
        self.db, self.ticks = db, ticks
        self.archive_url = archive_url.rstrip("/")
        self.parallel, self.retries = parallel, retries
        self.manifest = Manifest(Manifest.beside(db))
        self.work_dir = work_dir
        self.outcome = Outcome()
        self._import_lock = asyncio.Lock()
        self._bar: tqdm | None = None
        self._files = 0
        self.progress = progress

    async def run(
        self, series: list[Series], start: int, end: int, fill: bool, rest_url: str | None
    ) -> Outcome:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=120)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            plans: dict[Series, Plan] = {}
            sizes: dict[str, int] = {}
            for s in series:
                listed: dict[str, int] = {}
                for period in PERIODS:
                    listed |= await list_keys(session, self.archive_url, s.prefix(period))
                sizes |= listed
                plans[s] = plan_files(s, start, end, set(listed))
            todo = [(s, f) for s, p in plans.items() for f in p.files]
            fresh = [(s, f) for s, f in todo if not self.manifest.done(f)]
            self.outcome.skipped = [f.name for s, f in todo if self.manifest.done(f)]
            fresh_bytes = [sizes.get(f.key, 0) for _, f in fresh]
            self._files = len(fresh)
            self._bar = tqdm(  # bytes fetched, with files and rows imported beside
                total=sum(fresh_bytes) if all(fresh_bytes) else None,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc="archive",
                disable=not self.progress,
            )
            with tempfile.TemporaryDirectory(dir=self.work_dir, prefix="archive-") as tmp:
                gate = asyncio.Semaphore(self.parallel)
                await asyncio.gather(*(self._one(session, gate, f, Path(tmp)) for _, f in fresh))
            self._bar.close()
        for s, p in plans.items():
            for day in p.missing:
                self.outcome.holes.append(
                    Hole(
                        s.file("daily", day).name,
                        kind_label(s),
                        s.store_symbol,
                        "not in the archive",
                    )
                )
            if p.unpublished:
                first, last = p.unpublished[0], p.unpublished[-1]
                self.outcome.holes.append(
                    Hole(
                        s.file("daily", first).name,
                        kind_label(s),
                        s.store_symbol,
                        f"not yet published: {first} to {last}",
                    )
                )
            if p.files:
                audit_end = max(f.end_ms for f in p.files)
                if s.kind == "klines":
                    found = kline_holes(self.db, s, start, audit_end, p.files)
                else:
                    found = tick_holes(self.ticks, s, start, audit_end, p.files)
                one_sided = [h for h in found if h.what.startswith(ONE_SIDED)]
                if s.kind == "trades":  # days repaired before with trades left uncovered
                    one_sided += self._sides_left(s, start, audit_end, one_sided)
                if one_sided:
                    await self._set_sides(s, one_sided)
                    self._note_sides(s, one_sided)
                gaps = [h for h in found if not h.what.startswith(ONE_SIDED)]
                if fill and gaps:
                    await self._fill(s, gaps, rest_url)
                    if s.kind != "klines":  # a short day filled by id is short no more
                        still = {
                            h.start
                            for h in tick_holes(self.ticks, s, start, audit_end, p.files)
                            if h.what.startswith("short day")
                        }
                        for h in gaps:
                            if h.what.startswith("short day") and h.start not in still:
                                h.filled = True
                self.outcome.holes += gaps + one_sided
        self.manifest.report = [h.as_dict() for h in self.outcome.holes]
        self.manifest.save()
        return self.outcome

    async def _fill(self, s: Series, holes: list[Hole], rest_url: str | None) -> None:
        rest, url = _rest_client(s.market, rest_url)
        try:
            for h in holes:
                h.filled = await fill_hole(h, s, self.db, self.ticks, rest, url.rstrip("/"))
        finally:
            await rest.close()

    def _sides_left(self, s: Series, start: int, end: int, found: list[Hole]) -> list[Hole]:
        """The days of ``s`` in [start, end) repaired before with trades no aggregate trade
        covered (mixed since, so the audit cannot find them), as they were first listed."""
        prefix = f"{stored_as(s)}/{s.kind}/"
        seen = {h.start for h in found}
        left = []
        for key, entry in self.manifest.sides.items():
            try:
                hole = Hole(**entry)
            except TypeError:  # an entry edited by hand into something else: tried no more
                log.warning("archive: manifest entry %s is not a day of trades; ignored", key)
                continue
            at = hole.start
            ours = key.startswith(prefix) and isinstance(at, int) and start <= at < end
            if ours and at not in seen:
                left.append(hole)
        return left

    def _note_sides(self, s: Series, holes: list[Hole]) -> None:
        """Remember the one-sided days whose trades are not all set yet; forget the rest."""
        for h in holes:
            assert h.start is not None
            key = f"{stored_as(s)}/{s.kind}/{day_of(h.start)}"
            if h.repaired and h.uncovered:
                first = Hole(**h.as_dict())
                first.what = h.what.split("; ", 1)[0]  # the audit's words, without the repair's
                first.repaired = first.uncovered = None
                self.manifest.sides[key] = first.as_dict()
            elif h.filled:
                self.manifest.sides.pop(key, None)
        self.manifest.save()

    async def _set_sides(self, s: Series, holes: list[Hole]) -> None:
        """Each one-sided day's trades given the side of the aggregate trade that holds them:
        the day's stored aggTrades where they span its trade ids (spot keeps their trade id
        ranges), else the archive's daily aggTrades file, fetched, verified and imported as
        any other. A day that cannot be repaired stays listed, saying what would repair it."""
        aggs_series = Series(s.market, "aggTrades", s.symbol)
        kind, _ = tick_kind(s)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=120)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            try:
                listed = await list_keys(session, self.archive_url, aggs_series.prefix("daily"))
            except (ArchiveError, aiohttp.ClientError, TimeoutError, OSError) as exc:
                for h in holes:
                    h.what += f"; not repaired: the aggTrades could not be listed ({exc})"
                return
            with tempfile.TemporaryDirectory(dir=self.work_dir, prefix="archive-") as tmp:
                for h in holes:
                    assert h.start is not None
                    day = day_of(h.start)
                    f = aggs_series.file("daily", day)
                    aggs = self._stored_aggs(s, day, h)
                    source = "the stored aggTrades"
                    if aggs is None:
                        source = f.name
                        if f.key not in listed:
                            h.what += f"; not repaired: {f.name} is not in the archive"
                            continue
                        try:
                            aggs = await self._archive_aggs(session, f, Path(tmp))
                        except ArchiveError as exc:
                            h.what += f"; not repaired: {f.name} refused ({exc})"
                            continue
                        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                            h.what += f"; not repaired: {f.name} not fetched ({exc})"
                            continue
                        if aggs is None:
                            h.what += f"; not repaired: {f.name} is not published"
                            continue
                    done = await asyncio.to_thread(
                        rewrite_day_sides, self.ticks, kind, s.exchange, s.store_symbol, day, aggs
                    )
                    h.repaired, h.uncovered = done.repaired, done.uncovered
                    h.filled = done.uncovered == 0
                    h.what += (
                        f"; repaired from {source}: {done.repaired} sides set from their "
                        f"aggregate trades, {done.uncovered} trades no aggregate trade covered"
                    )

    def _stored_aggs(self, s: Series, day: str, hole: Hole) -> Aggs | None:
        """The day's stored aggregate trades, where they keep trade id ranges (spot's
        ``kind=agg_trades``) spanning the day's trade ids; else None."""
        if s.market == "um":
            return None  # kept as the Lab's trades, without their trade id ranges
        parts = part_files(self.ticks, "agg_trades", s.exchange, s.store_symbol, day, day)
        if not parts:
            return None
        aggs = Aggs.from_table(
            pq.read_table([str(p) for p in parts], columns=["first_id", "last_id", "side"])
        )
        assert hole.first_id is not None and hole.last_id is not None
        if aggs.first_id[0] > hole.first_id or aggs.last_id.max() < hole.last_id:
            return None
        return aggs

    async def _archive_aggs(
        self, session: aiohttp.ClientSession, f: ArchiveFile, tmp: Path
    ) -> Aggs | None:
        """An aggTrades file's trade id ranges and sides, the file imported once as any other;
        None when it is not published; ArchiveError when it is refused."""
        fetched = await self._fetch_verified(session, f, tmp)
        if fetched is None:
            return None
        path, digest = fetched
        try:
            tables = await asyncio.to_thread(lambda: list(read_archive(path, f)))
            table = pa.concat_tables(tables) if tables else None
            if table is None:
                return Aggs.of(np.zeros(0), np.zeros(0), np.zeros(0))
            if not self.manifest.done(f, digest):
                rows = await asyncio.to_thread(import_ticks, self.ticks, f, table)
                self.manifest.add(f, digest, rows)
                self.outcome.imported.append(f.name)
                self.outcome.rows += rows
            return Aggs.from_table(table)
        finally:
            if path.parent == tmp:  # a download, not a file of a local copy
                path.unlink(missing_ok=True)

    async def _one(
        self, session: aiohttp.ClientSession, gate: asyncio.Semaphore, f: ArchiveFile, tmp: Path
    ) -> None:
        async with gate:
            try:
                fetched = await self._fetch_verified(session, f, tmp)
            except ArchiveError as exc:
                self._refuse(f, str(exc))
                return
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                self._refuse(f, f"download failed ({exc})")
                return
        if fetched is None:
            return
        path, digest = fetched
        async with self._import_lock:
            try:
                rows = await asyncio.to_thread(self._import, path, f)
            except ArchiveError as exc:
                self._refuse(f, str(exc))
                return
            finally:
                if path.parent == tmp:  # a download, not a file of a local copy
                    path.unlink(missing_ok=True)
            self.manifest.add(f, digest, rows)
        self.outcome.imported.append(f.name)
        self.outcome.rows += rows
        if self._bar is not None:
            self._bar.set_postfix(
                files=f"{len(self.outcome.imported)}/{self._files}", rows=self.outcome.rows
            )

    def _refuse(self, f: ArchiveFile, why: str) -> None:
        log.warning("archive: %s refused: %s", f.name, why)
        self.outcome.holes.append(
            Hole(f.name, kind_label(f.series), f.series.store_symbol, f"refused: {why}", f.start_ms)
        )

    def _import(self, path: Path, f: ArchiveFile) -> int:
        rows = 0
        for table in read_archive(path, f):
            if f.series.kind == "klines":
                rows += import_klines(self.db, f, table)
            else:
                rows += import_ticks(self.ticks, f, table)
        return rows

    async def _fetch_verified(
        self, session: aiohttp.ClientSession, f: ArchiveFile, tmp: Path
    ) -> tuple[Path, str] | None:
        """The zip on disk with its digest, once it matches its checksum; None when the file
        is not published (yet); ArchiveError when it never matched."""
        root = local_root(self.archive_url)
        if root is not None:
            return await asyncio.to_thread(self._local_verified, root, f)
        url = f"{self.archive_url}/{f.key}"
        async with session.get(url + ".CHECKSUM") as resp:
            body = await resp.read()
            if resp.status == 404:
                self._unpublished(f)
                return None
            if resp.status != 200:
                raise ArchiveError(f"{f.name}.CHECKSUM: HTTP {resp.status}")
        expected = parse_checksum(body, f.name)
        path = tmp / f.name
        got = ""
        for attempt in range(self.retries + 1):
            got = await self._stream(session, url, path)
            if got == expected:
                return path, got
            log.warning(
                "archive: %s does not match its checksum (attempt %d of %d)",
                f.name,
                attempt + 1,
                self.retries + 1,
            )
        path.unlink(missing_ok=True)
        raise ArchiveError(f"checksum mismatch: sha256 {got}, .CHECKSUM says {expected}")

    def _local_verified(self, root: Path, f: ArchiveFile) -> tuple[Path, str] | None:
        """A local copy's file, read in place once it matches its checksum."""
        checksum, path = root / (f.key + ".CHECKSUM"), root / f.key
        if not checksum.is_file() or not path.is_file():
            self._unpublished(f)
            return None
        expected = parse_checksum(checksum.read_bytes(), f.name)
        got = sha256_of(path)
        self.outcome.bytes += path.stat().st_size
        if self._bar is not None:
            self._bar.update(path.stat().st_size)
        if got != expected:
            raise ArchiveError(f"checksum mismatch: sha256 {got}, .CHECKSUM says {expected}")
        return path, got

    def _unpublished(self, f: ArchiveFile) -> None:
        log.info("archive: %s is not published (yet)", f.name)
        self.outcome.holes.append(
            Hole(f.name, kind_label(f.series), f.series.store_symbol, "not yet published")
        )

    async def _stream(self, session: aiohttp.ClientSession, url: str, path: Path) -> str:
        h = hashlib.sha256()
        async with session.get(url) as resp:
            if resp.status != 200:
                raise ArchiveError(f"{url.rsplit('/', 1)[1]}: HTTP {resp.status}")
            with path.open("wb") as out:
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    h.update(chunk)
                    out.write(chunk)
                    self.outcome.bytes += len(chunk)
                    if self._bar is not None:
                        self._bar.update(len(chunk))
        return h.hexdigest()


def _rest_client(market: str, rest_url: str | None) -> tuple[Any, str]:
    """The REST client that fills a market's holes, and its base: ``rest_url`` when given (the
    market's own base: spot's, or USDⓈ-M's for ``um``), else the venue's default (for ``um``
    ``MARKETLAB_BINANCE_PERP_REST_URL`` first)."""
    venue = registry.get(EXCHANGE)
    if market == "um":
        url = rest_url or os.environ.get(venue.perp_rest_env) or venue.perp_rest_url
        return BinancePerpRest(url), url
    url = rest_url or venue.rest_url
    return venue.rest_client(url), url


async def run_download(
    db: Path,
    ticks: Path,
    series: list[Series],
    start: int,
    end: int,
    archive_url: str,
    *,
    fill: bool = True,
    rest_url: str | None = None,
    parallel: int = 4,
    progress: bool = False,
    **options: Any,
) -> Outcome:
    """Fetch, verify and import the files of ``series`` over [start, end), then audit (and with
    ``fill`` fill over REST) what they hold."""
    loader = Downloader(db, ticks, archive_url, parallel=parallel, progress=progress, **options)
    return await loader.run(series, start, end, fill, rest_url)
