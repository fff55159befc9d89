"""The multi-process deployment: compose.yaml, the 3-node NATS cluster in deploy/, the image.

No Docker engine runs here. So: the compose files are checked against the compose-spec JSON
schema and for what a deployment needs; then every service of compose.yaml (with the cluster
override deploy/compose.cluster.yaml) is started from its compose command as a local process
with its compose environment, against a real 3-node nats-server cluster on loopback ports
(EmbeddedNats with cluster routes, R3 streams), each health check of the compose file run as
written until it passes. On that deployment: plain NATS requests to the micro endpoints (what
``nats req`` sends), ``swarm doctor``, and tasks running while a NATS node is killed -9.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from compose_support import (
    ROOT,
    MissingVariable,
    environment,
    healthcheck_command,
    load,
    local_command,
    merge,
    schema_errors,
)
from waiting import until as eventually
from waiting import until_sync as wait_until

from schemas import subjects
from services.bus.connection import NatsOptions
from services.bus.embedded import EmbeddedNats, free_port, local_cluster, server_binary
from services.bus.service import Bus
from services.executor.config import host_executor_id

TOKEN = "deploy-test-token-0123456789"
SWARM_SERVICES = ("gateway", "scheduler", "scheduler-standby", "chat", "executor", "mcp")
TERMINAL = ("completed", "failed", "cancelled")


def compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    return load("compose.yaml", {"SWARM_API_TOKEN": TOKEN} if env is None else env)


def cluster_compose() -> dict[str, Any]:
    env = {"SWARM_API_TOKEN": TOKEN}
    return merge(load("compose.yaml", env), load("deploy/compose.cluster.yaml", env))


# --- the files --------------------------------------------------------------------------------


def test_compose_file_is_valid_against_the_compose_spec_schema() -> None:
    document = compose()

    assert schema_errors(document) == []
    broken = json.loads(json.dumps(document))
    broken["services"]["gateway"]["restrat"] = "always"
    assert any("restrat" in error for error in schema_errors(broken))


def test_compose_refuses_to_start_without_an_api_token() -> None:
    with pytest.raises(MissingVariable, match="SWARM_API_TOKEN"):
        compose({})


def test_every_service_is_built_from_one_image_and_configured_by_environment_only() -> None:
    services = compose()["services"]

    images = {services[name]["image"] for name in (*SWARM_SERVICES, "doctor")}
    assert images == {"swarm:local"}
    builders = [name for name, service in services.items() if "build" in service]
    assert builders == ["gateway"]  # built once, not once per service
    assert services["gateway"]["build"]["context"] == "."
    for name in SWARM_SERVICES:
        service = services[name]
        assert service["pull_policy"] == "never"  # nothing to pull: the gateway builds it
        assert service["command"][:2] == ["python", "-m"]
        env = environment(service)
        assert env["NATS_URL"] == "nats://nats:4222"
        assert env["SWARM_API_TOKEN"] == TOKEN
        assert service["depends_on"]["nats"]["condition"] == "service_healthy"
        assert not {"volumes", "env_file", "configs"} & set(service), name
    assert environment(services["gateway"])["SWARM_GATEWAY_HOST"] == "0.0.0.0"


def test_executor_scales_with_a_unique_id_per_replica() -> None:
    executor = compose()["services"]["executor"]

    assert "container_name" not in executor and "ports" not in executor
    assert "hostname" not in executor
    assert environment(executor)["SWARM_EXECUTOR_ID"] == "auto"
    assert host_executor_id("3f2a9c01b7de") == "3f2a9c01b7de"
    assert host_executor_id("box-1.example.com") == "box-1"
    assert host_executor_id("we!rd_host") == "we-rd_host"


def test_health_checks_use_health_and_each_services_readiness() -> None:
    services = compose()["services"]

    nats_check = " ".join(services["nats"]["healthcheck"]["test"])
    assert "/healthz?js-enabled-only=true" in nats_check
    for name in ("gateway", "scheduler", "scheduler-standby", "chat", "executor", "mcp"):
        kind, test = services[name]["healthcheck"]["test"]
        assert kind == "CMD-SHELL" and '"$SWARM_READY_FILE"' in test and "-lt 10" in test
        assert environment(services[name])["SWARM_READY_FILE"] == "/tmp/swarm.ready"


def test_nats_keeps_jetstream_on_a_named_volume_and_fsyncs_every_write() -> None:
    document = compose()
    nats_service = document["services"]["nats"]

    assert nats_service["image"].startswith("nats:2.1")
    assert nats_service["command"] == ["--config", "/etc/nats/nats.conf"]
    assert "nats-data:/data" in nats_service["volumes"]
    assert "nats-data" in document["volumes"]
    config = Path("deploy/nats/nats.conf")
    assert re.search(r"sync_interval:\s*always", (ROOT / config).read_text())
    assert f"./{config}:/etc/nats/nats.conf:ro" in nats_service["volumes"]


def test_nats_configs_are_accepted_by_nats_server() -> None:
    configs = [
        ROOT / "deploy/nats/nats.conf",
        *sorted((ROOT / "deploy/nats-cluster").glob("*.conf")),
    ]

    for config in configs:
        checked = subprocess.run(
            [server_binary(), "-t", "-c", str(config)], capture_output=True, text=True, timeout=30
        )
        assert checked.returncode == 0, checked.stderr


def nats_services() -> list[tuple[str, dict[str, Any]]]:
    """Every NATS service compose starts: compose.yaml's, then the cluster override's nodes."""
    found = [("compose.yaml nats", compose()["services"]["nats"])]
    for name, service in cluster_compose()["services"].items():
        if str(service.get("image", "")).startswith("nats:"):
            found.append((f"cluster {name}", service))
    return found


def container_root(service: dict[str, Any], root: Path) -> list[str]:
    """``root`` laid out as the service's container sees it: the nats-server binary where the
    image has it, each bind-mounted file at its target, each named volume an empty directory.
    Returns the container's argv: the image's entrypoint (``nats-server``, which the official
    image prepends to arguments starting with ``-``) and the compose command, unchanged."""
    binary = root / "usr/local/bin/nats-server"
    binary.parent.mkdir(parents=True)
    binary.write_bytes(Path(server_binary()).read_bytes())
    binary.chmod(0o755)
    for volume in service["volumes"]:
        source, target = str(volume).split(":")[:2]
        inside = root / target.lstrip("/")
        if source.startswith("./"):
            inside.parent.mkdir(parents=True, exist_ok=True)
            inside.write_bytes((ROOT / source).read_bytes())
        else:
            inside.mkdir(parents=True)
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc/hosts").write_text("127.0.0.1 localhost nats n1 n2 n3\n")  # compose's DNS
    command = list(service["command"])
    return ["/usr/local/bin/nats-server", *command] if command[0].startswith("-") else command


def can_enter_namespaces() -> str | None:
    """Why this machine cannot run a server in a user + network namespace (None: it can)."""
    try:
        probe = subprocess.run(
            ["unshare", "--user", "--map-root-user", "--net", "--fork", "ip", "link"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unshare/ip not usable: {error}"
    if probe.returncode != 0:
        return f"no user + network namespaces here: {probe.stderr.strip()}"
    return None


@pytest.mark.parametrize("label", [label for label, _ in nats_services()])
def test_every_compose_nats_service_starts_with_jetstream_from_its_own_command_and_config(
    label: str, tmp_path: Path
) -> None:
    """nats-server run with exactly the service's command and mounted config, as in its
    container (own root and network), comes up with JetStream on the volume, fsyncing always.
    The command once repeated ``-js -sd /data`` next to the config: nats-server refused to
    start ("Duplicate 'store_dir' configuration") and nothing else in the suite noticed."""
    why_not = can_enter_namespaces()
    if why_not is not None:
        pytest.skip(why_not)
    service = dict(nats_services())[label]
    root = tmp_path / "root"
    argv = container_root(service, root)

    ran = subprocess.run(
        [
            "unshare",
            "--user",
            "--map-root-user",
            "--net",
            "--fork",
            sys.executable,
            str(ROOT / "tests/nats_in_container.py"),
            str(root),
            *argv,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    assert result["exit"] is None, result["log"]  # still running when asked
    assert result["healthz"] == {"status": "ok"}, result
    jetstream = result["varz"]["jetstream"]["config"]
    assert jetstream["store_dir"] == "/data/jetstream"  # on the named volume
    assert jetstream["sync_always"] is True
    assert (root / "data/jetstream").is_dir()  # the named volume holds the store
    if label.startswith("cluster"):
        assert result["varz"]["cluster"]["name"] == "swarm"


def test_cluster_nodes_route_to_each_other_with_fsync_always() -> None:
    names = set()
    for node in ("n1", "n2", "n3"):
        text = (ROOT / f"deploy/nats-cluster/{node}.conf").read_text()
        names.add(re.search(r"server_name:\s*(\S+)", text).group(1))
        assert re.search(r"sync_interval:\s*always", text)
        routes = set(re.findall(r"nats-route://(\w+):6222", text))
        assert routes == {"n1", "n2", "n3"}
    assert names == {"n1", "n2", "n3"}


def test_cluster_override_points_every_service_at_all_three_nodes_with_three_replicas() -> None:
    document = cluster_compose()
    services = document["services"]

    assert schema_errors(document) == []
    assert schema_errors(load("deploy/compose.cluster.yaml", {"SWARM_API_TOKEN": TOKEN})) == []
    for name in (*SWARM_SERVICES, "doctor"):
        env = environment(services[name])
        assert env["NATS_URL"] == "nats://n1:4222,nats://n2:4222,nats://n3:4222", name
        assert env["SWARM_REPLICAS"] == "3", name
        assert env["SWARM_API_TOKEN"] == TOKEN, name  # the base environment is kept
    assert "./deploy/nats-cluster/n1.conf:/etc/nats/nats.conf:ro" in services["nats"]["volumes"]
    assert "./deploy/nats/nats.conf:/etc/nats/nats.conf:ro" not in services["nats"]["volumes"]
    assert services["nats"]["networks"]["default"]["aliases"] == ["n1"]
    for node in ("n2", "n3"):
        assert (
            f"./deploy/nats-cluster/{node}.conf:/etc/nats/nats.conf:ro"
            in (services[node]["volumes"])
        )


def test_image_installs_the_locked_versions_runs_as_a_user_and_shows_help_by_default() -> None:
    text = (ROOT / "Dockerfile").read_text()

    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    syncs = re.findall(r"^RUN /opt/uv/bin/uv sync (.*)$", text, re.M)
    assert syncs and all("--frozen" in s and "--no-default-groups" in s for s in syncs)
    assert "pip install /src" not in text  # pip would resolve afresh, ignoring uv.lock
    dev_uv = re.search(r"^UV_VERSION=(\S+)", (ROOT / "dev").read_text(), re.M)
    assert f"ARG UV_VERSION={dev_uv.group(1)}" in text  # the same uv as ./dev
    assert re.search(r"^USER swarm$", text, re.M)
    assert re.search(r'^CMD \["swarm", "--help"\]$', text, re.M)
    assert "ARG INSTALL_CLAUDE=0" in text and "@anthropic-ai/claude-code" in text
    # an install extra (daytona-oss) reaches both syncs, and compose passes it through
    assert 'ARG SWARM_EXTRA=""' in text
    assert len(syncs) == 2 and all('${SWARM_EXTRA:+--extra "$SWARM_EXTRA"}' in s for s in syncs)
    oss = compose({"SWARM_API_TOKEN": TOKEN, "SWARM_EXTRA": "daytona-oss"})
    assert oss["services"]["gateway"]["build"]["args"]["SWARM_EXTRA"] == "daytona-oss"
    assert compose()["services"]["gateway"]["build"]["args"]["SWARM_EXTRA"] == ""
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".uv", ".swarm"} <= set(ignored)
    assert "uv.lock" not in ignored


# --- the deployment, as local processes -------------------------------------------------------


@dataclass
class Process:
    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    health: list[str]
    hostname: str | None = None  # a host of its own (a UTS namespace), as a container has
    popen: subprocess.Popen | None = None

    @property
    def log(self) -> Path:
        return self.cwd / "output.log"

    def on_its_host(self, argv: list[str]) -> list[str]:
        if self.hostname is None:
            return argv
        return ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', self.hostname, *argv]

    def start(self) -> None:
        self.cwd.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(
                self.on_its_host(self.argv),
                env=self.env,
                cwd=self.cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def healthy(self) -> bool:
        checked = subprocess.run(
            self.on_its_host(self.health),
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            timeout=30,
        )
        return checked.returncode == 0

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def terminate(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)

    def wait_stopped(self) -> None:
        if self.popen is None:
            return
        try:
            self.popen.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()


@dataclass
class Deployment:
    nodes: list[EmbeddedNats]
    processes: dict[str, Process]
    api_url: str
    env: dict[str, str] = field(default_factory=dict)  # what an operator's shell would have

    @property
    def nats_url(self) -> str:
        return ",".join(node.url for node in self.nodes)

    def node(self, name: str) -> EmbeddedNats:
        return next(node for node in self.nodes if node.name == name)

    def describe(self) -> str:
        return "\n".join(
            f"--- {p.name} (exit {p.popen.poll() if p.popen else None})\n{p.tail()}"
            for p in self.processes.values()
        )


def http_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return {"status": error.code}
    except (urllib.error.URLError, OSError, ValueError):
        return None


def local_environment(
    compose_env: dict[str, str], nodes: list[EmbeddedNats], gateway_port: int, home: Path
) -> dict[str, str]:
    """The compose environment, its host names turned into this machine's ports."""
    env = dict(compose_env)
    assert env["NATS_URL"].split(",") == [f"nats://{n}:4222" for n in ("n1", "n2", "n3")]
    env["NATS_URL"] = ",".join(node.url for node in nodes)
    env["NATS_MONITOR_URL"] = ",".join(str(node.monitor_url) for node in nodes)
    env["SWARM_API_URL"] = f"http://127.0.0.1:{gateway_port}"
    env["SWARM_READY_FILE"] = str(home / "swarm.ready")  # each container has its own /tmp
    if "SWARM_GATEWAY_PORT" in env:
        env["SWARM_GATEWAY_HOST"] = "127.0.0.1"  # here: never on every interface
        env["SWARM_GATEWAY_PORT"] = str(gateway_port)
    if "SWARM_MCP_PORT" in env:
        env["SWARM_MCP_HOST"] = "127.0.0.1"
        env["SWARM_MCP_PORT"] = str(free_port())
    env.pop("SWARM_MCP_URL", None)
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "SWARM_DATA_DIR": str(home / ".swarm"),  # the image's ENV
    }
    return {**base, **{k: v for k, v in env.items() if v != ""}}


SECOND_HOST = "swarm-executor-2"


def can_have_own_host() -> bool:
    """Whether this machine lets a process have a host name of its own (root, unshare)."""
    try:
        probe = subprocess.run(
            ["unshare", "--uts", "sh", "-c", f"hostname {SECOND_HOST} && hostname"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0 and probe.stdout.strip() == SECOND_HOST


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("deploy")
    nodes = local_cluster(root, "swarm", monitor=True)
    processes: dict[str, Process] = {}
    try:
        for node in nodes:
            node.start()
        for node in nodes:  # what the compose health check of a cluster node asks

            def healthy(url: str = f"{node.monitor_url}/healthz") -> bool:
                return bool(http_json(url) == {"status": "ok"})

            wait_until(healthy, 30, f"{node.name} healthy")
        services = cluster_compose()["services"]
        gateway_port = free_port()
        for name, service in services.items():
            if service.get("image") != "swarm:local" or service.get("profiles"):
                continue  # NATS runs above; tools are not started by `up`
            home = root / name
            env = local_environment(environment(service), nodes, gateway_port, home)
            processes[name] = Process(
                name=name,
                argv=local_command(service["command"]),
                env=env,
                cwd=home,
                health=healthcheck_command(service),
            )
        assert set(processes) == set(SWARM_SERVICES)
        for process in processes.values():
            process.start()
        deployment = Deployment(
            nodes=nodes,
            processes=processes,
            api_url=f"http://127.0.0.1:{gateway_port}",
            env={
                "PATH": os.environ.get("PATH", ""),
                "HOME": str(root),
                "NATS_URL": ",".join(node.url for node in nodes),
                "NATS_MONITOR_URL": ",".join(str(node.monitor_url) for node in nodes),
                "SWARM_API_URL": f"http://127.0.0.1:{gateway_port}",
                "SWARM_API_TOKEN": TOKEN,
                "SWARM_REPLICAS": "3",
            },
        )
        for process in processes.values():  # each compose health check, as written
            try:
                wait_until(process.healthy, 60, f"{process.name} healthy")
            except AssertionError as error:
                raise AssertionError(f"{error}\n{deployment.describe()}") from None
        if can_have_own_host():  # docker compose up --scale executor=2: a second container
            first = processes["executor"]
            second = Process(
                name="executor-2",
                argv=first.argv,
                env={
                    **first.env,
                    "HOME": str(root / "executor-2"),
                    "SWARM_DATA_DIR": str(root / "executor-2" / ".swarm"),
                    "SWARM_READY_FILE": str(root / "executor-2" / "swarm.ready"),
                },
                cwd=root / "executor-2",
                health=first.health,
                hostname=SECOND_HOST,
            )
            processes[second.name] = second
            second.start()
            try:
                wait_until(second.healthy, 60, "executor-2 healthy")
            except AssertionError:
                raise AssertionError(deployment.describe()) from None
        yield deployment
    finally:
        for process in processes.values():  # SIGTERM, as `docker compose down` sends
            process.terminate()
        for process in processes.values():
            process.wait_stopped()
        for node in nodes:
            node.stop()


@pytest.fixture
async def nc(deployment: Deployment):
    """A client of the whole cluster, as an operator's `nats` CLI would be."""
    bus = await Bus.connect(NatsOptions.from_env(deployment.nats_url), name="deploy-test")
    try:
        yield bus.nc
    finally:
        await bus.close()


async def ask(nc, subject: str, body: Any = None, headers: dict | None = None) -> tuple[Any, Any]:
    """``nats req <subject> '<json>'``: (error code header or None, decoded body)."""
    payload = b"" if body is None else json.dumps(body).encode()
    reply = await nc.request(subject, payload, timeout=5, headers=headers)
    return (reply.headers or {}).get("Nats-Service-Error-Code"), json.loads(reply.data)


async def ask_until_acknowledged(nc, subject: str, body: Any, key: str, timeout: float) -> Any:
    """A write retried with one Idempotency-Key until answered (NATS or a leader may be away)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            code, answer = await ask(nc, subject, body, {"Idempotency-Key": key})
            if code is None:
                return answer
            assert code == "503", answer  # anything but "not now" is a bug
        except AssertionError:
            raise
        except Exception:  # no responders, no answer in time: the gateway is reconnecting
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{subject} {key} not acknowledged within {timeout}s")
        await asyncio.sleep(0.2)


async def default_swarm_ready(nc) -> bool:
    try:
        code, agents = await ask(nc, "swarm.cmd.default.list_agents")
    except Exception:  # no gateway answering yet
        return False
    defaults = {"frontend-agent", "backend-agent", "qa-agent"}
    return code is None and defaults <= {a["id"] for a in agents if a["status"] == "idle"}


def doctor(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "doctor"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_doctor_with_a_bad_nats_url_says_what_is_wrong_and_how_to_fix_it(tmp_path) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "NATS_URL": f"nats://127.0.0.1:{free_port()}",
        "SWARM_API_URL": f"http://127.0.0.1:{free_port()}",
        "SWARM_API_TOKEN": TOKEN,
    }

    result = doctor(env, tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(r"^✗ NATS: cannot reach NATS at nats://127\.0\.0\.1", result.stdout, re.M)
    assert "fix: start NATS" in result.stdout and "NATS_URL" in result.stdout


async def test_doctor_reports_all_clear_on_the_running_deployment(
    deployment: Deployment, nc, tmp_path
) -> None:
    await eventually(lambda: default_swarm_ready(nc), 30, "the executor's three agents")

    result = doctor(deployment.env, tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert not [line for line in lines if line.startswith(("✗", "?"))], result.stdout
    for name in (
        "NATS",
        "JetStream",
        "SWARM_EVENTS",
        "buckets",
        "fsync",
        "gateway",
        "scheduler",
        "executor",
        "chat",
        "agents",
        "gateway /health",
        "API token",
    ):
        assert any(line.startswith(f"✓ {name}:") for line in lines), (name, result.stdout)
    assert "cluster swarm of 3 servers" in result.stdout
    assert "sync_interval always on n1, n2, n3" in result.stdout
    executors = next(line for line in lines if line.startswith("✓ executor:"))
    assert host_executor_id(socket.gethostname()) in executors  # SWARM_EXECUTOR_ID=auto


async def test_plain_nats_requests_create_a_task_and_read_its_status(
    deployment: Deployment, nc
) -> None:
    await eventually(lambda: default_swarm_ready(nc), 30, "the executor's three agents")
    infos = []
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await nc.publish("$SRV.INFO.swarm-gateway", b"", reply=inbox)  # nats service info
    infos.append(json.loads((await sub.next_msg(timeout=5)).data))
    await sub.unsubscribe()
    assert {"create_task", "status", "get_task"} <= {e["name"] for e in infos[0]["endpoints"]}

    code, task = await ask(
        nc,
        "swarm.cmd.default.create_task",
        {"title": "from nats req", "runtime": "shell", "prompt": "echo hello from the cluster"},
    )
    assert code is None, task

    async def finished() -> Any:
        code, detail = await ask(nc, "swarm.cmd.default.get_task", {"task": task["id"]})
        return detail if code is None and detail["status"] in TERMINAL else None

    detail = await eventually(finished, 30, f"task {task['id']} to end")
    assert detail["status"] == "completed", detail
    assert "hello from the cluster" in (detail["result"] or "")
    assert [e["type"] for e in detail["events"]] == [
        "task.created",
        "task.claimed",
        "task.running",
        "task.completed",
    ]
    code, status = await ask(nc, "swarm.cmd.default.status")
    assert code is None and status["tasks"]["completed"] >= 1
    code, posted = await ask(nc, "swarm.cmd.default.chat_post", {"message": "hi @qa"})
    assert code is None and posted["recipients"] == ["qa-agent"], posted


async def test_a_second_executor_replica_has_its_own_id_and_takes_up_agents_from_the_api(
    deployment: Deployment, nc
) -> None:
    if "executor-2" not in deployment.processes:
        pytest.skip("this machine cannot give a process a host name of its own (unshare --uts)")
    await eventually(lambda: default_swarm_ready(nc), 30, "the executor's three agents")

    code, agent = await ask(
        nc, "swarm.cmd.default.register_agent", {"name": "Docs Agent", "skills": "docs"}
    )
    assert (code, agent["id"]) == (None, "docs-agent"), agent
    assert agent["executor"] in (None, SECOND_HOST), agent  # it may be taken up already

    async def hosts() -> dict[str, str] | None:
        code, agents = await ask(nc, "swarm.cmd.default.list_agents")
        found = {a["id"]: a["executor"] for a in agents} if code is None else {}
        return found if found.get("docs-agent") == SECOND_HOST else None

    hosted = await eventually(hosts, 20, "the second replica to take up docs-agent")
    first = host_executor_id(socket.gethostname())
    assert {hosted[a] for a in ("frontend-agent", "backend-agent", "qa-agent")} == {first}
    code, task = await ask(
        nc,
        "swarm.cmd.default.create_task",
        {"title": "where am I", "tags": ["docs"], "runtime": "shell", "prompt": "hostname"},
    )
    assert code is None, task

    async def finished() -> Any:
        code, detail = await ask(nc, "swarm.cmd.default.get_task", {"task": task["id"]})
        return detail if code is None and detail["status"] in TERMINAL else None

    detail = await eventually(finished, 30, "the docs task to end")
    assert (detail["status"], detail["agent"]) == ("completed", "docs-agent")
    assert SECOND_HOST in detail["result"]  # it ran on the second replica's host


def jsz_stream(node: EmbeddedNats, name: str) -> dict | None:
    """The stream as this server holds it (its own replica), from its monitoring port."""
    jsz = http_json(f"{node.monitor_url}/jsz?streams=true")
    if not jsz or "account_details" not in jsz:
        return None
    for account in jsz["account_details"]:
        for stream in account.get("stream_detail") or []:
            if stream["name"] == name:
                return stream["state"]
    return None


async def test_a_nats_node_killed_mid_run_loses_no_event_and_every_task_ends(
    deployment: Deployment, nc
) -> None:
    await eventually(lambda: default_swarm_ready(nc), 30, "the executor's three agents")
    js = nc.jetstream()
    leader = (await js.stream_info(subjects.EVENTS_STREAM)).cluster.leader
    victim = deployment.node(leader)  # the event log's leader: the worst node to lose
    run = uuid.uuid4().hex[:6]
    acknowledged: dict[str, int] = {}  # task id -> the log position its creation was acked at

    async def create(index: int) -> None:
        body = {
            "title": f"run {run} task {index}",
            "runtime": "shell",
            "prompt": f"sleep 0.3; echo task {index} done",
        }
        task = await ask_until_acknowledged(
            nc, "swarm.cmd.default.create_task", body, f"{run}-{index}", timeout=45
        )
        # 201/200: the task; 202 (still being applied): its id and the position it was written at
        acknowledged[task["id"]] = task["seq"] if task.get("applying") else task["created_seq"]

    for index in range(6):
        await create(index)

    async def something_running() -> bool:
        code, tasks = await ask(nc, "swarm.cmd.default.list_tasks", {"status": "running"})
        return code is None and len(tasks) > 0

    await eventually(something_running, 20, "a task running")
    victim.kill()
    for index in range(6, 12):  # while the cluster elects new leaders
        await create(index)

    async def all_ended() -> list[dict] | None:
        try:
            code, tasks = await ask(nc, "swarm.cmd.default.list_tasks")
        except Exception:  # the gateway reconnecting
            return None
        if code is not None:
            return None
        mine = [t for t in tasks if t["id"] in acknowledged]
        ended = len(mine) == len(acknowledged) and all(t["status"] in TERMINAL for t in mine)
        return mine if ended else None

    try:
        tasks = await eventually(all_ended, 90, "every task to end")
    except AssertionError:
        raise AssertionError(deployment.describe()) from None
    assert {t["status"] for t in tasks} == {"completed"}, tasks
    code, everything = await ask(nc, "swarm.cmd.default.list_tasks")
    assert code is None, everything
    titles = [t["title"] for t in everything if t["title"].startswith(f"run {run} ")]
    assert sorted(titles) == sorted(f"run {run} task {i}" for i in range(12))  # retried: once
    for task_id in acknowledged:
        code, detail = await ask(nc, "swarm.cmd.default.get_task", {"task": task_id})
        assert code is None, detail
        verbs = [e["type"] for e in detail["events"]]
        assert verbs[0] == "task.created" and verbs[-1] == "task.completed", verbs
        assert {"task.claimed", "task.running"} <= set(verbs), verbs
    for task_id, seq in acknowledged.items():  # every acknowledged append is in the log
        message = await js.get_msg(subjects.EVENTS_STREAM, seq)
        assert message.subject == subjects.event("default", "task", task_id, "created")
    for process in deployment.processes.values():
        assert process.popen.poll() is None, f"{process.name} died:\n{process.tail()}"

    victim.start()
    others = [node for node in deployment.nodes if node is not victim]

    def caught_up() -> bool:
        states = [jsz_stream(node, subjects.EVENTS_STREAM) for node in deployment.nodes]
        known = [state for state in states if state is not None]
        if len(known) < len(states):
            return False
        return len({(s["messages"], s["last_seq"]) for s in known}) == 1

    wait_until(caught_up, 30, f"{victim.name} to catch up")
    alone = await Bus.connect(NatsOptions.from_env(victim.url), name="only-the-victim")
    try:
        assert alone.nc.connected_url.port == victim.port
        mine = await alone.js.stream_info(subjects.EVENTS_STREAM)
    finally:
        await alone.close()
    theirs = jsz_stream(others[0], subjects.EVENTS_STREAM)
    assert theirs is not None
    assert mine.state.messages == theirs["messages"]
    assert mine.state.last_seq == theirs["last_seq"]
