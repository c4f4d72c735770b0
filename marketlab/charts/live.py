"""What every live chart shares: refreshes on the notebook's event loop, throttled to ``fps``,
and a state a reader can always see — **live** (refreshing), **paused** (by its button) or
**stopped** (the Lab was stopped, its collector failed, or the cell made a newer chart), with
why. A stopped chart keeps its last picture, says so in its status line and title, and
disables the controls that can no longer act."""

from __future__ import annotations

import asyncio
import html
import inspect
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

import ipywidgets as widgets

from marketlab.charts.figures import DOWN, PAUSED_COLOUR, UP

LIVE, PAUSED, STOPPED = "live", "paused", "stopped"


class Runs(Protocol):
    """What every chart reads of its Lab's life."""

    @property
    def running(self) -> bool: ...
    def summary(self) -> dict[str, Any]: ...


L = TypeVar("L", bound=Runs)

_LIVE: dict[tuple[int, str], LiveView[Any]] = {}  # (id(lab), key) → the chart a cell made last


def _cell_id() -> str | None:
    """The notebook cell running now (JupyterLab and Notebook 7 send it), if any."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
        cell = shell.get_parent().get("metadata", {}).get("cellId") if shell is not None else None
    except Exception:  # no IPython, or a front end that sends no cell id
        return None
    return f"cell:{cell}" if cell else None


def live_views() -> list[LiveView[Any]]:
    """Every chart still refreshing on the notebook's event loop (the newest of each cell)."""
    return [view for view in _LIVE.values() if view.live]


def why_stopped(lab: Runs) -> str:
    """Why a Lab is not running, in the words a chart shows: its collector's error if one
    stopped it, else that it was stopped (or never started)."""
    error = lab.summary().get("error")
    return f"the collector failed: {error}" if error else "the Lab is not running"


class LiveView(Generic[L]):
    """A widget refreshed from a Lab on the notebook's event loop, throttled to ``fps``.

    ``state`` is ``"live"``, ``"paused"`` or ``"stopped"`` (``why`` says why); ``status`` is
    the line that shows it, ``controls`` the widgets disabled once stopped."""

    def __init__(self, lab: L, key: str, fps: float):
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.lab = lab
        self.interval = 1.0 / fps
        self.state = LIVE
        self.why: str | None = None
        self.refreshes = 0
        self.updated: str | None = None  # local time of the last refresh
        self.widget: widgets.Widget
        self.status = widgets.HTML(layout=widgets.Layout(margin="0 0 0 12px", flex="1 1 auto"))
        self.controls: list[widgets.ValueWidget] = []
        self._task: asyncio.Task[None] | None = None
        slot = (id(lab), _cell_id() or key)
        previous = _LIVE.get(slot)
        if previous is not None:
            previous.close("replaced by the chart this cell made when run again")
        _LIVE[slot] = self

    # --- the state ----------------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        return self.state == PAUSED

    @property
    def live(self) -> bool:
        """True while a task on the notebook's event loop refreshes it."""
        return self._task is not None and not self._task.done()

    def title_state(self) -> str:
        """What a figure's title adds to say the chart is not live (nothing while it is)."""
        if self.state == STOPPED:
            return f" — stopped: {self.why}"
        return " — paused" if self.state == PAUSED else ""

    def status_html(self) -> str:
        """The state in words: a dot and the time of the last refresh while live."""
        at = f" at {self.updated}" if self.updated else ""
        if self.state == LIVE:
            return (
                f"<span style='white-space:nowrap'><span style='color:{UP}'>&#9679; live</span>"
                f" · updated {self.updated or '…'}</span>"
            )
        if self.state == PAUSED:
            return (
                f"<span style='white-space:nowrap'><span style='color:{PAUSED_COLOUR}'>"
                f"&#10074;&#10074; paused</span>{at}</span>"
            )
        why = html.escape(self.why or "")
        return f"<b style='color:{DOWN};white-space:nowrap'>&#9632; stopped</b>{at}: {why}"

    def _show_state(self) -> None:
        """Put the state on screen: the status line, and the title (see ``_titled``)."""
        self.status.value = self.status_html()
        self._titled()

    def _titled(self) -> None:
        """Charts with a title put :meth:`title_state` in it."""

    def _stopped(self, why: str) -> None:
        self.state, self.why = STOPPED, why
        for control in self.controls:
            control.disabled = True
        self._show_state()

    def _refreshed(self) -> None:
        self.refreshes += 1
        self.updated = time.strftime("%H:%M:%S")
        if self.state == LIVE:
            self.status.value = self.status_html()

    # --- refreshing -----------------------------------------------------------------------------

    def _start(self) -> None:
        self._show_state()
        self.refresh()
        if not self.lab.running:
            self._stopped(why_stopped(self.lab))  # drawn once from what the Lab holds
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no notebook loop: refresh() by hand
        self._task = loop.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                if self.state == LIVE:
                    self.refresh()
            except Exception as exc:  # a chart that cannot draw says so instead of freezing
                self._stopped(f"could not refresh: {type(exc).__name__}: {exc}")
                return
            if not self.lab.running:
                self._stopped(why_stopped(self.lab))  # the final state stays on screen
                return

    def refresh(self) -> None:
        raise NotImplementedError

    def close(self, why: str = "closed") -> None:
        """Stop updating, saying ``why`` (the widget stays, with its last picture)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self.state != STOPPED:
            self._stopped(why)

    # --- controls -------------------------------------------------------------------------------

    def _pause_button(self) -> widgets.ToggleButton:
        """A toggle that pauses and resumes the refreshes, showing what pressing it will do."""
        button = widgets.ToggleButton(
            value=False, description="pause", icon="pause", tooltip="live: press to pause"
        )
        button.observe(self._on_pause, names="value")
        self.controls.append(button)
        return button

    def _on_pause(self, change: dict[str, Any]) -> None:
        if self.state == STOPPED:
            return
        self.state = PAUSED if change["new"] else LIVE
        button = change["owner"]
        button.description = "resume" if self.paused else "pause"
        button.icon = "play" if self.paused else "pause"  # the button shows what it will do
        button.tooltip = "paused: press to resume" if self.paused else "live: press to pause"
        if self.state == LIVE:
            self.refresh()
        self._show_state()

    def _bar(self, controls: Sequence[widgets.Widget]) -> widgets.HBox:
        """The controls, then the status line."""
        return widgets.HBox(
            [*controls, self.status], layout=widgets.Layout(align_items="center", width="100%")
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


class StopButton(widgets.HBox):
    """One button that stops what a notebook started (Labs, servers, the simulator), in order,
    then says what it stopped. A notebook's "Run All" only shows it: the charts stay live until
    it is pressed."""

    def __init__(self, *things: Any, description: str = "stop collecting"):
        self.things = things
        self.button = widgets.Button(
            description=description,
            icon="stop",
            button_style="danger",
            tooltip="stop the Lab (the charts keep their last picture)",
        )
        self.done = widgets.HTML()
        super().__init__([self.button, self.done], layout=widgets.Layout(align_items="center"))
        self.button.on_click(lambda _: self.stop())

    def stop(self) -> None:
        stopped = []
        for thing in self.things:
            ender = _ender(thing)
            if ender is not None:
                ender()
                stopped.append(type(thing).__name__)
        self.button.disabled = True
        self.button.description = "stopped"
        self.done.value = f"stopped at {time.strftime('%H:%M:%S')}: {', '.join(stopped)}"


def _ender(thing: Any) -> Callable[[], Any] | None:
    """``thing.stop`` where it stops at once, else ``thing.close`` (a simulator's ``stop`` is
    a coroutine for its own loop; its ``close`` is the one a notebook calls)."""
    stop = getattr(thing, "stop", None)
    if callable(stop) and not inspect.iscoroutinefunction(stop):
        return stop
    close = getattr(thing, "close", None)
    return close if callable(close) else None


def stop_button(*things: Any, description: str = "stop collecting") -> StopButton:
    """A button that stops ``things`` in order (each by its ``stop()``, else ``close()``):
    ``stop_button(lab, sim)``."""
    return StopButton(*things, description=description)
