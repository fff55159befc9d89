"""The sandbox contract: what every ``Sandbox`` backend does alike, as abstract test cases reused
per implementation (``test_sandbox_contract.py``: local, the fake Daytona, a real Daytona).

A concrete case provides the ``sandbox`` fixture: a ready sandbox whose backend was given
``SCRUBBED`` in its source environment. Everything a test needs is made through the sandbox
itself (files, processes, even the git remote: a bare repository inside the sandbox), so the same
tests run against a sandbox on this machine or in the cloud. Commands use ``sh`` only.
"""

from __future__ import annotations

import asyncio
import shlex
from typing import Any

import pytest

from services.executor.git import GitFailed
from services.executor.sandboxes import ExecResult, GitCall, Sandbox

SCRUBBED = ("SWARM_CONTRACT_CANARY", "canary-4f1e2d3c")  # in the executor's env, never a command's
IDENTITY = ["-c", "user.name=Contract", "-c", "user.email=contract@example.com"]


class Output:
    """What a command wrote, per stream, with an event per awaited text."""

    def __init__(self) -> None:
        self.chunks: list[tuple[str, bytes]] = []
        self._waiting: dict[str, asyncio.Event] = {}

    def __call__(self, stream: str, data: bytes) -> None:
        self.chunks.append((stream, data))
        for text, event in self._waiting.items():
            if text in self.text():
                event.set()

    def text(self, stream: str = "stdout") -> str:
        return b"".join(d for s, d in self.chunks if s == stream).decode("utf-8", "replace")

    async def wait_for(self, text: str, timeout: float = 60) -> None:
        event = self._waiting.setdefault(text, asyncio.Event())
        if text in self.text():
            return
        await asyncio.wait_for(event.wait(), timeout)


async def run(sandbox: Sandbox, script: str, **options: Any) -> tuple[ExecResult, Output]:
    output = Output()
    result = await sandbox.exec(["sh", "-c", script], on_output=output, **options)
    return result, output


async def shell(sandbox: Sandbox, script: str) -> str:
    """Run ``script``; it must succeed; its output (stdout and stderr)."""
    result, output = await run(sandbox, script, merge_stderr=True, timeout=120)
    assert result.exit_code == 0, f"{script!r} failed ({result}): {output.text()}"
    return output.text()


async def gone(sandbox: Sandbox, pid_file: str, timeout: float = 20) -> bool:
    """Whether the process whose pid is in ``pid_file`` is gone (waited for up to ``timeout``)."""
    script = (
        f"i=0; while kill -0 $(cat {pid_file}) 2>/dev/null; do "
        f"i=$((i+1)); [ $i -gt {int(timeout * 10)} ] && exit 1; sleep 0.1; done"
    )
    result, _ = await run(sandbox, script, timeout=timeout + 30)
    return result.exit_code == 0


class SandboxContract:
    """Abstract: a subclass provides the ``sandbox`` fixture."""

    # --- exec -----------------------------------------------------------------------------------

    async def test_output_and_exit_code(self, sandbox: Sandbox) -> None:
        result, output = await run(sandbox, "echo one; echo two >&2; exit 4")
        assert result.exit_code == 4 and not result.timed_out and not result.cancelled
        assert (output.text(), output.text("stderr")) == ("one\n", "two\n")

    async def test_merged_output_keeps_its_order_on_stdout(self, sandbox: Sandbox) -> None:
        result, output = await run(sandbox, "echo a; echo b >&2; echo c", merge_stderr=True)
        assert result.exit_code == 0 and output.text() == "a\nb\nc\n"
        assert {stream for stream, _ in output.chunks} == {"stdout"}

    async def test_output_streams_while_the_command_runs(self, sandbox: Sandbox) -> None:
        output = Output()
        script = "echo first; while [ ! -e go ]; do sleep 0.05; done; echo second"
        running = asyncio.create_task(
            sandbox.exec(["sh", "-c", script], on_output=output, timeout=120)
        )
        await output.wait_for("first")
        assert not running.done() and "second" not in output.text()
        await shell(sandbox, "touch go")
        result = await running
        assert result.exit_code == 0 and output.text() == "first\nsecond\n"

    async def test_a_timeout_kills_the_command_and_what_it_started(self, sandbox: Sandbox) -> None:
        script = "sleep 300 & echo $! > child.pid; echo started; wait"
        result, output = await run(sandbox, script, timeout=2)
        assert result.timed_out and not result.cancelled and result.exit_code is None
        assert "started" in output.text()
        assert await gone(sandbox, "child.pid")

    async def test_a_cancel_kills_the_command_and_says_so(self, sandbox: Sandbox) -> None:
        output = Output()
        cancel = asyncio.Event()
        script = "sleep 300 & echo $! > child.pid; echo ready; wait"
        running = asyncio.create_task(
            sandbox.exec(["sh", "-c", script], on_output=output, cancel=cancel, timeout=120)
        )
        await output.wait_for("ready")
        cancel.set()
        result = await asyncio.wait_for(running, 60)
        assert result.cancelled and not result.timed_out and result.exit_code is None
        assert await gone(sandbox, "child.pid")

    async def test_a_cancelled_caller_kills_the_command(self, sandbox: Sandbox) -> None:
        output = Output()
        script = "sleep 300 & echo $! > child.pid; echo ready; wait"
        running = asyncio.create_task(
            sandbox.exec(["sh", "-c", script], on_output=output, timeout=120)
        )
        await output.wait_for("ready")
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        assert await gone(sandbox, "child.pid")

    async def test_stdin_is_what_is_given_or_nothing(self, sandbox: Sandbox) -> None:
        result, output = await run(sandbox, "cat; echo end", stdin=b"fed\nthrough stdin\n")
        assert result.exit_code == 0 and output.text() == "fed\nthrough stdin\nend\n"
        result, output = await run(sandbox, "cat; echo end", timeout=60)  # no stdin: no wait
        assert result.exit_code == 0 and output.text() == "end\n"

    async def test_commands_start_in_the_working_directory_or_below_it(
        self, sandbox: Sandbox
    ) -> None:
        assert await shell(sandbox, "pwd") == f"{sandbox.workdir}\n"
        await shell(sandbox, "mkdir -p sub/dir")
        result, output = await run(sandbox, "pwd", cwd="sub/dir")
        assert result.exit_code == 0 and output.text() == f"{sandbox.workdir}/sub/dir\n"
        assert await sandbox.path_exists("sub/dir") and not await sandbox.path_exists("nope")

    async def test_the_environment_is_scrubbed_and_given_values_arrive_intact(
        self, sandbox: Sandbox
    ) -> None:
        given = {"GIVEN": 'it\'s "quoted" $NOT_EXPANDED `nor this`', "ALSO": "two words"}
        result, output = await run(sandbox, "env", env=given)
        assert result.exit_code == 0
        seen = dict(line.split("=", 1) for line in output.text().splitlines() if "=" in line)
        assert SCRUBBED[0] not in seen and SCRUBBED[1] not in output.text()
        assert seen["GIVEN"] == given["GIVEN"] and seen["ALSO"] == "two words"
        assert seen.get("HOME") and seen.get("PATH")

    # --- git ------------------------------------------------------------------------------------

    @pytest.fixture
    async def remote(self, sandbox: Sandbox) -> str:
        """A bare repository inside the sandbox with ``main`` and ``dev``; its URL."""
        identity = " ".join(IDENTITY)
        await shell(
            sandbox,
            f"git init -q --bare -b main remote.git && git init -q -b main seed && cd seed && "
            f"echo hello > README && git add README && git {identity} commit -qm seed && "
            f"git remote add origin ../remote.git && git push -q origin main && "
            f"git checkout -qb dev && echo dev > DEV && git add DEV && "
            f"git {identity} commit -qm dev && git push -q origin dev && git checkout -q main",
        )
        return f"file://{sandbox.workdir}/remote.git"

    async def push(self, sandbox: Sandbox, name: str, branch: str = "main") -> str:
        """A new commit on ``branch`` of the remote; its id."""
        identity = " ".join(IDENTITY)
        out = await shell(
            sandbox,
            f"cd seed && git checkout -q {branch} && echo {shlex.quote(name)} > {name} && "
            f"git add {name} && git {identity} commit -qm {name} && git push -q origin {branch} "
            f"&& git rev-parse HEAD && git checkout -q main",
        )
        return out.strip().splitlines()[-1]

    async def test_git_clone_and_status(self, sandbox: Sandbox, remote: str) -> None:
        call = GitCall.within(60)
        await sandbox.git_clone(remote, "main", "project", call)
        seed = (await shell(sandbox, "git -C seed rev-parse main")).strip()
        status = await sandbox.git_status("main", "project", call)
        assert (status.commit, status.branch, status.dirty) == (seed, "main", False)
        assert (status.ahead, status.behind) == (0, 0)
        assert not await sandbox.path_exists("project.partial")

    async def test_git_checkout_of_another_branch_after_a_clone(
        self, sandbox: Sandbox, remote: str
    ) -> None:
        call = GitCall.within(60)
        await sandbox.git_clone(remote, "main", "project", call)
        await sandbox.git_checkout(remote, "dev", "project", call)
        status = await sandbox.git_status("dev", "project", call)
        assert status.branch == "dev" and await sandbox.path_exists("project/DEV")
        await sandbox.git_checkout(remote, "main", "project", call)
        assert (await sandbox.git_status("main", "project", call)).branch == "main"

    async def test_git_pull_fast_forwards_and_status_counts(
        self, sandbox: Sandbox, remote: str
    ) -> None:
        call = GitCall.within(60)
        await sandbox.git_clone(remote, "main", "project", call)
        newer = await self.push(sandbox, "NEWS")
        await shell(sandbox, "git -C project fetch -q origin")
        assert (await sandbox.git_status("main", "project", call)).behind == 1
        await sandbox.git_pull("project", call)
        status = await sandbox.git_status("main", "project", call)
        assert (status.commit, status.behind, status.ahead) == (newer, 0, 0)

    async def test_git_status_sees_changes_and_a_detached_head(
        self, sandbox: Sandbox, remote: str
    ) -> None:
        call = GitCall.within(60)
        await sandbox.git_clone(remote, "main", "project", call)
        await shell(sandbox, "echo scratch > project/untracked.txt")
        assert (await sandbox.git_status("main", "project", call)).dirty
        await shell(sandbox, "rm project/untracked.txt && git -C project checkout -q --detach")
        status = await sandbox.git_status("main", "project", call)
        assert status.branch is None and not status.dirty

    async def test_git_failures_say_what_git_said(self, sandbox: Sandbox, remote: str) -> None:
        call = GitCall.within(60)
        with pytest.raises(GitFailed) as failed:
            await sandbox.git_clone(remote, "no-such-branch", "project", call)
        assert failed.value.message.startswith("git clone failed")
        assert not await sandbox.path_exists("project")
        await sandbox.git_clone(remote, "main", "project", call)  # the sandbox is still fine

    async def test_git_run_commits_as_the_identity_and_pushes_to_a_named_ref(
        self, sandbox: Sandbox, remote: str
    ) -> None:
        call = GitCall.within(60, identity=("Agent", "agent@swarm.local"))
        assert await sandbox.git_default_branch(remote, call) == "main"
        await sandbox.git_clone(remote, "main", "project", call)
        await shell(sandbox, "echo new > project/new.txt")
        await sandbox.git_run("project", ["add", "--all"], "git add", call)
        staged = await sandbox.git_run(
            "project", ["diff", "--cached", "--quiet"], "git diff", call, ok=(0, 1)
        )
        assert staged.code == 1  # an exit code to branch on, not a failure
        await sandbox.git_run("project", ["commit", "-q", "-m", "work"], "git commit", call)
        await sandbox.git_run(
            "project",
            ["push", "-q", "--force", "origin", "HEAD:refs/heads/swarm/t1"],
            "git push",
            call,
        )
        author = await shell(sandbox, "git --git-dir remote.git log -1 --format=%ae swarm/t1")
        assert author.strip() == "agent@swarm.local"
        with pytest.raises(GitFailed) as failed:
            await sandbox.git_run(
                "project", ["rev-parse", "--verify", "nope"], "git rev-parse", call
            )
        assert failed.value.message.startswith("git rev-parse failed")
