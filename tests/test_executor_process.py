"""The executor service on a real NATS, in this process, with real sandboxes (child processes).

The scheduler is played by hand: the test appends ``task.created`` and ``task.claimed`` with the
expected sequences from its own projection; the executor follows the log and runs the claim.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Any

import executor_support
import pytest
import structlog
from executor_support import (
    API_KEY,
    QA,
    StartExecutor,
    create_and_claim,
    finished,
    idle,
    until,
    verbs,
)

from schemas import events as ev
from schemas import subjects
from services.bus.connection import NatsOptions
from services.bus.history import aggregate_events, log_chunks, read_output
from services.bus.presence import HostRecord, read_hosts
from services.bus.projection import Projection
from services.bus.service import Bus, latest_values
from services.executor.config import AgentConfig, ExecutorConfig
from services.executor.fleet import Fleet
from services.executor.ledger import Ledger
from services.executor.runtimes import ClaudeOptions
from services.executor.service import Executor

watch = executor_support.watch  # fixtures
start_executor = executor_support.start_executor
# --- tests ------------------------------------------------------------------------------------


async def test_shell_task_runs_to_completed_with_output_stored_and_streamed(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor
) -> None:
    executor = await start_executor()
    script = "echo hello; echo oops >&2; printf 'pwd=%s\\n' \"$PWD\""
    task_id, _ = await create_and_claim(bus, watch, swarm_id, prompt=script)
    task = await finished(watch, swarm_id, task_id)

    assert task.status == "completed", task.reason
    assert await verbs(bus, swarm_id, task_id) == ["created", "claimed", "running", "completed"]
    workdir = (executor.config.agents_root / "qa-agent").resolve()
    expected = f"hello\noops\npwd={workdir}\n"
    assert task.outcome is not None
    assert task.outcome.result == expected and task.outcome.exit_code == 0
    assert task.outcome.output == subjects.output_name(swarm_id, task_id, 1)
    assert await read_output(bus.js, task.outcome.output) == expected.encode()
    chunks = await log_chunks(bus.js, swarm_id, task_id)
    assert b"".join(c.data for c in chunks) == expected.encode()
    assert {c.headers.get("Swarm-Attempt") for c in chunks} == {"1"}
    history = await aggregate_events(bus.js, swarm_id, "task", task_id)
    running = history[2][1]
    assert isinstance(running, ev.TaskRunning) and running.executor == "ex-test"


async def test_credentials_never_reach_output_logs_or_events(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor
) -> None:
    await start_executor(env={"ANTHROPIC_API_KEY": API_KEY})
    script = f"echo key=${{ANTHROPIC_API_KEY:-absent}}; echo leaked={API_KEY}"
    task_id, _ = await create_and_claim(bus, watch, swarm_id, prompt=script)
    task = await finished(watch, swarm_id, task_id)
    assert task.status == "completed" and task.outcome is not None
    assert task.outcome.result == "key=absent\nleaked=***\n"
    assert task.outcome.output is not None
    assert await read_output(bus.js, task.outcome.output) == b"key=absent\nleaked=***\n"
    chunks = await log_chunks(bus.js, swarm_id, task_id)
    assert API_KEY.encode() not in b"".join(c.data for c in chunks)
    written = await aggregate_events(bus.js, swarm_id, "task", task_id)
    assert all(API_KEY not in ev.encode(e).decode() for _, e in written[1:])


async def test_failing_shell_script_fails_with_its_exit_code_and_tail(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor
) -> None:
    await start_executor()
    task_id, _ = await create_and_claim(bus, watch, swarm_id, prompt="echo broken; exit 3")
    task = await finished(watch, swarm_id, task_id)
    assert task.status == "failed"
    assert task.reason == "shell script exited with code 3"
    assert task.outcome is not None and task.outcome.exit_code == 3
    assert task.outcome.result == "broken\n"
    assert await verbs(bus, swarm_id, task_id) == ["created", "claimed", "running", "failed"]


async def test_a_failed_run_with_run_failures_left_goes_back_to_the_queue_saying_so(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor
) -> None:
    await start_executor()
    budgets = ev.AttemptBudgets(run_failures=2, run_losses=3, interruptions=20, retry_in=30)
    task_id, _ = await create_and_claim(
        bus, watch, swarm_id, prompt="echo broken; exit 3", budgets=budgets
    )
    await until(lambda: watch.board.task(swarm_id, task_id).status == "requeued")
    assert await verbs(bus, swarm_id, task_id) == ["created", "claimed", "running", "requeued"]
    task = watch.board.task(swarm_id, task_id)
    assert task is not None and (task.attempt, task.runs_failed) == (2, 1)
    assert task.reason == "run 1 failed: shell script exited with code 3; 1 of 2 run failures used"
    assert task.retry_at >= task.updated_at + 30
    assert task.outcome is not None and task.outcome.exit_code == 3


async def test_claude_task_records_result_cost_turns_tokens_and_session(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor
) -> None:
    await start_executor(env={"ANTHROPIC_API_KEY": API_KEY})
    task_id, _ = await create_and_claim(
        bus, watch, swarm_id, title="Create Button", runtime="claude", description="In src/ui."
    )
    task = await finished(watch, swarm_id, task_id)
    assert task.status == "completed", task.reason
    outcome = task.outcome
    assert outcome is not None
    assert outcome.result == f"Done: Task {task_id}: Create Button"
    assert outcome.is_error is False and outcome.exit_code == 0
    assert outcome.cost_usd and outcome.cost_usd > 0
    assert outcome.turns == 2
    assert outcome.usage is not None and outcome.usage.input_tokens > 0
    assert outcome.session_id
    streamed = b"".join(c.data for c in await log_chunks(bus.js, swarm_id, task_id)).decode()
    lines = streamed.splitlines()
    assert lines[0].startswith("· permission mode acceptEdits (the local backend's default)")
    assert lines[1] == (
        f"· claude 2.1.330, model claude-opus-5-5, permission mode acceptEdits, "
        f"session {outcome.session_id}"
    )
    assert lines[2:] == [
        f"Working on: Task {task_id}: Create Button",
        "→ Bash: pwd",
        f"Done: Task {task_id}: Create Button",
    ]
    history = await aggregate_events(bus.js, swarm_id, "task", task_id)
    running = history[2][1]
    assert isinstance(running, ev.TaskRunning)
    assert running.session_id == outcome.session_id and not running.resumed
    for _, event in history:
        assert API_KEY not in ev.encode(event).decode()


async def test_claude_without_credentials_fails_with_the_not_logged_in_message(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor
) -> None:
    await start_executor()
    task_id, _ = await create_and_claim(bus, watch, swarm_id, runtime="claude")
    task = await finished(watch, swarm_id, task_id)
    assert task.status == "failed"
    assert task.reason is not None
    assert task.reason.startswith("Not logged in · Please run /login")
    assert "ANTHROPIC_API_KEY" in task.reason and "CLAUDE_CODE_OAUTH_TOKEN" in task.reason
    assert task.outcome is not None and task.outcome.is_error and task.outcome.session_id
    assert await verbs(bus, swarm_id, task_id) == ["created", "claimed", "running", "failed"]


async def test_missing_claude_binary_fails_saying_how_to_install_it(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor, tmp_path: Path
) -> None:
    await start_executor(claude=ClaudeOptions(bin=str(tmp_path / "no-claude-here")))
    task_id, _ = await create_and_claim(bus, watch, swarm_id, runtime="claude")
    task = await finished(watch, swarm_id, task_id)
    assert task.status == "failed"
    assert task.reason is not None
    assert "npm install -g @anthropic-ai/claude-code" in task.reason
    assert "SWARM_CLAUDE_BIN" in task.reason


async def test_cancelled_running_task_is_killed_and_ends_cancelled(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor
) -> None:
    executor = await start_executor()
    script = "echo $$ > task.pid; echo started; sleep 300; echo finished"
    task_id, _ = await create_and_claim(bus, watch, swarm_id, prompt=script)
    pid_file = executor.config.agents_root / "qa-agent" / "task.pid"
    await until(lambda: pid_file.exists() and pid_file.read_text().strip() != "", what="pid")
    await until(lambda: watch.board.task(swarm_id, task_id).status == "running")
    pid = int(pid_file.read_text())

    cancelled = ev.TaskCancelled(swarm=swarm_id, id=task_id, time=time.time(), reason="by test")
    await bus.events.append(cancelled, expected_seq=watch.board.version(swarm_id, "task", task_id))
    await until(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid), what="killed")
    await idle(executor, task_id)

    assert await verbs(bus, swarm_id, task_id) == ["created", "claimed", "running", "cancelled"]
    task = watch.board.task(swarm_id, task_id)
    assert task is not None and task.status == "cancelled"


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


async def test_timeout_fails_the_task_with_a_reason_naming_the_timeout(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor
) -> None:
    await start_executor()
    task_id, _ = await create_and_claim(
        bus, watch, swarm_id, prompt="echo begun; sleep 300", timeout=1.0
    )
    task = await finished(watch, swarm_id, task_id)
    assert task.status == "failed"
    assert task.reason == "timeout: killed after 1 s (the task's timeout)"
    assert task.outcome is not None and task.outcome.result == "begun\n"


async def test_slow_claude_is_killed_at_the_timeout(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor
) -> None:
    await start_executor(
        env={"ANTHROPIC_API_KEY": API_KEY, "FAKE_CLAUDE_MODE": "slow"}, task_timeout=1.0
    )
    task_id, _ = await create_and_claim(bus, watch, swarm_id, runtime="claude")
    task = await finished(watch, swarm_id, task_id)
    assert task.status == "failed"
    assert task.reason == "timeout: killed after 1 s (the executor's default timeout)"
    assert task.outcome is not None and task.outcome.session_id  # it had started


async def test_instant_task_completes_without_a_process_or_output(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor
) -> None:
    await start_executor()
    task_id, _ = await create_and_claim(bus, watch, swarm_id, runtime="instant")
    task = await finished(watch, swarm_id, task_id)
    assert task.status == "completed"
    assert task.outcome is not None and task.outcome.output is None


async def test_a_claim_that_moved_on_before_it_started_is_not_run(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor
) -> None:
    first = await start_executor()
    await first.stop()
    # while the executor is away: t1 claimed by qa-agent, then cancelled; t2 claimed after it
    task_id = f"t-{uuid.uuid4().hex[:8]}"
    seq = await bus.events.append(
        ev.TaskCreated(swarm=swarm_id, id=task_id, time=time.time(), title="x", runtime="shell"),
        expected_seq=0,
    )
    claim_seq = await bus.events.append(
        ev.TaskClaimed(swarm=swarm_id, id=task_id, time=time.time(), agent="qa-agent", attempt=1),
        expected_seq=seq,
    )
    cancelled = await bus.events.append(
        ev.TaskCancelled(swarm=swarm_id, id=task_id, time=time.time()), expected_seq=claim_seq
    )
    await watch.wait_for(cancelled)
    later, _ = await create_and_claim(bus, watch, swarm_id, prompt="true")

    await start_executor()
    assert (await finished(watch, swarm_id, later)).status == "completed"
    assert await verbs(bus, swarm_id, task_id) == ["created", "claimed", "cancelled"]
    assert await verbs(bus, swarm_id, later) == ["created", "claimed", "running", "completed"]


async def test_a_claim_left_unstarted_by_a_previous_life_is_run_once_when_it_starts(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor
) -> None:
    first = await start_executor()
    await first.stop()
    # claimed while the executor was away (or killed -9 before it appended running)
    task_id, _ = await create_and_claim(bus, watch, swarm_id, prompt="echo once")

    await start_executor()
    task = await finished(watch, swarm_id, task_id)
    assert task.status == "completed" and task.attempt == 1
    assert task.outcome is not None and task.outcome.result == "once\n"
    assert await verbs(bus, swarm_id, task_id) == ["created", "claimed", "running", "completed"]


async def test_agents_are_registered_with_this_executor_and_kept_present(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor
) -> None:
    await start_executor(agents=(QA, AgentConfig("docs-agent", "Docs Agent", "docs", ("docs",))))
    await watch.wait_for(await _last_seq(bus))
    for agent_id in ("qa-agent", "docs-agent"):
        agent = watch.board.agent(swarm_id, agent_id)
        assert agent is not None and agent.executor == "ex-test" and agent.status == "idle"
    assert watch.board.swarms[swarm_id].name == swarm_id
    kv = await bus.kv(subjects.PRESENCE_BUCKET)
    # one key for the executor, listing both
    presence = await until(lambda: listing(kv, swarm_id, "ex-test", 2))
    assert presence.agents == ["docs-agent", "qa-agent"]
    assert presence.executor == "ex-test" and time.time() - presence.time < 10


async def listing(kv: Any, swarm: str, executor: str, count: int) -> HostRecord | None:
    """The executor's presence once it lists ``count`` agents (None before)."""
    record = await read_hosts(kv, swarm, executor)
    return record if record is not None and len(record.agents or ()) == count else None


async def test_an_executor_hosting_many_agents_registers_them_all_under_one_presence_key(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor
) -> None:
    """Many configured agents are set up side by side; all are registered, idle and listed in
    the executor's one presence key, and each runs a claim."""
    fleet = tuple(AgentConfig(f"many-{i}", f"Many {i}", "", ("many",)) for i in range(40))
    executor = await start_executor(agents=fleet, max_agents=40)
    assert sorted(executor.hosted) == sorted(a.id for a in fleet)
    await watch.wait_for(await _last_seq(bus))
    for config in fleet:
        view = watch.board.agent(swarm_id, config.id)
        assert view is not None and (view.executor, view.status) == ("ex-test", "idle")
    kv = await bus.kv(subjects.PRESENCE_BUCKET)
    presence = await until(lambda: listing(kv, swarm_id, "ex-test", len(fleet)))
    assert presence.agents == sorted(a.id for a in fleet)
    keys = [k for k in await latest_values(kv) if k.startswith(f"{swarm_id}.")]
    assert keys == [subjects.host_key(swarm_id, "ex-test")]  # one key, not one per agent
    claims = [
        await create_and_claim(bus, watch, swarm_id, agent, prompt=f"echo {agent}")
        for agent in ("many-0", "many-39")
    ]
    for task_id, _ in claims:
        task = await finished(watch, swarm_id, task_id)
        assert task.status == "completed"


async def test_an_executor_folds_on_demand_while_it_hosts_few_of_the_swarms_agents(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor
) -> None:
    """Hosting all its swarm's agents, the executor folds every event as it is stored; with
    four more agents on another executor (its one is a fifth) it folds on demand, and still
    runs its agent's claim at once; when they leave it folds live again (issue 15)."""
    executor = await start_executor()
    assert executor.projection is not None
    await until(lambda: executor.projection.switches == 0 and not executor.projection.on_demand)
    others = [f"other-{i}" for i in range(4)]
    for agent_id in others:
        registered = ev.AgentRegistered(
            swarm=swarm_id, id=agent_id, time=time.time(), name=agent_id, executor="ex-other"
        )
        await bus.events.append(registered, expected_seq=0)
    await until(lambda: executor.projection.switches == 1, what="folding on demand")
    assert executor.projection.on_demand
    task_id, _ = await create_and_claim(bus, watch, swarm_id, prompt="echo on demand")
    task = await finished(watch, swarm_id, task_id)
    assert task.status == "completed" and task.agent == "qa-agent"
    assert executor.projection.board.task(swarm_id, task_id) is not None
    for agent_id in others:
        version = watch.board.version(swarm_id, "agent", agent_id)
        gone = ev.AgentDeregistered(swarm=swarm_id, id=agent_id, time=time.time())
        await bus.events.append(gone, expected_seq=version)
    projection = executor.projection
    await until(lambda: projection.switches == 2 and not projection.on_demand, what="live again")
    task_id, _ = await create_and_claim(bus, watch, swarm_id, prompt="echo live")
    assert (await finished(watch, swarm_id, task_id)).status == "completed"


async def _last_seq(bus: Bus) -> int:
    info = await bus.js.stream_info(subjects.EVENTS_STREAM)
    return info.state.last_seq


async def test_api_registered_agent_is_taken_up_and_served(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor
) -> None:
    executor = await start_executor()
    api_agent = ev.AgentRegistered(
        swarm=swarm_id, id="api-agent", time=time.time(), name="API Agent", skills=["api"]
    )
    await bus.events.append(api_agent, expected_seq=0)
    await until(lambda: "api-agent" in executor.hosted, what="take-up")
    agent = watch.board.agent(swarm_id, "api-agent")
    await until(lambda: watch.board.agent(swarm_id, "api-agent").executor == "ex-test")
    assert agent is not None
    task_id, _ = await create_and_claim(bus, watch, swarm_id, agent="api-agent", prompt="echo ok")
    task = await finished(watch, swarm_id, task_id)
    assert task.status == "completed" and task.agent == "api-agent"


async def test_an_agent_marked_lost_while_its_executor_lives_comes_back(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor
) -> None:
    await start_executor()
    # the agent's version as of everything the executor has written so far (its registration
    # may still be on its way to this test's fold)
    await watch.wait_for(await _last_seq(bus))
    lost = ev.AgentLost(swarm=swarm_id, id="qa-agent", time=time.time(), reason="stale")
    seq = await bus.events.append(
        lost, expected_seq=watch.board.version(swarm_id, "agent", "qa-agent")
    )

    def back() -> bool:
        agent = watch.board.agent(swarm_id, "qa-agent")
        later = watch.board.version(swarm_id, "agent", "qa-agent") > seq
        return agent is not None and agent.status == "idle" and later

    await until(back, what="qa-agent registered again after it was lost")
    task_id, _ = await create_and_claim(bus, watch, swarm_id, prompt="true")
    assert (await finished(watch, swarm_id, task_id)).status == "completed"


async def test_restart_requeues_the_task_a_previous_life_left_running(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor
) -> None:
    first = await start_executor()
    await first.stop()
    # what the previous life had written before it was killed -9: claimed and running
    task_id = f"t-{uuid.uuid4().hex[:8]}"
    seq = await bus.events.append(
        ev.TaskCreated(swarm=swarm_id, id=task_id, time=time.time(), title="x", runtime="shell"),
        expected_seq=0,
    )
    await watch.wait_for(seq)
    if watch.board.agent(swarm_id, "qa-agent").status != "idle":
        pytest.fail("qa-agent should be idle")
    seq = await bus.events.append(
        ev.TaskClaimed(swarm=swarm_id, id=task_id, time=time.time(), agent="qa-agent", attempt=1),
        expected_seq=seq,
    )
    seq = await bus.events.append(
        ev.TaskRunning(
            swarm=swarm_id,
            id=task_id,
            time=time.time(),
            agent="qa-agent",
            attempt=1,
            executor="ex-test",
        ),
        expected_seq=seq,
    )
    await watch.wait_for(seq)

    await start_executor()
    await until(lambda: watch.board.task(swarm_id, task_id).status == "requeued")
    task = watch.board.task(swarm_id, task_id)
    assert task is not None and task.attempt == 2
    assert task.reason is not None and "ex-test restarted" in task.reason
    assert task.runs_lost == 1  # killed -9 during the run: a run loss


async def test_stopping_executor_gives_the_running_attempt_back(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor
) -> None:
    executor = await start_executor()
    task_id, _ = await create_and_claim(bus, watch, swarm_id, prompt="echo on; sleep 300")
    await until(lambda: watch.board.task(swarm_id, task_id).status == "running")
    await executor.stop()
    await until(lambda: watch.board.task(swarm_id, task_id).status == "requeued")
    assert await verbs(bus, swarm_id, task_id) == ["created", "claimed", "running", "requeued"]
    task = watch.board.task(swarm_id, task_id)
    assert task is not None and task.attempt == 2
    # a clean stop is an interruption, not one of the task's run losses
    assert (task.runs_stopped, task.runs_lost) == (1, 0)


async def test_a_restarted_executor_announces_its_agents_before_it_sets_them_up_again(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor
) -> None:
    first = await start_executor()
    await first.stop()  # a clean stop withdraws the agents' presence
    kv = await bus.kv(subjects.PRESENCE_BUCKET)
    assert await read_hosts(kv, swarm_id, "ex-test") is None

    # the next life's sandboxes take as long as they like (a slow Daytona, many agents)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    second = Executor(first.config, nats=first.nats_options, env=env)
    opened = asyncio.Event()
    create = second.backend.create

    async def slow_create(*args: Any, **kwargs: Any) -> Any:
        await opened.wait()
        return await create(*args, **kwargs)

    second.backend.create = slow_create  # type: ignore[method-assign]
    starting = asyncio.create_task(second.start())
    try:
        # present again while nothing is set up: the scheduler does not see it lost
        presence = await until(lambda: read_hosts(kv, swarm_id, "ex-test"))
        assert presence.agents == ["qa-agent"] and second.hosted == {}
    finally:
        opened.set()
        await starting
        await second.stop()


async def test_an_executor_process_is_ready_only_once_its_home_swarms_executor_is(
    bus: Bus, nats_url: str, swarm_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Placement's fold (agents and swarms) catches up long before the home swarm's executor
    has folded that swarm's tasks: the process's heartbeat says ready only after both."""
    config = ExecutorConfig(
        swarm=swarm_id,
        executor_id=f"fx-{uuid.uuid4().hex[:6]}",
        data_dir=tmp_path / "data",
        agents=(),
        claude=ClaudeOptions(bin=str(executor_support.FAKE_CLAUDE)),
    )
    fleet = Fleet(config, nats=NatsOptions.from_env(nats_url), env={"PATH": os.environ["PATH"]})
    said: list[tuple[bool, bool]] = []  # (placement's fold ready, the process ready)
    start_member = Executor.start

    async def observed_start(member: Executor) -> None:
        assert fleet.projection is not None
        said.append((fleet.projection.ready, fleet.ready))
        await start_member(member)
        said.append((fleet.projection.ready, fleet.ready))

    monkeypatch.setattr(Executor, "start", observed_start)
    await fleet.start()
    try:
        assert said == [(True, False), (True, True)]
        kv = await bus.kv(subjects.SERVICES_BUCKET)
        key = subjects.service_key("executor", fleet.instance)

        async def beat_says_ready() -> bool:
            return b'"ready":true' in ((await kv.get(key)).value or b"")

        await until(beat_says_ready, 10, "a ready heartbeat")
        fleet.members.pop(swarm_id)  # its home executor gone: the process serves nothing
        assert not fleet.ready
    finally:
        await fleet.stop()


async def test_a_write_beaten_by_its_own_first_try_is_taken_as_written_anothers_is_not(
    bus: Bus, watch: Projection, swarm_id: str
) -> None:
    """A ``running`` or a result whose first try landed with its ack lost comes back as a
    conflict when the bus cannot read that first try yet (on a cluster, still being applied).
    Once the fold shows what beat it, the executor asks again: its own event is its start (or
    its result), another writer's is a conflict. Taking its own for another's left a task
    running, run by nobody (CI: a node killed mid-run)."""
    ledger = Ledger(bus, watch, swarm_id, structlog.get_logger())
    now = time.time()
    await bus.events.append(ev.SwarmCreated(swarm=swarm_id, id=swarm_id, time=now, name="s"), 0)
    base = await bus.events.append(
        ev.TaskCreated(swarm=swarm_id, id="t-own", time=now, title="own"), 0
    )

    def running() -> ev.TaskRunning:
        return ev.TaskRunning(
            swarm=swarm_id, id="t-own", time=now, agent="qa-agent", attempt=1, executor="ex"
        )

    first_try = running()
    landed = await bus.events.append(first_try, expected_seq=base)
    assert await ledger.beaten_by_itself(first_try, base) == landed
    assert await ledger.beaten_by_itself(running(), base) is None  # another writer's
    assert watch.board.version(swarm_id, "task", "t-own") == landed
