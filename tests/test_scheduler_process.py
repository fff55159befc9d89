"""The scheduler service on a real nats-server, in-process, one swarm of its own per test.

The tests play the other services by hand: they append what the gateway and the executor would
(tasks, agents, running/completed/failed), keep agents' presence keys fresh or let them go
stale, and watch the log through a projection of their own. They wait for conditions on that
projection (polled, with a deadline), never for a fixed time.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from waiting import until

from schemas import events as ev
from schemas import subjects
from schemas.board import Board
from services.bus.connection import NatsOptions
from services.bus.presence import host_record, put_hosts
from services.bus.projection import Projection
from services.bus.service import Bus
from services.scheduler.decide import Config
from services.scheduler.service import Scheduler

LEASE = 1.0  # short, so lost agents and leader take-over happen within a test


class Log:
    """The test's own view of the swarm: a live projection plus every event it folded."""

    def __init__(self, bus: Bus, swarm: str) -> None:
        self.bus = bus
        self.swarm = swarm
        self.projection = Projection(bus.js, swarm=swarm)
        self.events: list[tuple[int, ev.Event]] = []
        self.projection.listen(lambda seq, event, board: self.events.append((seq, event)))

    @property
    def board(self) -> Board:
        return self.projection.board

    def task(self, task: str):  # -> TaskView | None
        return self.board.task(self.swarm, task)

    def history(self, aggregate_id: str, aggregate: str = "task") -> list[ev.Event]:
        return [e for _, e in self.events if e.aggregate == aggregate and e.id == aggregate_id]

    def verbs(self, aggregate_id: str, aggregate: str = "task") -> list[str]:
        return [e.verb for e in self.history(aggregate_id, aggregate)]

    async def until(self, condition: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Poll ``condition`` until it is truthy; fail the test after ``timeout``."""
        return await until(condition, timeout)

    async def append(self, event: ev.Event) -> int:
        """Append as its writer would: expected sequence from the fold, then read our write."""
        expected = self.board.version(event.swarm, event.aggregate, event.id)
        seq = await self.bus.events.append(event, expected)
        await self.projection.wait_for(seq)
        return seq


class Presences:
    """Plays the executors' presence refresh: ``keep`` agents fresh (each as if its own
    executor hosted it), ``host`` several under one executor's key, ``drop`` one (an agent or
    an executor) to go stale."""

    def __init__(self, bus: Bus, swarm: str) -> None:
        self.bus = bus
        self.swarm = swarm
        self.loops: dict[str, asyncio.Task] = {}  # executor -> its refresh loop

    async def keep(self, *agents: str) -> None:
        for agent in agents:
            await self.host(f"ex-{agent}", agent)

    async def host(self, executor: str, *agents: str) -> None:
        kv = await self.bus.kv(subjects.PRESENCE_BUCKET)
        await put_hosts(kv, self.swarm, host_record(executor, time.time(), agents))
        self.loops[executor] = asyncio.create_task(self._refresh(kv, executor, agents))

    async def _refresh(self, kv: Any, executor: str, agents: tuple[str, ...]) -> None:
        # the loop checks it is still wanted: Python 3.11's wait_for (inside nats-py) can swallow
        # a cancel that arrives just as its reply does
        while executor in self.loops:
            await asyncio.sleep(LEASE / 5)
            await put_hosts(kv, self.swarm, host_record(executor, time.time(), agents))

    async def drop(self, name: str) -> None:
        """Stop refreshing executor ``name`` (or the one ``keep`` made for agent ``name``)."""
        task = self.loops.pop(name if name in self.loops else f"ex-{name}")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def close(self) -> None:
        for executor in list(self.loops):
            await self.drop(executor)


@pytest.fixture
async def log(bus: Bus, swarm_id: str) -> AsyncIterator[Log]:
    view = Log(bus, swarm_id)
    await view.projection.start()
    await view.projection.wait_ready(10)
    await view.append(ev.SwarmCreated(swarm=swarm_id, id=swarm_id, time=time.time(), name="t"))
    yield view
    await view.projection.stop()


@pytest.fixture
async def presences(bus: Bus, swarm_id: str) -> AsyncIterator[Presences]:
    keeper = Presences(bus, swarm_id)
    yield keeper
    await keeper.close()


@pytest.fixture
async def schedulers(nats_url: str, swarm_id: str) -> AsyncIterator[Callable[..., Any]]:
    """``await schedulers(instance=..., **config)``: a started scheduler for this swarm."""
    started: list[Scheduler] = []

    async def start(instance: str = "s1", **config: Any) -> Scheduler:
        settings = {"lease": LEASE, "backoff": 0.05, **config}
        scheduler = Scheduler(
            nats=NatsOptions.from_env(nats_url),
            swarm=swarm_id,
            instance=instance,
            config=Config(**settings),
            reconcile_every=0.1,
            snapshot_every=0,
        )
        started.append(scheduler)
        await scheduler.start()
        return scheduler

    yield start
    for scheduler in started:
        await scheduler.stop()


async def die(scheduler: Scheduler) -> None:
    """Stop like a killed process: no lease release, no goodbye, the connection just gone.
    (``stopping`` only makes its loops end even if a cancel is swallowed; nothing runs on it.)"""
    scheduler.stopping.set()
    for task in [*scheduler._tasks, *scheduler._appends]:
        task.cancel()
    await asyncio.gather(*scheduler._tasks, *scheduler._appends, return_exceptions=True)
    assert scheduler.bus is not None
    await scheduler.bus.nc.close()


async def leading(log: Log, scheduler: Scheduler) -> Scheduler:
    await log.until(lambda: scheduler.leader)
    return scheduler


def agent(swarm: str, agent_id: str, *skills: str) -> ev.AgentRegistered:
    return ev.AgentRegistered(
        swarm=swarm,
        id=agent_id,
        time=time.time(),
        name=agent_id,
        skills=list(skills),
        executor="test",
    )


def task(swarm: str, task_id: str, *tags: str, **fields: Any) -> ev.TaskCreated:
    return ev.TaskCreated(
        swarm=swarm, id=task_id, time=time.time(), title=task_id, tags=list(tags), **fields
    )


async def run_to_end(log: Log, task_id: str, ending: str = "completed") -> None:
    """Play the executor for a claimed task: running, then completed or failed."""
    view = log.task(task_id)
    assert view is not None and view.status == "claimed" and view.agent
    common: dict[str, Any] = {"swarm": log.swarm, "id": task_id, "time": time.time()}
    attempt: dict[str, Any] = {"agent": view.agent, "attempt": view.attempt}
    await log.append(ev.TaskRunning(**common, **attempt))
    if ending == "completed":
        await log.append(ev.TaskCompleted(**common, **attempt))
    else:
        await log.append(ev.TaskFailed(**common, **attempt, reason="exit 1"))


async def rounds_pass(log: Log, scheduler: Scheduler, count: int = 5) -> None:
    """Let the scheduler decide ``count`` more times (reconcile ticks included)."""
    target = scheduler.rounds + count
    await log.until(lambda: scheduler.rounds >= target)


# --- claiming -------------------------------------------------------------------------


async def test_a_pending_task_is_claimed_once_by_the_matching_idle_agent(
    bus: Bus, log: Log, presences: Presences, schedulers: Callable[..., Any], swarm_id: str
) -> None:
    scheduler = await leading(log, await schedulers())
    await log.append(agent(swarm_id, "api-agent", "api"))
    await log.append(agent(swarm_id, "ui-agent", "ui", "frontend"))
    await presences.keep("api-agent", "ui-agent")
    await log.append(task(swarm_id, "t1", "ui"))

    claimed = await log.until(lambda: log.task("t1").status == "claimed" and log.task("t1"))
    assert (claimed.agent, claimed.attempt) == ("ui-agent", 1)

    await rounds_pass(log, scheduler)
    assert log.verbs("t1") == ["created", "claimed"]


# --- dependencies and triggers ------------------------------------------------------------


async def test_a_completed_dependency_unblocks_its_dependent_which_is_then_claimed(
    log: Log, presences: Presences, schedulers: Callable[..., Any], swarm_id: str
) -> None:
    await leading(log, await schedulers())
    await log.append(agent(swarm_id, "a1"))
    await presences.keep("a1")
    await log.append(task(swarm_id, "t1"))
    await log.append(task(swarm_id, "t2", depends=["t1"]))
    await log.until(lambda: log.task("t1").status == "claimed")
    assert log.task("t2").status == "blocked"

    await run_to_end(log, "t1")
    await log.until(lambda: log.task("t2").status == "claimed")
    assert log.verbs("t2") == ["created", "unblocked", "claimed"]
    assert log.task("t2").agent == "a1"


async def test_a_failed_dependency_fails_its_dependent_with_the_reason(
    log: Log, presences: Presences, schedulers: Callable[..., Any], swarm_id: str
) -> None:
    await leading(log, await schedulers())
    await log.append(agent(swarm_id, "a1"))
    await presences.keep("a1")
    await log.append(task(swarm_id, "t1"))
    await log.append(task(swarm_id, "t2", depends=["t1"]))
    await log.until(lambda: log.task("t1").status == "claimed")

    await run_to_end(log, "t1", ending="failed")
    failed = await log.until(lambda: log.task("t2").status == "failed" and log.task("t2"))
    assert failed.reason == "dependency t1 failed"
    assert log.verbs("t2") == ["created", "failed"]


async def test_a_trigger_creates_its_follow_up_task_exactly_once(
    log: Log, presences: Presences, schedulers: Callable[..., Any], swarm_id: str
) -> None:
    scheduler = await leading(log, await schedulers())
    await log.append(agent(swarm_id, "a1", "qa"))
    await presences.keep("a1")
    then = ev.Trigger(on="completed", task=ev.TaskSpec(title="Test it", tags=["qa"]))
    await log.append(task(swarm_id, "t1", triggers=[then]))
    await log.until(lambda: log.task("t1").status == "claimed")

    await run_to_end(log, "t1")
    follow_up = await log.until(lambda: log.task("t1-completed-0"))
    assert (follow_up.title, follow_up.parent, follow_up.tags) == ("Test it", "t1", ["qa"])
    await log.until(lambda: log.task("t1-completed-0").status == "claimed")
    await rounds_pass(log, scheduler)
    assert log.verbs("t1-completed-0") == ["created", "claimed"]


# --- lost agents --------------------------------------------------------------------------


async def test_an_agent_gone_stale_is_lost_and_its_task_requeued_as_attempt_two(
    log: Log, presences: Presences, schedulers: Callable[..., Any], swarm_id: str
) -> None:
    await leading(log, await schedulers())
    await log.append(agent(swarm_id, "a1"))
    await log.append(agent(swarm_id, "a2"))
    await presences.keep("a1", "a2")
    await log.append(task(swarm_id, "t1"))
    await log.until(lambda: log.task("t1").status == "claimed")
    assert log.task("t1").agent == "a1"

    await presences.drop("a1")
    await log.until(lambda: log.task("t1").status == "claimed" and log.task("t1").attempt == 2)
    assert log.board.agent(swarm_id, "a1").status == "lost"
    assert log.task("t1").agent == "a2"
    requeue = next(e for e in log.history("t1") if isinstance(e, ev.TaskRequeued))
    assert (requeue.attempt, requeue.cause) == (2, "claim_lost")
    assert requeue.reason == "agent a1 lost before run 1 started; 1 of 20 interruptions used"
    assert log.verbs("t1") == ["created", "claimed", "requeued", "claimed"]
    assert log.verbs("a1", "agent") == ["registered", "lost"]


async def test_an_executor_gone_silent_loses_all_its_agents_and_each_claim_is_requeued_once(
    log: Log, presences: Presences, schedulers: Callable[..., Any], swarm_id: str
) -> None:
    """One presence key lists all of an executor's agents: when it stops being refreshed (the
    executor killed -9), every one of them is lost, and every claim it held goes back once."""
    await leading(log, await schedulers())
    boxed = [f"b{i}" for i in range(6)]
    for agent_id in boxed:
        await log.append(agent(swarm_id, agent_id))
    await presences.host("box", *boxed)
    tasks = [f"t{i}" for i in range(6)]
    for task_id in tasks:
        await log.append(task(swarm_id, task_id))
    await log.until(lambda: all(log.task(t).status == "claimed" for t in tasks))
    assert {log.task(t).agent for t in tasks} == set(boxed)
    spares = [f"s{i}" for i in range(6)]
    for agent_id in spares:
        await log.append(agent(swarm_id, agent_id))
    await presences.host("spare", *spares)

    await presences.drop("box")
    await log.until(
        lambda: all(log.task(t).status == "claimed" and log.task(t).attempt == 2 for t in tasks)
    )
    assert {log.task(t).agent for t in tasks} == set(spares)
    for task_id in tasks:
        assert log.verbs(task_id) == ["created", "claimed", "requeued", "claimed"]
    for agent_id in boxed:
        assert log.verbs(agent_id, "agent") == ["registered", "lost"]
    for agent_id in spares:
        assert log.board.agent(swarm_id, agent_id).status == "working"
        assert log.verbs(agent_id, "agent") == ["registered"]


async def test_a_task_whose_runs_keep_getting_lost_fails_after_max_run_losses(
    log: Log, presences: Presences, schedulers: Callable[..., Any], swarm_id: str
) -> None:
    await leading(log, await schedulers(max_run_losses=2))
    await log.append(agent(swarm_id, "a1"))
    await log.append(agent(swarm_id, "a2"))
    await presences.keep("a1", "a2")
    await log.append(task(swarm_id, "t1"))
    await log.until(lambda: log.task("t1").status == "claimed")
    await log.append(
        ev.TaskRunning(swarm=swarm_id, id="t1", time=time.time(), agent="a1", attempt=1)
    )
    await presences.drop("a1")
    await log.until(lambda: log.task("t1").status == "claimed" and log.task("t1").attempt == 2)
    await log.append(
        ev.TaskRunning(swarm=swarm_id, id="t1", time=time.time(), agent="a2", attempt=2)
    )

    await presences.drop("a2")
    failed = await log.until(lambda: log.task("t1").status == "failed" and log.task("t1"))
    assert failed.reason == "agent a2 lost during run 2; 2 of 2 run losses used"
    assert (failed.attempt, failed.agent) == (2, "a2")
    assert log.verbs("t1") == [
        *["created", "claimed", "running", "requeued"],
        *["claimed", "running", "failed"],
    ]


# --- one leader ---------------------------------------------------------------------------


async def test_only_the_leader_claims_and_the_standby_takes_over_when_it_dies(
    bus: Bus, log: Log, presences: Presences, schedulers: Callable[..., Any], swarm_id: str
) -> None:
    first = await leading(log, await schedulers(instance="first"))
    second = await schedulers(instance="second")
    await log.until(lambda: second.lease is not None and second.lease.holder == "first")
    assert not second.leader

    for name in ("a1", "a2"):
        await log.append(agent(swarm_id, name))
    await presences.keep("a1", "a2")
    await log.append(task(swarm_id, "t1"))
    claim = await log.until(
        lambda: next((e for e in log.history("t1") if e.verb == "claimed"), None)
    )
    assert claim.actor == "scheduler:first"

    await die(first)
    died = time.monotonic()
    await log.append(task(swarm_id, "t2"))
    await log.until(lambda: second.leader, timeout=3 * LEASE)
    assert time.monotonic() - died < 2 * LEASE
    await log.until(lambda: log.task("t2").status == "claimed")
    claim = next(e for e in log.history("t2") if e.verb == "claimed")
    assert claim.actor == "scheduler:second"

    await rounds_pass(log, second)
    assert log.verbs("t1") == ["created", "claimed"]
    assert log.verbs("t2") == ["created", "claimed"]


# --- settings -----------------------------------------------------------------------------


def test_settings_come_from_flags_then_the_environment_then_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def parsed(*argv: str) -> Config:
        parser = argparse.ArgumentParser()
        parser.add_argument("--nats-url")
        Scheduler.arguments(parser)
        return Scheduler.from_args(parser.parse_args(argv)).config

    def budgets(config: Config) -> tuple:
        return (config.max_run_losses, config.max_run_failures, config.max_interruptions)

    assert (parsed().lease, parsed().backoff, parsed().priority_aging) == (10.0, 2.0, 300.0)
    assert budgets(parsed()) == (3, 1, 20)
    monkeypatch.setenv("SWARM_LEASE_SECONDS", "4")
    monkeypatch.setenv("SWARM_MAX_ATTEMPTS", "5")  # the older name of the run-loss budget
    monkeypatch.setenv("SWARM_RETRY_BACKOFF", "0.5")
    monkeypatch.setenv("SWARM_PRIORITY_AGING", "30")
    assert (parsed().lease, parsed().backoff, parsed().priority_aging) == (4.0, 0.5, 30.0)
    assert budgets(parsed()) == (5, 1, 20)
    monkeypatch.setenv("SWARM_MAX_RUN_LOSSES", "4")
    monkeypatch.setenv("SWARM_MAX_RUN_FAILURES", "2")
    monkeypatch.setenv("SWARM_MAX_INTERRUPTIONS", "50")
    assert budgets(parsed()) == (4, 2, 50)
    assert parsed("--lease-seconds", "7", "--max-attempts", "2").lease == 7.0
    assert parsed("--max-attempts", "2").max_run_losses == 2
    assert budgets(parsed("--max-run-losses", "6", "--max-run-failures", "3")) == (6, 3, 50)
