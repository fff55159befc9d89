"""The chat process: posts messages (resolving @mentions with its fold), serves history, and
fills the agents' inboxes.

- NATS micro service ``swarm-chat``: ``swarm.cmd.<swarm>.chat_post`` and
  ``swarm.cmd.<swarm>.chat_history`` (the gateway talks to chat only through these).
- Inboxes: a durable consumer (``chat_inbox``) on ``SWARM_CHAT`` shared by every chat replica,
  so each message is handled by one of them; each mention goes into the agent's inbox with a
  compare-and-set keyed by the message's sequence, so a redelivery (crash before the ack)
  repeats nothing and a crash before the write loses nothing.
"""

from __future__ import annotations

import asyncio
import time
from typing import get_args

import msgspec

from schemas import subjects
from schemas.board import SwarmView
from schemas.chat import AuthorKind, ChatMessage, InboxEntry, check_text, mentions_in, resolve
from schemas.errors import Forbidden, Invalid, NotFound, Unavailable
from schemas.positions import whole_number
from services.bus import chat as chat_bus
from services.bus.micro import CommandRequest, Endpoint, serve
from services.bus.service import Service

INBOX_CONSUMER = "chat_inbox"
MAX_LIMIT = 1000  # messages in one history answer


AUTHOR_KINDS: tuple[AuthorKind, ...] = get_args(AuthorKind)


def message_from_request(
    swarm_view: SwarmView, swarm: str, data: object, now: float
) -> ChatMessage:
    """Pure: validate a post and resolve its mentions against the swarm's agents."""
    if not isinstance(data, dict):
        raise Invalid("body", "the request body must be a JSON object")
    text = check_text(data.get("message", data.get("text")))
    extra = data.get("mentions") or []
    if isinstance(extra, str):
        extra = [m for m in extra.replace(",", " ").split() if m]
    if not isinstance(extra, list) or not all(isinstance(m, str) for m in extra):
        raise Invalid("mentions", "mentions must be a list of names like '@all' or '@frontend'")
    author = data.get("author") or "master"
    if not isinstance(author, str):
        raise Invalid("author", "author must be a string")
    asked = data.get("author_kind") or ("agent" if author in swarm_view.agents else "person")
    kind = next((k for k in AUTHOR_KINDS if k == asked), None)
    if kind is None:
        raise Invalid("author_kind", "author_kind must be person, master, agent or system")
    if kind == "agent" and author not in swarm_view.agents:
        raise Forbidden(f"agent {author} is not registered in swarm {swarm}")
    channel = subjects.check_token(data.get("channel") or "general", "channel")
    mentions = mentions_in(text, extra)
    return ChatMessage(
        swarm=swarm,
        text=text,
        author=author,
        author_kind=kind,
        channel=channel,
        mentions=mentions,
        recipients=resolve(swarm_view, mentions),
        time=now,
    )


class Chat(Service):
    """Swarm chat: messages with @mentions, durable per-agent inboxes."""

    name = "chat"

    async def on_ready(self) -> None:
        assert self.bus is not None
        self.micro = await serve(
            self.bus.nc,
            name="swarm-chat",
            version="0.1.0",
            description="Swarm chat: post with @mentions, history",
            endpoints=[
                Endpoint("chat_post", "swarm.cmd.*.chat_post", self.post, "post a message"),
                Endpoint("chat_history", "swarm.cmd.*.chat_history", self.history, "history"),
            ],
        )
        self.spawn(self._deliver_mentions(), "inbox-delivery")

    async def on_stop(self) -> None:
        micro = getattr(self, "micro", None)
        if micro is not None:
            await micro.stop()

    def _swarm(self, swarm: str) -> SwarmView:
        assert self.projection is not None
        view = self.projection.board.swarms.get(swarm)
        if view is None:
            raise NotFound(f"swarm {swarm} not found")
        return view

    async def post(self, request: CommandRequest) -> dict[str, object]:
        assert self.bus is not None and self.projection is not None
        swarm = request.token(2)
        seen = request.headers.get(subjects.SEEN_HEADER)
        if seen:  # the caller's fold knows of agents ours may not have yet
            try:
                await self.projection.wait_for(
                    whole_number(seen, subjects.SEEN_HEADER), timeout=2.0
                )
            except Unavailable:
                pass  # resolve with what we have: an unknown mention is then refused
        message = message_from_request(self._swarm(swarm), swarm, request.data, time.time())
        key = request.headers.get("Idempotency-Key")
        msg_id = f"{swarm}:chat:{key}" if key else None
        message.seq = await chat_bus.post(self.bus.js, message, msg_id)
        self.log.info(
            "chat.posted", swarm=swarm, seq=message.seq, recipients=len(message.recipients)
        )
        posted: dict[str, object] = msgspec.to_builtins(message)
        return posted

    async def history(self, request: CommandRequest) -> dict[str, object]:
        assert self.bus is not None
        swarm = request.token(2)
        self._swarm(swarm)
        data = request.data
        if not isinstance(data, dict):
            raise Invalid("body", "the request body must be a JSON object")
        since, limit = data.get("since"), data.get("limit")
        since = 0 if since is None else whole_number(since, "since")
        limit = 100 if limit is None else whole_number(limit, "limit", minimum=1, maximum=MAX_LIMIT)
        messages = await chat_bus.history(self.bus.js, swarm, since=since, limit=limit)
        return {"messages": [msgspec.to_builtins(m) for m in messages]}

    async def _deliver_mentions(self) -> None:
        assert self.bus is not None and self.projection is not None
        while not self.stopping.is_set():
            try:
                feed = await chat_bus.inbox_consumer(self.bus.js, INBOX_CONSUMER)
                while not self.stopping.is_set():
                    for posted in await feed.next(batch=64, timeout=1):
                        await self._deliver_one(posted)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # NATS away: start over
                self.log.warning("chat.inbox_delivery_retry", error=str(error))
                try:
                    await asyncio.wait_for(self.stopping.wait(), 1)
                except TimeoutError:
                    pass

    async def _deliver_one(self, posted: chat_bus.PostedChat) -> None:
        assert self.bus is not None and self.projection is not None
        message = posted.message
        if message is not None and message.recipients:
            kv = await self.bus.kv(subjects.INBOX_BUCKET)
            entry = InboxEntry(
                seq=message.seq,
                id=message.id,
                author=message.author,
                text=message.text,
                time=message.time,
                channel=message.channel,
            )
            for agent_id in message.recipients:
                agent = self.projection.board.agent(message.swarm, agent_id)
                read_through = agent.read_through if agent else 0
                if entry.seq > read_through:
                    await chat_bus.deliver(kv, message.swarm, agent_id, entry, read_through)
        await posted.ack()
