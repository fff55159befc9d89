"""Chaos through the real processes (``tests/chaos_support.py``): every service kind killed -9 at
random moments while tasks are created over HTTP with Idempotency-Keys and run; then nats-server
itself. Every task is created once and completes once; no attempt's command runs twice.

``SWARM_CHAOS_SEED`` replays a run's random choices (the seed is printed with its figures).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from chaos_support import SERVICE_KINDS, Outcome, Plan, run_chaos


def seed() -> int:
    chosen = os.environ.get("SWARM_CHAOS_SEED")
    return int(chosen) if chosen else random.randrange(1_000_000)


def reported(plan: Plan, outcome: Outcome) -> str:
    print(outcome.figures.report())
    for line in outcome.churn:
        print(f"  churn: {line}")
    return f"seed {plan.seed} (SWARM_CHAOS_SEED={plan.seed} replays it):\n" + "\n".join(
        outcome.problems
    )


def test_services_killed_at_random_lose_no_task_and_duplicate_none(tmp_path: Path) -> None:
    plan = Plan(seed=seed(), tasks=40, seconds=20.0, every=1.5)

    outcome = run_chaos(tmp_path / "chaos", plan)

    assert outcome.problems == [], reported(plan, outcome)
    assert outcome.figures.tasks == plan.tasks
    assert set(outcome.figures.kills) == set(SERVICE_KINDS)
    reported(plan, outcome)


def test_nats_server_killed_and_restarted_mid_run_loses_no_task_and_duplicates_none(
    tmp_path: Path,
) -> None:
    plan = Plan(seed=seed(), tasks=30, seconds=12.0, every=4.0, down=1.0, kinds=("nats",))

    outcome = run_chaos(tmp_path / "chaos", plan)

    assert outcome.problems == [], reported(plan, outcome)
    assert outcome.figures.tasks == plan.tasks
    assert outcome.figures.kills["nats"] >= 2
    reported(plan, outcome)
