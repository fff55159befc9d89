"""Who is watching which swarm's board: one projection listener turns each folded event into a
``live.change`` and puts it on the queue of every open board stream of that swarm.

A watcher that falls ``MAX_BEHIND`` changes behind (a browser that stopped reading) is dropped:
its stream ends and the browser reconnects to a fresh full view, so the gateway never holds an
unbounded backlog for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from schemas import events as ev
from schemas.board import Board
from services.gateway import live
from services.gateway.commands import PER_STATUS

MAX_BEHIND = 2000


class Watch:
    """One open board stream: its queue of changes, and whether it fell too far behind."""

    def __init__(self, swarm: str, board: Board, per_status: int = PER_STATUS) -> None:
        self.swarm = swarm
        view = board.swarms.get(swarm)
        self.first = live.snapshot(view, board.seq, per_status) if view is not None else None
        self.changes: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.dropped = False


class Watchers:
    def __init__(self, max_behind: int = MAX_BEHIND) -> None:
        self.max_behind = max_behind
        self._by_swarm: dict[str, set[Watch]] = {}

    def on_event(self, seq: int, event: ev.Event, board: Board) -> None:
        """The projection's listener: called right after ``event`` is folded into ``board``."""
        watches = self._by_swarm.get(event.swarm)
        if not watches:
            return
        message = live.change(board.swarms.get(event.swarm), seq, event)
        for watch in watches:
            if watch.changes.qsize() >= self.max_behind:
                watch.dropped = True
            if not watch.dropped:
                watch.changes.put_nowait(message)

    @contextmanager
    def watching(self, swarm: str, board: Board, per_status: int = PER_STATUS) -> Iterator[Watch]:
        """A watch of ``swarm`` from ``board`` as it is now (its first view, ``per_status``
        tasks of each status at most) on; the snapshot and the registration happen without a
        pause between them, so no change is missed."""
        watch = Watch(swarm, board, per_status)
        self._by_swarm.setdefault(swarm, set()).add(watch)
        try:
            yield watch
        finally:
            watches = self._by_swarm.get(swarm)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._by_swarm[swarm]

    @property
    def count(self) -> int:
        return sum(len(watches) for watches in self._by_swarm.values())
