"""What every commit made for a task carries (services/executor/commits.py), with real git in a
local sandbox: the agent as author and committer, the ``Swarm-Task`` trailer once, and the
project's own hooks still running."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.executor import commits
from services.executor import git as git_identity
from services.executor.sandboxes.local import LocalBackend, LocalSandbox

PATH = os.environ.get("PATH", "/usr/bin:/bin")


@pytest.fixture
async def sandbox(tmp_path: Path) -> LocalSandbox:
    made = LocalBackend(tmp_path / "agents", source_env={"PATH": PATH}, kill_grace=0.5)
    return await made.create("s", "qa-agent")


async def git(sandbox: LocalSandbox, env: dict[str, str], *args: str) -> tuple[int, str]:
    said: list[bytes] = []
    result = await sandbox.exec(
        ["git", *args],
        on_output=lambda stream, data: said.append(data),
        env=env,
        cwd="project",
        merge_stderr=True,
        timeout=30,
    )
    return result.exit_code or 0, b"".join(said).decode()


async def repo(sandbox: LocalSandbox) -> Path:
    path = Path(sandbox.workdir) / "project"
    path.mkdir()
    await git(sandbox, {}, "init", "-q", "-b", "main", ".")
    return path


def who() -> git_identity.Identity:
    return git_identity.identity("qa-agent", "QA Agent", email_domain="swarm.invalid")


def test_an_agent_commits_under_its_name_and_an_address_of_its_own() -> None:
    assert git_identity.identity("qa-agent", "QA Agent") == ("QA Agent", "qa-agent@swarm.local")
    assert who() == git_identity.Identity("QA Agent", "qa-agent@swarm.invalid")
    assert git_identity.identity("a b").email == "a-b@swarm.local"
    configured = git_identity.identity("qa", "QA", git_name="Q. A.", git_email="qa@example.com")
    assert configured == git_identity.Identity("Q. A.", "qa@example.com")


async def test_a_commit_in_a_fresh_home_has_the_agent_as_author_and_the_task_trailer(
    sandbox: LocalSandbox,
) -> None:
    path = await repo(sandbox)
    hooks = await commits.install_hooks(sandbox)
    env = commits.commit_env(who(), "t-42", hooks)
    (path / "a.txt").write_text("a\n")
    assert (await git(sandbox, env, "add", "a.txt"))[0] == 0
    code, said = await git(sandbox, env, "commit", "-q", "-m", "Add a")
    assert code == 0, said
    _, shown = await git(sandbox, env, "log", "-1", "--format=%an <%ae>|%cn <%ce>|%B")
    author, committer, body = shown.split("|", 2)
    assert author == committer == "QA Agent <qa-agent@swarm.invalid>"
    assert body.strip().splitlines() == ["Add a", "", "Swarm-Task: t-42"]


async def test_amending_keeps_one_trailer_and_a_message_that_has_it_gets_no_second(
    sandbox: LocalSandbox,
) -> None:
    path = await repo(sandbox)
    env = commits.commit_env(who(), "t-1", await commits.install_hooks(sandbox))
    (path / "a.txt").write_text("a\n")
    await git(sandbox, env, "add", "-A")
    await git(sandbox, env, "commit", "-q", "-m", "Add a\n\nSwarm-Task: t-1")
    await git(sandbox, env, "commit", "-q", "--amend", "-m", "Add a, amended\n\nSwarm-Task: t-1")
    _, body = await git(sandbox, env, "log", "-1", "--format=%B")
    assert body.count("Swarm-Task: t-1") == 1


async def test_the_project_s_own_hooks_still_run_and_can_refuse_a_commit(
    sandbox: LocalSandbox,
) -> None:
    path = await repo(sandbox)
    env = commits.commit_env(who(), "t-7", await commits.install_hooks(sandbox))
    own = path / ".git" / "hooks"
    (own / "commit-msg").write_text('#!/bin/sh\necho "Reviewed-by: the project" >> "$1"\n')
    (own / "pre-commit").write_text("#!/bin/sh\n[ ! -e forbidden ] || { echo no; exit 1; }\n")
    for hook in ("commit-msg", "pre-commit"):
        (own / hook).chmod(0o755)
    (path / "a.txt").write_text("a\n")
    await git(sandbox, env, "add", "-A")
    code, said = await git(sandbox, env, "commit", "-q", "-m", "Add a")
    assert code == 0, said
    _, body = await git(sandbox, env, "log", "-1", "--format=%B")
    assert "Swarm-Task: t-7" in body and "Reviewed-by: the project" in body
    (path / "forbidden").write_text("x\n")
    await git(sandbox, env, "add", "-A")
    code, said = await git(sandbox, env, "commit", "-q", "-m", "Sneak")
    assert code != 0 and "no" in said


async def test_a_project_with_its_own_hooks_path_keeps_it(sandbox: LocalSandbox) -> None:
    path = await repo(sandbox)
    env = commits.commit_env(who(), "t-8", await commits.install_hooks(sandbox))
    (path / ".husky").mkdir()
    (path / ".husky" / "commit-msg").write_text('#!/bin/sh\necho "Husky: yes" >> "$1"\n')
    (path / ".husky" / "commit-msg").chmod(0o755)
    await git(sandbox, env, "config", "core.hooksPath", ".husky")
    (path / "a.txt").write_text("a\n")
    await git(sandbox, env, "add", "-A")
    assert (await git(sandbox, env, "commit", "-q", "-m", "Add a"))[0] == 0
    _, body = await git(sandbox, env, "log", "-1", "--format=%B")
    assert "Swarm-Task: t-8" in body and "Husky: yes" in body


async def test_installing_twice_is_harmless(sandbox: LocalSandbox) -> None:
    first = await commits.install_hooks(sandbox)
    assert await commits.install_hooks(sandbox) == first
    for check in (["test", "-L", f"{first}/commit-msg"], ["test", "-x", f"{first}/swarm-hook"]):
        result = await sandbox.exec(check, on_output=lambda stream, data: None, timeout=10)
        assert result.exit_code == 0, check
