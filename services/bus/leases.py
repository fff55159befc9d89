"""A leader lease in a KV bucket: one holder at a time, taken over when the holder goes quiet.

The key holds ``{"instance", "time"}``. Every write is conditional on the revision read just
before (create for a new key), so of two instances racing for the key exactly one wins. The
holder refreshes it (call ``hold()`` every ``seconds / 3``); another instance takes it over once
the holder's value is older than ``seconds`` — by the holder's own timestamp, or by how long this
instance has watched the same revision sit unchanged (which needs no clock agreement between
machines). The holder counts itself leader only until a little before its lease runs out without
a successful refresh, so a holder cut off from NATS steps down before anyone takes over.
"""

from __future__ import annotations

import time

import msgspec
import structlog
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from services.bus.compare_and_set import compare_and_set

log = structlog.get_logger("bus.leases")

STEP_DOWN_AT = 0.8  # of the lease: the holder stops acting before anyone may take over


class Lease(msgspec.Struct, kw_only=True):
    instance: str
    time: float


class LeaderLease:
    def __init__(self, kv: KeyValue, key: str, instance: str, seconds: float) -> None:
        self._kv = kv
        self.key = key
        self.instance = instance
        self.seconds = seconds
        self.holder: str | None = None  # who held it at the last look
        self.checked = False  # a look at the lease has succeeded (held here or elsewhere)
        self._revision: int | None = None  # of our own last write
        self._held_until = 0.0  # monotonic
        self._watched: tuple[int, float] | None = None  # another's revision, first seen (mono)

    @property
    def held(self) -> bool:
        """Whether this instance is the leader now."""
        return time.monotonic() < self._held_until

    async def hold(self) -> bool:
        """Take the lease if free or expired, refresh it if ours; return whether we hold it.
        NATS errors propagate; the lease then lapses by itself."""
        started = time.monotonic()
        try:
            entry = await self._kv.get(self.key)
        except KeyNotFoundError:  # never written, or released
            entry = None
        value = msgspec.json.encode(Lease(instance=self.instance, time=time.time()))
        if entry is not None and not self._may_write(entry.value, entry.revision, started):
            return self._not_held()
        last = entry.revision if entry is not None else None
        revision = await compare_and_set(self._kv, self.key, value, last)
        if revision is None:  # someone else wrote first
            return self._not_held()
        self.checked = True
        if self.holder != self.instance:
            log.info("lease.acquired", key=self.key, instance=self.instance, previous=self.holder)
        self.holder = self.instance
        self._revision = revision
        self._watched = None
        self._held_until = started + self.seconds * STEP_DOWN_AT
        return True

    def _not_held(self) -> bool:
        self._held_until = 0.0
        self.checked = True
        return False

    def _may_write(self, data: bytes | None, revision: int | None, now: float) -> bool:
        try:
            current = msgspec.json.decode(data or b"", type=Lease)
        except msgspec.DecodeError:
            return True  # unreadable: nobody holds it
        if current.instance == self.instance:
            return True
        self.holder = current.instance
        if time.time() - current.time > self.seconds:
            return True
        if self._watched is None or self._watched[0] != revision:
            self._watched = (revision or 0, now)
            return False
        return now - self._watched[1] > self.seconds

    async def release(self) -> None:
        """Give the lease up (graceful stop) so a standby takes over at once."""
        if not self.held or self._revision is None:
            return
        self._held_until = 0.0
        try:
            await self._kv.delete(self.key, last=self._revision)
        except KeyWrongLastSequenceError:
            pass
        except Exception as error:  # NATS away: the lease lapses by itself
            log.debug("lease.release_failed", key=self.key, error=str(error))
