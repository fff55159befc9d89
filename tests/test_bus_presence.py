"""Agent presence as the scheduler watches it, on a real nats-server."""

from __future__ import annotations

import asyncio
import itertools
import uuid

from hypothesis import given
from hypothesis import strategies as st

from schemas import subjects
from schemas.eligibility import word_set, words
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

    watch = PresenceWatch(kv, swarm=swarm, clock=lambda: float(next(ticks)), on_change=on_change)
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


@given(st.lists(st.text(max_size=6), max_size=5))
def test_remembered_word_sets_equal_the_computed_ones(values: list[str]) -> None:
    assert word_set(values) == words(values)
    assert word_set(list(values)) == words(values)  # asked again: the same answer
