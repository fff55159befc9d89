"""The gateway's commands as NATS micro endpoints: ``swarm.cmd.<swarm>.<verb>``, JSON in and out.

``nats service ls`` lists the service ``swarm-gateway``; every replica joins the same queue
group, so each request is answered once. Swarm-level verbs (``list_swarms``, and
``create_swarm`` without an id) use the reserved swarm token ``_``: ``swarm.cmd._.list_swarms``.
A request naming a task or an agent carries it in the body: ``{"task": "t-1"}``,
``{"agent": "<sandbox id or agent id>"}``. An ``Idempotency-Key`` header works as over HTTP.
``Authorization: Bearer <agent token>`` makes the request that agent's, in its scope
(``schemas.scopes``: what the MCP server forwards for an agent); without it a request has full
access. ``Swarm-Seen-Seq: <seq>`` answers from a fold that holds that log position.
``list_tasks`` pages with ``{"limit": n, "after"?: <task id>, "order"?}`` as ``GET .../tasks``
does: the reply stays the array of tasks, and while more follow it carries ``Swarm-Next-After:
<id>``, the ``after`` of the next page (no ``limit``: every task, no header, as before).
Errors answer with the micro error headers (``Nats-Service-Error-Code``: the HTTP status) and the
HTTP API's ``{"error": {...}}`` body.

Projects: ``create_project`` (the HTTP body; the subject's swarm is the project's swarm, ``_``
takes the body's ``swarm``), ``list_projects``, ``get_project`` (the swarm's project, or
``{"project": <id>}``), ``update_project`` (``{"project"?: <id>, ...the PATCH body}``),
``delete_project`` (``{"project"?: <id>}``), ``init_project`` / ``sync_project``
(``{"project"?: <id>, "wait"?: true, "timeout"?: s}``; default: the swarm's project). Chat
verbs (``chat_post``, ``chat_history``) belong to the chat service's own micro service, on the
same ``swarm.cmd.<swarm>.*`` subjects.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from schemas import subjects
from schemas.errors import Invalid, NotFound, Unavailable
from schemas.positions import whole_number
from schemas.scopes import FULL, Caller, authorize, bearer, identify, principal
from services.bus.micro import CommandRequest, Endpoint, Handler, Reply, serve
from services.gateway.commands import MAX_PAGE, MAX_PER_STATUS, RESERVED_SWARM, Commands
from services.gateway.context import Context, Landed

SERVICE_NAME = "swarm-gateway"
SWARM_TOKEN = 2  # swarm.cmd.<swarm>.<verb>
STATUS_HEADER = "Swarm-Status"  # 202 on a write answered while it is still being applied
NEXT_HEADER = "Swarm-Next-After"  # a page of list_tasks: the next page's ``after``
SEEN_WAIT = 5.0  # seconds to wait for the fold to reach a caller's Swarm-Seen-Seq


def _swarm(request: CommandRequest) -> str:
    swarm = request.token(SWARM_TOKEN)
    if swarm == RESERVED_SWARM:
        raise Invalid("swarm", "this command needs a swarm: swarm.cmd.<swarm>.<verb>")
    return swarm


def _body(request: CommandRequest) -> dict[str, Any]:
    if not isinstance(request.data, dict):
        raise Invalid("body", "the request must be a JSON object")
    return dict(request.data)


def _text(body: dict[str, Any], name: str) -> str | None:
    """An optional string field (``None`` when absent)."""
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise Invalid(name, f"{name} must be a string")
    return value


def _take(body: dict[str, Any], name: str) -> str:
    value = body.pop(name, None)
    if not isinstance(value, str) or not value:
        raise Invalid(name, f"{name} is required: {{{name!r}: <id>}}".replace("'", '"'))
    return value


def _swarm_or_any(request: CommandRequest) -> str | None:
    token = request.token(SWARM_TOKEN)
    return None if token == RESERVED_SWARM else token


def caller(request: CommandRequest, api_token: str | None) -> Caller:
    """Who asks: a request without ``Authorization`` has full access (whoever may publish on
    ``swarm.cmd.>`` is trusted by NATS); with an agent's token, that agent."""
    given = bearer(request.headers.get("Authorization"))
    if given is None:
        return FULL
    return identify(api_token, given)


def endpoints(commands: Commands, api_token: str | None = None) -> list[Endpoint]:
    """One endpoint per verb, each on ``swarm.cmd.*.<verb>``."""

    def _context(request: CommandRequest) -> Context:
        headers = request.headers
        agent = caller(request, api_token).agent
        return Context(
            idempotency_key=headers.get("Idempotency-Key"),
            correlation_id=headers.get("X-Correlation-Id"),
            actor=principal(agent, headers.get("User-Agent"), edge="nats"),
            agent=agent,
        )

    async def list_swarms(r: CommandRequest) -> Any:
        return await commands.list_swarms()

    async def create_swarm(r: CommandRequest) -> Any:
        body = _body(r)
        token = r.token(SWARM_TOKEN)
        if token != RESERVED_SWARM:
            if body.get("id") not in (None, token):
                raise Invalid("id", f"the body's id differs from the subject's swarm {token}")
            body["id"] = token
        return (await commands.create_swarm(body, _context(r))).body

    async def get_swarm(r: CommandRequest) -> Any:
        return await commands.get_swarm(_swarm(r))

    async def update_swarm(r: CommandRequest) -> Any:
        return await commands.update_swarm(_swarm(r), _body(r), _context(r))

    async def delete_swarm(r: CommandRequest) -> Any:
        force = _body(r).get("force", False)
        if not isinstance(force, bool):
            raise Invalid("force", "force must be true or false")
        return await commands.delete_swarm(_swarm(r), _context(r), force=force)

    async def status(r: CommandRequest) -> Any:
        return await commands.status(_swarm(r))

    async def board(r: CommandRequest) -> Any:
        body = _body(r)
        at = body.get("at")
        if isinstance(at, bool) or not isinstance(at, str | int | float):
            raise Invalid("at", 'at is required: {"at": <seq, epoch seconds or ISO time>}')
        per_status = body.get("per_status")
        if per_status is not None:
            per_status = whole_number(per_status, "per_status", minimum=1, maximum=MAX_PER_STATUS)
        return await commands.board_at(_swarm(r), str(at), per_status)

    async def list_tasks(r: CommandRequest) -> Any:
        body = _body(r)
        limit = body.get("limit")
        page = await commands.list_tasks(
            _swarm(r),
            status=_text(body, "status"),
            tag=_text(body, "tag"),
            agent=_text(body, "agent"),
            limit=None
            if limit is None
            else whole_number(limit, "limit", minimum=1, maximum=MAX_PAGE),
            after=_text(body, "after"),
            order=_text(body, "order"),
        )
        return page.tasks if page.next is None else Reply(page.tasks, {NEXT_HEADER: page.next})

    async def create_task(r: CommandRequest) -> Any:
        return (await commands.create_task(_swarm(r), _body(r), _context(r))).body

    async def get_task(r: CommandRequest) -> Any:
        return await commands.get_task(_swarm(r), _take(_body(r), "task"))

    async def update_task(r: CommandRequest) -> Any:
        body = _body(r)
        task = _take(body, "task")
        return await commands.update_task(_swarm(r), task, body, _context(r))

    async def cancel_task(r: CommandRequest) -> Any:
        body = _body(r)
        task = _take(body, "task")
        return await commands.cancel_task(_swarm(r), task, body, _context(r))

    async def delete_task(r: CommandRequest) -> Any:
        body = _body(r)
        task = _take(body, "task")
        if body:
            raise Invalid(next(iter(body)), 'delete_task takes only {"task": <id>}')
        return await commands.delete_task(_swarm(r), task, _context(r))

    async def task_output(r: CommandRequest) -> Any:
        body = _body(r)
        task = _take(body, "task")
        attempt = body.get("attempt")
        if attempt is not None:
            attempt = whole_number(attempt, "attempt", minimum=1)
        return await commands.task_output(_swarm(r), task, attempt)

    async def list_agents(r: CommandRequest) -> Any:
        return await commands.list_agents(_swarm(r))

    async def register_agent(r: CommandRequest) -> Any:
        return (await commands.register_agent(_swarm(r), _body(r), _context(r))).body

    async def update_agent(r: CommandRequest) -> Any:
        body = _body(r)
        agent = _take(body, "agent")
        token = r.token(SWARM_TOKEN)
        swarm = None if token == RESERVED_SWARM else token
        return await commands.update_agent(agent, body, _context(r), swarm_id=swarm)

    projects = commands.projects

    async def list_projects(r: CommandRequest) -> Any:
        return await projects.list_projects(_swarm_or_any(r))

    async def create_project(r: CommandRequest) -> Any:
        body = _body(r)
        token = _swarm_or_any(r)
        if token is not None:
            given = (
                body.pop("swarm", None) or body.pop("swarmId", None) or body.pop("swarm_id", None)
            )
            if given not in (None, token):
                raise Invalid("swarm", f"the body's swarm differs from the subject's swarm {token}")
            body["swarm"] = token
        return (await projects.create(body, _context(r))).body

    def _project_of(r: CommandRequest, body: dict[str, Any]) -> tuple[str, str | None]:
        """(project id, swarm or None): the body's ``project``, else the swarm's project."""
        swarm = _swarm_or_any(r)
        project = body.pop("project", None)
        if project is not None:
            if not isinstance(project, str) or not project:
                raise Invalid("project", 'project must be an id: {"project": <id>}')
            return project, swarm
        if swarm is None:
            raise Invalid("project", 'on swarm "_" name it: {"project": <id>}')
        view = commands.board.swarms.get(swarm)
        if view is None:
            raise NotFound(f"no swarm {swarm}")
        if view.project is None:
            raise NotFound(f"swarm {swarm} has no project")
        return view.project, swarm

    async def get_project(r: CommandRequest) -> Any:
        body = _body(r)
        if "project" not in body:
            return await projects.swarm_project(_swarm(r))
        project, swarm = _project_of(r, body)
        return await projects.get(project, swarm)

    async def update_project(r: CommandRequest) -> Any:
        body = _body(r)
        project, swarm = _project_of(r, body)
        return await projects.update(project, body, _context(r), swarm_id=swarm)

    async def delete_project(r: CommandRequest) -> Any:
        body = _body(r)
        project, swarm = _project_of(r, body)
        if body:
            raise Invalid(next(iter(body)), 'delete_project takes only {"project"?: <id>}')
        return await projects.delete(project, _context(r), swarm_id=swarm)

    def _request_project(kind: str) -> Callable[[CommandRequest], Awaitable[Any]]:
        async def handle(r: CommandRequest) -> Any:
            body = _body(r)
            commands.check_available()
            project, swarm = _project_of(r, body)
            wait = body.pop("wait", False)
            if not isinstance(wait, bool):
                raise Invalid("wait", "wait must be true or false")
            timeout = body.pop("timeout", None)
            if timeout is not None and (
                isinstance(timeout, bool) or not isinstance(timeout, int | float)
            ):
                raise Invalid("timeout", "timeout must be a number of seconds")
            if body:
                raise Invalid(next(iter(body)), f"{kind}_project takes project, wait, timeout")
            result = await projects.request(
                project, kind, _context(r), swarm_id=swarm, wait=wait, timeout=timeout
            )
            return result.body

        return handle

    handlers: dict[str, tuple[Callable[[CommandRequest], Awaitable[Any]], str]] = {
        "list_swarms": (list_swarms, "list swarms (swarm token: _)"),
        "create_swarm": (create_swarm, "create the subject's swarm (or _ with an optional id)"),
        "get_swarm": (get_swarm, "get the swarm"),
        "update_swarm": (update_swarm, 'rename it or set its budget: {"budget_usd": <usd>|null}'),
        "delete_swarm": (delete_swarm, "delete the swarm"),
        "status": (status, "swarm, agents, task counts"),
        "board": (board, 'the board as it was: {"at": <seq or time>}'),
        "list_tasks": (list_tasks, 'list tasks: {"status"?, "tag"?, "agent"?, "limit"?, "after"?}'),
        "create_task": (create_task, "create a task: the HTTP body"),
        "get_task": (get_task, 'a task with its history: {"task": <id>}'),
        "update_task": (update_task, 'update a task: {"task": <id>, ...fields}'),
        "cancel_task": (cancel_task, 'cancel a task: {"task": <id>, "reason"?}'),
        "delete_task": (delete_task, 'delete a task: {"task": <id>}'),
        "task_output": (task_output, 'a task\'s output: {"task": <id>, "attempt"?}'),
        "list_agents": (list_agents, "list agents"),
        "register_agent": (register_agent, "register an agent: the HTTP body"),
        "update_agent": (update_agent, 'update an agent: {"agent": <sandbox or agent id>, ...}'),
        "list_projects": (list_projects, "the swarm's projects (_: every swarm's)"),
        "create_project": (create_project, "create and attach a project: the HTTP body"),
        "get_project": (get_project, 'the swarm\'s project, or {"project": <id>}'),
        "update_project": (
            update_project,
            'change it: {"project"?, "git_url"?, "branch"?, "mode"?, "verify"?, ...}',
        ),
        "delete_project": (delete_project, 'delete it: {"project"?: <id>}'),
        "init_project": (
            _request_project("init"),
            'clone it everywhere: {"project"?, "wait"?, "timeout"?}',
        ),
        "sync_project": (
            _request_project("sync"),
            'pull it everywhere: {"project"?, "wait"?, "timeout"?}',
        ),
    }

    def guarded(verb: str, handler: Handler) -> Handler:
        """The agent-token scope (``schemas.scopes``), then the caller's ``Swarm-Seen-Seq``
        (answer from a fold that holds what the caller has seen), then the handler."""

        async def handle(r: CommandRequest) -> Any:
            authorize(caller(r, api_token), verb, _swarm_or_any(r))
            seen = r.headers.get(subjects.SEEN_HEADER)
            if seen:
                try:
                    position = whole_number(seen, subjects.SEEN_HEADER)
                    await commands.projection.wait_for(position, timeout=SEEN_WAIT)
                except Unavailable:
                    pass  # answer from what the fold has
            return await handler(r)

        return handle

    return [
        Endpoint(
            name=verb,
            subject=f"swarm.cmd.*.{verb}",
            handler=guarded(verb, _answering_landed(handler)),
            description=text,
        )
        for verb, (handler, text) in handlers.items()
    ]


def _answering_landed(
    handler: Callable[[CommandRequest], Awaitable[Any]],
) -> Callable[[CommandRequest], Awaitable[Any]]:
    """A write that landed but is not folded yet is answered, not failed: the id and where to
    read it, with ``Swarm-Status: 202`` and ``Location`` headers (HTTP's 202)."""

    async def handle(request: CommandRequest) -> Any:
        try:
            return await handler(request)
        except Landed as landed:
            headers = {STATUS_HEADER: "202", "Location": landed.location}
            return Reply(landed.body(), headers)

    return handle


async def start(nc: Any, commands: Commands, version: str, api_token: str | None = None) -> Any:
    """Serve the endpoints on ``nc``; returns the micro service (``await it.stop()``)."""
    return await serve(
        nc,
        name=SERVICE_NAME,
        version=version,
        description="Swarm's commands over NATS: swarm.cmd.<swarm>.<verb>, JSON in and out",
        endpoints=endpoints(commands, api_token),
    )
