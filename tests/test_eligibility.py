"""Why a task waits with no agent able to take it: the words of the gateway's ``warnings`` and
``swarm status`` (pure, given a swarm)."""

from __future__ import annotations

from schemas.board import AgentView, SwarmView, TaskView
from schemas.eligibility import untakeable_warnings, why_untakeable


def swarm_with(*skills: list[str]) -> SwarmView:
    swarm = SwarmView(id="s", name="s")
    for index, held in enumerate(skills):
        agent = AgentView(swarm="s", id=f"a{index}", name=f"A{index}", skills=held)
        swarm.agents[agent.id] = agent
    return swarm


def add(swarm: SwarmView, task_id: str, *tags: str, status: str = "pending") -> TaskView:
    task = TaskView(swarm="s", id=task_id, title=task_id, prompt="", tags=list(tags))
    task.status = status  # type: ignore[assignment]
    task.created_seq = len(swarm.tasks) + 1
    swarm.tasks[task_id] = task
    return task


def test_a_task_whose_tags_no_agent_has_is_named_with_the_skills_there_are() -> None:
    swarm = swarm_with(["ui", "Frontend"], ["api"])
    design = add(swarm, "t1", "design")
    assert why_untakeable(swarm, design) == (
        "no agent of swarm s has a skill among task t1's tags (design); it waits until one is "
        "registered (agents' skills: api, frontend, ui)"
    )
    assert why_untakeable(swarm, add(swarm, "t2", "UI ")) is None
    assert why_untakeable(swarm, add(swarm, "t3")) is None


def test_with_no_agent_at_all_every_waiting_task_is_named_and_finished_ones_are_not() -> None:
    swarm = swarm_with()
    add(swarm, "t1")
    add(swarm, "t2", "qa", status="failed")
    add(swarm, "t3", "qa", status="blocked")
    warnings = untakeable_warnings(swarm)
    assert warnings == [
        "no agent is registered in swarm s: task t1 waits until one is (POST /swarms/s/agents)",
        "no agent is registered in swarm s: task t3 waits until one is (POST /swarms/s/agents)",
    ]


def test_the_list_is_bounded_and_says_how_many_more() -> None:
    swarm = swarm_with(["ui"])
    for index in range(5):
        add(swarm, f"t{index}", "design")
    warnings = untakeable_warnings(swarm, limit=2)
    assert [w.split("task ")[1].split("'")[0] for w in warnings[:2]] == ["t0", "t1"]
    assert warnings[2:] == ["… and 3 more task(s) no agent can take"]
