"""The gateway's HTTP API against real NATS: every status code it promises, idempotency,
read-your-writes, live event streams, output, replay, the OpenAPI document, and 503 while NATS
is down with recovery once it is back."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jsonschema
import pytest
from gateway_support import append, call, sse_events
from waiting import until

from schemas import events as ev
from schemas import subjects
from schemas.errors import Invalid
from services.bus.connection import NatsOptions
from services.bus.embedded import free_port
from services.bus.history import ATTEMPT_HEADER
from services.bus.service import Bus
from services.gateway.service import Gateway

TOKEN = "test-token-123456"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def start_gateway(url: str, **kwargs: Any) -> Gateway:
    gateway = Gateway(nats=NatsOptions.from_env(url), port=free_port(), token=TOKEN, **kwargs)
    await gateway.start()
    return gateway


@pytest.fixture(scope="module")
async def gateway(nats_url: str) -> AsyncIterator[Gateway]:
    started = await start_gateway(nats_url)
    yield started
    await started.stop()


@pytest.fixture
async def http(gateway: Gateway) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=gateway.url, headers=AUTH) as session:
        yield session


@pytest.fixture
async def swarm(http: aiohttp.ClientSession, swarm_id: str) -> str:
    async with http.post("/swarms", json={"id": swarm_id, "name": "dev-swarm"}) as response:
        assert response.status == 201, await response.text()
    return swarm_id


async def create_task(http: aiohttp.ClientSession, swarm: str, **body: Any) -> dict[str, Any]:
    status, task = await call(http, "POST", f"/swarms/{swarm}/tasks", json=body)
    assert status == 201, task
    return task


# --- acting as scheduler and executor: the events they would append ---------------------------


async def start_running(bus: Bus, gateway: Gateway, swarm: str, task: str, agent: str) -> None:
    now = time.time()
    await append(bus, gateway, ev.AgentRegistered(swarm=swarm, id=agent, time=now, name=agent))
    await append(
        bus, gateway, ev.TaskClaimed(swarm=swarm, id=task, time=now, agent=agent, attempt=1)
    )
    await append(
        bus, gateway, ev.TaskRunning(swarm=swarm, id=task, time=now, agent=agent, attempt=1)
    )


async def complete(bus: Bus, gateway: Gateway, swarm: str, task: str, agent: str, **outcome):
    event = ev.TaskCompleted(
        swarm=swarm,
        id=task,
        time=time.time(),
        agent=agent,
        attempt=1,
        outcome=ev.RunOutcome(**outcome),
    )
    await append(bus, gateway, event)


# --- server-sent events -----------------------------------------------------------------------


# --- auth, health, errors ---------------------------------------------------------------------


async def test_every_route_but_health_needs_the_bearer_token(gateway: Gateway, swarm: str) -> None:
    async with aiohttp.ClientSession(base_url=gateway.url) as anonymous:
        status, body = await call(anonymous, "GET", "/swarms")
        assert status == 401
        assert body["error"]["code"] == "unauthorized"
        wrong = {"Authorization": "Bearer not-the-token"}
        status, _ = await call(anonymous, "GET", f"/swarms/{swarm}/tasks", headers=wrong)
        assert status == 401
        status, _ = await call(anonymous, "POST", f"/swarms/{swarm}/tasks", json={"title": "x"})
        assert status == 401
        status, health = await call(anonymous, "GET", "/health")
        assert status in (200, 503)  # other services are not running here; no token asked
        assert health["services"]["gateway"]["ready"] is True


def test_gateway_refuses_a_non_loopback_address_without_a_token() -> None:
    with pytest.raises(Invalid) as caught:
        Gateway(host="0.0.0.0", token=None)
    assert caught.value.field == "SWARM_API_TOKEN"


async def test_unknown_swarm_task_agent_and_route_are_404(
    http: aiohttp.ClientSession, swarm: str
) -> None:
    for method, path in [
        ("GET", "/swarms/no-such-swarm"),
        ("GET", "/swarms/no-such-swarm/status"),
        ("POST", "/swarms/no-such-swarm/tasks"),
        ("GET", f"/swarms/{swarm}/tasks/no-such-task"),
        ("PUT", f"/swarms/{swarm}/tasks/no-such-task"),
        ("DELETE", f"/swarms/{swarm}/tasks/no-such-task"),
        ("POST", f"/swarms/{swarm}/tasks/no-such-task/cancel"),
        ("GET", f"/swarms/{swarm}/tasks/no-such-task/output"),
        ("PUT", "/agents/no-such-sandbox"),
        ("GET", "/no/such/route"),
    ]:
        body = {"title": "x"} if method in ("POST", "PUT") else None
        status, answer = await call(http, method, path, json=body)
        assert status == 404, (method, path, answer)
        assert answer["error"]["message"]


async def test_bad_body_gets_400_naming_the_field(http: aiohttp.ClientSession, swarm: str) -> None:
    path = f"/swarms/{swarm}/tasks"
    status, answer = await call(http, "POST", path, json={"title": "x", "priority": "urgent"})
    assert status == 400
    assert answer["error"]["field"] == "priority"
    status, answer = await call(http, "POST", path, json={"prompt": "no title"})
    assert (status, answer["error"]["field"]) == (400, "title")
    status, answer = await call(http, "POST", path, data=b"{not json")
    assert (status, answer["error"]["field"]) == (400, "body")
    status, answer = await call(http, "POST", path, json={"title": "x", "runtime": "python"})
    assert (status, answer["error"]["field"]) == (400, "runtime")
    status, answer = await call(http, "GET", f"/swarms/{swarm}/board")
    assert (status, answer["error"]["field"]) == (400, "at")


async def test_body_over_the_limit_gets_413(http: aiohttp.ClientSession, swarm: str) -> None:
    huge = {"title": "x", "prompt": "p" * (2 << 20)}
    status, answer = await call(http, "POST", f"/swarms/{swarm}/tasks", json=huge)
    assert status == 413
    assert answer["error"]["code"] == "too_large"


# --- tasks ------------------------------------------------------------------------------------


async def test_created_task_is_readable_right_away_with_defaults(
    http: aiohttp.ClientSession, swarm: str
) -> None:
    task = await create_task(http, swarm, title="Create Button", tags="frontend,ui")
    status, again = await call(http, "GET", f"/swarms/{swarm}/tasks/{task['id']}")
    assert status == 200
    assert again["title"] == again["prompt"] == "Create Button"
    assert (again["priority"], again["runtime"], again["status"]) == ("medium", "claude", "pending")
    assert (again["attempt"], again["agent"], again["result"]) == (1, None, None)
    assert again["tags"] == ["frontend", "ui"]
    assert again["created_at"] > 0
    status, listed = await call(http, "GET", f"/swarms/{swarm}/tasks")
    assert [t["id"] for t in listed] == [task["id"]]


async def test_task_detail_carries_its_full_event_history(
    http: aiohttp.ClientSession, swarm: str
) -> None:
    task = await create_task(http, swarm, title="one")
    path = f"/swarms/{swarm}/tasks/{task['id']}"
    status, _ = await call(http, "PUT", path, json={"priority": "high"})
    assert status == 200
    status, cancelled = await call(http, "POST", f"{path}/cancel", json={"reason": "not needed"})
    assert (status, cancelled["status"], cancelled["reason"]) == (200, "cancelled", "not needed")
    status, detail = await call(http, "GET", path)
    assert [e["type"] for e in detail["events"]] == [
        "task.created",
        "task.updated",
        "task.cancelled",
    ]
    seqs = [e["seq"] for e in detail["events"]]
    assert seqs == sorted(seqs)
    assert detail["events"][1]["priority"] == "high"


async def test_retried_post_with_one_idempotency_key_creates_one_task(
    http: aiohttp.ClientSession, swarm: str
) -> None:
    path = f"/swarms/{swarm}/tasks"
    headers = {"Idempotency-Key": "retry-me"}
    first_status, first = await call(http, "POST", path, json={"title": "once"}, headers=headers)
    second_status, second = await call(http, "POST", path, json={"title": "once"}, headers=headers)
    assert (first_status, second_status) == (201, 200)
    assert first["id"] == second["id"]

    racing = {"Idempotency-Key": "racing"}
    answers = await asyncio.gather(
        *[call(http, "POST", path, json={"title": "race"}, headers=racing) for _ in range(5)]
    )
    assert {status for status, _ in answers} <= {200, 201}
    assert len({body["id"] for _, body in answers}) == 1

    _, tasks = await call(http, "GET", path)
    assert sorted(t["title"] for t in tasks) == ["once", "race"]
    _, detail = await call(http, "GET", f"{path}/{answers[0][1]['id']}")
    assert [e["type"] for e in detail["events"]] == ["task.created"]


async def test_an_idempotency_key_reused_on_another_task_still_updates_it(
    http: aiohttp.ClientSession, swarm: str
) -> None:
    first = await create_task(http, swarm, title="a")
    second = await create_task(http, swarm, title="b")
    headers = {"Idempotency-Key": "same-key"}
    for task in (first, second):
        path = f"/swarms/{swarm}/tasks/{task['id']}"
        status, updated = await call(http, "PUT", path, json={"priority": "low"}, headers=headers)
        assert (status, updated["priority"]) == (200, "low")


async def test_dependency_cycle_and_unknown_dependency_are_400(
    http: aiohttp.ClientSession, swarm: str
) -> None:
    first = await create_task(http, swarm, title="first")
    second = await create_task(http, swarm, title="second", depends=[first["id"]])
    assert second["status"] == "blocked"
    status, answer = await call(
        http, "PUT", f"/swarms/{swarm}/tasks/{first['id']}", json={"depends": [second["id"]]}
    )
    assert status == 400
    assert answer["error"]["field"] == "depends"
    assert "cycle" in answer["error"]["message"]
    status, answer = await call(
        http, "POST", f"/swarms/{swarm}/tasks", json={"title": "x", "depends": "ghost-task"}
    )
    assert (status, answer["error"]["field"]) == (400, "depends")
    assert "ghost-task" in answer["error"]["message"]


async def test_update_or_delete_of_a_running_or_finished_task_is_409(
    http: aiohttp.ClientSession, swarm: str, gateway: Gateway, bus: Bus
) -> None:
    task = await create_task(http, swarm, title="busy")
    path = f"/swarms/{swarm}/tasks/{task['id']}"
    await start_running(bus, gateway, swarm, task["id"], "worker")
    status, answer = await call(http, "PUT", path, json={"title": "renamed"})
    assert (status, answer["error"]["code"]) == (409, "conflict")
    status, _ = await call(http, "DELETE", path)
    assert status == 409
    await complete(bus, gateway, swarm, task["id"], "worker", result="done")
    status, _ = await call(http, "PUT", path, json={"title": "renamed"})
    assert status == 409
    status, _ = await call(http, "POST", f"{path}/cancel")
    assert status == 409
    status, done = await call(http, "GET", path)
    assert (done["status"], done["result"], done["agent"]) == ("completed", "done", "worker")


async def test_a_write_that_lost_a_race_is_409(nats_url: str, bus: Bus, swarm_id: str) -> None:
    stale = await start_gateway(nats_url)
    try:
        async with aiohttp.ClientSession(base_url=stale.url, headers=AUTH) as http:
            status, _ = await call(http, "POST", "/swarms", json={"id": swarm_id})
            task = await create_task(http, swarm_id, title="contested")
            await stale.projection.stop()  # its fold no longer moves: the next write is stale
            seq = stale.projection.board.version(swarm_id, "task", task["id"])
            other = ev.TaskUpdated(swarm=swarm_id, id=task["id"], time=time.time(), title="mine")
            await bus.events.append(other, expected_seq=seq)
            path = f"/swarms/{swarm_id}/tasks/{task['id']}"
            status, answer = await call(http, "PUT", path, json={"title": "theirs"})
            assert status == 409
            assert "changed" in answer["error"]["message"]
    finally:
        await stale.stop()


async def test_delete_task_then_it_is_gone(http: aiohttp.ClientSession, swarm: str) -> None:
    task = await create_task(http, swarm, title="temporary")
    path = f"/swarms/{swarm}/tasks/{task['id']}"
    status, answer = await call(http, "DELETE", path)
    assert (status, answer) == (200, {"id": task["id"], "deleted": True})
    status, _ = await call(http, "GET", path)
    assert status == 404


async def pages(
    http: aiohttp.ClientSession, path: str, **query: Any
) -> tuple[list[list[dict[str, Any]]], list[str | None]]:
    """Every page of a listing, following each ``Link: <...>; rel="next"``; with the header
    (None: absent) each page came with."""
    found: list[list[dict[str, Any]]] = []
    links: list[str | None] = []
    url: str | None = path
    params: dict[str, str] | None = {k: str(v) for k, v in query.items()}
    while url is not None:
        async with http.get(url, params=params) as response:
            assert response.status == 200, await response.text()
            found.append(await response.json())
            links.append(response.headers.get("Link"))
            following = response.links.get("next")
            url, params = (None if following is None else str(following["url"])), None
    return found, links


async def test_paging_through_tasks_gives_the_unpaged_list_with_or_without_filters(
    http: aiohttp.ClientSession, swarm: str, gateway: Gateway, bus: Bus
) -> None:
    made = [
        await create_task(http, swarm, title=f"task {i}", tags="ui" if i % 3 else "api")
        for i in range(10)
    ]
    for task in made[:6:2]:  # finished, so kept frozen among live ones
        await start_running(bus, gateway, swarm, task["id"], f"worker-{task['id']}")
        await complete(bus, gateway, swarm, task["id"], f"worker-{task['id']}", result="ok")
    status, _ = await call(http, "POST", f"/swarms/{swarm}/tasks/{made[7]['id']}/cancel")
    assert status == 200
    path = f"/swarms/{swarm}/tasks"
    status, everything = await call(http, "GET", path)
    assert [t["id"] for t in everything] == [t["id"] for t in made]  # oldest first, no Link
    for filters in ({}, {"status": "completed"}, {"tag": "ui"}, {"status": "pending", "tag": "ui"}):
        status, whole = await call(http, "GET", path, params=filters)
        assert status == 200 and whole
        found, links = await pages(http, path, **filters, limit=2)
        assert [t for page in found for t in page] == whole, filters  # none missed or repeated
        assert all(len(page) == 2 for page in found[:-1]) and 1 <= len(found[-1]) <= 2
        assert links[-1] is None and all(links[:-1])
        for link in links[:-1]:
            assert link and "limit=2" in link and "after=" in link and 'rel="next"' in link
            assert all(f"{name}={value}" in link for name, value in filters.items())
    found, links = await pages(http, path, limit=10)  # exactly every task: one page, no Link
    assert found == [everything] and links == [None]
    status, rest = await call(http, "GET", path, params={"after": made[7]["id"]})
    assert (status, rest) == (200, everything[8:])


async def test_pages_newest_first_or_by_priority_walk_the_same_order_as_the_whole_listing(
    http: aiohttp.ClientSession, swarm: str, gateway: Gateway, bus: Bus
) -> None:
    priorities = ["low", "critical", "medium", "high", "critical", "low", "medium"]
    made = [
        await create_task(http, swarm, title=f"task {i}", priority=priority)
        for i, priority in enumerate(priorities)
    ]
    for task in made[:4:2]:  # finished, so kept frozen among live ones
        await start_running(bus, gateway, swarm, task["id"], f"worker-{task['id']}")
        await complete(bus, gateway, swarm, task["id"], f"worker-{task['id']}", result="ok")
    path = f"/swarms/{swarm}/tasks"
    _, oldest = await call(http, "GET", path)
    _, newest = await call(http, "GET", path, params={"order": "newest"})
    assert newest == oldest[::-1]
    _, pending = await call(http, "GET", path, params={"status": "pending", "order": "priority"})
    assert [t["title"] for t in pending] == ["task 1", "task 4", "task 3", "task 6", "task 5"]
    for filters in (
        {"order": "newest"},
        {"order": "newest", "status": "completed"},
        {"order": "priority", "status": "pending"},
    ):
        status, whole = await call(http, "GET", path, params=filters)
        assert status == 200 and whole
        found, links = await pages(http, path, **filters, limit=2)
        assert [t for page in found for t in page] == whole, filters
        assert links[-1] is None
        assert all(link and f"order={filters['order']}" in link for link in links[:-1])


async def test_a_bad_page_limit_or_cursor_is_400_naming_it(
    http: aiohttp.ClientSession, swarm: str
) -> None:
    path = f"/swarms/{swarm}/tasks"
    for query, field in (
        ({"limit": "0"}, "limit"),
        ({"limit": "-3"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "2", "after": "t-nowhere"}, "after"),
        ({"after": "x" * 300}, "after"),
    ):
        status, answer = await call(http, "GET", path, params=query)
        assert (status, answer["error"]["field"]) == (400, field), query
    await create_task(http, swarm, title="a task")
    for wildcard in ("*", ">", "t.a"):  # never a subject that finds another task's event
        status, answer = await call(http, "GET", path, params={"after": wildcard})
        assert (status, answer["error"]["field"]) == (400, "after"), wildcard


async def test_a_page_after_a_task_deleted_since_continues_where_that_task_was(
    http: aiohttp.ClientSession, swarm: str, gateway: Gateway, bus: Bus
) -> None:
    made = [await create_task(http, swarm, title=f"task {i}") for i in range(6)]
    for task in made[:3]:
        await start_running(bus, gateway, swarm, task["id"], f"worker-{task['id']}")
        await complete(bus, gateway, swarm, task["id"], f"worker-{task['id']}", result="ok")
    path = f"/swarms/{swarm}/tasks"
    for query, cursor, rest in (
        ({"limit": "2"}, made[1], made[2:4]),  # a finished task deleted between pages
        ({"limit": "2", "status": "pending"}, made[4], made[5:]),  # a live one
        ({"limit": "1", "status": "completed", "order": "newest"}, made[2], made[:1]),
    ):
        async with http.get(path, params=query) as response:
            assert response.status == 200 and response.links.get("next")
            following = str(response.links["next"]["url"])
            assert [t["id"] for t in await response.json()][-1] == cursor["id"]
        status, _ = await call(http, "DELETE", f"{path}/{cursor['id']}")
        assert status == 200
        async with http.get(following) as response:
            assert response.status == 200, await response.text()
            assert [t["id"] for t in await response.json()] == [t["id"] for t in rest]
    # by priority the deleted cursor's place went with it (its priority): a 400, start again
    query = {"status": "pending", "order": "priority", "after": made[4]["id"]}
    status, answer = await call(http, "GET", path, params=query)
    assert (status, answer["error"]["field"]) == (400, "after")


# --- swarms, status, agents -------------------------------------------------------------------


async def test_swarm_can_be_created_listed_read_and_deleted(
    http: aiohttp.ClientSession, swarm_id: str
) -> None:
    status, created = await call(http, "POST", "/swarms", json={"id": swarm_id, "name": "Dev"})
    assert (status, created["name"]) == (201, "Dev")
    status, _ = await call(http, "POST", "/swarms", json={"id": swarm_id})
    assert status == 409
    status, swarms = await call(http, "GET", "/swarms")
    assert swarm_id in [s["id"] for s in swarms]
    status, one = await call(http, "GET", f"/swarms/{swarm_id}")
    assert (status, one["tasks"], one["agents"]) == (200, 0, 0)
    status, _ = await call(http, "DELETE", f"/swarms/{swarm_id}")
    assert status == 200
    status, _ = await call(http, "GET", f"/swarms/{swarm_id}")
    assert status == 404


async def test_status_shows_agents_with_their_task_and_counts_by_state(
    http: aiohttp.ClientSession, swarm: str, gateway: Gateway, bus: Bus
) -> None:
    busy = await create_task(http, swarm, title="busy")
    await create_task(http, swarm, title="waiting")
    await start_running(bus, gateway, swarm, busy["id"], "backend-agent")
    status, answer = await call(http, "GET", f"/swarms/{swarm}/status")
    assert status == 200
    assert answer["swarm"]["name"] == "dev-swarm"
    assert [(a["id"], a["status"], a["task"]) for a in answer["agents"]] == [
        ("backend-agent", "working", busy["id"])
    ]
    assert answer["tasks"]["running"] == 1
    assert answer["tasks"]["pending"] == 1
    assert answer["tasks"]["total"] == 2
    assert answer["chat"] == []


async def test_a_task_s_claude_settings_go_into_its_event_and_come_back(
    http: aiohttp.ClientSession, swarm: str, bus: Bus
) -> None:
    settings = {
        "permission_mode": "plan",
        "allowed_tools": "Bash(make *), Bash(docker *)",
        "max_budget_usd": 1.5,
    }
    task = await create_task(http, swarm, title="Careful", claude=settings)
    assert task["claude"] == {
        "permission_mode": "plan",
        "allowed_tools": ["Bash(make *)", "Bash(docker *)"],
        "disallowed_tools": [],
        "max_budget_usd": 1.5,
        "model": None,
    }
    status, updated = await call(
        http, "PUT", f"/swarms/{swarm}/tasks/{task['id']}", json={"claude": {"model": "haiku"}}
    )
    assert status == 200 and updated["claude"]["model"] == "haiku"
    assert updated["claude"]["permission_mode"] is None  # replaced whole
    status, detail = await call(http, "GET", f"/swarms/{swarm}/tasks/{task['id']}")
    created = detail["events"][0]
    assert created["claude"]["allowed_tools"] == ["Bash(make *)", "Bash(docker *)"]


@pytest.mark.parametrize(
    ("claude", "field"),
    [
        ({"permission_mode": "yolo"}, "claude.permission_mode"),
        ({"max_budget_usd": 0}, "claude.max_budget_usd"),
        ({"max_budget_usd": -1}, "claude.max_budget_usd"),
        ({"allowed_tools": ["x" * 501]}, "claude.allowed_tools[0]"),
        ({"surprise": 1}, "claude.surprise"),
    ],
)
async def test_bad_claude_settings_are_400_naming_the_field(
    http: aiohttp.ClientSession, swarm: str, claude: dict[str, Any], field: str
) -> None:
    status, answer = await call(
        http, "POST", f"/swarms/{swarm}/tasks", json={"title": "x", "claude": claude}
    )
    assert status == 400 and answer["error"]["field"] == field, answer


async def test_a_swarm_budget_is_set_shown_with_the_spend_and_removed(
    http: aiohttp.ClientSession, swarm_id: str, gateway: Gateway, bus: Bus
) -> None:
    status, made = await call(http, "POST", "/swarms", json={"id": swarm_id, "budget_usd": 1})
    assert status == 201 and (made["budget_usd"], made["spent_usd"]) == (1.0, 0.0)
    task = await create_task(http, swarm_id, title="costly")
    await start_running(bus, gateway, swarm_id, task["id"], "backend-agent")
    await complete(bus, gateway, swarm_id, task["id"], "backend-agent", cost_usd=1.25)
    status, state = await call(http, "GET", f"/swarms/{swarm_id}/status")
    assert state["swarm"]["spent_usd"] == 1.25
    assert state["swarm"]["budget_reached"].startswith("swarm budget $1.00 reached ($1.25 spent)")
    assert [(a["id"], a["spent_usd"]) for a in state["agents"]] == [("backend-agent", 1.25)]
    status, done = await call(http, "GET", f"/swarms/{swarm_id}/tasks/{task['id']}")
    assert done["cost_usd"] == 1.25
    status, raised = await call(http, "PATCH", f"/swarms/{swarm_id}", json={"budget_usd": 5})
    assert status == 200 and raised["budget_usd"] == 5.0 and raised["budget_reached"] is None
    status, removed = await call(http, "PATCH", f"/swarms/{swarm_id}", json={"budget_usd": None})
    assert status == 200 and removed["budget_usd"] is None
    status, renamed = await call(http, "PATCH", f"/swarms/{swarm_id}", json={"name": "Renamed"})
    assert renamed["name"] == "Renamed" and renamed["budget_usd"] is None
    status, answer = await call(http, "PATCH", f"/swarms/{swarm_id}", json={"budget_usd": 0})
    assert status == 400 and answer["error"]["field"] == "budget_usd"
    status, _ = await call(http, "PATCH", "/swarms/no-such-swarm", json={"budget_usd": 1})
    assert status == 404


async def test_agent_registered_over_the_api_waits_for_an_executor_and_updates_by_sandbox(
    http: aiohttp.ClientSession, swarm: str
) -> None:
    body = {
        "name": "Frontend Agent",
        "role": "frontend",
        "skills": "frontend,ui",
        "sandboxId": "sb-7",
    }
    status, agent = await call(http, "POST", f"/swarms/{swarm}/agents", json=body)
    assert status == 201
    assert (agent["id"], agent["executor"], agent["status"]) == ("frontend-agent", None, "idle")
    assert agent["skills"] == ["frontend", "ui"]
    status, updated = await call(
        http, "PUT", f"/agents/sb-7?swarm={swarm}", json={"skills": ["frontend", "css"]}
    )
    assert (status, updated["skills"]) == (200, ["frontend", "css"])
    status, agents = await call(http, "GET", f"/swarms/{swarm}/agents")
    assert [a["skills"] for a in agents] == [["frontend", "css"]]
    status, answer = await call(http, "POST", f"/swarms/{swarm}/agents", json={"role": "x"})
    assert (status, answer["error"]["field"]) == (400, "name")


# --- output, replay, event streams -------------------------------------------------------------


async def test_output_comes_from_the_store_else_live_chunks_else_the_kept_tail(
    http: aiohttp.ClientSession, swarm: str, gateway: Gateway, bus: Bus
) -> None:
    task = await create_task(http, swarm, title="talks")
    path = f"/swarms/{swarm}/tasks/{task['id']}/output"
    await start_running(bus, gateway, swarm, task["id"], "talker")
    for text in ("hello ", "world"):
        await bus.js.publish(
            subjects.log(swarm, task["id"]), text.encode(), headers={ATTEMPT_HEADER: "1"}
        )
    status, live = await call(http, "GET", path)
    assert (status, live["source"], live["output"], live["complete"]) == (
        200,
        "live",
        "hello world",
        False,
    )
    store = await bus.js.object_store(subjects.OUTPUT_STORE)
    await store.put(subjects.output_name(swarm, task["id"], 1), b"the whole output")
    await complete(bus, gateway, swarm, task["id"], "talker", result="tail")
    status, full = await call(http, "GET", path)
    assert (full["source"], full["output"], full["complete"]) == (
        "object_store",
        "the whole output",
        True,
    )

    quiet = await create_task(http, swarm, title="quiet")
    await start_running(bus, gateway, swarm, quiet["id"], "mute")
    await complete(bus, gateway, swarm, quiet["id"], "mute", result="only the tail")
    status, tail = await call(http, "GET", f"/swarms/{swarm}/tasks/{quiet['id']}/output")
    assert (tail["source"], tail["output"]) == ("result", "only the tail")


async def test_board_at_a_past_position_or_time_shows_the_swarm_as_it_was(
    http: aiohttp.ClientSession, swarm: str
) -> None:
    first = await create_task(http, swarm, title="first")
    status, detail = await call(http, "GET", f"/swarms/{swarm}/tasks/{first['id']}")
    seq = detail["events"][0]["seq"]
    created_at = time.time()
    await create_task(http, swarm, title="second")
    status, board = await call(http, "GET", f"/swarms/{swarm}/board?at={seq}")
    assert status == 200
    assert board["seq"] == seq
    assert [t["title"] for t in board["tasks"]] == ["first"]
    status, board = await call(http, "GET", f"/swarms/{swarm}/board", params={"at": created_at})
    assert [t["title"] for t in board["tasks"]] == ["first"]
    status, now = await call(http, "GET", f"/swarms/{swarm}/board", params={"at": "999999"})
    assert [t["title"] for t in now["tasks"]] == ["first", "second"] and now["more"] == {}
    query = {"at": "999999", "per_status": "1"}  # the next to be taken of each status, at most
    status, one = await call(http, "GET", f"/swarms/{swarm}/board", params=query)
    assert [t["title"] for t in one["tasks"]] == ["first"]
    assert one["more"] == {"pending": 1} and one["counts"]["pending"] == 2


async def test_events_stream_replays_then_delivers_new_events_live(
    http: aiohttp.ClientSession, swarm: str
) -> None:
    old = await create_task(http, swarm, title="before")
    async with http.get(f"/swarms/{swarm}/events") as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        replayed = await sse_events(stream, lambda e: e.get("event") == "task.created")
        assert json.loads(replayed[-1]["data"])["id"] == old["id"]
        new = await create_task(http, swarm, title="after")
        live = await sse_events(stream, lambda e: e.get("event") == "task.created")
        event = json.loads(live[-1]["data"])
        assert (event["id"], event["title"]) == (new["id"], "after")
        assert int(live[-1]["id"]) > int(replayed[-1]["id"])


async def test_events_stream_from_since_without_follow_ends_when_caught_up(
    http: aiohttp.ClientSession, swarm: str
) -> None:
    first = await create_task(http, swarm, title="a")
    _, detail = await call(http, "GET", f"/swarms/{swarm}/tasks/{first['id']}")
    since = detail["events"][0]["seq"]
    second = await create_task(http, swarm, title="b")
    async with http.get(f"/swarms/{swarm}/events", params={"since": since, "follow": 0}) as s:
        events = await sse_events(s, lambda e: e.get("event") == "end")
    created = [json.loads(e["data"])["id"] for e in events if e["event"] == "task.created"]
    assert created == [second["id"]]


async def test_events_stream_with_tail_starts_after_the_newest_event(
    http: aiohttp.ClientSession, swarm: str
) -> None:
    await create_task(http, swarm, title="before")
    async with http.get(f"/swarms/{swarm}/events", params={"tail": 1}) as stream:
        new = await create_task(http, swarm, title="after")
        live = await sse_events(stream, lambda e: e.get("event") == "task.created")
    assert [json.loads(e["data"])["title"] for e in live] == ["after"]
    assert json.loads(live[0]["data"])["id"] == new["id"]


async def test_a_cancel_records_who_cancelled_and_keeps_the_task_s_agent(
    http: aiohttp.ClientSession, swarm: str, gateway: Gateway, bus: Bus
) -> None:
    task = await create_task(http, swarm, title="long")
    await start_running(bus, gateway, swarm, task["id"], "worker")
    path = f"/swarms/{swarm}/tasks/{task['id']}"
    status, cancelled = await call(http, "POST", f"{path}/cancel")
    assert status == 200
    assert (cancelled["status"], cancelled["agent"]) == ("cancelled", "worker")
    assert (cancelled["reason"], cancelled["cancelled_by"]) == ("cancelled by api", "api")
    _, detail = await call(http, "GET", path)
    assert detail["events"][-1]["actor"] == "api"
    assert gateway.projection.board.agent(swarm, "worker").status == "idle"


async def test_logs_stream_follows_chunks_until_the_task_ends(
    http: aiohttp.ClientSession, swarm: str, gateway: Gateway, bus: Bus
) -> None:
    task = await create_task(http, swarm, title="streams")
    await start_running(bus, gateway, swarm, task["id"], "streamer")
    subject = subjects.log(swarm, task["id"])
    async with http.get(f"/swarms/{swarm}/tasks/{task['id']}/logs?follow=1") as stream:
        await bus.js.publish(subject, b"line one\n", headers={ATTEMPT_HEADER: "1"})
        first = await sse_events(stream, lambda e: e.get("event") == "chunk")
        assert json.loads(first[-1]["data"]) == {"attempt": 1, "text": "line one\n"}
        await bus.js.publish(subject, b"line two\n", headers={ATTEMPT_HEADER: "1"})
        await complete(bus, gateway, swarm, task["id"], "streamer")
        rest = await sse_events(stream, lambda e: e.get("event") == "end")
    texts = [json.loads(e["data"])["text"] for e in rest if e["event"] == "chunk"]
    assert texts == ["line two\n"]
    assert json.loads(rest[-1]["data"]) == {"status": "completed"}


async def test_openapi_lists_every_path_and_describes_real_answers(
    http: aiohttp.ClientSession, swarm: str
) -> None:
    status, document = await call(http, "GET", "/openapi.json")
    assert status == 200
    paths = document["paths"]
    for path, verbs in {
        "/swarms": {"get", "post"},
        "/swarms/{swarm}": {"get", "patch", "delete"},
        "/swarms/{swarm}/status": {"get"},
        "/swarms/{swarm}/tasks": {"get", "post"},
        "/swarms/{swarm}/tasks/{task}": {"get", "put", "delete"},
        "/swarms/{swarm}/tasks/{task}/cancel": {"post"},
        "/swarms/{swarm}/tasks/{task}/output": {"get"},
        "/swarms/{swarm}/agents": {"get", "post"},
        "/agents/{sandbox}": {"put"},
        "/swarms/{swarm}/events": {"get"},
        "/health": {"get"},
    }.items():
        assert verbs <= set(paths[path]), path
    create = paths["/swarms/{swarm}/tasks"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/CreateTask"
    )
    assert {"201", "400", "401", "404", "413", "503"} <= set(create["responses"])
    listing = paths["/swarms/{swarm}/tasks"]["get"]
    parameters = {p["name"]: p for p in listing["parameters"]}
    assert parameters["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 1000}
    assert "after" in parameters and "Link" in listing["responses"]["200"]["headers"]

    task = await create_task(http, swarm, title="documented", tags="docs")
    status, detail = await call(http, "GET", f"/swarms/{swarm}/tasks/{task['id']}")
    status, state = await call(http, "GET", f"/swarms/{swarm}/status")
    for model, value in (("TaskDetail", detail), ("Status", state), ("Task", task)):
        schema = {"$ref": f"#/components/schemas/{model}", "components": document["components"]}
        jsonschema.validate(value, schema)


# --- NATS away --------------------------------------------------------------------------------


async def test_nats_down_answers_503_then_recovers_by_itself(nats_factory, swarm_id: str) -> None:
    server = nats_factory()
    gateway = await start_gateway(server.url)
    try:
        async with aiohttp.ClientSession(base_url=gateway.url, headers=AUTH) as http:
            status, _ = await call(http, "POST", "/swarms", json={"id": swarm_id})
            assert status == 201
            before = await create_task(http, swarm_id, title="before")

            server.kill()

            async def disconnected() -> bool:
                return not gateway.bus.nc.is_connected

            await until(disconnected, what="the gateway to notice NATS is gone")
            status, answer = await call(
                http, "POST", f"/swarms/{swarm_id}/tasks", json={"title": "x"}
            )
            assert (status, answer["error"]["code"]) == (503, "unavailable")
            status, _ = await call(http, "GET", f"/swarms/{swarm_id}/tasks")
            assert status == 503
            status, _ = await call(http, "GET", f"/swarms/{swarm_id}/events?follow=0")
            assert status == 503

            server.start()

            async def created() -> Any:
                status, body = await call(
                    http,
                    "POST",
                    f"/swarms/{swarm_id}/tasks",
                    json={"title": "after"},
                    headers={"Idempotency-Key": "after-restart"},
                )
                assert status in (201, 200, 503), body
                return body if status in (200, 201) else None

            after = await until(created, timeout=30, what="a 2xx after NATS came back")
            status, tasks = await call(http, "GET", f"/swarms/{swarm_id}/tasks")
            assert status == 200
            assert [t["id"] for t in tasks] == [before["id"], after["id"]]
    finally:
        await gateway.stop()
