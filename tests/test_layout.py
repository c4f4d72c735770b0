"""The package layout holds: imports go one way (no cycle, lazy imports included), the sans-I/O
modules stay free of I/O, the venue-neutral stream knows no venue, the collector never imports
the simulator, and every registered venue is one complete package. (No cap on a module's length:
a module is split when it holds two jobs, not when it is long.)"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from marketlab.venues import registry

ROOT = Path(__file__).resolve().parent.parent / "marketlab"
IO_MODULES = {"asyncio", "socket", "websockets", "aiohttp", "ccxt", "httpx", "uvicorn", "threading"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def imports_of(path: Path) -> set[str]:
    """Every module imported at run time (inside functions too; ``if TYPE_CHECKING`` is not)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    package = (
        module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    )

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    [*package.split(".")[: len(package.split(".")) - node.level + 1], base]
                ).strip(".")
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # submodules by name
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


GRAPH = {
    name: {m for m in imports_of(path) if m in MODULES and m != name}
    for name, path in MODULES.items()
}


def package_edges(name: str) -> set[str]:
    """A module's imports, less the package ``__init__`` files it passes through on the way."""
    return {m for m in GRAPH[name] if not name.startswith(m + ".")}


def test_no_import_cycle():
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(package_edges(node)):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(GRAPH):
        if name not in state:
            walk(name)


def sans_io_modules() -> list[str]:
    shared = [
        "marketlab.records",
        "marketlab.numbers",
        "marketlab.settings",
        "marketlab.settings",
        "marketlab.venues.book",
        "marketlab.venues.errors",
        "marketlab.venues.pacing",
        "marketlab.venues.registry",
    ]
    per_venue = [
        f"marketlab.venues.{v}.{m}"
        for v in registry.names()
        for m in ("protocol", "frames", "payloads")
    ]
    return [*shared, *per_venue, "marketlab.venues.okx.book", "marketlab.bus.encoding"]


@pytest.mark.parametrize("name", sans_io_modules())
def test_sans_io_modules_do_no_io_and_import_only_downward(name):
    imported = imports_of(MODULES[name])
    assert not {m.split(".")[0] for m in imported} & IO_MODULES, f"{name} imports I/O"
    ours = {m for m in imported if m.startswith("marketlab.")}
    below = (
        "marketlab.records",
        "marketlab.numbers",
        "marketlab.settings",
        "marketlab.settings",
        "marketlab.venues",
        "marketlab.native",
    )
    assert all(m.startswith(below) for m in ours), ours
    assert not any(m.endswith((".feed", ".rest")) for m in ours), ours


def test_the_stream_layer_knows_no_venue():
    for name in (n for n in GRAPH if n.startswith("marketlab.stream")):
        venues = {m for m in GRAPH[name] if m.startswith("marketlab.venues.") and m.count(".") >= 3}
        specific = {m for m in venues if m.split(".")[2] in registry.names()}
        assert not specific, f"{name} imports {specific}"
        assert not {m for m in GRAPH[name] if m.startswith(("marketlab.lab", "marketlab.server"))}


def test_the_bus_knows_no_lab_and_no_venue():
    """Collectors and readers share it: it sits beside the stream layer, under the Lab."""
    for name in (n for n in GRAPH if n.startswith("marketlab.bus")):
        above = {
            m
            for m in GRAPH[name]
            if m.startswith(("marketlab.lab", "marketlab.server", "marketlab.venues."))
        }
        assert not above, f"{name} imports {above}"


def test_charts_import_nothing_of_the_lab_and_the_collector_never_the_simulator():
    assert not {m for m in GRAPH["marketlab.charts"] if m.startswith("marketlab.lab")}
    for name, deps in GRAPH.items():
        if name.startswith(("marketlab.sim", "marketlab.cli", "marketlab.cli.demo")):
            continue
        assert not {m for m in deps if m.startswith("marketlab.sim")}, (
            f"{name} imports the simulator"
        )
    for name in (n for n in GRAPH if n.startswith("marketlab.sim")):
        collector = {
            m
            for m in GRAPH[name]
            if m.startswith(("marketlab.stream", "marketlab.lab", "marketlab.store"))
        }
        assert not collector, f"{name} imports the collector: {collector}"


@pytest.mark.parametrize("venue", registry.names())
def test_every_registered_venue_is_one_complete_package(venue):
    folder = ROOT / "venues" / venue
    assert {"protocol.py", "rest.py", "feed.py", "__init__.py"} <= {
        p.name for p in folder.iterdir()
    }
    spec = registry.get(venue)
    assert spec.name == venue and spec.feed.startswith(f"marketlab.venues.{venue}.")
    assert spec.rest.startswith(f"marketlab.venues.{venue}.")
    feed, rest = spec.feed_class(), importlib.import_module(spec.rest.partition(":")[0])
    assert feed.venue == venue and rest is not None
    assert spec.check_ws_url(spec.ws_url) and spec.check_rest_url(spec.rest_url) == spec.rest_url
