"""Appends on a three-node cluster while its event-log leader is killed: what comes back.

Three embedded nats-servers routed to each other on loopback (``local_cluster``), the streams
provisioned with three replicas. ``--writers`` writers append, each on tasks of its own, one task
after another: ``created``, ``claimed``, ``running``, ``completed``, each at the task's expected
sequence, through ``EventLog.append`` with ``retry_for`` as the executor uses it. No two writers
ever touch the same task, so every conflict is spurious. Meanwhile, ``--rounds`` times, the
event log's leader is killed (kill -9), the cluster left without it for a while, and the node
started again on its store.

Printed per round and at the end: the appends acknowledged, the conflicts (spurious by
construction), ``Unavailable`` (NATS could not say within ``retry_for``: an honest answer, which
the executor meets by asking again), and anything else raised, by type and code; the longest
wait for an acknowledged append (the failover's pause). Then every acknowledged append is
looked up in the log by its sequence: an ack for an event that is not there would be a lost
write.

Run: ``.venv/bin/python bench/cluster_failover.py [--rounds 6] [--writers 16]``. Method and
measured numbers: docs/benchmarks.md ("Appends on a cluster through leader failovers").
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from nats.js.errors import APIError

from schemas import events as ev
from schemas import subjects
from schemas.errors import Unavailable
from services.bus.connection import NatsOptions
from services.bus.embedded import EmbeddedNats, local_cluster
from services.bus.eventlog import AppendConflict
from services.bus.service import Bus
from services.bus.streams import Layout

SWARM = "failover"


def lifecycle(task: str) -> list[ev.Event]:
    now = time.time()
    return [
        ev.TaskCreated(swarm=SWARM, id=task, time=now, title=task),
        ev.TaskClaimed(swarm=SWARM, id=task, time=now, agent="a", attempt=1),
        ev.TaskRunning(swarm=SWARM, id=task, time=now, agent="a", attempt=1, executor="e"),
        ev.TaskCompleted(swarm=SWARM, id=task, time=now, agent="a", attempt=1),
    ]


def outcome(error: Exception) -> str:
    if isinstance(error, AppendConflict):
        return "conflict"
    if isinstance(error, Unavailable):
        return "unavailable"
    if isinstance(error, APIError):
        return f"{type(error).__name__} {error.err_code}"
    return type(error).__name__


async def answering(bus: Bus, patience: float = 60.0) -> None:
    """Wait until the event log has a leader again (the last failover may still be on)."""
    deadline = time.monotonic() + patience
    while True:
        try:
            info = await bus.js.stream_info(subjects.EVENTS_STREAM)
            if info.cluster is not None and info.cluster.leader:
                return
        except Exception:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.5)


async def main(rounds: int, writers: int, down: float, between: float, retry_for: float) -> None:
    root = Path(tempfile.mkdtemp(prefix="swarm-failover-"))
    nodes = local_cluster(root, "failover")
    try:
        for node in nodes:
            node.start()
        await measure(nodes, rounds, writers, down, between, retry_for)
    finally:
        for node in nodes:
            node.kill()
        shutil.rmtree(root, ignore_errors=True)


async def measure(
    nodes: list[EmbeddedNats],
    rounds: int,
    writers: int,
    down: float,
    between: float,
    retry_for: float,
) -> None:
    bus = await Bus.connect(NatsOptions.from_env(",".join(n.url for n in nodes)), name="bench")
    await bus.provision(Layout(replicas=3))
    counts: collections.Counter[str] = collections.Counter()
    acked: list[tuple[int, str]] = []  # (sequence, subject) of every acknowledged append
    stop = asyncio.Event()
    longest = 0.0  # seconds: the longest any acknowledged append waited (a failover's pause)

    async def writer(index: int) -> None:
        nonlocal longest
        while not stop.is_set():
            task = f"t-{index}-{uuid.uuid4().hex[:8]}"
            expected = 0
            for event in lifecycle(task):
                started = time.monotonic()
                try:
                    expected = await bus.events.append(event, expected, retry_for=retry_for)
                except Exception as error:
                    counts[outcome(error)] += 1
                    break  # this task's lifecycle ends here; the writer starts the next one
                longest = max(longest, time.monotonic() - started)
                counts["acknowledged"] += 1
                acked.append((expected, subjects.event(SWARM, "task", task, event.verb)))

    def line(label: str) -> None:
        others = {k: v for k, v in counts.items() if k != "acknowledged"}
        print(f"{label:<28} acknowledged {counts['acknowledged']:>8,}  other answers {others}")

    running = [asyncio.create_task(writer(i)) for i in range(writers)]
    try:
        for round_ in range(1, rounds + 1):
            await asyncio.sleep(between)
            leader = (await bus.js.stream_info(subjects.EVENTS_STREAM)).cluster.leader
            victim = next(node for node in nodes if node.name == leader)
            victim.kill()
            line(f"round {round_}: killed {leader}")
            await asyncio.sleep(down)
            victim.start()
        await asyncio.sleep(between)
    finally:
        stop.set()
        await asyncio.gather(*running)
    line("end")
    print(f"longest wait for an acknowledged append: {longest:.1f} s (retry_for {retry_for} s)")
    await answering(bus)
    missing = 0
    for seq, subject in acked:
        message = await bus.js.get_msg(subjects.EVENTS_STREAM, seq)
        missing += message.subject != subject
    print(f"acknowledged appends not in the log at their sequence: {missing} of {len(acked):,}")
    await bus.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6, help="leader kills (default 6)")
    parser.add_argument("--writers", type=int, default=16, help="concurrent writers (16)")
    parser.add_argument("--down", type=float, default=6.0, help="seconds a killed node stays down")
    parser.add_argument("--between", type=float, default=4.0, help="seconds between kills")
    parser.add_argument(
        "--retry-for", type=float, default=5.0, help="each append's retry_for (5: `running`'s)"
    )
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.writers, args.down, args.between, args.retry_for))
