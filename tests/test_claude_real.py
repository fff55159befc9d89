"""The real Claude Code CLI (pinned, ``tests/claude_cli``) run by Swarm against the Messages API
stand-in (``tests/fake_anthropic.py``), with Swarm's defaults:

- through ``swarm up`` with only credentials and Claude Code settings in its environment: a task
  that writes a file, runs a command and commits does all of it, as its agent, with the trailer;
  the API key never comes out (events, logs, chat, API answers, files outside the sandbox);
- a run denied a tool is failed naming the tool; an unreachable API is failed naming the base
  URL and the retries; a task's budget stops its run; a swarm's budget holds its claude tasks;
- an attempt after a lost executor continues the earlier attempt's session (``--resume``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import executor_support
import pytest
from claude_cli import cli_env
from executor_support import StartExecutor, create_and_claim, finished
from fake_anthropic import (
    Conversation,
    FakeAnthropic,
    Reply,
    Script,
    Text,
    ToolUse,
    Turn,
    Usage,
    closed_url,
    serving_in_thread,
)
from processes import Api, Cluster, Process
from test_executor_projects import Remote, git
from test_swarm_up import Up
from waiting import until, until_sync

from cli import envfile
from schemas import events as ev
from services.bus import chat as chat_bus
from services.bus.history import aggregate_events, log_chunks
from services.bus.projection import Projection
from services.bus.service import Bus
from services.executor.claude_settings import ClaudeOptions

watch = executor_support.watch  # fixtures
start_executor = executor_support.start_executor

CANARY = "sk-ant-canary-" + uuid.uuid4().hex
EXPENSIVE = Usage(input_tokens=200_000, output_tokens=1_000)  # $0.82 at the CLI's list price


def marker() -> str:
    return f"MARK-{uuid.uuid4().hex[:10]}"


def path_with(claude_bin: Path) -> str:
    """PATH with the pinned CLI first: ``claude`` is found as a user's would be."""
    return f"{claude_bin.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"


# --- through swarm up, with defaults --------------------------------------------------------------


def write_run_commit(mark: str) -> Conversation:
    return Conversation(
        mark,
        [
            Reply(
                [
                    Text("Writing the file first."),
                    ToolUse("Write", {"file_path": "hello.txt", "content": "hello from swarm\n"}),
                ]
            ),
            Reply([ToolUse("Bash", {"command": "python3 -c 'print(6 * 7)'"})]),
            Reply(
                [
                    ToolUse(
                        "Bash",
                        {
                            "command": "git add hello.txt && git commit -q -m 'Add hello.txt'",
                            "description": "commit",
                        },
                    )
                ]
            ),
            Reply([Text("Wrote hello.txt, ran the command (42) and committed.")]),
        ],
    )


def files_holding(root: Path, text: bytes, skip: Path | None = None) -> list[Path]:
    found = []
    for path in root.rglob("*"):
        if skip is not None and path.is_relative_to(skip):
            continue
        try:
            if path.is_file() and not path.is_symlink() and text in path.read_bytes():
                found.append(path)
        except OSError:
            continue
    return found


@pytest.fixture
def up_with(tmp_path: Path) -> Iterator[list[Up]]:
    started: list[Up] = []
    yield started
    for up in started:
        if up.process.poll() is None:
            up.process.send_signal(signal.SIGINT)
            try:
                up.process.wait(30)
            except subprocess.TimeoutExpired:
                up.process.kill()
                up.process.wait()


def test_with_defaults_a_claude_task_writes_runs_a_command_and_commits_as_its_agent(
    claude_bin: Path, tmp_path: Path, up_with: list[Up]
) -> None:
    mark = marker()
    remote = Remote(tmp_path / "git")
    with serving_in_thread(Script([write_run_commit(mark)])) as api:
        env = {
            "PATH": path_with(claude_bin),
            "HOME": str(tmp_path / "home"),
            "LANG": "C.UTF-8",
            **cli_env(api.url, CANARY),
        }
        data = tmp_path / "data"
        up = Up(data, env=env)
        up_with.append(up)
        up.wait_ready()
        client = Api(up.url, envfile.read(data / "swarm.env")["SWARM_API_TOKEN"])
        project = client.ok("POST", "/projects", {"name": "site", "git_url": remote.url})
        client.ok("POST", f"/projects/{project['id']}/init?wait=1&timeout=120")
        task = client.ok(
            "POST",
            "/swarms/default/tasks",
            {"title": "Say hello", "prompt": f"Write hello.txt, run a command, commit. {mark}"},
        )

        def ended() -> dict[str, object] | None:
            found: dict[str, object] = client.ok("GET", f"/swarms/default/tasks/{task['id']}")
            return found if found["status"] in ("completed", "failed") else None

        done: dict = until_sync(ended, 120, "the task to end")
        assert done["status"] == "completed", done["reason"]
        agent = done["agent"]
        checkout = data / "agents" / agent / "project"
        assert (checkout / "hello.txt").read_text() == "hello from swarm\n"
        shown = git("log", "-1", "--format=%an <%ae>%n%B", cwd=checkout)
        names = {a["id"]: a["name"] for a in client.ok("GET", "/swarms/default/agents")}
        assert shown.splitlines()[0] == f"{names[agent]} <{agent}@swarm.local>"
        assert f"Swarm-Task: {task['id']}" in shown
        assert git("status", "--porcelain", cwd=checkout) == ""

        def landed() -> dict[str, object] | None:
            found: dict = client.ok("GET", f"/swarms/default/tasks/{task['id']}")
            work = found.get("integration") or {}
            return found if work.get("state") in ("landed", "conflict", "failed") else None

        landing: dict = until_sync(landed, 120, "the task's work to land")
        assert landing["integration"]["state"] == "landed", landing["integration"]
        on_main = git("log", "-1", "--format=%an <%ae>%n%B", "main", cwd=remote.bare)
        assert on_main.splitlines()[0] == f"{names[agent]} <{agent}@swarm.local>"
        assert f"Swarm-Task: {task['id']}" in on_main  # the agent's own commit, landed
        assert git("show", "main:hello.txt", cwd=remote.bare) == "hello from swarm"
        results = api.tool_results(mark)
        assert [r.get("is_error", False) for r in results] == [False, False, False]
        assert results[1]["text"].strip() == "42"
        assert "Write" in api.tools_offered(mark)
        assert all(r.headers.get("x-api-key") == CANARY for r in api.conversation(mark))
        assert done["outcome"]["cost_usd"] > 0 and done["cost_usd"] == done["outcome"]["cost_usd"]
        assert done["outcome"]["denied_tools"] == []
        output = client.ok("GET", f"/swarms/default/tasks/{task['id']}/output")["output"]
        assert "· permission mode acceptEdits (the local backend's default)" in output
        assert "· claude 2.1.332" in output and "→ Bash: python3" in output
        status = client.ok("GET", "/swarms/default/status")
        assert status["swarm"]["spent_usd"] == pytest.approx(done["cost_usd"])

        # the key went nowhere but into the CLI's own environment
        for path in ("/swarms/default/events?follow=0", "/swarms/default/chat"):
            client.call("GET", path)
        client.call("GET", "/swarms/default/tasks")
        assert not [text for text in client.seen if CANARY in text]
        assert CANARY not in up.out + up.err
        leaked = files_holding(data, CANARY.encode(), skip=data / "agents")
        assert leaked == []
        up.stop()
        leaked = files_holding(data, CANARY.encode(), skip=data / "agents")  # flushed at stop
        assert leaked == []


# --- in-process executor, real CLI ----------------------------------------------------------------


async def real_executor(
    start: StartExecutor, claude_bin: Path, base_url: str, **settings: object
) -> None:
    env = {"PATH": path_with(claude_bin), **cli_env(base_url, CANARY)}
    await start(env=env, claude=ClaudeOptions(bin=str(claude_bin), **settings))  # type: ignore[arg-type]


async def output_of(bus: Bus, swarm: str, task: str) -> str:
    return b"".join(c.data for c in await log_chunks(bus.js, swarm, task)).decode()


async def test_a_run_denied_a_tool_fails_naming_the_tool_and_why(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor, claude_bin: Path
) -> None:
    mark = marker()
    script = Script(
        [
            Conversation(
                mark,
                [
                    Reply([ToolUse("Write", {"file_path": "notes.txt", "content": "ok\n"})]),
                    Reply([ToolUse("Write", {"file_path": "/etc/swarm-denied", "content": "x"})]),
                    Reply([ToolUse("Bash", {"command": "curl -sS http://example.invalid"})]),
                    Reply([Text("Finished (as far as I could).")]),
                ],
            )
        ]
    )
    async with FakeAnthropic(script) as api:
        await real_executor(start_executor, claude_bin, api.url)
        task_id, _ = await create_and_claim(
            bus, watch, swarm_id, title="Tidy up", runtime="claude", prompt=mark
        )
        task = await finished(watch, swarm_id, task_id)
    assert task.status == "failed"
    assert task.reason is not None and task.reason.startswith(
        "claude was denied 2 tool calls: Write (/etc/swarm-denied), Bash (curl -sS "
        "http://example.invalid) — the task is not done"
    )
    assert task.outcome is not None and task.outcome.is_error
    assert [(d.tool, d.input) for d in task.outcome.denied_tools] == [
        ("Write", "/etc/swarm-denied"),
        ("Bash", "curl -sS http://example.invalid"),
    ]
    assert "haven't granted it" in task.outcome.denied_tools[0].message
    denied = [r for r in api.tool_results(mark) if r.get("is_error")]
    assert len(denied) == 2  # what the model was told
    output = await output_of(bus, swarm_id, task_id)
    assert "✗ denied Write: Claude requested permissions to write to /etc/swarm-denied" in output
    said = await until(
        lambda: _failed_line(bus, swarm_id), what="the failure's chat line", timeout=10
    )
    assert "denied 2 tool calls" in said


async def _failed_line(bus: Bus, swarm: str) -> str | None:
    for message in await chat_bus.history(bus.js, swarm):
        if " failed " in message.text:
            return message.text
    return None


async def test_an_unreachable_api_fails_naming_the_base_url_and_the_retries(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor, claude_bin: Path
) -> None:
    nowhere = closed_url()
    await real_executor(start_executor, claude_bin, nowhere)
    task_id, _ = await create_and_claim(bus, watch, swarm_id, title="Hello", runtime="claude")
    task = await finished(watch, swarm_id, task_id)
    assert task.status == "failed"
    assert task.reason is not None
    assert task.reason.startswith(f"API unreachable at {nowhere} after 2 retries: API Error:")
    assert "ECONNREFUSED" in task.reason
    output = await output_of(bus, swarm_id, task_id)
    assert "· API request failed (no answer); retry 1 of 2" in output
    assert "· API request failed (no answer); retry 2 of 2" in output
    for _, event in await aggregate_events(bus.js, swarm_id, "task", task_id):
        assert CANARY not in ev.encode(event).decode()
    assert CANARY not in output


async def test_a_task_s_budget_stops_its_run_and_the_cost_is_recorded(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor, claude_bin: Path
) -> None:
    mark = marker()
    turns: list[Turn] = [
        Reply([ToolUse("Bash", {"command": "ls"})], EXPENSIVE),
        Reply([Text("done")]),
    ]
    async with FakeAnthropic(Script([Conversation(mark, turns)])) as api:
        await real_executor(start_executor, claude_bin, api.url, max_budget_usd=5.0)
        settings = ev.ClaudeTaskSettings(max_budget_usd=0.5)
        task_id, _ = await create_and_claim(
            bus, watch, swarm_id, title="Costly", runtime="claude", prompt=mark, claude=settings
        )
        task = await finished(watch, swarm_id, task_id)
    assert task.status == "failed"
    assert task.reason is not None and task.reason.startswith(
        "claude stopped at the task's budget ($0.82 spent): Reached maximum budget ($0.5)"
    )
    assert task.cost_usd == pytest.approx(0.82)
    assert watch.board.swarms[swarm_id].spent_usd == pytest.approx(0.82)
    assert "budget $0.5" in await output_of(bus, swarm_id, task_id)


# --- real processes: a swarm's budget, a resumed session -----------------------------------


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path / "cluster").start_nats()
    try:
        yield cluster
    finally:
        cluster.close()


def claude_executor(cluster: Cluster, claude_bin: Path, swarm: str, base_url: str) -> Process:
    return cluster.executor(
        "ex-claude",
        swarm,
        ["builder-agent:builder:build"],
        {
            "PATH": path_with(claude_bin),
            "SWARM_CLAUDE_BIN": "claude",  # the default, found on PATH
            "SWARM_PASS_ENV": "",
            **cli_env(base_url, CANARY),
        },
    )


def test_a_swarm_past_its_budget_holds_claude_tasks_until_the_budget_is_raised(
    cluster: Cluster, claude_bin: Path
) -> None:
    first, second = marker(), marker()
    conversations = [
        Conversation(first, [Reply([Text("That was expensive.")], EXPENSIVE)]),
        Conversation(second, [Reply([Text("Cheap this time.")])]),
    ]
    with serving_in_thread(Script(conversations)) as api:
        swarm = f"budget-{uuid.uuid4().hex[:8]}"
        cluster.wait_ready(cluster.gateway(), cluster.scheduler("main"), timeout=90)
        cluster.api.ok("POST", "/swarms", {"id": swarm, "budget_usd": 0.5})
        cluster.wait_ready(claude_executor(cluster, claude_bin, swarm, api.url), timeout=90)
        tasks = f"/swarms/{swarm}/tasks"
        spend = cluster.api.ok("POST", tasks, {"title": "Spend", "prompt": first})
        cluster.wait_task(swarm, spend["id"], {"completed"}, timeout=90)
        held = cluster.api.ok("POST", tasks, {"title": "Wait", "prompt": second})
        shell = cluster.api.ok(
            "POST", tasks, {"title": "Shell", "runtime": "shell", "prompt": "true"}
        )
        cluster.wait_task(swarm, shell["id"], {"completed"}, timeout=60)
        status = cluster.api.ok("GET", f"/swarms/{swarm}/status")
        assert status["swarm"]["budget_reached"].startswith(
            "swarm budget $0.50 reached ($0.82 spent)"
        )
        assert cluster.api.task(swarm, held["id"])["status"] == "pending"
        assert api.conversation(second) == []
        cluster.api.ok("PATCH", f"/swarms/{swarm}", {"budget_usd": 10})
        done = cluster.wait_task(swarm, held["id"], {"completed", "failed"}, timeout=90)
        assert done["status"] == "completed", done["reason"]
        agents = cluster.api.ok("GET", f"/swarms/{swarm}/agents")
        assert agents[0]["spent_usd"] == pytest.approx(0.82 + done["cost_usd"])


def working_in(directory: Path) -> list[int]:
    """Processes whose working directory is ``directory`` or below."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if cwd.is_relative_to(directory):
            found.append(int(entry.name))
    return found


def test_an_attempt_after_a_lost_executor_resumes_the_earlier_session(
    cluster: Cluster, claude_bin: Path
) -> None:
    mark = marker()
    turns: list[Turn] = [
        Reply([ToolUse("Bash", {"command": "echo one > one.txt"})]),
        Reply([ToolUse("Bash", {"command": "echo two > two.txt"})], hold=600),
        Reply([Text("Both files written.")]),
    ]
    with serving_in_thread(Script([Conversation(mark, turns)])) as api:
        swarm = f"resume-{uuid.uuid4().hex[:8]}"
        cluster.wait_ready(cluster.gateway(), cluster.scheduler("main"), timeout=90)
        cluster.api.ok("POST", "/swarms", {"id": swarm})
        executor = claude_executor(cluster, claude_bin, swarm, api.url)
        cluster.wait_ready(executor, timeout=90)
        task = cluster.api.ok(
            "POST", f"/swarms/{swarm}/tasks", {"title": "Two files", "prompt": mark}
        )
        cluster.until(lambda: api.held(mark), 90, "the second turn to stall")
        first = cluster.api.task(swarm, task["id"])
        (running,) = [e for e in first["events"] if e["type"] == "task.running"]
        session = running["session_id"]
        executor.kill()  # kill -9: no goodbye
        sandbox = cluster.root / "executors" / "ex-claude" / "agents" / "builder-agent"
        for pid in working_in(sandbox):  # the machine went down: the CLI with it
            os.kill(pid, signal.SIGKILL)
        assert (sandbox / "one.txt").exists() and not (sandbox / "two.txt").exists()
        again = claude_executor(cluster, claude_bin, swarm, api.url)
        done = cluster.wait_task(swarm, task["id"], {"completed", "failed"}, timeout=120)
        assert done["status"] == "completed", done["reason"]
        assert done["attempt"] == 2
        runs = [e for e in done["events"] if e["type"] == "task.running"]
        assert [(r["attempt"], r["session_id"], r["resumed"]) for r in runs] == [
            (1, session, False),
            (2, session, True),
        ]
        assert (sandbox / "two.txt").read_text() == "two\n"
        resumed = api.conversation(mark)[-2]  # the resumed session's first request
        assert "this is attempt 2" in resumed.user_text
        assert any("echo one" in json.dumps(m) for m in resumed.messages)  # its history
        output = cluster.api.ok("GET", f"/swarms/{swarm}/tasks/{task['id']}/output")["output"]
        assert f"· resuming session {session} of an earlier attempt" in output
        assert again.alive
