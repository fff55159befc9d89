"""Work landing on the shared project, through the real processes (nats-server, gateway,
scheduler, executors as ``python -m services.<name>``) and real git (a local bare repository as
the remote): a branch per task, integration by git's compare-and-swap, conflicts and red verify
as outcomes (a conflict resolved by the real Claude Code CLI, scripted by the Messages API
stand-in), a crash between pushing and landing, projects users can fix.

One cluster (NATS, gateway, scheduler, chat) is shared by the module; each test has a swarm, a
remote and executors of its own. Every wait is a condition polled with a deadline.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from claude_cli import cli_env, path_with
from fake_anthropic import Conversation, Reply, Script, Text, ToolUse, Turn, serving_in_thread
from git_support import Remote, git
from processes import Cluster

STUCK = {"conflict", "verify_failed", "failed"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    shared = Cluster(tmp_path_factory.mktemp("e2e-integration")).start_nats()
    with shared.serving(shared.gateway(), shared.scheduler("main"), shared.spawn("chat")):
        yield shared


def new_swarm(cluster: Cluster, prefix: str) -> str:
    swarm = f"{prefix}-{uuid.uuid4().hex[:8]}"
    cluster.api.ok("POST", "/swarms", {"id": swarm, "name": prefix})
    return swarm


def agents_on(cluster: Cluster, swarm: str, count: int, **env: str) -> list[str]:
    """``count`` agents, each on an executor of its own, hosted and idle."""
    agents = [f"agent-{i}" for i in range(1, count + 1)]
    executors = [cluster.executor(f"ex-{swarm}-{a}", swarm, [f"{a}:dev:dev"], env) for a in agents]
    cluster.wait_ready(*executors)
    cluster.wait_agents(swarm, {a: f"ex-{swarm}-{a}" for a in agents})
    return agents


def project_for(cluster: Cluster, swarm: str, url: str, **settings: Any) -> dict:
    """Create the swarm's project and init it; every agent must have its checkout."""
    body = {"name": "app", "gitUrl": url, "swarm": swarm, **settings}
    project = cluster.api.ok("POST", "/projects", body)
    done = cluster.api.ok("POST", f"/projects/{project['id']}/init?wait=1&timeout=60")
    assert done["complete"], done
    assert {c["state"] for c in done["checkouts"]} == {"synced"}, done["checkouts"]
    return done


@dataclass
class Setup:
    remote: Remote
    swarm: str
    project: dict[str, Any]


def set_up(
    cluster: Cluster,
    tmp_path: Path,
    prefix: str,
    agents: int,
    remote_branch: str = "main",
    env: Mapping[str, str] | None = None,
    **settings: Any,
) -> Setup:
    """A remote of its own, a new swarm with ``agents`` agents (an executor each, with ``env``),
    and its project created and initialised with ``settings``."""
    remote = Remote(tmp_path / "git", branch=remote_branch)
    swarm = new_swarm(cluster, prefix)
    agents_on(cluster, swarm, agents, **(env or {}))
    return Setup(remote, swarm, project_for(cluster, swarm, remote.url, **settings))


def add_task(cluster: Cluster, swarm: str, task_id: str, script: str, **spec: Any) -> dict:
    body = {"id": task_id, "title": f"step {task_id}", "runtime": "shell", "prompt": script}
    return cluster.api.ok("POST", f"/swarms/{swarm}/tasks", {**body, **spec})


def settled(cluster: Cluster, swarm: str, task_id: str, timeout: float = 60.0) -> dict:
    """Until the task has finished and its work is landed or stuck (or needs no landing)."""

    def done() -> dict | None:
        status, task = cluster.api.call("GET", f"/swarms/{swarm}/tasks/{task_id}")
        if status != 200 or task["status"] not in ("completed", "failed", "cancelled"):
            return None
        work = task.get("integration")
        if work is not None and work["state"] in ("working", "landing"):
            return None
        return task

    return cluster.until(done, timeout, f"task {task_id} finished and its work settled")


def events_of(task: dict, kind: str) -> list[dict]:
    return [e for e in task["events"] if e["type"] == kind]


def log_lines(cluster: Cluster) -> list[dict[str, Any]]:
    """Every process's structured log lines (JSON), in order per process."""
    found = []
    for line in cluster.logs().splitlines():
        with contextlib.suppress(ValueError):
            found.append(json.loads(line))
    return [entry for entry in found if isinstance(entry, dict)]


def gate(cluster: Cluster, swarm: str) -> tuple[Path, str]:
    """A file the test creates to let held tasks go on, and the shell line that waits for it."""
    path = cluster.root / f"{swarm}.gate"
    return path, f"while [ ! -e {path} ]; do sleep 0.02; done\n"


def let_go_together(cluster: Cluster, swarm: str, gate_path: Path, *tasks: str) -> None:
    """Once ``tasks`` (held at the gate) all run at once, let them go on."""
    cluster.until(
        lambda: all(cluster.api.task(swarm, t)["status"] == "running" for t in tasks),
        30,
        "all running at once",
    )
    gate_path.touch()


def same_lines_in_parallel(cluster: Cluster, swarm: str, **spec: Any) -> tuple[dict, dict]:
    """Tasks ``one`` and ``two`` (with ``spec``) write their own greeting over README's one line,
    both running at once; ``after`` depends on both. (The task whose work conflicted, the one
    whose work landed), once both settled."""
    path, hold = gate(cluster, swarm)
    for name in ("one", "two"):
        add_task(cluster, swarm, name, hold + f"printf 'hello from {name}\\n' > README", **spec)
    add_task(cluster, swarm, "after", "cat README", depends=["one", "two"])
    let_go_together(cluster, swarm, path, "one", "two")
    one, two = settled(cluster, swarm, "one"), settled(cluster, swarm, "two")
    states = sorted([one["integration"]["state"], two["integration"]["state"]])
    assert states == ["conflict", "landed"], (one["integration"], two["integration"])
    return (one, two) if one["integration"]["state"] == "conflict" else (two, one)


# --- a DAG: B starts with A's work ------------------------------------------------------------


def test_b_finds_the_file_a_left_uncommitted_and_both_land_in_order(
    cluster: Cluster, tmp_path: Path
) -> None:
    setup = set_up(cluster, tmp_path, "dag", 2)
    remote, swarm, project = setup.remote, setup.swarm, setup.project
    assert (project["target"], project["tip"]) == ("main", remote.seed)

    add_task(cluster, swarm, "a", "echo 'def handler(): return 42' > api.py")
    add_task(cluster, swarm, "b", "cat api.py; echo 'assert handler() == 42' > test_api.py",
             depends=["a"])  # fmt: skip
    a = settled(cluster, swarm, "a")
    b = settled(cluster, swarm, "b")

    assert a["status"] == b["status"] == "completed", (a["reason"], b["reason"])
    assert "def handler(): return 42" in b["result"]  # A's file was there when B started
    landed_a = a["integration"]["landed"]
    assert a["integration"]["state"] == "landed" and a["integration"]["base"] == remote.seed
    assert events_of(b, "task.running")[0]["base"] == landed_a  # cut from the tip with A's work
    assert events_of(b, "task.running")[0]["seq"] > events_of(a, "task.integrated")[0]["seq"]
    assert b["integration"]["state"] == "landed"
    assert remote.tip() == b["integration"]["landed"]
    assert sorted(remote.files()) == ["README", "api.py", "test_api.py"]
    assert len(remote.trailers("a")) == 1 and len(remote.trailers("b")) == 1
    agent = a["agent"]
    author = git("--git-dir", str(remote.bare), "log", "-1", "--format=%ae", landed_a)
    assert author == f"{agent}@swarm.local"

    shown = cluster.api.ok("GET", f"/swarms/{swarm}/project")
    assert [entry["task"] for entry in shown["landed"]] == ["a", "b"]
    assert shown["tip"] == remote.tip() and shown["landed_count"] == 2
    rows = {row["agent"]: row for row in shown["checkouts"]}
    assert rows[b["agent"]]["branch"] == "swarm/b"
    assert rows[b["agent"]]["commit"] == b["integration"]["landed"]
    board = cluster.api.ok(
        "GET", f"/swarms/{swarm}/board?at={events_of(a, 'task.integrated')[0]['seq']}"
    )
    assert [e["task"] for e in board["project"]["landed"]] == ["a"]  # replay shows it as it was


# --- parallel tasks ------------------------------------------------------------------------------


def test_two_parallel_tasks_on_different_files_both_land(cluster: Cluster, tmp_path: Path) -> None:
    setup = set_up(cluster, tmp_path, "parallel", 2)
    remote, swarm = setup.remote, setup.swarm
    path, hold = gate(cluster, swarm)
    add_task(cluster, swarm, "left", hold + "echo left > left.txt")
    add_task(cluster, swarm, "right", hold + "echo right > right.txt")
    let_go_together(cluster, swarm, path, "left", "right")
    left, right = settled(cluster, swarm, "left"), settled(cluster, swarm, "right")

    assert left["integration"]["state"] == right["integration"]["state"] == "landed"
    assert left["integration"]["base"] == right["integration"]["base"] == remote.seed
    assert sorted(remote.files()) == ["README", "left.txt", "right.txt"]
    assert {left["agent"], right["agent"]} == {"agent-1", "agent-2"}


def test_same_lines_in_parallel_one_lands_the_other_conflicts_and_its_resolve_task_lands(
    cluster: Cluster, tmp_path: Path
) -> None:
    setup = set_up(cluster, tmp_path, "conflict", 2)
    remote, swarm = setup.remote, setup.swarm
    resolver = {
        "on": "conflict",
        "task": {
            "title": "keep both greetings",
            "runtime": "shell",
            "prompt": "git diff --name-only --diff-filter=U\n"
            "printf 'hello from one and two\\n' > README",
        },
    }
    stuck, first = same_lines_in_parallel(cluster, swarm, triggers=[resolver])
    assert stuck["status"] == "completed"  # its run did the work; a resolve task lands it
    assert stuck["integration"]["files"] == ["README"]
    failed = events_of(stuck, "task.integration_failed")[0]
    assert failed["problem"] == "conflict" and failed["resolve"] is True
    assert remote.has(f"swarm/{stuck['id']}")  # the conflicting work is kept on its branch

    resolve_id = f"{stuck['id']}-resolve-1"
    resolve = settled(cluster, swarm, resolve_id)
    assert resolve["status"] == "completed", resolve["reason"]
    assert resolve["resolves"] == stuck["id"] and "README" in resolve["result"]
    assert resolve["integration"]["state"] == "landed"
    assert remote.show("README") == "hello from one and two"
    assert cluster.api.task(swarm, stuck["id"])["integration"]["resolved_by"] == resolve_id

    after = settled(cluster, swarm, "after")
    assert after["result"] == "hello from one and two\n"  # waited for the resolution to land
    assert (
        events_of(after, "task.running")[0]["seq"] > events_of(resolve, "task.integrated")[0]["seq"]
    )
    landed = [e["task"] for e in cluster.api.ok("GET", f"/swarms/{swarm}/project")["landed"]]
    assert landed == [first["id"], resolve_id]


# --- the real Claude CLI resolving a conflict --------------------------------------------------

RESOLVED = "hello from one and two\n"


def resolving(marker: str) -> Script:
    """What the model does with the resolve prompt: read the conflicted file, write it with both
    sides kept, stage it and say so; Swarm commits and lands it."""
    turns: list[Turn] = [
        Reply([Text("Reading the conflict first."), ToolUse("Read", {"file_path": "README"})]),
        Reply([ToolUse("Write", {"file_path": "README", "content": RESOLVED})]),
        Reply([ToolUse("Bash", {"command": "git add README", "description": "stage it"})]),
        Reply([Text("Kept both greetings in README.")]),
    ]
    return Script([Conversation(marker, turns)])


def test_the_real_claude_cli_resolves_a_conflict_and_the_resolution_lands(
    cluster: Cluster, tmp_path: Path, claude_bin: Path
) -> None:
    asked = "its work cannot land on main: conflict in README."  # only a resolve prompt says it
    with serving_in_thread(resolving(asked)) as api:
        env = {
            "PATH": path_with(claude_bin),
            "SWARM_CLAUDE_BIN": "claude",  # the default, found on PATH
            "SWARM_PASS_ENV": "",
            **cli_env(api.url, "sk-ant-test-resolve"),
        }
        setup = set_up(cluster, tmp_path, "claude-resolve", 2, env=env)  # on_conflict: resolve
        remote, swarm = setup.remote, setup.swarm
        stuck, first = same_lines_in_parallel(cluster, swarm)
        resolve_id = f"{stuck['id']}-resolve-1"
        resolve = settled(cluster, swarm, resolve_id, timeout=180)
        sent = api.conversation(asked)
        results = api.tool_results(asked)

    assert resolve["status"] == "completed", (resolve["reason"], cluster.tails())
    assert (resolve["runtime"], resolve["resolves"]) == ("claude", stuck["id"])
    assert resolve["result"] == "Kept both greetings in README."

    # the CLI was given the conflict, read it with its markers, and wrote both sides
    assert sent, "the stand-in got no request for the resolve prompt"
    prompt = sent[0].user_text
    assert f'Task {stuck["id"]} ("step {stuck["id"]}") finished, but {asked}' in prompt
    assert "These files have conflict markers" in prompt and "\n- README\n" in prompt
    assert f"printf 'hello from {stuck['id']}\\n' > README" in prompt  # the stuck task's own
    assert len(results) == 3 and not any(r.get("is_error") for r in results), results
    read = results[0]  # then the write and git add, both without error
    assert "<<<<<<<" in read["text"] and ">>>>>>>" in read["text"]
    assert "hello from one" in read["text"] and "hello from two" in read["text"]

    # the resolution landed: both changes merged, no marker anywhere, recorded in the log
    (integrated,) = events_of(resolve, "task.integrated")
    assert resolve["integration"]["state"] == "landed"
    assert remote.tip() == integrated["landed"] == resolve["integration"]["landed"]
    assert remote.show("README") == RESOLVED.strip()
    for name in remote.files():
        shown = remote.show(name)
        assert "<<<<<<<" not in shown and ">>>>>>>" not in shown, (name, shown)
    logged = [
        line
        for line in log_lines(cluster)
        if (line.get("swarm"), line.get("task")) == (swarm, resolve_id)
    ]
    assert [line["landed"] for line in logged if line["event"] == "task.integrated"] == [
        integrated["landed"]
    ]
    assert remote.trailers(resolve_id) == [integrated["landed"]]
    message = git("--git-dir", str(remote.bare), "log", "-1", "--format=%B", integrated["landed"])
    assert f"Swarm-Resolves: {stuck['id']}" in message
    assert cluster.api.task(swarm, stuck["id"])["integration"]["resolved_by"] == resolve_id
    landed = [e["task"] for e in cluster.api.ok("GET", f"/swarms/{swarm}/project")["landed"]]
    assert landed == [first["id"], resolve_id]

    after = settled(cluster, swarm, "after")
    assert after["result"] == RESOLVED
    assert events_of(after, "task.running")[0]["seq"] > integrated["seq"]

    said = [m["text"] for m in cluster.api.ok("GET", f"/swarms/{swarm}/chat")["messages"]]
    assert (
        f"⚠ {stuck['agent']} could not land {stuck['id']} on main: conflict in README; "
        "a resolve task follows"
    ) in said
    assert (
        f"⬆ {resolve['agent']} landed {resolve_id} on main: {integrated['landed'][:12]}, "
        f"with {stuck['id']}'s work"
    ) in said


# --- verify --------------------------------------------------------------------------------------


def test_a_red_verify_keeps_the_branch_clean_and_fails_the_task_and_its_dependents(
    cluster: Cluster, tmp_path: Path
) -> None:
    verify = "echo checking; test ! -e broken"
    setup = set_up(cluster, tmp_path, "verify", 1, verify=verify, onConflict="fail")
    remote, swarm = setup.remote, setup.swarm
    add_task(cluster, swarm, "good", "echo fine > fine.txt")
    good = settled(cluster, swarm, "good")
    assert good["integration"]["state"] == "landed"
    tip = remote.tip()

    add_task(cluster, swarm, "bad", "touch broken")
    add_task(cluster, swarm, "next", "echo never", depends=["bad"])
    bad = settled(cluster, swarm, "bad")
    nxt = cluster.wait_task(swarm, "next", {"failed", "completed"})

    assert bad["status"] == "failed"
    assert bad["integration"]["state"] == "verify_failed"
    assert "checking" in bad["integration"]["output"]
    assert bad["reason"].startswith("its work did not land on main: verify failed")
    assert remote.tip() == tip and "broken" not in remote.files()  # the branch stayed clean
    assert remote.has("swarm/bad")
    assert nxt["status"] == "failed" and nxt["reason"] == "dependency bad failed"


# --- a crash between pushing and landing -------------------------------------------------------


HOOK = """#!/bin/sh
# the first push to {branch}: the ref is updated, then this push hangs until released
while read old new ref; do
  if [ "$ref" = "refs/heads/{branch}" ] && [ ! -e {marker} ]; then
    touch {marker}
    while [ ! -e {release} ]; do sleep 0.05; done
  fi
done
"""


@pytest.mark.parametrize(
    ("where", "comes_back"),
    [("verify", True), ("post-receive", True), ("verify", False)],
    ids=["in-verify", "after-the-remote-took-it", "never-comes-back"],
)
def test_an_executor_killed_between_push_and_landing_lands_the_work_exactly_once(
    cluster: Cluster, tmp_path: Path, where: str, comes_back: bool
) -> None:
    """Killed while the result is being verified (not on the branch yet), or after the remote
    took the push but before the landing was recorded: the restarted executor lands it once.
    One that never comes back: once its agent is lost, another executor lands it."""
    remote = Remote(tmp_path / "git")
    marker, release = tmp_path / "pushed", tmp_path / "release"
    swarm = new_swarm(cluster, "crash")
    settings: dict[str, Any] = {}
    if where == "verify":
        settings["verify"] = (
            f"if [ ! -e {marker} ]; then touch {marker}; "
            f"while [ ! -e {release} ]; do sleep 0.05; done; fi"
        )
    else:
        hook = remote.bare / "hooks" / "post-receive"
        hook.write_text(HOOK.format(branch="main", marker=marker, release=release))
        hook.chmod(0o755)
    executor = cluster.executor(f"ex-{swarm}", swarm, ["agent-1:dev:dev"])
    cluster.wait_ready(executor)
    cluster.wait_agents(swarm, {"agent-1": f"ex-{swarm}"})
    if not comes_back:
        other = cluster.executor(f"ex-{swarm}-other", swarm, ["agent-2:other:other"])
        cluster.wait_ready(other)
        cluster.wait_agents(swarm, {"agent-2": f"ex-{swarm}-other"})
    project_for(cluster, swarm, remote.url, **settings)

    add_task(cluster, swarm, "t1", "echo work > work.txt", tags=["dev"])
    cluster.until(marker.exists, 60, f"the landing to reach {where}")
    executor.kill()
    release.touch()
    task = cluster.api.task(swarm, "t1")
    assert task["status"] == "completed" and task["integration"]["state"] == "landing"

    if comes_back:
        again = cluster.executor(f"ex-{swarm}", swarm, ["agent-1:dev:dev"])
        cluster.wait_ready(again)
    task = settled(cluster, swarm, "t1")

    assert task["integration"]["state"] == "landed"
    integrated = events_of(task, "task.integrated")
    assert len(integrated) == 1
    assert integrated[0]["already"] is (where == "post-receive")
    if not comes_back:
        assert integrated[0]["actor"] == f"executor:ex-{swarm}-other"
    assert remote.trailers("t1") == [task["integration"]["landed"]]
    assert len(remote.log()) == 2  # the seed and t1, nothing twice
    assert remote.show("work.txt") == "work"


def test_mode_branch_pushes_each_tasks_branch_and_lands_nothing(
    cluster: Cluster, tmp_path: Path
) -> None:
    setup = set_up(cluster, tmp_path, "branch", 1, mode="branch")
    remote, swarm = setup.remote, setup.swarm
    add_task(cluster, swarm, "ok", "echo reviewed > r.txt")
    add_task(cluster, swarm, "broken", "echo half > h.txt; exit 3")
    ok, broken = settled(cluster, swarm, "ok"), settled(cluster, swarm, "broken")

    assert ok["integration"]["state"] == "pushed" and broken["integration"]["state"] == "pushed"
    assert broken["status"] == "failed"  # its work is still there to look at
    assert remote.tip() == remote.seed
    assert remote.show("r.txt", "swarm/ok") == "reviewed"
    assert remote.show("h.txt", "swarm/broken") == "half"


# --- projects users can fix ---------------------------------------------------------------------


def test_a_master_default_branch_inits_and_work_lands_on_master(
    cluster: Cluster, tmp_path: Path
) -> None:
    setup = set_up(cluster, tmp_path, "master", 1, remote_branch="master")
    remote, swarm, project = setup.remote, setup.swarm, setup.project
    assert (project["branch"], project["target"]) == (None, "master")
    add_task(cluster, swarm, "t1", "echo on master > m.txt")
    task = settled(cluster, swarm, "t1")
    assert (task["integration"]["state"], task["integration"]["onto"]) == ("landed", "master")
    assert remote.show("m.txt") == "on master"


def test_a_project_with_a_wrong_url_is_fixed_by_an_update_and_can_be_deleted(
    cluster: Cluster, tmp_path: Path
) -> None:
    remote = Remote(tmp_path / "git")
    swarm = new_swarm(cluster, "fix")
    agents_on(cluster, swarm, 2)
    body = {"name": "app", "gitUrl": f"file://{tmp_path}/nothing.git", "swarm": swarm}
    project = cluster.api.ok("POST", "/projects", body)
    broken = cluster.api.ok("POST", f"/projects/{project['id']}/init?wait=1&timeout=60")
    assert {c["state"] for c in broken["checkouts"]} == {"sync_failed"}
    add_task(cluster, swarm, "early", "echo x > x.txt")
    early = cluster.wait_task(swarm, "early", {"failed", "completed"})
    assert early["status"] == "failed" and "no working checkout" in early["reason"]

    fixed = cluster.api.ok(
        "PATCH", f"/projects/{project['id']}", {"gitUrl": remote.url, "verify": "true"}
    )
    assert (fixed["round"], fixed["request"]) == (2, "init")
    cluster.until(
        lambda: (
            {c["state"] for c in cluster.api.ok("GET", f"/swarms/{swarm}/project")["checkouts"]}
            == {"synced"}
        ),
        60,
        "every checkout to follow the new URL",
    )
    add_task(cluster, swarm, "later", "echo y > y.txt")
    later = settled(cluster, swarm, "later")
    assert later["integration"]["state"] == "landed" and remote.show("y.txt") == "y"

    cluster.api.ok("DELETE", f"/projects/{project['id']}")
    status, _ = cluster.api.call("GET", f"/swarms/{swarm}/project")
    assert status == 404
    add_task(cluster, swarm, "loose", "pwd; echo z > z.txt")
    loose = settled(cluster, swarm, "loose")
    assert loose["status"] == "completed" and loose["integration"] is None
    assert "z.txt" not in remote.files()
