"""Where an agent's commands run: one sandbox per agent, behind one small interface.

A ``Backend`` creates a sandbox for an agent, or attaches to the one it already has (a restarted
executor finds its agents' sandboxes again). A ``Sandbox`` runs one command at a time: output
streams to a callback as it comes, and a timeout or a cancel kills the command with everything it
started. ``local`` (``sandboxes/local.py``) is the default; a Daytona backend goes behind the same
interface.

Git (the agent's checkout of the project): ``git_clone``, ``git_checkout``, ``git_pull``,
``git_status``, ``git_default_branch``, ``git_run`` (any git command in a checkout, for the
steps around a task: ``services/executor/integration.py``) and ``path_exists`` have working
implementations here, built on ``exec`` and the pure commands of ``services/executor/git.py``; a
backend with its own git API (Daytona's SDK) overrides them. Each raises ``GitFailed`` with git's
message (trimmed, masked), and is done (or killed) by its ``GitCall``'s deadline.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from schemas.errors import Invalid
from services.executor import git
from services.executor.git import CheckoutStatus, GitFailed

OUTPUT_KEPT = 64 * 1024  # of a git command's output, the last this many characters are kept


@dataclass(frozen=True)
class GitCall:
    """What every command of one git operation shares: the time it has (``timeout`` seconds,
    until ``deadline`` on ``time.monotonic()``), the credentials (a token, or None), the
    secrets to mask, and who new commits are by (``identity``: name, e-mail)."""

    timeout: float
    deadline: float
    token: str | None = None
    secrets: tuple[str, ...] = ()
    identity: tuple[str, str] | None = None

    @classmethod
    def within(
        cls,
        timeout: float,
        token: str | None = None,
        secrets: Iterable[str] = (),
        identity: tuple[str, str] | None = None,
    ) -> GitCall:
        masked = tuple(s for s in (*secrets, token or "") if s)
        return cls(timeout, time.monotonic() + timeout, token, masked, identity)


@dataclass(frozen=True)
class GitOutput:
    """How a git command ended: its exit code and (the last of) its output."""

    code: int
    text: str


# (stream, data): stream is "stdout" or "stderr"; data is raw bytes as they came.
OutputCallback = Callable[[str, bytes], Awaitable[None] | None]


@dataclass(frozen=True)
class ExecResult:
    """How a command ended. ``exit_code`` is None when it was killed (timeout, cancel) before it
    exited by itself; a negative code is the signal that ended it."""

    exit_code: int | None
    timed_out: bool = False
    cancelled: bool = False
    duration_s: float = 0.0


class SandboxFailed(Exception):
    """The backend could not do what was asked (e.g. Daytona refused the API key); ``reason``
    says why, fit for a task's failure (no secrets in it)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SandboxLost(SandboxFailed):
    """The agent's sandbox disappeared under the run (deleted behind the executor's back). The
    backend makes a new one; the attempt goes back to the queue (``task.requeued``)."""


class Sandbox(ABC):
    """One agent's place to run commands."""

    id: str  # the backend's name for it (stable across executor restarts)
    agent: str
    workdir: str  # where commands start (the agent's working directory)
    place: str | None = None  # where ``which`` looks, for messages (None: the executor's PATH)

    async def which(self, program: str, path: str | None = None) -> str | None:
        """The program as the sandbox would run it (``program`` as a path, or looked up on
        ``path``); None when it is not there. A local sandbox runs on this machine: looked up
        here. A remote backend (Daytona) looks in the sandbox."""
        return shutil.which(program, path=path)

    @abstractmethod
    async def exec(
        self,
        argv: Sequence[str],
        *,
        on_output: OutputCallback,
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
        timeout: float | None = None,
        cancel: asyncio.Event | None = None,
        merge_stderr: bool = False,
        cwd: str | None = None,
    ) -> ExecResult:
        """Run ``argv`` in the sandbox's working directory (or ``cwd``, relative to it) and
        wait for it.

        ``env``: variables given to the command on top of the sandbox's own minimal environment
        (credentials go here; nothing else of the executor's environment leaks in).
        ``timeout`` seconds / ``cancel`` set: the command and everything it started are killed
        and the result says which. ``merge_stderr``: stderr arrives as "stdout", in order.
        Cancelling the awaiting asyncio task also kills the command."""

    @abstractmethod
    async def destroy(self) -> None:
        """Remove the sandbox and what it holds."""

    # --- files and git (exec-based; a backend may do better) ---------------------------------

    async def path_exists(self, path: str) -> bool:
        """Whether ``path`` (relative to the working directory) exists."""
        result = await self.exec(["test", "-e", path], on_output=_ignore, timeout=30)
        return result.exit_code == 0

    async def _git(self, argv: list[str], action: str, call: GitCall) -> str:
        """Run one command of a git operation within its time; its output, or ``GitFailed``."""
        return (await self._git_ended(argv, action, call)).text

    async def _git_ended(
        self, argv: list[str], action: str, call: GitCall, ok: Collection[int] = (0,)
    ) -> GitOutput:
        """Run one command of a git operation within its time; how it ended, or ``GitFailed``
        when its exit code is not one of ``ok``."""
        kept: list[str] = []

        def collect(stream: str, data: bytes) -> None:
            kept.append(data.decode("utf-8", "replace"))
            if len(kept) > 256:
                kept[:] = ["".join(kept)[-OUTPUT_KEPT:]]

        timeout = call.deadline - time.monotonic()
        too_long = f"{action} failed: timed out (the git timeout is {call.timeout:g} s)"
        if timeout <= 0:
            raise GitFailed(too_long)
        try:
            result = await self.exec(
                argv,
                on_output=collect,
                env=git.git_env(call.token, call.identity),
                timeout=timeout,
                merge_stderr=True,
            )
        except OSError as error:
            raise GitFailed(f"{action} failed: could not start {argv[0]}: {error}") from error
        if result.timed_out:
            raise GitFailed(too_long)
        text = "".join(kept)[-OUTPUT_KEPT:]
        if result.exit_code not in ok:
            raise GitFailed(git.failure(action, text, call.secrets))
        return GitOutput(result.exit_code if result.exit_code is not None else -1, text)

    async def git_run(
        self,
        path: str,
        args: Sequence[str],
        action: str,
        call: GitCall,
        *,
        ok: Collection[int] = (0,),
    ) -> GitOutput:
        """``git -C <path> <args>`` (``path`` relative to the working directory) within the
        call's time, with its credentials and identity; ``GitFailed`` unless its exit code is
        one of ``ok``. The steps of a task's branch and its integration are built on it."""
        return await self._git_ended(["git", "-C", path, *args], action, call, ok)

    async def git_default_branch(self, url: str, call: GitCall) -> str:
        """The remote's default branch (what ``HEAD`` points at there)."""
        text = await self._git(git.default_branch_argv(url), "git ls-remote", call)
        branch = git.parse_default_branch(text)
        if branch is None:
            raise GitFailed(
                "git ls-remote failed: the remote names no default branch (an empty "
                "repository?); give the project a branch"
            )
        return git.check_branch(branch)

    async def git_clone(self, url: str, branch: str, path: str, call: GitCall) -> None:
        """Clone ``branch`` of ``url`` into ``path`` (not a checkout yet): into
        ``<path>.partial`` first, renamed once complete, so a clone cut short never looks like
        a checkout."""
        partial = f"{path}.partial"
        await self._git(["rm", "-rf", "--", partial], "cleaning up", call)
        try:
            await self._git(git.clone_argv(url, branch, partial), "git clone", call)
            await self._git(["mv", "-T", "--", partial, path], "moving the clone in place", call)
        except GitFailed:
            await self.exec(["rm", "-rf", "--", partial], on_output=_ignore, timeout=30)
            raise

    async def git_checkout(self, url: str, branch: str, path: str, call: GitCall) -> None:
        """In an existing checkout: point ``origin`` at ``url``, fetch, switch to ``branch``."""
        await self._git(git.set_origin_argv(path, url), "git remote set-url", call)
        await self._git(git.fetch_argv(path), "git fetch", call)
        await self._git(git.checkout_argv(path, branch), "git checkout", call)

    async def git_pull(self, path: str, call: GitCall) -> None:
        """Fast-forward the checked-out branch to its upstream (``git pull --ff-only``)."""
        await self._git(git.pull_argv(path), "git pull", call)

    async def git_status(self, branch: str, path: str, call: GitCall) -> CheckoutStatus:
        """The checkout's commit, whether it has changes (untracked files count), and how far
        it is ahead of / behind ``origin/<branch>`` (0/0 when there is no such branch)."""
        commit, current, dirty = git.parse_status(
            await self._git(git.status_argv(path), "git status", call)
        )
        if commit is None:
            raise GitFailed("git status failed: the checkout has no commit")
        try:
            counted = await self._git(git.ahead_behind_argv(path, branch), "git rev-list", call)
            ahead, behind = git.parse_ahead_behind(counted)
        except (GitFailed, ValueError):
            ahead = behind = 0
        return CheckoutStatus(
            commit=commit, dirty=dirty, ahead=ahead, behind=behind, branch=current
        )


def _ignore(stream: str, data: bytes) -> None:
    return None


class Backend(ABC):
    name: str

    @abstractmethod
    async def create(self, swarm: str, agent: str, sandbox_id: str | None = None) -> Sandbox:
        """The agent's sandbox: attach to ``sandbox_id`` (or the one this backend made for the
        agent before) when it exists, else create it."""

    async def check(self) -> str | None:
        """What stops this backend from working at all (``daytona``: an SDK line that does not
        fit the server), or None. Local sandboxes: nothing."""
        return None

    async def close(self) -> None:
        """The executor stops: let go of the sandboxes (``daytona`` applies its shutdown policy:
        keep, stop or delete them). Local sandboxes are directories: nothing to do."""
        return None


def backend(name: str, **options: object) -> Backend:
    """The backend called ``name`` (``local`` or ``daytona``). ``options``: ``root`` and
    ``source_env`` (local), ``source_env`` and ``daytona`` (swarm.toml's ``[daytona]`` table)."""
    if name == "local":
        from services.executor.sandboxes.local import LocalBackend

        options.pop("daytona", None)
        return LocalBackend(**options)  # type: ignore[arg-type]
    if name == "daytona":
        from services.executor.sandboxes.daytona import DaytonaBackend

        return DaytonaBackend.configured(
            options.get("daytona") or {},  # type: ignore[arg-type]
            source_env=options.get("source_env"),  # type: ignore[arg-type]
        )
    raise Invalid("backend", f"unknown sandbox backend {name!r} (known: local, daytona)")
