"""Cold start, A/B (issue 15): two or more checkouts of Swarm started in turn over one seeded log.

``bench/scale.py`` seeds its log again for each run (most of a minute at 1M events) and starts
each code once; on a shared 2-core machine one start is not enough to tell two codes apart.
This seeds once (``scale.seed``: ``--events`` events and the snapshots a long-running
deployment has) and then, each round, for each checkout (the order alternating every round):
a copy of the store under the embedded NATS, the four services started at once as ``swarm up``
starts them (``--mcp``: the MCP server too, as ``swarm up`` does), two writes (``POST`` a task),
then each service stopped and started again alone while the others run.

Per service: seconds from spawn to its first ready heartbeat, and the CPU seconds it had used
by then (read from /proc as the heartbeat arrives: what other processes on the machine do
hardly moves it, so it is the steadier figure to compare). Each checkout runs with its own
``.venv/bin/python`` and itself first on ``PYTHONPATH``; byte-compile both first
(``./dev`` does, for Swarm's own modules).

Run: ``.venv/bin/python bench/cold_ab.py --rounds 5 main=/work/main new=/work/wt/x``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import benchkit
from benchkit import Processes, process_cpu, service_env
from scale import SWARM, seed, service_specs

from schemas import subjects
from services.bus import logs
from services.bus.connection import NatsOptions
from services.bus.embedded import EmbeddedNats, free_port
from services.bus.service import Bus

READY_TIMEOUT = 300.0  # seconds for a start to be ready


@dataclass
class Start:
    """One start: per service, seconds from spawn to ready and CPU seconds by then."""

    ready: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)


@dataclass
class Round:
    together: Start
    alone: Start
    writes: list[float]  # the first writes after the together start, seconds each


def processes(checkout: Path, root: Path, env: dict[str, str]) -> Processes:
    """The services of ``checkout``: its own interpreter, itself first on ``PYTHONPATH``."""
    venv = checkout / ".venv" / "bin" / "python"
    python = str(venv) if venv.exists() else sys.executable
    return Processes(root, {**env, "PYTHONPATH": str(checkout)}, python=python)


class ReadyTimes:
    """When each service process first said ready, and the CPU it had used by then."""

    def __init__(self) -> None:
        self.first_ready: dict[int, tuple[float, float]] = {}  # pid -> (time, its CPU then)

    def on_beat(self, beat: dict[str, Any]) -> None:
        if beat.get("ready") and beat["pid"] not in self.first_ready:
            self.first_ready[beat["pid"]] = (beat["time"], process_cpu(beat["pid"]))

    async def until_ready(self, services: Processes, labels: list[str]) -> Start:
        deadline = time.monotonic() + READY_TIMEOUT
        while any(services.children[label].pid not in self.first_ready for label in labels):
            services.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"not ready within {READY_TIMEOUT:.0f} s")
            await asyncio.sleep(0.01)
        start = Start()
        for label in labels:
            at, cpu = self.first_ready[services.children[label].pid]
            start.ready[label] = at - services.spawned_at[label]
            start.cpu[label] = cpu
        return start


async def follow_beats(bus: Bus, ready: ReadyTimes) -> None:
    kv = await bus.kv(subjects.SERVICES_BUCKET)
    watcher = await kv.watchall(ignore_deletes=True)
    try:
        while True:
            entry = await watcher.updates(None)
            if entry is not None and entry.value:
                ready.on_beat(json.loads(entry.value))
    finally:
        await watcher.stop()


async def one_round(store: Path, checkout: Path, mcp: bool) -> Round:
    root = Path(tempfile.mkdtemp(prefix="swarm-bench-cold-ab-"))
    shutil.copytree(store, root / "server")
    server = EmbeddedNats(root / "server").start(60)
    port = free_port()
    services = processes(
        checkout, root, service_env(server.url, port, root / "data", SWARM, "info")
    )
    ready = ReadyTimes()
    specs = service_specs(root, 1, 10)
    everything = [*specs, ("mcp", "mcp", [f"--port={free_port()}"])] if mcp else specs
    bus = await Bus.connect(NatsOptions(servers=[server.url]), name="bench-cold-ab")
    follower = asyncio.create_task(follow_beats(bus, ready))
    try:
        for label, service, flags in everything:
            services.start(label, service, *flags)
        together = await ready.until_ready(services, [label for label, _, _ in everything])
        writes = []
        headers = {"Authorization": f"Bearer {services.env['SWARM_API_TOKEN']}"}
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", headers=headers) as http:
            for i in range(2):
                began = time.perf_counter()
                async with http.post(f"/swarms/{SWARM}/tasks", json={"title": f"w{i}"}) as answer:
                    if answer.status != 201:
                        raise RuntimeError(f"a write answered {answer.status}")
                writes.append(time.perf_counter() - began)
        if mcp:
            services.stop_one("mcp")
        alone = Start()
        for label, service, flags in specs:
            services.stop_one(label)
            services.start(label, service, *flags)
            again = await ready.until_ready(services, [label])
            alone.ready.update(again.ready)
            alone.cpu.update(again.cpu)
        return Round(together, alone, writes)
    finally:
        follower.cancel()
        services.stop()
        await bus.close()
        server.stop(60)
        shutil.rmtree(root, ignore_errors=True)


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def report(name: str, rounds: list[Round]) -> list[str]:
    lines = []
    for kind in ("together", "alone"):
        starts: list[Start] = [getattr(r, kind) for r in rounds]
        for label in starts[0].ready:
            ready = [s.ready[label] for s in starts]
            cpu = [s.cpu[label] for s in starts]
            lines.append(f"  {name:<8} {kind:<8} {label:<11} {spread(ready):>18} {spread(cpu):>18}")
    first = [r.writes[0] for r in rounds]
    second = [r.writes[1] for r in rounds]
    lines.append(f"  {name:<8} first write {spread(first)} s, second {spread(second)} s")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkouts", nargs="+", metavar="NAME=DIR", help="the code to compare")
    parser.add_argument("--events", type=int, default=1_000_000, help="the seeded log (events)")
    parser.add_argument("--rounds", type=int, default=3, help="starts of each checkout")
    parser.add_argument("--mcp", action="store_true", help="start the MCP server too, at once")
    args = parser.parse_args(argv)
    checkouts = [
        (name, Path(path).resolve()) for name, _, path in (c.partition("=") for c in args.checkouts)
    ]
    logs.configure("bench", level="error", json=False)
    print(f"Cold start A/B: {benchkit.machine()}, load average {benchkit.load_average()}")
    print(f"  command: bench/cold_ab.py {' '.join(argv or sys.argv[1:])}")
    root = Path(tempfile.mkdtemp(prefix="swarm-bench-cold-ab-seed-"))
    try:
        count, took = seed(root / "store", (args.events - 3) // 4)
        print(f"  seeded {count:,} events in {took:.1f} s", flush=True)
        results: dict[str, list[Round]] = {name: [] for name, _ in checkouts}
        for index in range(args.rounds):
            order = checkouts if index % 2 == 0 else checkouts[::-1]
            for name, path in order:
                result = asyncio.run(one_round(root / "store", path, args.mcp))
                results[name].append(result)
                ready = " ".join(f"{k} {v:.2f}" for k, v in result.together.ready.items())
                print(f"  round {index + 1} {name}: together {ready}", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\nload average after: {benchkit.load_average()}")
    print("\nseconds from spawn to ready, and CPU seconds by then: median (min-max)")
    print(f"  {'code':<8} {'start':<8} {'service':<11} {'ready':>18} {'cpu':>18}")
    for name, _ in checkouts:
        print("\n".join(report(name, results[name])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
