"""When an agent owes the swarm's project a checkout, and how the answer reads (pure)."""

from __future__ import annotations

import pytest

from schemas import events as ev
from schemas.board import Board
from schemas.fold import fold
from services.executor import checkouts
from services.executor.checkouts import CheckoutRequest
from services.executor.git import CheckoutStatus, GitFailed

S = "s1"


def log(*events: ev.Event) -> Board:
    return fold(list(enumerate(events, start=1)))


def swarm() -> ev.Event:
    return ev.SwarmCreated(swarm=S, id=S, time=1.0, name=S)


def agent(agent_id: str) -> ev.Event:
    return ev.AgentRegistered(swarm=S, id=agent_id, time=2.0, name=agent_id, executor="ex1")


def created(ref: str | None = None) -> ev.Event:
    return ev.ProjectCreated(
        swarm=S, id="p1", time=3.0, name="app", git_url="/srv/app.git", credentials_ref=ref
    )


def attached() -> ev.Event:
    return ev.ProjectAttached(swarm=S, id="p1", time=4.0)


def init() -> ev.Event:
    return ev.ProjectInitRequested(swarm=S, id="p1", time=5.0)


def sync() -> ev.Event:
    return ev.ProjectSyncRequested(swarm=S, id="p1", time=6.0)


def synced(agent_id: str, round_: int) -> ev.Event:
    return ev.ProjectSynced(swarm=S, id="p1", time=7.0, agent=agent_id, round=round_, commit="c1")


def failed(agent_id: str, round_: int) -> ev.Event:
    return ev.ProjectSyncFailed(swarm=S, id="p1", time=7.0, agent=agent_id, round=round_, error="x")


def test_nothing_is_due_without_an_attached_project() -> None:
    assert checkouts.due(log(swarm(), agent("a1"), created(), init()), S, "a1") is None


def test_nothing_is_due_before_the_first_init_or_sync() -> None:
    assert checkouts.due(log(swarm(), agent("a1"), created(), attached()), S, "a1") is None


def test_an_init_request_is_due_for_every_agent() -> None:
    board = log(swarm(), agent("a1"), agent("a2"), created("GITHUB_TOKEN"), attached(), init())
    for agent_id in ("a1", "a2"):
        assert checkouts.due(board, S, agent_id) == CheckoutRequest(
            swarm=S,
            project="p1",
            agent=agent_id,
            round=1,
            kind="init",
            git_url="/srv/app.git",
            branch=None,  # none named: the remote's default, found when cloning
            credentials_ref="GITHUB_TOKEN",
        )


def test_the_branch_the_first_checkout_found_is_the_one_every_agent_follows() -> None:
    found = ev.ProjectSynced(
        swarm=S, id="p1", time=7.0, agent="a1", round=1, commit="c1", branch="master"
    )
    board = log(swarm(), agent("a1"), agent("a2"), created(), attached(), init(), found)
    request = checkouts.due(board, S, "a2")
    assert request is not None and request.branch == "master"
    assert board.swarms[S].projects["p1"].tip == "c1"


def test_an_answered_round_is_not_due_again_whether_it_synced_or_failed() -> None:
    board = log(
        swarm(), agent("a1"), agent("a2"), created(), attached(), init(), synced("a1", 1),
        failed("a2", 1),
    )  # fmt: skip
    assert checkouts.due(board, S, "a1") is None
    assert checkouts.due(board, S, "a2") is None


def test_a_sync_request_makes_a_new_round_due() -> None:
    board = log(swarm(), agent("a1"), created(), attached(), init(), synced("a1", 1), sync())
    request = checkouts.due(board, S, "a1")
    assert request is not None and (request.round, request.kind) == (2, "sync")


def test_an_agent_registered_after_init_owes_the_latest_round() -> None:
    board = log(swarm(), agent("a1"), created(), attached(), init(), synced("a1", 1), agent("late"))
    request = checkouts.due(board, S, "late")
    assert request is not None and (request.round, request.kind) == (1, "init")


def test_an_answer_for_an_older_round_leaves_the_newer_one_due() -> None:
    board = log(swarm(), agent("a1"), created(), attached(), init(), sync(), synced("a1", 1))
    request = checkouts.due(board, S, "a1")
    assert request is not None and request.round == 2


def test_unknown_agents_owe_nothing() -> None:
    assert checkouts.due(log(swarm(), created(), attached(), init()), S, "ghost") is None


def test_each_agent_and_round_is_answered_under_its_own_message_id() -> None:
    board = log(swarm(), agent("a1"), agent("a2"), created(), attached(), init())
    first, second = checkouts.due(board, S, "a1"), checkouts.due(board, S, "a2")
    assert first is not None and second is not None
    assert first.msg_id == f"{S}:project:p1:1:a1" and first.msg_id != second.msg_id


def test_credentials_come_from_the_named_variable_when_it_is_set() -> None:
    assert checkouts.credentials(None, {"GITHUB_TOKEN": "t"}) is None
    assert checkouts.credentials("GITHUB_TOKEN", {"GITHUB_TOKEN": "tok"}) == "tok"
    assert checkouts.credentials("GITHUB_TOKEN", {}) is None


@pytest.mark.parametrize("ref", ["ANTHROPIC_API_KEY", "SWARM_API_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN"])
def test_the_executors_own_credentials_are_never_sent_to_a_git_server(ref: str) -> None:
    with pytest.raises(GitFailed) as caught:
        checkouts.credentials(ref, {ref: "secret-value"})
    assert ref in caught.value.message and "secret-value" not in caught.value.message


def test_the_answer_is_synced_with_where_the_checkout_stands() -> None:
    request = checkouts.due(log(swarm(), agent("a1"), created(), attached(), init()), S, "a1")
    assert request is not None
    status = CheckoutStatus(commit="abc", dirty=True, ahead=1, behind=2)
    event = checkouts.answer(request, status, "executor:ex1", now=9.0)
    assert event == ev.ProjectSynced(
        swarm=S, id="p1", time=9.0, actor="executor:ex1", agent="a1", round=1, commit="abc",
        dirty=True, ahead=1, behind=2, event_id=event.event_id,
    )  # fmt: skip


def test_the_answer_to_a_failure_is_sync_failed_with_the_message() -> None:
    request = checkouts.due(log(swarm(), agent("a1"), created(), attached(), init()), S, "a1")
    assert request is not None
    event = checkouts.answer(request, GitFailed("git clone failed: nope"), "executor:ex1")
    assert isinstance(event, ev.ProjectSyncFailed)
    assert (event.agent, event.round, event.error) == ("a1", 1, "git clone failed: nope")
