"""Every NATS subject, stream and bucket name Swarm uses, built in one place."""

from __future__ import annotations

import re

from schemas.errors import Invalid

EVENTS_STREAM = "SWARM_EVENTS"
CHAT_STREAM = "SWARM_CHAT"
LOGS_STREAM = "SWARM_LOGS"

PRESENCE_BUCKET = "swarm_presence"  # presence: a key per executor and swarm (leases)
SERVICES_BUCKET = "swarm_services"  # service readiness heartbeats
SNAPSHOTS_BUCKET = "swarm_snapshots"  # snapshots of the fold
LEADER_BUCKET = "swarm_leader"  # the scheduler's leader lease
INBOX_BUCKET = "swarm_inbox"  # per-agent unread mentions
OUTPUT_STORE = "swarm_outputs"  # full task outputs (object store)
SNAPSHOT_STORE = "swarm_boards"  # snapshots too large for a KV value (object store)

# A request header: the log position the caller's fold has reached. A service answering a
# request that depends on the fold (chat resolving mentions) first catches up to it.
SEEN_HEADER = "Swarm-Seen-Seq"

EVENTS_ALL = "swarm.evt.>"
CHAT_ALL = "swarm.chat.>"
LOGS_ALL = "swarm.log.>"

TOKEN_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"  # what check_token takes (also in /openapi.json)
_TOKEN = re.compile(TOKEN_PATTERN)


def is_token(value: str) -> bool:
    """Whether ``value`` is a subject token (``check_token`` without the error)."""
    return isinstance(value, str) and _TOKEN.match(value) is not None


def check_token(value: str, what: str = "id") -> str:
    """A subject token: letters, digits, ``-`` and ``_`` only (no dots, spaces or wildcards)."""
    if not is_token(value):
        raise Invalid(what, f"{what} {value!r} must be 1-128 letters, digits, '-' or '_'")
    return value


def event(swarm: str, aggregate: str, aggregate_id: str, verb: str) -> str:
    """``swarm.evt.<swarm>.<aggregate>.<id>.<verb>``, e.g. ``swarm.evt.dev.task.t-7f3a.claimed``."""
    return f"swarm.evt.{swarm}.{aggregate}.{aggregate_id}.{verb}"


def aggregate_filter(swarm: str, aggregate: str, aggregate_id: str) -> str:
    """All events of one aggregate: the scope of an expected-sequence check."""
    return f"swarm.evt.{swarm}.{aggregate}.{aggregate_id}.*"


def swarm_events(swarm: str) -> str:
    return f"swarm.evt.{swarm}.>"


def aggregate_events(swarm: str | None, aggregate: str) -> str:
    """Every event of one kind of aggregate, in ``swarm`` (None: in every swarm)."""
    return f"swarm.evt.{swarm or '*'}.{aggregate}.>"


def verb_events(swarm: str, aggregate: str, verb: str) -> str:
    """One verb's events of every aggregate of a kind in ``swarm``:
    ``swarm.evt.dev.task.*.claimed``."""
    return f"swarm.evt.{swarm}.{aggregate}.*.{verb}"


def chat(swarm: str, channel: str = "general") -> str:
    return f"swarm.chat.{swarm}.{channel}"


def chat_all(swarm: str) -> str:
    return f"swarm.chat.{swarm}.>"


def log(swarm: str, task: str) -> str:
    return f"swarm.log.{swarm}.{task}"


def command(swarm: str, verb: str) -> str:
    return f"swarm.cmd.{swarm}.{verb}"


def presence_key(swarm: str, agent: str) -> str:
    """An agent, as presence is judged (the scheduler's map of when each was last heard)."""
    return f"{swarm}.{agent}"


def host_key(swarm: str, executor: str) -> str:
    """An executor's key in ``PRESENCE_BUCKET``: the agents it hosts in ``swarm``."""
    return f"{swarm}.{executor}"


def service_key(service: str, instance: str) -> str:
    return f"{service}.{instance}"


def output_name(swarm: str, task: str, attempt: int) -> str:
    return f"{swarm}/{task}/{attempt}"
