"""Replay then follow, read-your-writes, and snapshots, on a real nats-server."""

from __future__ import annotations

import asyncio
import base64
import copy
import gc
import hashlib
import json
import os
import threading
import time
import uuid
import zlib
from typing import Any

import msgspec
import pytest
from nats.js.object_store import OBJ_META_PRE_TEMPLATE

from schemas import events as ev
from schemas import subjects
from schemas.board import Board, tasks_in_full
from schemas.errors import Unavailable
from schemas.fold import apply
from services.bus.connection import NatsOptions
from services.bus.projection import CATCH_UP_BATCH, Lazily, Projection, position
from services.bus.service import Bus, Service
from services.bus.snapshots import (
    CHUNKED,
    OBJECT,
    Capture,
    key_for,
    object_name,
    pack,
    packed_seq,
    unpack,
)


async def seed(bus: Bus, swarm: str, tasks: int) -> int:
    """A small swarm life: agents, tasks, claims and completions. Returns the last sequence."""
    now = time.time()
    seq = await bus.events.append(ev.SwarmCreated(swarm=swarm, id=swarm, time=now, name=swarm), 0)
    for agent in ("a1", "a2"):
        seq = await bus.events.append(
            ev.AgentRegistered(swarm=swarm, id=agent, time=now, name=agent, skills=["ui"]), 0
        )
    for i in range(tasks):
        task = f"t{i}"
        depends = [f"t{i - 1}"] if i % 3 == 2 else []
        last = await bus.events.append(
            ev.TaskCreated(swarm=swarm, id=task, time=now + i, title=task, depends=depends), 0
        )
        seq = last
        if depends:
            continue
        agent = "a1" if i % 2 else "a2"
        for event in (
            ev.TaskClaimed(swarm=swarm, id=task, time=now + i, agent=agent, attempt=1),
            ev.TaskRunning(swarm=swarm, id=task, time=now + i, agent=agent, attempt=1),
            ev.TaskCompleted(swarm=swarm, id=task, time=now + i, agent=agent, attempt=1),
        ):
            last = await bus.events.append(event, last)
        seq = last
    return seq


async def replayed(bus: Bus, swarm: str, **kwargs) -> Projection:
    projection = Projection(bus.js, swarm=swarm, **kwargs)
    await projection.start()
    await projection.wait_ready(10)
    return projection


async def test_live_projection_equals_fresh_replay_at_same_sequence(
    bus: Bus, swarm_id: str
) -> None:
    live = await replayed(bus, swarm_id)
    last = await seed(bus, swarm_id, 12)
    await live.wait_for(last)
    fresh = await replayed(bus, swarm_id)
    assert fresh.seq == live.seq == last
    assert fresh.board == live.board
    assert len(live.board.swarms[swarm_id].tasks) == 12
    await live.stop()
    await fresh.stop()


async def test_write_then_wait_for_sees_the_write(bus: Bus, swarm_id: str) -> None:
    projection = await replayed(bus, swarm_id)
    seq = await bus.events.append(
        ev.SwarmCreated(swarm=swarm_id, id=swarm_id, time=time.time(), name="ryw"), 0
    )
    await projection.wait_for(seq)
    assert swarm_id in projection.board.swarms
    await projection.stop()


async def test_empty_log_is_ready_at_once(bus: Bus, swarm_id: str) -> None:
    projection = await replayed(bus, swarm_id)
    assert projection.ready and projection.board == Board()
    await projection.stop()


async def test_snapshot_plus_tail_equals_full_replay(bus: Bus, swarm_id: str) -> None:
    await seed(bus, swarm_id, 9)
    first = await replayed(bus, swarm_id, snapshots=bus.snapshots)
    assert await first.save_snapshot()
    snapshot_seq = first.seq
    await first.stop()

    now = time.time()
    last = await bus.events.append(
        ev.TaskCreated(swarm=swarm_id, id="tail-1", time=now, title="after the snapshot"), 0
    )
    last = await bus.events.append(
        ev.TaskCancelled(swarm=swarm_id, id="t2", time=now, reason="tail"),
        bus_version(first.board, swarm_id, "t2"),
    )

    from_snapshot = await replayed(bus, swarm_id, snapshots=bus.snapshots)
    full = await replayed(bus, swarm_id)
    await from_snapshot.wait_for(last)
    await full.wait_for(last)
    assert from_snapshot.started_from == snapshot_seq
    assert from_snapshot.board == full.board
    assert from_snapshot.board.task(swarm_id, "t2").status == "cancelled"
    await from_snapshot.stop()
    await full.stop()


async def test_a_snapshot_due_is_saved_while_the_fold_goes_on_and_holds_the_board_when_due(
    bus: Bus, swarm_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every ``snapshot_every`` events the board is copied (``Capture``) and the copy written
    and stored while the fold goes on: here the writing waits until the test lets it go, an
    event appended meanwhile is folded (a writer waiting for it is answered), and the snapshot
    stored is the board as it was when copied, not the board the fold has since."""
    await seed(bus, swarm_id, 3)
    projection = await replayed(bus, swarm_id, snapshots=bus.snapshots, snapshot_every=4)
    at_copy: list[Board] = []
    copied, saved, write_now = asyncio.Event(), asyncio.Event(), threading.Event()
    take, write, save = Capture.__init__, Capture.stored, bus.snapshots.save

    def taken(capture: Capture, board: Board) -> None:
        take(capture, board)
        at_copy.append(copy.deepcopy(board))
        copied.set()

    def written(capture: Capture) -> Any:  # in the thread the save writes in
        if not write_now.wait(30):
            raise TimeoutError("the test never let the snapshot be written")
        return write(capture)

    async def saved_then_told(*args: Any, **kwargs: Any) -> bool:
        try:
            return await save(*args, **kwargs)
        finally:
            saved.set()

    monkeypatch.setattr(Capture, "__init__", taken)
    monkeypatch.setattr(Capture, "stored", written)
    monkeypatch.setattr(bus.snapshots, "save", saved_then_told)
    try:
        await bus.events.append(  # the replay folded more than 4 events: a snapshot is due
            ev.TaskCreated(swarm=swarm_id, id="due", time=time.time(), title="due"), 0
        )
        await asyncio.wait_for(copied.wait(), 10)
        later = await bus.events.append(
            ev.TaskCreated(swarm=swarm_id, id="meanwhile", time=time.time(), title="later"), 0
        )
        await projection.wait_for(later)  # folded while the snapshot is being written
        assert not saved.is_set() and projection.board.task(swarm_id, "meanwhile") is not None
    finally:
        write_now.set()
    await asyncio.wait_for(saved.wait(), 10)
    stored = await bus.snapshots.load(projection.scope)
    assert stored is not None and len(at_copy) == 1
    assert stored == at_copy[0] and stored.seq < later == projection.seq
    assert stored.task(swarm_id, "meanwhile") is None
    fresh = await replayed(bus, swarm_id)
    await fresh.wait_for(later)
    assert fresh.board == projection.board  # the chunks sealed meanwhile adopted, nothing lost
    await projection.stop()
    await fresh.stop()


async def test_older_snapshot_never_replaces_a_newer_one(bus: Bus, swarm_id: str) -> None:
    await seed(bus, swarm_id, 3)
    projection = await replayed(bus, swarm_id, snapshots=bus.snapshots)
    assert await projection.save_snapshot()
    older = Board(seq=1)
    assert not await bus.snapshots.save(projection.scope, older)
    loaded = await bus.snapshots.load(projection.scope)
    assert loaded == projection.board
    await projection.stop()


def bus_version(board: Board, swarm: str, task: str) -> int:
    return board.version(swarm, "task", task)


async def test_position_read_from_the_ack_subject_matches_nats_metadata(
    bus: Bus, swarm_id: str
) -> None:
    last = await seed(bus, swarm_id, 3)
    sub = await bus.js.subscribe(f"swarm.evt.{swarm_id}.>", ordered_consumer=True)
    seen: list[tuple[int, int]] = []
    while not seen or seen[-1][0] < last:
        msg = await sub.next_msg(timeout=5)
        meta = msg.metadata
        assert position(msg) == (meta.sequence.stream, meta.num_pending)
        seen.append(position(msg))
    assert seen[-1] == (last, 0)
    await sub.unsubscribe()


async def test_a_board_too_large_for_one_message_is_snapshotted_through_the_object_store(
    bus: Bus, swarm_id: str
) -> None:
    await seed(bus, swarm_id, 6)
    first = await replayed(bus, swarm_id)
    scope = f"{first.scope}-large"
    assert await bus.snapshots.save(scope, first.board, inline_limit=100)
    entry = await (await bus.kv(subjects.SNAPSHOTS_BUCKET)).get(key_for(scope))
    assert entry.value is not None
    name = object_name(entry.value)
    assert name is not None and packed_seq(entry.value) == first.seq
    assert await bus.snapshots.load(scope) == first.board

    last = await bus.events.append(
        ev.TaskCreated(swarm=swarm_id, id="later", time=time.time(), title="later"), 0
    )
    await first.wait_for(last)
    assert await bus.snapshots.save(scope, first.board, inline_limit=100)
    assert await bus.snapshots.load(scope) == first.board
    store = await bus.js.object_store(subjects.SNAPSHOT_STORE)
    names = {info.name for info in await store.list(ignore_deletes=True)}
    assert name not in names  # the replaced one is gone
    await first.stop()


def earlier_form(board: Board) -> bytes:
    """A snapshot body as it was written before the msgpack form: compressed JSON."""
    return zlib.compress(msgspec.json.encode(board, enc_hook=tasks_in_full), 3)


async def test_a_snapshot_in_the_earlier_json_form_is_read_then_replaced_by_msgpack(
    bus: Bus, swarm_id: str
) -> None:
    last = await seed(bus, swarm_id, 9)
    full = await replayed(bus, swarm_id)
    await full.wait_for(last)
    kv = await bus.kv(subjects.SNAPSHOTS_BUCKET)
    # as an older process left it: inline in the KV value
    await kv.put(key_for(full.scope), b"%d\n" % full.seq + earlier_form(full.board))

    later = await bus.events.append(
        ev.TaskCreated(swarm=swarm_id, id="tail", time=time.time(), title="tail"), 0
    )
    await full.wait_for(later)
    started = await replayed(bus, swarm_id, snapshots=bus.snapshots)
    await started.wait_for(later)
    assert started.started_from == last
    assert started.board == full.board

    assert await started.save_snapshot()
    entry = await kv.get(key_for(full.scope))
    assert entry.value is not None
    assert entry.value.partition(b"\n")[2].startswith(CHUNKED)
    assert await bus.snapshots.load(full.scope) == full.board
    await started.stop()
    await full.stop()


async def test_an_earlier_json_snapshot_in_the_object_store_is_read(
    bus: Bus, swarm_id: str
) -> None:
    last = await seed(bus, swarm_id, 6)
    full = await replayed(bus, swarm_id)
    await full.wait_for(last)
    name = f"{key_for(full.scope)}.{full.seq}"
    await (await bus.js.object_store(subjects.SNAPSHOT_STORE)).put(name, earlier_form(full.board))
    kv = await bus.kv(subjects.SNAPSHOTS_BUCKET)
    await kv.put(key_for(full.scope), b"%d\n" % full.seq + OBJECT + name.encode())
    assert await bus.snapshots.load(full.scope) == full.board
    await full.stop()


async def test_a_large_board_round_trips_through_a_snapshot(bus: Bus) -> None:
    """20,000 finished tasks and 1,000 agents (folded here, no log needed): through the object
    store and back, equal; and an unreadable snapshot means a replay from the start."""
    now = time.time()
    board = Board()
    seq = 0

    def add(event: ev.Event) -> None:
        nonlocal seq
        seq += 1
        apply(board, event, seq)

    add(ev.SwarmCreated(swarm="big", id="big", time=now, name="big"))
    for a in range(1_000):
        add(ev.AgentRegistered(swarm="big", id=f"a{a}", time=now, name=f"a{a}", skills=["x"]))
    for i in range(20_000):
        common: dict[str, Any] = {"swarm": "big", "id": f"t{i}", "time": now + i}
        agent: dict[str, Any] = {"agent": f"a{i % 1_000}", "attempt": 1}
        add(ev.TaskCreated(**common, title=f"task {i}", prompt="p" * 100, tags=["x"]))
        add(ev.TaskClaimed(**common, **agent))
        add(ev.TaskRunning(**common, **agent))
        add(
            ev.TaskCompleted(
                **common, **agent, outcome=ev.RunOutcome(result=f"r{i}", duration_s=0.5)
            )
        )
    assert len(board.swarms["big"].tasks) == 20_000
    assert board.task("big", "t19999").status == "completed"

    scope = f"big-{uuid.uuid4().hex[:6]}"
    assert await bus.snapshots.save(scope, board)
    entry = await (await bus.kv(subjects.SNAPSHOTS_BUCKET)).get(key_for(scope))
    assert entry.value is not None and object_name(entry.value) is not None
    assert await bus.snapshots.load(scope) == board

    assert unpack(pack(board)) == board
    # a snapshot that cannot be read (cut short): load says "none", the service replays the log
    await (await bus.kv(subjects.SNAPSHOTS_BUCKET)).put(key_for(scope), pack(board)[:-100])
    assert await bus.snapshots.load(scope) is None


def test_decoding_a_snapshot_leaves_the_garbage_collector_as_it_was() -> None:
    board = Board(seq=3)
    assert gc.isenabled()
    assert unpack(pack(board)) == board
    assert gc.isenabled()
    gc.disable()
    try:
        assert unpack(pack(board)) == board
        assert not gc.isenabled()
    finally:
        gc.enable()


class Probe(Service):
    name = "probe"


async def test_a_service_process_replays_with_the_collector_paused_then_freezes_the_board(
    bus: Bus, swarm_id: str, nats_url: str
) -> None:
    last = await seed(bus, swarm_id, 6)
    in_tests = Probe(nats=NatsOptions.from_env(nats_url), swarm=swarm_id)
    before = gc.get_freeze_count()
    await in_tests.start()
    assert in_tests.projection.seq == last
    assert gc.get_freeze_count() == before  # not its process: the collector is left alone
    await in_tests.stop()

    own = Probe(nats=NatsOptions.from_env(nats_url), swarm=swarm_id)
    own.owns_process = True
    try:
        await own.start()
        assert own.projection.seq == last
        assert gc.isenabled()
        assert gc.get_freeze_count() > before
        assert own.projection.board == in_tests.projection.board
    finally:
        await own.stop()
        gc.unfreeze()


async def test_a_fold_whose_consumer_is_gone_for_good_subscribes_again(
    bus: Bus, swarm_id: str
) -> None:
    """nats-py's own recovery of an ordered consumer runs in a task that ends for good when a
    re-creation raises mid-reconnect (chaos: three NATS restarts in 9 s). Here that task is gone
    and the consumer deleted: the fold must still reach events appended afterwards."""
    seq = await seed(bus, swarm_id, tasks=2)
    projection = await replayed(bus, swarm_id, stall_check=0.2)
    try:
        await projection.wait_for(seq)
        sub = projection._sub
        assert sub is not None
        sub._sub._jsi._hbtask.cancel()  # the library's own recovery, dead
        await bus.js.delete_consumer(subjects.EVENTS_STREAM, sub._consumer)
        later = await bus.events.append(
            ev.TaskCreated(swarm=swarm_id, id="after", time=time.time(), title="after"), 0
        )
        await projection.wait_for(later, timeout=15)
        assert projection.board.task(swarm_id, "after") is not None
        assert projection.resubscribed >= 1
    finally:
        await projection.stop()


async def test_a_projection_following_agents_and_swarms_folds_those_and_no_task(
    bus: Bus, swarm_id: str
) -> None:
    """What an executor process's placement folds: agents and swarms, in log order, and nothing
    of the tasks (most of the log); it never saves a snapshot of that partial board."""
    last = await seed(bus, swarm_id, 6)
    full = await replayed(bus, swarm_id)
    agents_only = await replayed(
        bus, swarm_id, follows=("agent", "swarm"), snapshots=bus.snapshots, snapshot_every=1
    )
    late = await bus.events.append(
        ev.AgentRegistered(swarm=swarm_id, id="a3", time=time.time(), name="a3"), 0
    )
    await agents_only.wait_for(late)
    await full.wait_for(late)
    swarm = agents_only.board.swarms[swarm_id]
    assert sorted(swarm.agents) == ["a1", "a2", "a3"]
    assert swarm.tasks == {} and full.board.swarms[swarm_id].tasks
    assert agents_only.seq == late > last
    assert agents_only.board.version(swarm_id, "agent", "a3") == late
    assert not await agents_only.save_snapshot()
    await agents_only.stop()
    await full.stop()


def claim_for(agent: str) -> Any:
    """``urgent`` of a lazy projection: a claim for ``agent`` (any other followed event too)."""

    def urgent(subject: str, data: bytes) -> bool:
        if not subject.endswith(".claimed"):
            return True
        return msgspec.json.decode(data, type=ev.TaskClaimed).agent == agent

    return urgent


async def lazily_replayed(bus: Bus, swarm: str, lazily: Lazily) -> Projection:
    projection = await replayed(bus, swarm, lazily=lazily)
    await projection.go_lazy()
    return projection


async def test_a_lazy_projection_folds_the_log_in_order_when_an_urgent_event_arrives(
    bus: Bus, swarm_id: str
) -> None:
    """Kept up on demand (what an executor does with its swarm's log): events not followed
    (tasks created) and followed ones judged not urgent (a claim for another agent) wait; an
    urgent one (a claim for its agent) makes it read everything up to it, more than one batch,
    in log order, to the same board a full fold has."""
    await seed(bus, swarm_id, 3)
    lazily = Lazily(
        triggers=(subjects.verb_events(swarm_id, "task", "claimed"),),
        urgent=claim_for("a1"),
        every=3600,  # no catch-up by the clock in this test
    )
    lazy = await lazily_replayed(bus, swarm_id, lazily)
    folded: list[int] = []
    urgent_folded = asyncio.Event()

    def listener(seq: int, event: ev.Event, board: Board) -> None:
        folded.append(seq)
        if isinstance(event, ev.TaskClaimed) and event.agent == "a1":
            urgent_folded.set()

    lazy.listen(listener)
    try:
        now = time.time()
        appended = []
        for i in range(CATCH_UP_BATCH + 40):
            created = ev.TaskCreated(swarm=swarm_id, id=f"n{i}", time=now, title="n")
            appended.append(await bus.events.append(created, 0))
        other = ev.TaskClaimed(swarm=swarm_id, id="n0", time=now, agent="a2", attempt=1)
        appended.append(await bus.events.append(other, appended[0]))
        mine = ev.TaskClaimed(swarm=swarm_id, id="n1", time=now, agent="a1", attempt=1)
        appended.append(await bus.events.append(mine, appended[1]))
        await asyncio.wait_for(urgent_folded.wait(), 15)
        assert folded == appended  # every event, once, in log order
        full = await replayed(bus, swarm_id)
        assert full.seq == lazy.seq == appended[-1]
        assert full.board == lazy.board
        assert lazy.catch_ups >= 2  # more than one batch
        await full.stop()
    finally:
        await lazy.stop()


async def test_a_projection_switching_between_live_and_on_demand_folds_every_event_once(
    bus: Bus, swarm_id: str
) -> None:
    """What an executor does as agents come and go (``Lazily.wanted``, ``reconsider``): events
    appended while the fold goes from live to on demand and back, again and again, are each
    folded once, in log order, to the board a full fold has."""
    await seed(bus, swarm_id, 1)
    wanted = [False]
    lazily = Lazily(
        triggers=(subjects.verb_events(swarm_id, "task", "cancelled"),),
        every=0.05,
        wanted=lambda: wanted[0],
    )
    projection = await replayed(bus, swarm_id, lazily=lazily)
    await projection.reconsider()
    assert not projection.on_demand  # not wanted: it stays live
    folded: list[int] = []
    projection.listen(lambda seq, event, board: folded.append(seq))
    appended: list[int] = []

    async def append(count: int) -> None:
        for _ in range(count):
            task = uuid.uuid4().hex[:8]
            created = ev.TaskCreated(swarm=swarm_id, id=task, time=time.time(), title=task)
            appended.append(await bus.events.append(created, 0))

    try:
        modes = []
        for round_ in range(6):
            wanted[0] = round_ % 2 == 0
            await asyncio.gather(append(40), projection.reconsider())
            modes.append(projection.on_demand)
        await projection.wait_for(appended[-1], timeout=15)
        assert modes == [True, False] * 3
        assert projection.switches == 6
        assert folded == appended  # every event, once, in log order
        full = await replayed(bus, swarm_id)
        assert full.board == projection.board
        await full.stop()
    finally:
        await projection.stop()


async def test_a_lazy_projection_reads_on_for_a_writer_waiting_for_its_own_append(
    bus: Bus, swarm_id: str
) -> None:
    await seed(bus, swarm_id, 1)
    lazily = Lazily(triggers=(subjects.verb_events(swarm_id, "task", "cancelled"),), every=3600)
    lazy = await lazily_replayed(bus, swarm_id, lazily)
    try:
        seq = await bus.events.append(
            ev.TaskCreated(swarm=swarm_id, id="mine", time=time.time(), title="mine"), 0
        )
        await lazy.wait_for(seq, timeout=10)
        assert lazy.board.task(swarm_id, "mine") is not None
    finally:
        await lazy.stop()


async def test_a_lazy_projection_whose_reader_is_gone_reads_on_through_a_new_one(
    bus: Bus, swarm_id: str
) -> None:
    """The consumer reading on demand is in memory: gone when NATS restarts (or when an
    operator deletes it). The next read fails, drops it, and a new one from the fold's position
    reads what was appended meanwhile: every event once, in order."""
    await seed(bus, swarm_id, 1)
    lazily = Lazily(triggers=(subjects.verb_events(swarm_id, "task", "cancelled"),), every=3600)
    lazy = await lazily_replayed(bus, swarm_id, lazily)
    folded: list[int] = []
    lazy.listen(lambda seq, event, board: folded.append(seq))
    try:
        first = await bus.events.append(
            ev.TaskCreated(swarm=swarm_id, id="first", time=time.time(), title="first"), 0
        )
        await lazy.wait_for(first, timeout=10)
        reader = lazy._puller
        assert reader is not None
        await bus.js.delete_consumer(subjects.EVENTS_STREAM, reader)
        later = [
            await bus.events.append(
                ev.TaskCreated(swarm=swarm_id, id=f"later-{i}", time=time.time(), title="l"), 0
            )
            for i in range(3)
        ]
        await lazy.wait_for(later[-1], timeout=10)
        assert folded == [first, *later]
        assert lazy._puller not in (None, reader)
    finally:
        await lazy.stop()


async def test_a_lazy_projection_catches_up_by_the_clock_with_nothing_followed_arriving(
    bus: Bus, swarm_id: str
) -> None:
    await seed(bus, swarm_id, 1)
    lazily = Lazily(triggers=(subjects.verb_events(swarm_id, "task", "cancelled"),), every=0.05)
    lazy = await lazily_replayed(bus, swarm_id, lazily)
    arrived = asyncio.Event()
    lazy.listen(lambda seq, event, board: arrived.set() if event.id == "later" else None)
    try:
        await bus.events.append(
            ev.TaskCreated(swarm=swarm_id, id="later", time=time.time(), title="later"), 0
        )
        await asyncio.wait_for(arrived.wait(), 15)
        assert lazy.board.task(swarm_id, "later") is not None
    finally:
        await lazy.stop()


async def test_waiting_for_a_sequence_the_log_never_delivers_is_unavailable_in_time(
    bus: Bus, swarm_id: str
) -> None:
    projection = Projection(bus.js, swarm=swarm_id)
    await projection.start()
    try:
        began = time.monotonic()
        with pytest.raises(Unavailable, match="did not deliver sequence"):
            await projection.wait_for(projection.seq + 1_000_000, timeout=0.3)
        assert 0.25 <= time.monotonic() - began < 3
        seq = await bus.events.append(
            ev.SwarmCreated(swarm=swarm_id, id=swarm_id, time=1.0, name="w"), 0
        )
        await projection.wait_for(seq, timeout=5)  # a later wait is answered as ever
    finally:
        await projection.stop()


async def test_a_projection_following_no_tasks_reads_a_snapshot_without_them(
    bus: Bus, swarm_id: str
) -> None:
    """Placement's fold starts from the swarm's snapshot but builds none of its tasks (nor their
    versions): the rest of the board is the snapshot's, and it folds on from there."""
    last = await seed(bus, swarm_id, 9)
    full = await replayed(bus, swarm_id, snapshots=bus.snapshots, snapshot_every=1_000)
    await full.wait_for(last)
    assert await full.save_snapshot()
    agents_only = await replayed(bus, swarm_id, follows=("agent", "swarm"), snapshots=bus.snapshots)
    assert agents_only.started_from == last
    board, whole = agents_only.board, full.board
    assert board.swarms[swarm_id].tasks == {} and len(whole.swarms[swarm_id].tasks) == 9
    assert board.swarms[swarm_id].agents == whole.swarms[swarm_id].agents
    assert board.swarms[swarm_id].name == whole.swarms[swarm_id].name
    assert board.versions == {k: v for k, v in whole.versions.items() if "/task/" not in k}
    assert board.version(swarm_id, "agent", "a2") == whole.version(swarm_id, "agent", "a2") > 0
    late = await bus.events.append(
        ev.AgentRegistered(swarm=swarm_id, id="a3", time=time.time(), name="a3"), 0
    )
    await agents_only.wait_for(late)
    assert sorted(board.swarms[swarm_id].agents) == ["a1", "a2", "a3"]
    await agents_only.stop()
    await full.stop()


async def test_a_stored_board_is_read_chunk_by_chunk_and_checked_against_its_digest(
    bus: Bus,
) -> None:
    """The object store read (a pull consumer over the object's chunks) gives what nats-py's
    own read gives; an object whose bytes do not match its recorded digest is refused."""
    await bus.provision()
    store = await bus.js.object_store(subjects.SNAPSHOT_STORE)
    name = f"read-{uuid.uuid4().hex[:6]}"
    data = os.urandom(3 * 128 * 1024 + 5)  # four chunks, the last a short one
    await store.put(name, data)
    assert await bus.snapshots.read_object(name) == data == (await store.get(name)).data

    info = await store.get_info(name)  # the same chunks, said to hold other bytes
    info.digest = "SHA-256=" + base64.urlsafe_b64encode(hashlib.sha256(b"other").digest()).decode()
    meta = OBJ_META_PRE_TEMPLATE.format(
        bucket=subjects.SNAPSHOT_STORE, obj=base64.urlsafe_b64encode(name.encode()).decode()
    )
    await bus.js.publish(meta, json.dumps(info.as_dict()).encode())
    with pytest.raises(ValueError, match="do not match its digest"):
        await bus.snapshots.read_object(name)
