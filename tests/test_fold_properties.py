"""Properties of the fold over generated logs (hypothesis).

The logs look like what the services write (a claim names an idle agent and the task's current
attempt, a result names the claimed agent, ...) mixed with what racing, slow or retrying writers
append (near misses, zombie results, repeats), arbitrary events and reorderings: the fold must
stay consistent with anything that can end up in the log, ruling impossible transitions void.
After every event the invariants of DESIGN.md hold (see ``Witness``).
"""

from __future__ import annotations

import copy
import zlib
from collections import Counter
from collections.abc import Callable
from typing import Any
from unittest.mock import patch

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import events as ev
from schemas import fold as fold_module
from schemas.board import (
    ACTIVE,
    CLAIMABLE,
    FINISHED,
    STATUSES,
    Board,
    CreatedOrder,
    SwarmView,
    Tasks,
    TaskView,
    columns,
    settled,
    tasks_enc_hook,
    tasks_in_full,
)
from schemas.events import Usage
from schemas.fold import apply, deps_done, fold
from schemas.landing import STUCK, dependency_landing, landing, needs_resolver
from services.bus import snapshots
from services.bus.snapshots import MSGPACK, NO_ORDER, RECORDS, Capture, pack, unpack, unpack_body
from services.scheduler.decide import OpenTasks, decide

SWARMS = ("s1", "s2")
TASKS = ("t1", "t2", "t3", "t4")
RESOLVERS = tuple(f"{t}-r" for t in TASKS)
AGENTS = ("a1", "a2", "a3")
PROJECTS = ("p1", "p2")

Log = list[tuple[int, ev.Event]]

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make(cls: type[ev.Event], swarm: str, id_: str, seq: int, **fields: Any) -> ev.Event:
    """An event at log position ``seq``: time and event id follow from it (no randomness)."""
    return cls(swarm=swarm, id=id_, time=float(seq), event_id=f"e{seq}", **fields)


# --- arbitrary events: any type, any (small) arguments -----------------------------------------

names = st.sampled_from(TASKS)
agents = st.sampled_from(AGENTS)
attempts = st.integers(1, 4)
tag_lists = st.lists(st.sampled_from(("ui", "api", "qa")), max_size=2, unique=True)
dep_lists = st.lists(names, max_size=3, unique=True)
reasons = st.sampled_from(("lost", "boom", "dependency t1 failed"))
landings = {"attempt": attempts, "project": st.sampled_from(("p1", "p2")), "onto": st.just("main")}

# event type -> strategy of (aggregate id, fields)
ARBITRARY: dict[type[ev.Event], st.SearchStrategy[tuple[str, dict[str, Any]]]] = {
    ev.SwarmCreated: st.just(("", {"name": "Swarm"})),
    ev.SwarmUpdated: st.tuples(
        st.just(""),
        st.fixed_dictionaries({}, optional={"budget_usd": st.sampled_from((None, 1.0))}),
    ),
    ev.SwarmDeleted: st.just(("", {})),
    ev.TaskCreated: st.tuples(
        names,
        st.fixed_dictionaries({"title": st.just("T"), "depends": dep_lists, "tags": tag_lists}),
    ),
    ev.TaskUpdated: st.tuples(
        names,
        st.fixed_dictionaries(
            {},
            optional={
                "depends": dep_lists,
                "title": st.just("U"),
                "priority": st.sampled_from(("critical", "low")),
            },
        ),
    ),
    ev.TaskUnblocked: st.tuples(names, st.just({})),
    ev.TaskClaimed: st.tuples(names, st.fixed_dictionaries({"agent": agents, "attempt": attempts})),
    ev.TaskRunning: st.tuples(names, st.fixed_dictionaries({"agent": agents, "attempt": attempts})),
    ev.TaskCompleted: st.tuples(
        names,
        st.fixed_dictionaries(
            {"agent": agents, "attempt": attempts},
            optional={"outcome": st.builds(ev.RunOutcome, cost_usd=st.sampled_from((0.25, 0.5)))},
        ),
    ),
    ev.TaskFailed: st.tuples(
        names,
        st.fixed_dictionaries(
            {"reason": reasons, "attempt": st.integers(0, 4), "agent": st.none() | agents}
        ),
    ),
    ev.TaskRequeued: st.tuples(
        names, st.fixed_dictionaries({"attempt": st.integers(1, 5), "reason": reasons})
    ),
    ev.TaskCancelled: st.tuples(names, st.just({})),
    ev.TaskDeleted: st.tuples(names, st.just({})),
    ev.TaskIntegrated: st.tuples(
        names, st.fixed_dictionaries({**landings, "landed": st.sampled_from("xyz")})
    ),
    ev.TaskIntegrationFailed: st.tuples(
        names,
        st.fixed_dictionaries(
            {
                **landings,
                "problem": st.sampled_from(("conflict", "verify", "error")),
                "resolve": st.booleans(),
            }
        ),
    ),
    ev.AgentRegistered: st.tuples(
        agents, st.fixed_dictionaries({"name": st.just("A"), "skills": tag_lists})
    ),
    ev.AgentUpdated: st.tuples(agents, st.fixed_dictionaries({}, optional={"skills": tag_lists})),
    ev.AgentLost: st.tuples(agents, st.just({})),
    ev.AgentDeregistered: st.tuples(agents, st.just({})),
    ev.ProjectCreated: st.tuples(
        st.sampled_from(PROJECTS), st.just({"name": "P", "git_url": "https://example.com/p.git"})
    ),
    ev.ProjectUpdated: st.tuples(
        st.sampled_from(PROJECTS),
        st.fixed_dictionaries(
            {},
            optional={
                "git_url": st.sampled_from(("https://example.com/q.git", "/srv/p.git")),
                "branch": st.sampled_from(("", "main", "dev")),
                "mode": st.sampled_from(("integrate", "branch", "off")),
                "verify": st.sampled_from(("", "make test")),
            },
        ),
    ),
    ev.ProjectDeleted: st.tuples(st.sampled_from(PROJECTS), st.just({})),
    ev.ProjectAttached: st.tuples(st.sampled_from(PROJECTS), st.just({})),
    ev.ProjectInitRequested: st.tuples(st.sampled_from(PROJECTS), st.just({})),
    ev.ProjectSyncRequested: st.tuples(st.sampled_from(PROJECTS), st.just({})),
    ev.ProjectSynced: st.tuples(
        st.sampled_from(PROJECTS),
        st.fixed_dictionaries(
            {"agent": agents, "round": st.integers(0, 3), "commit": st.sampled_from("abc")}
        ),
    ),
    ev.ProjectSyncFailed: st.tuples(
        st.sampled_from(PROJECTS),
        st.fixed_dictionaries({"agent": agents, "round": st.integers(0, 3), "error": reasons}),
    ),
}
assert set(ARBITRARY) == set(ev.EVENT_TYPES.values())


# any event of any type, as a function of its log position
arbitrary_events: st.SearchStrategy[Callable[[int], ev.Event]] = st.one_of(
    [
        st.tuples(st.just(cls), st.sampled_from(SWARMS), args).map(
            lambda drawn: (
                lambda seq: make(drawn[0], drawn[1], drawn[2][0] or drawn[1], seq, **drawn[2][1])
            )
        )
        for cls, args in ARBITRARY.items()
    ]
)


# --- plausible events: what a service would write next, given the board ------------------------

Option = Callable[[st.DrawFn, int], ev.Event]


class Plausible:
    """The events a service could append next, given the board, by kind:

    - ``progress`` moves work forward: create, register, unblock, claim, run, finish, requeue;
    - ``setback`` cancels, fails, deletes, loses agents;
    - ``stale`` is what a slow or confused writer appends late: a claim the board does not
      allow (task claimed already, blocked or finished; agent busy or lost), a zombie's result
      from the attempt before, a result for a finished task, a requeue that lost a race, an
      agent lost twice;
    - ``project`` creates and attaches projects, requests init/sync rounds and answers them.
    """

    def __init__(self, board: Board) -> None:
        self.kinds: dict[str, list[Option]] = {
            kind: [] for kind in ("progress", "setback", "stale", "project")
        }
        for s in SWARMS:
            view = board.swarms.get(s)
            if view is None:
                self._add("progress", ev.SwarmCreated, s, s, name=s)
            else:
                self._agents(view)
                self._tasks(view)
                self._projects(view)

    def _add(
        self, kind: str, cls: type[ev.Event], swarm: str, id_: str, weight: int = 1, **fields: Any
    ) -> None:
        option: Option = lambda _draw, seq: make(cls, swarm, id_, seq, **fields)  # noqa: E731
        self.kinds[kind].extend([option] * weight)

    def _agents(self, view: SwarmView) -> None:
        for a in AGENTS:
            agent = view.agents.get(a)
            if agent is None or agent.status == "lost":
                self._add("progress", ev.AgentRegistered, view.id, a, name=a)
            elif agent.task is None:
                self._add("setback", ev.AgentDeregistered, view.id, a)
            if agent is not None and agent.status == "lost":
                self._add("stale", ev.AgentLost, view.id, a, 3)

    def _tasks(self, view: SwarmView) -> None:
        s = view.id
        for t in TASKS:
            task = view.tasks.get(t)
            if task is None:
                self.kinds["progress"].append(self._creator(s, t, sorted(view.tasks)))
                continue
            run: dict[str, Any] = {"agent": task.agent, "attempt": task.attempt}
            if task.status == "blocked" and deps_done(view, task):
                self._add("progress", ev.TaskUnblocked, s, t, 4)  # the scheduler does it at once
            claimable = task.status in CLAIMABLE and deps_done(view, task)
            for agent in view.agents.values():
                claim: dict[str, Any] = {"agent": agent.id, "attempt": task.attempt}
                if claimable and agent.status == "idle":
                    again = 3 if task.attempt > 1 else 1  # a requeued task is claimed soon
                    self._add("progress", ev.TaskClaimed, s, t, again, **claim)
                else:  # claimed already, blocked, finished, or the agent is busy or lost
                    self._add("stale", ev.TaskClaimed, s, t, **claim)
            if task.status == "claimed":
                self._add("progress", ev.TaskRunning, s, t, 2, **run)
                if view.project is not None:  # on its own branch of the project
                    self._add(
                        "progress", ev.TaskRunning, s, t, 6, branch=f"swarm/{t}", base="b0", **run
                    )
            if task.status in ACTIVE:
                self._add("progress", ev.TaskCompleted, s, t, 2, **run)
                if view.project is not None:  # its work pushed; a landing follows
                    work = ev.Work(
                        project=view.project,
                        branch=f"swarm/{t}",
                        base="b0",
                        head=f"h{t}",
                        onto="main",
                        pushed=True,
                        land=True,
                    )
                    self._add("progress", ev.TaskCompleted, s, t, 6, work=work, **run)
                self._add(
                    "progress", ev.TaskRequeued, s, t, 2, reason="lost", attempt=run["attempt"] + 1
                )
                self._add("setback", ev.TaskFailed, s, t, reason="exit 1", **run)
                holder = view.agents.get(task.agent or "")
                if holder is not None and holder.status != "lost":
                    self._add("setback", ev.AgentLost, s, holder.id)
                for skipped in (task.attempt, task.attempt + 2):  # a requeue that lost a race
                    self._add("stale", ev.TaskRequeued, s, t, reason="late", attempt=skipped)
                if task.attempt > 1:
                    for other in view.agents:
                        zombie: dict[str, Any] = {"agent": other, "attempt": task.attempt - 1}
                        self._add("stale", ev.TaskCompleted, s, t, 4, **zombie)
                        self._add("stale", ev.TaskFailed, s, t, 2, reason="late", **zombie)
            if task.status in FINISHED and task.agent is not None:
                self._add("stale", ev.TaskCompleted, s, t, **run)
                self._add("stale", ev.TaskRunning, s, t, **run)
            if task.integration is not None and task.status == "completed":
                landing: dict[str, Any] = {
                    "attempt": task.attempt,
                    "project": task.integration.project,
                    "onto": "main",
                }
                kind = "progress" if task.integration.state == "landing" else "stale"
                self._add(kind, ev.TaskIntegrated, s, t, 4, landed=f"l{t}", **landing)
                for problem in ("conflict", "verify"):
                    for resolve in (True, False):
                        self._add(
                            kind, ev.TaskIntegrationFailed, s, t, problem=problem,
                            resolve=resolve, files=["f.txt"], **landing,
                        )  # fmt: skip
                if needs_resolver(task):
                    resolver = f"{t}-r"
                    self._add(
                        "progress", ev.TaskCreated, s, resolver, 3, title="resolve", resolves=t
                    )
            if task.status not in FINISHED:
                self._add("setback", ev.TaskCancelled, s, t)
            if task.status in ("blocked", "pending"):
                self._add("setback", ev.TaskFailed, s, t, reason="dependency failed")
            if task.status not in ACTIVE:
                self._add("setback", ev.TaskDeleted, s, t)

    def _projects(self, view: SwarmView) -> None:
        s = view.id
        for p in PROJECTS:
            project = view.projects.get(p)
            if project is None:
                url = f"https://example.com/{p}.git"
                self._add("project", ev.ProjectCreated, s, p, name=p, git_url=url)
                continue
            if not project.attached:
                self._add("project", ev.ProjectAttached, s, p, 4)
            request = ev.ProjectSyncRequested if project.round else ev.ProjectInitRequested
            self._add("project", request, s, p)
            for a in view.agents:
                checkout = project.checkouts.get(a)
                if project.round and (checkout is None or checkout.state == "pending"):
                    answer: dict[str, Any] = {"agent": a, "round": project.round}
                    self._add(
                        "project", ev.ProjectSynced, s, p, commit=f"c{project.round}", **answer
                    )
                    self._add("project", ev.ProjectSyncFailed, s, p, error="denied", **answer)

    @staticmethod
    def _creator(swarm: str, task: str, existing: list[str]) -> Option:
        def create(draw: st.DrawFn, seq: int) -> ev.Event:
            depends = (
                draw(st.lists(st.sampled_from(existing), unique=True, max_size=2))
                if existing
                else []
            )
            return make(ev.TaskCreated, swarm, task, seq, title=task, depends=depends)

        return create


KINDS: tuple[str, ...] = ("progress",) * 6
KINDS += ("setback", "setback", "stale", "near miss", "near miss", "repeat")
KINDS += ("project", "project", "arbitrary")

IDS = {"swarm": SWARMS, "task": TASKS + RESOLVERS, "agent": AGENTS, "project": PROJECTS}


def near_miss(draw: st.DrawFn, event: ev.Event) -> ev.Event:
    """``event`` with one thing off: another task or agent, the attempt or round before or
    after (what a writer racing another, or acting on an old board, would append)."""
    fields = [name for name in ("id", "agent", "attempt", "round") if hasattr(event, name)]
    name = draw(st.sampled_from(fields))
    if name == "id":
        value: Any = draw(st.sampled_from(IDS[event.aggregate]))
    elif name == "agent":
        value = draw(st.sampled_from(AGENTS))
    else:
        value = max(0, getattr(event, name) + draw(st.sampled_from((-1, 1))))
    return msgspec.structs.replace(event, **{name: value})


@st.composite
def logs(draw: st.DrawFn, max_events: int = 40) -> Log:
    """A log of plausible next events (each chosen against the board so far, mostly progress),
    near misses of them, and arbitrary events; log positions increase, with gaps."""
    model = Board()
    log: Log = []
    seq = 0
    for _ in range(draw(st.integers(0, max_events))):
        seq += draw(st.integers(1, 3))
        kind = draw(st.sampled_from(KINDS))
        plausible = Plausible(model).kinds
        options = plausible["progress"] if kind == "near miss" else plausible.get(kind)
        if kind == "repeat" and log:  # a retried append that got a new message id
            earlier = log[draw(st.integers(0, len(log) - 1))][1]
            event = msgspec.structs.replace(earlier, time=float(seq), event_id=f"e{seq}")
        elif options:
            event = options[draw(st.integers(0, len(options) - 1))](draw, seq)
            if kind == "near miss":
                event = near_miss(draw, event)
        else:
            event = draw(arbitrary_events)(seq)
        apply(model, event, seq)
        log.append((seq, event))
    return log


@st.composite
def reordered_logs(draw: st.DrawFn) -> Log:
    """A plausible log with its events in another order (positions reassigned in order)."""
    events = [event for _, event in draw(logs(max_events=30))]
    shuffled = draw(st.permutations(events))
    return list(enumerate(shuffled, start=1))


any_logs = st.one_of(logs(), reordered_logs())


# --- the invariants ----------------------------------------------------------------------------


class Prior(msgspec.Struct):
    status: str
    attempt: int
    agent: str | None
    deps_done: bool
    agent_status: str | None  # of the agent the event names


def as_read(board: Board) -> bytes:
    """The swarms as JSON, every task in full (frozen or not)."""
    return msgspec.json.encode(board.swarms, enc_hook=tasks_in_full)


def tasks_as_records(value: Any) -> Any:
    """msgspec ``enc_hook`` writing a board as ``msgpack2:`` snapshots stored it: each frozen
    task its record, no chunks."""
    if isinstance(value, Tasks):
        entries = {
            task_id: None if isinstance(entry, TaskView) else value._record(entry)
            for task_id, entry in value._entries.items()
        }
        return [value._swarm, entries, value._live, value._counts, value._usage]
    raise NotImplementedError(type(value).__name__)


class Witness:
    """Folds a log event by event and checks DESIGN.md's invariants after each one."""

    def __init__(self) -> None:
        self.board = Board()
        self.claims: set[tuple[str, str, int, int]] = set()  # swarm, task, created_seq, attempt
        self.tasks: dict[tuple[str, str, int], tuple[str, int]] = {}  # -> (status, attempt)
        self.last_seq = 0

    def fold(self, log: Log) -> Board:
        for seq, event in log:
            self.step(seq, event)
        return self.board

    def step(self, seq: int, event: ev.Event) -> None:
        board = self.board
        ignored, before = board.ignored, as_read(board)
        prior = self._prior(event)
        apply(board, event, seq)
        self.last_seq = max(self.last_seq, seq)
        applied = board.ignored == ignored
        where = f"after {event!r} at {seq}"

        assert board.version(event.swarm, event.aggregate, event.id) == seq, where
        assert board.seq == self.last_seq, where
        if not applied:
            assert msgspec.json.encode(board.swarms, enc_hook=tasks_in_full) == before, (
                f"void event changed {where}"
            )
        if applied and prior is not None:
            self._transition(event, prior, where)
        if isinstance(event, ev.TaskClaimed) and applied:
            self._claimed(event, where)
        for view in board.swarms.values():
            self._tasks(view, where)
            self._agents(view, where)
        self.tasks = {
            (view.id, task.id, task.created_seq): (task.status, task.attempt)
            for view in board.swarms.values()
            for task in view.tasks.values()
        }

    def _prior(self, event: ev.Event) -> Prior | None:
        """The state an event on a task meets, before it is folded in."""
        view = self.board.swarms.get(event.swarm)
        task = view.tasks.get(event.id) if view and event.aggregate == "task" else None
        if view is None or task is None:
            return None
        agent = view.agents.get(getattr(event, "agent", None) or "")
        return Prior(
            status=task.status,
            attempt=task.attempt,
            agent=task.agent,
            deps_done=deps_done(view, task),
            agent_status=agent.status if agent else None,
        )

    def _transition(self, event: ev.Event, prior: Prior, where: str) -> None:
        """An applied event made a transition the task life allows, from the state it met."""
        result = (prior.attempt, prior.agent)
        match event:
            case ev.TaskClaimed(agent=agent_id, attempt=attempt):
                assert prior.status in CLAIMABLE and prior.deps_done, f"claimable? {where}"
                assert prior.attempt == attempt, f"claim of another attempt {where}"
                assert prior.agent_status == "idle", f"{agent_id} was not idle {where}"
            case ev.TaskRunning(agent=agent_id, attempt=attempt):
                assert prior.status == "claimed" and result == (attempt, agent_id), where
            case ev.TaskCompleted(agent=agent_id, attempt=attempt):
                assert prior.status in ACTIVE, f"result for a task not active {where}"
                assert result == (attempt, agent_id), f"zombie result accepted {where}"
            case ev.TaskFailed(agent=agent_id, attempt=attempt) if attempt:
                assert prior.status in ACTIVE, f"result for a task not active {where}"
                assert result == (attempt, agent_id), f"zombie result accepted {where}"
            case ev.TaskFailed():
                assert prior.status not in ACTIVE | FINISHED, where
            case ev.TaskRequeued(attempt=attempt):
                assert prior.status in ACTIVE and attempt == prior.attempt + 1, where
            case ev.TaskCancelled() | ev.TaskUpdated():
                assert prior.status not in FINISHED, where
            case ev.TaskUnblocked():
                assert prior.status == "blocked" and prior.deps_done, where
            case ev.TaskIntegrated(attempt=attempt) | ev.TaskIntegrationFailed(attempt=attempt):
                assert prior.status == "completed" and prior.attempt == attempt, where

    def _claimed(self, event: ev.TaskClaimed, where: str) -> None:
        task = self.board.task(event.swarm, event.id)
        assert task is not None, where
        assert (task.status, task.agent, task.attempt) == ("claimed", event.agent, event.attempt)
        key = (event.swarm, event.id, task.created_seq, event.attempt)
        assert key not in self.claims, f"second claim of attempt {event.attempt} {where}"
        self.claims.add(key)

    def _tasks(self, view: SwarmView, where: str) -> None:
        holders: dict[str, str] = {}
        for task in view.tasks.values():
            previous = self.tasks.get((view.id, task.id, task.created_seq))
            if previous is not None:
                status, attempt = previous
                assert task.attempt >= attempt, f"attempt went back {where}"
                if status in FINISHED and not self._not_landed(task, status):
                    assert task.status == status, f"finished task {task.id} changed {where}"
                if task.status == "running" and status != "running":
                    assert status == "claimed", f"{task.id} ran without a claim {where}"
            if task.status in ACTIVE and (previous is None or previous[0] not in ACTIVE):
                assert deps_done(view, task), f"{task.id} claimed with open deps {where}"
            if task.status in ACTIVE:
                assert task.agent is not None, where
                agent = view.agents.get(task.agent)
                assert agent is not None and agent.task == task.id, f"{task.id} {where}"
                assert task.agent not in holders, f"{task.agent} runs two tasks {where}"
                holders[task.agent] = task.id

    @staticmethod
    def _not_landed(task: TaskView, status: str) -> bool:
        """The one change of a finished task: completed, then failed because its work could not
        land (and no resolve task will make it)."""
        work = task.integration
        return (
            status == "completed"
            and task.status == "failed"
            and work is not None
            and work.state in STUCK
            and not work.resolve
        )

    def _agents(self, view: SwarmView, where: str) -> None:
        for agent in view.agents.values():
            if agent.task is not None:
                task = view.tasks.get(agent.task)
                assert task is not None and task.status in ACTIVE, f"{agent.id} {where}"
                assert task.agent == agent.id, f"{agent.id} {where}"
            if agent.status != "lost":
                assert (agent.status == "working") == (agent.task is not None), (
                    f"{agent.id} is {agent.status} holding {agent.task} {where}"
                )


# --- properties ---------------------------------------------------------------------------------


@PROPERTY
@given(any_logs)
def test_folding_the_same_log_twice_gives_equal_boards(log: Log) -> None:
    assert fold(log) == fold(log)


@PROPERTY
@given(any_logs, st.data())
def test_folding_a_snapshot_then_the_tail_equals_folding_everything(
    log: Log, data: st.DataObject
) -> None:
    split = data.draw(st.integers(0, len(log)), label="split")
    head = fold(log[:split])
    restored = unpack(pack(head))
    assert restored == head
    assert fold(log[split:], restored) == fold(log)
    # the tail thawed some sealed tasks and froze others: sealed again (new chunks next to the
    # old ones, emptied ones dropped), it reads back equal
    assert unpack(pack(restored)) == restored == fold(log)
    # the order task listings page through travels with it, and is the full replay's
    assert orders(restored) == orders(fold(log)) == orders(unpack(pack(restored)))
    without_order = msgspec.msgpack.encode(
        [head, head.versions], enc_hook=lambda v: v.to_wire()[:-1]
    )
    assert orders(unpack(b"%d\n" % head.seq + NO_ORDER + zlib.compress(without_order))) == orders(
        head
    )
    # read without tasks (a fold of agents and swarms): the rest of the board as it was
    lean = unpack(pack(head), tasks=False)
    assert lean.versions == {k: v for k, v in head.versions.items() if "/task/" not in k}
    assert lean.swarms == {
        k: msgspec.structs.replace(v, tasks=Tasks()) for k, v in head.swarms.items()
    }
    assert (lean.seq, lean.ignored) == (head.seq, head.ignored)
    # the form before chunks (each frozen task its record) reads back to the same board
    records = msgspec.msgpack.encode(head, enc_hook=tasks_as_records)
    assert unpack(b"%d\n" % head.seq + RECORDS + zlib.compress(records)) == head
    # snapshots in the earlier forms (every task in full: JSON, then msgpack) read back to the
    # same board, their settled tasks frozen as they are decoded
    earliest = b"%d\n" % head.seq + zlib.compress(msgspec.json.encode(head, enc_hook=tasks_in_full))
    assert unpack(earliest) == head
    earlier = msgspec.msgpack.encode(head, enc_hook=tasks_in_full)
    assert unpack(b"%d\n" % head.seq + MSGPACK + zlib.compress(earlier)) == head
    assert all(not settled(t) for swarm in restored.swarms.values() for t in swarm.tasks.live())


def whole(board: Board) -> bytes:
    """msgspec's own encoding of a snapshot's ``[board, {task key: version}]``, in one call."""
    others = {k: v for k, v in board.versions.items() if "/task/" not in k}
    of_tasks = {k: v for k, v in board.versions.items() if "/task/" in k}
    return msgspec.msgpack.encode(
        [msgspec.structs.replace(board, versions=others), of_tasks], enc_hook=tasks_enc_hook
    )


@PROPERTY
@given(any_logs, st.data())
def test_a_snapshot_saved_while_the_fold_goes_on_is_the_fold_at_its_sequence(
    log: Log, data: st.DataObject
) -> None:
    """What a service does (``snapshots.prepare``): the board copied at one point of the log
    (``Capture``, on the event loop), the copy sealed, encoded and compressed later (a thread)
    while the fold goes on, its chunks adopted by the board later still. The snapshot is the
    fold at the point it was copied, whatever the fold changed in place meanwhile, and the board
    the fold of everything."""
    points = data.draw(st.lists(st.integers(0, len(log)), min_size=3, max_size=3), label="at")
    taken, sealed_at, adopted_at = sorted(points)
    board = fold(log[:taken])
    if data.draw(st.booleans(), label="sealed before"):
        pack(board)  # some records sealed in chunks already, as by an earlier save
    at_taken = copy.deepcopy(board)
    map_slice = data.draw(st.sampled_from((1, 2, snapshots.MAP_SLICE)), label="map slice")
    with patch.object(snapshots, "MAP_SLICE", map_slice):
        capture = Capture(board)
        assert capture.encode() == whole(board)  # the pieces are msgspec's bytes of the whole
        fold(log[taken:sealed_at], board)
        body, sealed = capture.stored()
    fold(log[sealed_at:adopted_at], board)
    for tasks, chunks in sealed:
        tasks.adopt(chunks)
    fold(log[adopted_at:], board)
    restored = unpack_body(body)
    assert capture.seq == restored.seq == at_taken.seq
    assert restored == at_taken == fold(log[:taken])
    assert orders(restored) == orders(at_taken) and totals(restored) == totals(at_taken)
    assert all(
        not isinstance(e, bytes)
        for s in restored.swarms.values()
        for e in s.tasks._entries.values()
    )
    everything = fold(log)
    assert board == everything and orders(board) == orders(everything)
    assert totals(board) == totals(everything)
    assert unpack(pack(board)) == board


@PROPERTY
@given(logs())
def test_invariants_hold_after_every_event_of_a_plausible_log(log: Log) -> None:
    Witness().fold(log)


@PROPERTY
@given(reordered_logs())
def test_invariants_hold_after_every_event_of_a_reordered_log(log: Log) -> None:
    Witness().fold(log)


def test_generated_logs_walk_the_whole_task_life() -> None:
    """The generator is not degenerate: its logs reach every status, requeues, zombie results,
    void claims and project rounds (so the properties above are about interesting logs)."""
    seen: Counter[str] = Counter()

    @settings(max_examples=200, deadline=None, database=None, derandomize=True)
    @given(logs())
    def explore(log: Log) -> None:
        board = Board()
        for seq, event in log:
            task = board.task(event.swarm, event.id) if event.aggregate == "task" else None
            if isinstance(event, ev.TaskCompleted) and task and event.attempt < task.attempt:
                seen["zombie result"] += task.status in ACTIVE
            ignored = board.ignored
            apply(board, event, seq)
            seen[f"{'void' if board.ignored > ignored else 'applied'} {event.type}"] += 1
        for view in board.swarms.values():
            for t in view.tasks.values():
                seen[t.status] += 1
                seen["completed on a later attempt"] += t.status == "completed" and t.attempt > 1

    explore()
    wanted = {
        *("blocked", "pending", "claimed", "running", "requeued"),
        *("completed", "failed", "cancelled", "completed on a later attempt", "zombie result"),
        *("applied task.unblocked", "applied agent.lost", "applied project.synced"),
        *("void task.claimed", "void task.completed", "void task.requeued"),
        *("applied task.integrated", "applied task.integration_failed", "void task.integrated"),
    }
    assert wanted <= {name for name, count in seen.items() if count}, seen


def _claim_for_any_agent(board: Board, e: ev.TaskClaimed, seq: int) -> bool:
    """A faulty claim: forgets to check that the agent is idle."""
    swarm = board.swarms[e.swarm]
    task, agent = swarm.tasks[e.id], swarm.agents[e.agent]
    if task.status not in CLAIMABLE or e.attempt != task.attempt:
        return False
    task.status, task.agent, agent.status, agent.task = "claimed", agent.id, "working", task.id
    return True


def _complete_any_attempt(board: Board, e: ev.TaskCompleted, seq: int) -> bool:
    """A faulty completion: no zombie fencing."""
    swarm = board.swarms[e.swarm]
    task = swarm.tasks[e.id]
    if task.status not in ACTIVE:
        return False
    task.status = "completed"
    swarm.agents[task.agent or ""].status, swarm.agents[task.agent or ""].task = "idle", None
    return True


def _log(*events: tuple[type[ev.Event], str, dict[str, Any]]) -> Log:
    start: list[tuple[type[ev.Event], str, dict[str, Any]]] = [
        (ev.SwarmCreated, "s1", {"name": "s1"})
    ]
    start += [(ev.AgentRegistered, a, {"name": a}) for a in ("a1", "a2")]
    start += [(ev.TaskCreated, t, {"title": t}) for t in ("t1", "t2")]
    return [
        (seq, make(cls, "s1", id_, seq, **fields))
        for seq, (cls, id_, fields) in enumerate([*start, *events], start=1)
    ]


@pytest.mark.parametrize(
    ("event_type", "faulty", "log", "complaint"),
    [
        (
            ev.TaskClaimed,
            _claim_for_any_agent,
            _log(
                (ev.TaskClaimed, "t1", {"agent": "a1", "attempt": 1}),
                (ev.TaskClaimed, "t2", {"agent": "a1", "attempt": 1}),
            ),
            "was not idle",
        ),
        (
            ev.TaskCompleted,
            _complete_any_attempt,
            _log(
                (ev.TaskClaimed, "t1", {"agent": "a1", "attempt": 1}),
                (ev.TaskRequeued, "t1", {"attempt": 2, "reason": "lost"}),
                (ev.TaskClaimed, "t1", {"agent": "a2", "attempt": 2}),
                (ev.TaskCompleted, "t1", {"agent": "a1", "attempt": 1}),
            ),
            "zombie result accepted",
        ),
    ],
    ids=["claim-by-busy-agent", "zombie-result"],
)
def test_witness_catches_a_faulty_fold(
    monkeypatch: pytest.MonkeyPatch,
    event_type: type[ev.Event],
    faulty: Callable[..., bool],
    log: Log,
    complaint: str,
) -> None:
    """The invariant checks can fail: the same logs pass with the real fold."""
    Witness().fold(log)
    monkeypatch.setitem(fold_module._MUTATORS, event_type, faulty)
    with pytest.raises(AssertionError, match=complaint):
        Witness().fold(log)


# --- frozen tasks (``schemas.board.Tasks``) ----------------------------------------------------


def thawed(board: Board) -> Board:
    """A copy of ``board`` with no task frozen: every task a live object, as before freezing."""
    live = copy.deepcopy(board)  # as ``Projection.copy_board`` copies one
    for swarm in live.swarms.values():
        swarm.tasks.thaw_all()
    return live


@PROPERTY
@given(any_logs, st.data())
def test_a_board_with_frozen_tasks_reads_and_folds_like_one_without(
    log: Log, data: st.DataObject
) -> None:
    """Freezing is only an optimisation: every read, every decision and every later fold of a
    board with frozen tasks is the one of the same board with every task live."""
    split = data.draw(st.integers(0, len(log)), label="split")
    board = fold(log[:split])
    live = thawed(board)
    assert board == live and live == board
    for swarm in board.swarms.values():
        tasks, plain = swarm.tasks, live.swarms[swarm.id].tasks
        assert list(tasks) == list(plain)  # the same order
        every = list(plain.values())
        assert [tasks[t.id] for t in every] == every == list(tasks.values())
        assert tasks.status_counts() == {s: sum(t.status == s for t in every) for s in STATUSES}
        assert tasks.usage_total() == Usage(
            input_tokens=sum(t.usage.input_tokens for t in every),
            output_tokens=sum(t.usage.output_tokens for t in every),
            cache_read_input_tokens=sum(t.usage.cache_read_input_tokens for t in every),
            cache_creation_input_tokens=sum(t.usage.cache_creation_input_tokens for t in every),
        )
        # listings page through every task oldest first, whatever is frozen
        by_age = sorted(every, key=lambda t: (t.created_seq, t.id))
        assert list(tasks.in_order()) == by_age
        for status in STATUSES:
            assert list(tasks.in_order(status=status)) == [t for t in by_age if t.status == status]
        for i, task in enumerate(by_age):
            assert list(tasks.in_order(after=task.id)) == by_age[i + 1 :]
        for tag in {tag for t in every for tag in t.tags}:  # records without it: passed over
            mentioning = [t for t in tasks.in_order(mentioning=tag) if tag in t.tags]
            assert mentioning == [t for t in by_age if tag in t.tags]
        for agent in {t.agent for t in every if t.agent}:
            mentioning = [t for t in tasks.in_order(mentioning=agent) if t.agent == agent]
            assert mentioning == [t for t in by_age if t.agent == agent]
        assert_every_order(tasks, every)
        in_live = {t.id for t in tasks.live()}
        for task in every:
            frozen = task.id not in in_live
            # frozen exactly when settled: the fold freezes a task as it settles
            assert frozen == settled(task), task
            assert tasks.frozen_status(task.id) == (task.status if frozen else None)
            assert dependency_landing(swarm, task.id) == landing(plain_swarm(live, swarm), task)
            children = [
                t.id for t in every if t.parent == task.id and t.created_seq > task.created_seq
            ]
            assert sorted(t.id for t in tasks.follow_ups(task.id)) == sorted(children)
    now = float(board.seq + 1)
    assert decide(board, now) == decide(live, now)
    assert decide(board, now, open_tasks=OpenTasks.of_board(board)) == decide(live, now)
    tail = log[split:]
    assert fold(tail, board) == fold(tail, live) == fold(log)
    for swarm in board.swarms.values():  # the orders' status bytes kept by the tail's fold
        assert_every_order(swarm.tasks, list(thawed(board).swarms[swarm.id].tasks.values()))
    restored = unpack(pack(board))
    assert restored == board
    assert {t.id for s in restored.swarms.values() for t in s.tasks.live()} == {
        t.id for s in board.swarms.values() for t in s.tasks.live()
    }
    for swarm in restored.swarms.values():  # the finished tasks sealed in chunks
        assert_every_order(swarm.tasks, list(live.swarms[swarm.id].tasks.values()))


def assert_every_order(tasks: Tasks, every: list[TaskView]) -> None:
    """Listings newest first and by priority, from after any task, and a board's columns are
    the sort of ``every`` task by that order's key (the model), whatever is frozen or sealed."""
    rank = {"critical": 0, "high": 1, "medium": 2, "low": 3}

    def priority_key(t: TaskView) -> tuple[int, float, int, str]:  # higher first, then oldest
        return rank[t.priority], t.created_at, t.created_seq, t.id

    newest = sorted(every, key=lambda t: (t.created_seq, t.id), reverse=True)
    by_priority = sorted(every, key=priority_key)
    assert list(tasks.in_order(order="newest")) == newest
    for i, task in enumerate(newest):
        assert list(tasks.in_order(after=task.id, order="newest")) == newest[i + 1 :]
    for status in STATUSES:
        mine = [t for t in newest if t.status == status]
        assert list(tasks.in_order(status=status, order="newest")) == mine
        for task in every:  # a cursor of any status
            later = [t for t in mine if (t.created_seq, t.id) < (task.created_seq, task.id)]
            assert list(tasks.in_order(status=status, order="newest", after=task.id)) == later
        if status in FINISHED:
            continue
        mine = [t for t in by_priority if t.status == status]
        assert list(tasks.in_order(status=status, order="priority")) == mine
        for task in every:
            later = [t for t in mine if priority_key(t) > priority_key(task)]
            assert list(tasks.in_order(status=status, order="priority", after=task.id)) == later
    for limit in (1, 2, 5):
        shown = {
            status: [
                t for t in (newest if status in FINISHED else by_priority) if t.status == status
            ]
            for status in STATUSES
        }
        assert columns(tasks, limit) == {status: found[:limit] for status, found in shown.items()}


def orders(board: Board) -> dict[str, CreatedOrder]:
    return {swarm.id: swarm.tasks._order for swarm in board.swarms.values()}


def totals(board: Board) -> dict[str, tuple[dict[str, int], Usage]]:
    """Each swarm's tasks counted by status and their tokens (kept apart from the tasks)."""
    return {s.id: (s.tasks.status_counts(), s.tasks.usage_total()) for s in board.swarms.values()}


def plain_swarm(board: Board, swarm: SwarmView) -> SwarmView:
    return board.swarms[swarm.id]
