"""Which idle agent takes which claimable task. Pure: boards in, pairs out.

- An agent can take a task when the task has no tags, or the agent's skills share a tag with it
  (compared without case or surrounding spaces: ``schemas.eligibility``).
- Among the agents that can, the one sharing the most tags wins; ties go to the agent id that
  sorts first, so the same board always gives the same answer.
- Tasks are served in priority order (critical > high > medium > low), then oldest first; a task
  no free agent can take does not hold up the ones behind it.
"""

from __future__ import annotations

from collections.abc import Iterable

from schemas.board import AgentView, TaskView, task_sort_key
from schemas.eligibility import can_take, shared_tags
from schemas.eligibility import word_set as _words

__all__ = ["best_agent", "can_take", "match", "shared_tags"]


def best_agent(task: TaskView, agents: Iterable[AgentView]) -> AgentView | None:
    """The agent that fits ``task`` best (most shared tags, then lowest id), or None."""
    return _best(_words(task.tags), [(agent, _words(agent.skills)) for agent in agents])


def _best(
    tags: frozenset[str], agents: Iterable[tuple[AgentView, frozenset[str]]]
) -> AgentView | None:
    best: tuple[int, str] | None = None
    chosen: AgentView | None = None
    for agent, skills in agents:
        shared = len(tags & skills)
        if tags and not shared:
            continue
        rank = (-shared, agent.id)
        if best is None or rank < best:
            best, chosen = rank, agent
    return chosen


def match(
    tasks: Iterable[TaskView], agents: Iterable[AgentView]
) -> list[tuple[TaskView, AgentView]]:
    """Pair tasks with free agents, highest priority and oldest first; each agent at most once.

    ``tasks`` must already be claimable and ``agents`` free: this only decides who takes what.
    """
    free = {agent.id: (agent, _words(agent.skills)) for agent in agents}
    pairs: list[tuple[TaskView, AgentView]] = []
    for task in sorted(tasks, key=task_sort_key):
        if not free:
            break
        agent = _best(_words(task.tags), free.values())
        if agent is not None:
            pairs.append((task, agent))
            del free[agent.id]
    return pairs
