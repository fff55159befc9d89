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
        for task in swarm.tasks.live()  # every unfinished one is live
        if task.status not in FINISHED and not takers(swarm, task)
    ]


def why_untakeable(swarm: SwarmView, task: TaskView) -> str | None:
    """Why no registered agent of the swarm can take ``task`` (None: one can), in words a
    person can act on; the gateway's ``warnings`` and ``swarm status`` say it."""
    if task.status in FINISHED or takers(swarm, task):
        return None
    if not swarm.agents:
        return (
            f"no agent is registered in swarm {swarm.id}: task {task.id} waits until one is "
            f"(POST /swarms/{swarm.id}/agents)"
        )
    skills = sorted(words(skill for agent in swarm.agents.values() for skill in agent.skills))
    having = ", ".join(skills) if skills else "none"
    return (
        f"no agent of swarm {swarm.id} has a skill among task {task.id}'s tags "
        f"({', '.join(task.tags)}); it waits until one is registered (agents' skills: {having})"
    )


def untakeable_warnings(swarm: SwarmView, limit: int = 20) -> list[str]:
    """``why_untakeable`` for the swarm's waiting tasks, oldest first, at most ``limit`` (then
    one line saying how many more)."""
    stuck = sorted(untakeable(swarm), key=lambda task: (task.created_seq, task.id))
    found = [reason for task in stuck[:limit] if (reason := why_untakeable(swarm, task))]
    if len(stuck) > limit:
        found.append(f"… and {len(stuck) - limit} more task(s) no agent can take")
    return found
