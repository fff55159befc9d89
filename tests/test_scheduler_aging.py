"""Starvation-free priorities: aging in the pure matching (``services/scheduler/matching.py``).

Given/when/then on ``match``, through ``decide``, then properties: under any stream of
higher-priority arrivals, a task is matched once its age reaches its bound (``rank × aging``)
as soon as an agent that can take it is free — only older tasks can still go before it."""

from __future__ import annotations

import itertools

from hypothesis import given as hypothesis_given
from hypothesis import settings
from hypothesis import strategies as st

from schemas import events as ev
from schemas.board import AgentView, TaskView
from schemas.events import Priority
from schemas.fold import fold
from services.scheduler.decide import Config, decide
from services.scheduler.matching import claim_order, effective_rank, match, starving_after

S = "dev"
AGING = 10.0


def task(task_id: str, priority: Priority, created_at: float, seq: int = 0) -> TaskView:
    return TaskView(
        swarm=S,
        id=task_id,
        title=task_id,
        prompt=task_id,
        priority=priority,
        created_at=created_at,
        created_seq=seq,
    )


AGENT = AgentView(swarm=S, id="a1", name="a1", executor="x")


def test_without_aging_a_stream_of_higher_priority_tasks_goes_first_for_ever() -> None:
    old_low = task("low", "low", 0.0)
    young_high = task("high", "high", 999.0)
    assert match([old_low, young_high], [AGENT], now=1000.0, aging=0) == [(young_high, AGENT)]


def test_each_aging_period_waited_raises_a_task_one_level_up_to_critical() -> None:
    low = task("low", "low", 0.0)
    assert [effective_rank(low, now, AGING) for now in (0, 9.9, 10, 25, 30, 500)] == [
        *[3, 3, 2, 1, 0, 0]
    ]
    assert effective_rank(low, -5.0, AGING) == 3  # a clock behind its creation: no aging


def test_a_low_task_older_than_its_bound_goes_before_a_younger_critical_one() -> None:
    low = task("low", "low", 0.0)
    critical = task("crit", "critical", 29.0)
    assert starving_after(low, AGING) == 30.0
    assert match([critical, low], [AGENT], now=29.9, aging=AGING) == [(critical, AGENT)]
    assert match([critical, low], [AGENT], now=30.0, aging=AGING) == [(low, AGENT)]


def test_decide_ages_priorities_with_the_configured_period() -> None:
    board = fold(
        list(
            enumerate(
                [
                    ev.SwarmCreated(swarm=S, id=S, time=0.0, name=S),
                    ev.AgentRegistered(swarm=S, id="a1", time=0.0, name="a1", executor="x"),
                    ev.TaskCreated(swarm=S, id="low", time=0.0, title="low", priority="low"),
                    ev.TaskCreated(swarm=S, id="high", time=50.0, title="h", priority="high"),
                ],
                start=1,
            )
        )
    )

    def claimed(aging: float) -> str:
        config = Config(lease=1000.0, priority_aging=aging)
        [decision] = decide(board, 60.0, config, {"dev.a1": 60.0})
        return decision.event.id

    assert claimed(0) == "high"
    assert claimed(100.0) == "high"  # 60 s: not yet one level
    assert claimed(20.0) == "low"  # 60 s = 3 levels: ranks critical, and is older


# --- properties -------------------------------------------------------------------------------

priorities = st.sampled_from(["critical", "high", "medium", "low"])
# per step: how many tasks arrive (each of a priority above the watched task's), and whether an
# agent is free to take one
steps = st.lists(st.tuples(st.integers(0, 4), st.booleans()), min_size=1, max_size=80)
backlog = st.lists(priorities, max_size=6)


def simulate(
    watched: Priority, older: list[str], stream: list[tuple[int, bool]], step: float
) -> tuple[float | None, list[tuple[float, TaskView]]]:
    """The watched task (created at 0, after ``older`` tasks created before it) waits while
    ``stream`` happens, one step every ``step`` seconds: higher-priority tasks arrive, an agent
    is free (or not) and takes what ``match`` gives it. Returns when the watched task was
    matched (None: not yet) and every (time, task) matched."""
    rank = ["critical", "high", "medium", "low"].index(watched)
    higher: list[Priority] = ["critical", "high", "medium", "low"][: max(rank, 1)]  # type: ignore[assignment]
    waiting = [task(f"old{i}", p, -1.0 - i, i) for i, p in enumerate(older)]  # type: ignore[arg-type]
    me = task("me", watched, 0.0, 100)
    waiting.append(me)
    served: list[tuple[float, TaskView]] = []
    seq = 1000
    for index, (arrivals, free) in enumerate(stream):
        now = (index + 1) * step
        for n in range(arrivals):
            seq += 1
            waiting.append(task(f"t{seq}", higher[n % len(higher)], now, seq))
        if not free:
            continue
        pairs = match(waiting, [AGENT], now, AGING)
        if pairs:
            chosen = pairs[0][0]
            waiting.remove(chosen)
            served.append((now, chosen))
            if chosen is me:
                return now, served
    return None, served


@settings(max_examples=300, deadline=None)
@hypothesis_given(priorities, backlog, steps, st.sampled_from([1.0, 3.0, 7.0]))
def test_property_past_its_bound_only_older_tasks_go_before_a_task(
    watched: Priority, older: list[str], stream: list[tuple[int, bool]], step: float
) -> None:
    bound = starving_after(task("me", watched, 0.0), AGING)
    assert bound is not None
    _, served = simulate(watched, older, stream, step)
    for now, chosen in served:
        if now >= bound:
            assert chosen.id == "me" or chosen.created_at < 0.0, (now, chosen.id)


@settings(max_examples=300, deadline=None)
@hypothesis_given(priorities, steps, st.sampled_from([1.0, 3.0, 7.0]))
def test_property_with_no_older_task_a_task_is_matched_once_past_its_bound_and_an_agent_is_free(
    watched: Priority, stream: list[tuple[int, bool]], step: float
) -> None:
    bound = starving_after(task("me", watched, 0.0), AGING)
    assert bound is not None
    matched_at, _ = simulate(watched, [], stream, step)
    free_past_bound = [(i + 1) * step for i, (_, free) in enumerate(stream) if free]
    free_past_bound = [t for t in free_past_bound if t >= bound]
    if free_past_bound:
        assert matched_at is not None and matched_at <= free_past_bound[0]


@settings(max_examples=100, deadline=None)
@hypothesis_given(st.lists(st.tuples(priorities, st.floats(-100, 100)), max_size=30))
def test_property_aging_never_lowers_a_task_and_ties_go_to_the_oldest(
    tasks: list[tuple[str, float]],
) -> None:
    views = [task(f"t{i}", p, at, i) for i, (p, at) in enumerate(tasks)]  # type: ignore[arg-type]
    for view in views:
        assert effective_rank(view, 200.0, AGING) <= effective_rank(view, 100.0, AGING)
    ordered = sorted(views, key=lambda v: claim_order(v, 150.0, AGING))
    for first, second in itertools.pairwise(ordered):
        if effective_rank(first, 150.0, AGING) == effective_rank(second, 150.0, AGING):
            assert (first.created_at, first.created_seq) <= (second.created_at, second.created_seq)
