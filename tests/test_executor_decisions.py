"""The executor's pure decisions, given a folded log: no NATS, no processes."""

from __future__ import annotations

from schemas import events as ev
from schemas.board import Board
from schemas.fold import fold
from services.executor import decisions
from services.executor.config import AgentConfig
from services.executor.runtimes import Verdict

S = "s1"
QA = AgentConfig("qa-agent", "QA Agent", "qa", ("qa", "test"))


def log(*events: ev.Event) -> Board:
    return fold(list(enumerate(events, start=1)))


def swarm() -> ev.Event:
    return ev.SwarmCreated(swarm=S, id=S, time=1.0, name="s1")


def agent(agent_id: str = "qa-agent", executor: str | None = "ex1", at: float = 2.0) -> ev.Event:
    return ev.AgentRegistered(
        swarm=S,
        id=agent_id,
        time=at,
        name="QA Agent",
        role="qa",
        skills=["qa", "test"],
        executor=executor,
    )


def created(task: str = "t1") -> ev.Event:
    return ev.TaskCreated(swarm=S, id=task, time=3.0, title="Check", runtime="shell")


def claimed(task: str = "t1", agent_id: str = "qa-agent", attempt: int = 1) -> ev.Event:
    return ev.TaskClaimed(swarm=S, id=task, time=4.0, agent=agent_id, attempt=attempt)


def running(task: str = "t1", agent_id: str = "qa-agent", attempt: int = 1) -> ev.Event:
    return ev.TaskRunning(swarm=S, id=task, time=5.0, agent=agent_id, attempt=attempt)


# --- claims to run ----------------------------------------------------------------------------


def test_the_claim_in_the_fold_is_what_the_agent_runs_at_the_claims_sequence() -> None:
    board = log(swarm(), agent(), created(), claimed())
    assert decisions.claim_to_run(board, S, "qa-agent") == decisions.Claim(
        swarm=S, task="t1", agent="qa-agent", attempt=1, seq=4
    )


def test_an_idle_agent_or_an_agent_not_in_the_swarm_has_nothing_to_run() -> None:
    board = log(swarm(), agent(), agent("ui-agent"), created(), claimed())
    assert decisions.claim_to_run(board, S, "ui-agent") is None
    assert decisions.claim_to_run(board, S, "nobody") is None
    assert decisions.claim_to_run(board, "elsewhere", "qa-agent") is None


def test_a_cancelled_or_requeued_claim_is_not_run() -> None:
    cancel = ev.TaskCancelled(swarm=S, id="t1", time=5)
    assert (
        decisions.claim_to_run(log(swarm(), agent(), created(), claimed(), cancel), S, "qa-agent")
        is None
    )
    requeue = ev.TaskRequeued(swarm=S, id="t1", time=5, attempt=2, reason="lost")
    assert (
        decisions.claim_to_run(log(swarm(), agent(), created(), claimed(), requeue), S, "qa-agent")
        is None
    )


def test_a_claim_already_running_is_not_run_twice() -> None:
    board = log(swarm(), agent(), created(), claimed(), running())
    assert decisions.claim_to_run(board, S, "qa-agent") is None


def test_the_next_attempts_claim_is_run_at_its_own_sequence() -> None:
    board = log(
        swarm(),
        agent(),
        created(),
        claimed(),
        ev.TaskRequeued(swarm=S, id="t1", time=5, attempt=2, reason="lost"),
        claimed(attempt=2),
    )
    assert decisions.claim_to_run(board, S, "qa-agent") == decisions.Claim(
        swarm=S, task="t1", agent="qa-agent", attempt=2, seq=6
    )


def test_a_claim_of_a_lost_agent_waits_until_the_agent_is_back() -> None:
    lost = ev.AgentLost(swarm=S, id="qa-agent", time=5)
    board = log(swarm(), agent(), created(), claimed(), lost)
    assert decisions.claim_to_run(board, S, "qa-agent") is None
    back = fold([(6, agent(at=6.0))], board)
    assert decisions.claim_to_run(back, S, "qa-agent") == decisions.Claim(
        swarm=S, task="t1", agent="qa-agent", attempt=1, seq=4
    )


def test_an_attempt_is_current_only_while_it_runs_on_its_agent() -> None:
    board = log(swarm(), agent(), created(), claimed(), running())
    assert decisions.is_current(board, S, "t1", 1, "qa-agent")
    assert not decisions.is_current(board, S, "t1", 2, "qa-agent")
    assert not decisions.is_current(board, S, "t1", 1, "ui-agent")
    cancelled = fold([(7, ev.TaskCancelled(swarm=S, id="t1", time=6))], board)
    assert not decisions.is_current(cancelled, S, "t1", 1, "qa-agent")


# --- restarts ---------------------------------------------------------------------------------


def test_a_task_left_running_on_this_executor_goes_back_with_the_next_attempt() -> None:
    board = log(swarm(), agent(), created(), claimed(), running())
    [append] = decisions.orphaned_runs(board, S, "ex1", now=10.0)
    assert isinstance(append.event, ev.TaskRequeued)
    assert append.event.attempt == 2 and append.event.retry_at == 10.0
    assert "ex1 restarted" in append.event.reason
    assert append.expected_seq == 5


def test_tasks_of_other_executors_and_claimed_tasks_are_not_requeued_at_start() -> None:
    board = log(
        swarm(),
        agent(),
        agent("other-agent", executor="ex2"),
        created(),
        created("t2"),
        claimed(),
        claimed("t2", "other-agent"),
        running("t2", "other-agent"),
    )
    assert decisions.orphaned_runs(board, S, "ex1") == []


# --- agents -----------------------------------------------------------------------------------


def test_a_new_agent_is_registered_with_this_executor() -> None:
    board = log(swarm())
    append = decisions.registration(board, S, QA, "ex1", "local", now=5.0)
    assert append is not None and append.expected_seq == 0
    event = append.event
    assert isinstance(event, ev.AgentRegistered)
    assert (event.name, event.role, event.skills) == ("QA Agent", "qa", ["qa", "test"])
    assert event.executor == "ex1" and event.backend == "local"


def test_an_agent_registered_just_so_is_not_registered_again() -> None:
    board = log(swarm(), agent())
    assert decisions.registration(board, S, QA, "ex1", "local", now=5.0) is None


def test_an_agent_that_changed_was_lost_or_moved_is_registered_again() -> None:
    changed = AgentConfig("qa-agent", "QA Agent", "qa", ("qa",))
    assert decisions.registration(log(swarm(), agent()), S, changed, "ex1", "local", 5) is not None
    lost = log(swarm(), agent(), ev.AgentLost(swarm=S, id="qa-agent", time=3))
    again = decisions.registration(lost, S, QA, "ex1", "local", 5)
    assert again is not None and again.expected_seq == 3
    moved = log(swarm(), agent(executor="ex2"))
    assert decisions.registration(moved, S, QA, "ex1", "local", 5) is not None


def test_a_lost_agent_hosted_here_comes_back() -> None:
    board = log(swarm(), agent(), ev.AgentLost(swarm=S, id="qa-agent", time=3))
    back = decisions.comeback(board, S, "qa-agent", "ex1", now=4)
    assert back is not None and isinstance(back.event, ev.AgentRegistered)
    assert back.event.executor == "ex1" and back.expected_seq == 3
    assert decisions.comeback(log(swarm(), agent()), S, "qa-agent", "ex1", now=4) is None


def test_agents_nobody_hosts_are_taken_up_oldest_first_while_there_is_room() -> None:
    board = log(
        swarm(),
        agent("late-agent", executor=None, at=9.0),
        agent("early-agent", executor=None, at=3.0),
        agent("hosted-agent", executor="ex2", at=1.0),
    )
    ups = decisions.take_ups(board, S, "ex1", free=1, now=10)
    assert [(u.event.id, u.expected_seq) for u in ups] == [("early-agent", 3)]
    assert isinstance(ups[0].event, ev.AgentUpdated) and ups[0].event.executor == "ex1"
    assert len(decisions.take_ups(board, S, "ex1", free=5, now=10)) == 2
    assert decisions.take_ups(board, S, "ex1", free=0, now=10) == []


def test_agents_hosted_here_are_found_after_a_restart() -> None:
    board = log(swarm(), agent("b-agent", at=5), agent("a-agent", at=4), agent("x", "ex2"))
    assert [a.id for a in decisions.hosted_here(board, S, "ex1")] == ["a-agent", "b-agent"]


def test_an_executor_folds_on_demand_only_while_it_hosts_a_small_share_of_the_swarm() -> None:
    def board(here: int, elsewhere: int) -> Board:
        agents = [agent(f"h{i}", "ex1") for i in range(here)]
        agents += [agent(f"o{i}", f"ex{2 + i % 3}") for i in range(elsewhere)]
        return log(swarm(), *agents)

    assert not decisions.folds_on_demand(log(swarm()), S, "ex1")  # no agents yet: live
    assert not decisions.folds_on_demand(log(), S, "ex1")  # no swarm yet
    assert not decisions.folds_on_demand(board(4, 4), S, "ex1")  # 2 executors x 4 agents
    assert not decisions.folds_on_demand(board(1, 3), S, "ex1")  # a quarter: live
    assert decisions.folds_on_demand(board(1, 4), S, "ex1")  # a fifth
    assert decisions.folds_on_demand(board(62, 938), S, "ex1")  # 1 of 16 executors
    assert decisions.folds_on_demand(board(0, 5), S, "ex1")  # hosting none (yet)


# --- an attempt's start, session and end --------------------------------------------------------

SESSION = "5a386642-da6c-427f-8703-01e365db8290"
ATTEMPT = decisions.Attempt(S, "t1", 2, "qa-agent", "corr-1")


def claude_task(*events: ev.Event) -> Board:
    made = ev.TaskCreated(swarm=S, id="t1", time=3.0, title="Write", runtime="claude")
    return log(swarm(), agent(), made, claimed(), *events)


def session_running(agent_id: str = "qa-agent", attempt: int = 1) -> ev.Event:
    return ev.TaskRunning(
        swarm=S, id="t1", time=5.0, agent=agent_id, attempt=attempt, session_id=SESSION
    )


def requeued(attempt: int = 2) -> ev.Event:
    return ev.TaskRequeued(swarm=S, id="t1", time=6.0, attempt=attempt, reason="agent lost")


def test_an_attempt_after_a_lost_one_on_the_same_agent_resumes_its_session() -> None:
    board = claude_task(session_running(), requeued(), claimed(attempt=2))
    task = board.task(S, "t1")
    assert task is not None
    assert decisions.session_to_resume(task, "qa-agent") == SESSION


def test_another_agent_or_a_first_attempt_starts_a_new_session() -> None:
    board = claude_task(session_running(), requeued())
    task = board.task(S, "t1")
    assert task is not None
    assert decisions.session_to_resume(task, "other-agent") is None
    first = claude_task(session_running()).task(S, "t1")
    assert first is not None and decisions.session_to_resume(first, "qa-agent") is None


def test_a_session_id_that_is_not_one_is_never_resumed() -> None:
    odd = ev.TaskRunning(
        swarm=S, id="t1", time=5.0, agent="qa-agent", attempt=1, session_id="x; rm -rf /"
    )
    task = claude_task(odd, requeued()).task(S, "t1")
    assert task is not None and decisions.session_to_resume(task, "qa-agent") is None


def test_running_carries_the_session_and_whether_it_resumes() -> None:
    event = decisions.running(ATTEMPT, "ex1", 9.0, session_id=SESSION, resumed=True)
    assert (event.id, event.agent, event.attempt, event.executor) == ("t1", "qa-agent", 2, "ex1")
    assert (event.session_id, event.resumed, event.correlation_id) == (SESSION, True, "corr-1")
    assert event.actor == "executor:ex1"


def test_a_completed_verdict_becomes_completed_with_its_outcome() -> None:
    outcome = ev.RunOutcome(result="done", cost_usd=0.5)
    event = decisions.result(ATTEMPT, Verdict(True, outcome), "ex1", 9.0)
    assert isinstance(event, ev.TaskCompleted)
    assert (event.attempt, event.agent, event.outcome, event.correlation_id) == (
        2,
        "qa-agent",
        outcome,
        "corr-1",
    )


def test_a_failed_verdict_becomes_failed_with_its_reason_and_denied_tools() -> None:
    denied = [ev.DeniedTool(tool="Write", input="/etc/x")]
    outcome = ev.RunOutcome(is_error=True, denied_tools=denied)
    verdict = Verdict(False, outcome, "claude was denied 1 tool call: Write (/etc/x)")
    event = decisions.result(ATTEMPT, verdict, "ex1", 9.0)
    assert isinstance(event, ev.TaskFailed)
    assert event.reason == verdict.reason and event.outcome is not None
    assert event.outcome.denied_tools == denied


def test_an_attempt_stopped_for_a_reason_not_its_own_goes_back_with_the_next_attempt() -> None:
    event = decisions.result(
        ATTEMPT, Verdict(True, ev.RunOutcome()), "ex1", 9.0, given_back="executor stopped"
    )
    assert isinstance(event, ev.TaskRequeued)
    assert (event.attempt, event.reason, event.retry_at) == (3, "executor stopped", 9.0)


def test_a_run_in_a_project_names_its_branch_and_base_and_its_result_the_work_left() -> None:
    event = decisions.running(ATTEMPT, "ex1", 9.0, branch="swarm/t1", base="abc123")
    assert (event.branch, event.base) == ("swarm/t1", "abc123")
    work = ev.Work(project="p1", branch="swarm/t1", base="abc123", head="def456", land=True)
    done = decisions.result(ATTEMPT, Verdict(True, ev.RunOutcome()), "ex1", 9.0, work=work)
    assert isinstance(done, ev.TaskCompleted) and done.work == work


def test_an_attempt_that_could_not_start_fails_with_the_reason_and_no_outcome() -> None:
    event = decisions.not_started(ATTEMPT, "ex1", 9.0, "could not start the task's branch: x")
    assert (event.reason, event.attempt, event.agent, event.outcome) == (
        "could not start the task's branch: x",
        2,
        "qa-agent",
        None,
    )
