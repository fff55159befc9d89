"""Bad input never reaches a 5xx, over HTTP or NATS: deeply nested JSON, an integer literal of
thousands of digits, a log position at or past 2^64, a ``Last-Event-ID`` that only looks like a
number (``²``), and values of the wrong kind are each a 400 naming the field, on every route and
every command endpoint (found by discovering them, so a new one is covered too)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from gateway_support import call, gateway_on, running

from services.bus.connection import NatsOptions
from services.bus.service import Bus
from services.chat.service import Chat
from services.gateway.routes import ROUTES
from services.gateway.service import Gateway

TOKEN = "bad-input-token-123456"
NESTED = b"[" * 100_000  # RecursionError in a recursive parser
HUGE = b'{"title": ' + b"9" * 5000 + b"}"  # ValueError past Python's 4,300-digit limit
BEYOND = str(2**64)  # past JetStream's sequences


@pytest.fixture(scope="module")
async def gateway(nats_url: str) -> AsyncIterator[Gateway]:
    async with running(gateway_on(nats_url, TOKEN)) as started:
        yield started


@pytest.fixture(scope="module")
async def chat(nats_url: str) -> AsyncIterator[Chat]:
    async with running(Chat(nats=NatsOptions.from_env(nats_url))) as started:
        yield started


@pytest.fixture
async def http(gateway: Gateway, chat: Chat) -> AsyncIterator[aiohttp.ClientSession]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(base_url=gateway.url, headers=headers) as session:
        yield session


@pytest.fixture
async def ids(http: aiohttp.ClientSession, swarm_id: str) -> dict[str, str]:
    """A swarm with a task, an agent and a project: every path parameter names something."""
    for path, body in (
        ("/swarms", {"id": swarm_id}),
        (f"/swarms/{swarm_id}/tasks", {"id": "t-1", "title": "t"}),
        (f"/swarms/{swarm_id}/agents", {"id": "a-1", "name": "A"}),
        ("/projects", {"id": "p-1", "name": "p", "git_url": "/tmp/p", "swarm": swarm_id}),
    ):
        status, answer = await call(http, "POST", path, json=body)
        assert status == 201, answer
    return {"swarm": swarm_id, "task": "t-1", "project": "p-1", "sandbox": "a-1"}


def filled(path: str, ids: dict[str, str]) -> str:
    return re.sub(r"{(\w+)}", lambda m: ids[m.group(1)], path)


async def send(
    http: aiohttp.ClientSession, method: str, path: str, **kwargs: Any
) -> tuple[int, Any]:
    async with http.request(method, path, **kwargs) as response:
        text = await response.text()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text


@pytest.mark.parametrize("payload", [NESTED, HUGE], ids=["nested", "huge-integer"])
async def test_every_route_with_a_body_answers_400_naming_the_body(
    http: aiohttp.ClientSession, ids: dict[str, str], payload: bytes
) -> None:
    routes = [r for r in ROUTES if r.body is not None]
    assert len(routes) >= 8

    for route in routes:
        status, answer = await send(
            http,
            route.method,
            filled(route.path, ids),
            data=payload,
            headers={"Content-Type": "application/json"},
        )
        assert status == 400, (route.name, status, answer)
        assert answer["error"]["field"] == "body", (route.name, answer)


async def test_lists_holding_objects_are_400_naming_the_field(
    http: aiohttp.ClientSession, ids: dict[str, str]
) -> None:
    swarm = ids["swarm"]
    for field, value in (("tags", [{}]), ("depends", [[1]]), ("title", {"a": 1})):
        status, answer = await send(
            http, "POST", f"/swarms/{swarm}/tasks", json={"title": "x", field: value}
        )
        assert (status, answer["error"]["field"].split("[")[0]) == (400, field), answer
    status, answer = await send(
        http, "POST", f"/swarms/{swarm}/agents", json={"name": "B", "skills": [{}]}
    )
    assert (status, answer["error"]["field"].split("[")[0]) == (400, "skills"), answer


@pytest.mark.parametrize(
    ("query", "field"),
    [
        (f"since={BEYOND}", "since"),
        ("since=-1", "since"),
        ("since=%C2%B2", "since"),  # ²
        ("since=" + "9" * 5000, "since"),
        ("since=1_000", "since"),
    ],
)
async def test_positions_out_of_range_or_not_numbers_are_400_on_every_stream_and_history(
    http: aiohttp.ClientSession, ids: dict[str, str], query: str, field: str
) -> None:
    paths = [filled(r.path, ids) for r in ROUTES if any(q.name == "since" for q in r.query)]
    assert len(paths) == 4  # events, a task's logs, chat history, the chat stream

    for path in paths:
        status, answer = await send(http, "GET", f"{path}?{query}")
        assert (status, answer["error"]["field"]) == (400, field), (path, answer)


@pytest.mark.parametrize("last", ["²", BEYOND, "12abc", "-3"])
async def test_a_last_event_id_that_is_not_a_log_position_is_400_naming_it(
    http: aiohttp.ClientSession, ids: dict[str, str], last: str
) -> None:
    streams = [filled(r.path, ids) for r in ROUTES if r.stream]
    assert len(streams) == 4  # the board, events, a task's logs, the chat stream

    for path in streams:
        status, answer = await send(http, "GET", path, headers={"Last-Event-ID": last})
        assert (status, answer["error"]["field"]) == (400, "Last-Event-ID"), (path, answer)


async def test_a_good_last_event_id_resumes_the_stream_after_it(
    http: aiohttp.ClientSession, ids: dict[str, str]
) -> None:
    swarm = ids["swarm"]
    status, events = await send(http, "GET", f"/swarms/{swarm}/events?follow=0")
    positions = [int(x) for x in re.findall(r"^id: (\d+)$", events, re.M)]
    assert status == 200 and len(positions) >= 3

    status, rest = await send(
        http,
        "GET",
        f"/swarms/{swarm}/events?follow=0",
        headers={"Last-Event-ID": str(positions[0])},
    )
    assert [int(x) for x in re.findall(r"^id: (\d+)$", rest, re.M)] == positions[1:]


@pytest.mark.parametrize(
    ("path", "query", "field"),
    [
        ("/swarms/{swarm}/tasks/{task}/output", "attempt=0", "attempt"),
        ("/swarms/{swarm}/tasks/{task}/output", f"attempt={BEYOND}", "attempt"),
        ("/swarms/{swarm}/chat", "limit=0", "limit"),
        ("/swarms/{swarm}/chat", "limit=1001", "limit"),
        ("/swarms/{swarm}/events", "follow=maybe", "follow"),
        ("/swarms/{swarm}/events", "task=a.b", "task"),
        ("/swarms/{swarm}/tasks", "status=done", "status"),
        ("/swarms/{swarm}/board", "at=yesterday", "at"),
        ("/swarms/{swarm}/board", "at=1&per_status=0", "per_status"),
        ("/swarms/{swarm}/board", "at=1&per_status=1001", "per_status"),
        ("/swarms/{swarm}/board/stream", "per_status=many", "per_status"),
        ("/swarms/{swarm}/tasks", "order=sideways", "order"),
        ("/swarms/{swarm}/tasks", "order=priority", "order"),
        ("/swarms/{swarm}/tasks", "order=priority&status=completed", "order"),
    ],
)
async def test_each_query_parameter_out_of_its_range_is_400_naming_it(
    http: aiohttp.ClientSession, ids: dict[str, str], path: str, query: str, field: str
) -> None:
    status, answer = await send(http, "GET", f"{filled(path, ids)}?{query}")

    assert (status, answer["error"]["field"]) == (400, field), answer


async def test_a_method_a_path_lacks_is_405_with_the_methods_it_has(
    http: aiohttp.ClientSession, ids: dict[str, str]
) -> None:
    status, answer = await send(http, "PATCH", f"/swarms/{ids['swarm']}/tasks/t-1")
    async with http.request("PATCH", f"/swarms/{ids['swarm']}/tasks/t-1") as response:
        allow = response.headers.get("Allow", "")

    assert (status, answer["error"]["code"]) == (405, "method_not_allowed")
    assert {m.strip() for m in allow.split(",")} == {"GET", "PUT", "DELETE"}


# --- the same over NATS ------------------------------------------------------------------------


async def endpoints(bus: Bus, service: str) -> list[str]:
    """The verbs a micro service answers (``nats service info``)."""
    reply = await bus.nc.request(f"$SRV.INFO.{service}", b"", timeout=5)
    return [e["subject"].rsplit(".", 1)[1] for e in json.loads(reply.data)["endpoints"]]


async def request(bus: Bus, subject: str, payload: bytes) -> tuple[str | None, Any]:
    reply = await bus.nc.request(subject, payload, timeout=10)
    return (reply.headers or {}).get("Nats-Service-Error-Code"), json.loads(reply.data)


@pytest.mark.parametrize("payload", [NESTED, HUGE], ids=["nested", "huge-integer"])
async def test_every_command_endpoint_answers_400_naming_the_body(
    bus: Bus, ids: dict[str, str], payload: bytes
) -> None:
    verbs = await endpoints(bus, "swarm-gateway") + await endpoints(bus, "swarm-chat")
    assert {"create_task", "update_task", "chat_post", "chat_history"} <= set(verbs)

    for verb in verbs:
        code, answer = await request(bus, f"swarm.cmd.{ids['swarm']}.{verb}", payload)
        assert (code, answer["error"]["field"]) == ("400", "body"), (verb, answer)


@pytest.mark.parametrize(
    ("verb", "body", "field"),
    [
        ("chat_history", {"since": 2**64}, "since"),
        ("chat_history", {"since": "²"}, "since"),
        ("chat_history", {"limit": True}, "limit"),
        ("task_output", {"task": "t-1", "attempt": "²"}, "attempt"),
        ("task_output", {"task": "t-1", "attempt": 2**64}, "attempt"),
        ("list_tasks", {"status": ["pending"]}, "status"),
        ("list_tasks", {"limit": 0}, "limit"),
        ("list_tasks", {"limit": "many"}, "limit"),
        ("list_tasks", {"limit": 1001}, "limit"),
        ("list_tasks", {"limit": True}, "limit"),
        ("list_tasks", {"limit": 5, "after": 7}, "after"),
        ("list_tasks", {"limit": 5, "after": "t-nowhere"}, "after"),
        ("board", {"at": ["1"]}, "at"),
        ("board", {"at": 1, "per_status": 0}, "per_status"),
        ("list_tasks", {"order": "priority", "status": "failed"}, "order"),
        ("list_tasks", {"order": 1}, "order"),
        ("sync_project", {"wait": "yes"}, "wait"),
    ],
)
async def test_command_fields_of_the_wrong_kind_are_400_naming_them(
    bus: Bus, ids: dict[str, str], verb: str, body: dict[str, Any], field: str
) -> None:
    code, answer = await request(bus, f"swarm.cmd.{ids['swarm']}.{verb}", json.dumps(body).encode())

    assert (code, answer["error"]["field"]) == ("400", field), answer


async def test_a_seen_position_that_is_not_one_is_400_naming_the_header(
    bus: Bus, ids: dict[str, str]
) -> None:
    for verb, body in (("status", b""), ("chat_post", b'{"message": "hi"}')):
        reply = await bus.nc.request(
            f"swarm.cmd.{ids['swarm']}.{verb}",
            body,
            timeout=10,
            headers={"Swarm-Seen-Seq": "\u00b2"},
        )
        code = (reply.headers or {}).get("Nats-Service-Error-Code")
        answer = json.loads(reply.data)
        assert (code, answer["error"]["field"]) == ("400", "Swarm-Seen-Seq"), (verb, answer)
