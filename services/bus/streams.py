"""Provisioning: the streams, KV buckets and object store Swarm needs. Idempotent and safe when
several processes start at once (each create that loses the race finds the winner's)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from dataclasses import dataclass

import structlog
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext, api
from nats.js.errors import APIError, BadRequestError, BucketNotFoundError, NotFoundError

from schemas import subjects

log = structlog.get_logger("bus.streams")

DAY = 24 * 3600.0
# A cluster still forming: no JetStream meta leader yet (requests time out), not enough peers
# known yet for the replicas asked (10005), JetStream temporarily unavailable (10008).
FORMING_CODES = frozenset({10005, 10008})
FORMING_PATIENCE = 30.0  # seconds provisioning waits for a forming cluster


@dataclass(frozen=True)
class Layout:
    """Sizes and replicas. ``replicas`` is 1 on one node, 3 on a cluster (``SWARM_REPLICAS``)."""

    replicas: int = 1
    duplicate_window: float = 2 * 60.0
    logs_max_age: float = 7 * DAY
    logs_max_bytes: int = 1 << 30
    chat_max_age: float = 0.0  # keep chat forever
    presence_ttl: float = 60.0
    services_ttl: float = 30.0

    @classmethod
    def from_env(cls) -> Layout:
        return cls(replicas=int(os.environ.get("SWARM_REPLICAS", "1")))


# Streams acknowledged before their writes reach the disk, on one node: live output chunks only
# (best effort; the whole output is kept in the object store). Every other stream fsyncs each
# message, and ``swarm doctor`` fails any other that does not.
ASYNC_ON_ONE_NODE = frozenset({subjects.LOGS_STREAM})


def persist_mode(name: str, layout: Layout) -> api.PersistMode | None:
    """``async`` for a stream of ``ASYNC_ON_ONE_NODE`` on one node; else the default (fsync)."""
    if name in ASYNC_ON_ONE_NODE and layout.replicas == 1:
        return api.PersistMode.ASYNC
    return None


def stream_configs(layout: Layout) -> list[api.StreamConfig]:
    file = api.StorageType.FILE
    return [
        api.StreamConfig(
            name=subjects.EVENTS_STREAM,
            description="Swarm's event log: append-only, every state change.",
            subjects=[subjects.EVENTS_ALL],
            retention=api.RetentionPolicy.LIMITS,
            storage=file,
            num_replicas=layout.replicas,
            duplicate_window=layout.duplicate_window,
            deny_delete=True,
            deny_purge=True,
            allow_direct=True,
        ),
        api.StreamConfig(
            name=subjects.CHAT_STREAM,
            description="Swarm chat messages.",
            subjects=[subjects.CHAT_ALL],
            retention=api.RetentionPolicy.LIMITS,
            storage=file,
            num_replicas=layout.replicas,
            duplicate_window=layout.duplicate_window,
            max_age=layout.chat_max_age,
            allow_direct=True,
        ),
        api.StreamConfig(
            name=subjects.LOGS_STREAM,
            description="Live task output chunks (bounded).",
            subjects=[subjects.LOGS_ALL],
            retention=api.RetentionPolicy.LIMITS,
            storage=file,
            num_replicas=layout.replicas,
            max_age=layout.logs_max_age,
            max_bytes=layout.logs_max_bytes,
            discard=api.DiscardPolicy.OLD,
            # live chunks are best effort (the whole output is kept in the object store): acked
            # before they reach the disk, written in batches, no fsync each (one node only)
            persist_mode=persist_mode(subjects.LOGS_STREAM, layout),
        ),
    ]


def bucket_configs(layout: Layout) -> list[api.KeyValueConfig]:
    file = api.StorageType.FILE
    return [
        api.KeyValueConfig(
            bucket=subjects.PRESENCE_BUCKET,
            description="Agent presence: refreshed by executors, read by the scheduler.",
            ttl=layout.presence_ttl,
            storage=file,
            replicas=layout.replicas,
        ),
        api.KeyValueConfig(
            bucket=subjects.SERVICES_BUCKET,
            description="Service readiness heartbeats, read by /health.",
            ttl=layout.services_ttl,
            storage=file,
            replicas=layout.replicas,
        ),
        api.KeyValueConfig(
            bucket=subjects.SNAPSHOTS_BUCKET,
            description="Snapshots of the fold, tagged with the last sequence they include.",
            history=1,
            storage=file,
            replicas=layout.replicas,
            max_value_size=64 << 20,
        ),
        api.KeyValueConfig(
            bucket=subjects.LEADER_BUCKET,
            description="The scheduler's leader lease.",
            history=1,
            storage=file,
            replicas=layout.replicas,
        ),
        api.KeyValueConfig(
            bucket=subjects.INBOX_BUCKET,
            description="Per-agent unread chat mentions.",
            history=1,
            storage=file,
            replicas=layout.replicas,
        ),
    ]


async def _ensure_stream(js: JetStreamContext, config: api.StreamConfig) -> None:
    assert config.name is not None  # every config above names its stream
    try:
        info = await js.stream_info(config.name)
        # a stream's persist mode is fixed when it is made (the server refuses to change it):
        # a stream made before Swarm set one keeps its own
        await js.update_stream(dataclasses.replace(config, persist_mode=info.config.persist_mode))
        return
    except NotFoundError:
        pass
    try:
        await js.add_stream(config)
    except BadRequestError as error:
        if error.err_code != 10058:  # stream name already in use: another process won the race
            raise


async def _ensure_bucket(js: JetStreamContext, config: api.KeyValueConfig) -> None:
    try:
        await js.key_value(config.bucket)
        return
    except BucketNotFoundError:
        pass
    try:
        await js.create_key_value(config)
    except BadRequestError as error:
        if error.err_code != 10058:
            raise


def cluster_forming(error: Exception) -> bool:
    """Whether a JetStream API error means "not yet" (a cluster electing its meta leader or
    still meeting its peers) rather than "no"."""
    if isinstance(error, NatsTimeoutError):
        return True
    return isinstance(error, APIError) and error.err_code in FORMING_CODES


async def provision(
    js: JetStreamContext, layout: Layout | None = None, *, patience: float = FORMING_PATIENCE
) -> None:
    """Create or update every stream and bucket; safe to call from every process at start.
    A cluster still forming (every node just started) is waited for up to ``patience`` s."""
    layout = layout or Layout.from_env()
    deadline = time.monotonic() + patience
    while True:
        try:
            await _provision(js, layout)
            return
        except (NatsTimeoutError, APIError) as error:
            if not cluster_forming(error) or time.monotonic() > deadline:
                raise
            log.info("bus.provision_waiting_for_cluster", error=str(error))
            await asyncio.sleep(0.5)


async def _ensure_object_store(
    js: JetStreamContext, store: str, description: str, layout: Layout
) -> None:
    try:
        await js.object_store(store)
        return
    except (NotFoundError, BucketNotFoundError):
        pass
    try:
        await js.create_object_store(
            store,
            config=api.ObjectStoreConfig(
                description=description, storage=api.StorageType.FILE, replicas=layout.replicas
            ),
        )
    except BadRequestError as error:
        if error.err_code != 10058:  # another process created it meanwhile
            raise


async def _provision(js: JetStreamContext, layout: Layout) -> None:
    for config in stream_configs(layout):
        await _ensure_stream(js, config)
    for bucket in bucket_configs(layout):
        await _ensure_bucket(js, bucket)
    for store, description in (
        (subjects.OUTPUT_STORE, "Full task outputs."),
        (subjects.SNAPSHOT_STORE, "Snapshots of the fold too large for a KV value."),
    ):
        await _ensure_object_store(js, store, description, layout)
    log.debug("bus.provisioned", replicas=layout.replicas)
