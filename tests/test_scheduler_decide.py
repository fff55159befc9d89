"""The scheduler's decisions, given/when/then: given a log, when ``decide``, then these events.

Pure: no NATS. ``given`` folds a log into a board; ``when`` runs ``decide`` at a time with the
agents' presence; ``then`` compares a short form of each decision (type, id, the fields that
matter). The properties at the end run ``decide`` on random logs.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given as hypothesis_given
from hypothesis import settings
from hypothesis import strategies as st

from schemas import events as ev
from schemas.board import CLAIMABLE, Board
from schemas.errors import Invalid
from schemas.fold import apply, deps_done, fold
from services.scheduler.decide import Config, Decision, OpenTasks, decide
from services.scheduler.free_agents import FreeAgents, is_candidate
from services.scheduler.matching import can_take, claim_order

S = "dev"
T0 = 100.0  # when the logs below happen
NOW = 105.0  # within a lease of every registration: nobody is lost by default
CONFIG = Config(lease=10.0, max_run_losses=3, backoff=2.0)


# --- a tiny vocabulary for logs ------------------------------------------------------------------


def swarm_created(swarm: str = S) -> ev.SwarmCreated:
    return ev.SwarmCreated(swarm=swarm, id=swarm, time=T0, name=swarm)


def created(task: str, *tags: str, swarm: str = S, **fields: Any) -> ev.TaskCreated:
    return ev.TaskCreated(swarm=swarm, id=task, time=T0, title=task, tags=list(tags), **fields)


def registered(
    agent: str, *skills: str, executor: str | None = "local", swarm: str = S
) -> ev.AgentRegistered:
    return ev.AgentRegistered(
        swarm=swarm, id=agent, time=T0, name=agent, skills=list(skills), executor=executor
    )


def claimed(task: str, agent: str, attempt: int = 1) -> ev.TaskClaimed:
    return ev.TaskClaimed(swarm=S, id=task, time=T0, agent=agent, attempt=attempt)


def running(task: str, agent: str, attempt: int = 1) -> ev.TaskRunning:
    return ev.TaskRunning(swarm=S, id=task, time=T0, agent=agent, attempt=attempt)


def completed(task: str, agent: str, attempt: int = 1) -> ev.TaskCompleted:
    return ev.TaskCompleted(swarm=S, id=task, time=T0, agent=agent, attempt=attempt)


def failed(task: str, agent: str, attempt: int = 1, reason: str = "exit 1") -> ev.TaskFailed:
    return ev.TaskFailed(swarm=S, id=task, time=T0, agent=agent, attempt=attempt, reason=reason)


def requeued(task: str, attempt: int, retry_at: float = T0) -> ev.TaskRequeued:
    return ev.TaskRequeued(
        swarm=S, id=task, time=T0, attempt=attempt, reason="agent lost", retry_at=retry_at
    )


def cancelled(task: str) -> ev.TaskCancelled:
    return ev.TaskCancelled(swarm=S, id=task, time=T0)


def deleted(task: str) -> ev.TaskDeleted:
    return ev.TaskDeleted(swarm=S, id=task, time=T0)


def lost(agent: str) -> ev.AgentLost:
    return ev.AgentLost(swarm=S, id=agent, time=T0)


def given(*events: ev.Event) -> Board:
    return fold([(seq, event) for seq, event in enumerate(events, start=1)])


def when(
    board: Board,
    now: float = NOW,
    config: Config = CONFIG,
    presence: dict[str, float] | None = None,
    **kwargs: Any,
) -> list[Decision]:
    return decide(board, now, config, presence or {}, **kwargs)


def short(decisions: list[Decision]) -> list[tuple]:
    """``(type, id, fields...)``: what each decision says, without envelopes."""
    out: list[tuple] = []
    for d in decisions:
        e = d.event
        if isinstance(e, ev.TaskClaimed):
            out.append((e.type, e.id, e.agent, e.attempt))
        elif isinstance(e, ev.TaskRequeued):
            out.append((e.type, e.id, e.attempt, e.retry_at, e.reason))
        elif isinstance(e, ev.TaskFailed):
            out.append((e.type, e.id, e.reason, e.attempt, e.agent))
        elif isinstance(e, ev.TaskCreated):
            out.append((e.type, e.id, e.title, e.parent))
        else:
            out.append((e.type, e.id))
    return out


def claim(task: str, agent: str, attempt: int = 1) -> tuple:
    return ("task.claimed", task, agent, attempt)


# --- the swarm's budget ---------------------------------------------------------------------


def completed_costing(task: str, agent: str, cost: float) -> ev.TaskCompleted:
    return ev.TaskCompleted(
        swarm=S, id=task, time=T0, agent=agent, attempt=1, outcome=ev.RunOutcome(cost_usd=cost)
    )


def budget(usd: float | None) -> ev.SwarmUpdated:
    return ev.SwarmUpdated(swarm=S, id=S, time=T0, budget_usd=usd)


def spent_swarm(*more: ev.Event, budget_usd: float = 1.0) -> Board:
    """A swarm with a budget ($1 unless said) whose one run cost $1.25, then ``more``."""
    return given(
        ev.SwarmCreated(swarm=S, id=S, time=T0, name=S, budget_usd=budget_usd),
        registered("a1"),
        created("t1"),
        claimed("t1", "a1"),
        running("t1", "a1"),
        completed_costing("t1", "a1", 1.25),
        *more,
    )


def test_claude_tasks_are_not_claimed_once_the_swarm_spent_its_budget() -> None:
    board = spent_swarm(created("t2"))
    assert when(board) == []


def test_shell_tasks_are_still_claimed_when_the_budget_is_spent() -> None:
    board = spent_swarm(created("t2"), created("t3", runtime="shell"))
    assert short(when(board)) == [claim("t3", "a1")]


def test_raising_the_budget_lets_claude_tasks_be_claimed_again() -> None:
    assert short(when(spent_swarm(created("t2"), budget(5.0)))) == [claim("t2", "a1")]
    assert short(when(spent_swarm(created("t2"), budget(None)))) == [claim("t2", "a1")]


def test_a_swarm_under_its_budget_claims_as_usual() -> None:
    board = spent_swarm(created("t2"), budget_usd=2.0)
    assert short(when(board)) == [claim("t2", "a1")]


# --- matching -------------------------------------------------------------------------------


def test_a_task_goes_to_the_idle_agent_whose_skills_share_its_tag() -> None:
    board = given(
        swarm_created(), registered("a1", "api"), registered("a2", "ui"), created("t1", "ui")
    )
    assert short(when(board)) == [claim("t1", "a2")]


def test_a_task_without_tags_goes_to_any_idle_agent() -> None:
    board = given(swarm_created(), registered("b", "qa"), registered("a", "api"), created("t1"))
    assert short(when(board)) == [claim("t1", "a")]


def test_the_agent_sharing_most_tags_is_preferred() -> None:
    board = given(
        swarm_created(),
        registered("a1", "ui"),
        registered("a2", "ui", "frontend"),
        created("t1", "frontend", "ui"),
    )
    assert short(when(board)) == [claim("t1", "a2")]


def test_tags_and_skills_match_without_case() -> None:
    board = given(swarm_created(), registered("a1", "Frontend"), created("t1", "frontend "))
    assert short(when(board)) == [claim("t1", "a1")]


def test_a_task_no_agent_can_take_waits_and_does_not_hold_up_others() -> None:
    board = given(
        swarm_created(),
        registered("a1", "api"),
        created("t1", "ui", priority="critical"),
        created("t2", "api", priority="low"),
    )
    assert short(when(board)) == [claim("t2", "a1")]


def test_higher_priority_is_claimed_first_then_older() -> None:
    board = given(
        swarm_created(),
        registered("a1"),
        registered("a2"),
        created("old-low", priority="low"),
        created("medium-1"),
        created("medium-2"),
        created("new-critical", priority="critical"),
    )
    assert short(when(board)) == [claim("new-critical", "a1"), claim("medium-1", "a2")]


def test_an_agent_gets_one_task_per_decision() -> None:
    board = given(swarm_created(), registered("a1"), created("t1"), created("t2"))
    assert short(when(board)) == [claim("t1", "a1")]


def test_a_busy_agent_gets_nothing_more() -> None:
    board = given(
        swarm_created(), registered("a1"), created("t1"), claimed("t1", "a1"), created("t2")
    )
    assert when(board) == []


def test_an_agent_no_executor_hosts_is_neither_claimed_for_nor_lost() -> None:
    board = given(swarm_created(), registered("a1", executor=None), created("t1"))
    assert when(board, now=T0 + 1000) == []


def test_a_requeued_task_waits_for_its_retry_time_then_gets_its_next_attempt() -> None:
    board = given(
        swarm_created(),
        registered("a1"),
        created("t1"),
        claimed("t1", "a1"),
        requeued("t1", 2, retry_at=NOW + 1),
    )
    assert when(board, now=NOW) == []
    assert short(when(board, now=NOW + 1)) == [claim("t1", "a1", attempt=2)]


# --- dependencies ---------------------------------------------------------------------------


def test_a_task_with_an_open_dependency_is_not_claimed() -> None:
    board = given(swarm_created(), registered("a1"), created("t1"), created("t2", depends=["t1"]))
    assert short(when(board)) == [claim("t1", "a1")]


def test_a_blocked_task_is_unblocked_when_all_its_dependencies_completed() -> None:
    board = given(
        swarm_created(),
        registered("a1"),
        created("t1"),
        created("t2"),
        created("t3", depends=["t1", "t2"]),
        claimed("t1", "a1"),
        running("t1", "a1"),
        completed("t1", "a1"),
    )
    assert ("task.unblocked", "t3") not in short(when(board))
    board = given(
        *[
            swarm_created(),
            registered("a1"),
            created("t1"),
            created("t2"),
            created("t3", depends=["t1", "t2"]),
        ],
        *[claimed("t1", "a1"), running("t1", "a1"), completed("t1", "a1")],
        *[claimed("t2", "a1"), running("t2", "a1"), completed("t2", "a1")],
    )
    assert short(when(board)) == [("task.unblocked", "t3")]


@pytest.mark.parametrize(
    ("ending", "reason"),
    [
        ([claimed("t1", "a1"), running("t1", "a1"), failed("t1", "a1")], "dependency t1 failed"),
        ([cancelled("t1")], "dependency t1 cancelled"),
        ([deleted("t1")], "dependency t1 deleted"),
    ],
)
def test_a_dependent_fails_when_its_dependency_cannot_complete(
    ending: list[ev.Event], reason: str
) -> None:
    board = given(
        swarm_created(),
        registered("a1", "api"),
        created("t1", "api"),
        created("t2", "ui", depends=["t1"]),
        *ending,
    )
    assert short(when(board)) == [("task.failed", "t2", reason, 0, None)]


def test_a_requeued_task_given_a_new_open_dependency_waits_for_it() -> None:
    board = given(
        *[swarm_created(), registered("a1", "api"), registered("a2"), created("t1", "api")],
        *[created("t2"), claimed("t2", "a2"), requeued("t2", 2)],
        ev.TaskUpdated(swarm=S, id="t2", time=T0, depends=["t1"]),
    )
    assert short(when(board)) == [claim("t1", "a1")]


def test_a_dependency_not_yet_written_is_waited_for() -> None:
    board = given(swarm_created(), registered("a1"), created("t2", depends=["t1"]))
    assert when(board) == []


# --- lost agents ----------------------------------------------------------------------------


def test_an_agent_whose_presence_is_older_than_the_lease_is_lost() -> None:
    board = given(swarm_created(), registered("a1"), registered("a2"))
    decisions = when(board, now=200.0, presence={"dev.a1": 195.0, "dev.a2": 189.0})
    assert short(decisions) == [("agent.lost", "a2")]
    assert "11.0s" in decisions[0].event.reason  # type: ignore[attr-defined]


def test_an_agent_never_present_is_lost_a_lease_after_it_registered() -> None:
    board = given(swarm_created(), registered("a1"))
    assert when(board, now=T0 + 10) == []
    assert short(when(board, now=T0 + 10.5)) == [("agent.lost", "a1")]


def test_an_agent_with_stale_presence_gets_no_task() -> None:
    board = given(swarm_created(), registered("a1"), created("t1"))
    assert short(when(board, now=200.0, presence={"dev.a1": 150.0})) == [("agent.lost", "a1")]


def test_a_run_lost_with_its_agent_is_requeued_with_the_next_attempt_and_backoff() -> None:
    board = given(
        *[swarm_created(), registered("a1"), created("t1")],
        *[claimed("t1", "a1"), running("t1", "a1"), lost("a1")],
    )
    reason = "agent a1 lost during run 1; 1 of 3 run losses used"
    assert short(when(board)) == [("task.requeued", "t1", 2, NOW + 2.0, reason)]
    assert when(board)[0].event.cause == "run_lost"  # type: ignore[attr-defined]


def test_a_claim_lost_before_its_run_started_is_requeued_at_once_as_an_interruption() -> None:
    board = given(swarm_created(), registered("a1"), created("t1"), claimed("t1", "a1"), lost("a1"))
    reason = "agent a1 lost before run 1 started; 1 of 20 interruptions used"
    assert short(when(board)) == [("task.requeued", "t1", 2, NOW, reason)]
    assert when(board)[0].event.cause == "claim_lost"  # type: ignore[attr-defined]


def test_the_task_of_a_lost_agent_fails_when_its_run_losses_are_used_up() -> None:
    board = given(
        *[swarm_created(), registered("a1"), registered("a2"), created("t1")],
        *[claimed("t1", "a1"), running("t1", "a1"), lost("a1"), requeued("t1", 2)],
        *[claimed("t1", "a2", 2), running("t1", "a2", 2), lost("a2")],
    )
    reason = "agent a2 lost during run 2; 2 of 2 run losses used"
    config = Config(lease=10.0, max_run_losses=2)
    assert short(when(board, config=config)) == [("task.failed", "t1", reason, 2, "a2")]


def test_claims_lost_before_their_run_do_not_use_the_run_losses() -> None:
    board = given(
        *[swarm_created(), registered("a1"), registered("a2"), created("t1")],
        *[claimed("t1", "a1"), lost("a1"), requeued("t1", 2)],
        *[claimed("t1", "a2", 2), running("t1", "a2", 2), lost("a2")],
    )
    task = board.task(S, "t1")
    assert task is not None and (task.claims_lost, task.runs_lost, task.runs) == (1, 0, 1)
    reason = "agent a2 lost during run 1; 1 of 2 run losses used"
    config = Config(lease=10.0, max_run_losses=2)
    assert short(when(board, config=config)) == [("task.requeued", "t1", 3, NOW + 2.0, reason)]


def test_backoff_doubles_per_attempt_up_to_its_cap() -> None:
    config = Config(backoff=2.0, backoff_cap=60.0)
    assert [config.retry_delay(n) for n in (1, 2, 3, 6, 7)] == [2.0, 4.0, 8.0, 60.0, 60.0]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"lease": 0}, "lease_seconds"),
        ({"max_run_losses": 0}, "max_run_losses"),
        ({"max_run_failures": 0}, "max_run_failures"),
        ({"max_interruptions": 0}, "max_interruptions"),
        ({"priority_aging": -1}, "priority_aging"),
        ({"backoff": -1}, "retry_backoff"),
    ],
)
def test_a_bad_setting_is_refused_naming_it(fields: dict, field: str) -> None:
    with pytest.raises(Invalid) as raised:
        Config(**fields)
    assert raised.value.field == field


# --- triggers -------------------------------------------------------------------------------


def follow_up(on: str, title: str) -> ev.Trigger:
    return ev.Trigger(on=on, task=ev.TaskSpec(title=title, tags=["qa"]))  # type: ignore[arg-type]


def test_a_completed_task_creates_its_completion_follow_ups_once() -> None:
    triggers = [follow_up("failed", "Report"), follow_up("completed", "Test it")]
    life = [
        *[swarm_created(), registered("a1"), created("t1", triggers=triggers)],
        *[claimed("t1", "a1"), running("t1", "a1"), completed("t1", "a1")],
    ]
    decisions = when(given(*life))
    assert short(decisions) == [("task.created", "t1-completed-1", "Test it", "t1")]
    assert decisions[0].expected_seq == 0
    assert decisions[0].event.tags == ["qa"]  # type: ignore[attr-defined]
    written = ev.TaskCreated(swarm=S, id="t1-completed-1", time=T0, title="Test it")
    assert when(given(*life, written, deleted("t1-completed-1"))) == []


def test_a_failed_task_creates_its_failure_follow_ups() -> None:
    board = given(
        swarm_created(),
        registered("a1"),
        created("t1", triggers=[follow_up("failed", "Report")]),
        claimed("t1", "a1"),
        failed("t1", "a1"),
    )
    assert short(when(board)) == [("task.created", "t1-failed-0", "Report", "t1")]


# --- what an append needs -------------------------------------------------------------------


def test_each_decision_carries_its_aggregates_expected_sequence_and_a_stable_message_id() -> None:
    board = given(swarm_created(), registered("a1"), created("t1"))
    first, again = when(board), when(board, now=NOW + 1)
    assert first[0].expected_seq == board.version(S, "task", "t1") == 3
    assert first[0].msg_id == again[0].msg_id
    assert first[0].event.actor == "scheduler"
    assert first[0].keys == ("dev/task/t1", "dev/agent/a1")


def test_aggregates_with_an_append_in_flight_are_left_alone() -> None:
    board = given(swarm_created(), registered("a1"), registered("a2"), created("t1"), created("t2"))
    assert short(when(board, in_flight={"dev/task/t1"})) == [claim("t2", "a1")]
    assert short(when(board, in_flight={"dev/agent/a1"})) == [claim("t1", "a2")]


def test_only_the_swarms_asked_for_are_decided() -> None:
    board = given(
        swarm_created("one"),
        swarm_created("two"),
        registered("a1", swarm="one"),
        registered("a1", swarm="two"),
        created("t1", swarm="one"),
        created("t1", swarm="two"),
    )
    assert [d.event.swarm for d in when(board, swarms=["two"])] == ["two"]
    assert sorted(d.event.swarm for d in when(board)) == ["one", "two"]


# --- looking only at the tasks that may need a decision -------------------------------------


def test_finished_tasks_without_follow_ups_to_write_are_not_looked_at() -> None:
    triggers = [follow_up("completed", "Test it")]
    board = given(
        *[
            swarm_created(),
            registered("a1"),
            created("done"),
            created("chained", triggers=triggers),
        ],
        *[created("dropped", triggers=triggers), created("waiting"), created("gone")],
        *[claimed("done", "a1"), running("done", "a1"), completed("done", "a1")],
        *[claimed("chained", "a1"), running("chained", "a1"), completed("chained", "a1")],
        *[cancelled("dropped"), deleted("gone")],
    )
    open_tasks = OpenTasks.of_board(board)
    assert list(open_tasks.swarms[S]) == ["chained", "waiting"]
    assert when(board, open_tasks=open_tasks) == when(board)
    assert short(when(board, open_tasks=open_tasks)) == [
        ("task.created", "chained-completed-0", "Test it", "chained"),
        claim("waiting", "a1"),
    ]


def test_with_every_agent_busy_a_pending_task_whose_dependency_was_deleted_still_fails() -> None:
    board = given(
        *[swarm_created(), registered("a1"), created("x"), claimed("x", "a1"), running("x", "a1")],
        *[completed("x", "a1"), created("after-x", depends=["x"]), created("free")],
        *[created("busy"), claimed("busy", "a1"), deleted("x")],
    )
    assert board.swarms[S].tasks["after-x"].status == "pending"
    assert short(when(board)) == [("task.failed", "after-x", "dependency x deleted", 0, None)]


def test_open_tasks_follow_the_log_event_by_event() -> None:
    board, open_tasks = Board(), OpenTasks()
    log = [swarm_created(), registered("a1"), created("t1"), created("t2"), claimed("t1", "a1")]
    log += [running("t1", "a1"), completed("t1", "a1"), ev.SwarmDeleted(swarm=S, id=S, time=T0)]
    seen = []
    for seq, event in enumerate(log, start=1):
        apply(board, event, seq)
        open_tasks.track(board, event)
        seen.append(list(open_tasks.swarms.get(S, {})))
    assert seen == [[], [], ["t1"], ["t1", "t2"], ["t1", "t2"], ["t1", "t2"], ["t2"], []]


# --- properties -----------------------------------------------------------------------------
#
# A random log: agents (some hosted, with random skills), tasks (random tags, priorities,
# dependencies on earlier tasks, follow-ups), then lifecycle steps that read the board as it is
# folded to pick a plausible event (so most steps land, and claims, runs, losses, requeues and
# failures all happen), then ``decide`` at a random time with random presence and in-flight keys.

TAGS = ["ui", "api", "qa"]
STEP_KINDS = [
    *("claim", "claim", "claim", "run", "run", "complete", "complete"),
    *("fail", "requeue", "cancel", "delete", "lose", "return", "depend"),
]

agent_specs = st.lists(
    st.tuples(st.lists(st.sampled_from(TAGS), max_size=2, unique=True), st.integers(0, 4)),
    min_size=1,
    max_size=4,
)
task_specs = st.lists(
    st.tuples(
        st.lists(st.sampled_from(TAGS), max_size=2, unique=True),
        st.sampled_from(["critical", "high", "medium", "low"]),
        st.lists(st.integers(0, 7), max_size=2, unique=True),
        st.booleans(),
    ),
    min_size=2,
    max_size=8,
)
steps = st.lists(
    st.tuples(
        st.sampled_from(STEP_KINDS),
        st.integers(0, 7),  # a task
        st.integers(0, 3),  # an agent
        st.floats(0, 20),  # a retry delay
    ),
    min_size=5,
    max_size=40,
)
scenarios = st.tuples(
    agent_specs,
    task_specs,
    steps,
    st.floats(0, 30),  # now, after the log
    st.dictionaries(st.integers(0, 3), st.floats(-15, 0), max_size=4),  # presence, before now
    st.sets(st.tuples(st.sampled_from(["task", "agent"]), st.integers(0, 7)), max_size=3),
)


def step_event(step: tuple, board: Board, time: float, tasks: int, agents: int) -> ev.Event | None:
    kind, t, a, delay = step
    swarm = board.swarms[S]
    task = swarm.tasks.get(f"t{t % tasks}")
    agent = f"a{a % agents}"
    if kind in ("lose", "return"):
        if agent not in swarm.agents:
            return None
        if kind == "lose":
            return ev.AgentLost(swarm=S, id=agent, time=time)
        return ev.AgentRegistered(swarm=S, id=agent, time=time, name=agent, executor="x")
    if task is None:
        return None
    fields: dict[str, Any] = {"swarm": S, "id": task.id, "time": time}
    current: dict[str, Any] = {"agent": task.agent or agent, "attempt": task.attempt}
    if kind == "claim":
        return ev.TaskClaimed(**fields, agent=agent, attempt=task.attempt)
    if kind == "run":
        return ev.TaskRunning(**fields, **current)
    if kind == "complete":
        return ev.TaskCompleted(**fields, **current)
    if kind == "fail":
        return ev.TaskFailed(**fields, **current, reason="exit 1")
    if kind == "requeue":
        return ev.TaskRequeued(
            **fields, attempt=task.attempt + 1, reason="x", retry_at=time + delay - 10
        )
    if kind == "cancel":
        return ev.TaskCancelled(**fields)
    if kind == "delete":
        return ev.TaskDeleted(**fields)
    return ev.TaskUpdated(**fields, depends=[f"t{(t + a + 1) % 8}"])


def run(
    scenario: tuple,
    open_tasks: OpenTasks | None = None,
    free_agents: FreeAgents | None = None,
    **options: Any,
) -> tuple[Board, list[Decision], float, set[str]]:
    """The scenario's board and what ``decide`` makes of it; given ``open_tasks`` (and
    ``free_agents``), it is kept event by event and ``decide`` looks at those tasks (and
    agents) only (``options``: more of ``decide``'s)."""
    agents, tasks, lifecycle, after, seen, busy = scenario
    time = T0
    events: list[ev.Event] = [swarm_created()]
    for i, (skills, hosting) in enumerate(agents):
        events.append(
            ev.AgentRegistered(
                swarm=S,
                id=f"a{i}",
                time=time,
                name=f"a{i}",
                skills=skills,
                executor=None if hosting == 0 else "x",
            )
        )
    for i, (tg, priority, deps, trig) in enumerate(tasks):
        time += 0.01
        triggers = [follow_up("completed", "next"), follow_up("failed", "fix")] if trig else []
        events.append(
            ev.TaskCreated(
                swarm=S,
                id=f"t{i}",
                time=time,
                title=f"t{i}",
                tags=tg,
                priority=priority,
                depends=[f"t{d}" for d in deps if d < i] + [f"t{d}" for d in deps if d > 7],
                triggers=triggers,
            )
        )
    board = Board()
    for event in events:
        apply(board, event, board.seq + 1)
        if open_tasks is not None:
            open_tasks.track(board, event)
        if free_agents is not None:
            free_agents.track(board, event)
    for step in lifecycle:
        time += 0.01
        stepped = step_event(step, board, time, len(tasks), len(agents))
        if stepped is not None:
            apply(board, stepped, board.seq + 1)
            if open_tasks is not None:
                open_tasks.track(board, stepped)
            if free_agents is not None:
                free_agents.track(board, stepped)
    now = time + after
    presence = {f"{S}.a{a}": now + ago for a, ago in seen.items()}
    in_flight = {f"{S}/{kind}/{'t' if kind == 'task' else 'a'}{i}" for kind, i in busy}
    if free_agents is not None:
        options["free_agents"] = free_agents
    decisions = when(
        board, now=now, presence=presence, in_flight=in_flight, open_tasks=open_tasks, **options
    )
    return board, decisions, now, in_flight


def claims(decisions: list[Decision]) -> list[ev.TaskClaimed]:
    return [d.event for d in decisions if isinstance(d.event, ev.TaskClaimed)]


@settings(max_examples=200, deadline=None)
@hypothesis_given(scenarios)
def test_property_a_round_without_the_presence_check_decides_the_same_but_lost_agents(
    scenario: tuple,
) -> None:
    """The scheduler's event-driven rounds (``check_presence=False``): with a task waiting to
    be claimed (not in flight), exactly the full round's decisions; without, the same minus
    ``agent.lost`` (found by the next reconcile round)."""
    board, full, _, in_flight = run(scenario)
    _, partial, _, _ = run(scenario, check_presence=False)
    waiting = any(
        t.status in ("pending", "requeued") and f"{S}/task/{t.id}" not in in_flight
        for t in board.swarms[S].tasks.values()
    )
    if waiting:
        assert partial == full
    else:
        assert partial == [d for d in full if not isinstance(d.event, ev.AgentLost)]
    # over the open tasks kept event by event
    assert run(scenario, OpenTasks(), check_presence=False)[1] == partial


@settings(max_examples=300, deadline=None)
@hypothesis_given(scenarios)
def test_property_a_round_over_the_free_agents_kept_claims_as_one_over_every_agent(
    scenario: tuple,
) -> None:
    """As the scheduler runs its event-driven rounds: over the open tasks and the free agents
    kept event by event, the full round's decisions less ``agent.lost`` (left to the reconcile
    rounds), whether or not a task waits; and the agents kept are those the board shows."""
    board, full, _, _ = run(scenario)
    free = FreeAgents()
    indexed = run(scenario, OpenTasks(), free, check_presence=False)[1]
    assert indexed == [d for d in full if not isinstance(d.event, ev.AgentLost)]
    assert free.groups == FreeAgents.of_board(board).groups
    kept = {a for ids in free.groups.get(S, {}).values() for a in ids}
    assert kept == {a.id for a in board.swarms[S].agents.values() if is_candidate(a)}
    # the full rounds (reconcile) are unchanged by the index
    assert run(scenario, OpenTasks(), FreeAgents())[1] == full


@settings(max_examples=200, deadline=None)
@hypothesis_given(scenarios)
def test_property_never_claims_a_task_with_open_dependencies(scenario: tuple) -> None:
    board, decisions, now, _ = run(scenario)
    swarm = board.swarms[S]
    for e in claims(decisions):
        task = swarm.tasks[e.id]
        assert task.status in CLAIMABLE and deps_done(swarm, task) and task.retry_at <= now


@settings(max_examples=200, deadline=None)
@hypothesis_given(scenarios)
def test_property_never_claims_for_an_agent_that_is_not_idle_or_in_flight(scenario: tuple) -> None:
    board, decisions, _, in_flight = run(scenario)
    for e in claims(decisions):
        agent = board.swarms[S].agents[e.agent]
        assert agent.status == "idle" and agent.task is None and agent.executor is not None
        assert f"{S}/agent/{e.agent}" not in in_flight and f"{S}/task/{e.id}" not in in_flight


@settings(max_examples=200, deadline=None)
@hypothesis_given(scenarios)
def test_property_one_decision_per_agent_and_per_aggregate(scenario: tuple) -> None:
    _, decisions, _, _ = run(scenario)
    agents = [e.agent for e in claims(decisions)]
    assert len(agents) == len(set(agents))
    keys = [d.key for d in decisions]
    assert len(keys) == len(set(keys))


@settings(max_examples=200, deadline=None)
@hypothesis_given(scenarios)
def test_property_no_claimed_agent_could_have_served_a_higher_task_left_waiting(
    scenario: tuple,
) -> None:
    board, decisions, now, in_flight = run(scenario)
    swarm = board.swarms[S]
    taken = {e.id for e in claims(decisions)}
    failing = {d.event.id for d in decisions if isinstance(d.event, ev.TaskFailed)}
    waiting = [
        t
        for t in swarm.tasks.values()
        if t.status in CLAIMABLE
        and t.retry_at <= now
        and deps_done(swarm, t)
        and t.id not in taken | failing
        and f"{S}/task/{t.id}" not in in_flight
    ]
    aging = CONFIG.priority_aging
    for e in claims(decisions):
        mine = claim_order(swarm.tasks[e.id], now, aging)
        agent = swarm.agents[e.agent]
        for other in waiting:
            ahead = claim_order(other, now, aging) < mine
            assert not (ahead and can_take(agent, other)), (e, other.id)


@settings(max_examples=200, deadline=None)
@hypothesis_given(scenarios)
def test_property_every_decision_applies_to_the_board_it_was_made_on(scenario: tuple) -> None:
    board, decisions, _, _ = run(scenario)
    before = board.ignored
    for decision in decisions:
        event = decision.event
        assert decision.expected_seq == board.version(S, event.aggregate, event.id)
        apply(board, event, board.seq + 1)
    assert board.ignored == before, [d.event.type for d in decisions]


@settings(max_examples=200, deadline=None)
@hypothesis_given(scenarios)
def test_property_deciding_over_the_open_tasks_kept_event_by_event_decides_the_same(
    scenario: tuple,
) -> None:
    open_tasks = OpenTasks()
    board, decisions, _, _ = run(scenario, open_tasks)
    assert decisions == run(scenario)[1]
    assert open_tasks.swarms[S] == OpenTasks.of_board(board).swarms[S]
    assert list(open_tasks.swarms[S]) == list(OpenTasks.of_board(board).swarms[S])


# --- correlation ------------------------------------------------------------------------------


def test_a_tasks_decisions_and_its_follow_ups_carry_the_correlation_id_of_its_request() -> None:
    board = given(
        swarm_created(),
        registered("a1"),
        created("t1", correlation_id="req-42", triggers=[follow_up("completed", "Test it")]),
    )
    claims = {d.event.id: d.event.correlation_id for d in when(board)}
    assert claims["t1"] == "req-42"

    board = given(
        swarm_created(),
        registered("a1"),
        created("t1", correlation_id="req-42", triggers=[follow_up("completed", "Test it")]),
        claimed("t1", "a1"),
        running("t1", "a1"),
        completed("t1", "a1"),
    )
    follow = [d.event for d in when(board) if isinstance(d.event, ev.TaskCreated)]
    assert [(e.id, e.correlation_id) for e in follow] == [("t1-completed-0", "req-42")]


# --- cycles no single gateway could see ------------------------------------------------------


def test_tasks_caught_in_a_dependency_cycle_fail_naming_it_instead_of_waiting_for_ever() -> None:
    """Two gateway replicas each added one edge; each saw no cycle; the log holds one."""
    board = given(
        swarm_created(),
        registered("a1"),
        created("t1", depends=["t0"]),
        created("t2", depends=["t1"]),
        created("t0"),
        ev.TaskUpdated(swarm=S, id="t1", time=T0, depends=["t2"]),
        created("t3", depends=["t2"]),  # waits on the cycle, not in it: fails once t2 fails
    )
    failed = {d.event.id: d.event.reason for d in when(board) if isinstance(d.event, ev.TaskFailed)}
    assert failed == {
        "t1": "dependency cycle: t1 -> t2 -> t1",
        "t2": "dependency cycle: t2 -> t1 -> t2",
    }
    assert not [d for d in when(board, check_cycles=False) if d.event.type == "task.failed"]


def test_untakeable_lists_open_tasks_no_registered_agent_can_take() -> None:
    from schemas.board import AgentView, SwarmView, TaskView
    from schemas.eligibility import untakeable

    swarm = SwarmView(id="s", name="s")
    swarm.agents["a1"] = AgentView(swarm="s", id="a1", name="A1", skills=["UI "], status="lost")
    design = TaskView(swarm="s", id="t1", title="Design logo", prompt="", tags=["design"])
    button = TaskView(swarm="s", id="t2", title="Button", prompt="", tags=["ui"])
    anyone = TaskView(swarm="s", id="t3", title="Anything", prompt="")
    done = TaskView(swarm="s", id="t4", title="Old", prompt="", tags=["design"], status="failed")
    for task in (design, button, anyone, done):
        swarm.tasks[task.id] = task
    assert [task.id for task in untakeable(swarm)] == ["t1"]


# --- deep queues (issue 15): a round costs what it decides, not the queue's length ------------

queue_tasks = st.lists(
    st.tuples(
        st.floats(0, 50),  # created, seconds after T0: not in log order (clocks differ)
        st.sampled_from(["critical", "high", "medium", "low"]),
        st.lists(st.sampled_from(TAGS), max_size=1),
        st.sampled_from(["instant", "claude"]),
    ),
    min_size=1,
    max_size=25,
)
queue_steps = st.lists(  # then: claims, cancels, priority changes, new dependencies
    st.tuples(st.sampled_from(["claim", "cancel", "priority", "depend"]), st.integers(0, 24)),
    max_size=10,
)
queue_scenarios = st.tuples(
    queue_tasks,
    queue_steps,
    st.lists(st.lists(st.sampled_from(TAGS), max_size=1), min_size=0, max_size=4),  # free agents
    st.floats(0, 20),  # priority aging, seconds (0: off)
    st.floats(0, 120),  # now, after T0
    st.sets(st.integers(0, 24), max_size=4),  # tasks in flight
    st.booleans(),  # the budget is spent
)


def queue_log(scenario: tuple) -> list[ev.Event]:
    tasks, steps, agents, _, _, _, spent = scenario
    log: list[ev.Event] = [
        ev.SwarmCreated(swarm=S, id=S, time=T0, name=S, budget_usd=1.0 if spent else None)
    ]
    log += [registered(f"a{i}", *skills) for i, skills in enumerate(agents)]
    log += [registered("busy-agent")]
    for i, (at, priority, tags, runtime) in enumerate(tasks):
        log.append(
            ev.TaskCreated(
                swarm=S,
                id=f"q{i}",
                time=T0 + at,
                title=f"q{i}",
                tags=tags,
                priority=priority,
                runtime=runtime,
            )
        )
    if spent:
        log.append(
            ev.TaskCreated(swarm=S, id="spender", time=T0, title="spender", runtime="claude")
        )
        log += [claimed("spender", "busy-agent"), running("spender", "busy-agent")]
        log.append(
            ev.TaskCompleted(
                swarm=S,
                id="spender",
                time=T0,
                agent="busy-agent",
                attempt=1,
                outcome=ev.RunOutcome(cost_usd=2.0),
            )
        )
    for kind, t in steps:
        task = f"q{t % len(tasks)}"
        if kind == "claim":
            log.append(claimed(task, "busy-agent"))
        elif kind == "cancel":
            log.append(ev.TaskCancelled(swarm=S, id=task, time=T0))
        elif kind == "priority":
            log.append(ev.TaskUpdated(swarm=S, id=task, time=T0, priority="critical"))
        else:
            log.append(ev.TaskUpdated(swarm=S, id=task, time=T0, depends=[f"q{(t + 1) % 25}"]))
    return log


@settings(max_examples=300, deadline=None)
@hypothesis_given(queue_scenarios)
def test_property_claims_from_the_kept_queues_are_those_from_every_task(scenario: tuple) -> None:
    _, _, _, aging, after, busy, _ = scenario
    board, open_tasks = Board(), OpenTasks()
    for seq, event in enumerate(queue_log(scenario), start=1):
        apply(board, event, seq)
        open_tasks.track(board, event)
    config = Config(lease=1e9, priority_aging=aging)
    in_flight = {f"{S}/task/q{i}" for i in busy}
    decided = [
        decide(board, T0 + after, config, in_flight=in_flight, open_tasks=kept)
        for kept in (open_tasks, None, OpenTasks.of_board(board))
    ]
    assert decided[0] == decided[1] == decided[2]
    rebuilt = OpenTasks.of_board(board)
    assert (open_tasks.others, open_tasks.waiting) == (rebuilt.others, rebuilt.waiting)


def test_with_no_agent_free_a_round_does_not_look_at_the_waiting_queue() -> None:
    board = given(swarm_created(), registered("a1"), created("t1"), claimed("t1", "a1"))
    open_tasks = OpenTasks.of_board(board)
    for i in range(3):
        event = created(f"w{i}")
        apply(board, event, board.seq + 1)
        open_tasks.track(board, event)
    assert [entry[2] for entry in open_tasks.waiting[S]["medium"]] == ["w0", "w1", "w2"]
    assert list(open_tasks.others[S]) == ["t1"]
    open_tasks.waiting[S] = Untouchable()
    assert when(board, open_tasks=open_tasks) == []  # a read of the queue would raise


class Untouchable(dict):
    """A waiting queue that fails the test when read."""

    def values(self):
        raise AssertionError("the waiting queue was read")

    def __iter__(self):
        raise AssertionError("the waiting queue was read")
