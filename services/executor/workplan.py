"""What Swarm does in git around one task, decided from the fold, and the events that record it.
Pure: ``integration.py`` does the git steps these plan.

A task of a swarm whose attached project has been initialised and whose mode is not ``off``
works on its own branch ``swarm/<task>``, cut from the project branch's newest tip; what the run
leaves is committed by Swarm as the agent, the branch pushed, and (mode ``integrate``) landed on
the project branch. A resolve task (``resolves``) starts from the tip with the stuck task's work
applied on top.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal, TypedDict

from schemas import events as ev
from schemas.board import Board, ProjectView, SwarmView, TaskView
from schemas.landing import MAX_RESOLVE_ROUNDS, resolve_round
from services.executor import git
from services.executor.git import GitFailed

OUTPUT_KEPT = 4000  # characters of verify's output an event keeps


@dataclass(frozen=True)
class Resolving:
    """The stuck task whose work a resolve task applies on the tip: its ``head`` commit."""

    task: str
    head: str
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class WorkPlan:
    """One task's git: its ``branch`` from ``onto``'s tip; ``mode`` ``integrate`` lands it there
    (``strategy``, ``verify``), ``branch`` only pushes it. ``identity``: who Swarm's commit and
    a merge are by."""

    swarm: str
    task: str
    attempt: int
    title: str
    project: str
    mode: Literal["integrate", "branch"]
    onto: str
    branch: str
    strategy: ev.MergeStrategy
    verify: str | None
    identity: tuple[str, str]
    credentials_ref: str | None = None
    resolving: Resolving | None = None
    resolve_conflicts: bool = True  # a stuck landing gets a resolve task (else the task fails)

    @property
    def message(self) -> str:
        return git.commit_message(
            self.title, self.task, self.resolving.task if self.resolving else None
        )


@dataclass(frozen=True)
class Landed:
    commit: str
    tries: int
    seconds: float
    already: bool = False


@dataclass(frozen=True)
class Stuck:
    problem: ev.LandingProblem
    tries: int
    seconds: float
    tip: str | None = None
    files: tuple[str, ...] = ()
    output: str = ""


def attached(board: Board, swarm: str) -> ProjectView | None:
    view = board.swarms.get(swarm)
    if view is None or view.project is None:
        return None
    return view.projects.get(view.project)


def plan(board: Board, swarm: str, task: TaskView, agent: str) -> WorkPlan | None:
    """The git around ``task`` run by ``agent``: None when there is none (no project, never
    initialised, mode ``off``). ``GitFailed`` when the task cannot run in the project (the
    agent's checkout failed, the stuck work a resolve task is for is gone)."""
    project = attached(board, swarm)
    if project is None or project.round == 0 or project.mode == "off":
        return None
    checkout = project.checkouts.get(agent)
    if checkout is None or checkout.state == "sync_failed":
        why = checkout.error if checkout is not None and checkout.error else "no checkout"
        raise GitFailed(
            f"agent {agent} has no working checkout of project {project.id}: {why} (fix the "
            f"project: swarm project update {project.id} …, then swarm project init)"
        )
    onto = project.target
    if onto is None:
        raise GitFailed(f"project {project.id}'s branch is not known yet (init it first)")
    view = board.swarms[swarm]
    resolving = None
    if task.resolves is not None:
        stuck = view.tasks.get(task.resolves)
        work = stuck.integration if stuck is not None else None
        if work is None or work.head is None:
            raise GitFailed(f"task {task.resolves}, whose work this task resolves, has none")
        resolving = Resolving(task.resolves, work.head, tuple(work.files))
    return _plan(view, project, task, agent, project.mode, onto, git.task_branch(task.id),
                 resolving)  # fmt: skip


def _plan(
    view: SwarmView,
    project: ProjectView,
    task: TaskView,
    agent: str,
    mode: Literal["integrate", "branch"],
    onto: str,
    branch: str,
    resolving: Resolving | None = None,
) -> WorkPlan:
    agent_view = view.agents.get(agent)
    return WorkPlan(
        swarm=view.id,
        task=task.id,
        attempt=task.attempt,
        title=task.title,
        project=project.id,
        mode=mode,
        onto=onto,
        branch=branch,
        strategy=project.strategy,
        verify=project.verify,
        identity=git.identity(agent, agent_view.name if agent_view else None),
        credentials_ref=project.credentials_ref,
        resolving=resolving,
        resolve_conflicts=project.on_conflict == "resolve"
        and resolve_round(view, task) < MAX_RESOLVE_ROUNDS,
    )


def landing_plan(board: Board, swarm: str, task: TaskView) -> WorkPlan | None:
    """The plan to land a completed task's work again (a landing a crash left undone), from
    what the log says of it; None when nothing is left to land."""
    work = task.integration
    view = board.swarms.get(swarm)
    if view is None or work is None or work.state != "landing" or task.agent is None:
        return None
    project = view.projects.get(work.project)
    if project is None or work.head is None or work.base is None:
        return None
    onto = work.onto or project.target or ""
    return _plan(view, project, task, task.agent, "integrate", onto, work.branch)


def landings_due(board: Board, swarm: str, agents: Collection[str]) -> list[TaskView]:
    """Completed tasks whose work is still to land, oldest first: those of ``agents`` (the
    executor that ran them stopped between the ``completed`` event and the landing), and those
    whose agent is lost or gone (its executor may never come back: any executor lands them)."""
    view = board.swarms.get(swarm)
    if view is None:
        return []
    due = []
    for task in view.tasks.live():  # a task whose work is to land is never frozen
        work = task.integration
        if task.status != "completed" or work is None or work.state != "landing":
            continue
        agent = view.agents.get(task.agent or "")
        if task.agent in agents or agent is None or agent.status == "lost":
            due.append(task)
    return sorted(due, key=lambda t: (t.finished_at or 0.0, t.created_seq))


def work(
    plan: WorkPlan, base: str, head: str, *, pushed: bool, ran: bool, error: str | None = None
) -> ev.Work:
    """What the run left, for its ``completed``/``failed`` event (``ran``: it completed)."""
    return ev.Work(
        project=plan.project,
        branch=plan.branch,
        base=base,
        head=head,
        onto=plan.onto,
        pushed=pushed,
        land=ran and plan.mode == "integrate" and head != base and pushed,
        error=error,
    )


class _LandingFields(TypedDict):
    """What both landing events carry."""

    swarm: str
    id: str
    time: float
    actor: str
    event_id: str
    correlation_id: str | None
    attempt: int
    project: str
    onto: str
    tries: int
    seconds: float


def landing_event(
    plan: WorkPlan, outcome: Landed | Stuck, actor: str, correlation_id: str | None = None
) -> ev.TaskIntegrated | ev.TaskIntegrationFailed:
    """The event recording how the landing went. One message id per attempt, however often
    (or by whichever executor) the append is retried."""
    common = _LandingFields(
        swarm=plan.swarm,
        id=plan.task,
        time=time.time(),
        actor=actor,
        event_id=f"{plan.swarm}:task:{plan.task}:landing:{plan.attempt}",
        correlation_id=correlation_id,
        attempt=plan.attempt,
        project=plan.project,
        onto=plan.onto,
        tries=outcome.tries,
        seconds=round(outcome.seconds, 3),
    )
    if isinstance(outcome, Landed):
        return ev.TaskIntegrated(**common, landed=outcome.commit, already=outcome.already)
    return ev.TaskIntegrationFailed(
        **common,
        problem=outcome.problem,
        tip=outcome.tip,
        files=list(outcome.files),
        output=outcome.output[-OUTPUT_KEPT:],
        resolve=plan.resolve_conflicts and outcome.problem in ("conflict", "verify"),
    )
