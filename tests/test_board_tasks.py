"""Frozen tasks, given/when/then: the fold keeps a settled finished task as a compact record
(``schemas.board.Tasks``) and thaws it for any later event on it; reads, counts, dependency
checks and snapshots are the same as with every task live. Listings page through the order the
fold keeps beside them (``schemas.board.CreatedOrder``: by ``created_seq``, then id), reading the
tasks a page returns, not the swarm. No NATS."""

from __future__ import annotations

import copy
import zlib
from array import array
from typing import Any
from unittest.mock import patch

import msgspec
import pytest
from hypothesis import given as given_examples
from hypothesis import settings
from hypothesis import strategies as st

from schemas import board as board_module
from schemas import events as ev
from schemas.board import (
    Board,
    CreatedOrder,
    Tasks,
    TaskView,
    columns,
    decode_record,
    encode_record,
    seal_records,
    settled,
)
from schemas.errors import Forbidden
from schemas.fold import apply, fold
from schemas.landing import dependency_landing
from schemas.scopes import follow_up
from services.bus import snapshots
from services.bus.snapshots import NO_ORDER, Capture, pack, unpack, unpack_body
from services.gateway.commands import task_counts, task_page
from services.gateway.live import totals

S = "dev"
T0 = 100.0
BASE, HEAD = "b" * 40, "h" * 40


# --- a small vocabulary ------------------------------------------------------------------------


def swarm(*, project: bool = False) -> list[ev.Event]:
    """A swarm with agent a1 (hosted by executor x); with ``project``, p1 attached and synced."""
    events: list[ev.Event] = [
        ev.SwarmCreated(swarm=S, id=S, time=T0, name=S),
        ev.AgentRegistered(swarm=S, id="a1", time=T0, name="a1", executor="x"),
    ]
    if project:
        events += [
            ev.ProjectCreated(swarm=S, id="p1", time=T0, name="app", git_url="/srv/app.git"),
            ev.ProjectAttached(swarm=S, id="p1", time=T0),
            ev.ProjectInitRequested(swarm=S, id="p1", time=T0),
            ev.ProjectSynced(
                swarm=S, id="p1", time=T0, agent="a1", round=1, commit=BASE, branch="main"
            ),
        ]
    return events


def created(task_id: str, **fields: Any) -> ev.TaskCreated:
    return ev.TaskCreated(swarm=S, id=task_id, time=T0, title=task_id, **fields)


def ran(task_id: str, *, cost: float = 0.0, tokens: int = 0, land: bool = False) -> list[ev.Event]:
    """Claimed by a1, run and completed (``land``: on its branch, its work to land)."""
    usage = ev.Usage(input_tokens=tokens, output_tokens=tokens // 2)
    outcome = ev.RunOutcome(result="done", cost_usd=cost, usage=usage)
    work = ev.Work(project="p1", branch=f"swarm/{task_id}", base=BASE, head=HEAD, onto="main",
                   pushed=True, land=True) if land else None  # fmt: skip
    branch: dict[str, Any] = {"branch": f"swarm/{task_id}", "base": BASE} if land else {}
    agent: dict[str, Any] = {"swarm": S, "id": task_id, "time": T0 + 1, "agent": "a1"}
    return [
        ev.TaskClaimed(**agent, attempt=1),
        ev.TaskRunning(**agent, attempt=1, **branch),
        ev.TaskCompleted(**agent, attempt=1, outcome=outcome, work=work),
    ]


def landed(task_id: str) -> ev.TaskIntegrated:
    return ev.TaskIntegrated(swarm=S, id=task_id, time=T0 + 2, attempt=1, project="p1",
                             onto="main", landed="l" * 40)  # fmt: skip


def stuck(task_id: str) -> ev.TaskIntegrationFailed:
    return ev.TaskIntegrationFailed(swarm=S, id=task_id, time=T0 + 2, attempt=1, project="p1",
                                    onto="main", problem="conflict", tip=HEAD, files=["README"],
                                    resolve=True)  # fmt: skip


def failed(task_id: str) -> list[ev.Event]:
    """Claimed by a1, run, and failed."""
    agent: dict[str, Any] = {"swarm": S, "id": task_id, "time": T0 + 1, "agent": "a1"}
    return [*ran(task_id)[:2], ev.TaskFailed(**agent, attempt=1, reason="broke")]


def given(*events: ev.Event | list[ev.Event]) -> Board:
    flat: list[ev.Event] = []
    for item in events:
        flat += item if isinstance(item, list) else [item]
    return fold(list(enumerate(flat, start=1)))


def when(board: Board, *events: ev.Event) -> Board:
    for event in events:
        apply(board, event, board.seq + 1)
    return board


def tasks(board: Board) -> Tasks:
    return board.swarms[S].tasks


def frozen(board: Board) -> set[str]:
    """The ids of the frozen tasks."""
    return set(tasks(board)) - {t.id for t in tasks(board).live()}


def all_live(board: Board) -> Board:
    live = copy.deepcopy(board)
    for view in live.swarms.values():
        view.tasks.thaw_all()
    return live


# --- freezing ------------------------------------------------------------------------------------


def test_a_completed_task_is_frozen_and_reads_as_it_was() -> None:
    board = given(swarm(), created("t1"), ran("t1", cost=0.5, tokens=100), created("t2"))
    assert frozen(board) == {"t1"}
    t1 = tasks(board)["t1"]
    assert (t1.status, t1.agent, t1.cost_usd, t1.usage.input_tokens) == (
        "completed",
        "a1",
        0.5,
        100,
    )
    assert t1.outcome is not None and t1.outcome.result == "done"
    assert board == all_live(board)
    assert tasks(board).frozen_status("t1") == "completed"
    assert tasks(board).frozen_status("t2") is None  # live
    assert task_counts(board.swarms[S]) == {
        **dict.fromkeys(("blocked", "claimed", "running", "failed", "requeued", "cancelled"), 0),
        "pending": 1,
        "completed": 1,
        "total": 2,
    }
    assert totals(board.swarms[S])["tokens"] == {"input": 100, "output": 50}


def test_a_read_never_hands_out_the_frozen_record_to_change() -> None:
    board = given(swarm(), created("t1"), ran("t1"))
    tasks(board)["t1"].status = "failed"  # a copy, decoded for this read
    assert tasks(board)["t1"].status == "completed"


def test_failed_and_cancelled_tasks_are_frozen_and_dependents_see_them_without_decoding() -> None:
    board = given(
        swarm(),
        created("ok"),
        ran("ok"),
        created("gone"),
        ev.TaskCancelled(swarm=S, id="gone", time=T0),
        created("bad"),
        ev.TaskFailed(swarm=S, id="bad", time=T0, reason="dependency failed"),
    )
    assert frozen(board) == {"ok", "gone", "bad"}
    view = board.swarms[S]
    assert dependency_landing(view, "ok").state == "done"
    assert dependency_landing(view, "gone").state == "never"
    assert dependency_landing(view, "bad").reason == "failed"
    when(board, created("next", depends=["ok"]), created("stuck", depends=["ok", "bad"]))
    assert tasks(board)["next"].status == "pending"
    assert tasks(board)["stuck"].status == "blocked"


def test_a_task_with_triggers_stays_live_its_follow_ups_may_be_left_to_write() -> None:
    trigger = ev.Trigger(on="completed", task=ev.TaskSpec(title="then"))
    board = given(swarm(), created("t1", triggers=[trigger]), ran("t1"))
    assert frozen(board) == set()
    assert not settled(tasks(board)["t1"])


# --- thawing -------------------------------------------------------------------------------------


def test_integration_after_completion_thaws_nothing_it_freezes_once_landed() -> None:
    board = given(swarm(project=True), created("t1"), ran("t1", land=True))
    assert frozen(board) == set()  # its work is still to land
    work = tasks(board)["t1"].integration
    assert work is not None and work.state == "landing"
    when(board, landed("t1"))
    assert frozen(board) == {"t1"}
    work = tasks(board)["t1"].integration
    assert work is not None and (work.state, work.landed) == ("landed", "l" * 40)
    assert board == all_live(board)


def test_an_event_on_a_frozen_task_thaws_it_and_a_void_one_changes_nothing() -> None:
    board = given(swarm(), created("t1"), ran("t1"))
    before = all_live(board)
    record = tasks(board)._entries["t1"]
    when(board, ev.TaskCancelled(swarm=S, id="t1", time=T0 + 9))  # void: it finished
    when(board, ev.TaskClaimed(swarm=S, id="t1", time=T0 + 9, agent="a1", attempt=1))  # void
    assert board.ignored == before.ignored + 2
    assert frozen(board) == {"t1"} and tasks(board)._entries["t1"] == record
    before.seq, before.ignored, before.versions = board.seq, board.ignored, board.versions
    assert board == before


def test_a_frozen_task_thawed_by_hand_is_the_live_object_and_freezes_back_to_the_same() -> None:
    board = given(swarm(), created("t1"), ran("t1"))
    record = tasks(board)._entries["t1"]
    task = tasks(board).thaw("t1")
    assert task is not None and tasks(board).live_task("t1") is task
    assert tasks(board).status_counts()["completed"] == 1
    assert tasks(board).freeze("t1") and tasks(board)._entries["t1"] == record


def test_deleting_a_frozen_task_removes_it_and_its_counts() -> None:
    board = given(swarm(), created("t1"), ran("t1", tokens=10), created("t2"), ran("t2", tokens=4))
    when(board, ev.TaskDeleted(swarm=S, id="t1", time=T0 + 9))
    assert list(tasks(board)) == ["t2"] and frozen(board) == {"t2"}
    assert tasks(board).status_counts()["completed"] == 1
    assert tasks(board).usage_total().input_tokens == 4
    when(board, created("t1"))  # the id again: a new task, at the end
    assert list(tasks(board)) == ["t2", "t1"] and tasks(board)["t1"].status == "pending"
    assert board == all_live(board)


def test_deleting_the_swarm_drops_its_frozen_tasks_and_a_new_one_starts_empty() -> None:
    board = given(swarm(), created("t1"), ran("t1"))
    when(board, ev.SwarmDeleted(swarm=S, id=S, time=T0 + 9))
    assert S not in board.swarms
    when(board, ev.SwarmCreated(swarm=S, id=S, time=T0 + 10, name=S))
    assert len(tasks(board)) == 0 and tasks(board).status_counts()["completed"] == 0
    assert tasks(board).usage_total().input_tokens == 0


def test_a_stuck_task_stays_live_until_its_resolve_task_lands_it() -> None:
    board = given(
        swarm(project=True),
        created("t1"),
        ran("t1", land=True),
        stuck("t1"),
    )
    assert frozen(board) == set()
    when(board, created("t1-resolve-1", resolves="t1"), *ran("t1-resolve-1", land=True))
    work = tasks(board)["t1"].integration
    assert work is not None and work.resolver == "t1-resolve-1"
    assert frozen(board) == set()
    when(board, landed("t1-resolve-1"))
    assert frozen(board) == {"t1", "t1-resolve-1"}  # both settled as the resolve task landed
    work = tasks(board)["t1"].integration
    assert work is not None and (work.state, work.resolved_by) == ("landed", "t1-resolve-1")


def test_follow_ups_of_a_running_task_count_its_finished_frozen_ones() -> None:
    board = given(
        swarm(),
        ev.AgentRegistered(swarm=S, id="a2", time=T0, name="a2", executor="x"),
        created("parent"),
        ev.TaskClaimed(swarm=S, id="parent", time=T0, agent="a2", attempt=1),
        ev.TaskRunning(swarm=S, id="parent", time=T0, agent="a2", attempt=1),
        created("older"),
        created("c1", parent="parent", parent_attempt=1),
        ran("c1"),
        created("c2", parent="parent", parent_attempt=1),
    )
    assert "c1" in frozen(board)
    assert sorted(t.id for t in tasks(board).follow_ups("parent")) == ["c1", "c2"]
    assert follow_up(board.swarms[S], "a2", limit=3).parent == "parent"
    with pytest.raises(Forbidden, match="already created 2 follow-up tasks"):
        follow_up(board.swarms[S], "a2", limit=2)


# --- records and snapshots -----------------------------------------------------------------------


def test_a_record_holds_what_differs_from_the_defaults_and_decodes_to_an_equal_task() -> None:
    task = TaskView(swarm=S, id="t1", title="t", prompt="p", status="cancelled", parent="x")
    record = encode_record(task)
    assert b"swarm" not in record and b"priority" not in record  # context and defaults: not kept
    assert decode_record(S, "t1", record) == task


def test_a_snapshot_keeps_frozen_tasks_as_records_and_live_ones_live() -> None:
    board = given(swarm(project=True), created("t1"), ran("t1"), created("t2"), created("t3"))
    when(board, *ran("t3", land=True))
    restored = unpack(pack(board))
    assert restored == board
    assert frozen(restored) == {"t1"}
    assert {t.id for t in tasks(restored).live()} == {"t2", "t3"}
    assert tasks(restored).status_counts() == tasks(board).status_counts()
    when(restored, landed("t3"))
    assert frozen(restored) == {"t1", "t3"}


def test_the_gateway_lists_tasks_by_status_frozen_or_live() -> None:
    board = given(
        swarm(),
        created("t1"),
        ran("t1"),
        created("t2"),
        ev.TaskCancelled(swarm=S, id="t2", time=T0),
        created("t3"),
    )
    view = board.swarms[S]
    assert [t.id for t in task_page(view, status="completed")[0]] == ["t1"]
    assert [t.id for t in task_page(view, status="cancelled")[0]] == ["t2"]
    assert [t.id for t in task_page(view, status="pending")[0]] == ["t3"]
    assert task_page(view, status="failed")[0] == []
    assert [t.id for t in task_page(view)[0]] == ["t1", "t2", "t3"]


# --- sealed chunks -------------------------------------------------------------------------------


def many_finished(count: int, *, parent_every: int = 0, rare_every: int = 0) -> Board:
    """``count`` finished tasks f0, f1, ... (every ``parent_every``-th a follow-up of the first,
    every ``rare_every``-th tagged ``rare``), then t-live pending."""
    events: list[ev.Event | list[ev.Event]] = [swarm()]
    for i in range(count):
        parent = {"parent": "f0", "parent_attempt": 1} if parent_every and i % parent_every else {}
        tags = ["rare"] if rare_every and i % rare_every == 0 else []
        events += [created(f"f{i}", tags=tags, **parent), ran(f"f{i}", tokens=i)]
    return given(*events, created("t-live"))


def sealed_handles(board: Board) -> dict[str, int]:
    return {k: v for k, v in tasks(board)._entries.items() if isinstance(v, int)}


def test_sealing_puts_frozen_records_in_chunks_and_every_read_stays_the_same() -> None:
    board = many_finished(2_500, parent_every=7)
    before = all_live(board)
    assert tasks(board).seal() == 2_500
    assert len(sealed_handles(board)) == 2_500 and len(tasks(board)._chunks) >= 3
    assert board == before and before == board
    assert tasks(board)["f1234"] == before.swarms[S].tasks["f1234"]
    assert tasks(board).frozen_status("f2499") == "completed"
    assert tasks(board).status_counts() == tasks(before).status_counts()
    assert tasks(board).usage_total() == tasks(before).usage_total()
    assert sorted(t.id for t in tasks(board).follow_ups("f0")) == sorted(
        t.id for t in tasks(before).follow_ups("f0")
    )
    completed = tasks(board).in_order(status="completed")
    assert [t.id for t in completed] == [f"f{i}" for i in range(2_500)]
    assert tasks(board).seal() == 0  # nothing left in memory


def test_a_snapshot_carries_the_chunks_and_decodes_only_an_index() -> None:
    board = many_finished(1_500)
    restored = unpack(pack(board))
    assert tasks(restored)._cache == {}  # no chunk inflated by decoding
    assert tasks(restored)["f7"].usage.input_tokens == 7
    assert len(tasks(restored)._cache) == 1
    assert len(sealed_handles(restored)) == 1_500
    assert restored == board


def test_thawing_every_task_of_a_chunk_drops_it_and_new_records_seal_into_a_new_one() -> None:
    board = unpack(pack(many_finished(10)))  # one chunk
    for i in range(10):
        assert tasks(board).thaw(f"f{i}") is not None
    assert tasks(board)._chunks == [b""] and tasks(board)._chunk_refs == [0]
    assert tasks(board).freeze_settled() == 10
    assert tasks(board).seal() == 10 and len(tasks(board)._chunks) == 2
    assert unpack(pack(board)) == board == all_live(board)


def test_a_deleted_sealed_task_leaves_the_counts_and_its_chunk() -> None:
    board = unpack(pack(many_finished(2)))
    when(board, ev.TaskDeleted(swarm=S, id="f0", time=T0 + 9))
    assert tasks(board)._chunk_refs == [1] and "f0" not in tasks(board)
    assert tasks(board).status_counts()["completed"] == 1
    assert tasks(board).usage_total().input_tokens == 1
    when(board, ev.TaskDeleted(swarm=S, id="f1", time=T0 + 10))
    assert tasks(board)._chunks == [b""] and unpack(pack(board)) == board


def test_a_record_thawed_while_its_chunk_was_being_sealed_stays_live() -> None:
    board = many_finished(3)
    pending = tasks(board).pending_records()
    sealed = seal_records(pending)  # as in the thread, while the fold goes on
    tasks(board).thaw("f1")
    assert tasks(board).adopt(sealed) == 2
    assert tasks(board).live_task("f1") is not None and set(sealed_handles(board)) == {"f0", "f2"}
    assert board == all_live(board)


def test_a_snapshot_taken_then_written_while_the_fold_goes_on_is_the_board_when_taken() -> None:
    """As a service saves one (``snapshots.prepare``): the board copied (``Capture``), then
    changed by the fold — a sealed task deleted, a frozen one thawed by a late event, tasks
    added and finished — before the copy is sealed, encoded and compressed; the snapshot is
    the board as it was copied, counts and tokens included, and the board adopts the chunks for
    the tasks still as they were."""
    board = many_finished(2_000)
    tasks(board).seal()
    when(
        board,
        *(e for i in range(2_000, 2_300) for e in [created(f"f{i}"), *ran(f"f{i}", tokens=i)]),
    )
    taken = all_live(board)
    totals = (tasks(board).status_counts(), tasks(board).usage_total())
    capture = Capture(board)
    when(board, ev.TaskDeleted(swarm=S, id="f5", time=T0 + 9))  # sealed
    when(board, ev.TaskDeleted(swarm=S, id="f2100", time=T0 + 9))  # a record in memory
    when(board, ev.TaskCancelled(swarm=S, id="f2200", time=T0 + 9))  # void, but thaws it
    when(board, created("late"), *ran("late", tokens=5), created("t-more"))
    with patch.object(snapshots, "MAP_SLICE", 100):  # the entries written in slices
        body, sealed = capture.stored()
    restored = unpack_body(body)
    assert restored == taken and restored.seq == capture.seq < board.seq
    assert (tasks(restored).status_counts(), tasks(restored).usage_total()) == totals
    assert "f5" in tasks(restored) and tasks(restored)["f2200"].status == "completed"
    assert not any(isinstance(entry, bytes) for entry in tasks(restored)._entries.values())
    now = all_live(board)
    adopted = sum(view.adopt(chunks) for view, chunks in sealed)
    assert adopted == 300 - 2  # not the two changed since (f2200 thawed and frozen again)
    assert isinstance(tasks(board)._entries["late"], bytes)  # frozen since: the next save's
    assert board == now and tasks(board).status_counts() == tasks(now).status_counts()
    assert unpack(pack(board)) == board


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 65_535, 65_536, 70_000])
def test_a_map_written_a_slice_at_a_time_is_the_map_msgspec_writes(size: int) -> None:
    mapping = {f"swarm/task/t{i}": i * 1_000 for i in range(size)}
    for map_slice in (1, 7, 16, 16_384):
        if size > 20_000 and map_slice < 16:
            continue
        with patch.object(snapshots, "MAP_SLICE", map_slice):
            written = b"".join(snapshots._map_pieces(mapping))
        assert written == msgspec.msgpack.encode(mapping), map_slice


def test_a_snapshot_whose_handles_point_past_its_chunks_is_refused() -> None:
    board = many_finished(3)
    tasks(board).seal()
    tasks(board)._entries["f2"] = 99 << 20 | tasks(board)._entries["f2"]  # type: ignore[operator]
    with pytest.raises(ValueError, match="points past its chunks"):
        unpack(pack(board))


# --- listings, a page at a time ----------------------------------------------------------------


def ids(found: Any) -> list[str]:
    return [task.id for task in found]


def oldest_first(view: Tasks) -> list[str]:
    return ids(sorted(view.values(), key=lambda task: (task.created_seq, task.id)))


# --- the order kept by the fold (``CreatedOrder``) -----------------------------------------


def test_the_fold_keeps_tasks_oldest_first_and_a_listing_after_one_starts_right_after_it() -> None:
    board = given(swarm(), created("b"), created("a"), ran("a"), created("c"), failed("c"))
    assert ids(tasks(board).in_order()) == ["b", "a", "c"] == oldest_first(tasks(board))
    assert ids(tasks(board).in_order(after="b")) == ["a", "c"]
    assert ids(tasks(board).in_order(after="c")) == []
    assert ids(tasks(board).in_order(status="failed")) == ["c"]
    assert ids(tasks(board).in_order(after="b", status="pending")) == []
    assert ids(tasks(board).in_order(status="pending")) == ["b"]
    with pytest.raises(KeyError):
        list(tasks(board).in_order(after="nope"))


def test_a_deleted_task_leaves_the_order_and_its_id_created_again_comes_last() -> None:
    board = given(swarm(), created("t1"), ran("t1"), created("t2"), created("t3"))
    tasks(board).seal()  # t1 in a chunk: its deletion reads its record once
    when(board, ev.TaskDeleted(swarm=S, id="t1", time=T0 + 9))
    when(board, ev.TaskDeleted(swarm=S, id="t3", time=T0 + 9))
    assert ids(tasks(board).in_order()) == ["t2"]
    when(board, created("t1"))
    assert ids(tasks(board).in_order()) == ["t2", "t1"]
    assert tasks(board).created_seq("t1") == board.seq


def test_a_listing_after_a_deleted_task_starts_where_that_task_was_created() -> None:
    board = given(swarm(), created("a"), created("b"), ran("b"), created("c"), ran("c"))
    when(board, created("d"))
    where_b, where_c = tasks(board).created_seq("b"), tasks(board).created_seq("c")
    tasks(board).seal()  # b and c frozen: the finished path as well as the live one
    when(board, ev.TaskDeleted(swarm=S, id="b", time=T0 + 9))
    when(board, ev.TaskDeleted(swarm=S, id="c", time=T0 + 9))
    assert ids(tasks(board).in_order(after="b", after_seq=where_b)) == ["d"]
    assert ids(tasks(board).in_order(after="c", after_seq=where_c)) == ["d"]
    assert ids(tasks(board).in_order(after="b", after_seq=where_b, status="pending")) == ["d"]
    assert ids(tasks(board).in_order(after="a", after_seq=0)) == ["a", "d"]  # seq rules, not id
    with pytest.raises(KeyError):
        list(tasks(board).in_order(after="b"))  # without where it was, still no such task


def test_tasks_built_by_hand_in_any_order_list_by_created_seq_then_id() -> None:
    def task(task_id: str, seq: int) -> TaskView:
        return TaskView(swarm=S, id=task_id, title=task_id, prompt="", created_seq=seq)

    view = Tasks({"z": task("z", 5), "b": task("b", 0), "a": task("a", 0), "m": task("m", 2)})
    assert ids(view.in_order()) == ["a", "b", "m", "z"]
    assert ids(view.in_order(after="b")) == ["m", "z"]
    view["m"] = task("m", 9)  # a different created_seq: moved
    del view["a"]
    assert ids(view.in_order()) == ["b", "z", "m"]
    assert Tasks.from_wire(
        msgspec.msgpack.decode(msgspec.msgpack.encode(view.to_wire()))
    )._order == (view._order)


def test_newest_first_and_by_priority_start_right_after_the_cursor() -> None:
    board = given(
        swarm(),
        created("low-old", priority="low"),
        created("hot", priority="critical"),
        created("mid"),
        created("low-new", priority="low"),
        created("d1"),
        ran("d1"),
        created("d2"),
        failed("d2"),
        created("d3"),
        ran("d3"),
    )
    view = tasks(board)
    assert ids(view.in_order(order="newest")) == [
        "d3", "d2", "d1", "low-new", "mid", "hot", "low-old"
    ]  # fmt: skip
    assert ids(view.in_order(order="newest", status="completed")) == ["d3", "d1"]
    assert ids(view.in_order(order="newest", status="completed", after="d3")) == ["d1"]
    assert ids(view.in_order(order="newest", status="pending", after="mid")) == ["hot", "low-old"]
    assert ids(view.in_order(order="priority", status="pending")) == [
        "hot", "mid", "low-old", "low-new"
    ]  # fmt: skip
    assert ids(view.in_order(order="priority", status="pending", after="mid")) == [
        "low-old", "low-new"
    ]  # fmt: skip
    # a cursor that left the status (here: finished, medium, made last) still marks a place
    assert ids(view.in_order(order="priority", status="pending", after="d3")) == [
        "low-old", "low-new"
    ]  # fmt: skip


def test_a_task_thawed_or_replaced_after_a_status_was_listed_is_found_as_it_is_now() -> None:
    board = given(swarm(), created("t1"), ran("t1"), created("t2"), ran("t2"), created("t3"))
    view = tasks(board)
    view.seal()
    assert ids(view.in_order(status="completed", order="newest")) == ["t2", "t1"]
    view.thaw("t1").status = "failed"  # by hand: the status bytes must not call it frozen
    view["t2"] = msgspec.structs.replace(view["t2"], status="cancelled")
    assert ids(view.in_order(status="completed")) == []
    assert ids(view.in_order(status="failed")) == ["t1"]
    assert ids(view.in_order(status="cancelled", order="newest")) == ["t2"]
    assert view.freeze("t2") and ids(view.in_order(status="cancelled")) == ["t2"]
    assert view.frozen_status("t2") == "cancelled"


@pytest.mark.parametrize(
    "query",
    [{"order": "priority"}, {"order": "priority", "status": "completed"}, {"order": "sideways"}],
)
def test_priority_lists_one_unfinished_status_and_no_other_order_exists(
    query: dict[str, Any],
) -> None:
    view = tasks(given(swarm(), created("t1")))
    with pytest.raises(ValueError):
        view.in_order(**query)  # at once, not at the first task


def test_columns_show_the_next_to_take_and_the_newest_finished_decoding_only_those(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    board = many_finished(2_500)  # f0..f2499 completed (three chunks), then t-live pending
    when(board, created("urgent", priority="critical"), created("late", priority="low"))
    when(board, created("f-old-failed"), *failed("f-old-failed"))
    view = tasks(board)
    view.seal()
    view._cache.clear()
    decoded: list[str] = []

    def counted(swarm: str, task_id: str, record: bytes) -> TaskView:
        decoded.append(task_id)
        return decode_record(swarm, task_id, record)

    monkeypatch.setattr(board_module, "decode_record", counted)
    shown = columns(view, 3)

    assert ids(shown["pending"]) == ["urgent", "t-live", "late"]
    assert ids(shown["completed"]) == ["f2499", "f2498", "f2497"]
    assert ids(shown["failed"]) == ["f-old-failed"] and shown["cancelled"] == []
    assert sorted(decoded) == sorted(["f2499", "f2498", "f2497", "f-old-failed"])
    assert len(view._chunks) == 3 and list(view._cache) == [2]  # the newest chunk alone


# --- a page costs what it returns ------------------------------------------------------------


def test_a_page_from_the_middle_reads_only_its_own_chunk() -> None:
    board = unpack(pack(many_finished(5_000)))  # about five chunks, none inflated yet
    view = tasks(board)
    assert len(view._chunks) >= 4 and view._cache == {}
    page, following = task_page(board.swarms[S], after="f2499", limit=50)
    assert ids(page) == [f"f{i}" for i in range(2_500, 2_550)] and following == "f2549"
    assert len(view._cache) == 1  # the chunk holding f2500..f2549 (and the cursor's)


def test_a_finished_status_passes_over_other_frozen_tasks_without_decoding_them() -> None:
    board = many_finished(2_048)  # two full chunks of completed tasks
    for i in range(0, 300, 2):
        task_id = f"g{i:04}"
        when(board, created(task_id), ev.TaskCancelled(swarm=S, id=task_id, time=T0 + 1))
    view = tasks(board)
    view.seal()
    view._cache.clear()
    page, following = task_page(board.swarms[S], status="cancelled", limit=10)
    assert ids(page) == [f"g{i:04}" for i in range(0, 20, 2)] and following == "g0018"
    assert len(view._chunks) == 3 and list(view._cache) == [2]  # the cancelled ones' chunk only


def test_walking_every_page_gives_the_whole_listing_once_with_or_without_filters() -> None:
    board = many_finished(120, rare_every=7)
    when(board, created("t-late", tags=["rare"]), created("rare"), *failed("rare"))
    swarm = board.swarms[S]
    cases: list[dict[str, Any]] = [
        {},
        {"tag": "rare"},  # also in the record of task "rare", which is not tagged so
        {"status": "completed"},
        {"status": "pending"},
        {"agent": "a1"},
        {"status": "failed", "agent": "a1"},
    ]
    for filters in cases:
        whole, none = task_page(swarm, **filters)
        assert none is None and whole
        walked: list[TaskView] = []
        after = None
        while True:
            page, after = task_page(swarm, **filters, after=after, limit=4)
            walked += page
            if after is None:
                break
            assert len(page) == 4
        assert ids(walked) == ids(whole), filters
    assert "rare" not in ids(task_page(swarm, tag="rare")[0])
    assert ids(task_page(swarm, status="failed", agent="a1")[0]) == ["rare"]


def test_a_page_that_ends_the_listing_exactly_names_no_next_page() -> None:
    swarm = many_finished(6).swarms[S]  # 6 finished and t-live
    page, following = task_page(swarm, limit=7)
    assert len(page) == 7 and following is None
    page, following = task_page(swarm, limit=6)
    assert ids(page)[-1] == "f5" and following == "f5"
    assert task_page(swarm, after="t-live", limit=3) == ([], None)


def test_the_whole_listing_is_the_order_with_every_task_decoded() -> None:
    board = many_finished(50, rare_every=2)
    assert ids(task_page(board.swarms[S])[0]) == oldest_first(tasks(board))


# --- snapshots --------------------------------------------------------------------------------


def test_a_snapshot_carries_the_order_so_a_start_reads_no_record() -> None:
    board = many_finished(3_000)
    when(board, ev.TaskDeleted(swarm=S, id="f100", time=T0 + 9), created("f100"))
    restored = unpack(pack(board))
    assert tasks(restored)._cache == {}
    assert tasks(restored)._order == tasks(board)._order
    assert ids(tasks(restored).in_order())[-2:] == ["t-live", "f100"]


def test_an_earlier_snapshot_without_the_order_builds_it_from_the_records() -> None:
    board = many_finished(3_000)
    when(board, created("t-new"))
    pack(board)  # seals the records

    def without_order(value: Any) -> Any:
        return value.to_wire()[:-1]

    raw = msgspec.msgpack.encode([board, board.versions], enc_hook=without_order)
    restored = unpack(b"%d\n" % board.seq + NO_ORDER + zlib.compress(raw))
    assert restored == board and tasks(restored)._order == tasks(board)._order


# --- the index alone ---------------------------------------------------------------------------


Step = tuple[str, str, int]  # ("add" | "remove", id, created seq)


@st.composite
def steps(draw: st.DrawFn) -> list[Step]:
    """Adds (sometimes out of order, sequences shared) and removals of tasks present."""
    present: dict[str, int] = {}
    found: list[Step] = []
    for _ in range(draw(st.integers(0, 60))):
        if bool(present) and draw(st.booleans()):
            task_id = draw(st.sampled_from(sorted(present)))
            found.append(("remove", task_id, present.pop(task_id)))
        else:
            task_id = draw(
                st.text("abcdefgh", min_size=1, max_size=3).filter(lambda i: i not in present)
            )
            present[task_id] = draw(st.integers(0, 20))
            found.append(("add", task_id, present[task_id]))
    return found


@settings(max_examples=300, deadline=None)
@given_examples(steps(), st.text("abcdefgh", max_size=3), st.integers(-1, 21))
def test_the_order_is_always_the_sorted_keys_and_after_finds_the_next_one(
    log: list[Step], cursor: str, seq: int
) -> None:
    order = CreatedOrder()
    model: set[tuple[int, str]] = set()
    for kind, task_id, at in log:
        if kind == "add":
            order.add(task_id, at)
            model.add((at, task_id))
        else:
            order.remove(task_id, at)
            model.remove((at, task_id))
    keys = sorted(model)
    assert list(order.ids()) == [task_id for _, task_id in keys]
    following = [task_id for key in keys if key > (seq, cursor) for task_id in [key[1]]]
    assert list(order.ids(order.after(cursor, seq))) == following
    before = [task_id for key in keys if key < (seq, cursor) for task_id in [key[1]]]
    assert list(order.ids_down(order.before(cursor, seq))) == before[::-1]
    assert list(order.ids_down()) == [task_id for _, task_id in keys][::-1]
    seqs = array("q", [at for at, _ in keys])
    ids_now = [task_id for _, task_id in keys]
    assert CreatedOrder.of(ids_now[::-1], seqs[::-1]) == order
    assert CreatedOrder.of(ids_now, CreatedOrder.seqs_from(order.seqs_of(ids_now))) == order


@settings(max_examples=300, deadline=None)
@given_examples(steps(), st.integers(0, 60), st.data())
def test_the_status_bytes_follow_adds_removals_and_marks_and_find_reads_them(
    log: list[Step], built_at: int, data: st.DataObject
) -> None:
    order = CreatedOrder()
    model: dict[tuple[int, str], int] = {}  # (seq, id) -> code
    for i, (kind, task_id, at) in enumerate(log):
        if i == built_at:  # the bytes asked for part way: kept from then on
            assert order.codes(lambda ids: codes_for(model, ids)) == codes_of(model)
        if kind == "add":
            order.add(task_id, at)
            model[(at, task_id)] = CreatedOrder.LIVE
        else:
            order.remove(task_id, at)
            del model[(at, task_id)]
        marked: bool = data.draw(st.booleans())
        if model and marked:
            key = data.draw(st.sampled_from(sorted(model)))
            model[key] = data.draw(st.sampled_from([CreatedOrder.LIVE, 4, 5, 7]))
            order.mark(key[1], key[0], model[key])
    assert order.codes(lambda ids: codes_for(model, ids)) == codes_of(model)
    keys = sorted(model)
    start, end = sorted(data.draw(st.lists(st.integers(0, len(keys)), min_size=2, max_size=2)))
    for code in (4, 5, 7):
        wanted = [at for at in range(start, end) if model[keys[at]] == code]
        assert list(order.find(code, start, end)) == wanted
        assert list(order.find(code, start, end, down=True)) == wanted[::-1]
        assert [order.key_at(at) for at in wanted] == [keys[at] for at in wanted]


def codes_for(model: dict[tuple[int, str], int], ids: list[str]) -> bytearray:
    by_id = {task_id: code for (_, task_id), code in model.items()}
    return bytearray(by_id[task_id] for task_id in ids)


def codes_of(model: dict[tuple[int, str], int]) -> bytearray:
    return bytearray(model[key] for key in sorted(model))
