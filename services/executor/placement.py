"""Which executor takes up which agent registered through the API, in any swarm: pure.

Every executor heartbeats an ``Offer`` (in its readiness record): its id, how many more agents
it can host (``free`` = max agents - hosted), its labels, and the swarms it serves (None: any).
Each executor computes the same plan from the same offers:

- an agent nobody hosts goes to an executor that *fits* it: the agent's ``labels`` are all among
  the executor's, the executor serves the agent's swarm, and it has room;
- among those, the one with the most room, then the lowest id; placing an agent uses up one
  slot of its executor before the next agent (oldest first) is placed;
- an executor takes up the agents placed on itself; an agent still waiting ``grace`` seconds
  after it registered (its executor is gone, or the offers were stale) is taken up by any
  executor that fits it. Two executors racing for one agent: the expected sequence of the
  ``agent.updated`` lets one win.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from schemas.board import AgentView, Board

GRACE = 10.0  # seconds an agent waits for its planned executor before any fitting one takes it


@dataclass(frozen=True)
class Offer:
    executor: str
    free: int
    labels: frozenset[str] = frozenset()
    swarms: frozenset[str] | None = None  # None: any swarm

    def detail(self) -> dict[str, object]:
        """The offer as it goes into the readiness heartbeat."""
        return {
            "executor": self.executor,
            "free": self.free,
            "labels": sorted(self.labels),
            "swarms": None if self.swarms is None else sorted(self.swarms),
        }


def offer_from(detail: Mapping[str, object]) -> Offer | None:
    """The offer in a heartbeat's ``detail`` (None: not an executor's, or from an older one)."""
    executor, free = detail.get("executor"), detail.get("free")
    if not isinstance(executor, str) or not isinstance(free, int):
        return None
    labels = detail.get("labels")
    swarms = detail.get("swarms")
    return Offer(
        executor=executor,
        free=free,
        labels=frozenset(str(label) for label in labels)
        if isinstance(labels, list)
        else frozenset(),
        swarms=frozenset(str(s) for s in swarms) if isinstance(swarms, list) else None,
    )


def fits(agent: AgentView, offer: Offer) -> bool:
    """Whether ``offer``'s executor may host ``agent`` (room aside)."""
    if offer.swarms is not None and agent.swarm not in offer.swarms:
        return False
    return set(agent.labels) <= offer.labels


def waiting(board: Board, skip: Iterable[tuple[str, str]] = ()) -> list[AgentView]:
    """Agents nobody hosts, in every swarm, oldest first (``skip``: (swarm, agent) pairs)."""
    skipped = set(skip)
    found = [
        agent
        for swarm in board.swarms.values()
        for agent in swarm.agents.values()
        if agent.executor is None and (agent.swarm, agent.id) not in skipped
    ]
    return sorted(found, key=lambda a: (a.registered_at, a.swarm, a.id))


def plan(agents: Iterable[AgentView], offers: Iterable[Offer]) -> dict[tuple[str, str], str]:
    """(swarm, agent) -> the executor it goes to, for the agents some offer fits and has room
    for."""
    room = {offer.executor: offer for offer in offers}
    placed: dict[tuple[str, str], str] = {}
    for agent in agents:
        candidates = [o for o in room.values() if o.free > 0 and fits(agent, o)]
        if not candidates:
            continue
        best = min(candidates, key=lambda o: (-o.free, o.executor))
        placed[(agent.swarm, agent.id)] = best.executor
        room[best.executor] = replace(best, free=best.free - 1)
    return placed


def mine(
    board: Board,
    me: Offer,
    others: Iterable[Offer],
    now: float,
    *,
    grace: float = GRACE,
    skip: Iterable[tuple[str, str]] = (),
) -> list[AgentView]:
    """The waiting agents this executor (``me``) takes up now, at most ``me.free``: those the
    plan places on it, then those that waited past ``grace`` and fit it."""
    agents = waiting(board, skip)
    offers = [me, *(o for o in others if o.executor != me.executor)]
    placed = plan(agents, offers)
    chosen = [a for a in agents if placed.get((a.swarm, a.id)) == me.executor]
    overdue = [
        a for a in agents if a not in chosen and fits(a, me) and now - a.registered_at >= grace
    ]
    return (chosen + overdue)[: max(me.free, 0)]
