"""What a deployment looks like from the outside: the facts ``swarm doctor`` judges.

``inspect`` connects like any client, then reads: the server it reached (name, version,
cluster), whether JetStream answers, every stream and bucket Swarm provisions (config, replicas
and their health), the services' readiness heartbeats (an executor's says what it can run), the
leader leases, agent presence, the agents and the tasks not taken yet in the gateway's fold (over
its NATS micro endpoints) and, where a monitoring port answers, each server's JetStream settings
(``/varz``: whether it fsyncs every write).

Nothing here decides what is wrong; it only gathers. A fact that could not be read is ``None``
or empty with the reason beside it (``*_error``): an empty answer is never a failed read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import msgspec
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.js.errors import BucketNotFoundError, NotFoundError, ServiceUnavailableError

from schemas import subjects
from schemas.board import TaskView
from schemas.errors import SwarmError
from services.bus import micro
from services.bus.connection import NatsOptions, connect
from services.bus.leases import Lease
from services.bus.presence import Presence, agents_present
from services.bus.service import Bus, Readiness, latest_values, read_readiness

EVENT_STREAMS = (
    subjects.EVENTS_STREAM,
    subjects.CHAT_STREAM,
    subjects.LOGS_STREAM,
)
BUCKETS = (
    subjects.PRESENCE_BUCKET,
    subjects.SERVICES_BUCKET,
    subjects.SNAPSHOTS_BUCKET,
    subjects.LEADER_BUCKET,
    subjects.INBOX_BUCKET,
)
BUCKET_STREAMS = (*(f"KV_{bucket}" for bucket in BUCKETS), f"OBJ_{subjects.OUTPUT_STORE}")
MONITOR_PORT = 8222  # nats-server's conventional monitoring port


@dataclass(frozen=True)
class Server:
    name: str
    version: str
    cluster: str | None  # the cluster's name, None for a single server
    cluster_size: int  # servers this one knows of (itself included)
    url: str  # the server this client reached


@dataclass(frozen=True)
class Replica:
    name: str
    current: bool
    offline: bool
    lag: int


@dataclass(frozen=True)
class Stream:
    name: str
    replicas: int
    storage: str
    deny_delete: bool
    deny_purge: bool
    duplicate_window: float  # seconds
    persist_mode: str | None  # "async": acknowledged before it is on disk
    messages: int
    last_seq: int
    leader: str | None
    peers: tuple[Replica, ...] = ()  # the leader's followers


@dataclass(frozen=True)
class Agent:
    swarm: str
    id: str
    executor: str | None
    status: str
    skills: tuple[str, ...] = ()


@dataclass(frozen=True)
class Monitor:
    """One server's monitoring port: ``/varz`` and ``/jsz``."""

    url: str
    server: str | None = None
    jetstream: bool | None = None
    sync_always: bool | None = None
    sync_interval: float | None = None  # seconds, when not "always"
    cluster_size: int | None = None  # the JetStream meta group's size
    error: str | None = None


@dataclass
class Facts:
    nats: str  # the URL(s) asked, password masked
    now: float
    error: str | None = None  # NATS unreachable: nothing else was read
    server: Server | None = None
    jetstream_error: str | None = None
    streams: dict[str, Stream | None] = field(default_factory=dict)  # None: does not exist
    stream_errors: dict[str, str] = field(default_factory=dict)  # could not be read
    services: list[Readiness] = field(default_factory=list)
    services_error: str | None = None  # the heartbeats could not be read
    leases: dict[str, Lease] = field(default_factory=dict)
    leases_error: str | None = None  # the leader bucket could not be read
    presence: dict[str, Presence] = field(default_factory=dict)
    presence_error: str | None = None
    agents: list[Agent] | None = None
    agents_error: str | None = None
    waiting: list[TaskView] | None = None  # tasks not taken yet: blocked, pending, requeued
    waiting_error: str | None = None
    monitors: list[Monitor] = field(default_factory=list)


def monitor_urls_for(servers: list[str]) -> list[str]:
    """Where monitoring ports usually are: each NATS host on port 8222."""
    found = []
    for server in servers:
        host = urlsplit(server if "://" in server else f"nats://{server}").hostname
        if host:
            url = f"http://{host}:{MONITOR_PORT}"
            if url not in found:
                found.append(url)
    return found


def server_of(nc: NATS) -> Server:
    info: dict[str, Any] = getattr(nc, "_server_info", {}) or {}
    cluster = info.get("cluster") or None
    return Server(
        name=str(info.get("server_name") or info.get("server_id") or "?"),
        version=str(info.get("version") or "?"),
        cluster=cluster,
        cluster_size=max(len(info.get("connect_urls") or []), 1) if cluster else 1,
        url=str(nc.connected_url.netloc if nc.connected_url else "?"),
    )


def stream_of(info: Any) -> Stream:
    config, state, cluster = info.config, info.state, info.cluster
    peers = tuple(
        Replica(
            name=p.name,
            current=bool(p.current),
            offline=bool(p.offline),
            lag=int(p.lag or 0),
        )
        for p in ((cluster.replicas or []) if cluster else [])
    )
    storage = getattr(config.storage, "value", config.storage)
    return Stream(
        name=config.name,
        replicas=int(config.num_replicas or 1),
        storage=str(storage),
        deny_delete=bool(config.deny_delete),
        deny_purge=bool(config.deny_purge),
        duplicate_window=float(config.duplicate_window or 0.0),
        persist_mode=getattr(config, "persist_mode", None),
        messages=int(state.messages),
        last_seq=int(state.last_seq),
        leader=cluster.leader if cluster else None,
        peers=peers,
    )


T = TypeVar("T")


async def _bucket_values(bus: Bus, bucket: str, kind: type[T]) -> dict[str, T]:
    """Every value in ``bucket`` decoded as ``kind`` (no bucket: ``{}``); a failed read raises."""
    try:
        kv = await bus.kv(bucket)
    except BucketNotFoundError:
        return {}
    found: dict[str, T] = {}
    for key, value in (await latest_values(kv)).items():
        try:
            found[key] = msgspec.json.decode(value, type=kind)
        except msgspec.DecodeError:  # not ours
            continue
    return found


async def _agents_present(bus: Bus) -> dict[str, Presence]:
    """Every agent the executors' presence keys list (no bucket: ``{}``); a failed read
    raises."""
    try:
        kv = await bus.kv(subjects.PRESENCE_BUCKET)
    except BucketNotFoundError:
        return {}
    return agents_present(await latest_values(kv))


BUSY = (ServiceUnavailableError, NoRespondersError)  # JetStream's API not answering this moment


async def answered(read: Callable[[], Awaitable[T]], timeout: float) -> T:
    """``read()`` within ``timeout`` seconds, asked again while JetStream's API says it is
    unavailable (a server busy or electing a leader answers 503 or nobody answers): a doctor
    reporting "unknown" for one busy moment is a false alarm. Any other failure, or still
    unavailable when the time is up, raises."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pause = 0.05
    while True:
        try:
            return await asyncio.wait_for(read(), max(deadline - loop.time(), 0.001))
        except BUSY:
            if loop.time() + pause >= deadline:
                raise
            await asyncio.sleep(pause)  # a back-off between asks, not a wait for an event
            pause = min(pause * 2, 0.5)


def _failure(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".rstrip(": ")


WAITING = ("blocked", "pending", "requeued")  # tasks no agent has taken yet


async def _agents_and_waiting(nc: NATS) -> tuple[list[Agent], list[TaskView]]:
    """Every swarm's agents, and its tasks not taken yet, from the gateway's fold."""
    swarms = await micro.call(nc, subjects.command("_", "list_swarms"), {}, timeout=3.0)
    agents: list[Agent] = []
    waiting: list[TaskView] = []
    for swarm in swarms or []:
        listed = await micro.call(nc, subjects.command(swarm["id"], "list_agents"), {}, timeout=3.0)
        for agent in listed or []:
            agents.append(
                Agent(
                    swarm=swarm["id"],
                    id=agent["id"],
                    executor=agent.get("executor"),
                    status=str(agent.get("status") or "?"),
                    skills=tuple(agent.get("skills") or ()),
                )
            )
        for status in WAITING:
            tasks = await micro.call(
                nc, subjects.command(swarm["id"], "list_tasks"), {"status": status}, timeout=3.0
            )
            waiting += [msgspec.convert(task, TaskView) for task in tasks or []]
    return agents, waiting


async def monitor(session: aiohttp.ClientSession, url: str) -> Monitor:
    """One server's JetStream settings from its monitoring port."""
    base = url.rstrip("/")
    try:
        async with session.get(f"{base}/varz") as response:
            varz = await response.json(content_type=None)
        async with session.get(f"{base}/jsz") as response:
            jsz = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError, OSError) as error:
        return Monitor(url=url, error=f"{type(error).__name__}: {error}".rstrip(": "))
    jetstream = varz.get("jetstream") or {}
    config = jetstream.get("config") or {}
    interval = config.get("sync_interval")
    meta = jsz.get("meta_cluster") or {}
    return Monitor(
        url=url,
        server=varz.get("server_name"),
        jetstream=bool(config),
        sync_always=bool(config.get("sync_always")) if config else None,
        sync_interval=interval / 1e9 if isinstance(interval, int | float) else None,
        cluster_size=meta.get("cluster_size"),
    )


async def monitors(urls: list[str], timeout: float = 2.0) -> list[Monitor]:
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:
        return list(await asyncio.gather(*(monitor(session, url) for url in urls)))


async def inspect(
    options: NatsOptions, monitor_urls: list[str] | None = None, *, timeout: float = 5.0
) -> Facts:
    """Everything ``swarm doctor`` judges. ``monitor_urls`` None: guess ``http://<host>:8222``."""
    facts = Facts(nats=options.display, now=time.time())
    urls = monitor_urls if monitor_urls is not None else monitor_urls_for(options.servers)
    monitoring = asyncio.create_task(monitors(urls)) if urls else None
    try:
        nc = await connect(options, name="swarm-doctor", connect_timeout=2.0, initial_attempts=1)
    except SwarmError as error:
        facts.error = error.message
        facts.monitors = await monitoring if monitoring else []
        return facts
    bus = Bus(nc)
    try:
        facts.server = server_of(nc)
        try:
            await asyncio.wait_for(bus.js.account_info(), timeout)
        except Exception as error:
            facts.jetstream_error = f"{type(error).__name__}: {error}"
        if facts.jetstream_error is None:
            for name in EVENT_STREAMS + BUCKET_STREAMS:
                try:
                    info = await asyncio.wait_for(bus.js.stream_info(name), timeout)
                    facts.streams[name] = stream_of(info)
                except NotFoundError:
                    facts.streams[name] = None
                except Exception as error:  # no leader (quorum lost), timeout
                    facts.stream_errors[name] = _failure(error)
            try:
                facts.services = await answered(lambda: read_readiness(bus), timeout)
            except BucketNotFoundError:
                facts.services = []
            except Exception as error:  # the bucket has no leader this moment
                facts.services_error = _failure(error)
            try:
                facts.leases = await answered(
                    lambda: _bucket_values(bus, subjects.LEADER_BUCKET, Lease), timeout
                )
            except Exception as error:  # a timeout while a node is lost, no leader
                facts.leases_error = _failure(error)
            try:
                facts.presence = await answered(lambda: _agents_present(bus), timeout)
            except Exception as error:
                facts.presence_error = _failure(error)
        try:
            facts.agents, facts.waiting = await _agents_and_waiting(nc)
        except SwarmError as error:
            facts.agents_error = facts.waiting_error = error.message
        except msgspec.ValidationError as error:
            facts.agents_error = facts.waiting_error = f"unexpected answer: {error}"
        facts.now = time.time()
    finally:
        await bus.close()
        facts.monitors = await monitoring if monitoring else []
    return facts
