"""The lifecycle benchmark (issue 3): what a task's whole life costs through the real processes.

One run, one fresh embedded nats-server (``sync_interval: always``) in a temp directory, and the
real services started as ``swarm up`` starts them (``python -m services.<name>``, configured
through the environment): a gateway, a scheduler and N executors hosting M agents each. Every
task runs on the ``instant`` runtime (no process), so what is measured is the orchestrator.

1. Low load: tasks created one at a time over HTTP, each one completed before the next is
   created, so an idle agent is always waiting. ``created -> claimed`` is then the scheduler's
   reaction time: what the claim latency target describes.
2. Load, in rounds: K tasks created over HTTP (50 requests in flight) while the agents work
   through them. Tasks/s runs from the first ``created`` to the last ``completed`` (a second
   row, not the verdict: from the last ``created``, once intake is over). Claim
   latency under load is mostly queueing (K tasks for N x M agents), so the table also shows
   ``ready -> claimed``: from the moment a claim became possible (the later of the task's
   ``created`` and the claiming agent's previous ``completed``) to the claim.
3. Next to each load round, the raw lifecycle rate: the four appends of a task's life (created,
   claimed, running, completed: real encoded events), published one after the other with
   ``js.publish``, each with a ``Nats-Msg-Id`` and the expected last sequence on the task's
   subjects, 100 tasks in flight. They go to a stream configured exactly like ``SWARM_EVENTS``
   on subjects no service follows (``bench.raw.<swarm>.task.<id>.<verb>``), so the services
   stay up (idle) during the raw runs. Raw and load rounds alternate which goes first. The
   throughput verdict goes by the median of the per-round ratios.

Every latency comes from stream timestamps: the server's clock when it stored each event. The
swarm's events are read back from ``SWARM_EVENTS`` after the run. Next to the rates, the table
shows CPU milliseconds per task of each process (from /proc). A busy machine disturbs these far
less than wall-clock rates, and they show where the cost is. ``--profile DIR`` samples every
service with py-spy during the load rounds; ``--cpu-profile DIR`` samples their CPU time instead
(``bench/cpu_profile``: py-spy's wall-clock samples land where a process waited for a core).

Run: ``.venv/bin/python bench/lifecycle.py [--executors N] [--agents M] [--tasks K]``. Method and
measured numbers: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import benchkit
from benchkit import Processes, ms, percentile, process_cpu, service_env, times, verdict

from schemas import events as ev
from schemas import subjects
from services.bus import logs
from services.bus.connection import NatsOptions
from services.bus.embedded import EmbeddedNats, free_port
from services.bus.service import Bus

SWARM = "bench"  # the swarm the services serve
RAW_SWARM = "bench-raw"
RAW_STREAM = "BENCH_RAW"  # raw appends: SWARM_EVENTS' configuration, subjects nobody follows
RAW_PREFIX = "bench.raw"  # bench.raw.<swarm>.task.<id>.<verb>, as swarm.evt.<swarm>.task...
HTTP_IN_FLIGHT = 50
RAW_IN_FLIGHT = 100
CLAIM_P50 = 0.005  # seconds
CLAIM_P99 = 0.025
THROUGHPUT_TARGET = 0.5  # tasks/s >= 0.5x the raw lifecycle rate (issue 15; 0.3 in issue 3)


# --- the raw rate ------------------------------------------------------------------------------


def raw_life(task_id: str, now: float) -> list[ev.Event]:
    """The four events of one task's life, as the services write them."""
    common: dict[str, Any] = {"swarm": RAW_SWARM, "id": task_id, "time": now}
    return [
        ev.TaskCreated(**common, actor="user", title=f"bench {task_id}", runtime="instant"),
        ev.TaskClaimed(**common, actor="scheduler:raw", agent="e0-a0", attempt=1),
        ev.TaskRunning(**common, actor="executor:e0", agent="e0-a0", attempt=1, executor="e0"),
        ev.TaskCompleted(
            **common,
            actor="executor:e0",
            agent="e0-a0",
            attempt=1,
            outcome=ev.RunOutcome(result="done", exit_code=0, duration_s=0.0),
        ),
    ]


async def add_raw_stream(bus: Bus) -> None:
    await benchkit.add_raw_stream(bus, RAW_STREAM, RAW_PREFIX)


@dataclass(frozen=True)
class RawRun:
    rate: float  # tasks/s
    server_cpu: float  # nats-server CPU seconds per task
    client_cpu: float  # this process's CPU seconds per task


async def raw_lifecycle(bus: Bus, tasks: int, label: str, server_pid: int) -> RawRun:
    """Each task's four appends in sequence, 100 tasks at once: plain ``js.publish`` with a
    ``Nats-Msg-Id`` and the expected last sequence on the task's subjects, as the bus sends."""
    queue: asyncio.Queue[list[ev.Event]] = asyncio.Queue()
    for i in range(tasks):
        queue.put_nowait(raw_life(f"{label}-{i}", time.time()))
    publish = bus.js.publish

    async def worker() -> None:
        while not queue.empty():
            life = queue.get_nowait()
            last = 0
            for event in life:
                task = f"{RAW_PREFIX}.{event.swarm}.{event.aggregate}.{event.id}"
                ack = await publish(
                    f"{task}.{event.verb}",
                    ev.encode(event),
                    stream=RAW_STREAM,
                    headers={
                        "Nats-Msg-Id": event.event_id,
                        "Nats-Expected-Last-Subject-Sequence": str(last),
                        "Nats-Expected-Last-Subject-Sequence-Subject": f"{task}.*",
                    },
                )
                last = ack.seq

    server, client = process_cpu(server_pid), process_cpu(None)
    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(RAW_IN_FLIGHT, tasks))))
    wall = time.perf_counter() - began
    return RawRun(
        rate=tasks / wall,
        server_cpu=(process_cpu(server_pid) - server) / tasks,
        client_cpu=(process_cpu(None) - client) / tasks,
    )


# --- reading the log back ----------------------------------------------------------------------


@dataclass
class Life:
    """One task's events: verb -> stream time (seconds), and the agent that claimed it."""

    times: dict[str, float] = field(default_factory=dict)
    agent: str | None = None


async def read_lives(bus: Bus) -> dict[str, Life]:
    """Every task event of the bench swarm, by task (an ordered consumer from the start)."""
    filter_subject = f"swarm.evt.{SWARM}.task.>"
    lives: dict[str, Life] = {}
    done = asyncio.get_running_loop().create_future()

    async def on_msg(msg: Any) -> None:
        meta = msg.metadata
        _, _, _, _, task_id, verb = msg.subject.split(".")
        life = lives.setdefault(task_id, Life())
        if verb not in life.times:  # the first of each kind
            life.times[verb] = meta.timestamp.timestamp()
            if verb == "claimed":
                life.agent = ev.decode(msg.data).agent  # type: ignore[attr-defined]
        if meta.num_pending == 0 and not done.done():
            done.set_result(None)

    sub = await bus.js.subscribe(
        filter_subject,
        stream=subjects.EVENTS_STREAM,
        cb=on_msg,
        ordered_consumer=True,
        pending_msgs_limit=1 << 20,
    )
    try:
        await asyncio.wait_for(done, 60)
    finally:
        await sub.unsubscribe()
    return lives


def gaps(lives: dict[str, Life], start: str, end: str) -> list[float]:
    return [
        life.times[end] - life.times[start]
        for life in lives.values()
        if start in life.times and end in life.times
    ]


def ready_to_claimed(lives: dict[str, Life]) -> list[float]:
    """Per claim: from the moment it became possible (the task created and the agent free, i.e.
    its previous task completed) to the claim."""
    by_agent: dict[str, list[Life]] = {}
    for life in lives.values():
        if life.agent is not None and "claimed" in life.times:
            by_agent.setdefault(life.agent, []).append(life)
    out = []
    for claims in by_agent.values():
        claims.sort(key=lambda life: life.times["claimed"])
        previous_done: float | None = 0.0  # None: the previous task did not complete
        for life in claims:
            if previous_done is not None:
                out.append(life.times["claimed"] - max(life.times["created"], previous_done))
            previous_done = life.times.get("completed")
    return out


# --- driving the API ---------------------------------------------------------------------------


class Api:
    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url

    async def create(self, index: int) -> str:
        body = {"title": f"bench task {index}", "runtime": "instant"}
        async with self.session.post(f"{self.url}/swarms/{SWARM}/tasks", json=body) as response:
            data = await response.json()
            if response.status != 201:
                raise RuntimeError(f"POST /tasks answered {response.status}: {data}")
            return data["id"]

    async def wait_healthy(self, processes: Processes, executors: int, agents: int) -> float:
        """Until /health shows our gateway, scheduler and executors ready and every agent is
        registered and idle; returns the seconds it took."""
        began = time.monotonic()
        deadline = began + 90
        executor_pids = processes.pids("executor")
        while True:
            processes.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError("the services did not become ready within 90 s")
            try:
                async with self.session.get(f"{self.url}/health") as response:
                    report = await response.json()
                services = report.get("services", {})
                ready = {
                    name: {
                        i["pid"] for i in services.get(name, {}).get("instances", []) if i["ready"]
                    }
                    for name in ("gateway", "scheduler", "executor")
                }
                if ready["gateway"] and ready["scheduler"] and executor_pids <= ready["executor"]:
                    async with self.session.get(f"{self.url}/swarms/{SWARM}/agents") as response:
                        listed = await response.json() if response.status == 200 else []
                    idle = [a for a in listed if a.get("status") == "idle"]
                    if len(idle) >= executors * agents:
                        return time.monotonic() - began
            except (aiohttp.ClientError, ValueError):
                pass  # not listening yet
            await asyncio.sleep(0.2)


class Completions:
    """Follows the bench swarm's tasks to their end (plain subscriptions, no consumer)."""

    def __init__(self) -> None:
        self.done: set[str] = set()
        self.failed: set[str] = set()
        self._waiting: dict[str, asyncio.Future[None]] = {}
        self._remaining: set[str] = set()
        self._all: asyncio.Future[None] | None = None

    async def start(self, bus: Bus) -> None:
        for verb in ("completed", "failed", "cancelled"):
            await bus.nc.subscribe(f"swarm.evt.{SWARM}.task.*.{verb}", cb=self._on_msg)

    async def _on_msg(self, msg: Any) -> None:
        _, _, _, _, task_id, verb = msg.subject.split(".")
        (self.done if verb == "completed" else self.failed).add(task_id)
        waiter = self._waiting.pop(task_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._remaining.discard(task_id)
        if self._all is not None and not self._remaining and not self._all.done():
            self._all.set_result(None)

    def ended(self, task_id: str) -> bool:
        return task_id in self.done or task_id in self.failed

    async def wait(self, task_id: str, timeout: float = 30.0) -> None:
        if self.ended(task_id):
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiting[task_id] = waiter
        await asyncio.wait_for(waiter, timeout)

    async def wait_all(self, task_ids: list[str], timeout: float) -> None:
        self._remaining = {task for task in task_ids if not self.ended(task)}
        if not self._remaining:
            return
        self._all = asyncio.get_running_loop().create_future()
        await asyncio.wait_for(self._all, timeout)


# --- the phases --------------------------------------------------------------------------------


@dataclass
class Phase:
    ids: list[str]  # the tasks it created
    wall: float  # seconds, this process's clock, first request to last completion
    cpu: dict[str, float]  # process label -> CPU seconds during the phase
    lives: dict[str, Life] = field(default_factory=dict)  # filled from the log afterwards

    @property
    def tasks(self) -> int:
        return len(self.ids)


async def sequential(
    api: Api, completions: Completions, processes: Processes, count: int, first: int
) -> Phase:
    """One task at a time, each completed before the next is created."""
    ids = []
    cpu = cpu_now(processes)
    began = time.perf_counter()
    for i in range(count):
        ids.append(await api.create(first + i))
        await completions.wait(ids[-1])
    wall = time.perf_counter() - began
    return Phase(ids, wall, cpu_used(processes, cpu))


async def loaded(
    api: Api, completions: Completions, processes: Processes, count: int, first: int
) -> Phase:
    """``count`` tasks created with 50 requests in flight; until all are completed."""
    ids: list[str] = []
    indexes = iter(range(first, first + count))

    async def client() -> None:
        for index in indexes:
            ids.append(await api.create(index))

    cpu = cpu_now(processes)
    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(HTTP_IN_FLIGHT)))
    await completions.wait_all(ids, timeout=300)
    wall = time.perf_counter() - began
    return Phase(ids, wall, cpu_used(processes, cpu))


def cpu_now(processes: Processes) -> dict[str, float]:
    return {**processes.cpu(), "bench (this process)": process_cpu(None)}


def cpu_used(processes: Processes, before: dict[str, float]) -> dict[str, float]:
    return {label: value - before[label] for label, value in cpu_now(processes).items()}


# --- report ------------------------------------------------------------------------------------


def per_task(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:,.2f} ms/task"


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)

    def section(self, title: str) -> None:
        self.lines.append(f"\n{title}")

    def row(self, name: str, value: str, note: str = "") -> None:
        self.lines.append(f"  {name:<44}{value:>16}  {note}".rstrip())

    def latencies(self, name: str, values: list[float], *, targets: bool = False) -> None:
        """p50 / p99 / max in one row; with ``targets``, the claim latency verdicts."""
        if not values:
            self.row(name, "-", "no samples")
            return
        low, high = percentile(values, 50), percentile(values, 99)
        note = f"p99 {ms(high)}, max {ms(max(values))}, n={len(values)}"
        if targets:
            note += (
                f"  {verdict(low <= CLAIM_P50, 'p50 <= 5 ms')} "
                f"{verdict(high <= CLAIM_P99, 'p99 <= 25 ms')}"
            )
        self.row(f"{name}  p50", ms(low), note)

    def cpu(self, cpu: dict[str, float], tasks: int) -> None:
        """CPU per task of each process, and of all together."""
        for label, seconds in cpu.items():
            self.row(f"CPU {label}", per_task(seconds / tasks))
        self.row("CPU all processes", per_task(sum(v for v in cpu.values() if v == v) / tasks))

    def print(self) -> None:
        print("\n".join(self.lines))


# --- the run -----------------------------------------------------------------------------------


@dataclass
class Results:
    startup: float = 0.0
    raw: list[RawRun] = field(default_factory=list)
    low: Phase | None = None
    loads: list[Phase] = field(default_factory=list)
    failed: int = 0


def start_services(processes: Processes, executors: int, agents: int) -> None:
    processes.start("gateway", "gateway")
    processes.start("scheduler", "scheduler")
    for e in range(executors):
        processes.start(
            f"executor-{e}",
            "executor",
            f"--executor-id=e{e}",
            f"--data-dir={processes.root / 'data' / f'e{e}'}",
            f"--max-agents={agents}",
            *(f"--agent=e{e}-a{a}:bench:bench" for a in range(agents)),
        )


async def run(url: str, args: argparse.Namespace, processes: Processes, gateway: str) -> Results:
    results = Results()
    server_pid = processes.others["nats-server"]
    bus = await Bus.connect(NatsOptions(servers=[url]), name="bench")
    try:
        await bus.provision()
        await add_raw_stream(bus)
        start_services(processes, args.executors, args.agents)
        headers = {"Authorization": f"Bearer {processes.env['SWARM_API_TOKEN']}"}
        connector = aiohttp.TCPConnector(limit=HTTP_IN_FLIGHT)
        async with aiohttp.ClientSession(gateway, headers=headers, connector=connector) as session:
            api = Api(session, "")
            results.startup = await api.wait_healthy(processes, args.executors, args.agents)
            completions = Completions()
            await completions.start(bus)
            created = 0

            async def one_at_a_time(count: int) -> Phase:
                nonlocal created
                phase = await sequential(api, completions, processes, count, created)
                created += count
                return phase

            async def load() -> None:
                nonlocal created
                results.loads.append(await loaded(api, completions, processes, args.tasks, created))
                created += args.tasks

            async def raw() -> None:
                label = f"raw-{len(results.raw)}"
                results.raw.append(await raw_lifecycle(bus, args.raw_tasks, label, server_pid))

            await one_at_a_time(args.warmup)  # not counted
            results.low = await one_at_a_time(args.sequential)
            if args.profile:
                processes.profile(Path(args.profile))
            if args.cpu_profile:
                processes.signal_all(signal.SIGUSR1)  # bench/cpu_profile: start sampling
            for round_ in range(args.rounds):
                # the order alternates, so drift in the machine's load hits both kinds alike
                for step in (raw, load) if round_ % 2 == 0 else (load, raw):
                    await step()
            processes.end_profile()
            if args.cpu_profile:
                processes.signal_all(signal.SIGUSR2)  # stop, and write the stacks
            results.failed = len(completions.failed)
        processes.stop()
        lives = await read_lives(bus)
        for phase in (results.low, *results.loads):
            phase.lives = {task: lives[task] for task in phase.ids if task in lives}
    finally:
        await bus.close()
    return results


def throughput(phase: Phase) -> float:
    """Tasks/s from the phase's first ``created`` to its last ``completed`` (stream times)."""
    first = min(life.times["created"] for life in phase.lives.values())
    last = max(life.times.get("completed", 0.0) for life in phase.lives.values())
    return phase.tasks / (last - first)


def accepted(phase: Phase) -> float:
    """Tasks/s the gateway took in (first to last ``created``)."""
    created = [life.times["created"] for life in phase.lives.values()]
    return phase.tasks / max(max(created) - min(created), 1e-9)


def after_intake(phase: Phase) -> tuple[float, int]:
    """Tasks/s from the phase's last ``created`` to its last ``completed`` (the lifecycle with
    the create burst over), and how many tasks completed before that last ``created``."""
    last_created = max(life.times["created"] for life in phase.lives.values())
    ends = [life.times.get("completed", 0.0) for life in phase.lives.values()]
    during = sum(1 for end in ends if end <= last_created)
    return (phase.tasks - during) / max(max(ends) - last_created, 1e-9), during


def report(results: Results, args: argparse.Namespace) -> Report:
    out = Report()
    out.row("services ready after", f"{results.startup:.1f} s")
    raw = results.raw
    rates = [run.rate for run in raw]
    raw_rate = statistics.median(rates)
    out.section(
        f"Raw lifecycle rate: {args.raw_tasks:,} tasks x 4 appends (msg id + expected last subject "
        f"sequence), {RAW_IN_FLIGHT} tasks in flight, {len(raw)} runs"
    )
    out.row(
        "median",
        f"{raw_rate:,.0f} tasks/s",
        f"best {max(rates):,.0f}, worst {min(rates):,.0f} ({4 * raw_rate:,.0f} appends/s)",
    )
    out.row("CPU nats-server", per_task(statistics.median(r.server_cpu for r in raw)))
    out.row("CPU bench (this process)", per_task(statistics.median(r.client_cpu for r in raw)))

    low = results.low
    assert low is not None
    out.section(f"Low load: {low.tasks} tasks one at a time ({args.warmup} warm-up tasks before)")
    out.latencies("created -> claimed", gaps(low.lives, "created", "claimed"), targets=True)
    out.latencies("claimed -> running", gaps(low.lives, "claimed", "running"))
    out.latencies("running -> completed", gaps(low.lives, "running", "completed"))
    out.latencies("created -> completed", gaps(low.lives, "created", "completed"))
    out.row("POST + wait for completed (this process)", ms(low.wall / low.tasks), "per task")
    out.cpu(low.cpu, low.tasks)

    loads = results.loads
    lives = {task: life for phase in loads for task, life in phase.lives.items()}
    tasks = sum(phase.tasks for phase in loads)
    out.section(
        f"Load: {len(loads)} runs of {args.tasks:,} tasks ({HTTP_IN_FLIGHT} POSTs in flight), "
        f"{args.executors} executors x {args.agents} agents, each run next to a raw run"
    )
    rates = [throughput(phase) for phase in loads]
    ratios = [rate / run.rate for rate, run in zip(rates, raw, strict=True)]
    ratio = statistics.median(ratios)
    out.row(
        "tasks/s, first created -> last completed",
        f"{statistics.median(rates):,.0f} tasks/s",
        f"runs: {', '.join(f'{r:,.0f}' for r in rates)}",
    )
    out.row(
        "/ raw lifecycle rate (median of pairs)",
        times(ratio),
        f"{verdict(ratio >= THROUGHPUT_TARGET, f'>= {THROUGHPUT_TARGET}x')}  "
        f"pairs: {', '.join(times(r) for r in ratios)}",
    )
    out.row(
        "POST /tasks accepted",
        f"{statistics.median(accepted(phase) for phase in loads):,.0f} tasks/s",
    )
    settled = [after_intake(phase) for phase in loads]
    out.row(
        "tasks/s once intake is over (not the verdict)",
        f"{statistics.median(rate for rate, _ in settled):,.0f} tasks/s",
        f"last created -> last completed; "
        f"{', '.join(f'{r / run.rate:.2f}x' for (r, _), run in zip(settled, raw, strict=True))}"
        f" of the paired raw runs; completed during intake: "
        f"{', '.join(str(during) for _, during in settled)} of {args.tasks:,}",
    )
    out.latencies("created -> claimed (mostly queueing)", gaps(lives, "created", "claimed"))
    out.latencies("ready -> claimed (created, agent free)", ready_to_claimed(lives), targets=True)
    out.latencies("claimed -> running", gaps(lives, "claimed", "running"))
    out.latencies("running -> completed", gaps(lives, "running", "completed"))
    if results.failed:
        out.row("failed or cancelled", f"{results.failed}", "(all should complete)")
    cpu: dict[str, float] = {}
    for phase in loads:
        for label, seconds in phase.cpu.items():
            cpu[label] = cpu.get(label, 0.0) + seconds
    out.cpu(cpu, tasks)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executors", type=int, default=2, help="executor processes (N)")
    parser.add_argument("--agents", type=int, default=4, help="agents per executor (M)")
    parser.add_argument("--tasks", type=int, default=1_000, help="tasks per load run (K)")
    parser.add_argument("--sequential", type=int, default=100, help="tasks in the low-load phase")
    parser.add_argument("--warmup", type=int, default=20, help="tasks before the low-load phase")
    parser.add_argument("--raw-tasks", type=int, default=1_000, help="tasks per raw run")
    parser.add_argument("--rounds", type=int, default=3, help="load runs (each with a raw run)")
    parser.add_argument(
        "--log-level", default="info", help="the services' log level (default info, as swarm up)"
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="sample each service with py-spy during the load phase (collapsed stacks in DIR)",
    )
    parser.add_argument(
        "--cpu-profile",
        metavar="DIR",
        help="sample each service's CPU time during the load phase (bench/cpu_profile; "
        "collapsed stacks in DIR, summed up by bench/cpu_profile/top.py)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp dir (logs) and say where"
    )
    args = parser.parse_args(argv)
    logs.configure("bench", level="error", json=False)

    began = time.perf_counter()
    load_before = os.getloadavg()
    data_dir = tempfile.mkdtemp(prefix="swarm-bench-lifecycle-")
    server = EmbeddedNats(Path(data_dir) / "server").start()
    port = free_port()
    env = service_env(server.url, port, Path(data_dir) / "data", SWARM, args.log_level)
    if args.cpu_profile:
        Path(args.cpu_profile).mkdir(parents=True, exist_ok=True)
        env["SWARM_BENCH_CPU_PROFILE"] = str(Path(args.cpu_profile).resolve())
        sampler = Path(__file__).parent / "cpu_profile"  # its sitecustomize.py
        env["PYTHONPATH"] = os.pathsep.join([str(sampler), env["PYTHONPATH"]])
    processes = Processes(Path(data_dir), env)
    assert server.process is not None
    processes.others["nats-server"] = server.process.pid
    try:
        results = asyncio.run(run(server.url, args, processes, f"http://127.0.0.1:{port}"))
    finally:
        processes.stop()
        server.stop()
        if not args.keep:
            subprocess.run(["rm", "-rf", data_dir], check=False)
    load_after = os.getloadavg()
    print(
        f"Swarm lifecycle benchmark: instant runtime, {args.executors} executors x "
        f"{args.agents} agents, {os.cpu_count()} cores, load average (1/5/15 min) "
        f"{'/'.join(f'{v:.1f}' for v in load_before)} before, "
        f"{'/'.join(f'{v:.1f}' for v in load_after)} after"
    )
    report(results, args).print()
    if args.keep:
        print(f"\nlogs: {data_dir}/logs")
    print(f"\ntotal {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
