"""The gateway's commands over plain NATS requests (what ``nats req`` sends): the same handlers
as HTTP, JSON in and out, discoverable as the micro service ``swarm-gateway``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from gateway_support import gateway_on, running

from services.bus.service import Bus
from services.gateway.micro import NEXT_HEADER
from services.gateway.service import Gateway


@pytest.fixture(scope="module")
async def gateway(nats_url: str) -> AsyncIterator[Gateway]:
    async with running(gateway_on(nats_url, "t0ken-xyz")) as started:
        yield started


async def ask(
    bus: Bus, subject: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[str | None, Any]:
    """A request like ``nats req <subject> '<json>'``: (error code or None, decoded body)."""
    payload = b"" if body is None else json.dumps(body).encode()
    reply = await bus.nc.request(subject, payload, timeout=5, headers=headers)
    code = (reply.headers or {}).get("Nats-Service-Error-Code")
    return code, json.loads(reply.data)


@pytest.fixture
async def swarm(gateway: Gateway, bus: Bus, swarm_id: str) -> str:
    code, answer = await ask(bus, f"swarm.cmd.{swarm_id}.create_swarm", {"name": "ops"})
    assert code is None, answer
    return swarm_id


async def test_a_plain_nats_request_creates_a_task_and_status_counts_it(
    bus: Bus, swarm: str
) -> None:
    code, task = await ask(bus, f"swarm.cmd.{swarm}.create_task", {"title": "from nats"})
    assert code is None
    assert (task["title"], task["status"]) == ("from nats", "pending")
    code, status = await ask(bus, f"swarm.cmd.{swarm}.status")
    assert code is None
    assert status["swarm"]["name"] == "ops"
    assert (status["tasks"]["pending"], status["tasks"]["total"]) == (1, 1)
    code, detail = await ask(bus, f"swarm.cmd.{swarm}.get_task", {"task": task["id"]})
    assert [e["type"] for e in detail["events"]] == ["task.created"]


async def test_task_lifecycle_commands_answer_like_http(bus: Bus, swarm: str) -> None:
    code, first = await ask(bus, f"swarm.cmd.{swarm}.create_task", {"title": "a"})
    code, second = await ask(
        bus, f"swarm.cmd.{swarm}.create_task", {"title": "b", "depends": [first["id"]]}
    )
    code, answer = await ask(
        bus, f"swarm.cmd.{swarm}.update_task", {"task": first["id"], "depends": [second["id"]]}
    )
    assert code == "400"
    assert answer["error"]["field"] == "depends"
    code, updated = await ask(
        bus, f"swarm.cmd.{swarm}.update_task", {"task": second["id"], "priority": "high"}
    )
    assert (code, updated["priority"]) == (None, "high")
    code, cancelled = await ask(bus, f"swarm.cmd.{swarm}.cancel_task", {"task": first["id"]})
    assert (code, cancelled["status"]) == (None, "cancelled")
    code, deleted = await ask(bus, f"swarm.cmd.{swarm}.delete_task", {"task": first["id"]})
    assert (code, deleted) == (None, {"id": first["id"], "deleted": True})
    code, tasks = await ask(bus, f"swarm.cmd.{swarm}.list_tasks")
    assert [t["id"] for t in tasks] == [second["id"]]


async def test_list_tasks_pages_with_limit_and_after_the_next_cursor_in_a_header(
    bus: Bus, swarm: str
) -> None:
    made = []
    for i in range(7):
        code, task = await ask(bus, f"swarm.cmd.{swarm}.create_task", {"title": f"t{i}"})
        assert code is None, task
        made.append(task["id"])
    subject = f"swarm.cmd.{swarm}.list_tasks"
    reply = await bus.nc.request(subject, b"{}", timeout=5)  # as before: every task, no header
    assert [t["id"] for t in json.loads(reply.data)] == made
    assert NEXT_HEADER not in (reply.headers or {})
    walked: list[str] = []
    body: dict[str, Any] = {"limit": 3}
    while True:
        reply = await bus.nc.request(subject, json.dumps(body).encode(), timeout=5)
        assert "Nats-Service-Error-Code" not in (reply.headers or {}), reply.data
        walked += [t["id"] for t in json.loads(reply.data)]
        following = (reply.headers or {}).get(NEXT_HEADER)
        if following is None:
            break
        assert following == walked[-1]
        body = {"limit": 3, "after": following}
    assert walked == made  # 3 + 3 + 1: none missed or repeated
    code, newest = await ask(bus, subject, {"order": "newest", "limit": 2, "after": made[4]})
    assert code is None and [t["id"] for t in newest] == [made[3], made[2]]
    code, board = await ask(bus, f"swarm.cmd.{swarm}.board", {"at": 10**6, "per_status": 3})
    assert code is None and [t["id"] for t in board["tasks"]] == made[:3]
    assert board["more"] == {"pending": 4}


async def test_errors_carry_the_status_code_and_the_field(bus: Bus, swarm: str) -> None:
    code, answer = await ask(bus, "swarm.cmd.no-such-swarm.create_task", {"title": "x"})
    assert (code, answer["error"]["code"]) == ("404", "not_found")
    code, answer = await ask(bus, f"swarm.cmd.{swarm}.create_task", {"title": "x", "priority": 9})
    assert (code, answer["error"]["field"]) == ("400", "priority")
    reply = await bus.nc.request(f"swarm.cmd.{swarm}.create_task", b"{oops", timeout=5)
    assert reply.headers is not None and reply.headers["Nats-Service-Error-Code"] == "400"
    code, answer = await ask(bus, f"swarm.cmd.{swarm}.get_task", {})
    assert (code, answer["error"]["field"]) == ("400", "task")


async def test_idempotency_key_header_makes_a_retried_request_one_task(
    bus: Bus, swarm: str
) -> None:
    headers = {"Idempotency-Key": "nats-retry"}
    subject = f"swarm.cmd.{swarm}.create_task"
    _, first = await ask(bus, subject, {"title": "once"}, headers)
    _, second = await ask(bus, subject, {"title": "once"}, headers)
    assert first["id"] == second["id"]
    _, tasks = await ask(bus, f"swarm.cmd.{swarm}.list_tasks")
    assert len(tasks) == 1


async def test_swarm_level_commands_use_the_reserved_token(
    gateway: Gateway, bus: Bus, swarm_id: str
) -> None:
    code, created = await ask(bus, "swarm.cmd._.create_swarm", {"id": swarm_id, "name": "x"})
    assert (code, created["id"]) == (None, swarm_id)
    code, swarms = await ask(bus, "swarm.cmd._.list_swarms")
    assert swarm_id in [s["id"] for s in swarms]
    sandbox = f"sb-{swarm_id}"
    code, agent = await ask(
        bus,
        f"swarm.cmd.{swarm_id}.register_agent",
        {"name": "QA Agent", "skills": "qa,test", "sandboxId": sandbox},
    )
    assert (code, agent["id"], agent["executor"]) == (None, "qa-agent", None)
    code, updated = await ask(bus, "swarm.cmd._.update_agent", {"agent": sandbox, "role": "qa"})
    assert (code, updated["id"], updated["role"]) == (None, "qa-agent", "qa")
    code, answer = await ask(bus, "swarm.cmd._.status")
    assert (code, answer["error"]["field"]) == ("400", "swarm")


async def test_the_gateway_is_listed_as_a_micro_service_with_its_endpoints(
    gateway: Gateway, bus: Bus
) -> None:
    reply = await bus.nc.request("$SRV.INFO.swarm-gateway", b"", timeout=5)
    info = json.loads(reply.data)
    assert info["name"] == "swarm-gateway"
    subjects = {e["subject"] for e in info["endpoints"]}
    assert {"swarm.cmd.*.create_task", "swarm.cmd.*.status", "swarm.cmd.*.list_swarms"} <= subjects
    assert {e["queue_group"] for e in info["endpoints"]} == {"q"}
