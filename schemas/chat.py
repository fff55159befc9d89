"""Chat: the message on the wire, and mention resolution (pure).

A message lives on ``swarm.chat.<swarm>.<channel>`` (stream ``SWARM_CHAT``). Mentions are
``@all``, ``@<role>`` (every agent with that role) and ``@<agent id or name>``; they resolve to
the agents whose inboxes receive the message. An unknown mention is an ``Invalid`` naming it.
"""

from __future__ import annotations

import re
import uuid
from typing import Literal

import msgspec

from schemas.board import SwarmView
from schemas.errors import Invalid

AuthorKind = Literal["person", "master", "agent", "system"]

MAX_TEXT = 16_000

# ``@name`` at the start or after whitespace/punctuation (so ``a@b.com`` is not a mention).
_MENTION = re.compile(r"(?:(?<=^)|(?<=[\s(\[,;:]))@([A-Za-z0-9][A-Za-z0-9_-]*)")


class ChatMessage(msgspec.Struct, kw_only=True):
    swarm: str
    text: str
    author: str = "master"
    author_kind: AuthorKind = "person"
    channel: str = "general"
    mentions: list[str] = []  # as written, without the ``@``
    recipients: list[str] = []  # agent ids the mentions resolved to
    time: float = 0.0
    id: str = msgspec.field(default_factory=lambda: uuid.uuid4().hex)
    seq: int = 0  # the stream sequence (set when read back, 0 on the way in)


class InboxEntry(msgspec.Struct, kw_only=True):
    """A mention waiting in an agent's inbox (``seq``: the chat message's stream sequence)."""

    seq: int
    id: str
    author: str
    text: str
    time: float
    channel: str = "general"


class Inbox(msgspec.Struct, kw_only=True):
    entries: list[InboxEntry] = []


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def mentions_in(text: str, extra: list[str] | None = None) -> list[str]:
    """The mentions written in ``text`` plus explicit ones (``@all`` or ``all``), in order,
    without duplicates."""
    found: list[str] = []
    for token in [*_MENTION.findall(text), *(m.lstrip("@") for m in extra or [])]:
        if token and token.lower() not in (f.lower() for f in found):
            found.append(token)
    return found


def resolve(swarm: SwarmView, mentions: list[str]) -> list[str]:
    """Agent ids the mentions reach, sorted. ``Invalid("mentions", …)`` names an unknown one."""
    agents = list(swarm.agents.values())
    reached: set[str] = set()
    for mention in mentions:
        key = mention.lower()
        if key == "all":
            matched = {a.id for a in agents}
        else:
            matched = {
                a.id
                for a in agents
                if key in (a.id.lower(), a.role.lower(), a.name.lower(), slug(a.name))
            }
        if not matched and key != "all":
            known = sorted({a.role for a in agents if a.role} | {a.id for a in agents})
            raise Invalid(
                "mentions",
                f"unknown mention @{mention}: no agent or role of that name in swarm "
                f"{swarm.id} (known: @all, {', '.join('@' + k for k in known) or 'none'})",
            )
        reached |= matched
    return sorted(reached)


def check_text(text: object) -> str:
    if not isinstance(text, str) or not text.strip():
        raise Invalid("message", "message must be a non-empty string")
    if len(text) > MAX_TEXT:
        raise Invalid("message", f"message is longer than {MAX_TEXT} characters")
    return text


def unread(inbox: Inbox, read_through: int) -> list[InboxEntry]:
    """The entries an agent has not yet had in a task prompt."""
    return [e for e in inbox.entries if e.seq > read_through]


def add_to_inbox(inbox: Inbox, entry: InboxEntry, read_through: int = 0) -> bool:
    """Add ``entry`` once (by sequence), dropping entries already read. Returns whether added."""
    if any(e.seq == entry.seq for e in inbox.entries):
        return False
    inbox.entries = [e for e in inbox.entries if e.seq > read_through]
    inbox.entries.append(entry)
    inbox.entries.sort(key=lambda e: e.seq)
    return True


def prompt_section(entries: list[InboxEntry]) -> str:
    """The block put in front of an agent's next task prompt."""
    if not entries:
        return ""
    lines = ["Unread chat messages that mention you:"]
    lines += [f"- [{e.author}] {e.text}" for e in entries]
    return "\n".join(lines) + "\n\n"
