"""Several swarms out of the box, with real processes: an agent registered through the API in a
new swarm is taken up by a running executor — by labels and room — and runs its task, with
nothing started by hand; the built-in agents stay in the default swarm; and every run finds
``swarm`` on its PATH with its agent's token."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from processes import Cluster

DEFAULT = "default"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two executors started as `swarm up` and compose start them: no agents configured, the
    default swarm ``default``; one of them has the label ``gpu``."""
    shared = Cluster(tmp_path_factory.mktemp("multi")).start_nats()
    processes = [
        shared.gateway(),
        shared.scheduler("main"),
        shared.spawn("chat"),
        shared.spawn(
            "executor-plain",
            ["--executor-id", "plain", "--data-dir", str(shared.root / "plain")],
            {"SWARM_DEFAULT_ID": DEFAULT, "SWARM_MAX_AGENTS": "5"},
        ),
        shared.spawn(
            "executor-gpu",
            ["--executor-id", "gpu", "--data-dir", str(shared.root / "gpu"), "--labels", "gpu"],
            {"SWARM_DEFAULT_ID": DEFAULT, "SWARM_MAX_AGENTS": "5"},
        ),
    ]
    try:
        shared.wait_ready(*processes, timeout=60)
        yield shared
    finally:
        left = shared.close()
        assert left == [], f"processes left behind: {left}"


def test_a_second_swarms_agent_is_taken_up_and_runs_its_task_with_nothing_started_by_hand(
    cluster: Cluster,
) -> None:
    api = cluster.api
    api.ok("POST", "/swarms", {"id": "second"})
    agent = api.ok("POST", "/swarms/second/agents", {"name": "Second Agent", "skills": "api"})
    assert agent["id"] == "second-agent"  # registered with no executor; one may take it up at once
    hosted = cluster.until(
        lambda: next((a for a in api.ok("GET", "/swarms/second/agents") if a["executor"]), None),
        what="an executor to take up second-agent",
    )
    assert hosted["id"] == "second-agent" and hosted["executor"] in ("plain", "gpu")

    script = 'echo "$SWARM_DEFAULT_ID/$SWARM_AGENT_ID"; swarm chat "done here"'
    task = api.ok(
        "POST",
        "/swarms/second/tasks",
        {"title": "hello", "tags": "api", "runtime": "shell", "prompt": script},
    )
    done = cluster.wait_task("second", task["id"], ["completed", "failed"], timeout=60)
    assert done["status"] == "completed", done
    assert done["result"].splitlines()[0] == "second/second-agent"
    chat = api.ok("GET", "/swarms/second/chat")["messages"]
    assert ("second-agent", "done here") in [(m["author"], m["text"]) for m in chat]

    # the built-in agents joined the default swarm only
    assert {a["id"] for a in api.ok("GET", "/swarms/second/agents")} == {"second-agent"}
    defaults = {a["id"] for a in api.ok("GET", f"/swarms/{DEFAULT}/agents")}
    assert defaults == {"frontend-agent", "backend-agent", "qa-agent"}


def test_an_agent_asking_for_a_label_goes_to_the_executor_that_has_it(cluster: Cluster) -> None:
    api = cluster.api
    api.ok("POST", "/swarms", {"id": "training"})
    api.ok("POST", "/swarms/training/agents", {"name": "Trainer", "labels": ["gpu"]})
    api.ok("POST", "/swarms/training/agents", {"name": "Arm Builder", "labels": "arm64"})
    trainer = cluster.until(
        lambda: next(
            (
                a
                for a in api.ok("GET", "/swarms/training/agents")
                if a["id"] == "trainer" and a["executor"]
            ),
            None,
        ),
        what="the gpu executor to take up the trainer",
    )
    assert trainer["executor"] == "gpu" and trainer["labels"] == ["gpu"]
    arm = next(a for a in api.ok("GET", "/swarms/training/agents") if a["id"] == "arm-builder")
    assert arm["executor"] is None  # no executor has arm64: it waits
