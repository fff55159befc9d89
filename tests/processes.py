"""Real Swarm processes for end-to-end tests: an embedded nats-server and the services started as
``python -m services.<name>``, each in its own session, its output in a file under the cluster's
directory, talked to over HTTP with the bearer token.

- ``Cluster(root)``: ``start_nats()``, then ``gateway()``, ``scheduler(instance)``,
  ``executor(id, swarm, agents)`` (each returns a ``Process`` at once); ``wait_ready(*processes)``
  waits until ``/health`` lists each one (by pid) as ready; ``wait_agents`` until the swarm's
  agents are registered, hosted where expected and idle.
- ``Process.kill()`` is ``kill -9``; ``Cluster.close()`` stops everything (SIGTERM, then SIGKILL)
  and returns what is still alive: every process started here runs with its working directory
  under ``root`` (services in ``root``, agents' commands in their sandboxes under it), so
  ``leftovers()`` finds them, orphans of a killed executor included. ``close_cleanly()``: nothing
  may be left; ``serving(*processes)``: the cluster once they are ready, closed cleanly after.
- ``Api``: JSON over ``urllib``; it keeps every answer it read (``seen``), so a test can check
  that no secret ever came back.
- ``until(condition)``: poll with a deadline; on timeout the message carries each process's last
  log lines.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from waiting import until_sync

from services.bus.embedded import EmbeddedNats, free_port

REPO = Path(__file__).resolve().parent.parent
FAKE_CLAUDE = REPO / "tests" / "fake_claude.py"
STOP_TIMEOUT = 10.0  # SIGTERM, then SIGKILL after this long

T = TypeVar("T")


class Api:
    """The gateway's HTTP API with the bearer token; answers are ``(status, decoded JSON)``."""

    def __init__(self, url: str, token: str | None) -> None:
        self.url = url
        self.token = token
        self.seen: list[str] = []  # every answer's body, as read

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
        raw: bytes | None = None,
        timeout: float = 20.0,
    ) -> tuple[int, Any]:
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            status, text = error.code, error.read().decode()
        self.seen.append(text)
        if not text.strip():
            return status, None
        try:
            return status, json.loads(text)
        except json.JSONDecodeError:
            return status, text

    def ok(self, method: str, path: str, body: Any = None, **options: Any) -> Any:
        """A call that must succeed (2xx); its answer."""
        status, answer = self.call(method, path, body, **options)
        assert 200 <= status < 300, f"{method} {path} -> {status}: {answer}"
        return answer

    def task(self, swarm: str, task: str) -> dict:
        """The task with its full event history (``events``)."""
        return self.ok("GET", f"/swarms/{swarm}/tasks/{task}")

    def events(self, swarm: str) -> list[dict]:
        """Every event of the swarm so far, through the server-sent events route."""
        request = urllib.request.Request(f"{self.url}/swarms/{swarm}/events?follow=0")
        request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, timeout=20) as response:
            text = response.read().decode()
        self.seen.append(text)
        found = []
        for block in text.split("\n\n"):
            fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line[:8])
            if "data" in fields and fields.get("event") not in (None, "end"):
                found.append(json.loads(fields["data"]))
        return found


@dataclass
class Process:
    """One service process, started in a session of its own."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    log_path: Path
    popen: subprocess.Popen | None = None

    def start(self) -> Process:
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """kill -9: no goodbye, nothing flushed, nothing given back."""
        if self.alive:
            os.kill(self.pid, signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait()

    def terminate(self) -> None:
        if self.alive:
            os.kill(self.pid, signal.SIGTERM)

    def wait_gone(self, timeout: float) -> None:
        if self.popen is None:
            return
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Cluster:
    """NATS plus any number of service processes, all under ``root``."""

    root: Path
    lease: float = 2.0
    retry_backoff: float = 0.2
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    processes: list[Process] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(exist_ok=True)
        self.nats = EmbeddedNats(self.root / "nats")
        self.gateway_port = free_port()
        self.api = Api(f"http://127.0.0.1:{self.gateway_port}", self.token)
        self.mcp_port = free_port()
        self.mcp_url = f"http://127.0.0.1:{self.mcp_port}/mcp"

    # --- starting ---------------------------------------------------------------------------

    def start_nats(self) -> Cluster:
        self.nats.start()
        return self

    def base_env(self) -> dict[str, str]:
        """What every service gets: where things are, and nothing of the test's own environment
        (no inherited credentials, no other NATS)."""
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root),
            "LANG": "C.UTF-8",
            "NATS_URL": self.nats.url,
            "SWARM_API_TOKEN": self.token,
            "SWARM_API_URL": self.api.url,
            "SWARM_GATEWAY_PORT": str(self.gateway_port),
            "SWARM_MCP_URL": self.mcp_url,
            "SWARM_LEASE_SECONDS": str(self.lease),
            "SWARM_RETRY_BACKOFF": str(self.retry_backoff),
            "SWARM_LOG_LEVEL": "info",
            "PYTHONUNBUFFERED": "1",
        }

    def spawn(
        self, name: str, args: Iterable[str] = (), env: Mapping[str, str] | None = None
    ) -> Process:
        """``python -m services.<service> args`` where ``name`` is ``<service>`` or
        ``<service>-<suffix>``; it runs with ``root`` as its working directory."""
        service = name.split("-", 1)[0]
        process = Process(
            name=name,
            argv=[sys.executable, "-m", f"services.{service}", *args],
            env={**self.base_env(), **(env or {})},
            cwd=self.root,
            log_path=self.root / "logs" / f"{name}.log",
        )
        self.processes.append(process)
        return process.start()

    def gateway(self) -> Process:
        return self.spawn("gateway")

    def mcp(self) -> Process:
        """The MCP server on ``mcp_url``."""
        return self.spawn("mcp", ["--port", str(self.mcp_port)])

    def scheduler(self, instance: str, env: Mapping[str, str] | None = None) -> Process:
        return self.spawn(
            f"scheduler-{instance}",
            ["--lease-seconds", str(self.lease)],
            {"SWARM_INSTANCE": instance, **(env or {})},
        )

    def executor(
        self,
        executor_id: str,
        swarm: str,
        agents: Iterable[str],
        env: Mapping[str, str] | None = None,
    ) -> Process:
        """An executor serving ``swarm`` with ``agents`` (``ID:ROLE:SKILL,SKILL``); the claude
        runtime is the stand-in, which sees ``FAKE_CLAUDE_MODE``."""
        args = ["--executor-id", executor_id, "--swarm", swarm]
        args += ["--data-dir", str(self.root / "executors" / executor_id)]
        for agent in agents:
            args += ["--agent", agent]
        settings = {
            "SWARM_CLAUDE_BIN": str(FAKE_CLAUDE),
            "SWARM_PASS_ENV": "FAKE_CLAUDE_MODE",
            "SWARM_INSTANCE": executor_id,
            **(env or {}),
        }
        return self.spawn(f"executor-{executor_id}", args, settings)

    # --- waiting ----------------------------------------------------------------------------

    def until(
        self, condition: Callable[[], T | None], timeout: float = 20.0, what: str = "condition"
    ) -> T:
        """Poll ``condition`` until it returns something truthy; return that. A timeout shows
        the last lines of every process's log."""
        try:
            return until_sync(condition, timeout, what, every=0.05)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.tails()}") from None

    def health(self) -> dict | None:
        try:
            _, report = Api(self.api.url, None).call("GET", "/health", timeout=5)
        except (OSError, urllib.error.URLError):
            return None
        return report if isinstance(report, dict) else None

    def wait_ready(self, *processes: Process, timeout: float = 30.0) -> None:
        """Until ``/health`` reports each process (by pid) ready."""

        def ready() -> bool:
            for process in processes:
                if not process.alive:
                    raise AssertionError(f"{process.name} exited\n{process.tail()}")
            report = self.health()
            if report is None:
                return False
            for process in processes:
                service = process.name.split("-", 1)[0]
                instances = report["services"].get(service, {}).get("instances", [])
                if not any(i["pid"] == process.pid and i["ready"] for i in instances):
                    return False
            return True

        self.until(ready, timeout, "ready: " + ", ".join(p.name for p in processes))

    def wait_agents(self, swarm: str, hosts: Mapping[str, str], timeout: float = 30.0) -> None:
        """Until each agent of ``hosts`` (agent -> executor id) is registered there and idle."""

        def hosted() -> bool:
            status, agents = self.api.call("GET", f"/swarms/{swarm}/agents")
            if status != 200:
                return False
            found = {a["id"]: a for a in agents}
            return all(
                agent in found
                and found[agent]["executor"] == executor
                and found[agent]["status"] == "idle"
                for agent, executor in hosts.items()
            )

        self.until(hosted, timeout, f"agents hosted and idle in {swarm}: {dict(hosts)}")

    def wait_task(
        self, swarm: str, task: str, statuses: Iterable[str], timeout: float = 30.0
    ) -> dict:
        """Until the task is in one of ``statuses``; the task then (with its history)."""
        wanted = set(statuses)

        def reached() -> dict | None:
            status, answer = self.api.call("GET", f"/swarms/{swarm}/tasks/{task}")
            return answer if status == 200 and answer["status"] in wanted else None

        return self.until(reached, timeout, f"task {task} in {sorted(wanted)}")

    # --- stopping ---------------------------------------------------------------------------

    def leftovers(self) -> list[str]:
        """Live processes working under ``root`` (services, agents' commands, orphans)."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                cwd = os.readlink(f"/proc/{entry}/cwd")
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:  # gone meanwhile, a zombie, or not ours
                continue
            if cwd == str(self.root) or cwd.startswith(f"{self.root}/"):
                found.append(f"{entry}: {cmdline.decode(errors='replace').strip()}")
        return found

    def close(self, timeout: float = 10.0) -> list[str]:
        """Stop every service (SIGTERM together, SIGKILL after ``STOP_TIMEOUT``), then NATS;
        wait up to ``timeout`` for whatever else runs under ``root`` to end. Returns what was
        still alive then (and kills it)."""
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait_gone(STOP_TIMEOUT)
        self.nats.stop()
        deadline = time.monotonic() + timeout
        left = self.leftovers()
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = self.leftovers()
        for line in left:
            try:
                os.kill(int(line.split(":", 1)[0]), signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.nats.running:
            left.append(f"nats-server {self.nats.process.pid}")
            self.nats.kill()
        return left

    def close_cleanly(self) -> None:
        """``close``, and nothing may have been left behind."""
        left = self.close()
        assert left == [], f"processes left behind: {left}"

    @contextlib.contextmanager
    def serving(self, *processes: Process, timeout: float = 60.0) -> Iterator[Cluster]:
        """The cluster once ``processes`` are ready; closed cleanly on the way out (a module's
        shared cluster: ``with shared.serving(shared.gateway(), ...): yield shared``)."""
        try:
            self.wait_ready(*processes, timeout=timeout)
            yield self
        finally:
            self.close_cleanly()

    def tails(self) -> str:
        return "\n".join(f"--- {p.name} (pid {p.pid}) ---\n{p.tail()}" for p in self.processes)

    def logs(self) -> str:
        """Every process's whole log (and nats-server's)."""
        paths = [p.log_path for p in self.processes] + [self.nats.log_path]
        return "\n".join(path.read_text(errors="replace") for path in paths if path.exists())
