"""Matching many free agents: grouped by skill list, the same pairs as asking each task's best
agent among those left, one task after another (pure, hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.board import AgentView, TaskView
from services.scheduler.matching import best_agent, claim_order, match, match_groups

S = "dev"
words = st.sampled_from(["ui", "UI", " api", "db", "docs"])


def agent(index: int, skills: list[str]) -> AgentView:
    return AgentView(swarm=S, id=f"a{index:03d}", name=f"a{index}", executor="x", skills=skills)


def task(index: int, tags: list[str], priority: str, created_at: float) -> TaskView:
    return TaskView(
        swarm=S,
        id=f"t{index}",
        title="t",
        prompt="t",
        tags=tags,
        priority=priority,  # type: ignore[arg-type]
        created_at=created_at,
        created_seq=index,
    )


def one_by_one(tasks: list[TaskView], agents: list[AgentView]) -> list[tuple[str, str]]:
    """The reference: tasks in claim order, each taking its best agent among those left."""
    left = list(agents)
    pairs = []
    for each in sorted(tasks, key=lambda t: claim_order(t, 0.0, 0.0)):
        chosen = best_agent(each, left)
        if chosen is not None:
            pairs.append((each.id, chosen.id))
            left.remove(chosen)
    return pairs


task_specs = st.lists(  # (tags, priority, age) of each task
    st.tuples(
        st.lists(words, max_size=2),
        st.sampled_from(["critical", "high", "medium", "low"]),
        st.floats(0, 100),
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.lists(words, max_size=3), max_size=30),
    task_specs,
    st.randoms(use_true_random=False),
)
def test_grouped_matching_pairs_each_task_with_its_best_agent_left(
    skill_lists: list[list[str]], specs: list[tuple[list[str], str, float]], shuffle
) -> None:
    agents = [agent(i, skills) for i, skills in enumerate(skill_lists)]
    shuffle.shuffle(agents)  # the order agents come in does not matter
    tasks = [task(i, *spec) for i, spec in enumerate(specs)]
    got = [(t.id, a.id) for t, a in match(tasks, agents)]
    assert got == one_by_one(tasks, agents)
    assert len({a for _, a in got}) == len(got)  # each agent at most once


def test_a_thousand_agents_with_one_skill_list_give_the_task_the_lowest_id() -> None:
    agents = [agent(i, ["bench"]) for i in reversed(range(1000))]
    pairs = match([task(1, ["bench"], "medium", 0.0), task(2, [], "high", 1.0)], agents)
    assert [(t.id, a.id) for t, a in pairs] == [("t2", "a000"), ("t1", "a001")]


def grouped(agents: list[AgentView]) -> dict[tuple[str, ...], list[str]]:
    """The agents as ``FreeAgents`` keeps them: per skill list, sorted ids."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for each in agents:
        groups.setdefault(tuple(each.skills), []).append(each.id)
    return {skills: sorted(ids) for skills, ids in groups.items()}


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.lists(words, max_size=3), st.booleans()), max_size=30),
    task_specs,
)
def test_matching_over_kept_groups_pairs_as_matching_over_the_usable_agents(
    agent_specs: list[tuple[list[str], bool]], specs: list[tuple[list[str], str, float]]
) -> None:
    """``match_groups`` asks about agents one at a time (some unusable: presence lapsed, an
    append in flight) and pairs as ``match`` over the usable ones."""
    agents = [agent(i, skills) for i, (skills, _) in enumerate(agent_specs)]
    usable = {a.id: a for a, (_, ok) in zip(agents, agent_specs, strict=True) if ok}
    tasks = sorted(
        (task(i, *spec) for i, spec in enumerate(specs)), key=lambda t: claim_order(t, 0.0, 0.0)
    )
    got = [(t.id, a.id) for t, a in match_groups(tasks, grouped(agents), usable.get)]
    assert got == [(t.id, a.id) for t, a in match(tasks, list(usable.values()))]


def test_matching_over_kept_groups_asks_only_about_the_agents_it_passes_over_or_takes() -> None:
    agents = [agent(i, ["bench"]) for i in range(1000)] + [agent(1000, ["docs"])]
    asked: list[str] = []
    unusable = {"a000", "a001"}  # e.g. presence lapsed

    def usable(agent_id: str) -> AgentView | None:
        asked.append(agent_id)
        return None if agent_id in unusable else agents[int(agent_id[1:])]

    pairs = match_groups([task(1, ["bench"], "medium", 0.0)], grouped(agents), usable)
    assert [(t.id, a.id) for t, a in pairs] == [("t1", "a002")]
    assert asked == ["a000", "a001", "a002"]  # not the other 998, nor the docs agent
