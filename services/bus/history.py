"""Reading what happened: one aggregate's events, a stream read from a position (and followed
live), the board as it was at an earlier point, and a task's output (stored or live chunks).

Every NATS failure here surfaces as ``Unavailable``, so callers map it once (503).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError, ObjectNotFoundError

from schemas import events as ev
from schemas import subjects
from schemas.board import Board
from schemas.errors import Unavailable
from schemas.fold import apply

ATTEMPT_HEADER = "Swarm-Attempt"


@contextmanager
def reachable(what: str) -> Iterator[None]:
    """Turn NATS trouble (away, timed out, no responders) into ``Unavailable``."""
    try:
        yield
    except (nats.errors.Error, TimeoutError, OSError) as error:
        raise Unavailable(f"NATS did not answer ({what}): {type(error).__name__}") from error


@dataclass(frozen=True)
class Record:
    """One stored message: its stream sequence, subject, body, headers and stream time."""

    seq: int
    subject: str
    data: bytes
    time: float
    headers: dict[str, str] = field(default_factory=dict)

    def event(self) -> ev.Event | None:
        try:
            return ev.decode(self.data)
        except msgspec.DecodeError:
            return None


async def aggregate_events(
    js: JetStreamContext, swarm: str, aggregate: str, aggregate_id: str
) -> list[tuple[int, ev.Event]]:
    """Every event of one aggregate in log order (direct gets by subject, no consumer)."""
    subject = subjects.aggregate_filter(swarm, aggregate, aggregate_id)
    found: list[tuple[int, ev.Event]] = []
    seq = 1
    with reachable(f"history of {aggregate} {aggregate_id}"):
        while True:
            try:
                raw = await js.get_msg(
                    subjects.EVENTS_STREAM, seq=seq, subject=subject, next=True, direct=True
                )
            except NotFoundError:
                return found
            assert raw.seq is not None
            if raw.data:
                try:
                    found.append((raw.seq, ev.decode(raw.data)))
                except msgspec.DecodeError:
                    pass
            seq = raw.seq + 1


class Feed:
    """An ordered read of one stream's messages on a subject filter, after position ``after``,
    that keeps following new ones. Use as ``async with Feed(...) as feed``.

    ``caught_up`` turns true once every message that existed when the feed opened was read.
    """

    def __init__(self, js: JetStreamContext, stream: str, subject: str, *, after: int = 0) -> None:
        self._js = js
        self.stream = stream
        self.subject = subject
        self.after = after
        self._queue: asyncio.Queue[Record] = asyncio.Queue()
        self._sub: JetStreamContext.PushSubscription | None = None
        self._end: int | None = None  # the last sequence that existed at open (0: none)
        self._last = after

    async def __aenter__(self) -> Feed:
        config = api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self.after + 1
        )
        if self.after <= 0:
            config = api.ConsumerConfig(deliver_policy=api.DeliverPolicy.ALL)
        with reachable(f"reading {self.subject}"):
            self._sub = await self._js.subscribe(
                self.subject,
                stream=self.stream,
                cb=self._on_msg,
                ordered_consumer=True,
                config=config,
                idle_heartbeat=2.0,
            )
            info = await self._sub.consumer_info()
        if info.num_pending == 0:
            delivered = info.delivered
            self._end = delivered.stream_seq if delivered and delivered.consumer_seq else 0
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:  # the connection is gone already
                pass
            self._sub = None

    async def _on_msg(self, msg: Msg) -> None:
        meta = msg.metadata
        stamp = meta.timestamp.timestamp() if meta.timestamp else 0.0
        record = Record(
            seq=meta.sequence.stream,
            subject=msg.subject,
            data=msg.data,
            time=stamp,
            headers=dict(msg.headers or {}),
        )
        if self._end is None and meta.num_pending == 0:
            self._end = record.seq
        self._queue.put_nowait(record)

    @property
    def position(self) -> int:
        """The sequence of the last record read (``after`` before the first)."""
        return self._last

    @property
    def idle(self) -> bool:
        """No record is waiting to be read."""
        return self._queue.empty()

    async def stored_until(self) -> int:
        """The sequence of the last message stored on this feed's subject now (0: none)."""
        with reachable(f"last message on {self.subject}"):
            try:
                raw = await self._js.get_last_msg(self.stream, self.subject)
            except NotFoundError:
                return 0
        return raw.seq or 0

    @property
    def caught_up(self) -> bool:
        return self._end is not None and self._last >= self._end and self._queue.empty()

    async def next(self, timeout: float | None = None) -> Record | None:
        """The next record, or ``None`` when none came within ``timeout`` seconds."""
        try:
            record = await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None
        self._last = record.seq
        return record

    async def backlog(self, limit: float = 10.0) -> list[Record]:
        """Every record that existed at open (stops early, at ``limit`` seconds, if NATS
        goes quiet)."""
        records: list[Record] = []
        while not self.caught_up:
            record = await self.next(timeout=limit)
            if record is None:
                raise Unavailable(f"reading {self.subject} stalled for {limit}s")
            records.append(record)
        return records


async def board_at(
    js: JetStreamContext, swarm: str, *, seq: int | None = None, until: float | None = None
) -> tuple[Board, float | None]:
    """The fold of ``swarm``'s events up to log position ``seq`` and/or stream time ``until``
    (seconds since the epoch): the board as it was then, and the stream time of the last event
    folded in. ``board.seq`` is that event's position (0: none)."""
    board = Board()
    last_time: float | None = None
    if seq is not None and seq <= 0:
        return board, last_time
    async with Feed(js, subjects.EVENTS_STREAM, subjects.swarm_events(swarm)) as feed:
        while not feed.caught_up:
            record = await feed.next(timeout=10.0)
            if record is None:
                raise Unavailable("reading the event log stalled")
            if (seq is not None and record.seq > seq) or (
                until is not None and record.time > until
            ):
                break
            event = record.event()
            if event is not None:
                apply(board, event, record.seq)
            board.seq = record.seq
            last_time = record.time
    return board, last_time


async def read_output(js: JetStreamContext, name: str) -> bytes | None:
    """A task's full output from the object store (``None`` when it is not there)."""
    with reachable(f"output {name}"):
        try:
            store = await js.object_store(subjects.OUTPUT_STORE)
            result = await store.get(name)
        except (ObjectNotFoundError, NotFoundError):
            return None
    return result.data or b""


def chunk_attempt(record: Record) -> int | None:
    value = record.headers.get(ATTEMPT_HEADER)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


async def log_chunks(
    js: JetStreamContext, swarm: str, task: str, attempt: int | None = None
) -> list[Record]:
    """The live output chunks of ``task`` still in ``SWARM_LOGS`` (of one attempt if given)."""
    async with Feed(js, subjects.LOGS_STREAM, subjects.log(swarm, task)) as feed:
        records = await feed.backlog()
    if attempt is None:
        return records
    return [r for r in records if chunk_attempt(r) in (attempt, None)]
