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

import msgspec

from schemas import events as ev
from schemas.attempts import cause_of, count
from schemas.board import (
    ACTIVE,
    CLAIMABLE,
    EDITABLE,
    FINISHED,
    LANDED_KEPT,
    AgentView,
    Board,
    Checkout,
    Integration,
    IntegrationState,
    LandedTask,
    ProjectView,
    SwarmView,
    TaskView,
)
from schemas.landing import MAX_RESOLVE_ROUNDS, STUCK, deps_landed, problem_text

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
    if event.aggregate == "task" and (swarm := board.swarms.get(event.swarm)) is not None:
        swarm.tasks.freeze(event.id)  # kept compact once settled (``Tasks``)
    return board


def fold(events: list[tuple[int, ev.Event]], board: Board | None = None) -> Board:
    """Fold a sequence of ``(seq, event)`` pairs into a board (a new one by default)."""
    board = board if board is not None else Board()
    for seq, event in events:
        apply(board, event, seq)
    return board


# --- helpers -----------------------------------------------------------------------------------


def deps_done(swarm: SwarmView, task: TaskView) -> bool:
    """Every dependency completed, and its work is on the project's branch (``landing``)."""
    return deps_landed(swarm, task)


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
    task = swarm.tasks.thaw(event.id)  # a live object to change (``apply`` freezes it again)
    return (swarm, task) if task is not None else None


# --- swarm ------------------------------------------------------------------------------------


@_on(ev.SwarmCreated)
def _swarm_created(board: Board, e: ev.SwarmCreated, seq: int) -> bool:
    if e.swarm in board.swarms:
        return False
    board.swarms[e.swarm] = SwarmView(
        id=e.swarm,
        name=e.name,
        description=e.description,
        created_at=e.time,
        budget_usd=e.budget_usd,
    )
    return True


@_on(ev.SwarmUpdated)
def _swarm_updated(board: Board, e: ev.SwarmUpdated, seq: int) -> bool:
    swarm = board.swarms.get(e.swarm)
    if swarm is None:
        return False
    if e.name is not None:
        swarm.name = e.name
    if e.description is not None:
        swarm.description = e.description
    if e.budget_usd is not msgspec.UNSET:
        swarm.budget_usd = e.budget_usd
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
        claude=e.claude,
        parent_attempt=e.parent_attempt,
        resolves=e.resolves,
        correlation_id=e.correlation_id,
        created_at=e.time,
        updated_at=e.time,
        created_seq=seq,
    )
    task.status = "pending" if deps_done(swarm, task) else "blocked"
    swarm.tasks[e.id] = task
    stuck = swarm.tasks.thaw(e.resolves) if e.resolves else None
    if stuck is not None and stuck.integration is not None and stuck.integration.resolver is None:
        stuck.integration.resolver = e.id
    if stuck is not None:
        swarm.tasks.freeze(stuck.id)
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
    if e.claude is not None:
        task.claude = e.claude
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
    task.budgets = e.budgets
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
    task.runs += 1
    task.started_at = e.time
    task.updated_at = e.time
    if e.session_id is not None:
        task.session_id = e.session_id
        task.session_agent = e.agent
    swarm = found[0]
    agent = swarm.agents.get(e.agent)
    if agent is not None and e.inbox_read_through > agent.read_through:
        agent.read_through = e.inbox_read_through
    task.integration = None
    project = swarm.projects.get(swarm.project) if swarm.project else None
    if e.branch is not None and project is not None:
        task.integration = Integration(
            project=project.id, branch=e.branch, base=e.base, onto=project.target, at=e.time
        )
        _checkout_moved(project, e.agent, e.branch, e.base, task.id, e.time)
    return True


def _checkout_moved(
    project: ProjectView, agent: str, branch: str, commit: str | None, task: str, at: float
) -> None:
    """An agent's checkout is now on ``branch`` at ``commit`` (a task's events say so)."""
    checkout = project.checkouts.get(agent)
    if checkout is None:
        checkout = project.checkouts[agent] = Checkout(state="synced", at=at)
    checkout.branch = branch
    checkout.task = task
    if commit is not None:
        checkout.commit = commit
    checkout.dirty = False
    checkout.at = at


def _record_work(swarm: SwarmView, task: TaskView, work: ev.Work | None, ran: bool) -> None:
    """What the run left in git (``ran``: it completed, so its work may land)."""
    if work is None:
        task.integration = None
        return
    integration = task.integration or Integration(project=work.project, branch=work.branch)
    integration.project = work.project
    integration.branch = work.branch
    integration.base = work.base
    integration.head = work.head
    integration.onto = work.onto or integration.onto
    integration.output = work.error or ""
    if ran and work.land:
        integration.state = "landing"
    elif work.pushed and work.head != work.base:
        integration.state = "pushed"
    else:
        integration.state = "unchanged"
    task.integration = integration
    project = swarm.projects.get(work.project)
    if project is not None and task.agent is not None:
        _checkout_moved(project, task.agent, work.branch, work.head, task.id, task.updated_at)


def _current_attempt(task: TaskView, attempt: int, agent: str | None) -> bool:
    return task.status in ACTIVE and attempt == task.attempt and agent == task.agent


def _spend(swarm: SwarmView, task: TaskView, outcome: ev.RunOutcome | None) -> None:
    """A run's recorded cost counts for its task, its agent and its swarm; its tokens for its
    task."""
    if outcome is not None and outcome.usage is not None:
        used, total = outcome.usage, task.usage
        total.input_tokens += max(used.input_tokens, 0)
        total.output_tokens += max(used.output_tokens, 0)
        total.cache_read_input_tokens += max(used.cache_read_input_tokens, 0)
        total.cache_creation_input_tokens += max(used.cache_creation_input_tokens, 0)
    cost = outcome.cost_usd if outcome is not None else None
    if not cost or cost < 0:
        return
    task.cost_usd += cost
    swarm.spent_usd += cost
    agent = swarm.agents.get(task.agent) if task.agent else None
    if agent is not None:
        agent.spent_usd += cost


@_on(ev.TaskCompleted)
def _task_completed(board: Board, e: ev.TaskCompleted, seq: int) -> bool:
    found = _task(board, e)
    if found is None or not _current_attempt(found[1], e.attempt, e.agent):
        return False
    swarm, task = found
    _spend(swarm, task, e.outcome)
    task.status = "completed"
    task.outcome = e.outcome
    task.reason = None
    task.finished_at = e.time
    task.updated_at = e.time
    _release_agent(swarm, task)
    task.agent = e.agent  # remembered: who did it
    _record_work(swarm, task, e.work, ran=True)
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
        count(task, e.cause or "run_failed")
    elif task.status in FINISHED or task.status in ACTIVE:
        return False
    _spend(swarm, task, e.outcome)
    task.status = "failed"
    task.reason = e.reason
    task.outcome = e.outcome
    task.finished_at = e.time
    task.updated_at = e.time
    worker = task.agent
    _release_agent(swarm, task)
    task.agent = worker
    if e.attempt:
        _record_work(swarm, task, e.work, ran=False)
    return True


def _landing(board: Board, e: ev.TaskIntegrated | ev.TaskIntegrationFailed) -> TaskView | None:
    """The task whose integration ``e`` answers: completed, at that attempt, landing."""
    found = _task(board, e)
    if found is None:
        return None
    task = found[1]
    work = task.integration
    if task.status != "completed" or e.attempt != task.attempt or work is None:
        return None
    return task if work.state == "landing" else None


def _landing_recorded(
    task: TaskView, work: Integration, e: ev.TaskIntegrated | ev.TaskIntegrationFailed
) -> None:
    """What either landing event records: onto what, in how many tries and how long, when."""
    work.onto = e.onto
    work.tries = e.tries
    work.seconds = e.seconds
    work.at = e.time
    task.updated_at = e.time


@_on(ev.TaskIntegrated)
def _task_integrated(board: Board, e: ev.TaskIntegrated, seq: int) -> bool:
    task = _landing(board, e)
    if task is None or task.integration is None:
        return False
    swarm = board.swarms[e.swarm]
    work = task.integration
    work.state = "landed"
    work.landed = e.landed
    _landing_recorded(task, work, e)
    # the work of the tasks it resolved (a chain of resolve tasks) landed with it
    current = task
    for _ in range(MAX_RESOLVE_ROUNDS + 1):
        stuck = swarm.tasks.thaw(current.resolves) if current.resolves else None
        if stuck is None or stuck.integration is None or stuck.integration.state not in STUCK:
            if stuck is not None:
                swarm.tasks.freeze(stuck.id)  # thawed for nothing: as it was
            break
        stuck.integration.state = "landed"
        stuck.integration.landed = e.landed
        stuck.integration.resolved_by = task.id
        stuck.integration.at = e.time
        swarm.tasks.freeze(stuck.id)  # settled now: its work landed
        current = stuck
    project = swarm.projects.get(e.project)
    if project is not None:
        project.tip = e.landed
        project.landed.append(
            LandedTask(
                task=task.id, commit=e.landed, at=e.time, agent=task.agent, resolves=task.resolves
            )
        )
        del project.landed[:-LANDED_KEPT]
        project.landed_count += 1
        if task.agent is not None:
            _checkout_moved(project, task.agent, work.branch, e.landed, task.id, e.time)
    return True


STUCK_STATE: dict[str, IntegrationState] = {
    "conflict": "conflict",
    "verify": "verify_failed",
    "error": "failed",
}


@_on(ev.TaskIntegrationFailed)
def _task_integration_failed(board: Board, e: ev.TaskIntegrationFailed, seq: int) -> bool:
    """The work cannot land: it waits for a resolve task (``resolve``), or the task fails."""
    task = _landing(board, e)
    if task is None or task.integration is None:
        return False
    work = task.integration
    work.state = STUCK_STATE[e.problem]
    work.problem = e.problem
    work.tip = e.tip
    work.files = list(e.files)
    work.output = e.output
    work.resolve = e.resolve
    _landing_recorded(task, work, e)
    if not e.resolve:
        task.status = "failed"
        task.reason = f"its work did not land on {e.onto}: {problem_text(work)}"
    return True


@_on(ev.TaskRequeued)
def _task_requeued(board: Board, e: ev.TaskRequeued, seq: int) -> bool:
    found = _task(board, e)
    if found is None:
        return False
    swarm, task = found
    if task.status not in ACTIVE or e.attempt != task.attempt + 1:
        return False
    count(task, cause_of(task, e.cause))
    _spend(swarm, task, e.outcome)
    if e.outcome is not None:  # a failed run, tried again: its outcome shows until then
        task.outcome = e.outcome
    _release_agent(swarm, task)
    task.status = "requeued"
    task.integration = None
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
    worker = task.agent
    _release_agent(swarm, task)
    task.agent = worker  # remembered: who was on it (None: it never got that far)
    task.status = "cancelled"
    task.reason = e.reason or "cancelled"
    task.cancelled_by = e.actor
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
    if e.labels is not None:
        agent.labels = list(e.labels)
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
        mode=e.mode,
        strategy=e.strategy,
        verify=e.verify,
        on_conflict=e.on_conflict,
        created_at=e.time,
        updated_at=e.time,
    )
    return True


@_on(ev.ProjectUpdated)
def _project_updated(board: Board, e: ev.ProjectUpdated, seq: int) -> bool:
    """Changed fields (``""`` clears an optional one). A new URL or branch, once the project has
    been initialised, asks every checkout to follow: a new ``init`` round."""
    project = _project(board, e)
    if project is None:
        return False
    moved = False
    if e.git_url is not None and e.git_url != project.git_url:
        project.git_url = e.git_url
        project.default_branch = None  # another remote: its default is found again
        moved = True
    if e.branch is not None and (e.branch or None) != project.branch:
        project.branch = e.branch or None
        moved = True
    if e.name is not None:
        project.name = e.name
    if e.credentials_ref is not None:
        project.credentials_ref = e.credentials_ref or None
    if e.verify is not None:
        project.verify = e.verify or None
    if e.mode is not None:
        project.mode = e.mode
    if e.strategy is not None:
        project.strategy = e.strategy
    if e.on_conflict is not None:
        project.on_conflict = e.on_conflict
    project.updated_at = e.time
    if moved and project.round > 0:
        _request(board, e, "init")
    return True


@_on(ev.ProjectDeleted)
def _project_deleted(board: Board, e: ev.ProjectDeleted, seq: int) -> bool:
    swarm = board.swarms.get(e.swarm)
    if swarm is None or swarm.projects.pop(e.id, None) is None:
        return False
    if swarm.project == e.id:
        swarm.project = None
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
        branch=e.branch,
        dirty=e.dirty,
        ahead=e.ahead,
        behind=e.behind,
        at=e.time,
    )
    if project.branch is None and project.default_branch is None and e.branch:
        project.default_branch = e.branch  # the remote's default, as the first answer found it
    if e.branch is not None and e.branch == project.target and project.tip is None:
        project.tip = e.commit
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
        branch=previous.branch if previous else None,
        error=e.error,
        at=e.time,
    )
    return True


missing = set(ev.EVENT_TYPES.values()) - set(_MUTATORS)
assert not missing, f"no mutator for {missing}"
