"""Whether a task's work is on the project's branch: the rule that lets a dependent start.

Pure; used by the fold (a task is claimable only when its dependencies are ``done``) and by the
scheduler (unblock when ``done``, fail the dependent when ``never``, create resolve tasks).

A dependency is ``done`` when it completed and its work landed, or there was nothing to land
(no project, mode ``off`` or ``branch``, a run that changed nothing). It is ``waiting`` while it
has not completed, while its integration is due, or while a resolve task is on its way to make
it land. It is ``never`` done when it failed or was cancelled, or when its work could not land
and nothing will make it (no resolve task; the resolve task itself can never land).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from schemas.board import Integration, SwarmView, TaskView

MAX_RESOLVE_ROUNDS = 3  # resolve tasks in a row for one task's work before it fails instead
STUCK: frozenset[str] = frozenset({"conflict", "verify_failed", "failed"})


@dataclass(frozen=True)
class Landing:
    state: Literal["done", "waiting", "never"]
    reason: str = ""


DONE = Landing("done")
WAITING = Landing("waiting")


def problem_text(integration: Integration) -> str:
    """What kept the work off the branch, in a line: ``conflict in a.py, b.py``."""
    if integration.problem == "conflict":
        files = ", ".join(integration.files[:10]) or "?"
        more = f" (+{len(integration.files) - 10} more)" if len(integration.files) > 10 else ""
        return f"conflict in {files}{more}"
    last = [line for line in integration.output.strip().splitlines() if line.strip()]
    tail = last[-1][:200] if last else "no output"
    if integration.problem == "verify":
        return f"verify failed: {tail}"
    return tail


def landing(swarm: SwarmView, task: TaskView, _depth: int = 0) -> Landing:
    """Where ``task``'s work stands, for a task that depends on it."""
    if task.status in ("failed", "cancelled"):
        return Landing("never", task.status)
    if task.status != "completed":
        return WAITING
    work = task.integration
    if work is None or work.state not in ("landing", *STUCK):
        return DONE
    if work.state == "landing":
        return WAITING
    if not work.resolve:
        return Landing("never", f"its work did not land: {problem_text(work)}")
    if work.resolver is None:
        return WAITING  # the scheduler creates the resolve task
    resolver = swarm.tasks.get(work.resolver)
    if resolver is None:
        return Landing("never", f"its resolve task {work.resolver} was deleted")
    if _depth >= MAX_RESOLVE_ROUNDS:
        return Landing("never", "its work did not land after several resolve tasks")
    found = landing(swarm, resolver, _depth + 1)
    if found.state == "never":
        return Landing("never", f"its resolve task {resolver.id}: {found.reason}")
    return found


def dependency_landing(swarm: SwarmView, dep: str) -> Landing:
    """``landing`` of the task ``dep`` (missing: ``waiting``; the scheduler tells a deleted
    dependency from one not written yet)."""
    settled = swarm.tasks.frozen_status(dep)
    if settled is not None:  # frozen, so settled: its status says it without decoding it
        return DONE if settled == "completed" else Landing("never", settled)
    task = swarm.tasks.get(dep)
    return WAITING if task is None else landing(swarm, task)


def deps_landed(swarm: SwarmView, task: TaskView) -> bool:
    """Every dependency of ``task`` completed with its work on the project's branch."""
    return all(dependency_landing(swarm, dep).state == "done" for dep in task.depends)


def resolve_round(swarm: SwarmView, task: TaskView) -> int:
    """How many resolve tasks stand between ``task`` and the task whose work it makes land (0:
    it is an ordinary task)."""
    rounds = 0
    current = task
    while current.resolves is not None and rounds <= MAX_RESOLVE_ROUNDS:
        rounds += 1
        parent = swarm.tasks.get(current.resolves)
        if parent is None:
            break
        current = parent
    return rounds


def origin_task(swarm: SwarmView, task: TaskView) -> TaskView:
    """The task whose work a chain of resolve tasks makes land (``task`` itself when it is an
    ordinary one)."""
    current = task
    for _ in range(MAX_RESOLVE_ROUNDS + 1):
        parent = swarm.tasks.get(current.resolves) if current.resolves else None
        if parent is None:
            return current
        current = parent
    return current


def resolve_task_id(swarm: SwarmView, task: TaskView) -> str:
    """The id of the task that makes ``task``'s work land: ``<origin>-resolve-<round>`` (a long
    origin id is shortened, with a hash of it, to stay a valid id)."""
    origin = origin_task(swarm, task).id
    if len(origin) > 110:
        origin = f"{origin[:100]}-{hashlib.sha1(origin.encode()).hexdigest()[:8]}"
    return f"{origin}-resolve-{resolve_round(swarm, task) + 1}"


def needs_resolver(task: TaskView) -> bool:
    """A completed task whose work is stuck and waits for its resolve task to be written."""
    work = task.integration
    return (
        task.status == "completed"
        and work is not None
        and work.state in STUCK
        and work.resolve
        and work.resolver is None
    )
