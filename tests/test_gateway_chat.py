"""Chat through the gateway on real NATS, with the real chat service behind it: posts with
mentions, history paging, the live stream, per-agent tokens that can post only as their agent,
and 503 when no chat service answers."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jsonschema
import pytest
from gateway_support import call, gateway_on, running, sse_events

from schemas import events as ev
from schemas.agent_tokens import make_agent_token
from services.bus.connection import NatsOptions
from services.bus.embedded import free_port
from services.bus.service import Bus
from services.chat.service import Chat
from services.gateway.service import Gateway

TOKEN = "chat-test-token-5678"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
AGENTS = (("fe", "Frontend Agent", "frontend"), ("be", "Backend Agent", "backend"))


@pytest.fixture(scope="module")
async def gateway(nats_url: str) -> AsyncIterator[Gateway]:
    async with running(gateway_on(nats_url, TOKEN)) as started:
        yield started


@pytest.fixture(scope="module")
async def chat(nats_url: str) -> AsyncIterator[Chat]:
    async with running(Chat(nats=NatsOptions.from_env(nats_url))) as started:
        yield started


@pytest.fixture
async def http(gateway: Gateway) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=gateway.url, headers=AUTH) as session:
        yield session


async def seed(bus: Bus, swarm: str, *services: Gateway | Chat) -> str:
    """A swarm with a frontend and a backend agent, folded in by ``services``."""
    now = time.time()
    seq = await bus.events.append(ev.SwarmCreated(swarm=swarm, id=swarm, time=now, name=swarm), 0)
    for agent, name, role in AGENTS:
        seq = await bus.events.append(
            ev.AgentRegistered(
                swarm=swarm, id=agent, time=now, name=name, role=role, executor="local"
            ),
            0,
        )
    for service in services:
        await service.projection.wait_for(seq)
    return swarm


@pytest.fixture
async def swarm(bus: Bus, gateway: Gateway, chat: Chat, swarm_id: str) -> str:
    return await seed(bus, swarm_id, gateway, chat)


async def post(http: aiohttp.ClientSession, swarm: str, **body: Any) -> dict[str, Any]:
    status, message = await call(http, "POST", f"/swarms/{swarm}/chat", json=body)
    assert status == 201, message
    return message


# --- posting and reading ----------------------------------------------------------------------


async def test_post_with_a_role_mention_reaches_that_role_and_shows_in_history_and_status(
    http: aiohttp.ClientSession, swarm: str
) -> None:
    message = await post(http, swarm, message="Ship the button @frontend", mentions="@be")
    assert (message["author"], message["text"]) == ("master", "Ship the button @frontend")
    assert message["mentions"] == ["frontend", "be"]
    assert message["recipients"] == ["be", "fe"]
    assert message["seq"] > 0

    status, history = await call(http, "GET", f"/swarms/{swarm}/chat")
    assert status == 200
    assert [(m["seq"], m["text"]) for m in history["messages"]] == [
        (message["seq"], "Ship the button @frontend")
    ]
    status, board = await call(http, "GET", f"/swarms/{swarm}/status")
    assert status == 200
    assert [m["seq"] for m in board["chat"]] == [message["seq"]]


async def test_a_retried_post_with_the_same_idempotency_key_is_one_message(
    http: aiohttp.ClientSession, swarm: str
) -> None:
    once = {"Idempotency-Key": "say-it-once"}
    first = await call(http, "POST", f"/swarms/{swarm}/chat", json={"message": "hi"}, headers=once)
    again = await call(http, "POST", f"/swarms/{swarm}/chat", json={"message": "hi"}, headers=once)
    assert first[0] == again[0] == 201
    assert first[1]["seq"] == again[1]["seq"]
    status, history = await call(http, "GET", f"/swarms/{swarm}/chat")
    assert (status, len(history["messages"])) == (200, 1)


async def test_an_unknown_mention_is_a_400_naming_it(
    http: aiohttp.ClientSession, swarm: str
) -> None:
    for body in ({"message": "hi", "mentions": ["@designer"]}, {"message": "hi @designer"}):
        status, answer = await call(http, "POST", f"/swarms/{swarm}/chat", json=body)
        assert status == 400, answer
        assert answer["error"]["field"] == "mentions"
        assert "@designer" in answer["error"]["message"]
    status, history = await call(http, "GET", f"/swarms/{swarm}/chat")
    assert (status, history["messages"]) == (200, [])


async def test_bad_bodies_and_unknown_swarms_are_refused_before_reaching_chat(
    http: aiohttp.ClientSession, swarm: str
) -> None:
    status, answer = await call(http, "POST", f"/swarms/{swarm}/chat", json={"mesage": "typo"})
    assert (status, answer["error"]["field"]) == (400, "message")
    status, answer = await call(http, "POST", f"/swarms/{swarm}/chat", json={"message": ""})
    assert (status, answer["error"]["field"]) == (400, "message")
    status, answer = await call(http, "GET", f"/swarms/{swarm}/chat?limit=0")
    assert (status, answer["error"]["field"]) == (400, "limit")
    status, _ = await call(http, "POST", "/swarms/no-such-swarm/chat", json={"message": "hi"})
    assert status == 404


async def test_history_pages_with_since_and_limit(http: aiohttp.ClientSession, swarm: str) -> None:
    posted = [await post(http, swarm, message=f"m{i}") for i in range(5)]
    seqs = [m["seq"] for m in posted]

    async def page(query: str) -> list[str]:
        status, history = await call(http, "GET", f"/swarms/{swarm}/chat?{query}")
        assert status == 200, history
        return [m["text"] for m in history["messages"]]

    assert await page("") == ["m0", "m1", "m2", "m3", "m4"]
    assert await page("limit=2") == ["m3", "m4"]  # the newest two, oldest first
    assert await page(f"since={seqs[2]}") == ["m3", "m4"]
    assert await page(f"since={seqs[1]}&limit=1") == ["m4"]
    assert await page(f"since={seqs[4]}") == []


async def test_the_stream_replays_after_since_then_delivers_a_new_message_live(
    http: aiohttp.ClientSession, swarm: str
) -> None:
    first = await post(http, swarm, message="before")
    async with http.get(f"/swarms/{swarm}/chat/stream?since={first['seq'] - 1}") as stream:
        assert stream.status == 200
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        replayed = await sse_events(stream, lambda e: e.get("event") == "message")
        assert json.loads(replayed[-1]["data"])["text"] == "before"
        assert replayed[-1]["id"] == str(first["seq"])

        second = await post(http, swarm, message="live one")
        live = await sse_events(stream, lambda e: e.get("event") == "message")
        data = json.loads(live[-1]["data"])
        assert (data["text"], data["seq"], live[-1]["id"]) == (
            "live one",
            second["seq"],
            str(second["seq"]),
        )


# --- per-agent tokens -------------------------------------------------------------------------


async def test_an_agent_token_posts_as_its_agent_reads_its_swarm_and_changes_nothing_else(
    gateway: Gateway, http: aiohttp.ClientSession, swarm: str
) -> None:
    as_fe = {"Authorization": f"Bearer {make_agent_token(TOKEN, swarm, 'fe')}"}
    async with aiohttp.ClientSession(base_url=gateway.url, headers=as_fe) as agent:
        status, message = await call(
            agent,
            "POST",
            f"/swarms/{swarm}/chat",
            json={"message": "API is ready @backend", "author": "master"},
        )
        assert status == 201, message
        assert (message["author"], message["author_kind"]) == ("fe", "agent")
        assert message["recipients"] == ["be"]

        # idle, it has no run to make a follow-up of
        status, answer = await call(agent, "POST", f"/swarms/{swarm}/tasks", json={"title": "x"})
        assert (status, answer["error"]["code"]) == (403, "forbidden")
        assert "only while it runs a task" in answer["error"]["message"]
        for path in (f"/swarms/{swarm}/chat", f"/swarms/{swarm}/status", f"/swarms/{swarm}/tasks"):
            status, _ = await call(agent, "GET", path)
            assert status == 200, path
        for method, path in (
            ("POST", "/projects"),
            ("GET", "/swarms"),
            ("DELETE", f"/swarms/{swarm}"),
            ("POST", f"/swarms/{swarm}/agents"),
            ("GET", "/no-such-route"),
        ):
            status, _ = await call(agent, method, path)
            assert status == 403, path
    status, tasks = await call(http, "GET", f"/swarms/{swarm}/tasks")
    assert (status, tasks) == (200, [])
    status, view = await call(http, "GET", f"/swarms/{swarm}")
    assert status == 200 and view["id"] == swarm


async def test_an_agent_token_is_refused_in_another_swarm_forged_or_for_an_unknown_agent(
    gateway: Gateway, bus: Bus, chat: Chat, swarm: str, swarm_id: str
) -> None:
    other = await seed(bus, f"{swarm_id}-other", gateway, chat)
    cases = [
        (make_agent_token(TOKEN, other, "fe"), 403),  # valid, but for another swarm
        (make_agent_token("not-the-api-token", swarm, "fe"), 401),  # forged
        (make_agent_token(TOKEN, swarm, "ghost"), 403),  # no such agent in the swarm
    ]
    for token, expected in cases:
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(base_url=gateway.url, headers=headers) as agent:
            status, answer = await call(
                agent, "POST", f"/swarms/{swarm}/chat", json={"message": "x"}
            )
        assert status == expected, answer


# --- the chat service away --------------------------------------------------------------------


async def test_without_a_chat_service_chat_answers_503_and_status_still_answers(
    nats_factory, swarm_id: str
) -> None:
    server = nats_factory()
    gateway = Gateway(nats=NatsOptions.from_env(server.url), port=free_port(), token=TOKEN)
    await gateway.start()
    try:
        async with aiohttp.ClientSession(base_url=gateway.url, headers=AUTH) as http:
            status, _ = await call(http, "POST", "/swarms", json={"id": swarm_id})
            assert status == 201
            status, answer = await call(
                http, "POST", f"/swarms/{swarm_id}/chat", json={"message": "anyone?"}
            )
            assert (status, answer["error"]["code"]) == (503, "unavailable")
            status, answer = await call(http, "GET", f"/swarms/{swarm_id}/chat")
            assert status == 503
            status, board = await call(http, "GET", f"/swarms/{swarm_id}/status")
            assert (status, board["chat"]) == (200, [])
    finally:
        await gateway.stop()


async def test_openapi_describes_the_chat_routes_and_real_answers_match(
    http: aiohttp.ClientSession, swarm: str
) -> None:
    status, document = await call(http, "GET", "/openapi.json")
    assert status == 200
    paths = document["paths"]
    assert {"get", "post"} <= set(paths["/swarms/{swarm}/chat"])
    assert "get" in paths["/swarms/{swarm}/chat/stream"]
    assert "403" in paths["/swarms/{swarm}/chat"]["post"]["responses"]
    message = await post(http, swarm, message="documented @all")
    status, history = await call(http, "GET", f"/swarms/{swarm}/chat")
    status, board = await call(http, "GET", f"/swarms/{swarm}/status")
    for model, value in (("ChatMessage", message), ("ChatHistory", history), ("Status", board)):
        schema = {"$ref": f"#/components/schemas/{model}", "components": document["components"]}
        jsonschema.validate(value, schema)
    assert board["chat"] == [message]
