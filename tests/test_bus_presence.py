"""Agent presence as the scheduler watches it, on a real nats-server."""

from __future__ import annotations

import asyncio
import itertools
import uuid

from hypothesis import given
from hypothesis import strategies as st
from nats.js.kv import KeyValue
from waiting import until

from schemas import subjects
from schemas.eligibility import word_set, words
from services.bus.connection import NatsOptions
from services.bus.presence import Presence, PresenceWatch, put_presence
from services.bus.service import Bus


async def test_the_watch_wakes_on_an_agent_appearing_or_going_not_on_each_refresh(
    bus: Bus,
) -> None:
    swarm = f"presence-{uuid.uuid4().hex[:8]}"
    kv = await bus.kv(subjects.PRESENCE_BUCKET)
    ticks = itertools.count(1)
    changes: list[str] = []
    arrived: asyncio.Queue[str] = asyncio.Queue()

    def on_change(key: str) -> None:
        changes.append(key)
        arrived.put_nowait(key)

    clock = lambda: float(next(ticks))  # noqa: E731
    watch = PresenceWatch(bus.nc, swarm=swarm, clock=clock, on_change=on_change)
    await watch.start()
    a, b = subjects.presence_key(swarm, "a"), subjects.presence_key(swarm, "b")
    try:
        await put_presence(kv, swarm, "a", Presence(executor="e", time=1.0))
        assert await asyncio.wait_for(arrived.get(), 5) == a
        first_seen = watch.seen[a]
        await put_presence(kv, swarm, "a", Presence(executor="e", time=2.0))  # a refresh
        await put_presence(kv, swarm, "b", Presence(executor="e", time=2.0))
        # b's key comes after a's refresh in the bucket: once b is reported, the refresh is in
        assert await asyncio.wait_for(arrived.get(), 5) == b
        assert watch.seen[a] > first_seen  # the refresh counted as seeing the agent
        await kv.delete(a)
        assert await asyncio.wait_for(arrived.get(), 5) == a
        assert a not in watch.seen
        assert changes == [a, b, a]
    finally:
        await watch.stop()


async def test_after_a_nats_restart_refreshes_are_heard_again_and_the_outage_counts_as_heard(
    nats_factory,
) -> None:
    """kill -9 of nats-server, restarted on the same store: the watch hears refreshes again
    within half of the default 10 s lease (nats-py's own KV watch stayed deaf for 10 s and more,
    so the scheduler marked every agent lost), and ``heard()`` counts the outage as heard."""
    server = nats_factory()
    bus = await Bus.connect(NatsOptions.from_env(server.url), name="presence-restart")
    await bus.provision()
    kv = await bus.kv(subjects.PRESENCE_BUCKET)
    now = [100.0]
    watch = PresenceWatch(bus.nc, swarm="s", clock=lambda: now[0])
    key = subjects.presence_key("s", "a")
    await put_presence(kv, "s", "a", Presence(executor="e", time=1.0))
    await watch.start()
    try:
        assert watch.heard() == {key: 100.0}

        reconnects = bus.nc.stats["reconnects"]
        server.kill()
        server.start()
        await until(lambda: bus.nc.stats["reconnects"] > reconnects, 20, "a reconnection")
        now[0] = 150.0  # 50 s later by the watch's clock: far past any lease
        assert watch.heard() == {key: 150.0}  # the outage is no sign of a lost agent
        assert watch.heard() == {key: 150.0}  # counted once per reconnection

        now[0] = 160.0
        refresh = asyncio.create_task(refresh_until_heard(kv, watch, key))
        await asyncio.wait_for(refresh, 5.0)
        assert watch.seen[key] == 160.0
    finally:
        await watch.stop()
        await bus.close()


async def refresh_until_heard(kv: KeyValue, watch: PresenceWatch, key: str) -> None:
    """Refresh the key as an executor does (every so often, NATS willing) until the watch has
    heard a refresh made after the restart."""
    while watch.seen[key] != 160.0:
        try:
            await put_presence(kv, "s", "a", Presence(executor="e", time=2.0))
        except Exception:  # JetStream still coming back: an executor tries again too
            pass
        await asyncio.sleep(0.2)  # an executor's refresh pace (it is 2 s there)


@given(st.lists(st.text(max_size=6), max_size=5))
def test_remembered_word_sets_equal_the_computed_ones(values: list[str]) -> None:
    assert word_set(values) == words(values)
    assert word_set(list(values)) == words(values)  # asked again: the same answer
