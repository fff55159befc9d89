"""Attempts count what happened: each way an attempt ends uses its own budget
(``schemas/attempts.py``), decided by the scheduler's pure ``decide`` and the executor's pure
``result``. Given/when/then on folded logs, then properties over any sequence of endings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hypothesis import given as hypothesis_given
from hypothesis import settings
from hypothesis import strategies as st

from schemas import events as ev
from schemas.attempts import Budgets, Kind, spent
from schemas.board import Board, TaskView
from schemas.fold import apply, fold
from services.executor import decisions
from services.executor.runtimes import Verdict
from services.scheduler.decide import Config, claim_budgets, decide

S = "dev"
T0 = 100.0


def given(*events: ev.Event) -> Board:
    return fold(list(enumerate(events, start=1)))


def base() -> list[ev.Event]:
    return [
        ev.SwarmCreated(swarm=S, id=S, time=T0, name=S),
        ev.AgentRegistered(swarm=S, id="a1", time=T0, name="a1", executor="ex1"),
        ev.TaskCreated(swarm=S, id="t1", time=T0, title="t1", runtime="shell"),
    ]


def claimed(attempt: int = 1) -> ev.TaskClaimed:
    return ev.TaskClaimed(swarm=S, id="t1", time=T0, agent="a1", attempt=attempt)


def running(attempt: int = 1) -> ev.TaskRunning:
    return ev.TaskRunning(swarm=S, id="t1", time=T0, agent="a1", attempt=attempt)


def task_of(board: Board) -> TaskView:
    task = board.task(S, "t1")
    assert task is not None
    return task


def failed_run(board: Board, allowance: decisions.Allowance, now: float = T0) -> ev.Event:
    task = task_of(board)
    attempt = decisions.Attempt(S, "t1", task.attempt, "a1")
    verdict = Verdict(False, ev.RunOutcome(cost_usd=0.25), "exit 1")
    return decisions.result(attempt, verdict, "ex1", now, task=task, allowance=allowance)


# --- the executor: a failed run, with and without failures left --------------------------------


def test_a_failed_run_with_run_failures_left_goes_back_after_the_backoff_saying_so() -> None:
    board = given(*base(), claimed(), running())
    event = failed_run(board, decisions.Allowance(run_failures=2, retry_in=4.0))
    assert isinstance(event, ev.TaskRequeued)
    assert (event.attempt, event.cause, event.retry_at) == (2, "run_failed", T0 + 4.0)
    assert event.reason == "run 1 failed: exit 1; 1 of 2 run failures used"
    board = given(*base(), claimed(), running(), event)
    task = task_of(board)
    assert (task.status, task.runs_failed, task.cost_usd) == ("requeued", 1, 0.25)


def test_the_last_run_failure_allowed_fails_the_task_saying_which_budget() -> None:
    allowance = decisions.Allowance(run_failures=2, retry_in=4.0)
    first = failed_run(given(*base(), claimed(), running()), allowance)
    board = given(*base(), claimed(), running(), first, claimed(2), running(2))
    event = failed_run(board, allowance)
    assert isinstance(event, ev.TaskFailed)
    assert event.reason == "exit 1; 2 of 2 run failures used"
    assert event.attempt == 2


def test_with_a_budget_of_one_run_failure_a_failed_run_fails_as_it_always_did() -> None:
    event = failed_run(given(*base(), claimed(), running()), decisions.Allowance())
    assert isinstance(event, ev.TaskFailed) and event.reason == "exit 1"


def test_the_backoff_before_retrying_a_failed_run_doubles_per_run_failure() -> None:
    config = Config(max_run_failures=3, backoff=2.0)
    board = given(*base(), claimed(), running())
    assert claim_budgets(task_of(board), config).retry_in == 2.0
    first = failed_run(board, decisions.Allowance(run_failures=3, retry_in=2.0))
    board = given(*base(), claimed(), running(), first)
    assert claim_budgets(task_of(board), config).retry_in == 4.0


def test_a_claim_carries_the_budgets_to_the_executor_and_the_fold_keeps_them() -> None:
    config = Config(max_run_failures=3, max_run_losses=4, max_interruptions=9, backoff=2.0)
    [decision] = decide(given(*base()), T0 + 1, config, {"dev.a1": T0 + 1})
    assert isinstance(decision.event, ev.TaskClaimed)
    budgets = ev.AttemptBudgets(run_failures=3, run_losses=4, interruptions=9, retry_in=2.0)
    assert decision.event.budgets == budgets
    task = task_of(given(*base(), decision.event))
    assert decisions.Allowance.of(task) == decisions.Allowance(3, 4, 9, 2.0)
    assert decisions.Allowance.of(task_of(given(*base(), claimed()))) == decisions.Allowance()


def test_a_run_stopped_by_its_executor_is_an_interruption_and_a_lost_sandbox_a_run_loss() -> None:
    attempt = decisions.Attempt(S, "t1", 1, "a1")
    verdict = Verdict(False, ev.RunOutcome())
    task = task_of(given(*base(), claimed(), running()))
    allowance = decisions.Allowance(run_losses=3, interruptions=20)
    stopped = decisions.result(
        attempt, verdict, "ex1", T0, given_back="stopped", task=task, allowance=allowance
    )
    lost = decisions.result(
        *(attempt, verdict, "ex1", T0),
        given_back="sandbox lost",
        cause="run_lost",
        task=task,
        allowance=allowance,
    )
    assert isinstance(stopped, ev.TaskRequeued) and isinstance(lost, ev.TaskRequeued)
    assert (stopped.cause, lost.cause) == ("run_stopped", "run_lost")
    assert stopped.reason == "stopped; 1 of 20 interruptions used"
    assert lost.reason == "sandbox lost; 1 of 3 run losses used"
    unknown = decisions.result(attempt, verdict, "ex1", T0, given_back="gone", task=task)
    assert unknown.reason == "gone"  # an older scheduler's dispatch: the budget is not known
    assert task_of(given(*base(), claimed(), running(), stopped)).runs_stopped == 1
    assert task_of(given(*base(), claimed(), running(), lost)).runs_lost == 1


def test_a_run_orphaned_by_an_executor_restart_is_a_run_loss() -> None:
    board = given(*base(), claimed(), running())
    [append] = decisions.orphaned_runs(board, S, "ex1", now=T0)
    assert isinstance(append.event, ev.TaskRequeued) and append.event.cause == "run_lost"
    assert append.event.reason == "executor ex1 restarted while run 1 was running on a1"


# --- the scheduler: a requeued task whose budget its executor used up ----------------------------


def test_a_task_given_back_with_its_last_run_loss_fails_saying_which_budget() -> None:
    board = given(*base(), claimed(), running())
    [append] = decisions.orphaned_runs(board, S, "ex1", now=T0)
    board = given(*base(), claimed(), running(), append.event)
    [decision] = decide(board, T0 + 1, Config(max_run_losses=1), {"dev.a1": T0 + 1})
    assert isinstance(decision.event, ev.TaskFailed)
    assert decision.event.reason == (
        "executor ex1 restarted while run 1 was running on a1; 1 of 1 run losses used"
    )


# --- old logs ---------------------------------------------------------------------------------


def test_an_old_log_without_causes_counts_a_requeue_from_claimed_as_a_lost_claim() -> None:
    old = [
        ev.TaskRequeued(swarm=S, id="t1", time=T0, attempt=2, reason="agent a1 lost"),
        ev.TaskRequeued(swarm=S, id="t1", time=T0, attempt=3, reason="agent a1 lost"),
    ]
    board = given(*base(), claimed(), old[0], claimed(2), running(2), old[1])
    task = task_of(board)
    assert (task.claims_lost, task.runs_lost, task.runs, task.attempt) == (1, 1, 1, 3)


# --- properties: any sequence of endings ------------------------------------------------------

Ending = Literal["claim_lost", "run_lost", "run_stopped", "run_failed", "completed"]
KIND: dict[str, Kind] = {
    "claim_lost": "interruptions",
    "run_stopped": "interruptions",
    "run_lost": "run_losses",
    "run_failed": "run_failures",
}


@dataclass
class Life:
    """One task lived through ``endings`` (one per attempt), with the real fold, ``decide`` and
    the executor's ``result``: what happened at each step."""

    budgets: Budgets
    config: Config
    board: Board = field(default_factory=lambda: given(*base()))
    seq: int = 3
    now: float = T0
    attempts: list[int] = field(default_factory=list)  # the attempt each claim was for
    ended: list[str] = field(default_factory=list)  # the task's status after each ending
    reasons: list[str] = field(default_factory=list)

    def append(self, *events: ev.Event) -> None:
        for event in events:
            self.seq += 1
            apply(self.board, event, self.seq)

    def allowance(self) -> decisions.Allowance:
        """What the executor reads from the claim the scheduler wrote (folded on the task)."""
        return decisions.Allowance.of(task_of(self.board))

    def decide(self) -> list[ev.Event]:
        presence = {"dev.a1": self.now}
        return [d.event for d in decide(self.board, self.now, self.config, presence)]

    def claim(self) -> None:
        task = task_of(self.board)
        self.now = max(self.now, task.retry_at) + 1  # its backoff has passed
        decided = self.decide()
        assert [e.verb for e in decided] == ["claimed"], decided
        self.append(*decided)
        self.attempts.append(task_of(self.board).attempt)

    def end(self, ending: Ending) -> None:
        task = task_of(self.board)
        attempt = decisions.Attempt(S, "t1", task.attempt, "a1")
        if ending != "claim_lost":
            self.append(running(task.attempt))
        if ending in ("claim_lost", "run_lost"):
            self.now += 20  # past the lease: a1 is lost
            self.append(ev.AgentLost(swarm=S, id="a1", time=self.now))
            self.append(*self.decide())
            # the agent is back (its executor restarted)
            back = ev.AgentRegistered(swarm=S, id="a1", time=self.now, name="a1", executor="ex1")
            self.append(back)
        elif ending == "run_stopped":
            verdict, task = Verdict(False, ev.RunOutcome()), task_of(self.board)
            allowance = self.allowance()
            self.append(
                decisions.result(
                    *(attempt, verdict, "ex1", self.now),
                    given_back="stopped",
                    task=task,
                    allowance=allowance,
                )
            )
        elif ending == "run_failed":
            allowance = self.allowance()
            verdict = Verdict(False, ev.RunOutcome(), "exit 1")
            now, task = self.now, task_of(self.board)
            self.append(
                decisions.result(attempt, verdict, "ex1", now, task=task, allowance=allowance)
            )
        else:
            done = ev.TaskCompleted(
                swarm=S, id="t1", time=self.now, agent="a1", attempt=task.attempt
            )
            self.append(done)
        if task_of(self.board).status == "requeued":  # a given-back one may be spent
            self.append(*[e for e in self.decide() if isinstance(e, ev.TaskFailed)])
        self.ended.append(task_of(self.board).status)
        self.reasons.append(task_of(self.board).reason or "")


budgets = st.builds(
    Budgets,
    interruptions=st.integers(1, 6),
    run_losses=st.integers(1, 4),
    run_failures=st.integers(1, 4),
)
endings = st.lists(
    st.sampled_from(["claim_lost", "run_lost", "run_stopped", "run_failed", "completed"]),
    min_size=1,
    max_size=25,
)


def config_for(budgets: Budgets) -> Config:
    return Config(
        lease=10.0,
        max_interruptions=budgets.interruptions,
        max_run_losses=budgets.run_losses,
        max_run_failures=budgets.run_failures,
    )


def live(budget: Budgets, story: list[Ending]) -> tuple[Life, list[Ending]]:
    """Live ``story`` until the task finishes; returns the life and the endings it had."""
    life = Life(budget, config_for(budget))
    lived: list[Ending] = []
    for ending in story:
        life.claim()
        life.end(ending)
        lived.append(ending)
        if life.ended[-1] in ("completed", "failed"):
            break
    return life, lived


@settings(max_examples=150, deadline=None)
@hypothesis_given(budgets, endings)
def test_property_a_task_fails_exactly_when_one_budget_is_used_up(
    budget: Budgets, story: list[Ending]
) -> None:
    life, lived = live(budget, story)
    counts = {"interruptions": 0, "run_losses": 0, "run_failures": 0}
    for ending, status, reason in zip(lived, life.ended, life.reasons, strict=True):
        if ending == "completed":
            assert status == "completed"
            continue
        kind = KIND[ending]
        counts[kind] += 1
        allowed = budget.allowed(kind)
        assert (status == "failed") == (counts[kind] >= allowed), (ending, counts, status, reason)
        if status == "requeued" or allowed > 1:
            assert f"{counts[kind]} of {allowed} {kind.replace('_', ' ')} used" in reason
    task = task_of(life.board)
    assert (task.claims_lost + task.runs_stopped, task.runs_lost, task.runs_failed) == (
        counts["interruptions"],
        counts["run_losses"],
        counts["run_failures"],
    )
    if task.status == "requeued":
        assert spent(task, budget) is None


@settings(max_examples=100, deadline=None)
@hypothesis_given(st.integers(2, 30), st.integers(1, 29))
def test_property_claims_lost_before_their_run_never_fail_a_task_within_the_guard(
    guard: int, losses: int
) -> None:
    budget = Budgets(interruptions=guard, run_losses=1, run_failures=1)
    story: list[Ending] = ["claim_lost"] * min(losses, guard - 1)
    life, _ = live(budget, [*story, "completed"])
    assert life.ended[-1] == "completed"
    assert all(status == "requeued" for status in life.ended[:-1])


@settings(max_examples=100, deadline=None)
@hypothesis_given(budgets, endings)
def test_property_attempt_numbers_only_go_up_one_claim_at_a_time(
    budget: Budgets, story: list[Ending]
) -> None:
    life, _ = live(budget, story)
    assert life.attempts == list(range(1, len(life.attempts) + 1))
