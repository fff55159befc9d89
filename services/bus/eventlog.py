"""Appending to the event log with optimistic concurrency and idempotency.

``append(event, expected_seq=n)`` succeeds only if the last event on the event's aggregate
(``swarm.evt.<swarm>.<aggregate>.<id>.*``) is at sequence ``n`` (0: the aggregate has no events
yet). A writer that lost the race gets ``Conflict``; it re-reads its fold and decides again.
Every append carries a ``Nats-Msg-Id``: the same id appended twice yields one event, and the
second call returns the first one's sequence.
"""

from __future__ import annotations

import asyncio

from nats.js import JetStreamContext
from nats.js.errors import APIError

from schemas import events as ev
from schemas import subjects
from schemas.errors import Conflict, Unavailable
from services.bus.publish import TRANSIENT, publish_acked

WRONG_LAST_SEQUENCE = 10071
NO_MESSAGE_FOUND = 10037


class AppendConflict(Conflict):
    """The aggregate moved on since ``expected_seq``."""

    def __init__(self, subject: str, expected_seq: int, description: str) -> None:
        super().__init__(
            f"{subject}: expected last sequence {expected_seq} no longer holds ({description})"
        )
        self.subject = subject
        self.expected_seq = expected_seq


def headers_for(event: ev.Event, expected_seq: int | None, msg_id: str | None) -> dict[str, str]:
    headers = {"Nats-Msg-Id": msg_id or event.event_id}
    if expected_seq is not None:
        headers["Nats-Expected-Last-Subject-Sequence"] = str(expected_seq)
        headers["Nats-Expected-Last-Subject-Sequence-Subject"] = subjects.aggregate_filter(
            event.swarm, event.aggregate, event.id
        )
    return headers


class EventLog:
    """The writer side of ``SWARM_EVENTS``."""

    def __init__(self, js: JetStreamContext, *, timeout: float = 5.0) -> None:
        self._js = js
        self._timeout = timeout

    async def append(
        self,
        event: ev.Event,
        expected_seq: int | None = None,
        msg_id: str | None = None,
        *,
        retry_for: float = 0.0,
    ) -> int:
        """Append ``event``; return its stream sequence (the original one for a duplicate).

        ``expected_seq=None`` skips the concurrency check (only for events that cannot race).
        ``retry_for`` seconds: keep retrying a publish whose ack was lost or that found NATS
        away; safe because the msg id makes the retry idempotent.
        """
        subject = subjects.event(event.swarm, event.aggregate, event.id, event.verb)
        payload = ev.encode(event)
        headers = headers_for(event, expected_seq, msg_id)
        try:
            ack = await publish_acked(
                self._js,
                subject,
                payload,
                stream=subjects.EVENTS_STREAM,
                headers=headers,
                timeout=self._timeout,
                retry_for=retry_for,
                what="the append",
            )
        except APIError as error:
            if error.err_code != WRONG_LAST_SEQUENCE:
                raise
            original = await self.original_seq(subject, headers["Nats-Msg-Id"], retry_for)
            if original is not None:
                return original
            raise AppendConflict(subject, expected_seq or 0, error.description or "") from error
        return ack.seq

    async def last_seq(self, subject: str) -> int | None:
        """The sequence of the last event on ``subject`` (one subject, no wildcards); None when
        there is none."""
        try:
            last = await self._js.get_last_msg(subjects.EVENTS_STREAM, subject)
        except APIError as error:
            if error.err_code == NO_MESSAGE_FOUND:
                return None
            raise
        return last.seq

    async def original_seq(self, subject: str, msg_id: str, retry_for: float = 0.0) -> int | None:
        """After a conflict: whether it was with our own first try. The server checks the
        expected sequence before the duplicate window (on a cluster), so a retried append whose
        first try landed, its ack lost, comes back as a conflict. If the last event on its
        subject carries the same msg id, that was our first try: return its sequence; None: the
        last event there (if any) is another writer's.

        Not knowing is not a conflict: a stream that cannot answer for now (a failover: no
        leader, "temporarily unavailable") is asked again for ``retry_for`` seconds (at least
        one timeout), then ``Unavailable``. Taking it for a conflict would have the writer give
        up on an event that is in the log: an executor whose ``running`` landed that way never
        ran the task, and nothing else would (issue 15's CI: a node killed mid-run)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(retry_for, self._timeout)
        while True:
            try:
                last = await self._js.get_last_msg(subjects.EVENTS_STREAM, subject)
            except APIError as error:
                if error.err_code == NO_MESSAGE_FOUND:
                    return None
                unknown: Exception = error
            except TRANSIENT as error:
                unknown = error
            else:
                if last.headers and last.headers.get("Nats-Msg-Id") == msg_id:
                    return last.seq
                return None
            if loop.time() >= deadline:
                raise Unavailable(
                    f"NATS could not say whether the append on {subject} landed: "
                    f"{type(unknown).__name__} {unknown}"
                ) from unknown
            await asyncio.sleep(0.2)
