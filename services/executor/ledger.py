"""What hosting agents and serving claims share: the executor's fold of its swarm's log and
the way to append to it (with the aggregate's expected sequence, then wait until the fold holds
the event)."""

from __future__ import annotations

import asyncio
import time

from structlog.typing import FilteringBoundLogger

from schemas import events as ev
from schemas import subjects
from schemas.board import Board
from services.bus.eventlog import AppendConflict
from services.bus.projection import Projection
from services.bus.service import Bus
from services.executor.decisions import Append

SETTLE_SECONDS = 5.0


class Ledger:
    def __init__(
        self, bus: Bus, projection: Projection, swarm: str, log: FilteringBoundLogger
    ) -> None:
        self.bus = bus
        self.projection = projection
        self.swarm = swarm
        self.log = log

    @property
    def board(self) -> Board:
        return self.projection.board

    async def append(self, append: Append, *, retry_for: float = 5.0) -> int | None:
        """Append and wait until the fold holds it; None when the aggregate moved on."""
        try:
            seq = await self.bus.events.append(
                append.event, expected_seq=append.expected_seq, retry_for=retry_for
            )
        except AppendConflict:
            self.log.info("executor.append_conflict", type=append.event.type, id=append.event.id)
            return None
        await self.projection.wait_for(seq)
        return seq

    async def settled(self, aggregate: str, aggregate_id: str, seen: int) -> None:
        """After a conflict: wait (a little) until the fold shows the event that beat us."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while self.board.version(self.swarm, aggregate, aggregate_id) == seen:
            if time.monotonic() > deadline:
                return
            self.projection.catch_up()  # a fold kept up on demand: read on (``Lazily``)
            await asyncio.sleep(0.02)

    async def beaten_by_itself(self, event: ev.Event, seen: int) -> int | None:
        """After ``event`` conflicted at ``seen``: once the fold shows what beat it, that
        event's sequence if it was ``event`` itself — its first try, whose ack was lost and
        which the bus could not read yet (on a cluster, still being applied) — else None.
        ``Unavailable``: NATS cannot tell yet."""
        await self.settled(event.aggregate, event.id, seen)
        subject = subjects.event(event.swarm, event.aggregate, event.id, event.verb)
        return await self.bus.events.original_seq(subject, event.event_id, retry_for=5.0)
