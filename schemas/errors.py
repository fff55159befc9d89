"""The few typed errors the core raises; each edge (HTTP, NATS micro, CLI) maps them once."""

from __future__ import annotations


class SwarmError(Exception):
    """Base of Swarm's typed errors; ``message`` is safe to show a user."""

    status = 500
    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Invalid(SwarmError):
    """Bad input. ``field`` names what is wrong."""

    status = 400
    code = "invalid"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class NotFound(SwarmError):
    status = 404
    code = "not_found"


class Conflict(SwarmError):
    """A transition that is not allowed now, or a write that lost a race."""

    status = 409
    code = "conflict"


class TooLarge(SwarmError):
    status = 413
    code = "too_large"


class Unavailable(SwarmError):
    """NATS (or another dependency) cannot be reached right now; retrying later may work."""

    status = 503
    code = "unavailable"


class Unauthorized(SwarmError):
    status = 401
    code = "unauthorized"


class Forbidden(SwarmError):
    """A valid credential that does not allow this (an agent token outside posting chat)."""

    status = 403
    code = "forbidden"


class TooManyRequests(SwarmError):
    """Too many wrong tokens from the caller's address: it may try again after ``retry_after``
    seconds (HTTP ``Retry-After``)."""

    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def from_status(status: int, message: str, field: str | None = None) -> SwarmError:
    """The typed error an answer with ``status`` stands for (what an edge mapped it from)."""
    if status == 400:
        return Invalid(field or "body", message)
    for kind in (NotFound, Conflict, TooLarge, Unavailable, Unauthorized, Forbidden):
        if kind.status == status:
            return kind(message)
    if status in (502, 504):
        return Unavailable(message)
    return SwarmError(message)
