"""Chaos through the real processes (``tests/chaos_support.py``): every service kind killed -9 at
random moments while tasks are created over HTTP with Idempotency-Keys and run; then nats-server
itself. Every task is created once and completes once, and churn uses up no attempt.

``SWARM_CHAOS_SEED`` replays a run's random choices (the seed is printed with its figures).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from chaos_support import Plan, run_chaos


def seed() -> int:
    chosen = os.environ.get("SWARM_CHAOS_SEED")
    return int(chosen) if chosen else random.randrange(1_000_000)


def test_services_killed_at_random_lose_no_task_duplicate_none_and_waste_no_attempt(
    tmp_path: Path,
) -> None:
    plan = Plan(seed=seed(), tasks=40, seconds=20.0, every=1.5)
    print(f"chaos seed {plan.seed} (SWARM_CHAOS_SEED={plan.seed} replays it)")

    outcome = run_chaos(tmp_path / "chaos", plan)

    print(outcome.figures.report())
    assert outcome.problems == [], f"seed {plan.seed}:\n" + "\n".join(outcome.problems)
    assert outcome.figures.tasks == plan.tasks
    assert set(outcome.figures.kills) == {"gateway", "scheduler", "chat", "mcp", "executor"}


def test_nats_server_killed_and_restarted_mid_run_loses_no_task_and_duplicates_none(
    tmp_path: Path,
) -> None:
    plan = Plan(seed=seed(), tasks=30, seconds=12.0, every=4.0, down=1.0, kinds=("nats",))
    print(f"chaos seed {plan.seed} (SWARM_CHAOS_SEED={plan.seed} replays it)")

    outcome = run_chaos(tmp_path / "chaos", plan)

    print(outcome.figures.report())
    assert outcome.problems == [], f"seed {plan.seed}:\n" + "\n".join(outcome.problems)
    assert outcome.figures.tasks == plan.tasks
    assert outcome.figures.kills["nats"] >= 2
