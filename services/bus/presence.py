"""Agent presence: one key per executor (and swarm) in the ``swarm_presence`` bucket, listing the
agents it hosts, refreshed by that executor every couple of seconds; read by the scheduler to
tell live agents from lost ones.

Key ``<swarm>.<executor>`` (``subjects.host_key``), value ``HostRecord`` as JSON: the executor,
its clock when written, the agents it hosts (and the task each runs). One write every two seconds
per executor, however many agents it hosts: with a key per agent, 1,000 agents were 500 fsynced
writes a second, and the scheduler's watch heard each of them. A value without ``agents`` is an
older executor's key for one agent (``<swarm>.<agent>``): read as that agent's, so an upgrade
does not make agents look lost.

``PresenceBook`` (pure, no NATS) keeps what the keys say: per executor key the agents it lists,
and per agent (``subjects.presence_key``) when a key listing it was last heard. An agent dropped
from its executor's list (unhosted there), or whose executor's key is deleted (a clean stop) or
removed by the bucket's TTL, is forgotten unless another fresh key lists it; a forgotten agent is
judged by its (re)registration time alone (``decide.presence_age``), as a deleted per-agent key
was.

``PresenceWatch`` follows the bucket and fills a book, on its *own* clock: a lease is then judged
without trusting another machine's clock. A key found already there when the watch starts counts
as heard at that moment (at worst a dead agent is noticed one lease after the watcher started).

A NATS restart: while NATS is away nobody can refresh a key and the watch cannot hear one, so
``heard()`` counts that time as heard (each agent gets a whole lease from the reconnection),
and the watch's consumer has a short idle heartbeat, so it is made again about a second after
NATS is back. (Found by the chaos test: with nats-py's KV watch the scheduler stayed deaf for
ten seconds and more after a restart, and marked every agent lost each lease meanwhile — every
running task's run lost, again and again.)

``on_change`` is called when an agent appears or goes, not on each refresh (each call woke a
whole decide round in the scheduler; the lease running out is the scheduler's reconcile tick's to
notice, not a refresh's).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping

import msgspec
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.kv import KeyValue

from schemas import subjects

log = structlog.get_logger("bus.presence")

_OPERATION = "KV-Operation"
_DELETED = ("DEL", "PURGE")
_MARKER = "Nats-Marker-Reason"  # nats-server 2.11+: a key removed by its TTL or a purge
_DELETING_MARKERS = ("MaxAge", "Purge", "Remove")
# seconds between the watch consumer's idle heartbeats: two missed (NATS restarted) and it is
# made again, so refreshes are heard again about a second after NATS is back (nats-py's KV
# watch uses 5 s: ten or more seconds deaf, longer than a lease in the tests)
HEARTBEAT = 0.5


class HostRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The value of an executor's presence key: who wrote it, when (its clock), the agents it
    hosts and the task each of them runs. ``agents`` None: an older executor's key for the one
    agent the key names (``task``: that agent's)."""

    executor: str
    time: float
    agents: list[str] | None = None
    running: dict[str, str] = {}
    task: str | None = None


class Presence(msgspec.Struct, kw_only=True):
    """One agent's presence as the keys say it: its executor, when that wrote, its task."""

    executor: str
    time: float
    task: str | None = None


def host_record(
    executor: str, now: float, agents: Iterable[str], running: Mapping[str, str] | None = None
) -> HostRecord:
    """The record an executor writes: ``agents`` sorted (one spelling for one set)."""
    return HostRecord(
        executor=executor, time=now, agents=sorted(set(agents)), running=dict(running or {})
    )


def decode_record(value: bytes | None) -> HostRecord | None:
    """A key's value as a record (None: empty or not ours)."""
    if not value:
        return None
    try:
        return msgspec.json.decode(value, type=HostRecord)
    except msgspec.DecodeError:
        return None


def listed(key: str, record: HostRecord) -> dict[str, Presence]:
    """Agent presence key (``<swarm>.<agent>``) -> its presence, for the agents ``record``
    (stored under ``key``) lists; an older executor's record names its one agent by its key."""
    swarm = key.partition(".")[0]
    if record.agents is None:
        return {key: Presence(executor=record.executor, time=record.time, task=record.task)}
    return {
        subjects.presence_key(swarm, agent): Presence(
            executor=record.executor, time=record.time, task=record.running.get(agent)
        )
        for agent in record.agents
    }


def agents_present(values: Mapping[str, bytes]) -> dict[str, Presence]:
    """Every agent the bucket's values (key -> value) list, with the newest record listing it
    (what ``swarm doctor`` reads)."""
    found: dict[str, Presence] = {}
    for key, value in values.items():
        record = decode_record(value)
        if record is None:
            continue
        for agent, presence in listed(key, record).items():
            known = found.get(agent)
            if known is None or presence.time > known.time:
                found[agent] = presence
    return found


class PresenceBook:
    """What the presence keys said, as heard (pure: the watch feeds it).

    ``seen``: agent presence key -> when a key listing it was last heard (the hearer's clock);
    ``lists``: executor key -> the agent keys it lists."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}
        self.lists: dict[str, frozenset[str]] = {}

    def hear(self, key: str, record: HostRecord | None, now: float) -> list[str]:
        """The key was written (``record``) or removed (None) at ``now``: returns the agent keys
        that appeared or went (sorted)."""
        before = self.lists.pop(key, frozenset())
        after = frozenset(listed(key, record)) if record is not None else frozenset()
        if after:
            self.lists[key] = after
        changed = [agent for agent in after if agent not in self.seen]
        for agent in after:
            self.seen[agent] = now
        still = self._listed_anywhere(before - after)
        for agent in before - after - still:
            if self.seen.pop(agent, None) is not None:
                changed.append(agent)
        return sorted(changed)

    def _listed_anywhere(self, agents: frozenset[str]) -> set[str]:
        if not agents:
            return set()
        return {agent for listed_ in self.lists.values() for agent in listed_ if agent in agents}

    def floor(self, when: float) -> None:
        """Count every agent as heard at ``when`` at the latest (NATS was away until then)."""
        for agent, heard in self.seen.items():
            if heard < when:
                self.seen[agent] = when


def _key(swarm: str, executor: str) -> str:
    return subjects.host_key(swarm, executor)


async def put_hosts(kv: KeyValue, swarm: str, record: HostRecord) -> int:
    """Write an executor's presence in ``swarm``; returns the key's revision."""
    return await kv.put(_key(swarm, record.executor), msgspec.json.encode(record))


async def read_hosts(kv: KeyValue, swarm: str, executor: str) -> HostRecord | None:
    """An executor's presence in ``swarm`` as last written (None: no key, or unreadable)."""
    try:
        entry = await kv.get(_key(swarm, executor))
    except Exception:
        return None
    return decode_record(entry.value)


async def withdraw_hosts(kv: KeyValue, swarm: str, executor: str) -> None:
    """An executor stops: its key goes (its agents are forgotten at once)."""
    await kv.delete(_key(swarm, executor))


class PresenceWatch:
    """``seen``: agent presence key -> when this process last heard a key listing it
    (``clock()`` time); ``heard()``: the same, with the time NATS was away from this process
    counted as heard."""

    def __init__(
        self,
        nc: NATS,
        *,
        swarm: str | None = None,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[str], None] | None = None,
        bucket: str = subjects.PRESENCE_BUCKET,
    ) -> None:
        self._nc = nc
        self._stream = f"KV_{bucket}"
        self._prefix = f"$KV.{bucket}."
        self._subject = self._prefix + (f"{swarm}.*" if swarm else ">")
        self._clock = clock
        self._on_change = on_change
        self.book = PresenceBook()
        self._sub: JetStreamContext.PushSubscription | None = None
        self._ready = asyncio.Event()
        self._reconnects = 0

    @property
    def seen(self) -> dict[str, float]:
        return self.book.seen

    async def start(self, timeout: float = 10.0) -> None:
        """Watch the bucket; return once the keys already there are known."""
        self._reconnects = self._nc.stats["reconnects"]
        self._sub = await self._nc.jetstream().subscribe(
            self._subject,
            stream=self._stream,
            cb=self._on_msg,
            ordered_consumer=True,
            deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT,
            idle_heartbeat=HEARTBEAT,
        )
        info = await self._sub.consumer_info()
        if info.num_pending == 0 and (info.delivered is None or not info.delivered.consumer_seq):
            self._ready.set()  # an empty bucket: nothing will come to say so
        await asyncio.wait_for(self._ready.wait(), timeout)

    async def stop(self) -> None:
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:  # the connection is already gone
                pass
            self._sub = None

    def heard(self) -> dict[str, float]:
        """``seen``, where an agent last heard before NATS went away from this process counts
        as heard when it came back (or now, while it is away): nobody could refresh a key, nor
        this watch hear it, meanwhile, so an outage of NATS never makes an agent look lost —
        each gets a whole lease from the reconnection to be heard again."""
        reconnects = self._nc.stats["reconnects"]
        if reconnects != self._reconnects or not self._nc.is_connected:
            self._reconnects = reconnects
            self.book.floor(self._clock())
        return self.book.seen

    async def _on_msg(self, msg: Msg) -> None:
        key = msg.subject[len(self._prefix) :]
        headers = msg.headers or {}
        deleted = headers.get(_OPERATION) in _DELETED or headers.get(_MARKER) in _DELETING_MARKERS
        record = None if deleted else decode_record(msg.data)
        changed = self.book.hear(key, record, self._clock())
        if msg.metadata.num_pending == 0:
            self._ready.set()  # the keys that were there are all delivered
        if changed and self._on_change is not None:
            for agent in changed:
                try:
                    self._on_change(agent)
                except Exception:
                    log.exception("presence.listener_failed", key=agent)
