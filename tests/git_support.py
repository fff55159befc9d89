"""Real git for tests: a bare repository as the remote (a ``file://`` URL), with a working copy to
push from and ways to read what landed on it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null"}


def git(*args: str, cwd: Path | None = None) -> str:
    """Run git (as a test user, no global or system config); its stdout, stripped."""
    done = subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args],
        cwd=cwd,
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


class Remote:
    """A bare repository whose default branch is ``branch`` (``main`` unless said), with a seed
    commit on it, and a working copy to push from."""

    def __init__(self, root: Path, branch: str = "main") -> None:
        self.branch = branch
        self.bare = root / "remote.git"
        self.work = root / "seed"
        git("init", "--quiet", "--bare", "-b", branch, str(self.bare))
        git("init", "--quiet", "-b", branch, str(self.work))
        git("remote", "add", "origin", str(self.bare), cwd=self.work)
        self.seed = self.push("README", "hello\n")

    @property
    def url(self) -> str:
        return f"file://{self.bare}"

    def push(self, name: str, text: str, branch: str | None = None) -> str:
        """Commit ``name`` with ``text`` on the branch (or on ``branch``, made from the branch
        when new) and push it; the new commit."""
        target = branch or self.branch
        if target != self.branch:
            if self.has(target):
                git("fetch", "--quiet", "origin", target, cwd=self.work)
                git("checkout", "--quiet", "-B", target, f"origin/{target}", cwd=self.work)
            else:
                git("checkout", "--quiet", "-b", target, cwd=self.work)
        elif self.has(self.branch):  # agents may have landed work since
            git("pull", "--quiet", "--ff-only", "origin", self.branch, cwd=self.work)
        (self.work / name).parent.mkdir(parents=True, exist_ok=True)
        (self.work / name).write_text(text)
        git("add", name, cwd=self.work)
        git("commit", "--quiet", "-m", f"write {name}", cwd=self.work)
        git("push", "--quiet", "origin", target, cwd=self.work)
        commit = git("rev-parse", "HEAD", cwd=self.work)
        if target != self.branch:
            git("checkout", "--quiet", self.branch, cwd=self.work)
        return commit

    def has(self, branch: str) -> bool:
        found = subprocess.run(
            ["git", "--git-dir", str(self.bare), "rev-parse", "--verify", "--quiet",
             f"refs/heads/{branch}"],
            capture_output=True,
            env={**os.environ, **GIT_ENV},
        )  # fmt: skip
        return found.returncode == 0

    def tip(self, branch: str | None = None) -> str:
        return git("--git-dir", str(self.bare), "rev-parse", f"refs/heads/{branch or self.branch}")

    def show(self, path: str, ref: str | None = None) -> str:
        """The file at ``path`` as the branch (or ``ref``) has it."""
        return git("--git-dir", str(self.bare), "show", f"{ref or self.branch}:{path}")

    def files(self, ref: str | None = None) -> list[str]:
        listed = git(
            "--git-dir", str(self.bare), "ls-tree", "-r", "--name-only", ref or self.branch
        )
        return listed.splitlines()

    def log(self, fmt: str = "%H %s", ref: str | None = None) -> list[str]:
        """The branch's commits, newest first."""
        return git("--git-dir", str(self.bare), "log", f"--format={fmt}", ref or self.branch).split(
            "\n"
        )

    def trailers(self, task: str, ref: str | None = None) -> list[str]:
        """The commits on the branch that carry ``Swarm-Task: <task>``."""
        found = git(
            "--git-dir", str(self.bare), "log", "--format=%H",
            f"--grep=^Swarm-Task: {task}$", ref or self.branch,
        )  # fmt: skip
        return found.split() if found else []
