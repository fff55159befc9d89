"""What an agent token may do (schemas/scopes.py), given/when/then, without NATS: the rules the
gateway's HTTP routes and micro endpoints and the MCP server's tools all ask."""

from __future__ import annotations

from typing import Any

import pytest

from schemas import events as ev
from schemas.agent_tokens import make_agent_token
from schemas.board import SwarmView
from schemas.errors import Forbidden, Invalid, Unauthorized
from schemas.fold import fold
from schemas.scopes import (
    AGENT_VERBS,
    FULL,
    Caller,
    FollowUp,
    authorize,
    bearer,
    check_listen,
    follow_up,
    identify,
)

API = "the-api-token-0123456789"
S = "dev"
T0 = 100.0


def given(*events: ev.Event) -> SwarmView:
    log = [ev.SwarmCreated(swarm=S, id=S, time=T0, name=S), *events]
    board = fold(list(enumerate(log, start=1)))
    return board.swarms[S]


def registered(agent: str) -> ev.AgentRegistered:
    return ev.AgentRegistered(swarm=S, id=agent, time=T0, name=agent, executor="local")


def created(task: str, **fields: Any) -> ev.TaskCreated:
    return ev.TaskCreated(swarm=S, id=task, time=T0, title=task, **fields)


def running(task: str, agent: str, attempt: int = 1) -> list[ev.Event]:
    return [
        ev.TaskClaimed(swarm=S, id=task, time=T0, agent=agent, attempt=attempt),
        ev.TaskRunning(swarm=S, id=task, time=T0, agent=agent, attempt=attempt),
    ]


# --- who is asking ------------------------------------------------------------------------------


def test_the_api_token_is_full_access_and_an_agent_token_names_its_agent() -> None:
    assert identify(API, API) == FULL
    token = make_agent_token(API, S, "qa-agent")
    assert identify(API, token) == Caller(agent="qa-agent", swarm=S)


def test_without_an_api_token_configured_everyone_has_full_access() -> None:
    assert identify(None, None) == FULL
    assert identify("", "anything") == FULL


@pytest.mark.parametrize("given_token", [None, "", "wrong", make_agent_token("other", S, "qa")])
def test_a_missing_or_wrong_token_is_unauthorized(given_token: str | None) -> None:
    with pytest.raises(Unauthorized):
        identify(API, given_token)


def test_bearer_reads_only_a_bearer_header() -> None:
    assert bearer("Bearer abc") == "abc"
    assert bearer("bearer  abc ") == "abc"
    assert bearer("Basic abc") is None
    assert bearer("Bearer ") is None
    assert bearer(None) is None


# --- what an agent may do -----------------------------------------------------------------------

AGENT = Caller(agent="qa-agent", swarm=S)


@pytest.mark.parametrize("verb", sorted(AGENT_VERBS))
def test_an_agent_may_read_chat_and_create_tasks_in_its_own_swarm(verb: str) -> None:
    authorize(AGENT, verb, S)  # no error


@pytest.mark.parametrize(
    "verb",
    [
        "delete_task",
        "delete_swarm",
        "cancel_task",
        "update_task",
        "register_agent",
        "update_agent",
        "create_swarm",
        "create_project",
        "init_project",
        "sync_project",
        "list_swarms",
        "list_projects",
    ],
)
def test_an_agent_may_not_delete_reconfigure_or_look_across_swarms(verb: str) -> None:
    with pytest.raises(Forbidden, match="SWARM_API_TOKEN"):
        authorize(AGENT, verb, S)


def test_an_agent_may_not_reach_another_swarm() -> None:
    with pytest.raises(Forbidden, match="belongs to swarm dev, not swarm prod"):
        authorize(AGENT, "list_tasks", "prod")
    with pytest.raises(Forbidden, match="not every swarm"):
        authorize(AGENT, "status", None)


def test_full_access_may_do_anything_anywhere() -> None:
    authorize(FULL, "delete_swarm", "prod")
    authorize(FULL, "list_swarms", None)


# --- follow-up tasks ------------------------------------------------------------------------------


def test_an_agent_running_a_task_may_create_a_follow_up_recorded_under_that_run() -> None:
    swarm = given(registered("qa"), created("t1"), *running("t1", "qa", attempt=1))
    assert follow_up(swarm, "qa", limit=2) == FollowUp(parent="t1", parent_attempt=1)


def test_follow_ups_of_one_run_are_bounded_and_a_new_attempt_starts_over() -> None:
    made = [created(f"f{i}", parent="t1", parent_attempt=1) for i in range(2)]
    swarm = given(registered("qa"), created("t1"), *running("t1", "qa"), *made)
    with pytest.raises(Forbidden, match="already created 2 follow-up tasks in this run of t1"):
        follow_up(swarm, "qa", limit=2)
    # given the same run was requeued and the agent runs attempt 2
    again = given(
        registered("qa"),
        created("t1"),
        *running("t1", "qa"),
        *made,
        ev.TaskRequeued(swarm=S, id="t1", time=T0, attempt=2, reason="agent lost"),
        *running("t1", "qa", attempt=2),
    )
    assert follow_up(again, "qa", limit=2) == FollowUp(parent="t1", parent_attempt=2)


def test_trigger_made_children_do_not_count_against_the_agent() -> None:
    swarm = given(
        registered("qa"),
        created("t1"),
        *running("t1", "qa"),
        created("t1-completed-0", parent="t1"),  # a trigger's: no parent_attempt
    )
    assert follow_up(swarm, "qa", limit=1).parent == "t1"


def test_an_idle_or_unknown_agent_may_not_create_tasks() -> None:
    swarm = given(registered("qa"), created("t1"))
    with pytest.raises(Forbidden, match="only while it runs a task"):
        follow_up(swarm, "qa", limit=5)
    with pytest.raises(Forbidden, match="not registered"):
        follow_up(swarm, "ghost", limit=5)


def test_without_an_api_token_a_server_listens_on_loopback_only() -> None:
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        check_listen(host, None)
    check_listen("0.0.0.0", API)
    with pytest.raises(Invalid, match="SWARM_API_TOKEN"):
        check_listen("0.0.0.0", None)
