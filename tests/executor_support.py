"""What the executor's process tests share: the executor in this process on the session NATS,
the test's own fold, and the scheduler played by hand (a task created and claimed).

A test module uses the fixtures by naming them: ``watch = executor_support.watch``.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from waiting import until

from schemas import events as ev
from schemas.board import FINISHED, TaskView
from services.bus.connection import NatsOptions
from services.bus.history import aggregate_events
from services.bus.projection import Projection
from services.bus.service import Bus
from services.executor.config import AgentConfig, ExecutorConfig
from services.executor.runtimes import ClaudeOptions
from services.executor.service import Executor

FAKE_CLAUDE = Path(__file__).parent / "fake_claude.py"
QA = AgentConfig("qa-agent", "QA Agent", "qa", ("qa", "test"))
API_KEY = "sk-ant-test-0123456789abcdef"


@pytest.fixture
async def watch(bus: Bus, swarm_id: str) -> AsyncIterator[Projection]:
    """The test's own fold of the swarm (what the scheduler would see)."""
    projection = bus.projection(swarm=swarm_id)
    await projection.start()
    await projection.wait_ready(10)
    yield projection
    await projection.stop()


StartExecutor = Callable[..., Awaitable[Executor]]


@pytest.fixture
async def start_executor(
    nats_url: str, swarm_id: str, tmp_path: Path
) -> AsyncIterator[StartExecutor]:
    started: list[Executor] = []

    async def start(env: dict[str, str] | None = None, **overrides: object) -> Executor:
        fields: dict = dict(
            swarm=swarm_id,
            executor_id="ex-test",
            data_dir=tmp_path / "data",
            agents=(QA,),
            claude=ClaudeOptions(bin=str(FAKE_CLAUDE)),
            pass_env=("FAKE_CLAUDE_MODE", "FAKE_CLAUDE_SLEEP", "FAKE_CLAUDE_PROMPT_LOG"),
        )
        fields.update(overrides)
        executor = Executor(
            ExecutorConfig(**fields),
            nats=NatsOptions.from_env(nats_url),
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(env or {})},
        )
        await executor.start()
        started.append(executor)
        return executor

    yield start
    for executor in started:
        if not executor.stopping.is_set():
            await executor.stop()


async def create_and_claim(
    bus: Bus,
    watch: Projection,
    swarm: str,
    agent: str = "qa-agent",
    *,
    budgets: ev.AttemptBudgets | None = None,
    **task: object,
) -> tuple[str, int]:
    """Play the scheduler: a new task, claimed by ``agent`` (with ``budgets``, as the scheduler's
    claim carries them; the executor hosting it follows the log and runs it). Returns (id, claim
    seq)."""
    task_id = f"t-{uuid.uuid4().hex[:8]}"
    fields: dict = {"title": "Run the checks", "runtime": "shell"}
    fields.update(task)
    created = ev.TaskCreated(swarm=swarm, id=task_id, time=time.time(), **fields)
    seq = await bus.events.append(created, expected_seq=0)
    await watch.wait_for(seq)
    claimed = ev.TaskClaimed(
        swarm=swarm, id=task_id, time=time.time(), agent=agent, attempt=1, budgets=budgets
    )
    claim_seq = await bus.events.append(
        claimed, expected_seq=watch.board.version(swarm, "task", task_id)
    )
    await watch.wait_for(claim_seq)
    # the claim took (a void one leaves the task pending); the executor may have started the run,
    # even finished it, by the time this resumes
    task_view = watch.board.task(swarm, task_id)
    assert task_view is not None and task_view.status not in ("pending", "blocked"), (
        f"the claim of {task_id} by {agent} was void: {task_view}"
    )
    return task_id, claim_seq


async def finished(watch: Projection, swarm: str, task_id: str) -> TaskView:
    def done() -> bool:
        task = watch.board.task(swarm, task_id)
        return task is not None and task.status in FINISHED

    await until(done, what=f"task {task_id} to finish")
    task = watch.board.task(swarm, task_id)
    assert task is not None
    return task


async def verbs(bus: Bus, swarm: str, task_id: str) -> list[str]:
    return [event.verb for _, event in await aggregate_events(bus.js, swarm, "task", task_id)]


async def idle(executor: Executor, task_id: str) -> None:
    """The executor is done with the task (result appended or refused)."""
    await until(lambda: task_id not in executor.runs, what=f"executor done with {task_id}")
