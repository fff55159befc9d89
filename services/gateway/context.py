"""What a command handler is given besides its data (``Context``: who asks, how to recognise a
retry) and what it gives back (``Result``: the body, and whether it created or only accepted
something)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Context:
    """Who asks, and how to recognise a retry. ``agent``: the caller holds that agent's own
    token (``schemas.scopes``): it acts as that agent, within an agent's scope."""

    idempotency_key: str | None = None
    correlation_id: str | None = None
    actor: str = "gateway"
    agent: str | None = None


@dataclass(frozen=True)
class Result:
    """A handler's answer: the body; ``created`` (HTTP 201) when this request created
    something, ``accepted`` (HTTP 202) when it started work that is still going on."""

    body: Any
    created: bool = False
    accepted: bool = False

    @property
    def status(self) -> int:
        return 201 if self.created else 202 if self.accepted else 200


def location(swarm: str, aggregate: str, aggregate_id: str) -> str:
    """Where the HTTP API shows an aggregate."""
    if aggregate == "swarm":
        return f"/swarms/{aggregate_id}"
    if aggregate == "task":
        return f"/swarms/{swarm}/tasks/{aggregate_id}"
    if aggregate == "agent":
        return f"/swarms/{swarm}/agents"
    return f"/projects?swarm={swarm}"


class Landed(Exception):
    """A write that is in the log (acknowledged at ``seq``) but not yet in this gateway's fold
    within the read-your-writes wait (the fold lags, e.g. while a NATS node is lost). Not a
    failure: each edge answers with the id (HTTP 202 with ``Location``), so a client that did
    not choose the id learns it and does not write again."""

    def __init__(self, swarm: str, aggregate: str, aggregate_id: str, seq: int) -> None:
        super().__init__(f"{aggregate} {aggregate_id} written at {seq}, still being applied")
        self.swarm = swarm
        self.aggregate = aggregate
        self.id = aggregate_id
        self.seq = seq

    @property
    def location(self) -> str:
        return location(self.swarm, self.aggregate, self.id)

    def body(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "swarm": self.swarm,
            "kind": self.aggregate,
            "seq": self.seq,
            "applying": True,
            "location": self.location,
            "message": f"{self.aggregate} {self.id} is written (log position {self.seq}) and "
            f"still being applied; read it at {self.location} (do not create it again)",
        }
