"""Every notebook runs headless, start to finish, against the simulator, as "Run All" runs it in
JupyterLab: no cell writes a warning or anything to stderr (a DeprecationWarning raised from
marketlab's own code included), the live charts are still moving when the last cell has run,
and the notebook's stop button then stops every Lab, server and simulator it started."""

import json
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))

# Run first, in the kernel, by the test only: what Python hides by default (a
# DeprecationWarning attributed to a library module) is shown when marketlab causes it.
SHOW_OUR_DEPRECATIONS = """
import warnings

warnings.filterwarnings("default", category=DeprecationWarning, module=r"marketlab(\\.|$)")
"""

# Run last, by the test only: what a researcher sees after "Run All", then the stop button.
AFTER_RUN_ALL = """
import asyncio as _asyncio
import json as _json
import threading as _threading

from marketlab.charts import StopButton as _StopButton, live_views as _live_views
from marketlab.lab import Lab as _Lab

_views = _live_views()
_before = [_v.refreshes for _v in _views]
await _asyncio.sleep(1.5)
_moving = [_v.refreshes > _b for _v, _b in zip(_views, _before)]
_labs = [_v for _v in list(globals().values()) if isinstance(_v, _Lab)]
_running = [repr(_lab) for _lab in _labs if _lab.running]
_buttons = [_v for _v in list(globals().values()) if isinstance(_v, _StopButton)]
for _button in _buttons:
    _button.button.click()
await _asyncio.sleep(0.2)
print(_json.dumps({
    "views": [type(_v).__name__ for _v in _views],
    "moving": _moving,
    "running_at_end": _running,
    "buttons": len(_buttons),
    "running_after_stop": [repr(_lab) for _lab in _labs if _lab.running],
    "views_after_stop": [[_v.state, _v.why] for _v in _views],
    "threads_after_stop": sorted(
        _t.name for _t in _threading.enumerate() if _t.name.startswith("marketlab")
    ),
}))
"""


def test_the_numbered_notebooks_are_there():
    names = [p.stem for p in NOTEBOOKS]
    assert all(re.fullmatch(r"\d\d_[a-z0-9_]+", n) for n in names), names
    assert len({n[:2] for n in names}) == len(names), "one notebook per number"
    assert {
        "01_live_prices",
        "02_order_book",
        "03_history_duckdb",
        "04_api_server",
        "05_tick_history",
        "06_cross_venue",
        "07_perpetuals",
    } <= set(names)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert nb.cells[0].cell_type == "markdown"  # a narrative first


def _stderr(cell_index: int, cell: nbformat.NotebookNode) -> list[str]:
    """What a cell wrote to stderr (warnings and log records land there)."""
    return [
        f"cell {cell_index}: {''.join(o.text)[:2000]}"
        for o in cell.get("outputs", [])
        if o.output_type == "stream" and o.name == "stderr"
    ]


def run_all(nb: nbformat.NotebookNode, folder: Path) -> None:
    """Execute ``nb`` in place as "Run All" does, between the test's first and last cells."""
    nb.cells.insert(0, new_code_cell(SHOW_OUR_DEPRECATIONS))
    nb.cells.append(new_code_cell(AFTER_RUN_ALL))
    client = NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    )
    client.execute()  # raises CellExecutionError, naming the cell, on any error


def test_a_deprecation_raised_in_marketlab_code_reaches_the_cell_output(tmp_path):
    """Python hides a DeprecationWarning attributed to a library module; the check shows one
    attributed to marketlab, so the test above would fail on it."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        new_code_cell(
            "import warnings\n"
            "code = compile('warnings.warn(\"going away\", DeprecationWarning)', 'x.py', 'exec')\n"
            "exec(code, {'__name__': 'marketlab.example', 'warnings': warnings})\n"
            "exec(code, {'__name__': 'elsewhere', 'warnings': warnings})"
        )
    ]
    run_all(nb, tmp_path)
    written = _stderr(1, nb.cells[1])
    assert "".join(written).count("DeprecationWarning: going away") == 1, written


@pytest.mark.timeout(300)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_all_cleanly_and_ends_live(path, tmp_path, monkeypatch):
    # the kernel's temporary directories (a notebook keeps its data in one, for the reader to
    # find) land under the test's own, which pytest clears
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    nb = nbformat.read(path, as_version=4)
    stored = len(nb.cells)
    run_all(nb, tmp_path)
    cells = nb.cells[1 : stored + 1]
    outputs = [o for c in cells if c.cell_type == "code" for o in c.outputs]
    assert any(o.output_type in ("execute_result", "display_data") for o in outputs)
    written = [line for i, c in enumerate(nb.cells) for line in _stderr(i, c)]
    assert not written, "a cell wrote to stderr:\n" + "\n".join(written)

    check = nb.cells[-1]
    lines = [o.text for o in check.outputs if o.output_type == "stream" and o.name == "stdout"]
    end = json.loads("".join(lines).strip().splitlines()[-1])
    if _makes_charts(path):
        assert end["views"], f"no chart is live after Run All: {end}"
    assert all(end["moving"]), f"a live chart stopped moving after Run All: {end}"
    if end["running_at_end"]:
        assert end["buttons"], f"a Lab is left running with no stop button: {end}"
    assert not end["running_after_stop"], end
    assert all(state == "stopped" for state, _ in end["views_after_stop"]), end
    if end["buttons"]:
        assert not end["threads_after_stop"], f"threads left after the stop button: {end}"


LIVE_CHART = re.compile(r"\blab\.(chart|book_chart|board|venues_chart)\(")


def _makes_charts(path: Path) -> bool:
    nb = nbformat.read(path, as_version=4)
    return any(LIVE_CHART.search(c.source) for c in nb.cells if c.cell_type == "code")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_live_notebooks_end_with_a_stop_button_not_a_stop(path):
    """Run All must leave the charts moving: no code cell stops the Lab a live chart reads;
    a button in the last cell does, when pressed."""
    nb = nbformat.read(path, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    charts = [i for i, s in enumerate(code) if LIVE_CHART.search(s)]
    if not charts:
        return
    stops = [i for i, s in enumerate(code) if re.search(r"\blab\.stop\(\)", s)]
    assert not [i for i in stops if i > charts[-1]], "a cell after the last chart stops the Lab"
    assert "stop_button(" in code[-1]
