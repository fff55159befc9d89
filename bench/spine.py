"""The spine benchmark (issue 2): what the bus costs on top of raw JetStream.

One run, one fresh embedded nats-server (``sync_interval: always``) in a temp directory:

1. appends, sequential and with 100 in flight (100 writers, one aggregate each, each tracking
   its own last sequence): raw ``js.publish`` without headers, raw ``js.publish`` with exactly
   the bus's headers, and ``EventLog.append`` (expected seq + msg id). Same subjects, same
   payloads; raw events go to swarm ``bench-raw``, bus events to swarm ``bench``. Rounds are
   interleaved; the table shows the best and the median run of each kind, and for a ratio the
   best over the best and the median of the per-round ratios (the verdict's basis).
2. replay from seq 1: a raw ordered consumer (a callback that only counts) against
   ``Projection`` (decode + fold, to ready), over the whole stream and over the ``bench`` swarm
   alone (every event carrying the bus's headers, as in production).
3. cold start: snapshot the fold, append a tail, then time a new ``Projection`` that loads the
   snapshot and replays the tail, against one that replays everything.

Next to the rates: CPU microseconds per event of this process (the client) and of nats-server,
which a busy machine disturbs far less than wall-clock rates, and which show where the cost is.

Run: ``.venv/bin/python bench/spine.py [--events N] [--rounds R]``. Method and measured numbers:
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from benchkit import process_cpu
from nats.aio.msg import Msg

from schemas import events as ev
from schemas import subjects
from services.bus import logs
from services.bus.connection import NatsOptions
from services.bus.embedded import EmbeddedNats, server_binary
from services.bus.eventlog import headers_for
from services.bus.projection import Projection
from services.bus.service import Bus
from services.bus.snapshots import Snapshots, pack

BUS_SWARM = "bench"  # events appended through services/bus (every one with the bus's headers)
RAW_SWARM = "bench-raw"  # events published with nats-py directly
IN_FLIGHT = 100
APPEND_TARGET = 0.8  # bus appends >= 0.8x raw
REPLAY_TARGET = 0.5  # projection replay >= 0.5x raw


# --- clocks ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    events: int
    wall: float  # seconds
    client_cpu: float  # seconds of this process
    server_cpu: float  # seconds of nats-server (10 ms ticks)

    @property
    def rate(self) -> float:
        return self.events / self.wall


class Stopwatch:
    """Wall clock plus CPU of this process and of the server, from creation to ``sample``."""

    server_pid: int | None = None  # set once the server runs

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.client = process_cpu(None)
        self.server = process_cpu(self.server_pid)

    def sample(self, events: int) -> Sample:
        return Sample(
            events=events,
            wall=time.perf_counter() - self.wall,
            client_cpu=process_cpu(None) - self.client,
            server_cpu=process_cpu(self.server_pid) - self.server,
        )


# --- the events --------------------------------------------------------------------------------


def aggregate_events(swarm: str, task_id: str, count: int, now: float) -> list[ev.Event]:
    """One task's life as a writer sees it: created, then updated ``count - 1`` times."""
    events: list[ev.Event] = [
        ev.TaskCreated(
            swarm=swarm,
            id=task_id,
            time=now,
            title=f"benchmark task {task_id}",
            prompt="Write the benchmark and report the numbers.",
            tags=["bench", "spine"],
        )
    ]
    events += [
        ev.TaskUpdated(swarm=swarm, id=task_id, time=now + i, title=f"revision {i}")
        for i in range(1, count)
    ]
    return events


def workload(swarm: str, label: str, total: int, writers: int) -> list[list[ev.Event]]:
    """``total`` events spread over ``writers`` aggregates (one per writer), ids unique per run."""
    now = time.time()
    share, extra = divmod(total, writers)
    return [
        aggregate_events(swarm, f"{label}-{w}", share + (1 if w < extra else 0), now)
        for w in range(writers)
    ]


# --- appends -----------------------------------------------------------------------------------

Writer = Callable[[list[ev.Event]], Awaitable[None]]
Runner = Callable[[list[list[ev.Event]]], Awaitable[Sample]]


def raw_writer(bus: Bus) -> Writer:
    """The same subject and payload as the bus, no headers: JetStream and nats-py, nothing else."""

    async def write(events: list[ev.Event]) -> None:
        publish = bus.js.publish
        for e in events:
            await publish(subjects.event(e.swarm, e.aggregate, e.id, e.verb), ev.encode(e))

    return write


def raw_headers_writer(bus: Bus) -> Writer:
    """Raw publishes carrying exactly the bus's headers (msg id, expected last subject sequence
    and its subject filter, expected stream): the server-side and header costs, without the bus."""

    async def write(events: list[ev.Event]) -> None:
        publish = bus.js.publish
        last = 0
        for e in events:
            subject = subjects.event(e.swarm, e.aggregate, e.id, e.verb)
            headers = headers_for(e, last, e.event_id)
            ack = await publish(
                subject, ev.encode(e), stream=subjects.EVENTS_STREAM, headers=headers
            )
            last = ack.seq

    return write


def bus_writer(bus: Bus) -> Writer:
    """``EventLog.append`` with expected seq and msg id, tracking the aggregate's last seq."""

    async def write(events: list[ev.Event]) -> None:
        append = bus.events.append
        last = 0
        for e in events:
            last = await append(e, expected_seq=last, msg_id=e.event_id)

    return write


def concurrently(writer: Writer) -> Runner:
    """One writer per batch, all at once."""

    async def run(batches: list[list[ev.Event]]) -> Sample:
        watch = Stopwatch()
        await asyncio.gather(*(writer(batch) for batch in batches))
        return watch.sample(sum(len(b) for b in batches))

    return run


def pipelined(bus: Bus) -> Runner:
    """nats-py's ``publish_async``, at most 100 acks pending, no headers (for reference)."""
    js = bus.nc.jetstream(publish_async_max_pending=IN_FLIGHT)

    async def run(batches: list[list[ev.Event]]) -> Sample:
        wire = [e for batch in batches for e in batch]
        watch = Stopwatch()
        futures = [
            await js.publish_async(subjects.event(e.swarm, e.aggregate, e.id, e.verb), ev.encode(e))
            for e in wire
        ]
        await asyncio.gather(*futures)
        return watch.sample(len(wire))

    return run


# --- replay ------------------------------------------------------------------------------------


async def raw_replay(bus: Bus, subject_filter: str, count: int) -> tuple[Sample, int]:
    """A raw ordered consumer (from seq 1) delivering ``count`` messages on ``subject_filter``
    to a callback that only counts; also the stream sequence of the last one."""
    done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    delivered = 0

    async def on_msg(msg: Msg) -> None:
        nonlocal delivered
        delivered += 1
        if delivered == count:
            done.set_result(msg.metadata.sequence.stream)

    watch = Stopwatch()
    sub = await bus.js.subscribe(
        subject_filter,
        stream=subjects.EVENTS_STREAM,
        cb=on_msg,
        ordered_consumer=True,
        pending_msgs_limit=1 << 20,
    )
    last = await asyncio.wait_for(done, 120)
    sample = watch.sample(count)
    await sub.unsubscribe()
    return sample, last


async def projection_start(
    bus: Bus,
    last: int,
    count: int,
    snapshots: Snapshots | None = None,
    swarm: str | None = None,
) -> tuple[Sample, Projection]:
    """A new ``Projection`` from start to ready with log position ``last`` folded in."""
    watch = Stopwatch()
    projection = Projection(bus.js, swarm=swarm, snapshots=snapshots)
    await projection.start()
    await projection.wait_ready(120)
    await projection.wait_for(last, 120)
    sample = watch.sample(count)
    await projection.stop()
    return sample, projection


# --- report ------------------------------------------------------------------------------------

COLUMNS = ("best", "median", "client CPU", "server CPU")


@dataclass
class Report:
    """Rows of a name, four values and a verdict; a row without values is a section title."""

    rows: list[tuple[str, tuple[str, ...], str]] = field(default_factory=list)

    def section(self, title: str) -> None:
        self.rows.append((title, (), ""))

    def add(self, name: str, *values: str, verdict: str = "") -> None:
        self.rows.append((f"  {name}", values, verdict))

    def rates(self, name: str, samples: list[Sample]) -> None:
        """Best and median rate; median CPU microseconds per event, client and server."""
        client = statistics.median(s.client_cpu / s.events for s in samples) * 1e6
        server = statistics.median(s.server_cpu / s.events for s in samples) * 1e6
        self.add(
            name,
            rate(max(s.rate for s in samples)),
            rate(statistics.median(s.rate for s in samples)),
            f"{client:,.0f} us/ev",
            "-" if math.isnan(server) else f"{server:,.0f} us/ev",
        )

    def ratio(
        self, name: str, ours: list[Sample], theirs: list[Sample], target: float | None = None
    ) -> None:
        """Best over best, and the median of the per-round ratios (each pair ran back to back).
        The verdict goes by the paired median: one lucky quiet run of either kind moves it least."""
        best = max(s.rate for s in ours) / max(s.rate for s in theirs)
        paired = statistics.median(a.rate / b.rate for a, b in zip(ours, theirs, strict=True))
        verdict = ""
        if target is not None:
            verdict = f"{'PASS' if paired >= target else 'MISS'} (target >= {target}x)"
        self.add(name, times(best), times(paired), verdict=verdict)

    def print(self) -> None:
        width = max(len(name) for name, values, _ in self.rows if values) + 2
        print(f"{'':<{width}}" + "".join(f"{c:>14}" for c in COLUMNS))
        for name, values, verdict in self.rows:
            if not values:
                print(f"\n{name}")
                continue
            cells = "".join(f"{v:>14}" for v in values)
            print(f"{name:<{width}}{cells}  {verdict}".rstrip())


def rate(value: float) -> str:
    return f"{value:,.0f} ev/s"


def times(value: float) -> str:
    """Rounded down, so a ratio just under a target never prints as the target."""
    return f"{math.floor(value * 100) / 100:.2f}x"


# --- the run -----------------------------------------------------------------------------------


@dataclass
class Bench:
    bus: Bus
    events: int
    sequential: int
    tail: int
    rounds: int
    replay_rounds: int
    report: Report = field(default_factory=Report)
    snapshots: Snapshots | None = None
    appended: dict[str, int] = field(default_factory=dict)  # swarm -> events, for the replay

    async def measure(
        self, swarm: str, label: str, runner: Runner, total: int, width: int
    ) -> Sample:
        sample = await runner(workload(swarm, label, total, width))
        self.appended[swarm] = self.appended.get(swarm, 0) + total
        return sample

    async def appends(self) -> None:
        bus = self.bus
        runners: dict[str, tuple[str, Runner]] = {
            "raw": (RAW_SWARM, concurrently(raw_writer(bus))),
            "raw+headers": (RAW_SWARM, concurrently(raw_headers_writer(bus))),
            "bus": (BUS_SWARM, concurrently(bus_writer(bus))),
        }
        for mode, total, width in (
            ("sequential", self.sequential, 1),
            (f"{IN_FLIGHT} in flight", self.events, IN_FLIGHT),
        ):
            if width > 1:
                runners["publish_async"] = (RAW_SWARM, pipelined(bus))
            samples: dict[str, list[Sample]] = {name: [] for name in runners}
            names = list(runners)
            for round_ in range(self.rounds):
                # interleaved, and the order rotates, so drift and bursts hit every kind alike
                shift = round_ % len(names)
                for name in names[shift:] + names[:shift]:
                    swarm, runner = runners[name]
                    label = f"{name.replace('+', '-').replace('_', '-')}-{width}-{round_}"
                    samples[name].append(await self.measure(swarm, label, runner, total, width))
            report = self.report
            report.section(f"Appends, {mode} ({total:,} events per run, {self.rounds} runs)")
            report.rates("raw js.publish, no headers", samples["raw"])
            report.rates("raw js.publish, bus headers", samples["raw+headers"])
            report.rates("bus EventLog.append", samples["bus"])
            report.ratio("bus / raw (no headers)", samples["bus"], samples["raw"], APPEND_TARGET)
            report.ratio("bus / raw (bus headers)", samples["bus"], samples["raw+headers"])
            if "publish_async" in samples:
                report.rates("raw js.publish_async, 100 pending", samples["publish_async"])

    async def replay(self, title: str, swarm: str | None) -> Projection:
        """Raw ordered consumer vs ``Projection``, from seq 1, interleaved rounds. The
        projection gets the snapshot store, as a service's does (the bucket is empty yet)."""
        if swarm is None:
            subject_filter, count = subjects.EVENTS_ALL, sum(self.appended.values())
        else:
            subject_filter, count = subjects.swarm_events(swarm), self.appended[swarm]
        raw: list[Sample] = []
        folded: list[Sample] = []
        projection: Projection | None = None
        last = 0  # the first round's raw replay finds the last sequence on the filter
        for round_ in range(self.replay_rounds):
            if round_ % 2 == 0:  # alternate which goes first
                sample, last = await raw_replay(self.bus, subject_filter, count)
                raw.append(sample)
            sample, projection = await projection_start(
                self.bus, last, count, self.snapshots, swarm
            )
            folded.append(sample)
            assert projection.started_from == 0, "replay started from a snapshot"
            if round_ % 2 == 1:
                sample, _ = await raw_replay(self.bus, subject_filter, count)
                raw.append(sample)
        assert projection is not None
        report = self.report
        report.section(f"{title} ({count:,} events, {self.replay_rounds} runs)")
        report.rates("raw ordered consumer (count only)", raw)
        report.rates("Projection (decode + fold), to ready", folded)
        report.ratio("projection / raw", folded, raw, REPLAY_TARGET)
        return projection

    async def cold_start(self, replayed: Projection) -> None:
        watch = Stopwatch()
        saved = await replayed.save_snapshot()
        save_time = watch.sample(1).wall
        assert saved, "the snapshot was not stored"
        size = len(pack(replayed.board))

        width = min(IN_FLIGHT, self.tail)
        await self.measure(BUS_SWARM, "tail", concurrently(bus_writer(self.bus)), self.tail, width)
        info = await self.bus.js.stream_info(subjects.EVENTS_STREAM)
        last = info.state.last_seq
        warm_sample, warm = await projection_start(self.bus, last, self.tail, self.snapshots)
        full_sample, full = await projection_start(self.bus, last, last)
        assert warm.started_from == replayed.board.seq, "did not start from the snapshot"

        report = self.report
        report.section(
            f"Cold start ({last:,} events: snapshot at {replayed.board.seq:,} + {self.tail:,} tail)"
        )
        report.add("save snapshot", ms(save_time), verdict=f"{size / 1024:,.0f} KiB zlib")
        report.add("from snapshot + tail, to ready", ms(warm_sample.wall))
        report.add("full replay, to ready", ms(full_sample.wall))
        report.add("speed-up", f"{full_sample.wall / warm_sample.wall:.0f}x")
        report.add("snapshot + tail == full replay", "yes" if warm.board == full.board else "NO")

    async def run(self) -> Report:
        bus = self.bus
        await bus.provision()
        self.snapshots = Snapshots(bus.js)
        for swarm in (BUS_SWARM, RAW_SWARM):  # both exist, so every task event folds for real
            created = ev.SwarmCreated(swarm=swarm, id=swarm, time=time.time(), name=swarm)
            await bus.events.append(created, expected_seq=0)
            self.appended[swarm] = 1
        await self.appends()
        replayed = await self.replay("Full replay from seq 1, whole stream", None)
        await self.replay(f"Replay from seq 1, swarm {BUS_SWARM!r} only (bus headers)", BUS_SWARM)
        await self.cold_start(replayed)
        return self.report


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


async def run(url: str, args: argparse.Namespace) -> Report:
    bus = await Bus.connect(NatsOptions(servers=[url]), name="bench")
    try:
        bench = Bench(
            bus,
            events=args.events,
            sequential=args.sequential or max(1, args.events // 5),
            tail=args.tail,
            rounds=args.rounds,
            replay_rounds=args.replay_rounds,
        )
        return await bench.run()
    finally:
        await bus.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=3_000, help="events per 100-in-flight run")
    parser.add_argument(
        "--sequential", type=int, default=0, help="events per sequential run (default events/5)"
    )
    parser.add_argument("--rounds", type=int, default=6, help="runs of each append kind")
    parser.add_argument("--replay-rounds", type=int, default=4, help="runs of each replay kind")
    parser.add_argument("--tail", type=int, default=1_000, help="events after the snapshot")
    parser.add_argument(
        "--data-dir", help="where the server's temp dir goes (default: system temp)"
    )
    args = parser.parse_args(argv)
    logs.configure("bench", level="error", json=False)

    began = time.perf_counter()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="swarm-bench-", dir=args.data_dir) as data_dir:
        server = EmbeddedNats(data_dir).start()
        assert server.process is not None
        Stopwatch.server_pid = server.process.pid
        try:
            report = asyncio.run(run(server.url, args))
        finally:
            server.stop()
    print(
        f"Swarm spine benchmark: nats-server {server_version()} (sync_interval: always), "
        f"{os.cpu_count()} cores, load average {load:.1f} before / "
        f"{os.getloadavg()[0]:.1f} after"
    )
    report.print()
    print(f"\ntotal {time.perf_counter() - began:.0f} s")
    return 0


def server_version() -> str:
    out = subprocess.run([server_binary(), "--version"], capture_output=True, text=True)
    return out.stdout.strip().rsplit(" ", 1)[-1]


if __name__ == "__main__":
    sys.exit(main())
