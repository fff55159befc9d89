"""The chat service on real NATS: posts over NATS micro, inboxes filled once, replicas and
restarts losing and repeating nothing."""

from __future__ import annotations

import asyncio
import json
import time
from functools import partial

from waiting import until as eventually

from schemas import events as ev
from schemas import subjects
from schemas.chat import ChatMessage, InboxEntry
from services.bus import chat as chat_bus
from services.bus.connection import NatsOptions
from services.bus.service import Bus
from services.bus.streams import Layout
from services.chat.service import Chat


async def seed_agents(bus: Bus, swarm: str) -> int:
    now = time.time()
    seq = await bus.events.append(ev.SwarmCreated(swarm=swarm, id=swarm, time=now, name=swarm), 0)
    for agent, role in (("fe", "frontend"), ("be", "backend"), ("qa", "qa")):
        seq = await bus.events.append(
            ev.AgentRegistered(swarm=swarm, id=agent, time=now, name=agent.upper(), role=role), 0
        )
    return seq


async def started_chat(nats_url: str, seq: int) -> Chat:
    service = Chat(nats=NatsOptions.from_env(nats_url))
    await service.start()
    await service.projection.wait_for(seq)
    return service


async def request(bus: Bus, swarm: str, verb: str, body: dict, headers=None) -> dict:
    reply = await bus.nc.request(
        subjects.command(swarm, verb), json.dumps(body).encode(), timeout=5, headers=headers
    )
    return json.loads(reply.data)


async def inbox_of(bus: Bus, swarm: str, agent: str) -> list[int]:
    kv = await bus.kv(subjects.INBOX_BUCKET)
    inbox, _ = await chat_bus.read_inbox(kv, swarm, agent)
    return [e.seq for e in inbox.entries]


async def test_post_with_role_mention_lands_in_those_inboxes_only(
    bus: Bus, nats_url: str, swarm_id: str
) -> None:
    chat = await started_chat(nats_url, await seed_agents(bus, swarm_id))
    posted = await request(bus, swarm_id, "chat_post", {"message": "Ship it @frontend"})
    assert posted["recipients"] == ["fe"] and posted["seq"] > 0
    await eventually(lambda: inbox_of(bus, swarm_id, "fe"))
    assert await inbox_of(bus, swarm_id, "fe") == [posted["seq"]]
    assert await inbox_of(bus, swarm_id, "be") == []
    history = await request(bus, swarm_id, "chat_history", {})
    assert [m["text"] for m in history["messages"]] == ["Ship it @frontend"]
    await chat.stop()


async def test_unknown_mention_is_refused_naming_it(bus: Bus, nats_url: str, swarm_id: str) -> None:
    chat = await started_chat(nats_url, await seed_agents(bus, swarm_id))
    reply = await bus.nc.request(
        subjects.command(swarm_id, "chat_post"),
        json.dumps({"message": "hi", "mentions": ["@designer"]}).encode(),
        timeout=5,
    )
    assert reply.headers is not None and reply.headers["Nats-Service-Error-Code"] == "400"
    assert "@designer" in json.loads(reply.data)["error"]["message"]
    await chat.stop()


async def test_two_replicas_deliver_each_mention_once(
    bus: Bus, nats_url: str, swarm_id: str
) -> None:
    seq = await seed_agents(bus, swarm_id)
    replicas = [await started_chat(nats_url, seq), await started_chat(nats_url, seq)]
    posted = [
        (await request(bus, swarm_id, "chat_post", {"message": f"m{i} @all"}))["seq"]
        for i in range(10)
    ]
    for agent in ("fe", "be", "qa"):
        await eventually(partial(_has_all, bus, swarm_id, agent, posted))
        assert await inbox_of(bus, swarm_id, agent) == posted
    for replica in replicas:
        await replica.stop()


async def _has_all(bus: Bus, swarm: str, agent: str, seqs: list[int]) -> bool:
    return len(await inbox_of(bus, swarm, agent)) >= len(seqs)


async def test_mentions_posted_while_chat_is_down_arrive_after_restart(
    bus: Bus, nats_url: str, swarm_id: str
) -> None:
    seq = await seed_agents(bus, swarm_id)
    chat = await started_chat(nats_url, seq)
    await chat.stop()
    # Posted straight to the stream while no chat service runs (as an executor would).
    message = ChatMessage(swarm=swarm_id, text="while down", recipients=["qa"])
    posted = await chat_bus.post(bus.js, message)
    again = await started_chat(nats_url, seq)
    await eventually(lambda: inbox_of(bus, swarm_id, "qa"))
    assert await inbox_of(bus, swarm_id, "qa") == [posted]
    await again.stop()


async def test_a_post_waits_for_the_log_position_its_caller_has_seen(
    bus: Bus, nats_url: str, swarm_id: str
) -> None:
    """The gateway folded an agent the chat service has not yet: the post carries the gateway's
    position, and the chat service catches up before resolving the mention."""
    chat = await started_chat(nats_url, await seed_agents(bus, swarm_id))
    info = await bus.js.stream_info(subjects.EVENTS_STREAM)
    next_seq = info.state.last_seq + 1
    reply = asyncio.create_task(
        bus.nc.request(
            subjects.command(swarm_id, "chat_post"),
            json.dumps({"message": "welcome @newcomer"}).encode(),
            timeout=5,
            headers={subjects.SEEN_HEADER: str(next_seq)},
        )
    )
    await bus.nc.flush()  # the request is out before the agent exists
    registered = ev.AgentRegistered(
        swarm=swarm_id, id="newcomer", time=time.time(), name="Newcomer", role="docs"
    )
    assert await bus.events.append(registered, 0) == next_seq
    answer = json.loads((await reply).data)
    assert answer.get("recipients") == ["newcomer"], answer
    await chat.stop()


async def test_on_a_cluster_mentions_racing_into_a_new_inbox_all_land_at_once(
    nats_cluster,
) -> None:
    """Two replicas of chat (or one message mentioning an agent twice over) may create an
    agent's inbox at the same moment. On a cluster the loser's create is refused while the
    winner's is in flight, and nats-py then looks the key up before it is applied
    (``KeyNotFoundError``): that is "read again", not NATS away. Before, such a delivery failed
    and its mention waited for the message's redelivery."""
    bus = await Bus.connect(
        NatsOptions.from_env(",".join(node.url for node in nats_cluster)), name="inboxes"
    )
    try:
        await bus.provision(Layout(replicas=3))
        kv = await bus.kv(subjects.INBOX_BUCKET)
        for agent in range(10):
            entries = [
                InboxEntry(seq=n, id=f"m-{agent}-{n}", author="lead", text="@qa look", time=1.0)
                for n in range(1, 9)
            ]
            delivered = await asyncio.gather(
                *(chat_bus.deliver(kv, "race", f"agent-{agent}", entry) for entry in entries)
            )
            assert delivered == [True] * 8
            assert sorted(await inbox_of(bus, "race", f"agent-{agent}")) == list(range(1, 9))
    finally:
        await bus.close()
