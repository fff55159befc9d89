"""Work landing, as pure decisions (given/when/then, no NATS, no git): how the fold records a
task's branch and landing, when a dependent may start (``schemas/landing.py``), what the
scheduler decides about stuck work (resolve tasks, cascades, held follow-ups), what the executor
plans around a task (``services/executor/workplan.py``) and the events it records."""

from __future__ import annotations

from typing import Any

import pytest

from schemas import events as ev
from schemas.board import Board
from schemas.fold import fold
from schemas.landing import landing
from services.executor import workplan
from services.executor.git import GitFailed
from services.scheduler.decide import Config, OpenTasks, decide, may_need_decision

S = "dev"
T0 = 100.0
NOW = 105.0
BASE, HEAD, TIP = "b" * 40, "h" * 40, "c" * 40


# --- a small vocabulary ------------------------------------------------------------------------


def project(**settings: Any) -> list[ev.Event]:
    """A swarm with agents a1, a2 and an initialised project p1 both checked out on main."""
    return [
        ev.SwarmCreated(swarm=S, id=S, time=T0, name=S),
        ev.AgentRegistered(swarm=S, id="a1", time=T0, name="Agent One", executor="x"),
        ev.AgentRegistered(swarm=S, id="a2", time=T0, name="a2", executor="x"),
        ev.ProjectCreated(
            swarm=S, id="p1", time=T0, name="app", git_url="/srv/app.git", **settings
        ),
        ev.ProjectAttached(swarm=S, id="p1", time=T0),
        ev.ProjectInitRequested(swarm=S, id="p1", time=T0),
        *[
            ev.ProjectSynced(
                swarm=S, id="p1", time=T0, agent=a, round=1, commit=BASE, branch="main"
            )
            for a in ("a1", "a2")
        ],
    ]


def task(task_id: str, **fields: Any) -> ev.TaskCreated:
    return ev.TaskCreated(swarm=S, id=task_id, time=T0, title=task_id, **fields)


def ran(task_id: str, agent: str = "a1", *, land: bool = True, attempt: int = 1) -> list[ev.Event]:
    """Claimed, run on its branch, completed with its work pushed (a landing follows)."""
    work = ev.Work(project="p1", branch=f"swarm/{task_id}", base=BASE, head=HEAD, onto="main",
                   pushed=True, land=land)  # fmt: skip
    return [
        ev.TaskClaimed(swarm=S, id=task_id, time=T0, agent=agent, attempt=attempt),
        ev.TaskRunning(
            swarm=S,
            id=task_id,
            time=T0,
            agent=agent,
            attempt=attempt,
            branch=f"swarm/{task_id}",
            base=BASE,
        ),
        ev.TaskCompleted(swarm=S, id=task_id, time=T0, agent=agent, attempt=attempt, work=work),
    ]


def landed(task_id: str, commit: str = "l" * 40) -> ev.TaskIntegrated:
    return ev.TaskIntegrated(swarm=S, id=task_id, time=T0 + 1, attempt=1, project="p1",
                             onto="main", landed=commit)  # fmt: skip


def stuck(
    task_id: str, problem: ev.LandingProblem = "conflict", resolve: bool = True
) -> ev.TaskIntegrationFailed:
    return ev.TaskIntegrationFailed(
        swarm=S, id=task_id, time=T0 + 1, attempt=1, project="p1", onto="main",
        problem=problem, tip=TIP, files=["README"] if problem == "conflict" else [],
        output="FAILED test_x" if problem == "verify" else "", resolve=resolve,
    )  # fmt: skip


def given(*events: ev.Event | list[ev.Event]) -> Board:
    flat: list[ev.Event] = []
    for item in events:
        flat += item if isinstance(item, list) else [item]
    return fold(list(enumerate(flat, start=1)))


def then(board: Board) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for d in decide(board, NOW, Config(lease=10.0)):
        e = d.event
        if isinstance(e, ev.TaskFailed):
            out.append((e.type, e.id, e.reason))
        elif isinstance(e, ev.TaskCreated):
            out.append((e.type, e.id, e.resolves or e.parent or ""))
        elif isinstance(e, ev.TaskClaimed):
            out.append((e.type, e.id, e.agent))
        else:
            out.append((e.type, e.id))
    return out


# --- the fold ------------------------------------------------------------------------------------


def test_a_run_on_its_branch_records_base_head_and_where_each_checkout_is() -> None:
    board = given(project(), task("t1"), ran("t1"))
    work = board.task(S, "t1").integration
    assert work is not None
    assert (work.branch, work.base, work.head, work.state, work.onto) == (
        "swarm/t1", BASE, HEAD, "landing", "main",
    )  # fmt: skip
    checkout = board.swarms[S].projects["p1"].checkouts["a1"]
    assert (checkout.branch, checkout.commit, checkout.task) == ("swarm/t1", HEAD, "t1")


def test_landing_records_the_commit_the_tip_and_the_order_of_tasks_landed() -> None:
    board = given(project(), task("t1"), task("t2"), ran("t1"), ran("t2", "a2"),
                  landed("t2", "2" * 40), landed("t1", "1" * 40))  # fmt: skip
    view = board.swarms[S].projects["p1"]
    assert [(e.task, e.commit) for e in view.landed] == [("t2", "2" * 40), ("t1", "1" * 40)]
    assert (view.tip, view.landed_count) == ("1" * 40, 2)
    assert board.task(S, "t1").integration.state == "landed"
    assert view.checkouts["a2"].commit == "2" * 40


def test_a_second_landing_record_for_the_same_attempt_is_void() -> None:
    board = given(project(), task("t1"), ran("t1"), landed("t1"))
    ignored = board.ignored
    board = given(project(), task("t1"), ran("t1"), landed("t1"), landed("t1", "9" * 40))
    assert board.ignored == ignored + 1
    assert board.swarms[S].projects["p1"].landed_count == 1


def test_work_that_cannot_land_fails_the_task_when_nothing_will_resolve_it() -> None:
    board = given(project(), task("t1"), ran("t1"), stuck("t1", "verify", resolve=False))
    found = board.task(S, "t1")
    assert found is not None and found.status == "failed"
    assert found.reason == "its work did not land on main: verify failed: FAILED test_x"
    assert found.integration is not None and found.integration.state == "verify_failed"


def test_a_resolve_task_that_lands_lands_the_stuck_tasks_work_too() -> None:
    board = given(
        project(), task("t1"), ran("t1"), stuck("t1"),
        task("t1-resolve-1", resolves="t1"), ran("t1-resolve-1", "a2"),
        landed("t1-resolve-1", "r" * 40),
    )  # fmt: skip
    work = board.task(S, "t1").integration
    assert work is not None
    assert (work.state, work.landed, work.resolver, work.resolved_by) == (
        "landed", "r" * 40, "t1-resolve-1", "t1-resolve-1",
    )  # fmt: skip
    assert board.swarms[S].projects["p1"].landed[-1].resolves == "t1"


def test_the_remotes_default_branch_is_the_target_until_one_is_named() -> None:
    board = given(project())
    view = board.swarms[S].projects["p1"]
    assert (view.branch, view.default_branch, view.target, view.tip) == (None, "main", "main", BASE)
    renamed = ev.ProjectUpdated(swarm=S, id="p1", time=T0, branch="develop")
    view = given(project(), renamed).swarms[S].projects["p1"]
    assert (view.target, view.round, view.request) == ("develop", 2, "init")
    assert {c.state for c in view.checkouts.values()} == {"pending"}


def test_an_update_that_moves_nothing_asks_no_checkout_to_follow() -> None:
    board = given(project(), ev.ProjectUpdated(swarm=S, id="p1", time=T0, verify="make test"))
    view = board.swarms[S].projects["p1"]
    assert (view.verify, view.round) == ("make test", 1)
    cleared = given(project(), ev.ProjectUpdated(swarm=S, id="p1", time=T0, verify="make"),
                    ev.ProjectUpdated(swarm=S, id="p1", time=T0, verify=""))  # fmt: skip
    assert cleared.swarms[S].projects["p1"].verify is None


def test_a_deleted_project_is_gone_and_detached() -> None:
    board = given(project(), ev.ProjectDeleted(swarm=S, id="p1", time=T0))
    assert board.swarms[S].projects == {} and board.swarms[S].project is None


# --- when a dependent may start ----------------------------------------------------------------


def test_a_dependent_waits_while_its_dependencys_work_is_landing() -> None:
    board = given(project(), task("t1"), task("t2", depends=["t1"]), ran("t1"))
    assert board.task(S, "t2").status == "blocked"
    assert ("task.unblocked", "t2") not in then(board)
    board = given(project(), task("t1"), task("t2", depends=["t1"]), ran("t1"), landed("t1"))
    assert then(board) == [("task.unblocked", "t2")]


def test_a_task_created_after_its_dependency_completed_waits_for_the_landing_too() -> None:
    board = given(project(), task("t1"), ran("t1"), task("t2", depends=["t1"]))
    assert board.task(S, "t2").status == "blocked"
    claim = ev.TaskClaimed(swarm=S, id="t2", time=T0, agent="a1", attempt=1)
    board = given(project(), task("t1"), ran("t1"), task("t2", depends=["t1"]), claim)
    assert board.task(S, "t2").status == "blocked"  # a claim before the landing is void


def test_a_dependency_with_nothing_to_land_or_only_a_branch_does_not_hold_anyone_up() -> None:
    board = given(project(mode="branch"), task("t1"), task("t2", depends=["t1"]),
                  ran("t1", land=False))  # fmt: skip
    assert board.task(S, "t1").integration.state == "pushed"
    assert then(board) == [("task.unblocked", "t2")]


def test_a_dependent_fails_saying_why_its_dependencys_work_never_landed() -> None:
    board = given(project(), task("t1"), task("t2", depends=["t1"]), ran("t1"),
                  stuck("t1", resolve=False))  # fmt: skip
    assert then(board) == [("task.failed", "t2", "dependency t1 failed")]
    resolving = given(
        project(), task("t1"), task("t2", depends=["t1"]), ran("t1"), stuck("t1"),
        task("t1-resolve-1", resolves="t1"),
        ev.TaskCancelled(swarm=S, id="t1-resolve-1", time=T0),
    )  # fmt: skip
    assert then(resolving) == [
        ("task.failed", "t2", "dependency t1 its resolve task t1-resolve-1: cancelled")
    ]


def test_a_dependent_waits_for_the_resolve_task_and_starts_once_it_landed() -> None:
    start: list[ev.Event | list[ev.Event]] = [
        project(), task("t1"), task("t2", depends=["t1"]), ran("t1"), stuck("t1"),
    ]  # fmt: skip
    assert landing(given(*start).swarms[S], given(*start).task(S, "t1")).state == "waiting"  # type: ignore[arg-type]
    resolved = given(*start, task("t1-resolve-1", resolves="t1"), ran("t1-resolve-1", "a2"),
                     landed("t1-resolve-1"))  # fmt: skip
    assert ("task.unblocked", "t2") in then(resolved)


# --- resolve tasks and follow-ups ----------------------------------------------------------------


def test_stuck_work_gets_one_resolve_task_with_the_conflict_in_its_prompt() -> None:
    board = given(project(), task("t1", prompt="Add the login form"), ran("t1"), stuck("t1"))
    decisions = decide(board, NOW, Config(lease=10.0))
    created = [d.event for d in decisions if isinstance(d.event, ev.TaskCreated)]
    assert len(created) == 1
    resolver = created[0]
    assert (resolver.id, resolver.resolves, resolver.parent, resolver.runtime) == (
        "t1-resolve-1", "t1", "t1", "claude",
    )  # fmt: skip
    assert "conflict in README" in resolver.title
    assert "- README" in resolver.prompt and "Add the login form" in resolver.prompt
    assert decisions[0].expected_seq == 0  # exactly once, however often it is decided
    board = given(project(), task("t1"), ran("t1"), stuck("t1"), resolver)
    assert board.task(S, "t1").integration.resolver == "t1-resolve-1"
    assert not [d for d in decide(board, NOW, Config(lease=10.0)) if d.event.id == "t1-resolve-2"]


def test_a_tasks_own_conflict_trigger_is_its_resolve_task() -> None:
    script = ev.TaskSpec(title="regenerate the lock", runtime="shell", prompt="uv lock")
    trigger = ev.Trigger(on="conflict", task=script)
    board = given(project(), task("t1", triggers=[trigger]), ran("t1"), stuck("t1"))
    created = [d.event for d in decide(board, NOW, Config(lease=10.0))]
    assert [(e.id, e.title, e.runtime, e.prompt) for e in created] == [  # type: ignore[attr-defined]
        ("t1-resolve-1", "regenerate the lock", "shell", "uv lock")
    ]


def test_a_red_verify_resolve_task_quotes_the_command_and_its_output() -> None:
    board = given(project(verify="pytest -q"), task("t1"), ran("t1"), stuck("t1", "verify"))
    created = [d.event for d in decide(board, NOW, Config(lease=10.0))]
    assert "`pytest -q` failed" in created[0].prompt  # type: ignore[attr-defined]
    assert "FAILED test_x" in created[0].prompt  # type: ignore[attr-defined]


def test_completed_follow_ups_wait_until_the_work_landed() -> None:
    follow = ev.Trigger(on="completed", task=ev.TaskSpec(title="deploy"))
    board = given(project(), task("t1", triggers=[follow]), ran("t1"))
    assert then(board) == []
    board = given(project(), task("t1", triggers=[follow]), ran("t1"), landed("t1"))
    assert then(board) == [("task.created", "t1-completed-0", "t1")]


def test_stuck_work_stays_open_for_decisions_until_its_resolver_is_written() -> None:
    board = given(project(), task("t1"), ran("t1"), stuck("t1"))
    assert may_need_decision(board.task(S, "t1"))  # type: ignore[arg-type]
    tracked = OpenTasks.of_board(board)
    assert "t1" in tracked.swarms[S]


# --- what the executor plans ----------------------------------------------------------------------


def test_a_task_in_an_initialised_project_gets_its_branch_and_the_agents_identity() -> None:
    board = given(project(strategy="merge", verify="make check"), task("t1"))
    plan = workplan.plan(board, S, board.task(S, "t1"), "a1")  # type: ignore[arg-type]
    assert plan is not None
    assert (plan.branch, plan.onto, plan.mode, plan.strategy, plan.verify) == (
        "swarm/t1", "main", "integrate", "merge", "make check",
    )  # fmt: skip
    assert plan.identity == ("Agent One", "a1@swarm.local")
    assert plan.message == "t1\n\nSwarm-Task: t1\n"


@pytest.mark.parametrize(
    "events",
    [
        [ev.SwarmCreated(swarm=S, id=S, time=T0, name=S)],  # no project
        project(mode="off"),
        project()[:5],  # never initialised
    ],
    ids=["no-project", "mode-off", "not-initialised"],
)
def test_no_git_around_a_task_without_an_initialised_project_or_with_mode_off(
    events: list[ev.Event],
) -> None:
    board = given(events, task("t1"))
    assert workplan.plan(board, S, board.task(S, "t1"), "a1") is None  # type: ignore[arg-type]


def test_a_task_cannot_start_in_a_project_its_agent_could_not_check_out() -> None:
    failed = ev.ProjectSyncFailed(swarm=S, id="p1", time=T0, agent="a1", round=1,
                                  error="git clone failed: not found")  # fmt: skip
    board = given(project(), failed, task("t1"))
    with pytest.raises(GitFailed, match="no working checkout of project p1: git clone failed"):
        workplan.plan(board, S, board.task(S, "t1"), "a1")  # type: ignore[arg-type]


def test_a_resolve_task_plans_to_start_from_the_stuck_work() -> None:
    board = given(project(), task("t1"), ran("t1"), stuck("t1"),
                  task("t1-resolve-1", resolves="t1"))  # fmt: skip
    plan = workplan.plan(board, S, board.task(S, "t1-resolve-1"), "a2")  # type: ignore[arg-type]
    assert plan is not None and plan.resolving is not None
    assert (plan.resolving.task, plan.resolving.head, plan.resolving.files) == (
        "t1", HEAD, ("README",),
    )  # fmt: skip
    assert "Swarm-Resolves: t1" in plan.message


def test_landings_left_undone_are_found_for_the_agents_hosted_here() -> None:
    board = given(project(), task("t1"), task("t2"), task("t3"), ran("t1"), ran("t2", "a2"),
                  ran("t3"), landed("t3"))  # fmt: skip
    assert [t.id for t in workplan.landings_due(board, S, ["a1"])] == ["t1"]
    plan = workplan.landing_plan(board, S, board.task(S, "t1"))  # type: ignore[arg-type]
    assert plan is not None and (plan.branch, plan.onto) == ("swarm/t1", "main")


def test_the_landing_event_has_one_message_id_per_attempt_and_asks_for_a_resolve_task() -> None:
    board = given(project(on_conflict="resolve"), task("t1"))
    plan = workplan.plan(board, S, board.task(S, "t1"), "a1")  # type: ignore[arg-type]
    assert plan is not None
    ok = workplan.landing_event(plan, workplan.Landed("l" * 40, 2, 0.5), "executor:x")
    again = workplan.landing_event(plan, workplan.Landed("l" * 40, 1, 0.1, already=True), "x")
    assert isinstance(ok, ev.TaskIntegrated) and ok.event_id == again.event_id
    conflict = workplan.Stuck("conflict", 1, 0.2, tip=TIP, files=("a.py",))
    failed = workplan.landing_event(plan, conflict, "executor:x")
    assert isinstance(failed, ev.TaskIntegrationFailed) and failed.resolve
    error = workplan.landing_event(plan, workplan.Stuck("error", 3, 1.0, output="no"), "x")
    assert isinstance(error, ev.TaskIntegrationFailed) and not error.resolve
    refusing = given(project(on_conflict="fail"), task("t1"))
    plan = workplan.plan(refusing, S, refusing.task(S, "t1"), "a1")  # type: ignore[arg-type]
    assert plan is not None
    assert not workplan.landing_event(plan, conflict, "x").resolve
