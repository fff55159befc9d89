"""The service base every Swarm process stands on.

``Service.run()``: connect to NATS, provision, replay the log into a ``Projection`` (from the
newest snapshot), announce readiness once replay has caught up, heartbeat readiness into the
``swarm_services`` bucket (what ``GET /health`` reads), and stop gracefully on SIGTERM/SIGINT.
Subclasses fill ``on_ready`` (start their work) and ``on_stop``.

Replay and the garbage collector: a service process (``Service.main``) replays with Python's
cyclic collector paused, then collects once and freezes what is alive (``gc.freeze``): the board
of a long log is millions of objects that live as long as the process, and a full collection
walking them all took longer than a whole claim (a pause the p99 claim latency showed at 100k
tasks). New objects are collected as usual. Services run inside another process (the tests)
leave the collector alone.

``SWARM_READY_FILE``: a path touched after each heartbeat that NATS stored while the service was
ready; a container health check only compares its age with the clock (no interpreter, no NATS
client started every few seconds, which on a loaded machine took longer than the check's timeout).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import socket
import time
import uuid
from collections.abc import Coroutine
from typing import Any

import msgspec
import structlog
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext, api
from nats.js.kv import KeyValue
from structlog.typing import FilteringBoundLogger

from schemas import subjects
from schemas.errors import SwarmError
from services.bus import logs
from services.bus.connection import NatsOptions, connect
from services.bus.eventlog import EventLog
from services.bus.projection import Lazily, Projection
from services.bus.snapshots import Snapshots
from services.bus.streams import Layout, provision

log = structlog.get_logger("bus.service")

HEARTBEAT_EVERY = 2.0


class Readiness(msgspec.Struct, kw_only=True):
    """One service instance's heartbeat, as stored in the ``swarm_services`` bucket."""

    service: str
    instance: str
    ready: bool
    seq: int
    pid: int
    host: str
    started_at: float
    time: float
    detail: dict[str, Any] = {}


class Bus:
    """A connection plus the JetStream handles every service needs."""

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.events = EventLog(self.js)
        self.snapshots = Snapshots(self.js)
        self._buckets: dict[str, KeyValue] = {}

    @classmethod
    async def connect(cls, options: NatsOptions | None = None, *, name: str = "swarm") -> Bus:
        return cls(await connect(options, name=name))

    async def provision(self, layout: Layout | None = None) -> None:
        await provision(self.js, layout)

    async def kv(self, bucket: str) -> KeyValue:
        if bucket not in self._buckets:
            self._buckets[bucket] = await self.js.key_value(bucket)
        return self._buckets[bucket]

    def projection(
        self,
        *,
        swarm: str | None = None,
        snapshot_every: int = 0,
        follows: tuple[str, ...] | None = None,
        lazily: Lazily | None = None,
    ) -> Projection:
        return Projection(
            self.js,
            swarm=swarm,
            snapshots=self.snapshots,
            snapshot_every=snapshot_every,
            follows=follows,
            lazily=lazily,
        )

    async def close(self) -> None:
        """Drain and close; never raises (with the server gone, closing fails too: a caller
        such as ``swarm doctor`` must still report what it found)."""
        if not self.nc.is_closed:
            try:
                await self.nc.drain()
            except Exception:
                try:
                    await self.nc.close()
                except Exception as error:  # the connection was lost under it
                    log.debug("bus.close_failed", error=str(error))


READ_CONSUMER_LINGER = 2.0  # seconds the server keeps a read's consumer if we cannot delete it
READ_BATCH = 256


async def latest_values(kv: KeyValue, timeout: float = 5.0) -> dict[str, bytes]:
    """The current value of every key in a bucket, read through one consumer on the bucket's
    stream: one consistent view. (Listing the keys and then getting each one asks replicas one
    by one; on a cluster a replica that has not applied the newest write yet answers "no such
    key" for a key just created: a lease just taken looked free.) A read that fails or stalls
    for ``timeout`` seconds raises: an empty answer means an empty bucket.

    Not nats-py's KV watch: its "caught up" marker can come before values already on their way
    (nats-py #842: its pending count is taken after the push consumer started delivering), so a
    read of a full bucket sometimes came back empty (`swarm doctor` saw no services on a
    cluster). A pull consumer delivers nothing until asked, so the pending count its creation
    reports is exactly what there is to read. It is deleted after the read (and would go by
    itself ``READ_CONSUMER_LINGER`` s later): the server takes at most 1,000 consumers on a
    stream, and services read the heartbeats every few seconds."""
    js, stream, prefix = kv._js, kv._stream, kv._pre
    info = await js.add_consumer(
        stream,
        config=api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT,
            ack_policy=api.AckPolicy.NONE,
            filter_subject=f"{prefix}>",
            inactive_threshold=READ_CONSUMER_LINGER,
            mem_storage=True,
            num_replicas=1,
        ),
        timeout=timeout,
    )
    found: dict[str, bytes] = {}
    try:
        remaining = info.num_pending or 0
        if not remaining:
            return found
        sub = await js.pull_subscribe_bind(consumer=info.name, stream=stream)
        try:
            while remaining > 0:
                for msg in await sub.fetch(min(remaining, READ_BATCH), timeout=timeout):
                    remaining -= 1
                    operation = (msg.headers or {}).get("KV-Operation")
                    if operation is None and msg.data:  # DEL and PURGE markers: no value
                        found[msg.subject[len(prefix) :]] = msg.data
        finally:
            await sub.unsubscribe()
        return found
    finally:
        try:
            await js.delete_consumer(stream, info.name)
        except Exception as error:  # NATS away: it goes by itself after the linger
            log.debug("bus.read_consumer_not_deleted", stream=stream, error=str(error))


async def read_readiness(bus: Bus) -> list[Readiness]:
    """Every service heartbeat currently in the bucket. A read that fails (a timeout while a
    NATS node is lost, no leader for the bucket) raises: "nobody heard from" must mean that,
    never "could not look"."""
    kv = await bus.kv(subjects.SERVICES_BUCKET)
    found = []
    for value in (await latest_values(kv)).values():
        try:
            found.append(msgspec.json.decode(value, type=Readiness))
        except msgspec.DecodeError:  # not a heartbeat of ours
            continue
    return found


class Service:
    name = "service"
    folds = True  # False: a thin process that keeps no fold of the log (the MCP server)
    follows: tuple[str, ...] | None = None  # the aggregates its fold follows (None: all)
    owns_process = False  # set by ``main``: it may tune process-wide things (the collector)

    def __init__(
        self,
        *,
        nats: NatsOptions | None = None,
        instance: str | None = None,
        swarm: str | None = None,
        snapshot_every: int = 2000,
    ) -> None:
        self.nats_options = nats or NatsOptions.from_env()
        self.instance = instance or os.environ.get("SWARM_INSTANCE") or uuid.uuid4().hex[:8]
        self.swarm_filter = swarm
        self.snapshot_every = snapshot_every
        self.bus: Bus | None = None
        self.projection: Projection | None = None
        self.started_at = time.time()
        self.stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._beat_now = asyncio.Event()
        self.ready_file = os.environ.get("SWARM_READY_FILE") or None
        self._serving = False  # on_ready has returned
        self.log: FilteringBoundLogger = structlog.get_logger(self.name).bind(
            instance=self.instance
        )

    # --- hooks ------------------------------------------------------------------------------

    async def on_start(self) -> None:
        """Before replay: register listeners on ``self.projection``."""

    async def on_ready(self) -> None:
        """After replay caught up: start serving."""

    async def on_stop(self) -> None:
        """Before the connection closes."""

    def detail(self) -> dict[str, object]:
        """Extra facts for the readiness heartbeat."""
        return {}

    def lazily(self) -> Lazily | None:
        """How the fold keeps up once replayed: None, every event as it is stored; else on
        demand (``projection.Lazily``)."""
        return None

    # --- running ----------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[object, object, None], name: str) -> asyncio.Task[None]:
        """Run a background loop that lives as long as the service."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.append(task)
        return task

    @property
    def ready(self) -> bool:
        if not self.folds:
            return self._serving and self.bus is not None and self.bus.nc.is_connected
        return self.projection is not None and self.projection.ready

    async def _heartbeat(self) -> None:
        assert self.bus is not None
        key = subjects.service_key(self.name, self.instance)
        host = socket.gethostname()
        while not self.stopping.is_set():
            self._beat_now.clear()  # before reading state: a change from now on beats again
            beat = Readiness(
                service=self.name,
                instance=self.instance,
                ready=self.ready,
                seq=self.projection.seq if self.projection else 0,
                pid=os.getpid(),
                host=host,
                started_at=self.started_at,
                time=time.time(),
                detail=self.detail(),
            )
            try:
                kv = await self.bus.kv(subjects.SERVICES_BUCKET)
                await kv.put(key, msgspec.json.encode(beat))
            except Exception as error:  # NATS away: try again next beat
                self.log.debug("service.heartbeat_failed", error=str(error))
            else:
                if beat.ready:
                    self._touch_ready_file()
            try:
                await asyncio.wait_for(self._beat_now.wait(), HEARTBEAT_EVERY)
            except TimeoutError:
                pass

    def _touch_ready_file(self) -> None:
        if self.ready_file is None:
            return
        try:
            with open(self.ready_file, "a"):
                os.utime(self.ready_file)
        except OSError as error:
            self.log.warning("service.ready_file_failed", path=self.ready_file, error=str(error))

    def beat_now(self) -> None:
        """Send the next readiness heartbeat at once (readiness changed)."""
        self._beat_now.set()

    async def start(self) -> None:
        self.bus = await Bus.connect(self.nats_options, name=f"{self.name}-{self.instance}")
        await self.bus.provision()
        if self.folds:
            self.projection = self.bus.projection(
                swarm=self.swarm_filter,
                snapshot_every=self.snapshot_every,
                follows=self.follows,
                lazily=self.lazily(),
            )
        await self.on_start()
        self.spawn(self._heartbeat(), "heartbeat")
        if self.projection is not None:
            paused = self.owns_process and gc.isenabled()
            if paused:
                gc.disable()
            try:
                await self.projection.start()
                await self.projection.wait_ready()
                await self.projection.reconsider()  # live or on demand (``lazily``)
            finally:
                if paused:
                    gc.collect()
                    gc.freeze()  # the board replayed so far: never walked again
                    gc.enable()
        self.log.info(
            "service.ready",
            seq=self.projection.seq if self.projection else None,
            from_snapshot=self.projection.started_from if self.projection else None,
            nats=self.nats_options.display,
        )
        await self.on_ready()
        self._serving = True
        self.beat_now()

    async def stop(self) -> None:
        self.stopping.set()
        self._beat_now.set()
        try:
            await self.on_stop()
        except Exception:
            self.log.exception("service.on_stop_failed")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.bus is not None:
            try:
                kv = await self.bus.kv(subjects.SERVICES_BUCKET)
                await asyncio.wait_for(kv.delete(subjects.service_key(self.name, self.instance)), 2)
            except Exception:
                pass
            if self.projection is not None:
                await self.projection.stop()
            await self.bus.close()
        self.log.info("service.stopped")

    async def run(self) -> None:
        """Start, serve until SIGTERM/SIGINT (or ``stopping`` is set), then stop."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.stopping.set)
            except (NotImplementedError, RuntimeError):
                pass
        try:
            await self.start()
            await self.stopping.wait()
        finally:
            await self.stop()

    # --- command line -----------------------------------------------------------------------

    @classmethod
    def arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Subclasses add their own flags."""

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Service:
        return cls(nats=NatsOptions.from_env(args.nats_url))

    @classmethod
    def main(cls, argv: list[str] | None = None) -> int:
        parser = argparse.ArgumentParser(
            prog=f"python -m services.{cls.name}", description=cls.__doc__
        )
        parser.add_argument(
            "--nats-url", default=None, help="NATS server(s), comma separated (env NATS_URL)"
        )
        cls.arguments(parser)
        args = parser.parse_args(argv)
        logs.configure(cls.name)
        try:
            service = cls.from_args(args)
            service.owns_process = True
            asyncio.run(service.run())
        except SwarmError as error:
            structlog.get_logger(cls.name).error("service.unavailable", error=error.message)
            return 2
        return 0
