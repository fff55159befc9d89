"""The ``daytona`` sandbox backend end to end: the executor in this process on the session NATS (the
scheduler played by hand), the real ``daytona`` SDK against a local fake of Daytona
(``fake_daytona.py``: sandboxes are temporary directories, commands real processes, the server's
behaviour). The pure decisions are in ``test_daytona_decisions.py``; the backend against each of
the fake's realism switches in ``test_daytona_realism.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import executor_support
import pytest
import structlog
from executor_support import StartExecutor, create_and_claim, finished, until
from fake_daytona import FakeDaytona, sdk_server
from git_support import Remote

from schemas import events as ev
from schemas import subjects
from schemas.errors import Invalid
from services.bus import logs
from services.bus.history import Feed, aggregate_events
from services.bus.projection import Projection
from services.bus.service import Bus
from services.executor.runtimes import ClaudeOptions
from services.executor.sandboxes import daytona
from services.executor.sandboxes.daytona import (
    DaytonaBackend,
    DaytonaSandbox,
    sandbox_labels,
)
from services.executor.service import Executor

watch = executor_support.watch  # fixtures
start_executor = executor_support.start_executor

CANARY = "sk-ant-canary-7f3a9c0d1e2b"
GIT_CANARY = "ghp_canary_5e6f7a8b9c0d"
FAST = {"retries": 3, "retry_backoff": 0.01}


# --- end to end: the fixtures --------------------------------------------------------------------


@pytest.fixture
async def fake() -> AsyncIterator[FakeDaytona]:
    server = await FakeDaytona().start()
    yield server
    await server.stop()


def daytona_env(fake: FakeDaytona, **more: str) -> dict[str, str]:
    return {"DAYTONA_API_KEY": fake.api_key, "DAYTONA_API_URL": fake.api_url, **more}


async def start_daytona(
    start_executor: StartExecutor,
    fake: FakeDaytona,
    env: dict[str, str] | None = None,
    **overrides: object,
):
    settings = {**FAST, **overrides.pop("daytona", {})}  # type: ignore[dict-item]
    return await start_executor(
        env=daytona_env(fake, **(env or {})), backend="daytona", daytona=settings, **overrides
    )


async def prepared(executor: Executor, fake: FakeDaytona, agent: str = "qa-agent"):
    """The agent's sandbox (in the fake), once the executor has found or made it."""
    hosted = executor.hosted[agent].sandbox
    assert isinstance(hosted, DaytonaSandbox)
    remote = await hosted.ready()  # waits for the executor's preparation
    sandbox = fake.sandboxes[remote.id]
    assert sandbox.state == "started"
    return sandbox


def sandbox_of(fake: FakeDaytona, swarm: str, agent: str = "qa-agent"):
    found = fake.by_labels(swarm=swarm, agent=agent)
    assert len(found) == 1, found
    return found[0]


async def claim_again(
    bus: Bus, watch: Projection, swarm: str, task_id: str, agent: str = "qa-agent"
) -> None:
    """Play the scheduler for a requeued task: claim its next attempt (the executor follows the
    log and runs it)."""
    task = watch.board.task(swarm, task_id)
    assert task is not None and task.status == "requeued"
    claimed = ev.TaskClaimed(
        swarm=swarm, id=task_id, time=time.time(), agent=agent, attempt=task.attempt
    )
    seq = await bus.events.append(claimed, expected_seq=watch.board.version(swarm, "task", task_id))
    await watch.wait_for(seq)


# --- the sandbox on its own (no executor) -------------------------------------------------------


async def test_exec_takes_stdin_and_a_cwd_and_a_cancel_or_a_cancelled_caller_stops_it(
    fake: FakeDaytona,
) -> None:
    backend = DaytonaBackend.configured(FAST, source_env=daytona_env(fake))
    try:
        sandbox = await backend.create("s-unit", "qa-agent")
        await sandbox.ready()
        root = fake.sandboxes[sandbox.id].root
        (root / "sub").mkdir()
        out: list[tuple[str, bytes]] = []
        result = await sandbox.exec(
            ["bash", "-c", "pwd; cat; echo oops >&2"],
            on_output=lambda stream, data: out.append((stream, data)),
            stdin=b"fed through stdin\n",
            cwd="sub",
            merge_stderr=True,
        )
        assert result.exit_code == 0 and {stream for stream, _ in out} == {"stdout"}
        assert b"".join(d for _, d in out).decode() == f"{root}/sub\nfed through stdin\noops\n"

        out.clear()
        cancel = asyncio.Event()
        running = asyncio.create_task(
            sandbox.exec(
                ["bash", "-c", "echo $$ > pid; echo up; sleep 60"],
                on_output=lambda stream, data: out.append((stream, data)),
                cancel=cancel,
            )
        )
        await until(lambda: any(b"up" in d for _, d in out), what="the command to start")
        cancel.set()
        result = await running
        assert result.cancelled and not result.timed_out and result.exit_code is None
        first = int((root / "pid").read_text())

        out.clear()
        caller = asyncio.create_task(
            sandbox.exec(
                ["bash", "-c", "echo $$ > pid; echo up; sleep 60"],
                on_output=lambda stream, data: out.append((stream, data)),
            )
        )
        await until(lambda: any(b"up" in d for _, d in out), what="the command to start")
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        second = int((root / "pid").read_text())
        await until(lambda: not alive(first) and not alive(second), timeout=5, what="both gone")
    finally:
        await backend.close()


# --- end to end ----------------------------------------------------------------------------------


async def test_a_task_runs_in_the_agents_labelled_sandbox_and_its_output_streams(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor, fake: FakeDaytona
) -> None:
    executor = await start_daytona(start_executor, fake)
    sandbox = await prepared(executor, fake)  # made when the agent was hosted
    assert {k: sandbox.labels[k] for k in ("swarm", "agent", "managed-by")} == sandbox_labels(
        swarm_id, "qa-agent"
    )
    script = (
        "echo first; for i in $(seq 400); do [ -e go ] && break; sleep 0.025; done; "
        "echo second; exit 3"
    )
    async with Feed(bus.js, subjects.LOGS_STREAM, subjects.log(swarm_id, "*")) as feed:
        task_id, _ = await create_and_claim(bus, watch, swarm_id, prompt=script)
        seen = ""
        while "first" not in seen:  # the first line arrives while the command still runs
            record = await feed.next(timeout=15)
            assert record is not None, "no live output"
            seen += record.data.decode()
        assert "second" not in seen
        (sandbox.root / "go").touch()
        task = await finished(watch, swarm_id, task_id)
    assert task.status == "failed" and task.outcome is not None
    assert task.outcome.exit_code == 3 and "first\nsecond" in task.outcome.result
    assert task.reason == "shell script exited with code 3"
    assert len(fake.create_requests) == 1
    assert not list((sandbox.root / ".swarm" / "runs").iterdir())  # the command's files are gone


async def test_a_timeout_stops_the_command_in_the_sandbox(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor, fake: FakeDaytona
) -> None:
    await start_daytona(start_executor, fake)
    task_id, _ = await create_and_claim(
        bus, watch, swarm_id, prompt="echo $$ > pid; echo started; sleep 60", timeout=1.0
    )
    task = await finished(watch, swarm_id, task_id)
    assert task.status == "failed" and task.reason is not None and task.reason.startswith("timeout")
    assert task.outcome is not None and "started" in task.outcome.result
    pid = int((sandbox_of(fake, swarm_id).root / "pid").read_text())
    await until(lambda: not alive(pid), timeout=5, what=f"process {pid} to be gone")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


async def test_a_vanished_sandbox_is_made_anew_and_the_task_requeued(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor, fake: FakeDaytona
) -> None:
    executor = await start_daytona(start_executor, fake)
    gone = (await prepared(executor, fake)).id
    fake.lose(gone)
    task_id, _ = await create_and_claim(bus, watch, swarm_id, prompt="echo in the new one")
    await until(lambda: watch.board.task(swarm_id, task_id).status == "requeued", what="requeue")
    requeued = [
        e
        for _, e in await aggregate_events(bus.js, swarm_id, "task", task_id)
        if isinstance(e, ev.TaskRequeued)
    ]
    assert requeued[0].attempt == 2 and gone in requeued[0].reason and "gone" in requeued[0].reason
    fresh = sandbox_of(fake, swarm_id)
    assert fresh.id != gone and len(fake.create_requests) == 2
    await claim_again(bus, watch, swarm_id, task_id)
    task = await finished(watch, swarm_id, task_id)
    assert task.status == "completed" and task.attempt == 2
    assert task.outcome is not None and "in the new one" in task.outcome.result


async def test_a_sandbox_daytona_stopped_while_idle_is_started_again_not_replaced(
    bus: Bus,
    watch: Projection,
    swarm_id: str,
    start_executor: StartExecutor,
    fake: FakeDaytona,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(daytona, "FRESH_SECONDS", 0.0)  # check the sandbox before every call
    executor = await start_daytona(start_executor, fake)
    sandbox = await prepared(executor, fake)
    fake.halt(sandbox.id)  # its auto-stop interval passed
    task_id, _ = await create_and_claim(bus, watch, swarm_id, prompt="echo awake")
    task = await finished(watch, swarm_id, task_id)
    assert task.status == "completed" and task.attempt == 1, task.reason
    assert sandbox.state == "started" and len(fake.create_requests) == 1


async def test_daytona_refusing_the_api_key_fails_the_task_with_the_reason(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor, fake: FakeDaytona
) -> None:
    executor = await start_daytona(start_executor, fake)
    await prepared(executor, fake)
    fake.api_key = "rotated-key"  # the executor's key is no longer valid
    started = time.monotonic()
    task_id, _ = await create_and_claim(bus, watch, swarm_id, prompt="echo never")
    task = await finished(watch, swarm_id, task_id)
    assert task.status == "failed" and task.reason is not None
    assert (
        "Daytona auth failed (401 Unauthorized)" in task.reason and "DAYTONA_API_KEY" in task.reason
    )
    assert time.monotonic() - started < 5  # not retried: it fails fast


async def test_rate_limits_and_unavailability_are_retried_with_backoff(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor, fake: FakeDaytona
) -> None:
    fake.fail(503, path="/api/sandbox", method="GET")  # looking up the agent's sandbox
    fake.fail(429, path="/process/session", method="POST", times=2)  # opening a session
    await start_daytona(start_executor, fake)
    task_id, _ = await create_and_claim(bus, watch, swarm_id, prompt="echo made it")
    task = await finished(watch, swarm_id, task_id)
    assert task.status == "completed", task.reason
    assert all(rule["left"] == 0 for rule in fake._failures)
    fake.fail(503, path="/process/session", method="POST", times=10)  # more than the retries
    task_id, _ = await create_and_claim(bus, watch, swarm_id, prompt="echo not this time")
    task = await finished(watch, swarm_id, task_id)
    assert task.status == "failed" and task.reason is not None
    assert (
        "Daytona is unavailable (503 Service Unavailable)" in task.reason
        and "4 tries" in task.reason
    )


async def test_a_restarted_executor_finds_and_reuses_its_agents_sandboxes(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor, fake: FakeDaytona
) -> None:
    first = await start_daytona(start_executor, fake, daytona={"shutdown": "stop"})
    task_id, _ = await create_and_claim(bus, watch, swarm_id, prompt="echo kept > marker")
    assert (await finished(watch, swarm_id, task_id)).status == "completed"
    await first.stop()
    assert sandbox_of(fake, swarm_id).state == "stopped"  # the shutdown policy
    second = await start_daytona(start_executor, fake, daytona={"shutdown": "delete"})
    sandbox = await prepared(second, fake)  # found by its labels, started again
    assert len(fake.create_requests) == 1
    task_id, _ = await create_and_claim(bus, watch, swarm_id, prompt="cat marker")
    task = await finished(watch, swarm_id, task_id)
    assert task.status == "completed" and task.outcome is not None and "kept" in task.outcome.result
    await second.stop()
    assert sandbox.state == "destroyed"


@pytest.mark.skipif(sdk_server() != "hosted", reason="the probe's refusal of the current SDK line")
async def test_an_executor_whose_sdk_does_not_fit_the_server_refuses_to_start_naming_the_fix(
    nats_url: str, swarm_id: str, tmp_path: Path
) -> None:
    from services.bus.connection import NatsOptions
    from services.executor.config import ExecutorConfig

    # given: the current SDK and an open-source v0.190 server
    fake = await FakeDaytona(server="oss").start()
    executor = Executor(
        ExecutorConfig(swarm=swarm_id, data_dir=tmp_path, backend="daytona", daytona=dict(FAST)),
        nats=NatsOptions.from_env(nats_url),
        env=daytona_env(fake),
    )
    try:
        # when / then: the executor says so and does not start (no task fails for it)
        with pytest.raises(Invalid) as refused:
            await executor.start()
    finally:
        await executor.stop()
        await fake.stop()
    assert refused.value.field == "backend"
    assert "daytona-oss" in refused.value.message and "kvm" in refused.value.message
    assert not fake.create_requests


async def test_claude_missing_in_the_sandbox_fails_with_a_clear_reason(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor, fake: FakeDaytona
) -> None:
    await start_daytona(start_executor, fake, claude=ClaudeOptions(bin="claude-not-installed"))
    task_id, _ = await create_and_claim(bus, watch, swarm_id, runtime="claude", prompt="Do it")
    task = await finished(watch, swarm_id, task_id)
    sandbox = sandbox_of(fake, swarm_id)
    assert task.status == "failed" and task.reason is not None
    assert (
        f"'claude-not-installed' is not on the PATH of Daytona sandbox {sandbox.id}" in task.reason
    )


# --- the project's checkout, through the SDK's git API -------------------------------------------


async def append(bus: Bus, watch: Projection, event: ev.Event) -> None:
    seq = await bus.events.append(
        event, expected_seq=watch.board.version(event.swarm, event.aggregate, event.id)
    )
    await watch.wait_for(seq)


async def checkout_round(watch: Projection, swarm: str, agent: str = "qa-agent"):
    def answered() -> bool:
        project = watch.board.swarms[swarm].projects["p1"]
        found = project.checkouts.get(agent)
        return found is not None and found.round == project.round

    await until(answered, timeout=20, what="the checkout")
    return watch.board.swarms[swarm].projects["p1"].checkouts[agent]


async def test_the_project_is_cloned_through_the_git_api_then_pulled_and_inspected(
    bus: Bus,
    watch: Projection,
    swarm_id: str,
    start_executor: StartExecutor,
    fake: FakeDaytona,
    tmp_path: Path,
) -> None:
    remote = Remote(tmp_path / "git")
    await start_daytona(start_executor, fake)
    now = time.time()
    await append(
        bus,
        watch,
        ev.ProjectCreated(
            swarm=swarm_id, id="p1", time=now, name="p1", git_url=f"file://{remote.bare}"
        ),
    )
    await append(bus, watch, ev.ProjectAttached(swarm=swarm_id, id="p1", time=now))
    await append(bus, watch, ev.ProjectInitRequested(swarm=swarm_id, id="p1", time=now))
    checkout = await checkout_round(watch, swarm_id)
    assert checkout.commit == remote.seed and checkout.error is None
    newer = remote.push("NEWS", "it moved\n")
    await append(bus, watch, ev.ProjectSyncRequested(swarm=swarm_id, id="p1", time=time.time()))
    checkout = await checkout_round(watch, swarm_id)
    assert checkout.commit == newer and not checkout.dirty
    sandbox = sandbox_of(fake, swarm_id)
    called = {path.removeprefix(f"/toolbox/{sandbox.id}") for _, path in fake.requests}
    assert "/git/clone" in called  # the clone through the git API; the rest is git itself
    task_id, _ = await create_and_claim(
        bus, watch, swarm_id, prompt="cat NEWS"
    )  # runs in the checkout
    task = await finished(watch, swarm_id, task_id)
    assert (
        task.status == "completed"
        and task.outcome is not None
        and "it moved" in task.outcome.result
    )


# --- credentials ---------------------------------------------------------------------------------


async def stream_text(bus: Bus, stream: str, subject: str) -> str:
    async with Feed(bus.js, stream, subject) as feed:
        records = await feed.backlog()
    return "\n".join(r.data.decode("utf-8", "replace") + repr(r.headers) for r in records)


async def test_credentials_reach_the_command_but_never_a_record(
    bus: Bus,
    watch: Projection,
    swarm_id: str,
    start_executor: StartExecutor,
    fake: FakeDaytona,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    captured = io.StringIO()
    with contextlib.redirect_stderr(captured):
        logs.configure("executor", level="debug")
    try:
        remote = Remote(tmp_path / "git")
        env = {"ANTHROPIC_API_KEY": CANARY, "GITHUB_TOKEN": GIT_CANARY, "FAKE_CLAUDE_MODE": "auto"}
        await start_daytona(start_executor, fake, env=env)
        now = time.time()
        await append(
            bus,
            watch,
            ev.ProjectCreated(
                swarm=swarm_id,
                id="p1",
                time=now,
                name="p1",
                git_url=f"file://{remote.bare}",
                credentials_ref="GITHUB_TOKEN",
            ),
        )
        await append(bus, watch, ev.ProjectAttached(swarm=swarm_id, id="p1", time=now))
        await append(bus, watch, ev.ProjectInitRequested(swarm=swarm_id, id="p1", time=now))
        assert (await checkout_round(watch, swarm_id)).commit == remote.seed
        # the token went to the SDK's git clone, as x-access-token's password
        assert fake.git_logins == [
            ("x-access-token", hashlib.sha256(GIT_CANARY.encode()).hexdigest())
        ]
        task_id, _ = await create_and_claim(
            bus, watch, swarm_id, runtime="claude", prompt="Say what you see"
        )
        task = await finished(watch, swarm_id, task_id)
        # the fake claude succeeds only when ANTHROPIC_API_KEY is in its environment
        assert task.status == "completed", task.reason
        shell_id, _ = await create_and_claim(
            bus, watch, swarm_id, prompt='[ "$ANTHROPIC_API_KEY" = "" ] && echo none'
        )
        assert (
            await finished(watch, swarm_id, shell_id)
        ).status == "completed"  # shell: no credential
    finally:
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()
    records = {
        "events": await stream_text(bus, subjects.EVENTS_STREAM, subjects.swarm_events(swarm_id)),
        "logs": await stream_text(bus, subjects.LOGS_STREAM, f"swarm.log.{swarm_id}.>"),
        "chat": await stream_text(bus, subjects.CHAT_STREAM, subjects.chat_all(swarm_id)),
        "executor log": captured.getvalue(),
        "python log": caplog.text,
        "sandbox labels": repr([s.labels for s in fake.sandboxes.values()]),
        "sandbox env": repr([s.env for s in fake.sandboxes.values()]),
        "create requests": repr(fake.create_requests),
        "session commands": repr(fake.session_commands),
    }
    assert "task.completed" in records["executor log"] and task_id in records["events"]
    for where, text in records.items():
        assert CANARY not in text, f"the Claude credential leaked into the {where}"
        assert GIT_CANARY not in text, f"the git token leaked into the {where}"
    leftovers = list(sandbox_of(fake, swarm_id).root.glob(".swarm/runs/*"))
    assert not leftovers  # the environment files (credentials) do not stay in the sandbox


async def test_an_executor_without_a_daytona_key_refuses_to_start_naming_it(
    nats_url: str, swarm_id: str, tmp_path: Path
) -> None:
    from services.executor.config import ExecutorConfig

    with pytest.raises(Invalid) as caught:
        Executor(
            ExecutorConfig(swarm=swarm_id, data_dir=tmp_path, backend="daytona"),
            env={"PATH": "/usr/bin"},
        )
    assert caught.value.field == "DAYTONA_API_KEY"
