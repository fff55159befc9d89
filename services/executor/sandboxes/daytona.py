"""The ``daytona`` sandbox: one Daytona sandbox per agent, driven through the official ``daytona``
SDK's async client (``AsyncDaytona``). The only module (with ``daytona_errors.py``) that imports it.

Configuration: ``DAYTONA_API_KEY`` (required, environment only), ``DAYTONA_API_URL`` (default
Daytona's cloud) and ``DAYTONA_TARGET`` (region) from the executor's environment (``api_url`` and
``target`` in the table below also work; the environment wins), then swarm.toml::

    [daytona]
    snapshot = "swarm-agent"    # the snapshot sandboxes start from (or: image = "node:22")
    cpu = 2                     # resources: only with image (a snapshot brings its own)
    memory = 4                  # GiB
    disk = 10                   # GiB
    auto_stop_interval = 30     # minutes idle before Daytona stops a sandbox (0: never)
    shutdown = "keep"           # when the executor stops: keep | stop | delete its sandboxes
    timeout = 300               # seconds a sandbox may take to be created or started
    retries = 5                 # tries again on 429 / 502 / 503 / 504 / unreachable
    retry_backoff = 0.5         # seconds before the first retry (doubling, at most 8)

Sandboxes: labelled ``{"swarm": <swarm>, "agent": <agent>, "managed-by": "swarm"}`` (nothing
else: labels are visible to anyone with the key). Attaching looks them up by label and reuses the
one found (started if it was stopped or archived), so a restarted executor, here or on another
machine, finds its agents' sandboxes; only when none is found is one created. An agent registered
with a ``sandbox_id`` attaches to that sandbox instead. ``create`` returns at once and finds or
makes the sandbox in the background (minutes, for an image build): the agent's presence does not
wait; its first command does. Before a call, a sandbox not seen working in the last seconds is
checked with the API (and started again when Daytona auto-stopped it).

Commands: each ``exec`` runs in a Daytona session of its own with asynchronous execution: a
runner script (argv, working directory) and, when there is one, an environment file (the
credentials: ``ANTHROPIC_API_KEY``..., git tokens) are uploaded to a private directory; the
session runs the script, which reads the environment file and deletes it before it starts the
command. So credentials reach the command's environment only, at execution time: never the
sandbox's labels or its environment, nor the command line Daytona records. Output streams through
the SDK's log follow (a websocket, stdout and stderr demultiplexed) to ``on_output`` as it comes;
a dropped stream reconnects and skips what was already delivered. Timeout, cancel or a cancelled
caller delete the session: the daemon stops the command's whole process tree (SIGTERM, then
SIGKILL). The exit code is the session command's.

Failures (``daytona_errors.py``): 401/403 fail at once, naming ``DAYTONA_API_KEY``; 429/502/503/
504 and an unreachable Daytona are retried with backoff (``retries``), then fail; a sandbox that
disappeared (404) is made anew and ``SandboxLost`` sends the attempt back to the queue.

Git (the project's checkout): clone, pull and status go through the SDK's git API (credentials in
the request, as ``x-access-token`` and the token); small steps (clean-up, rename, the commit id)
and the ``init`` re-point (set-url, fetch, checkout) run as one-shot process executions.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import posixpath
import re
import shlex
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog
from daytona import (
    AsyncDaytona,
    AsyncSandbox,
    CreateSandboxFromImageParams,
    CreateSandboxFromSnapshotParams,
    DaytonaConfig,
    FileUpload,
    ListSandboxesQuery,
    Resources,
    SessionExecuteRequest,
)

from schemas import subjects
from schemas.errors import Invalid
from services.bus.logs import known_secrets, scrub
from services.executor import git
from services.executor.git import CheckoutStatus, GitFailed
from services.executor.sandboxes import (
    Backend,
    ExecResult,
    GitCall,
    OutputCallback,
    Sandbox,
    SandboxFailed,
    SandboxLost,
)
from services.executor.sandboxes.daytona_errors import (
    DaemonRefused,
    DaytonaUnavailable,
    SandboxGone,
    backoff,
    classify,
)

log = structlog.get_logger("executor.daytona")

T = TypeVar("T")

DEFAULT_API_URL = "https://app.daytona.io/api"
SHUTDOWN_POLICIES = ("keep", "stop", "delete")
MANAGED_BY = ("managed-by", "swarm")
RUNS_DIR = ".swarm/runs"  # under the sandbox user's home: one private directory per command
FRESH_SECONDS = 5.0  # a sandbox seen working this recently is not checked again before a call
QUICK_TIMEOUT = 60.0  # seconds for one-shot helper commands (test -e, command -v, rm)
KILL_GRACE = 5.0  # after the session is deleted, how long the last output may take to arrive
RETRY_CAP = 8.0
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Sandbox states (the API's values), by what attaching does with them.
STARTED = "started"
COMING_UP = frozenset(
    {
        "creating",
        "starting",
        "restoring",
        "pulling_snapshot",
        "pending_build",
        "building_snapshot",
        "resizing",
        "snapshotting",
        "forking",
        "resuming",
    }
)
RESTARTABLE = frozenset({"stopped", "archived", "paused"})
WINDING_DOWN = frozenset({"stopping", "archiving", "pausing"})
DEAD = frozenset({"destroyed", "destroying", "error", "build_failed"})


# --- settings ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DaytonaSettings:
    api_key: str = field(repr=False)
    api_url: str = DEFAULT_API_URL
    target: str | None = None
    snapshot: str | None = None
    image: str | None = None
    cpu: int | None = None
    memory: int | None = None  # GiB
    disk: int | None = None  # GiB
    auto_stop_interval: int | None = None  # minutes; 0: never
    shutdown: str = "keep"
    timeout: float = 300.0  # seconds to create or start a sandbox
    retries: int = 5
    retry_backoff: float = 0.5

    @classmethod
    def read(cls, table: Mapping[str, Any], env: Mapping[str, str]) -> DaytonaSettings:
        """From swarm.toml's ``[daytona]`` table and the environment (which wins)."""
        known = {f for f in cls.__dataclass_fields__ if f != "api_key"}
        for key in table:
            if key == "api_key":
                raise Invalid(
                    "daytona.api_key",
                    "the Daytona API key goes in the environment (DAYTONA_API_KEY), "
                    "not in swarm.toml",
                )
            if key not in known:
                raise Invalid(
                    f"daytona.{key}",
                    f"unknown [daytona] setting {key!r} (known: {', '.join(sorted(known))})",
                )
        api_key = (env.get("DAYTONA_API_KEY") or "").strip()
        if not api_key:
            raise Invalid(
                "DAYTONA_API_KEY",
                "the daytona backend needs DAYTONA_API_KEY in the executor's environment "
                "(a key from the Daytona dashboard)",
            )

        def text(key: str, env_name: str | None = None) -> str | None:
            value = (env.get(env_name) if env_name else None) or table.get(key)
            if value is None or value == "":
                return None
            if not isinstance(value, str):
                raise Invalid(f"daytona.{key}", f"daytona.{key} must be a string")
            return value.strip()

        def integer(key: str, minimum: int) -> int | None:
            value = table.get(key)
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise Invalid(f"daytona.{key}", f"daytona.{key} must be a whole number ≥ {minimum}")
            return value

        def number(key: str, default: float) -> float:
            value = table.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise Invalid(f"daytona.{key}", f"daytona.{key} must be a number over 0")
            return float(value)

        snapshot, image = text("snapshot"), text("image")
        if snapshot and image:
            raise Invalid("daytona.image", "set daytona.snapshot or daytona.image, not both")
        resources = {key: integer(key, 1) for key in ("cpu", "memory", "disk")}
        if not image:
            for key, value in resources.items():
                if value is not None:
                    raise Invalid(
                        f"daytona.{key}",
                        f"daytona.{key} applies to sandboxes made from an image "
                        "(daytona.image); a snapshot brings its own resources",
                    )
        shutdown = text("shutdown") or "keep"
        if shutdown not in SHUTDOWN_POLICIES:
            raise Invalid(
                "daytona.shutdown",
                f"daytona.shutdown must be one of {', '.join(SHUTDOWN_POLICIES)}, not {shutdown!r}",
            )
        retries = integer("retries", 0)
        return cls(
            api_key=api_key,
            api_url=(text("api_url", "DAYTONA_API_URL") or DEFAULT_API_URL).rstrip("/"),
            target=text("target", "DAYTONA_TARGET"),
            snapshot=snapshot,
            image=image,
            cpu=resources["cpu"],
            memory=resources["memory"],
            disk=resources["disk"],
            auto_stop_interval=integer("auto_stop_interval", 0),
            shutdown=shutdown,
            timeout=number("timeout", 300.0),
            retries=5 if retries is None else retries,
            retry_backoff=number("retry_backoff", 0.5),
        )


# --- pure pieces ---------------------------------------------------------------------------------


def sandbox_labels(swarm: str, agent: str) -> dict[str, str]:
    """The labels that say whose a sandbox is (ids only: labels are not secret)."""
    return {"swarm": swarm, "agent": agent, MANAGED_BY[0]: MANAGED_BY[1]}


def state_of(sandbox: Any) -> str:
    state = getattr(sandbox, "state", None)
    return str(getattr(state, "value", state) or "unknown")


def rank(sandbox: Any) -> int | None:
    """How good a found sandbox is to attach to (lower is better); None: unusable."""
    state = state_of(sandbox)
    if state == STARTED:
        return 0
    if state in COMING_UP:
        return 1
    if state in RESTARTABLE or state in WINDING_DOWN:
        return 2
    if state == "error" and getattr(sandbox, "recoverable", False):
        return 3
    return None


def env_file(env: Mapping[str, str]) -> str:
    """A file the runner script sources: ``export NAME='value'`` per variable."""
    lines = []
    for name, value in env.items():
        if not ENV_NAME.fullmatch(name):
            raise Invalid("env", f"{name!r} is not an environment variable name")
        lines.append(f"export {name}={shlex.quote(value)}")
    return "\n".join(lines) + "\n"


def runner_script(
    argv: Sequence[str], directory: str, run_dir: str, *, with_env: bool, with_stdin: bool
) -> str:
    """The script a session runs for one command: it reads the environment file (and deletes
    it), goes to ``directory`` and runs ``argv`` (its stdin: the uploaded input, or nothing).
    The script itself holds no secret."""
    if not argv:
        raise Invalid("argv", "no command to run")
    lines = [
        "# swarm: one command of a task (its environment file is read, then deleted)",
        f"run={shlex.quote(run_dir)}",
    ]
    if with_env:
        lines += ['. "$run/env"', 'rm -f -- "$run/env"']
    lines.append(f"cd -- {shlex.quote(directory)} || exit 126")
    source = '"$run/stdin"' if with_stdin else "/dev/null"
    lines.append(f"{shlex.join(argv)} < {source}")
    return "\n".join(lines) + "\n"


def session_command(run_dir: str, merge_stderr: bool) -> str:
    """What the session runs (and Daytona records): the runner script, nothing secret."""
    command = f"bash {shlex.quote(posixpath.join(run_dir, 'run.sh'))}"
    return command + " 2>&1" if merge_stderr else command


def creation_params(
    settings: DaytonaSettings, swarm: str, agent: str
) -> CreateSandboxFromSnapshotParams | CreateSandboxFromImageParams:
    """What a new sandbox is made with: labels, snapshot or image (+ resources), auto-stop.
    No environment variables: credentials are given per command, never to the sandbox."""
    common: dict[str, Any] = {"labels": sandbox_labels(swarm, agent)}
    if settings.auto_stop_interval is not None:
        common["auto_stop_interval"] = settings.auto_stop_interval
    if settings.image:
        resources = None
        if settings.cpu or settings.memory or settings.disk:
            resources = Resources(cpu=settings.cpu, memory=settings.memory, disk=settings.disk)
        return CreateSandboxFromImageParams(image=settings.image, resources=resources, **common)
    return CreateSandboxFromSnapshotParams(snapshot=settings.snapshot, **common)


# --- the backend ---------------------------------------------------------------------------------


class DaytonaBackend(Backend):
    name = "daytona"

    def __init__(self, settings: DaytonaSettings, *, secrets: Sequence[str] = ()) -> None:
        self.settings = settings
        self.secrets = tuple(dict.fromkeys([settings.api_key, *(s for s in secrets if s)]))
        self._client: AsyncDaytona | None = None
        self._sandboxes: dict[str, DaytonaSandbox] = {}

    @classmethod
    def configured(
        cls, table: Mapping[str, Any], *, source_env: Mapping[str, str] | None = None
    ) -> DaytonaBackend:
        env = dict(os.environ if source_env is None else source_env)
        return cls(DaytonaSettings.read(table, env), secrets=known_secrets(env))

    def client(self) -> AsyncDaytona:
        """The SDK client, made on first use (it needs a running event loop)."""
        if self._client is None:
            self._client = AsyncDaytona(
                DaytonaConfig(
                    api_key=self.settings.api_key,
                    api_url=self.settings.api_url,
                    target=self.settings.target,
                )
            )
        return self._client

    async def call(
        self, action: str, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any
    ) -> T:
        """``await fn(*args, **kwargs)``: 429/502/503/504 and an unreachable Daytona are tried
        again with backoff (``settings.retries`` times); any failure becomes a
        ``SandboxFailed`` saying what it means (``daytona_errors``)."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await fn(*args, **kwargs)
            except asyncio.CancelledError:
                raise
            except SandboxFailed:
                raise
            except Exception as error:
                failure = classify(error)
                if failure.kind != "busy" or attempt > self.settings.retries:
                    raise failure.error(
                        action,
                        api_url=self.settings.api_url,
                        tries=attempt,
                        secrets=self.secrets,
                    ) from error
                wait = backoff(attempt, self.settings.retry_backoff, RETRY_CAP, failure.retry_after)
                log.warning(
                    "daytona.retry",
                    action=action,
                    status=failure.status,
                    attempt=attempt,
                    wait=round(wait, 3),
                    error=scrub(failure.message, self.secrets),
                )
                await asyncio.sleep(wait)

    async def create(self, swarm: str, agent: str, sandbox_id: str | None = None) -> DaytonaSandbox:
        """The agent's sandbox handle, at once; the sandbox itself is found by its labels (or
        ``sandbox_id``) or made in the background (that can take minutes: the agent's presence
        must not wait for it). Its first command waits for it; when Daytona cannot be reached or
        refuses, that command tries again and, failing, fails its task with the reason."""
        subjects.check_token(agent, "agent")
        sandbox = self._sandboxes.get(agent)
        if sandbox is None or sandbox.swarm != swarm:
            sandbox = DaytonaSandbox(self, swarm, agent, sandbox_id)
            self._sandboxes[agent] = sandbox
        sandbox.prepare()
        return sandbox

    async def find(self, swarm: str, agent: str) -> AsyncSandbox | None:
        """The best sandbox labelled for the agent (started first, then oldest), if any."""
        client = self.client()
        query = ListSandboxesQuery(labels=sandbox_labels(swarm, agent))

        async def listed() -> list[AsyncSandbox]:
            return [found async for found in client.list(query)]

        found = await self.call("looking up the agent's sandbox", listed)
        usable = [s for s in found if rank(s) is not None]
        if len(usable) > 1:
            log.warning(
                "daytona.sandboxes_duplicate",
                swarm=swarm,
                agent=agent,
                sandboxes=[s.id for s in usable],
            )
        return min(usable, key=lambda s: (rank(s), s.created_at or ""), default=None)

    async def attach(self, swarm: str, agent: str, sandbox_id: str | None) -> AsyncSandbox:
        """Find (``sandbox_id``, else by labels) or make the agent's sandbox, and start it."""
        client = self.client()
        if sandbox_id:
            try:
                named = await self.call(f"getting sandbox {sandbox_id}", client.get, sandbox_id)
            except SandboxGone:
                log.warning("daytona.sandbox_id_unknown", agent=agent, sandbox=sandbox_id)
            else:
                if rank(named) is not None:
                    await self.bring_up(named)
                    log.info("daytona.sandbox_attached", agent=agent, sandbox=named.id)
                    return named
                log.warning(
                    "daytona.sandbox_id_unusable",
                    agent=agent,
                    sandbox=sandbox_id,
                    state=state_of(named),
                )
        attempt = 0
        while True:  # look, then make: a make that failed half-way is found the next round
            attempt += 1
            found = await self.find(swarm, agent)
            if found is not None:
                was = state_of(found)
                await self.bring_up(found)
                log.info(
                    "daytona.sandbox_reused", swarm=swarm, agent=agent, sandbox=found.id, was=was
                )
                return found
            try:
                made = await self._make(client, swarm, agent)
            except DaytonaUnavailable as error:
                if attempt > self.settings.retries:
                    raise
                wait = backoff(attempt, self.settings.retry_backoff, RETRY_CAP)
                log.warning("daytona.retry", action="creating a sandbox", error=error.reason)
                await asyncio.sleep(wait)
                continue
            log.info("daytona.sandbox_created", swarm=swarm, agent=agent, sandbox=made.id)
            return made

    async def _make(self, client: AsyncDaytona, swarm: str, agent: str) -> AsyncSandbox:
        params = creation_params(self.settings, swarm, agent)
        try:
            return await client.create(params, timeout=self.settings.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # not retried here: the caller looks before it makes again
            raise classify(error).error(
                "creating a sandbox", api_url=self.settings.api_url, secrets=self.secrets
            ) from error

    async def bring_up(self, sandbox: AsyncSandbox) -> None:
        """Wait for, start or recover ``sandbox`` until it is started."""
        state = state_of(sandbox)
        timeout = self.settings.timeout
        if state in WINDING_DOWN:
            await self.call(
                f"waiting for sandbox {sandbox.id} to stop",
                sandbox.wait_for_sandbox_stop,
                timeout=timeout,
            )
            state = state_of(sandbox)
        if state == STARTED:
            return
        if state in RESTARTABLE:
            log.info("daytona.sandbox_starting", sandbox=sandbox.id, was=state)
            await self.call(f"starting sandbox {sandbox.id}", sandbox.start, timeout=timeout)
        elif state in COMING_UP or state == "unknown":
            await self.call(
                f"waiting for sandbox {sandbox.id} to start",
                sandbox.wait_for_sandbox_start,
                timeout=timeout,
            )
        elif state == "error" and getattr(sandbox, "recoverable", False):
            await self.call(f"recovering sandbox {sandbox.id}", sandbox.recover, timeout=timeout)
        else:
            raise SandboxGone(f"Daytona sandbox {sandbox.id} is {state}")

    async def close(self) -> None:
        """Apply the shutdown policy to this executor's sandboxes, then close the client."""
        preparing = [s.preparing for s in self._sandboxes.values() if s.preparing is not None]
        for task in preparing:
            task.cancel()  # a sandbox made half-way is found by its labels next time
        await asyncio.gather(*preparing, return_exceptions=True)
        client, self._client = self._client, None
        if client is None:
            return
        policy = self.settings.shutdown
        remotes = [s.remote for s in self._sandboxes.values() if s.remote is not None]
        if policy != "keep" and remotes:
            await asyncio.gather(*(self._let_go(r, policy) for r in remotes))
        try:
            await client.close()
        except Exception as error:
            log.debug("daytona.client_not_closed", error=str(error))

    async def _let_go(self, remote: AsyncSandbox, policy: str) -> None:
        try:
            if policy == "stop":
                await self.call(
                    f"stopping sandbox {remote.id}", remote.stop, timeout=self.settings.timeout
                )
            else:
                await self.call(f"deleting sandbox {remote.id}", remote.delete)
            log.info("daytona.sandbox_let_go", sandbox=remote.id, policy=policy)
        except SandboxFailed as error:
            log.warning("daytona.shutdown_failed", sandbox=remote.id, error=error.reason)


# --- one agent's sandbox -------------------------------------------------------------------------


class DaytonaSandbox(Sandbox):
    def __init__(
        self, backend: DaytonaBackend, swarm: str, agent: str, sandbox_id: str | None = None
    ) -> None:
        self.backend = backend
        self.swarm = swarm
        self.agent = agent
        self.id = f"daytona:{swarm}/{agent}"  # until the sandbox is found or made
        self.workdir = ""
        self.home = ""
        self.remote: AsyncSandbox | None = None
        self._hint = sandbox_id
        self._lock = asyncio.Lock()
        self._checked = -math.inf
        self._found: dict[str, str] = {}  # `which` answers, for this sandbox
        self.preparing: asyncio.Task[None] | None = None

    @property
    def place(self) -> str:  # type: ignore[override]
        return f"Daytona sandbox {self.id}"

    # --- being there ------------------------------------------------------------------------

    def prepare(self) -> None:
        """Find or make the sandbox in the background (once at a time)."""
        if self.preparing is None or self.preparing.done():
            self.preparing = asyncio.create_task(self._prepare(), name=f"daytona-{self.agent}")

    async def _prepare(self) -> None:
        try:
            await self.ready()
        except SandboxFailed as error:
            log.warning(
                "daytona.sandbox_not_ready",
                swarm=self.swarm,
                agent=self.agent,
                error=error.reason,
            )

    async def ready(self) -> AsyncSandbox:
        """The started sandbox. Checked with the API unless it worked moments ago; gone: a new
        one is made and ``SandboxLost`` raised (the caller's attempt goes back to the queue)."""
        lost: str | None = None
        old = self.id
        async with self._lock:
            remote = self.remote
            if remote is not None and time.monotonic() - self._checked < FRESH_SECONDS:
                return remote
            if remote is not None:
                try:
                    await self.backend.call(f"checking sandbox {remote.id}", remote.refresh_data)
                    if rank(remote) is None:
                        lost = f"it is {state_of(remote)}"
                    else:
                        await self.backend.bring_up(remote)
                except SandboxGone as error:
                    lost = error.reason
                if lost is not None:
                    self.remote = None
                    self._found.clear()
                    log.warning("daytona.sandbox_lost", agent=self.agent, sandbox=old, why=lost)
            if self.remote is None:
                hint, self._hint = (self._hint if lost is None else None), None
                remote = await self.backend.attach(self.swarm, self.agent, hint)
                self.id = remote.id
                self.home = (
                    await self.backend.call("reading the home directory", remote.get_user_home_dir)
                ).rstrip("/") or "/"
                self.workdir = (
                    await self.backend.call("reading the work directory", remote.get_work_dir)
                ).rstrip("/") or self.home
                self.remote = remote
            self._checked = time.monotonic()
            remote = self.remote
        if lost is not None:
            raise SandboxLost(
                f"Daytona sandbox {old} of agent {self.agent} is gone ({lost}); made "
                f"{self.id} in its place: the attempt goes back to the queue"
            )
        return remote

    async def _toolbox(
        self, action: str, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any
    ) -> T:
        """A call to the sandbox's toolbox. Not found: ask the API whether the sandbox is still
        there (``SandboxLost`` when not; started again and the call tried once more when it
        was stopped)."""
        try:
            result = await self.backend.call(action, fn, *args, **kwargs)
        except SandboxGone as error:
            self._checked = -math.inf
            await self.ready()  # raises SandboxLost when it is gone
            try:
                result = await self.backend.call(action, fn, *args, **kwargs)
            except SandboxGone:
                raise SandboxFailed(f"Daytona: {action} failed: {error.reason}") from error
        self._checked = time.monotonic()
        return result

    def _path(self, path: str) -> str:
        return posixpath.join(self.workdir, path)

    async def _quick(
        self,
        command: str,
        action: str,
        *,
        timeout: float = QUICK_TIMEOUT,
        env: Mapping[str, str] | None = None,
    ) -> tuple[int | None, str]:
        """A one-shot command (the toolbox's process execution): its exit code and output."""
        remote = await self.ready()
        response = await self._toolbox(
            action,
            remote.process.exec,
            command,
            cwd=self.workdir,
            env=dict(env) if env else None,
            timeout=max(1, math.ceil(timeout)),
        )
        return response.exit_code, response.result or ""

    async def which(self, program: str, path: str | None = None) -> str | None:
        """``command -v`` in the sandbox (``path``, the executor's PATH, does not apply)."""
        if program in self._found:
            return self._found[program]
        if not program or program.startswith("-"):
            return None
        code, output = await self._quick(f"command -v {shlex.quote(program)}", "finding " + program)
        lines = output.strip().splitlines()
        if code != 0 or not lines:
            return None
        self._found[program] = lines[0].strip()
        return self._found[program]

    async def path_exists(self, path: str) -> bool:
        code, _ = await self._quick(
            f"test -e {shlex.quote(self._path(path))}", f"looking for {path}"
        )
        return code == 0

    async def destroy(self) -> None:
        remote = await self.ready()
        await self.backend.call(f"deleting sandbox {remote.id}", remote.delete)
        self.remote = None

    # --- commands ---------------------------------------------------------------------------

    async def exec(
        self,
        argv: Sequence[str],
        *,
        on_output: OutputCallback,
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
        timeout: float | None = None,
        cancel: asyncio.Event | None = None,
        merge_stderr: bool = False,
        cwd: str | None = None,
    ) -> ExecResult:
        started = time.monotonic()
        remote = await self.ready()
        run = uuid.uuid4().hex[:12]
        run_dir = f"{self.home.rstrip('/')}/{RUNS_DIR}/{run}"
        session = f"swarm-{run}"
        script = runner_script(
            argv,
            self._path(cwd) if cwd else self.workdir,
            run_dir,
            with_env=bool(env),
            with_stdin=stdin is not None,
        )
        uploads = [FileUpload(script.encode(), f"{run_dir}/run.sh")]
        if env:
            uploads.append(FileUpload(env_file(env).encode(), f"{run_dir}/env"))
        if stdin is not None:
            uploads.append(FileUpload(stdin, f"{run_dir}/stdin"))
        opened = False
        timed_out = cancelled = False
        exit_code: int | None = None
        try:
            await self._toolbox("preparing the command", remote.fs.create_folder, run_dir, "700")
            await self._toolbox("uploading the command", remote.fs.upload_files, uploads)
            await self._toolbox("opening a session", remote.process.create_session, session)
            opened = True
            request = SessionExecuteRequest(
                command=session_command(run_dir, merge_stderr), run_async=True
            )
            response = await self._toolbox(
                "starting the command", remote.process.execute_session_command, session, request
            )
            command = response.cmd_id
            follow = asyncio.create_task(self._follow(remote, session, command, on_output))
            stop = asyncio.create_task(cancel.wait()) if cancel is not None else None
            waiting: set[asyncio.Task[object]] = {follow} | ({stop} if stop is not None else set())
            try:
                done, _ = await asyncio.wait(
                    waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if follow in done:
                    try:
                        follow.result()
                    except SandboxGone as error:
                        await self._toolbox_gone(error)
                    exit_code = await self._exit_code(remote, session, command)
                else:
                    cancelled = stop is not None and stop in done
                    timed_out = not cancelled
                    opened = not await self._end(remote, session)  # kills the command
                    await asyncio.wait({follow}, timeout=KILL_GRACE)  # its last words
            finally:
                for task in waiting:
                    task.cancel()
                await asyncio.gather(*waiting, return_exceptions=True)
        finally:
            cleanup = asyncio.ensure_future(
                self._clean_up(remote, session if opened else None, run_dir)
            )
            await asyncio.shield(cleanup)
        return ExecResult(
            exit_code=None if (timed_out or cancelled) else exit_code,
            timed_out=timed_out,
            cancelled=cancelled,
            duration_s=time.monotonic() - started,
        )

    async def _toolbox_gone(self, error: SandboxGone) -> None:
        self._checked = -math.inf
        await self.ready()  # SandboxLost when the sandbox is gone
        raise SandboxFailed(f"Daytona: following the command failed: {error.reason}") from error

    async def _follow(
        self, remote: AsyncSandbox, session: str, command: str, on_output: OutputCallback
    ) -> None:
        """Stream the command's output to ``on_output`` until it ends. A dropped stream is
        opened again; what was already delivered (the stream starts from the beginning) is
        skipped."""
        sent = {"stdout": 0, "stderr": 0}
        tries = 0
        while True:
            skip = dict(sent)

            def handler(
                stream: str, skip: dict[str, int] = skip
            ) -> Callable[[str], Awaitable[None]]:
                async def handle(text: str) -> None:
                    if skip[stream]:
                        cut = min(skip[stream], len(text))
                        skip[stream] -= cut
                        text = text[cut:]
                    if not text:
                        return
                    sent[stream] += len(text)
                    result = on_output(stream, text.encode("utf-8"))
                    if result is not None:
                        await result

                return handle

            try:
                await remote.process.get_session_command_logs_async(
                    session, command, handler("stdout"), handler("stderr")
                )
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:
                failure = classify(error)
                tries += 1
                if (
                    failure.kind in ("auth", "gone", "daemon")
                    or tries > self.backend.settings.retries
                ):
                    raise failure.error(
                        "following the command's output",
                        api_url=self.backend.settings.api_url,
                        tries=tries,
                        secrets=self.backend.secrets,
                    ) from error
                log.warning(
                    "daytona.output_reconnect",
                    agent=self.agent,
                    sandbox=self.id,
                    error=scrub(failure.message, self.backend.secrets),
                )
                await asyncio.sleep(backoff(tries, self.backend.settings.retry_backoff, RETRY_CAP))

    async def _exit_code(self, remote: AsyncSandbox, session: str, command: str) -> int | None:
        """The session command's exit code (written as its output ends: waited for briefly)."""
        deadline = time.monotonic() + 10.0
        while True:
            found = await self._toolbox(
                "reading the exit code", remote.process.get_session_command, session, command
            )
            if found.exit_code is not None or time.monotonic() > deadline:
                return found.exit_code
            await asyncio.sleep(0.05)

    async def _end(self, remote: AsyncSandbox, session: str) -> bool:
        """Delete the session: the daemon stops the command's process tree. Whether it did."""
        try:
            await self.backend.call("stopping the command", remote.process.delete_session, session)
            return True
        except SandboxFailed as error:
            log.warning("daytona.session_not_deleted", sandbox=self.id, error=error.reason)
            return False

    async def _clean_up(self, remote: AsyncSandbox, session: str | None, run_dir: str) -> None:
        """Best effort, bounded: the session (and what it still runs), the command's files."""
        try:
            async with asyncio.timeout(30):
                if session is not None:
                    with contextlib.suppress(Exception):
                        await remote.process.delete_session(session)
                with contextlib.suppress(Exception):
                    await remote.process.exec(
                        f"rm -rf -- {shlex.quote(run_dir)}", cwd=self.workdir or None, timeout=30
                    )
        except TimeoutError:
            log.warning("daytona.cleanup_timed_out", sandbox=self.id, session=session)

    # --- git, through the SDK's git API -------------------------------------------------------

    @staticmethod
    def _login(call: GitCall) -> dict[str, str]:
        return {"username": git.TOKEN_USER, "password": call.token} if call.token else {}

    @staticmethod
    def _too_long(action: str, call: GitCall) -> GitFailed:
        return GitFailed(f"{action} failed: timed out (the git timeout is {call.timeout:g} s)")

    async def _git_api(
        self, action: str, call: GitCall, fn: Callable[..., Awaitable[T]], **kwargs: Any
    ) -> T:
        remaining = call.deadline - time.monotonic()
        if remaining <= 0:
            raise self._too_long(action, call)
        try:
            return await asyncio.wait_for(
                self._toolbox(action, fn, request_timeout=max(1.0, remaining), **kwargs),
                remaining,
            )
        except TimeoutError as error:
            raise self._too_long(action, call) from error
        except DaemonRefused as error:
            raise GitFailed(git.failure(action, error.message, call.secrets)) from error

    async def _git_step(self, argv: list[str], action: str, call: GitCall) -> str:
        """One small git-related command (one-shot), within the operation's time."""
        remaining = call.deadline - time.monotonic()
        if remaining <= 0:
            raise self._too_long(action, call)
        try:
            code, output = await asyncio.wait_for(
                self._quick(
                    shlex.join(argv), action, timeout=remaining, env=git.git_env(call.token)
                ),
                remaining + 5,
            )
        except TimeoutError as error:
            raise self._too_long(action, call) from error
        except DaemonRefused as error:
            raise GitFailed(git.failure(action, error.message, call.secrets)) from error
        if code != 0:
            raise GitFailed(git.failure(action, output, call.secrets))
        return output

    async def git_clone(self, url: str, branch: str, path: str, call: GitCall) -> None:
        git.check_url(url)
        git.check_branch(branch)
        remote = await self.ready()
        target = self._path(path)
        partial = f"{target}.partial"
        await self._git_step(["rm", "-rf", "--", partial], "cleaning up", call)
        try:
            await self._git_api(
                "git clone",
                call,
                remote.git.clone,
                url=url,
                path=partial,
                branch=branch,
                **self._login(call),
            )
            await self._git_step(["mv", "-T", "--", partial, target], "moving the clone", call)
        except GitFailed:
            with contextlib.suppress(Exception):
                await self._quick(f"rm -rf -- {shlex.quote(partial)}", "cleaning up")
            raise

    async def git_checkout(self, url: str, branch: str, path: str, call: GitCall) -> None:
        await self._git_step(git.set_origin_argv(path, url), "git remote set-url", call)
        await self._git_step(git.fetch_argv(path), "git fetch", call)
        await self._git_step(git.checkout_argv(path, branch), "git checkout", call)

    async def git_pull(self, path: str, call: GitCall) -> None:
        remote = await self.ready()
        await self._git_api(
            "git pull", call, remote.git.pull, path=self._path(path), **self._login(call)
        )

    async def git_status(self, branch: str, path: str, call: GitCall) -> CheckoutStatus:
        remote = await self.ready()
        status = await self._git_api("git status", call, remote.git.status, path=self._path(path))
        try:
            head = await self._git_step(
                ["git", "-C", path, "rev-parse", "--verify", "--quiet", "HEAD"],
                "git rev-parse",
                call,
            )
        except GitFailed as error:
            raise GitFailed("git status failed: the checkout has no commit") from error
        lines = head.strip().splitlines()
        if not lines:
            raise GitFailed("git status failed: the checkout has no commit")
        return CheckoutStatus(
            commit=lines[-1].strip(),
            dirty=bool(status.file_status),
            ahead=status.ahead or 0,
            behind=status.behind or 0,
            branch=None if status.detached else (status.current_branch or None),
        )
