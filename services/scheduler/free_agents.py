"""The agents a claim may go to, kept event by event (issue 15). Pure: a board and its events in.

A claim round used to look at every agent of the swarm to find the free ones and then group
them by skill list: with 1,000 agents that was most of the scheduler's work per claim, on the
path from ``task.created`` to ``task.claimed``. ``FreeAgents`` keeps, per swarm and skill list,
the ids of the agents the fold shows *idle, holding no task and hosted* (sorted), kept true by
``track`` after each folded event; ``of_board`` builds it from a whole board (a snapshot). What
the fold cannot say — an append in flight for the agent, presence heard within the lease — is
asked of the few agents a round actually looks at (``matching.match_groups``), so a claim round
costs the handful of skill lists and the agents it passes over, not the fleet.

Which agents an event can change: the agent an agent event names; for a task event, the agent
it names (a claim, a run, a result) and the agent the index saw holding that task (a cancel,
requeue or deletion releases it without naming it).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from schemas import events as ev
from schemas.board import AgentView, Board


def is_candidate(agent: AgentView) -> bool:
    """What the fold says of an agent a claim may go to: idle, holding no task, hosted."""
    return agent.status == "idle" and agent.task is None and agent.executor is not None


@dataclass
class FreeAgents:
    """Per swarm: skill list -> sorted ids of the candidate agents (``is_candidate``)."""

    groups: dict[str, dict[tuple[str, ...], list[str]]] = field(default_factory=dict)
    _skills_of: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)
    _holding: dict[str, dict[str, str]] = field(default_factory=dict)  # task -> agent holding it

    @classmethod
    def of_board(cls, board: Board) -> FreeAgents:
        built = cls()
        for swarm in board.swarms.values():
            for agent_id in swarm.agents:
                built._look(board, swarm.id, agent_id)
        return built

    def track(self, board: Board, event: ev.Event) -> None:
        """After ``event`` is folded into ``board``."""
        swarm = event.swarm
        if isinstance(event, ev.AgentEvent):
            self._look(board, swarm, event.id)
        elif isinstance(event, ev.TaskEvent):
            held = self._holding.get(swarm, {}).pop(event.id, None)
            if held is not None:
                self._look(board, swarm, held)
            named = getattr(event, "agent", None)
            if isinstance(named, str) and named != held:
                self._look(board, swarm, named)
        elif isinstance(event, ev.SwarmEvent) and swarm not in board.swarms:
            for kept in (self.groups, self._skills_of, self._holding):
                kept.pop(swarm, None)

    def _look(self, board: Board, swarm_id: str, agent_id: str) -> None:
        """Put the agent where the board says it belongs."""
        self._drop(swarm_id, agent_id)
        swarm = board.swarms.get(swarm_id)
        agent = swarm.agents.get(agent_id) if swarm is not None else None
        if agent is None:
            return
        if agent.task is not None:
            self._holding.setdefault(swarm_id, {})[agent.task] = agent_id
        if not is_candidate(agent):
            return
        skills = tuple(agent.skills)
        bisect.insort(self.groups.setdefault(swarm_id, {}).setdefault(skills, []), agent_id)
        self._skills_of.setdefault(swarm_id, {})[agent_id] = skills

    def _drop(self, swarm_id: str, agent_id: str) -> None:
        skills = self._skills_of.get(swarm_id, {}).pop(agent_id, None)
        if skills is None:
            return
        groups = self.groups[swarm_id]
        members = groups[skills]
        del members[bisect.bisect_left(members, agent_id)]
        if not members:
            del groups[skills]
            if not groups:
                del self.groups[swarm_id]
