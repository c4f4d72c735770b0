"""What the benchmarks share to run fairly: the simulator in a process of its own (so its CPU is
never the client's), and each client in a child process of its own that prints one JSON line."""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import tempfile
from typing import IO, Any


def start_simulator(*flags: str) -> tuple[subprocess.Popen[str], int, IO[str]]:
    """``python -m marketlab sim --port 0 <flags>``; returns the process, the port it took and
    its stderr log (a temporary file the caller closes). Raises with the log when it did not
    start."""
    log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed by the caller
    proc = subprocess.Popen(
        [sys.executable, "-m", "marketlab", "sim", "--port", "0", *flags],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        m = re.search(r"REST\s+https?://127\.0\.0\.1:(\d+)", line)
        if m:
            return proc, int(m.group(1)), log
    log.seek(0)
    raise RuntimeError(f"the simulator did not start: {log.read()}")


def run_child(script: str, flags: list[str], timeout: float) -> dict[str, Any]:
    """``python <script> <flags>`` and the JSON of the last line it printed, or ``{"error":
    ...}`` with the last line of its stderr (reported in the table, not raised)."""
    out = subprocess.run(
        [sys.executable, script, *flags], capture_output=True, text=True, timeout=timeout
    )
    try:
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        return result
    except (IndexError, json.JSONDecodeError):
        return {"error": (out.stderr.strip().splitlines() or ["no output"])[-1]}


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
