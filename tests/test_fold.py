"""The fold's transitions, given/when/then: given a log, when one more event, then the board."""

from __future__ import annotations

from typing import Any

from schemas import events as ev
from schemas.board import AgentView, Board, TaskView
from schemas.fold import apply, fold

S = "dev"


# --- a tiny vocabulary for logs ------------------------------------------------------------------


def swarm_created(swarm: str = S) -> ev.SwarmCreated:
    return ev.SwarmCreated(swarm=swarm, id=swarm, time=1.0, name=swarm.title())


def created(task: str, depends: list[str] | None = None, **fields: Any) -> ev.TaskCreated:
    return ev.TaskCreated(swarm=S, id=task, time=2.0, title=task, depends=depends or [], **fields)


def registered(agent: str, *skills: str) -> ev.AgentRegistered:
    return ev.AgentRegistered(swarm=S, id=agent, time=3.0, name=agent, skills=list(skills))


def claimed(task: str, agent: str, attempt: int = 1) -> ev.TaskClaimed:
    return ev.TaskClaimed(swarm=S, id=task, time=4.0, agent=agent, attempt=attempt)


def running(task: str, agent: str, attempt: int = 1) -> ev.TaskRunning:
    return ev.TaskRunning(swarm=S, id=task, time=5.0, agent=agent, attempt=attempt)


def completed(
    task: str,
    agent: str,
    attempt: int = 1,
    result: str = "done",
    outcome: ev.RunOutcome | None = None,
) -> ev.TaskCompleted:
    return ev.TaskCompleted(
        swarm=S,
        id=task,
        time=6.0,
        agent=agent,
        attempt=attempt,
        outcome=outcome or ev.RunOutcome(result=result),
    )


def failed(task: str, reason: str, attempt: int = 0, agent: str | None = None) -> ev.TaskFailed:
    return ev.TaskFailed(swarm=S, id=task, time=6.0, reason=reason, attempt=attempt, agent=agent)


def requeued(task: str, attempt: int, reason: str = "agent lost") -> ev.TaskRequeued:
    return ev.TaskRequeued(
        swarm=S, id=task, time=7.0, attempt=attempt, reason=reason, retry_at=17.0
    )


def unblocked(task: str) -> ev.TaskUnblocked:
    return ev.TaskUnblocked(swarm=S, id=task, time=6.5)


def cancelled(task: str, reason: str = "") -> ev.TaskCancelled:
    return ev.TaskCancelled(swarm=S, id=task, time=8.0, reason=reason)


def deleted(task: str) -> ev.TaskDeleted:
    return ev.TaskDeleted(swarm=S, id=task, time=9.0)


def lost(agent: str) -> ev.AgentLost:
    return ev.AgentLost(swarm=S, id=agent, time=10.0, reason="presence stale")


def given(*events: ev.Event) -> Board:
    """A board folded from ``events`` at log positions 1, 2, 3, ..."""
    return fold(list(enumerate(events, start=1)))


def when(board: Board, event: ev.Event) -> Board:
    """Fold one more event at the next log position; the board counts it void or not."""
    return apply(board, event, board.seq + 1)


def task(board: Board, task_id: str) -> TaskView:
    found = board.task(S, task_id)
    assert found is not None, f"no task {task_id}"
    return found


def agent(board: Board, agent_id: str) -> AgentView:
    found = board.agent(S, agent_id)
    assert found is not None, f"no agent {agent_id}"
    return found


def void(board: Board, event: ev.Event) -> bool:
    """Whether the fold rules ``event`` void: counted as ignored, nothing else changes."""
    before = board.ignored
    snapshot = (
        {tid: (t.status, t.attempt, t.agent) for tid, t in board.swarms[S].tasks.items()},
        {aid: (a.status, a.task) for aid, a in board.swarms[S].agents.items()},
    )
    when(board, event)
    after = (
        {tid: (t.status, t.attempt, t.agent) for tid, t in board.swarms[S].tasks.items()},
        {aid: (a.status, a.task) for aid, a in board.swarms[S].agents.items()},
    )
    return board.ignored == before + 1 and after == snapshot


# --- task life --------------------------------------------------------------------------------


def test_task_without_dependencies_is_pending_when_created() -> None:
    board = given(swarm_created())
    when(board, created("t1", prompt=""))
    assert task(board, "t1").status == "pending"
    assert task(board, "t1").attempt == 1
    assert task(board, "t1").prompt == "t1"  # the title stands in for an empty prompt
    assert task(board, "t1").created_seq == 2


def test_task_goes_from_created_through_claimed_and_running_to_completed() -> None:
    board = given(swarm_created(), registered("a1", "ui"), created("t1", tags=["ui"]))

    when(board, claimed("t1", "a1"))
    assert (task(board, "t1").status, task(board, "t1").agent) == ("claimed", "a1")
    assert task(board, "t1").claimed_at == 4.0
    assert (agent(board, "a1").status, agent(board, "a1").task) == ("working", "t1")

    when(board, running("t1", "a1"))
    assert task(board, "t1").status == "running"
    assert task(board, "t1").started_at == 5.0
    assert agent(board, "a1").task == "t1"

    when(board, completed("t1", "a1", result="it works"))
    assert task(board, "t1").status == "completed"
    assert task(board, "t1").outcome == ev.RunOutcome(result="it works")
    assert task(board, "t1").finished_at == 6.0
    assert task(board, "t1").agent == "a1"  # who did it is remembered
    assert (agent(board, "a1").status, agent(board, "a1").task) == ("idle", None)
    assert board.ignored == 0


def test_task_with_open_dependency_is_blocked_until_unblocked_after_it_completes() -> None:
    board = given(swarm_created(), registered("a1"), created("t1"), created("t2", ["t1"]))
    assert task(board, "t2").status == "blocked"

    assert void(board, unblocked("t2"))  # t1 is not completed yet
    assert void(board, claimed("t2", "a1"))  # nor is a blocked task claimable

    when(board, claimed("t1", "a1"))
    when(board, running("t1", "a1"))
    when(board, completed("t1", "a1"))
    assert task(board, "t2").status == "blocked"  # the fold waits for the scheduler's unblock

    when(board, unblocked("t2"))
    assert task(board, "t2").status == "pending"
    assert task(board, "t2").updated_at == 6.5


def test_task_created_after_its_dependency_completed_is_pending() -> None:
    board = given(
        swarm_created(),
        registered("a1"),
        created("t1"),
        claimed("t1", "a1"),
        running("t1", "a1"),
        completed("t1", "a1"),
    )
    when(board, created("t2", ["t1"]))
    assert task(board, "t2").status == "pending"


def test_task_depending_on_a_missing_task_is_blocked() -> None:
    board = given(swarm_created())
    when(board, created("t2", ["nowhere"]))
    assert task(board, "t2").status == "blocked"


def test_requeue_increments_attempt_and_frees_agent() -> None:
    board = given(
        swarm_created(), registered("a1"), created("t1"), claimed("t1", "a1"), running("t1", "a1")
    )
    when(board, requeued("t1", attempt=2, reason="executor gone"))

    assert task(board, "t1").status == "requeued"
    assert task(board, "t1").attempt == 2
    assert task(board, "t1").agent is None
    assert task(board, "t1").reason == "executor gone"
    assert task(board, "t1").retry_at == 17.0
    assert task(board, "t1").claimed_at is None and task(board, "t1").started_at is None
    assert (agent(board, "a1").status, agent(board, "a1").task) == ("idle", None)


def test_requeued_task_is_claimed_again_with_the_next_attempt_only() -> None:
    board = given(
        swarm_created(),
        registered("a1"),
        registered("a2"),
        created("t1"),
        claimed("t1", "a1"),
        requeued("t1", attempt=2),
    )
    assert void(board, claimed("t1", "a2", attempt=1))
    when(board, claimed("t1", "a2", attempt=2))
    assert (task(board, "t1").status, task(board, "t1").agent) == ("claimed", "a2")


def test_requeue_that_skips_an_attempt_or_repeats_one_is_void() -> None:
    board = given(swarm_created(), registered("a1"), created("t1"), claimed("t1", "a1"))
    assert void(board, requeued("t1", attempt=3))
    assert void(board, requeued("t1", attempt=1))


def test_requeue_of_a_pending_task_is_void() -> None:
    board = given(swarm_created(), created("t1"))
    assert void(board, requeued("t1", attempt=2))


def test_late_completion_from_an_old_attempt_is_void() -> None:
    board = given(
        swarm_created(),
        registered("a1"),
        registered("a2"),
        created("t1"),
        claimed("t1", "a1"),
        running("t1", "a1"),
        lost("a1"),
        requeued("t1", attempt=2),
        claimed("t1", "a2", attempt=2),
        running("t1", "a2", attempt=2),
    )
    assert void(board, completed("t1", "a1", attempt=1))  # the zombie's result
    assert void(board, failed("t1", "crashed", attempt=1, agent="a1"))
    assert void(board, completed("t1", "a1", attempt=2))  # right attempt, wrong agent

    when(board, completed("t1", "a2", attempt=2))
    assert task(board, "t1").status == "completed"
    assert task(board, "t1").agent == "a2"


def test_claim_for_a_busy_agent_is_void() -> None:
    board = given(
        swarm_created(), registered("a1"), created("t1"), created("t2"), claimed("t1", "a1")
    )
    assert void(board, claimed("t2", "a1"))
    assert task(board, "t2").status == "pending"


def test_second_claim_of_the_same_attempt_is_void_first_in_log_order_wins() -> None:
    board = given(swarm_created(), registered("a1"), registered("a2"), created("t1"))
    when(board, claimed("t1", "a1"))
    assert void(board, claimed("t1", "a2"))
    assert task(board, "t1").agent == "a1"
    assert agent(board, "a2").status == "idle"


def test_claim_with_a_wrong_attempt_or_unknown_agent_is_void() -> None:
    board = given(swarm_created(), registered("a1"), created("t1"))
    assert void(board, claimed("t1", "a1", attempt=2))
    assert void(board, claimed("t1", "nobody"))


def test_running_from_another_agent_or_before_the_claim_is_void() -> None:
    board = given(swarm_created(), registered("a1"), registered("a2"), created("t1"))
    assert void(board, running("t1", "a1"))
    when(board, claimed("t1", "a1"))
    assert void(board, running("t1", "a2"))
    assert void(board, running("t1", "a1", attempt=2))


def test_completion_of_a_claimed_task_that_never_reported_running_counts() -> None:
    board = given(swarm_created(), registered("a1"), created("t1"), claimed("t1", "a1"))
    when(board, completed("t1", "a1"))
    assert task(board, "t1").status == "completed"
    assert agent(board, "a1").status == "idle"


def test_failed_run_releases_the_agent_and_remembers_it() -> None:
    board = given(
        swarm_created(), registered("a1"), created("t1"), claimed("t1", "a1"), running("t1", "a1")
    )
    when(board, failed("t1", "exit 1", attempt=1, agent="a1"))
    assert (task(board, "t1").status, task(board, "t1").reason) == ("failed", "exit 1")
    assert task(board, "t1").agent == "a1"
    assert (agent(board, "a1").status, agent(board, "a1").task) == ("idle", None)


def test_failed_by_decision_applies_only_to_a_task_that_is_not_active() -> None:
    board = given(
        swarm_created(),
        registered("a1"),
        created("t1"),
        created("t2", ["t1"]),
        claimed("t1", "a1"),
    )
    assert void(board, failed("t1", "attempts used up"))  # active: needs attempt and agent
    when(board, failed("t2", "dependency t1 failed"))
    assert (task(board, "t2").status, task(board, "t2").reason) == (
        "failed",
        "dependency t1 failed",
    )
    assert void(board, failed("t2", "again"))


def test_cancel_of_a_running_task_releases_the_agent_and_the_task_remembers_it() -> None:
    board = given(
        swarm_created(), registered("a1"), created("t1"), claimed("t1", "a1"), running("t1", "a1")
    )
    cancel = ev.TaskCancelled(swarm=S, id="t1", time=8.0, reason="not needed", actor="cli")
    when(board, cancel)
    assert (task(board, "t1").status, task(board, "t1").reason) == ("cancelled", "not needed")
    assert (task(board, "t1").agent, task(board, "t1").cancelled_by) == ("a1", "cli")
    assert (agent(board, "a1").status, agent(board, "a1").task) == ("idle", None)
    assert task(board, "t1").finished_at == 8.0


def test_cancel_without_a_reason_says_cancelled() -> None:
    board = given(swarm_created(), created("t1"))
    when(board, cancelled("t1"))
    assert task(board, "t1").reason == "cancelled"


def test_finished_task_cannot_be_cancelled_claimed_or_updated() -> None:
    board = given(
        swarm_created(),
        registered("a1"),
        created("t1"),
        claimed("t1", "a1"),
        completed("t1", "a1"),
    )
    assert void(board, cancelled("t1"))
    assert void(board, claimed("t1", "a1"))
    assert void(board, ev.TaskUpdated(swarm=S, id="t1", time=9.0, title="again"))
    assert task(board, "t1").status == "completed"


def test_cancelled_task_does_not_come_back_from_a_late_result() -> None:
    board = given(
        swarm_created(),
        registered("a1"),
        created("t1"),
        claimed("t1", "a1"),
        running("t1", "a1"),
        cancelled("t1"),
    )
    assert void(board, completed("t1", "a1"))
    assert task(board, "t1").status == "cancelled"


def test_update_changes_only_the_fields_it_sets() -> None:
    board = given(swarm_created(), created("t1", tags=["ui"], priority="low"))
    when(board, ev.TaskUpdated(swarm=S, id="t1", time=9.0, priority="critical"))
    assert (task(board, "t1").priority, task(board, "t1").tags) == ("critical", ["ui"])
    assert task(board, "t1").updated_at == 9.0


def test_update_adding_an_open_dependency_blocks_a_pending_task() -> None:
    board = given(swarm_created(), created("t1"), created("t2"))
    when(board, ev.TaskUpdated(swarm=S, id="t2", time=9.0, depends=["t1"]))
    assert task(board, "t2").status == "blocked"
    when(board, ev.TaskUpdated(swarm=S, id="t2", time=9.5, depends=[]))
    assert task(board, "t2").status == "pending"


def test_update_of_a_claimed_task_is_void() -> None:
    board = given(swarm_created(), registered("a1"), created("t1"), claimed("t1", "a1"))
    assert void(board, ev.TaskUpdated(swarm=S, id="t1", time=9.0, title="renamed"))
    assert task(board, "t1").title == "t1"


def test_deleted_task_disappears_from_the_board() -> None:
    board = given(swarm_created(), created("t1"))
    when(board, deleted("t1"))
    assert board.task(S, "t1") is None
    assert void(board, claimed("t1", "a1"))


def test_delete_of_an_active_task_is_void() -> None:
    board = given(swarm_created(), registered("a1"), created("t1"), claimed("t1", "a1"))
    assert void(board, deleted("t1"))
    assert board.task(S, "t1") is not None


def test_second_create_of_an_existing_task_is_void() -> None:
    board = given(swarm_created(), created("t1", priority="low"))
    assert void(board, created("t1", priority="high"))
    assert task(board, "t1").priority == "low"


# --- agents -----------------------------------------------------------------------------------


def test_lost_agent_keeps_its_task_until_requeued_and_is_idle_when_it_registers_again() -> None:
    board = given(
        swarm_created(), registered("a1"), created("t1"), claimed("t1", "a1"), running("t1", "a1")
    )
    when(board, lost("a1"))
    assert (agent(board, "a1").status, agent(board, "a1").task) == ("lost", "t1")
    assert task(board, "t1").status == "running"
    assert void(board, lost("a1"))  # already lost

    when(board, requeued("t1", attempt=2))
    assert (agent(board, "a1").status, agent(board, "a1").task) == ("lost", None)
    assert void(board, claimed("t1", "a1", attempt=2))  # a lost agent takes nothing

    when(board, registered("a1", "ui"))
    assert (agent(board, "a1").status, agent(board, "a1").task) == ("idle", None)
    assert agent(board, "a1").skills == ["ui"]
    assert agent(board, "a1").registered_at == 3.0
    when(board, claimed("t1", "a1", attempt=2))
    assert agent(board, "a1").status == "working"


def test_lost_agent_registering_again_before_a_requeue_is_working_on_its_task() -> None:
    board = given(swarm_created(), registered("a1"), created("t1"), claimed("t1", "a1"), lost("a1"))
    when(board, registered("a1"))
    assert (agent(board, "a1").status, agent(board, "a1").task) == ("working", "t1")
    when(board, running("t1", "a1"))
    assert task(board, "t1").status == "running"


def test_agent_holding_a_task_cannot_deregister() -> None:
    board = given(swarm_created(), registered("a1"), created("t1"), claimed("t1", "a1"))
    assert void(board, ev.AgentDeregistered(swarm=S, id="a1", time=9.0))
    when(board, cancelled("t1"))
    when(board, ev.AgentDeregistered(swarm=S, id="a1", time=9.5))
    assert board.agent(S, "a1") is None


def test_agent_update_changes_only_the_fields_it_sets() -> None:
    board = given(swarm_created(), registered("a1", "ui"))
    when(board, ev.AgentUpdated(swarm=S, id="a1", time=9.0, role="frontend"))
    assert (agent(board, "a1").role, agent(board, "a1").skills) == ("frontend", ["ui"])
    when(board, ev.AgentUpdated(swarm=S, id="a1", time=9.5, skills=["api"]))
    assert agent(board, "a1").skills == ["api"]


# --- swarms -----------------------------------------------------------------------------------


def test_events_of_a_swarm_that_does_not_exist_are_void() -> None:
    board = given()
    when(board, created("t1"))
    when(board, registered("a1"))
    assert board.swarms == {}
    assert board.ignored == 2


def test_second_create_of_a_swarm_is_void_and_delete_removes_everything() -> None:
    board = given(swarm_created(), registered("a1"), created("t1"))
    when(board, swarm_created())
    assert board.ignored == 1
    when(board, ev.SwarmDeleted(swarm=S, id=S, time=9.0))
    assert S not in board.swarms
    when(board, swarm_created())
    assert board.swarms[S].tasks == {} and board.swarms[S].agents == {}


# --- projects ---------------------------------------------------------------------------------


def project_created(project: str = "p1") -> ev.ProjectCreated:
    return ev.ProjectCreated(
        swarm=S, id=project, time=2.0, name=project, git_url=f"https://example.com/{project}.git"
    )


def synced(agent_id: str, round_: int, commit: str, project: str = "p1") -> ev.ProjectSynced:
    return ev.ProjectSynced(
        swarm=S, id=project, time=20.0 + round_, agent=agent_id, round=round_, commit=commit
    )


def sync_failed(agent_id: str, round_: int, error: str) -> ev.ProjectSyncFailed:
    return ev.ProjectSyncFailed(
        swarm=S, id="p1", time=30.0 + round_, agent=agent_id, round=round_, error=error
    )


def test_project_init_and_sync_requests_open_rounds_that_checkouts_answer() -> None:
    board = given(swarm_created(), registered("a1"), registered("a2"), project_created())
    when(board, ev.ProjectAttached(swarm=S, id="p1", time=3.0))
    assert board.swarms[S].project == "p1"
    assert board.swarms[S].projects["p1"].attached

    when(board, ev.ProjectInitRequested(swarm=S, id="p1", time=4.0))
    project = board.swarms[S].projects["p1"]
    assert (project.round, project.request) == (1, "init")

    when(board, synced("a1", 1, "abc"))
    when(board, sync_failed("a2", 1, "clone refused"))
    assert project.checkouts["a1"].state == "synced"
    assert (project.checkouts["a1"].round, project.checkouts["a1"].commit) == (1, "abc")
    assert project.checkouts["a2"].state == "sync_failed"
    assert project.checkouts["a2"].error == "clone refused"
    assert project.checkouts["a2"].commit is None

    when(board, ev.ProjectSyncRequested(swarm=S, id="p1", time=5.0))
    assert (project.round, project.request) == (2, "sync")
    assert {name: c.state for name, c in project.checkouts.items()} == {
        "a1": "pending",
        "a2": "pending",
    }
    assert project.checkouts["a1"].commit == "abc"  # still where it was until it answers

    when(board, sync_failed("a1", 2, "merge conflict"))
    # a failed pull leaves the commit
    assert (project.checkouts["a1"].state, project.checkouts["a1"].commit) == ("sync_failed", "abc")
    when(board, synced("a1", 2, "def"))
    assert (project.checkouts["a1"].state, project.checkouts["a1"].commit) == ("synced", "def")
    assert project.checkouts["a1"].error is None


def test_attaching_a_second_project_detaches_the_first() -> None:
    board = given(
        swarm_created(),
        project_created("p1"),
        project_created("p2"),
        ev.ProjectAttached(swarm=S, id="p1", time=3.0),
    )
    when(board, ev.ProjectAttached(swarm=S, id="p2", time=4.0))
    assert board.swarms[S].project == "p2"
    assert not board.swarms[S].projects["p1"].attached
    assert board.swarms[S].projects["p2"].attached


def test_requests_for_an_unknown_project_are_void() -> None:
    board = given(swarm_created())
    when(board, ev.ProjectSyncRequested(swarm=S, id="p9", time=4.0))
    when(board, synced("a1", 1, "abc", project="p9"))
    assert board.ignored == 2


# --- versions ---------------------------------------------------------------------------------


def test_board_version_tracks_the_last_log_position_of_each_aggregate() -> None:
    board = given(swarm_created(), registered("a1"), created("t1"), created("t2"))
    assert board.version(S, "swarm", S) == 1
    assert board.version(S, "agent", "a1") == 2
    assert board.version(S, "task", "t1") == 3
    assert board.version(S, "task", "t2") == 4
    assert board.version(S, "task", "t3") == 0  # nothing yet: the next append expects 0
    assert board.version("other", "task", "t1") == 0

    apply(board, claimed("t1", "a1"), 10)  # stream positions need not be contiguous
    assert board.version(S, "task", "t1") == 10
    assert board.version(S, "agent", "a1") == 2  # a claim is an event of the task only
    assert board.version(S, "task", "t2") == 4
    assert board.seq == 10


def test_void_event_still_advances_its_aggregate_version() -> None:
    board = given(swarm_created(), registered("a1"), created("t1"), claimed("t1", "a1"))
    assert void(board, claimed("t1", "a1"))
    assert board.version(S, "task", "t1") == 5
    assert board.seq == 5


def test_board_seq_never_goes_back() -> None:
    board = given(swarm_created())
    apply(board, created("t1"), 7)
    apply(board, created("t2"), 3)  # an older position folded late (e.g. a filtered replay)
    assert board.seq == 7
    assert board.version(S, "task", "t2") == 3


# --- costs, budgets and sessions --------------------------------------------------------------


def costing(task: str, agent: str, cost: float, attempt: int = 1) -> ev.TaskCompleted:
    return completed(task, agent, attempt, outcome=ev.RunOutcome(cost_usd=cost))


def failed_costing(task: str, agent: str, cost: float) -> ev.TaskFailed:
    outcome = ev.RunOutcome(cost_usd=cost, is_error=True)
    return ev.TaskFailed(
        swarm=S, id=task, time=6.0, agent=agent, attempt=1, reason="denied", outcome=outcome
    )


def test_run_costs_add_up_per_task_agent_and_swarm() -> None:
    board = given(
        swarm_created(),
        registered("a1"),
        registered("a2"),
        created("t1"),
        created("t2"),
        claimed("t1", "a1"),
        claimed("t2", "a2"),
        costing("t1", "a1", 0.5),
        failed_costing("t2", "a2", 0.25),
    )
    assert (task(board, "t1").cost_usd, task(board, "t2").cost_usd) == (0.5, 0.25)
    assert (agent(board, "a1").spent_usd, agent(board, "a2").spent_usd) == (0.5, 0.25)
    assert board.swarms[S].spent_usd == 0.75


def test_a_refused_late_result_costs_nothing_on_the_board() -> None:
    board = given(
        swarm_created(), registered("a1"), created("t1"), claimed("t1", "a1"), requeued("t1", 2)
    )
    assert void(board, costing("t1", "a1", 3.0))
    assert board.swarms[S].spent_usd == 0.0 and task(board, "t1").cost_usd == 0.0


def test_a_task_s_cost_sums_its_attempts() -> None:
    board = given(
        swarm_created(),
        registered("a1"),
        created("t1"),
        claimed("t1", "a1"),
        requeued("t1", 2),
        claimed("t1", "a1", attempt=2),
        costing("t1", "a1", 0.5, attempt=2),
    )
    assert task(board, "t1").cost_usd == 0.5
    board = when(board, created("t2"))
    board = when(board, claimed("t2", "a1"))
    board = when(board, costing("t2", "a1", 0.25))
    assert agent(board, "a1").spent_usd == 0.75


def test_a_task_s_tokens_sum_its_attempts_and_a_refused_result_adds_none() -> None:
    def used(tokens_in: int, tokens_out: int, cached: int = 0) -> ev.RunOutcome:
        usage = ev.Usage(
            input_tokens=tokens_in, output_tokens=tokens_out, cache_read_input_tokens=cached
        )
        return ev.RunOutcome(usage=usage, is_error=True)

    first = ev.TaskFailed(
        swarm=S, id="t1", time=6.0, agent="a1", attempt=1, reason="x", outcome=used(100, 10, 7)
    )
    board = given(swarm_created(), registered("a1"), created("t1"), claimed("t1", "a1"))
    board = when(board, ev.TaskRequeued(swarm=S, id="t1", time=6.0, attempt=2, reason="lost"))
    assert void(board, first)  # attempt 1 was requeued: its late result is refused
    board = when(board, claimed("t1", "a1", attempt=2))
    board = when(board, completed("t1", "a1", attempt=2, outcome=used(50, 5)))
    assert task(board, "t1").usage == ev.Usage(input_tokens=50, output_tokens=5)
    board = given(swarm_created(), registered("a1"), created("t1"), claimed("t1", "a1"), first)
    assert task(board, "t1").usage == ev.Usage(
        input_tokens=100, output_tokens=10, cache_read_input_tokens=7
    )


def test_a_swarm_budget_is_set_changed_and_removed_by_updates() -> None:
    board = given(ev.SwarmCreated(swarm=S, id=S, time=1.0, name="Dev", budget_usd=5.0))
    assert board.swarms[S].budget_usd == 5.0
    board = when(board, ev.SwarmUpdated(swarm=S, id=S, time=2.0, name="Dev 2"))
    assert (board.swarms[S].name, board.swarms[S].budget_usd) == ("Dev 2", 5.0)
    board = when(board, ev.SwarmUpdated(swarm=S, id=S, time=3.0, budget_usd=None))
    assert board.swarms[S].budget_usd is None


def test_running_remembers_the_session_and_whose_sandbox_holds_it() -> None:
    board = given(swarm_created(), registered("a1"), created("t1"), claimed("t1", "a1"))
    board = when(
        board,
        ev.TaskRunning(swarm=S, id="t1", time=5.0, agent="a1", attempt=1, session_id="s-1"),
    )
    board = when(board, requeued("t1", 2))
    assert (task(board, "t1").session_id, task(board, "t1").session_agent) == ("s-1", "a1")
    assert task(board, "t1").agent is None


def test_claude_settings_of_a_task_are_kept_and_replaced_by_an_update() -> None:
    settings = ev.ClaudeTaskSettings(permission_mode="plan", allowed_tools=["Bash(make *)"])
    board = given(swarm_created(), created("t1", claude=settings))
    assert task(board, "t1").claude == settings
    new = ev.ClaudeTaskSettings(max_budget_usd=2.0)
    board = when(board, ev.TaskUpdated(swarm=S, id="t1", time=3.0, claude=new))
    assert task(board, "t1").claude == new
