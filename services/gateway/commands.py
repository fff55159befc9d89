"""The gateway's command handlers, shared by HTTP and NATS micro.

Each handler takes plain data (a JSON body as a dict, ids, a ``Context``), checks it against the
gateway's fold, appends at most one event with the aggregate's expected sequence, waits until
its own fold holds that event (read-your-writes) and answers from the fold. Errors are the typed
ones in ``schemas.errors``; each transport maps them once.

Swarms, tasks and agents are here; ``commands.projects`` (``projects.py``) and ``commands.chat``
(``chat.py``, a relay to the chat service) hold the rest, on the same ``append``/``envelope``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any

import msgspec

from schemas import events as ev
from schemas import scopes, subjects
from schemas.board import (
    FINISHED,
    ORDERS,
    AgentView,
    Board,
    Order,
    SwarmView,
    TaskView,
    columns,
)
from schemas.budgets import budget_reached
from schemas.eligibility import untakeable_warnings, why_untakeable
from schemas.errors import Conflict, Invalid, NotFound, TooLarge, Unavailable
from services.bus import history
from services.bus.projection import Projection
from services.bus.service import Bus
from services.gateway.chat import ChatRelay
from services.gateway.context import Context, Landed, Result, location
from services.gateway.projects import Projects, attached_project_json
from services.gateway.validation import (
    check_cancellable,
    check_deletable,
    check_depends,
    check_editable,
    check_key,
    check_swarm_deletable,
    derived_id,
    find_agent,
    msg_id,
    new_id,
    parse_at,
    slug,
    swarm_of,
    task_of,
)

if TYPE_CHECKING:
    from services.gateway import models

STATUSES = (
    "blocked",
    "pending",
    "claimed",
    "running",
    "completed",
    "failed",
    "requeued",
    "cancelled",
)
MAX_EVENT_BYTES = 768 * 1024  # under NATS's default 1 MiB max payload, headers included
READ_YOUR_WRITES = 5.0  # seconds; a write not folded by then is answered as landed (202)
APPEND_RETRY = 3.0  # seconds; the event's Nats-Msg-Id makes a retried append land once
MAX_PAGE = 1000  # tasks in one page of a task listing at most (its ``limit``)
PER_STATUS = 200  # tasks of each status a board view carries unless asked (its ``per_status``)
MAX_PER_STATUS = 1000  # ... at most
RESERVED_SWARM = "_"  # the swarm token of swarm-level NATS commands (swarm.cmd._.list_swarms)


# --- views -> JSON ----------------------------------------------------------------------------


def task_json(task: TaskView) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.to_builtins(task)
    body["result"] = task.outcome.result if task.outcome is not None else None
    return body


def created_json(swarm: SwarmView, task: TaskView) -> dict[str, Any]:
    """A created task, with ``warnings`` (none: an agent can take it)."""
    why = why_untakeable(swarm, task)
    return {**task_json(task), "warnings": [why] if why else []}


def agent_json(agent: AgentView) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.to_builtins(agent)
    return body


def swarm_json(swarm: SwarmView) -> dict[str, Any]:
    return {
        "id": swarm.id,
        "name": swarm.name,
        "description": swarm.description,
        "created_at": swarm.created_at,
        "project": swarm.project,
        "tasks": len(swarm.tasks),
        "agents": len(swarm.agents),
        "budget_usd": swarm.budget_usd,
        "spent_usd": swarm.spent_usd,
        "budget_reached": budget_reached(swarm),
    }


def event_json(seq: int, event: ev.Event) -> dict[str, Any]:
    return {"seq": seq, **msgspec.to_builtins(event)}


def task_counts(swarm: SwarmView) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES, 0)
    counts.update(swarm.tasks.status_counts())  # without decoding the finished ones
    counts["total"] = len(swarm.tasks)
    return counts


def board_tasks(swarm: SwarmView, per_status: int) -> tuple[list[TaskView], dict[str, int]]:
    """What a board view carries of the swarm's tasks: at most ``per_status`` of each status,
    status after status, each in its column's order (``schemas.board.columns``: the next to be
    taken first, the newest finished first), and how many more each status cut short holds.
    Decodes the tasks it returns, not the swarm's."""
    shown = columns(swarm.tasks, per_status)
    counts = swarm.tasks.status_counts()
    more = {s: counts[s] - len(found) for s, found in shown.items() if counts[s] > len(found)}
    return [task for found in shown.values() for task in found], more


def check_per_status(per_status: int | None) -> int:
    """``per_status`` as given (``PER_STATUS`` when not), or a 400."""
    if per_status is None:
        return PER_STATUS
    if not 1 <= per_status <= MAX_PER_STATUS:
        raise Invalid("per_status", f"per_status must be a whole number from 1 to {MAX_PER_STATUS}")
    return per_status


@dataclass(frozen=True)
class TaskPage:
    tasks: list[dict[str, Any]]
    next: str | None = None  # the last task's id when more follow: the next page's ``after``


def task_page(
    swarm: SwarmView,
    *,
    status: str | None = None,
    tag: str | None = None,
    agent: str | None = None,
    after: str | None = None,
    after_seq: int | None = None,
    limit: int | None = None,
    order: Order = "oldest",
) -> tuple[list[TaskView], str | None]:
    """The swarm's tasks in ``order`` (oldest first unless asked) that pass the filters, from
    just after the task ``after`` (KeyError: no such task, unless ``after_seq`` says where it
    was created), at most ``limit``; with the id to ask the next page ``after`` when more
    follow (None: this page is the last). Reads the tasks it returns and those it passes over
    (``Tasks.in_order``): ``tag`` and ``agent`` are looked for in each task in turn (a finished
    one's record searched, decoded only when it holds the text), so a page of a rare tag may
    read far more tasks than it returns."""
    tasks = swarm.tasks.in_order(
        after=after,
        after_seq=after_seq,
        status=status,
        mentioning=tag or agent or "",
        order=order,
    )
    found = (
        task
        for task in tasks
        if (tag is None or tag in task.tags) and (agent is None or task.agent == agent)
    )
    if limit is None:
        return list(found), None
    page = list(islice(found, limit + 1))
    if len(page) <= limit:
        return page, None
    return page[:limit], page[limit - 1].id


def no_after_task(swarm_id: str, after: str, how: str = "") -> Invalid:
    """The 400 for a page ``after`` a task that cannot say where the page starts."""
    shown = after if len(after) <= 64 else after[:61] + "..."
    return Invalid("after", f"after names no task of swarm {swarm_id}{how}: {shown!r}")


def sorted_agents(swarm: SwarmView) -> list[AgentView]:
    return sorted(swarm.agents.values(), key=lambda a: (a.registered_at, a.id))


def _claude(settings: models.ClaudeSettingsIn | None) -> ev.ClaudeTaskSettings | None:
    if settings is None:
        return None
    return msgspec.convert(settings.model_dump(), ev.ClaudeTaskSettings)


def _trigger(trigger: models.TriggerIn) -> ev.Trigger:
    return ev.Trigger(on=trigger.on, task=msgspec.convert(trigger.task.model_dump(), ev.TaskSpec))


# --- the handlers -----------------------------------------------------------------------------


class Commands:
    def __init__(
        self,
        bus: Bus,
        projection: Projection,
        *,
        clock: Callable[[], float] = time.time,
        read_your_writes: float = READ_YOUR_WRITES,
        append_retry: float = APPEND_RETRY,
        follow_ups: int = scopes.DEFAULT_FOLLOW_UPS,
    ) -> None:
        self.bus = bus
        self.projection = projection
        self.clock = clock
        self.read_your_writes = read_your_writes  # seconds to wait for our fold to hold a write
        self.append_retry = append_retry  # seconds to retry an append whose ack was lost
        self.follow_ups = follow_ups  # follow-up tasks per agent run (SWARM_AGENT_FOLLOW_UPS)
        self._graph_lock = asyncio.Lock()  # one dependency change at a time (cycle check)
        self._follow_up_lock = asyncio.Lock()  # one agent-made task at a time (the bound)
        self.chat = ChatRelay(self)
        self.projects = Projects(self)

    def _follow_up_change(self, ctx: Context) -> AbstractAsyncContextManager[Any]:
        """Tasks created by agents are written one at a time, so two of them cannot both pass
        the per-run bound. (Two gateway replicas racing could each let one more through.)"""
        return self._follow_up_lock if ctx.agent else nullcontext()

    def _graph_change(self, depends: list[str] | None) -> AbstractAsyncContextManager[Any]:
        """Writes that add dependency edges run one at a time, so two of them cannot each pass
        the cycle check and together close a loop. (Two replicas racing like that could still
        close one: its tasks would stay blocked until one is cancelled.)"""
        return self._graph_lock if depends else nullcontext()

    @property
    def board(self) -> Board:
        return self.projection.board

    def check_available(self) -> None:
        """Answer only from a fold that is live: NATS connected and replay caught up."""
        if not self.bus.nc.is_connected:
            raise Unavailable("NATS is unreachable; retry when it is back")
        if not self.projection.ready:
            raise Unavailable("the gateway is still replaying the event log; retry shortly")

    async def append(self, event: ev.Event, ctx: Context, verb: str) -> int:
        """Append with the aggregate's expected sequence; return once our fold holds it.
        ``Landed`` when it is in the log but the fold does not hold it within
        ``read_your_writes`` seconds: a write that landed is never answered as a failure."""
        self.check_available()
        expected = self.board.version(event.swarm, event.aggregate, event.id)
        key = check_key(ctx.idempotency_key)
        size = len(ev.encode(event))
        if size > MAX_EVENT_BYTES:
            raise TooLarge(
                f"the {event.aggregate} is too large ({size} bytes encoded; at most "
                f"{MAX_EVENT_BYTES})"
            )
        try:
            with history.reachable(f"appending {event.type}"):
                scoped = msg_id(event.swarm, event.aggregate, event.id, verb, key) if key else None
                seq = await self.bus.events.append(
                    event, expected, scoped, retry_for=self.append_retry
                )
        except Conflict as error:
            raise Conflict(
                f"{event.aggregate} {event.id} changed while this request was handled; "
                "read it again and retry"
            ) from error
        except Unavailable as error:  # no ack: it may or may not be in the log
            where = location(event.swarm, event.aggregate, event.id)
            raise Unavailable(
                f"{error.message}; {event.aggregate} {event.id} may have been written: retry "
                f"with the same Idempotency-Key (or id), or look for it at {where}"
            ) from error
        try:
            await self.projection.wait_for(seq, timeout=self.read_your_writes)
        except Unavailable:
            raise Landed(event.swarm, event.aggregate, event.id, seq) from None
        return seq

    def envelope(self, swarm: str, aggregate_id: str, ctx: Context) -> dict[str, Any]:
        return {
            "swarm": swarm,
            "id": aggregate_id,
            "time": self.clock(),
            "actor": ctx.actor,
            "correlation_id": ctx.correlation_id,
        }

    # --- swarms ---------------------------------------------------------------------------

    async def list_swarms(self) -> list[dict[str, Any]]:
        self.check_available()
        swarms = sorted(self.board.swarms.values(), key=lambda s: (s.created_at, s.id))
        return [swarm_json(s) for s in swarms]

    async def get_swarm(self, swarm_id: str) -> dict[str, Any]:
        self.check_available()
        return swarm_json(swarm_of(self.board, swarm_id))

    async def create_swarm(self, data: Any, ctx: Context) -> Result:
        # pydantic's models: imported at the first write, not at start (see models.py)
        from services.gateway.models import CreateSwarm, parse

        spec = parse(CreateSwarm, data)
        key = check_key(ctx.idempotency_key)
        self.check_available()
        swarm_id = spec.id or (
            derived_id("swarm-", RESERVED_SWARM, key) if key else new_id("swarm-")
        )
        if swarm_id == RESERVED_SWARM:
            raise Invalid("id", f"{RESERVED_SWARM!r} is reserved")
        existing = self.board.swarms.get(swarm_id)
        if existing is not None:
            if key:
                return Result(swarm_json(existing))
            raise Conflict(f"swarm {swarm_id} already exists")
        event = ev.SwarmCreated(
            **self.envelope(swarm_id, swarm_id, ctx),
            name=spec.name or swarm_id,
            description=spec.description,
            budget_usd=spec.budget_usd,
        )
        await self.append(event, ctx, "create_swarm")
        swarm = self.board.swarms.get(swarm_id)
        if swarm is None:
            raise Conflict(f"swarm {swarm_id} was not created (it changed meanwhile)")
        return Result(swarm_json(swarm), created=True)

    async def update_swarm(self, swarm_id: str, data: Any, ctx: Context) -> dict[str, Any]:
        """Rename it, describe it, set or remove its budget (``budget_usd: null``)."""
        self.check_available()
        swarm_of(self.board, swarm_id)
        # pydantic's models: imported at the first write, not at start (see models.py)
        from services.gateway.models import UpdateSwarm, parse

        spec = parse(UpdateSwarm, data)
        given = spec.model_dump(exclude_unset=True)
        if not given:
            return swarm_json(swarm_of(self.board, swarm_id))
        event = ev.SwarmUpdated(
            **self.envelope(swarm_id, swarm_id, ctx),
            name=spec.name,
            description=spec.description,
            budget_usd=spec.budget_usd if "budget_usd" in given else msgspec.UNSET,
        )
        await self.append(event, ctx, "update_swarm")
        return swarm_json(swarm_of(self.board, swarm_id))

    async def delete_swarm(
        self, swarm_id: str, ctx: Context, *, force: bool = False
    ) -> dict[str, Any]:
        """Delete a swarm. With claimed or running tasks: refused (409) unless ``force``; forced,
        their runs are stopped (each executor kills the process) and nothing of the swarm stays
        on the board (the log keeps its history)."""
        self.check_available()
        swarm = swarm_of(self.board, swarm_id)
        check_swarm_deletable(swarm, force=force)
        await self.append(
            ev.SwarmDeleted(**self.envelope(swarm_id, swarm_id, ctx)), ctx, "delete_swarm"
        )
        return {"id": swarm_id, "deleted": True}

    async def status(self, swarm_id: str) -> dict[str, Any]:
        self.check_available()
        swarm = swarm_of(self.board, swarm_id)
        return {
            "swarm": swarm_json(swarm),
            "agents": [agent_json(a) for a in sorted_agents(swarm)],
            "tasks": task_counts(swarm),
            "warnings": untakeable_warnings(swarm),
            "chat": await self.chat.recent(swarm_id),
        }

    async def board_at(
        self, swarm_id: str, at: str, per_status: int | None = None
    ) -> dict[str, Any]:
        """The swarm as it was at log position or time ``at`` (``swarm replay``), with at most
        ``per_status`` tasks of each status (``board_tasks``) and how many more each had."""
        seq, until = parse_at(at)
        per_status = check_per_status(per_status)
        self.check_available()
        board, last_time = await history.board_at(self.bus.js, swarm_id, seq=seq, until=until)
        swarm = board.swarms.get(swarm_id)
        if swarm is None and board.seq == 0 and swarm_id not in self.board.swarms:
            if self.board.version(swarm_id, "swarm", swarm_id) == 0:
                raise NotFound(f"no swarm {swarm_id}")
        tasks, more = board_tasks(swarm, per_status) if swarm else ([], {})
        return {
            "seq": board.seq,
            "time": last_time,
            "swarm": swarm_json(swarm) if swarm else None,
            "tasks": [task_json(t) for t in tasks],
            "more": more,
            "agents": [agent_json(a) for a in sorted_agents(swarm)] if swarm else [],
            "counts": task_counts(swarm) if swarm else {},
            "project": attached_project_json(swarm) if swarm else None,
        }

    # --- tasks ----------------------------------------------------------------------------

    async def list_tasks(
        self,
        swarm_id: str,
        *,
        status: str | None = None,
        tag: str | None = None,
        agent: str | None = None,
        limit: int | None = None,
        after: str | None = None,
        order: str | None = None,
    ) -> TaskPage:
        """The swarm's tasks in ``order`` (``task_page``; default oldest first): every one, or
        a page of ``limit`` after the task ``after`` and the id to ask the next page after."""
        self.check_available()
        if status is not None and status not in STATUSES:
            raise Invalid("status", f"status must be one of {', '.join(STATUSES)}")
        order = order or "oldest"
        if order not in ORDERS:
            raise Invalid("order", f"order must be one of {', '.join(ORDERS)}")
        if order == "priority" and (status is None or status in FINISHED):
            unfinished = ", ".join(s for s in STATUSES if s not in FINISHED)
            raise Invalid("order", f"order=priority lists one status of {unfinished}")
        if limit is not None and not 1 <= limit <= MAX_PAGE:
            raise Invalid("limit", f"limit must be a whole number from 1 to {MAX_PAGE}")
        swarm = swarm_of(self.board, swarm_id)
        after_seq = None
        if after is not None and after not in swarm.tasks:
            if order == "priority":  # its priority gone with it: no place to start from
                raise no_after_task(swarm_id, after, " (by priority)")
            after_seq = await self.created_seq(swarm_id, after)
        swarm = swarm_of(self.board, swarm_id)  # as folded now (the read above awaited)
        tasks, following = task_page(
            swarm,
            status=status,
            tag=tag,
            agent=agent,
            after=after,
            after_seq=after_seq,
            limit=limit,
            order=order,
        )
        return TaskPage([task_json(t) for t in tasks], following)

    async def created_seq(self, swarm_id: str, task_id: str) -> int:
        """Where the task ``task_id``, no longer in the fold, was created: the log position of
        its ``created`` (the log keeps a deleted task's events), for a page ``after`` a task
        deleted between two pages. ``Invalid("after")`` when no such task was ever created."""
        nowhere = no_after_task(swarm_id, task_id)
        if not subjects.is_token(task_id):  # a wildcard would find another task's event
            raise nowhere
        with history.reachable("looking up the after task"):
            seq = await self.bus.events.last_seq(
                subjects.event(swarm_id, "task", task_id, "created")
            )
        if seq is None:
            raise nowhere
        return seq

    async def get_task(self, swarm_id: str, task_id: str) -> dict[str, Any]:
        self.check_available()
        # The task as folded now, and its history up to the same point: the fold changes the
        # view in place while the history is read, and the stream may hold newer events.
        body = task_json(task_of(self.board, swarm_id, task_id))
        version = self.board.version(swarm_id, "task", task_id)
        events = await history.aggregate_events(self.bus.js, swarm_id, "task", task_id)
        events = [(s, e) for s, e in events if s <= version]
        # the task's events since its latest ``created`` are its current life (an id can be
        # reused)
        start = max((i for i, (_, e) in enumerate(events) if e.type == "task.created"), default=0)
        return {**body, "events": [event_json(s, e) for s, e in events[start:]]}

    async def create_task(self, swarm_id: str, data: Any, ctx: Context) -> Result:
        """Create a task. An agent (``ctx.agent``) creates follow-ups of the task it runs: the
        new task's ``parent`` is that task, at most ``follow_ups`` per run, without triggers."""
        self.check_available()
        swarm = swarm_of(self.board, swarm_id)
        # pydantic's models: imported at the first write, not at start (see models.py)
        from services.gateway.models import CreateTask, parse

        spec = parse(CreateTask, data)
        key = check_key(ctx.idempotency_key)
        task_id = spec.id or (derived_id("t-", swarm_id, key) if key else new_id("t-"))
        existing = swarm.tasks.get(task_id)
        if existing is not None:
            if key:
                return Result(created_json(swarm, existing))
            raise Conflict(f"task {task_id} already exists in swarm {swarm_id}")
        if ctx.agent and spec.triggers:
            raise Invalid("triggers", "a task an agent creates cannot carry triggers")
        async with self._follow_up_change(ctx), self._graph_change(spec.depends):
            origin = (
                scopes.follow_up(swarm_of(self.board, swarm_id), ctx.agent, self.follow_ups)
                if ctx.agent
                else None
            )
            event = ev.TaskCreated(
                **self.envelope(swarm_id, task_id, ctx),
                title=spec.title,
                prompt=spec.prompt or spec.title,
                description=spec.description,
                tags=spec.tags,
                priority=spec.priority,
                depends=spec.depends,
                runtime=spec.runtime,
                timeout=spec.timeout,
                triggers=[_trigger(t) for t in spec.triggers],
                parent=origin.parent if origin else None,
                parent_attempt=origin.parent_attempt if origin else None,
                claude=_claude(spec.claude),
            )
            check_depends(swarm_of(self.board, swarm_id), task_id, spec.depends)
            await self.append(event, ctx, "create_task")
        task = self.board.task(swarm_id, task_id)
        if task is None:
            raise Conflict(f"task {task_id} was not created: swarm {swarm_id} changed meanwhile")
        return Result(created_json(swarm_of(self.board, swarm_id), task), created=True)

    async def update_task(
        self, swarm_id: str, task_id: str, data: Any, ctx: Context
    ) -> dict[str, Any]:
        self.check_available()
        task = task_of(self.board, swarm_id, task_id)
        # pydantic's models: imported at the first write, not at start (see models.py)
        from services.gateway.models import UpdateTask, parse

        spec = parse(UpdateTask, data)
        if spec.status == "cancelled":  # the prototype's clients cancel by setting the status
            return await self.cancel_task(swarm_id, task_id, {}, ctx)
        current = task_json(task)
        changes = {
            k: v
            for k, v in spec.model_dump(exclude_unset=True).items()
            if v is not None and (k == "triggers" or v != current.get(k))
        }
        if not changes:  # nothing differs (a client sending the task back as it read it)
            return current
        check_editable(task)
        if "triggers" in changes:
            changes["triggers"] = [_trigger(t) for t in spec.triggers or []]
        if "claude" in changes:
            changes["claude"] = _claude(spec.claude)
        event = ev.TaskUpdated(**self.envelope(swarm_id, task_id, ctx), **changes)
        async with self._graph_change(spec.depends):
            if spec.depends is not None:
                check_depends(swarm_of(self.board, swarm_id), task_id, spec.depends)
            await self.append(event, ctx, "update_task")
        return task_json(task_of(self.board, swarm_id, task_id))

    async def cancel_task(
        self, swarm_id: str, task_id: str, data: Any, ctx: Context
    ) -> dict[str, Any]:
        self.check_available()
        task = task_of(self.board, swarm_id, task_id)
        # pydantic's models: imported at the first write, not at start (see models.py)
        from services.gateway.models import CancelTask, parse

        spec = parse(CancelTask, data)
        if task.status == "cancelled":
            return task_json(task)  # cancelling twice is a no-op, not an error
        check_cancellable(task)
        reason = spec.reason or f"cancelled by {ctx.actor}"
        event = ev.TaskCancelled(**self.envelope(swarm_id, task_id, ctx), reason=reason)
        await self.append(event, ctx, "cancel_task")
        return task_json(task_of(self.board, swarm_id, task_id))

    async def delete_task(self, swarm_id: str, task_id: str, ctx: Context) -> dict[str, Any]:
        self.check_available()
        task = task_of(self.board, swarm_id, task_id)
        check_deletable(task)
        event = ev.TaskDeleted(**self.envelope(swarm_id, task_id, ctx))
        await self.append(event, ctx, "delete_task")
        return {"id": task_id, "deleted": True}

    async def task_output(
        self, swarm_id: str, task_id: str, attempt: int | None = None
    ) -> dict[str, Any]:
        """The full output from the object store; else the live chunks still in SWARM_LOGS;
        else the tail kept in the terminal event."""
        self.check_available()
        task = task_of(self.board, swarm_id, task_id)
        if attempt is not None and not 1 <= attempt <= task.attempt:
            raise Invalid("attempt", f"task {task_id} has attempts 1 to {task.attempt}")
        attempt = attempt or task.attempt
        answer = {"task": task_id, "attempt": attempt}
        name = subjects.output_name(swarm_id, task_id, attempt)
        if attempt == task.attempt and task.outcome is not None and task.outcome.output:
            name = task.outcome.output
        stored = await history.read_output(self.bus.js, name)
        if stored is not None:
            text = stored.decode("utf-8", errors="replace")
            return {**answer, "source": "object_store", "complete": True, "output": text}
        chunks = await history.log_chunks(self.bus.js, swarm_id, task_id, attempt)
        if chunks:
            text = "".join(c.data.decode("utf-8", errors="replace") for c in chunks)
            finished = task.status in FINISHED
            return {**answer, "source": "live", "complete": finished, "output": text}
        if task.outcome is not None and task.outcome.result and attempt == task.attempt:
            return {**answer, "source": "result", "complete": False, "output": task.outcome.result}
        return {**answer, "source": "none", "complete": task.status in FINISHED, "output": ""}

    # --- agents ---------------------------------------------------------------------------

    async def list_agents(self, swarm_id: str) -> list[dict[str, Any]]:
        self.check_available()
        return [agent_json(a) for a in sorted_agents(swarm_of(self.board, swarm_id))]

    async def register_agent(self, swarm_id: str, data: Any, ctx: Context) -> Result:
        self.check_available()
        swarm = swarm_of(self.board, swarm_id)
        # pydantic's models: imported at the first write, not at start (see models.py)
        from services.gateway.models import RegisterAgent, parse

        spec = parse(RegisterAgent, data)
        key = check_key(ctx.idempotency_key)
        base = slug(spec.name) or "agent"
        if spec.id:
            agent_id = spec.id
        elif key:
            agent_id = derived_id(f"{base}-", swarm_id, key)
        elif base not in swarm.agents:
            agent_id = base
        else:
            agent_id = new_id(f"{base}-")[: len(base) + 7]
        existing = swarm.agents.get(agent_id)
        if existing is not None:
            if key:
                return Result(agent_json(existing))
            raise Conflict(f"agent {agent_id} already exists in swarm {swarm_id}")
        event = ev.AgentRegistered(
            **self.envelope(swarm_id, agent_id, ctx),
            name=spec.name,
            role=spec.role,
            skills=spec.skills,
            sandbox_id=spec.sandbox_id,
            executor=None,
            backend=spec.backend,
            labels=spec.labels,
        )
        await self.append(event, ctx, "register_agent")
        agent = self.board.agent(swarm_id, agent_id)
        if agent is None:
            raise Conflict(f"agent {agent_id} was not registered: swarm {swarm_id} changed")
        return Result(agent_json(agent), created=True)

    async def update_agent(
        self, ref: str, data: Any, ctx: Context, *, swarm_id: str | None = None
    ) -> dict[str, Any]:
        """Update the agent whose sandbox id (or agent id) is ``ref``."""
        self.check_available()
        agent = find_agent(self.board, ref, swarm_id)
        # pydantic's models: imported at the first write, not at start (see models.py)
        from services.gateway.models import UpdateAgent, parse

        spec = parse(UpdateAgent, data)
        changes = {k: v for k, v in spec.model_dump(exclude_unset=True).items() if v is not None}
        if changes:
            event = ev.AgentUpdated(**self.envelope(agent.swarm, agent.id, ctx), **changes)
            await self.append(event, ctx, "update_agent")
        updated = self.board.agent(agent.swarm, agent.id)
        if updated is None:
            raise NotFound(f"agent {agent.id} is gone")
        return agent_json(updated)
