"""Attempts and their budgets: what a task's attempts came to, and when a task has had enough.

An attempt (one claim) that ends without a final result goes back to the queue
(``task.requeued``, the next attempt) for one of four reasons, its ``cause``. The fold counts
each on the task; each kind uses its own budget, so infrastructure churn never burns the budget
of the task's own failures, and a task fails exactly when one budget is used up:

- ``claim_lost``: the agent (or its executor) was lost before the run started -> ``claims_lost``,
  budget ``interruptions`` (20 by default);
- ``run_stopped``: the executor stopped the run on purpose (a clean stop, the agent moved away)
  -> ``runs_stopped``, budget ``interruptions`` too;
- ``run_lost``: the agent, executor or sandbox was lost during the run -> ``runs_lost``, budget
  ``run_losses`` (3);
- ``run_failed``: the run failed on its own (exit code, claude error) -> ``runs_failed``, budget
  ``run_failures`` (1).

A budget of N allows N of its kind: the Nth is the last (``run_failures = 1``: a failed run
fails the task, no retry). Interruptions are a generous guard against a task that can never
start, not a retry budget: a lost claim or a stopped run says nothing about the task.

Pure: the fold, the scheduler's ``decide`` and the executor's result all read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from schemas.board import TaskView
from schemas.errors import Invalid
from schemas.events import AttemptEnd

Kind = Literal["interruptions", "run_losses", "run_failures"]
KINDS: tuple[Kind, ...] = ("interruptions", "run_losses", "run_failures")

KIND_OF: dict[AttemptEnd, Kind] = {
    "claim_lost": "interruptions",
    "run_stopped": "interruptions",
    "run_lost": "run_losses",
    "run_failed": "run_failures",
}
WORDS: dict[Kind, str] = {
    "interruptions": "interruptions",
    "run_losses": "run losses",
    "run_failures": "run failures",
}


@dataclass(frozen=True)
class Budgets:
    """How many of each kind a task may have (``Kind``); the last one allowed ends it."""

    interruptions: int = 20
    run_losses: int = 3
    run_failures: int = 1

    def __post_init__(self) -> None:
        for kind in KINDS:
            value = getattr(self, kind)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise Invalid(f"max_{kind}", f"max {WORDS[kind]} must be 1 or more, not {value!r}")

    def allowed(self, kind: Kind) -> int:
        allowed: int = getattr(self, kind)
        return allowed


def cause_of(task: TaskView, cause: AttemptEnd | None) -> AttemptEnd:
    """The cause of a requeue of ``task`` (as the board shows it before the requeue): as the
    event says, or — an event written before causes were recorded — from the task's state."""
    if cause is not None:
        return cause
    return "claim_lost" if task.status == "claimed" else "run_lost"


def count(task: TaskView, cause: AttemptEnd) -> None:
    """The fold: one more of ``cause`` on the task."""
    if cause == "claim_lost":
        task.claims_lost += 1
    elif cause == "run_stopped":
        task.runs_stopped += 1
    elif cause == "run_lost":
        task.runs_lost += 1
    else:
        task.runs_failed += 1


def used(task: TaskView, kind: Kind) -> int:
    """How many of ``kind`` the task has had."""
    if kind == "interruptions":
        return task.claims_lost + task.runs_stopped
    if kind == "run_losses":
        return task.runs_lost
    return task.runs_failed


def usage(used: int, allowed: int, kind: Kind) -> str:
    """``2 of 3 run losses used``."""
    return f"{used} of {allowed} {WORDS[kind]} used"


def spent(task: TaskView, budgets: Budgets) -> str | None:
    """The first budget ``task`` has used up (its usage text), or None."""
    for kind in KINDS:
        allowed = budgets.allowed(kind)
        if used(task, kind) >= allowed:
            return usage(used(task, kind), allowed, kind)
    return None


@dataclass(frozen=True)
class Outcome:
    """What one more of ``kind`` does to a task: ``final`` (its budget is used up: the task
    fails) or another attempt; ``text``: the usage, for the reason."""

    kind: Kind
    used: int
    allowed: int

    @property
    def final(self) -> bool:
        return self.used >= self.allowed

    @property
    def text(self) -> str:
        return usage(self.used, self.allowed, self.kind)


def one_more(task: TaskView, cause: AttemptEnd, budgets: Budgets) -> Outcome:
    """What one more attempt ending with ``cause`` does to ``task``."""
    kind = KIND_OF[cause]
    return Outcome(kind, used(task, kind) + 1, budgets.allowed(kind))


def run_number(task: TaskView) -> int:
    """The run an active attempt is (running), or would be (claimed): 1 for the first."""
    return task.runs if task.status == "running" else task.runs + 1
