"""Spending limits (pure): when a swarm's recorded spend has reached its budget, its claude tasks
are not claimed any more — the scheduler holds them, and the board and ``swarm status`` say why.

Spend is what the log records: the ``cost_usd`` of each ``completed`` / ``failed`` run, summed
by the fold per task, per agent and per swarm. An attempt that never wrote a result (its agent
was lost) is not in it. ``shell`` and ``instant`` tasks cost nothing and are never held.
"""

from __future__ import annotations

from schemas.board import SwarmView, TaskView


def budget_reached(swarm: SwarmView) -> str | None:
    """Why the swarm's claude tasks are held (None: they are not)."""
    if swarm.budget_usd is None or swarm.spent_usd < swarm.budget_usd:
        return None
    return (
        f"swarm budget ${swarm.budget_usd:.2f} reached (${swarm.spent_usd:.2f} spent): its "
        "claude tasks are not claimed until the budget is raised"
    )


def held(swarm: SwarmView, task: TaskView) -> bool:
    """Whether the swarm's budget holds ``task`` back from being claimed."""
    return task.runtime == "claude" and budget_reached(swarm) is not None
