"""`marketlab collect --metrics-port N` as an operator runs it: Prometheus metrics served by
the collector alone, and the alert rules of marketlab.toml's [alerts] printed as they are
raised and resolved."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.cli.test_collect import FAST_FEED
from tests.lab.test_lab import wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_collect_serves_metrics_and_prints_alerts(fresh_sim, tmp_path):
    (tmp_path / "marketlab.toml").write_text(
        FAST_FEED.replace("idle_timeout = 2.0", "idle_timeout = 60.0")
        + "\n[alerts]\nsilence_s = 1.0\nresolve_after_s = 0.5\n"
        + "interval_s = 0.2\nhealth_interval_s = 0.2\n"
    )
    port = free_port()
    stdout, stderr = (tmp_path / "out.txt").open("w"), (tmp_path / "err.txt").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "marketlab",
            "collect",
            "--symbols",
            "BTCUSDT",
            "--intervals",
            "1m",
            "--binance-ws-url",
            fresh_sim.ws_url,
            "--binance-rest-url",
            fresh_sim.rest_url,
            "--metrics-port",
            str(port),
            "--duration",
            "60",  # stopped by SIGINT once the alerts are out
            "--status-interval",
            "5",
        ],
        cwd=tmp_path,
        stdout=stdout,
        stderr=stderr,
        text=True,
    )

    def printed() -> list[str]:
        return (tmp_path / "out.txt").read_text().splitlines()

    def resolved_silence() -> bool:
        lines = printed()
        raised = sum(line.startswith("ALERT [silence]") for line in lines)
        return raised >= 4 and raised == sum(
            line.startswith("resolved [silence]") for line in lines
        )

    try:
        url = f"http://127.0.0.1:{port}/metrics"

        def received() -> float:
            try:
                text = httpx.get(url, timeout=2).text
            except httpx.TransportError:
                return 0.0
            families = {f.name: f for f in text_string_to_metric_families(text)}
            return sum(s.value for s in families["marketlab_messages_received"].samples)

        wait_for(lambda: received() > 0, 30, "messages counted at /metrics")
        time.sleep(0.5)
        fresh_sim.stall(2.0)  # nothing sent for 2 s: every stream silent past 1 s
        wait_for(resolved_silence, 30, "each stream's silence raised and resolved")
        proc.send_signal(signal.SIGINT)  # as Ctrl-C: flushes and exits 0
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stdout.close()
        stderr.close()
    out = "\n".join(printed())
    assert proc.returncode == 0, (tmp_path / "err.txt").read_text()
    assert f"metrics at http://127.0.0.1:{port}/metrics" in out
    raised = [line for line in printed() if line.startswith("ALERT [silence]")]
    resolved = [line for line in printed() if line.startswith("resolved [silence]")]
    assert any("BTCUSDT trade" in line for line in raised), out
    assert sorted(r.split("] ", 1)[1] for r in raised) == sorted(
        r.split("] ", 1)[1] for r in resolved
    ), out  # every one raised once and resolved once
