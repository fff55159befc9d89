"""Chat on NATS: posting to ``SWARM_CHAT``, reading history, and the per-agent inboxes
(``swarm_inbox`` bucket, key ``<swarm>.<agent>``, updated with compare-and-set)."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from schemas import subjects
from schemas.chat import ChatMessage, Inbox, InboxEntry, add_to_inbox
from services.bus.compare_and_set import compare_and_set
from services.bus.history import Feed, reachable
from services.bus.publish import publish_acked

_decode_message = msgspec.json.Decoder(ChatMessage).decode
_decode_inbox = msgspec.json.Decoder(Inbox).decode


async def post(
    js: JetStreamContext,
    message: ChatMessage,
    msg_id: str | None = None,
    *,
    retry_for: float = 0.0,
) -> int:
    """Publish ``message``; returns its stream sequence (the original one for a duplicate)."""
    with reachable("posting to chat"):
        ack = await publish_acked(
            js,
            subjects.chat(message.swarm, message.channel),
            msgspec.json.encode(message),
            stream=subjects.CHAT_STREAM,
            headers={"Nats-Msg-Id": msg_id or f"{message.swarm}:{message.id}"},
            retry_for=retry_for,
            what="the chat message",
        )
    return ack.seq


def decode(data: bytes, seq: int = 0) -> ChatMessage | None:
    try:
        message = _decode_message(data)
    except msgspec.DecodeError:
        return None
    message.seq = seq
    return message


async def history(
    js: JetStreamContext, swarm: str, *, since: int = 0, limit: int = 100
) -> list[ChatMessage]:
    """Messages of ``swarm`` after sequence ``since``: the newest ``limit`` of them, in order."""
    async with Feed(js, subjects.CHAT_STREAM, subjects.chat_all(swarm), after=since) as feed:
        records = await feed.backlog()
    messages = [m for r in records if (m := decode(r.data, r.seq)) is not None]
    return messages[-limit:] if limit else messages


def inbox_key(swarm: str, agent: str) -> str:
    return f"{swarm}.{agent}"


async def read_inbox(kv: KeyValue, swarm: str, agent: str) -> tuple[Inbox, int | None]:
    """An agent's inbox and its KV revision (``None``: no inbox yet)."""
    with reachable("reading an inbox"):
        try:
            entry = await kv.get(inbox_key(swarm, agent))
        except KeyNotFoundError:
            return Inbox(), None
    if not entry.value:
        return Inbox(), entry.revision
    return _decode_inbox(entry.value), entry.revision


async def deliver(
    kv: KeyValue, swarm: str, agent: str, entry: InboxEntry, read_through: int = 0
) -> bool:
    """Put ``entry`` in the agent's inbox exactly once (compare-and-set; safe with replicas and
    redeliveries). Returns whether it was new."""
    key = inbox_key(swarm, agent)
    while True:
        inbox, revision = await read_inbox(kv, swarm, agent)
        if not add_to_inbox(inbox, entry, read_through):
            return False
        data = msgspec.json.encode(inbox)
        with reachable("writing an inbox"):
            if await compare_and_set(kv, key, data, revision) is not None:
                return True
        # someone else wrote it meanwhile (or created it): read again


@dataclass(frozen=True)
class PostedChat:
    """A chat message taken from the shared inbox consumer (``message`` None: not a chat
    message); ``ack`` once its mentions are in the inboxes."""

    message: ChatMessage | None
    _msg: Msg = field(repr=False)

    async def ack(self) -> None:
        await self._msg.ack()


class InboxFeed:
    """The chat replicas' shared pull consumer on ``SWARM_CHAT``, handing out typed messages."""

    def __init__(self, sub: JetStreamContext.PullSubscription) -> None:
        self._sub = sub

    async def next(self, *, batch: int = 64, timeout: float = 1.0) -> list[PostedChat]:
        """Wait up to ``timeout`` seconds for chat messages; ``[]`` when none came."""
        try:
            msgs = await self._sub.fetch(batch, timeout=timeout)
        except nats.errors.TimeoutError:
            return []
        return [PostedChat(decode(msg.data, msg.metadata.sequence.stream), msg) for msg in msgs]


async def inbox_consumer(js: JetStreamContext, durable: str) -> InboxFeed:
    """The durable pull consumer every chat replica shares: each message goes to one of them,
    and comes again if it was not acked within ``ack_wait`` (a replica died or stopped while a
    fetch was outstanding), so a stopped replica delays a mention by at most 5 s."""
    sub = await js.pull_subscribe(
        subjects.CHAT_ALL,
        durable=durable,
        stream=subjects.CHAT_STREAM,
        config=api.ConsumerConfig(ack_policy=api.AckPolicy.EXPLICIT, ack_wait=5, max_deliver=-1),
    )
    return InboxFeed(sub)
