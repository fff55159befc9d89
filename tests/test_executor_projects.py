"""The swarm's project in the agents' checkouts, with real git: a local bare repository as the
remote, the executor in this process on real NATS, the gateway played by hand (the test appends
the project events the gateway would)."""

from __future__ import annotations

import asyncio
import base64
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import executor_support
import pytest
from executor_support import QA, StartExecutor, create_and_claim, finished, until
from git_support import Remote, git

from schemas import events as ev
from schemas.board import Checkout, ProjectView
from services.bus.history import aggregate_events
from services.bus.projection import Projection
from services.bus.service import Bus
from services.executor.config import AgentConfig

watch = executor_support.watch  # fixtures
start_executor = executor_support.start_executor

FE = AgentConfig("frontend-agent", "Frontend Agent", "frontend", ("frontend", "ui"))
BE = AgentConfig("backend-agent", "Backend Agent", "backend", ("backend", "api"))
THREE = (FE, BE, QA)
GIT_TOKEN = "ghp_testtoken0123456789abcdef"


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    return Remote(tmp_path / "git")


async def append(bus: Bus, watch: Projection, event: ev.Event) -> int:
    version = watch.board.version(event.swarm, event.aggregate, event.id)
    seq = await bus.events.append(event, expected_seq=version)
    await watch.wait_for(seq)
    return seq


async def attach_and_init(
    bus: Bus,
    watch: Projection,
    swarm: str,
    url: str,
    *,
    project: str = "p1",
    credentials_ref: str | None = None,
    **settings: Any,
) -> None:
    """What ``swarm project create`` + ``init`` would append (``settings``: mode, verify...)."""
    now = time.time()
    created = ev.ProjectCreated(
        swarm=swarm, id=project, time=now, name=project, git_url=url,
        credentials_ref=credentials_ref, **settings,
    )  # fmt: skip
    await append(bus, watch, created)
    await append(bus, watch, ev.ProjectAttached(swarm=swarm, id=project, time=now))
    await append(bus, watch, ev.ProjectInitRequested(swarm=swarm, id=project, time=now))


def project_of(watch: Projection, swarm: str, project: str = "p1") -> ProjectView:
    return watch.board.swarms[swarm].projects[project]


async def answered(
    watch: Projection, swarm: str, agents: tuple[str, ...], *, project: str = "p1", timeout=20.0
) -> dict[str, Checkout]:
    """Wait until every agent answered the project's latest round; their checkouts."""

    def done() -> bool:
        view = project_of(watch, swarm, project)
        return all(
            (c := view.checkouts.get(a)) is not None and c.round == view.round for a in agents
        )

    await until(done, timeout=timeout, what=f"{agents} to answer the {project} request")
    return {a: project_of(watch, swarm, project).checkouts[a] for a in agents}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FakeGitServer:
    """An HTTP server that records each request's headers, then answers 404 (or never)."""

    def __init__(self, *, answer: bool = True) -> None:
        self.answer = answer
        self.requests: list[dict[str, str]] = []
        self._writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> FakeGitServer:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/team/app.git"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")[1:]
        self.requests.append(
            {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines if x)}
        )
        if self.answer:
            writer.write(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            await writer.drain()
            writer.close()
        else:
            await reader.read()  # hold the connection, say nothing

    async def __aexit__(self, *exc: object) -> None:
        for writer in self._writers:
            writer.close()
        assert self.server is not None
        self.server.close()


async def all_events(bus: Bus, swarm: str, project: str = "p1") -> list[ev.Event]:
    return [e for _, e in await aggregate_events(bus.js, swarm, "project", project)]


# --- tests ------------------------------------------------------------------------------------


async def test_init_clones_into_every_agent_and_sync_brings_all_to_the_pushed_commit(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor, remote: Remote
) -> None:
    executor = await start_executor(agents=THREE)
    agents = tuple(a.id for a in THREE)
    await attach_and_init(bus, watch, swarm_id, remote.url)

    first = await answered(watch, swarm_id, agents)
    for agent_id, checkout in first.items():
        assert checkout.state == "synced", checkout.error
        assert (checkout.commit, checkout.round, checkout.dirty) == (remote.seed, 1, False)
        checkout_dir = executor.config.agents_root / agent_id / "project"
        assert (checkout_dir / "README").read_text() == "hello\n"
        assert not (executor.config.agents_root / agent_id / "project.partial").exists()

    pushed = remote.push("CHANGES", "one more\n")
    (executor.config.agents_root / "qa-agent" / "project" / "notes.txt").write_text("mine\n")
    await append(bus, watch, ev.ProjectSyncRequested(swarm=swarm_id, id="p1", time=time.time()))

    second = await answered(watch, swarm_id, agents)
    for agent_id, checkout in second.items():
        assert checkout.state == "synced", checkout.error
        assert (checkout.commit, checkout.round) == (pushed, 2)
        assert (checkout.ahead, checkout.behind) == (0, 0)
        assert checkout.dirty is (agent_id == "qa-agent")
        assert (executor.config.agents_root / agent_id / "project" / "CHANGES").exists()


async def test_init_over_an_existing_checkout_reports_how_far_behind_it_is(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor, remote: Remote
) -> None:
    """Mode ``off`` (Swarm does no git around tasks): init switches branches, like a person
    would, and says how far behind the branch is."""
    await start_executor()
    await attach_and_init(bus, watch, swarm_id, remote.url, mode="off")
    assert (await answered(watch, swarm_id, ("qa-agent",)))["qa-agent"].commit == remote.seed

    remote.push("CHANGES", "later\n")
    await append(bus, watch, ev.ProjectInitRequested(swarm=swarm_id, id="p1", time=time.time()))
    checkout = (await answered(watch, swarm_id, ("qa-agent",)))["qa-agent"]
    assert checkout.state == "synced" and checkout.round == 2
    assert (checkout.commit, checkout.ahead, checkout.behind) == (remote.seed, 0, 1)


async def test_init_over_an_existing_checkout_brings_it_to_the_remotes_tip(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor, remote: Remote
) -> None:
    """With Swarm's branches (the default mode), a checkout sits on the last task's branch
    between tasks: init (and sync) put it on the project branch at the remote's tip."""
    executor = await start_executor()
    await attach_and_init(bus, watch, swarm_id, remote.url)
    await answered(watch, swarm_id, ("qa-agent",))
    checkout_dir = executor.config.agents_root / "qa-agent" / "project"
    git("checkout", "-q", "-b", "swarm/elsewhere", cwd=checkout_dir)

    pushed = remote.push("CHANGES", "later\n")
    await append(bus, watch, ev.ProjectInitRequested(swarm=swarm_id, id="p1", time=time.time()))
    checkout = (await answered(watch, swarm_id, ("qa-agent",)))["qa-agent"]
    assert checkout.state == "synced" and checkout.round == 2
    assert (checkout.commit, checkout.branch, checkout.behind) == (pushed, "main", 0)


async def test_an_unreachable_url_fails_quickly_with_gits_reason(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor
) -> None:
    executor = await start_executor()
    started = time.monotonic()
    url = f"http://127.0.0.1:{closed_port()}/team/app.git"
    await attach_and_init(bus, watch, swarm_id, url, credentials_ref="SWARM_TEST_GIT_TOKEN")
    checkout = (await answered(watch, swarm_id, ("qa-agent",)))["qa-agent"]
    assert time.monotonic() - started < 10
    assert checkout.state == "sync_failed" and checkout.commit is None
    assert checkout.error is not None
    assert checkout.error.startswith("git ls-remote failed: fatal: unable to access")
    assert "Failed to connect" in checkout.error
    assert "credentials_ref SWARM_TEST_GIT_TOKEN is not set in executor ex-test" in checkout.error
    agent_dir = executor.config.agents_root / "qa-agent"
    assert not (agent_dir / "project").exists() and not (agent_dir / "project.partial").exists()

    await attach_and_init(bus, watch, swarm_id, "file:///nonexistent/app.git", project="p2")
    checkout = (await answered(watch, swarm_id, ("qa-agent",), project="p2"))["qa-agent"]
    assert checkout.state == "sync_failed" and checkout.error is not None
    assert "does not appear to be a git repository" in checkout.error


async def test_a_server_that_never_answers_is_cut_off_at_the_git_timeout(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor
) -> None:
    await start_executor(git_timeout=1.0)
    async with FakeGitServer(answer=False) as server:
        started = time.monotonic()
        await attach_and_init(bus, watch, swarm_id, server.url)
        checkout = (await answered(watch, swarm_id, ("qa-agent",)))["qa-agent"]
        assert time.monotonic() - started < 8
    assert checkout.state == "sync_failed"
    assert checkout.error == "git ls-remote failed: timed out (the git timeout is 1 s)"
    assert server.requests, "git never reached the server"


async def test_credentials_reach_the_git_server_as_a_header_and_nothing_else_holds_them(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor
) -> None:
    executor = await start_executor(env={"SWARM_TEST_GIT_TOKEN": GIT_TOKEN})
    async with FakeGitServer() as server:
        await attach_and_init(
            bus, watch, swarm_id, server.url, credentials_ref="SWARM_TEST_GIT_TOKEN"
        )
        checkout = (await answered(watch, swarm_id, ("qa-agent",)))["qa-agent"]
    expected = base64.b64encode(f"x-access-token:{GIT_TOKEN}".encode()).decode()
    assert server.requests[0]["authorization"] == f"Basic {expected}"
    assert checkout.state == "sync_failed" and checkout.error is not None
    assert "not found" in checkout.error
    for event in await all_events(bus, swarm_id):
        assert GIT_TOKEN not in ev.encode(event).decode()
        assert expected not in ev.encode(event).decode()
    leftovers = [p for p in (executor.config.agents_root / "qa-agent").rglob("*") if p.is_file()]
    assert all(GIT_TOKEN.encode() not in p.read_bytes() for p in leftovers)


async def test_an_agent_that_comes_after_init_gets_the_checkout_before_its_first_task(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor, remote: Remote
) -> None:
    executor = await start_executor()
    await attach_and_init(bus, watch, swarm_id, remote.url)
    await answered(watch, swarm_id, ("qa-agent",))

    late = ev.AgentRegistered(swarm=swarm_id, id="late-agent", time=time.time(), name="Late")
    await bus.events.append(late, expected_seq=0)
    await until(lambda: "late-agent" in executor.hosted, what="take-up of late-agent")
    script = 'printf "%s\\n" "$PWD"; git rev-parse HEAD; cat README'
    task_id, _ = await create_and_claim(bus, watch, swarm_id, agent="late-agent", prompt=script)
    task = await finished(watch, swarm_id, task_id)

    assert task.status == "completed", task.reason
    checkout_dir = (executor.config.agents_root / "late-agent" / "project").resolve()
    assert task.outcome is not None
    assert task.outcome.result == f"{checkout_dir}\n{remote.seed}\nhello\n"
    synced_at = [
        seq
        for seq, e in await aggregate_events(bus.js, swarm_id, "project", "p1")
        if isinstance(e, ev.ProjectSynced) and e.agent == "late-agent"
    ]
    running_at = [
        seq
        for seq, e in await aggregate_events(bus.js, swarm_id, "task", task_id)
        if isinstance(e, ev.TaskRunning)
    ]
    assert len(synced_at) == 1 and synced_at[0] < running_at[0]


async def test_a_restarted_executor_does_the_checkouts_left_undone(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor, remote: Remote
) -> None:
    first = await start_executor()
    await first.stop()
    await attach_and_init(bus, watch, swarm_id, remote.url)  # requested while it was away
    await start_executor()
    checkout = (await answered(watch, swarm_id, ("qa-agent",)))["qa-agent"]
    assert checkout.state == "synced" and checkout.commit == remote.seed
    answers = [e for e in await all_events(bus, swarm_id) if isinstance(e, ev.ProjectSynced)]
    assert len(answers) == 1


async def test_a_checkout_that_vanished_is_cloned_again_before_the_next_task(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor, remote: Remote
) -> None:
    """A sandbox recreated from scratch has lost its checkout while the log still calls it
    synced: the next task must still run in the project."""
    executor = await start_executor()
    await attach_and_init(bus, watch, swarm_id, remote.url)
    await answered(watch, swarm_id, ("qa-agent",))
    checkout_dir = (executor.config.agents_root / "qa-agent" / "project").resolve()

    shutil.rmtree(checkout_dir)

    script = 'printf "%s\\n" "$PWD"; cat README'
    task_id, _ = await create_and_claim(bus, watch, swarm_id, agent="qa-agent", prompt=script)
    task = await finished(watch, swarm_id, task_id)

    assert task.status == "completed", task.reason
    assert task.outcome is not None and task.outcome.result == f"{checkout_dir}\nhello\n"
