"""Which idle agent takes which claimable task. Pure: boards in, pairs out.

- An agent can take a task when the task has no tags, or the agent's skills share a tag with it
  (compared without case or surrounding spaces: ``schemas.eligibility``).
- Among the agents that can, the one sharing the most tags wins; ties go to the agent id that
  sorts first, so the same board always gives the same answer.
- Tasks are served in priority order (critical > high > medium > low), then oldest first; a task
  no free agent can take does not hold up the ones behind it.
- **Aging** (``aging`` seconds, the scheduler's ``priority_aging``; 0: off): every ``aging``
  seconds a task has waited since it was created raise it one level, up to ``critical``. So a
  task of rank r (critical 0 … low 3) ranks with the critical ones once it is ``r × aging``
  seconds old, and among those the oldest goes first: a steady stream of higher-priority
  arrivals (all younger) can hold it back at most that long, as soon as an agent that can take
  it is free. Only the sort key changes: matching stays one sort of the claimable tasks,
  O(n log n), and the same board at the same time gives the same answer.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence

from schemas.board import PRIORITY_RANK, AgentView, TaskView
from schemas.eligibility import can_take, shared_tags
from schemas.eligibility import word_set as _words

__all__ = [
    "best_agent",
    "can_take",
    "claim_order",
    "match",
    "match_groups",
    "match_in_order",
    "shared_tags",
    "starving_after",
]


def effective_rank(task: TaskView, now: float, aging: float) -> int:
    """The task's priority rank (critical 0 … low 3), raised one level per ``aging`` seconds it
    has waited since it was created (0: no aging), never above critical."""
    rank = PRIORITY_RANK[task.priority]
    if aging <= 0 or rank == 0:
        return rank
    waited = now - task.created_at
    if waited <= 0:
        return rank
    levels = waited // aging  # infinite for a tiny ``aging``: no int() of it
    return rank - int(levels) if levels < rank else 0


def claim_order(task: TaskView, now: float, aging: float) -> tuple[int, float, int]:
    """The order tasks are served in: effective priority, then oldest (creation time, then log
    position)."""
    return (effective_rank(task, now, aging), task.created_at, task.created_seq)


def starving_after(task: TaskView, aging: float) -> float | None:
    """The age after which ``task`` ranks with the critical tasks, so only older tasks can go
    before it (None: no aging, no bound)."""
    return PRIORITY_RANK[task.priority] * aging if aging > 0 else None


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
    tasks: Iterable[TaskView], agents: Iterable[AgentView], now: float = 0.0, aging: float = 0.0
) -> list[tuple[TaskView, AgentView]]:
    """Pair tasks with free agents, highest (aged, at ``now``) priority and oldest first; each
    agent at most once.

    ``tasks`` must already be claimable and ``agents`` free: this only decides who takes what.
    """
    return match_in_order(sorted(tasks, key=lambda task: claim_order(task, now, aging)), agents)


def match_in_order(
    tasks: Iterable[TaskView], agents: Iterable[AgentView]
) -> list[tuple[TaskView, AgentView]]:
    """``match`` for tasks given in claim order, read only until every free agent has one (a
    lazy ``tasks`` is read no further; with none, the agents are not looked at).

    The free agents are grouped by skill list (a fleet of 1,000 has a handful), each group a
    heap by id: a task looks at the groups, not at every agent, and the agents sharing a skill
    list all share as many of its tags, so the group's lowest id is the one ``best_agent`` picks.
    """
    pairs: list[tuple[TaskView, AgentView]] = []
    queue = iter(tasks)
    first = next(queue, None)
    if first is None:  # most rounds: nothing to claim, so the free agents are not looked at
        return pairs
    by_skills: dict[tuple[str, ...], list[tuple[str, AgentView]]] = {}
    for agent in agents:
        by_skills.setdefault(tuple(agent.skills), []).append((agent.id, agent))
    groups = []
    for skills, members in by_skills.items():
        heapq.heapify(members)
        groups.append((_words(list(skills)), members))
    left = sum(len(members) for members in by_skills.values())
    for task in itertools.chain((first,), queue):
        if not left:
            break
        tags = _words(task.tags)
        best: tuple[int, str] | None = None
        chosen: list[tuple[str, AgentView]] | None = None
        for skills_words, members in groups:
            if not members:
                continue
            shared = len(tags & skills_words)
            if tags and not shared:
                continue
            rank = (-shared, members[0][0])
            if best is None or rank < best:
                best, chosen = rank, members
        if chosen is not None:
            pairs.append((task, heapq.heappop(chosen)[1]))
            left -= 1
    return pairs


def match_groups(
    tasks: Iterable[TaskView],
    groups: Mapping[tuple[str, ...], Sequence[str]],
    usable: Callable[[str], AgentView | None],
) -> list[tuple[TaskView, AgentView]]:
    """``match_in_order`` over agents already grouped by skill list (each group's ids sorted:
    ``free_agents.FreeAgents``), where ``usable(id)`` gives the agent if it is free now (None:
    passed over, e.g. its presence lapsed or an append for it is in flight). Only the agents a
    task passes over or takes are asked about; the same pairs as ``match_in_order`` over the
    usable agents."""
    pairs: list[tuple[TaskView, AgentView]] = []
    queue = iter(tasks)
    first = next(queue, None)
    if first is None or not groups:
        return pairs
    cursors = [_Cursor(_words(list(skills)), ids) for skills, ids in groups.items()]
    for task in itertools.chain((first,), queue):
        tags = _words(task.tags)
        best: tuple[int, str] | None = None
        chosen: _Cursor | None = None
        for cursor in cursors:
            shared = len(tags & cursor.words)
            if tags and not shared:
                continue
            agent = cursor.lowest(usable)
            if agent is None:
                continue
            rank = (-shared, agent.id)
            if best is None or rank < best:
                best, chosen = rank, cursor
        if chosen is not None:
            pairs.append((task, chosen.take()))
        elif all(cursor.spent for cursor in cursors):
            break  # every agent taken or passed over
    return pairs


class _Cursor:
    """One skill list's sorted ids, read from the lowest not yet taken or passed over."""

    def __init__(self, words: frozenset[str], ids: Sequence[str]) -> None:
        self.words = words
        self.ids = ids
        self.at = 0
        self.agent: AgentView | None = None  # the usable agent at ``at``, once asked

    @property
    def spent(self) -> bool:
        return self.at >= len(self.ids)

    def lowest(self, usable: Callable[[str], AgentView | None]) -> AgentView | None:
        while self.agent is None and self.at < len(self.ids):
            self.agent = usable(self.ids[self.at])
            if self.agent is None:
                self.at += 1
        return self.agent

    def take(self) -> AgentView:
        agent = self.agent
        assert agent is not None
        self.agent = None
        self.at += 1
        return agent
