"""The executor in chat: a line when a task starts, completes or fails, and when its work lands
or cannot land (real git: a local bare remote); and what lets an agent post to chat from its
sandbox (the API's URL, its swarm, a token that may only post chat)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import executor_support
from executor_support import API_KEY, StartExecutor, create_and_claim, finished, until
from git_support import Remote
from test_executor_projects import answered, attach_and_init

from schemas import events as ev
from schemas.agent_tokens import make_agent_token, verify_agent_token
from schemas.board import Integration
from schemas.chat import ChatMessage
from services.bus import chat as chat_bus
from services.bus.connection import NatsOptions
from services.bus.embedded import free_port
from services.bus.history import aggregate_events
from services.bus.projection import Projection
from services.bus.service import Bus
from services.chat.service import Chat
from services.executor import chat_lines, runs
from services.executor.service import ActiveRun
from services.gateway.service import Gateway

watch = executor_support.watch  # fixtures
start_executor = executor_support.start_executor

API_TOKEN = "api-token-for-tests-0123"

# --- the lines (pure) ---------------------------------------------------------------------------


def test_lines_say_who_did_what_to_which_task() -> None:
    assert chat_lines.text("started", "qa-agent", "t-1", "Run the checks") == (
        "▶ qa-agent started t-1: Run the checks"
    )
    assert chat_lines.text("completed", "qa-agent", "t-1", "all green\n") == (
        "✓ qa-agent completed t-1: all green"
    )
    assert chat_lines.text("failed", "qa-agent", "t-1", "exit 3") == "✗ qa-agent failed t-1: exit 3"
    assert chat_lines.text("completed", "qa-agent", "t-1", "  \n") == "✓ qa-agent completed t-1"


def test_a_long_result_is_cut_to_one_short_line() -> None:
    detail = "line one\n\nline two " + "x" * 500
    line = chat_lines.text("completed", "a", "t", detail)
    assert "\n" not in line and "line one line two" in line
    assert line.endswith("…") and len(line.split(": ", 1)[1]) == chat_lines.SHORT_CHARS


def test_a_secret_is_masked_before_the_line_is_cut() -> None:
    detail = "x" * 190 + API_KEY  # cut in the middle of the secret
    message, _ = chat_lines.message("s", "a", "t", 1, "completed", detail, secrets=[API_KEY])
    assert API_KEY[:8] not in message.text and "***" in message.text


def test_a_line_is_the_agents_with_no_mentions_and_a_message_id_per_attempt_and_verb() -> None:
    message, msg_id = chat_lines.message("s", "qa-agent", "t-1", 2, "started", "Ping @frontend")
    assert (message.author, message.author_kind) == ("qa-agent", "agent")
    assert message.mentions == [] and message.recipients == []
    assert msg_id == "s:t-1:2:started"
    again, same_id = chat_lines.message("s", "qa-agent", "t-1", 2, "started", "Ping @frontend")
    assert same_id == msg_id and again.id == message.id


def work(**fields: object) -> Integration:
    return Integration(project="p1", branch="swarm/t-1", onto="main", **fields)  # type: ignore[arg-type]


def test_a_landing_says_the_commit_and_for_a_resolve_task_whose_work_it_brought() -> None:
    landed = work(state="landed", landed="3f2a1b9c0d1e" + "a" * 28)
    assert chat_lines.landing(landed) == ("landed", "3f2a1b9c0d1e")
    assert chat_lines.landing(landed, resolves="t-0") == ("landed", "3f2a1b9c0d1e, with t-0's work")
    verb, detail = chat_lines.landing(landed) or ("started", "")
    assert chat_lines.text(verb, "qa-agent", "t-1", detail, onto="main") == (
        "⬆ qa-agent landed t-1 on main: 3f2a1b9c0d1e"
    )


def test_work_that_cannot_land_says_why_and_what_happens_next() -> None:
    conflict = work(state="conflict", problem="conflict", files=["README", "a.py"], resolve=True)
    assert chat_lines.landing(conflict) == (
        "stuck",
        "conflict in README, a.py; a resolve task follows",
    )
    red = work(state="verify_failed", problem="verify", output="ok 1\nFAILED test_a\n")
    assert chat_lines.landing(red) == ("stuck", "verify failed: FAILED test_a; the task fails")
    broken = work(state="failed", problem="error", output="git push failed: remote away")
    assert chat_lines.landing(broken) == ("stuck", "git push failed: remote away; the task fails")
    line = chat_lines.text("stuck", "qa-agent", "t-1", "conflict in README; x", onto="main")
    assert line == "⚠ qa-agent could not land t-1 on main: conflict in README; x"


def test_nothing_is_said_of_work_whose_landing_is_not_recorded() -> None:
    for state in ("working", "unchanged", "pushed", "landing"):
        assert chat_lines.landing(work(state=state)) is None


def test_both_landing_lines_of_an_attempt_share_one_message_id() -> None:
    _, landed = chat_lines.message("s", "a", "t-1", 2, "landed", "3f2a1b9c0d1e", onto="main")
    _, stuck = chat_lines.message("s", "a", "t-1", 2, "stuck", "conflict in README", onto="main")
    assert landed == stuck == "s:t-1:2:landing"
    assert chat_lines.msg_id("s", "t-1", 3, "landed") == "s:t-1:3:landing"


def test_agents_get_the_api_and_a_token_only_when_the_executor_knows_the_api() -> None:
    env = {"SWARM_API_URL": "http://127.0.0.1:7700", "SWARM_API_TOKEN": API_TOKEN}
    given = runs.api_access(env, "dev", "qa-agent")
    assert given == {
        "SWARM_DEFAULT_ID": "dev",
        "SWARM_API_URL": "http://127.0.0.1:7700",
        "SWARM_AGENT_TOKEN": make_agent_token(API_TOKEN, "dev", "qa-agent"),
    }
    assert runs.api_access({"SWARM_API_URL": "http://x"}, "dev", "a") == {
        "SWARM_DEFAULT_ID": "dev",
        "SWARM_API_URL": "http://x",
    }
    assert runs.api_access({"SWARM_API_TOKEN": API_TOKEN}, "dev", "a") == {
        "SWARM_DEFAULT_ID": "dev"
    }


# --- on real NATS ------------------------------------------------------------------------------


async def lines_of(bus: Bus, swarm: str, count: int) -> list[ChatMessage]:
    """The swarm's chat once it holds ``count`` messages."""

    async def enough() -> list[ChatMessage] | None:
        found = await chat_bus.history(bus.js, swarm)
        return found if len(found) >= count else None

    found: list[ChatMessage] = await until(enough, 10, f"{count} chat lines", every=0.02)
    return found


async def test_a_completed_task_says_it_started_and_what_it_produced(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor
) -> None:
    executor = await start_executor()
    executor.serving.start_line_after = 0.2  # the run below takes longer
    task_id, _ = await create_and_claim(bus, watch, swarm_id, prompt="sleep 1; echo all green")
    assert (await finished(watch, swarm_id, task_id)).status == "completed"
    started, completed = await lines_of(bus, swarm_id, 2)
    assert started.text == f"▶ qa-agent started {task_id}: Run the checks"
    assert completed.text == f"✓ qa-agent completed {task_id}: all green"
    assert {(m.author, m.author_kind) for m in (started, completed)} == {("qa-agent", "agent")}


async def test_a_task_that_ends_before_its_start_line_is_due_says_it_once(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor
) -> None:
    executor = await start_executor()
    executor.serving.start_line_after = 30.0  # far longer than an instant run
    task_id, _ = await create_and_claim(bus, watch, swarm_id, runtime="instant")
    assert (await finished(watch, swarm_id, task_id)).status == "completed"
    (completed,) = await lines_of(bus, swarm_id, 1)
    await until(lambda: task_id not in executor.runs, what="the executor done with the task")
    await executor.serving.chat_lines.join()  # the start line was dropped, not merely late
    assert [m.text for m in await chat_bus.history(bus.js, swarm_id)] == [completed.text]
    assert completed.text.startswith(f"✓ qa-agent completed {task_id}")


async def test_a_failed_task_says_why_with_secrets_masked(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor
) -> None:
    executor = await start_executor(env={"ANTHROPIC_API_KEY": API_KEY})
    executor.serving.start_line_after = 0  # said at once, however short the run
    task_id, _ = await create_and_claim(
        bus, watch, swarm_id, prompt=f"echo key {API_KEY}; exit 3", title=f"Leak {API_KEY}"
    )
    assert (await finished(watch, swarm_id, task_id)).status == "failed"
    started, failed = await lines_of(bus, swarm_id, 2)
    assert started.text == f"▶ qa-agent started {task_id}: Leak ***"
    assert failed.text == f"✗ qa-agent failed {task_id}: shell script exited with code 3"


async def test_a_line_posted_again_for_the_same_attempt_is_stored_once(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor
) -> None:
    executor = await start_executor()
    executor.serving.start_line_after = 0  # said at once, however short the run
    task_id, _ = await create_and_claim(bus, watch, swarm_id, prompt="echo once")
    assert (await finished(watch, swarm_id, task_id)).status == "completed"
    await lines_of(bus, swarm_id, 2)
    run = ActiveRun(swarm_id, task_id, 1, "qa-agent", running_seq=0)
    executor.serving.say(run, "completed", "once")  # a retry of the same attempt's line
    executor.serving.say(run, "started", "Run the checks")
    await executor.serving.chat_lines.join()
    assert [m.text.split(" ", 3)[2] for m in await chat_bus.history(bus.js, swarm_id)] == [
        "started",
        "completed",
    ]


async def with_project(
    bus: Bus, watch: Projection, swarm: str, remote: Remote, **settings: Any
) -> None:
    """The swarm's project on ``remote``, checked out by the executor's agent."""
    await attach_and_init(bus, watch, swarm, remote.url, **settings)
    await answered(watch, swarm, ("qa-agent",))


async def landing_state(watch: Projection, swarm: str, task_id: str) -> str:
    """Once the task's landing is recorded (landed or stuck): its state."""

    def recorded() -> str | None:
        task = watch.board.task(swarm, task_id)
        work = task.integration if task is not None else None
        return work.state if work is not None and work.state not in ("working", "landing") else None

    return await until(recorded, what=f"task {task_id}'s landing to be recorded")


async def test_work_that_lands_says_so_with_the_commit_after_the_completed_line(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor, tmp_path: Path
) -> None:
    remote = Remote(tmp_path / "git")
    executor = await start_executor()
    executor.serving.start_line_after = 0  # said at once, however short the run
    await with_project(bus, watch, swarm_id, remote)
    task_id, _ = await create_and_claim(bus, watch, swarm_id, prompt="echo ok > ok.txt")
    assert await landing_state(watch, swarm_id, task_id) == "landed"
    started, completed, landed = await lines_of(bus, swarm_id, 3)
    assert (started.text[0], completed.text[0]) == ("▶", "✓")
    assert landed.text == f"⬆ qa-agent landed {task_id} on main: {remote.tip()[:12]}"
    assert (landed.author, landed.author_kind) == ("qa-agent", "agent")


async def test_work_that_conflicts_says_why_once_however_often_it_is_said(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor, tmp_path: Path
) -> None:
    remote = Remote(tmp_path / "git")
    executor = await start_executor()
    executor.serving.start_line_after = 0  # said at once, however short the run
    await with_project(bus, watch, swarm_id, remote, on_conflict="fail")
    gate = tmp_path / "gate"
    script = f"while [ ! -e {gate} ]; do sleep 0.02; done\nprintf 'mine\\n' > README"
    task_id, _ = await create_and_claim(bus, watch, swarm_id, prompt=script)
    await until(
        lambda: watch.board.task(swarm_id, task_id).status == "running", what="the run to start"
    )
    remote.push("README", "theirs\n")  # someone else changed the same line meanwhile
    gate.touch()
    assert await landing_state(watch, swarm_id, task_id) == "conflict"
    lines = await lines_of(bus, swarm_id, 3)
    assert lines[2].text == (
        f"⚠ qa-agent could not land {task_id} on main: conflict in README; the task fails"
    )
    run = ActiveRun(swarm_id, task_id, 1, "qa-agent", running_seq=0)
    executor.serving.say(run, "stuck", "conflict in README")  # the same landing said again
    executor.serving.say(run, "landed", "3f2a1b9c0d1e")  # or otherwise: still one line
    await executor.serving.chat_lines.join()
    assert [m.text for m in await chat_bus.history(bus.js, swarm_id)] == [m.text for m in lines]


async def test_an_agent_gets_the_api_its_swarm_and_a_chat_token_that_never_shows(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor
) -> None:
    url = "http://127.0.0.1:7700"
    executor = await start_executor(env={"SWARM_API_URL": url, "SWARM_API_TOKEN": API_TOKEN})
    executor.serving.start_line_after = 0  # both lines, however short the run
    token = make_agent_token(API_TOKEN, swarm_id, "qa-agent")
    digest = hashlib.sha256(token.encode()).hexdigest()  # the task itself must not hold it
    script = (
        'echo "url=$SWARM_API_URL swarm=$SWARM_DEFAULT_ID agent=$SWARM_AGENT_ID"\n'
        'echo "token=$SWARM_AGENT_TOKEN"\n'
        f'[ "$(printf %s "$SWARM_AGENT_TOKEN" | sha256sum)" = "{digest}  -" ] && echo token-given\n'
        'echo "api=${SWARM_API_TOKEN:-absent}"\n'
    )
    task_id, _ = await create_and_claim(bus, watch, swarm_id, prompt=script)
    task = await finished(watch, swarm_id, task_id)
    assert task.status == "completed" and task.outcome is not None
    assert task.outcome.result == (
        f"url={url} swarm={swarm_id} agent=qa-agent\ntoken=***\ntoken-given\napi=absent\n"
    )
    assert verify_agent_token(API_TOKEN, token) == (swarm_id, "qa-agent")
    for _, event in await aggregate_events(bus.js, swarm_id, "task", task_id):
        assert token not in ev.encode(event).decode()
    for message in await lines_of(bus, swarm_id, 2):
        assert token not in message.text


async def test_an_agent_posts_chat_and_a_follow_up_from_its_sandbox_and_nothing_destructive(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor, nats_url: str
) -> None:
    gateway = Gateway(nats=NatsOptions.from_env(nats_url), port=free_port(), token=API_TOKEN)
    chat = Chat(nats=NatsOptions.from_env(nats_url))
    await gateway.start()
    await chat.start()
    try:
        executor = await start_executor(
            env={"SWARM_API_URL": gateway.url, "SWARM_API_TOKEN": API_TOKEN}
        )
        executor.serving.start_line_after = 0  # its start and end lines, however short the run
        post = (
            'curl -s -o /dev/null -w "%{http_code}\\n" -X POST'
            ' -H "Authorization: Bearer $SWARM_AGENT_TOKEN" -H "Content-Type: application/json"'
        )
        script = (
            f'{post} -d \'{{"message": "found the bug", "author": "master"}}\''
            ' "$SWARM_API_URL/swarms/$SWARM_DEFAULT_ID/chat"\n'
            f'{post} -d \'{{"title": "review it"}}\''
            ' "$SWARM_API_URL/swarms/$SWARM_DEFAULT_ID/tasks"\n'
            f'{post.replace("POST", "DELETE")} "$SWARM_API_URL/swarms/$SWARM_DEFAULT_ID"\n'
        )
        task_id, _ = await create_and_claim(bus, watch, swarm_id, prompt=script)
        task = await finished(watch, swarm_id, task_id)
        assert task.status == "completed" and task.outcome is not None
        assert task.outcome.result.split() == ["201", "201", "403"]
        posted = [m for m in await lines_of(bus, swarm_id, 3) if "found the bug" in m.text]
        assert [(m.author, m.author_kind) for m in posted] == [("qa-agent", "agent")]
        follow_ups = [t for t in watch.board.swarms[swarm_id].tasks.values() if t.parent]
        assert [(t.title, t.parent, t.parent_attempt) for t in follow_ups] == [
            ("review it", task_id, 1)
        ]
        assert swarm_id in watch.board.swarms
    finally:
        await chat.stop()
        await gateway.stop()
