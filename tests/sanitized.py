"""The fuzz targets and the other tests of the compiled code, under AddressSanitizer and
UndefinedBehaviorSanitizer.

    python tests/sanitized.py [--examples N] [pytest arguments]

Test paths among the pytest arguments replace the default list of targets (run in one
process); options alone (``-k bybit``, ``-x``) apply to it. The default targets are shared
among ``--jobs`` processes (2) run side by side: pytest-xdist's workers would import the
installed build, so each sanitized process runs its tests alone.

Builds ``marketlab._native`` from ``csrc/*.c`` with ``-fsanitize=address,undefined``
into a temporary folder, then runs every fuzz target (``tests/**/test_fuzz_*.py``) and the tests
that drive the compiled code in a process that loads that build in place of the installed one:
a read past a buffer, a use after free, an overflow or any other undefined behaviour stops the
run with the sanitizer's report. ``.ci/run`` runs it with a bounded number of examples. Where
there is no C compiler or no sanitizer runtime it says so and exits 1.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "csrc"
# besides the fuzz targets: the other tests that drive the compiled code
COMPILED_TESTS = [
    "tests/test_native.py",
    "tests/test_rings.py",
    "tests/venues/binance/test_frame_reader.py",
    "tests/venues/bybit/test_frame_reader.py",
    "tests/venues/coinbase/test_frame_reader.py",
    "tests/venues/okx/test_frame_reader.py",
    "tests/recording/test_recording.py",
]
FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]

# Loads the sanitized build as marketlab._native before anything imports marketlab, then runs
# pytest in this very process (the sanitizer's runtime is preloaded by the parent).
_BOOT = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("marketlab._native", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
sys.modules["marketlab._native"] = module
from marketlab.native import compiled
assert compiled("Side") is module.Side, "the sanitized build is not the one in use"
import pytest
raise SystemExit(pytest.main(sys.argv[2:]))
"""


def build(out: Path) -> Path:
    """The extension built with the sanitizers, in ``out``."""
    compiler = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise SystemExit("sanitized.py: no C compiler")
    target = out / f"_native{sysconfig.get_config_var('EXT_SUFFIX')}"
    include = sysconfig.get_paths()["include"]
    sources = sorted(str(p) for p in SOURCES.glob("*.c"))
    command = [
        compiler,
        "-shared",
        "-fPIC",
        "-O1",
        "-g",
        *FLAGS,
        f"-I{include}",
        f"-I{SOURCES}",
        *sources,
        "-o",
        str(target),
        "-lpthread",
        "-ldl",
    ]
    subprocess.run(command, check=True)
    return target


def runtime(compiler: str = "gcc") -> str:
    """The AddressSanitizer runtime to preload (Python itself is not built with it)."""
    found = subprocess.run(
        [os.environ.get("CC") or compiler, "-print-file-name=libasan.so"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if not found or not Path(found).exists():
        raise SystemExit("sanitized.py: no AddressSanitizer runtime (libasan.so) found")
    return str(Path(found).resolve())


def names_tests(arguments: list[str]) -> bool:
    """Whether pytest ``arguments`` name tests to run (a file, or a folder as ``tests/x/``, with
    or without a ``::test``), rather than only options such as ``-k bybit``."""
    return any(
        (ROOT / argument.split("::")[0]).exists()
        for argument in arguments
        if not argument.startswith("-") and ("/" in argument or argument.endswith(".py"))
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=300, help="per fuzz target (300)")
    parser.add_argument(
        "--jobs", type=int, default=2, help="processes the default targets are shared among (2)"
    )
    args, rest = parser.parse_known_args(argv)
    with tempfile.TemporaryDirectory(prefix="marketlab-asan-") as folder:
        library = build(Path(folder))
        env = dict(os.environ)
        env.update(
            LD_PRELOAD=runtime(),
            # Python's own allocations through malloc, so the sanitizer sees objects freed
            PYTHONMALLOC="malloc",
            # Python keeps what it allocates until exit: leaks say nothing here
            ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:halt_on_error=1:"
            "allocator_may_return_null=1",
            UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1",
            MARKETLAB_FUZZ_EXAMPLES=str(args.examples),
        )
        env.pop("MARKETLAB_PURE_PYTHON", None)
        fuzz = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_fuzz_*.py"))
        command = [
            sys.executable,
            "-c",
            _BOOT,
            str(library),
            "-q",
            "-n",
            "0",  # xdist's workers would load the installed build, not this one
            "-p",
            "no:cacheprovider",
            "--capture=sys",  # the sanitizer's report goes to the real stderr, never captured
        ]
        if names_tests(rest):
            return subprocess.run([*command, *rest], cwd=ROOT, env=env, check=False).returncode
        targets = [*fuzz, *COMPILED_TESTS]
        shares = [targets[i :: args.jobs] for i in range(max(1, args.jobs))]
        return run_shares(command, shares, rest, env)


def run_shares(command: list[str], shares: list[list[str]], options: list[str], env: dict) -> int:
    """Each share of the targets in a sanitized pytest process of its own, side by side; each
    one's output shown once all have ended (a sanitizer's report goes to stderr at once). The
    exit code is the first failing share's; 5 (no test collected, a share that ``options``
    filtered to nothing) counts as passed when another share ran tests."""
    codes = []
    with contextlib.ExitStack() as files:
        running = []
        for share in shares:
            output = files.enter_context(tempfile.TemporaryFile("w+"))
            proc = subprocess.Popen(
                [*command, *options, *share], cwd=ROOT, env=env, stdout=output, text=True
            )
            running.append((proc, output))
        for proc, output in running:
            codes.append(proc.wait())
            output.seek(0)
            sys.stdout.write(output.read())
    sys.stdout.flush()
    failed = [code for code in codes if code not in (0, 5)]
    if failed:
        return failed[0]
    return 0 if 0 in codes else 5


if __name__ == "__main__":
    sys.exit(main())
