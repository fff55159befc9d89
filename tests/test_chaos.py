"""Chaos through the real processes (``tests/chaos_support.py``): every service kind killed -9 at
random moments while tasks are created over HTTP with Idempotency-Keys and run; then nats-server
itself. Every task is created once and completes once; no attempt's command runs twice; a claim
lost before its run uses up none of the task's budgets (it goes back as ``claim_lost``).

``SWARM_CHAOS_SEED`` replays a run's random choices (the seed is printed with its figures).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from chaos_support import SERVICE_KINDS, Outcome, Plan, check, run_chaos


def seed() -> int:
    chosen = os.environ.get("SWARM_CHAOS_SEED")
    return int(chosen) if chosen else random.randrange(1_000_000)


def reported(plan: Plan, outcome: Outcome) -> str:
    print(outcome.figures.report())
    return f"seed {plan.seed} (SWARM_CHAOS_SEED={plan.seed} replays it):\n" + "\n".join(
        outcome.problems + outcome.churn
    )


def test_services_killed_at_random_lose_no_task_and_duplicate_none(tmp_path: Path) -> None:
    plan = Plan(seed=seed(), tasks=40, seconds=20.0, every=1.5)

    outcome = run_chaos(tmp_path / "chaos", plan)

    assert outcome.problems == [], reported(plan, outcome)
    assert outcome.churn == [], reported(plan, outcome)  # no attempt used up by a lost claim
    assert outcome.figures.tasks == plan.tasks
    assert set(outcome.figures.kills) == set(SERVICE_KINDS)
    reported(plan, outcome)


def test_nats_server_killed_and_restarted_mid_run_loses_no_task_and_duplicates_none(
    tmp_path: Path,
) -> None:
    plan = Plan(seed=seed(), tasks=30, seconds=12.0, every=4.0, down=1.0, kinds=("nats",))

    outcome = run_chaos(tmp_path / "chaos", plan)

    assert outcome.problems == [], reported(plan, outcome)
    assert outcome.churn == [], reported(plan, outcome)  # no attempt used up by a lost claim
    assert outcome.figures.tasks == plan.tasks
    assert outcome.figures.kills["nats"] >= 2
    reported(plan, outcome)


# --- the checks themselves, on logs written by hand -------------------------------------------


def log(task: str, *steps: tuple[str, dict]) -> list[dict]:
    """A task's events: ``created`` titled after the request ``k-<task>``, then ``steps``."""
    events = [{"type": "task.created", "id": task, "title": f"chaos k-{task}", "time": 0.0}]
    for index, (verb, fields) in enumerate(steps, 1):
        events.append({"type": f"task.{verb}", "id": task, "time": float(index), **fields})
    return events


def claim(attempt: int) -> tuple[str, dict]:
    return "claimed", {"attempt": attempt, "agent": "a"}


def running(attempt: int) -> tuple[str, dict]:
    return "running", {"attempt": attempt, "agent": "a"}


def completed(attempt: int) -> tuple[str, dict]:
    return "completed", {"attempt": attempt, "agent": "a"}


def requeued(attempt: int, cause: str | None) -> tuple[str, dict]:
    return "requeued", {"attempt": attempt, "reason": "agent a lost", "cause": cause}


def test_a_clean_run_has_no_problem_and_no_churn() -> None:
    events = log(
        "t1",
        claim(1),
        requeued(2, "claim_lost"),
        claim(2),
        running(2),
        requeued(3, "run_lost"),
        claim(3),
        running(3),
        completed(3),
    )
    checked = check(events, {"k-t1": "t1"}, ["t1 2", "t1 3"], {"k-t1": "t1"})
    assert (checked.problems, checked.churn) == ([], [])
    assert (checked.counts["claims_lost"], checked.counts["runs_lost"]) == (1, 1)


def test_a_task_created_twice_or_not_completed_is_a_problem() -> None:
    twice = log("t1", claim(1), running(1), completed(1)) + log(
        "t2", claim(1), running(1), completed(1)
    )
    twice[-4]["title"] = "chaos k-t1"  # the second task is the same request's
    checked = check(twice, {"k-t1": "t1"}, ["t1 1", "t2 1"], {"k-t1": "t2"})
    assert "2 tasks created for one request: 'chaos k-t1'" in checked.problems
    assert "the request k-t1 sent again named t2, not t1" in checked.problems

    failed = log("t1", claim(1), ("failed", {"attempt": 1, "reason": "all attempts used"}))
    checked = check(failed, {"k-t1": "t1"}, [])
    assert checked.problems and "ended ['task.failed']" in checked.problems[0]


def test_a_command_run_twice_or_never_is_a_problem() -> None:
    events = log("t1", claim(1), running(1), completed(1))
    assert check(events, {"k-t1": "t1"}, ["t1 1", "t1 1"]).problems == [
        "t1: attempt 1 ran to the end twice"
    ]
    assert check(events, {"k-t1": "t1"}, []).problems == [
        "t1: completed attempt 1 never ran its command"
    ]


def test_a_claim_lost_before_running_that_uses_up_an_attempt_is_churn() -> None:
    events = log("t1", claim(1), requeued(2, None), claim(2), running(2), completed(2))
    checked = check(events, {"k-t1": "t1"}, ["t1 2"])
    assert checked.problems == []
    assert len(checked.churn) == 1 and "attempt 1 was lost before it ran" in checked.churn[0]

    ran = log("t1", claim(1), running(1), requeued(2, "claim_lost"), claim(2), running(2))
    ran += log("t1", completed(2))[1:]
    assert check(ran, {"k-t1": "t1"}, ["t1 2"]).churn == [
        "t1: attempt 1 ran, requeued as a lost claim"
    ]
