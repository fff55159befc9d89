"""An agent's own token on real NATS, through the gateway's HTTP routes and its NATS micro
endpoints: it reads its swarm, posts chat, creates a bounded number of follow-up tasks of the
task it runs, and can delete, reconfigure or reach another swarm through neither edge. Also:
what the prototype's clients send is accepted, and deleting a swarm with running tasks."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from gateway_support import call, running

from schemas import events as ev
from schemas.agent_tokens import make_agent_token
from schemas.errors import Forbidden, Unauthorized
from services.bus.connection import NatsOptions
from services.bus.embedded import free_port
from services.bus.micro import call as micro_call
from services.bus.service import Bus
from services.chat.service import Chat
from services.gateway.service import Gateway

TOKEN = "scope-test-token-2468"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FOLLOW_UPS = 2


@pytest.fixture(scope="module")
async def gateway(nats_url: str) -> AsyncIterator[Gateway]:
    service = Gateway(
        nats=NatsOptions.from_env(nats_url), port=free_port(), token=TOKEN, follow_ups=FOLLOW_UPS
    )
    async with running(service) as started:
        yield started


@pytest.fixture(scope="module")
async def chat(nats_url: str) -> AsyncIterator[Chat]:
    async with running(Chat(nats=NatsOptions.from_env(nats_url))) as started:
        yield started


@pytest.fixture
async def http(gateway: Gateway) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=gateway.url, headers=AUTH) as session:
        yield session


async def seed(bus: Bus, swarm: str, gateway: Gateway, chat: Chat, *, busy: bool) -> str:
    """A swarm with agents ``fe`` and ``be``; with ``busy``, ``fe`` runs task ``t-run``."""
    now = time.time()
    log: list[tuple[ev.Event, int]] = [
        (ev.SwarmCreated(swarm=swarm, id=swarm, time=now, name=swarm), 0)
    ]
    for agent, role in (("fe", "frontend"), ("be", "backend")):
        log.append(
            (
                ev.AgentRegistered(
                    swarm=swarm, id=agent, time=now, name=agent, role=role, executor="local"
                ),
                0,
            )
        )
    seq = 0
    for event, expected in log:
        seq = await bus.events.append(event, expected)
    if busy:
        seq = await bus.events.append(ev.TaskCreated(swarm=swarm, id="t-run", time=now, title="x"))
        seq = await bus.events.append(
            ev.TaskClaimed(swarm=swarm, id="t-run", time=now, agent="fe", attempt=1), seq
        )
        seq = await bus.events.append(
            ev.TaskRunning(swarm=swarm, id="t-run", time=now, agent="fe", attempt=1), seq
        )
    await gateway.projection.wait_for(seq)
    await chat.projection.wait_for(seq)
    return swarm


def agent_headers(swarm: str, agent: str = "fe") -> dict[str, str]:
    return {"Authorization": f"Bearer {make_agent_token(TOKEN, swarm, agent)}"}


# --- HTTP ---------------------------------------------------------------------------------------


async def test_an_agent_creates_follow_ups_of_its_run_up_to_the_bound_and_nothing_destructive(
    gateway: Gateway, chat: Chat, bus: Bus, http: aiohttp.ClientSession, swarm_id: str
) -> None:
    swarm = await seed(bus, swarm_id, gateway, chat, busy=True)
    other = await seed(bus, f"{swarm_id}-b", gateway, chat, busy=False)
    async with aiohttp.ClientSession(base_url=gateway.url, headers=agent_headers(swarm)) as agent:
        made = []
        for n in range(FOLLOW_UPS):
            status, task = await call(
                agent,
                "POST",
                f"/swarms/{swarm}/tasks",
                json={"title": f"review {n}", "tags": "backend", "depends": ["t-run"]},
            )
            assert status == 201, task
            assert (task["parent"], task["parent_attempt"], task["status"]) == (
                "t-run",
                1,
                "blocked",
            )
            made.append(task["id"])
        status, answer = await call(agent, "POST", f"/swarms/{swarm}/tasks", json={"title": "1+"})
        assert status == 403
        assert (
            "already created 2 follow-up tasks in this run of t-run" in (answer["error"]["message"])
        )
        status, answer = await call(
            agent,
            "POST",
            f"/swarms/{swarm}/tasks",
            json={"title": "t", "triggers": [{"on": "completed", "task": {"title": "more"}}]},
        )
        assert (status, answer["error"]["field"]) == (400, "triggers")

        for method, path in (
            ("DELETE", f"/swarms/{swarm}/tasks/{made[0]}"),
            ("POST", f"/swarms/{swarm}/tasks/{made[0]}/cancel"),
            ("PUT", f"/swarms/{swarm}/tasks/{made[0]}"),
            ("DELETE", f"/swarms/{swarm}"),
            ("PUT", "/agents/fe"),
            ("GET", f"/swarms/{other}/tasks"),
            ("POST", f"/swarms/{other}/chat"),
        ):
            status, answer = await call(agent, method, path, json={"title": "changed"})
            assert (status, answer["error"]["code"]) == (403, "forbidden"), (method, path)

    events = (await call(http, "GET", f"/swarms/{swarm}/tasks/{made[0]}"))[1]["events"]
    assert events[0]["actor"] == "fe"
    status, tasks = await call(http, "GET", f"/swarms/{swarm}/tasks")
    assert sorted(t["id"] for t in tasks) == sorted(["t-run", *made])
    assert all(t["title"] != "changed" for t in tasks)
    assert (await call(http, "GET", f"/swarms/{other}/tasks"))[1] == []


# --- NATS micro -----------------------------------------------------------------------------------


async def test_the_same_rules_hold_over_nats_micro_with_the_agent_token_in_a_header(
    gateway: Gateway, chat: Chat, bus: Bus, swarm_id: str
) -> None:
    swarm = await seed(bus, swarm_id, gateway, chat, busy=True)
    other = await seed(bus, f"{swarm_id}-b", gateway, chat, busy=False)
    nc = bus.nc
    as_fe = agent_headers(swarm)

    task = await micro_call(
        nc, f"swarm.cmd.{swarm}.create_task", {"title": "follow-up"}, headers=as_fe
    )
    assert (task["parent"], task["parent_attempt"]) == ("t-run", 1)
    status = await micro_call(nc, f"swarm.cmd.{swarm}.status", {}, headers=as_fe)
    assert status["swarm"]["id"] == swarm

    for subject, body in (
        (f"swarm.cmd.{swarm}.delete_task", {"task": task["id"]}),
        (f"swarm.cmd.{swarm}.cancel_task", {"task": task["id"]}),
        (f"swarm.cmd.{swarm}.register_agent", {"name": "intruder"}),
        (f"swarm.cmd.{other}.list_tasks", {}),
        ("swarm.cmd._.list_swarms", {}),
    ):
        with pytest.raises(Forbidden):
            await micro_call(nc, subject, body, headers=as_fe)
    forged = {"Authorization": f"Bearer {make_agent_token('forged', swarm, 'fe')}"}
    with pytest.raises(Unauthorized):
        await micro_call(nc, f"swarm.cmd.{swarm}.status", {}, headers=forged)

    # without a token, NATS access is full access (as before)
    deleted = await micro_call(nc, f"swarm.cmd.{swarm}.delete_task", {"task": task["id"]})
    assert deleted == {"id": task["id"], "deleted": True}


# --- deleting a swarm -----------------------------------------------------------------------------


async def test_a_swarm_with_a_running_task_is_deleted_only_with_force(
    gateway: Gateway, chat: Chat, bus: Bus, http: aiohttp.ClientSession, swarm_id: str
) -> None:
    swarm = await seed(bus, swarm_id, gateway, chat, busy=True)
    status, answer = await call(http, "DELETE", f"/swarms/{swarm}")
    assert status == 409
    assert "1 claimed or running task(s) (t-run)" in answer["error"]["message"]
    assert (await call(http, "GET", f"/swarms/{swarm}"))[0] == 200

    status, answer = await call(http, "DELETE", f"/swarms/{swarm}?force=1")
    assert (status, answer) == (200, {"id": swarm, "deleted": True})
    assert (await call(http, "GET", f"/swarms/{swarm}"))[0] == 404


# --- the prototype's clients ----------------------------------------------------------------------


async def test_the_prototype_clients_bodies_are_accepted(
    gateway: Gateway, chat: Chat, bus: Bus, http: aiohttp.ClientSession, swarm_id: str
) -> None:
    swarm = await seed(bus, swarm_id, gateway, chat, busy=False)
    status, agent = await call(
        http,
        "PUT",
        f"/agents/fe?swarm={swarm}",
        json={"status": "working", "currentTask": "task-1", "lastSeen": 1, "name": "Frontend"},
    )
    assert (status, agent["name"], agent["status"]) == (200, "Frontend", "idle")

    status, first = await call(
        http,
        "POST",
        f"/swarms/{swarm}/tasks",
        json={"title": "Create Button", "tags": "frontend,ui", "status": "pending"},
    )
    assert status == 201, first
    status, second = await call(
        http,
        "POST",
        f"/swarms/{swarm}/tasks",
        json={"title": "Test Button", "dependencies": [first["id"]], "swarmId": swarm},
    )
    assert (status, second["depends"]) == (201, [first["id"]])

    # the whole task sent back as read, with the prototype's fields: nothing changes
    echoed = {
        **{k: second[k] for k in ("title", "prompt", "tags", "priority", "depends")},
        "id": second["id"],
        "status": "running",
        "agent": "fe",
        "result": "",
        "createdAt": 1,
    }
    status, same = await call(http, "PUT", f"/swarms/{swarm}/tasks/{second['id']}", json=echoed)
    assert (status, same["status"]) == (200, "blocked"), same
    status, cancelled = await call(
        http, "PUT", f"/swarms/{swarm}/tasks/{second['id']}", json={"status": "cancelled"}
    )
    assert (status, cancelled["status"]) == (200, "cancelled")

    status, message = await call(
        http,
        "POST",
        f"/swarms/{swarm}/chat",
        json={"message": "Deploy at 6pm", "mention": "@backend", "from": "lead", "type": "text"},
    )
    assert status == 201, message
    assert (message["author"], message["recipients"]) == ("lead", ["be"])
