"""A simulator in its own process, as the real exchange would be: for tests where sharing the
interpreter (and its GIL) with the exchange would be unfair."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import tempfile
from typing import Any

import httpx


class SimProcess:
    def __init__(self, *args: str):
        self.args = ["--port", "0", *args]
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    def __enter__(self) -> SimProcess:
        # stderr goes to a file: a pipe nobody reads would fill up and freeze the exchange
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "marketlab", "sim", *self.args],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(
                    f"simulator exited: {self.proc.stderr.read() if self.proc.stderr else ''}"
                )
            m = re.search(r"REST\s+http://127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def okx_ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/v5/public"

    def klines(
        self, symbol: str, interval: str, start: int, end: int, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """The exchange's candles, read over its REST API, in the simulator's oracle format."""
        rows = httpx.get(
            f"{self.rest_url}/api/v3/klines",
            params={
                "symbol": symbol,
                "interval": interval,
                "startTime": start,
                "endTime": end,
                "limit": limit,
            },
            timeout=10,
        ).json()
        keys = (
            "open_time",
            "open",
            "high",
            "low",
            "close",
            "volume",
            "close_time",
            "quote_volume",
            "trades",
            "taker_buy_volume",
            "taker_buy_quote_volume",
        )
        return [
            {k: (v if isinstance(v, int) else float(v)) for k, v in zip(keys, row, strict=False)}
            for row in rows
        ]
