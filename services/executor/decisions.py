"""The executor's decisions, as pure functions of the fold: which claim a hosted agent runs next,
which runs a previous life of this executor left behind, which agents to (re-)register or take
up, which claude session an attempt continues, and the events that say an attempt started and
how it ended.

The service appends what these return, with the expected sequence of the aggregate taken from
the same board, so a decision made on a stale board loses the race instead of doing harm.
"""

from __future__ import annotations

import re
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import TypedDict

from schemas import events as ev
from schemas.attempts import KIND_OF, Budgets, Outcome, one_more, run_number
from schemas.board import AgentView, Board, TaskView
from services.executor.config import AgentConfig
from services.executor.runtimes import Verdict

SESSION_ID = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)


@dataclass(frozen=True)
class Allowance:
    """The task's budgets as its claim carries them (``schemas.attempts``; 0: not known, a claim
    by an older scheduler), and ``retry_in``, the seconds before the retry of a failed run while
    its run failures are not used up."""

    run_failures: int = 1
    run_losses: int = 0
    interruptions: int = 0
    retry_in: float = 0.0

    @classmethod
    def of(cls, task: TaskView | None) -> Allowance:
        """As the task's current claim carries them (none: a failed run fails the task)."""
        budgets = task.budgets if task is not None else None
        if budgets is None:
            return cls()
        return cls(
            max(1, budgets.run_failures),
            max(0, budgets.run_losses),
            max(0, budgets.interruptions),
            max(0.0, budgets.retry_in),
        )

    def one_more(self, task: TaskView, cause: ev.AttemptEnd) -> Outcome | None:
        """What one more ``cause`` does to ``task`` (None: its budget is not known here)."""
        known = {
            "interruptions": self.interruptions,
            "run_losses": self.run_losses,
            "run_failures": self.run_failures,
        }
        if known[KIND_OF[cause]] < 1:
            return None
        budgets = Budgets(
            interruptions=max(1, self.interruptions),
            run_losses=max(1, self.run_losses),
            run_failures=self.run_failures,
        )
        return one_more(task, cause, budgets)


@dataclass(frozen=True)
class Append:
    """One event to append, with the expected sequence of its aggregate."""

    event: ev.Event
    expected_seq: int


def actor(executor: str) -> str:
    return f"executor:{executor}"


@dataclass(frozen=True)
class Claim:
    """An attempt the log shows claimed by a hosted agent and not started yet: what that agent
    runs next. ``seq``: the task's version in the fold, the expected sequence of its
    ``running`` (a task cancelled or requeued meanwhile makes that append conflict)."""

    swarm: str
    task: str
    agent: str
    attempt: int
    seq: int


def claim_to_run(board: Board, swarm: str, agent: str) -> Claim | None:
    """The claim ``agent`` has to run, if any: the task the fold shows claimed by it (an agent
    holds at most one). The claim in the log is the dispatch: no message carries it. An agent
    the log shows lost runs nothing: the scheduler requeues its claim, unless the agent is back
    (registered again) first."""
    view = board.agent(swarm, agent)
    if view is None or view.task is None or view.status == "lost":
        return None
    task = board.task(swarm, view.task)
    if task is None or task.status != "claimed" or task.agent != agent:
        return None
    return Claim(swarm, task.id, agent, task.attempt, board.version(swarm, "task", task.id))


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

    Claimed (not yet running) tasks are left alone: the claim is in the log, and the agent's
    serving loop runs it like any other (``claim_to_run``)."""
    view = board.swarms.get(swarm)
    if view is None:
        return []
    now = time.time() if now is None else now
    found = []
    for task in view.tasks.live():  # every unfinished task is live
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
                f"executor {executor} restarted while run {task.runs} was running on {task.agent}"
            ),
            retry_at=now,
            cause="run_lost",
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


ON_DEMAND_BELOW = 0.25  # share of its swarm's agents under which an executor folds on demand


def folds_on_demand(board: Board, swarm: str, executor: str) -> bool:
    """Whether this executor keeps its fold of the swarm up to date on demand
    (``projection.Lazily``) rather than folding every event as it is stored: while the agents
    it hosts are under ``ON_DEMAND_BELOW`` of the swarm's. A catch-up round (a pull request and
    its batch) costs more than folding its few events as they come, and one comes with every
    claim for an agent hosted here; reading on demand pays only when most of the log is other
    executors' work. Measured (issue 15, docs/benchmarks.md "Issue 15, last session"): 2
    executors x 4 agents on demand ran at 0.22x the raw lifecycle rate, live at 0.47x; 16
    executors x 62 agents need it (claim p99 at low load)."""
    view = board.swarms.get(swarm)
    if view is None or not view.agents:
        return False
    here = sum(1 for agent in view.agents.values() if agent.executor == executor)
    return here < ON_DEMAND_BELOW * len(view.agents)


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


# --- an attempt: its start, its session, its end ------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """One attempt of a task on an agent, as the events about it name it."""

    swarm: str
    task: str
    attempt: int
    agent: str
    correlation_id: str | None = None


class _Envelope(TypedDict):
    """What every event about an attempt carries."""

    swarm: str
    id: str
    time: float
    actor: str
    correlation_id: str | None


def _envelope(attempt: Attempt, executor: str, now: float) -> _Envelope:
    return _Envelope(
        swarm=attempt.swarm,
        id=attempt.task,
        time=now,
        actor=actor(executor),
        correlation_id=attempt.correlation_id,
    )


def running(
    attempt: Attempt,
    executor: str,
    now: float,
    *,
    inbox_read_through: int = 0,
    session_id: str | None = None,
    resumed: bool = False,
    branch: str | None = None,
    base: str | None = None,
) -> ev.TaskRunning:
    """``task.running``: the attempt starts here (with the mentions its prompt takes, for a
    claude task the session it runs in — known before the CLI starts, so even an attempt that is
    lost without a word leaves its session in the log — and, in a project, the task's branch and
    the commit it was cut from)."""
    return ev.TaskRunning(
        **_envelope(attempt, executor, now),
        agent=attempt.agent,
        attempt=attempt.attempt,
        executor=executor,
        inbox_read_through=inbox_read_through,
        session_id=session_id,
        resumed=resumed,
        branch=branch,
        base=base,
    )


def session_to_resume(task: TaskView, agent: str) -> str | None:
    """The claude session an attempt of ``task`` on ``agent`` may continue: the one an earlier
    attempt ran in on the same agent (so in the same sandbox), when the task went back to the
    queue instead of ending. Whether the sandbox still holds it is for the sandbox to say."""
    if task.runtime != "claude" or task.attempt <= 1 or task.session_agent != agent:
        return None
    if task.session_id is None or not SESSION_ID.match(task.session_id):
        return None
    return task.session_id


def result(
    attempt: Attempt,
    verdict: Verdict,
    executor: str,
    now: float,
    *,
    given_back: str | None = None,
    cause: ev.AttemptEnd = "run_stopped",
    work: ev.Work | None = None,
    task: TaskView | None = None,
    allowance: Allowance | None = None,
) -> ev.TaskCompleted | ev.TaskFailed | ev.TaskRequeued:
    """How the attempt ended, as the event to append: ``requeued`` (the next attempt, at once)
    when it was stopped for a reason that is not the task's (``given_back``, with its ``cause``:
    this executor stopping or the agent leaving is ``run_stopped``, a lost sandbox
    ``run_lost``), else ``completed`` or ``failed`` with the run's outcome (and, in a project,
    the ``work`` it left) and, for a failure, why. A failed run whose task (``task``: as the
    fold shows it, this run not yet counted) has run failures left in its budget
    (``allowance``) goes back to the queue instead, after ``retry_in``, saying so ("run 1
    failed: exit 1; 1 of 2 run failures used"); the last one allowed fails it, saying so when
    more than one was. Reasons say the budget used when ``task`` and the budget are known."""
    envelope = _envelope(attempt, executor, now)
    allowance = allowance or Allowance()
    if given_back is not None:
        spent = allowance.one_more(task, cause) if task is not None else None
        return ev.TaskRequeued(
            **envelope,
            attempt=attempt.attempt + 1,
            reason=f"{given_back}; {spent.text}" if spent is not None else given_back,
            retry_at=now,
            cause=cause,
        )
    if verdict.completed:
        return ev.TaskCompleted(
            **envelope,
            attempt=attempt.attempt,
            agent=attempt.agent,
            outcome=verdict.outcome,
            work=work,
        )
    reason = verdict.reason or "failed"
    if task is not None and allowance.run_failures > 1:
        spent = allowance.one_more(task, "run_failed")
        assert spent is not None  # its budget is always known
        if not spent.final:
            return ev.TaskRequeued(
                **envelope,
                attempt=attempt.attempt + 1,
                reason=f"run {run_number(task)} failed: {reason}; {spent.text}",
                retry_at=now + allowance.retry_in,
                cause="run_failed",
                outcome=verdict.outcome,
            )
        reason = f"{reason}; {spent.text}"
    return ev.TaskFailed(
        **envelope,
        reason=reason,
        attempt=attempt.attempt,
        agent=attempt.agent,
        outcome=verdict.outcome,
        work=work,
    )


def not_started(attempt: Attempt, executor: str, now: float, reason: str) -> ev.TaskFailed:
    """``failed`` for an attempt that could not start at all (e.g. its branch could not be cut
    in the project): appended at the claim's sequence, with no run outcome."""
    return ev.TaskFailed(
        **_envelope(attempt, executor, now),
        reason=reason,
        attempt=attempt.attempt,
        agent=attempt.agent,
    )
