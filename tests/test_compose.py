"""compose.yaml and deploy/compose.cluster.yaml under a real Docker engine.

Each test copies the checkout (its tracked files as they are now, like a fresh clone) into a
temporary directory, runs ``docker compose up --build --scale executor=2 --wait`` there under a
project name of its own, with every published port moved to a free one and an image tag of its
own, and always ends with ``down -v`` and removing that image. Without an engine (CI, a laptop
without Docker) they skip, saying so; ``bash /work/shared/tools/docker-local.sh`` gives a machine
without Docker Hub an engine.

- one server: a shell task goes through the gateway's HTTP API and completes; ``swarm doctor``
  (the compose ``doctor`` tool service) passes;
- the 3-node cluster: the NATS node that is the JetStream meta leader is killed -9 while tasks
  run and more are created; every task ends exactly once.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from compose_support import ROOT
from waiting import until_sync as wait_until

from services.bus.embedded import free_port

pytestmark = pytest.mark.timeout(1200)  # seconds: a cold image build, then a cluster run

TOKEN = "compose-test-token-0123456789abcdef"
UP_TIMEOUT = 600  # seconds for build + start + health (a cold build downloads every wheel)
TERMINAL = ("completed", "failed", "cancelled")
CLUSTER = ("compose.yaml", "deploy/compose.cluster.yaml")
NODE_SERVICE = {"nats": "nats", "n1": "nats", "n2": "n2", "n3": "n3"}  # server name -> service


def engine_missing() -> str | None:
    """Why no Docker engine and compose plugin answer here (None: they do)."""
    try:
        info = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        if info.returncode != 0:
            return f"no Docker engine answers (docker info: {info.stderr.strip()[:200]})"
        plugin = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"no Docker engine answers ({error})"
    if plugin.returncode != 0:
        return f"docker compose is not installed ({plugin.stderr.strip()[:200]})"
    return None


@pytest.fixture(scope="module")
def docker() -> None:
    why_not = engine_missing()
    if why_not is not None:
        pytest.skip(why_not)


def clean_checkout(into: Path) -> Path:
    """The repository's tracked files as they are in this worktree (``git stash create`` makes
    a commit of uncommitted changes without touching anything; none: HEAD), nothing else: no
    .venv, no .env, no caches."""
    stash = subprocess.run(
        ["git", "stash", "create"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    tree = stash or "HEAD"
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", "--format=tar", tree], cwd=ROOT, capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


@dataclass
class Project:
    """One ``docker compose -p <name>`` project in a clean checkout."""

    directory: Path
    files: tuple[str, ...]
    name: str = field(default_factory=lambda: f"swarmtest-{uuid.uuid4().hex[:8]}")
    gateway_port: int = field(default_factory=free_port)
    nats_port: int = field(default_factory=free_port)
    monitor_port: int = field(default_factory=free_port)
    mcp_port: int = field(default_factory=free_port)
    up_seconds: float = 0.0

    @property
    def image(self) -> str:
        return f"swarm-test:{self.name}"

    @property
    def env(self) -> dict[str, str]:
        return {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(self.directory),
            "SWARM_API_TOKEN": TOKEN,
            "SWARM_IMAGE": self.image,  # never overwrites an operator's swarm:local
            "SWARM_GATEWAY_PUBLISH": f"127.0.0.1:{self.gateway_port}",
            "SWARM_NATS_PUBLISH": f"127.0.0.1:{self.nats_port}",
            "SWARM_NATS_MONITOR_PUBLISH": f"127.0.0.1:{self.monitor_port}",
            "SWARM_MCP_PUBLISH": f"127.0.0.1:{self.mcp_port}",
        }

    def compose(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        argv = ["docker", "compose", "-p", self.name]
        for file in self.files:
            argv += ["-f", file]
        return subprocess.run(
            [*argv, *args],
            cwd=self.directory,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def logs(self) -> str:
        return self.compose("logs", "--no-color", "--tail", "60").stdout[-12000:]

    def up(self, *args: str) -> None:
        started = time.monotonic()
        result = self.compose(
            "up", "--build", "--detach", "--wait", "--scale", "executor=2", *args,
            timeout=UP_TIMEOUT,
        )  # fmt: skip
        self.up_seconds = time.monotonic() - started
        assert result.returncode == 0, f"{result.stderr[-4000:]}\n{self.logs()}"

    def down(self) -> None:
        self.compose("down", "-v", "--remove-orphans", "--timeout", "10", timeout=180)
        subprocess.run(["docker", "rmi", self.image], capture_output=True, timeout=60)

    # --- the gateway, from this machine ---------------------------------------------------

    def api(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.gateway_port}{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {TOKEN}",
                "Content-Type": "application/json",
                **(headers or {}),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=15) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def doctor(self) -> subprocess.CompletedProcess:
        return self.compose("--profile", "tools", "run", "--rm", "-T", "doctor", timeout=120)


@pytest.fixture
def project(docker: None, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Project]:
    files = getattr(request, "param", ("compose.yaml",))
    checkout = clean_checkout(tmp_path / "checkout")
    made = Project(directory=checkout, files=files)
    try:
        yield made
    finally:
        made.down()


def create_until_acknowledged(project: Project, body: dict[str, Any], key: str) -> str:
    """POST a task with an Idempotency-Key, retried while the gateway or NATS is away; the id
    it answered with (201, 200 for a retry that found it, 202 while it is being applied)."""
    answer: dict[str, Any] = {}

    def acknowledged() -> bool:
        try:
            status, body_ = project.api(
                "POST", "/swarms/default/tasks", body, {"Idempotency-Key": key}
            )
        except (urllib.error.URLError, OSError, ValueError):
            return False  # the gateway reconnecting, a connection cut
        if status in (200, 201, 202):
            answer.update(body_)
            return True
        assert status == 503, (status, body_)  # anything but "not now" is a bug
        return False

    wait_until(acknowledged, 60, f"task {key} acknowledged", every=0.5)
    return answer["id"]


def task(project: Project, task_id: str) -> dict[str, Any] | None:
    try:
        status, body = project.api("GET", f"/swarms/default/tasks/{task_id}")
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return body if status == 200 else None


def test_compose_up_runs_a_shell_task_through_the_gateway_and_doctor_passes(
    project: Project, record_property: Any
) -> None:
    project.up()
    record_property("compose_up_seconds", round(project.up_seconds, 1))
    print(f"compose up --build --wait (one server, 2 executors): {project.up_seconds:.1f}s")

    created = create_until_acknowledged(
        project,
        {"title": "from compose", "runtime": "shell", "prompt": "echo hello from a container"},
        "compose-shell-1",
    )
    done = wait_until(
        lambda: (t := task(project, created)) and t["status"] in TERMINAL and t,
        60,
        "the shell task to end",
        every=0.3,
    )
    assert done["status"] == "completed", done
    assert "hello from a container" in done["result"]
    assert [e["type"] for e in done["events"]] == [
        "task.created",
        "task.claimed",
        "task.running",
        "task.completed",
    ]
    doctor = project.doctor()
    print(doctor.stdout)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "All checks passed" in doctor.stdout
    assert "✓ executor: 2 ready" in doctor.stdout, doctor.stdout  # --scale executor=2


def meta_leader(project: Project) -> str | None:
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{project.monitor_port}/jsz", timeout=3
        ) as answer:
            return json.loads(answer.read()).get("meta_cluster", {}).get("leader") or None
    except (urllib.error.URLError, OSError, ValueError):
        return None


@pytest.mark.parametrize("project", [CLUSTER], indirect=True)
def test_cluster_loses_its_meta_leader_and_every_task_ends_exactly_once(
    project: Project, record_property: Any
) -> None:
    project.up()
    record_property("compose_cluster_up_seconds", round(project.up_seconds, 1))
    print(f"compose up --build --wait (3-node cluster, 2 executors): {project.up_seconds:.1f}s")
    leader = wait_until(lambda: meta_leader(project), 30, "a JetStream meta leader")
    victim = NODE_SERVICE[leader]
    run = uuid.uuid4().hex[:6]

    def body(index: int) -> dict[str, Any]:
        return {
            "title": f"run {run} task {index}",
            "runtime": "shell",
            "prompt": f"sleep 0.5; echo task {index} done",
        }

    ids = [create_until_acknowledged(project, body(i), f"{run}-{i}") for i in range(6)]
    wait_until(
        lambda: any((t := task(project, i)) and t["status"] == "running" for i in ids),
        60,
        "a task running",
        every=0.3,
    )
    killed = project.compose("kill", "-s", "SIGKILL", victim)
    assert killed.returncode == 0, killed.stderr
    ids += [create_until_acknowledged(project, body(i), f"{run}-{i}") for i in range(6, 12)]

    def all_ended() -> list[dict[str, Any]] | None:
        found = [task(project, i) for i in ids]
        if any(t is None or t["status"] not in TERMINAL for t in found):
            return None
        return found  # type: ignore[return-value]

    try:
        ended = wait_until(all_ended, 180, "every task to end", every=1.0)
    except AssertionError:
        raise AssertionError(project.logs()) from None
    assert len(set(ids)) == 12
    for detail in ended:
        kinds = [e["type"] for e in detail["events"]]
        assert detail["status"] == "completed", detail
        assert kinds[0] == "task.created" and kinds.count("task.completed") == 1, kinds
        assert sum(kind in ("task.failed", "task.cancelled") for kind in kinds) == 0, kinds
    status, listed = project.api("GET", "/swarms/default/tasks")
    assert status == 200
    titles = [t["title"] for t in listed if t["title"].startswith(f"run {run} ")]
    assert sorted(titles) == sorted(f"run {run} task {i}" for i in range(12))  # none twice

    started = project.compose("start", victim)
    assert started.returncode == 0, started.stderr

    def doctor_passes() -> bool:
        return project.doctor().returncode == 0

    wait_until(doctor_passes, 120, f"swarm doctor to pass once {leader} is back", every=2.0)
