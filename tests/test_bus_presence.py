"""Agent presence: one key per executor listing its agents. The pure parts (the record, the
book of what was heard) without NATS; the watch as the scheduler runs it, on a real
nats-server."""

from __future__ import annotations

import asyncio
import itertools
import uuid

import msgspec
from hypothesis import given
from hypothesis import strategies as st
from nats.js.kv import KeyValue
from waiting import until

from schemas import subjects
from schemas.eligibility import word_set, words
from services.bus.connection import NatsOptions
from services.bus.presence import (
    HostRecord,
    Presence,
    PresenceBook,
    PresenceWatch,
    agents_present,
    decode_record,
    host_record,
    listed,
    put_hosts,
    read_hosts,
    withdraw_hosts,
)
from services.bus.service import Bus

# --- the record and the book (pure) ------------------------------------------------------------


def record(executor: str, now: float, *agents: str, **running: str) -> HostRecord:
    return host_record(executor, now, agents, running)


def test_an_executor_record_lists_each_agent_it_hosts_under_the_agents_presence_key() -> None:
    value = msgspec.json.encode(record("box", 5.0, "b", "a", "b", a="t1"))
    got = decode_record(value)
    assert got is not None and got.agents == ["a", "b"]  # sorted, once each
    assert listed("dev.box", got) == {
        "dev.a": Presence(executor="box", time=5.0, task="t1"),
        "dev.b": Presence(executor="box", time=5.0, task=None),
    }


def test_an_older_executors_key_for_one_agent_reads_as_that_agents() -> None:
    older = msgspec.json.encode({"executor": "box", "time": 3.0, "task": "t9"})
    got = decode_record(older)
    assert got is not None
    assert listed("dev.qa-agent", got) == {
        "dev.qa-agent": Presence(executor="box", time=3.0, task="t9")
    }


def test_a_value_that_is_not_a_record_is_not_read() -> None:
    assert decode_record(b"") is None
    assert decode_record(b"not json") is None
    assert decode_record(b'{"time": 1.0}') is None  # no executor
    values = {"dev.x": b"junk", "dev.box": msgspec.json.encode(record("box", 1.0, "a"))}
    assert agents_present(values) == {"dev.a": Presence(executor="box", time=1.0)}


def test_doctor_reads_each_agent_with_the_newest_record_listing_it() -> None:
    values = {
        "dev.old": msgspec.json.encode(record("old", 1.0, "a", "b")),
        "dev.new": msgspec.json.encode(record("new", 9.0, "b")),
    }
    found = agents_present(values)
    assert found["dev.a"] == Presence(executor="old", time=1.0)
    assert found["dev.b"] == Presence(executor="new", time=9.0)


def test_a_refresh_hears_every_listed_agent_and_reports_only_arrivals() -> None:
    book = PresenceBook()
    assert book.hear("dev.box", record("box", 0, "a", "b"), now=10.0) == ["dev.a", "dev.b"]
    assert book.hear("dev.box", record("box", 0, "a", "b"), now=12.0) == []
    assert book.seen == {"dev.a": 12.0, "dev.b": 12.0}
    assert book.hear("dev.box", record("box", 0, "a", "b", "c"), now=14.0) == ["dev.c"]
    assert book.seen == {"dev.a": 14.0, "dev.b": 14.0, "dev.c": 14.0}


def test_an_agent_dropped_from_the_list_is_forgotten_unless_another_key_lists_it() -> None:
    book = PresenceBook()
    book.hear("dev.box", record("box", 0, "a", "b"), now=10.0)
    book.hear("dev.other", record("other", 0, "b"), now=11.0)
    assert book.hear("dev.box", record("box", 0, "a"), now=12.0) == []  # b: still listed
    assert book.seen == {"dev.a": 12.0, "dev.b": 11.0}
    assert book.hear("dev.other", record("other", 0), now=13.0) == ["dev.b"]
    assert book.seen == {"dev.a": 12.0}


def test_a_deleted_executor_key_forgets_all_its_agents_at_once() -> None:
    book = PresenceBook()
    book.hear("dev.box", record("box", 0, "a", "b"), now=10.0)
    book.hear("dev.other", record("other", 0, "c"), now=10.0)
    assert book.hear("dev.box", None, now=11.0) == ["dev.a", "dev.b"]
    assert book.seen == {"dev.c": 10.0} and book.lists == {"dev.other": frozenset({"dev.c"})}
    assert book.hear("dev.box", None, now=12.0) == []  # gone already


def test_an_outage_floors_what_was_heard_before_it() -> None:
    book = PresenceBook()
    book.hear("dev.box", record("box", 0, "a"), now=10.0)
    book.hear("dev.late", record("late", 0, "b"), now=30.0)
    book.floor(20.0)
    assert book.seen == {"dev.a": 20.0, "dev.b": 30.0}


writes = st.lists(
    st.tuples(
        st.sampled_from(["dev.e1", "dev.e2", "dev.e3"]),
        st.none() | st.frozensets(st.sampled_from(["a", "b", "c", "d"]), max_size=4),
    ),
    max_size=25,
)


@given(writes)
def test_the_book_holds_exactly_the_agents_the_latest_values_list(
    history: list[tuple[str, frozenset[str] | None]],
) -> None:
    """Whatever the order of writes and deletes: the agents known are those the keys' latest
    values list, each heard when a write last listed it; the changes reported add up to that
    set."""
    book = PresenceBook()
    latest: dict[str, frozenset[str]] = {}
    last_listed: dict[str, float] = {}
    known: set[str] = set()
    for now, (key, agents) in enumerate(history):
        value = None if agents is None else record(key.split(".")[1], 0, *agents)
        for change in book.hear(key, value, float(now)):
            known ^= {change}  # each report is an arrival or a departure
        if agents is None:
            latest.pop(key, None)
        else:
            latest[key] = agents
            last_listed.update({f"dev.{agent}": float(now) for agent in agents})
    listed_now = {f"dev.{agent}" for agents in latest.values() for agent in agents}
    assert set(book.seen) == known == listed_now
    assert book.seen == {agent: last_listed[agent] for agent in listed_now}


# --- the watch, on a real nats-server -------------------------------------------------------


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
        await put_hosts(kv, swarm, record("box", 1.0, "a"))
        assert await asyncio.wait_for(arrived.get(), 5) == a
        first_seen = watch.seen[a]
        await put_hosts(kv, swarm, record("box", 2.0, "a"))  # a refresh
        await put_hosts(kv, swarm, record("box", 3.0, "a", "b"))  # b hosted too
        # the refresh comes before b's arrival: once b is reported, the refresh is in
        assert await asyncio.wait_for(arrived.get(), 5) == b
        assert watch.seen[a] > first_seen  # the refresh counted as hearing the agent
        await put_hosts(kv, swarm, record("box", 4.0, "b"))  # a let go
        assert await asyncio.wait_for(arrived.get(), 5) == a
        assert a not in watch.seen and b in watch.seen
        await withdraw_hosts(kv, swarm, "box")  # a clean stop
        assert await asyncio.wait_for(arrived.get(), 5) == b
        assert watch.seen == {}
        assert changes == [a, b, a, b]
    finally:
        await watch.stop()


async def test_a_watch_started_late_knows_every_agent_the_keys_already_list(bus: Bus) -> None:
    swarm = f"presence-{uuid.uuid4().hex[:8]}"
    kv = await bus.kv(subjects.PRESENCE_BUCKET)
    many = [f"a{i}" for i in range(300)]
    await put_hosts(kv, swarm, record("e1", 1.0, *many[:150]))
    await put_hosts(kv, swarm, record("e2", 1.0, *many[150:]))
    watch = PresenceWatch(bus.nc, swarm=swarm, clock=lambda: 50.0)
    await watch.start()
    try:
        assert watch.seen == {subjects.presence_key(swarm, a): 50.0 for a in many}
        got = await read_hosts(kv, swarm, "e2")
        assert got is not None and got.agents == sorted(many[150:])
        assert await read_hosts(kv, swarm, "nobody") is None
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
    await put_hosts(kv, "s", record("e", 1.0, "a"))
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
            await put_hosts(kv, "s", record("e", 2.0, "a"))
        except Exception:  # JetStream still coming back: an executor tries again too
            pass
        await asyncio.sleep(0.2)  # an executor's refresh pace (it is 2 s there)


@given(st.lists(st.text(max_size=6), max_size=5))
def test_remembered_word_sets_equal_the_computed_ones(values: list[str]) -> None:
    assert word_set(values) == words(values)
    assert word_set(list(values)) == words(values)  # asked again: the same answer
