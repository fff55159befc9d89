"""The local sandbox with real processes: streaming, timeouts, cancels, scrubbed environment."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from schemas.errors import Invalid
from services.executor.sandboxes import Sandbox, backend
from services.executor.sandboxes.local import LocalBackend, LocalSandbox


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


async def gone(pids: list[int], within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while any(alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


class Collected:
    """Output as the sandbox hands it over, with an event per awaited marker."""

    def __init__(self) -> None:
        self.chunks: list[tuple[str, bytes]] = []
        self._markers: dict[bytes, asyncio.Event] = {}

    def marker(self, text: str) -> asyncio.Event:
        return self._markers.setdefault(text.encode(), asyncio.Event())

    def __call__(self, stream: str, data: bytes) -> None:
        self.chunks.append((stream, data))
        for marker, event in self._markers.items():
            if marker in self.text.encode():
                event.set()

    @property
    def text(self) -> str:
        return b"".join(data for _, data in self.chunks).decode()


@pytest.fixture
async def sandbox(tmp_path: Path) -> LocalSandbox:
    made = LocalBackend(tmp_path / "agents", source_env={"PATH": "/usr/bin:/bin"}, kill_grace=0.5)
    return await made.create("s", "qa-agent")


async def test_output_streams_in_order_while_the_command_runs(sandbox: LocalSandbox) -> None:
    output = Collected()
    first = output.marker("first")
    script = "echo first; while [ ! -e go ]; do sleep 0.01; done; echo second >&2; echo third"
    running = asyncio.create_task(
        sandbox.exec(["bash", "-c", script], on_output=output, merge_stderr=True, timeout=20)
    )
    await asyncio.wait_for(first.wait(), 10)
    assert "second" not in output.text  # it really is still running
    (Path(sandbox.workdir) / "go").touch()
    result = await running
    assert result.exit_code == 0 and not result.timed_out and not result.cancelled
    assert output.text == "first\nsecond\nthird\n"
    assert {stream for stream, _ in output.chunks} == {"stdout"}


async def test_stderr_arrives_apart_when_not_merged(sandbox: LocalSandbox) -> None:
    output = Collected()
    result = await sandbox.exec(
        ["bash", "-c", "echo out; echo err >&2; exit 4"], on_output=output, timeout=20
    )
    assert result.exit_code == 4
    by_stream = {s: b"".join(d for n, d in output.chunks if n == s) for s in ("stdout", "stderr")}
    assert by_stream == {"stdout": b"out\n", "stderr": b"err\n"}


async def test_timeout_kills_the_whole_group_including_grandchildren(
    sandbox: LocalSandbox,
) -> None:
    script = (
        "sleep 300 & echo $! > child.pid; "
        "bash -c 'sleep 300 & echo $! > grandchild.pid; wait' & "
        "wait"
    )
    output = Collected()
    started = time.monotonic()
    result = await sandbox.exec(["bash", "-c", script], on_output=output, timeout=1.0)
    assert result.timed_out and not result.cancelled and result.exit_code is None
    assert time.monotonic() - started < 10
    workdir = Path(sandbox.workdir)
    pids = [int((workdir / name).read_text()) for name in ("child.pid", "grandchild.pid")]
    assert await gone(pids)


async def test_cancel_kills_the_command_and_says_so(sandbox: LocalSandbox) -> None:
    output = Collected()
    ready = output.marker("ready")
    cancel = asyncio.Event()
    script = "sleep 300 & echo $! > child.pid; echo ready; wait"
    running = asyncio.create_task(
        sandbox.exec(["bash", "-c", script], on_output=output, cancel=cancel, timeout=60)
    )
    await asyncio.wait_for(ready.wait(), 10)
    cancel.set()
    result = await asyncio.wait_for(running, 10)
    assert result.cancelled and not result.timed_out and result.exit_code is None
    assert await gone([int((Path(sandbox.workdir) / "child.pid").read_text())])


async def test_cancelling_the_awaiting_task_kills_the_command(sandbox: LocalSandbox) -> None:
    output = Collected()
    ready = output.marker("ready")
    script = "sleep 300 & echo $! > child.pid; echo ready; wait"
    running = asyncio.create_task(
        sandbox.exec(["bash", "-c", script], on_output=output, timeout=60)
    )
    await asyncio.wait_for(ready.wait(), 10)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert await gone([int((Path(sandbox.workdir) / "child.pid").read_text())])


async def test_leftovers_of_a_finished_command_are_killed_and_do_not_hold_it(
    sandbox: LocalSandbox,
) -> None:
    output = Collected()
    started = time.monotonic()
    result = await sandbox.exec(
        ["bash", "-c", "sleep 300 & echo $! > left.pid; echo done"], on_output=output, timeout=60
    )
    assert result.exit_code == 0 and output.text == "done\n"
    assert time.monotonic() - started < 10
    assert await gone([int((Path(sandbox.workdir) / "left.pid").read_text())])


async def test_environment_is_scrubbed_to_the_basics_and_what_is_given(tmp_path: Path) -> None:
    source = {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "SWARM_CANARY_SECRET": "canary-value-123",
        "ANTHROPIC_API_KEY": "sk-not-given",
    }
    made = LocalBackend(tmp_path / "agents", source_env=source)
    sandbox = await made.create("s", "frontend-agent")
    output = Collected()
    result = await sandbox.exec(
        ["bash", "-c", "env; pwd"],
        on_output=output,
        env={"CLAUDE_CODE_OAUTH_TOKEN": "given-token"},
        timeout=20,
    )
    assert result.exit_code == 0
    lines = output.text.splitlines()
    env = dict(line.split("=", 1) for line in lines[:-1] if "=" in line)
    assert "SWARM_CANARY_SECRET" not in env
    assert "canary-value-123" not in output.text
    assert "ANTHROPIC_API_KEY" not in env  # in the executor's environment, but not given
    assert env["CLAUDE_CODE_OAUTH_TOKEN"] == "given-token"
    assert env["HOME"] == sandbox.workdir
    assert env["PATH"] == "/usr/bin:/bin"
    assert lines[-1] == sandbox.workdir == str((tmp_path / "agents" / "frontend-agent").resolve())


async def test_stdin_reaches_the_command(sandbox: LocalSandbox) -> None:
    output = Collected()
    result = await sandbox.exec(
        ["bash", "-s"], on_output=output, stdin=b"echo from-stdin\n", timeout=20
    )
    assert result.exit_code == 0 and output.text == "from-stdin\n"


async def test_a_command_that_cannot_start_raises(sandbox: LocalSandbox) -> None:
    with pytest.raises(OSError):
        await sandbox.exec(["/no/such/binary"], on_output=Collected(), timeout=5)


async def test_each_agent_gets_its_own_directory_and_bad_names_are_refused(
    tmp_path: Path,
) -> None:
    made = backend("local", root=tmp_path / "agents")
    one = await made.create("s", "frontend-agent")
    again = await made.create("s", "frontend-agent")
    other = await made.create("s", "backend-agent")
    assert one.workdir == again.workdir != other.workdir
    assert await asyncio.to_thread(Path(one.workdir).is_dir)
    with pytest.raises(Invalid):
        await made.create("s", "../escape")
    with pytest.raises(Invalid):
        backend("nope")
    await one.destroy()
    assert not await asyncio.to_thread(Path(one.workdir).exists)


async def test_a_command_can_start_in_a_directory_below_the_working_directory(
    sandbox: LocalSandbox,
) -> None:
    (Path(sandbox.workdir) / "project").mkdir()
    output = Collected()
    result = await sandbox.exec(["pwd"], on_output=output, cwd="project", timeout=20)
    assert result.exit_code == 0
    assert output.text == f"{Path(sandbox.workdir) / 'project'}\n"


async def test_path_exists_answers_the_same_through_exec_and_locally(
    sandbox: LocalSandbox,
) -> None:
    (Path(sandbox.workdir) / "project" / ".git").mkdir(parents=True)
    for path, expected in (("project/.git", True), ("project/nothing", False)):
        assert await sandbox.path_exists(path) is expected
        assert await Sandbox.path_exists(sandbox, path) is expected  # the exec-based default
