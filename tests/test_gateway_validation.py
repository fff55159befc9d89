"""The gateway's pure checks: dependency graph, transitions, ids, replay positions, bodies."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas import events as ev
from schemas.errors import Conflict, Invalid, NotFound
from schemas.fold import fold
from services.gateway.models import CreateTask, RegisterAgent, UpdateTask, parse
from services.gateway.validation import (
    check_cancellable,
    check_depends,
    check_editable,
    derived_id,
    find_agent,
    parse_at,
)


def board_with(*tasks: tuple[str, list[str]]):
    events: list[ev.Event] = [ev.SwarmCreated(swarm="s", id="s", time=1.0, name="s")]
    events += [
        ev.TaskCreated(swarm="s", id=tid, time=2.0, title=tid, depends=deps) for tid, deps in tasks
    ]
    return fold(list(enumerate(events, start=1)))


def test_depending_on_an_unknown_task_is_invalid_naming_depends() -> None:
    board = board_with(("t1", []))
    with pytest.raises(Invalid) as caught:
        check_depends(board.swarms["s"], "t2", ["t1", "ghost"])
    assert caught.value.field == "depends"
    assert "ghost" in caught.value.message


def test_an_update_closing_a_loop_is_refused_as_a_cycle() -> None:
    board = board_with(("t1", []), ("t2", ["t1"]), ("t3", ["t2"]))
    with pytest.raises(Invalid) as caught:
        check_depends(board.swarms["s"], "t1", ["t3"])
    assert caught.value.field == "depends"
    assert "t1 -> t3 -> t2 -> t1" in caught.value.message


def test_a_task_depending_on_itself_is_refused() -> None:
    board = board_with(("t1", []))
    with pytest.raises(Invalid, match="itself"):
        check_depends(board.swarms["s"], "t1", ["t1"])


def test_only_unclaimed_tasks_are_editable_and_finished_ones_not_cancellable() -> None:
    board = board_with(("t1", []))
    task = board.swarms["s"].tasks["t1"]
    check_editable(task)
    task.status = "running"
    with pytest.raises(Conflict):
        check_editable(task)
    check_cancellable(task)
    task.status = "completed"
    with pytest.raises(Conflict):
        check_cancellable(task)


def test_find_agent_prefers_sandbox_id_and_refuses_ambiguity() -> None:
    events = [
        ev.SwarmCreated(swarm="a", id="a", time=1.0, name="a"),
        ev.SwarmCreated(swarm="b", id="b", time=1.0, name="b"),
        ev.AgentRegistered(swarm="a", id="x", time=1.0, name="X", sandbox_id="sb-1"),
        ev.AgentRegistered(swarm="b", id="sb-1", time=1.0, name="Y"),
        ev.AgentRegistered(swarm="b", id="x", time=1.0, name="X2"),
    ]
    board = fold(list(enumerate(events, start=1)))
    assert find_agent(board, "sb-1").swarm == "a"
    with pytest.raises(Conflict, match="several swarms"):
        find_agent(board, "x")
    assert find_agent(board, "x", "b").name == "X2"
    with pytest.raises(NotFound):
        find_agent(board, "nobody")


def test_derived_ids_are_stable_per_key_and_scope() -> None:
    assert derived_id("t-", "s", "k1") == derived_id("t-", "s", "k1")
    assert derived_id("t-", "s", "k1") != derived_id("t-", "s", "k2")
    assert derived_id("t-", "s", "k1") != derived_id("t-", "other", "k1")


def test_parse_at_tells_sequences_from_times() -> None:
    assert parse_at("42") == (42, None)
    assert parse_at("1700000000") == (None, 1700000000.0)
    assert parse_at("1700000000.5") == (None, 1700000000.5)
    expected = datetime(2025, 1, 31, 12, 0, tzinfo=UTC).timestamp()
    assert parse_at("2025-01-31T12:00:00Z") == (None, expected)
    assert parse_at("2025-01-31T12:00:00") == (None, expected)
    for bad in ("yesterday", "-3", "4.5"):
        with pytest.raises(Invalid):
            parse_at(bad)


def test_bodies_accept_comma_strings_and_name_the_field_at_fault() -> None:
    task = parse(CreateTask, {"title": "Button", "tags": "frontend, ui,,ui", "depends": "t1,t2"})
    assert task.tags == ["frontend", "ui"]
    assert task.depends == ["t1", "t2"]
    agent = parse(RegisterAgent, {"name": "A", "sandboxId": "sb-9", "skills": "qa,test"})
    assert (agent.sandbox_id, agent.skills) == ("sb-9", ["qa", "test"])
    cases = {
        "priority": {"title": "x", "priority": "urgent"},
        "title": {"prompt": "no title"},
        "triggers[0].task.title": {"title": "x", "triggers": [{"on": "completed", "task": {}}]},
        "colour": {"title": "x", "colour": "red"},
        "timeout": {"title": "x", "timeout": 0},
    }
    for field, body in cases.items():
        with pytest.raises(Invalid) as caught:
            parse(CreateTask, body)
        assert caught.value.field == field
    with pytest.raises(Invalid) as caught:
        parse(UpdateTask, {"title": ""})
    assert caught.value.field == "title"
    with pytest.raises(Invalid) as caught:
        parse(CreateTask, ["not", "an", "object"])
    assert caught.value.field == "body"
