"""The scale benchmark (issue 15): many agents, many executors, a long history.

For each log size (finished tasks already in the log) the log is seeded once: real encoded
events (``swarm.created``, a seed agent, then each task's ``created``, ``claimed``, ``running``,
``completed``, and the seed agent deregistered) published straight to ``SWARM_EVENTS`` on one
connection (so in log order) by a nats-server without ``sync_interval: always`` (seeding only;
it is stopped cleanly, and every measurement runs on the embedded server's own configuration,
fsync per write). Each cell of the matrix then starts from a copy of that store:

1. the services as ``swarm up`` starts them (gateway, scheduler, chat, X executors hosting A
   agents between them on the ``instant`` runtime), until every agent is registered and idle;
2. claim latency at low load: tasks created one at a time over HTTP, each completed before the
   next; ``created -> claimed`` from stream timestamps (the server's clock when it stored each
   event). Next to it, in the same run, the raw reaction: a plain ordered consumer that answers
   each ``created`` on a stream configured like ``SWARM_EVENTS`` with one acked append
   (``claimed``, msg id + expected last sequence), timed the same way;
3. resident memory (VmRSS) of the scheduler, the gateway and the largest executor, and the
   snapshots in the ``swarm_snapshots`` bucket (bytes, object store included).

Cold start, per log size (and over a log of ``--cold-events`` events, 1M by default): the
services start on the seeded log (a full replay: no snapshot yet), a tail of events is appended
while they are down, and they start again: the time from spawning each process to its first
"ready" heartbeat, and the part of it before the service began (interpreter and imports). The
raw comparison: reading the snapshot bytes from the bucket plus the tail through a plain ordered
consumer, and reading the whole log that way.

Run: ``.venv/bin/python bench/scale.py [--quick]``. Method and measured numbers:
docs/benchmarks.md ("Scale").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import benchkit
from benchkit import Processes, ms, percentile, process_rss, service_env, times, verdict
from lifecycle import Api, Completions
from nats.js import api
from nats.js.errors import ObjectNotFoundError

from schemas import events as ev
from schemas import subjects
from schemas.board import Board
from schemas.fold import apply
from services.bus import embedded, logs
from services.bus.connection import NatsOptions
from services.bus.embedded import EmbeddedNats, free_port
from services.bus.projection import Projection, position
from services.bus.service import Bus, Readiness, latest_values
from services.bus.snapshots import collector_paused, object_name

SWARM = "bench"
SEED_AGENT = "seed-agent"
RAW_STREAM = "BENCH_RAW"
RAW_PREFIX = "bench.raw"
SEED_WINDOW = 20_000  # publishes awaiting their ack while seeding
CLAIM_P99 = 0.025  # seconds, at 1,000 agents and at 100k tasks in the log
CLAIM_SCALE = 2.0  # ... and within 2x of the 10-agent / 1k-task figure
RSS_TARGET = 200 * 1024 * 1024  # scheduler, 100k tasks in the log
COLD_TARGET = 2.0  # seconds from spawn to ready, from a snapshot over a 1M-event log
SERVICES = ("gateway", "scheduler", "chat", "executor")


# --- seeding -----------------------------------------------------------------------------------


def finished_task(index: int, now: float) -> list[ev.Event]:
    """One finished task's life, as the services write it (the seed agent does the work)."""
    task = f"seed-{index:07d}"
    common: dict[str, Any] = {"swarm": SWARM, "id": task, "time": now}
    agent: dict[str, Any] = {"agent": SEED_AGENT, "attempt": 1}
    return [
        ev.TaskCreated(
            **common,
            actor="user",
            title=f"seeded task {index}",
            prompt=f"seeded task {index}: a prompt of a realistic length, " + "x" * 80,
            runtime="instant",
        ),
        ev.TaskClaimed(**common, actor="scheduler:seed", **agent),
        ev.TaskRunning(**common, actor="executor:seed", executor="seed", **agent),
        ev.TaskCompleted(
            **common,
            actor="executor:seed",
            **agent,
            outcome=ev.RunOutcome(result="done", exit_code=0, duration_s=0.01),
        ),
    ]


def seed_events(tasks: int, first: int = 0, *, opening: bool = True) -> Iterator[ev.Event]:
    """The swarm and its seed agent (``opening``), ``tasks`` finished tasks, the agent gone."""
    now = time.time()
    agent: dict[str, Any] = {"swarm": SWARM, "id": SEED_AGENT, "time": now, "actor": "seed"}
    if opening:
        yield ev.SwarmCreated(swarm=SWARM, id=SWARM, time=now, actor="seed", name=SWARM)
    yield ev.AgentRegistered(**agent, name=SEED_AGENT)
    for index in range(first, first + tasks):
        yield from finished_task(index, now)
    yield ev.AgentDeregistered(**agent)


async def publish_in_order(bus: Bus, events: Iterator[ev.Event]) -> int:
    """Publish every event on one connection (the server stores them in that order), up to
    ``SEED_WINDOW`` awaiting their ack; returns how many. A refused one stops the run."""
    inbox = bus.nc.new_inbox()
    acked = 0
    refused: list[bytes] = []
    room = asyncio.Event()
    room.set()
    all_acked = asyncio.Event()
    finished = False
    sent = 0

    async def on_ack(msg: Any) -> None:
        nonlocal acked
        acked += 1
        if b'"error"' in msg.data:
            refused.append(msg.data)
        if sent - acked < SEED_WINDOW:
            room.set()
        if finished and acked >= sent:
            all_acked.set()

    sub = await bus.nc.subscribe(inbox, cb=on_ack)
    for event in events:
        subject = subjects.event(event.swarm, event.aggregate, event.id, event.verb)
        await bus.nc.publish(subject, ev.encode(event), reply=inbox)
        sent += 1
        if sent - acked >= SEED_WINDOW:
            room.clear()
            await room.wait()
        if refused:
            raise RuntimeError(f"the stream refused a seeded event: {refused[0]!r}")
    await bus.nc.flush()
    finished = True
    if acked >= sent:
        all_acked.set()
    try:
        await asyncio.wait_for(all_acked.wait(), 120)
    except TimeoutError:
        pass  # reported below
    await sub.unsubscribe()
    if acked < sent or refused:
        raise RuntimeError(f"seeding: {acked} of {sent} acked, refused: {refused[:1]}")
    return sent


@contextmanager
def without_fsync() -> Iterator[None]:
    """The embedded server's configuration minus ``sync_interval: always`` (seeding only)."""
    original = embedded.config_text

    def relaxed(**kwargs: Any) -> str:
        return original(**kwargs).replace("  sync_interval: always\n", "")

    embedded.config_text = relaxed
    try:
        yield
    finally:
        embedded.config_text = original


async def _seed(url: str, tasks: int) -> int:
    """Publish the log and save the snapshots a long-running deployment would have: the fold
    of the whole log (folded here as the events go out), under the scopes the services use."""
    bus = await Bus.connect(NatsOptions(servers=[url]), name="bench-seed")
    board = Board()

    def folded(events: Iterator[ev.Event]) -> Iterator[ev.Event]:
        for seq, event in enumerate(events, 1):  # a fresh stream: the n-th event is at n
            apply(board, event, seq)
            yield event

    try:
        await bus.provision()
        await benchkit.add_raw_stream(bus, RAW_STREAM, RAW_PREFIX)
        count = await publish_in_order(bus, folded(seed_events(tasks)))
        last = (await bus.js.stream_info(subjects.EVENTS_STREAM)).state.last_seq
        if last != count or board.seq != count:
            raise RuntimeError(f"seeded {count} events but the stream ends at {last}")
        for scope in ("all", SWARM):  # gateway/scheduler/chat, and the executors' swarm
            if not await bus.snapshots.save(scope, board):
                raise RuntimeError(f"the seeded snapshot for {scope} was not saved")
        return count
    finally:
        await bus.close()


def seed(root: Path, tasks: int) -> tuple[int, float]:
    """A store under ``root`` holding ``tasks`` finished tasks; (events, seconds)."""
    began = time.perf_counter()
    with without_fsync():
        server = EmbeddedNats(root).start()
    try:
        count = asyncio.run(_seed(server.url, tasks))
    finally:
        server.stop(60)
    return count, time.perf_counter() - began


# --- the services ------------------------------------------------------------------------------


def service_specs(root: Path, executors: int, agents: int) -> list[tuple[str, str, list[str]]]:
    """(label, service, flags) of each process: gateway, scheduler, chat, the executors."""
    specs: list[tuple[str, str, list[str]]] = [
        ("gateway", "gateway", []),
        ("scheduler", "scheduler", []),
        ("chat", "chat", []),
    ]
    per = [agents // executors + (1 if e < agents % executors else 0) for e in range(executors)]
    for e, count in enumerate(per):
        flags = [
            f"--executor-id=e{e}",
            f"--data-dir={root / 'data' / f'e{e}'}",
            f"--max-agents={max(count, 1)}",
            *(f"--agent=e{e}-a{a}:bench:bench" for a in range(count)),
        ]
        specs.append((f"executor-{e}", "executor", flags))
    return specs


def start_services(processes: Processes, executors: int, agents: int) -> None:
    for label, service, flags in service_specs(processes.root, executors, agents):
        processes.start(label, service, *flags)


async def start_one_by_one(
    processes: Processes, ready: ReadyWatch, executors: int, agents: int
) -> None:
    """Each service alone (the others up and idle), as when one process restarts; the
    executors last, together."""
    for label, service, flags in service_specs(processes.root, executors, agents):
        processes.start(label, service, *flags)
        if service == "executor":
            continue
        pid = processes.children[label].pid
        deadline = time.monotonic() + 600
        while pid not in ready.first_ready:
            processes.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{label} did not become ready within 600 s")
            await asyncio.sleep(0.05)


class ReadyWatch:
    """When each service process first said "ready" (the ``swarm_services`` bucket, watched)."""

    def __init__(self) -> None:
        self.first_ready: dict[int, Readiness] = {}  # pid -> its first ready heartbeat
        self._watcher: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, bus: Bus) -> None:
        kv = await bus.kv(subjects.SERVICES_BUCKET)
        self._watcher = await kv.watchall(ignore_deletes=True)
        self._task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        while True:
            entry = await self._watcher.updates(None)
            if entry is None or not entry.value:
                continue
            try:
                beat = json.loads(entry.value)
            except ValueError:
                continue
            if beat.get("ready") and beat["pid"] not in self.first_ready:
                self.first_ready[beat["pid"]] = Readiness(**beat)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._watcher is not None:
            await self._watcher.stop()

    def clear(self) -> None:
        self.first_ready.clear()


async def wait_ready(
    session: aiohttp.ClientSession,
    processes: Processes,
    ready: ReadyWatch,
    agents: int,
    timeout: float = 600,
) -> float:
    """Until every process said ready and every agent is registered and idle; seconds taken."""
    began = time.monotonic()
    deadline = began + timeout
    pids = {child.pid for child in processes.children.values()}
    idle: list[Any] = []
    while True:
        processes.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"not ready within {timeout:.0f} s: {len(pids & set(ready.first_ready))} of "
                f"{len(pids)} processes ready, {len(idle)} of {agents} agents registered and idle"
            )
        if pids <= set(ready.first_ready):
            try:
                async with session.get(f"/swarms/{SWARM}/agents") as response:
                    listed = await response.json() if response.status == 200 else []
                idle = [a for a in listed if a.get("status") == "idle" and a.get("executor")]
                if len(idle) >= agents:
                    return time.monotonic() - began
            except (aiohttp.ClientError, ValueError):
                pass
        await asyncio.sleep(0.2)


@dataclass
class ColdStart:
    """Per service: seconds from spawn to ready, of which before the service began."""

    ready: dict[str, float] = field(default_factory=dict)
    imports: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, processes: Processes, ready: ReadyWatch) -> ColdStart:
        out = cls()
        for label, child in processes.children.items():
            beat = ready.first_ready.get(child.pid)
            if beat is None:
                continue
            spawned = processes.spawned_at[label]
            kind = label.split("-")[0]
            took = beat.time - spawned
            if took > out.ready.get(kind, -1.0):  # the slowest of a kind
                out.ready[kind] = took
                out.imports[kind] = beat.started_at - spawned
        return out


# --- raw JetStream -----------------------------------------------------------------------------


async def raw_reactions(bus: Bus, count: int, label: str) -> list[float]:
    """``created -> claimed`` with nothing in between but one ordered consumer and one acked
    append: the floor the scheduler's reaction is compared with (stream timestamps)."""
    answered: dict[str, asyncio.Future[int]] = {}

    async def on_created(msg: Any) -> None:
        event = ev.decode(msg.data)
        task = f"{RAW_PREFIX}.{event.swarm}.task.{event.id}"
        claim = ev.TaskClaimed(
            swarm=event.swarm, id=event.id, time=time.time(), actor="raw", agent="a", attempt=1
        )
        ack = await bus.js.publish(
            f"{task}.claimed",
            ev.encode(claim),
            stream=RAW_STREAM,
            headers={
                "Nats-Msg-Id": claim.event_id,
                "Nats-Expected-Last-Subject-Sequence": str(msg.metadata.sequence.stream),
                "Nats-Expected-Last-Subject-Sequence-Subject": f"{task}.*",
            },
        )
        answered[event.id].set_result(ack.seq)

    sub = await bus.js.subscribe(
        f"{RAW_PREFIX}.{SWARM}.task.*.created",
        stream=RAW_STREAM,
        cb=on_created,
        ordered_consumer=True,
        config=api.ConsumerConfig(deliver_policy=api.DeliverPolicy.NEW),
    )
    pairs = []
    try:
        for i in range(count):
            task_id = f"{label}-{i}"
            answered[task_id] = asyncio.get_running_loop().create_future()
            created = ev.TaskCreated(
                swarm=SWARM, id=task_id, time=time.time(), actor="raw", title="raw"
            )
            subject = f"{RAW_PREFIX}.{SWARM}.task.{task_id}"
            ack = await bus.js.publish(
                f"{subject}.created",
                ev.encode(created),
                stream=RAW_STREAM,
                headers={
                    "Nats-Msg-Id": created.event_id,
                    "Nats-Expected-Last-Subject-Sequence": "0",
                    "Nats-Expected-Last-Subject-Sequence-Subject": f"{subject}.*",
                },
            )
            claimed = await asyncio.wait_for(answered[task_id], 10)
            pairs.append((ack.seq, claimed))
    finally:
        await sub.unsubscribe()
    out = []
    for created_seq, claimed_seq in pairs:
        a = await bus.js.get_msg(RAW_STREAM, created_seq)
        b = await bus.js.get_msg(RAW_STREAM, claimed_seq)
        assert a.time is not None and b.time is not None
        out.append((b.time - a.time).total_seconds())
    return out


async def raw_read(bus: Bus, start_seq: int) -> tuple[float, int]:
    """Seconds for a plain ordered consumer to deliver ``SWARM_EVENTS`` from ``start_seq`` to
    its end to a callback that only counts; and how many."""
    info = await bus.js.stream_info(subjects.EVENTS_STREAM)
    last = info.state.last_seq
    if start_seq > last:
        return 0.0, 0
    done = asyncio.get_running_loop().create_future()
    count = 0

    async def on_msg(msg: Any) -> None:
        nonlocal count
        count += 1
        if position(msg)[0] >= last and not done.done():
            done.set_result(None)

    began = time.perf_counter()
    sub = await bus.js.subscribe(
        subjects.EVENTS_ALL,
        stream=subjects.EVENTS_STREAM,
        cb=on_msg,
        ordered_consumer=True,
        pending_msgs_limit=1 << 21,
        config=api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_seq
        ),
    )
    await asyncio.wait_for(done, 600)
    took = time.perf_counter() - began
    await sub.unsubscribe()
    return took, count


async def projection_replay(bus: Bus) -> float:
    """Seconds for a ``Projection`` without a snapshot to fold the whole log (this process)."""
    began = time.perf_counter()
    projection = Projection(bus.js)
    with collector_paused():  # as a service process replays
        await projection.start()
        await projection.wait_ready(900)
    took = time.perf_counter() - began
    await projection.stop()
    return took


@dataclass
class SnapshotInfo:
    key: str
    seq: int
    bytes: int


async def snapshots(bus: Bus) -> list[SnapshotInfo]:
    """Every snapshot in the bucket, with its size (the object's when it is stored there)."""
    kv = await bus.kv(subjects.SNAPSHOTS_BUCKET)
    for _ in range(10):  # a snapshot replaced (its object deleted) while listing: list again
        out = []
        try:
            for key, value in (await latest_values(kv)).items():
                head = value.partition(b"\n")[0]
                size = len(value)
                name = object_name(value)
                if name is not None:
                    store = await bus.js.object_store(subjects.SNAPSHOT_STORE)
                    size = (await store.get_info(name)).size or 0
                out.append(SnapshotInfo(key, int(head) if head.isdigit() else 0, size))
        except ObjectNotFoundError:
            continue
        return sorted(out, key=lambda s: s.key)
    return []


async def raw_snapshot_read(bus: Bus, key: str) -> float:
    """Seconds to fetch one snapshot's bytes (KV entry, then the object if it points to one,
    its chunks through a pull consumer as the services read them; nats-py's ``get`` took ~0.3 s
    of a 3-5 MB board waiting on its ordered consumer)."""
    began = time.perf_counter()
    kv = await bus.kv(subjects.SNAPSHOTS_BUCKET)
    entry = await kv.get(key)
    name = object_name(entry.value or b"")
    if name is not None:
        await bus.snapshots.read_object(name)
    return time.perf_counter() - began


async def wait_snapshots(bus: Bus, at_least: int, timeout: float = 300) -> list[SnapshotInfo]:
    """Until the gateway's/scheduler's (``all``) and the executors' (``bench``) snapshots
    include log position ``at_least``."""
    deadline = time.monotonic() + timeout
    while True:
        found = await snapshots(bus)
        scopes = {s.key.rsplit(".", 1)[-1] for s in found if s.seq >= at_least}
        if {"all", SWARM} <= scopes or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.5)


# --- one cell ----------------------------------------------------------------------------------


@dataclass
class Cell:
    log_tasks: int
    log_events: int
    agents: int
    executors: int
    startup: float = 0.0  # seconds until every agent was registered and idle
    claims: list[float] = field(default_factory=list)
    raw_claims: list[float] = field(default_factory=list)
    rss: dict[str, int] = field(default_factory=dict)
    snapshots: list[SnapshotInfo] = field(default_factory=list)
    first_start: ColdStart | None = None  # from the seeded snapshot (a long-running swarm)
    cold: ColdStart | None = None  # from a snapshot + a tail
    tail: int = 0
    raw_full_read: float = 0.0
    full_replay: float = math.nan  # a Projection folding the whole log, no snapshot
    raw_cold: float = 0.0  # snapshot bytes + the tail, raw
    failed: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # label -> CPU seconds in the claim run


async def claim_latencies(
    bus: Bus, api_: Api, completions: Completions, count: int, first: int
) -> list[float]:
    """``created -> claimed`` of ``count`` tasks created one at a time (stream timestamps)."""
    start = (await bus.js.stream_info(subjects.EVENTS_STREAM)).state.last_seq + 1
    ids = []
    for i in range(count):
        ids.append(await api_.create(first + i))
        await completions.wait(ids[-1], timeout=60)
    wanted = set(ids)
    times_of: dict[str, dict[str, float]] = {}
    done = asyncio.get_running_loop().create_future()

    async def on_msg(msg: Any) -> None:
        _, _, _, _, task_id, verb = msg.subject.split(".")
        if task_id in wanted and verb in ("created", "claimed"):
            times_of.setdefault(task_id, {}).setdefault(verb, msg.metadata.timestamp.timestamp())
            if verb == "claimed":
                wanted.discard(task_id)
                if not wanted and not done.done():
                    done.set_result(None)

    sub = await bus.js.subscribe(
        f"swarm.evt.{SWARM}.task.>",
        stream=subjects.EVENTS_STREAM,
        cb=on_msg,
        ordered_consumer=True,
        config=api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start
        ),
    )
    try:
        await asyncio.wait_for(done, 60)
    finally:
        await sub.unsubscribe()
    return [t["claimed"] - t["created"] for t in times_of.values()]


async def run_cell(
    cell: Cell, store: Path, root: Path, args: argparse.Namespace, *, cold: bool
) -> Cell:
    """One cell on a copy of ``store``: start, measure, (``cold``: restart from a snapshot)."""
    name = f"cell-{cell.log_tasks}-{cell.agents}-{cell.executors}"
    data, again = root / name, 2
    while data.exists():  # kept (--keep) from an earlier cell of the same shape
        data, again = root / f"{name}-{again}", again + 1
    shutil.copytree(store, data / "server")
    server = EmbeddedNats(data / "server").start(60)
    port = free_port()
    env = service_env(server.url, port, data / "data", SWARM, args.log_level)
    if args.cpu_profile:  # bench/cpu_profile's sitecustomize.py, one folder per cell
        out = Path(args.cpu_profile) / data.name  # made absolute in main
        out.mkdir(parents=True, exist_ok=True)
        env["SWARM_BENCH_CPU_PROFILE"] = str(out)
        sampler = Path(__file__).parent / "cpu_profile"
        env["PYTHONPATH"] = os.pathsep.join([str(sampler), env["PYTHONPATH"]])
    processes = Processes(data, env)
    assert server.process is not None
    processes.others["nats-server"] = server.process.pid
    bus = await Bus.connect(NatsOptions(servers=[server.url]), name="bench")
    ready = ReadyWatch()
    headers = {"Authorization": f"Bearer {env['SWARM_API_TOKEN']}"}
    try:
        await ready.start(bus)
        completions = Completions()
        await completions.start(bus)
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", headers=headers) as session:
            start_services(processes, cell.executors, cell.agents)
            cell.startup = await wait_ready(
                session, processes, ready, cell.agents, args.ready_timeout
            )
            cell.first_start = ColdStart.of(processes, ready)
            api_ = Api(session, "")
            await claim_latencies(bus, api_, completions, args.warmup, 0)
            if args.cpu_profile:
                processes.signal_all(signal.SIGUSR1)  # bench/cpu_profile: start sampling
            cpu_before = processes.cpu()
            cell.claims = await claim_latencies(bus, api_, completions, args.claims, args.warmup)
            cpu_after = processes.cpu()
            if args.cpu_profile:
                processes.signal_all(signal.SIGUSR2)  # stop, and write the stacks
            cell.cpu = {label: cpu_after[label] - cpu_before[label] for label in cpu_before}
            cell.raw_claims = await raw_reactions(bus, args.claims, f"raw-{data.name}")
            for label, child in processes.children.items():
                kind = label.split("-")[0]
                cell.rss[kind] = max(cell.rss.get(kind, 0), process_rss(child.pid))
            assert server.process is not None
            cell.rss["nats-server"] = process_rss(server.process.pid)
            if cold:
                last = (await bus.js.stream_info(subjects.EVENTS_STREAM)).state.last_seq
                await wait_snapshots(bus, cell.log_events)
                processes.stop()
                # a tail the services have not seen: more finished tasks, appended meanwhile
                cell.tail = await publish_in_order(
                    bus, seed_events(args.tail_tasks, cell.log_tasks, opening=False)
                )
                ready.clear()
                await start_one_by_one(processes, ready, cell.executors, cell.agents)
                await wait_ready(session, processes, ready, cell.agents)
                cell.cold = ColdStart.of(processes, ready)
                found = await snapshots(bus)
                board = next((s for s in found if s.key.endswith(".all")), None)
                if board is not None:
                    tail_from = min(board.seq, last) + 1
                    cell.raw_cold = await raw_snapshot_read(bus, board.key)
                    cell.raw_cold += (await raw_read(bus, tail_from))[0]
                cell.raw_full_read = (await raw_read(bus, 1))[0]
                if cell.log_events <= args.replay_limit:
                    cell.full_replay = await projection_replay(bus)
            cell.snapshots = await snapshots(bus)
            cell.failed = len(completions.failed)
    finally:
        processes.stop()
        await ready.stop()
        await bus.close()
        server.stop(60)
        if not args.keep:
            shutil.rmtree(data, ignore_errors=True)
    return cell


# --- report ------------------------------------------------------------------------------------


def mib(size: int) -> str:
    if size < 1024 * 1024:
        return f"{size / 1024:,.0f} KiB"
    return f"{size / (1024 * 1024):,.1f} MiB"


def p(values: list[float], q: float) -> float:
    return percentile(values, q) if values else float("nan")


def report(cells: list[Cell], args: argparse.Namespace) -> list[str]:
    lines = []
    lines.append(
        "\nClaim latency at low load (created -> claimed, stream timestamps; raw: one ordered "
        "consumer answering with one acked append)"
    )
    lines.append(
        f"  {'log tasks':>9} {'agents':>6} {'exec':>4} {'p50':>8} {'p90':>8} {'p99':>8} "
        f"{'raw p50':>8} {'raw p99':>8} {'p99/raw':>7} {'sched RSS':>10} {'gw RSS':>9} "
        f"{'exec RSS':>9} {'startup':>8}"
    )
    for c in cells:
        lines.append(
            f"  {c.log_tasks:>9,} {c.agents:>6} {c.executors:>4} {ms(p(c.claims, 50)):>8} "
            f"{ms(p(c.claims, 90)):>8} {ms(p(c.claims, 99)):>8} {ms(p(c.raw_claims, 50)):>8} "
            f"{ms(p(c.raw_claims, 99)):>8} "
            f"{times(p(c.claims, 99) / p(c.raw_claims, 99)):>7} "
            f"{mib(c.rss.get('scheduler', 0)):>10} "
            f"{mib(c.rss.get('gateway', 0)):>9} {mib(c.rss.get('executor', 0)):>9} "
            f"{c.startup:>7.1f}s" + (f"  {c.failed} failed" if c.failed else "")
        )
    lines.append(
        "\nCPU per task in the claim run (ms; each task created, claimed, run and completed, "
        "one at a time)"
    )
    lines.append(
        f"  {'log tasks':>9} {'agents':>6} {'exec':>4} {'scheduler':>9} {'gateway':>8} "
        f"{'executors':>9} {'one exec':>8} {'nats':>6} {'all':>6}"
    )
    for c in cells:
        if not c.cpu or not c.claims:
            continue
        per = 1000 / len(c.claims)
        executors = [v for k, v in c.cpu.items() if k.startswith("executor")]
        lines.append(
            f"  {c.log_tasks:>9,} {c.agents:>6} {c.executors:>4} "
            f"{c.cpu.get('scheduler', math.nan) * per:>9.2f} "
            f"{c.cpu.get('gateway', math.nan) * per:>8.2f} {sum(executors) * per:>9.2f} "
            f"{(sum(executors) / max(len(executors), 1)) * per:>8.2f} "
            f"{c.cpu.get('nats-server', math.nan) * per:>6.2f} {sum(c.cpu.values()) * per:>6.2f}"
        )
    lines.append("  (one exec: the executors' mean)")
    lines.append("\nSnapshots (bytes as stored, object store included) and cold start")
    lines.append(
        f"  {'log events':>10} {'snapshot all':>13} {'snapshot swarm':>15} {'tail':>6} "
        + " ".join(f"{s + ' first/snap':>22}" for s in SERVICES)
        + f" {'raw snap+tail':>13} {'replay':>8} {'raw full':>9}"
    )
    for c in cells:
        if c.cold is None or c.first_start is None:
            continue
        snaps = {s.key.rsplit(".", 1)[-1]: s.bytes for s in c.snapshots}
        first, cold = c.first_start, c.cold
        lines.append(
            f"  {c.log_events:>10,} {mib(snaps.get('all', 0)):>13} "
            f"{mib(snaps.get(SWARM, 0)):>15} {c.tail:>6} "
            + " ".join(
                f"{first.ready.get(s, math.nan):>7.2f}s / {cold.ready.get(s, math.nan):>5.2f}s"
                f" ({cold.imports.get(s, math.nan):.2f})"
                for s in SERVICES
            )
            + f" {ms(c.raw_cold):>13} {c.full_replay:>7.2f}s {c.raw_full_read:>8.2f}s"
        )
    lines.append(
        "  (first: all services started at once on the seeded snapshot; snap: each restarted "
        "alone from the snapshot + tail, in brackets the part before the service began: "
        "interpreter and imports; replay: a Projection folding the whole log without a "
        "snapshot, in this process; raw: plain ordered consumers, same log)"
    )
    lines.append("\nTargets")
    base = next(
        (
            c
            for c in cells
            if c.agents == min(a for a in args.agents) and c.log_tasks == min(args.logs)
        ),
        None,
    )
    base_p99 = p(base.claims, 99) if base else float("nan")
    for c in cells:
        if c.agents == max(args.agents) or c.log_tasks == max(args.logs):
            high = p(c.claims, 99)
            ok = high <= CLAIM_P99 and high <= CLAIM_SCALE * base_p99
            lines.append(
                f"  claim p99 {c.agents} agents / {c.executors} executors / {c.log_tasks:,} tasks: "
                f"{ms(high)} vs {ms(base_p99)} at the base cell  "
                f"{verdict(ok, '<= 25 ms and <= 2x the 10-agent/1k-task p99')}"
            )
    for c in cells:
        if c.log_tasks == max(args.logs):
            rss = c.rss.get("scheduler", 0)
            lines.append(
                f"  scheduler RSS at {c.log_tasks:,} tasks ({c.agents} agents): {mib(rss)}  "
                f"{verdict(rss <= RSS_TARGET, '<= 200 MiB')}"
            )
    for c in cells:
        if c.cold is not None:
            worst = max(c.cold.ready.values()) if c.cold.ready else math.nan
            own = max((c.cold.ready[k] - c.cold.imports[k] for k in c.cold.ready), default=math.nan)
            lines.append(
                f"  slowest service ready from a snapshot over {c.log_events:,} events: "
                f"{worst:.2f} s from spawn, {own:.2f} s from the service's start (after "
                f"interpreter and imports)  "
                f"{verdict(worst <= COLD_TARGET, '<= 2 s from spawn (target at 1M events)')} "
                f"{verdict(own <= COLD_TARGET, '<= 2 s from start')}"
            )
    return lines


# --- the run -----------------------------------------------------------------------------------


def plan(args: argparse.Namespace) -> list[tuple[int, int, int, bool]]:
    """(log tasks, agents, executors, cold start?) cells. Every log: the smallest fleet on one
    executor (with the cold start); the shortest log: a middle fleet and the largest fleet on
    the most executors. ``--matrix``: every agents x executors cell on the shortest log, and
    the largest fleet on the longest log too."""
    small, big = min(args.agents), max(args.agents)
    shortest, longest = min(args.logs), max(args.logs)
    cells: list[tuple[int, int, int, bool]] = []
    for log_tasks in sorted(args.logs):
        cells.append((log_tasks, small, 1, True))
        if log_tasks == shortest:
            if args.matrix:
                cells += [
                    (log_tasks, agents, executors, False)
                    for agents in sorted(args.agents)
                    for executors in sorted(args.executors)
                    if executors <= agents and (agents, executors) != (small, 1)
                ]
                continue
            middle = sorted(args.agents)[len(args.agents) // 2]
            if middle not in (small, big):
                cells.append((log_tasks, middle, sorted(args.executors)[1], False))
        if (log_tasks == shortest or (args.matrix and log_tasks == longest)) and big != small:
            cells.append((log_tasks, big, max(args.executors), False))
    return cells


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="a small matrix (minutes, not an hour)"
    )
    parser.add_argument("--logs", type=int, nargs="+", help="finished tasks in the log")
    parser.add_argument("--agents", type=int, nargs="+", help="agents in the fleet")
    parser.add_argument("--executors", type=int, nargs="+", help="executor processes")
    parser.add_argument("--cold-events", type=int, help="the log for the last cold start (1M)")
    parser.add_argument("--claims", type=int, help="tasks in each low-load claim run")
    parser.add_argument("--warmup", type=int, default=10, help="tasks before each claim run")
    parser.add_argument("--tail-tasks", type=int, default=250, help="finished tasks in the tail")
    parser.add_argument("--log-level", default="info", help="the services' log level")
    parser.add_argument(
        "--ready-timeout",
        type=float,
        default=300,
        help="seconds for the services to have every agent idle (else the cell fails)",
    )
    parser.add_argument(
        "--matrix", action="store_true", help="every agents x executors cell on the shortest log"
    )
    parser.add_argument(
        "--replay-limit",
        type=int,
        default=500_000,
        help="time a full replay without snapshot (this process) up to this many events",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    parser.add_argument(
        "--cpu-profile",
        metavar="DIR",
        help="sample each service's CPU time during each cell's claim run (bench/cpu_profile; "
        "collapsed stacks in DIR/<cell>, summed up by bench/cpu_profile/top.py)",
    )
    parser.add_argument(
        "--no-cold",
        action="store_true",
        help="no cold starts: only the claim cells (for A/B runs of claim latency)",
    )
    args = parser.parse_args(argv)
    if args.cpu_profile:
        args.cpu_profile = str(Path(args.cpu_profile).resolve())
    if args.quick:
        defaults = {
            "logs": [1_000, 10_000],
            "agents": [10, 100],
            "executors": [1, 4],
            "cold_events": 100_000,
            "claims": 50,
        }
    else:
        defaults = {
            "logs": [1_000, 10_000, 100_000],
            "agents": [10, 100, 1_000],
            "executors": [1, 4, 16],
            "cold_events": 1_000_000,
            "claims": 100,
        }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    logs.configure("bench", level="error", json=False)

    began = time.perf_counter()
    print(f"Swarm scale benchmark: {benchkit.machine()}, load average {benchkit.load_average()}")
    print(
        f"  python {sys.version.split()[0]}, "
        f"command: bench/scale.py {' '.join(argv or sys.argv[1:])}"
    )
    root = Path(tempfile.mkdtemp(prefix="swarm-bench-scale-"))
    cells: list[Cell] = []
    try:
        seeded: dict[int, tuple[Path, int]] = {}
        for log_tasks in sorted({*args.logs}):
            store = root / f"seed-{log_tasks}"
            count, took = seed(store, log_tasks)
            seeded[log_tasks] = (store, count)
            print(
                f"  seeded {log_tasks:,} finished tasks ({count:,} events) in {took:.1f} s",
                flush=True,
            )
        for log_tasks, agents, executors, cold in plan(args):
            store, count = seeded[log_tasks]
            cell = Cell(log_tasks, count, agents, executors)
            print(
                f"  cell: {log_tasks:,} tasks, {agents} agents, {executors} executors ...",
                end="",
                flush=True,
            )
            try:
                cells.append(
                    asyncio.run(run_cell(cell, store, root, args, cold=cold and not args.no_cold))
                )
            except Exception as error:  # the others' figures still count: say what failed
                print(f" FAILED: {error!r}", flush=True)
                continue
            print(f" claim p99 {ms(p(cell.claims, 99))}", flush=True)
        if not args.no_cold:  # the cold start over the long log: 4 events per finished task
            cold_tasks = (args.cold_events - 3) // 4
            store = root / "seed-cold"
            count, took = seed(store, cold_tasks)
            print(
                f"  seeded {cold_tasks:,} finished tasks ({count:,} events) in {took:.1f} s",
                flush=True,
            )
            cell = Cell(cold_tasks, count, min(args.agents), 1)
            try:
                cells.append(asyncio.run(run_cell(cell, store, root, args, cold=True)))
            except Exception as error:
                print(f"  cold start over {count:,} events FAILED: {error!r}", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"\nkept: {root}")
    print(f"\nload average after: {benchkit.load_average()}")
    print("\n".join(report(cells, args)))
    print(f"\ntotal {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
