"""The board's pure parts, without NATS: sessions (issue, expiry, another token), the Origin
check, what a change message carries after an event (given events / when change / then), and
a watcher that falls behind being dropped."""

from __future__ import annotations

import time

from hypothesis import given
from hypothesis import strategies as st

from schemas import events as ev
from schemas.board import Board
from schemas.fold import apply
from services.gateway import live, sessions
from services.gateway.watchers import Watchers

NOW = 1_800_000_000.0
TOKEN = "api-token-0123456789"


def fold(*events: ev.Event) -> Board:
    board = Board()
    for seq, event in enumerate(events, start=1):
        apply(board, event, seq)
    return board


def swarm_created(swarm: str = "s") -> ev.SwarmCreated:
    return ev.SwarmCreated(swarm=swarm, id=swarm, time=NOW, name=swarm)


def task_created(task: str, **fields: object) -> ev.TaskCreated:
    return ev.TaskCreated(swarm="s", id=task, time=NOW, title=task, prompt="p", **fields)  # type: ignore[arg-type]


# --- sessions -----------------------------------------------------------------------------------


def test_a_session_is_valid_until_it_expires_and_holds_no_token() -> None:
    value = sessions.issue(TOKEN, NOW, lifetime=60)

    assert TOKEN not in value
    assert sessions.valid(TOKEN, value, NOW + 59)
    assert not sessions.valid(TOKEN, value, NOW + 60)


def test_a_new_api_token_ends_every_session() -> None:
    value = sessions.issue(TOKEN, NOW)

    assert not sessions.valid("another-token-987654", value, NOW)


def test_two_sessions_differ_even_issued_at_once() -> None:
    assert sessions.issue(TOKEN, NOW) != sessions.issue(TOKEN, NOW)


@given(st.text(max_size=300))
def test_no_forged_value_is_a_session(value: str) -> None:
    assert not sessions.valid(TOKEN, value, NOW)


def test_a_session_with_a_later_expiry_written_in_is_refused() -> None:
    expires, nonce, signature = sessions.issue(TOKEN, NOW, lifetime=60).split(".")
    stretched = f"{int(expires) + 3600}.{nonce}.{signature}"

    assert not sessions.valid(TOKEN, stretched, NOW + 120)


def test_the_origin_must_name_the_host_the_request_went_to() -> None:
    assert sessions.same_origin("http://127.0.0.1:7700", "127.0.0.1:7700")
    assert sessions.same_origin("https://Board.example", "board.example")
    assert not sessions.same_origin("http://evil.example", "127.0.0.1:7700")
    assert not sessions.same_origin("http://127.0.0.1:7701", "127.0.0.1:7700")
    assert not sessions.same_origin(None, "127.0.0.1:7700")
    assert not sessions.same_origin("null", "127.0.0.1:7700")
    assert not sessions.same_origin("file://127.0.0.1:7700", "127.0.0.1:7700")


# --- what a change carries ----------------------------------------------------------------------


def test_a_claim_changes_the_task_and_its_agent_and_the_counts() -> None:
    board = fold(
        swarm_created(),
        ev.AgentRegistered(swarm="s", id="a1", time=NOW, name="A1"),
        task_created("t1", tags=["ui"], priority="high"),
    )
    claim = ev.TaskClaimed(swarm="s", id="t1", time=NOW, agent="a1", attempt=1)
    apply(board, claim, 4)

    change = live.change(board.swarms["s"], 4, claim)

    assert change["seq"] == 4 and change["event"]["type"] == "task.claimed"
    assert change["task_id"] == "t1"
    assert change["task"]["status"] == "claimed" and change["task"]["agent"] == "a1"
    assert change["task"]["tags"] == ["ui"] and change["task"]["priority"] == "high"
    assert "prompt" not in change["task"]
    assert [(a["id"], a["status"], a["task"]) for a in change["agents"]] == [
        ("a1", "working", "t1")
    ]
    assert change["swarm"]["counts"]["claimed"] == 1 and change["swarm"]["counts"]["total"] == 1


def test_a_deleted_task_is_named_with_no_view() -> None:
    board = fold(swarm_created(), task_created("t1"))
    deleted = ev.TaskDeleted(swarm="s", id="t1", time=NOW)
    apply(board, deleted, 3)

    change = live.change(board.swarms["s"], 3, deleted)

    assert change["task_id"] == "t1" and change["task"] is None
    assert change["swarm"]["counts"]["total"] == 0


def test_a_deleted_swarm_is_a_change_with_no_swarm() -> None:
    board = fold(swarm_created())
    deleted = ev.SwarmDeleted(swarm="s", id="s", time=NOW)
    apply(board, deleted, 2)

    change = live.change(board.swarms.get("s"), 2, deleted)

    assert change["swarm"] is None and change["task"] is None


def test_the_totals_add_every_tasks_cost_and_tokens() -> None:
    usage = ev.Usage(input_tokens=100, output_tokens=40, cache_read_input_tokens=1000)
    board = fold(
        swarm_created(),
        ev.AgentRegistered(swarm="s", id="a1", time=NOW, name="A1"),
        task_created("t1"),
        ev.TaskClaimed(swarm="s", id="t1", time=NOW, agent="a1", attempt=1),
        ev.TaskRunning(swarm="s", id="t1", time=NOW, agent="a1", attempt=1),
        ev.TaskCompleted(
            swarm="s",
            id="t1",
            time=NOW,
            agent="a1",
            attempt=1,
            outcome=ev.RunOutcome(result="ok", cost_usd=0.25, usage=usage),
        ),
    )

    view = live.snapshot(board.swarms["s"], board.seq)

    assert view["swarm"]["spent_usd"] == 0.25
    assert view["swarm"]["tokens"] == {"input": 1100, "output": 40}
    assert view["tasks"][0]["cost_usd"] == 0.25
    assert view["tasks"][0]["tokens"] == {"input": 1100, "output": 40}


def test_the_view_carries_the_next_to_take_and_the_newest_finished_and_how_many_more() -> None:
    done = [
        e
        for i in range(5)
        for e in (
            task_created(f"d{i}"),
            ev.TaskCancelled(swarm="s", id=f"d{i}", time=NOW + i, reason="not needed"),
        )
    ]
    board = fold(
        swarm_created(),
        *done,
        task_created("later", priority="low"),
        task_created("first", priority="critical"),
        task_created("second"),
        task_created("waits", depends=["d1", "first"]),
    )

    view = live.snapshot(board.swarms["s"], board.seq, per_status=2)

    assert [t["id"] for t in view["tasks"] if t["status"] == "pending"] == ["first", "second"]
    assert [t["id"] for t in view["tasks"] if t["status"] == "cancelled"] == ["d4", "d3"]
    assert view["more"] == {"pending": 1, "cancelled": 3}
    assert view["swarm"]["counts"]["cancelled"] == 5 and view["swarm"]["counts"]["pending"] == 3
    waits = next(t for t in view["tasks"] if t["id"] == "waits")
    assert waits["status"] == "blocked" and waits["waiting_on"] == ["d1", "first"]
    assert [t["created_seq"] for t in view["tasks"] if t["status"] == "cancelled"] == [10, 8]
    assert live.snapshot(board.swarms["s"], board.seq)["more"] == {}  # 200 of each by default


def test_a_blocked_task_waits_on_what_is_not_completed_even_off_the_page() -> None:
    board = fold(
        swarm_created(),
        ev.AgentRegistered(swarm="s", id="a1", time=NOW, name="A1"),
        task_created("dep"),
        task_created("gone"),
        task_created("waits", depends=["dep", "gone"]),
    )
    for seq, event in enumerate(
        [
            ev.TaskClaimed(swarm="s", id="dep", time=NOW, agent="a1", attempt=1),
            ev.TaskRunning(swarm="s", id="dep", time=NOW, agent="a1", attempt=1),
            ev.TaskCompleted(swarm="s", id="dep", time=NOW, agent="a1", attempt=1),
            ev.TaskDeleted(swarm="s", id="gone", time=NOW),
        ],
        start=board.seq + 1,
    ):
        apply(board, event, seq)
    swarm = board.swarms["s"]
    assert swarm.tasks.frozen_status("dep") == "completed"  # read without decoding

    assert live.board_task(swarm, swarm.tasks["waits"])["waiting_on"] == ["gone"]
    assert live.board_task(swarm, swarm.tasks["dep"])["waiting_on"] == []


# --- watchers -----------------------------------------------------------------------------------


def test_a_watch_starts_from_the_board_then_gets_each_change_of_its_swarm_only() -> None:
    board = fold(swarm_created("s"), swarm_created("other"))
    watchers = Watchers()
    with watchers.watching("s", board) as watch:
        assert watch.first is not None and watch.first["seq"] == 2
        created = task_created("t1")
        apply(board, created, 3)
        watchers.on_event(3, created, board)
        elsewhere = ev.TaskCreated(swarm="other", id="t9", time=NOW, title="x", prompt="p")
        apply(board, elsewhere, 4)
        watchers.on_event(4, elsewhere, board)

        assert watch.changes.qsize() == 1
        assert watch.changes.get_nowait()["task"]["id"] == "t1"
    assert watchers.count == 0


def test_a_watch_starts_from_a_view_of_as_many_tasks_of_each_status_as_asked() -> None:
    board = fold(swarm_created(), *(task_created(f"t{i}") for i in range(4)))
    with Watchers().watching("s", board, per_status=3) as watch:
        assert watch.first is not None
        assert [t["id"] for t in watch.first["tasks"]] == ["t0", "t1", "t2"]
        assert watch.first["more"] == {"pending": 1}


def test_a_watch_that_falls_behind_is_dropped_not_grown() -> None:
    board = fold(swarm_created())
    watchers = Watchers(max_behind=3)
    with watchers.watching("s", board) as watch:
        for seq in range(2, 8):
            event = task_created(f"t{seq}")
            apply(board, event, seq)
            watchers.on_event(seq, event, board)

        assert watch.dropped and watch.changes.qsize() == 3


def test_the_clock_of_a_session_is_the_callers() -> None:
    # the gateway passes time.time(): a session issued now is valid now
    assert sessions.valid(TOKEN, sessions.issue(TOKEN, time.time()), time.time())


def test_the_totals_name_the_tasks_no_agent_can_take_until_one_can() -> None:
    board = fold(
        swarm_created(),
        ev.AgentRegistered(swarm="s", id="a1", time=NOW, name="A1", skills=["api"]),
        task_created("t-logo", tags=["design"]),
        task_created("t-api", tags=["api"]),
    )

    stuck = live.snapshot(board.swarms["s"], board.seq)["swarm"]["untakeable"]
    assert list(stuck) == ["t-logo"] and "design" in stuck["t-logo"]

    designer = ev.AgentRegistered(swarm="s", id="a2", time=NOW, name="A2", skills=["design"])
    apply(board, designer, 5)
    assert live.change(board.swarms["s"], 5, designer)["swarm"]["untakeable"] == {}
