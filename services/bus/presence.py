"""Agent presence: one key per agent in the ``swarm_presence`` bucket, refreshed by the executor
hosting it (every couple of seconds), read by the scheduler to tell live agents from lost ones.

Key ``<swarm>.<agent>`` (``subjects.presence_key``), value ``Presence`` as JSON.

``PresenceWatch`` follows the bucket and remembers, per key, when it last saw the key change,
on its *own* clock: a lease is then judged without trusting another machine's clock. A key
found already there when the watch starts counts as seen at that moment (at worst a dead agent
is noticed one lease after the watcher started). A deleted key is forgotten.

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
from nats.js.kv import KeyValue

from schemas import subjects

log = structlog.get_logger("bus.presence")

_DELETED = ("DEL", "PURGE")


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
    """``seen``: presence key -> when this process last saw it refreshed (``clock()`` time)."""

    def __init__(
        self,
        kv: KeyValue,
        *,
        swarm: str | None = None,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        self._kv = kv
        self._pattern = f"{swarm}.*" if swarm else ">"
        self._clock = clock
        self._on_change = on_change
        self.seen: dict[str, float] = {}
        self._watcher: KeyValue.KeyWatcher | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self, timeout: float = 10.0) -> None:
        """Watch the bucket; return once the keys already there are known."""
        self._watcher = await self._kv.watch(self._pattern)
        self._task = asyncio.create_task(self._follow(), name="presence-watch")
        await asyncio.wait_for(self._ready.wait(), timeout)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._watcher is not None:
            try:
                await self._watcher.stop()
            except Exception:  # the connection is already gone
                pass
            self._watcher = None

    async def _follow(self) -> None:
        assert self._watcher is not None
        async for entry in self._watcher:
            if entry is None:  # the keys that were there are all delivered
                self._ready.set()
                continue
            if entry.operation in _DELETED:
                changed = self.seen.pop(entry.key, None) is not None
            else:
                changed = entry.key not in self.seen
                self.seen[entry.key] = self._clock()
            if changed and self._on_change is not None:
                try:
                    self._on_change(entry.key)
                except Exception:
                    log.exception("presence.listener_failed", key=entry.key)
