"""The git steps around a task, in the agent's checkout, through its sandbox (``Sandbox.git_run``
and ``exec``): start the task's branch, keep what the run left, land it on the project branch.

- ``start``: nothing of an earlier task stays (an unfinished rebase is dropped, the tree reset
  and cleaned of untracked files; ignored files such as build caches stay), ``fetch``, then
  ``swarm/<task>`` from the project branch's newest tip (its commit is the ``base``). A resolve
  task also gets the stuck task's work applied on top, uncommitted (``git merge --squash``:
  conflict markers where it conflicts).
- ``keep``: what the run left uncommitted is committed as the agent with the ``Swarm-Task``
  trailer (a resolve task must leave no conflict marker in the conflicted files); the branch is
  pushed (forced: it belongs to the task).
- ``land``: git's own compare-and-swap. Fetch; if a commit with the task's trailer is already on
  the project branch (an earlier try landed, then the executor died before recording it), that
  commit is the answer; else put the work on the tip (rebase, or a merge commit), run ``verify``,
  and push to the project branch without force. A push that lost the race (someone landed first)
  means: fetch and try again, up to ``MAX_TRIES``. A conflict or a red ``verify`` is an outcome
  (``Stuck``), not an exception; so is git failing three times in a row (``error``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from schemas import events as ev
from services.bus.logs import scrub
from services.executor import checkouts, git, workplan
from services.executor.git import CHECKOUT_DIR, GitFailed
from services.executor.sandboxes import GitCall, GitOutput, Sandbox
from services.executor.workplan import Landed, Stuck, WorkPlan

MAX_TRIES = 20  # integrations of one task before giving up (each lost push race is one)
MAX_ERRORS = 3  # git failures in a row (network, remote away) before the landing fails
MARKERS = r"^(<<<<<<<|>>>>>>>)( |$)"
VERIFY_OUTPUT_KEPT = 16 * 1024


@dataclass(frozen=True)
class Verify:
    """How to run the project's ``verify`` command: in the checkout, with ``env`` (on top of
    the sandbox's basics), killed after ``timeout`` seconds; ``secrets`` masked in its output."""

    command: str
    env: Mapping[str, str]
    timeout: float
    secrets: tuple[str, ...] = ()


async def _git(
    sandbox: Sandbox, call: GitCall, action: str, *args: str, ok: Iterable[int] = (0,)
) -> GitOutput:
    return await sandbox.git_run(CHECKOUT_DIR, list(args), action, call, ok=tuple(ok))


async def _commit_of(sandbox: Sandbox, call: GitCall, ref: str) -> str:
    found = await _git(sandbox, call, "git rev-parse", "rev-parse", "--verify", "--quiet", ref)
    lines = found.text.strip().splitlines()
    if not lines:
        raise GitFailed(f"git rev-parse failed: {ref} names no commit")
    return lines[-1].strip()


async def fetch(sandbox: Sandbox, call: GitCall) -> None:
    await _git(sandbox, call, "git fetch", "fetch", "--quiet", "--prune", "origin")


async def _put_branch(sandbox: Sandbox, call: GitCall, branch: str, commit: str) -> None:
    await _git(sandbox, call, "git checkout", "checkout", "-q", "-f", "--no-track", "-B",
               branch, commit, "--")  # fmt: skip


async def start(sandbox: Sandbox, plan: WorkPlan, call: GitCall) -> str:
    """Put the checkout on a fresh ``swarm/<task>`` at the project branch's newest tip; the
    tip's commit (the task's base)."""
    await _git(sandbox, call, "git rebase --quit", "rebase", "--quit", ok=(0, 1, 128))
    await _git(sandbox, call, "git reset", "reset", "--quiet", "--hard")
    await _git(sandbox, call, "git clean", "clean", "-ffdq")
    await fetch(sandbox, call)
    base = await _commit_of(sandbox, call, git.remote_ref(plan.onto))
    await _put_branch(sandbox, call, plan.branch, base)
    if plan.resolving is not None:  # the stuck work on top, conflicts and all
        await _git(sandbox, call, "git merge --squash", "merge", "--squash", "--quiet",
                   plan.resolving.head, ok=(0, 1))  # fmt: skip
    return base


def _ignore(stream: str, data: bytes) -> None:
    return None


async def keep(
    sandbox: Sandbox, plan: WorkPlan, call: GitCall, *, push: bool = True
) -> tuple[str, bool]:
    """Commit what the run left and push the branch: (head, pushed). ``GitFailed`` when a
    resolve task left conflict markers, or git failed."""
    if plan.resolving is not None and plan.resolving.files:
        left = await sandbox.exec(
            ["grep", "-l", "-E", MARKERS, "--", *plan.resolving.files],
            on_output=_ignore,
            cwd=CHECKOUT_DIR,
            timeout=30,
        )
        if left.exit_code == 0:
            raise GitFailed("conflict markers are left in the conflicted files")
    await _git(sandbox, call, "git add", "add", "--all")
    staged = await _git(sandbox, call, "git diff", "diff", "--cached", "--quiet", ok=(0, 1))
    if staged.code == 1:
        await _git(sandbox, call, "git commit", "commit", "--quiet", "--no-verify",
                   "-m", plan.message)  # fmt: skip
    head = await _commit_of(sandbox, call, "HEAD")
    if not push:
        return head, False
    await _git(sandbox, call, "git push", "push", "--quiet", "--force", "origin",
               f"HEAD:refs/heads/{plan.branch}")  # fmt: skip
    return head, True


async def already_landed(
    sandbox: Sandbox, call: GitCall, task: str, base: str, tip: str
) -> str | None:
    """The newest commit after ``base`` up to ``tip`` that carries the task's trailer: the work
    landed already (an earlier try pushed it; its record was lost)."""
    found = await _git(sandbox, call, "git log", "log", "--format=%H", "-n", "1",
                       f"--grep={git.landed_grep(task)}", f"{base}..{tip}")  # fmt: skip
    return found.text.strip() or None


async def _combine(
    sandbox: Sandbox, call: GitCall, plan: WorkPlan, head: str, tip: str
) -> list[str]:
    """Put the work (``head``) on ``tip`` in the checkout: rebased, or as a merge commit. The
    conflicted files ([] when it went through; the checkout is back on ``head`` otherwise)."""
    if plan.strategy == "merge":
        await _git(sandbox, call, "git checkout", "checkout", "-q", "-f", "--detach", tip, "--")
        message = f"Merge {plan.branch}: {' '.join(plan.title.split())[:60]}\n\n"
        message += git.trailer(plan.task) + "\n"
        tried = await _git(sandbox, call, "git merge", "merge", "--no-ff", "--no-edit",
                           "--quiet", "-m", message, head, ok=(0, 1))  # fmt: skip
        abort = ("merge", "--abort")
    else:
        await _put_branch(sandbox, call, plan.branch, head)
        tried = await _git(sandbox, call, "git rebase", "rebase", "--quiet", tip, ok=(0, 1))
        abort = ("rebase", "--abort")
    if tried.code == 0:
        return []
    unmerged = await _git(sandbox, call, "git diff", "diff", "--name-only", "--diff-filter=U")
    files = git.conflicted_files(unmerged.text)
    await _git(sandbox, call, f"git {abort[0]} --abort", *abort, ok=(0, 1, 128))
    await _put_branch(sandbox, call, plan.branch, head)
    if not files:  # it stopped for another reason than a conflict
        raise GitFailed(git.failure(f"git {abort[0]}", tried.text, call.secrets))
    return files


async def _verify(sandbox: Sandbox, verify: Verify) -> tuple[bool, str]:
    """Run the verify command in the checkout: (passed, its output's tail, masked)."""
    kept: list[str] = []
    size = 0

    def collect(stream: str, data: bytes) -> None:
        nonlocal size
        kept.append(data.decode("utf-8", "replace"))
        size += len(data)
        if size > 2 * VERIFY_OUTPUT_KEPT:
            text = "".join(kept)[-VERIFY_OUTPUT_KEPT:]
            kept[:] = [text]
            size = len(text)

    result = await sandbox.exec(
        ["bash", "-c", verify.command],
        on_output=collect,
        env=dict(verify.env),
        timeout=verify.timeout,
        merge_stderr=True,
        cwd=CHECKOUT_DIR,
    )
    output = scrub("".join(kept)[-VERIFY_OUTPUT_KEPT:], verify.secrets)
    if result.timed_out:  # said first: the output's last line is what it printed last
        return False, f"[verify timed out after {verify.timeout:g} s]\n{output}"
    if result.exit_code != 0:
        return False, f"[verify exited with {result.exit_code}]\n{output}"
    return True, output


async def land(
    sandbox: Sandbox,
    plan: WorkPlan,
    base: str,
    head: str,
    new_call: Callable[[], GitCall],
    verify: Verify | None = None,
    *,
    retry_pause: float = 1.0,
) -> Landed | Stuck:
    """Land the work (``head``, cut from ``base``) on the project branch; how it went.
    ``new_call``: a fresh ``GitCall`` (time, credentials, identity) for each try."""
    started = time.monotonic()
    tries = errors = 0
    tip: str | None = None

    def took() -> float:
        return time.monotonic() - started

    while True:
        tries += 1
        call = new_call()
        try:
            await fetch(sandbox, call)
            tip = await _commit_of(sandbox, call, git.remote_ref(plan.onto))
            # an earlier try of ours that lost its race did not land; only the first try can
            # find work a previous life of this landing pushed
            found = (
                await already_landed(sandbox, call, plan.task, base, tip) if tries == 1 else None
            )
            if found is not None:
                return Landed(found, tries, took(), already=True)
            files = await _combine(sandbox, call, plan, head, tip)
            if files:
                return Stuck("conflict", tries, took(), tip=tip, files=tuple(files))
            ahead = await _git(sandbox, call, "git rev-list", "rev-list", "--count", f"{tip}..HEAD")
            if ahead.text.strip() == "0":  # every change of it is on the branch already
                await _put_branch(sandbox, call, plan.branch, head)
                return Landed(tip, tries, took(), already=True)
            if verify is not None:
                passed, output = await _verify(sandbox, verify)
                if not passed:
                    await _put_branch(sandbox, call, plan.branch, head)
                    return Stuck("verify", tries, took(), tip=tip, output=output)
            pushed = await _git(sandbox, call, "git push", "push", "--quiet", "origin",
                                f"HEAD:refs/heads/{plan.onto}", ok=(0, 1))  # fmt: skip
            if pushed.code == 0:
                return Landed(await _commit_of(sandbox, call, "HEAD"), tries, took())
            if not git.push_rejected(pushed.text):
                raise GitFailed(git.failure("git push", pushed.text, call.secrets))
            errors = 0  # lost the race: someone landed first; fetch and try again
            if tries >= MAX_TRIES:
                return Stuck(
                    "error",
                    tries,
                    took(),
                    tip=tip,
                    output=f"gave up after {tries} tries: {plan.onto} kept moving",
                )
        except GitFailed as error:
            errors += 1
            if errors >= MAX_ERRORS or tries >= MAX_TRIES:
                return Stuck("error", tries, took(), tip=tip, output=error.message)
            await asyncio.sleep(retry_pause * errors)


class TaskGit:
    """One executor's way of doing the steps above: credentials (``credentials_ref`` names a
    variable of ``env``; it reaches git as a header at exec time only), the time each git
    operation has, how ``verify`` runs (``pass_env`` variables, ``verify_timeout``), the secrets
    to mask."""

    def __init__(
        self,
        *,
        env: Mapping[str, str],
        secrets: list[str],
        git_timeout: float,
        verify_timeout: float,
        pass_env: Iterable[str] = (),
    ) -> None:
        self.env = env
        self.secrets = secrets  # shared with the executor: tokens learnt later are masked too
        self.git_timeout = git_timeout
        self.verify_timeout = verify_timeout
        self.pass_env = tuple(pass_env)

    def call(self, plan: WorkPlan) -> GitCall:
        token = checkouts.credentials(plan.credentials_ref, self.env)
        return GitCall.within(self.git_timeout, token, self.secrets, plan.identity)

    def verify(self, plan: WorkPlan) -> Verify | None:
        if not plan.verify:
            return None
        env = {name: self.env[name] for name in self.pass_env if name in self.env}
        env.update(SWARM_SWARM_ID=plan.swarm, SWARM_TASK_ID=plan.task, SWARM_PROJECT=plan.project)
        return Verify(plan.verify, env, self.verify_timeout, tuple(self.secrets))

    async def start(self, sandbox: Sandbox, plan: WorkPlan) -> str:
        return await start(sandbox, plan, self.call(plan))

    async def keep(self, sandbox: Sandbox, plan: WorkPlan, base: str, ran: bool) -> ev.Work:
        """Commit and push what the run left; the ``Work`` for its result event (``error``
        says why it could not be kept)."""
        push = plan.mode in ("integrate", "branch")
        try:
            head, pushed = await keep(sandbox, plan, self.call(plan), push=push)
        except GitFailed as error:
            return workplan.work(plan, base, base, pushed=False, ran=ran, error=error.message)
        if head == base:  # nothing to push or land
            return workplan.work(plan, base, head, pushed=False, ran=ran)
        return workplan.work(plan, base, head, pushed=pushed, ran=ran)

    async def land(self, sandbox: Sandbox, plan: WorkPlan, base: str, head: str) -> Landed | Stuck:
        try:
            return await land(sandbox, plan, base, head, lambda: self.call(plan), self.verify(plan))
        except GitFailed as error:  # the credentials themselves are refused
            return Stuck("error", 1, 0.0, output=error.message)
