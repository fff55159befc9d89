"""Agent presence: one key per agent in the ``swarm_presence`` bucket, refreshed by the executor
hosting it (every couple of seconds), read by the scheduler to tell live agents from lost ones.

Key ``<swarm>.<agent>`` (``subjects.presence_key``), value ``Presence`` as JSON.

``PresenceWatch`` follows the bucket and remembers, per key, when it last saw the key change,
on its *own* clock: a lease is then judged without trusting another machine's clock. A key
found already there when the watch starts counts as seen at that moment (at worst a dead agent
is noticed one lease after the watcher started). A deleted key is forgotten.

A NATS restart: while NATS is away nobody can refresh a key and the watch cannot hear one, so
``heard()`` counts that time as heard (each agent gets a whole lease from the reconnection),
and the watch's consumer has a short idle heartbeat, so it is made again about a second after
NATS is back. (Found by the chaos test: with nats-py's KV watch the scheduler stayed deaf for
ten seconds and more after a restart, and marked every agent lost each lease meanwhile — every
running task's run lost, again and again.)

``on_change`` is called when a key appears or goes, not on each refresh: 1,000 agents refresh
500 keys a second, and each call woke a whole decide round in the scheduler (the lease running
out is the scheduler's reconcile tick's to notice, not a refresh's).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

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


class Presence(msgspec.Struct, kw_only=True):
    executor: str
    time: float
    task: str | None = None


async def put_presence(kv: KeyValue, swarm: str, agent: str, presence: Presence) -> int:
    """Refresh one agent's presence key; returns its revision."""
    return await kv.put(subjects.presence_key(swarm, agent), msgspec.json.encode(presence))


async def read_presence(kv: KeyValue, swarm: str, agent: str) -> Presence | None:
    """One agent's presence as last written (None: no key, or unreadable)."""
    try:
        entry = await kv.get(subjects.presence_key(swarm, agent))
        return msgspec.json.decode(entry.value or b"", type=Presence)
    except Exception:
        return None


class PresenceWatch:
    """``seen``: presence key -> when this process last saw it refreshed (``clock()`` time);
    ``heard()``: the same, with the time NATS was away from this process counted as heard."""

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
        self.seen: dict[str, float] = {}
        self._sub: JetStreamContext.PushSubscription | None = None
        self._ready = asyncio.Event()
        self._reconnects = 0

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
        """``seen``, where a key last seen before NATS went away from this process counts as
        seen when it came back (or now, while it is away): nobody could refresh a key, nor this
        watch hear it, meanwhile, so an outage of NATS never makes an agent look lost — each
        gets a whole lease from the reconnection to be heard again."""
        reconnects = self._nc.stats["reconnects"]
        if reconnects != self._reconnects or not self._nc.is_connected:
            self._reconnects = reconnects
            floor = self._clock()
            for key, when in self.seen.items():
                if when < floor:
                    self.seen[key] = floor
        return self.seen

    async def _on_msg(self, msg: Msg) -> None:
        key = msg.subject[len(self._prefix) :]
        headers = msg.headers or {}
        deleted = headers.get(_OPERATION) in _DELETED or headers.get(_MARKER) in _DELETING_MARKERS
        if deleted:
            changed = self.seen.pop(key, None) is not None
        else:
            changed = key not in self.seen
            self.seen[key] = self._clock()
        if msg.metadata.num_pending == 0:
            self._ready.set()  # the keys that were there are all delivered
        if changed and self._on_change is not None:
            try:
                self._on_change(key)
            except Exception:
                log.exception("presence.listener_failed", key=key)
