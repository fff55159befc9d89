"""The scheduler's heart: ``decide(board, now, config, presence) -> list[Decision]``.

A pure function of the fold, the clock and the agents' presence; no I/O. Each ``Decision`` is one
event plus what appending it needs: the expected sequence of its aggregate (from the board the
decision was made on) and a deterministic message id, so the same decision made twice (a retry,
a second scheduler) is one event in the log, and a decision made on a stale board loses the
expected-sequence check instead of doing harm.

What it decides, per swarm:

- **lost agents**: a hosted agent last listed in a presence key longer than the lease ago (or
  that no key lists and registered/updated longer than a lease ago) -> ``agent.lost``;
- **requeues**: a claimed or running task whose agent is lost (or gone) -> ``task.requeued`` with
  the next attempt (a claim that never ran: at once; a lost run: after a backoff), or
  ``task.failed`` once the budget of that kind is used up (``schemas.attempts``); a requeued task
  whose budget is used up (its executor gave it back) -> ``task.failed`` saying which;
- **cascades**: a blocked, pending or requeued task whose dependency failed, was cancelled or was
  deleted -> ``task.failed`` saying which dependency and why (no task waits forever);
- **unblocks**: a blocked task whose dependencies all completed -> ``task.unblocked``;
- **triggers**: a finished task's follow-ups for how it ended -> ``task.created`` with the id
  ``<task>-<on>-<index>``, appended with expected sequence 0 so it exists exactly once (a
  completed task's, once its work has landed: ``schemas.landing``);
- **resolve tasks**: a completed task whose work cannot land and whose project resolves
  conflicts -> ``task.created`` ``<origin>-resolve-<round>`` (``resolving.py``), exactly once;
- **claims**: claimable tasks (pending, or requeued and past ``retry_at``, dependencies done) to
  free agents (idle, hosted, present), by ``matching.match`` (priorities aged by
  ``priority_aging``: no task starves behind a stream of higher ones); a swarm whose recorded
  spend has reached its budget gets no claims for its claude tasks (``within_budget``).

An aggregate gets at most one decision per call, and never one that is ``in_flight`` (the
service's appends not yet folded back), so each decision applies to the board it was made on.

A finished task never changes again, so one without follow-ups to write never needs a decision
again; ``OpenTasks`` keeps, as the log is folded, the ids of the others, and ``decide`` given it
looks at those only: a long-lived swarm's history does not slow every decision down.

A deep queue does not either. A pending task without dependencies can only ever be claimed, so
``OpenTasks`` keeps those apart (``waiting``), per priority, oldest first. Within one priority
the claim order (``matching.claim_order``: aged rank, then age) is the age order, since an older
task is aged as much or more; so ``decide`` given ``OpenTasks`` looks at no waiting task when no
agent is free, and otherwise merges the priorities' queues lazily and stops once every free agent
has its task: a round costs what it decides, not the queue's length.
"""

from __future__ import annotations

import bisect
import heapq
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from schemas import events as ev
from schemas import subjects
from schemas.attempts import Budgets, one_more, run_number, spent
from schemas.board import ACTIVE, FINISHED, AgentView, Board, SwarmView, TaskView
from schemas.budgets import budget_reached, held
from schemas.errors import Invalid
from schemas.fold import deps_done
from schemas.graph import on_cycles
from schemas.landing import dependency_landing, landing, needs_resolver, resolve_task_id
from services.scheduler.free_agents import FreeAgents, is_candidate
from services.scheduler.matching import claim_order, match, match_groups, match_in_order
from services.scheduler.resolving import resolve_spec

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


@dataclass(frozen=True)
class Config:
    """``lease``: seconds without presence before an agent is lost (also the leader lease).
    ``max_run_losses``, ``max_run_failures``, ``max_interruptions``: the task's budgets
    (``schemas.attempts``): runs lost with their agent, runs failed on their own, and claims
    lost before their run started plus runs stopped by their executor.
    ``backoff``: seconds before the retry of a lost or failed run, doubling per retry of that
    kind up to ``backoff_cap`` (a lost claim is retried at once).
    ``priority_aging``: seconds of waiting that raise a task's priority one level in matching
    (0: never; ``matching.py``).
    ``actor``: written into every event the scheduler appends."""

    lease: float = 10.0
    max_run_losses: int = 3
    max_run_failures: int = 1
    max_interruptions: int = 20
    backoff: float = 2.0
    backoff_cap: float = 60.0
    priority_aging: float = 300.0
    actor: str = "scheduler"

    def __post_init__(self) -> None:
        if not self.lease > 0:
            raise Invalid("lease_seconds", f"lease must be more than 0 seconds, not {self.lease}")
        _ = self.budgets  # checks them, naming the one at fault
        if self.backoff < 0 or self.backoff_cap < 0:
            raise Invalid("retry_backoff", f"backoff must not be negative, not {self.backoff}")
        if not self.priority_aging >= 0:
            raise Invalid(
                "priority_aging",
                f"priority aging must be 0 (off) or more seconds, not {self.priority_aging}",
            )

    @property
    def budgets(self) -> Budgets:
        return Budgets(
            interruptions=self.max_interruptions,
            run_losses=self.max_run_losses,
            run_failures=self.max_run_failures,
        )

    def retry_delay(self, attempt: int) -> float:
        """Seconds to wait before the retry after the ``attempt``-th lost or failed run (1:
        base, then doubling)."""
        return min(self.backoff_cap, self.backoff * 2.0 ** max(0, attempt - 1))


def claim_budgets(task: TaskView, config: Config) -> ev.AttemptBudgets:
    """What a claim of ``task`` carries to the executor: the budgets, and the seconds before the
    retry if this run fails on its own and its run-failure budget is not used up."""
    return ev.AttemptBudgets(
        run_failures=config.max_run_failures,
        run_losses=config.max_run_losses,
        interruptions=config.max_interruptions,
        retry_in=config.retry_delay(task.runs_failed + 1),
    )


_CLAIMABLE = ("pending", "requeued")  # statuses a claim can come from


def aggregate_key(swarm: str, aggregate: str, aggregate_id: str) -> str:
    """The same key ``Board.versions`` uses."""
    return f"{swarm}/{aggregate}/{aggregate_id}"


@dataclass(frozen=True)
class Decision:
    """One event to append, with the expected sequence of its aggregate and its message id.
    ``agent``: for a claim, the agent it takes (busy until the claim is folded)."""

    event: ev.Event
    expected_seq: int
    agent: str | None = None

    @property
    def key(self) -> str:
        return aggregate_key(self.event.swarm, self.event.aggregate, self.event.id)

    @property
    def msg_id(self) -> str:
        return self.event.event_id

    @property
    def keys(self) -> tuple[str, ...]:
        """The aggregates this decision keeps busy while its append is in flight."""
        if self.agent is None:
            return (self.key,)
        return (self.key, aggregate_key(self.event.swarm, "agent", self.agent))


def msg_id(
    swarm: str, aggregate: str, aggregate_id: str, verb: str, expected: int, *more: object
) -> str:
    """Deterministic: the same decision on the same board always gets the same id."""
    return ":".join([swarm, aggregate, aggregate_id, verb, str(expected), *map(str, more)])


def may_need_decision(task: TaskView) -> bool:
    """Unfinished, or finished with follow-ups (triggers, a resolve task) that may be left to
    write."""
    return (
        task.status not in FINISHED
        or (bool(task.triggers) and task.status != "cancelled")
        or needs_resolver(task)
    )


def waits_plainly(task: TaskView) -> bool:
    """Pending without dependencies: all a round can decide for it is a claim."""
    return task.status == "pending" and not task.depends


QueueEntry = tuple[float, int, str]  # (created_at, created_seq, task id): age order


@dataclass
class OpenTasks:
    """Per swarm, the ids of the tasks that ``may_need_decision``, in the board's order (ids are
    added when a task is created, and a finished task never comes back). ``track`` after each
    folded event keeps it true; ``of_board`` builds it from a whole board (e.g. a snapshot).

    The same tasks, split for ``decide``: ``waiting``, those that ``waits_plainly``, per priority,
    oldest first; ``others``, the rest."""

    swarms: dict[str, dict[str, None]] = field(default_factory=dict)
    others: dict[str, dict[str, None]] = field(default_factory=dict)
    waiting: dict[str, dict[ev.Priority, list[QueueEntry]]] = field(default_factory=dict)
    _queued: dict[str, dict[str, tuple[ev.Priority, QueueEntry]]] = field(default_factory=dict)

    @classmethod
    def of_board(cls, board: Board) -> OpenTasks:
        built = cls()
        for swarm in board.swarms.values():
            built.swarms[swarm.id] = {}
            for task in swarm.tasks.live():  # a frozen task needs no decision
                if may_need_decision(task):
                    built.swarms[swarm.id][task.id] = None
                    built._put(swarm.id, task)
        return built

    def track(self, board: Board, event: ev.Event) -> None:
        """After ``event`` is folded into ``board``."""
        if isinstance(event, ev.TaskEvent):
            view = board.swarms.get(event.swarm)  # a frozen task needs no decision: not decoded
            task = view.tasks.live_task(event.id) if view is not None else None
            ids = self.swarms.setdefault(event.swarm, {})
            self._take(event.swarm, event.id)
            if task is not None and may_need_decision(task):
                ids.setdefault(event.id)
                self._put(event.swarm, task)
            else:
                ids.pop(event.id, None)
        elif isinstance(event, ev.SwarmEvent) and event.swarm not in board.swarms:
            for kept in (self.swarms, self.others, self.waiting, self._queued):
                kept.pop(event.swarm, None)

    def _put(self, swarm: str, task: TaskView) -> None:
        """``task`` (open) into ``waiting`` or ``others``."""
        if not waits_plainly(task):
            self.others.setdefault(swarm, {})[task.id] = None
            return
        entry = (task.created_at, task.created_seq, task.id)
        queue = self.waiting.setdefault(swarm, {}).setdefault(task.priority, [])
        bisect.insort(queue, entry)
        self._queued.setdefault(swarm, {})[task.id] = (task.priority, entry)

    def _take(self, swarm: str, task_id: str) -> None:
        """``task_id`` out of ``waiting`` and ``others`` (no empty queue left behind)."""
        others = self.others.get(swarm)
        if others is not None and others.pop(task_id, 0) is None and not others:
            del self.others[swarm]
        queued = self._queued.get(swarm, {}).pop(task_id, None)
        if queued is not None:
            priority, entry = queued
            queues = self.waiting[swarm]
            queue = queues[priority]
            del queue[bisect.bisect_left(queue, entry)]
            if not queue:
                del queues[priority]
                if not queues:
                    del self.waiting[swarm]


def presence_age(agent: AgentView, now: float, presence: Mapping[str, float]) -> float:
    """Seconds since the agent was last known alive: the last presence key listing it was heard,
    or its (re)registration."""
    seen = max(agent.registered_at, agent.updated_at)
    heard = presence.get(subjects.presence_key(agent.swarm, agent.id))
    if heard is not None and heard > seen:
        seen = heard
    return now - seen


def is_present(agent: AgentView, now: float, config: Config, presence: Mapping[str, float]) -> bool:
    return presence_age(agent, now, presence) <= config.lease


def decide(
    board: Board,
    now: float,
    config: Config | None = None,
    presence: Mapping[str, float] | None = None,
    *,
    in_flight: Collection[str] = (),
    swarms: Iterable[str] | None = None,
    open_tasks: OpenTasks | None = None,
    check_cycles: bool = True,
    check_presence: bool = True,
    free_agents: FreeAgents | None = None,
) -> list[Decision]:
    """Everything the scheduler should append now.

    ``presence``: agent (``<swarm>.<agent>``) -> when a presence key listing it was last heard
    (seconds, same clock as ``now``). ``in_flight``: aggregate keys with an append not yet
    folded: left alone.
    ``swarms``: decide for these swarms only (default: all). ``open_tasks``: kept in step with
    ``board``; only those tasks are looked at (default: every task; the same decisions).
    ``check_cycles``: also fail blocked tasks caught in a dependency cycle (one the gateway could
    not see: two replicas each adding one edge). The scheduler asks on its reconcile rounds.
    ``check_presence`` False: the agents are looked at only when a task waits to be claimed (a
    round after a task finished, with none waiting, looks at no agent: with 1,000 agents that
    was most of the scheduler's work per task); lost agents are then found on the rounds that
    check (the scheduler's reconcile rounds, a fraction of the lease apart).
    ``free_agents``: kept in step with ``board``; with it, a round without the presence check
    that may claim looks only at the agents it passes over or takes (``matching.match_groups``)
    instead of every agent, and leaves lost agents to the rounds that check (the same claims).
    """
    config = config or Config()
    presence = presence or {}
    names = board.swarms.keys() if swarms is None else swarms
    decisions: list[Decision] = []
    for name in names:
        swarm = board.swarms.get(name)
        if swarm is None:
            continue
        tasks: Iterable[TaskView] = swarm.tasks.live()  # a frozen task needs no decision
        waiting: Mapping[ev.Priority, list[QueueEntry]] | None = None
        if open_tasks is not None:
            ids = open_tasks.others.get(name, {})
            found = [task for i in ids if (task := swarm.tasks.get(i)) is not None]
            tasks = sorted(found, key=lambda task: task.created_seq)  # the board's order
            waiting = open_tasks.waiting.get(name, {})
        decisions += _decide_swarm(
            board,
            swarm,
            tasks,
            now,
            config,
            presence,
            in_flight,
            check_cycles,
            waiting,
            check_presence,
            None if free_agents is None else free_agents.groups.get(name, {}),
        )
    return decisions


def _decide_swarm(
    board: Board,
    swarm: SwarmView,
    tasks: Iterable[TaskView],
    now: float,
    config: Config,
    presence: Mapping[str, float],
    in_flight: Collection[str],
    check_cycles: bool = True,
    waiting: Mapping[ev.Priority, list[QueueEntry]] | None = None,
    check_presence: bool = True,
    groups: Mapping[tuple[str, ...], list[str]] | None = None,
) -> list[Decision]:
    """``tasks``: the tasks to look at, in the board's order. ``waiting``: more tasks, that
    ``waits_plainly``, kept apart by ``OpenTasks`` (None: they are among ``tasks``).
    ``groups``: the swarm's candidate agents by skill list (``FreeAgents``), or None."""
    out: list[Decision] = []
    planner = _Planner(board, swarm, now, config, in_flight)
    tasks = list(tasks)
    indexed = False  # free agents from ``groups``, asked one by one (no agent scan)
    if not check_presence:  # the agents matter only to a task waiting to be claimed
        claim_possible = _claim_possible(planner, tasks, waiting)
        indexed = claim_possible and groups is not None
        check_presence = claim_possible and not indexed
    cycles: dict[str, list[str]] = {}
    if check_cycles:
        blocked = [t.id for t in tasks if t.status == "blocked"]
        if blocked:
            cycles = on_cycles(_Depends(swarm), blocked)

    free: list[AgentView] = []
    # every agent, every round: kept tight (``presence_age`` inlined; 1,000 agents)
    heard_of = presence.get
    prefix = subjects.presence_key(swarm.id, "")
    lease = config.lease
    busy_key = aggregate_key(swarm.id, "agent", "")
    busy = {key[len(busy_key) :] for key in in_flight if key.startswith(busy_key)}
    for agent in swarm.agents.values() if check_presence else ():
        if agent.status == "lost" or agent.id in busy:
            continue
        if agent.executor is None and agent.task is None:
            continue  # hosted nowhere: neither lost nor free
        seen = agent.registered_at if agent.registered_at > agent.updated_at else agent.updated_at
        heard = heard_of(prefix + agent.id)
        if heard is not None and heard > seen:
            seen = heard
        if now - seen > lease:
            age = now - seen
            out.append(planner.lost(agent, f"no presence for {age:.1f}s (lease {lease:g}s)"))
        elif agent.status == "idle" and agent.task is None and agent.executor is not None:
            free.append(agent)

    claimable: list[TaskView] = []
    for task in tasks:
        status = task.status
        if status in FINISHED:  # most of a long-lived swarm: only follow-ups left to write
            if needs_resolver(task):
                out += planner.resolver(task)
            elif task.triggers and status != "cancelled" and landed_or_failed(swarm, task):
                out += planner.follow_ups(task)
            continue
        if not free and not indexed and not task.depends and status == "pending":
            continue  # no dependency to watch and no agent to take it: nothing to decide
        if planner.busy("task", task.id):
            continue
        if status in ACTIVE:
            decision = planner.requeue_if_agent_lost(task)
        else:  # blocked, pending, requeued
            decision = planner.fail_if_spent(task) if status == "requeued" else None
            if decision is None:
                decision = planner.cascade(task)
            if decision is None and task.id in cycles:
                decision = planner.fail(task, "dependency cycle: " + " -> ".join(cycles[task.id]))
            if decision is None:
                if status == "blocked":
                    if deps_done(swarm, task):
                        decision = planner.unblock(task)
                elif task.retry_at <= now and deps_done(swarm, task):
                    claimable.append(task)
        if decision is not None:
            out.append(decision)

    aging = config.priority_aging
    if indexed and groups:
        queue: Iterable[TaskView]
        if waiting is None:
            queue = sorted(
                within_budget(swarm, claimable), key=lambda task: claim_order(task, now, aging)
            )
        else:
            queue = _claim_queue(planner, within_budget(swarm, claimable), waiting, aging)
        pairs = match_groups(queue, groups, _usable(planner, presence, lease))
    elif indexed:
        pairs = []
    elif waiting is None:
        pairs = match(within_budget(swarm, claimable), free, now, aging)
    elif not free:
        pairs = []
    else:
        queue = _claim_queue(planner, within_budget(swarm, claimable), waiting, aging)
        pairs = match_in_order(queue, free)
    for task, agent in pairs:
        out.append(planner.claim(task, agent))
    return out


def _usable(
    planner: _Planner, presence: Mapping[str, float], lease: float
) -> Callable[[str], AgentView | None]:
    """Of a candidate agent's id (``FreeAgents``): the agent if a claim may go to it now (still
    a candidate, no append for it in flight, heard within the lease), else None."""
    agents, now = planner.swarm.agents, planner.now
    prefix = subjects.presence_key(planner.swarm.id, "")

    def usable(agent_id: str) -> AgentView | None:
        agent = agents.get(agent_id)
        if agent is None or not is_candidate(agent) or planner.busy("agent", agent_id):
            return None
        seen = max(agent.registered_at, agent.updated_at)
        heard = presence.get(prefix + agent_id)
        if heard is not None and heard > seen:
            seen = heard
        return agent if now - seen <= lease else None

    return usable


def _claim_possible(
    planner: _Planner,
    tasks: list[TaskView],
    waiting: Mapping[ev.Priority, list[QueueEntry]] | None,
) -> bool:
    """Whether a task may be claimed this round: one pending or requeued and not in flight (the
    round right after a claim's append still shows its task pending, in flight)."""
    if any(t.status in _CLAIMABLE and not planner.busy("task", t.id) for t in tasks):
        return True
    queues = waiting.values() if waiting else ()
    return any(not planner.busy("task", task_id) for queue in queues for _, _, task_id in queue)


def _claim_queue(
    planner: _Planner,
    claimable: list[TaskView],
    waiting: Mapping[ev.Priority, list[QueueEntry]],
    aging: float,
) -> Iterator[TaskView]:
    """Every claimable task in claim order, lazily: ``claimable`` sorted, merged with each
    priority's queue of plainly waiting tasks (age order is claim order within a priority) less
    those in flight, not yet due or held by the budget."""
    swarm, now = planner.swarm, planner.now
    budget_holds = budget_reached(swarm) is not None

    def keyed(task: TaskView) -> tuple[tuple[int, float, int], str, TaskView]:
        return claim_order(task, now, aging), task.id, task

    def due(queue: list[QueueEntry]) -> Iterator[tuple[tuple[int, float, int], str, TaskView]]:
        for _, _, task_id in queue:
            task = swarm.tasks.get(task_id)
            if task is None or task.retry_at > now or planner.busy("task", task_id):
                continue
            if budget_holds and held(swarm, task):
                continue
            yield keyed(task)

    streams = [sorted(map(keyed, claimable)), *(due(queue) for queue in waiting.values())]
    for _, _, task in heapq.merge(*streams):
        yield task


def within_budget(swarm: SwarmView, claimable: list[TaskView]) -> list[TaskView]:
    """The claimable tasks the swarm's budget lets through: none of its claude tasks once its
    recorded spend has reached its budget (``schemas.budgets``)."""
    if budget_reached(swarm) is None:
        return claimable
    return [task for task in claimable if not held(swarm, task)]


def landed_or_failed(swarm: SwarmView, task: TaskView) -> bool:
    """A finished task whose follow-ups may be written: a completed one once its work landed (a
    task whose work then cannot land fails, and its ``failed`` follow-ups are the ones)."""
    return task.status != "completed" or landing(swarm, task).state == "done"


class _Depends(Mapping[str, list[str]]):
    """A swarm's dependency graph, read from its tasks as the search goes."""

    def __init__(self, swarm: SwarmView) -> None:
        self._tasks = swarm.tasks

    def __getitem__(self, task_id: str) -> list[str]:
        return self._tasks[task_id].depends

    def __iter__(self) -> Iterator[str]:
        return iter(self._tasks)

    def __len__(self) -> int:
        return len(self._tasks)


class _Planner:
    """Builds the decisions for one swarm: events stamped with time and actor, expected
    sequences from the board, deterministic message ids."""

    def __init__(
        self, board: Board, swarm: SwarmView, now: float, config: Config, in_flight: Collection[str]
    ) -> None:
        self.board = board
        self.swarm = swarm
        self.now = now
        self.config = config
        self.in_flight = in_flight

    def busy(self, aggregate: str, aggregate_id: str) -> bool:
        if not self.in_flight:
            return False
        return aggregate_key(self.swarm.id, aggregate, aggregate_id) in self.in_flight

    def _decision(
        self,
        cls: type[ev.Event],
        aggregate_id: str,
        *more: object,
        reserve: str | None = None,
        **fields: object,
    ) -> Decision:
        aggregate = cls.aggregate
        expected = self.board.version(self.swarm.id, aggregate, aggregate_id)
        verb = str(cls.__struct_config__.tag).rsplit(".", 1)[1]
        task = self.swarm.tasks.get(aggregate_id) if aggregate == "task" else None
        fields.setdefault("correlation_id", task.correlation_id if task else None)
        # ``fields`` are the ones of ``cls`` (each caller names them): not checkable here
        event = cls(
            swarm=self.swarm.id,
            id=aggregate_id,
            time=self.now,
            actor=self.config.actor,
            event_id=msg_id(self.swarm.id, aggregate, aggregate_id, verb, expected, *more),
            **fields,  # type: ignore[arg-type]
        )
        return Decision(event=event, expected_seq=expected, agent=reserve)

    # --- agents ---------------------------------------------------------------------------

    def lost(self, agent: AgentView, reason: str) -> Decision:
        return self._decision(ev.AgentLost, agent.id, reason=reason)

    # --- tasks ----------------------------------------------------------------------------

    def requeue_if_agent_lost(self, task: TaskView) -> Decision | None:
        """A claimed or running task whose agent is lost (or gone): back to the queue, or failed
        once the budget of its kind is used up. A claim lost before its run started is an
        interruption (retried at once); a run lost is a run loss (retried after backoff)."""
        agent = self.swarm.agents.get(task.agent) if task.agent else None
        if agent is not None and agent.status != "lost":
            return None
        who = task.agent or "?"
        run = run_number(task)
        if task.status == "claimed":
            cause: ev.AttemptEnd = "claim_lost"
            what = f"agent {who} lost before run {run} started"
        else:
            cause = "run_lost"
            what = f"agent {who} lost during run {run}"
        outcome = one_more(task, cause, self.config.budgets)
        reason = f"{what}; {outcome.text}"
        if outcome.final:
            return self._decision(
                ev.TaskFailed,
                task.id,
                reason=reason,
                attempt=task.attempt,
                agent=task.agent,
                cause=cause,
            )
        delay = 0.0 if cause == "claim_lost" else self.config.retry_delay(outcome.used)
        return self._decision(
            ev.TaskRequeued,
            task.id,
            attempt=task.attempt + 1,
            reason=reason,
            retry_at=self.now + delay,
            cause=cause,
        )

    def fail_if_spent(self, task: TaskView) -> Decision | None:
        """A requeued task whose budget is used up (its executor gave it back with the last one
        allowed, or the budgets were lowered since): it fails, saying which."""
        used_up = spent(task, self.config.budgets)
        if used_up is None:
            return None
        reason = task.reason or ""
        if not reason.endswith(used_up):  # an executor that knew the budget said so already
            reason = f"{reason}; {used_up}" if reason else used_up
        return self.fail(task, reason)

    def cascade(self, task: TaskView) -> Decision | None:
        """Fail a waiting task whose dependency can no longer complete, or whose dependency's
        work can never land."""
        tasks = self.swarm.tasks
        for dep in task.depends:
            if dep not in tasks:
                if self.board.version(self.swarm.id, "task", dep) == 0:
                    continue  # not written yet (a sibling follow-up on its way): wait
                why = "deleted"
            elif (status := tasks.frozen_status(dep) or tasks[dep].status) in (
                "failed",
                "cancelled",
            ):
                why = status  # a frozen dependency is not decoded: its status says it
            else:
                found = dependency_landing(self.swarm, dep)
                if found.state != "never":
                    continue
                why = found.reason
            return self._decision(ev.TaskFailed, task.id, reason=f"dependency {dep} {why}")
        return None

    def fail(self, task: TaskView, reason: str) -> Decision:
        return self._decision(ev.TaskFailed, task.id, reason=reason)

    def unblock(self, task: TaskView) -> Decision:
        return self._decision(ev.TaskUnblocked, task.id)

    def follow_ups(self, task: TaskView) -> list[Decision]:
        """``task.created`` for each trigger matching how ``task`` ended, not yet written."""
        out: list[Decision] = []
        for index, trigger in enumerate(task.triggers):
            if trigger.on != task.status:
                continue
            follow_up = f"{task.id}-{trigger.on}-{index}"
            if not _TOKEN.match(follow_up) or self.busy("task", follow_up):
                continue
            if self.board.version(self.swarm.id, "task", follow_up):
                continue  # written already (even if deleted since)
            out.append(self._created(follow_up, trigger.task, task))
        return out

    def _created(
        self, task_id: str, spec: ev.TaskSpec, parent: TaskView, resolves: str | None = None
    ) -> Decision:
        """``task.created`` for a follow-up of ``parent`` (a trigger's, or its resolve task),
        appended with expected sequence 0: it exists exactly once."""
        return self._decision(
            ev.TaskCreated,
            task_id,
            title=spec.title,
            prompt=spec.prompt,
            description=spec.description,
            tags=list(spec.tags),
            priority=spec.priority,
            depends=list(spec.depends),
            runtime=spec.runtime,
            timeout=spec.timeout,
            parent=parent.id,
            resolves=resolves,
            correlation_id=parent.correlation_id,  # a follow-up belongs to the same story
        )

    def resolver(self, task: TaskView) -> list[Decision]:
        """``task.created`` for the task that makes ``task``'s stuck work land, once."""
        resolver = resolve_task_id(self.swarm, task)
        if self.busy("task", resolver) or self.board.version(self.swarm.id, "task", resolver):
            return []  # on its way, or written already (the fold links it)
        project = self.swarm.projects.get(task.integration.project) if task.integration else None
        return [self._created(resolver, resolve_spec(task, project), task, resolves=task.id)]

    def claim(self, task: TaskView, agent: AgentView) -> Decision:
        return self._decision(
            ev.TaskClaimed,
            task.id,
            agent.id,
            reserve=agent.id,
            agent=agent.id,
            attempt=task.attempt,
            budgets=claim_budgets(task, self.config),
        )
