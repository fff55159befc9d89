"""What the board's live stream sends (``GET /swarms/:id/board/stream``): one full view of a
swarm, then after each of its events what that event changed, both read from the gateway's fold.

The browser folds nothing: a ``board`` message replaces its view; a ``change`` message replaces
the one task it names (or removes it), every agent, the swarm's totals and, for a project event,
the project. Each change is built by a projection listener right after the fold applied the
event, so it shows the state exactly as of that event.

The view carries at most ``per_status`` tasks of each status (``commands.board_tasks``: the next
to be taken, the newest finished) and how many more each holds; the board loads more of a column
through the paged task listing, in the same order.

Pure: views in, JSON-ready dicts out.
"""

from __future__ import annotations

from typing import Any

from schemas import events as ev
from schemas.board import SwarmView, TaskView
from schemas.eligibility import untakeable, why_untakeable
from schemas.events import Usage
from services.gateway.commands import (
    PER_STATUS,
    agent_json,
    board_tasks,
    event_json,
    sorted_agents,
    swarm_json,
    task_counts,
)
from services.gateway.projects import attached_project_json

MAX_REASON = 2000  # characters of a failure reason a board card carries (the task page: all)
MAX_UNTAKEABLE = 100  # tasks no agent can take, named in the totals (the oldest)


def tokens_of(task: TaskView) -> dict[str, int]:
    """Tokens of the task's recorded runs together (input counts cache reads and writes too)."""
    return tokens_in(task.usage)


def tokens_in(usage: Usage) -> dict[str, int]:
    """``usage`` as the board counts tokens: input (cache reads and writes too) and output."""
    given = usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens
    return {"input": given, "output": usage.output_tokens}


def untakeable_reasons(swarm: SwarmView) -> dict[str, str]:
    """Why no registered agent can take each waiting task that none can (the oldest first)."""
    stuck = sorted(untakeable(swarm), key=lambda task: (task.created_seq, task.id))
    found = {}
    for task in stuck[:MAX_UNTAKEABLE]:
        why = why_untakeable(swarm, task)
        if why:
            found[task.id] = why
    return found


def waiting_on(swarm: SwarmView, task: TaskView) -> list[str]:
    """The dependencies of a blocked task not completed (or gone), read without decoding any:
    what its card says it waits on, also for those the board does not hold."""
    if task.status != "blocked":
        return []
    tasks = swarm.tasks
    found = []
    for dep in task.depends:
        live = tasks.live_task(dep)
        status = live.status if live is not None else tasks.frozen_status(dep)
        if status != "completed":
            found.append(dep)
    return found


def board_task(swarm: SwarmView, task: TaskView) -> dict[str, Any]:
    """A task as the board shows it: what a card and the graph need (no prompt, no output),
    and what orders it in its column (``created_seq``, ``priority``, ``created_at``)."""
    integration = task.integration
    return {
        "id": task.id,
        "title": task.title,
        "status": task.status,
        "priority": task.priority,
        "tags": task.tags,
        "depends": task.depends,
        "waiting_on": waiting_on(swarm, task),
        "runtime": task.runtime,
        "agent": task.agent,
        "attempt": task.attempt,
        "reason": task.reason[:MAX_REASON] if task.reason else task.reason,
        "cost_usd": task.cost_usd,
        "tokens": tokens_of(task),
        "created_at": task.created_at,
        "created_seq": task.created_seq,
        "updated_at": task.updated_at,
        "started_at": task.started_at,
        "finished_at": task.finished_at,
        "cancelled_by": task.cancelled_by,
        "parent": task.parent,
        "resolves": task.resolves,
        "branch": integration.branch if integration else None,
        "landed": integration.landed if integration else None,
        "integration": integration.state if integration else None,
    }


def totals(swarm: SwarmView) -> dict[str, Any]:
    """The swarm's summary with its task counts, spend, budget and tokens."""
    return {
        **swarm_json(swarm),
        "counts": task_counts(swarm),
        "tokens": tokens_in(swarm.tasks.usage_total()),  # without decoding the finished tasks
        "untakeable": untakeable_reasons(swarm),
    }


def snapshot(swarm: SwarmView, seq: int, per_status: int = PER_STATUS) -> dict[str, Any]:
    """The view of a swarm as of log position ``seq``: at most ``per_status`` tasks of each
    status (``board_tasks``), and in ``more`` how many more each status cut short holds."""
    tasks, more = board_tasks(swarm, per_status)
    return {
        "seq": seq,
        "swarm": totals(swarm),
        "tasks": [board_task(swarm, t) for t in tasks],
        "more": more,
        "agents": [agent_json(a) for a in sorted_agents(swarm)],
        "project": attached_project_json(swarm),
    }


def change(swarm: SwarmView | None, seq: int, event: ev.Event) -> dict[str, Any]:
    """What ``event`` (at ``seq``) changed, from the swarm's view right after it. ``swarm``
    None: the swarm is gone."""
    body: dict[str, Any] = {"seq": seq, "event": event_json(seq, event)}
    if swarm is None:
        return {**body, "swarm": None, "task": None, "agents": []}
    body["swarm"] = totals(swarm)
    body["agents"] = [agent_json(a) for a in sorted_agents(swarm)]
    if event.aggregate == "task":
        task = swarm.tasks.get(event.id)
        body["task_id"] = event.id
        body["task"] = board_task(swarm, task) if task is not None else None
        # a finished task unblocks or fails its dependents: they follow as their own events
    if event.aggregate == "project":
        body["project"] = attached_project_json(swarm)
    return body
