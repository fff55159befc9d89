"""The HTTP edge: aiohttp handlers for the route table, the bearer-token check, and the one
place typed errors become status codes and ``{"error": {"code", "message", "field"}}`` bodies.

Server-sent event streams (``/events``, ``/logs``, ``/chat/stream``) read the stream from a
position with ``services.bus.history.Feed`` and keep following it live.

Auth: ``Authorization: Bearer <SWARM_API_TOKEN>`` everywhere but ``/health``; an agent's own
token (``schemas.agent_tokens``) only where ``schemas.scopes`` allows it (reading its swarm, chat,
follow-up tasks), only for that agent's swarm, and the handler then acts as that agent. Wrong
tokens, on the API or the board's sign-in form, are counted per client address
(``schemas.token_failures``): past the limit, its token attempts answer 429 with ``Retry-After``.

Compression: the board's pages and files and any JSON answer of ``COMPRESS_FROM`` bytes or more
go gzipped to a client that accepts gzip; event streams never (each event must leave at once).
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

import msgspec
import structlog
from aiohttp import web

from schemas import subjects, token_failures
from schemas.board import FINISHED
from schemas.errors import (
    Forbidden,
    Invalid,
    NotFound,
    SwarmError,
    TooLarge,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)
from schemas.positions import MAX_POSITION, whole_number
from schemas.scopes import Caller, authorize, bearer, identify, principal
from schemas.token_failures import TokenFailures
from services.bus.chat import decode as decode_chat
from services.bus.history import Feed, chunk_attempt
from services.bus.micro import decode_body, error_body
from services.gateway import sessions
from services.gateway.chat import MAX_LIMIT as MAX_CHAT_LIMIT
from services.gateway.commands import MAX_PAGE, MAX_PER_STATUS, Commands, check_per_status
from services.gateway.context import Context, Landed, Result
from services.gateway.routes import ROUTE_BY_NAME, ROUTES
from services.gateway.validation import task_of
from services.gateway.watchers import Watchers

if TYPE_CHECKING:
    from services.gateway.service import Gateway

log = structlog.get_logger("gateway.http")

MAX_BODY = 1 << 20  # 1 MiB
KEEPALIVE = 15.0  # seconds between SSE comments on a quiet stream
POLL = 0.5  # how often a quiet SSE loop looks at the clock and at shutdown
OPEN_ROUTES = frozenset({"/health"})
# The board's pages: each decides itself what a visitor who is not signed in sees.
PAGE_ROUTES = frozenset({"/", "/sign-in", "/sign-out"})
ASSETS = "/board/"  # the board's static files (no secrets in them): open
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# The board's pages and files: only this origin's scripts, styles, images and connections; no
# inline script or style, no framing, forms post only here.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no-referrer would make Origin "null"
    "X-Frame-Options": "DENY",
}
ASSET_TYPES = {
    "board.js": "text/javascript",
    "board.css": "text/css",
    "icon.svg": "image/svg+xml",
}
# What goes gzipped to a client that accepts it: text the board and the API send, from this size
# (smaller answers gain a few bytes for the work). Event streams are prepared by their handler
# and are never compressed: gzip would hold each event back until a block fills.
COMPRESSED_TYPES = frozenset(
    {"text/html", "text/css", "text/javascript", "image/svg+xml", "application/json"}
)
COMPRESS_FROM = 1024  # bytes
CORRELATION = web.RequestKey("correlation_id", str)
AGENT = web.RequestKey("agent", str)  # set when the caller holds an agent token
CORRELATION_ID = re.compile(r"[!-~]{1,128}")  # a given X-Correlation-Id: printable ASCII

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(body),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def error_response(error: SwarmError) -> web.Response:
    headers = None
    if isinstance(error, Unauthorized):
        headers = {"WWW-Authenticate": "Bearer"}
    elif isinstance(error, TooManyRequests):
        headers = {"Retry-After": str(error.retry_after)}
    return json_response(error_body(error), error.status, headers)


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an ``Accept-Encoding`` header takes gzip (named, or ``*``, with a q above 0)."""
    weights: dict[str, float] = {}
    for part in (accept_encoding or "").lower().split(","):
        coding, *parameters = (piece.strip() for piece in part.split(";"))
        weight = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if coding:
            weights[coding] = weight
    for coding in ("gzip", "x-gzip", "*"):
        if coding in weights:
            return weights[coding] > 0
    return False


def sse_message(data: str, *, event: str | None = None, id: int | None = None) -> bytes:
    lines = []
    if id is not None:
        lines.append(f"id: {id}")
    if event is not None:
        lines.append(f"event: {event}")
    lines += [f"data: {line}" for line in data.split("\n")]
    return ("\n".join(lines) + "\n\n").encode()


def _int_query(
    request: web.Request,
    name: str,
    default: int | None = None,
    *,
    minimum: int = 0,
    maximum: int = MAX_POSITION,
) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    return whole_number(raw, name, minimum=minimum, maximum=maximum)


FLAGS = {"1": True, "true": True, "yes": True, "on": True}
FLAGS |= {"0": False, "false": False, "no": False, "off": False}


def _flag(request: web.Request, name: str, default: bool) -> bool:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() not in FLAGS:
        raise Invalid(name, f"{name} must be true or false (or 1 or 0), not {raw[:40]!r}")
    return FLAGS[raw.lower()]


class HttpApi:
    """The handlers; ``gateway`` provides ``commands``, ``bus``, ``health`` and the token."""

    def __init__(
        self,
        gateway: Gateway,
        *,
        token: str | None,
        max_body: int = MAX_BODY,
        failures: TokenFailures | None = None,
    ) -> None:
        self.gateway = gateway
        self.token = token
        self.max_body = max_body
        self.closing = asyncio.Event()
        self.watchers = Watchers()  # the board streams open now, fed by the gateway's fold
        self.clock: Callable[[], float] = time.time  # sessions' expiry: wall time
        self.failures = failures or TokenFailures()  # wrong tokens per client address
        self.monotonic: Callable[[], float] = time.monotonic  # the failures' windows

    @property
    def commands(self) -> Commands:
        if self.gateway.commands is None:
            raise Unavailable("the gateway is starting; retry shortly")
        return self.gateway.commands

    def build(self) -> web.Application:
        app = web.Application(
            client_max_size=self.max_body,
            middlewares=[self.compress, self.errors, self.authenticate],
        )
        for route in ROUTES:
            app.router.add_route(
                route.method, route.path, getattr(self, route.name), name=route.name
            )
        # The board (not part of the JSON API, so not in the route table or OpenAPI document)
        app.router.add_get("/", self.board_page, name="board_page")
        app.router.add_post("/sign-in", self.sign_in, name="sign_in")
        app.router.add_post("/sign-out", self.sign_out, name="sign_out")
        app.router.add_get(ASSETS + "{asset}", self.board_asset, name="board_asset")
        return app

    # --- middlewares ----------------------------------------------------------------------

    @web.middleware
    async def compress(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Gzip a finished answer worth it (``COMPRESSED_TYPES``, ``COMPRESS_FROM``) for a client
        that accepts it; a stream its handler already started is left as it is."""
        response = await handler(request)
        if (
            isinstance(response, web.Response)
            and not response.prepared
            and response.content_type in COMPRESSED_TYPES
            and isinstance(response.body, bytes)
            and len(response.body) >= COMPRESS_FROM
        ):
            response.headers.add("Vary", "Accept-Encoding")  # caches keep both forms apart
            if accepts_gzip(request.headers.get("Accept-Encoding")):
                response.enable_compression(web.ContentCoding.gzip)
        return response

    @web.middleware
    async def errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        correlation = request.headers.get("X-Correlation-Id") or ""
        if not CORRELATION_ID.fullmatch(correlation):  # echoed in a header: ASCII only
            correlation = uuid.uuid4().hex
        request[CORRELATION] = correlation
        try:
            response = await handler(request)
        except SwarmError as error:
            response = error_response(error)
        except Landed as landed:  # written; this gateway's fold has not caught up yet
            response = json_response(landed.body(), 202, {"Location": landed.location})
        except web.HTTPRequestEntityTooLarge:
            response = error_response(TooLarge(f"the body is larger than {self.max_body} bytes"))
        except web.HTTPException as error:
            if error.status < 400:
                raise
            code = error.reason.lower().replace(" ", "_")
            allow = error.headers.get("Allow")  # 405: the methods the path has
            response = json_response(
                {"error": {"code": code, "message": error.reason}},
                error.status,
                {"Allow": allow} if allow is not None else None,
            )
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as error:
            bus = self.gateway.bus
            if bus is None or not bus.nc.is_connected:
                response = error_response(Unavailable("NATS is unreachable; retry when it is back"))
            else:
                log.exception("http.failed", path=request.path, method=request.method)
                response = json_response(
                    {
                        "error": {
                            "code": "error",
                            "message": f"internal error ({type(error).__name__})",
                        }
                    },
                    500,
                )
        if not response.prepared:
            response.headers["X-Correlation-Id"] = request[CORRELATION]
        return response

    @web.middleware
    async def authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if not self.token or path in OPEN_ROUTES or path in PAGE_ROUTES:
            return await handler(request)
        if path.startswith(ASSETS):
            return await handler(request)
        header = request.headers.get("Authorization")
        if header is None and self.signed_in(request):
            # the board in a browser: its session cookie stands for the API token; a write
            # must come from a page of this gateway (CSRF)
            if request.method in UNSAFE_METHODS:
                self.check_origin(request)
            return await handler(request)
        given = bearer(header)
        address = self.check_attempts(request) if given is not None else None
        try:
            caller = identify(self.token, given)
        except Unauthorized:
            if address is not None:
                self.wrong_token(address)
            raise
        if caller.is_agent:
            self.check_agent_token(request, caller)
        return await handler(request)

    def signed_in(self, request: web.Request) -> bool:
        """Whether the request carries a live board session (always, without an API token)."""
        if not self.token:
            return True
        return sessions.valid(self.token, request.cookies.get(sessions.COOKIE), self.clock())

    def check_attempts(self, request: web.Request) -> str:
        """The address a token attempt is counted under; ``TooManyRequests`` while it waits."""
        address = token_failures.client_key(request.remote)
        refused = self.failures.refusal(address, self.monotonic())
        if refused is not None:
            raise refused
        return address

    def wrong_token(self, address: str) -> None:
        """Count a wrong token from ``address``; say so once when it has to wait (never the
        token itself)."""
        if self.failures.failed(address, self.monotonic()):
            limits = self.failures.limits
            log.warning(
                "auth.limited",
                address=address,
                failures=limits.failures,
                wait_s=limits.window,
            )

    @staticmethod
    def check_origin(request: web.Request) -> None:
        if not sessions.same_origin(request.headers.get("Origin"), request.host):
            raise Forbidden(
                "a write with the board's session cookie must come from the board's own page "
                "(its Origin header must name this gateway)"
            )

    def check_agent_token(self, request: web.Request, caller: Caller) -> None:
        """Let an agent's own token through where ``schemas.scopes`` allows it, for its own swarm
        only; remember which agent it is (``request[AGENT]``)."""
        route = ROUTE_BY_NAME.get(request.match_info.route.name or "")
        verb = route.command if route is not None and route.auth else "use this route"
        authorize(caller, verb, request.match_info.get("swarm"))
        assert caller.agent is not None
        request[AGENT] = caller.agent

    # --- helpers --------------------------------------------------------------------------

    async def body(self, request: web.Request) -> Any:
        if request.content_length is not None and request.content_length > self.max_body:
            raise TooLarge(f"the body is larger than {self.max_body} bytes")
        return decode_body(await request.read())

    def context(self, request: web.Request) -> Context:
        agent = request.get(AGENT)
        return Context(
            idempotency_key=request.headers.get("Idempotency-Key"),
            correlation_id=request[CORRELATION],
            actor=principal(agent, request.headers.get("User-Agent")),
            agent=agent,
        )

    @staticmethod
    def answer(result: Result) -> web.Response:
        return json_response(result.body, result.status)

    # --- system ---------------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        return await self.gateway.health(request)

    async def openapi(self, request: web.Request) -> web.Response:
        # pydantic and the models: not imported before the gateway is ready (routes.py)
        from services.gateway import openapi

        return json_response(openapi.document(self.gateway.version))

    # --- swarms ---------------------------------------------------------------------------

    async def list_swarms(self, request: web.Request) -> web.Response:
        return json_response(await self.commands.list_swarms())

    async def create_swarm(self, request: web.Request) -> web.Response:
        body = await self.body(request)
        return self.answer(await self.commands.create_swarm(body, self.context(request)))

    async def get_swarm(self, request: web.Request) -> web.Response:
        return json_response(await self.commands.get_swarm(request.match_info["swarm"]))

    async def update_swarm(self, request: web.Request) -> web.Response:
        body = await self.body(request)
        swarm = request.match_info["swarm"]
        return json_response(await self.commands.update_swarm(swarm, body, self.context(request)))

    async def delete_swarm(self, request: web.Request) -> web.Response:
        swarm = request.match_info["swarm"]
        force = _flag(request, "force", False)
        answer = await self.commands.delete_swarm(swarm, self.context(request), force=force)
        return json_response(answer)

    async def status(self, request: web.Request) -> web.Response:
        return json_response(await self.commands.status(request.match_info["swarm"]))

    async def board_at(self, request: web.Request) -> web.Response:
        at = request.query.get("at")
        if not at:
            raise Invalid("at", "at is required: a log position, epoch seconds or an ISO time")
        per_status = _int_query(request, "per_status", minimum=1, maximum=MAX_PER_STATUS)
        answer = await self.commands.board_at(request.match_info["swarm"], at, per_status)
        return json_response(answer)

    # --- tasks ----------------------------------------------------------------------------

    async def list_tasks(self, request: web.Request) -> web.Response:
        """Every task, or with ``limit`` a page: a ``Link: <...>; rel="next"`` header (this
        query with ``after`` set to the page's last task) while more follow (RFC 8288)."""
        query = request.query
        page = await self.commands.list_tasks(
            request.match_info["swarm"],
            status=query.get("status") or None,
            tag=query.get("tag") or None,
            agent=query.get("agent") or None,
            limit=_int_query(request, "limit", minimum=1, maximum=MAX_PAGE),
            after=query.get("after") or None,
            order=query.get("order") or None,
        )
        headers = None
        if page.next is not None:
            following = request.rel_url.update_query(after=page.next)
            headers = {"Link": f'<{following}>; rel="next"'}
        return json_response(page.tasks, headers=headers)

    async def create_task(self, request: web.Request) -> web.Response:
        body = await self.body(request)
        swarm = request.match_info["swarm"]
        return self.answer(await self.commands.create_task(swarm, body, self.context(request)))

    async def get_task(self, request: web.Request) -> web.Response:
        info = request.match_info
        return json_response(await self.commands.get_task(info["swarm"], info["task"]))

    async def update_task(self, request: web.Request) -> web.Response:
        body = await self.body(request)
        info = request.match_info
        task = await self.commands.update_task(
            info["swarm"], info["task"], body, self.context(request)
        )
        return json_response(task)

    async def delete_task(self, request: web.Request) -> web.Response:
        info = request.match_info
        answer = await self.commands.delete_task(info["swarm"], info["task"], self.context(request))
        return json_response(answer)

    async def cancel_task(self, request: web.Request) -> web.Response:
        body = await self.body(request)
        info = request.match_info
        task = await self.commands.cancel_task(
            info["swarm"], info["task"], body, self.context(request)
        )
        return json_response(task)

    async def task_output(self, request: web.Request) -> web.Response:
        info = request.match_info
        attempt = _int_query(request, "attempt", minimum=1)
        return json_response(await self.commands.task_output(info["swarm"], info["task"], attempt))

    # --- agents ---------------------------------------------------------------------------

    async def list_agents(self, request: web.Request) -> web.Response:
        return json_response(await self.commands.list_agents(request.match_info["swarm"]))

    async def register_agent(self, request: web.Request) -> web.Response:
        body = await self.body(request)
        swarm = request.match_info["swarm"]
        return self.answer(await self.commands.register_agent(swarm, body, self.context(request)))

    async def update_agent(self, request: web.Request) -> web.Response:
        body = await self.body(request)
        agent = await self.commands.update_agent(
            request.match_info["sandbox"],
            body,
            self.context(request),
            swarm_id=request.query.get("swarm") or None,
        )
        return json_response(agent)

    # --- chat ---------------------------------------------------------------------------

    async def chat_history(self, request: web.Request) -> web.Response:
        history = await self.commands.chat.history(
            request.match_info["swarm"],
            since=_int_query(request, "since", 0) or 0,
            limit=_int_query(request, "limit", 100, minimum=1, maximum=MAX_CHAT_LIMIT) or 0,
        )
        return json_response(history)

    async def post_chat(self, request: web.Request) -> web.Response:
        body = await self.body(request)
        swarm = request.match_info["swarm"]
        context = self.context(request)
        message = await self.commands.chat.post(swarm, body, context, agent=context.agent)
        return json_response(message, 201)

    # --- projects -------------------------------------------------------------------------

    async def list_projects(self, request: web.Request) -> web.Response:
        swarm = request.query.get("swarm") or None
        return json_response(await self.commands.projects.list_projects(swarm))

    async def create_project(self, request: web.Request) -> web.Response:
        body = await self.body(request)
        return self.answer(await self.commands.projects.create(body, self.context(request)))

    async def swarm_project(self, request: web.Request) -> web.Response:
        swarm = request.match_info["swarm"]
        return json_response(await self.commands.projects.swarm_project(swarm))

    async def update_project(self, request: web.Request) -> web.Response:
        body = await self.body(request)
        project = await self.commands.projects.update(
            request.match_info["project"],
            body,
            self.context(request),
            swarm_id=request.query.get("swarm") or None,
        )
        return json_response(project)

    async def delete_project(self, request: web.Request) -> web.Response:
        answer = await self.commands.projects.delete(
            request.match_info["project"],
            self.context(request),
            swarm_id=request.query.get("swarm") or None,
        )
        return json_response(answer)

    async def _project_request(self, request: web.Request, kind: str) -> web.Response:
        raw_timeout = request.query.get("timeout")
        try:
            timeout = float(raw_timeout) if raw_timeout else None
        except ValueError:
            raise Invalid("timeout", f"timeout must be a number, not {raw_timeout!r}") from None
        result = await self.commands.projects.request(
            request.match_info["project"],
            kind,
            self.context(request),
            swarm_id=request.query.get("swarm") or None,
            wait=_flag(request, "wait", False),
            timeout=timeout,
        )
        return self.answer(result)

    async def init_project(self, request: web.Request) -> web.Response:
        return await self._project_request(request, "init")

    async def sync_project(self, request: web.Request) -> web.Response:
        return await self._project_request(request, "sync")

    # --- the board ----------------------------------------------------------------------

    @staticmethod
    def page_file(name: str) -> bytes:
        return resources.files("services.gateway").joinpath("static", name).read_bytes()

    def page(self, name: str, status: int = 200, *, error: str = "") -> web.Response:
        text = self.page_file(name).decode()
        text = text.replace("{{error}}", html.escape(error))
        response = web.Response(text=text, status=status, content_type="text/html", charset="utf-8")
        response.headers.update(PAGE_HEADERS)
        response.headers["Cache-Control"] = "no-store"
        return response

    async def board_page(self, request: web.Request) -> web.Response:
        """The board, or the sign-in form to a browser without a session (not a 401)."""
        if self.signed_in(request):
            return self.page("board.html")
        return self.page("signin.html")

    async def board_asset(self, request: web.Request) -> web.Response:
        name = request.match_info["asset"]
        kind = ASSET_TYPES.get(name)
        if kind is None:
            raise NotFound(f"no board file {name}")
        response = web.Response(body=self.page_file(name), content_type=kind)
        response.headers.update(PAGE_HEADERS)
        response.headers["Cache-Control"] = "no-cache"
        return response

    @staticmethod
    def over_https(request: web.Request) -> bool:
        forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip()
        return request.secure or forwarded.lower() == "https"

    async def sign_in(self, request: web.Request) -> web.Response:
        """The sign-in form's POST (``token``): a session cookie and back to the board, or the
        form again with what was wrong (401)."""
        if not sessions.same_origin(request.headers.get("Origin"), request.host):
            return self.page("signin.html", 403, error="Sign in from the board's own page.")
        if not self.token:
            return self.to_board()
        try:
            address = self.check_attempts(request)
        except TooManyRequests as refused:
            wait = refused.retry_after
            message = f"Too many wrong tokens from this address: try again in {wait} seconds."
            response = self.page("signin.html", 429, error=message)
            response.headers["Retry-After"] = str(wait)
            return response
        form = await request.post()
        given = form.get("token")
        given = given.strip() if isinstance(given, str) else ""
        try:
            caller = identify(self.token, given or None)
        except Unauthorized:
            caller = None
            if given:
                self.wrong_token(address)
        if caller is None or caller.is_agent:
            message = "That is not this Swarm's API token." if given else "Enter the API token."
            return self.page("signin.html", 401, error=message)
        response = self.to_board()
        response.set_cookie(
            sessions.COOKIE,
            sessions.issue(self.token, self.clock()),
            max_age=sessions.SESSION_SECONDS,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=self.over_https(request),
        )
        log.info("board.signed_in", remote=request.remote)
        return response

    @staticmethod
    def to_board() -> web.Response:
        return web.Response(status=303, headers={"Location": "/", "Cache-Control": "no-store"})

    async def sign_out(self, request: web.Request) -> web.Response:
        if not sessions.same_origin(request.headers.get("Origin"), request.host):
            raise Forbidden("sign out from the board's own page")
        response = self.to_board()
        response.del_cookie(sessions.COOKIE, path="/")
        return response

    async def board_stream(self, request: web.Request) -> web.StreamResponse:
        """The swarm's board, live: ``event: board`` (the whole view, ``id:`` its log
        position), then ``event: change`` after each of its events (what it changed, from the
        fold right after it). With ``follow=0`` it ends (``event: end``) after the view."""
        swarm = request.match_info["swarm"]
        self._since(request)  # a malformed Last-Event-ID is a 400; a reconnect gets it all
        follow = _flag(request, "follow", True)
        per_status = _int_query(request, "per_status", minimum=1, maximum=MAX_PER_STATUS)
        commands = self.commands
        commands.check_available()
        if swarm not in commands.board.swarms:
            raise NotFound(f"no swarm {swarm}")
        per_status = check_per_status(per_status)
        with self.watchers.watching(swarm, commands.board, per_status) as watch:
            response = await self._open_stream(request)
            last_write = time.monotonic()
            try:
                first = watch.first
                await response.write(
                    sse_message(json.dumps(first), event="board", id=first["seq"])
                    if first is not None
                    else sse_message("{}", event="gone")
                )
                while follow and first is not None and not self.closing.is_set():
                    if watch.dropped:  # fell behind: the browser reconnects to a fresh view
                        break
                    try:
                        message = await asyncio.wait_for(watch.changes.get(), POLL)
                    except TimeoutError:
                        last_write = await self._quiet(response, last_write)
                        continue
                    await response.write(
                        sse_message(json.dumps(message), event="change", id=message["seq"])
                    )
                    last_write = time.monotonic()
                if not follow:
                    await response.write(sse_message("{}", event="end"))
            except ConnectionResetError:
                pass
        return response

    # --- server-sent events ---------------------------------------------------------------

    async def _open_stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
                "X-Correlation-Id": request[CORRELATION],
            }
        )
        await response.prepare(request)
        return response

    async def _quiet(self, response: web.StreamResponse, last_write: float) -> float:
        """On a quiet stream: a comment every ``KEEPALIVE`` seconds keeps proxies from closing
        it (and notices a client that went away)."""
        now = time.monotonic()
        if now - last_write >= KEEPALIVE:
            await response.write(b": keepalive\n\n")
            return now
        return last_write

    def _since(self, request: web.Request) -> int:
        """``since``, else the ``Last-Event-ID`` a reconnecting client sends (the ``id:`` of
        the last event it got: always a log position), else 0."""
        since = _int_query(request, "since")
        if since is not None:
            return since
        last = request.headers.get("Last-Event-ID")
        if last is None or last == "":
            return 0
        return whole_number(last, "Last-Event-ID")

    async def events(self, request: web.Request) -> web.StreamResponse:
        """The swarm's events after ``since`` (``id:`` log position, ``event:`` type,
        ``data:`` the event's JSON); with ``follow=0`` the stream ends (``event: end``) once
        it has caught up."""
        swarm = request.match_info["swarm"]
        since = self._since(request)
        follow = _flag(request, "follow", True)
        task = request.query.get("task") or None
        commands = self.commands
        commands.check_available()
        given = "since" in request.query or "Last-Event-ID" in request.headers
        if _flag(request, "tail", False) and not given:
            since = commands.board.seq  # only what comes after now
        if swarm not in commands.board.swarms:
            raise NotFound(f"no swarm {swarm}")
        if task is not None:
            subjects.check_token(task, "task")
            subject = subjects.aggregate_filter(swarm, "task", task)
        else:
            subject = subjects.swarm_events(swarm)
        bus = self.gateway.bus
        assert bus is not None
        async with Feed(bus.js, subjects.EVENTS_STREAM, subject, after=since) as feed:
            response = await self._open_stream(request)
            last_write = time.monotonic()
            try:
                while not self.closing.is_set():
                    if not follow and feed.caught_up:
                        await response.write(sse_message("{}", event="end"))
                        break
                    record = await feed.next(timeout=POLL)
                    if record is None:
                        last_write = await self._quiet(response, last_write)
                        continue
                    event = record.event()
                    kind = event.type if event is not None else "undecodable"
                    data = record.data.decode("utf-8", errors="replace")
                    await response.write(sse_message(data, event=kind, id=record.seq))
                    last_write = time.monotonic()
            except ConnectionResetError:
                pass
        return response

    async def task_logs(self, request: web.Request) -> web.StreamResponse:
        """A task's output chunks (``event: chunk``, ``data: {"attempt", "text"}``); with
        ``follow=1`` live until the task has ended and every chunk is out; ``event: end``."""
        info = request.match_info
        swarm, task_id = info["swarm"], info["task"]
        since = self._since(request)
        follow = _flag(request, "follow", False)
        attempt = _int_query(request, "attempt", minimum=1)
        commands = self.commands
        commands.check_available()
        task_of(commands.board, swarm, task_id)
        bus = self.gateway.bus
        assert bus is not None
        async with Feed(
            bus.js, subjects.LOGS_STREAM, subjects.log(swarm, task_id), after=since
        ) as feed:
            response = await self._open_stream(request)
            last_write = time.monotonic()
            until: int | None = None  # once the task ended: the last chunk stored
            try:
                while not self.closing.is_set():
                    if not follow and feed.caught_up:
                        break
                    if follow and until is None:
                        current = commands.board.task(swarm, task_id)
                        if current is None or current.status in FINISHED:
                            until = await feed.stored_until()
                    if until is not None and feed.position >= until and feed.idle:
                        break
                    record = await feed.next(timeout=POLL)
                    if record is None:
                        last_write = await self._quiet(response, last_write)
                        continue
                    chunk_of = chunk_attempt(record)
                    if attempt is not None and chunk_of not in (attempt, None):
                        continue
                    text = record.data.decode("utf-8", errors="replace")
                    data = json.dumps({"attempt": chunk_of, "text": text})
                    await response.write(sse_message(data, event="chunk", id=record.seq))
                    last_write = time.monotonic()
                current = commands.board.task(swarm, task_id)
                status = current.status if current is not None else "deleted"
                await response.write(sse_message(json.dumps({"status": status}), event="end"))
            except ConnectionResetError:
                pass
        return response

    async def chat_stream(self, request: web.Request) -> web.StreamResponse:
        """The swarm's chat messages after ``since`` (``id:`` position in SWARM_CHAT,
        ``event: message``, ``data:`` the message as JSON, with its ``seq``), then live."""
        swarm = request.match_info["swarm"]
        since = self._since(request)
        commands = self.commands
        commands.check_available()
        if swarm not in commands.board.swarms:
            raise NotFound(f"no swarm {swarm}")
        bus = self.gateway.bus
        assert bus is not None
        async with Feed(
            bus.js, subjects.CHAT_STREAM, subjects.chat_all(swarm), after=since
        ) as feed:
            response = await self._open_stream(request)
            last_write = time.monotonic()
            try:
                while not self.closing.is_set():
                    record = await feed.next(timeout=POLL)
                    if record is None:
                        last_write = await self._quiet(response, last_write)
                        continue
                    message = decode_chat(record.data, record.seq)
                    if message is None:
                        continue
                    data = msgspec.json.encode(message).decode()
                    await response.write(sse_message(data, event="message", id=record.seq))
                    last_write = time.monotonic()
            except ConnectionResetError:
                pass
        return response
