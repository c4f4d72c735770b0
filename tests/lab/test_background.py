"""The collector's thread: its own loop, and Python's full garbage collections kept off the
objects alive when it started (frozen while it runs, given back when it stops)."""

from __future__ import annotations

import asyncio
import gc

from marketlab.lab.background import GC_VARIABLE, Background


def run_and_look(monkeypatch, setting: str | None) -> tuple[int, int, int]:
    """(frozen before, frozen while the collector runs, frozen after it stopped)"""
    if setting is not None:
        monkeypatch.setenv(GC_VARIABLE, setting)
    seen: list[int] = []

    async def main() -> None:
        seen.append(gc.get_freeze_count())
        await asyncio.sleep(0)

    before = gc.get_freeze_count()
    bg = Background("test")
    bg.start(main)
    assert bg.join(10)
    assert bg.error is None
    return before, seen[0], gc.get_freeze_count()


def test_objects_alive_at_start_are_frozen_while_the_collector_runs(monkeypatch):
    before, during, after = run_and_look(monkeypatch, None)
    assert before == 0
    assert during > 1000  # every module, class and function imported by then
    assert after == 0  # all given back to the collector


def test_the_garbage_collector_can_be_left_alone(monkeypatch):
    assert run_and_look(monkeypatch, "0") == (0, 0, 0)


def test_two_collectors_unfreeze_only_when_both_have_stopped(monkeypatch):
    release = asyncio.Event()
    loops: list[asyncio.AbstractEventLoop] = []

    async def waits() -> None:
        loops.append(asyncio.get_running_loop())
        while not release.is_set():
            await asyncio.sleep(0.01)

    async def quick() -> None:
        await asyncio.sleep(0)

    first = Background("first")
    first.start(waits)
    second = Background("second")
    second.start(quick)
    assert second.join(10)
    assert gc.get_freeze_count() > 0  # the first still runs
    loops[0].call_soon_threadsafe(release.set)
    assert first.join(10)
    assert gc.get_freeze_count() == 0
