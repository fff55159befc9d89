"""Reading buckets for ``swarm doctor`` and ``/health`` against real NATS: an empty answer means an
empty bucket, and a read that fails (NATS gone mid-read, as when a node is lost) raises instead of
looking like "nobody heard from" or "nobody holds the lease"."""

from __future__ import annotations

import asyncio
import time

import msgspec
import nats.errors
import pytest
from nats.js.errors import ServiceUnavailableError

from schemas import subjects
from services.bus.connection import NatsOptions
from services.bus.inspection import _bucket_values, answered
from services.bus.leases import Lease
from services.bus.service import Bus, Readiness, latest_values, read_readiness

NATS_TROUBLE = (nats.errors.Error, TimeoutError, OSError)  # what a client sees of a lost node


def heartbeat(service: str, instance: str) -> bytes:
    now = time.time()
    return msgspec.json.encode(
        Readiness(
            service=service,
            instance=instance,
            ready=True,
            seq=1,
            pid=1,
            host="h",
            started_at=now,
            time=now,
        )
    )


async def test_bucket_reads_see_current_values_and_fail_loudly_when_nats_is_gone(
    nats_factory,
) -> None:
    server = nats_factory()
    bus = await Bus.connect(NatsOptions.from_env(server.url), name="inspection-test")
    try:
        await bus.provision()
        services = await bus.kv(subjects.SERVICES_BUCKET)
        leader = await bus.kv(subjects.LEADER_BUCKET)
        assert await read_readiness(bus) == []  # empty: nobody announced yet
        await services.put("gateway.g1", heartbeat("gateway", "g1"))
        await services.put("chat.c1", heartbeat("chat", "c1"))
        await services.delete("chat.c1")  # a service that stopped
        await leader.put("scheduler", msgspec.json.encode(Lease(instance="s1", time=1.0)))

        assert [b.instance for b in await read_readiness(bus)] == ["g1"]
        leases = await _bucket_values(bus, subjects.LEADER_BUCKET, Lease)
        assert leases == {"scheduler": Lease(instance="s1", time=1.0)}

        server.kill()  # the node is lost while the client still thinks it is connected

        with pytest.raises(NATS_TROUBLE):
            await read_readiness(bus)
        with pytest.raises(NATS_TROUBLE):
            await _bucket_values(bus, subjects.LEADER_BUCKET, Lease)
        with pytest.raises(NATS_TROUBLE):
            await latest_values(services, timeout=1.0)
    finally:
        await bus.close()


async def test_a_bucket_read_leaves_no_consumer_behind(bus: Bus, swarm_id: str) -> None:
    """Services read the heartbeats every few seconds and the server takes at most 1,000
    consumers on a stream: a read's consumer must go soon after the read, not after nats-py's
    default five minutes (the suite once ran into "maximum consumers limit reached")."""
    kv = await bus.js.create_key_value(bucket=f"reads-{swarm_id}")
    await kv.put("a", b"1")
    for _ in range(20):
        assert await latest_values(kv) == {"a": b"1"}
    stream = f"KV_reads-{swarm_id}"
    deadline = time.monotonic() + 30  # the server sweeps inactive consumers every few seconds
    while (info := await bus.js.stream_info(stream)).state.consumer_count:
        assert time.monotonic() < deadline, f"{info.state.consumer_count} consumers left"
        await asyncio.sleep(0.2)  # polling the server's count: nothing to subscribe to
    await bus.js.delete_key_value(f"reads-{swarm_id}")


async def test_a_bucket_read_returns_every_live_key_of_a_large_bucket(
    bus: Bus, swarm_id: str
) -> None:
    """More keys than one fetch takes, some deleted, some written twice: the read has each live
    key once with its newest value, and no deleted one."""
    kv = await bus.js.create_key_value(bucket=f"large-{swarm_id}")
    try:
        for i in range(600):
            await kv.put(f"k{i}", b"old")
        for i in range(0, 600, 3):
            await kv.delete(f"k{i}")
        for i in range(1, 600, 3):
            await kv.put(f"k{i}", b"new")
        want = {f"k{i}": (b"new" if i % 3 == 1 else b"old") for i in range(600) if i % 3}
        for _ in range(3):
            assert await latest_values(kv) == want
    finally:
        await bus.js.delete_key_value(f"large-{swarm_id}")


class Answers:
    """A read that JetStream's API turns away ``busy_times`` times (503), then answers."""

    def __init__(self, busy_times: int, error: Exception | None = None) -> None:
        self.busy_times, self.error, self.asked = busy_times, error, 0

    async def __call__(self) -> str:
        self.asked += 1
        if self.error is not None:
            raise self.error
        if self.asked <= self.busy_times:
            raise ServiceUnavailableError()
        return "heartbeats"


async def test_a_read_turned_away_while_jetstream_is_busy_is_asked_again() -> None:
    read = Answers(busy_times=2)
    assert await answered(read, timeout=5.0) == "heartbeats"
    assert read.asked == 3


async def test_a_read_still_turned_away_when_the_time_is_up_raises_the_refusal() -> None:
    read = Answers(busy_times=10**6)
    with pytest.raises(ServiceUnavailableError):
        await answered(read, timeout=0.3)
    assert read.asked > 1


async def test_any_other_failure_is_not_asked_again() -> None:
    read = Answers(busy_times=0, error=nats.errors.ConnectionClosedError())
    with pytest.raises(nats.errors.ConnectionClosedError):
        await answered(read, timeout=5.0)
    assert read.asked == 1
