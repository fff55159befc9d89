"""A task's whole life through the real processes: nats-server, gateway, scheduler(s) and
executors started as ``python -m services.<name>`` (``tests/processes.py``), driven over HTTP.

One cluster (NATS, gateway, scheduler) is shared by the tests that kill nothing of it, each in a
swarm of its own with its own executors; the tests that kill the scheduler or NATS start their
own. Every wait is a condition polled with a deadline.
"""

from __future__ import annotations

import stat
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from processes import FAKE_CLAUDE, Cluster

from services.bus.connection import NatsOptions
from services.bus.service import Bus

TERMINAL = {"task.completed", "task.failed", "task.cancelled"}
CANARY = "sk-ant-canary-" + uuid.uuid4().hex  # the executor's "API key": must never come out


def new_swarm(cluster: Cluster, prefix: str) -> str:
    swarm = f"{prefix}-{uuid.uuid4().hex[:8]}"
    cluster.api.ok("POST", "/swarms", {"id": swarm, "name": prefix})
    return swarm


def types(task: dict) -> list[str]:
    return [event["type"] for event in task["events"]]


def seq_of(task: dict, kind: str, attempt: int | None = None) -> int:
    found = [
        e["seq"]
        for e in task["events"]
        if e["type"] == kind and (attempt is None or e.get("attempt") == attempt)
    ]
    assert len(found) == 1, f"{task['id']}: {kind} (attempt {attempt}) in {types(task)}"
    return found[0]


def claims_per_attempt(task: dict) -> Counter:
    return Counter(e["attempt"] for e in task["events"] if e["type"] == "task.claimed")


def close_cleanly(cluster: Cluster) -> None:
    left = cluster.close()
    assert left == [], f"processes left behind: {left}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """NATS, a gateway and a scheduler, shared by this module's tests."""
    shared = Cluster(tmp_path_factory.mktemp("e2e-shared")).start_nats()
    processes = [shared.gateway(), shared.scheduler("main")]
    try:
        shared.wait_ready(*processes, timeout=60)
        yield shared
    finally:
        close_cleanly(shared)


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A cluster of the test's own, for killing what the others share."""
    cluster = Cluster(tmp_path / "cluster").start_nats()
    try:
        yield cluster
    finally:
        close_cleanly(cluster)


# --- a DAG across agents with different skills ------------------------------------------------


def test_dag_of_shell_tasks_runs_in_dependency_order_on_matching_agents(cluster: Cluster) -> None:
    swarm = new_swarm(cluster, "dag")
    ui = cluster.executor("ex-ui", swarm, ["ui-agent:frontend:frontend,ui"])
    api = cluster.executor(
        "ex-api", swarm, ["api-agent:backend:backend,api", "qa-agent:qa:qa,test"]
    )
    cluster.wait_ready(ui, api)
    skills = {
        "ui-agent": {"frontend", "ui"},
        "api-agent": {"backend", "api"},
        "qa-agent": {"qa", "test"},
    }
    cluster.wait_agents(swarm, {"ui-agent": "ex-ui", "api-agent": "ex-api", "qa-agent": "ex-api"})
    # t1 and t2 hold until every task exists, so t3 and t4 are created blocked
    gate = cluster.root / f"{swarm}.gate"
    hold = f"while [ ! -e {gate} ]; do sleep 0.02; done\n"
    specs = {
        "t1": {"tags": ["ui"], "prompt": hold + "echo built the form"},
        "t2": {"tags": ["api"], "prompt": hold + "echo built the endpoint"},
        "t3": {"tags": ["test"], "depends": ["t1", "t2"], "prompt": "echo tested both"},
        "t4": {"depends": ["t3"], "prompt": "echo shipped"},
    }
    for task_id, spec in specs.items():
        body = {"id": task_id, "title": f"step {task_id}", "runtime": "shell", **spec}
        created = cluster.api.ok("POST", f"/swarms/{swarm}/tasks", body)
        if spec.get("depends"):
            assert created["status"] == "blocked"
    gate.touch()

    tasks = {t: cluster.wait_task(swarm, t, {"completed", "failed"}) for t in specs}

    for task_id, task in tasks.items():
        expected = ["task.created", "task.claimed", "task.running", "task.completed"]
        if specs[task_id].get("depends"):
            expected.insert(1, "task.unblocked")
        assert types(task) == expected, task_id
        correlations = {e.get("correlation_id") for e in task["events"]}
        assert len(correlations) == 1 and None not in correlations, (task_id, correlations)
        assert task["status"] == "completed" and task["attempt"] == 1
        tags = set(specs[task_id].get("tags", []))
        assert not tags or tags & skills[task["agent"]], (task_id, task["agent"])
        for dep in specs[task_id].get("depends", []):
            done = tasks[dep]
            assert seq_of(task, "task.running") > seq_of(done, "task.completed"), (task_id, dep)
            assert seq_of(task, "task.unblocked") > seq_of(done, "task.completed"), (task_id, dep)
            assert task["started_at"] >= done["finished_at"], (task_id, dep)
    assert tasks["t1"]["agent"] == "ui-agent"
    assert tasks["t2"]["agent"] == "api-agent"
    assert tasks["t3"]["agent"] == "qa-agent"
    assert "built the form" in tasks["t1"]["result"]
    output = cluster.api.ok("GET", f"/swarms/{swarm}/tasks/t4/output")
    assert output["complete"] and "shipped" in output["output"]
    assert not [e for e in cluster.api.events(swarm) if e["type"] == "agent.lost"]


# --- the claude runtime against the stand-in --------------------------------------------------


def leaky_claude(directory: Path) -> Path:
    """The stand-in, behind a wrapper that prints the API key it was given to stderr (which the
    executor shows as output): the executor must mask it."""
    wrapper = directory / "claude"
    wrapper.write_text(
        "#!/bin/sh\n"
        'echo "stand-in was given key=${ANTHROPIC_API_KEY:-none}" >&2\n'
        f'exec {sys.executable} {FAKE_CLAUDE} "$@"\n'
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return wrapper


async def everything_in_nats(url: str) -> list[bytes]:
    """Every message of every stream (events, logs, outputs, KV buckets), headers and data."""
    bus = await Bus.connect(NatsOptions.from_env(url), name="e2e-scan")
    found = []
    try:
        for info in await bus.js.streams_info():
            assert info.config.name is not None
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                try:
                    msg = await bus.js.get_msg(info.config.name, seq)
                except Exception:  # deleted or purged
                    continue
                found.append((msg.data or b"") + repr(msg.headers).encode())
    finally:
        await bus.close()
    return found


async def test_claude_task_records_result_cost_and_session_and_not_logged_in_fails(
    cluster: Cluster,
) -> None:
    swarm = new_swarm(cluster, "claude")
    keyed = cluster.executor(
        "ex-keyed",
        swarm,
        ["writer-agent:writer:write"],
        {
            "ANTHROPIC_API_KEY": CANARY,
            "FAKE_CLAUDE_MODE": "success",
            "SWARM_CLAUDE_BIN": str(leaky_claude(cluster.root)),
        },
    )
    keyless = cluster.executor(
        "ex-keyless", swarm, ["reviewer-agent:reviewer:review"], {"FAKE_CLAUDE_MODE": "auto"}
    )
    cluster.wait_ready(keyed, keyless)
    cluster.wait_agents(swarm, {"writer-agent": "ex-keyed", "reviewer-agent": "ex-keyless"})

    tasks = f"/swarms/{swarm}/tasks"
    written = cluster.api.ok("POST", tasks, {"title": "Write the docs", "tags": "write"})
    shell = cluster.api.ok(
        "POST",
        tasks,
        {
            "title": "Peek at the key",
            "tags": "write",
            "runtime": "shell",
            "prompt": 'echo "shell sees key=${ANTHROPIC_API_KEY:-none}"',
        },
    )
    review = cluster.api.ok("POST", tasks, {"title": "Review the docs", "tags": "review"})

    done = cluster.wait_task(swarm, written["id"], {"completed", "failed"})
    assert types(done) == ["task.created", "task.claimed", "task.running", "task.completed"]
    assert done["status"] == "completed", done["reason"]
    outcome = done["outcome"]
    assert done["result"] == outcome["result"] == f"Done: Task {done['id']}: Write the docs"
    assert outcome["cost_usd"] == pytest.approx(0.0123)
    assert outcome["turns"] == 2 and outcome["is_error"] is False
    assert outcome["usage"]["input_tokens"] == 1200
    assert len(outcome["session_id"]) == 36  # the stand-in's uuid, from its result line
    output = cluster.api.ok("GET", f"{tasks}/{done['id']}/output")
    assert "stand-in was given key=***" in output["output"]  # it had the key; it got masked

    peeked = cluster.wait_task(swarm, shell["id"], {"completed", "failed"})
    assert "shell sees key=none" in peeked["result"]  # credentials go to claude only

    failed = cluster.wait_task(swarm, review["id"], {"completed", "failed"})
    assert types(failed) == ["task.created", "task.claimed", "task.running", "task.failed"]
    assert failed["status"] == "failed" and failed["agent"] == "reviewer-agent"
    assert "Not logged in" in failed["reason"] and "Not logged in" in failed["result"]
    assert "ANTHROPIC_API_KEY" in failed["reason"]  # says what to do
    assert failed["outcome"]["is_error"] is True

    # the key came out nowhere: not in the log, nor any stream, any answer, any service log
    for task in (done, peeked, failed):
        cluster.api.call("GET", f"{tasks}/{task['id']}/logs")
        cluster.api.call("GET", f"{tasks}/{task['id']}/output")
    cluster.api.call("GET", f"/swarms/{swarm}/status")
    cluster.api.call("GET", f"/swarms/{swarm}/agents")
    cluster.api.call("GET", tasks)
    assert len(cluster.api.events(swarm)) > 10
    leaked = [msg for msg in await everything_in_nats(cluster.nats.url) if CANARY.encode() in msg]
    assert leaked == []
    assert not [text for text in cluster.api.seen if CANARY in text]
    assert CANARY not in cluster.logs()


# --- kill -9 of an executor mid-task ----------------------------------------------------------


def test_task_of_a_killed_executor_completes_elsewhere_as_attempt_two(cluster: Cluster) -> None:
    swarm = new_swarm(cluster, "kill-executor")
    first = cluster.executor("ex-a", swarm, ["build-a:builder:build"])
    second = cluster.executor("ex-b", swarm, ["build-b:builder:build"])
    by_id = {"ex-a": first, "ex-b": second}
    cluster.wait_ready(first, second)
    cluster.wait_agents(swarm, {"build-a": "ex-a", "build-b": "ex-b"})
    task = cluster.api.ok(
        "POST",
        f"/swarms/{swarm}/tasks",
        {"title": "Build", "tags": "build", "runtime": "shell", "prompt": "echo go; sleep 2"},
    )

    running = cluster.wait_task(swarm, task["id"], {"running"}, timeout=15)
    host = running["events"][-1]["executor"]
    by_id[host].kill()
    survivor = "ex-b" if host == "ex-a" else "ex-a"

    done = cluster.wait_task(swarm, task["id"], {"completed", "failed", "cancelled"}, timeout=30)
    assert done["status"] == "completed" and done["attempt"] == 2
    runs = {e["attempt"]: e["executor"] for e in done["events"] if e["type"] == "task.running"}
    assert runs == {1: host, 2: survivor}
    assert sum(e["type"] in TERMINAL for e in done["events"]) == 1
    assert claims_per_attempt(done) == {1: 1, 2: 1}
    assert seq_of(done, "task.requeued") < seq_of(done, "task.claimed", attempt=2)
    agents = {a["id"]: a for a in cluster.api.ok("GET", f"/swarms/{swarm}/agents")}
    lost = "build-a" if host == "ex-a" else "build-b"
    assert agents[lost]["status"] == "lost"


# --- kill -9 of the scheduler with a standby --------------------------------------------------


def test_standby_scheduler_takes_over_and_no_attempt_is_claimed_twice(own_cluster: Cluster) -> None:
    cluster = own_cluster
    swarm = f"standby-{uuid.uuid4().hex[:8]}"
    started = [cluster.gateway(), cluster.scheduler("sched-a"), cluster.scheduler("sched-b")]
    agents = ["one:worker:work", "two:worker:work", "three:worker:work"]
    executor = cluster.executor("ex-1", swarm, agents)
    cluster.wait_ready(*started, executor, timeout=60)
    cluster.wait_agents(swarm, {"one": "ex-1", "two": "ex-1", "three": "ex-1"})
    tasks = f"/swarms/{swarm}/tasks"

    def create(title: str) -> str:
        return cluster.api.ok("POST", tasks, {"title": title, "runtime": "instant"})["id"]

    probe = cluster.wait_task(swarm, create("probe"), {"completed"})
    leader = next(e["actor"] for e in probe["events"] if e["type"] == "task.claimed")
    standby = {"scheduler:sched-a": "scheduler:sched-b", "scheduler:sched-b": "scheduler:sched-a"}
    assert leader in standby
    burst = [create(f"before the kill {i}") for i in range(6)]
    next(p for p in started if p.name == f"scheduler-{leader.split(':')[1]}").kill()
    after = [create(f"after the kill {i}") for i in range(6)]

    finished = {
        t: cluster.wait_task(swarm, t, {"completed", "failed", "cancelled"}, timeout=30)
        for t in [probe["id"], *burst, *after]
    }
    for task_id, task in finished.items():
        assert task["status"] == "completed", (task_id, types(task))
        assert all(count == 1 for count in claims_per_attempt(task).values()), types(task)
        assert sum(e["type"] in TERMINAL for e in task["events"]) == 1, types(task)
    for task_id in after:
        claims = [e for e in finished[task_id]["events"] if e["type"] == "task.claimed"]
        assert [e["actor"] for e in claims] == [standby[leader]] * len(claims)


# --- the gateway's answers, through its process -----------------------------------------------


def test_a_post_retried_with_one_idempotency_key_creates_one_task(cluster: Cluster) -> None:
    swarm = new_swarm(cluster, "idempotent")
    body = {"title": "Exactly once", "runtime": "shell", "prompt": "true"}
    headers = {"Idempotency-Key": "create-exactly-once"}
    first_status, first = cluster.api.call("POST", f"/swarms/{swarm}/tasks", body, headers=headers)
    again_status, again = cluster.api.call("POST", f"/swarms/{swarm}/tasks", body, headers=headers)
    other_status, other = cluster.api.call(
        "POST", f"/swarms/{swarm}/tasks", body, headers={"Idempotency-Key": "another-request"}
    )

    assert (first_status, again_status, other_status) == (201, 200, 201)
    assert again["id"] == first["id"] != other["id"]
    listed = cluster.api.ok("GET", f"/swarms/{swarm}/tasks")
    assert sorted(t["id"] for t in listed) == sorted([first["id"], other["id"]])
    created = [e for e in cluster.api.events(swarm) if e["type"] == "task.created"]
    assert len(created) == 2


def test_a_dependency_cycle_is_refused_and_changes_nothing(cluster: Cluster) -> None:
    swarm = new_swarm(cluster, "cycle")
    tasks = f"/swarms/{swarm}/tasks"
    cluster.api.ok("POST", tasks, {"id": "t1", "title": "first", "tags": "nobody"})
    cluster.api.ok("POST", tasks, {"id": "t2", "title": "second", "depends": ["t1"]})

    status, answer = cluster.api.call("PUT", f"{tasks}/t1", {"depends": ["t2"]})

    assert status == 400
    assert answer["error"]["field"] == "depends"
    assert "cycle" in answer["error"]["message"] and "t2" in answer["error"]["message"]
    assert cluster.api.task(swarm, "t1")["depends"] == []
    assert types(cluster.api.task(swarm, "t1")) == ["task.created"]
    status, answer = cluster.api.call("POST", tasks, {"title": "third", "depends": ["t9"]})
    assert (status, answer["error"]["field"]) == (400, "depends")


def test_a_bad_body_gets_400_naming_the_field_and_creates_nothing(cluster: Cluster) -> None:
    swarm = new_swarm(cluster, "bad-body")
    tasks = f"/swarms/{swarm}/tasks"
    cases = [
        ({"title": "Fix", "priority": "urgent"}, None, "priority"),
        ({"priority": "high"}, None, "title"),
        ({"title": "Fix", "runtime": "python"}, None, "runtime"),
        ({"title": "Fix", "timeout": -1}, None, "timeout"),
        ({"title": "Fix", "colour": "red"}, None, "colour"),
        (None, b"{not json", "body"),
    ]
    for body, raw, field in cases:
        status, answer = cluster.api.call("POST", tasks, body, raw=raw)
        assert (status, answer["error"]["code"], answer["error"]["field"]) == (
            400,
            "invalid",
            field,
        ), (body, raw, answer)
    assert cluster.api.ok("GET", tasks) == []


def test_writes_answer_503_while_nats_is_down_and_succeed_once_it_is_back(
    own_cluster: Cluster,
) -> None:
    cluster = own_cluster
    cluster.wait_ready(cluster.gateway())
    swarm = new_swarm(cluster, "outage")
    tasks = f"/swarms/{swarm}/tasks"
    cluster.api.ok("POST", tasks, {"title": "before the outage"})

    cluster.nats.kill()
    body = {"title": "during the outage"}
    headers = {"Idempotency-Key": "written-across-the-outage"}
    status, answer = cluster.api.call("POST", tasks, body, headers=headers)
    assert (status, answer["error"]["code"]) == (503, "unavailable"), answer
    assert cluster.api.call("GET", tasks)[0] == 503
    assert (cluster.health() or {}).get("nats") == "unreachable"

    def written() -> dict[str, Any] | None:
        status, answer = cluster.api.call("POST", tasks, body, headers=headers)
        return answer if status in (200, 201) else None

    cluster.nats.start()
    created = cluster.until(written, timeout=30, what="a write to succeed after NATS restarted")
    listed = cluster.api.ok("GET", tasks)
    assert [t["title"] for t in listed] == ["before the outage", "during the outage"]
    assert listed[1]["id"] == created["id"]
