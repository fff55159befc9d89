"""Replay then follow: the fold of the event log, kept live.

A ``Projection`` starts from the newest snapshot (if any), replays the rest of ``SWARM_EVENTS``
through an ordered consumer, and keeps following. It knows the last sequence it applied, so a
writer can ``wait_for(seq)`` after an append: the basis of read-your-writes.

A projection may follow only some aggregates' events (``follows``, e.g. agents and swarms: what
an executor process's placement reads). It starts from the same snapshot (a fold of everything,
a superset; one that does not follow tasks reads it without the tasks, most of a long history)
and never saves one (its board is not the scope's whole fold). With 16 executor
processes, each folding every task event twice (its placement's fold and its swarm's), one task
woke 32 folds on a 2-core machine; placement's fold now sees agent and swarm events only.
"""

from __future__ import annotations

import asyncio
import copy
import heapq
from collections.abc import Awaitable, Callable

import msgspec
import nats.js.errors
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from schemas import events as ev
from schemas import subjects
from schemas.board import Board
from schemas.errors import Unavailable
from schemas.fold import apply
from services.bus.connection import skip_headers
from services.bus.snapshots import Snapshots

log = structlog.get_logger("bus.projection")

STALL_CHECK = 5.0  # seconds between the watchdog's looks at the fold's consumer

Listener = Callable[[int, ev.Event, Board], Awaitable[None] | None]


def position(msg: Msg) -> tuple[int, int]:
    """The stream sequence and the number still pending, read straight from the ack subject
    (``$JS.ACK.[<domain>.<hash>.]<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>…``).
    nats-py's ``msg.metadata`` builds objects and a datetime for every message: half of the
    projection's own cost per event, for two numbers."""
    tokens = (msg.reply or "").split(".")
    if len(tokens) == 9:  # the short (v1) form
        return int(tokens[5]), int(tokens[8])
    if len(tokens) >= 11:
        return int(tokens[7]), int(tokens[10])
    meta = msg.metadata  # anything else: let nats-py say what it is
    return meta.sequence.stream, meta.num_pending


def _expire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class Projection:
    def __init__(
        self,
        js: JetStreamContext,
        *,
        swarm: str | None = None,
        snapshots: Snapshots | None = None,
        snapshot_every: int = 0,
        stall_check: float = STALL_CHECK,
        follows: tuple[str, ...] | None = None,
    ) -> None:
        """``swarm``: fold one swarm's events only (default: all swarms).
        ``snapshots`` + ``snapshot_every``: start from a snapshot, and save one every N events.
        ``stall_check``: seconds between looks at the consumer behind the fold (``_watch``).
        ``follows``: fold only these aggregates' events (default: every event); such a
        projection saves no snapshot."""
        self._js = js
        self.scope = swarm or "all"
        self.filter = subjects.swarm_events(swarm) if swarm else subjects.EVENTS_ALL
        self.filters = [subjects.aggregate_events(swarm, kind) for kind in follows or ()]
        self.folds_tasks = not follows or "task" in follows
        if follows:
            snapshot_every = 0
        self.board = Board()
        self._snapshots = snapshots
        self._snapshot_every = snapshot_every
        self._since_snapshot = 0
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._waiter_count = 0
        self._listeners: list[Listener] = []
        self._ready = asyncio.Event()
        self._sub: JetStreamContext.PushSubscription | None = None
        self._stall_check = stall_check
        self._watchdog: asyncio.Task[None] | None = None
        self.resubscribed = 0  # times the watchdog had to subscribe again
        self.started_from = 0  # the snapshot sequence replay started after
        self.undecodable = 0

    @property
    def seq(self) -> int:
        return self.board.seq

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def listen(self, listener: Listener) -> None:
        """Call ``listener(seq, event, board)`` after each event is folded in (also in replay)."""
        self._listeners.append(listener)

    async def start(self) -> None:
        if self._snapshots is not None:
            snapshot = await self._snapshots.load(self.scope, tasks=self.folds_tasks)
            if snapshot is not None:
                self.board = snapshot
                self.started_from = snapshot.seq
        self._sub = await self._subscribe()
        self._watchdog = asyncio.create_task(self._watch(), name=f"projection-watch-{self.scope}")
        info = await self._sub.consumer_info()
        if info.num_pending == 0:
            last = info.delivered
            delivered = last.consumer_seq if last is not None else 0
            target = last.stream_seq if last is not None and delivered else 0
            if not delivered or self.board.seq >= target:
                self._ready.set()
            else:
                self._catch_up_to = target  # delivered already, still in our queue
        log.debug("projection.started", scope=self.scope, from_seq=self.board.seq)

    async def _subscribe(self) -> JetStreamContext.PushSubscription:
        """An ordered consumer from the fold's position on."""
        config = api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=self.board.seq + 1,
        )
        if self.board.seq == 0:
            config = api.ConsumerConfig(deliver_policy=api.DeliverPolicy.ALL)
        if self.filters:
            config.filter_subjects = list(self.filters)
        sub = await self._js.subscribe(
            self.filters[0] if self.filters else self.filter,
            stream=subjects.EVENTS_STREAM,
            cb=self._on_msg,
            ordered_consumer=True,
            config=config,
            pending_msgs_limit=1 << 20,
            idle_heartbeat=0.5,
        )
        skip_headers(sub)  # the fold reads the reply subject and the data, never the headers
        return sub

    async def _watch(self) -> None:
        """nats-py re-creates an ordered consumer that stopped (heartbeats missed, NATS
        restarted), but the task doing that ends for good when a re-creation raises in the middle
        of a reconnect, and the fold then waits for ever (found by the chaos test: three NATS
        restarts in 9 s left the scheduler's fold behind the log, agents looking busy, no claim
        for minutes). So every ``stall_check`` seconds: when the consumer is gone, or has events
        for us while the fold has not moved since the last look, subscribe again after the fold's
        position (events already folded are skipped, so this never applies one twice)."""
        last_seq = -1
        while True:
            await asyncio.sleep(self._stall_check)
            try:
                if self._sub is None:  # a resubscribe failed: NATS away; try again
                    self._sub = await self._subscribe()
                    continue
                try:
                    info = await self._sub.consumer_info()
                    stalled = bool(info.num_pending) and self.board.seq == last_seq
                except nats.js.errors.NotFoundError:
                    stalled = True
                if stalled:
                    await self._resubscribe()
            except Exception as error:  # NATS away or slow: the connection reconnects by itself
                log.debug("projection.watch_failed", scope=self.scope, error=str(error))
            last_seq = self.board.seq

    async def _resubscribe(self) -> None:
        log.warning("projection.resubscribing", scope=self.scope, seq=self.board.seq)
        self.resubscribed += 1
        old, self._sub = self._sub, None
        if old is not None:
            try:
                await old.unsubscribe()
            except Exception:  # its connection state is what went wrong
                pass
        self._sub = await self._subscribe()

    async def stop(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:  # already gone with the connection
                pass
            self._sub = None

    async def wait_ready(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._ready.wait(), timeout)

    async def wait_for(self, seq: int, timeout: float = 5.0) -> None:
        """Return once the fold includes log position ``seq`` (``Unavailable`` after timeout)."""
        if self.board.seq >= seq:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._waiter_count += 1
        heapq.heappush(self._waiters, (seq, self._waiter_count, future))
        timer = loop.call_later(timeout, _expire, future)  # one timer: no asyncio.wait_for
        try:
            await future
        except TimeoutError as error:
            raise Unavailable(
                f"the event log did not deliver sequence {seq} within {timeout}s"
            ) from error
        finally:
            timer.cancel()

    def copy_board(self) -> Board:
        return copy.deepcopy(self.board)

    _catch_up_to = 0

    async def _on_msg(self, msg: Msg) -> None:
        seq, num_pending = position(msg)
        if seq <= self.board.seq:
            return  # already in the snapshot
        try:
            event = ev.decode(msg.data)
        except msgspec.DecodeError as error:
            self.undecodable += 1
            self.board.seq = seq
            log.error("projection.undecodable", seq=seq, subject=msg.subject, error=str(error))
            event = None
        if event is not None:
            apply(self.board, event, seq)
            for listener in self._listeners:
                try:
                    result = listener(seq, event, self.board)
                    if result is not None:
                        await result
                except Exception:
                    log.exception("projection.listener_failed", seq=seq, type=event.type)
        if not self._ready.is_set() and (num_pending == 0 or seq >= self._catch_up_to > 0):
            self._ready.set()
            log.info("projection.caught_up", scope=self.scope, seq=seq)
        waiters = self._waiters
        while waiters and waiters[0][0] <= seq:
            _, _, future = heapq.heappop(waiters)
            if not future.done():
                future.set_result(None)
        if self._snapshots is not None and self._snapshot_every:
            self._since_snapshot += 1
            if self._since_snapshot >= self._snapshot_every and self._ready.is_set():
                self._since_snapshot = 0
                await self.save_snapshot()

    async def save_snapshot(self) -> bool:
        if self._snapshots is None or self.board.seq == 0 or self.filters:
            return False
        return await self._snapshots.save(
            self.scope, self.board, min_gain=max(1, self._snapshot_every // 2)
        )
