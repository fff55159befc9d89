"""Hosting agents: which agents this executor serves, their sandboxes, their presence and their
checkouts of the swarm's project.

- **Registering and hosting.** Configured agents are registered (``agent.registered``) unless the
  fold already shows them just so, or another executor's fresh presence holds them; agents
  registered through the API with no executor are taken up (``agent.updated``) while there is
  room (``max_agents``). Hosting one: its sandbox (created or attached), its API access, a
  place in this executor's presence key, and its serving loop (``serving.py``).
- **Presence.** One key for this executor in ``swarm_presence`` (``services/bus/presence.py``)
  listing the agents it hosts (and announced at start), refreshed well within the lease and
  written at once when an agent is hosted or let go; an agent the fold shows lost while this
  executor still hosts it registers again.
- **Setting up many.** Agents are registered and hosted side by side, ``SETUP_AT_ONCE`` at a time
  (each is an append, a wait for the fold and a sandbox: one after another, 63 agents took an
  executor over a minute on a busy machine).
- **Checkouts.** Whenever the fold shows a hosted agent owing its swarm's attached project a
  checkout (an init or sync request it has not answered), it is done and answered with
  ``project.synced`` / ``project.sync_failed``; before a task, a due checkout is done first. One
  lock per agent keeps git and the agent's task from working in the checkout at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field

from schemas import events as ev
from schemas import subjects
from schemas.environment import NOT_GIT_CREDENTIALS
from services.bus.logs import redactor
from services.bus.presence import host_record, put_hosts, read_hosts, withdraw_hosts
from services.executor import checkouts, decisions, runs
from services.executor.config import AgentConfig, ExecutorConfig
from services.executor.git import CHECKOUT_DIR, CheckoutStatus, GitFailed
from services.executor.ledger import Ledger
from services.executor.sandboxes import Backend, Sandbox

PRESENCE_EVERY = 2.0
SETUP_AT_ONCE = 16  # agents registered and hosted side by side at start
PRESENCE_GATHER = 0.05  # seconds a change waits for more before presence is written


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
    cause: ev.AttemptEnd = "run_stopped"  # the budget a give-back uses (schemas.attempts)

    def stop(self, why: str, cause: ev.AttemptEnd = "run_stopped") -> None:
        if self.why is None:
            self.why = why
            self.cause = cause
        self.cancel.set()

    @property
    def named(self) -> decisions.Attempt:
        return decisions.Attempt(
            self.swarm, self.task, self.attempt, self.agent, self.correlation_id
        )


@dataclass
class HostedAgent:
    id: str
    sandbox: Sandbox
    config: AgentConfig | None = None  # its [[agents]] entry (None: registered through the API)
    loop: asyncio.Task[None] | None = None
    run: ActiveRun | None = None
    active: bool = True
    serving: bool = False  # while it serves a claim (from ``running`` to the result)
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # a claim of it was folded in
    api_env: dict[str, str] = field(default_factory=dict)  # runs.api_access: holds a secret
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # its checkout: git or a task
    checkout_job: asyncio.Task[None] | None = None
    hooks_path: str | None = None  # Swarm's git hooks in its sandbox, once installed


ServeAgent = Callable[[HostedAgent], Coroutine[object, object, None]]


class Hosting:
    def __init__(
        self,
        ledger: Ledger,
        config: ExecutorConfig,
        backend: Backend,
        env: Mapping[str, str],
        secrets: list[str],
        stopping: asyncio.Event,
        serve: ServeAgent,
    ) -> None:
        self.ledger = ledger
        self.config = config
        self.backend = backend
        self.env = env
        self.secrets = secrets  # shared: masked in output, chat lines and logs
        self.stopping = stopping
        self.serve = serve
        self.swarm = config.swarm
        self.me = config.executor_id
        self.log = ledger.log
        self.hosted: dict[str, HostedAgent] = {}
        self.agents_changed = asyncio.Event()
        self.projects_changed = asyncio.Event()
        self.background: set[asyncio.Task[None]] = set()
        self.each_round: Callable[[], Coroutine[object, object, None]] | None = None
        self._configured = {agent.id: agent for agent in config.agents}
        self.announced: set[str] = set()  # listed in presence while they are set up again
        self.presence_due = asyncio.Event()  # the hosted agents changed: write presence now

    # --- registering and hosting ---------------------------------------------------------------

    async def present_elsewhere(self, agent: str, executor: str) -> bool:
        """Whether ``executor`` (not this one), which the fold says hosts ``agent``, still
        lists it in fresh presence."""
        if executor == self.me:
            return False
        try:
            kv = await self.ledger.bus.kv(subjects.PRESENCE_BUCKET)
        except Exception:  # NATS away: nobody known to hold it
            return False
        record = await read_hosts(kv, self.swarm, executor)
        return (
            record is not None
            and agent in (record.agents or ())
            and time.time() - record.time < self.config.lease
        )

    async def setup(self, agents: Iterable[AgentConfig]) -> None:
        """Register and host the configured ``agents``, then host the other agents the fold says
        this executor hosts, ``SETUP_AT_ONCE`` at a time; one that fails is logged (the take-up
        loop tries hosting it again)."""
        room = asyncio.Semaphore(SETUP_AT_ONCE)

        async def one(agent: str, job: Coroutine[object, object, None]) -> None:
            async with room:
                try:
                    await job
                except Exception as error:
                    self.log.warning("executor.host_failed", agent=agent, error=str(error))

        await asyncio.gather(*(one(a.id, self.host_configured(a)) for a in agents))
        views = decisions.hosted_here(self.ledger.board, self.swarm, self.me)
        await asyncio.gather(
            *(one(v.id, self.host(v.id, v.sandbox_id)) for v in views if v.id not in self.hosted)
        )

    async def host_configured(self, agent: AgentConfig) -> None:
        view = self.ledger.board.agent(self.swarm, agent.id)
        if view is not None and view.executor not in (None, self.me):
            other = view.executor if await self.present_elsewhere(agent.id, view.executor) else None
            if other is not None:
                self.log.warning(
                    "executor.agent_hosted_elsewhere",
                    agent=agent.id,
                    error=f"agent {agent.id} is hosted by executor {other}; not hosting it here",
                )
                return
        for _ in range(3):
            append = decisions.registration(
                self.ledger.board, self.swarm, agent, self.me, self.backend.name, time.time()
            )
            if append is None or await self.ledger.append(append) is not None:
                break
            await self.ledger.settled("agent", agent.id, append.expected_seq)
        await self.host(agent.id, agent.sandbox_id)

    async def host(self, agent: str, sandbox_id: str | None) -> None:
        """Start serving an agent the fold says this executor hosts."""
        if agent in self.hosted:
            return
        back = decisions.comeback(self.ledger.board, self.swarm, agent, self.me, time.time())
        if back is not None:
            await self.ledger.append(back)
        sandbox = await self.backend.create(self.swarm, agent, sandbox_id)
        api_env = runs.api_access(self.env, self.swarm, agent)
        token = api_env.get("SWARM_AGENT_TOKEN")
        if token:  # masked wherever it might show up: output, chat, logs
            self.secrets.append(token)
            redactor.add(token)
        hosted = HostedAgent(
            id=agent, sandbox=sandbox, config=self._configured.get(agent), api_env=api_env
        )
        self.hosted[agent] = hosted
        self.presence_due.set()
        hosted.loop = asyncio.create_task(self.serve(hosted), name=f"agent-{agent}")
        self.projects_changed.set()  # a checkout may be due
        self.log.info("executor.hosting", agent=agent, sandbox=sandbox.id)

    async def unhost(self, agent: str, *, gone: bool) -> None:
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
        self.announced.discard(agent)
        try:  # the agent leaves this executor's list at once
            await self.put_presence()
        except Exception as error:  # NATS away: the next refresh leaves it out
            self.log.warning("executor.unhost_incomplete", agent=agent, error=str(error))
        self.log.info("executor.unhosted", agent=agent, gone=gone)

    async def take_up_loop(self) -> None:
        """On agent events (and every two seconds): bring back hosted agents the fold shows lost
        (their presence lapsed while NATS was away), and take up agents registered through the
        API (no executor) while there is room."""
        while not self.stopping.is_set():
            try:
                await asyncio.wait_for(self.agents_changed.wait(), PRESENCE_EVERY)
            except TimeoutError:
                pass
            self.agents_changed.clear()
            board = self.ledger.board
            for agent in list(self.hosted):
                back = decisions.comeback(board, self.swarm, agent, self.me, time.time())
                if back is not None and await self.ledger.append(back) is not None:
                    self.log.info("executor.agent_back", agent=agent)
            for view in decisions.hosted_here(self.ledger.board, self.swarm, self.me):
                if view.id not in self.hosted:  # taken up, but hosting it failed: again
                    try:
                        await self.host(view.id, view.sandbox_id)
                    except Exception as error:
                        self.log.warning("executor.host_failed", agent=view.id, error=str(error))
            free = self.config.max_agents - len(self.hosted)
            ups = decisions.take_ups(self.ledger.board, self.swarm, self.me, free, time.time())
            for append in ups:
                try:
                    if await self.ledger.append(append) is None:
                        continue
                    taken = self.ledger.board.agent(self.swarm, append.event.id)
                    if taken is not None and taken.executor == self.me:
                        self.log.info("executor.took_up", agent=taken.id)
                        await self.host(taken.id, taken.sandbox_id)
                except Exception:
                    self.log.exception("executor.take_up_failed", agent=append.event.id)

    # --- presence ------------------------------------------------------------------------------

    async def announce(self) -> int:
        """At start, before anything slow (orphans, registrations, sandboxes): list in this
        executor's presence every agent the fold says it hosts and not lost, so a restarted
        executor's agents do not lapse into ``lost`` while it sets them up again (their claims
        run here once they are hosted). One not set up after all leaves the list once set-up is
        done (``setup_done``), and lapses a lease later, as it would have. Returns how many were
        announced."""
        board = self.ledger.board
        self.announced = {
            view.id
            for view in decisions.hosted_here(board, self.swarm, self.me)
            if view.status != "lost"
        }
        if not self.announced:
            return 0
        try:
            await self.put_presence()
        except Exception as error:  # NATS away: the presence loop puts them as it goes
            self.log.warning("executor.announce_failed", error=str(error))
            return 0
        self.log.info("executor.announced", agents=sorted(self.announced))
        return len(self.announced)

    def setup_done(self) -> None:
        """Set-up at start is over: the agents announced and not hosted leave the list."""
        self.announced.clear()
        self.presence_due.set()

    async def put_presence(self) -> None:
        """Write this executor's presence: the agents it hosts (and the announced ones), with
        the task each runs."""
        kv = await self.ledger.bus.kv(subjects.PRESENCE_BUCKET)
        running = {a: h.run.task for a, h in self.hosted.items() if h.run is not None}
        record = host_record(self.me, time.time(), [*self.hosted, *self.announced], running)
        await put_hosts(kv, self.swarm, record)

    async def presence_loop(self) -> None:
        """Refresh this executor's presence well within the lease (a refresh every 2 s would
        let a 2 s lease lapse between refreshes), and at once when the hosted agents change."""
        every = min(PRESENCE_EVERY, self.config.lease / 3)
        while not self.stopping.is_set():
            self.presence_due.clear()
            try:
                await self.put_presence()
            except Exception as error:  # NATS away: next round
                self.log.debug("executor.presence_failed", error=str(error))
            try:
                await asyncio.wait_for(self.presence_due.wait(), every)
                await asyncio.sleep(PRESENCE_GATHER)  # more hosted at once: one write for all
            except TimeoutError:
                pass

    async def withdraw_presence(self) -> None:
        """This executor stops: its presence key goes at once (its agents with it)."""
        try:
            kv = await self.ledger.bus.kv(subjects.PRESENCE_BUCKET)
            await asyncio.wait_for(withdraw_hosts(kv, self.swarm, self.me), 2)
        except Exception as error:
            self.log.debug("executor.presence_not_removed", error=str(error))

    # --- the project's checkouts ---------------------------------------------------------------

    async def project_loop(self) -> None:
        """On project and agent events (and every few seconds): start the checkouts due for
        hosted agents, each agent's on its own (they clone side by side)."""
        while not self.stopping.is_set():
            try:
                await asyncio.wait_for(self.projects_changed.wait(), 5 * PRESENCE_EVERY)
            except TimeoutError:
                pass
            self.projects_changed.clear()
            if self.each_round is not None:  # e.g. landings left over (serving.py)
                self.later(self.each_round())
            for hosted in list(self.hosted.values()):
                busy = hosted.checkout_job is not None and not hosted.checkout_job.done()
                if busy or checkouts.due(self.ledger.board, self.swarm, hosted.id) is None:
                    continue
                hosted.checkout_job = asyncio.create_task(
                    self.checkout(hosted), name=f"checkout-{hosted.id}"
                )
                self.background.add(hosted.checkout_job)
                hosted.checkout_job.add_done_callback(self.background.discard)

    def later(self, coro: Coroutine[object, object, None]) -> None:
        """Run ``coro`` in the background (cancelled when the executor stops)."""
        task = asyncio.create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def checkout(self, hosted: HostedAgent) -> None:
        async with hosted.lock:
            await self.checkout_locked(hosted)

    async def checkout_locked(self, hosted: HostedAgent, *, before_task: bool = False) -> None:
        """Do the agent's due checkout, if any, and append how it went (holding its lock).
        ``before_task``: also redo the current one if the checkout itself is gone (a sandbox
        recreated from scratch), so the task still runs in the project."""
        board = self.ledger.board
        request = checkouts.due(board, self.swarm, hosted.id)
        if request is None and before_task:
            request = checkouts.current(board, self.swarm, hosted.id)
            if request is not None and await hosted.sandbox.path_exists(f"{CHECKOUT_DIR}/.git"):
                request = None
        if request is None or not hosted.active or self.stopping.is_set():
            return
        log = self.log.bind(
            agent=hosted.id, project=request.project, round=request.round, kind=request.kind
        )
        token = self.env.get(request.credentials_ref or "", "")
        if len(token) >= 6 and request.credentials_ref not in NOT_GIT_CREDENTIALS:
            if token not in self.secrets:  # masked in the agents' output and in logs too
                self.secrets.append(token)
            redactor.add(token)
        started = time.monotonic()
        outcome: CheckoutStatus | GitFailed
        try:
            outcome = await checkouts.perform(
                hosted.sandbox,
                request,
                env=self.env,
                timeout=self.config.git_timeout,
                secrets=self.secrets,
                executor=self.me,
            )
        except GitFailed as error:
            outcome = error
        except Exception as error:  # the sandbox itself failed: say so rather than stay silent
            log.exception("executor.checkout_crashed")
            outcome = GitFailed(f"checkout failed: {type(error).__name__}: {error}")
        event = checkouts.answer(request, outcome, decisions.actor(self.me))
        try:
            seq = await self.ledger.bus.events.append(event, msg_id=request.msg_id, retry_for=10.0)
            await self.ledger.projection.wait_for(seq)
        except Exception as error:  # NATS away: still due, done again on the next round
            log.warning("executor.checkout_unreported", error=str(error))
            return
        log.info(
            f"project.{event.verb}",
            seconds=round(time.monotonic() - started, 3),
            commit=getattr(event, "commit", None),
            error=getattr(event, "error", None),
        )
