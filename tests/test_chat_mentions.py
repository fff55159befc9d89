"""Mentions and inboxes, pure: given the agents, when a message is posted, then who gets it."""

from __future__ import annotations

import pytest

from schemas.board import AgentView, SwarmView
from schemas.chat import (
    Inbox,
    InboxEntry,
    add_to_inbox,
    mentions_in,
    prompt_section,
    resolve,
    unread,
)
from schemas.errors import Invalid


def swarm() -> SwarmView:
    agents = [
        AgentView(swarm="s", id="frontend-agent", name="Frontend Agent", role="frontend"),
        AgentView(swarm="s", id="ui-2", name="Second UI", role="frontend"),
        AgentView(swarm="s", id="backend-agent", name="Backend Agent", role="backend"),
    ]
    return SwarmView(id="s", name="s", agents={a.id: a for a in agents})


def test_mentions_are_found_in_text_and_explicit_list_once_each() -> None:
    assert mentions_in("@frontend please, and @all", ["@all", "qa"]) == ["frontend", "all", "qa"]


def test_an_email_address_is_not_a_mention() -> None:
    assert mentions_in("mail bob@example.com") == []


def test_all_reaches_every_agent() -> None:
    assert resolve(swarm(), ["all"]) == ["backend-agent", "frontend-agent", "ui-2"]


def test_role_reaches_every_agent_with_that_role() -> None:
    assert resolve(swarm(), ["frontend"]) == ["frontend-agent", "ui-2"]


def test_agent_by_id_or_by_name() -> None:
    assert resolve(swarm(), ["backend-agent"]) == ["backend-agent"]
    assert resolve(swarm(), ["Second-UI"]) == ["ui-2"]


def test_unknown_mention_is_invalid_and_named() -> None:
    with pytest.raises(Invalid) as caught:
        resolve(swarm(), ["frontend", "designer"])
    assert caught.value.field == "mentions"
    assert "@designer" in caught.value.message


def test_inbox_takes_an_entry_once_and_forgets_what_was_read() -> None:
    inbox = Inbox()
    first = InboxEntry(seq=3, id="m3", author="master", text="hi", time=1)
    assert add_to_inbox(inbox, first)
    assert not add_to_inbox(inbox, first)  # a redelivery repeats nothing
    assert add_to_inbox(inbox, InboxEntry(seq=9, id="m9", author="qa", text="yo", time=2), 3)
    assert [e.seq for e in inbox.entries] == [9]
    assert [e.seq for e in unread(inbox, 0)] == [9]
    assert unread(inbox, 9) == []


def test_prompt_section_lists_unread_mentions() -> None:
    entries = [InboxEntry(seq=1, id="m", author="master", text="Deploy at 6pm", time=0)]
    assert prompt_section(entries) == (
        "Unread chat messages that mention you:\n- [master] Deploy at 6pm\n\n"
    )
    assert prompt_section([]) == ""
