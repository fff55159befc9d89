"""Which agent may take which task, by skills and tags. Pure; shared by the scheduler's matching,
the gateway (a warning when a task is created that no agent can take) and ``swarm doctor``.

An agent can take a task when the task has no tags, or the agent's skills share a tag with it
(compared without case or surrounding spaces).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from schemas.board import FINISHED, AgentView, SwarmView, TaskView


def words(values: Iterable[str]) -> frozenset[str]:
    """Tags or skills as compared: lower case, stripped, empty ones dropped."""
    return frozenset(word for value in values if (word := value.strip().lower()))


@functools.lru_cache(maxsize=16_384)
def _words_of(values: tuple[str, ...]) -> frozenset[str]:
    return words(values)


def word_set(values: list[str]) -> frozenset[str]:
    """``words``, remembered: matching asks for every free agent's skills on every decide round
    (with 1,000 agents, most of a round's cost); a fleet has few distinct skill lists."""
    return _words_of(tuple(values))


def shared_tags(agent: AgentView, task: TaskView) -> int:
    """How many of the task's tags the agent has among its skills."""
    return len(words(task.tags) & words(agent.skills))


def can_take(agent: AgentView, task: TaskView) -> bool:
    return not words(task.tags) or shared_tags(agent, task) > 0


def takers(swarm: SwarmView, task: TaskView) -> list[AgentView]:
    """The swarm's registered agents (whatever their status) whose skills fit ``task``."""
    return [agent for agent in swarm.agents.values() if can_take(agent, task)]


def untakeable(swarm: SwarmView) -> list[TaskView]:
    """Unfinished tasks that no registered agent of the swarm can take: they wait until an agent
    with a matching skill is registered."""
    return [
        task
        for task in swarm.tasks.values()
        if task.status not in FINISHED and not takers(swarm, task)
    ]
