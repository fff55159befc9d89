"""A scheduler says "ready" only once it has looked at the leader lease (holding it, or knowing
another does). It used to announce readiness the moment its replay caught up, before its first
look at the lease (which may wait seconds while a cluster forms): ``swarm doctor`` then saw two
ready schedulers and "none holds the leader lease"."""

from __future__ import annotations

import asyncio

import msgspec
from gateway_support import running
from waiting import until

from schemas import subjects
from services.bus.connection import NatsOptions
from services.bus.service import Bus, Readiness
from services.scheduler.decide import Config
from services.scheduler.service import Scheduler


async def test_no_ready_heartbeat_comes_before_the_first_look_at_the_lease(nats_factory) -> None:
    server = nats_factory()
    nats = NatsOptions.from_env(server.url)
    bus = await Bus.connect(nats, name="watcher")
    await bus.provision()
    beats = await (await bus.kv(subjects.SERVICES_BUCKET)).watch("scheduler.*")
    leases = await (await bus.kv(subjects.LEADER_BUCKET)).watch("scheduler")
    seen: list[tuple[str, float, bool]] = []

    async def collect(watcher, kind: str) -> None:
        async for entry in watcher:
            if entry is None or not entry.value:
                continue
            ready = kind == "lease" or msgspec.json.decode(entry.value, type=Readiness).ready
            seen.append((kind, entry.created.timestamp() if entry.created else 0.0, ready))

    collecting = [
        asyncio.create_task(collect(beats, "beat")),
        asyncio.create_task(collect(leases, "lease")),
    ]
    try:
        standby_first = Scheduler(nats=nats, instance="s1", config=Config(lease=3.0))
        async with (
            running(standby_first),
            running(Scheduler(nats=nats, instance="s2", config=Config(lease=3.0))),
        ):
            await until(
                lambda: sum(1 for kind, _, ready in seen if kind == "beat" and ready) >= 2,
                20,
                "both schedulers to say ready",
            )
    finally:
        for task in collecting:
            task.cancel()
        await bus.close()

    first_lease = min(t for kind, t, _ in seen if kind == "lease")
    first_ready = min(t for kind, t, ready in seen if kind == "beat" and ready)
    assert first_lease <= first_ready, seen
