"""Publishing to a stream and waiting for its acknowledgement, retrying what is transient.

A publish whose ack did not come (NATS away, a timeout, a stream without a leader for a moment
during a cluster failover) may or may not have landed. Every Swarm publish carries a
``Nats-Msg-Id``, so trying again is safe: the stream keeps one message and acks the retry with
the first one's sequence.

``publish_once`` is JetStream's publish with less work per message than nats-py's
``JetStreamContext.publish`` (issue 15: every task's five publishes went through it): the same
request, the same errors, but the acknowledgement decoded by msgspec straight into its fields
instead of ``json.loads`` plus nats-py's dataclass conversion.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import nats.errors
from nats.js import JetStreamContext, api
from nats.js.errors import APIError, NoStreamResponseError

from schemas.errors import Unavailable

TRANSIENT = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.OutboundBufferLimitError,
    NoStreamResponseError,  # the stream has no leader this moment (failover)
)


# A clustered stream's answers that say "not yet", not "no" (nats-server 2.11+): the msg id is
# staged for a proposal still in flight (10158, "duplicate message id is in process"), a write
# expecting a sequence on the same aggregate is in flight (10164, "wrong last sequence" without
# a number: ours from a lost ack, or another writer's), or a new leader cannot check expected
# sequences yet (10163). Nothing was stored; asked again, the stream answers for real once the
# write in flight is applied: a duplicate (our own first try), a conflict, or the ack.
NOT_YET = frozenset({10158, 10163, 10164})
NOT_YET_PATIENCE = 5.0  # seconds a publish is asked again after "not yet", whatever retry_for
NOT_YET_PAUSE = 0.02  # seconds between asks: a proposal in flight is applied in milliseconds


class _Ack(msgspec.Struct):
    """A JetStream publish's answer: the ack's fields, or ``error``."""

    stream: str = ""
    seq: int = 0
    domain: str | None = None
    duplicate: bool | None = None
    error: dict[str, Any] | None = None


_decode_ack = msgspec.json.Decoder(_Ack).decode


async def publish_once(
    js: JetStreamContext,
    subject: str,
    payload: bytes,
    *,
    stream: str,
    headers: dict[str, str],
    timeout: float,
) -> api.PubAck:
    """``js.publish(subject, payload, timeout=, stream=, headers=)``, answering the same: the
    ack, ``NoStreamResponseError`` when no stream listens on ``subject``, the stream's refusal
    as nats-py's ``APIError`` (``APIError.from_error`` raises the subclass for its code)."""
    sent = {**headers, api.Header.EXPECTED_STREAM: stream}
    try:
        msg = await js._nc.request(subject, payload, timeout=timeout, headers=sent)
    except nats.errors.NoRespondersError as error:
        raise NoStreamResponseError from error
    ack = _decode_ack(msg.data)
    if ack.error is not None:
        raise APIError.from_error(ack.error)
    return api.PubAck(stream=ack.stream, seq=ack.seq, domain=ack.domain, duplicate=ack.duplicate)


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
    """Publish and return the ack; keep retrying transient failures for ``retry_for`` seconds
    (a "not yet" from a clustered stream for at least ``NOT_YET_PATIENCE``), then raise
    ``Unavailable`` naming ``what``. Other errors the stream answers with pass through."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + retry_for
    while True:
        try:
            return await publish_once(
                js, subject, payload, timeout=timeout, stream=stream, headers=headers
            )
        except TRANSIENT as error:
            if loop.time() >= deadline:
                raise Unavailable(
                    f"NATS did not acknowledge {what} on {subject}: {type(error).__name__}"
                ) from error
            await asyncio.sleep(0.2)
        except APIError as error:
            if error.err_code not in NOT_YET:
                raise
            if loop.time() >= max(deadline, started + NOT_YET_PATIENCE):
                raise Unavailable(
                    f"NATS could not settle {what} on {subject} yet: {error.description}"
                ) from error
            await asyncio.sleep(NOT_YET_PAUSE)
