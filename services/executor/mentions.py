"""Which unread chat mentions go into an agent's next task prompt (pure).

The chat service fills the agent's inbox (KV ``swarm_inbox``); the fold keeps the agent's
``read_through`` (the chat sequence of the last mention that went into one of its prompts).
Before appending ``task.running`` the executor reads the inbox, takes the entries past
``read_through`` and puts them in front of the prompt; the ``running`` event carries
``inbox_read_through`` = the last sequence taken. Mentions count as read exactly when that event
is in the log: a restarted executor (or chat service) loses none and repeats none.

Only a ``claude`` task takes mentions: a ``shell`` script or an ``instant`` task has no one to
read them, so they stay unread for the agent's next claude task. At most ``MAX_ENTRIES``
entries and about ``MAX_CHARS`` characters go into one prompt, oldest first; the rest stay
unread for the next task.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas.chat import Inbox, InboxEntry, unread

MAX_ENTRIES = 50
MAX_CHARS = 20_000


@dataclass(frozen=True)
class Delivery:
    """The mentions going into one prompt; ``read_through`` is 0 when there are none."""

    entries: list[InboxEntry] = field(default_factory=list)
    read_through: int = 0


def takes_mentions(runtime: str) -> bool:
    return runtime == "claude"


def take(
    inbox: Inbox,
    read_through: int,
    *,
    max_entries: int = MAX_ENTRIES,
    max_chars: int = MAX_CHARS,
) -> Delivery:
    """The oldest unread entries that fit in one prompt (always at least one, if any)."""
    taken: list[InboxEntry] = []
    size = 0
    for entry in sorted(unread(inbox, read_through), key=lambda e: e.seq):
        if taken and (len(taken) >= max_entries or size + len(entry.text) > max_chars):
            break
        taken.append(entry)
        size += len(entry.text)
    return Delivery(taken, taken[-1].seq if taken else 0)
