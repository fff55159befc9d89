"""Real git for tests: ``git()`` with a fixed identity and no user or system configuration, and
``Remote``, a bare repository with a working copy to push commits (on any branch) from."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def git(*args: str, cwd: Path | None = None) -> str:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null"}
    done = subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


class Remote:
    """A bare repository with a seed commit on ``main``, and a working copy to push from."""

    def __init__(self, root: Path) -> None:
        self.bare = root / "remote.git"
        self.work = root / "seed"
        git("init", "--quiet", "--bare", "-b", "main", str(self.bare))
        git("init", "--quiet", "-b", "main", str(self.work))
        git("remote", "add", "origin", str(self.bare), cwd=self.work)
        self.seed = self.push("README", "hello\n")

    @property
    def url(self) -> str:
        return f"file://{self.bare}"

    def push(self, name: str, text: str, branch: str = "main") -> str:
        """Commit ``name`` with ``text`` on ``branch`` (made from main when new) and push it;
        the new commit."""
        if git("branch", "--list", branch, cwd=self.work):
            git("checkout", "--quiet", branch, cwd=self.work)
        else:
            git("checkout", "--quiet", "-b", branch, cwd=self.work)
        (self.work / name).write_text(text)
        git("add", name, cwd=self.work)
        git("commit", "--quiet", "-m", f"write {name}", cwd=self.work)
        git("push", "--quiet", "origin", branch, cwd=self.work)
        commit = git("rev-parse", "HEAD", cwd=self.work)
        git("checkout", "--quiet", "main", cwd=self.work)
        return commit
