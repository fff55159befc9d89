"""`swarm doctor`: is this deployment healthy, and if not, what to do about it.

Reads the deployment over NATS (``services.bus.inspection``) and the gateway over HTTP, then
judges each part with the pure checks below and prints one line per check: ``✓`` fine, ``✗``
wrong (with the fix), ``?`` could not be told from here (with how to make it tellable). Exit 1
when any check is ``✗``.

Checked: NATS reachable; JetStream enabled; every stream and bucket provisioned with the
replicas this deployment should have (``SWARM_REPLICAS``, else 3 on a cluster of 3 or more,
else 1) and its replicas current; the event log append-only (deny delete, deny purge), with a
duplicate window and acknowledged only once on disk; every server fsyncing each write
(``sync_interval: always``, read from the monitoring port: ``NATS_MONITOR_URL``, else
``http://<nats host>:8222``); gateway, scheduler (with a leader), executor and chat heard from
and ready; every agent in the fold present (its executor's fresh presence key lists it); the
gateway's ``/health`` answering and the API token accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cli import envfile
from cli.api import Api
from schemas import subjects
from schemas.board import AgentView, SwarmView
from schemas.eligibility import untakeable
from schemas.errors import Invalid, SwarmError, Unauthorized
from services.bus import logs
from services.bus.connection import NatsOptions
from services.bus.inspection import BUCKET_STREAMS, EVENT_STREAMS, Facts, Stream, inspect
from services.bus.ready import FRESH_FOR, SERVICES
from services.bus.service import Readiness
from services.bus.streams import ASYNC_ON_ONE_NODE

OK, FAIL, UNKNOWN, WARN = "ok", "fail", "unknown", "warn"
MARKS = {OK: "✓", FAIL: "✗", UNKNOWN: "?", WARN: "!"}
DEFAULT_LEASE = 10.0
DEFAULT_PENDING_AFTER = 600.0  # seconds pending before a task is flagged
SHOWN = 5  # tasks or executors named in one line at most


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | fail | unknown
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class GatewayFacts:
    """What the gateway's HTTP edge answered."""

    url: str
    health: dict[str, Any] | None = None
    health_error: str | None = None
    token: str = "missing"  # accepted | refused | missing | unknown
    token_error: str | None = None


# --- the checks (pure) ------------------------------------------------------------------------


def expected_replicas(configured: int | None, cluster_size: int) -> int:
    if configured is not None:
        return configured
    return 3 if cluster_size >= 3 else 1


def cluster_size(facts: Facts) -> int:
    sizes = [facts.server.cluster_size if facts.server else 1]
    sizes += [m.cluster_size for m in facts.monitors if m.cluster_size]
    return max(sizes)


def nats_checks(facts: Facts, configured: int | None) -> list[Check]:
    if facts.error is not None or facts.server is None:
        return [
            Check(
                "NATS",
                FAIL,
                facts.error or f"cannot reach NATS at {facts.nats}",
                "start NATS (docker compose up -d nats; swarm up starts one), or point NATS_URL "
                "at a running server: NATS_URL=nats://host:4222[,nats://host2:4222]",
            )
        ]
    server = facts.server
    size = cluster_size(facts)
    where = f"cluster {server.cluster} of {size} servers" if server.cluster else "a single server"
    found = [
        Check(
            "NATS",
            OK,
            f"connected to {server.name} at {server.url} (nats-server {server.version}), {where}",
        )
    ]
    if facts.jetstream_error is not None:
        found.append(
            Check(
                "JetStream",
                FAIL,
                f"JetStream does not answer on {server.name}: {facts.jetstream_error}",
                "run nats-server with JetStream: `-js -sd /data` on its command line or "
                "`jetstream { store_dir: /data, sync_interval: always }` in its config",
            )
        )
        return found
    found.append(Check("JetStream", OK, "enabled"))
    if configured is not None and configured > size:
        found.append(
            Check(
                "replicas",
                FAIL,
                f"SWARM_REPLICAS={configured} but NATS has {size} server(s)",
                f"run a cluster of at least {configured} nodes (deploy/compose.cluster.yaml), "
                f"or set SWARM_REPLICAS={size} on every service",
            )
        )
    return found


def _replica_problems(stream: Stream) -> list[str]:
    problems = []
    for peer in stream.peers:
        if peer.offline:
            problems.append(f"replica on {peer.name} offline")
        elif not peer.current:
            problems.append(f"replica on {peer.name} behind by {peer.lag} operations")
    return problems


def stream_problems(name: str, stream: Stream, expected: int) -> list[tuple[str, str]]:
    """(what is wrong, how to fix it) for one provisioned stream."""
    found = []
    if stream.replicas != expected:
        found.append(
            (
                f"{stream.replicas} replica(s), expected {expected}",
                f"set SWARM_REPLICAS={expected} on every service and restart one (provisioning "
                f"updates the streams), or: nats stream edit {name} --replicas {expected}",
            )
        )
    for problem in _replica_problems(stream):
        found.append(
            (
                problem,
                "start the NATS node that is down; it catches up by itself "
                f"(watch: nats stream info {name})",
            )
        )
    if stream.storage != "file":
        found.append(
            (
                f"{stream.storage} storage (lost on restart)",
                f"recreate it with file storage: nats stream backup {name} DIR, then restore",
            )
        )
    if stream.persist_mode == "async" and name not in ASYNC_ON_ONE_NODE:
        found.append(
            (
                "persist_mode async: acknowledged before it is on disk",
                "set only when a stream is created: back it up, remove it, restore it with "
                "persist_mode default (nats stream restore DIR --config FILE)",
            )
        )
    if name == subjects.EVENTS_STREAM:
        if not (stream.deny_delete and stream.deny_purge):
            found.append(
                (
                    "not append-only (deny_delete and deny_purge must be on)",
                    "restart any Swarm service (provisioning turns them on), or: "
                    f"nats stream edit {name} --deny-delete --deny-purge",
                )
            )
        if stream.duplicate_window <= 0:
            found.append(
                (
                    "no duplicate window: a retried append could land twice",
                    f"nats stream edit {name} --dupe-window 2m",
                )
            )
    return found


def stream_checks(facts: Facts, expected: int) -> list[Check]:
    """One check per stream, one for all the buckets together."""
    found = []
    bucket_problems: list[str] = []
    for name in EVENT_STREAMS + BUCKET_STREAMS:
        stream = facts.streams.get(name)
        if name in facts.stream_errors:
            problems = [
                (
                    f"unreadable ({facts.stream_errors[name]})",
                    "a stream without a leader has lost its quorum: bring its NATS nodes back "
                    f"(nats stream info {name} shows which)",
                )
            ]
        elif stream is None:
            problems = [
                ("missing", "start any Swarm service: each provisions the streams and buckets")
            ]
        else:
            problems = stream_problems(name, stream, expected)
        if name in BUCKET_STREAMS:
            bucket_problems += [f"{name}: {problem}" for problem, _ in problems]
        elif problems:
            what = "; ".join(problem for problem, _ in problems)
            fixes = "; ".join(dict.fromkeys(fix for _, fix in problems))
            found.append(Check(name, FAIL, what, fixes))
        else:
            assert stream is not None
            detail = f"{stream.replicas} replica(s), all current"
            if name == subjects.EVENTS_STREAM:
                detail += (
                    f", append-only, duplicate window {stream.duplicate_window:g}s, "
                    f"{stream.messages} events"
                )
            found.append(Check(name, OK, detail))
    if bucket_problems:
        found.append(
            Check(
                "buckets",
                FAIL,
                "; ".join(bucket_problems),
                "start any Swarm service to create missing buckets; for replicas: nats stream "
                f"edit KV_<bucket> --replicas {expected}; for a node that is down: start it",
            )
        )
    else:
        found.append(
            Check(
                "buckets",
                OK,
                f"{len(BUCKET_STREAMS) - 1} KV buckets and the object store, "
                f"{expected} replica(s) each",
            )
        )
    return found


def fsync_check(facts: Facts) -> Check:
    size = cluster_size(facts)
    answered = [m for m in facts.monitors if m.error is None and m.jetstream]
    lazy = [m for m in answered if m.sync_always is False]
    if lazy:
        names = ", ".join(f"{m.server or m.url} (every {m.sync_interval or 0:g}s)" for m in lazy)
        return Check(
            "fsync",
            FAIL,
            f"not every write is fsynced on {names}: acknowledged events can be lost on power loss",
            "set `jetstream { sync_interval: always }` in that server's config and restart it",
        )
    fix = (
        "expose each server's monitoring port (http_port: 8222) and set NATS_MONITOR_URL="
        "http://host:8222[,http://host2:8222] where swarm doctor runs"
    )
    if not answered:
        tried = ", ".join(m.url for m in facts.monitors) or "none"
        return Check("fsync", UNKNOWN, f"unknown: no monitoring port answered (tried {tried})", fix)
    names = ", ".join(sorted(m.server or m.url for m in answered))
    if len({m.server or m.url for m in answered}) < size:
        return Check(
            "fsync",
            UNKNOWN,
            f"sync_interval always on {names}; the other servers of {size} were not checked",
            fix,
        )
    return Check("fsync", OK, f"sync_interval always on {names}")


def service_checks(facts: Facts, lease: float) -> list[Check]:
    if facts.services_error is not None:
        return [
            Check(
                service,
                UNKNOWN,
                f"unknown: the {subjects.SERVICES_BUCKET} bucket could not be read "
                f"({facts.services_error})",
                "run swarm doctor again; if it persists, see the buckets check above",
            )
            for service in SERVICES
        ]
    found = []
    alive = fresh_beats(facts)
    for service in SERVICES:
        mine = [b for b in alive if b.service == service]
        ready = [b for b in mine if b.ready]
        start = (
            f"start it: docker compose up -d {service} (or python -m services.{service} "
            "with NATS_URL set)"
        )
        if not mine:
            found.append(Check(service, FAIL, f"no {service} heard from in {FRESH_FOR:g}s", start))
            continue
        if not ready:
            found.append(
                Check(
                    service,
                    FAIL,
                    f"{len(mine)} up, none ready (still replaying the log, or stuck: see its logs)",
                    f"wait a moment; if it stays so: docker compose logs {service}",
                )
            )
            continue
        if service == "executor":  # one executor beats once, and once more per swarm it serves
            shown = sorted(by_executor(ready))
        else:
            shown = sorted(f"{b.instance}@{b.host}" for b in ready)
        detail = f"{len(shown)} ready ({', '.join(shown)})"
        if service == "scheduler" and facts.leases_error is not None:
            said = sorted(b.instance for b in ready if b.detail.get("leader"))
            found.append(
                Check(
                    service,
                    UNKNOWN,
                    f"{detail}; the leader lease could not be read ({facts.leases_error})"
                    + (f"; heartbeats name leader {', '.join(said)}" if said else ""),
                    f"run swarm doctor again; if it persists, see the {subjects.LEADER_BUCKET} "
                    "bucket above (nats kv ls)",
                )
            )
            continue
        if service == "scheduler":
            leaders = {
                key: held
                for key, held in facts.leases.items()
                if key.split(".")[0] == "scheduler" and facts.now - held.time <= lease
            }
            ours = {b.instance for b in ready}
            if not any(held.instance in ours for held in leaders.values()):
                found.append(
                    Check(
                        service,
                        FAIL,
                        f"{detail}, but none holds the leader lease ({subjects.LEADER_BUCKET})",
                        "wait one lease (SWARM_LEASE_SECONDS, 10 s); if it stays so, restart "
                        "the schedulers: docker compose restart scheduler scheduler-standby",
                    )
                )
                continue
            holder = sorted(held.instance for held in leaders.values())
            detail += f", leader {', '.join(holder)}"
        found.append(Check(service, OK, detail))
    return found


def fresh_beats(facts: Facts) -> list[Readiness]:
    return [b for b in facts.services if facts.now - b.time <= FRESH_FOR]


def by_executor(beats: list[Readiness]) -> dict[str, list[Readiness]]:
    """Executor heartbeats by the executor they come from (its process and each swarm it
    serves beat separately)."""
    found: dict[str, list[Readiness]] = {}
    for beat in beats:
        found.setdefault(str(beat.detail.get("executor") or beat.instance), []).append(beat)
    return found


def agent_check(facts: Facts, lease: float) -> Check:
    if facts.agents is None:
        return Check(
            "agents",
            UNKNOWN,
            f"unknown: the gateway did not list them over NATS ({facts.agents_error})",
            "start the gateway; it answers swarm.cmd.<swarm>.list_agents",
        )
    if not facts.agents:
        return Check(
            "agents",
            FAIL,
            "no agent in any swarm",
            "start an executor (it registers its agents), or register one: "
            "POST /swarms/<swarm>/agents",
        )
    problems = []
    for agent in facts.agents:
        name = f"{agent.swarm}/{agent.id}"
        if agent.executor is None:
            problems.append(f"{name} waits for an executor to take it up")
            continue
        if agent.status == "lost":
            problems.append(f"{name} is lost (executor {agent.executor} went away)")
            continue
        presence = facts.presence.get(subjects.presence_key(agent.swarm, agent.id))
        if facts.presence_error is not None:
            continue  # said once below: unknown, not missing
        if presence is None:
            problems.append(
                f"{name} is in no presence key (executor {agent.executor} does not list it)"
            )
        elif facts.now - presence.time > lease:
            problems.append(
                f"{name} last present {facts.now - presence.time:.0f}s ago "
                f"(executor {presence.executor})"
            )
    if problems and facts.presence_error is None:
        return Check(
            "agents",
            FAIL,
            "; ".join(problems),
            "start the executor hosting each (it refreshes their presence and takes back lost "
            "ones), or start more executors / raise SWARM_MAX_AGENTS for agents nobody hosts",
        )
    if facts.presence_error is not None:
        return Check(
            "agents",
            UNKNOWN if not problems else FAIL,
            "; ".join(
                [
                    *problems,
                    f"presence unknown: the {subjects.PRESENCE_BUCKET} bucket could "
                    f"not be read ({facts.presence_error})",
                ]
            ),
            "run swarm doctor again; if it persists, see the buckets check above",
        )
    return Check("agents", OK, f"{len(facts.agents)} present")


def _named(items: list[str]) -> str:
    shown = ", ".join(items[:SHOWN])
    return shown + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def _set(credentials: Any) -> dict[str, bool]:
    return (
        {str(k): bool(v) for k, v in credentials.items()} if isinstance(credentials, dict) else {}
    )


def runtime_check(facts: Facts) -> Check:
    """What each ready executor reports it can run (its heartbeat; names of credentials only):
    the claude binary and a credential for it (a failure only while claude tasks wait, else a
    warning), the backend's credentials and every project's token variable (failures)."""
    executors = [b for b in fresh_beats(facts) if b.service == "executor" and b.ready]
    if not executors:
        return Check("runtimes", UNKNOWN, "unknown: no ready executor to report them")
    claude_waiting = [t.id for t in facts.waiting or [] if t.runtime == "claude"]
    claude_problems, problems, unknown, fine = [], [], [], []
    for name, beats in sorted(by_executor(executors).items()):
        reports = [
            b.detail
            for b in beats
            if isinstance(b.detail.get("runtimes"), dict)
            and isinstance(b.detail["runtimes"].get("claude"), dict)
        ]
        if not reports:
            unknown.append(name)
            continue
        report = reports[0]  # one process: the same binary and environment for every swarm
        claude = report["runtimes"]["claude"]
        backend = str(report.get("backend") or "local")
        lacks = []
        if not claude.get("in_sandbox") and not claude.get("path"):
            lacks.append(f"no `{claude.get('bin') or 'claude'}` on its PATH")
        credentials = _set(claude.get("credentials"))
        if credentials and not any(credentials.values()):
            lacks.append(f"none of {' or '.join(credentials)} set")
        if lacks:
            claude_problems.append(f"{name}: {', '.join(lacks)}")
        for variable, present in _set(report.get("backend_credentials")).items():
            if not present:
                problems.append(f"{name}: {variable} not set (the {backend} backend needs it)")
        projects = {k: v for r in reports for k, v in _set(r.get("project_credentials")).items()}
        for variable, present in sorted(projects.items()):
            if not present:
                problems.append(f"{name}: {variable} not set (a project's credentials_ref)")
        where = (
            "in its sandboxes"
            if claude.get("in_sandbox")
            else (
                f"{claude.get('version') or 'claude'} at {claude.get('path')}"
                if claude.get("path")
                else "no claude"
            )
        )
        fine.append(f"{name} ({backend}: {where})")
    fix_claude = (
        "install Claude Code in the image (docker compose build --build-arg INSTALL_CLAUDE=1, "
        "or npm install -g @anthropic-ai/claude-code) or set SWARM_CLAUDE_BIN; give executors "
        "ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN"
    )
    fix = "set the variable in the executors' environment (compose: .env) and restart them"
    if problems or (claude_problems and claude_waiting):
        what = [*problems, *claude_problems]
        if claude_problems:
            what.append(f"{len(claude_waiting)} claude task(s) waiting ({_named(claude_waiting)})")
        return Check(
            "runtimes",
            FAIL,
            "; ".join(what),
            "; ".join([fix] + ([fix_claude] if claude_problems else [])),
        )
    if claude_problems:
        return Check(
            "runtimes",
            WARN,
            "; ".join(claude_problems) + ": claude tasks would fail there (shell tasks run)",
            fix_claude,
        )
    if unknown and not fine:
        return Check(
            "runtimes",
            UNKNOWN,
            f"unknown: executors {_named(unknown)} do not report what they can run",
            "upgrade them",
        )
    detail = "; ".join(fine) + (f"; {_named(unknown)} not reporting" if unknown else "")
    return Check("runtimes", OK, detail)


def task_checks(facts: Facts, pending_after: float) -> list[Check]:
    """Tasks no registered agent's skills can take (they wait forever: a failure) and tasks
    pending longer than ``pending_after`` seconds (flagged: a busy swarm queues)."""
    if facts.waiting is None or facts.agents is None:
        error = facts.waiting_error or facts.agents_error
        return [
            Check(
                "tasks",
                UNKNOWN,
                f"unknown: the gateway did not list them over NATS ({error})",
                "start the gateway; it answers swarm.cmd.<swarm>.list_tasks",
            )
        ]
    swarms: dict[str, SwarmView] = {}
    for agent in facts.agents:
        view = swarms.setdefault(agent.swarm, SwarmView(id=agent.swarm, name=agent.swarm))
        view.agents[agent.id] = AgentView(
            swarm=agent.swarm, id=agent.id, name=agent.id, skills=list(agent.skills)
        )
    for task in facts.waiting:
        view = swarms.setdefault(task.swarm, SwarmView(id=task.swarm, name=task.swarm))
        view.tasks[task.id] = task
    stuck = [
        f"{task.swarm}/{task.id} [{','.join(task.tags)}]"
        for view in swarms.values()
        for task in untakeable(view)
    ]
    found = []
    if stuck:
        found.append(
            Check(
                "tasks",
                FAIL,
                f"{len(stuck)} task(s) no agent's skills can take: {_named(stuck)}",
                "register an agent with one of those skills (POST /swarms/<swarm>/agents "
                '{"name": ..., "skills": [...]}) or change the task\'s tags (PUT '
                "/swarms/<swarm>/tasks/<id>)",
            )
        )
    else:
        found.append(Check("tasks", OK, f"{len(facts.waiting)} waiting, each takeable"))
    old = sorted(
        (
            t
            for t in facts.waiting
            if t.status == "pending" and facts.now - t.updated_at > pending_after
        ),
        key=lambda t: t.updated_at,
    )
    if old:
        oldest = facts.now - old[0].updated_at
        found.append(
            Check(
                "pending",
                WARN,
                f"{len(old)} task(s) pending over {pending_after:g}s (oldest {oldest:.0f}s): "
                f"{_named([f'{t.swarm}/{t.id}' for t in old])}",
                "more agents with those skills, or more executors (docker compose up -d "
                "--scale executor=N); swarm status shows who is busy",
            )
        )
    return found


def gateway_checks(gateway: GatewayFacts) -> list[Check]:
    found = []
    if gateway.health is None:
        found.append(
            Check(
                "gateway /health",
                FAIL,
                f"no answer at {gateway.url}/health: {gateway.health_error}",
                "start the gateway, or set SWARM_API_URL to where it listens "
                "(compose publishes it on 127.0.0.1:7700)",
            )
        )
    else:
        state = "all services ready" if gateway.health.get("ok") else "not all services ready"
        found.append(
            Check(
                "gateway /health",
                OK,
                f"{gateway.url} answers ({state}, NATS {gateway.health.get('nats', '?')})",
            )
        )
    if gateway.token == "accepted":
        found.append(Check("API token", OK, "accepted"))
    elif gateway.token == "missing":
        found.append(
            Check(
                "API token",
                FAIL,
                "SWARM_API_TOKEN is not set here",
                "export SWARM_API_TOKEN=<the gateway's token> (compose: the one in .env; "
                "swarm up: source .swarm/swarm.env)",
            )
        )
    elif gateway.token == "refused":
        found.append(
            Check(
                "API token",
                FAIL,
                f"the gateway refused it: {gateway.token_error}",
                "set SWARM_API_TOKEN to the token the gateway runs with",
            )
        )
    else:
        found.append(Check("API token", UNKNOWN, f"unknown: {gateway.token_error}", ""))
    return found


def judge(
    facts: Facts,
    gateway: GatewayFacts,
    *,
    replicas: int | None,
    lease: float,
    pending_after: float = DEFAULT_PENDING_AFTER,
) -> list[Check]:
    found = nats_checks(facts, replicas)
    if facts.error is None and facts.jetstream_error is None:
        found += stream_checks(facts, expected_replicas(replicas, cluster_size(facts)))
        found.append(fsync_check(facts))
        found += service_checks(facts, lease)
        found.append(agent_check(facts, lease))
        found.append(runtime_check(facts))
        found += task_checks(facts, pending_after)
    return found + gateway_checks(gateway)


def render(checks: list[Check]) -> str:
    lines = []
    for check in checks:
        lines.append(f"{MARKS[check.status]} {check.name}: {check.detail}")
        if check.fix and check.status != OK:
            lines.append(f"    fix: {check.fix}")
    failed = sum(c.status == FAIL for c in checks)
    unknown = sum(c.status == UNKNOWN for c in checks)
    warned = sum(c.status == WARN for c in checks)
    if failed:
        lines.append(f"{failed} problem(s) found.")
    else:
        notes = [f"{n} {what}" for n, what in ((unknown, "unknown"), (warned, "warning(s)")) if n]
        lines.append("All checks passed" + (f" ({', '.join(notes)})." if notes else "."))
    return "\n".join(lines)


# --- the edges --------------------------------------------------------------------------------


def read_health(base: str, timeout: float = 5.0) -> tuple[dict[str, Any] | None, str | None]:
    """``GET /health`` (no token): its JSON whether 200 (all ready) or 503 (not all)."""
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=timeout) as response:
            return json.loads(response.read()), None
    except urllib.error.HTTPError as error:
        try:
            return json.loads(error.read()), None
        except ValueError:
            return None, f"HTTP {error.code}"
    except (urllib.error.URLError, OSError, ValueError) as error:
        return None, str(getattr(error, "reason", error))


def probe_gateway(settings: envfile.Settings) -> GatewayFacts:
    api = Api(settings)
    health, error = read_health(api.base)
    if health is None:
        return GatewayFacts(
            url=api.base, health_error=error, token="unknown", token_error="no gateway answered"
        )
    if not settings.api_token:
        return GatewayFacts(url=api.base, health=health, token="missing")
    try:
        api.get("/swarms")
    except Unauthorized as refused:
        return GatewayFacts(
            url=api.base, health=health, token="refused", token_error=refused.message
        )
    except SwarmError as other:
        return GatewayFacts(url=api.base, health=health, token="unknown", token_error=other.message)
    return GatewayFacts(url=api.base, health=health, token="accepted")


def _setting(name: str, settings: envfile.Settings, environ: Mapping[str, str]) -> str | None:
    """A variable from the environment, else from the env file (as every swarm command)."""
    if environ.get(name):
        return environ[name]
    if settings.env_file is not None:
        return envfile.read(settings.env_file).get(name) or None
    return None


def _number(value: str | None, name: str, kind: type) -> Any:
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError as error:
        raise Invalid(name, f"{name} must be a number, not {value!r}") from error


def doctor_command(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    logs.configure("doctor", level="error", json=False)  # the report is the output
    settings = envfile.load_settings(environ)
    options = NatsOptions.from_env(args.nats_url or settings.nats_url, env=dict(environ))
    monitor = args.monitor_url or _setting("NATS_MONITOR_URL", settings, environ)
    monitor_urls = [u.strip() for u in monitor.split(",") if u.strip()] if monitor else None
    replicas = args.replicas or _number(
        _setting("SWARM_REPLICAS", settings, environ), "SWARM_REPLICAS", int
    )
    lease = _number(
        _setting("SWARM_LEASE_SECONDS", settings, environ), "SWARM_LEASE_SECONDS", float
    )
    facts = asyncio.run(inspect(options, monitor_urls))
    gateway = probe_gateway(settings)
    checks = judge(
        facts,
        gateway,
        replicas=replicas,
        lease=lease or DEFAULT_LEASE,
        pending_after=args.pending_after,
    )
    print(f"swarm doctor: NATS {facts.nats}, API {gateway.url}")
    print(render(checks))
    sys.stdout.flush()
    return 1 if any(c.status == FAIL for c in checks) else 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check NATS, the streams, the services and the agents; say what to fix",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--nats-url", help="NATS server(s), comma separated (default NATS_URL)")
    parser.add_argument(
        "--monitor-url",
        help="NATS monitoring URL(s), comma separated (default NATS_MONITOR_URL, else "
        "http://<each NATS host>:8222)",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        help="replicas the streams should have (default SWARM_REPLICAS, else 3 on a cluster "
        "of 3 or more, else 1)",
    )
    parser.add_argument(
        "--pending-after",
        type=float,
        default=DEFAULT_PENDING_AFTER,
        metavar="SECONDS",
        help=f"flag tasks pending longer than this (default {DEFAULT_PENDING_AFTER:g})",
    )
    parser.set_defaults(func=doctor_command)
