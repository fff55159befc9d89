"""The lines an executor posts to its swarm's chat when a task starts, completes or fails (pure).

``▶ qa-agent started t-1: Run the checks``, ``✓ qa-agent completed t-1: <first ~200 characters
of the result>``, ``✗ qa-agent failed t-1: <reason>``. The author is the agent
(``author_kind="agent"``); the message id is ``<swarm>:<task>:<attempt>:<verb>``, so a retried
post is stored once. Lines carry no mentions (an ``@name`` in a title reaches no inbox), and the
executor's secrets are masked in them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

from schemas.chat import ChatMessage
from services.bus.logs import scrub

Verb = Literal["started", "completed", "failed"]
SHORT_CHARS = 200
MARKS: dict[str, str] = {"started": "▶", "completed": "✓", "failed": "✗"}


def short(text: str, limit: int = SHORT_CHARS) -> str:
    """``text`` on one line (whitespace collapsed), cut at ``limit`` characters."""
    flat = re.sub(r"\s+", " ", text or "").strip()
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def text(verb: Verb, agent: str, task: str, detail: str = "") -> str:
    line = f"{MARKS[verb]} {agent} {verb} {task}"
    detail = short(detail)
    return f"{line}: {detail}" if detail else line


def msg_id(swarm: str, task: str, attempt: int, verb: Verb) -> str:
    return f"{swarm}:{task}:{attempt}:{verb}"


def message(
    swarm: str,
    agent: str,
    task: str,
    attempt: int,
    verb: Verb,
    detail: str,
    *,
    secrets: Iterable[str] = (),
    now: float = 0.0,
) -> tuple[ChatMessage, str]:
    """The chat message for one line and the message id it is posted with."""
    ident = msg_id(swarm, task, attempt, verb)
    posted = ChatMessage(
        swarm=swarm,
        text=text(verb, agent, task, scrub(detail, secrets)),  # masked before it is cut short
        author=agent,
        author_kind="agent",
        time=now,
        id=ident.replace(":", "-"),
    )
    return posted, ident
