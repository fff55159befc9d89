"""The lines an executor posts to its swarm's chat when a task starts, completes or fails, and
when its work lands or cannot land (pure). When each is said is ``serving.py``'s: a start line
only once the run has lasted a moment.

``▶ qa-agent started t-1: Run the checks``, ``✓ qa-agent completed t-1: <first ~200 characters
of the result>``, ``✗ qa-agent failed t-1: <reason>``; ``⬆ qa-agent landed t-1 on main:
3f2a1b9c0d1e``, ``⚠ qa-agent could not land t-1 on main: conflict in README; a resolve task
follows``. The author is the agent (``author_kind="agent"``); the message id is
``<swarm>:<task>:<attempt>:<verb>`` (``landing`` for both landing lines, as the landing event
itself is one per attempt), so a retried post is stored once. Lines carry no mentions (an
``@name`` in a title reaches no inbox), and the executor's secrets are masked in them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

from schemas.board import Integration
from schemas.chat import ChatMessage
from schemas.landing import STUCK, problem_text
from services.bus.logs import scrub

Verb = Literal["started", "completed", "failed", "landed", "stuck"]
SHORT_CHARS = 200
COMMIT_CHARS = 12
MARKS: dict[str, str] = {
    "started": "▶",
    "completed": "✓",
    "failed": "✗",
    "landed": "⬆",
    "stuck": "⚠",
}
WORDS: dict[str, str] = {"stuck": "could not land"}  # what a line says, when not its verb
KEYS: dict[str, str] = {"landed": "landing", "stuck": "landing"}  # message id, when not its verb


def short(text: str, limit: int = SHORT_CHARS) -> str:
    """``text`` on one line (whitespace collapsed), cut at ``limit`` characters."""
    flat = re.sub(r"\s+", " ", text or "").strip()
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def text(verb: Verb, agent: str, task: str, detail: str = "", onto: str | None = None) -> str:
    line = f"{MARKS[verb]} {agent} {WORDS.get(verb, verb)} {task}"
    if onto:
        line += f" on {onto}"
    detail = short(detail)
    return f"{line}: {detail}" if detail else line


def msg_id(swarm: str, task: str, attempt: int, verb: Verb) -> str:
    return f"{swarm}:{task}:{attempt}:{KEYS.get(verb, verb)}"


def landing(work: Integration, resolves: str | None = None) -> tuple[Verb, str] | None:
    """The landing line of a task's recorded landing: its verb and detail (None while nothing
    is recorded). ``resolves``: the stuck task whose work a resolve task's landing brought."""
    if work.state == "landed":
        detail = (work.landed or "?")[:COMMIT_CHARS]
        return "landed", f"{detail}, with {resolves}'s work" if resolves else detail
    if work.state in STUCK:
        then = "a resolve task follows" if work.resolve else "the task fails"
        return "stuck", f"{problem_text(work)}; {then}"
    return None


def message(
    swarm: str,
    agent: str,
    task: str,
    attempt: int,
    verb: Verb,
    detail: str,
    *,
    onto: str | None = None,
    secrets: Iterable[str] = (),
    now: float = 0.0,
) -> tuple[ChatMessage, str]:
    """The chat message for one line and the message id it is posted with."""
    ident = msg_id(swarm, task, attempt, verb)
    posted = ChatMessage(
        swarm=swarm,
        text=text(verb, agent, task, scrub(detail, secrets), onto),  # masked, then cut short
        author=agent,
        author_kind="agent",
        time=now,
        id=ident.replace(":", "-"),
    )
    return posted, ident
