"""The git steps around a task (services/executor/integration.py) with real git: local sandboxes
as the agents' places, a bare repository as the remote. No NATS: these are the steps alone."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from pathlib import Path

import pytest
from git_support import Remote, git

from services.executor import integration
from services.executor.git import CHECKOUT_DIR, GitFailed
from services.executor.sandboxes import GitCall
from services.executor.sandboxes.local import LocalBackend, LocalSandbox
from services.executor.workplan import Landed, Resolving, Stuck, WorkPlan


async def agent_with_checkout(root: Path, remote: Remote, agent: str) -> LocalSandbox:
    sandbox = await LocalBackend(root / "agents").create("s1", agent)
    await sandbox.git_clone(remote.url, remote.branch, CHECKOUT_DIR, GitCall.within(60))
    return sandbox


def plan_for(task: str, agent: str, remote: Remote, **changes: object) -> WorkPlan:
    fields: dict[str, object] = {
        "swarm": "s1",
        "task": task,
        "attempt": 1,
        "title": f"do {task}",
        "project": "p1",
        "mode": "integrate",
        "onto": remote.branch,
        "branch": f"swarm/{task}",
        "strategy": "rebase",
        "verify": None,
        "identity": (f"Agent {agent}", f"{agent}@swarm.local"),
    }
    fields.update(changes)
    return WorkPlan(**fields)  # type: ignore[arg-type]


def call(plan: WorkPlan) -> GitCall:
    return GitCall.within(60, identity=plan.identity)


def write(sandbox: LocalSandbox, name: str, text: str) -> None:
    path = Path(sandbox.workdir) / CHECKOUT_DIR / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


async def run_task(
    sandbox: LocalSandbox, plan: WorkPlan, files: dict[str, str]
) -> tuple[str, str, Landed | Stuck]:
    """What the executor does around a run that writes ``files``: (base, head, landing)."""
    base = await integration.start(sandbox, plan, call(plan))
    for name, text in files.items():
        write(sandbox, name, text)
    head, pushed = await integration.keep(sandbox, plan, call(plan))
    assert pushed
    outcome = await integration.land(sandbox, plan, base, head, lambda: call(plan))
    return base, head, outcome


@dataclass
class Ready:
    """A task of one agent, started and kept: ready to land."""

    sandbox: LocalSandbox
    plan: WorkPlan
    base: str
    head: str

    async def land(self) -> Landed | Stuck:
        return await integration.land(
            self.sandbox, self.plan, self.base, self.head, functools.partial(call, self.plan)
        )


async def side_by_side(tmp_path: Path, remote: Remote, *writes: dict[str, str]) -> list[Ready]:
    """Agents a1, a2... each start a task (t1, t2...) from the same tip, write their files and
    keep them (committed and pushed), before any of them lands."""
    found = []
    for index, files in enumerate(writes, start=1):
        sandbox = await agent_with_checkout(tmp_path, remote, f"a{index}")
        plan = plan_for(f"t{index}", f"a{index}", remote)
        base = await integration.start(sandbox, plan, call(plan))
        found.append((sandbox, plan, base, files))
    ready = []
    for sandbox, plan, base, files in found:
        for name, text in files.items():
            write(sandbox, name, text)
        head, _ = await integration.keep(sandbox, plan, call(plan))
        ready.append(Ready(sandbox, plan, base, head))
    return ready


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    return Remote(tmp_path / "git")


async def test_a_tasks_leftovers_are_committed_as_the_agent_and_land_on_the_branch(
    tmp_path: Path, remote: Remote
) -> None:
    sandbox = await agent_with_checkout(tmp_path, remote, "a1")
    plan = plan_for("t1", "a1", remote)
    base, head, outcome = await run_task(sandbox, plan, {"app.py": "print('hi')\n"})

    assert base == remote.seed
    assert isinstance(outcome, Landed) and not outcome.already and outcome.tries == 1
    assert remote.tip() == outcome.commit
    assert remote.show("app.py") == "print('hi')"
    assert remote.trailers("t1") == [outcome.commit]
    author = git("--git-dir", str(remote.bare), "log", "-1", "--format=%an <%ae>")
    assert author == "Agent a1 <a1@swarm.local>"
    assert remote.has("swarm/t1") and remote.tip("swarm/t1") == head  # the task branch stays


async def test_nothing_of_an_earlier_task_leaks_into_the_next(
    tmp_path: Path, remote: Remote
) -> None:
    sandbox = await agent_with_checkout(tmp_path, remote, "a1")
    first = plan_for("t1", "a1", remote)
    await integration.start(sandbox, first, call(first))
    write(sandbox, "stray.txt", "left behind\n")
    write(sandbox, "README", "scribbled\n")
    second = plan_for("t2", "a1", remote)
    base = await integration.start(sandbox, second, call(second))

    checkout = Path(sandbox.workdir) / CHECKOUT_DIR
    assert not (checkout / "stray.txt").exists()
    assert (checkout / "README").read_text() == "hello\n"
    assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=checkout) == "swarm/t2"
    assert base == remote.seed


async def test_the_next_task_starts_from_the_newest_tip_with_others_work(
    tmp_path: Path, remote: Remote
) -> None:
    a1 = await agent_with_checkout(tmp_path, remote, "a1")
    a2 = await agent_with_checkout(tmp_path, remote, "a2")
    _, _, landed = await run_task(a1, plan_for("t1", "a1", remote), {"a.txt": "from a1\n"})
    assert isinstance(landed, Landed)

    base = await integration.start(
        a2, plan_for("t2", "a2", remote), call(plan_for("t2", "a2", remote))
    )
    assert base == landed.commit
    assert (Path(a2.workdir) / CHECKOUT_DIR / "a.txt").read_text() == "from a1\n"


async def test_two_tasks_on_different_files_both_land_the_second_after_losing_the_race(
    tmp_path: Path, remote: Remote
) -> None:
    one, two = await side_by_side(tmp_path, remote, {"one.txt": "1\n"}, {"two.txt": "2\n"})

    first, second = await one.land(), await two.land()

    assert isinstance(first, Landed) and isinstance(second, Landed)
    assert remote.tip() == second.commit
    assert sorted(remote.files()) == ["README", "one.txt", "two.txt"]
    assert git("--git-dir", str(remote.bare), "rev-parse", f"{second.commit}~1") == first.commit


async def test_parallel_landings_all_land_once_through_the_push_race(
    tmp_path: Path, remote: Remote
) -> None:
    ready = await side_by_side(tmp_path, remote, *({f"f{i}.txt": f"{i}\n"} for i in range(4)))

    outcomes = await asyncio.gather(*(r.land() for r in ready))

    assert all(isinstance(o, Landed) for o in outcomes)
    assert sorted(remote.files()) == ["README", "f0.txt", "f1.txt", "f2.txt", "f3.txt"]
    for i in range(1, 5):
        assert len(remote.trailers(f"t{i}")) == 1
    assert sum(o.tries for o in outcomes) > 4  # someone lost a race and tried again


async def test_editing_the_same_lines_is_a_conflict_that_keeps_the_branch_and_the_tip_clean(
    tmp_path: Path, remote: Remote
) -> None:
    one, two = await side_by_side(
        tmp_path, remote, {"README": "hello from a1\n"}, {"README": "hello from a2\n"}
    )
    first = await one.land()

    second = await two.land()

    assert isinstance(first, Landed)
    assert isinstance(second, Stuck) and second.problem == "conflict"
    assert second.files == ("README",) and second.tip == first.commit
    assert remote.tip() == first.commit and remote.show("README") == "hello from a1"
    assert remote.tip("swarm/t2") == two.head
    checkout = Path(two.sandbox.workdir) / CHECKOUT_DIR
    assert git("status", "--porcelain", cwd=checkout) == ""  # nothing half-done is left
    assert git("rev-parse", "HEAD", cwd=checkout) == two.head


async def test_a_resolve_task_starts_with_the_conflict_and_lands_once_resolved(
    tmp_path: Path, remote: Remote
) -> None:
    one, two = await side_by_side(
        tmp_path, remote, {"README": "hello from a1\n"}, {"README": "hi a2\n"}
    )
    await one.land()
    stuck = await two.land()
    assert isinstance(stuck, Stuck)
    a1, head2 = one.sandbox, two.head

    resolving = Resolving("t2", head2, stuck.files)
    plan = plan_for("t2-resolve-1", "a1", remote, resolving=resolving, title="resolve t2")
    base = await integration.start(a1, plan, call(plan))
    readme = (Path(a1.workdir) / CHECKOUT_DIR / "README").read_text()
    assert "<<<<<<<" in readme and "hello from a1" in readme and "hi a2" in readme
    with pytest.raises(GitFailed, match="conflict markers"):
        await integration.keep(a1, plan, call(plan), push=False)
    write(a1, "README", "hello from a1 and a2\n")
    head, _ = await integration.keep(a1, plan, call(plan))
    landed = await integration.land(a1, plan, base, head, lambda: call(plan))

    assert isinstance(landed, Landed)
    assert remote.show("README") == "hello from a1 and a2"
    message = git("--git-dir", str(remote.bare), "log", "-1", "--format=%B")
    assert "Swarm-Task: t2-resolve-1" in message and "Swarm-Resolves: t2" in message


async def test_a_red_verify_keeps_the_branch_clean_and_says_why(
    tmp_path: Path, remote: Remote
) -> None:
    sandbox = await agent_with_checkout(tmp_path, remote, "a1")
    plan = plan_for("t1", "a1", remote)
    base = await integration.start(sandbox, plan, call(plan))
    write(sandbox, "broken.py", "syntax error(\n")
    head, _ = await integration.keep(sandbox, plan, call(plan))
    verify = integration.Verify("echo checking; python3 -m py_compile broken.py", {}, 60)

    outcome = await integration.land(sandbox, plan, base, head, lambda: call(plan), verify)

    assert isinstance(outcome, Stuck) and outcome.problem == "verify"
    assert "checking" in outcome.output and "SyntaxError" in outcome.output
    assert remote.tip() == remote.seed


async def test_landing_again_after_a_crash_finds_the_work_instead_of_repeating_it(
    tmp_path: Path, remote: Remote
) -> None:
    sandbox = await agent_with_checkout(tmp_path, remote, "a1")
    plan = plan_for("t1", "a1", remote)
    base, head, first = await run_task(sandbox, plan, {"x.txt": "x\n"})
    remote.push("other.txt", "someone else\n")  # the branch moved on since

    again = await integration.land(sandbox, plan, base, head, lambda: call(plan))

    assert isinstance(first, Landed) and isinstance(again, Landed)
    assert again.already and again.commit == first.commit
    assert remote.trailers("t1") == [first.commit]
    assert len(remote.log()) == 3  # seed, t1, other: nothing twice


async def test_the_merge_strategy_lands_a_merge_commit_that_names_the_task(
    tmp_path: Path, remote: Remote
) -> None:
    sandbox = await agent_with_checkout(tmp_path, remote, "a1")
    remote.push("other.txt", "moved\n")
    plan = plan_for("t1", "a1", remote, strategy="merge")
    base = await integration.start(sandbox, plan, call(plan))
    remote.push("later.txt", "moved again\n")
    write(sandbox, "mine.txt", "mine\n")
    head, _ = await integration.keep(sandbox, plan, call(plan))

    outcome = await integration.land(sandbox, plan, base, head, lambda: call(plan))

    assert isinstance(outcome, Landed)
    parents = git("--git-dir", str(remote.bare), "log", "-1", "--format=%P").split()
    assert len(parents) == 2 and head in parents
    assert remote.trailers("t1")[0] == outcome.commit
    assert sorted(remote.files()) == ["README", "later.txt", "mine.txt", "other.txt"]


async def test_a_run_that_changed_nothing_has_nothing_to_land(
    tmp_path: Path, remote: Remote
) -> None:
    sandbox = await agent_with_checkout(tmp_path, remote, "a1")
    plan = plan_for("t1", "a1", remote)
    base = await integration.start(sandbox, plan, call(plan))
    head, _ = await integration.keep(sandbox, plan, call(plan), push=False)
    assert head == base


async def test_the_remotes_default_branch_is_found_without_cloning(tmp_path: Path) -> None:
    remote = Remote(tmp_path / "git", branch="master")
    sandbox = await LocalBackend(tmp_path / "agents").create("s1", "a1")
    assert await sandbox.git_default_branch(remote.url, GitCall.within(30)) == "master"
