"""A local stand-in for Daytona that behaves like the server, not like the SDK's models: the REST
API (``<url>/api``) and each sandbox's toolbox behind the proxy (``<url>/toolbox/<id>``), for the
endpoints Swarm's backend calls, with the behaviour of Daytona's server and daemon (v0.190
sources: ``sandbox.service.ts``, the exception filter, the failed-auth tracker, the proxy's auth,
the daemon's ``session/execute.go``, ``log.go``, ``log_reader.go``, git errors).

A sandbox is a temporary directory (its work and home directory); commands run as real local
processes (``sh``) in their own process groups, so output really streams and a deleted session
really kills its command (SIGTERM, then SIGKILL).

Realism switches (``Realism``, or keyword arguments of ``FakeDaytona``), each covered by tests:

- ``server``: ``"hosted"`` answers as the service the current SDK expects (``kvm``,
  ``networkBlockAll``, error envelopes with ``source``); ``"oss"`` as an open-source v0.190
  server (neither field, envelopes without ``source``; ``/config`` says 0.190.0).
- timed transitions (seconds): ``creating``, ``building`` (``pending_build``, for an image),
  ``starting``, ``stopping``, ``archiving``, ``restoring``. The state machine is v0.190's: a
  start answers 409 while a transition runs (``restoring``, ``stopping``...), except from
  ``archiving``; ``recover`` only from a recoverable ``error``; delete answers 409 mid-transition.
  ``create_waits``: like the API, a create (from a snapshot) and a start answer only once the
  sandbox is started (at most 30 s).
- ``list_lag``: the list is eventually consistent (it shows sandboxes as they were that many
  seconds ago: a new one is missing, a deleted one still there); ``page_size``: its pages.
- ``toolbox_gone``: what the proxy answers for a deleted sandbox's toolbox: 401 or 400 (never 404).
- ``failed_auth_limit``: after that many requests with a bad key, the API answers 429 with
  ``Retry-After`` (and ``X-RateLimit-*-failed-auth``) for ``failed_auth_block`` seconds.
- ``close_after_exit``: a followed log closes this long after the command exits (the daemon: ~1 s).
- ``answer_pings``: False: the log websocket never answers a ping (the SDK's keepalive drops it).
- ``without_bash``: commands see a PATH without bash.
- ``sources``: whether error envelopes carry ``source`` (by default: the hosted service's do,
  v0.190's do not).
- controls: ``fail()`` (an injected answer), ``hang()`` (requests answered only after a while),
  ``drop_create_answers()`` (a sandbox made, its answer lost), ``drop_streams()`` (log sockets
  cut mid-stream),
  ``stall_streams()`` (log sockets that go silent, never closing), ``lose()``, ``halt()`` (an
  auto-stop), ``archive()``, ``break_sandbox()`` (an error, recoverable or not),
  ``require_git_token()`` (a repository that wants credentials).

Session commands are framed as the daemon frames them: each stream line by line (a partial line
is held back until its newline, a last unterminated line gets one, NUL bytes are dropped), every
line prefixed with the stdout (``\\x01\\x01\\x01``) or stderr (``\\x02\\x02\\x02``) marker; the
exit code shows only once the output is complete. Git clones are single-branch, as the daemon's;
git failures answer 401/403/404/409/500 as the daemon maps them.

Records for assertions: ``create_requests`` (raw bodies), ``requests`` (method, path),
``responses`` (api, operation, status, JSON body: for the contract tests), ``unrouted`` (requests
for what the fake does not serve: the SDK's socket.io event stream, without which it polls),
``session_commands``,
``git_logins`` (user names and password hashes given to git).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import json
import os
import shutil
import signal
import tempfile
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from pathlib import Path
from typing import Any, Literal

from aiohttp import WSMsgType, web

STDOUT_PREFIX = b"\x01\x01\x01"
STDERR_PREFIX = b"\x02\x02\x02"
KILL_GRACE = 2.0
SERVER_WAIT = 30.0  # the API's wait for a sandbox to start before it answers
CHUNK = 1024  # the daemon reads the log file this much at a time
CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    408: "REQUEST_TIMEOUT",
    409: "CONFLICT",
    500: "INTERNAL_SERVER_ERROR",
}
VERSIONS = {"hosted": "0.226.1", "oss": "0.190.0"}
TOOLS = (  # what a sandbox without bash has on its PATH
    "sh", "cat", "echo", "printf", "rm", "mv", "mkdir", "ls", "test", "env", "sleep", "git",
    "python3", "pwd", "touch", "kill", "true", "false", "head", "tail", "grep", "sed", "id",
)  # fmt: skip

Where = Literal["api", "proxy", "daemon"]


@dataclass(frozen=True)
class Realism:
    server: Literal["hosted", "oss"] = "hosted"
    creating: float = 0.0
    building: float = 0.0
    starting: float = 0.0
    stopping: float = 0.0
    archiving: float = 0.0
    restoring: float = 0.0
    create_waits: bool = True
    list_lag: float = 0.0
    page_size: int = 100
    toolbox_gone: int = 401
    failed_auth_limit: int = 0
    failed_auth_block: float = 60.0
    close_after_exit: float = 1.0
    answer_pings: bool = True
    without_bash: bool = False
    sources: bool | None = None  # error envelopes with ``source``; None: as the server does


class Refused(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        where: Where,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.where = status, message, where
        self.code = code or CODES.get(status)
        self.headers = headers or {}


def start_answer(state: str, desired: str | None) -> tuple[int, str]:
    """What the API answers a start of a sandbox in ``state`` on its way to ``desired`` (v0.190's
    rules): 200 (it starts), 204 (already started: the sandbox as it is), 400 or 409."""
    if state == "started" and desired == "started":
        return 204, "started"
    if state in ("error", "build_failed"):
        return 400, "Sandbox is in an errored state"
    if state != desired and not (desired == "archived" and state in ("stopped", "archiving")):
        return 409, "Sandbox state change in progress"
    if state not in ("stopped", "archived", "archiving", "paused"):
        return 400, "Sandbox is not in valid state"
    return 200, "starting"


def sdk_server() -> Literal["hosted", "oss"]:
    """The server line the installed daytona SDK is for: ``oss`` with the 0.190 line (the
    ``daytona-oss`` extra), else ``hosted``."""
    version = importlib.metadata.version("daytona")
    return "oss" if version.startswith("0.190.") else "hosted"


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


# --- commands: output framed as the daemon frames it ---------------------------------------------


@dataclass
class LineFramer:
    """One stream of a command, as the daemon's labeller writes it to the log: line by line,
    each line prefixed, NUL bytes dropped; a partial line waits for its newline (or the end)."""

    prefix: bytes
    partial: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> bytes:
        self.partial += data
        *lines, rest = bytes(self.partial).split(b"\n")
        self.partial = bytearray(rest)
        return b"".join(self.prefix + line.replace(b"\0", b"") + b"\n" for line in lines)

    def end(self) -> bytes:
        rest = bytes(self.partial).replace(b"\0", b"")
        self.partial.clear()
        return self.prefix + rest + b"\n" if rest else b""


@dataclass
class Command:
    id: str
    command: str
    process: asyncio.subprocess.Process | None = None
    log: bytearray = field(default_factory=bytearray)  # the framed log file
    exit_code: int | None = None
    ended_at: float | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def write(self, framed: bytes) -> None:
        if framed:
            self.log += framed
            self.notify()

    def notify(self) -> None:
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()

    def demuxed(self) -> tuple[bytes, bytes]:
        """The log split back into stdout and stderr (the daemon's demultiplexing)."""
        return demux(bytes(self.log))

    def dto(self) -> dict[str, Any]:
        dto: dict[str, Any] = {"id": self.id, "command": self.command}
        if self.exit_code is not None:
            dto["exitCode"] = self.exit_code
        return dto


@dataclass
class Session:
    id: str
    commands: dict[str, Command] = field(default_factory=dict)
    deleted: bool = False
    ended: asyncio.Event = field(default_factory=asyncio.Event)


# --- sandboxes: state with history (the list shows the past) -------------------------------------


@dataclass
class FakeSandbox:
    id: str
    name: str
    root: Path
    labels: dict[str, str]
    env: dict[str, str]
    snapshot: str | None
    target: str
    cpu: int
    memory: int
    disk: int
    auto_stop_interval: int
    path: str
    build: bool = False
    created_at: str = field(default_factory=now_iso)
    history: list[tuple[float, str, str | None]] = field(default_factory=list)
    recoverable: bool = False
    error_reason: str | None = None
    sessions: dict[str, Session] = field(default_factory=dict)

    def plan(self, desired: str | None, *steps: tuple[str, float]) -> None:
        """From now on: each (state, seconds) in turn (the last one stays), towards ``desired``;
        whatever was planned later than now is replaced."""
        at = time.monotonic()
        self.history = [entry for entry in self.history if entry[0] <= at]
        for state, seconds in steps:
            self.history.append((at, state, desired))
            at += seconds

    def view(self, at: float | None = None) -> tuple[str, str | None] | None:
        """(state, desired state) at monotonic time ``at`` (now); None before it existed."""
        at = time.monotonic() if at is None else at
        found = None
        for since, state, desired in self.history:
            if since <= at:
                found = (state, desired)
        return found

    @property
    def state(self) -> str:
        view = self.view()
        return view[0] if view else "creating"

    @property
    def desired(self) -> str | None:
        view = self.view()
        return view[1] if view else None

    def process_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {"PATH": self.path, "HOME": str(self.root), "LANG": "C.UTF-8"}
        env.update(self.env)
        env.update(extra or {})
        return env


@dataclass
class StreamRule:
    after: int  # bytes sent on a stream before it acts
    times: int
    how: str  # "abort" (the connection drops), "1011" (closed with an error), "stall"


# --- the fake ------------------------------------------------------------------------------------


class FakeDaytona:
    def __init__(
        self,
        api_key: str = "dtn-test-key",
        root: Path | None = None,
        realism: Realism | None = None,
        **switches: Any,
    ) -> None:
        self.api_key = api_key
        switches.setdefault("server", sdk_server())
        self.realism = replace(realism or Realism(), **switches)
        self.root = Path(root or tempfile.mkdtemp(prefix="fake-daytona-"))
        self.sandboxes: dict[str, FakeSandbox] = {}
        self.create_requests: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str]] = []
        self.responses: list[tuple[str, str, int, Any]] = []  # (api, operation, status, body)
        self.unrouted: list[tuple[str, str]] = []  # requests for what the fake does not serve
        self.session_commands: list[str] = []
        self.git_logins: list[tuple[str, str]] = []  # (username, sha256 of the password)
        self.git_tokens: dict[str, tuple[str, bool]] = {}  # url prefix -> (token, forbidden)
        self.stream_rules: list[StreamRule] = []
        self.streams_opened = 0
        self._failures: list[dict[str, Any]] = []
        self._hangs: list[dict[str, Any]] = []
        self.create_answers_to_drop = 0
        self._failed_auth: list[float] = []  # times of requests with a bad key
        self._blocked_until = 0.0
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task] = set()
        self.url = ""
        self._tools = self.root / "tools"

    # --- the test's controls ------------------------------------------------------------------

    def fail(
        self,
        status: int,
        *,
        path: str = "",
        method: str | None = None,
        times: int = 1,
        message: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """The next ``times`` requests whose path contains ``path`` answer ``status``."""
        self._failures.append(
            {
                "status": status,
                "path": path,
                "method": method,
                "left": times,
                "message": message,
                "headers": headers or {},
            }
        )

    def hang(self, path: str, seconds: float, *, method: str | None = None, times: int = 1) -> None:
        """The next ``times`` requests whose path contains ``path`` are answered only after
        ``seconds`` (a client that gives up sooner sees no answer)."""
        self._hangs.append({"path": path, "seconds": seconds, "method": method, "left": times})

    def drop_create_answers(self, times: int = 1) -> None:
        """The next ``times`` creations make their sandbox, then the connection drops before the
        answer (as a timeout or a proxy failure would lose it)."""
        self.create_answers_to_drop += times

    def drop_streams(self, after: int = 0, times: int = 1, how: str = "abort") -> None:
        """The next ``times`` log streams are cut once they have sent ``after`` bytes: the
        connection drops (``abort``) or is closed with 1011 (``1011``)."""
        self.stream_rules.append(StreamRule(after, times, how))

    def stall_streams(self, after: int = 0, times: int = 1) -> None:
        """The next ``times`` log streams go silent once they have sent ``after`` bytes: no more
        data, no close (pings are still answered)."""
        self.stream_rules.append(StreamRule(after, times, "stall"))

    def lose(self, sandbox_id: str) -> None:
        """The sandbox vanishes behind everyone's back (as if deleted in the dashboard)."""
        sandbox = self.sandboxes[sandbox_id]
        self._stop_processes(sandbox)
        sandbox.plan("destroyed", ("destroyed", 0))

    def halt(self, sandbox_id: str) -> None:
        """Daytona stops the sandbox by itself (its auto-stop interval passed)."""
        sandbox = self.sandboxes[sandbox_id]
        self._stop_processes(sandbox)
        sandbox.plan("stopped", ("stopping", self.realism.stopping), ("stopped", 0))

    def archive(self, sandbox_id: str, *, settle: bool = False) -> None:
        """Daytona archives the (stopped) sandbox (its auto-archive interval passed);
        ``settle``: at once, not through ``archiving``."""
        sandbox = self.sandboxes[sandbox_id]
        if sandbox.state not in ("stopped", "archived"):
            self.halt(sandbox_id)
        seconds = 0.0 if settle else self.realism.archiving
        sandbox.plan("archived", ("archiving", seconds), ("archived", 0))

    def pause(self, sandbox_id: str, seconds: float = 0.0) -> None:
        """The sandbox is paused (through ``pausing``)."""
        sandbox = self.sandboxes[sandbox_id]
        sandbox.plan("paused", ("pausing", seconds), ("paused", 0))

    def break_sandbox(
        self, sandbox_id: str, *, recoverable: bool, reason: str = "disk full"
    ) -> None:
        """The sandbox falls into ``error`` (a runner lost it, its disk filled up...)."""
        sandbox = self.sandboxes[sandbox_id]
        self._stop_processes(sandbox)
        sandbox.recoverable, sandbox.error_reason = recoverable, reason
        sandbox.plan("started", ("error", 0))

    def require_git_token(self, url_prefix: str, token: str, *, forbidden: bool = False) -> None:
        """Repositories under ``url_prefix`` want ``token`` as the password (else git answers
        401); ``forbidden``: even with it, 403."""
        self.git_tokens[url_prefix] = (token, forbidden)

    def by_labels(self, **labels: str) -> list[FakeSandbox]:
        return [
            s
            for s in self.sandboxes.values()
            if s.state != "destroyed" and all(s.labels.get(k) == v for k, v in labels.items())
        ]

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    # --- serving ------------------------------------------------------------------------------

    async def start(self) -> FakeDaytona:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        sid = "/api/sandbox/{sid}"
        api = [
            web.get("/api/config", self.config, name="getConfig"),
            web.post("/api/sandbox", self.create_sandbox, name="createSandbox"),
            web.get("/api/sandbox", self.list_sandboxes, name="listSandboxes"),
            web.get(sid, self.get_sandbox, name="getSandbox"),
            web.post(f"{sid}/start", self.start_sandbox, name="startSandbox"),
            web.post(f"{sid}/stop", self.stop_sandbox, name="stopSandbox"),
            web.post(f"{sid}/recover", self.recover_sandbox, name="recoverSandbox"),
            web.delete(sid, self.delete_sandbox, name="deleteSandbox"),
            web.get(f"{sid}/toolbox-proxy-url", self.toolbox_url, name="getToolboxProxyUrl"),
        ]
        box = "/toolbox/{sid}"
        session = f"{box}/process/session/{{session}}"
        toolbox = [
            web.get(f"{box}/work-dir", self.work_dir, name="GetWorkDir"),
            web.get(f"{box}/user-home-dir", self.work_dir, name="GetUserHomeDir"),
            web.post(f"{box}/files/folder", self.create_folder, name="CreateFolder"),
            web.post(f"{box}/files/bulk-upload", self.upload, name="UploadFiles"),
            web.post(f"{box}/process/execute", self.execute, name="ExecuteCommand"),
            web.post(f"{box}/process/session", self.create_session, name="CreateSession"),
            web.get(session, self.get_session, name="GetSession"),
            web.delete(session, self.delete_session, name="DeleteSession"),
            web.post(f"{session}/exec", self.session_exec, name="SessionExecuteCommand"),
            web.get(f"{session}/command/{{command}}", self.get_command, name="GetSessionCommand"),
            web.get(f"{session}/command/{{command}}/logs", self.logs, name="GetSessionCommandLogs"),
            web.post(f"{box}/git/clone", self.git_clone, name="CloneRepository"),
            web.get(f"{box}/git/status", self.git_status, name="GetStatus"),
        ]
        app.add_routes(api + toolbox)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        if self.realism.without_bash:
            self._tools.mkdir(parents=True, exist_ok=True)
            for tool in TOOLS:
                found = shutil.which(tool)
                if found and not (self._tools / tool).exists():
                    (self._tools / tool).symlink_to(found)
        return self

    async def stop(self) -> None:
        for sandbox in list(self.sandboxes.values()):
            self._stop_processes(sandbox)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        shutil.rmtree(self.root, ignore_errors=True)

    def _spawn(self, coroutine: Any) -> asyncio.Task:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _envelope(self, refused: Refused, request: web.Request) -> dict[str, Any]:
        """The error body the real server sends: the API's exception filter, or the proxy's and
        daemon's error middleware; ``source`` only from the hosted service."""
        if refused.where == "api":
            body: dict[str, Any] = {
                "path": request.path_qs,
                "timestamp": now_iso(),
                "statusCode": refused.status,
                "error": HTTPStatus(refused.status).phrase,
                "message": refused.message,
            }
        else:
            body = {
                "statusCode": refused.status,
                "message": refused.message,
                "code": refused.code,
                "timestamp": now_iso(),
                "path": request.path,
                "method": request.method,
            }
        sources = self.realism.sources
        if sources or (sources is None and self.realism.server == "hosted"):
            body["source"] = {"api": "DAYTONA_API", "proxy": "DAYTONA_PROXY"}.get(
                refused.where, "DAYTONA_DAEMON"
            )
            if refused.code:
                body["code"] = refused.code
        return body

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        toolbox = request.path.startswith("/toolbox/")
        api = "toolbox" if toolbox else "rest"
        operation = request.match_info.route.name
        if operation is None:  # not an endpoint of the fake (the SDK's socket.io events)
            self.unrouted.append((request.method, request.path))
            return await handler(request)
        for hang in self._hangs:
            if hang["left"] > 0 and hang["path"] in request.path:
                if hang["method"] in (None, request.method):
                    hang["left"] -= 1
                    await asyncio.sleep(hang["seconds"])
        try:
            if request.path != "/api/config":
                self._authenticate(request, toolbox)
            for rule in self._failures:
                if rule["left"] > 0 and rule["path"] in request.path:
                    if rule["method"] in (None, request.method):
                        rule["left"] -= 1
                        raise Refused(
                            rule["status"],
                            rule["message"] or "injected",
                            "proxy" if toolbox else "api",
                            headers=rule["headers"],
                        )
            if toolbox:
                self._toolbox_sandbox(request)
            response = await handler(request)
        except Refused as refused:
            body = self._envelope(refused, request)
            self.responses.append((api, operation, refused.status, body))
            return web.json_response(body, status=refused.status, headers=refused.headers)
        if isinstance(response, web.Response) and response.content_type == "application/json":
            self.responses.append((api, operation, response.status, json.loads(response.body)))  # type: ignore[arg-type]
        elif isinstance(response, web.Response):
            self.responses.append((api, operation, response.status, None))
        return response

    def _authenticate(self, request: web.Request, toolbox: bool) -> None:
        if request.headers.get("Authorization") == f"Bearer {self.api_key}":
            return
        if toolbox:  # the proxy: the bearer token does not open this sandbox
            raise Refused(401, "authentication failed: Bearer token is invalid", "proxy")
        limit = self.realism.failed_auth_limit
        if limit:
            now = time.monotonic()
            block = self.realism.failed_auth_block
            if now < self._blocked_until:
                self._throttled(math_ceil(self._blocked_until - now), limit)
            self._failed_auth = [t for t in self._failed_auth if now - t < block] + [now]
            if len(self._failed_auth) >= limit:
                self._blocked_until = now + block
                self._throttled(math_ceil(block), limit)
        raise Refused(401, "Invalid credentials", "api")

    @staticmethod
    def _throttled(retry_after: int, limit: int) -> None:
        raise Refused(
            429,
            "ThrottlerException: Too Many Requests",
            "api",
            headers={
                "X-RateLimit-Limit-failed-auth": str(limit),
                "X-RateLimit-Remaining-failed-auth": "0",
                "X-RateLimit-Reset-failed-auth": str(retry_after),
                "Retry-After": str(retry_after),
            },
        )

    # --- the API ------------------------------------------------------------------------------

    async def config(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "version": VERSIONS[self.realism.server],
                "oidc": {
                    "issuer": f"{self.url}/dex",
                    "clientId": "daytona",
                    "audience": "daytona",
                    "provider": "dex",
                },
                "linkedAccountsEnabled": False,
                "announcements": {},
                "proxyTemplateUrl": f"{self.url}/proxy/{{{{PORT}}}}-{{{{sandboxId}}}}",
                "proxyToolboxUrl": f"{self.url}/toolbox",
                "defaultSnapshot": "daytona-small",
                "dashboardUrl": f"{self.url}/dashboard",
                "maxAutoArchiveInterval": 43200,
                "maintananceMode": False,
                "environment": "fake",
            }
        )

    def _sandbox(self, request: web.Request) -> FakeSandbox:
        sid = request.match_info["sid"]
        sandbox = self.sandboxes.get(sid) or next(
            (s for s in self.sandboxes.values() if s.name == sid and s.state != "destroyed"),
            None,
        )
        if sandbox is None or sandbox.state == "destroyed":
            raise Refused(404, f"Sandbox with ID or name {sid} not found", "api")
        if sandbox.state in ("error", "build_failed") and sandbox.desired == "destroyed":
            raise Refused(404, f"Sandbox with ID or name {sid} not found", "api")
        return sandbox

    def _dto(
        self, sandbox: FakeSandbox, *, at: float | None = None, item: bool = False
    ) -> dict[str, Any]:
        view = sandbox.view(at) or ("creating", "started")
        dto: dict[str, Any] = {
            "id": sandbox.id,
            "organizationId": "org-fake",
            "name": sandbox.name,
            "snapshot": sandbox.snapshot,
            "user": "daytona",
            "labels": dict(sandbox.labels),
            "public": False,
            "target": sandbox.target,
            "cpu": sandbox.cpu,
            "gpu": 0,
            "memory": sandbox.memory,
            "disk": sandbox.disk,
            "state": view[0],
            "recoverable": sandbox.recoverable,
            "autoStopInterval": sandbox.auto_stop_interval,
            "autoArchiveInterval": 10080,
            "autoDeleteInterval": -1,
            "createdAt": sandbox.created_at,
            "updatedAt": now_iso(),
            "daemonVersion": VERSIONS[self.realism.server],
            "toolboxProxyUrl": f"{self.url}/toolbox",
        }
        if view[1] is not None:
            dto["desiredState"] = view[1]
        if sandbox.error_reason and view[0] == "error":
            dto["errorReason"] = sandbox.error_reason
        if not item:
            dto["env"] = dict(sandbox.env)
        hosted = self.realism.server == "hosted"
        if hosted or not item:
            dto["networkBlockAll"] = False
        if hosted and not item:
            dto["kvm"] = False
        return dto

    async def create_sandbox(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.create_requests.append(body)
        name = body.get("name")
        if name and any(s.name == name and s.state != "destroyed" for s in self.sandboxes.values()):
            raise Refused(409, f"Sandbox with name {name} already exists", "api")
        sid = uuid.uuid4().hex[:16]
        root = self.root / sid
        (root / "bin").mkdir(parents=True)
        tools = str(self._tools) if self.realism.without_bash else "/usr/local/bin:/usr/bin:/bin"
        build = bool(body.get("buildInfo"))
        sandbox = FakeSandbox(
            id=sid,
            name=name or sid,
            root=root,
            labels=dict(body.get("labels") or {}),
            env=dict(body.get("env") or {}),
            snapshot=body.get("snapshot") or ("built-image" if build else None),
            target=body.get("target") or "us",
            cpu=body.get("cpu") or 1,
            memory=body.get("memory") or 1,
            disk=body.get("disk") or 3,
            auto_stop_interval=body.get("autoStopInterval", 15),
            path=f"{root}/bin:{tools}",
            build=build,
        )
        real = self.realism
        if build:
            sandbox.plan(
                "started",
                ("pending_build", real.building),
                ("creating", real.creating),
                ("starting", real.starting),
                ("started", 0),
            )
        else:
            sandbox.plan(
                "started", ("creating", real.creating), ("starting", real.starting), ("started", 0)
            )
        self.sandboxes[sid] = sandbox
        if not build and real.create_waits:
            await self._until_started(sandbox)
        if self.create_answers_to_drop > 0:
            self.create_answers_to_drop -= 1
            if request.transport is not None:
                request.transport.abort()
        return web.json_response(self._dto(sandbox))

    async def _until_started(self, sandbox: FakeSandbox) -> None:
        """The API's wait (at most 30 s) for a sandbox to start before it answers."""
        deadline = time.monotonic() + SERVER_WAIT
        while sandbox.state not in ("started", "error", "build_failed", "destroyed"):
            if time.monotonic() > deadline:
                return
            await asyncio.sleep(0.02)

    async def list_sandboxes(self, request: web.Request) -> web.Response:
        wanted = json.loads(request.query.get("labels") or "{}")
        limit = min(int(request.query.get("limit") or 100), self.realism.page_size)
        offset = int(request.query.get("cursor") or 0)
        at = time.monotonic() - self.realism.list_lag
        found = []
        for sandbox in self.sandboxes.values():
            view = sandbox.view(at)
            if view is None or view[0] == "destroyed":
                continue
            if view[0] in ("error", "build_failed") and view[1] == "destroyed":
                continue
            if all(sandbox.labels.get(k) == v for k, v in wanted.items()):
                found.append(sandbox)
        page = found[offset : offset + limit]
        more = offset + limit < len(found)
        return web.json_response(
            {
                "items": [self._dto(s, at=at, item=True) for s in page],
                "nextCursor": str(offset + limit) if more else None,
            }
        )

    async def get_sandbox(self, request: web.Request) -> web.Response:
        return web.json_response(self._dto(self._sandbox(request)))

    async def start_sandbox(self, request: web.Request) -> web.Response:
        sandbox = self._sandbox(request)
        state, desired = sandbox.state, sandbox.desired
        answer, message = start_answer(state, desired)
        if answer == 204:
            return web.json_response(self._dto(sandbox))
        if answer != 200:
            raise Refused(answer, message, "api")
        real = self.realism
        if state in ("archived", "archiving"):
            sandbox.plan("started", ("restoring", real.restoring), ("started", 0))
        elif state == "paused":
            sandbox.plan("started", ("resuming", real.starting), ("started", 0))
        else:
            sandbox.plan("started", ("starting", real.starting), ("started", 0))
        if real.create_waits and state not in ("archived", "archiving"):
            await self._until_started(sandbox)
        return web.json_response(self._dto(sandbox))

    async def stop_sandbox(self, request: web.Request) -> web.Response:
        sandbox = self._sandbox(request)
        state, desired = sandbox.state, sandbox.desired
        if state in ("error", "build_failed"):
            raise Refused(400, "Sandbox is in an errored state", "api")
        if state != desired:
            raise Refused(409, "Sandbox state change in progress", "api")
        if state not in ("started", "paused"):
            raise Refused(400, "Sandbox is not in a stoppable state", "api")
        self._stop_processes(sandbox)
        sandbox.plan("stopped", ("stopping", self.realism.stopping), ("stopped", 0))
        return web.json_response(self._dto(sandbox))

    async def recover_sandbox(self, request: web.Request) -> web.Response:
        sandbox = self._sandbox(request)
        if not sandbox.recoverable:
            raise Refused(400, "Sandbox is not in a recoverable state", "api")
        if sandbox.state != "error":
            raise Refused(400, "Sandbox must be in error state to recover", "api")
        sandbox.recoverable, sandbox.error_reason = False, None
        sandbox.plan("started", ("starting", self.realism.starting), ("started", 0))
        if self.realism.create_waits:
            await self._until_started(sandbox)
        return web.json_response(self._dto(sandbox))

    async def delete_sandbox(self, request: web.Request) -> web.Response:
        sandbox = self._sandbox(request)
        if sandbox.state != sandbox.desired and sandbox.state not in (
            "pending_build",
            "error",
            "build_failed",
        ):
            raise Refused(409, "Sandbox state change in progress", "api")
        self._stop_processes(sandbox)
        sandbox.plan("destroyed", ("destroyed", 0))
        dto = self._dto(sandbox)
        return web.json_response(dto)

    async def toolbox_url(self, request: web.Request) -> web.Response:
        self._sandbox(request)
        return web.json_response({"url": f"{self.url}/toolbox"})

    # --- the toolbox (through the proxy) ------------------------------------------------------

    def _toolbox_sandbox(self, request: web.Request) -> FakeSandbox:
        sid = request.path.split("/")[2]
        sandbox = self.sandboxes.get(sid)
        if sandbox is None or sandbox.state == "destroyed":
            if self.realism.toolbox_gone == 400:
                raise Refused(
                    400,
                    f"failed to get sandbox public status: Sandbox with ID {sid} not found",
                    "proxy",
                )
            raise Refused(
                401,
                "authentication failed: Bearer token validation error: sandbox not found",
                "proxy",
            )
        if sandbox.state != "started":
            raise Refused(400, "bad request: no IP address found. Is the Sandbox started?", "proxy")
        return sandbox

    @staticmethod
    def _daemon(status: int, message: str, code: str | None = None) -> Refused:
        return Refused(status, message, "daemon", code)

    def _path(self, sandbox: FakeSandbox, path: str) -> Path:
        return Path(path) if os.path.isabs(path) else sandbox.root / path

    def _session(self, sandbox: FakeSandbox, request: web.Request) -> Session:
        session = sandbox.sessions.get(request.match_info["session"])
        if session is None or session.deleted:
            raise self._daemon(404, "not found: session not found")
        return session

    def _command(self, session: Session, request: web.Request) -> Command:
        command = session.commands.get(request.match_info["command"])
        if command is None:
            raise self._daemon(404, "not found: command not found")
        return command

    async def work_dir(self, request: web.Request) -> web.Response:
        return web.json_response({"dir": str(self._toolbox_sandbox(request).root)})

    async def create_folder(self, request: web.Request) -> web.Response:
        sandbox = self._toolbox_sandbox(request)
        folder = self._path(sandbox, request.query["path"])
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(int(request.query.get("mode") or "755", 8))
        return web.Response(status=201)

    async def upload(self, request: web.Request) -> web.Response:
        sandbox = self._toolbox_sandbox(request)
        reader = await request.multipart()
        paths: dict[str, str] = {}  # "files[i]" -> its destination (the ".path" field)
        while (part := await reader.next()) is not None:
            name = part.name or ""
            data = bytes(await part.read())
            index, _, kind = name.rpartition(".")
            if kind == "path":
                paths[index] = data.decode()
            elif kind == "file":
                filename = urllib.parse.unquote(part.filename or "")
                target = self._path(sandbox, paths.get(index) or filename)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                target.chmod(0o644)  # as the daemon leaves uploads
        return web.Response(status=200)

    async def execute(self, request: web.Request) -> web.Response:
        """One-shot execution: the sandbox's shell runs the command; output is stdout and
        stderr together; past its timeout the group is killed and the daemon answers 408."""
        sandbox = self._toolbox_sandbox(request)
        body = await request.json()
        if not str(body.get("command") or "").strip():
            raise self._daemon(400, "command cannot be empty or whitespace-only")
        cwd = self._path(sandbox, body.get("cwd") or str(sandbox.root))
        process = await asyncio.create_subprocess_exec(
            "sh",
            "-c",
            body["command"],
            cwd=cwd,
            env=sandbox.process_env(body.get("envs")),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        timeout = body.get("timeout")
        try:
            output, _ = await asyncio.wait_for(
                process.communicate(), timeout if timeout and timeout > 0 else None
            )
        except TimeoutError:
            _signal(process.pid, signal.SIGKILL)
            await process.wait()
            raise self._daemon(408, "command execution timeout") from None
        return web.json_response(
            {"exitCode": process.returncode, "result": output.decode("utf-8", "replace")}
        )

    async def create_session(self, request: web.Request) -> web.Response:
        sandbox = self._toolbox_sandbox(request)
        session_id = (await request.json())["sessionId"]
        if session_id in sandbox.sessions and not sandbox.sessions[session_id].deleted:
            raise self._daemon(409, "session already exists")
        sandbox.sessions[session_id] = Session(session_id)
        return web.Response(status=201)

    async def get_session(self, request: web.Request) -> web.Response:
        session = self._session(self._toolbox_sandbox(request), request)
        commands = [c.dto() for c in session.commands.values()]
        return web.json_response({"sessionId": session.id, "commands": commands})

    async def delete_session(self, request: web.Request) -> web.Response:
        session = self._session(self._toolbox_sandbox(request), request)
        await self._end_session(session)
        return web.Response(status=204)

    async def session_exec(self, request: web.Request) -> web.Response:
        sandbox = self._toolbox_sandbox(request)
        session = self._session(sandbox, request)
        body = await request.json()
        self.session_commands.append(body["command"])
        command = Command(str(uuid.uuid4()), body["command"])
        session.commands[command.id] = command
        command.process = await asyncio.create_subprocess_exec(
            "sh",
            "-c",
            body["command"],
            cwd=sandbox.root,
            env=sandbox.process_env(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        pump = self._spawn(self._pump(command))
        if body.get("runAsync") or body.get("async"):
            return web.json_response({"cmdId": command.id}, status=202)
        await pump
        out, err = command.demuxed()
        return web.json_response(
            {
                "cmdId": command.id,
                "exitCode": command.exit_code,
                "output": bytes(command.log).decode("utf-8", "replace"),
                "stdout": out.decode("utf-8", "replace"),
                "stderr": err.decode("utf-8", "replace"),
            }
        )

    async def _pump(self, command: Command) -> None:
        """The daemon's labellers: each stream framed line by line into the log; the exit code
        written once both are flushed."""
        process = command.process
        assert process is not None and process.stdout is not None and process.stderr is not None

        async def label(stream: asyncio.StreamReader, prefix: bytes) -> None:
            framer = LineFramer(prefix)
            while chunk := await stream.read(65536):
                command.write(framer.feed(chunk))
            command.write(framer.end())

        await asyncio.gather(
            label(process.stdout, STDOUT_PREFIX), label(process.stderr, STDERR_PREFIX)
        )
        code = await process.wait()
        command.exit_code = 128 - code if code < 0 else code  # killed: what a shell reports
        command.ended_at = time.monotonic()
        command.notify()

    async def get_command(self, request: web.Request) -> web.Response:
        session = self._session(self._toolbox_sandbox(request), request)
        return web.json_response(self._command(session, request).dto())

    async def logs(self, request: web.Request) -> web.StreamResponse:
        session = self._session(self._toolbox_sandbox(request), request)
        command = self._command(session, request)
        if request.headers.get("Upgrade", "").lower() != "websocket":
            out, err = command.demuxed()
            return web.json_response(
                {
                    "output": bytes(command.log).decode("utf-8", "replace"),
                    "stdout": out.decode("utf-8", "replace"),
                    "stderr": err.decode("utf-8", "replace"),
                }
            )
        return await self._stream(request, session, command)

    async def _stream(
        self, request: web.Request, session: Session, command: Command
    ) -> web.WebSocketResponse:
        """The daemon's log follow: the log file from its start, in reads of at most 1 KiB, as it
        grows; closed (1000) about ``close_after_exit`` after the command's exit (or at once when
        the session is deleted). Pings answered while it runs (unless told otherwise)."""
        follow = request.query.get("follow") == "true"
        answer = self.realism.answer_pings
        ws = web.WebSocketResponse(autoping=answer)
        await ws.prepare(request)
        self.streams_opened += 1
        rule = next((r for r in self.stream_rules if r.times > 0), None)
        if rule is not None:
            rule.times -= 1
        reader = self._spawn(self._read_frames(ws))
        sent = 0
        try:
            while not ws.closed:
                if rule is not None and sent >= rule.after:
                    await self._break_stream(request, ws, rule, reader)
                    return ws
                changed = command.changed
                if sent < len(command.log):
                    limit = len(command.log) if rule is None else max(rule.after, sent + 1)
                    data = bytes(command.log[sent : min(sent + CHUNK, limit)])
                    sent += len(data)
                    await ws.send_bytes(data)
                    continue
                if session.deleted or not follow:
                    break
                left = None
                if command.ended_at is not None:
                    left = command.ended_at + self.realism.close_after_exit - time.monotonic()
                    if left <= 0:
                        break
                await _either(changed, session.ended, timeout=left)
            await ws.close(code=1000)
        except ConnectionResetError:
            pass
        finally:
            reader.cancel()
        return ws

    async def _break_stream(
        self,
        request: web.Request,
        ws: web.WebSocketResponse,
        rule: StreamRule,
        reader: asyncio.Task,
    ) -> None:
        if rule.how == "stall":  # silent, never closing, until the client gives up
            await asyncio.gather(reader, return_exceptions=True)
            return
        if rule.how == "1011":
            await ws.close(code=1011, message=b"log read error")
            return
        transport = request.transport
        if transport is not None:
            transport.abort()

    async def _read_frames(self, ws: web.WebSocketResponse) -> None:
        """Read what the client sends (aiohttp answers pings only while reading); with
        ``answer_pings`` off, pings are read and ignored."""
        try:
            async for message in ws:
                if message.type == WSMsgType.CLOSE:
                    break
        except Exception:
            return

    async def _end_session(self, session: Session) -> None:
        """What the daemon does: SIGTERM the process trees, SIGKILL what is left; the session's
        logs go with it."""
        session.deleted = True
        session.ended.set()
        running = [
            c.process
            for c in session.commands.values()
            if c.process and c.process.returncode is None
        ]
        for process in running:
            _signal(process.pid, signal.SIGTERM)
        if running:
            waits = [asyncio.create_task(p.wait()) for p in running]
            await asyncio.wait(waits, timeout=KILL_GRACE)
            for process in running:
                _signal(process.pid, signal.SIGKILL)
            await asyncio.gather(*waits, return_exceptions=True)
        for command in session.commands.values():
            if command.process is not None:
                _signal(command.process.pid, signal.SIGKILL)
            command.notify()

    def _stop_processes(self, sandbox: FakeSandbox) -> None:
        for session in sandbox.sessions.values():
            session.deleted = True
            session.ended.set()
            for command in session.commands.values():
                if command.process is not None:
                    _signal(command.process.pid, signal.SIGKILL)
                command.notify()

    # --- git: what the daemon does, and how it answers failures -------------------------------

    def _git_env(self, sandbox: FakeSandbox) -> dict[str, str]:
        return sandbox.process_env(
            {
                "GIT_TERMINAL_PROMPT": "0",
                "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_CONFIG_GLOBAL": "/dev/null",
            }
        )

    @staticmethod
    def _git_failure(output: str) -> Refused:
        """Git's failure as the daemon maps it (401/403/404/409, else 500), with go-git's words."""
        text = output.lower()
        if any(
            marker in text
            for marker in ("authentication failed", "could not read username", "terminal prompts")
        ):
            return Refused(401, "authentication required", "daemon")
        if "returned error: 403" in text or ("permission" in text and "denied" in text):
            return Refused(403, "authorization failed", "daemon")
        if "remote branch" in text and "not found" in text:
            return Refused(404, "reference not found", "daemon")
        if "repository not found" in text or "does not appear to be a git repository" in text:
            return Refused(404, "repository not found", "daemon")
        if "already exists and is not an empty directory" in text:
            return Refused(409, "repository already exists", "daemon")
        if "non-fast-forward" in text or "not possible to fast-forward" in text:
            return Refused(409, "non-fast-forward update", "daemon")
        return Refused(500, output.strip() or "git failed", "daemon")

    async def _git(self, sandbox: FakeSandbox, *argv: str) -> str:
        process = await asyncio.create_subprocess_exec(
            "git",
            *argv,
            cwd=sandbox.root,
            env=self._git_env(sandbox),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        text = output.decode("utf-8", "replace")
        if process.returncode != 0:
            raise self._git_failure(text)
        return text

    async def git_clone(self, request: web.Request) -> web.Response:
        """A single-branch clone (the daemon's go-git clone), credentials from the request."""
        sandbox = self._toolbox_sandbox(request)
        body = await request.json()
        url = body["url"]
        if body.get("password"):
            digest = hashlib.sha256(body["password"].encode()).hexdigest()
            self.git_logins.append((body.get("username") or "", digest))
        for prefix, (token, forbidden) in self.git_tokens.items():
            if url.startswith(prefix):
                if body.get("password") != token:
                    raise Refused(401, "authentication required", "daemon")
                if forbidden:
                    raise Refused(403, "authorization failed", "daemon")
        argv = ["clone", "--single-branch"]
        if body.get("branch"):
            argv += ["--branch", body["branch"]]
        path = str(self._path(sandbox, body["path"]))
        await self._git(sandbox, *argv, "--", url, path)
        return web.Response(status=200)

    async def git_status(self, request: web.Request) -> web.Response:
        """go-git's status: the current branch is HEAD's short name (``HEAD`` when detached);
        no ``detached`` (v0.190) field; ahead/behind against the upstream, 0/0 without one."""
        sandbox = self._toolbox_sandbox(request)
        path = str(self._path(sandbox, request.query.get("path") or ""))
        if not (Path(path) / ".git").exists():
            raise Refused(404, "repository does not exist", "daemon")
        head = (await self._git(sandbox, "-C", path, "rev-parse", "--abbrev-ref", "HEAD")).strip()
        text = await self._git(sandbox, "-C", path, "status", "--porcelain=v1")
        files = []
        for line in text.splitlines():
            if not line.strip():
                continue
            code, name = line[:2], line[3:]
            staging = "Untracked" if code == "??" else _status_name(code[0])
            worktree = "Untracked" if code == "??" else _status_name(code[1])
            files.append({"name": name, "extra": "", "staging": staging, "worktree": worktree})
        try:
            upstream = (
                await self._git(sandbox, "-C", path, "rev-parse", "--abbrev-ref", "@{upstream}")
            ).strip()
        except Refused:
            upstream = ""
        ahead = behind = 0
        if upstream:
            counts = await self._git(
                sandbox, "-C", path, "rev-list", "--left-right", "--count", f"{upstream}...HEAD"
            )
            behind, ahead = (int(n) for n in counts.split())
        status: dict[str, Any] = {
            "currentBranch": head,
            "fileStatus": files,
            "branchPublished": bool(upstream),
            "ahead": ahead,
            "behind": behind,
        }
        return web.json_response(status)


def demux(log: bytes) -> tuple[bytes, bytes]:
    """A framed log split back into stdout and stderr."""
    out, err = bytearray(), bytearray()
    kind = None
    position = 0
    while position < len(log):
        marker = log[position : position + 3]
        if marker in (STDOUT_PREFIX, STDERR_PREFIX):
            kind = marker
            position += 3
            continue
        following = [
            i
            for i in (log.find(STDOUT_PREFIX, position), log.find(STDERR_PREFIX, position))
            if i >= 0
        ]
        end = min(following) if following else len(log)
        (out if kind == STDOUT_PREFIX else err if kind == STDERR_PREFIX else out).extend(
            log[position:end]
        )
        position = end
    return bytes(out), bytes(err)


def _status_name(code: str) -> str:
    return {
        " ": "Unmodified",
        "M": "Modified",
        "A": "Added",
        "D": "Deleted",
        "R": "Renamed",
        "C": "Copied",
        "U": "Updated but unmerged",
    }.get(code, "Modified")


async def _either(*events: asyncio.Event, timeout: float | None = None) -> None:
    """Until one of ``events`` is set (or ``timeout`` passes)."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
        await asyncio.gather(*waits, return_exceptions=True)


def math_ceil(seconds: float) -> int:
    return max(1, int(-(-seconds // 1)))


def _signal(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
