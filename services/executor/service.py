"""The executor process: hosts agents and runs their claimed tasks in their sandboxes.

At start (after replaying its swarm's log): makes sure its swarm exists, requeues the tasks a
previous life of this executor left running, registers its configured agents, and hosts them
(plus agents it took up earlier). The work is split along its seams:

- ``hosting.py``: which agents it hosts, their sandboxes, its presence key and checkouts;
- ``serving.py``: each hosted agent's claims: ``running``, the run, the result, chat lines,
  and the git around each task in a project (its branch, keeping its work, landing it:
  ``workplan.py``, ``integration.py``);
- ``decisions.py``: the pure decisions both make, result events included; ``ledger.py``: the
  fold and appending, which both share.

This module wires them together, follows the log (a ``task.claimed`` for a hosted agent wakes
that agent's serving loop; a ``task.cancelled`` or ``requeued`` for a task running here kills its
process group at once; agents coming and going are hosted or let
go) and stops cleanly: running attempts are given back (``task.requeued``), presence withdrawn
(its key deleted).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Mapping

import msgspec

from schemas import events as ev
from schemas import subjects
from schemas.board import Board
from schemas.errors import Invalid
from services.bus.connection import NatsOptions
from services.bus.logs import known_secrets
from services.bus.projection import Lazily
from services.bus.service import Service
from services.executor import config as executor_config
from services.executor import decisions, readiness, runs, sandboxes
from services.executor.config import ExecutorConfig
from services.executor.decisions import Append
from services.executor.hosting import ActiveRun, HostedAgent, Hosting
from services.executor.ledger import Ledger
from services.executor.serving import Serving

__all__ = ["ActiveRun", "Executor", "HostedAgent"]

CATCH_UP_EVERY = 2.0  # seconds: the longest the fold lags the log with nothing asking (lazily)
# task events followed as they are stored (the claims: only those of agents hosted here count)
TRIGGER_VERBS = ("claimed", "cancelled", "requeued", "failed", "updated", "deleted")


class _ClaimFor(msgspec.Struct):
    """The one field of a ``task.claimed`` that says whether it is for an agent hosted here."""

    agent: str = ""


class Executor(Service):
    """Swarm executor: hosts agents and runs their claimed tasks in sandboxes."""

    name = "executor"

    def __init__(
        self,
        config: ExecutorConfig | None = None,
        *,
        nats: NatsOptions | None = None,
        instance: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config or ExecutorConfig()
        super().__init__(
            nats=nats,
            instance=instance or os.environ.get("SWARM_INSTANCE") or self.config.executor_id,
            swarm=self.config.swarm,
        )
        self.me = self.config.executor_id
        self.swarm = self.config.swarm
        self.env = dict(os.environ if env is None else env)
        self.settings = runs.RunSettings(
            claude=self.config.claude,
            default_timeout=self.config.task_timeout,
            source_env=self.env,
            pass_env=self.config.pass_env,
            backend=self.config.backend,
        )
        self.backend = sandboxes.backend(  # [daytona hook] + the [daytona] table
            self.config.backend,
            root=self.config.agents_root,
            source_env=self.env,
            daytona=self.config.daytona,
        )
        self._secrets = known_secrets(self.env)
        self._hosting_part: Hosting | None = None
        self._serving_part: Serving | None = None
        self._presence_task: asyncio.Task[None] | None = None
        self._agents_moved = asyncio.Event()  # an agent came, went or moved: fold live or lazily?
        self.log = self.log.bind(swarm=self.swarm, executor=self.me)

    # --- command line -----------------------------------------------------------------------

    @classmethod
    def arguments(cls, parser: argparse.ArgumentParser) -> None:
        executor_config.add_arguments(parser)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Executor:
        return cls(executor_config.load(args), nats=NatsOptions.from_env(args.nats_url))

    def lazily(self) -> Lazily:
        """The fold of its swarm, kept up to date on demand (issue 15): what needs an answer
        at once is followed as it is stored — agents, projects, the swarm, a claim for an agent
        hosted here, any task's cancel, requeue, failure, edit or deletion (rare; one may stop a
        run here); the rest (the tasks other executors' agents run: most of the log) is read in
        order, in batches, when one of those arrives, when this executor waits for its own
        append, and every ``CATCH_UP_EVERY`` seconds. Only while its agents are a small share of
        the swarm's (``decisions.folds_on_demand``; looked at again as agents come and go):
        otherwise nearly every event is one it needs at once, and it folds them live."""
        swarm = self.swarm
        return Lazily(
            wanted=self._folds_on_demand,
            triggers=(
                subjects.aggregate_events(swarm, "swarm"),
                subjects.aggregate_events(swarm, "agent"),
                subjects.aggregate_events(swarm, "project"),
                *(subjects.verb_events(swarm, "task", verb) for verb in TRIGGER_VERBS),
            ),
            urgent=self._urgent,
            every=CATCH_UP_EVERY,
        )

    def _folds_on_demand(self) -> bool:
        return self.projection is not None and decisions.folds_on_demand(
            self.projection.board, self.swarm, self.me
        )

    async def _keep_fold_mode(self) -> None:
        """Live or on demand, as the share of the swarm's agents hosted here says (``lazily``)."""
        assert self.projection is not None
        while not self.stopping.is_set():
            await self._agents_moved.wait()
            self._agents_moved.clear()
            try:
                await self.projection.reconsider()
            except Exception as error:  # NATS away: the next agent event asks again
                self.log.warning("executor.fold_mode_unchanged", error=str(error))

    def _urgent(self, subject: str, data: bytes) -> bool:
        """Whether a followed event needs the fold now (``lazily``)."""
        if not subject.endswith(".claimed"):  # agents, projects, the swarm, a task stopped
            return True
        try:
            agent = msgspec.json.decode(data, type=_ClaimFor).agent
        except msgspec.DecodeError:
            return True  # the fold says what it is
        return agent in self.hosted

    def detail(self) -> dict[str, object]:
        return {
            "executor": self.me,
            "swarm": self.swarm,
            "agents": sorted(self.hosted),
            "running": sorted(self.runs),
            **readiness.report(self.config, self.env, self.board),  # for swarm doctor
        }

    # --- the parts ------------------------------------------------------------------------------

    @property
    def hosting(self) -> Hosting:
        assert self._hosting_part is not None, "the executor has not started"
        return self._hosting_part

    @property
    def serving(self) -> Serving:
        assert self._serving_part is not None, "the executor has not started"
        return self._serving_part

    @property
    def hosted(self) -> dict[str, HostedAgent]:
        return self._hosting_part.hosted if self._hosting_part is not None else {}

    @property
    def runs(self) -> dict[str, ActiveRun]:
        return self._serving_part.runs if self._serving_part is not None else {}

    @property
    def board(self) -> Board:
        assert self.projection is not None
        return self.projection.board

    # --- start and stop ---------------------------------------------------------------------

    async def on_start(self) -> None:
        assert self.bus is not None and self.projection is not None
        problem = await self.backend.check()  # [daytona hook] an SDK line that misfits the server
        if problem is not None:
            raise Invalid("backend", problem)
        ledger = Ledger(self.bus, self.projection, self.swarm, self.log)
        self._hosting_part = Hosting(
            ledger,
            self.config,
            self.backend,
            self.env,
            self._secrets,
            self.stopping,
            serve=self._serve_agent,
        )
        self._serving_part = Serving(
            ledger, self.config, self.settings, self._hosting_part, self._secrets, self.stopping
        )
        self._hosting_part.each_round = self._serving_part.land_left_over
        self.projection.listen(self._on_event)

    async def _serve_agent(self, hosted: HostedAgent) -> None:
        await self.serving.serve_agent(hosted)

    async def on_ready(self) -> None:
        if not await self._ensure_swarm():
            return
        await self.hosting.announce()  # first: a restarted executor's agents stay present
        # refreshed from now on, while the agents are set up (that can take longer than a lease)
        self._presence_task = self.spawn(self.hosting.presence_loop(), "presence")
        for append in decisions.orphaned_runs(self.board, self.swarm, self.me):
            if await self.hosting.ledger.append(append) is not None:
                self.log.info("executor.orphan_requeued", task=append.event.id)
        await self.hosting.setup(self.config.agents)
        self.hosting.setup_done()
        self.spawn(self.hosting.take_up_loop(), "take-up")
        self.spawn(self._keep_fold_mode(), "fold-mode")
        self._agents_moved.set()  # its own agents were just registered
        self.spawn(self.serving.chat_loop(), "chat-lines")
        self.spawn(self.serving.look_loop(), "claims")
        self.spawn(self.hosting.project_loop(), "checkouts")
        self.spawn(self.serving.land_left_over(), "landings")
        self.log.info("executor.serving", agents=sorted(self.hosted))

    async def on_stop(self) -> None:
        """Kill what runs (each attempt goes back to the queue), let the agents' loops end (one
        serving a claim finishes it: requeue), then withdraw the agents' presence."""
        if self._hosting_part is None or self._serving_part is None:
            return
        hosting, serving = self._hosting_part, self._serving_part
        for run in list(serving.runs.values()):
            run.stop(f"executor {self.me} stopped while attempt {run.attempt} was running")
        for hosted in hosting.hosted.values():
            if hosted.checkout_job is not None:
                hosted.checkout_job.cancel()  # kills git: the round is done again next start
        loops = [h.loop for h in hosting.hosted.values() if h.loop is not None]
        for hosted in hosting.hosted.values():
            if hosted.loop is not None and not hosted.serving:
                hosted.loop.cancel()  # only waiting for a claim
        if loops:
            await asyncio.wait(loops, timeout=15.0)
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        try:  # the last chat lines (a few seconds at most)
            await asyncio.wait_for(serving.chat_lines.join(), 3.0)
        except TimeoutError:
            self.log.warning("executor.chat_lines_dropped", left=serving.chat_lines.qsize())
        for task in list(hosting.background):
            task.cancel()
        await asyncio.gather(*hosting.background, return_exceptions=True)
        if self._presence_task is not None:
            self._presence_task.cancel()
            await asyncio.gather(self._presence_task, return_exceptions=True)
        await hosting.withdraw_presence()
        try:  # [daytona hook] the backend's shutdown policy (daytona: keep | stop | delete)
            await self.backend.close()
        except Exception as error:
            self.log.warning("executor.backend_not_closed", error=str(error))

    async def _ensure_swarm(self) -> bool:
        if self.swarm in self.board.swarms:
            return True
        created = ev.SwarmCreated(
            swarm=self.swarm,
            id=self.swarm,
            time=time.time(),
            actor=decisions.actor(self.me),
            name=self.config.swarm_name or self.swarm,
            budget_usd=self.config.swarm_budget_usd,
        )
        if await self.hosting.ledger.append(Append(created, 0)) is None:
            await self.hosting.ledger.settled("swarm", self.swarm, 0)
        if self.swarm not in self.board.swarms:
            self.log.error(
                "executor.swarm_deleted",
                error=f"swarm {self.swarm} was deleted; serve another swarm (--swarm)",
            )
            return False
        return True

    # --- following the log --------------------------------------------------------------------

    def _on_event(self, seq: int, event: ev.Event, board: Board) -> None:
        """Every folded event: stop runs the log moved past, follow agents coming and going."""
        if event.swarm != self.swarm or self._hosting_part is None:
            return
        hosting = self._hosting_part
        if isinstance(event, ev.TaskClaimed):
            hosted = hosting.hosted.get(event.agent)
            if hosted is not None:
                hosted.wake.set()
        elif isinstance(event, ev.TaskEvent):
            run = self.runs.get(event.id)
            if (
                run is not None
                and seq > run.running_seq
                and not decisions.is_current(board, run.swarm, run.task, run.attempt, run.agent)
            ):
                task = board.task(run.swarm, run.task)
                run.stop(task.status if task is not None else "deleted")
        elif isinstance(event, ev.ProjectEvent):
            hosting.projects_changed.set()
        elif isinstance(event, ev.AgentEvent):
            hosting.agents_changed.set()
            self._agents_moved.set()
            hosting.projects_changed.set()
            if event.id not in hosting.hosted or not self.ready:
                return
            hosting.hosted[event.id].wake.set()  # back from lost: its claim may be runnable
            gone = board.agent(self.swarm, event.id) is None
            if isinstance(event, ev.AgentDeregistered) and gone:
                hosting.later(hosting.unhost(event.id, gone=True))
            elif isinstance(event, ev.AgentUpdated | ev.AgentRegistered):
                view = board.agent(self.swarm, event.id)
                if view is not None and view.executor not in (None, self.me):
                    hosting.later(hosting.unhost(event.id, gone=False))
        elif isinstance(event, ev.SwarmDeleted):
            for run in self.runs.values():
                run.stop("swarm deleted")
