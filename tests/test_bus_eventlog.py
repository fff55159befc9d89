"""The event log on a real nats-server: optimistic concurrency and idempotent appends."""

from __future__ import annotations

import asyncio
import time

import pytest
from nats.js.errors import APIError, NoStreamResponseError

from schemas import events as ev
from schemas import subjects
from schemas.errors import Conflict, Unavailable
from services.bus.connection import NatsOptions
from services.bus.eventlog import AppendConflict
from services.bus.publish import publish_once
from services.bus.service import Bus
from services.bus.streams import Layout


def created(swarm: str, task: str, title: str = "Create Button") -> ev.TaskCreated:
    return ev.TaskCreated(swarm=swarm, id=task, time=time.time(), title=title)


async def history(bus: Bus, swarm: str, aggregate: str, aggregate_id: str) -> list[ev.Event]:
    """Every event of one aggregate, read back from the stream."""
    sub = await bus.js.subscribe(
        subjects.aggregate_filter(swarm, aggregate, aggregate_id),
        stream=subjects.EVENTS_STREAM,
        ordered_consumer=True,
    )
    info = await sub.consumer_info()
    found: list[ev.Event] = []
    if info.num_pending or info.delivered.consumer_seq:
        while True:
            msg = await sub.next_msg(timeout=5)
            found.append(ev.decode(msg.data))
            if msg.metadata.num_pending == 0:
                break
    await sub.unsubscribe()
    return found


async def race_to_claim(bus: Bus, swarm: str, task: str, base: int) -> list[int | Exception]:
    """Two writers claim ``task`` at ``base`` at once: each one's sequence or what it raised."""

    async def claim(agent: str) -> int | Exception:
        event = ev.TaskClaimed(swarm=swarm, id=task, time=time.time(), agent=agent, attempt=1)
        try:
            return await bus.events.append(event, expected_seq=base)
        except Exception as error:
            return error

    return list(await asyncio.gather(claim("a1"), claim("a2")))


async def test_two_writers_racing_on_one_task_exactly_one_wins(bus: Bus, swarm_id: str) -> None:
    await bus.events.append(
        ev.SwarmCreated(swarm=swarm_id, id=swarm_id, time=time.time(), name="race"), 0
    )
    base = await bus.events.append(created(swarm_id, "t-race"), expected_seq=0)

    results = await race_to_claim(bus, swarm_id, "t-race", base)
    wins = [r for r in results if isinstance(r, int)]
    losses = [r for r in results if isinstance(r, Exception)]
    assert len(wins) == 1
    assert len(losses) == 1 and isinstance(losses[0], Conflict)
    claims = [e for e in await history(bus, swarm_id, "task", "t-race") if e.verb == "claimed"]
    assert len(claims) == 1


async def test_first_event_of_an_aggregate_is_refused_when_it_already_exists(
    bus: Bus, swarm_id: str
) -> None:
    await bus.events.append(created(swarm_id, "t-once"), expected_seq=0)
    with pytest.raises(AppendConflict):
        await bus.events.append(created(swarm_id, "t-once", "another"), expected_seq=0)


async def test_same_msg_id_appended_twice_yields_one_event(bus: Bus, swarm_id: str) -> None:
    event = created(swarm_id, "t-dup")
    first = await bus.events.append(event, expected_seq=0, msg_id="key-123")
    again = await bus.events.append(event, expected_seq=0, msg_id="key-123")
    unchecked = await bus.events.append(event, expected_seq=None, msg_id="key-123")
    assert first == again == unchecked
    assert len(await history(bus, swarm_id, "task", "t-dup")) == 1


async def test_expected_sequence_is_scoped_to_one_aggregate(bus: Bus, swarm_id: str) -> None:
    """Appends to other tasks in between do not disturb a task's expected sequence."""
    seq_a = await bus.events.append(created(swarm_id, "t-a"), expected_seq=0)
    await bus.events.append(created(swarm_id, "t-b"), expected_seq=0)
    seq = await bus.events.append(
        ev.TaskCancelled(swarm=swarm_id, id="t-a", time=time.time()), expected_seq=seq_a
    )
    assert seq > seq_a


async def test_event_subject_names_swarm_aggregate_id_and_type(bus: Bus, swarm_id: str) -> None:
    seq = await bus.events.append(created(swarm_id, "t-subj"), expected_seq=0)
    msg = await bus.js.get_msg(subjects.EVENTS_STREAM, seq)
    assert msg.subject == f"swarm.evt.{swarm_id}.task.t-subj.created" and msg.data is not None
    assert ev.decode(msg.data).type == "task.created"


async def test_event_log_refuses_delete_and_purge(bus: Bus, swarm_id: str) -> None:
    seq = await bus.events.append(created(swarm_id, "t-keep"), expected_seq=0)
    with pytest.raises(Exception, match=r"(?i)delete"):
        await bus.js.delete_msg(subjects.EVENTS_STREAM, seq)
    with pytest.raises(Exception, match=r"(?i)purge"):
        await bus.js.purge_stream(subjects.EVENTS_STREAM)
    info = await bus.js.stream_info(subjects.EVENTS_STREAM)
    assert info.config.deny_delete and info.config.deny_purge
    assert info.config.duplicate_window and info.config.duplicate_window > 0


# --- publish_once answers as nats-py's js.publish (issue 15: less work per publish) ----------


async def _answer(call) -> tuple[str, object]:
    """What a publish answered: ("ack", (stream, seq, duplicate)) or ("error", (type, code))."""
    try:
        ack = await call
    except APIError as error:
        return "error", (type(error), error.err_code, error.code)
    except NoStreamResponseError as error:
        return "error", (type(error), None, None)
    return "ack", (ack.stream, ack.seq, bool(ack.duplicate))


async def test_publish_once_answers_each_case_as_nats_pys_publish(bus: Bus, swarm_id: str) -> None:
    stream = subjects.EVENTS_STREAM
    cases = {  # name -> (subject, headers, stream)
        "first": ("one", {"Nats-Expected-Last-Subject-Sequence": "0"}, stream),
        "duplicate": ("one", {}, stream),
        "wrong last sequence": ("two", {"Nats-Expected-Last-Subject-Sequence": "999999"}, stream),
        "wrong stream": ("three", {}, "NOT_THE_STREAM"),
    }
    for name, (task, extra, expected_stream) in cases.items():
        answers = []
        for publish in ("nats-py", "ours"):
            subject = subjects.event(swarm_id, "task", f"{task}-{publish}", "created")
            headers = {"Nats-Msg-Id": f"{swarm_id}-{task}-{publish}", **extra}
            if "Nats-Expected-Last-Subject-Sequence" in extra:
                headers["Nats-Expected-Last-Subject-Sequence-Subject"] = subject
            payload = ev.encode(created(swarm_id, f"{task}-{publish}"))
            if publish == "nats-py":
                call = bus.js.publish(
                    subject, payload, timeout=5, stream=expected_stream, headers=dict(headers)
                )
            else:
                call = publish_once(
                    bus.js, subject, payload, timeout=5, stream=expected_stream, headers=headers
                )
            kind, detail = await _answer(call)
            if kind == "ack":  # sequences differ between the two: compare the rest
                detail = (detail[0], detail[2])  # type: ignore[index]
            answers.append((kind, detail))
        assert answers[0] == answers[1], name
    no_stream = [
        await _answer(publish(f"nobody.listens.{swarm_id}"))
        for publish in (
            lambda s: bus.js.publish(s, b"x", timeout=2, stream=stream, headers={}),
            lambda s: publish_once(bus.js, s, b"x", timeout=2, stream=stream, headers={}),
        )
    ]
    assert no_stream[0] == no_stream[1] == ("error", (NoStreamResponseError, None, None))


async def test_whether_an_append_landed_is_ours_anothers_or_unknown_never_guessed(
    nats_factory,
) -> None:
    """After a conflict, ``original_seq`` tells a retry whose first try landed (ack lost) from
    another writer's event. While NATS cannot answer it says so (``Unavailable``) instead of
    a conflict: a writer taking "cannot tell" for "someone else's" gives up on an event that is
    in the log (an executor whose ``running`` landed that way left the task running, run by
    nobody: a cluster node killed mid-run, in CI)."""
    server = nats_factory()
    bus = await Bus.connect(NatsOptions.from_env(server.url), name="landed")
    try:
        await bus.provision()
        event = created("landed", "t-landed")
        subject = subjects.event("landed", "task", "t-landed", "created")
        seq = await bus.events.append(event, expected_seq=0, msg_id="first-try")
        assert await bus.events.original_seq(subject, "first-try") == seq
        assert await bus.events.original_seq(subject, "another-writer") is None
        nothing_yet = subjects.event("landed", "task", "t-landed", "running")
        assert await bus.events.original_seq(nothing_yet, "first-try") is None

        server.kill()
        with pytest.raises(Unavailable, match="could not say whether the append"):
            await bus.events.original_seq(subject, "first-try", retry_for=0.5)

        server.start()
        assert await bus.events.original_seq(subject, "first-try", retry_for=20.0) == seq
    finally:
        await bus.close()


async def test_on_a_cluster_racing_writers_get_a_win_and_a_conflict_never_a_not_yet(
    nats_cluster,
) -> None:
    """A clustered stream refuses a write on an aggregate while another write expecting a
    sequence there is still in flight ("wrong last sequence" without a number, 10164): not an
    answer yet. Asked again, it gives the real one: the loser of a race gets ``AppendConflict``
    like on one node, never a raw ``BadRequestError`` (an executor took that for a crash and a
    task it had started could stay running, run by nobody)."""
    url = ",".join(node.url for node in nats_cluster)
    bus = await Bus.connect(NatsOptions.from_env(url), name="racers")
    try:
        await bus.provision(Layout(replicas=3))
        swarm = "cluster-race"
        await bus.events.append(ev.SwarmCreated(swarm=swarm, id=swarm, time=1.0, name="r"), 0)
        for race in range(20):
            task = f"t-{race}"
            base = await bus.events.append(created(swarm, task), expected_seq=0)
            results = await race_to_claim(bus, swarm, task, base)
            wins = [r for r in results if isinstance(r, int)]
            losses = [r for r in results if isinstance(r, Exception)]
            assert len(wins) == 1, results
            assert len(losses) == 1 and isinstance(losses[0], AppendConflict), results
            claims = [e for e in await history(bus, swarm, "task", task) if e.verb == "claimed"]
            assert len(claims) == 1
    finally:
        await bus.close()
