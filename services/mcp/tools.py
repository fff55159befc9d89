"""The MCP tools: each one is a request to the command handler the gateway (or the chat service)
serves on ``swarm.cmd.<swarm>.<verb>`` — the same handlers as the HTTP API — with the caller's
agent token forwarded, so the gateway applies the same scope and follow-up bound.

Before a request, ``schemas.scopes.authorize`` refuses what the caller may not do at all (an
agent cancelling, another swarm), so the tool answers with the reason at once. Errors come back
as tool errors (``is_error``) whose text says what is wrong, e.g. ``forbidden: …``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from schemas import subjects
from schemas.board import FINISHED, TaskStatus
from schemas.errors import NotFound, SwarmError
from schemas.scopes import authorize
from services.bus.history import Feed
from services.bus.micro import call
from services.bus.service import Bus
from services.mcp.access import current_caller, target_swarm

TIMEOUT = 10.0  # seconds for one command
WAIT_DEFAULT = 60.0  # wait_for_task: seconds by default
WAIT_MAX = 600.0  # ... and at most
TASKS_SHOWN = 100  # list_tasks: tasks in one answer by default (a long swarm's list is paged) ...
MAX_TASKS = 500  # ... and at most (under the gateway's page of 1,000, asked for one more)
FINISHED_EVENTS = frozenset({"task.completed", "task.failed", "task.cancelled", "task.deleted"})

SwarmArg = Annotated[
    str | None, Field(description="the swarm (default: yours, or the server's default swarm)")
]
TaskArg = Annotated[str, Field(description="the task's id, e.g. t-3f2a9c01b7de")]


def _brief(task: dict[str, Any]) -> dict[str, Any]:
    """A task as a list shows it: what a planner needs, not the whole record."""
    keys = ("id", "title", "status", "priority", "tags", "depends", "agent", "parent", "reason")
    brief = {k: task.get(k) for k in keys}
    result = task.get("result")
    if result:
        brief["result"] = result[-500:]
    return brief


def mentioning(messages: list[dict[str, Any]], agent: str | None) -> list[dict[str, Any]]:
    """Messages whose mentions reached ``agent`` (None: reached any agent)."""
    return [
        m
        for m in messages
        if (agent in m.get("recipients", []) if agent else bool(m.get("recipients")))
    ]


class Tools:
    """The tools, bound to a NATS connection and the default swarm."""

    def __init__(self, bus: Bus, default_swarm: str) -> None:
        self.bus = bus
        self.default_swarm = default_swarm

    async def command(
        self,
        verb: str,
        swarm: str | None,
        body: dict[str, Any] | None = None,
        *,
        key: str | None = None,
        seen: int | None = None,
    ) -> Any:
        """``verb`` on ``swarm`` (None: across swarms) for the current caller."""
        caller, token = current_caller()
        target = target_swarm(caller, swarm, self.default_swarm) if swarm != "_" else None
        try:
            authorize(caller, verb, target)
            headers: dict[str, str] = {}
            if token:
                headers["Authorization"] = f"Bearer {token}"
            if key:
                headers["Idempotency-Key"] = key
            if seen is not None:
                headers[subjects.SEEN_HEADER] = str(seen)
            subject = subjects.command(target or "_", verb)
            return await call(self.bus.nc, subject, body or {}, headers=headers, timeout=TIMEOUT)
        except SwarmError as error:
            raise ToolError(f"{error.code}: {error.message}") from None

    async def record(
        self, verb: str, swarm: str | None, body: dict[str, Any] | None = None, **options: Any
    ) -> dict[str, Any]:
        """``command`` for verbs that answer one JSON object."""
        answer = await self.command(verb, swarm, body, **options)
        if not isinstance(answer, dict):
            raise ToolError(f"error: {verb} answered {type(answer).__name__}, not an object")
        return answer

    # --- the tools --------------------------------------------------------------------------

    async def status(self, swarm: SwarmArg = None) -> dict[str, Any]:
        """The swarm: its agents (idle / working on which task / lost), task counts by status,
        and the last chat messages."""
        return await self.record("status", swarm)

    async def list_swarms(self) -> dict[str, Any]:
        """Every swarm with its task and agent counts (needs the API token)."""
        return {"swarms": await self.command("list_swarms", "_")}

    async def list_agents(self, swarm: SwarmArg = None) -> dict[str, Any]:
        """The swarm's agents: id, role, skills (what task tags they match), status, task."""
        return {"agents": await self.command("list_agents", swarm)}

    async def list_tasks(
        self,
        status: Annotated[TaskStatus | None, Field(description="only tasks in this status")] = None,
        tag: Annotated[str | None, Field(description="only tasks with this tag")] = None,
        agent: Annotated[str | None, Field(description="only tasks of this agent")] = None,
        limit: Annotated[
            int, Field(ge=1, le=MAX_TASKS, description="at most this many tasks")
        ] = TASKS_SHOWN,
        after: Annotated[
            str | None,
            Field(description="only the tasks after this one (the last answer's next_after)"),
        ] = None,
        swarm: SwarmArg = None,
    ) -> dict[str, Any]:
        """Tasks, oldest first, in brief: id, title, status, priority, tags, dependencies, agent,
        parent, reason, the end of the result. At most ``limit``; ``next_after``, when more
        follow, is the ``after`` that asks for the next ones."""
        asked = (("status", status), ("tag", tag), ("agent", agent), ("after", after))
        body: dict[str, Any] = {k: v for k, v in asked if v}
        body["limit"] = limit + 1  # one more than shown: whether more follow
        tasks = await self.command("list_tasks", swarm, body)
        shown = [_brief(t) for t in tasks[:limit]]
        if len(tasks) <= limit:
            return {"tasks": shown}
        return {"tasks": shown, "next_after": shown[-1]["id"]}

    async def show_task(
        self,
        task: TaskArg,
        history: Annotated[bool, Field(description="also every event of the task")] = False,
        swarm: SwarmArg = None,
    ) -> dict[str, Any]:
        """One task in full: prompt, status, attempt, agent, result, reason, cost; with
        ``history`` its events in log order."""
        detail = await self.record("get_task", swarm, {"task": task})
        if not history:
            detail.pop("events", None)
        return detail

    async def create_task(
        self,
        title: Annotated[str, Field(description="what is to be done, as an outcome")],
        prompt: Annotated[
            str, Field(description="everything the agent needs (default: the title)")
        ] = "",
        description: str = "",
        tags: Annotated[
            list[str] | str,
            Field(description="matched against agents' skills (a list or 'a,b'); none: any agent"),
        ] = [],  # noqa: B006 - the SDK copies defaults into the schema, never mutates them
        priority: Literal["critical", "high", "medium", "low"] = "medium",
        depends: Annotated[
            list[str] | str,
            Field(description="ids of tasks that must complete first (a list or 'a,b')"),
        ] = [],  # noqa: B006
        runtime: Annotated[
            Literal["claude", "shell"],
            Field(description="claude: an agent works on the prompt; shell: it is a bash script"),
        ] = "claude",
        timeout: Annotated[
            float | None, Field(description="seconds the run may take (default 600)", gt=0)
        ] = None,
        key: Annotated[
            str | None,
            Field(description="an idempotency key: the same key again returns the same task"),
        ] = None,
        swarm: SwarmArg = None,
    ) -> dict[str, Any]:
        """Create a task; an idle agent whose skills share a tag takes it (with dependencies,
        once they complete). An agent's own tasks are follow-ups of the task it runs (bounded
        per run). Returns the task (its ``id`` names it in ``depends`` of later tasks)."""
        body: dict[str, Any] = {
            "title": title,
            "prompt": prompt,
            "description": description,
            "tags": tags,
            "priority": priority,
            "depends": depends,
            "runtime": runtime,
        }
        if timeout is not None:
            body["timeout"] = timeout
        return _brief(await self.command("create_task", swarm, body, key=key))

    async def cancel_task(
        self,
        task: TaskArg,
        reason: Annotated[str, Field(description="why (shown on the task)")] = "",
        swarm: SwarmArg = None,
    ) -> dict[str, Any]:
        """Cancel a task; a running one is stopped. Needs the API token."""
        return _brief(await self.command("cancel_task", swarm, {"task": task, "reason": reason}))

    async def wait_for_task(
        self,
        task: TaskArg,
        timeout: Annotated[
            float, Field(description=f"seconds to wait at most (at most {WAIT_MAX:g})", gt=0)
        ] = WAIT_DEFAULT,
        swarm: SwarmArg = None,
    ) -> dict[str, Any]:
        """Wait until the task has ended (completed, failed, cancelled) or ``timeout`` passed;
        returns it with ``finished`` and ``waited_s``."""
        started = time.monotonic()
        deadline = started + min(timeout, WAIT_MAX)
        detail = await self.command("get_task", swarm, {"task": task})
        caller, _ = current_caller()
        where = target_swarm(caller, swarm, self.default_swarm)
        seen = max((e["seq"] for e in detail.get("events", [])), default=0)
        if detail["status"] not in FINISHED:
            subject = subjects.aggregate_filter(where, "task", task)
            try:
                async with Feed(self.bus.js, subjects.EVENTS_STREAM, subject, after=seen) as feed:
                    while (left := deadline - time.monotonic()) > 0:
                        record = await feed.next(timeout=left)
                        if record is None:
                            break
                        event = record.event()
                        if event is not None and event.type in FINISHED_EVENTS:
                            seen = record.seq
                            break
            except SwarmError as error:
                raise ToolError(f"{error.code}: {error.message}") from None
            try:
                detail = await self.command("get_task", swarm, {"task": task}, seen=seen)
            except ToolError as error:
                if not str(error).startswith(f"{NotFound.code}:"):
                    raise
                waited = round(time.monotonic() - started, 1)
                return {"id": task, "status": "deleted", "finished": True, "waited_s": waited}
        answer = _brief(detail)
        answer["finished"] = detail["status"] in FINISHED
        answer["waited_s"] = round(time.monotonic() - started, 1)
        return answer

    async def task_output(
        self,
        task: TaskArg,
        attempt: Annotated[int | None, Field(description="which attempt (default: last)")] = None,
        tail: Annotated[
            int, Field(description="at most this many characters, the last ones", gt=0)
        ] = 20_000,
        swarm: SwarmArg = None,
    ) -> dict[str, Any]:
        """What the task's run printed (the full stored output once it ended, else the live
        part so far)."""
        body: dict[str, Any] = {"task": task}
        if attempt is not None:
            body["attempt"] = attempt
        output = await self.record("task_output", swarm, body)
        text = output.get("output", "")
        if len(text) > tail:
            output["output"] = text[-tail:]
            output["truncated"] = True
        return output

    async def post_chat(
        self,
        message: Annotated[str, Field(description="the text; @mentions in it count")],
        mentions: Annotated[
            list[str] | str,
            Field(description="more mentions: @all, @<role>, @<agent id or name>"),
        ] = [],  # noqa: B006
        channel: Annotated[str | None, Field(description="default general")] = None,
        swarm: SwarmArg = None,
    ) -> dict[str, Any]:
        """Post to the swarm's chat. A mentioned agent gets the message in its next task's
        prompt. An agent posts as itself; with the API token the author is ``master``."""
        caller, _ = current_caller()
        body: dict[str, Any] = {"message": message, "mentions": mentions}
        if channel:
            body["channel"] = channel
        if caller.agent:
            body |= {"author": caller.agent, "author_kind": "agent"}
        else:
            body |= {"author": "master", "author_kind": "master"}
        return await self.record("chat_post", swarm, body)

    async def read_chat(
        self,
        since: Annotated[
            int, Field(description="only messages after this position (a message's seq)", ge=0)
        ] = 0,
        limit: Annotated[int, Field(description="at most this many, the newest", ge=1)] = 50,
        mentions_only: Annotated[
            bool,
            Field(description="only messages that mention you (with the API token: anyone)"),
        ] = False,
        swarm: SwarmArg = None,
    ) -> dict[str, Any]:
        """The chat, oldest first: author, text, mentions, who they reached, ``seq`` (pass the
        last one as ``since`` to read only what is new)."""
        answer = await self.command(
            "chat_history", swarm, {"since": since, "limit": min(limit, 1000)}
        )
        messages = answer.get("messages", [])
        if mentions_only:
            messages = mentioning(messages, current_caller()[0].agent)
        return {"messages": messages}

    async def project_status(self, swarm: SwarmArg = None) -> dict[str, Any]:
        """The swarm's git project and every agent's checkout: commit, clean or dirty,
        ahead/behind, or git's error."""
        return await self.record("get_project", swarm)


def build(tools: Tools, *, name: str = "swarm", **options: Any) -> MCPServer[Any]:
    """The MCP server with every tool of ``tools``."""
    server: MCPServer[Any] = MCPServer(
        name=name,
        instructions=(
            "Swarm runs many Claude Code agents on one project. Plan work as tasks (tags route "
            "them to agents by skill, depends orders them), watch status and chat, read outputs. "
            "An agent's own token reads its swarm, chats and creates follow-up tasks."
        ),
        **options,
    )
    handlers: list[Callable[..., Awaitable[Any]]] = [
        tools.status,
        tools.list_swarms,
        tools.list_agents,
        tools.list_tasks,
        tools.show_task,
        tools.create_task,
        tools.cancel_task,
        tools.wait_for_task,
        tools.task_output,
        tools.post_chat,
        tools.read_chat,
        tools.project_status,
    ]
    for handler in handlers:
        server.add_tool(handler)
    return server
