"""The scheduler process: thin I/O around ``decide``.

- Follows the log (the service base's projection) and agent presence (``PresenceWatch``).
- Holds the leader lease or stands by (``LeaderLease``); only the leader decides.
- Event-driven: every folded event wakes the decide loop, which decides for the swarms that
  changed and appends the decisions concurrently; a reconcile tick (a fraction of the lease)
  re-decides every swarm, which also catches ``retry_at`` and presence running out.
- An aggregate with an append in flight is left out of decisions until that append is folded
  back; after a lost race (``AppendConflict``), until the event that beat it is folded, and
  then it is decided again on the newer board.
- Events it appends say ``actor: scheduler:<instance>``.
- A claim needs no dispatch message: the executor hosting the agent follows the log and runs
  what its agents are claimed for.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import time
from collections.abc import Coroutine

from schemas import events as ev
from schemas import subjects
from schemas.board import Board
from services.bus.connection import NatsOptions
from services.bus.eventlog import AppendConflict
from services.bus.leases import LeaderLease
from services.bus.presence import PresenceWatch
from services.bus.service import Service
from services.scheduler.decide import Config, Decision, OpenTasks, decide
from services.scheduler.free_agents import FreeAgents

# events that can change what the scheduler would decide
_RELEVANT = (ev.TaskEvent, ev.AgentEvent, ev.SwarmEvent)
# ... but need no round of their own: a claim (the scheduler's own, folded back) and the start of
# a run take no agent off work and make no task claimable, finished or unblocked. Their swarm is
# decided again with the next round (any other event, or the reconcile tick).
_QUIET = (ev.TaskClaimed, ev.TaskRunning)


def _context(event: ev.Event) -> dict[str, object]:
    """What a log line about ``event`` carries: swarm, task or agent, and the facts that matter."""
    context: dict[str, object] = {"swarm": event.swarm, event.aggregate: event.id}
    if event.correlation_id:
        context["correlation_id"] = event.correlation_id
    for name in ("agent", "attempt", "reason", "retry_at"):
        value = getattr(event, name, None)
        if value is not None:
            context[name] = value
    return context


class Scheduler(Service):
    """Swarm scheduler: matches pending tasks to idle agents; unblocks, requeues, follows up."""

    name = "scheduler"

    def __init__(
        self,
        *,
        config: Config | None = None,
        reconcile_every: float | None = None,
        nats: NatsOptions | None = None,
        instance: str | None = None,
        swarm: str | None = None,
        snapshot_every: int = 2000,
    ) -> None:
        super().__init__(nats=nats, instance=instance, swarm=swarm, snapshot_every=snapshot_every)
        base = config or Config()
        if base.actor == "scheduler":
            base = dataclasses.replace(base, actor=f"scheduler:{self.instance}")
        self.config = base
        self.reconcile_every = reconcile_every or min(1.0, self.config.lease / 4)
        self.lease: LeaderLease | None = None
        self.presence: PresenceWatch | None = None
        self.rounds = 0  # decide rounds run as leader
        self.appended = 0
        self._wake = asyncio.Event()
        self._dirty: set[str] = set()
        self._all_dirty = True
        # aggregates left out of decisions: key -> (aggregate whose version to watch, the
        # version it must reach; 0 while the append is still on its way)
        self._in_flight: dict[str, tuple[str, int]] = {}
        self._appends: set[asyncio.Task[None]] = set()
        self._open = OpenTasks()  # the tasks decide looks at, kept in step with the fold
        self._free = FreeAgents()  # the agents a claim may go to, likewise (once replayed)

    @property
    def lease_key(self) -> str:
        """One leader for all swarms, or one per swarm for a scheduler scoped to a swarm."""
        return "scheduler" if self.swarm_filter is None else f"scheduler.{self.swarm_filter}"

    @property
    def leader(self) -> bool:
        return self.lease is not None and self.lease.held

    @property
    def ready(self) -> bool:
        """Replay caught up and the leader lease looked at once (held here, or by another): before
        that a scheduler neither decides nor knows it stands by, and a readiness heartbeat saying
        "ready" let ``swarm doctor`` see two ready schedulers and no leader."""
        return super().ready and self.lease is not None and self.lease.checked

    def detail(self) -> dict[str, object]:
        return {"leader": self.leader, "rounds": self.rounds, "appended": self.appended}

    # --- life -------------------------------------------------------------------------------

    async def on_start(self) -> None:
        assert self.projection is not None
        self.projection.listen(self._on_event)

    async def on_ready(self) -> None:
        assert self.bus is not None and self.projection is not None
        # the replay may have begun from a snapshot: build it whole; ``_on_event`` keeps it
        self._open = OpenTasks.of_board(self.projection.board)
        self._free = FreeAgents.of_board(self.projection.board)
        self.presence = PresenceWatch(
            self.bus.nc,
            swarm=self.swarm_filter,
            on_change=lambda key: self._wake.set(),
        )
        await self.presence.start()
        self.lease = LeaderLease(
            await self.bus.kv(subjects.LEADER_BUCKET),
            self.lease_key,
            self.instance,
            self.config.lease,
        )
        self.spawn(self._lead(), "leader")
        self.spawn(self._decide_loop(), "decide")
        self.spawn(self._reconcile(), "reconcile")

    async def on_stop(self) -> None:
        for task in list(self._appends):
            task.cancel()
        await asyncio.gather(*self._appends, return_exceptions=True)
        if self.lease is not None:
            await self.lease.release()
        if self.presence is not None:
            await self.presence.stop()

    # --- following the log ------------------------------------------------------------------

    def _on_event(self, seq: int, event: ev.Event, board: Board) -> None:
        self._open.track(board, event)
        if self.projection is None or not self.projection.ready:
            return  # replaying: everything is decided once caught up
        self._free.track(board, event)
        if not isinstance(event, _RELEVANT):
            return
        self._dirty.add(event.swarm)
        if not isinstance(event, _QUIET):
            self._wake.set()

    # --- leadership -------------------------------------------------------------------------

    async def _lead(self) -> None:
        assert self.lease is not None
        was_leader = False
        while not self.stopping.is_set():
            was_ready = self.ready
            try:
                await self.lease.hold()
            except Exception as error:  # NATS away: the lease lapses by itself
                self.log.warning("scheduler.lease_unreachable", error=str(error))
            if self.ready != was_ready:
                self.beat_now()
            if self.lease.held and not was_leader:
                self.log.info("scheduler.leading", lease_seconds=self.config.lease)
                self._take_over()
            elif was_leader and not self.lease.held:
                self.log.warning("scheduler.standing_by", holder=self.lease.holder)
            was_leader = self.lease.held
            try:
                await asyncio.wait_for(self.stopping.wait(), self.config.lease / 3)
            except TimeoutError:
                pass

    def _take_over(self) -> None:
        """A new leader: everything gets a fresh look."""
        self._in_flight.clear()
        self._all_dirty = True
        self._wake.set()
        self.beat_now()

    async def _reconcile(self) -> None:
        while not self.stopping.is_set():
            try:
                await asyncio.wait_for(self.stopping.wait(), self.reconcile_every)
            except TimeoutError:
                self._all_dirty = True
                self._wake.set()

    # --- deciding ---------------------------------------------------------------------------

    async def _decide_loop(self) -> None:
        while not self.stopping.is_set():
            await self._wake.wait()
            self._wake.clear()
            if not self.leader:
                continue
            try:
                self._round()
            except Exception:
                self.log.exception("scheduler.round_failed")

    def _round(self) -> None:
        assert self.projection is not None and self.presence is not None
        board = self.projection.board
        versions = board.versions
        for key, (watched, version) in list(self._in_flight.items()):
            if version and versions.get(watched, 0) >= version:
                del self._in_flight[key]
        swarms = None if self._all_dirty else self._dirty
        self._all_dirty = False
        self._dirty = set()
        decisions = decide(
            board,
            time.time(),
            self.config,
            self.presence.heard(),
            in_flight=self._in_flight,
            swarms=swarms,
            open_tasks=self._open,
            free_agents=self._free,
            check_cycles=swarms is None,  # on the reconcile rounds: cycles are rare
            check_presence=swarms is None,  # likewise lost agents (tasks waiting: always)
        )
        self.rounds += 1
        for decision in decisions:
            for key in decision.keys:
                self._in_flight[key] = (decision.key, 0)
            self._start(self._append(decision))

    def _start(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.create_task(coro)
        self._appends.add(task)
        task.add_done_callback(self._appends.discard)

    async def _append(self, decision: Decision) -> None:
        assert self.bus is not None
        event = decision.event
        try:
            seq = await self.bus.events.append(
                event, decision.expected_seq, decision.msg_id, retry_for=2.0
            )
        except AppendConflict:
            # lost a race: decide again once the board shows what beat us
            self.log.debug("scheduler.lost_race", type=event.type, **_context(event))
            self._settle(decision, decision.expected_seq + 1)
            return
        except Exception as error:
            # NATS away or refusing: free the aggregates; the reconcile tick tries again
            self.log.warning(
                "scheduler.append_failed", type=event.type, error=str(error), **_context(event)
            )
            for key in decision.keys:
                self._in_flight.pop(key, None)
            return
        self.appended += 1
        # a claim is the bulk of the appends, and the executor's result line names its agent and
        # attempt: at debug (issue 15: a log line cost a quarter of a claim); the rest at info
        say = self.log.debug if isinstance(event, ev.TaskClaimed) else self.log.info
        say(event.type, seq=seq, **_context(event))
        self._settle(decision, seq)

    def _settle(self, decision: Decision, version: int) -> None:
        """Keep the decision's aggregates out of decisions until the board's version of its
        aggregate reaches ``version`` (our event, or the one that beat us, is folded)."""
        assert self.projection is not None
        if self.projection.board.versions.get(decision.key, 0) >= version:
            for key in decision.keys:
                self._in_flight.pop(key, None)
            self._dirty.add(decision.event.swarm)
            self._wake.set()
        else:  # the fold will get there; its event wakes the loop
            for key in decision.keys:
                self._in_flight[key] = (decision.key, version)

    # --- command line -----------------------------------------------------------------------

    @classmethod
    def arguments(cls, parser: argparse.ArgumentParser) -> None:
        # argparse runs a default given as a string (from the environment) through ``type``
        # too, so a bad variable is reported like a bad flag
        parser.add_argument(
            "--lease-seconds",
            type=float,
            default=os.environ.get("SWARM_LEASE_SECONDS") or 10.0,
            help="agent presence and leader lease, seconds (env SWARM_LEASE_SECONDS, default 10)",
        )
        parser.add_argument(
            "--max-run-losses",
            "--max-attempts",
            dest="max_run_losses",
            type=int,
            default=os.environ.get("SWARM_MAX_RUN_LOSSES")
            or os.environ.get("SWARM_MAX_ATTEMPTS")
            or 3,
            help="runs lost with their agent before a task fails (env SWARM_MAX_RUN_LOSSES, "
            "formerly SWARM_MAX_ATTEMPTS; default 3)",
        )
        parser.add_argument(
            "--max-run-failures",
            type=int,
            default=os.environ.get("SWARM_MAX_RUN_FAILURES") or 1,
            help="runs that fail on their own before a task fails; 1: no retry "
            "(env SWARM_MAX_RUN_FAILURES, default 1)",
        )
        parser.add_argument(
            "--max-interruptions",
            type=int,
            default=os.environ.get("SWARM_MAX_INTERRUPTIONS") or 20,
            help="claims lost before their run started plus runs stopped by their executor, "
            "before a task fails (env SWARM_MAX_INTERRUPTIONS, default 20)",
        )
        parser.add_argument(
            "--retry-backoff",
            type=float,
            default=os.environ.get("SWARM_RETRY_BACKOFF") or 2.0,
            help="seconds before a retry, doubling per attempt up to 60 (env SWARM_RETRY_BACKOFF)",
        )
        parser.add_argument(
            "--priority-aging",
            type=float,
            default=os.environ.get("SWARM_PRIORITY_AGING") or 300.0,
            help="seconds of waiting that raise a task one priority level; 0: off "
            "(env SWARM_PRIORITY_AGING, default 300)",
        )
        parser.add_argument(
            "--swarm",
            default=None,
            help="schedule this swarm only (default: every swarm; one leader per scope)",
        )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Scheduler:
        config = Config(
            lease=args.lease_seconds,
            max_run_losses=args.max_run_losses,
            max_run_failures=args.max_run_failures,
            max_interruptions=args.max_interruptions,
            backoff=args.retry_backoff,
            priority_aging=args.priority_aging,
        )
        return cls(nats=NatsOptions.from_env(args.nats_url), swarm=args.swarm, config=config)
