"""Publishing to a stream and waiting for its acknowledgement, retrying what is transient.

A publish whose ack did not come (NATS away, a timeout, a stream without a leader for a moment
during a cluster failover) may or may not have landed. Every Swarm publish carries a
``Nats-Msg-Id``, so trying again is safe: the stream keeps one message and acks the retry with
the first one's sequence.
"""

from __future__ import annotations

import asyncio

import nats.errors
from nats.js import JetStreamContext, api
from nats.js.errors import NoStreamResponseError

from schemas.errors import Unavailable

TRANSIENT = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.OutboundBufferLimitError,
    NoStreamResponseError,  # the stream has no leader this moment (failover)
)


async def publish_acked(
    js: JetStreamContext,
    subject: str,
    payload: bytes,
    *,
    stream: str,
    headers: dict[str, str],
    timeout: float = 5.0,
    retry_for: float = 0.0,
    what: str = "the publish",
) -> api.PubAck:
    """Publish and return the ack; keep retrying transient failures for ``retry_for`` seconds,
    then raise ``Unavailable`` naming ``what``. Errors the stream answers with pass through."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + retry_for
    while True:
        try:
            return await js.publish(
                subject, payload, timeout=timeout, stream=stream, headers=headers
            )
        except TRANSIENT as error:
            if loop.time() >= deadline:
                raise Unavailable(
                    f"NATS did not acknowledge {what} on {subject}: {type(error).__name__}"
                ) from error
            await asyncio.sleep(0.2)
