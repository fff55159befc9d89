"""The ``swarm`` CLI's API commands against an in-process gateway on real NATS: the prototype's
positional task form and status layout, lists, cancel, logs, events, replay, ``--wait``, and
errors as one line with a non-zero exit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from gateway_support import Run, cli_runner, gateway_on, running

from schemas import events as ev
from schemas import subjects
from services.bus.embedded import free_port
from services.bus.history import ATTEMPT_HEADER
from services.bus.service import Bus
from services.gateway.service import Gateway

TOKEN = "cli-test-token"


@pytest.fixture(scope="module")
async def gateway(nats_url: str) -> AsyncIterator[Gateway]:
    async with running(gateway_on(nats_url, TOKEN)) as started:
        yield started


@pytest.fixture
async def swarm(gateway: Gateway, bus: Bus, swarm_id: str) -> str:
    seq = await bus.events.append(
        ev.SwarmCreated(swarm=swarm_id, id=swarm_id, time=time.time(), name="dev-swarm"), 0
    )
    await gateway.projection.wait_for(seq)
    return swarm_id


@pytest.fixture
def run(
    gateway: Gateway,
    swarm_id: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> Run:
    return cli_runner(monkeypatch, capsys, tmp_path, url=gateway.url, token=TOKEN, swarm=swarm_id)


async def append(bus: Bus, gateway: Gateway, event: ev.Event) -> int:
    seq = await bus.events.append(event)
    await gateway.projection.wait_for(seq)
    return seq


async def put_to_work(bus: Bus, gateway: Gateway, swarm: str, task: str, agent: str) -> None:
    now = time.time()
    await append(
        bus, gateway, ev.TaskClaimed(swarm=swarm, id=task, time=now, agent=agent, attempt=1)
    )
    await append(
        bus, gateway, ev.TaskRunning(swarm=swarm, id=task, time=now, agent=agent, attempt=1)
    )


async def register(bus: Bus, gateway: Gateway, swarm: str, agent: str, name: str, role: str):
    await append(
        bus,
        gateway,
        ev.AgentRegistered(
            swarm=swarm, id=agent, time=time.time(), name=name, role=role, executor="local"
        ),
    )


async def complete(bus: Bus, gateway: Gateway, swarm: str, task: str, agent: str, result: str):
    event = ev.TaskCompleted(
        swarm=swarm,
        id=task,
        time=time.time(),
        agent=agent,
        attempt=1,
        outcome=ev.RunOutcome(result=result),
    )
    await append(bus, gateway, event)


async def test_task_in_the_prototype_positional_form_prints_the_new_id(
    run: Run, swarm: str, gateway: Gateway
) -> None:
    code, out, err = await run("task", "Create Button", "frontend,ui", "high")
    assert (code, err) == (0, "")
    first = out.strip()
    task = gateway.projection.board.task(swarm, first)
    assert task is not None
    assert (task.title, task.tags, task.priority, task.status) == (
        "Create Button",
        ["frontend", "ui"],
        "high",
        "pending",
    )
    code, out, _ = await run(
        "task", "Test Button", "qa,test", "medium", first, "--runtime", "shell"
    )
    second = gateway.projection.board.task(swarm, out.strip())
    assert (second.depends, second.runtime, second.status) == ([first], "shell", "blocked")
    code, out, _ = await run("task", "Urgent fix", "critical")
    urgent = gateway.projection.board.task(swarm, out.strip())
    assert (urgent.priority, urgent.tags) == ("critical", [])


async def test_status_prints_the_prototype_layout(
    run: Run, swarm: str, gateway: Gateway, bus: Bus
) -> None:
    await register(bus, gateway, swarm, "frontend-agent", "Frontend Agent", "frontend")
    await register(bus, gateway, swarm, "backend-agent", "Backend Agent", "backend")
    _, busy, _ = await run("task", "Build API")
    await run("task", "Later")
    await put_to_work(bus, gateway, swarm, busy.strip(), "backend-agent")
    code, out, _ = await run("status")
    assert code == 0
    assert out.splitlines() == [
        "=== SWARM ===",
        "Name: dev-swarm",
        "Status: active",
        "Sandboxes: 2",
        "Spent: $0.00 (no budget)",
        "",
        "=== AGENTS ===",
        "[🟢 IDLE] Frontend Agent (frontend)",
        "[🔵 WORKING] Backend Agent (backend)",
        f"  └─ Task: {busy.strip()}",
        "",
        "=== TASKS ===",
        "Pending: 1",
        "Running: 1",
        "Completed: 0",
    ]


async def test_status_shows_costs_and_the_budget_that_holds_claude_tasks(
    run: Run, swarm: str, gateway: Gateway, bus: Bus
) -> None:
    await register(bus, gateway, swarm, "backend-agent", "Backend Agent", "backend")
    code, out, _ = await run("budget", "1")
    assert (code, out.strip()) == (0, "Spent: $0.00 of a $1.00 budget")
    _, busy, _ = await run("task", "Build API")
    await put_to_work(bus, gateway, swarm, busy.strip(), "backend-agent")
    event = ev.TaskCompleted(
        swarm=swarm,
        id=busy.strip(),
        time=time.time(),
        agent="backend-agent",
        attempt=1,
        outcome=ev.RunOutcome(result="done", cost_usd=1.5),
    )
    await append(bus, gateway, event)
    code, out, _ = await run("status")
    lines = out.splitlines()
    assert "Status: budget reached (claude tasks held)" in lines
    assert "Spent: $1.50 of a $1.00 budget" in lines
    assert "Budget reached: swarm budget $1.00 reached ($1.50 spent): its claude tasks are " in (
        out.replace("\n", " ")
    )
    assert "[🟢 IDLE] Backend Agent (backend)  $1.50" in lines
    code, out, _ = await run("budget", "none")
    assert (code, out.strip()) == (0, "Spent: $1.50 (no budget)")


async def test_a_task_s_claude_settings_come_from_its_flags(
    run: Run, swarm: str, gateway: Gateway
) -> None:
    code, out, err = await run(
        "task",
        "Careful work",
        "--permission-mode",
        "plan",
        "--allow-tool",
        "Bash(make *)",
        "--deny-tool",
        "WebFetch",
        "--max-budget-usd",
        "0.75",
    )
    assert (code, err) == (0, "")
    task = gateway.projection.board.task(swarm, out.strip())
    assert task is not None and task.claude is not None
    assert (task.claude.permission_mode, task.claude.max_budget_usd) == ("plan", 0.75)
    assert (task.claude.allowed_tools, task.claude.disallowed_tools) == (
        ["Bash(make *)"],
        ["WebFetch"],
    )


async def test_tasks_agents_and_cancel(run: Run, swarm: str, gateway: Gateway, bus: Bus) -> None:
    await register(bus, gateway, swarm, "qa-agent", "QA Agent", "qa")
    _, out, _ = await run("task", "Check it", "qa")
    task_id = out.strip()
    code, out, _ = await run("tasks")
    assert code == 0
    assert task_id in out and "pending" in out and "Check it" in out
    code, out, _ = await run("agents")
    assert "[🟢 IDLE] QA Agent (qa)" in out and "executor=local" in out
    code, out, _ = await run("cancel", task_id)
    assert (code, out.strip()) == (0, f"{task_id} cancelled")
    _, out, _ = await run("tasks", "--status", "cancelled")
    assert task_id in out


async def test_errors_are_one_line_on_stderr_with_a_non_zero_exit(
    run: Run, swarm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = await run("status", "--swarm", "no-such-swarm")
    assert (code, out) == (1, "")
    assert err == "swarm status: no swarm no-such-swarm\n"
    code, _, err = await run("task", "x", "ui", "urgent")
    assert code == 1
    assert err.startswith("swarm task: priority:") and err.count("\n") == 1
    monkeypatch.setenv("SWARM_API_TOKEN", "wrong")
    code, _, err = await run("tasks")
    assert code == 1 and "SWARM_API_TOKEN" in err and err.count("\n") == 1
    monkeypatch.setenv("SWARM_API_URL", f"http://127.0.0.1:{free_port()}")
    code, _, err = await run("status")
    assert code == 1 and "cannot reach the gateway" in err and err.count("\n") == 1


async def test_task_wait_follows_the_task_until_it_completes(
    run: Run, swarm: str, gateway: Gateway, bus: Bus
) -> None:
    await register(bus, gateway, swarm, "worker", "Worker", "")
    waiting = asyncio.create_task(run("task", "Long job", "--wait", "--id", "long-job"))
    deadline = time.monotonic() + 10
    while gateway.projection.board.task(swarm, "long-job") is None:
        assert time.monotonic() < deadline and not waiting.done(), "task never created"
        await asyncio.sleep(0.02)
    await put_to_work(bus, gateway, swarm, "long-job", "worker")
    assert not waiting.done()
    await complete(bus, gateway, swarm, "long-job", "worker", "all done")
    code, out, err = await asyncio.wait_for(waiting, 20)
    assert code == 0
    assert out.splitlines() == ["long-job", "long-job completed", "all done"]
    assert "long-job claimed agent=worker attempt=1" in err


async def test_logs_prints_the_output_and_follows_live_chunks(
    run: Run, swarm: str, gateway: Gateway, bus: Bus
) -> None:
    await register(bus, gateway, swarm, "talker", "Talker", "")
    _, out, _ = await run("task", "Talk", "--id", "talk")
    await put_to_work(bus, gateway, swarm, "talk", "talker")
    following = asyncio.create_task(run("logs", "talk", "-f"))
    subject = subjects.log(swarm, "talk")
    await bus.js.publish(subject, b"hello\n", headers={ATTEMPT_HEADER: "1"})
    await bus.js.publish(subject, b"world\n", headers={ATTEMPT_HEADER: "1"})
    await complete(bus, gateway, swarm, "talk", "talker", "world")
    code, out, _ = await asyncio.wait_for(following, 20)
    assert (code, out) == (0, "hello\nworld\n")
    store = await bus.js.object_store(subjects.OUTPUT_STORE)
    await store.put(subjects.output_name(swarm, "talk", 1), b"hello\nworld\n(full)")
    code, out, _ = await run("logs", "talk")
    assert (code, out) == (0, "hello\nworld\n(full)\n")


async def test_events_and_replay_show_the_log_and_the_board_as_it_was(
    run: Run, swarm: str, gateway: Gateway
) -> None:
    await run("task", "First", "--id", "first")
    seq = gateway.projection.board.version(swarm, "task", "first")
    await run("task", "Second", "--id", "second")
    code, out, _ = await run("events")
    lines = out.splitlines()
    assert code == 0
    assert [line.split()[2] for line in lines] == ["swarm.created", "task.created", "task.created"]
    assert "title=First" in lines[1]
    code, out, _ = await run("events", "--task", "second")
    assert len(out.splitlines()) == 1 and "title=Second" in out
    code, out, _ = await run("replay", "--at", str(seq))
    assert code == 0
    assert out.splitlines()[0].startswith(f"=== BOARD at seq {seq} ")
    assert "first" in out and "second" not in out


async def test_swarms_lists_and_swarm_create_and_delete_manage_them(
    run: Run, swarm: str, gateway: Gateway, bus: Bus
) -> None:
    other = f"{swarm}-two"
    code, out, err = await run("swarm", "create", other, "--name", "Second")
    assert (code, out.strip(), err) == (0, other, "")
    code, out, _ = await run("swarms")
    lines = {
        line.split()[1] if line.startswith("*") else line.split()[0]: line
        for line in out.splitlines()
    }
    assert lines[swarm].startswith(f"* {swarm}  dev-swarm  0 agents  0 tasks")  # the default
    assert lines[other].startswith(f"  {other}  Second  0 agents  0 tasks")

    # a running task: delete refuses (naming it), --force stops it and deletes
    await register(bus, gateway, other, "qa-agent", "QA Agent", "qa")
    _, task_id, _ = await run("task", "Long one", "qa", "--swarm", other)
    await put_to_work(bus, gateway, other, task_id.strip(), "qa-agent")
    code, _, err = await run("swarm", "delete", other)
    assert code == 1
    assert f"1 claimed or running task(s) ({task_id.strip()})" in err and "--force" in err
    code, out, _ = await run("swarm", "delete", other, "--force")
    assert (code, out.strip()) == (0, f"deleted {other}")
    _, out, _ = await run("swarms")
    assert other not in out


async def test_project_status_tasks_and_replay_show_where_each_tasks_work_landed(
    run: Run, swarm: str, gateway: Gateway, bus: Bus
) -> None:
    await register(bus, gateway, swarm, "be", "Backend", "backend")
    code, project, _ = await run("project", "create", "app", "/srv/app.git", "--verify", "make")
    project = project.strip()
    now = time.time()
    await append(bus, gateway, ev.ProjectInitRequested(swarm=swarm, id=project, time=now))
    synced = ev.ProjectSynced(
        swarm=swarm, id=project, time=now, agent="be", round=1, commit="a" * 40, branch="master"
    )
    await append(bus, gateway, synced)
    await run("task", "Build it", "--id", "build")
    claimed = ev.TaskClaimed(swarm=swarm, id="build", time=now, agent="be", attempt=1)
    await append(bus, gateway, claimed)
    running = ev.TaskRunning(
        swarm=swarm, id="build", time=now, agent="be", attempt=1, branch="swarm/build",
        base="a" * 40,
    )  # fmt: skip
    await append(bus, gateway, running)
    work = ev.Work(project=project, branch="swarm/build", base="a" * 40, head="b" * 40,
                   onto="master", pushed=True, land=True)  # fmt: skip
    done = ev.TaskCompleted(swarm=swarm, id="build", time=now, agent="be", attempt=1, work=work)
    landing_at = await append(bus, gateway, done)
    landed = ev.TaskIntegrated(swarm=swarm, id="build", time=now, attempt=1, project=project,
                               onto="master", landed="c" * 40)  # fmt: skip
    await append(bus, gateway, landed)

    code, out, _ = await run("project", "status")
    assert code == 0
    assert "(branch master (the remote's default))" in out
    assert "Integration: integrate (rebase, verify `make`, on conflict: resolve)" in out
    assert "Tip: ccccccc (1 task(s) landed)" in out
    row = next(line for line in out.splitlines() if line.startswith("be "))
    assert row.split()[1:3] == ["ccccccc", "swarm/build"]
    assert out.splitlines()[-1].split()[0::2] == ["ccccccc", "build"]
    code, out, _ = await run("tasks")
    assert "[landed ccccccc on master]" in out
    code, out, _ = await run("replay", "--at", str(landing_at))
    assert "[landing on master]" in out and "Tip: aaaaaaa (0 task(s) landed)" in out

    code, out, _ = await run("project", "update", "--mode", "branch", "--verify", "")
    assert code == 0 and "Integration: branch" in out
    code, out, _ = await run("project", "update")
    assert code != 0
    code, out, _ = await run("project", "delete")
    assert (code, out.strip()) == (0, f"{project} deleted")
    code, _, err = await run("project", "status")
    assert code == 1 and "has no project" in err
