"""What to do with a Daytona sandbox in a given state: the next step towards ``started``, and how
good a found sandbox is to attach to. Pure: no SDK, no network.

The rules follow Daytona's state machine (v0.190 ``sandbox.service.ts``): a sandbox has a
``state`` (where it is) and a ``desired_state`` (where the API is taking it). The API refuses a
start with 409 while the two differ, except that a sandbox being archived (``stopped`` or
``archiving`` on its way to ``archived``) may be started at once; it accepts a start from
``stopped``, ``archived``, ``archiving`` and ``paused``; ``recover`` only from a recoverable
``error``. A sandbox whose desired state is ``destroyed`` is on its way out, whatever its state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Step = Literal["ready", "start", "wait", "recover", "unusable"]

STARTED = "started"
DESTROYED = "destroyed"
ERROR = "error"
# states the API starts from (its start transition): stopped, archived, archiving, paused
STARTABLE = frozenset({"stopped", "archived", "archiving", "paused"})
FAILED = frozenset({"error", "build_failed"})
GONE = frozenset({"destroyed", "destroying"})
# desired states that leave a sandbox alone once reached
RESTING = frozenset({"stopped", "archived", "paused"})


@dataclass(frozen=True)
class Seen:
    """A sandbox as the API last showed it (the fields the decisions read)."""

    state: str
    desired: str | None = None  # None: the API did not say
    recoverable: bool = False

    @property
    def settled(self) -> bool:
        """No transition under way: the state is the desired one (or none is given)."""
        return self.desired is None or self.desired == self.state


def next_step(seen: Seen) -> Step:
    """The next step to bring ``seen`` to ``started``:

    - ``ready``: started, and meant to stay so;
    - ``start``: the API accepts a start now (stopped, archived, archiving, paused at rest, or
      stopped on its way to archived);
    - ``wait``: a transition runs (creating, starting, restoring, building, stopping, pausing, a
      start or a stop pending); a start now would answer 409 -- look again shortly;
    - ``recover``: a recoverable error;
    - ``unusable``: failed for good, destroyed, or being destroyed.
    """
    state, desired = seen.state, seen.desired
    if desired == DESTROYED or state in GONE:
        return "unusable"
    if state in FAILED:
        return "recover" if state == ERROR and seen.recoverable else "unusable"
    if state == STARTED:
        return "ready" if desired in (None, STARTED) else "wait"  # a stop is pending
    if state in STARTABLE:
        if seen.settled:
            return "start"
        if desired == "archived" and state in ("stopped", "archiving"):
            return "start"  # the API allows it: start wins over the archive
        return "wait"  # e.g. stopped with a start pending
    return "wait"  # creating, starting, stopping, restoring, pending_build, pausing, ...


def rank(seen: Seen) -> int | None:
    """How good a found sandbox is to attach to (lower is better); None: unusable.

    0 started and meant to stay; 1 on its way to started; 2 at rest or winding down (a start
    brings it back); 3 a recoverable error."""
    step = next_step(seen)
    if step == "unusable":
        return None
    if step == "ready":
        return 0
    if step == "recover":
        return 3
    if step == "wait" and seen.desired in (None, STARTED):
        return 1
    return 2


def poll_interval(waited: int, first: float = 0.1, cap: float = 1.0) -> float:
    """Seconds before looking again, the ``waited``-th time (0, 1, ...): doubling to ``cap``."""
    return min(first * 2.0**waited, cap)
