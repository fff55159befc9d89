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
