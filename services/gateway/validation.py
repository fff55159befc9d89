"""Pure checks and derivations behind the gateway's commands: no I/O, tested without NATS.

- dependencies: every named task exists, and the graph stays acyclic (``find_cycle``);
- which transitions a person may ask for (edit, cancel, delete) given a task's status;
- ids: generated, or derived from an ``Idempotency-Key`` so a retried create names the same
  aggregate;
- ``parse_at``: ``swarm replay --at`` takes a log position or a time.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from schemas.board import ACTIVE, EDITABLE, FINISHED, AgentView, Board, SwarmView, TaskView
from schemas.errors import Conflict, Invalid, NotFound

MAX_KEY_LENGTH = 200
EPOCH_FLOOR = 1_000_000_000  # numbers at or above are seconds since the epoch, below: sequences


# --- dependencies -----------------------------------------------------------------------------


def find_cycle(graph: Mapping[str, Iterable[str]], start: str) -> list[str] | None:
    """A dependency path from ``start`` back to ``start`` (``[start, ..., start]``), or None.

    ``graph[t]`` are the tasks ``t`` depends on; names missing from the graph have no edges.
    """
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for dep in graph.get(node, ()):
            if dep == start:
                return [*path, start]
            if dep not in seen:
                seen.add(dep)
                stack.append((dep, [*path, dep]))
    return None


def check_depends(swarm: SwarmView, task_id: str, depends: list[str]) -> list[str]:
    """``depends`` for ``task_id`` if every named task exists and no cycle forms; else
    ``Invalid("depends", ...)`` saying which task is unknown or which cycle would form."""
    for dep in depends:
        if dep == task_id:
            raise Invalid("depends", f"task {task_id} cannot depend on itself")
        if dep not in swarm.tasks:
            raise Invalid("depends", f"depends on unknown task {dep} in swarm {swarm.id}")
    graph: dict[str, Iterable[str]] = {tid: task.depends for tid, task in swarm.tasks.items()}
    graph[task_id] = depends
    cycle = find_cycle(graph, task_id)
    if cycle is not None:
        raise Invalid("depends", "dependency cycle: " + " -> ".join(cycle))
    return depends


# --- transitions a person may ask for ----------------------------------------------------------


def check_editable(task: TaskView) -> None:
    if task.status not in EDITABLE:
        raise Conflict(
            f"task {task.id} is {task.status}: only blocked, pending or requeued tasks can be "
            "updated"
        )


def check_cancellable(task: TaskView) -> None:
    if task.status in FINISHED:
        raise Conflict(f"task {task.id} is already {task.status}")


def check_deletable(task: TaskView) -> None:
    if task.status in ACTIVE:
        raise Conflict(f"task {task.id} is {task.status}: cancel it before deleting it")


# --- lookups ----------------------------------------------------------------------------------


def swarm_of(board: Board, swarm_id: str) -> SwarmView:
    swarm = board.swarms.get(swarm_id)
    if swarm is None:
        raise NotFound(f"no swarm {swarm_id}")
    return swarm


def task_of(board: Board, swarm_id: str, task_id: str) -> TaskView:
    task = swarm_of(board, swarm_id).tasks.get(task_id)
    if task is None:
        raise NotFound(f"no task {task_id} in swarm {swarm_id}")
    return task


def find_agent(board: Board, ref: str, swarm_id: str | None = None) -> AgentView:
    """The agent whose sandbox id or agent id is ``ref`` (sandbox id first), in ``swarm_id``
    or in any swarm; ``Conflict`` when several swarms hold a match and none was named."""
    swarms = [swarm_of(board, swarm_id)] if swarm_id else list(board.swarms.values())
    for match in (
        lambda a: a.sandbox_id == ref,
        lambda a: a.id == ref,
    ):
        found = [a for s in swarms for a in s.agents.values() if match(a)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            where = ", ".join(sorted(a.swarm for a in found))
            raise Conflict(f"agent {ref} exists in several swarms ({where}): add ?swarm=<id>")
    raise NotFound(f"no agent with sandbox id or id {ref}")


# --- ids --------------------------------------------------------------------------------------


def check_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise Invalid("Idempotency-Key", f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} characters")
    return key


def derived_id(prefix: str, scope: str, key: str) -> str:
    """The same id for the same (scope, key): a retried create names the same aggregate."""
    digest = hashlib.sha256(f"{scope}\0{key}".encode()).hexdigest()[:12]
    return f"{prefix}{digest}"


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def slug(name: str) -> str:
    """``"Frontend Agent"`` -> ``frontend-agent`` (a valid subject token, maybe empty)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:100]


def msg_id(swarm: str, aggregate: str, aggregate_id: str, verb: str, key: str) -> str:
    """The ``Nats-Msg-Id`` for a command carrying an ``Idempotency-Key``: scoped by swarm,
    aggregate and verb, so one key reused on another command or another task never swallows
    that command's event."""
    return f"idem:{swarm}:{aggregate}:{aggregate_id}:{verb}:{key}"


# --- replay -----------------------------------------------------------------------------------


def parse_at(value: str) -> tuple[int | None, float | None]:
    """``(seq, None)`` or ``(None, epoch_seconds)``: an integer below 10^9 is a log position;
    a larger number is seconds since the epoch; anything else must be an ISO 8601 time
    (naive times are UTC)."""
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None:
        if number < 0:
            raise Invalid("at", f"at={value!r} must not be negative")
        if number < EPOCH_FLOOR and number == int(number):
            return int(number), None
        if number >= EPOCH_FLOOR:
            return None, number
        raise Invalid("at", f"at={value!r}: a sequence is a whole number")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as error:
        raise Invalid(
            "at", f"at={value!r} is neither a sequence, epoch seconds nor an ISO 8601 time"
        ) from error
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return None, moment.timestamp()
