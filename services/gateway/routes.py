"""Every HTTP route of the gateway in one table: method, path, handler name, models, codes.

``http.py`` binds each route to its handler; ``openapi.py`` describes the same table, so the
document cannot list a route the server lacks or miss one it has.

The models are named, not imported: the table is read at start (the app's routes), the pydantic
models only to parse a write's body or build ``/openapi.json``, so ``models`` (pydantic and
building its classes: about a third of the gateway's imports) is not imported before the
gateway is ready (docs/architecture.md, "Imports at start-up"). ``body_model`` and
``response_model`` import it when asked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, get_args

from schemas.board import ORDERS, TaskStatus
from schemas.positions import MAX_POSITION
from schemas.scopes import AGENT_VERBS
from schemas.subjects import TOKEN_PATTERN
from services.gateway.chat import MAX_LIMIT as MAX_CHAT_LIMIT
from services.gateway.commands import MAX_PAGE, MAX_PER_STATUS, PER_STATUS
from services.gateway.projects import MAX_WAIT

if TYPE_CHECKING:
    from pydantic import BaseModel


@dataclass(frozen=True)
class Query:
    name: str
    description: str
    type: str = "string"  # JSON Schema type
    schema: Mapping[str, Any] = field(default_factory=dict)  # what the handler enforces


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # aiohttp and OpenAPI share the ``{name}`` placeholder style
    name: str  # the handler's name, and the OpenAPI operationId
    summary: str
    tag: str
    body: str | None = None  # the request model's name in ``models``
    response: str | None = None  # the response model's name in ``models``, or "list[<name>]"
    status: int = 200
    query: tuple[Query, ...] = ()
    stream: bool = False  # text/event-stream
    auth: bool = True
    errors: tuple[int, ...] = (404,)
    verb: str = ""  # the command's NATS verb, when it differs from ``name``
    headers: Mapping[str, str] = field(default_factory=dict)  # a success may send: meaning

    @property
    def command(self) -> str:
        """The verb ``schemas.scopes`` knows this route by (its NATS verb, or its name)."""
        return self.verb or self.name

    @property
    def body_model(self) -> type[BaseModel] | None:
        """The request model (imports ``models``)."""
        return None if self.body is None else _model(self.body)

    @property
    def response_model(self) -> tuple[type[BaseModel], bool] | None:
        """The response model and whether the answer is a list of them (imports ``models``)."""
        if self.response is None:
            return None
        name = self.response.removeprefix("list[").removesuffix("]")
        return _model(name), name != self.response

    @property
    def agent_token(self) -> bool:
        """Whether an agent's own token is enough (for that agent's swarm)."""
        return self.auth and self.command in AGENT_VERBS


def _model(name: str) -> type[BaseModel]:
    # pydantic and the models: imported when a model is first asked for (module docstring)
    from pydantic import BaseModel

    from services.gateway import models

    found = getattr(models, name, None)
    if not (isinstance(found, type) and issubclass(found, BaseModel)):
        raise LookupError(f"{name!r} is not a model in services.gateway.models")
    return found


_POSITION = {"minimum": 0, "maximum": MAX_POSITION}
_STATUSES = list(get_args(TaskStatus))
_DAY = r"[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
AT_PATTERN = (
    rf"^\s*(?:[0-9]+|[1-9][0-9]{{9,}}\.[0-9]+|{_DAY}(?:[T ][0-9:.]+(?:Z|[+-][0-9:]+)?)?)\s*$"
)
_ATTEMPT = {"minimum": 1, "maximum": MAX_POSITION}
_SINCE = Query(
    "since", "replay events after this log position (default 0: all)", "integer", _POSITION
)
_FOLLOW = Query(
    "follow", "true (default for events; also 1): keep the stream open for new ones", "boolean"
)
_PER_STATUS = Query(
    "per_status",
    f"at most this many tasks of each status (1 to {MAX_PER_STATUS}; default {PER_STATUS}): the "
    "next to be taken of an unfinished status, the newest of a finished one; `more` says how "
    "many more each status holds",
    "integer",
    {"minimum": 1, "maximum": MAX_PER_STATUS},
)
_WAIT = (
    Query(
        "wait",
        "true (also 1): answer once every agent has answered this round (or at the timeout)",
        "boolean",
    ),
    Query(
        "timeout",
        f"seconds to wait with wait=true (default 60, at most {MAX_WAIT:g})",
        "number",
        {"exclusiveMinimum": 0, "maximum": MAX_WAIT},
    ),
    Query("swarm", "the swarm, when the project id exists in several"),
)

ROUTES: tuple[Route, ...] = (
    Route("GET", "/health", "health", "Readiness of every service", "system", auth=False),
    Route("GET", "/openapi.json", "openapi", "This document", "system", errors=()),
    # swarms
    Route("GET", "/swarms", "list_swarms", "List swarms", "swarms", response="list[Swarm]"),
    Route(
        "POST",
        "/swarms",
        "create_swarm",
        "Create a swarm (201; 200 for a retry with the same Idempotency-Key)",
        "swarms",
        body="CreateSwarm",
        response="Swarm",
        status=201,
        errors=(400, 409),
    ),
    Route("GET", "/swarms/{swarm}", "get_swarm", "Get a swarm", "swarms", response="Swarm"),
    Route(
        "PATCH",
        "/swarms/{swarm}",
        "update_swarm",
        "Rename a swarm, or set or remove its budget (`budget_usd`, null: none)",
        "swarms",
        body="UpdateSwarm",
        response="Swarm",
        errors=(400, 404, 409),
    ),
    Route(
        "DELETE",
        "/swarms/{swarm}",
        "delete_swarm",
        "Delete a swarm (409 while tasks are claimed or running, unless force=1 stops them)",
        "swarms",
        response="Deleted",
        query=(Query("force", "1: also when tasks are claimed or running (they are stopped)"),),
        errors=(404, 409),
    ),
    Route(
        "GET",
        "/swarms/{swarm}/status",
        "status",
        "Swarm, agents (status, current task), task counts by status, warnings (tasks no agent "
        "can take), recent chat",
        "swarms",
        response="Status",
    ),
    Route(
        "GET",
        "/swarms/{swarm}/board",
        "board_at",
        "The board as it was at a log position or time (swarm replay)",
        "swarms",
        response="BoardAt",
        query=(
            Query(
                "at",
                "a log position (integer), epoch seconds, or an ISO 8601 time",
                schema={"pattern": AT_PATTERN},
            ),
            _PER_STATUS,
        ),
        errors=(400, 404),
        verb="board",
    ),
    Route(
        "GET",
        "/swarms/{swarm}/board/stream",
        "board_stream",
        "Server-sent events: the swarm's board now (event: board, id: log position, data: "
        "tasks, agents, totals, project), then what each of its events changed (event: change)",
        "swarms",
        query=(
            Query(
                "follow",
                "true (default; also 1): keep the stream open for changes; false: end "
                "(event: end) after the board",
                "boolean",
            ),
            _PER_STATUS,
        ),
        stream=True,
        errors=(400, 404),
    ),
    Route(
        "GET",
        "/swarms/{swarm}/events",
        "events",
        "Server-sent events: the swarm's events from a position, then live "
        "(id: log position, event: type, data: the event as JSON)",
        "events",
        query=(
            _SINCE,
            Query("task", "only this task's events", schema={"pattern": TOKEN_PATTERN}),
            _FOLLOW,
            Query(
                "tail",
                "true (also 1): start at the log's current end, only new events (`since` and "
                "`Last-Event-ID` win)",
                "boolean",
            ),
        ),
        stream=True,
        errors=(400, 404),
    ),
    # tasks
    Route(
        "GET",
        "/swarms/{swarm}/tasks",
        "list_tasks",
        "List tasks (oldest first: by log position of their creation); with `limit`, one "
        "page, and a `Link` header to the next while more follow",
        "tasks",
        response="list[Task]",
        query=(
            Query("status", "only tasks in this status", schema={"enum": _STATUSES}),
            Query("tag", "only tasks with this tag"),
            Query("agent", "only tasks of this agent"),
            Query(
                "limit",
                f"at most this many tasks (1 to {MAX_PAGE}; default: every task, no paging)",
                "integer",
                {"minimum": 1, "maximum": MAX_PAGE},
            ),
            Query(
                "after",
                "only tasks after this one in the listing's order (a task id of the swarm, 400 "
                "otherwise): the last task of the page before, as the `Link` header gives it",
                schema={"pattern": TOKEN_PATTERN},
            ),
            Query(
                "order",
                "oldest (default: by log position of their creation), newest (the reverse), or "
                "priority (higher first, then oldest; only with `status` one of blocked, "
                "pending, requeued, claimed, running: 400 otherwise)",
                schema={"enum": list(ORDERS)},
            ),
        ),
        errors=(400, 404),
        headers={
            "Link": "while more tasks follow a page `limit` cut short: "
            '`<the same path and query with after=<its last task>>; rel="next"` (RFC 8288); '
            "absent on the last page"
        },
    ),
    Route(
        "POST",
        "/swarms/{swarm}/tasks",
        "create_task",
        "Create a task (201; 200 for a retry with the same Idempotency-Key); `warnings` says "
        "when no registered agent can take it",
        "tasks",
        body="CreateTask",
        response="CreatedTask",
        status=201,
        errors=(400, 404, 409),
    ),
    Route(
        "GET",
        "/swarms/{swarm}/tasks/{task}",
        "get_task",
        "A task with its full event history",
        "tasks",
        response="TaskDetail",
    ),
    Route(
        "PUT",
        "/swarms/{swarm}/tasks/{task}",
        "update_task",
        "Update a task that is not claimed yet",
        "tasks",
        body="UpdateTask",
        response="Task",
        errors=(400, 404, 409),
    ),
    Route(
        "DELETE",
        "/swarms/{swarm}/tasks/{task}",
        "delete_task",
        "Delete a task that is not claimed or running",
        "tasks",
        response="Deleted",
        errors=(404, 409),
    ),
    Route(
        "POST",
        "/swarms/{swarm}/tasks/{task}/cancel",
        "cancel_task",
        "Cancel a task (a running one is stopped)",
        "tasks",
        body="CancelTask",
        response="Task",
        errors=(400, 404, 409),
    ),
    Route(
        "GET",
        "/swarms/{swarm}/tasks/{task}/output",
        "task_output",
        "A task's output: the full stored output, else live chunks, else the kept tail",
        "tasks",
        response="Output",
        query=(Query("attempt", "which attempt (default: the current one)", "integer", _ATTEMPT),),
        errors=(400, 404),
    ),
    Route(
        "GET",
        "/swarms/{swarm}/tasks/{task}/logs",
        "task_logs",
        "Server-sent events: a task's output chunks (event: chunk, data: {attempt, text}); "
        "with follow=1 live until the task ends (event: end)",
        "tasks",
        query=(
            Query("follow", "true (also 1): keep following until the task ends", "boolean"),
            _SINCE,
            Query("attempt", "only this attempt's chunks", "integer", _ATTEMPT),
        ),
        stream=True,
        errors=(400, 404),
    ),
    # agents
    Route(
        "GET",
        "/swarms/{swarm}/agents",
        "list_agents",
        "List agents",
        "agents",
        response="list[Agent]",
    ),
    Route(
        "POST",
        "/swarms/{swarm}/agents",
        "register_agent",
        "Register an agent; an executor with free capacity takes it up",
        "agents",
        body="RegisterAgent",
        response="Agent",
        status=201,
        errors=(400, 404, 409),
    ),
    Route(
        "PUT",
        "/agents/{sandbox}",
        "update_agent",
        "Update the agent with this sandbox id (or agent id)",
        "agents",
        body="UpdateAgent",
        response="Agent",
        query=(Query("swarm", "the swarm, when the id exists in several"),),
        errors=(400, 404, 409),
    ),
    # chat
    Route(
        "GET",
        "/swarms/{swarm}/chat",
        "chat_history",
        "Chat history: the newest `limit` messages after position `since`, oldest first",
        "chat",
        response="ChatHistory",
        query=(
            Query(
                "since",
                "only messages after this position (a message's `seq`)",
                "integer",
                _POSITION,
            ),
            Query(
                "limit",
                f"at most this many, the newest (default 100, at most {MAX_CHAT_LIMIT})",
                "integer",
                {"minimum": 1, "maximum": MAX_CHAT_LIMIT},
            ),
        ),
        errors=(400, 404),
    ),
    Route(
        "POST",
        "/swarms/{swarm}/chat",
        "post_chat",
        "Post to the swarm's chat; @mentions reach agents' inboxes (an unknown one: 400). "
        "Also accepts an agent's own token: it then posts as that agent",
        "chat",
        body="PostChat",
        response="ChatMessage",
        status=201,
        errors=(400, 403, 404),
        verb="chat_post",
    ),
    Route(
        "GET",
        "/swarms/{swarm}/chat/stream",
        "chat_stream",
        "Server-sent events: chat messages after `since`, then live "
        "(id: position, event: message, data: the message as JSON)",
        "chat",
        query=(
            Query(
                "since", "only messages after this position (default 0: all)", "integer", _POSITION
            ),
        ),
        stream=True,
        errors=(400, 404),
    ),
    # projects
    Route(
        "GET",
        "/projects",
        "list_projects",
        "Every swarm's projects (or one swarm's) with each agent's checkout",
        "projects",
        response="list[Project]",
        query=(Query("swarm", "only this swarm's projects"),),
    ),
    Route(
        "POST",
        "/projects",
        "create_project",
        "Create a git project and attach it to its swarm (default: `default`)",
        "projects",
        body="CreateProject",
        response="Project",
        status=201,
        errors=(400, 404, 409),
    ),
    Route(
        "GET",
        "/swarms/{swarm}/project",
        "swarm_project",
        "The swarm's project with each agent's checkout (commit, dirty, ahead, behind, error)",
        "projects",
        response="Project",
        verb="get_project",
    ),
    Route(
        "PATCH",
        "/projects/{project}",
        "update_project",
        "Change a project's URL, branch, credentials, mode, strategy, verify or on_conflict "
        "(a new URL or branch: every checkout follows, a new init round)",
        "projects",
        body="UpdateProject",
        response="Project",
        query=(Query("swarm", "the swarm, when the project id exists in several"),),
        errors=(400, 404, 409),
    ),
    Route(
        "DELETE",
        "/projects/{project}",
        "delete_project",
        "Delete a project (detached from its swarm; the checkouts stay on disk)",
        "projects",
        response="Deleted",
        query=(Query("swarm", "the swarm, when the project id exists in several"),),
        errors=(404, 409),
    ),
    Route(
        "POST",
        "/projects/{project}/init",
        "init_project",
        "Clone the project into every agent's sandbox (202: a new round is asked for)",
        "projects",
        response="Project",
        status=202,
        query=_WAIT,
        errors=(400, 404, 409),
    ),
    Route(
        "POST",
        "/projects/{project}/sync",
        "sync_project",
        "Pull the project in every agent's sandbox (202: a new round is asked for)",
        "projects",
        response="Project",
        status=202,
        query=_WAIT,
        errors=(400, 404, 409),
    ),
)

ROUTE_BY_NAME: dict[str, Route] = {route.name: route for route in ROUTES}
