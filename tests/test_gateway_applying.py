"""A write that landed is never answered as a failure. When the gateway's fold has not applied a
write within the read-your-writes wait (it lags, as it did while a NATS node was lost), the
answer is 202 with the id, the log position and a ``Location`` (over NATS: a reply with the same
body and ``Swarm-Status: 202``), so a client that did not choose the id learns it instead of
creating the task again.

The lag is real: the gateway's own projection is held on an earlier event (a listener that
waits, on the real consumer of the real stream), so the new event sits undelivered behind it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from gateway_support import call, gateway_on, running
from waiting import until

from schemas import events as ev
from schemas import subjects
from schemas.board import Board
from services.bus.service import Bus
from services.gateway.service import Gateway

TOKEN = "applying-token-123456"


class Hold:
    """Holds the gateway's fold on the next event naming ``blocker`` until released."""

    def __init__(self, gateway: Gateway, blocker: str) -> None:
        self.blocker = blocker
        self.released = asyncio.Event()
        self.holding = asyncio.Event()
        assert gateway.projection is not None
        gateway.projection.listen(self.on_event)

    async def on_event(self, seq: int, event: ev.Event, board: Board) -> None:
        if event.id == self.blocker and not self.released.is_set():
            self.holding.set()
            await self.released.wait()


@pytest.fixture
async def gateway(nats_url: str) -> AsyncIterator[Gateway]:
    async with running(gateway_on(nats_url, TOKEN)) as started:
        assert started.commands is not None
        started.commands.read_your_writes = 0.5  # seconds; the default is 5
        yield started


@pytest.fixture
async def http(gateway: Gateway) -> AsyncIterator[aiohttp.ClientSession]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(base_url=gateway.url, headers=headers) as session:
        yield session


@pytest.fixture
async def held(
    gateway: Gateway, http: aiohttp.ClientSession, bus: Bus, swarm_id: str
) -> AsyncIterator[Hold]:
    """The swarm ``swarm_id``, then an event the gateway's fold stops on: yields once the fold
    is stuck there (released at the latest when the test ends)."""
    status, _ = await call(http, "POST", "/swarms", json={"id": swarm_id})
    assert status == 201
    hold = Hold(gateway, f"blocker-{swarm_id}")
    await bus.events.append(
        ev.AgentRegistered(swarm=swarm_id, id=hold.blocker, time=time.time(), name="blocker")
    )
    await asyncio.wait_for(hold.holding.wait(), 10)
    yield hold
    hold.released.set()


async def test_a_create_the_fold_has_not_applied_is_202_with_its_id_and_lands_once(
    gateway: Gateway, http: aiohttp.ClientSession, bus: Bus, swarm_id: str, held: Hold
) -> None:

    async with http.post(f"/swarms/{swarm_id}/tasks", json={"title": "while lagging"}) as answer:
        status, body, location = answer.status, await answer.json(), answer.headers["Location"]

    assert status == 202, body
    task_id = body["id"]
    assert location == body["location"] == f"/swarms/{swarm_id}/tasks/{task_id}"
    assert (body["swarm"], body["kind"], body["applying"]) == (swarm_id, "task", True)
    stored = await bus.js.get_msg(subjects.EVENTS_STREAM, body["seq"])
    assert stored.subject == subjects.event(swarm_id, "task", task_id, "created")  # it landed
    assert gateway.commands is not None
    assert gateway.commands.board.task(swarm_id, task_id) is None  # not applied yet

    held.released.set()

    async def readable() -> dict[str, Any] | None:
        status, task = await call(http, "GET", location)
        return task if status == 200 else None

    task = await until(readable, 10, "the task readable at its Location")
    assert (task["title"], task["status"]) == ("while lagging", "pending")
    status, tasks = await call(http, "GET", f"/swarms/{swarm_id}/tasks")
    assert [t["title"] for t in tasks] == ["while lagging"]  # once


async def test_over_nats_the_reply_carries_the_id_and_a_retry_with_the_key_finds_it(
    http: aiohttp.ClientSession, bus: Bus, swarm_id: str, held: Hold
) -> None:
    subject = f"swarm.cmd.{swarm_id}.create_task"
    headers = {"Idempotency-Key": "lagging-1"}

    reply = await bus.nc.request(subject, b'{"title": "over nats"}', timeout=10, headers=headers)

    answered = reply.headers or {}
    assert "Nats-Service-Error-Code" not in answered  # an answer, not an error
    body = json.loads(reply.data)
    assert answered["Swarm-Status"] == "202"
    assert answered["Location"] == f"/swarms/{swarm_id}/tasks/{body['id']}"
    assert body["applying"] is True
    held.released.set()

    retried = await bus.nc.request(subject, b'{"title": "over nats"}', timeout=10, headers=headers)

    again = json.loads(retried.data)
    assert "Swarm-Status" not in (retried.headers or {})
    assert (again["id"], again["title"]) == (body["id"], "over nats")
    status, tasks = await call(http, "GET", f"/swarms/{swarm_id}/tasks")
    assert (status, [t["id"] for t in tasks]) == (200, [body["id"]])
