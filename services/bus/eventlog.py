"""Appending to the event log with optimistic concurrency and idempotency.

``append(event, expected_seq=n)`` succeeds only if the last event on the event's aggregate
(``swarm.evt.<swarm>.<aggregate>.<id>.*``) is at sequence ``n`` (0: the aggregate has no events
yet). A writer that lost the race gets ``Conflict``; it re-reads its fold and decides again.
Every append carries a ``Nats-Msg-Id``: the same id appended twice yields one event, and the
second call returns the first one's sequence.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.errors import APIError

from schemas import events as ev
from schemas import subjects
from schemas.errors import Conflict
from services.bus.publish import publish_acked

WRONG_LAST_SEQUENCE = 10071


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
            original = await self._original_seq(subject, headers["Nats-Msg-Id"])
            if original is not None:
                return original
            raise AppendConflict(subject, expected_seq or 0, error.description or "") from error
        return ack.seq

    async def _original_seq(self, subject: str, msg_id: str) -> int | None:
        """The server checks the expected sequence before the duplicate window, so a retried
        append whose first try landed comes back as a conflict. If the last event on its subject
        carries the same msg id, that was our own first try: return its sequence."""
        try:
            last = await self._js.get_last_msg(subjects.EVENTS_STREAM, subject)
        except APIError:
            return None
        if last.headers and last.headers.get("Nats-Msg-Id") == msg_id:
            return last.seq
        return None
