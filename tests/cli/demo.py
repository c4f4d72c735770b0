"""``marketlab demo`` run as a user runs it, for the tests that watch it serve and stop."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def running_demo(tmp_path: Path, *flags: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``marketlab demo <flags>`` on free ports with a SQLite file of its own in ``tmp_path``:
    the process and its banner (every line up to "stop with Ctrl-C"). A demo still running on
    the way out is killed."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "marketlab",
            "demo",
            *flags,
            "--duration",
            "60",
            "--sim-port",
            "0",
            "--port",
            "0",
            "--db",
            str(tmp_path / "demo.sqlite"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        head: list[str] = []
        while not any("stop with Ctrl-C" in line for line in head):
            line = proc.stdout.readline()
            assert line, f"the demo exited early: {''.join(head)}{proc.stderr.read()}"
            head.append(line)
        yield proc, "".join(head)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
