"""A local stand-in for Daytona: the REST API and the sandbox toolbox, exactly the endpoints the
official ``daytona`` SDK (0.226) calls for Swarm's backend, with the JSON shapes of the SDK's own
models (``daytona_api_client_async.models`` / ``daytona_toolbox_api_client_async.models``).

- API (``<url>/api``): ``POST /sandbox`` (CreateSandbox -> Sandbox), ``GET /sandbox`` (labels
  filter -> ListSandboxesResponse), ``GET /sandbox/{id}``, ``POST /sandbox/{id}/start|stop``,
  ``DELETE /sandbox/{id}``, ``GET /sandbox/{id}/toolbox-proxy-url``. No socket.io: the SDK then
  polls (the fake changes state at once, so nothing waits).
- Toolbox (``<url>/toolbox/{sandbox}``): ``/work-dir``, ``/user-home-dir``, ``/files/folder``,
  ``/files/bulk-upload``, ``/process/execute``, ``/process/session`` (create, get, delete),
  ``/process/session/{s}/exec`` (async: 202 + cmdId), ``/process/session/{s}/command/{c}``,
  ``.../logs`` (``follow=true`` over a websocket: output framed with the daemon's stdout/stderr
  markers, closed with 1000 when the command has ended), ``/git/clone``, ``/git/pull``,
  ``/git/status``.

A sandbox is a temporary directory (its work and home directory); commands run as real local
processes (``bash``) in their own process groups, so output really streams and a deleted session
really kills its command (SIGTERM, then SIGKILL) -- as the daemon does. The sandbox's environment
is minimal: ``PATH=<dir>/bin:/usr/local/bin:/usr/bin:/bin``, ``HOME=<dir>``.

Errors use the SDK's envelope (``statusCode``, ``message``, ``source``: ``DAYTONA_API``,
``DAYTONA_PROXY`` or ``DAYTONA_DAEMON``, ``code``). Failures to inject, from the test:
``fail(status, path=..., times=...)`` (e.g. a 429 once), ``api_key = "other"`` (every request
401), ``lose(sandbox_id)`` (the sandbox vanishes: 404 everywhere), ``halt(sandbox_id)`` (Daytona
auto-stopped it). Records for assertions:
``create_requests`` (raw bodies), ``requests`` (method, path), ``session_commands``,
``git_logins`` (user names and password hashes given to git).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import shutil
import signal
import tempfile
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

STDOUT_PREFIX = b"\x01\x01\x01"
STDERR_PREFIX = b"\x02\x02\x02"
KILL_GRACE = 2.0


class Refused(Exception):
    def __init__(self, status: int, message: str, source: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.source, self.code = status, message, source, code


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


@dataclass
class Command:
    id: str
    command: str
    process: asyncio.subprocess.Process | None = None
    log: bytearray = field(default_factory=bytearray)
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    exit_code: int | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, prefix: bytes, data: bytes) -> None:
        self.log += prefix + data
        (self.stdout if prefix == STDOUT_PREFIX else self.stderr).extend(data)
        self.notify()

    def notify(self) -> None:
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()

    def dto(self) -> dict[str, Any]:
        return {"id": self.id, "command": self.command, "exitCode": self.exit_code}


@dataclass
class Session:
    id: str
    commands: dict[str, Command] = field(default_factory=dict)
    deleted: bool = False


@dataclass
class FakeSandbox:
    id: str
    root: Path
    labels: dict[str, str]
    env: dict[str, str]
    snapshot: str | None
    target: str
    cpu: int
    memory: int
    disk: int
    auto_stop_interval: int
    state: str = "started"
    created_at: str = field(default_factory=now_iso)
    sessions: dict[str, Session] = field(default_factory=dict)

    def process_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {
            "PATH": f"{self.root}/bin:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.root),
            "LANG": "C.UTF-8",
        }
        env.update(self.env)
        env.update(extra or {})
        return env


class FakeDaytona:
    def __init__(self, api_key: str = "dtn-test-key", root: Path | None = None) -> None:
        self.api_key = api_key
        self.root = Path(root or tempfile.mkdtemp(prefix="fake-daytona-"))
        self.sandboxes: dict[str, FakeSandbox] = {}
        self.create_requests: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str]] = []
        self.session_commands: list[str] = []
        self.git_logins: list[tuple[str, str]] = []  # (username, sha256 of the password)
        self._failures: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self._pumps: set[asyncio.Task] = set()
        self.url = ""

    # --- the test's controls ------------------------------------------------------------------

    def fail(
        self,
        status: int,
        *,
        path: str = "",
        method: str | None = None,
        times: int = 1,
        message: str | None = None,
    ) -> None:
        """The next ``times`` requests whose path contains ``path`` answer ``status``."""
        self._failures.append(
            {"status": status, "path": path, "method": method, "left": times, "message": message}
        )

    def lose(self, sandbox_id: str) -> None:
        """The sandbox vanishes behind everyone's back (as if deleted in the dashboard)."""
        sandbox = self.sandboxes.pop(sandbox_id)
        self._stop_processes(sandbox)

    def halt(self, sandbox_id: str) -> None:
        """Daytona stops the sandbox by itself (its auto-stop interval passed)."""
        sandbox = self.sandboxes[sandbox_id]
        self._stop_processes(sandbox)
        sandbox.state = "stopped"

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
        api = [
            web.post("/api/sandbox", self.create_sandbox),
            web.get("/api/sandbox", self.list_sandboxes),
            web.get("/api/sandbox/{sid}", self.get_sandbox),
            web.post("/api/sandbox/{sid}/start", self.start_sandbox),
            web.post("/api/sandbox/{sid}/stop", self.stop_sandbox),
            web.delete("/api/sandbox/{sid}", self.delete_sandbox),
            web.get("/api/sandbox/{sid}/toolbox-proxy-url", self.toolbox_url),
        ]
        box = "/toolbox/{sid}"
        toolbox = [
            web.get(f"{box}/work-dir", self.work_dir),
            web.get(f"{box}/user-home-dir", self.work_dir),
            web.post(f"{box}/files/folder", self.create_folder),
            web.post(f"{box}/files/bulk-upload", self.upload),
            web.post(f"{box}/process/execute", self.execute),
            web.post(f"{box}/process/session", self.create_session),
            web.get(f"{box}/process/session/{{session}}", self.get_session),
            web.delete(f"{box}/process/session/{{session}}", self.delete_session),
            web.post(f"{box}/process/session/{{session}}/exec", self.session_exec),
            web.get(f"{box}/process/session/{{session}}/command/{{command}}", self.get_command),
            web.get(f"{box}/process/session/{{session}}/command/{{command}}/logs", self.logs),
            web.post(f"{box}/git/clone", self.git_clone),
            web.post(f"{box}/git/pull", self.git_pull),
            web.get(f"{box}/git/status", self.git_status),
        ]
        app.add_routes(api + toolbox)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        for sandbox in list(self.sandboxes.values()):
            self._stop_processes(sandbox)
        for pump in list(self._pumps):
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        shutil.rmtree(self.root, ignore_errors=True)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        toolbox = request.path.startswith("/toolbox/")
        try:
            if request.headers.get("Authorization") != f"Bearer {self.api_key}":
                raise Refused(401, "Unauthorized: invalid API key", "DAYTONA_API")
            for rule in self._failures:
                if rule["left"] > 0 and rule["path"] in request.path:
                    if rule["method"] in (None, request.method):
                        rule["left"] -= 1
                        source = "DAYTONA_PROXY" if toolbox else "DAYTONA_API"
                        raise Refused(rule["status"], rule["message"] or "injected", source)
            if toolbox:
                self._toolbox_sandbox(request)
            return await handler(request)
        except Refused as refused:
            body = {
                "statusCode": refused.status,
                "message": refused.message,
                "error": refused.message,
                "source": refused.source,
                "path": request.path,
                "method": request.method,
                "timestamp": now_iso(),
            }
            if refused.code:
                body["code"] = refused.code
            return web.json_response(body, status=refused.status)

    # --- the API ------------------------------------------------------------------------------

    def _sandbox(self, request: web.Request) -> FakeSandbox:
        sid = request.match_info["sid"]
        sandbox = self.sandboxes.get(sid) or next(
            (s for s in self.sandboxes.values() if s.id == sid), None
        )
        if sandbox is None:
            raise Refused(404, f"Sandbox with ID or name {sid} not found", "DAYTONA_API")
        return sandbox

    def _dto(self, sandbox: FakeSandbox, *, full: bool = True) -> dict[str, Any]:
        desired = sandbox.state if sandbox.state in ("started", "stopped", "destroyed") else None
        dto: dict[str, Any] = {
            "id": sandbox.id,
            "organizationId": "org-fake",
            "name": sandbox.id,
            "snapshot": sandbox.snapshot,
            "user": "daytona",
            "labels": dict(sandbox.labels),
            "public": False,
            "networkBlockAll": False,
            "target": sandbox.target,
            "cpu": sandbox.cpu,
            "gpu": 0,
            "memory": sandbox.memory,
            "disk": sandbox.disk,
            "state": sandbox.state,
            "desiredState": desired,
            "recoverable": False,
            "autoStopInterval": sandbox.auto_stop_interval,
            "autoArchiveInterval": 10080,
            "autoDeleteInterval": -1,
            "createdAt": sandbox.created_at,
            "updatedAt": now_iso(),
            "daemonVersion": "fake",
            "toolboxProxyUrl": f"{self.url}/toolbox",
        }
        if full:
            dto.update(env=dict(sandbox.env), kvm=False)
        return dto

    async def create_sandbox(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.create_requests.append(body)
        sid = uuid.uuid4().hex[:16]
        root = self.root / sid
        (root / "bin").mkdir(parents=True)
        sandbox = FakeSandbox(
            id=sid,
            root=root,
            labels=dict(body.get("labels") or {}),
            env=dict(body.get("env") or {}),
            snapshot=body.get("snapshot") or ("built-image" if body.get("buildInfo") else None),
            target=body.get("target") or "us",
            cpu=body.get("cpu") or 1,
            memory=body.get("memory") or 1,
            disk=body.get("disk") or 3,
            auto_stop_interval=body.get("autoStopInterval", 15),
        )
        self.sandboxes[sid] = sandbox
        return web.json_response(self._dto(sandbox))

    async def list_sandboxes(self, request: web.Request) -> web.Response:
        wanted = json.loads(request.query.get("labels") or "{}")
        found = self.by_labels(**wanted)
        items = [self._dto(s, full=False) for s in found]
        return web.json_response({"items": items, "nextCursor": None})

    async def get_sandbox(self, request: web.Request) -> web.Response:
        return web.json_response(self._dto(self._sandbox(request)))

    async def start_sandbox(self, request: web.Request) -> web.Response:
        sandbox = self._sandbox(request)
        if sandbox.state == "destroyed":
            raise Refused(400, "Sandbox is destroyed", "DAYTONA_API")
        sandbox.state = "started"
        return web.json_response(self._dto(sandbox))

    async def stop_sandbox(self, request: web.Request) -> web.Response:
        sandbox = self._sandbox(request)
        self._stop_processes(sandbox)
        sandbox.state = "stopped"
        return web.json_response(self._dto(sandbox))

    async def delete_sandbox(self, request: web.Request) -> web.Response:
        sandbox = self._sandbox(request)
        self._stop_processes(sandbox)
        sandbox.state = "destroyed"
        return web.json_response(self._dto(sandbox))

    async def toolbox_url(self, request: web.Request) -> web.Response:
        self._sandbox(request)
        return web.json_response({"url": f"{self.url}/toolbox"})

    # --- the toolbox ----------------------------------------------------------------------------

    def _toolbox_sandbox(self, request: web.Request) -> FakeSandbox:
        sid = request.path.split("/")[2]
        sandbox = self.sandboxes.get(sid)
        if sandbox is None or sandbox.state == "destroyed":
            raise Refused(404, f"sandbox {sid} not found", "DAYTONA_PROXY")
        if sandbox.state != "started":
            raise Refused(400, f"sandbox {sid} is not started", "DAYTONA_PROXY")
        return sandbox

    @staticmethod
    def _daemon(status: int, message: str, code: str | None = None) -> Refused:
        return Refused(status, message, "DAYTONA_DAEMON", code)

    def _path(self, sandbox: FakeSandbox, path: str) -> Path:
        return Path(path) if os.path.isabs(path) else sandbox.root / path

    def _session(self, sandbox: FakeSandbox, request: web.Request) -> Session:
        session = sandbox.sessions.get(request.match_info["session"])
        if session is None or session.deleted:
            raise self._daemon(404, "session not found", "PROCESS_NOT_FOUND")
        return session

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
        written: list[dict[str, Any]] = []
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
                written.append({"path": str(target), "bytes": len(data)})
        return web.json_response({"files": written})

    async def execute(self, request: web.Request) -> web.Response:
        sandbox = self._toolbox_sandbox(request)
        body = await request.json()
        cwd = self._path(sandbox, body.get("cwd") or str(sandbox.root))
        process = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            body["command"],
            cwd=cwd,
            env=sandbox.process_env(body.get("envs")),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(), body.get("timeout") or 10)
        except TimeoutError:
            _signal(process.pid, signal.SIGKILL)
            await process.wait()
            raise self._daemon(408, "command timed out", "PROCESS_EXECUTION_TIMEOUT") from None
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
        command = Command(uuid.uuid4().hex, body["command"])
        session.commands[command.id] = command
        command.process = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            body["command"],
            cwd=sandbox.root,
            env=sandbox.process_env(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        pump = asyncio.create_task(self._pump(command))
        self._pumps.add(pump)
        pump.add_done_callback(self._pumps.discard)
        if body.get("runAsync") or body.get("async"):
            return web.json_response({"cmdId": command.id}, status=202)
        await pump
        output = (command.stdout + command.stderr).decode("utf-8", "replace")
        return web.json_response(
            {"cmdId": command.id, "exitCode": command.exit_code, "output": output}
        )

    async def _pump(self, command: Command) -> None:
        process = command.process
        assert process is not None and process.stdout is not None and process.stderr is not None

        async def read(stream: asyncio.StreamReader, prefix: bytes) -> None:
            while chunk := await stream.read(65536):
                command.add(prefix, chunk)

        await asyncio.gather(
            read(process.stdout, STDOUT_PREFIX), read(process.stderr, STDERR_PREFIX)
        )
        command.exit_code = await process.wait()
        if command.exit_code < 0:  # killed by a signal: what a shell reports
            command.exit_code = 128 - command.exit_code
        command.notify()

    async def get_command(self, request: web.Request) -> web.Response:
        session = self._session(self._toolbox_sandbox(request), request)
        command = session.commands.get(request.match_info["command"])
        if command is None:
            raise self._daemon(404, "command not found", "PROCESS_NOT_FOUND")
        return web.json_response(command.dto())

    async def logs(self, request: web.Request) -> web.StreamResponse:
        session = self._session(self._toolbox_sandbox(request), request)
        command = session.commands.get(request.match_info["command"])
        if command is None:
            raise self._daemon(404, "command not found", "PROCESS_NOT_FOUND")
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return web.json_response(
                {
                    "output": (command.stdout + command.stderr).decode("utf-8", "replace"),
                    "stdout": command.stdout.decode("utf-8", "replace"),
                    "stderr": command.stderr.decode("utf-8", "replace"),
                }
            )
        follow = request.query.get("follow") == "true"
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sent = 0
        while not ws.closed:
            changed = command.changed
            if sent < len(command.log):
                data = bytes(command.log[sent:])
                sent += len(data)
                await ws.send_bytes(data)
                continue
            if command.exit_code is not None or not follow or session.deleted:
                break
            await changed.wait()
        await ws.close(code=1000)
        return ws

    async def _end_session(self, session: Session) -> None:
        """What the daemon does: SIGTERM the process trees, SIGKILL what is left."""
        session.deleted = True
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
            _signal_group_rest(command)
            command.notify()

    def _stop_processes(self, sandbox: FakeSandbox) -> None:
        for session in sandbox.sessions.values():
            session.deleted = True
            for command in session.commands.values():
                if command.process is not None:
                    _signal(command.process.pid, signal.SIGKILL)
                command.notify()

    # --- git ------------------------------------------------------------------------------------

    def _git_env(self, sandbox: FakeSandbox, body: dict[str, Any]) -> dict[str, str]:
        env = sandbox.process_env({"GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1"})
        if body.get("password"):
            digest = hashlib.sha256(body["password"].encode()).hexdigest()
            self.git_logins.append((body.get("username") or "", digest))
            pair = f"{body.get('username') or 'git'}:{body['password']}".encode()
            env.update(
                GIT_CONFIG_COUNT="1",
                GIT_CONFIG_KEY_0="http.extraHeader",
                GIT_CONFIG_VALUE_0=f"Authorization: Basic {base64.b64encode(pair).decode()}",
            )
        return env

    async def _git(self, sandbox: FakeSandbox, env: dict[str, str], *argv: str) -> str:
        process = await asyncio.create_subprocess_exec(
            "git",
            *argv,
            cwd=sandbox.root,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        text = output.decode("utf-8", "replace")
        if process.returncode != 0:
            raise self._daemon(400, text.strip() or "git failed")
        return text

    async def git_clone(self, request: web.Request) -> web.Response:
        sandbox = self._toolbox_sandbox(request)
        body = await request.json()
        argv = ["clone"] + (["--branch", body["branch"]] if body.get("branch") else [])
        path = str(self._path(sandbox, body["path"]))
        await self._git(sandbox, self._git_env(sandbox, body), *argv, "--", body["url"], path)
        return web.Response(status=200)

    async def git_pull(self, request: web.Request) -> web.Response:
        sandbox = self._toolbox_sandbox(request)
        body = await request.json()
        path = str(self._path(sandbox, body["path"]))
        await self._git(sandbox, self._git_env(sandbox, body), "-C", path, "pull", "--ff-only")
        return web.Response(status=200)

    async def git_status(self, request: web.Request) -> web.Response:
        sandbox = self._toolbox_sandbox(request)
        path = str(self._path(sandbox, request.query["path"]))
        text = await self._git(
            sandbox, self._git_env(sandbox, {}), "-C", path, "status", "--porcelain=v2", "--branch"
        )
        branch, upstream, ahead, behind, files = "", None, 0, 0, []
        for line in text.splitlines():
            if line.startswith("# branch.head "):
                branch = line.split(" ", 2)[2]
            elif line.startswith("# branch.upstream "):
                upstream = line.split(" ", 2)[2]
            elif line.startswith("# branch.ab "):
                _, _, plus, minus = line.split(" ")
                ahead, behind = int(plus), -int(minus)
            elif line and not line.startswith("#"):
                name = line.rsplit(" ", 1)[-1] if not line.startswith("?") else line[2:]
                kind = "Untracked" if line.startswith("?") else "Modified"
                files.append({"name": name, "staging": kind, "worktree": kind, "extra": ""})
        detached = branch == "(detached)"
        return web.json_response(
            {
                "currentBranch": "" if detached else branch,
                "detached": detached,
                "upstream": upstream or "",
                "branchPublished": upstream is not None,
                "ahead": ahead,
                "behind": behind,
                "fileStatus": files,
            }
        )


def _signal(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _signal_group_rest(command: Command) -> None:
    if command.process is not None:
        _signal(command.process.pid, signal.SIGKILL)
