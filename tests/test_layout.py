"""The package layout holds: the top level is the public surface and the shared lower layers,
imports go one way (no cycle of any kind: lazy and ``TYPE_CHECKING`` imports included), the
sans-I/O modules stay free of I/O, the venue-neutral stream knows no venue, the collector never
imports the simulator, every registered venue is one complete package, and no module reaches
into another object's private attributes. (No cap on a module's length: a module is split when
it holds two jobs, not when it is long.)"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

from marketlab.venues import registry

ROOT = Path(__file__).resolve().parent.parent / "marketlab"
IO_MODULES = {"asyncio", "socket", "websockets", "aiohttp", "ccxt", "httpx", "uvicorn", "threading"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def imports_of(path: Path, type_checking: bool = True) -> set[str]:
    """Every module imported, at run time (inside functions too) and under ``if TYPE_CHECKING``
    (a type-only import still ties the two modules: a Protocol on the side that needs it breaks
    a back-reference); ``type_checking=False`` leaves those out."""
    return {m for m, _ in _imports(path) if type_checking or not _type_only(path, m)}


def _imports(path: Path) -> set[tuple[str, bool]]:
    """``(module, under TYPE_CHECKING)`` for every import of ``path``."""
    tree = ast.parse(path.read_text())
    found: set[tuple[str, bool]] = set()
    package = (
        module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    )

    def visit(node: ast.AST, typing: bool) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, typing)
            return
        if isinstance(node, ast.Import):
            found.update((alias.name, typing) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    [*package.split(".")[: len(package.split(".")) - node.level + 1], base]
                ).strip(".")
            found.add((base, typing))
            found.update((f"{base}.{alias.name}", typing) for alias in node.names)  # submodules
        for child in ast.iter_child_nodes(node):
            visit(child, typing)

    visit(tree, False)
    return found


def _type_only(path: Path, module: str) -> bool:
    imports = _imports(path)
    return (module, True) in imports and (module, False) not in imports


def names_taken_from(path: Path) -> set[str]:
    """The packages of ours that ``path`` takes a name from (``from marketlab.lab import Lab``):
    their ``__init__`` is a real dependency, not just a package passed through on the way."""
    return {
        node.module
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom)
        and node.module in MODULES  # absolute: the package has no relative imports
        and any(f"{node.module}.{alias.name}" not in MODULES for alias in node.names)
    }


GRAPH = {
    name: {m for m in imports_of(path) if m in MODULES and m != name}
    for name, path in MODULES.items()
}
TAKES_NAMES = {name: names_taken_from(path) for name, path in MODULES.items()}


def package_edges(name: str) -> set[str]:
    """A module's imports, less the package ``__init__`` files it passes through on the way (an
    ancestor package it takes a name from stays: that is an import of its ``__init__``)."""
    return {m for m in GRAPH[name] if not name.startswith(m + ".") or m in TAKES_NAMES[name]}


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
    books = [f"marketlab.venues.{v}.book" for v in ("okx", "bybit", "coinbase")]
    perpetuals = [
        f"marketlab.venues.binance.perp_{m}" for m in ("protocol", "frames", "payloads", "book")
    ]
    perpetuals += [f"marketlab.venues.okx.perp_{m}" for m in ("protocol", "frames", "payloads")]
    perpetuals += [f"marketlab.venues.bybit.perp_{m}" for m in ("protocol", "frames", "payloads")]
    return [*shared, *per_venue, *books, *perpetuals, "marketlab.bus.encoding"]


@pytest.mark.parametrize("name", sans_io_modules())
def test_sans_io_modules_do_no_io_and_import_only_downward(name):
    imported = imports_of(MODULES[name])
    assert not {m.split(".")[0] for m in imported} & IO_MODULES, f"{name} imports I/O"
    ours = {m for m in imported if m.startswith("marketlab.")}
    below = (
        "marketlab.records",
        "marketlab.numbers",
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
    for name in (n for n in GRAPH if n.startswith("marketlab.charts")):
        assert not {m for m in GRAPH[name] if m.startswith("marketlab.lab")}, name
    for name, deps in GRAPH.items():
        if name.startswith(("marketlab.sim", "marketlab.cli")):
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


# --- the top level -----------------------------------------------------------------------------

TOP_PACKAGES = {
    "bus",
    "charts",
    "cli",
    "lab",
    "recording",
    "server",
    "sim",
    "store",
    "stream",
    "venues",
    "watch",
}
TOP_MODULES = {
    "__init__.py",  # the public surface
    "__main__.py",  # python -m marketlab
    "records.py",  # normalized records: what every layer speaks
    "markets.py",  # one market's names across venues (the quote each is compared in)
    "numbers.py",  # the number rules the venues' schemas and the bus's messages share
    "native.py",  # the one place that picks compiled or pure Python
    "settings.py",  # defaults and argument checks every layer uses
    "rings.py",  # the numpy ring buffers under the Lab's frames
}


def test_the_top_level_holds_only_the_public_surface_and_shared_lower_layers():
    """Everything else lives in its component's package, so the folders show the architecture.
    Besides these only the compiled extension (``_native``, built from csrc/) may sit here."""
    folders = {p.name for p in ROOT.iterdir() if p.is_dir() and p.name != "__pycache__"}
    modules = {p.name for p in ROOT.iterdir() if p.is_file() and p.suffix == ".py"}
    others = {
        p.name
        for p in ROOT.iterdir()
        if p.is_file() and p.suffix != ".py" and not p.name.startswith("_native.")
    }
    assert folders == TOP_PACKAGES, folders
    assert all((ROOT / f / "__init__.py").is_file() for f in folders), folders
    assert modules == TOP_MODULES, modules ^ TOP_MODULES
    assert not others, others


# --- import direction --------------------------------------------------------------------------

# What each layer must not import (records ← venues ← stream ← lab ← server, cli; store and
# recording are used by the Lab; the bus sits beside the stream, under the Lab; charts are handed
# a Lab, and so is the watch; nothing but the CLI and the simulator itself imports the simulator).
ABOVE = {
    "records": ("venues", "stream", "lab", "store", "recording", "bus", "server", "cli", "sim"),
    "numbers": ("venues", "stream", "lab", "store", "recording", "bus", "server", "cli", "sim"),
    "markets": ("venues", "stream", "lab", "store", "recording", "bus", "server", "cli", "sim"),
    "settings": ("venues", "stream", "lab", "store", "recording", "bus", "server", "cli", "sim"),
    "rings": ("venues", "stream", "lab", "store", "recording", "bus", "server", "cli", "sim"),
    "venues": ("lab", "store", "bus", "server", "cli", "charts", "sim"),
    "stream": ("lab", "store", "bus", "server", "cli", "charts", "sim"),
    "recording": ("venues", "stream", "lab", "store", "bus", "server", "cli", "charts", "sim"),
    "store": ("lab", "recording", "bus", "server", "cli", "charts", "sim"),
    "bus": ("lab", "store", "server", "cli", "charts", "sim"),
    "charts": ("lab", "store", "bus", "server", "cli", "sim"),
    "lab": ("server", "cli", "sim", "watch"),
    "server": ("cli", "sim"),
    "watch": ("server", "cli", "charts", "sim"),
}


def layer(module: str) -> str:
    return module.split(".")[1] if module.count(".") else module


@pytest.mark.parametrize("below", sorted(ABOVE))
def test_imports_go_one_way(below):
    for name in (n for n in GRAPH if layer(n) == below):
        above = {m for m in GRAPH[name] if layer(m) in ABOVE[below]}
        assert not above, f"{name} imports {above}"


# --- private attributes ------------------------------------------------------------------------

# ``x._name`` where x is not self, cls, super(), type(self), the enclosing class, a module it
# imported or an object the same function just made with ``cls(...)``: each one named here,
# with why it stays (module, the access as written). An entry that matches no access fails
# the test too, so the list holds only what is still reached.
PRIVATE_ACCESS_ALLOWED = {
    ("marketlab.cli.main", "collect._actions"): (
        "argparse has no public way to give one parser's arguments to another"
    ),
    ("marketlab.cli.main", "serve._add_action"): "the same (argparse)",
    ("marketlab.cli.main", "record._add_action"): "the same (argparse)",
    ("marketlab.cli.main", "store._add_action"): "the same (argparse)",
    ("marketlab.stream.connection", "ws._conn"): (
        "aiohttp exposes no abort: a dead peer's connection is cut through its transport"
    ),
    ("marketlab.server.wire", "ws._send"): (
        "Starlette exposes no way to tell the WebSocket's server protocol (see wire.py)"
    ),
    ("marketlab.bus.config", "Client._connect_command"): (
        "nats-py has no hook to refuse a plain-text connect when TLS is wanted: the subclass"
        " overrides its CONNECT (and checks the nats-py in use still has it)"
    ),
}
ACCESSORS = ("getattr", "setattr", "hasattr", "delattr")
# Public names spelt with an underscore (so they cannot clash with a user's): a named tuple's
# API, and IPython's rich display hook.
PUBLIC_UNDERSCORED = {"_asdict", "_field_defaults", "_fields", "_make", "_replace"}
PUBLIC_UNDERSCORED |= {"_repr_mimebundle_"}


def _private(name: str) -> bool:
    dunder = name.startswith("__") and name.endswith("__")
    return name.startswith("_") and not dunder and name not in PUBLIC_UNDERSCORED


def private_accesses(path: Path) -> list[tuple[int, str]]:
    """``(line, access)`` for each private attribute ``path`` reaches on something not its own."""
    tree = ast.parse(path.read_text())
    modules = set()  # names bound to modules: import x [as y], from package import module
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            modules.update(
                a.asname or a.name for a in node.names if f"{node.module}.{a.name}" in MODULES
            )
    found: list[tuple[int, str]] = []

    def own(value: ast.expr, classes: tuple[str, ...], made: set[str]) -> bool:
        if isinstance(value, ast.Name):
            return value.id in {"self", "cls", *classes[-1:], *modules, *made}
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name):
            if value.func.id == "super":
                return True
            return value.func.id == "type" and [ast.unparse(a) for a in value.args] == ["self"]
        return False

    def made_here(function: ast.AST, classes: tuple[str, ...]) -> set[str]:
        """Names this function binds to ``cls(...)`` (or its class's own name): an alternate
        constructor finishing the object it makes."""
        makers = {"cls", *classes[-1:]}
        return {
            target.id
            for node in ast.walk(function)
            if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name)
            and node.value.func.id in makers
            for target in node.targets
            if isinstance(target, ast.Name)
        }

    def visit(node: ast.AST, classes: tuple[str, ...], made: set[str]) -> None:
        if isinstance(node, ast.ClassDef):
            classes = (*classes, node.name)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            made = made | made_here(node, classes)
        if (
            isinstance(node, ast.Attribute)
            and _private(node.attr)
            and not own(node.value, classes, made)
        ):
            found.append((node.lineno, ast.unparse(node)))
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ACCESSORS
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _private(node.args[1].value)
            and not own(node.args[0], classes, made)
        ):
            found.append((node.lineno, f"{ast.unparse(node.args[0])}.{node.args[1].value}"))
        for child in ast.iter_child_nodes(node):
            visit(child, classes, made)

    visit(tree, (), set())
    return found


def test_no_module_reaches_into_another_objects_private_attributes():
    """The parts talk through what they make public (or a Protocol, or a dataclass of what one
    needs from the other), so each can change its insides without breaking another."""
    reached = [
        f"{MODULES[name].relative_to(ROOT.parent)}:{line}: {access}"
        for name in sorted(MODULES)
        for line, access in private_accesses(MODULES[name])
        if (name, access) not in PRIVATE_ACCESS_ALLOWED
    ]
    assert not reached, "private attributes reached:\n" + "\n".join(reached)


def test_every_allowed_private_access_is_still_made():
    """An allowed access the code no longer makes (moved, renamed or gone) is removed from the
    list, so the list never excuses more than the code does."""
    made = {(name, access) for name in MODULES for _, access in private_accesses(MODULES[name])}
    stale = sorted(set(PRIVATE_ACCESS_ALLOWED) - made)
    assert not stale, "allowed private accesses that no module makes:\n" + "\n".join(
        f"{module}: {access}" for module, access in stale
    )


# --- private names -----------------------------------------------------------------------------


def private_names_imported(path: Path) -> list[tuple[int, str]]:
    """``(line, module.name)`` for each ``_name`` (not a dunder) ``path`` imports from another
    module of ours: a name shared between modules is public in the one that defines it."""
    found: list[tuple[int, str]] = []
    package = (
        module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    )
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        base = node.module or ""
        if node.level:
            parts = package.split(".")
            base = ".".join([*parts[: len(parts) - node.level + 1], base]).strip(".")
        if base != "marketlab" and not base.startswith("marketlab."):
            continue
        found.extend(
            (node.lineno, f"{base}.{alias.name}")
            for alias in node.names
            if alias.name.startswith("_") and not alias.name.startswith("__")
        )
    return found


def test_no_module_imports_another_modules_private_name():
    imported = [
        f"{MODULES[name].relative_to(ROOT.parent)}:{line}: {what}"
        for name in sorted(MODULES)
        for line, what in private_names_imported(MODULES[name])
    ]
    assert not imported, "private names imported from another module:\n" + "\n".join(imported)


# --- compiled code and formatting ---------------------------------------------------------------

CSRC = ROOT.parent / "csrc"
# the C API's ways of reaching a Python object's attributes (or methods) by name
BY_NAME = re.compile(
    r"\bPy(Object_(Get|Set|Has|Del)Attr(String)?|Object_CallMethod\w*|Object_VectorcallMethod)\b"
)


def test_no_compiled_file_names_a_python_attribute():
    """Compiled code is a pure function over bytes and arrays or a type that owns its data: it
    is handed what it calls, and never looks an attribute up by name."""
    found = [
        f"{path.name}:{n}: {line.strip()}"
        for path in sorted(CSRC.glob("*.[ch]"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if BY_NAME.search(line)
    ]
    assert not found, found


def test_ruff_format_owns_every_layout():
    """No comment turns the formatter off for a line or a block: ruff format lays out every
    Python file."""
    tree = ROOT.parent
    paths = [
        *ROOT.rglob("*.py"),
        *(tree / "tests").rglob("*.py"),
        *(tree / "benchmarks").rglob("*.py"),
    ]
    marker = "fmt: " + "skip", "fmt: " + "off"
    found = [str(p) for p in paths if any(m in p.read_text() for m in marker)]
    assert not found, found
