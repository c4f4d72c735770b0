"""Feeding a recording through the collector: the same feed, books, frames and store as live.

:func:`replaying` turns a venue's feed class into one whose ``run`` reads a recording instead
of opening sockets: frames go to the very same ``on_frame``, recorded REST answers to the same
snapshot, kline and polling code, in the order they were first taken in. Nothing is fetched and
nothing is timed by the network, so a recording gives the same result every time.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from typing import Any

from marketlab.recording import files as rec
from marketlab.recording.blocks import open_blocks
from marketlab.stream.feed import Feed


class _Connection:
    """Stands for the connection a frame came in on (names appear in logs and counts)."""

    def __init__(self, name: str):
        self.name = name
        self.streams: list[Any] = []
        self.connected = False
        self.retiring = False
        self.messages = 0
        self.bytes_received = 0  # (not counted in a replay)
        self.reconnects = 0
        self.last_error = ""

    def age(self) -> float:
        return 0.0


class Replaying:
    """Mixed in before a venue's feed class; see :func:`replaying`."""

    replay_path: str | os.PathLike[str] = ""
    replay_speed: float | None = None  # None: as fast as it goes
    replay_clock: Any = None  # called with each entry's recorded time (ns), for samplers
    entries_replayed = 0
    finished = False

    async def run(self: Any) -> None:
        frames = None if self.replay_speed else self.frame_reader()
        if frames is not None:
            _header, source = open_blocks(self.replay_path, frames)
        else:
            _header, source = rec.open_recording(self.replay_path)
        self.symbols_confirmed.set()  # they were, when it was recorded
        conns: dict[str, _Connection] = {}
        try:
            if frames is not None:
                done = await self._replay_blocks(source, conns)
            elif self.replay_speed:
                done = await self._replay_timed(source, conns)
            else:
                done = await self._replay_fast(source, conns)
        finally:
            source.close()
        self.entries_replayed = done
        self.ready.set()
        self.finished = True

    async def _replay_blocks(
        self: Any, blocks: Iterator[Any], conns: dict[str, _Connection]
    ) -> int:
        """As fast as it goes, a block at a time: the frames the venue's compiled reader read
        ahead (on the read-ahead thread) go straight to their takers; any other entry goes
        where :meth:`_replay_fast` sends it. The same records in the same order."""
        on_frame, answer, ws = self.on_frame, self._replay_answer, rec.WS

        def on_entry(entry: rec.Entry) -> None:
            if entry.kind == ws:
                on_frame(entry.data, self._connection_of(entry.tag, conns))
            else:
                answer(entry)

        def on_tag(tag: str) -> None:  # a connection's first frame read ahead: it exists first
            self._connection_for(tag, conns)

        tags: dict[bytes, str] = {}
        done = 0
        for block in blocks:
            finished = False
            while not finished:
                try:
                    n, counts, finished = block.run(
                        2000, rec.Entry, tags, on_entry, on_tag, self.replay_clock
                    )
                except Exception as exc:  # as live: one frame never ends a replay (the block
                    self.frame_failed(exc, "replay")  # goes on after it; this run's counts
                    continue  # are lost with it)
                for tag, taken in counts:
                    conns[tag].messages += taken
                done += n
                self.entries_replayed = done
                await asyncio.sleep(0)  # let stop() and readers in
                if self._stopped.is_set():
                    return done
            del block  # not held while the next is waited for (blocks are megabytes)
        return done

    async def _replay_fast(
        self: Any, entries: Iterator[rec.Entry], conns: dict[str, _Connection]
    ) -> int:
        """As fast as it goes, entry by entry: where the venue (or the build) has no compiled
        frame reader to read the recording ahead."""
        on_frame, answer, clock, ws = self.on_frame, self._replay_answer, self.replay_clock, rec.WS
        done = 0
        for entry in entries:
            kind, time_ns, tag, data = entry
            if clock is not None:
                clock(time_ns)
            if kind == ws:  # most entries: the frame to the feed at once (_connection_of inlined)
                conn = conns.get(tag)
                if conn is None:
                    conn = conns[tag] = self._connection(tag)
                conn.messages += 1
                try:
                    on_frame(data, conn)
                except Exception as exc:  # as live: one frame never ends a replay
                    self.frame_failed(exc, conn.name)
            else:
                answer(entry)
            done += 1
            if done % 2000 == 0:
                self.entries_replayed = done
                await asyncio.sleep(0)  # let stop() and readers in
                if self._stopped.is_set():
                    break
        return done

    async def _replay_timed(
        self: Any, entries: Iterator[rec.Entry], conns: dict[str, _Connection]
    ) -> int:
        """At ``replay_speed`` times the recorded pace."""
        first_ns: int | None = None
        began = time.monotonic()
        done = 0
        for e in entries:
            first_ns = e.time_ns if first_ns is None else first_ns
            due = began + (e.time_ns - first_ns) / 1e9 / self.replay_speed
            if due > time.monotonic():
                await asyncio.sleep(due - time.monotonic())
            if self._stopped.is_set():
                break
            if self.replay_clock is not None:
                self.replay_clock(e.time_ns)
            if e.kind == rec.WS:
                conn = self._connection_of(e.tag, conns)
                try:
                    self.on_frame(e.data, conn)
                except Exception as exc:  # as live: one frame never ends a replay
                    self.frame_failed(exc, conn.name)
            else:
                self._replay_answer(e)
            done += 1
        return done

    def _connection_of(self: Any, tag: str, conns: dict[str, _Connection]) -> _Connection:
        """The connection a frame came in on, counting the frame."""
        conn = self._connection_for(tag, conns)
        conn.messages += 1
        return conn

    def _connection_for(self: Any, tag: str, conns: dict[str, _Connection]) -> _Connection:
        """The connection named ``tag``, made when it first appears (in the recording's order)."""
        conn = conns.get(tag)
        if conn is None:
            conn = conns[tag] = self._connection(tag)
        return conn

    def _replay_answer(self: Any, e: rec.Entry) -> None:
        """Every entry but a frame: what REST answered, and what the collector noted. A damaged
        record (a :class:`~marketlab.recording.files.RecordingError`) is counted as a bad frame
        is, and the replay goes on."""
        try:
            self._apply_answer(e)
        except Exception as exc:  # as a frame's: one record never ends a replay
            self.frame_failed(exc, "replay")

    def _apply_answer(self: Any, e: rec.Entry) -> None:
        if e.kind == rec.SNAPSHOT:
            snap = rec.decode_snapshot(e.data)
            if snap.symbol in self.books:
                self._apply_snapshot(snap)
        elif e.kind == rec.KLINES:
            symbol, interval, flag, *backfilled = e.tag.split()
            rows = rec.decode_klines(e.data)
            if flag == "poll":
                self._apply_polled(rows)
            elif backfilled:
                stats = self.kline_stats.get((symbol, interval))
                if stats is not None:
                    stats.backfilled += int(backfilled[0])
            else:
                self._apply_klines(rows, flag == "1")
        elif e.kind == rec.TRADES:
            trades = rec.decode_trades(e.data)
            symbol, first, last = e.tag.split()
            cursor = int(first)
            if not trades:
                self._trades_lost(symbol, cursor, int(last))
            else:
                if trades[0].trade_id > cursor:
                    self._trades_lost(symbol, cursor, trades[0].trade_id - 1)
                self._apply_backfilled_trades(symbol, trades)
        elif e.kind == rec.TICKERS:
            self._apply_polled(rec.decode_tickers(e.data))
        elif e.kind == rec.POLLED_BOOK:
            self._apply_polled_book(rec.decode_snapshot(e.data), int(e.tag))
        elif e.kind == rec.READY:
            self.ready.set()
        elif e.kind == rec.INVALIDATED:
            self.invalidate_book(e.tag, e.data.decode())

    def _connection(self: Any, name: str) -> _Connection:
        conn = _Connection(name)
        self.connections.append(conn)
        return conn

    # Everything that would reach the network does nothing: what it fetched is in the file.
    def _open(self, *args: Any) -> None:
        return None

    def _roll_over(self, *args: Any) -> None:
        return None

    def _schedule_snapshot(self, *args: Any) -> None:
        return None

    def _schedule_backfill(self, *args: Any) -> None:
        return None

    def _schedule_trades(self, *args: Any) -> None:
        return None

    def _spawn(self, coro: Any) -> None:
        coro.close()


def replaying(feed_class: type[Feed]) -> type[Feed]:
    """``feed_class`` fed from a recording (set ``replay_path`` and ``replay_speed``)."""
    return type(f"Replaying{feed_class.__name__}", (Replaying, feed_class), {})
