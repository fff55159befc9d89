"""Serving claims: each hosted agent runs the attempts the log shows claimed by it, one at a
time, in its sandbox, and writes the result.

The claim in the log is the dispatch: the executor's fold wakes the agent's loop when a claim of
that agent is folded in (``decisions.claim_to_run`` says which), so no message goes between the
scheduler and the executor. Serving one: with the agent's lock, a due checkout first;
``task.running`` is appended with the task's version at the claim as expected sequence (a task
cancelled or requeued meanwhile makes it conflict: not started), carrying the mentions its prompt
takes and, for a claude task, the session it runs in; the result (``decisions.result``) is
appended only while the fold still shows this attempt running (zombie fencing). A claim this
executor did not start before it died is still in the log: its next life (or the executor that
takes the agent over) runs it; if none does, the agent's presence lapses and the scheduler
requeues the task.

With an initialised project (``workplan.py``, ``integration.py``): the task runs on its own branch
cut from the project branch's tip (``_start_work``), what it leaves is committed and pushed
(``_keep_work``), and a completed task's work is landed on the project branch (``_land``);
landings a crash left undone are done when the executor starts, and every few seconds after
(``land_left_over``).

Around each run: a claude task's prompt starts with the agent's unread chat mentions; an attempt
after one its agent ran and lost continues that session (``--resume``) when the sandbox still
holds it (``sessions.py``), and says so; the command gets the agent's API access and git identity
(``commits.py``: author, committer, ``Swarm-Task`` trailer) and runs in the agent's checkout when
there is one; a line goes to chat when the task starts (once it has run for
``START_LINE_AFTER``: a run ending sooner says it once, with its end line), completes or fails,
and when its work lands or cannot land (``chat_lines.py``).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import time
import uuid
from collections.abc import Mapping

from structlog.typing import FilteringBoundLogger

from schemas import events as ev
from schemas import subjects
from schemas.board import TaskView
from schemas.chat import ChatMessage
from schemas.errors import Unavailable
from services.bus import chat as chat_bus
from services.bus.eventlog import AppendConflict
from services.executor import (
    chat_lines,
    claude_settings,
    commits,
    decisions,
    git,
    integration,
    mentions,
    runs,
    sandboxes,
    sessions,
    workplan,
)
from services.executor.claude_settings import AgentClaude, ClaudeRun
from services.executor.config import ExecutorConfig
from services.executor.decisions import Append
from services.executor.git import CHECKOUT_DIR, GitFailed
from services.executor.hosting import ActiveRun, HostedAgent, Hosting
from services.executor.ledger import Ledger
from services.executor.output import OutputSink
from services.executor.runtimes import Verdict

CHAT_RETRY_SECONDS = 10.0
CLAIM_CHECK_EVERY = 2.0  # seconds: how often ``look_loop`` looks for claims not woken
RETRY_SECONDS = 1.0  # before serving a claim again whose serving crashed
# a run's "started" line is posted once it has run this long: a run ending sooner says it once,
# with its end line (one chat message per attempt instead of two for short tasks)
START_LINE_AFTER = 0.5


class Serving:
    def __init__(
        self,
        ledger: Ledger,
        config: ExecutorConfig,
        settings: runs.RunSettings,
        hosting: Hosting,
        secrets: list[str],
        stopping: asyncio.Event,
    ) -> None:
        self.ledger = ledger
        self.config = config
        self.settings = settings
        self.hosting = hosting
        self.secrets = secrets
        self.stopping = stopping
        self.swarm = config.swarm
        self.me = config.executor_id
        self.log = ledger.log
        self.runs: dict[str, ActiveRun] = {}
        self.chat_lines: asyncio.Queue[tuple[ChatMessage, str]] = asyncio.Queue()
        self.git = integration.TaskGit(  # the git around each task: branch, commit, landing
            env=settings.source_env,
            secrets=secrets,
            git_timeout=config.git_timeout,
            verify_timeout=config.task_timeout,
            pass_env=config.pass_env,
        )
        self._landing: set[str] = set()  # tasks whose work is being landed here
        self.start_line_after = START_LINE_AFTER

    # --- the loop per agent --------------------------------------------------------------------

    async def serve_agent(self, hosted: HostedAgent) -> None:
        """Run the agent's claims as the fold shows them, one at a time. Woken by each claim of
        this agent folded in (``wake``), and by ``look_loop`` when it finds one waiting."""
        while hosted.active and not self.stopping.is_set():
            hosted.wake.clear()  # before looking: a claim folded from now on wakes it again
            claim = decisions.claim_to_run(self.ledger.board, self.swarm, hosted.id)
            if claim is None:
                await hosted.wake.wait()
                continue
            hosted.serving = True
            crashed = False
            try:
                await self.serve(hosted, claim)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("executor.serve_failed", agent=hosted.id, task=claim.task)
                crashed = True
            finally:
                hosted.serving = False
            if crashed:  # the claim is still in the log: look again in a moment
                await asyncio.sleep(RETRY_SECONDS)

    async def look_loop(self) -> None:
        """Every ``CLAIM_CHECK_EVERY`` seconds, wake each hosted agent the fold shows with a
        claim to run: the safety net behind the wake-up on each folded claim. One loop for the
        executor, not a timer per agent (1,000 agents: 500 wake-ups a second for nothing)."""
        while not self.stopping.is_set():
            await asyncio.sleep(CLAIM_CHECK_EVERY)
            board = self.ledger.board
            for hosted in list(self.hosting.hosted.values()):
                if decisions.claim_to_run(board, self.swarm, hosted.id) is not None:
                    hosted.wake.set()

    async def serve(self, hosted: HostedAgent, claim: decisions.Claim) -> None:
        """Serve one claim: ``running`` at the claim's sequence, the run, the result."""
        log = self.log.bind(task=claim.task, agent=claim.agent, attempt=claim.attempt)
        async with hosted.lock:
            await self._serve_claimed(hosted, claim, log)

    async def _serve_claimed(
        self, hosted: HostedAgent, claim: decisions.Claim, log: FilteringBoundLogger
    ) -> None:
        """With the agent's checkout to itself: a due checkout first, then ``running`` (with the
        mentions its prompt takes and its session), the run, the result."""
        if self.stopping.is_set():  # waited for the lock while this executor began to stop
            return  # the claim stays in the log: this executor's next life serves it
        await self.hosting.checkout_locked(hosted, before_task=True)
        if decisions.claim_to_run(self.ledger.board, self.swarm, hosted.id) != claim:
            return  # the task moved on while the checkout ran
        claimed = self.ledger.board.task(self.swarm, claim.task)
        correlation = claimed.correlation_id if claimed is not None else None
        log = log.bind(correlation_id=correlation)
        attempt = decisions.Attempt(self.swarm, claim.task, claim.attempt, claim.agent, correlation)
        started = await self._start_work(hosted, attempt, claim.seq, claimed, log)
        if started is None:
            return  # it could not start in the project: failed, and said why
        plan, base = started
        delivery = mentions.Delivery()
        session: str | None = None
        resume: str | None = None
        if claimed is not None and mentions.takes_mentions(claimed.runtime):
            delivery = await self._unread(hosted.id)
        if claimed is not None and claimed.runtime == "claude":
            session, resume = await self._session(hosted, claimed)
        running = decisions.running(
            attempt,
            self.me,
            time.time(),
            inbox_read_through=delivery.read_through,
            session_id=session,
            resumed=resume is not None,
            branch=plan.branch if plan is not None else None,
            base=base,
        )
        seq = await self._start(running, claim, log)
        if seq is None:
            return
        run = ActiveRun(self.swarm, claim.task, claim.attempt, claim.agent, seq, correlation)
        self.runs[run.task] = run
        hosted.run = run
        log = log.bind(seq=seq)
        try:
            try:
                await self.ledger.projection.wait_for(seq)
            except Unavailable:
                pass  # the fold lags: the result append checks again
            board = self.ledger.board
            view = board.task(self.swarm, claim.task)
            if view is None or (
                board.seq >= seq
                and not decisions.is_current(board, run.swarm, run.task, run.attempt, run.agent)
            ):
                return  # cancelled (or more) the moment it started: nothing to run or say
            task = copy.copy(view)
            task.attempt = claim.attempt
            # one info line per attempt, its result's (issue 15: a log line cost as much as a
            # short task's fold): the start is at debug, and the result line says these too
            log = log.bind(
                runtime=task.runtime,
                mentions=len(delivery.entries),
                session=session,
                resumed=resume is not None,
            )
            log.debug("task.running")
            start_line = self._say_later(run, "started", task.title)
            claude = self._claude_run(hosted, task, session, resume)
            try:
                verdict = await self._run(hosted, task, run, delivery, claude)
            finally:
                if start_line is not None:
                    start_line.cancel()  # ended first: its end line says it all
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
                self.say(run, "completed", result.outcome.result)
                if plan is not None and result.work is not None and result.work.land:
                    await self._land(hosted, plan, result.work.base, result.work.head, log)
            elif isinstance(result, ev.TaskFailed | ev.TaskRequeued):  # a retry says so
                self.say(run, "failed", result.reason)
        finally:
            self.runs.pop(run.task, None)
            hosted.run = None

    async def _start(
        self, running: ev.TaskRunning, claim: decisions.Claim, log: FilteringBoundLogger
    ) -> int | None:
        """Append ``running`` at the claim's sequence: its sequence, or None when the task moved
        on since its claim (cancelled, requeued, or another executor started it first).

        Never gives up on a ``running`` that may be in the log: that would leave the task
        running, run by nobody. No answer from NATS: ask again until it answers (the msg id
        keeps it single); stopping meanwhile, this executor's next life requeues it if it landed
        (``orphaned_runs``) or serves the claim if not. A conflict: once the fold shows what
        beat it, that may be this very ``running`` (a try whose ack was lost, not yet readable
        when the bus checked): ``Ledger.beaten_by_itself`` says so, and then it is this run's
        start."""
        while True:
            try:
                try:
                    return await self.ledger.bus.events.append(
                        running, expected_seq=claim.seq, retry_for=5.0
                    )
                except AppendConflict:
                    own = await self.ledger.beaten_by_itself(running, claim.seq)
                    if own is not None:
                        return own
                    log.info(
                        "executor.claim_not_started", reason="the task moved on since its claim"
                    )
                    return None
            except Unavailable as error:
                if self.stopping.is_set():
                    return None
                log.warning("executor.start_unacknowledged", error=error.message)

    # --- what a run is given -------------------------------------------------------------------

    async def _session(self, hosted: HostedAgent, task: TaskView) -> tuple[str, str | None]:
        """(the session the attempt runs in, the earlier session it resumes or None)."""
        earlier = decisions.session_to_resume(task, hosted.id)
        if earlier is not None:
            try:
                if await sessions.held(hosted.sandbox, earlier):
                    return earlier, earlier
            except Exception as error:  # cannot tell: start over rather than fail
                self.log.warning("executor.session_unknown", task=task.id, error=str(error))
        return str(uuid.uuid4()), None

    def _claude_run(
        self, hosted: HostedAgent, task: TaskView, session: str | None, resume: str | None
    ) -> ClaudeRun | None:
        if task.runtime != "claude":
            return None
        agent = hosted.config.claude if hosted.config is not None else AgentClaude()
        run = claude_settings.resolve(
            self.settings.claude, self.settings.backend, agent, task.claude
        )
        return dataclasses.replace(run, session_id=session, resume=resume)

    def _identity(self, hosted: HostedAgent) -> git.Identity:
        """Who the agent's commits are by: the run's own and Swarm's for it."""
        view = self.ledger.board.agent(self.swarm, hosted.id)
        configured = hosted.config
        return git.identity(
            hosted.id,
            view.name if view is not None else None,
            git_name=configured.git_name if configured is not None else None,
            git_email=configured.git_email if configured is not None else None,
            email_domain=self.config.git_email_domain,
        )

    async def _commit_env(self, hosted: HostedAgent, task: TaskView) -> Mapping[str, str]:
        """The agent's git identity and the task's trailer for every commit the run makes (the
        hooks are put in its sandbox once)."""
        who = self._identity(hosted)
        if hosted.hooks_path is None:
            try:
                hosted.hooks_path = await commits.install_hooks(hosted.sandbox)
            except sandboxes.SandboxFailed:
                raise  # the sandbox itself: the run's handling says what happens
            except Exception as error:  # commits still get the identity, not the trailer
                self.log.warning("executor.hooks_not_installed", agent=hosted.id, error=str(error))
                return commits.identity_env(who)
        return commits.commit_env(who, task.id, hosted.hooks_path)

    async def _run(
        self,
        hosted: HostedAgent,
        task: TaskView,
        run: ActiveRun,
        delivery: mentions.Delivery,
        claude: ClaudeRun | None,
    ) -> Verdict:
        sink = None
        if task.runtime != "instant":
            sink = OutputSink(
                self.ledger.bus,
                swarm=self.swarm,
                task=task.id,
                attempt=run.attempt,
                agent=hosted.id,
                spool_dir=self.config.spool_dir,
                secrets=self.secrets,
            )
        try:
            extra_env: dict[str, str] = {}
            in_checkout = False
            if task.runtime != "instant":  # no process: no environment, no directory to run in
                extra_env = {**hosted.api_env, **await self._commit_env(hosted, task)}
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
                extra_env=extra_env,
                cwd=CHECKOUT_DIR if in_checkout else None,
                claude=claude,
            )
        except sandboxes.SandboxLost as error:  # [daytona hook] a new sandbox: this attempt again
            self.log.warning("executor.sandbox_lost", task=task.id, error=error.reason)
            hosted.hooks_path = None  # a new sandbox has none
            run.stop(f"sandbox lost: {error.reason}", cause="run_lost")
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

    # --- the result ----------------------------------------------------------------------------

    async def _finish(
        self,
        run: ActiveRun,
        verdict: Verdict,
        log: FilteringBoundLogger,
        work: ev.Work | None = None,
    ) -> ev.TaskCompleted | ev.TaskFailed | ev.TaskRequeued | None:
        """Append the result (or, when the attempt was stopped for a reason not its own, give it
        back; a failed run with run failures left goes back to the queue: its claim carries the
        budgets). Returns the result appended (None: refused, or given back)."""
        task = self.ledger.board.task(run.swarm, run.task)
        event = decisions.result(
            run.named,
            verdict,
            self.me,
            time.time(),
            given_back=run.why,
            cause=run.cause,
            work=work,
            task=task,
            allowance=decisions.Allowance.of(task),
        )
        expected = run.running_seq
        while True:
            board = self.ledger.board
            if not decisions.is_current(board, run.swarm, run.task, run.attempt, run.agent):
                task = board.task(run.swarm, run.task)
                log.info(
                    "executor.result_refused",
                    why=run.why or (task.status if task else "deleted"),
                    result=event.verb,
                )
                return None
            try:
                try:
                    seq = await self.ledger.bus.events.append(
                        event, expected_seq=expected, retry_for=30.0
                    )
                except AppendConflict:
                    # what beat it may be this very result (its first try): then it is in
                    # the log, and refusing it would leave its work unlanded, its line unsaid
                    own = await self.ledger.beaten_by_itself(event, expected)
                    if own is None:
                        expected = self.ledger.board.version(run.swarm, "task", run.task)
                        continue
                    seq = own
            except Unavailable as error:
                if self.stopping.is_set():
                    log.error("executor.result_lost", error=error.message)
                    return None
                continue  # NATS away: keep trying (the msg id keeps it single)
            log.info(f"task.{event.verb}", result_seq=seq, reason=getattr(event, "reason", None))
            if isinstance(event, ev.TaskRequeued) and event.cause != "run_failed":
                return None  # given back
            return event

    # --- the task's branch and landing its work (integration.py) -------------------------------

    async def _start_work(
        self,
        hosted: HostedAgent,
        attempt: decisions.Attempt,
        claim_seq: int,
        task: TaskView | None,
        log: FilteringBoundLogger,
    ) -> tuple[workplan.WorkPlan | None, str | None] | None:
        """Before the run: the task's branch from the project branch's newest tip. (plan,
        base); (None, None) when there is no git around it; None when it cannot start in the
        project (the task is failed with the reason)."""
        if task is None:
            return None, None
        try:
            plan = workplan.plan(self.ledger.board, self.swarm, task, hosted.id)
            if plan is None:
                return None, None
            plan = dataclasses.replace(plan, identity=self._identity(hosted))
            return plan, await self.git.start(hosted.sandbox, plan)
        except GitFailed as error:
            reason = f"could not start the task's branch: {error.message}"
        except Exception as error:  # the sandbox itself failed
            log.exception("executor.branch_crashed")
            reason = f"could not start the task's branch: {type(error).__name__}: {error}"
        log.warning("executor.branch_failed", error=reason)
        failed = decisions.not_started(attempt, self.me, time.time(), reason)
        await self.ledger.append(Append(failed, claim_seq), retry_for=30.0)
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
            task = self.ledger.board.task(self.swarm, plan.task)
            event = workplan.landing_event(
                plan, outcome, decisions.actor(self.me), task.correlation_id if task else None
            )
            while True:
                task = self.ledger.board.task(self.swarm, plan.task)
                if (
                    task is None
                    or task.attempt != plan.attempt
                    or task.integration is None
                    or task.integration.state != "landing"
                ):
                    return  # recorded meanwhile (another try), or the task is gone
                expected = self.ledger.board.version(self.swarm, "task", plan.task)
                try:
                    seq = await self.ledger.bus.events.append(
                        event, expected_seq=expected, retry_for=30.0
                    )
                except AppendConflict:
                    await self.ledger.settled("task", plan.task, expected)
                    continue
                except Unavailable as error:
                    log.warning("executor.landing_unrecorded", error=error.message)
                    return  # still landing in the log: done again (found landed) later
                await self.ledger.projection.wait_for(seq)
                log.info(
                    event.type,
                    landed=getattr(event, "landed", None),
                    problem=getattr(event, "problem", None),
                    tries=outcome.tries,
                    seconds=round(outcome.seconds, 3),
                )
                self._say_landing(hosted.id, plan)
                return
        finally:
            self._landing.discard(plan.task)

    async def land_left_over(self) -> None:
        """Landings left undone: a previous life of this executor stopped between a task's
        ``completed`` and its landing (done in that agent's checkout), or the task's agent is
        lost or gone (done in the checkout of an idle agent of ours; a second executor doing
        the same finds the work landed)."""
        hosted_agents = self.hosting.hosted
        board = self.ledger.board
        for task in workplan.landings_due(board, self.swarm, list(hosted_agents)):
            hosted = hosted_agents.get(task.agent or "") or self._idle_agent()
            plan = workplan.landing_plan(self.ledger.board, self.swarm, task)
            work = task.integration
            if hosted is None or plan is None or work is None or task.id in self._landing:
                continue
            if work.base is None or work.head is None:
                continue
            async with hosted.lock:
                if self.stopping.is_set():
                    return
                now = self.ledger.board.task(self.swarm, task.id)
                if now is None or now.integration is None or now.integration.state != "landing":
                    continue  # landed meanwhile (the run that completed it landed it)
                log = self.log.bind(task=task.id, agent=hosted.id, ran_on=task.agent)
                log.info("executor.landing_resumed")
                await self._land(hosted, plan, work.base, work.head, log)

    def _idle_agent(self) -> HostedAgent | None:
        """One of ours with a checkout of the project and nothing to do right now."""
        project = workplan.attached(self.ledger.board, self.swarm)
        for hosted in self.hosting.hosted.values():
            checkout = project.checkouts.get(hosted.id) if project is not None else None
            if checkout is None or checkout.state != "synced":
                continue
            if hosted.run is None and not hosted.serving and not hosted.lock.locked():
                return hosted
        return None

    # --- mentions and chat lines -----------------------------------------------------------------

    async def _unread(self, agent: str) -> mentions.Delivery:
        """The agent's unread mentions that fit in its next prompt. Inbox unreadable (NATS
        away): none this time; they stay unread, nothing is lost."""
        view = self.ledger.board.agent(self.swarm, agent)
        read_through = view.read_through if view is not None else 0
        try:
            kv = await self.ledger.bus.kv(subjects.INBOX_BUCKET)
            inbox, _ = await chat_bus.read_inbox(kv, self.swarm, agent)
        except Exception as error:
            self.log.warning("executor.inbox_unreadable", agent=agent, error=str(error))
            return mentions.Delivery()
        return mentions.take(inbox, read_through)

    def say(self, run: ActiveRun, verb: chat_lines.Verb, detail: str) -> None:
        """Queue a chat line (posted in order, behind the run: a slow chat never slows it)."""
        self._say(run.agent, run.task, run.attempt, verb, detail)

    def _say_later(
        self, run: ActiveRun, verb: chat_lines.Verb, detail: str
    ) -> asyncio.TimerHandle | None:
        """``say`` once ``start_line_after`` seconds have passed, unless the handle returned is
        cancelled first (None: said at once)."""
        if self.start_line_after <= 0:
            self.say(run, verb, detail)
            return None
        loop = asyncio.get_running_loop()
        return loop.call_later(self.start_line_after, self.say, run, verb, detail)

    def _say_landing(self, agent: str, plan: workplan.WorkPlan) -> None:
        """The line saying how a landing went, as the log now has it, by the agent whose
        checkout did it."""
        task = self.ledger.board.task(self.swarm, plan.task)
        if task is None or task.integration is None or task.attempt != plan.attempt:
            return
        line = chat_lines.landing(task.integration, task.resolves)
        if line is not None:
            self._say(agent, plan.task, plan.attempt, *line, onto=plan.onto)

    def _say(
        self,
        agent: str,
        task: str,
        attempt: int,
        verb: chat_lines.Verb,
        detail: str,
        onto: str | None = None,
    ) -> None:
        self.chat_lines.put_nowait(
            chat_lines.message(
                self.swarm,
                agent,
                task,
                attempt,
                verb,
                detail,
                onto=onto,
                secrets=self.secrets,
                now=time.time(),
            )
        )

    async def chat_loop(self) -> None:
        while True:
            message, msg_id = await self.chat_lines.get()
            try:  # NATS away: retried for a while (the msg id keeps it single)
                await chat_bus.post(
                    self.ledger.bus.js, message, msg_id, retry_for=CHAT_RETRY_SECONDS
                )
            except Exception as error:
                self.log.warning("executor.chat_line_lost", error=str(error))
            finally:
                self.chat_lines.task_done()
