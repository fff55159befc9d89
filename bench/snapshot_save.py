"""Saving snapshots on a long history (issue 15): how long an event appended while a service
saves its snapshot waits before the service's fold has it, on a real nats-server.

A board of N finished tasks (``bench/scale.py``'s seeded tasks, folded in this process as in
``bench/snapshot_memory.py``, its records sealed) is stored as the swarm's snapshot, the event
stream's first sequence set just after it (the log itself is not written, only what a
service starting from that snapshot reads), and a ``Projection`` with
the snapshot store starts from it and saves a snapshot every ``--every`` events, as a service
does. Then ``--events`` ``task.created`` events are appended one after another, each awaited
until the fold has it (``wait_for``: what a writer does for read-your-writes, and about what a
claim waits for), while a ticker on the same event loop sleeps 1 ms at a time. Reported: the
time from each append to the fold having it (p50, p99, max, how many over 50 ms), the longest
gap between two ticks, and the saves (how many, their median wall time).

The collector's heap is frozen once the board is built, as a service process freezes it once
replayed (``Service.main``).

Run: ``.venv/bin/python bench/snapshot_save.py [--tasks 250000]``. Numbers: docs/benchmarks.md
("Saving a snapshot without pausing the service").
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchkit import tick
from scale import SWARM
from snapshot_memory import fold

from schemas import events as ev
from schemas import subjects
from schemas.board import Board
from services.bus.connection import NatsOptions
from services.bus.embedded import EmbeddedNats
from services.bus.projection import Projection
from services.bus.service import Bus
from services.bus.streams import Layout, stream_configs

TICK = 0.001


async def measure(url: str, board: Board, every: int, events: int) -> dict[str, float]:
    bus = await Bus.connect(NatsOptions(servers=[url]), name="bench-snapshot-save")
    (events_stream,) = [c for c in stream_configs(Layout()) if c.name == subjects.EVENTS_STREAM]
    await bus.js.add_stream(dataclasses.replace(events_stream, first_seq=board.seq + 1))
    await bus.provision()
    assert await bus.snapshots.save(SWARM, board), "the seeded snapshot was not stored"
    projection = Projection(bus.js, swarm=SWARM, snapshots=bus.snapshots, snapshot_every=every)
    await projection.start()
    await projection.wait_ready(60)
    assert projection.started_from == board.seq, "the projection did not start from the snapshot"
    saves: list[float] = []
    saved_all = asyncio.Event()
    save = bus.snapshots.save

    async def timed_save(*args: Any, **kwargs: Any) -> bool:
        started = time.perf_counter()
        try:
            return await save(*args, **kwargs)
        finally:
            saves.append(time.perf_counter() - started)
            if len(saves) >= events // every:
                saved_all.set()

    bus.snapshots.save = timed_save  # type: ignore[method-assign]
    gaps: list[float] = []
    ticker = asyncio.create_task(tick(gaps, TICK))
    waits = []
    for i in range(events):
        started = time.perf_counter()
        seq = await bus.events.append(
            ev.TaskCreated(swarm=SWARM, id=f"saving-{i}", time=time.time(), title="appended"), 0
        )
        await projection.wait_for(seq, timeout=30)
        waits.append(time.perf_counter() - started)
    await asyncio.wait_for(saved_all.wait(), 60)  # the last one may still be under way
    ticker.cancel()
    await projection.stop()
    await bus.close()
    waits.sort()
    return {
        "append_to_folded_p50_ms": waits[len(waits) // 2] * 1e3,
        "append_to_folded_p99_ms": waits[int(len(waits) * 0.99)] * 1e3,
        "append_to_folded_max_ms": waits[-1] * 1e3,
        "appends_over_50ms": sum(wait > 0.05 for wait in waits),
        "loop_gap_max_ms": max(gaps) * 1e3,
        "saves": len(saves),
        "save_s": statistics.median(saves),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=250_000)
    parser.add_argument("--every", type=int, default=500, help="snapshot_every")
    parser.add_argument("--events", type=int, default=1_600)
    args = parser.parse_args()
    board = fold(args.tasks)
    for view in board.swarms.values():
        view.tasks.seal()
    gc.collect()
    gc.freeze()
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedNats(Path(tmp) / "nats").start()
        try:
            result = asyncio.run(measure(server.url, board, args.every, args.events))
        finally:
            server.stop()
    print(json.dumps({"tasks": args.tasks, **{k: round(v, 3) for k, v in result.items()}}))


if __name__ == "__main__":
    main()
