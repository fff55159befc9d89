"""The chat process: messages, mentions and inboxes (filled by the chat issue)."""

from __future__ import annotations

from services.bus.service import Service


class Chat(Service):
    """Swarm chat: messages with @mentions, durable per-agent inboxes."""

    name = "chat"
