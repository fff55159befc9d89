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

A projection may also be kept up to date *on demand* (``Lazily``): it replays as any other,
then follows only the events that need an answer at once (``triggers``, a few subject filters,
each event judged by ``urgent``) and reads the rest of the log in order, in batches, when one of
those arrives, when a writer waits for its own append (``wait_for``), and every ``every``
seconds. The fold is the same board in the same order; only when it is folded
changes. Why (issue 15): with 16 executor processes, each one folding every event of its swarm
as it was stored, every ``task.created`` woke 16 processes on a 2-core machine at the moment the
scheduler needed a core to claim it. Whether to fold on demand may change while it runs
(``Lazily.wanted``, asked again at each ``reconsider``): a catch-up round costs more than
folding its few events as they come, so a process that needs most events at once (an executor
hosting many of its swarm's agents) is better off live.

Reading on: through a pull consumer of its own (acks none, in memory, from the fold's position),
asked for batches with ``no_wait``. Its messages are the live fold's (no headers to parse, the
position in the reply subject): 13 µs of CPU per event here against 49 µs through batched direct
gets, whose every message carries five headers and was waited for one future at a time. Where
the consumer stands is in doubt after any failure (acks none: a batch lost on the way is not
sent again), so a failed read drops it and the next makes a new one at the fold's position; the
server lets an abandoned one go ``CATCH_UP_LINGER`` seconds after its last batch.
"""

from __future__ import annotations

import asyncio
import copy
import heapq
import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import nats.errors
import nats.js.errors
import structlog
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
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

CATCH_UP_BATCH = 256  # events per batch read on demand
CATCH_UP_TIMEOUT = 5.0  # seconds for one batch to arrive
CATCH_UP_LINGER = 30.0  # seconds the server keeps an on-demand reader's consumer unasked
CATCH_UP_RETRY = 0.02  # seconds before reading again for an event not there yet (a replica behind)
SAVE_LINGER = 5.0  # seconds ``stop`` lets a snapshot being saved finish before cancelling it


@dataclass(frozen=True)
class Lazily:
    """How a projection kept up to date on demand follows the log (module doc).

    ``triggers``: subject filters of the events to follow as they are stored; ``urgent(subject,
    data)``: whether such an event makes the fold catch up now (default: all do); ``every``:
    seconds between catch-ups when nothing asks for one; ``wanted()``: whether to fold on demand
    at all just now (default: always), asked once replayed and at each ``reconsider``."""

    triggers: tuple[str, ...]
    urgent: Callable[[str, bytes], bool] | None = None
    every: float = 2.0
    wanted: Callable[[], bool] | None = None


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


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


@dataclass
class _Pull:
    """One batch asked of the catch-up consumer: where its messages come, when it is done."""

    reply: str
    done: asyncio.Future[bool]  # True: more is pending
    count: int = 0


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
        lazily: Lazily | None = None,
    ) -> None:
        """``swarm``: fold one swarm's events only (default: all swarms).
        ``snapshots`` + ``snapshot_every``: start from a snapshot, and save one every N events.
        ``stall_check``: seconds between looks at the consumer behind the fold (``_watch``).
        ``follows``: fold only these aggregates' events (default: every event); such a
        projection saves no snapshot. ``lazily``: once replayed, keep up on demand (``Lazily``);
        not with ``follows``."""
        if lazily is not None and follows:
            raise ValueError("a projection follows some aggregates or is lazy, not both")
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
        self._saving: asyncio.Task[None] | None = None  # a snapshot being saved as the fold goes on
        self._save_lock = asyncio.Lock()
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
        self.lazily = lazily
        self._lazy_live = False  # replayed: following the triggers, reading the rest on demand
        self._catch_up_wanted = asyncio.Event()
        self._wanted_seq = 0  # a sequence someone waits for (a trigger, a waiter)
        self._catcher: asyncio.Task[None] | None = None
        self._switching = asyncio.Lock()  # a catch-up read, or a change of how the fold keeps up
        self.catch_ups = 0  # batches read on demand
        self._puller: str | None = None  # the pull consumer reading on demand (its name)
        self._pull_sub: Subscription | None = None
        self._pull_inbox = ""
        self._pull_token = 0
        self._pull: _Pull | None = None  # the batch asked for
        self._deleting: set[asyncio.Task[None]] = set()
        self.switches = 0  # times it began to keep up live or on demand (after replay)

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
        self._start_watching()
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
        """An ordered consumer from the fold's position on (lazy, once replayed: of the
        triggers only)."""
        config = api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=self.board.seq + 1,
        )
        if self.board.seq == 0:
            config = api.ConsumerConfig(deliver_policy=api.DeliverPolicy.ALL)
        filters = self.filters
        if self._lazy_live and self.lazily is not None:
            filters = list(self.lazily.triggers)
        if filters:
            config.filter_subjects = list(filters)
        sub = await self._js.subscribe(
            filters[0] if filters else self.filter,
            stream=subjects.EVENTS_STREAM,
            cb=self._on_trigger if self._lazy_live else self._on_msg,
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
        await self._unsubscribe()
        self._sub = await self._subscribe()

    async def stop(self) -> None:
        if self._catcher is not None:
            self._catcher.cancel()
            self._catcher = None
        self._drop_puller()
        if self._deleting:
            await asyncio.wait(self._deleting, timeout=2)
        await self._stop_watching()
        await self._unsubscribe()
        await self._stop_saving()

    async def _unsubscribe(self) -> None:
        """End the fold's subscription (what it delivered and was not folded is read again from
        the fold's position by whatever follows)."""
        old, self._sub = self._sub, None
        if old is not None:
            try:
                await old.unsubscribe()
            except Exception:  # gone with the connection, or its state is what went wrong
                pass

    async def wait_ready(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._ready.wait(), timeout)

    async def wait_for(self, seq: int, timeout: float = 5.0) -> None:
        """Return once the fold includes log position ``seq`` (``Unavailable`` after timeout)."""
        if self.board.seq >= seq:
            return
        if self._lazy_live:
            self.catch_up(seq)
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
        await self._fold(seq, msg.subject, msg.data)
        if not self._ready.is_set() and (num_pending == 0 or seq >= self._catch_up_to > 0):
            self._ready.set()
            log.info("projection.caught_up", scope=self.scope, seq=seq)

    async def _fold(self, seq: int, subject: str, data: bytes) -> None:
        """Fold the event stored at ``seq``, tell the listeners, wake the waiters it satisfies,
        save a snapshot when one is due."""
        try:
            event = ev.decode(data)
        except msgspec.DecodeError as error:
            self.undecodable += 1
            self.board.seq = seq
            log.error("projection.undecodable", seq=seq, subject=subject, error=str(error))
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
        waiters = self._waiters
        while waiters and waiters[0][0] <= seq:
            _, _, future = heapq.heappop(waiters)
            if not future.done():
                future.set_result(None)
        if self._snapshots is not None and self._snapshot_every:
            self._since_snapshot += 1
            if (
                self._since_snapshot >= self._snapshot_every
                and self._ready.is_set()
                and self._saving is None
            ):
                self._since_snapshot = 0
                self._saving = asyncio.create_task(self._save_meanwhile())

    # --- kept up to date on demand (``Lazily``) ---------------------------------------------

    @property
    def on_demand(self) -> bool:
        """Whether the fold is kept up to date on demand just now (``Lazily``)."""
        return self._lazy_live

    async def reconsider(self) -> None:
        """Once replayed: fold on demand or live, as ``lazily.wanted()`` now says (a projection
        made without ``lazily`` stays live). Switching either way folds every event once, in
        order: the new subscription starts after the fold's position."""
        if self.lazily is None or not self._ready.is_set():
            return
        if self.lazily.wanted is None or self.lazily.wanted():
            await self.go_lazy()
        else:
            await self.go_live()

    async def go_lazy(self) -> None:
        """Follow the triggers only, and read the rest on demand (a projection made without
        ``lazily`` goes on as it was)."""
        if self.lazily is None or self._lazy_live:
            return
        async with self._switching:
            if self.on_demand:  # another call switched while this one waited
                return
            await self._stop_watching()  # the watchdog would subscribe again meanwhile
            self._lazy_live = True
            await self._unsubscribe()  # what it delivered and we did not fold: read below
            try:
                await self._read_on()  # to the end of the log, then the triggers from there
                self._sub = await self._subscribe()
            except Exception as error:  # NATS away: the watchdog subscribes, the catcher reads
                log.warning("projection.lazy_start_failed", scope=self.scope, error=str(error))
                self.catch_up()
            self._start_watching()
            self._catcher = asyncio.create_task(self._catch_ups(), name=f"catch-up-{self.scope}")
            self._switched("on_demand")

    async def go_live(self) -> None:
        """Back to folding every event as it is stored: the catch-up reads stop between two
        reads, and one subscription delivers everything after the fold's position."""
        if not self._lazy_live:
            return
        async with self._switching:  # no catch-up read is under way while this holds
            if not self.on_demand:  # another call switched while this one waited
                return
            if self._catcher is not None:  # not waited for: it stops at its next look
                self._catcher.cancel()
                self._catcher = None
            self._drop_puller()
            await self._stop_watching()
            self._lazy_live = False
            await self._unsubscribe()
            try:
                self._sub = await self._subscribe()
            except Exception as error:  # NATS away: the watchdog subscribes (``_sub`` is None)
                log.warning("projection.live_start_failed", scope=self.scope, error=str(error))
            self._start_watching()
            self._switched("live")

    def _start_watching(self) -> None:
        self._watchdog = asyncio.create_task(self._watch(), name=f"projection-watch-{self.scope}")

    async def _stop_watching(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
            self._watchdog = None

    def _switched(self, mode: str) -> None:
        self.switches += 1
        log.info("projection.keeps_up", scope=self.scope, mode=mode, seq=self.board.seq)

    def catch_up(self, seq: int = 0) -> None:
        """Read the log on now (at least up to ``seq``, when given: an event known stored)."""
        if seq > self._wanted_seq:
            self._wanted_seq = seq
        self._catch_up_wanted.set()

    async def _on_trigger(self, msg: Msg) -> None:
        seq, _ = position(msg)
        if seq <= self.board.seq or self.lazily is None:
            return
        urgent = self.lazily.urgent
        if urgent is None or urgent(msg.subject, msg.data):
            self.catch_up(seq)

    async def _catch_ups(self) -> None:
        """One reader at a time: on demand, and every ``every`` seconds."""
        assert self.lazily is not None
        every = self.lazily.every
        while True:
            try:  # jittered: processes started together do not all read at the same moment
                await asyncio.wait_for(
                    self._catch_up_wanted.wait(), every * random.uniform(0.5, 1.5)
                )
            except TimeoutError:
                pass
            self._catch_up_wanted.clear()
            try:
                async with self._switching:
                    if asyncio.current_task() is not self._catcher:
                        return  # the fold went live meanwhile (a cancel that came too late)
                    await self._read_on()
            except nats.errors.ConnectionClosedError:  # closed for good: nothing more to read
                return
            except Exception as error:  # NATS away or slow: the next round reads again
                log.debug("projection.catch_up_failed", scope=self.scope, error=str(error))
                await asyncio.sleep(CATCH_UP_RETRY)
                self._catch_up_wanted.set()
                continue
            if self._wanted_seq > self.board.seq:  # stored, not readable here yet (a replica)
                await asyncio.sleep(CATCH_UP_RETRY)
                self._catch_up_wanted.set()

    async def _read_on(self) -> None:
        """Fold everything stored after the fold's position, in order, through this
        projection's pull consumer (module doc, "Reading on"): batches asked for with
        ``no_wait`` until a message says nothing more is pending, or the server that nothing is
        there. Any failure drops the consumer (where it stands is then in doubt); the next read
        makes a new one at the fold's position."""
        try:
            if self._puller is None:
                self._puller = await self._pull_consumer()
            while await self._pull_batch(self._puller):
                pass
        except BaseException:
            self._drop_puller()
            raise

    async def _pull_consumer(self) -> str:
        """A pull consumer from the fold's position on, acks none, in memory on one node."""
        nc = self._js._nc
        self._pull_inbox = nc.new_inbox()
        self._pull_sub = await nc.subscribe(f"{self._pull_inbox}.*", cb=self._on_pulled)
        skip_headers(self._pull_sub)  # the data messages: subject, reply and data only
        config = api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=self.board.seq + 1,
            ack_policy=api.AckPolicy.NONE,
            filter_subject=self.filter,
            inactive_threshold=CATCH_UP_LINGER,
            mem_storage=True,
            num_replicas=1,
        )
        info = await self._js.add_consumer(subjects.EVENTS_STREAM, config=config)
        return info.name

    async def _pull_batch(self, consumer: str) -> bool:
        """Ask for one batch and fold it (``_on_pulled``); whether more is pending."""
        nc = self._js._nc
        loop = asyncio.get_running_loop()
        self._pull_token += 1
        pull = _Pull(f"{self._pull_inbox}.{self._pull_token}", loop.create_future())
        self._pull = pull
        request = json.dumps({"batch": CATCH_UP_BATCH, "no_wait": True}).encode()
        api_subject = f"$JS.API.CONSUMER.MSG.NEXT.{subjects.EVENTS_STREAM}.{consumer}"
        timer = loop.call_later(CATCH_UP_TIMEOUT, _expire, pull.done)
        try:
            await nc.publish(api_subject, request, reply=pull.reply)
            self.catch_ups += 1
            return await pull.done
        except TimeoutError as error:
            raise Unavailable(f"no catch-up batch within {CATCH_UP_TIMEOUT}s") from error
        finally:
            timer.cancel()
            self._pull = None

    async def _on_pulled(self, msg: Msg) -> None:
        """A message of the catch-up consumer: every data message is folded (in order: one
        subscription per consumer; one the server sends after a batch was done too, or it would
        be lost: acks none), and the batch asked for is done at its end."""
        if self._pull_sub is None or msg._sid != self._pull_sub._id:
            return  # a dropped consumer's (the fold moved on without it)
        pull = self._pull
        if msg.headers:  # a status: data messages come without their headers parsed
            if pull is None or msg.subject != pull.reply or pull.done.done():
                return  # the end of an earlier batch
            status = msg.headers.get("Status")
            if status in ("404", "408"):  # nothing (more) stored now
                pull.done.set_result(False)
            elif status is not None:  # 503: the consumer is gone (NATS restarted), or worse
                description = msg.headers.get("Description", "")
                pull.done.set_exception(Unavailable(f"catch-up read: {status} {description}"))
            return
        seq, pending = position(msg)
        if seq > self.board.seq:
            await self._fold(seq, msg.subject, msg.data)
        if pull is None or pull.done.done():
            return
        pull.count += 1
        if pending == 0 or pull.count >= CATCH_UP_BATCH:
            pull.done.set_result(pending > 0)

    def _drop_puller(self) -> None:
        """Forget the pull consumer and its subscription (what it still sends is dropped), both
        ended in the background; the server would let the consumer go by itself
        ``CATCH_UP_LINGER`` seconds after its last batch."""
        consumer, self._puller = self._puller, None
        sub, self._pull_sub = self._pull_sub, None
        if consumer is None and sub is None:
            return
        task = asyncio.get_running_loop().create_task(self._end_puller(consumer, sub))
        self._deleting.add(task)
        task.add_done_callback(self._deleting.discard)

    async def _end_puller(self, consumer: str | None, sub: Subscription | None) -> None:
        try:
            if sub is not None:
                await sub.unsubscribe()
            if consumer is not None:
                await self._js.delete_consumer(subjects.EVENTS_STREAM, consumer)
        except Exception as error:  # NATS away or gone: the consumer goes by itself
            log.debug("projection.consumer_not_deleted", scope=self.scope, error=str(error))

    async def save_snapshot(self) -> bool:
        """Save the board as it is now (one save at a time); whether it was stored. The board is
        copied at once and the copy saved while the fold goes on (``Snapshots.save``)."""
        if self._snapshots is None or self.board.seq == 0 or self.filters:
            return False
        async with self._save_lock:
            return await self._snapshots.save(
                self.scope, self.board, min_gain=max(1, self._snapshot_every // 2)
            )

    async def _save_meanwhile(self) -> None:
        """The snapshot due every ``snapshot_every`` events, saved while the fold goes on: the
        fold does not wait for it (compressing and storing a large board takes a few hundred
        milliseconds, in which a service would see no new event). The next one is due once
        this one is done and another ``snapshot_every`` events have come."""
        try:
            await self.save_snapshot()
        except Exception as error:  # NATS away: the next one is due after more events
            log.warning("projection.snapshot_failed", scope=self.scope, error=str(error))
        finally:
            self._saving = None

    async def _stop_saving(self) -> None:
        """Let a snapshot being saved finish (``SAVE_LINGER`` seconds at most), then cancel it."""
        saving = self._saving
        if saving is None:
            return
        await asyncio.wait({saving}, timeout=SAVE_LINGER)
        saving.cancel()
        await asyncio.gather(saving, return_exceptions=True)
