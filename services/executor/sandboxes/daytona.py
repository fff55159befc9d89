"""The ``daytona`` sandbox: one Daytona sandbox per agent, driven through the official ``daytona``
SDK's async client (``AsyncDaytona``). With ``daytona_session.py`` (one command), and the pure
``daytona_errors.py`` (what a failure means), ``daytona_states.py`` (what to do in which sandbox
state) and ``daytona_lines.py`` (which server fits which SDK), the only code that knows Daytona
(and the only code that imports the SDK).

Configuration: ``DAYTONA_API_KEY`` (required, environment only), ``DAYTONA_API_URL`` (default
Daytona's hosted service) and ``DAYTONA_TARGET`` (region) from the executor's environment
(``api_url`` and ``target`` in the table below also work; the environment wins), then
swarm.toml::

    [daytona]
    snapshot = "swarm-agent"    # the snapshot sandboxes start from (or: image = "node:22")
    cpu = 2                     # resources: only with image (a snapshot brings its own)
    memory = 4                  # GiB
    disk = 10                   # GiB
    auto_stop_interval = 30     # minutes idle before Daytona stops a sandbox (0: never)
    shutdown = "keep"           # when the executor stops: keep | stop | delete its sandboxes
    timeout = 300               # seconds a sandbox may take to be created, started or recovered
    request_timeout = 60        # seconds any one call to Daytona may take (client side)
    retries = 5                 # tries again on 429 / 502 / 503 / 504 / unreachable / no answer
    retry_backoff = 0.5         # seconds before the first retry (doubling, at most 8)

Supported servers (``daytona_lines.py``): the hosted service with the current SDK (the default
install), and a self-hosted open-source Daytona v0.190 with SDK 0.190.x (the ``daytona-oss``
extra). ``check()`` (the executor calls it before it serves; else the first ``create``) probes
the server (``/config``'s version and a page of sandboxes, read raw); a mismatch is logged and
named, with the fix; the executor then refuses to start (every command would fail at once).

Sandboxes: labelled ``{"swarm": <swarm>, "agent": <agent>, "managed-by": "swarm"}`` (nothing
else: labels are visible to anyone with the key) and named ``swarm-<agent>-<random>``. Attaching
looks the agent's sandbox up (the given ``sandbox_id``; a creation whose outcome is unknown, by
its name; else the labelled sandboxes, every page of the list, each confirmed with a direct read
because the list is eventually consistent) and brings the best one to ``started``
(``daytona_states``: start from stopped / archived / archiving / paused, wait out transitions,
recover a recoverable error) within ``timeout``; only when none is usable is one created. A
creation that fails without an answer (a timeout, a dropped connection, 5xx) is looked up by its
id (``DaytonaTimeoutError.sandbox_id``) or its name before anything is created again, so a slow
create never makes a second sandbox. ``create`` returns at once and finds or makes the sandbox in
the background (minutes, for an image build): the agent's presence does not wait; its first
command does. Before a call, a sandbox not seen working in the last seconds is read again (and
started again when Daytona auto-stopped it).

Every call to Daytona is bounded by a client-side timeout (``request_timeout``; the wait for a
sandbox by ``timeout``; git by the git call's deadline; a command by its own timeout).

Commands: each ``exec`` runs in a Daytona session of its own (``daytona_session.py``: the runner
script, credentials at execution time only, the followed output and what happens when its stream
drops or stalls, timeouts and cancels).

Failures (``daytona_errors.py``): an answer of the toolbox that could be the proxy's or the
daemon's (400/401/403/404) is settled by reading the sandbox through the REST API: a 401 there is
a bad key, a 404 a lost sandbox (made anew; ``SandboxLost`` sends the attempt back to the queue),
a stopped sandbox is started and the call tried again, and a sandbox that is fine means the daemon
refused (git's credentials, a missing branch): that error is the caller's.

Git (the project's checkout): the clone goes through the SDK's git API (credentials in the
request body, as ``x-access-token`` and the token); the daemon clones a single branch, so the
clone's fetch refspec is widened to every branch at once. Everything else (re-pointing, fetching,
switching branches, pulling the checked-out branch, status, and ``git_run``: the task branch's
commits, rebases, pushes to named refs) runs git's own commands as one-shot executions
(``_git_ended``), with the pure commands and parsers of ``services/executor/git.py`` and the
credentials and identity in the command's environment only. The toolbox's git API cannot stand in
for those: its status comes from go-git (no ``detached``, a detached HEAD reported as the branch
``HEAD``, a different idea of what is dirty), its pull merges the remote's HEAD, not the
checked-out branch, its push sends the checked-out branch to the same name (no other refspec, no
force), and the steps around a commit (exit codes to branch on, rebase, ``merge --squash``) have
no API at all: one git works the whole checkout.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import math
import os
import posixpath
import shlex
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import structlog
from daytona import (
    AsyncDaytona,
    AsyncSandbox,
    CreateSandboxFromImageParams,
    CreateSandboxFromSnapshotParams,
    DaytonaConfig,
    ListSandboxesQuery,
    Resources,
)
from daytona_api_client_async.models.sandbox import Sandbox as SandboxModel
from daytona_api_client_async.models.sandbox_list_item import SandboxListItem as ListItemModel

from schemas import subjects
from schemas.errors import Invalid
from services.bus.logs import known_secrets, scrub
from services.executor import git
from services.executor.git import GitFailed
from services.executor.sandboxes import (
    OUTPUT_KEPT,
    Backend,
    ExecResult,
    GitCall,
    GitOutput,
    OutputCallback,
    Sandbox,
    SandboxFailed,
    SandboxLost,
)
from services.executor.sandboxes.daytona_errors import (
    Api,
    DaemonRefused,
    DaytonaAuthRefused,
    DaytonaConflict,
    DaytonaSkew,
    DaytonaUnavailable,
    SandboxGone,
    ToolboxRefused,
    backoff,
    classify,
)
from services.executor.sandboxes.daytona_lines import Verdict, judge
from services.executor.sandboxes.daytona_session import SessionRun
from services.executor.sandboxes.daytona_states import Seen, next_step, poll_interval, rank

log = structlog.get_logger("executor.daytona")

T = TypeVar("T")

DEFAULT_API_URL = "https://app.daytona.io/api"
SHUTDOWN_POLICIES = ("keep", "stop", "delete")
MANAGED_BY = ("managed-by", "swarm")
FRESH_SECONDS = 5.0  # a sandbox seen working this recently is not read again before a call
PROBE_TIMEOUT = 10.0  # seconds each of the start-up probe's two requests may take
QUICK_TIMEOUT = 60.0  # seconds for one-shot helper commands (test -e, command -v, rm)
CALL_MARGIN = 10.0  # on top of a server-side timeout: how long the answer may take to arrive
RETRY_CAP = 8.0


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
    timeout: float = 300.0  # seconds to create, start or recover a sandbox
    request_timeout: float = 60.0  # seconds any one call may take
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
            request_timeout=number("request_timeout", 60.0),
            retries=5 if retries is None else retries,
            retry_backoff=number("retry_backoff", 0.5),
        )


# --- pure pieces ---------------------------------------------------------------------------------


def sandbox_labels(swarm: str, agent: str) -> dict[str, str]:
    """The labels that say whose a sandbox is (ids only: labels are not secret)."""
    return {"swarm": swarm, "agent": agent, MANAGED_BY[0]: MANAGED_BY[1]}


def sandbox_name(agent: str) -> str:
    """A fresh name for a sandbox about to be created: what finds it again when the creation's
    answer was lost (the API reads a sandbox by id or name, consistently)."""
    return f"swarm-{agent[:40]}-{uuid.uuid4().hex[:10]}"


def _value(field_value: object) -> str | None:
    value = getattr(field_value, "value", field_value)
    return str(value) if value is not None else None


def state_of(sandbox: Any) -> str:
    return _value(getattr(sandbox, "state", None)) or "unknown"


def seen(sandbox: Any) -> Seen:
    """The decision-relevant part of a sandbox the SDK holds."""
    return Seen(
        state_of(sandbox),
        _value(getattr(sandbox, "desired_state", None)),
        bool(getattr(sandbox, "recoverable", False)),
    )


def creation_params(
    settings: DaytonaSettings, swarm: str, agent: str, name: str
) -> CreateSandboxFromSnapshotParams | CreateSandboxFromImageParams:
    """What a new sandbox is made with: its name, labels, snapshot or image (+ resources),
    auto-stop. No environment variables: credentials are given per command, never to the
    sandbox."""
    common: dict[str, Any] = {"name": name, "labels": sandbox_labels(swarm, agent)}
    if settings.auto_stop_interval is not None:
        common["auto_stop_interval"] = settings.auto_stop_interval
    if settings.image:
        resources = None
        if settings.cpu or settings.memory or settings.disk:
            resources = Resources(cpu=settings.cpu, memory=settings.memory, disk=settings.disk)
        return CreateSandboxFromImageParams(image=settings.image, resources=resources, **common)
    return CreateSandboxFromSnapshotParams(snapshot=settings.snapshot, **common)


def sdk_version() -> str | None:
    try:
        return importlib.metadata.version("daytona")
    except importlib.metadata.PackageNotFoundError:
        return None


def required_fields() -> dict[str, frozenset[str]]:
    """The JSON fields the installed SDK's models require, by model."""
    found: dict[str, frozenset[str]] = {}
    for name, model in (("Sandbox", SandboxModel), ("SandboxListItem", ListItemModel)):
        found[name] = frozenset(
            str(info.serialization_alias or info.alias or key)
            for key, info in model.model_fields.items()
            if info.is_required()
        )
    return found


# --- the backend ---------------------------------------------------------------------------------


class DaytonaBackend(Backend):
    name = "daytona"

    def __init__(self, settings: DaytonaSettings, *, secrets: Sequence[str] = ()) -> None:
        self.settings = settings
        self.secrets = tuple(dict.fromkeys([settings.api_key, *(s for s in secrets if s)]))
        self._client: AsyncDaytona | None = None
        self._sandboxes: dict[str, DaytonaSandbox] = {}
        self._pending: dict[tuple[str, str], str] = {}  # (swarm, agent) -> name being created
        self._probe: asyncio.Task[Verdict] | None = None

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
        self,
        action: str,
        fn: Callable[..., Awaitable[T]],
        *args: Any,
        api: Api = "rest",
        within: float | None = None,
        retry: bool = True,
        **kwargs: Any,
    ) -> T:
        """``await fn(*args, **kwargs)`` within ``within`` seconds (the request timeout by
        default): 429/502/503/504, an unreachable Daytona or no answer in time are tried again
        with backoff (``settings.retries`` times; not at all when ``retry`` is False: a call that
        must not run twice); any failure becomes a ``SandboxFailed`` saying what it means
        (``daytona_errors``, for the ``api`` called)."""
        attempt = 0
        limit = within or self.settings.request_timeout
        while True:
            attempt += 1
            try:
                async with asyncio.timeout(limit):
                    return await fn(*args, **kwargs)
            except asyncio.CancelledError:
                raise
            except SandboxFailed:
                raise
            except Exception as error:
                failure = classify(error, api)
                if failure.kind != "busy" or not retry or attempt > self.settings.retries:
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

    # --- the server and the SDK -------------------------------------------------------------

    async def check(self) -> str | None:
        """Why this backend cannot work with the server at hand (SDK line vs server line), or
        None when it fits (or cannot be told)."""
        verdict = await self.verdict()
        return None if verdict.fits else verdict.message

    async def verdict(self) -> Verdict:
        """The start-up probe's verdict (probed once, shared)."""
        if self._probe is None:
            self._probe = asyncio.ensure_future(self._probed())
        return await asyncio.shield(self._probe)

    async def _probed(self) -> Verdict:
        """What the server says of itself (/config's version) and what it sends (a page of
        sandboxes, read raw), judged against the installed SDK's models. Unreachable or refusing:
        the verdict cannot tell, and the calls that follow say what is wrong."""
        samples: dict[str, list[Mapping[str, object]]] = {}
        server_version: str | None = None
        headers = {"Authorization": f"Bearer {self.settings.api_key}"}
        base = self.settings.api_url
        query = {"labels": json.dumps({MANAGED_BY[0]: MANAGED_BY[1]}), "limit": "5"}
        try:
            timeout = aiohttp.ClientTimeout(total=min(self.settings.request_timeout, PROBE_TIMEOUT))
            async with aiohttp.ClientSession(timeout=timeout, trust_env=True) as http:
                async with http.get(f"{base}/config") as answer:
                    if answer.status == 200:
                        server_version = str((await answer.json()).get("version") or "") or None
                async with http.get(f"{base}/sandbox", params=query, headers=headers) as answer:
                    if answer.status == 200:
                        body = await answer.json()
                        items = body.get("items") if isinstance(body, dict) else None
                        if isinstance(items, list):
                            samples["SandboxListItem"] = [i for i in items if isinstance(i, dict)]
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            log.info("daytona.probe_incomplete", api_url=base, error=str(error))
        verdict = judge(
            api_url=base,
            sdk_version=sdk_version(),
            server_version=server_version,
            required=required_fields(),
            samples=samples,
        )
        if verdict.fits:
            log.info("daytona.server_checked", message=verdict.message)
        else:
            log.error("daytona.server_mismatch", error=verdict.message)
        return verdict

    async def checked(self) -> None:
        """Raise ``DaytonaSkew`` when the probe found the SDK does not fit the server."""
        verdict = await self.verdict()
        if not verdict.fits:
            raise DaytonaSkew(verdict.message)

    # --- finding, making, starting ----------------------------------------------------------

    async def create(self, swarm: str, agent: str, sandbox_id: str | None = None) -> DaytonaSandbox:
        """The agent's sandbox handle, at once; the sandbox itself is found or made in the
        background (that can take minutes: the agent's presence must not wait for it). Its first
        command waits for it; when Daytona cannot be reached or refuses, that command tries again
        and, failing, fails its task with the reason."""
        subjects.check_token(agent, "agent")
        if self._probe is None:
            self._probe = asyncio.ensure_future(self._probed())
        sandbox = self._sandboxes.get(agent)
        if sandbox is None or sandbox.swarm != swarm:
            sandbox = DaytonaSandbox(self, swarm, agent, sandbox_id)
            self._sandboxes[agent] = sandbox
        sandbox.prepare()
        return sandbox

    async def read(self, id_or_name: str) -> AsyncSandbox:
        """The sandbox with this id or name as the API has it now (a direct read: consistent,
        unlike the list); ``SandboxGone`` when the API does not know it. A fresh object each
        time: the 0.190 SDK's ``refresh_data`` does not update ``desired_state``."""
        return await self.call(f"reading sandbox {id_or_name}", self.client().get, id_or_name)

    async def get(self, id_or_name: str) -> AsyncSandbox | None:
        """``read``, or None when the API does not know the sandbox."""
        try:
            return await self.read(id_or_name)
        except SandboxGone:
            return None

    async def find(self, swarm: str, agent: str) -> AsyncSandbox | None:
        """The best usable sandbox labelled for the agent, if any: every page of the list (which
        is eventually consistent: a sandbox deleted moments ago may still be listed), each
        candidate read again before it is chosen."""
        client = self.client()
        query = ListSandboxesQuery(labels=sandbox_labels(swarm, agent))

        async def listed() -> list[AsyncSandbox]:
            return [found async for found in client.list(query)]

        found = await self.call("looking up the agent's sandbox", listed)
        listed_usable = [s for s in found if rank(seen(s)) is not None]
        if len(listed_usable) > 1:
            log.warning(
                "daytona.sandboxes_duplicate",
                swarm=swarm,
                agent=agent,
                sandboxes=[s.id for s in listed_usable],
            )
        for candidate in sorted(
            listed_usable, key=lambda s: (rank(seen(s)), str(getattr(s, "created_at", "") or ""))
        ):
            current = await self.get(candidate.id)  # None: listed, but gone (the list lags)
            if current is not None and rank(seen(current)) is not None:
                return current
        return None

    async def attach(
        self, swarm: str, agent: str, sandbox_id: str | None, deadline: float
    ) -> AsyncSandbox:
        """Find (``sandbox_id``; a creation under way; by labels) or make the agent's sandbox,
        and bring it to ``started`` by ``deadline``."""
        if sandbox_id:
            named = await self.get(sandbox_id)
            if named is None:
                log.warning("daytona.sandbox_id_unknown", agent=agent, sandbox=sandbox_id)
            elif rank(seen(named)) is None:
                log.warning(
                    "daytona.sandbox_id_unusable",
                    agent=agent,
                    sandbox=sandbox_id,
                    state=state_of(named),
                )
            else:
                named, _ = await self.bring_up(named, deadline)
                log.info("daytona.sandbox_attached", agent=agent, sandbox=named.id)
                return named
        pending = self._pending.get((swarm, agent))
        if pending is not None:
            made = await self.get(pending)
            if made is not None and rank(seen(made)) is not None:
                self._pending.pop((swarm, agent), None)
                made, _ = await self.bring_up(made, deadline)
                log.info("daytona.sandbox_found_by_name", agent=agent, sandbox=made.id)
                return made
        found = await self.find(swarm, agent)
        if found is not None:
            was = state_of(found)
            found, _ = await self.bring_up(found, deadline)
            log.info("daytona.sandbox_reused", swarm=swarm, agent=agent, sandbox=found.id, was=was)
            return found
        made = await self._make(swarm, agent, deadline)
        made, _ = await self.bring_up(made, deadline)
        log.info("daytona.sandbox_created", swarm=swarm, agent=agent, sandbox=made.id)
        return made

    async def _make(self, swarm: str, agent: str, deadline: float) -> AsyncSandbox:
        """Create the agent's sandbox, exactly once: under a name chosen first, so a creation
        whose answer is lost (timeout, dropped connection, 5xx) is found again -- by the id a
        ``DaytonaTimeoutError`` carries, else by that name -- before anything is created again."""
        key = (swarm, agent)
        name = self._pending.setdefault(key, sandbox_name(agent))
        params = creation_params(self.settings, swarm, agent, name)
        client = self.client()
        attempt = 0
        while True:
            attempt += 1
            wait_for = max(1.0, deadline - time.monotonic())
            try:
                made = await self.call(
                    "creating a sandbox",
                    client.create,
                    params,
                    within=wait_for + CALL_MARGIN,
                    retry=False,
                    timeout=wait_for,
                )
            except (DaytonaAuthRefused, DaytonaSkew):
                raise
            except SandboxFailed as error:  # no answer, 409 (the name is taken), a wait gone bad
                made_id = _sandbox_id(error) or name
                found = await self.get(made_id)
                if found is None and made_id != name:
                    found = await self.get(name)
                if found is not None:
                    self._pending.pop(key, None)
                    log.info(
                        "daytona.creation_found",
                        agent=agent,
                        sandbox=found.id,
                        after=scrub(error.reason, self.secrets),
                    )
                    return found
                if not isinstance(error, DaytonaUnavailable) or attempt > self.settings.retries:
                    raise
                wait = backoff(attempt, self.settings.retry_backoff, RETRY_CAP)
                log.warning("daytona.retry", action="creating a sandbox", error=error.reason)
                await asyncio.sleep(wait)
                continue
            self._pending.pop(key, None)
            return made

    async def bring_up(self, sandbox: AsyncSandbox, deadline: float) -> tuple[AsyncSandbox, bool]:
        """Bring ``sandbox`` to ``started`` by ``deadline``: start it (from stopped, archived,
        archiving, paused), wait out transitions (a start then would answer 409), recover a
        recoverable error. The sandbox as last read, and whether anything had to be done.
        ``SandboxGone`` when it is unusable."""
        waited = 0
        acted = False
        while True:
            now = seen(sandbox)
            step = next_step(now)
            if step == "ready":
                return sandbox, acted
            if step == "unusable":
                reason = getattr(sandbox, "error_reason", None)
                why = f" ({reason})" if reason else ""
                raise SandboxGone(f"Daytona sandbox {sandbox.id} is {now.state}{why}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SandboxFailed(
                    f"Daytona sandbox {sandbox.id} is still {now.state} (on its way to "
                    f"{now.desired or 'started'}) after {self.settings.timeout:g} s "
                    f"(daytona.timeout)"
                )
            acted = True
            if step in ("start", "recover"):
                verb = "starting" if step == "start" else "recovering"
                log.info(f"daytona.sandbox_{verb}", sandbox=sandbox.id, was=now.state)
                method = sandbox.start if step == "start" else sandbox.recover
                try:
                    await self.call(
                        f"{verb} sandbox {sandbox.id}",
                        method,
                        within=remaining + CALL_MARGIN,
                        timeout=max(1.0, remaining),
                    )
                except (DaytonaAuthRefused, DaytonaUnavailable, SandboxGone, DaytonaSkew):
                    raise
                except SandboxFailed as error:  # 409 (a transition under way), 400, a failed wait
                    log.info("daytona.sandbox_not_yet", sandbox=sandbox.id, reason=error.reason)
                    await asyncio.sleep(poll_interval(waited))
                    waited += 1
            else:
                await asyncio.sleep(poll_interval(waited))
                waited += 1
            sandbox = await self.read(sandbox.id)

    async def close(self) -> None:
        """Apply the shutdown policy to this executor's sandboxes, then close the client."""
        preparing = [s.preparing for s in self._sandboxes.values() if s.preparing is not None]
        for task in preparing:
            task.cancel()  # a sandbox made half-way is found by its name or labels next time
        await asyncio.gather(*preparing, return_exceptions=True)
        if self._probe is not None and not self._probe.done():
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)
        client, self._client = self._client, None
        if client is None:
            return
        policy = self.settings.shutdown
        remotes = [s.remote for s in self._sandboxes.values() if s.remote is not None]
        if policy != "keep" and remotes:
            await asyncio.gather(*(self._let_go(r, policy) for r in remotes))
        try:
            async with asyncio.timeout(self.settings.request_timeout):
                await client.close()
        except Exception as error:
            log.debug("daytona.client_not_closed", error=str(error))

    async def _let_go(self, remote: AsyncSandbox, policy: str) -> None:
        try:
            if policy == "stop":
                await self.call(
                    f"stopping sandbox {remote.id}",
                    remote.stop,
                    within=self.settings.timeout + CALL_MARGIN,
                    timeout=self.settings.timeout,
                )
            else:
                await self.remove(remote)
            log.info("daytona.sandbox_let_go", sandbox=remote.id, policy=policy)
        except SandboxFailed as error:
            log.warning("daytona.shutdown_failed", sandbox=remote.id, error=error.reason)

    async def remove(self, remote: AsyncSandbox) -> None:
        """Delete ``remote``; while a transition runs (409), wait for it to settle first."""
        deadline = time.monotonic() + self.settings.timeout
        waited = 0
        while True:
            try:
                await self.call(f"deleting sandbox {remote.id}", remote.delete)
                return
            except SandboxGone:
                return
            except DaytonaConflict:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(poll_interval(waited))
                waited += 1
                current = await self.get(remote.id)
                if current is None:
                    return
                remote = current


def _sandbox_id(error: BaseException) -> str | None:
    """The id a ``DaytonaTimeoutError`` carries (the SDK's create timed out after the sandbox
    was made; newer SDKs only)."""
    current: BaseException | None = error
    seen_ids: set[int] = set()
    while current is not None and id(current) not in seen_ids:
        seen_ids.add(id(current))
        value = getattr(current, "sandbox_id", None)
        if isinstance(value, str) and value:
            return value
        current = current.__cause__ or current.__context__
    return None


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
        self._restarts = 0  # how often it had to be brought up again
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
        """The started sandbox. Read again through the API unless it worked moments ago; gone:
        a new one is made and ``SandboxLost`` raised (the caller's attempt goes back to the
        queue)."""
        await self.backend.checked()
        lost: str | None = None
        old = self.id
        settings = self.backend.settings
        async with self._lock:
            remote = self.remote
            if remote is not None and time.monotonic() - self._checked < FRESH_SECONDS:
                return remote
            deadline = time.monotonic() + settings.timeout
            if remote is not None:
                try:
                    remote = await self.backend.read(remote.id)
                    if rank(seen(remote)) is None:
                        lost = f"it is {state_of(remote)}"
                    else:
                        remote, acted = await self.backend.bring_up(remote, deadline)
                        self.remote = remote
                        self._restarts += acted
                except SandboxGone as error:
                    lost = error.reason
                if lost is not None:
                    self.remote = None
                    self._found.clear()
                    log.warning("daytona.sandbox_lost", agent=self.agent, sandbox=old, why=lost)
            if self.remote is None:
                hint, self._hint = (self._hint if lost is None else None), None
                remote = await self.backend.attach(self.swarm, self.agent, hint, deadline)
                self.id = remote.id
                self.home, self.workdir = await self._directories(remote, deadline)
                self.remote = remote
            self._checked = time.monotonic()
            remote = self.remote
        if lost is not None:
            raise SandboxLost(
                f"Daytona sandbox {old} of agent {self.agent} is gone ({lost}); made "
                f"{self.id} in its place: the attempt goes back to the queue"
            )
        return remote

    async def _directories(self, remote: AsyncSandbox, deadline: float) -> tuple[str, str]:
        """The sandbox user's home and working directory (a sandbox just started may take a
        moment before its toolbox answers)."""
        waited = 0
        while True:
            try:
                home = await self.backend.call(
                    "reading the home directory", remote.get_user_home_dir, api="toolbox"
                )
                work = await self.backend.call(
                    "reading the work directory", remote.get_work_dir, api="toolbox"
                )
                home = home.rstrip("/") or "/"
                return home, work.rstrip("/") or home
            except ToolboxRefused:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(poll_interval(waited))
                waited += 1

    async def toolbox(
        self,
        action: str,
        fn: Callable[..., Awaitable[T]],
        *args: Any,
        within: float | None = None,
        retry: bool = True,
        **kwargs: Any,
    ) -> T:
        """A call to the sandbox's toolbox. Refused (400/401/403/404: the proxy's answer or the
        daemon's), the REST API says which: a bad key or a lost sandbox raise; a stopped sandbox
        is started and the call tried once more; a sandbox that is fine means the daemon refused
        (``DaemonRefused``, the caller's to read)."""
        try:
            result = await self.backend.call(
                action, fn, *args, api="toolbox", within=within, retry=retry, **kwargs
            )
        except ToolboxRefused as refused:
            if not await self.was_down():
                raise DaemonRefused(refused.reason, refused.message, refused.status) from refused
            try:
                result = await self.backend.call(
                    action, fn, *args, api="toolbox", within=within, retry=retry, **kwargs
                )
            except ToolboxRefused as again:
                raise DaemonRefused(again.reason, again.message, again.status) from again
        self._checked = time.monotonic()
        return result

    async def was_down(self) -> bool:
        """Read the sandbox through the REST API (raising when the key is refused or the sandbox
        is lost); whether it was not running (and was brought up)."""
        restarts = self._restarts
        self._checked = -math.inf
        await self.ready()
        return self._restarts != restarts

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
        """A one-shot command (the toolbox's process execution, run by the sandbox's shell): its
        exit code and output (stdout and stderr together)."""
        remote = await self.ready()
        seconds = max(1, math.ceil(timeout))
        response = await self.toolbox(
            action,
            remote.process.exec,
            command,
            cwd=self.workdir,
            env=dict(env) if env else None,
            within=seconds + CALL_MARGIN,
            timeout=seconds,
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
        """Delete the agent's sandbox (the one in use, else the one its labels find; nothing is
        made for this)."""
        remote = self.remote or await self.backend.find(self.swarm, self.agent)
        if remote is not None:
            await self.backend.remove(remote)
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
        remote = await self.ready()
        run = SessionRun(self, remote, on_output)
        return await run.run(
            argv,
            directory=self._path(cwd) if cwd else self.workdir,
            env=env,
            stdin=stdin,
            timeout=timeout,
            cancel=cancel,
            merge_stderr=merge_stderr,
        )

    # --- what a session run needs of its sandbox (``daytona_session.Host``) ------------------

    @property
    def retries(self) -> int:
        return self.backend.settings.retries

    @property
    def retry_backoff(self) -> float:
        return self.backend.settings.retry_backoff

    @property
    def api_url(self) -> str:
        return self.backend.settings.api_url

    @property
    def secrets(self) -> tuple[str, ...]:
        return self.backend.secrets

    async def direct(self, action: str, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """A toolbox call without the refusal check (the session's own clean-up)."""
        return await self.backend.call(action, fn, *args, api="toolbox")

    # --- git --------------------------------------------------------------------------------

    @staticmethod
    def _too_long(action: str, call: GitCall) -> GitFailed:
        return GitFailed(f"{action} failed: timed out (the git timeout is {call.timeout:g} s)")

    async def _git_ended(
        self, argv: list[str], action: str, call: GitCall, ok: Collection[int] = (0,)
    ) -> GitOutput:
        """One git command (or a small step around one) as a one-shot execution, within the
        operation's time, with its credentials and identity in its environment only: how it
        ended, or ``GitFailed`` with git's message unless its exit code is one of ``ok``. Every
        exec-based git operation of ``Sandbox`` (checkout, pull, status, ``git_run``,
        ``git_default_branch``...) runs through here."""
        remaining = call.deadline - time.monotonic()
        if remaining <= 0:
            raise self._too_long(action, call)
        try:
            code, output = await asyncio.wait_for(
                self._quick(
                    shlex.join(argv),
                    action,
                    timeout=remaining,
                    env=git.git_env(call.token, call.identity),
                ),
                remaining + CALL_MARGIN,
            )
        except TimeoutError as error:
            raise self._too_long(action, call) from error
        except DaemonRefused as error:
            if error.status == 408:
                raise self._too_long(action, call) from error
            raise GitFailed(git.failure(action, error.message, call.secrets)) from error
        text = output[-OUTPUT_KEPT:]
        if code not in ok:
            raise GitFailed(git.failure(action, text, call.secrets))
        return GitOutput(code if code is not None else -1, text)

    async def _git_api(
        self, action: str, call: GitCall, fn: Callable[..., Awaitable[T]], **kwargs: Any
    ) -> T:
        """A call to the toolbox's git API within the operation's time; a refusal of the daemon
        (401/403 credentials, 404 repository or branch, 409, 500) is git's failure, with its
        message."""
        remaining = call.deadline - time.monotonic()
        if remaining <= 0:
            raise self._too_long(action, call)
        try:
            return await self.toolbox(action, fn, within=remaining, **kwargs)
        except DaytonaUnavailable as error:
            if time.monotonic() >= call.deadline:
                raise self._too_long(action, call) from error
            raise
        except DaemonRefused as error:
            hint = ""
            if error.status in (401, 403):
                hint = " (the repository refused the credentials: check the project's token)"
            raise GitFailed(git.failure(action, error.message, call.secrets) + hint) from error

    async def git_clone(self, url: str, branch: str, path: str, call: GitCall) -> None:
        """Clone through the git API into ``<path>.partial``, rename it into place, and widen
        its fetch refspec (the daemon clones a single branch)."""
        git.check_url(url)
        git.check_branch(branch)
        remote = await self.ready()
        target = self._path(path)
        partial = f"{target}.partial"
        await self._git(["rm", "-rf", "--", partial], "cleaning up", call)
        login = {"username": git.TOKEN_USER, "password": call.token} if call.token else {}
        try:
            await self._git_api(
                "git clone", call, remote.git.clone, url=url, path=partial, branch=branch, **login
            )
            await self._git(["mv", "-T", "--", partial, target], "moving the clone", call)
        except GitFailed:
            with contextlib.suppress(Exception):
                await self._quick(f"rm -rf -- {shlex.quote(partial)}", "cleaning up")
            raise
        await self._git(all_branches_argv(path), "git config", call)

    async def git_checkout(self, url: str, branch: str, path: str, call: GitCall) -> None:
        """Point ``origin`` at ``url``, fetch every branch (a single-branch clone knows only its
        own), switch to ``branch``."""
        await self._git(git.set_origin_argv(path, url), "git remote set-url", call)
        await self._git(all_branches_argv(path), "git config", call)
        await self._git(git.fetch_argv(path), "git fetch", call)
        await self._git(git.checkout_argv(path, branch), "git checkout", call)

    async def git_pull(self, path: str, call: GitCall) -> None:
        """Fast-forward the checked-out branch to ``origin``'s same branch, named explicitly
        (a checkout made by the daemon may have no upstream configured)."""
        try:
            head = await self._git(
                ["git", "-C", path, "symbolic-ref", "--short", "HEAD"], "git pull", call
            )
        except GitFailed as error:
            raise GitFailed("git pull failed: the checkout is not on a branch") from error
        branch = head.strip().splitlines()[-1].strip() if head.strip() else ""
        await self._git(
            ["git", "-C", path, "pull", "--ff-only", "origin", branch], "git pull", call
        )


def all_branches_argv(path: str) -> list[str]:
    """Make ``origin`` fetch every branch (a single-branch clone fetches only its own)."""
    return [
        "git",
        "-C",
        path,
        "config",
        "--replace-all",
        "remote.origin.fetch",
        "+refs/heads/*:refs/remotes/origin/*",
    ]
