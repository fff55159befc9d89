"""The ``swarm`` CLI's API commands against an in-process gateway on real NATS: the prototype's
positional task form and status layout, lists, cancel, logs, events, replay, ``--wait``, and
errors as one line with a non-zero exit."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from gateway_support import Run, cli_runner, gateway_on, running
from waiting import until

from cli.api import Api
from schemas import events as ev
from schemas import subjects
from services.bus.connection import NatsOptions
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


async def register(
    bus: Bus,
    gateway: Gateway,
    swarm: str,
    agent: str,
    name: str,
    role: str,
    skills: list[str] | None = None,
) -> None:
    event = ev.AgentRegistered(
        swarm=swarm,
        id=agent,
        time=time.time(),
        name=name,
        role=role,
        executor="local",
        skills=skills or [],
    )
    await append(bus, gateway, event)


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
    run: Run, swarm: str, gateway: Gateway, bus: Bus
) -> None:
    await register(bus, gateway, swarm, "fe", "Frontend", "frontend", skills=["ui"])
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
    run: Run, swarm: str, gateway: Gateway, bus: Bus
) -> None:
    await register(bus, gateway, swarm, "anyone", "Anyone", "")
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
    swarm: str, gateway: Gateway, bus: Bus, tmp_path: Path
) -> None:
    await register(bus, gateway, swarm, "worker", "Worker", "")
    cli = await CliProcess.start(
        "task", "Long job", "--wait", "--id", "long-job", url=gateway.url, swarm=swarm,
        cwd=tmp_path,
    )  # fmt: skip
    try:
        # its progress shows the task's events as they come (plain lines: stderr is a pipe)
        await cli.shows(lambda: "long-job created" in cli.stderr, "the wait following it")
        await put_to_work(bus, gateway, swarm, "long-job", "worker")
        await cli.shows(lambda: "long-job running agent=worker" in cli.stderr, "it running")
        assert cli.process.returncode is None
        await complete(bus, gateway, swarm, "long-job", "worker", "all done")
        assert await cli.finish() == 0, cli.stderr
    finally:
        await cli.kill()
    assert cli.stdout.splitlines() == ["long-job", "long-job completed", "all done"]
    assert "long-job claimed agent=worker attempt=1" in cli.stderr
    assert "\r" not in cli.stderr  # not a terminal: no live line


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
    assert (code, out) == (0, "hello\nworld\n--- result ---\nworld\n")  # ends with the answer
    store = await bus.js.object_store(subjects.OUTPUT_STORE)
    await store.put(subjects.output_name(swarm, "talk", 1), b"hello\nworld\n(full)")
    code, out, _ = await run("logs", "talk")
    assert (code, out) == (0, "hello\nworld\n(full)\n--- result ---\nworld\n")
    _, out, _ = await run("task", "Script", "--id", "script", "--runtime", "shell")
    await put_to_work(bus, gateway, swarm, "script", "talker")
    await complete(bus, gateway, swarm, "script", "talker", "tail of the output")
    code, out, _ = await run("logs", "script")  # a shell task's result is its output's tail
    assert (code, out) == (0, "tail of the output\n")


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
    now = str(gateway.projection.board.seq)
    code, out, _ = await run("replay", "--at", now, "--per-status", "1")
    assert code == 0 and "first" in out and "second" not in out
    assert "… 1 more pending" in out


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


# --- issue 13: what users ask the CLI -----------------------------------------------------------


async def test_task_show_has_reason_tags_deps_agent_cost_tokens_landing_output_and_result(
    run: Run, swarm: str, gateway: Gateway, bus: Bus
) -> None:
    await register(bus, gateway, swarm, "be", "Backend", "backend", skills=["api"])
    await run("task", "Schema", "api", "--id", "schema")
    now = time.time()
    await put_to_work(bus, gateway, swarm, "schema", "be")
    usage = ev.Usage(input_tokens=1200, output_tokens=300, cache_read_input_tokens=5000)
    failed = ev.TaskFailed(
        swarm=swarm, id="schema", time=now, agent="be", attempt=1, reason="exit 1: no db",
        outcome=ev.RunOutcome(result="it broke", cost_usd=0.25, usage=usage, is_error=True),
    )  # fmt: skip
    await append(bus, gateway, failed)
    _, out, _ = await run("task", "Build API", "api", "high", "schema", "--id", "build")
    code, out, _ = await run("task", "show", "build")
    assert code == 0
    lines = out.splitlines()
    assert lines[:7] == [
        "build  Build API",
        "Status:     blocked",
        "Priority:   high    Runtime: claude",
        "Tags:       api",
        "Depends on: schema (failed)",
        "Agent:      -",
        "Attempt:    1",
    ]
    code, out, _ = await run("task", "show", "schema", "--lines", "0")
    assert {
        "Status:     failed",
        "Agent:      be",
        "Attempt:    1 (1 run: 1 failed)",
        "Reason:     exit 1: no db",
        "Cost:       $0.25",
        "Tokens:     1,200 in, 300 out (5,000 cache read)",
    } <= set(out.splitlines())
    assert out.splitlines()[-2:] == ["--- result ---", "it broke"]
    code, out, _ = await run("task", "show", "schema", "--json")
    assert code == 0 and '"usage"' in out and '"events"' in out
    code, _, err = await run("task", "show", "no-such-task")
    assert code == 1 and "no-such-task" in err


async def test_task_show_asks_for_each_dependency_not_the_whole_list(
    run: Run, swarm: str, gateway: Gateway, bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    await register(bus, gateway, swarm, "be", "Backend", "backend", skills=["api"])
    await run("task", "Schema", "api", "--id", "schema")
    await run("task", "Docs", "api", "--id", "docs")
    await run("task", "Scratch", "api", "--id", "scratch")
    await put_to_work(bus, gateway, swarm, "schema", "be")
    await complete(bus, gateway, swarm, "schema", "be", "done")
    await run("task", "Build", "api", "medium", "schema,docs,scratch", "--id", "build")
    await run("cancel", "scratch")
    await append(bus, gateway, ev.TaskDeleted(swarm=swarm, id="scratch", time=time.time()))
    asked: list[str] = []
    opened = Api._open

    def recording(self: Api, method: str, path: str, **kwargs: Any) -> Any:
        asked.append(f"{method} {path}")
        return opened(self, method, path, **kwargs)

    monkeypatch.setattr(Api, "_open", recording)
    code, out, _ = await run("task", "show", "build", "--lines", "0")
    assert code == 0
    assert "Depends on: schema (completed), docs (pending), scratch (gone)" in out.splitlines()
    assert f"GET /swarms/{swarm}/tasks" not in asked  # no listing of every task
    assert {
        f"GET /swarms/{swarm}/tasks/{t}" for t in ("build", "schema", "docs", "scratch")
    } <= set(asked)


async def test_task_show_names_the_branch_and_the_landed_commit(
    run: Run, swarm: str, gateway: Gateway, bus: Bus
) -> None:
    await register(bus, gateway, swarm, "be", "Backend", "backend")
    _, project, _ = await run("project", "create", "app", "/srv/app.git")
    project = project.strip()
    await run("task", "Land it", "--id", "land")
    now = time.time()
    claimed = ev.TaskClaimed(swarm=swarm, id="land", time=now, agent="be", attempt=1)
    await append(bus, gateway, claimed)
    running = ev.TaskRunning(swarm=swarm, id="land", time=now, agent="be", attempt=1,
                             branch="swarm/land", base="a" * 40)  # fmt: skip
    await append(bus, gateway, running)
    work = ev.Work(project=project, branch="swarm/land", base="a" * 40, head="b" * 40,
                   onto="main", pushed=True, land=True)  # fmt: skip
    done = ev.TaskCompleted(swarm=swarm, id="land", time=now, agent="be", attempt=1, work=work,
                            outcome=ev.RunOutcome(result="landed it"))  # fmt: skip
    await append(bus, gateway, done)
    landed = ev.TaskIntegrated(swarm=swarm, id="land", time=now, attempt=1, project=project,
                               onto="main", landed="c" * 40)  # fmt: skip
    await append(bus, gateway, landed)
    store = await bus.js.object_store(subjects.OUTPUT_STORE)
    output = "".join(f"step {n}\n" for n in range(1, 31)).encode()
    await store.put(subjects.output_name(swarm, "land", 1), output)
    code, out, _ = await run("task", "show", "land", "-n", "2")
    lines = out.splitlines()
    assert code == 0
    assert f"Branch:     swarm/land (project {project})" in lines
    assert "Commits:    aaaaaaa → bbbbbbb" in lines
    assert f"Landed:     {'c' * 40} on main" in lines
    assert lines[-6:] == [
        "--- output, attempt 1 (last 2 lines) ---",
        "step 29",
        "step 30",
        "",
        "--- result ---",
        "landed it",
    ]


async def test_tasks_has_reason_and_cost_columns_filters_and_totals(
    run: Run, swarm: str, gateway: Gateway, bus: Bus
) -> None:
    await register(bus, gateway, swarm, "be", "Backend", "backend", skills=["api"])
    await register(bus, gateway, swarm, "fe", "Frontend", "frontend", skills=["ui"])
    await run("task", "API", "api", "--id", "api-task")
    await run("task", "Button", "ui", "--id", "ui-task")
    await run("task", "Later", "ui", "low", "--id", "later")
    await put_to_work(bus, gateway, swarm, "api-task", "be")
    outcome = ev.RunOutcome(cost_usd=0.4, usage=ev.Usage(input_tokens=100, output_tokens=20))
    await append(bus, gateway, ev.TaskFailed(swarm=swarm, id="api-task", time=time.time(),
                 agent="be", attempt=1, reason="tests failed", outcome=outcome))  # fmt: skip
    await put_to_work(bus, gateway, swarm, "ui-task", "fe")
    await complete(bus, gateway, swarm, "ui-task", "fe", "done")
    code, out, _ = await run("tasks")
    lines = out.splitlines()
    assert code == 0
    row = next(line for line in lines if line.startswith("api-task"))
    assert row.split()[:6] == ["api-task", "failed", "medium", "be", "$0.40", "api"]
    assert row.endswith("tests failed")
    assert lines[-2:] == [
        "3 task(s): 1 pending, 1 completed, 1 failed",
        "Cost: $0.40  Tokens: 100 in, 20 out",
    ]
    _, out, _ = await run("tasks", "--agent", "fe")
    assert [line.split()[0] for line in out.splitlines()[1:-3]] == ["ui-task"]
    _, out, _ = await run("tasks", "--tag", "ui", "--status", "pending")
    assert [line.split()[0] for line in out.splitlines()[1:-3]] == ["later"]
    assert out.splitlines()[-2] == "1 task(s): 1 pending"
    code, _, err = await run("tasks", "--status", "stuck")
    assert code == 1 and "status must be one of" in err


async def test_tasks_with_a_limit_prints_a_page_and_how_to_ask_the_next(
    run: Run, swarm: str
) -> None:
    for name in ("one", "two", "three", "four", "five"):
        await run("task", name.title(), "ui", "--id", name)
    await run("task", "Api", "api", "--id", "six")

    def listed(out: str) -> list[str]:
        return [line.split()[0] for line in out.splitlines()[1:-3]]

    code, out, err = await run("tasks", "--limit", "2")
    assert (code, listed(out), err) == (
        0,
        ["one", "two"],
        "more: swarm tasks --limit 2 --after two\n",
    )
    code, out, err = await run("tasks", "--limit", "2", "--after", "two", "--tag", "ui")
    assert (listed(out), err) == (
        ["three", "four"],
        "more: swarm tasks --tag ui --limit 2 --after four\n",
    )
    code, out, err = await run("tasks", "--limit", "2", "--after", "four", "--tag", "ui")
    assert (code, listed(out), err) == (0, ["five"], "")  # the last page
    code, out, err = await run("tasks", "--after", "four")  # no limit: everything after it
    assert (listed(out), err) == (["five", "six"], "")
    code, _, err = await run("tasks", "--limit", "0")
    assert code == 1 and "limit must be" in err
    code, _, err = await run("tasks", "--limit", "2", "--after", "nine")
    assert code == 1 and "after names no task" in err


async def test_a_task_no_agent_can_take_is_warned_about_at_creation_and_in_status(
    run: Run, swarm: str, gateway: Gateway, bus: Bus
) -> None:
    code, out, err = await run("task", "Anything")
    assert code == 0 and out.strip()
    assert err == (
        f"swarm task: warning: no agent is registered in swarm {swarm}: task {out.strip()} "
        f"waits until one is (POST /swarms/{swarm}/agents)\n"
    )
    await register(bus, gateway, swarm, "fe", "Frontend", "frontend", skills=["ui", "css"])
    code, out, err = await run("task", "Design logo", "design", "--id", "logo")
    assert code == 0 and out.strip() == "logo"
    assert err == (
        f"swarm task: warning: no agent of swarm {swarm} has a skill among task logo's tags "
        "(design); it waits until one is registered (agents' skills: css, ui)\n"
    )
    code, out, err = await run("task", "Button", "ui")
    assert (code, err) == (0, "")
    code, out, _ = await run("status")
    assert out.splitlines()[-2:] == [
        "=== WARNINGS ===",
        f"⚠ no agent of swarm {swarm} has a skill among task logo's tags (design); it waits "
        "until one is registered (agents' skills: css, ui)",
    ]
    code, out, _ = await run("task", "Answer", "design", "--json")
    assert code == 0 and '"warnings": [' in out


async def test_a_dependency_id_is_read_as_a_dependency_wherever_it_stands(
    run: Run, swarm: str, gateway: Gateway, bus: Bus
) -> None:
    await register(bus, gateway, swarm, "qa", "QA", "qa", skills=["qa"])
    _, first, _ = await run("task", "First", "qa")
    first = first.strip()
    code, out, err = await run("task", "Dep", "qa", first)  # the example
    assert (code, err) == (0, "")
    dep = gateway.projection.board.task(swarm, out.strip())
    assert dep is not None and (dep.tags, dep.priority, dep.depends) == (["qa"], "medium", [first])
    code, out, _ = await run("task", "Both", f"{first},{dep.id}", "high")
    both = gateway.projection.board.task(swarm, out.strip())
    assert both is not None and (both.depends, both.priority) == ([first, dep.id], "high")


async def test_a_cancel_says_who_cancelled_and_the_task_keeps_its_agent(
    run: Run, swarm: str, gateway: Gateway, bus: Bus
) -> None:
    await register(bus, gateway, swarm, "be", "Backend", "backend")
    await run("task", "Long", "--id", "long")
    await put_to_work(bus, gateway, swarm, "long", "be")
    code, out, _ = await run("cancel", "long")
    assert (code, out.strip()) == (0, "long cancelled")
    _, out, _ = await run("task", "show", "long")
    assert {"Agent:      be", "Reason:     cancelled by cli", "Cancelled:  by cli"} <= set(
        out.splitlines()
    )
    _, out, _ = await run("tasks", "--agent", "be")
    assert out.splitlines()[1].split()[:4] == ["long", "cancelled", "medium", "be"]


async def test_the_env_file_is_found_from_a_subdirectory_and_an_unreachable_api_is_explained(
    run: Run, swarm: str, gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli import envfile

    monkeypatch.delenv("SWARM_API_URL")
    monkeypatch.delenv("SWARM_API_TOKEN")
    monkeypatch.delenv("SWARM_DEFAULT_ID")
    path = envfile.write(
        tmp_path / ".swarm" / "swarm.env",
        {"SWARM_API_URL": gateway.url, "SWARM_API_TOKEN": TOKEN, "SWARM_DEFAULT_ID": swarm},
    )
    deep = tmp_path / "src" / "module"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    code, out, _ = await run("status")
    assert code == 0 and "Name: dev-swarm" in out
    dead = f"http://127.0.0.1:{free_port()}"
    envfile.write(path, {"SWARM_API_URL": dead, "SWARM_API_TOKEN": TOKEN})
    code, _, err = await run("status")
    assert code == 1 and err.count("\n") == 1
    assert f"cannot reach the gateway at {dead} (" in err
    assert f"that URL is SWARM_API_URL in {path}." in err
    monkeypatch.setenv("SWARM_API_URL", dead)
    code, _, err = await run("tasks")
    assert "that URL is SWARM_API_URL in the environment." in err


async def test_wait_gives_up_after_its_timeout_with_a_clear_message(
    run: Run, swarm: str, gateway: Gateway
) -> None:
    code, out, err = await run("task", "Nobody takes it", "--id", "stuck", "--wait",
                               "--wait-timeout", "1")  # fmt: skip
    assert code == 124
    assert out == "stuck\n"
    assert err.splitlines()[-1] == (
        "swarm: gave up waiting after 1s: stuck is still pending (it goes on; see `swarm task "
        "show stuck`)"
    )
    code, _, err = await run("wait", "stuck", "--timeout", "0.5")
    assert code == 124 and "still pending" in err


# --- the CLI as a real process (pipes: plain progress lines; it can be killed) -----------------

REPO = Path(__file__).resolve().parent.parent


class CliProcess:
    """``swarm …`` in its own process against ``url``; its output read as it comes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.out: list[str] = []
        self.err: list[str] = []
        assert process.stdout is not None and process.stderr is not None
        self._pumps = [
            asyncio.create_task(self._pump(process.stdout, self.out)),
            asyncio.create_task(self._pump(process.stderr, self.err)),
        ]

    @classmethod
    async def start(cls, *argv: str, url: str, swarm: str, cwd: Path) -> CliProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SWARM_")}
        env |= {"SWARM_API_URL": url, "SWARM_API_TOKEN": TOKEN, "SWARM_DEFAULT_ID": swarm}
        env["PYTHONPATH"] = str(REPO)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli.main", *argv, cwd=cwd, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        return cls(process)

    @staticmethod
    async def _pump(stream: asyncio.StreamReader, into: list[str]) -> None:
        async for line in stream:
            into.append(line.decode())

    @property
    def stdout(self) -> str:
        return "".join(self.out)

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    async def shows(self, probe: Callable[[], bool], what: str, timeout: float = 30) -> None:
        await until(probe, timeout=timeout, what=f"{what}; stderr: {self.stderr!r}", every=0.05)

    async def finish(self, timeout: float = 60) -> int:
        code = await asyncio.wait_for(self.process.wait(), timeout)
        await asyncio.gather(*self._pumps)
        return code

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        await self.finish()


async def test_wait_outlives_a_gateway_restart_and_sees_the_task_end_meanwhile(
    nats_url: str, bus: Bus, swarm_id: str, tmp_path: Path
) -> None:
    port = free_port()
    first = Gateway(nats=NatsOptions.from_env(nats_url), port=port, token=TOKEN)
    await first.start()
    second: Gateway | None = None
    try:
        now = time.time()
        await append(bus, first, ev.SwarmCreated(swarm=swarm_id, id=swarm_id, time=now, name="s"))
        await register(bus, first, swarm_id, "worker", "Worker", "")
        created = ev.TaskCreated(swarm=swarm_id, id="job", time=now, title="Job", prompt="Job")
        await append(bus, first, created)
        await put_to_work(bus, first, swarm_id, "job", "worker")
        cli = await CliProcess.start(
            "wait", "job", "--timeout", "120", url=first.url, swarm=swarm_id, cwd=tmp_path
        )
        await cli.shows(lambda: "job running agent=worker" in cli.stderr, "following the stream")
        await first.stop()
        await cli.shows(lambda: "cannot reach the gateway" in cli.stderr, "the gateway is gone")
        await bus.events.append(
            ev.TaskCompleted(
                swarm=swarm_id,
                id="job",
                time=time.time(),
                agent="worker",
                attempt=1,
                outcome=ev.RunOutcome(result="all done"),
            )
        )
        second = Gateway(nats=NatsOptions.from_env(nats_url), port=port, token=TOKEN)
        await second.start()
        assert await cli.finish() == 0, cli.stderr
        assert cli.stdout == "job completed\nall done\n"
        assert "the gateway answers again; job is completed" in cli.stderr
    finally:
        await first.stop()
        if second is not None:
            await second.stop()


async def test_events_follow_starts_at_the_tail_unless_from_says_otherwise(
    run: Run, swarm: str, gateway: Gateway, tmp_path: Path
) -> None:
    await run("task", "Before", "--id", "before")
    cli = await CliProcess.start("events", "-f", url=gateway.url, swarm=swarm, cwd=tmp_path)
    made: list[str] = []

    async def a_new_one_shows() -> bool:
        # when the stream started is not visible from here: add tasks until one shows
        made.append(f"after-{len(made)}")
        await run("task", "After", "--id", made[-1])
        return "task.created" in cli.stdout

    try:
        await until(a_new_one_shows, timeout=30, what="a new event", every=0.2)
    finally:
        await cli.kill()
    first = cli.out[0].split()
    assert first[2] == "task.created" and first[3] in made
    assert "before" not in cli.stdout
    everything = await CliProcess.start(
        "events", "-f", "--from", "0", url=gateway.url, swarm=swarm, cwd=tmp_path
    )
    try:
        await everything.shows(lambda: " after-0 " in everything.stdout, "the whole log")
    finally:
        await everything.kill()
    assert everything.out[0].split()[2] == "swarm.created"
    assert " before " in everything.stdout


async def test_project_sync_wait_shows_the_agents_answers_as_they_come(
    run: Run, swarm: str, gateway: Gateway, bus: Bus, tmp_path: Path
) -> None:
    await register(bus, gateway, swarm, "fe", "Frontend", "frontend")
    await register(bus, gateway, swarm, "be", "Backend", "backend")
    _, project, _ = await run("project", "create", "app", "/srv/app.git")
    project = project.strip()
    cli = await CliProcess.start(
        "project", "sync", "--wait", "--timeout", "60", url=gateway.url, swarm=swarm, cwd=tmp_path
    )
    try:
        await cli.shows(lambda: "sync: round 1: 0 of 2 agents answered" in cli.stderr, "none yet")
        for agent in ("fe", "be"):
            synced = ev.ProjectSynced(swarm=swarm, id=project, time=time.time(), agent=agent,
                                      round=1, commit="a" * 40, branch="main")  # fmt: skip
            await append(bus, gateway, synced)
            if agent == "fe":
                await cli.shows(lambda: "round 1: 1 of 2 agents answered" in cli.stderr, "one")
        assert await cli.finish() == 0, cli.stderr
    finally:
        await cli.kill()
    assert "round 1 (sync): 2/2 answered" in cli.stdout
