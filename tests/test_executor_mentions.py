"""Unread chat mentions go into the agent's next claude prompt, and count as read exactly when
the ``running`` event that carried them is in the log (pure selection first, then the executor
and the chat service on real NATS)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import executor_support
import pytest
from executor_support import API_KEY, StartExecutor, create_and_claim, finished, until

from schemas import events as ev
from schemas import subjects
from schemas.chat import Inbox, InboxEntry
from services.bus import chat as chat_bus
from services.bus.connection import NatsOptions
from services.bus.history import aggregate_events
from services.bus.projection import Projection
from services.bus.service import Bus
from services.chat.service import Chat
from services.executor import mentions

watch = executor_support.watch  # fixtures
start_executor = executor_support.start_executor


def entry(seq: int, text: str = "hi") -> InboxEntry:
    return InboxEntry(seq=seq, id=f"m{seq}", author="master", text=text, time=float(seq))


# --- which mentions a prompt takes (pure) ----------------------------------------------------


def test_a_prompt_takes_the_unread_entries_oldest_first_and_reads_through_the_last() -> None:
    inbox = Inbox(entries=[entry(9), entry(3), entry(5)])
    delivery = mentions.take(inbox, read_through=3)
    assert [e.seq for e in delivery.entries] == [5, 9]
    assert delivery.read_through == 9


def test_nothing_unread_takes_nothing_and_reads_nothing() -> None:
    assert mentions.take(Inbox(entries=[entry(2)]), read_through=2) == mentions.Delivery([], 0)
    assert mentions.take(Inbox(), read_through=0) == mentions.Delivery([], 0)


def test_what_does_not_fit_stays_unread_for_the_next_prompt() -> None:
    inbox = Inbox(entries=[entry(s, "x" * 10) for s in range(1, 8)])
    first = mentions.take(inbox, 0, max_entries=3)
    assert [e.seq for e in first.entries] == [1, 2, 3] and first.read_through == 3
    second = mentions.take(inbox, first.read_through, max_chars=25)
    assert [e.seq for e in second.entries] == [4, 5] and second.read_through == 5


def test_one_huge_mention_still_goes_through() -> None:
    delivery = mentions.take(Inbox(entries=[entry(4, "y" * 100)]), 0, max_chars=10)
    assert [e.seq for e in delivery.entries] == [4]


def test_only_claude_tasks_take_mentions() -> None:
    assert mentions.takes_mentions("claude")
    assert not mentions.takes_mentions("shell") and not mentions.takes_mentions("instant")


# --- on real NATS ------------------------------------------------------------------------------


@pytest.fixture
async def chat(nats_url: str) -> AsyncIterator[Chat]:
    service = Chat(nats=NatsOptions.from_env(nats_url))
    await service.start()
    yield service
    await service.stop()


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    return tmp_path / "prompts.jsonl"


def asked(prompts: Path) -> list[str]:
    """The prompts fake claude was given, in order."""
    if not prompts.exists():
        return []
    return [json.loads(line)["prompt"] for line in prompts.read_text().splitlines()]


async def mention(bus: Bus, chat: Chat, swarm: str, text: str) -> int:
    """Post through the chat service (mentions resolved there); wait until it is in the inbox."""
    assert chat.projection is not None
    board = chat.projection.board
    await until(lambda: board.agent(swarm, "qa-agent") is not None, what="chat to know qa-agent")
    reply = await bus.nc.request(
        subjects.command(swarm, "chat_post"), json.dumps({"message": text}).encode(), timeout=5
    )
    seq = json.loads(reply.data)["seq"]
    kv = await bus.kv(subjects.INBOX_BUCKET)
    deadline = time.monotonic() + 10
    while True:
        inbox, _ = await chat_bus.read_inbox(kv, swarm, "qa-agent")
        if any(e.seq == seq for e in inbox.entries):
            return seq
        assert time.monotonic() < deadline, "the mention never reached the inbox"
        await asyncio.sleep(0.02)


async def running_event(bus: Bus, swarm: str, task_id: str) -> ev.TaskRunning:
    found = [e for _, e in await aggregate_events(bus.js, swarm, "task", task_id)]
    return next(e for e in found if isinstance(e, ev.TaskRunning))


async def test_a_mention_reaches_the_next_prompt_once_even_across_an_executor_restart(
    bus: Bus,
    watch: Projection,
    swarm_id: str,
    start_executor: StartExecutor,
    chat: Chat,
    prompts: Path,
) -> None:
    env = {"ANTHROPIC_API_KEY": API_KEY, "FAKE_CLAUDE_PROMPT_LOG": str(prompts)}
    first = await start_executor(env=env)
    seq = await mention(bus, chat, swarm_id, "@qa please check the login page")
    await first.stop()
    await start_executor(env=env)

    task_id, _ = await create_and_claim(bus, watch, swarm_id, runtime="claude", title="Check")
    assert (await finished(watch, swarm_id, task_id)).status == "completed"
    [prompt] = asked(prompts)
    assert prompt.count("please check the login page") == 1
    assert prompt.startswith("Unread chat messages that mention you:\n- [master] @qa please")
    assert prompt.endswith(f"Task {task_id}: Check")
    assert (await running_event(bus, swarm_id, task_id)).inbox_read_through == seq
    assert watch.board.agent(swarm_id, "qa-agent").read_through == seq

    later = await mention(bus, chat, swarm_id, "@qa-agent and the signup page")
    task_id, _ = await create_and_claim(bus, watch, swarm_id, runtime="claude", title="Again")
    assert (await finished(watch, swarm_id, task_id)).status == "completed"
    second = asked(prompts)[1]
    assert "login page" not in second and second.count("and the signup page") == 1
    assert (await running_event(bus, swarm_id, task_id)).inbox_read_through == later

    task_id, _ = await create_and_claim(bus, watch, swarm_id, runtime="claude", title="Third")
    assert (await finished(watch, swarm_id, task_id)).status == "completed"
    assert asked(prompts)[2] == f"Task {task_id}: Third"
    assert (await running_event(bus, swarm_id, task_id)).inbox_read_through == 0
    assert watch.board.agent(swarm_id, "qa-agent").read_through == later


async def test_a_shell_task_leaves_mentions_unread_for_the_next_claude_task(
    bus: Bus,
    watch: Projection,
    swarm_id: str,
    start_executor: StartExecutor,
    chat: Chat,
    prompts: Path,
) -> None:
    await start_executor(env={"ANTHROPIC_API_KEY": API_KEY, "FAKE_CLAUDE_PROMPT_LOG": str(prompts)})
    seq = await mention(bus, chat, swarm_id, "@all stand-up in five")

    task_id, _ = await create_and_claim(bus, watch, swarm_id, prompt="echo fine")
    assert (await finished(watch, swarm_id, task_id)).status == "completed"
    assert (await running_event(bus, swarm_id, task_id)).inbox_read_through == 0
    assert watch.board.agent(swarm_id, "qa-agent").read_through == 0

    task_id, _ = await create_and_claim(bus, watch, swarm_id, runtime="claude", title="Think")
    assert (await finished(watch, swarm_id, task_id)).status == "completed"
    assert asked(prompts)[0].count("stand-up in five") == 1
    assert (await running_event(bus, swarm_id, task_id)).inbox_read_through == seq
