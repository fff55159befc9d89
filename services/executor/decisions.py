"""The executor's decisions, as pure functions of the fold: whether to run a dispatch, which runs a
previous life of this executor left behind, which agents to (re-)register or take up.

The service appends what these return, with the expected sequence of the aggregate taken from
the same board, so a decision made on a stale board loses the race instead of doing harm.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass

from schemas import events as ev
from schemas.board import AgentView, Board
from schemas.dispatch import Dispatch
from services.executor.config import AgentConfig


@dataclass(frozen=True)
class Append:
    """One event to append, with the expected sequence of its aggregate."""

    event: ev.Event
    expected_seq: int


def actor(executor: str) -> str:
    return f"executor:{executor}"


def dispatch_refusal(board: Board, dispatch: Dispatch, hosted: Collection[str]) -> str | None:
    """Why this executor must not run ``dispatch`` (None: run it). A dispatch is only a hint; the
    fold decides: the task must be claimed by that agent, at that attempt."""
    if dispatch.agent not in hosted:
        return f"agent {dispatch.agent} is not hosted by this executor"
    task = board.task(dispatch.swarm, dispatch.task)
    if task is None:
        return "the task does not exist (deleted, or in another swarm)"
    if task.attempt != dispatch.attempt:
        return f"attempt {dispatch.attempt} is not current (the task is at attempt {task.attempt})"
    if task.status != "claimed":
        return f"the task is {task.status}, not claimed"
    if task.agent != dispatch.agent:
        return f"the task is claimed by {task.agent}, not {dispatch.agent}"
    return None


def is_current(board: Board, swarm: str, task_id: str, attempt: int, agent: str) -> bool:
    """Whether ``agent`` still runs ``attempt`` of the task (nothing cancelled or requeued it)."""
    task = board.task(swarm, task_id)
    return (
        task is not None
        and task.status == "running"
        and task.attempt == attempt
        and task.agent == agent
    )


def orphaned_runs(
    board: Board, swarm: str, executor: str, now: float | None = None
) -> list[Append]:
    """Tasks running on this executor's agents when it starts: their process died with the
    previous life of this executor, so they go back to the queue with the next attempt.

    Claimed (not yet running) tasks are left alone: their dispatch is still in the queue (or is
    redelivered once its ack wait passes) and is served normally."""
    view = board.swarms.get(swarm)
    if view is None:
        return []
    now = time.time() if now is None else now
    found = []
    for task in view.tasks.values():
        if task.status != "running" or task.agent is None:
            continue
        agent = view.agents.get(task.agent)
        if agent is None or agent.executor != executor:
            continue
        event = ev.TaskRequeued(
            swarm=swarm,
            id=task.id,
            time=now,
            actor=actor(executor),
            attempt=task.attempt + 1,
            reason=(
                f"executor {executor} restarted while attempt {task.attempt} was running "
                f"on {task.agent}"
            ),
            retry_at=now,
        )
        found.append(Append(event, board.version(swarm, "task", task.id)))
    return found


def registration(
    board: Board, swarm: str, agent: AgentConfig, executor: str, backend: str, now: float
) -> Append | None:
    """``agent.registered`` for a configured agent, unless the fold already shows it just so
    (hosted here, not lost, same name, role and skills)."""
    view = board.agent(swarm, agent.id)
    if view is not None and (
        view.executor == executor
        and view.status != "lost"
        and view.name == agent.name
        and view.role == agent.role
        and list(view.skills) == list(agent.skills)
        and view.backend == backend
        and (agent.sandbox_id is None or view.sandbox_id == agent.sandbox_id)
    ):
        return None
    event = ev.AgentRegistered(
        swarm=swarm,
        id=agent.id,
        time=now,
        actor=actor(executor),
        name=agent.name,
        role=agent.role,
        skills=list(agent.skills),
        sandbox_id=agent.sandbox_id if agent.sandbox_id else (view.sandbox_id if view else None),
        executor=executor,
        backend=backend,
    )
    return Append(event, board.version(swarm, "agent", agent.id))


def comeback(board: Board, swarm: str, agent_id: str, executor: str, now: float) -> Append | None:
    """``agent.registered`` again for an agent hosted here that the fold shows lost (its presence
    lapsed while this executor was away): it is back."""
    view = board.agent(swarm, agent_id)
    if view is None or view.status != "lost":
        return None
    event = ev.AgentRegistered(
        swarm=swarm,
        id=view.id,
        time=now,
        actor=actor(executor),
        name=view.name,
        role=view.role,
        skills=list(view.skills),
        sandbox_id=view.sandbox_id,
        executor=executor,
        backend=view.backend,
    )
    return Append(event, board.version(swarm, "agent", view.id))


def hosted_here(board: Board, swarm: str, executor: str) -> list[AgentView]:
    """Agents the fold says this executor hosts (configured, or taken up in an earlier life)."""
    view = board.swarms.get(swarm)
    if view is None:
        return []
    return sorted(
        (a for a in view.agents.values() if a.executor == executor),
        key=lambda a: (a.registered_at, a.id),
    )


def take_ups(
    board: Board, swarm: str, executor: str, free: int, now: float, skip: Collection[str] = ()
) -> list[Append]:
    """``agent.updated(executor=...)`` for up to ``free`` agents nobody hosts (registered through
    the API), oldest first. Two executors racing for one agent: the expected sequence lets one
    win."""
    view = board.swarms.get(swarm)
    if view is None or free <= 0:
        return []
    waiting = sorted(
        (a for a in view.agents.values() if a.executor is None and a.id not in skip),
        key=lambda a: (a.registered_at, a.id),
    )
    return [
        Append(
            ev.AgentUpdated(
                swarm=swarm, id=a.id, time=now, actor=actor(executor), executor=executor
            ),
            board.version(swarm, "agent", a.id),
        )
        for a in waiting[:free]
    ]
