"""The dispatch work queue (``SWARM_DISPATCH``): claims on their way to the executors.

The scheduler publishes one ``Dispatch`` per claim, on ``swarm.dispatch.<swarm>.<agent>``, once
the claim is in the log. The message id (``Dispatch.msg_id``) names swarm, task and attempt, so
publishing the same claim again (a retry, a new leader re-dispatching after its replay) leaves
one message in the queue.

The executor's side never sees a NATS message: ``agent_consumer`` gives a ``DispatchQueue``
whose ``next`` returns ``DispatchDelivery``s (the decoded ``Dispatch`` and how to settle it) or,
for a message that is not a dispatch, an ``UndecodableDispatch`` to terminate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

from schemas import dispatch as wire
from schemas import subjects
from services.bus.publish import publish_acked


async def publish_dispatch(
    js: JetStreamContext, dispatch: wire.Dispatch, *, timeout: float = 5.0, retry_for: float = 0.0
) -> int:
    """Put ``dispatch`` on the agent's dispatch subject; return its stream sequence (the
    original one for a duplicate). ``retry_for`` seconds: retry while NATS does not answer."""
    subject = subjects.dispatch(dispatch.swarm, dispatch.agent)
    ack = await publish_acked(
        js,
        subject,
        wire.encode(dispatch),
        stream=subjects.DISPATCH_STREAM,
        headers={"Nats-Msg-Id": dispatch.msg_id},
        timeout=timeout,
        retry_for=retry_for,
        what="the dispatch",
    )
    return ack.seq


# --- the executor's side: one durable pull consumer per hosted agent ---------------------------


@dataclass(frozen=True)
class DispatchDelivery:
    """One dispatch taken from an agent's queue, and how to settle it: ``ack`` (done with, or
    dropped), ``nak`` (deliver again, after ``delay`` seconds), ``in_progress`` (still working:
    do not deliver again for another ``ack_wait``)."""

    dispatch: wire.Dispatch
    _msg: Msg = field(repr=False)

    async def ack(self) -> None:
        await self._msg.ack()

    async def nak(self, delay: float | None = None) -> None:
        await self._msg.nak(delay=delay)

    async def in_progress(self) -> None:
        await self._msg.in_progress()


@dataclass(frozen=True)
class UndecodableDispatch:
    """A message on a dispatch subject that is no ``Dispatch`` (``error`` says why): ``term``
    it, so it is never delivered again."""

    error: str
    _msg: Msg = field(repr=False)

    async def term(self) -> None:
        await self._msg.term()


def _delivery(msg: Msg) -> DispatchDelivery | UndecodableDispatch:
    try:
        return DispatchDelivery(wire.decode(msg.data), msg)
    except msgspec.DecodeError as error:
        return UndecodableDispatch(str(error), msg)


class DispatchQueue:
    """One agent's durable pull consumer on ``SWARM_DISPATCH``, handing out typed deliveries."""

    def __init__(self, sub: JetStreamContext.PullSubscription) -> None:
        self._sub = sub

    async def next(
        self, *, batch: int = 1, timeout: float = 2.0
    ) -> list[DispatchDelivery | UndecodableDispatch]:
        """Wait up to ``timeout`` seconds for dispatches; ``[]`` when none came."""
        try:
            messages = await self._sub.fetch(batch, timeout=timeout)
        except nats.errors.TimeoutError:
            return []
        return [_delivery(msg) for msg in messages]

    async def close(self) -> None:
        """Stop fetching (the durable consumer stays, with what is not acked)."""
        await self._sub.unsubscribe()


def consumer_name(swarm: str, agent: str) -> str:
    """The durable consumer serving one agent's dispatches."""
    return f"agent_{swarm}_{agent}"


async def agent_consumer(
    js: JetStreamContext, swarm: str, agent: str, *, ack_wait: float = 30.0
) -> DispatchQueue:
    """Bind (creating it if missing) the agent's durable pull consumer on ``SWARM_DISPATCH``.

    An agent runs one task at a time, and the scheduler claims only for idle agents, so one live
    dispatch is in flight; ``max_ack_pending`` is 2 so that an ack lost in a failover (the
    message comes back after ``ack_wait`` and is dropped as stale) never holds up the agent's
    next dispatch. A message neither acked nor kept ``in_progress`` for ``ack_wait`` seconds is
    delivered again (its executor died)."""
    subject = subjects.dispatch(swarm, agent)
    name = consumer_name(swarm, agent)
    config = api.ConsumerConfig(
        durable_name=name,
        filter_subject=subject,
        deliver_policy=api.DeliverPolicy.ALL,
        ack_policy=api.AckPolicy.EXPLICIT,
        ack_wait=ack_wait,
        max_ack_pending=2,
        max_deliver=-1,
    )
    sub = await js.pull_subscribe(
        subject, durable=name, stream=subjects.DISPATCH_STREAM, config=config
    )
    return DispatchQueue(sub)


async def delete_agent_consumer(js: JetStreamContext, swarm: str, agent: str) -> None:
    """Drop an agent's consumer (the agent is gone); a missing one is fine."""
    try:
        await js.delete_consumer(subjects.DISPATCH_STREAM, consumer_name(swarm, agent))
    except NotFoundError:
        pass
