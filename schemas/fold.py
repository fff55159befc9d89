"""The fold: ``apply(board, event, seq) -> board``.

Deterministic and free of I/O, clocks and randomness: the same log always folds to the same
board. ``seq`` is the event's position in the log (the stream sequence); the board remembers it
per aggregate so writers know the expected sequence of their next append.

For speed the board is updated in place and returned (a board holds thousands of tasks; copying
it per event would make replay quadratic). Callers that need the old board keep a copy.

An event whose transition is not possible from the current state (a claim of a task that is
not claimable, a claim for an agent that is busy, a result from an attempt that is no longer
current) is *void*: it stays in the log, advances the aggregate's version, and changes nothing
else. Every service folds the same log with the same rules, so all agree on what happened; this
is how "first claim in log order wins" and zombie fencing hold even if a writer misbehaves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, cast

from schemas import events as ev
from schemas.board import (
    ACTIVE,
    CLAIMABLE,
    EDITABLE,
    FINISHED,
    AgentView,
    Board,
    Checkout,
    ProjectView,
    SwarmView,
    TaskView,
)

E = TypeVar("E", bound=ev.Event)
Mutator = Callable[[Board, ev.Event, int], bool]
_MUTATORS: dict[type[ev.Event], Mutator] = {}


def _on(
    event_type: type[E],
) -> Callable[[Callable[[Board, E, int], bool]], Callable[[Board, E, int], bool]]:
    def register(fn: Callable[[Board, E, int], bool]) -> Callable[[Board, E, int], bool]:
        # apply() calls it only with events of exactly ``event_type`` (looked up by type)
        _MUTATORS[event_type] = cast(Mutator, fn)
        return fn

    return register


def apply(board: Board, event: ev.Event, seq: int) -> Board:
    """Fold one event (at log position ``seq``) into ``board`` and return it."""
    board.versions[f"{event.swarm}/{event.aggregate}/{event.id}"] = seq
    if seq > board.seq:
        board.seq = seq
    mutator = _MUTATORS.get(type(event))
    if mutator is None or not mutator(board, event, seq):
        board.ignored += 1
    return board


def fold(events: list[tuple[int, ev.Event]], board: Board | None = None) -> Board:
    """Fold a sequence of ``(seq, event)`` pairs into a board (a new one by default)."""
    board = board if board is not None else Board()
    for seq, event in events:
        apply(board, event, seq)
    return board


# --- helpers -----------------------------------------------------------------------------------


def deps_done(swarm: SwarmView, task: TaskView) -> bool:
    for dep in task.depends:
        other = swarm.tasks.get(dep)
        if other is None or other.status != "completed":
            return False
    return True


def _release_agent(swarm: SwarmView, task: TaskView) -> None:
    if task.agent is None:
        return
    agent = swarm.agents.get(task.agent)
    if agent is not None and agent.task == task.id:
        agent.task = None
        if agent.status == "working":
            agent.status = "idle"
    task.agent = None


def _task(board: Board, event: ev.Event) -> tuple[SwarmView, TaskView] | None:
    swarm = board.swarms.get(event.swarm)
    if swarm is None:
        return None
    task = swarm.tasks.get(event.id)
    return (swarm, task) if task is not None else None


# --- swarm ------------------------------------------------------------------------------------


@_on(ev.SwarmCreated)
def _swarm_created(board: Board, e: ev.SwarmCreated, seq: int) -> bool:
    if e.swarm in board.swarms:
        return False
    board.swarms[e.swarm] = SwarmView(
        id=e.swarm, name=e.name, description=e.description, created_at=e.time
    )
    return True


@_on(ev.SwarmDeleted)
def _swarm_deleted(board: Board, e: ev.SwarmDeleted, seq: int) -> bool:
    return board.swarms.pop(e.swarm, None) is not None


# --- task -------------------------------------------------------------------------------------


@_on(ev.TaskCreated)
def _task_created(board: Board, e: ev.TaskCreated, seq: int) -> bool:
    swarm = board.swarms.get(e.swarm)
    if swarm is None or e.id in swarm.tasks:
        return False
    task = TaskView(
        swarm=e.swarm,
        id=e.id,
        title=e.title,
        prompt=e.prompt or e.title,
        description=e.description,
        tags=list(e.tags),
        priority=e.priority,
        depends=list(e.depends),
        runtime=e.runtime,
        timeout=e.timeout,
        triggers=list(e.triggers),
        parent=e.parent,
        correlation_id=e.correlation_id,
        created_at=e.time,
        updated_at=e.time,
        created_seq=seq,
    )
    task.status = "pending" if deps_done(swarm, task) else "blocked"
    swarm.tasks[e.id] = task
    return True


@_on(ev.TaskUpdated)
def _task_updated(board: Board, e: ev.TaskUpdated, seq: int) -> bool:
    found = _task(board, e)
    if found is None or found[1].status not in EDITABLE:
        return False
    swarm, task = found
    for name in ("title", "prompt", "description", "priority", "runtime", "timeout"):
        value = getattr(e, name)
        if value is not None:
            setattr(task, name, value)
    if e.tags is not None:
        task.tags = list(e.tags)
    if e.triggers is not None:
        task.triggers = list(e.triggers)
    if e.depends is not None:
        task.depends = list(e.depends)
        if task.status != "requeued":
            task.status = "pending" if deps_done(swarm, task) else "blocked"
    task.updated_at = e.time
    return True


@_on(ev.TaskUnblocked)
def _task_unblocked(board: Board, e: ev.TaskUnblocked, seq: int) -> bool:
    found = _task(board, e)
    if found is None or found[1].status != "blocked" or not deps_done(*found):
        return False
    found[1].status = "pending"
    found[1].updated_at = e.time
    return True


@_on(ev.TaskClaimed)
def _task_claimed(board: Board, e: ev.TaskClaimed, seq: int) -> bool:
    found = _task(board, e)
    if found is None:
        return False
    swarm, task = found
    agent = swarm.agents.get(e.agent)
    if (
        task.status not in CLAIMABLE
        or e.attempt != task.attempt
        or not deps_done(swarm, task)
        or agent is None
        or agent.status != "idle"
    ):
        return False
    task.status = "claimed"
    task.agent = agent.id
    task.claimed_at = e.time
    task.updated_at = e.time
    agent.status = "working"
    agent.task = task.id
    return True


@_on(ev.TaskRunning)
def _task_running(board: Board, e: ev.TaskRunning, seq: int) -> bool:
    found = _task(board, e)
    if found is None:
        return False
    task = found[1]
    if task.status != "claimed" or e.attempt != task.attempt or e.agent != task.agent:
        return False
    task.status = "running"
    task.started_at = e.time
    task.updated_at = e.time
    agent = found[0].agents.get(e.agent)
    if agent is not None and e.inbox_read_through > agent.read_through:
        agent.read_through = e.inbox_read_through
    return True


def _current_attempt(task: TaskView, attempt: int, agent: str | None) -> bool:
    return task.status in ACTIVE and attempt == task.attempt and agent == task.agent


@_on(ev.TaskCompleted)
def _task_completed(board: Board, e: ev.TaskCompleted, seq: int) -> bool:
    found = _task(board, e)
    if found is None or not _current_attempt(found[1], e.attempt, e.agent):
        return False
    swarm, task = found
    task.status = "completed"
    task.outcome = e.outcome
    task.reason = None
    task.finished_at = e.time
    task.updated_at = e.time
    _release_agent(swarm, task)
    task.agent = e.agent  # remembered: who did it
    return True


@_on(ev.TaskFailed)
def _task_failed(board: Board, e: ev.TaskFailed, seq: int) -> bool:
    """A run that failed (``attempt`` and ``agent`` set: must be the current attempt), or a
    task failed by decision (dependency failed, attempts used up: ``attempt`` 0)."""
    found = _task(board, e)
    if found is None:
        return False
    swarm, task = found
    if e.attempt:
        if not _current_attempt(task, e.attempt, e.agent):
            return False
    elif task.status in FINISHED or task.status in ACTIVE:
        return False
    task.status = "failed"
    task.reason = e.reason
    task.outcome = e.outcome
    task.finished_at = e.time
    task.updated_at = e.time
    worker = task.agent
    _release_agent(swarm, task)
    task.agent = worker
    return True


@_on(ev.TaskRequeued)
def _task_requeued(board: Board, e: ev.TaskRequeued, seq: int) -> bool:
    found = _task(board, e)
    if found is None:
        return False
    swarm, task = found
    if task.status not in ACTIVE or e.attempt != task.attempt + 1:
        return False
    _release_agent(swarm, task)
    task.status = "requeued"
    task.attempt = e.attempt
    task.reason = e.reason
    task.retry_at = e.retry_at
    task.claimed_at = None
    task.started_at = None
    task.updated_at = e.time
    return True


@_on(ev.TaskCancelled)
def _task_cancelled(board: Board, e: ev.TaskCancelled, seq: int) -> bool:
    found = _task(board, e)
    if found is None or found[1].status in FINISHED:
        return False
    swarm, task = found
    _release_agent(swarm, task)
    task.status = "cancelled"
    task.reason = e.reason or "cancelled"
    task.finished_at = e.time
    task.updated_at = e.time
    return True


@_on(ev.TaskDeleted)
def _task_deleted(board: Board, e: ev.TaskDeleted, seq: int) -> bool:
    found = _task(board, e)
    if found is None or found[1].status in ACTIVE:
        return False
    swarm, task = found
    del swarm.tasks[task.id]
    return True


# --- agent ------------------------------------------------------------------------------------


@_on(ev.AgentRegistered)
def _agent_registered(board: Board, e: ev.AgentRegistered, seq: int) -> bool:
    """First registration, or a re-registration (an executor restarted, a lost agent is back)."""
    swarm = board.swarms.get(e.swarm)
    if swarm is None:
        return False
    agent = swarm.agents.get(e.id)
    if agent is None:
        agent = AgentView(swarm=e.swarm, id=e.id, name=e.name, registered_at=e.time)
        swarm.agents[e.id] = agent
    agent.name = e.name
    agent.role = e.role
    agent.skills = list(e.skills)
    agent.sandbox_id = e.sandbox_id
    agent.executor = e.executor
    agent.backend = e.backend
    agent.status = "working" if agent.task else "idle"
    agent.updated_at = e.time
    return True


@_on(ev.AgentUpdated)
def _agent_updated(board: Board, e: ev.AgentUpdated, seq: int) -> bool:
    agent = board.agent(e.swarm, e.id)
    if agent is None:
        return False
    for name in ("name", "role", "sandbox_id", "executor"):
        value = getattr(e, name)
        if value is not None:
            setattr(agent, name, value)
    if e.skills is not None:
        agent.skills = list(e.skills)
    agent.updated_at = e.time
    return True


@_on(ev.AgentLost)
def _agent_lost(board: Board, e: ev.AgentLost, seq: int) -> bool:
    agent = board.agent(e.swarm, e.id)
    if agent is None or agent.status == "lost":
        return False
    agent.status = "lost"
    agent.updated_at = e.time
    return True


@_on(ev.AgentDeregistered)
def _agent_deregistered(board: Board, e: ev.AgentDeregistered, seq: int) -> bool:
    swarm = board.swarms.get(e.swarm)
    if swarm is None or e.id not in swarm.agents or swarm.agents[e.id].task is not None:
        return False
    del swarm.agents[e.id]
    return True


# --- project ----------------------------------------------------------------------------------


def _project(board: Board, e: ev.Event) -> ProjectView | None:
    swarm = board.swarms.get(e.swarm)
    return swarm.projects.get(e.id) if swarm else None


@_on(ev.ProjectCreated)
def _project_created(board: Board, e: ev.ProjectCreated, seq: int) -> bool:
    swarm = board.swarms.get(e.swarm)
    if swarm is None or e.id in swarm.projects:
        return False
    swarm.projects[e.id] = ProjectView(
        swarm=e.swarm,
        id=e.id,
        name=e.name,
        git_url=e.git_url,
        branch=e.branch,
        credentials_ref=e.credentials_ref,
        created_at=e.time,
    )
    return True


@_on(ev.ProjectAttached)
def _project_attached(board: Board, e: ev.ProjectAttached, seq: int) -> bool:
    swarm = board.swarms.get(e.swarm)
    project = _project(board, e)
    if swarm is None or project is None:
        return False
    if swarm.project and swarm.project in swarm.projects:
        swarm.projects[swarm.project].attached = False
    swarm.project = project.id
    project.attached = True
    return True


def _request(board: Board, e: ev.Event, kind: str) -> bool:
    project = _project(board, e)
    if project is None:
        return False
    project.round += 1
    project.request = kind  # type: ignore[assignment]
    for checkout in project.checkouts.values():
        checkout.state = "pending"
    return True


@_on(ev.ProjectInitRequested)
def _project_init_requested(board: Board, e: ev.ProjectInitRequested, seq: int) -> bool:
    return _request(board, e, "init")


@_on(ev.ProjectSyncRequested)
def _project_sync_requested(board: Board, e: ev.ProjectSyncRequested, seq: int) -> bool:
    return _request(board, e, "sync")


@_on(ev.ProjectSynced)
def _project_synced(board: Board, e: ev.ProjectSynced, seq: int) -> bool:
    project = _project(board, e)
    if project is None:
        return False
    project.checkouts[e.agent] = Checkout(
        state="synced",
        round=e.round,
        commit=e.commit,
        dirty=e.dirty,
        ahead=e.ahead,
        behind=e.behind,
        at=e.time,
    )
    return True


@_on(ev.ProjectSyncFailed)
def _project_sync_failed(board: Board, e: ev.ProjectSyncFailed, seq: int) -> bool:
    project = _project(board, e)
    if project is None:
        return False
    previous = project.checkouts.get(e.agent)
    project.checkouts[e.agent] = Checkout(
        state="sync_failed",
        round=e.round,
        commit=previous.commit if previous else None,
        error=e.error,
        at=e.time,
    )
    return True


missing = set(ev.EVENT_TYPES.values()) - set(_MUTATORS)
assert not missing, f"no mutator for {missing}"
