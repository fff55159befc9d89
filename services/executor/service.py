"""The executor process: hosts agents and runs their claimed tasks in their sandboxes.

At start (after replaying its swarm's log): makes sure its swarm exists, requeues the tasks a
previous life of this executor left running, registers its configured agents, and hosts them
(plus agents it took up earlier). Per hosted agent: a sandbox, a presence key refreshed every
two seconds, and a durable pull consumer on the agent's dispatch subject.

Serving a dispatch: the fold must show the task claimed by that agent at that attempt (else the
message is dropped); ``task.running`` is appended with the claim's sequence as expected sequence
(a task cancelled or requeued meanwhile makes it conflict: dropped); the message is kept in
progress while the agent works; the result is appended only while the fold still shows this
attempt running (a cancelled or requeued attempt's result is refused, zombie fencing); then the
message is acked. A ``task.cancelled`` (or ``requeued``) for a task running here kills its
process group at once.

Around each run (see ``mentions.py``, ``chat_lines.py``, ``checkouts.py``): a claude task's
prompt starts with the agent's unread chat mentions (marked read by the ``running`` event); a
line goes to chat when the task starts, completes or fails; the command gets the agent's API
access (``runs.api_access``) and runs in the agent's checkout of the project when there is one.
Checkouts: whenever the fold shows a hosted agent owing its swarm's attached project a checkout
(an init or sync request it has not answered), the executor does it and appends
``project.synced`` / ``project.sync_failed``; before running a task, a due checkout is done
first. One lock per agent keeps git and the agent's task from working in the checkout at once.
With an initialised project (``workplan.py``, ``integration.py``): the task runs on its own
branch cut from the project branch's tip (``_start_work``), what it leaves is committed and
pushed (``_keep_work``), and a completed task's work is landed on the project branch
(``_land``); landings a crash left undone are done when the executor starts, and every few
seconds after (``_land_left_over``).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field

from structlog.typing import FilteringBoundLogger

from schemas import dispatch as wire
from schemas import events as ev
from schemas import subjects
from schemas.board import Board, TaskView
from schemas.chat import ChatMessage
from schemas.errors import Unavailable
from services.bus import chat as chat_bus
from services.bus.connection import NatsOptions
from services.bus.dispatch import (
    DispatchDelivery,
    DispatchQueue,
    UndecodableDispatch,
    agent_consumer,
    delete_agent_consumer,
)
from services.bus.eventlog import AppendConflict
from services.bus.logs import known_secrets, redactor
from services.bus.presence import Presence, put_presence, read_presence
from services.bus.service import Service
from services.executor import (
    chat_lines,
    checkouts,
    decisions,
    integration,
    mentions,
    readiness,
    runs,
    sandboxes,
    workplan,
)
from services.executor import config as executor_config
from services.executor.config import AgentConfig, ExecutorConfig
from services.executor.decisions import Append
from services.executor.git import CHECKOUT_DIR, CheckoutStatus, GitFailed
from services.executor.output import OutputSink
from services.executor.runtimes import Verdict
from services.executor.sandboxes import Sandbox

PRESENCE_EVERY = 2.0
SETTLE_SECONDS = 5.0
CHAT_RETRY_SECONDS = 10.0


@dataclass
class ActiveRun:
    """An attempt running here. ``why``: what ended it early. If the fold still shows the attempt
    running when it has ended (this executor is stopping, the agent left it), the attempt is
    given back (``task.requeued``); else (cancelled, requeued elsewhere) nothing is appended."""

    swarm: str
    task: str
    attempt: int
    agent: str
    running_seq: int
    correlation_id: str | None = None
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    why: str | None = None

    def stop(self, why: str) -> None:
        if self.why is None:
            self.why = why
        self.cancel.set()


@dataclass
class HostedAgent:
    id: str
    sandbox: Sandbox
    sub: DispatchQueue  # its dispatches (a durable pull consumer)
    loop: asyncio.Task[None] | None = None
    run: ActiveRun | None = None
    active: bool = True
    serving: bool = False  # between taking a dispatch and acking it
    api_env: dict[str, str] = field(default_factory=dict)  # runs.api_access: holds a secret
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # its checkout: git or a task
    checkout_job: asyncio.Task[None] | None = None


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
        )
        self.backend = sandboxes.backend(  # [daytona hook] + the [daytona] table
            self.config.backend,
            root=self.config.agents_root,
            source_env=self.env,
            daytona=self.config.daytona,
        )
        self.hosted: dict[str, HostedAgent] = {}
        self.runs: dict[str, ActiveRun] = {}
        self._agents_changed = asyncio.Event()
        self._projects_changed = asyncio.Event()
        self._chat_lines: asyncio.Queue[tuple[ChatMessage, str]] = asyncio.Queue()
        self._background: set[asyncio.Task[None]] = set()
        self._secrets = known_secrets(self.env)
        self._presence_task: asyncio.Task[None] | None = None
        self.git = integration.TaskGit(  # the git around each task: branch, commit, landing
            env=self.env,
            secrets=self._secrets,
            git_timeout=self.config.git_timeout,
            verify_timeout=self.config.task_timeout,
            pass_env=self.config.pass_env,
        )
        self._landing: set[str] = set()  # tasks whose work is being landed here
        self.log = self.log.bind(swarm=self.swarm, executor=self.me)

    # --- command line -----------------------------------------------------------------------

    @classmethod
    def arguments(cls, parser: argparse.ArgumentParser) -> None:
        executor_config.add_arguments(parser)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Executor:
        return cls(executor_config.load(args), nats=NatsOptions.from_env(args.nats_url))

    def detail(self) -> dict[str, object]:
        return {
            "executor": self.me,
            "swarm": self.swarm,
            "agents": sorted(self.hosted),
            "running": sorted(self.runs),
            **readiness.report(self.config, self.env, self.board),  # for swarm doctor
        }

    # --- start and stop ---------------------------------------------------------------------

    @property
    def board(self) -> Board:
        assert self.projection is not None
        return self.projection.board

    async def on_start(self) -> None:
        assert self.projection is not None
        self.projection.listen(self._on_event)

    async def on_ready(self) -> None:
        if not await self._ensure_swarm():
            return
        for append in decisions.orphaned_runs(self.board, self.swarm, self.me):
            if await self._append(append) is not None:
                self.log.info("executor.orphan_requeued", task=append.event.id)
        for agent in self.config.agents:
            await self._host_configured(agent)
        for view in decisions.hosted_here(self.board, self.swarm, self.me):
            if view.id not in self.hosted:
                await self._host(view.id, view.sandbox_id)
        self._presence_task = self.spawn(self._presence_loop(), "presence")
        self.spawn(self._take_up_loop(), "take-up")
        self.spawn(self._chat_loop(), "chat-lines")
        self.spawn(self._project_loop(), "checkouts")
        self.spawn(self._land_left_over(), "landings")
        self.log.info("executor.serving", agents=sorted(self.hosted))

    async def on_stop(self) -> None:
        """Kill what runs (each attempt goes back to the queue), let the agents' loops end (one
        serving a dispatch finishes it: requeue, ack), then withdraw the agents' presence."""
        for run in list(self.runs.values()):
            run.stop(f"executor {self.me} stopped while attempt {run.attempt} was running")
        for hosted in self.hosted.values():
            if hosted.checkout_job is not None:
                hosted.checkout_job.cancel()  # kills git: the round is done again next start
        loops = [h.loop for h in self.hosted.values() if h.loop is not None]
        for hosted in self.hosted.values():
            if hosted.loop is not None and not hosted.serving:
                hosted.loop.cancel()  # only waiting for a dispatch
        if loops:
            await asyncio.wait(loops, timeout=15.0)
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        try:  # the last chat lines (a few seconds at most)
            await asyncio.wait_for(self._chat_lines.join(), 3.0)
        except TimeoutError:
            self.log.warning("executor.chat_lines_dropped", left=self._chat_lines.qsize())
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._presence_task is not None:
            self._presence_task.cancel()
            await asyncio.gather(self._presence_task, return_exceptions=True)
        if self.bus is not None and self.hosted:
            try:
                kv = await self.bus.kv(subjects.PRESENCE_BUCKET)
                for agent in self.hosted:
                    await asyncio.wait_for(kv.delete(subjects.presence_key(self.swarm, agent)), 2)
            except Exception as error:
                self.log.debug("executor.presence_not_removed", error=str(error))
        try:  # [daytona hook] the backend's shutdown policy (daytona: keep | stop | delete)
            await self.backend.close()
        except Exception as error:
            self.log.warning("executor.backend_not_closed", error=str(error))

    # --- appending ---------------------------------------------------------------------------

    async def _append(self, append: Append, *, retry_for: float = 5.0) -> int | None:
        """Append and wait until the fold holds it; None when the aggregate moved on."""
        assert self.bus is not None and self.projection is not None
        try:
            seq = await self.bus.events.append(
                append.event, expected_seq=append.expected_seq, retry_for=retry_for
            )
        except AppendConflict:
            self.log.info("executor.append_conflict", type=append.event.type, id=append.event.id)
            return None
        await self.projection.wait_for(seq)
        return seq

    async def _settled(self, aggregate: str, aggregate_id: str, seen: int) -> None:
        """After a conflict: wait (a little) until the fold shows the event that beat us."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while self.board.version(self.swarm, aggregate, aggregate_id) == seen:
            if time.monotonic() > deadline:
                return
            await asyncio.sleep(0.02)

    async def _ensure_swarm(self) -> bool:
        if self.swarm in self.board.swarms:
            return True
        created = ev.SwarmCreated(
            swarm=self.swarm,
            id=self.swarm,
            time=time.time(),
            actor=decisions.actor(self.me),
            name=self.config.swarm_name or self.swarm,
        )
        if await self._append(Append(created, 0)) is None:
            await self._settled("swarm", self.swarm, 0)
        if self.swarm not in self.board.swarms:
            self.log.error(
                "executor.swarm_deleted",
                error=f"swarm {self.swarm} was deleted; serve another swarm (--swarm)",
            )
            return False
        return True

    # --- hosting agents ----------------------------------------------------------------------

    async def _present_elsewhere(self, agent: str) -> str | None:
        """The other executor whose fresh presence holds ``agent``, if any."""
        assert self.bus is not None
        try:
            kv = await self.bus.kv(subjects.PRESENCE_BUCKET)
        except Exception:  # NATS away: nobody known to hold it
            return None
        presence = await read_presence(kv, self.swarm, agent)
        if presence is None:
            return None
        if presence.executor != self.me and time.time() - presence.time < self.config.lease:
            return presence.executor
        return None

    async def _host_configured(self, agent: AgentConfig) -> None:
        view = self.board.agent(self.swarm, agent.id)
        if view is not None and view.executor not in (None, self.me):
            other = await self._present_elsewhere(agent.id)
            if other is not None:
                self.log.warning(
                    "executor.agent_hosted_elsewhere",
                    agent=agent.id,
                    error=f"agent {agent.id} is hosted by executor {other}; not hosting it here",
                )
                return
        for _ in range(3):
            append = decisions.registration(
                self.board, self.swarm, agent, self.me, self.backend.name, time.time()
            )
            if append is None or await self._append(append) is not None:
                break
            await self._settled("agent", agent.id, append.expected_seq)
        await self._host(agent.id, agent.sandbox_id)

    async def _host(self, agent: str, sandbox_id: str | None) -> None:
        """Start serving an agent the fold says this executor hosts."""
        assert self.bus is not None
        if agent in self.hosted:
            return
        back = decisions.comeback(self.board, self.swarm, agent, self.me, time.time())
        if back is not None:
            await self._append(back)
        sandbox = await self.backend.create(self.swarm, agent, sandbox_id)
        sub = await agent_consumer(self.bus.js, self.swarm, agent, ack_wait=self.config.ack_wait)
        api_env = runs.api_access(self.env, self.swarm, agent)
        token = api_env.get("SWARM_AGENT_TOKEN")
        if token:  # masked wherever it might show up: output, chat, logs
            self._secrets.append(token)
            redactor.add(token)
        hosted = HostedAgent(id=agent, sandbox=sandbox, sub=sub, api_env=api_env)
        self.hosted[agent] = hosted
        await self._put_presence(hosted)
        hosted.loop = asyncio.create_task(self._serve_agent(hosted), name=f"agent-{agent}")
        self._projects_changed.set()  # a checkout may be due
        self.log.info("executor.hosting", agent=agent, sandbox=sandbox.id)

    async def _unhost(self, agent: str, *, gone: bool) -> None:
        hosted = self.hosted.pop(agent, None)
        if hosted is None:
            return
        hosted.active = False
        if hosted.checkout_job is not None:
            hosted.checkout_job.cancel()
        if hosted.run is not None:
            hosted.run.stop(
                f"agent {agent} left executor {self.me} while attempt {hosted.run.attempt} "
                "was running"
            )
        elif hosted.loop is not None:
            hosted.loop.cancel()
        assert self.bus is not None
        try:
            await hosted.sub.close()
            kv = await self.bus.kv(subjects.PRESENCE_BUCKET)
            await kv.delete(subjects.presence_key(self.swarm, agent))
            if gone:
                await delete_agent_consumer(self.bus.js, self.swarm, agent)
        except Exception as error:
            self.log.warning("executor.unhost_incomplete", agent=agent, error=str(error))
        self.log.info("executor.unhosted", agent=agent, gone=gone)

    async def _put_presence(self, hosted: HostedAgent) -> None:
        assert self.bus is not None
        kv = await self.bus.kv(subjects.PRESENCE_BUCKET)
        presence = Presence(
            executor=self.me,
            time=time.time(),
            task=hosted.run.task if hosted.run is not None else None,
        )
        await put_presence(kv, self.swarm, hosted.id, presence)

    async def _presence_loop(self) -> None:
        while not self.stopping.is_set():
            for hosted in list(self.hosted.values()):
                try:
                    await self._put_presence(hosted)
                except Exception as error:  # NATS away: next round
                    self.log.debug("executor.presence_failed", agent=hosted.id, error=str(error))
            # well within the lease, also when it is set short (a refresh every 2 s would let
            # a 2 s lease lapse between refreshes)
            await asyncio.sleep(min(PRESENCE_EVERY, self.config.lease / 3))

    async def _take_up_loop(self) -> None:
        """On agent events (and every two seconds): bring back hosted agents the fold shows lost
        (their presence lapsed while NATS was away), and take up agents registered through the
        API (no executor) while there is room."""
        while not self.stopping.is_set():
            try:
                await asyncio.wait_for(self._agents_changed.wait(), PRESENCE_EVERY)
            except TimeoutError:
                pass
            self._agents_changed.clear()
            for agent in list(self.hosted):
                back = decisions.comeback(self.board, self.swarm, agent, self.me, time.time())
                if back is not None and await self._append(back) is not None:
                    self.log.info("executor.agent_back", agent=agent)
            for view in decisions.hosted_here(self.board, self.swarm, self.me):
                if view.id not in self.hosted:  # taken up, but hosting it failed: again
                    try:
                        await self._host(view.id, view.sandbox_id)
                    except Exception as error:
                        self.log.warning("executor.host_failed", agent=view.id, error=str(error))
            free = self.config.max_agents - len(self.hosted)
            for append in decisions.take_ups(self.board, self.swarm, self.me, free, time.time()):
                try:
                    if await self._append(append) is None:
                        continue
                    taken = self.board.agent(self.swarm, append.event.id)
                    if taken is not None and taken.executor == self.me:
                        self.log.info("executor.took_up", agent=taken.id)
                        await self._host(taken.id, taken.sandbox_id)
                except Exception:
                    self.log.exception("executor.take_up_failed", agent=append.event.id)

    def _later(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _on_event(self, seq: int, event: ev.Event, board: Board) -> None:
        """Every folded event: stop runs the log moved past, follow agents coming and going."""
        if event.swarm != self.swarm:
            return
        if isinstance(event, ev.TaskEvent):
            run = self.runs.get(event.id)
            if (
                run is not None
                and seq > run.running_seq
                and not decisions.is_current(board, run.swarm, run.task, run.attempt, run.agent)
            ):
                task = board.task(run.swarm, run.task)
                run.stop(task.status if task is not None else "deleted")
        elif isinstance(event, ev.ProjectEvent):
            self._projects_changed.set()
        elif isinstance(event, ev.AgentEvent):
            self._agents_changed.set()
            self._projects_changed.set()
            if event.id not in self.hosted or not self.ready:
                return
            gone = board.agent(self.swarm, event.id) is None
            if isinstance(event, ev.AgentDeregistered) and gone:
                self._later(self._unhost(event.id, gone=True))
            elif isinstance(event, ev.AgentUpdated | ev.AgentRegistered):
                view = board.agent(self.swarm, event.id)
                if view is not None and view.executor not in (None, self.me):
                    self._later(self._unhost(event.id, gone=False))
        elif isinstance(event, ev.SwarmDeleted):
            for run in self.runs.values():
                run.stop("swarm deleted")

    # --- serving dispatches ------------------------------------------------------------------

    async def _serve_agent(self, hosted: HostedAgent) -> None:
        while hosted.active and not self.stopping.is_set():
            try:
                messages = await hosted.sub.next(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # NATS away, consumer gone: try again shortly
                self.log.warning("executor.fetch_failed", agent=hosted.id, error=str(error))
                await asyncio.sleep(0.5)
                continue
            for msg in messages:
                hosted.serving = True
                try:
                    await self._serve(hosted, msg)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self.log.exception("executor.serve_failed", agent=hosted.id)
                finally:
                    hosted.serving = False

    async def _serve(
        self, hosted: HostedAgent, msg: DispatchDelivery | UndecodableDispatch
    ) -> None:
        assert self.bus is not None and self.projection is not None
        if isinstance(msg, UndecodableDispatch):
            self.log.error("executor.dispatch_undecodable", agent=hosted.id, error=msg.error)
            await msg.term()
            return
        dispatch = msg.dispatch
        log = self.log.bind(task=dispatch.task, agent=dispatch.agent, attempt=dispatch.attempt)
        if dispatch.task in self.runs:
            return  # redelivered while it runs here: the run acks it when it ends
        if self.stopping.is_set():
            await msg.nak()
            return
        try:
            await self.projection.wait_for(dispatch.claim_seq)
        except Unavailable:
            await msg.nak(delay=1.0)
            return
        refusal = (
            "for another swarm"
            if dispatch.swarm != self.swarm
            else decisions.dispatch_refusal(self.board, dispatch, [hosted.id])
        )
        if refusal is not None:
            log.info("executor.dispatch_dropped", reason=refusal)
            await msg.ack()
            return
        keepalive = asyncio.create_task(self._keep_in_progress(msg))
        try:
            async with hosted.lock:
                await self._serve_claimed(hosted, dispatch, msg, log)
        finally:
            keepalive.cancel()

    async def _serve_claimed(
        self,
        hosted: HostedAgent,
        dispatch: wire.Dispatch,
        msg: DispatchDelivery,
        log: FilteringBoundLogger,
    ) -> None:
        """With the agent's checkout to itself: a due checkout first, then ``running`` (with the
        mentions its prompt takes), the run, the result."""
        assert self.bus is not None and self.projection is not None
        if self.stopping.is_set():  # waited for the lock while this executor began to stop
            await msg.nak()
            return
        await self._checkout_locked(hosted, before_task=True)
        claimed = self.board.task(self.swarm, dispatch.task)
        correlation = claimed.correlation_id if claimed is not None else None
        log = log.bind(correlation_id=correlation)
        started = await self._start_work(hosted, dispatch, claimed, msg, log)
        if started is None:
            return  # it could not start in the project: failed, and said why
        plan, base = started
        delivery = mentions.Delivery()
        if claimed is not None and mentions.takes_mentions(claimed.runtime):
            delivery = await self._unread(hosted.id)
        running = ev.TaskRunning(
            swarm=self.swarm,
            id=dispatch.task,
            time=time.time(),
            actor=decisions.actor(self.me),
            agent=dispatch.agent,
            attempt=dispatch.attempt,
            executor=self.me,
            inbox_read_through=delivery.read_through,
            correlation_id=correlation,
            branch=plan.branch if plan is not None else None,
            base=base,
        )
        try:
            seq = await self.bus.events.append(
                running, expected_seq=dispatch.claim_seq, retry_for=5.0
            )
        except AppendConflict:
            log.info("executor.dispatch_dropped", reason="the task moved on since its claim")
            await msg.ack()
            return
        except Unavailable:
            await msg.nak(delay=1.0)
            return
        run = ActiveRun(
            self.swarm, dispatch.task, dispatch.attempt, dispatch.agent, seq, correlation
        )
        self.runs[run.task] = run
        hosted.run = run
        log = log.bind(seq=seq)
        try:
            try:
                await self.projection.wait_for(seq)
            except Unavailable:
                pass  # the fold lags: the result append checks again
            view = self.board.task(self.swarm, dispatch.task)
            if view is None or (
                self.board.seq >= seq
                and not decisions.is_current(
                    self.board, run.swarm, run.task, run.attempt, run.agent
                )
            ):
                return  # cancelled (or more) the moment it started: nothing to run or say
            task = copy.copy(view)
            task.attempt = dispatch.attempt
            log.info("task.running", runtime=task.runtime, mentions=len(delivery.entries))
            self._say(run, "started", task.title)
            verdict = await self._run(hosted, task, run, delivery)
            work = None
            if plan is not None and base is not None and run.why is None:
                verdict, work = await self._keep_work(hosted, plan, base, verdict)
            try:
                result = await self._finish(run, verdict, log, work)
            except Exception as error:  # a result that cannot be written must not leave the
                log.exception("executor.result_unwritable")  # task running for ever
                reason = f"executor could not record the result: {type(error).__name__}: {error}"
                result = await self._finish(run, Verdict(False, ev.RunOutcome(), reason), log)
            if isinstance(result, ev.TaskCompleted):
                self._say(run, "completed", result.outcome.result)
                if plan is not None and result.work is not None and result.work.land:
                    await self._land(hosted, plan, result.work.base, result.work.head, log)
            elif isinstance(result, ev.TaskFailed):
                self._say(run, "failed", result.reason)
        finally:
            self.runs.pop(run.task, None)
            hosted.run = None
            await self._ack(msg, log)

    async def _ack(self, msg: DispatchDelivery, log: FilteringBoundLogger) -> None:
        """Ack without waiting for a reply (a round trip per task otherwise). A lost ack only
        brings the message back after ``ack_wait``, as a stale dispatch that is dropped; the
        consumer's ``max_ack_pending`` of 2 keeps the agent's next dispatch coming meanwhile."""
        try:
            await msg.ack()
        except Exception as error:
            log.warning("executor.ack_failed", error=str(error))

    async def _keep_in_progress(self, msg: DispatchDelivery) -> None:
        while True:
            await asyncio.sleep(self.config.ack_wait / 3)
            try:
                await msg.in_progress()
            except Exception:  # NATS away: the next one may pass
                pass

    async def _run(
        self, hosted: HostedAgent, task: TaskView, run: ActiveRun, delivery: mentions.Delivery
    ) -> Verdict:
        assert self.bus is not None
        sink = None
        if task.runtime != "instant":
            sink = OutputSink(
                self.bus,
                swarm=self.swarm,
                task=task.id,
                attempt=run.attempt,
                agent=hosted.id,
                spool_dir=self.config.spool_dir,
                secrets=self._secrets,
            )
        try:
            in_checkout = await hosted.sandbox.path_exists(f"{CHECKOUT_DIR}/.git")
            verdict = await runs.execute(
                task,
                hosted.id,
                hosted.sandbox,
                sink.write if sink is not None else (lambda text: None),
                self.settings,
                run.cancel,
                tail=(lambda: sink.tail) if sink is not None else (lambda: ""),
                mentions=delivery.entries,
                extra_env=hosted.api_env,
                cwd=CHECKOUT_DIR if in_checkout else None,
            )
        except sandboxes.SandboxLost as error:  # [daytona hook] a new sandbox: this attempt again
            self.log.warning("executor.sandbox_lost", task=task.id, error=error.reason)
            run.stop(f"sandbox lost: {error.reason}")
            outcome = ev.RunOutcome(result=error.reason, is_error=True)
            verdict = Verdict(False, outcome, error.reason)
        except sandboxes.SandboxFailed as error:  # [daytona hook] the backend says why: it fails
            self.log.warning("executor.sandbox_failed", task=task.id, error=error.reason)
            if sink is not None:
                sink.write(error.reason + "\n")
            outcome = ev.RunOutcome(result=error.reason, is_error=True)
            verdict = Verdict(False, outcome, error.reason)
        except Exception as error:
            self.log.exception("executor.run_crashed", task=task.id)
            reason = f"executor error while running the task: {type(error).__name__}: {error}"
            verdict = Verdict(False, ev.RunOutcome(result=reason, is_error=True), reason)
        if sink is not None:
            verdict.outcome.output = await sink.close()
        return verdict

    async def _finish(
        self,
        run: ActiveRun,
        verdict: Verdict,
        log: FilteringBoundLogger,
        work: ev.Work | None = None,
    ) -> ev.TaskCompleted | ev.TaskFailed | None:
        """Append the result (or, when this executor is stopping, give the attempt back).
        Returns the result appended (None: refused, or given back)."""
        assert self.bus is not None
        now = time.time()
        if run.why is not None:
            event: ev.Event = ev.TaskRequeued(
                swarm=run.swarm,
                id=run.task,
                time=now,
                actor=decisions.actor(self.me),
                correlation_id=run.correlation_id,
                attempt=run.attempt + 1,
                reason=run.why,
                retry_at=now,
            )
        elif verdict.completed:
            event = ev.TaskCompleted(
                swarm=run.swarm,
                id=run.task,
                time=now,
                actor=decisions.actor(self.me),
                correlation_id=run.correlation_id,
                attempt=run.attempt,
                agent=run.agent,
                outcome=verdict.outcome,
                work=work,
            )
        else:
            event = ev.TaskFailed(
                swarm=run.swarm,
                id=run.task,
                time=now,
                actor=decisions.actor(self.me),
                correlation_id=run.correlation_id,
                reason=verdict.reason or "failed",
                attempt=run.attempt,
                agent=run.agent,
                outcome=verdict.outcome,
                work=work,
            )
        expected = run.running_seq
        while True:
            if not decisions.is_current(self.board, run.swarm, run.task, run.attempt, run.agent):
                task = self.board.task(run.swarm, run.task)
                log.info(
                    "executor.result_refused",
                    why=run.why or (task.status if task else "deleted"),
                    result=event.verb,
                )
                return None
            try:
                seq = await self.bus.events.append(event, expected_seq=expected, retry_for=30.0)
            except AppendConflict:
                await self._settled("task", run.task, expected)
                expected = self.board.version(run.swarm, "task", run.task)
                continue
            except Unavailable as error:
                if self.stopping.is_set():
                    log.error("executor.result_lost", error=error.message)
                    return None
                continue  # NATS away: keep trying (the msg id keeps it single)
            log.info(f"task.{event.verb}", result_seq=seq, reason=getattr(event, "reason", None))
            return event if isinstance(event, ev.TaskCompleted | ev.TaskFailed) else None

    # --- the task's branch and landing its work (integration.py) ---------------------------

    async def _start_work(
        self,
        hosted: HostedAgent,
        dispatch: wire.Dispatch,
        task: TaskView | None,
        msg: DispatchDelivery,
        log: FilteringBoundLogger,
    ) -> tuple[workplan.WorkPlan | None, str | None] | None:
        """Before the run: the task's branch from the project branch's newest tip. (plan,
        base); (None, None) when there is no git around it; None when it cannot start in the
        project (the task is failed with the reason, the dispatch acked)."""
        if task is None:
            return None, None
        try:
            plan = workplan.plan(self.board, self.swarm, task, hosted.id)
            if plan is None:
                return None, None
            return plan, await self.git.start(hosted.sandbox, plan)
        except GitFailed as error:
            reason = f"could not start the task's branch: {error.message}"
        except Exception as error:  # the sandbox itself failed
            log.exception("executor.branch_crashed")
            reason = f"could not start the task's branch: {type(error).__name__}: {error}"
        log.warning("executor.branch_failed", error=reason)
        failed = ev.TaskFailed(
            swarm=self.swarm,
            id=dispatch.task,
            time=time.time(),
            actor=decisions.actor(self.me),
            correlation_id=task.correlation_id,
            reason=reason,
            attempt=dispatch.attempt,
            agent=dispatch.agent,
        )
        await self._append(Append(failed, dispatch.claim_seq), retry_for=30.0)
        await msg.ack()
        return None

    async def _keep_work(
        self, hosted: HostedAgent, plan: workplan.WorkPlan, base: str, verdict: Verdict
    ) -> tuple[Verdict, ev.Work]:
        """After the run: commit what it left, push the branch. A completed run whose work
        cannot be kept fails (its work would be lost otherwise)."""
        try:
            work = await self.git.keep(hosted.sandbox, plan, base, verdict.completed)
        except Exception as error:
            self.log.exception("executor.keep_crashed", task=plan.task)
            message = f"{type(error).__name__}: {error}"
            work = workplan.work(plan, base, base, pushed=False, ran=False, error=message)
        if work.error and verdict.completed:
            reason = f"its work could not be kept: {work.error}"
            verdict = Verdict(False, verdict.outcome, reason)
        return verdict, work

    async def _land(
        self,
        hosted: HostedAgent,
        plan: workplan.WorkPlan,
        base: str,
        head: str,
        log: FilteringBoundLogger,
    ) -> None:
        """Land the completed task's work on the project branch and record how it went (with
        the agent's checkout to itself)."""
        if plan.task in self._landing:
            return
        self._landing.add(plan.task)
        try:
            try:
                outcome = await self.git.land(hosted.sandbox, plan, base, head)
            except Exception:  # the sandbox failed: still landing; tried again later
                log.exception("executor.landing_crashed")
                return
            task = self.board.task(self.swarm, plan.task)
            event = workplan.landing_event(
                plan, outcome, decisions.actor(self.me), task.correlation_id if task else None
            )
            while True:
                task = self.board.task(self.swarm, plan.task)
                if (
                    task is None
                    or task.attempt != plan.attempt
                    or task.integration is None
                    or task.integration.state != "landing"
                ):
                    return  # recorded meanwhile (another try), or the task is gone
                expected = self.board.version(self.swarm, "task", plan.task)
                assert self.bus is not None and self.projection is not None
                try:
                    seq = await self.bus.events.append(event, expected_seq=expected, retry_for=30.0)
                except AppendConflict:
                    await self._settled("task", plan.task, expected)
                    continue
                except Unavailable as error:
                    log.warning("executor.landing_unrecorded", error=error.message)
                    return  # still landing in the log: done again (found landed) later
                await self.projection.wait_for(seq)
                log.info(
                    event.type,
                    landed=getattr(event, "landed", None),
                    problem=getattr(event, "problem", None),
                    tries=outcome.tries,
                    seconds=round(outcome.seconds, 3),
                )
                return
        finally:
            self._landing.discard(plan.task)

    async def _land_left_over(self) -> None:
        """Landings left undone: a previous life of this executor stopped between a task's
        ``completed`` and its landing (done in that agent's checkout), or the task's agent is
        lost or gone (done in the checkout of an idle agent of ours; a second executor doing
        the same finds the work landed)."""
        for task in workplan.landings_due(self.board, self.swarm, list(self.hosted)):
            hosted = self.hosted.get(task.agent or "") or self._idle_agent()
            plan = workplan.landing_plan(self.board, self.swarm, task)
            work = task.integration
            if hosted is None or plan is None or work is None or task.id in self._landing:
                continue
            if work.base is None or work.head is None:
                continue
            async with hosted.lock:
                if self.stopping.is_set():
                    return
                now = self.board.task(self.swarm, task.id)
                if now is None or now.integration is None or now.integration.state != "landing":
                    continue  # landed meanwhile (the run that completed it landed it)
                log = self.log.bind(task=task.id, agent=hosted.id, ran_on=task.agent)
                log.info("executor.landing_resumed")
                await self._land(hosted, plan, work.base, work.head, log)

    def _idle_agent(self) -> HostedAgent | None:
        """One of ours with a checkout of the project and nothing to do right now."""
        project = workplan.attached(self.board, self.swarm)
        for hosted in self.hosted.values():
            checkout = project.checkouts.get(hosted.id) if project is not None else None
            if checkout is None or checkout.state != "synced":
                continue
            if hosted.run is None and not hosted.serving and not hosted.lock.locked():
                return hosted
        return None

    # --- mentions and chat lines -------------------------------------------------------------

    async def _unread(self, agent: str) -> mentions.Delivery:
        """The agent's unread mentions that fit in its next prompt. Inbox unreadable (NATS
        away): none this time; they stay unread, nothing is lost."""
        assert self.bus is not None
        view = self.board.agent(self.swarm, agent)
        read_through = view.read_through if view is not None else 0
        try:
            kv = await self.bus.kv(subjects.INBOX_BUCKET)
            inbox, _ = await chat_bus.read_inbox(kv, self.swarm, agent)
        except Exception as error:
            self.log.warning("executor.inbox_unreadable", agent=agent, error=str(error))
            return mentions.Delivery()
        return mentions.take(inbox, read_through)

    def _say(self, run: ActiveRun, verb: chat_lines.Verb, detail: str) -> None:
        """Queue a chat line (posted in order, behind the run: a slow chat never slows it)."""
        self._chat_lines.put_nowait(
            chat_lines.message(
                run.swarm,
                run.agent,
                run.task,
                run.attempt,
                verb,
                detail,
                secrets=self._secrets,
                now=time.time(),
            )
        )

    async def _chat_loop(self) -> None:
        assert self.bus is not None
        while True:
            message, msg_id = await self._chat_lines.get()
            try:  # NATS away: retried for a while (the msg id keeps it single)
                await chat_bus.post(self.bus.js, message, msg_id, retry_for=CHAT_RETRY_SECONDS)
            except Exception as error:
                self.log.warning("executor.chat_line_lost", error=str(error))
            finally:
                self._chat_lines.task_done()

    # --- the project's checkouts -------------------------------------------------------------

    async def _project_loop(self) -> None:
        """On project and agent events (and every few seconds): start the checkouts due for
        hosted agents, each agent's on its own (they clone side by side)."""
        while not self.stopping.is_set():
            try:
                await asyncio.wait_for(self._projects_changed.wait(), 5 * PRESENCE_EVERY)
            except TimeoutError:
                pass
            self._projects_changed.clear()
            self._later(self._land_left_over())
            for hosted in list(self.hosted.values()):
                busy = hosted.checkout_job is not None and not hosted.checkout_job.done()
                if busy or checkouts.due(self.board, self.swarm, hosted.id) is None:
                    continue
                hosted.checkout_job = asyncio.create_task(
                    self._checkout(hosted), name=f"checkout-{hosted.id}"
                )
                self._background.add(hosted.checkout_job)
                hosted.checkout_job.add_done_callback(self._background.discard)

    async def _checkout(self, hosted: HostedAgent) -> None:
        async with hosted.lock:
            await self._checkout_locked(hosted)

    async def _checkout_locked(self, hosted: HostedAgent, *, before_task: bool = False) -> None:
        """Do the agent's due checkout, if any, and append how it went (holding its lock).
        ``before_task``: also redo the current one if the checkout itself is gone (a sandbox
        recreated from scratch), so the task still runs in the project."""
        request = checkouts.due(self.board, self.swarm, hosted.id)
        if request is None and before_task:
            request = checkouts.current(self.board, self.swarm, hosted.id)
            if request is not None and await hosted.sandbox.path_exists(f"{CHECKOUT_DIR}/.git"):
                request = None
        if request is None or not hosted.active or self.stopping.is_set():
            return
        log = self.log.bind(
            agent=hosted.id, project=request.project, round=request.round, kind=request.kind
        )
        token = self.env.get(request.credentials_ref or "", "")
        if len(token) >= 6 and request.credentials_ref not in checkouts.NOT_GIT_CREDENTIALS:
            if token not in self._secrets:  # masked in the agents' output and in logs too
                self._secrets.append(token)
            redactor.add(token)
        started = time.monotonic()
        outcome: CheckoutStatus | GitFailed
        try:
            outcome = await checkouts.perform(
                hosted.sandbox,
                request,
                env=self.env,
                timeout=self.config.git_timeout,
                secrets=self._secrets,
                executor=self.me,
            )
        except GitFailed as error:
            outcome = error
        except Exception as error:  # the sandbox itself failed: say so rather than stay silent
            log.exception("executor.checkout_crashed")
            outcome = GitFailed(f"checkout failed: {type(error).__name__}: {error}")
        event = checkouts.answer(request, outcome, decisions.actor(self.me))
        try:
            assert self.bus is not None and self.projection is not None
            seq = await self.bus.events.append(event, msg_id=request.msg_id, retry_for=10.0)
            await self.projection.wait_for(seq)
        except Exception as error:  # NATS away: still due, done again on the next round
            log.warning("executor.checkout_unreported", error=str(error))
            return
        log.info(
            f"project.{event.verb}",
            seconds=round(time.monotonic() - started, 3),
            commit=getattr(event, "commit", None),
            error=getattr(event, "error", None),
        )
