"""What Swarm adds to a claude run: the real Claude Code CLI (pinned, ``tests/claude_cli``)
against the Messages API stand-in (``tests/fake_anthropic.py``), run by a real executor on a
fresh embedded nats-server.

The executor runs the CLI through a tiny wrapper that stamps the moment the CLI starts and the
moment it has exited (bash's ``$EPOCHREALTIME``, no extra process). Per task:

- ``claim -> CLI start``: from appending the claim (the bench plays the scheduler: the task
  created beforehand) to the CLI's start: the claim reaching the executor's fold, the checkout
  check, ``task.running`` (fsynced), reading the inbox, the session, the git hooks
  (first task only), the output sink, finding the binary;
- ``CLI exit -> completed``: from the CLI's exit to ``task.completed`` in the log (its stream
  timestamp): parsing the last output, storing the full output in the object store, the
  fsynced append;
- for scale: the CLI's own run (start to exit) and the same CLI run directly, without Swarm.

Run: ``.venv/bin/python bench/claude_overhead.py [--tasks N]`` (about 5 s per task on 2 busy
cores). Numbers: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import claude_cli  # noqa: E402
from fake_anthropic import Conversation, FakeAnthropic, Reply, Script, Text, ToolUse  # noqa: E402
from waiting import until  # noqa: E402

from schemas import events as ev  # noqa: E402
from schemas import subjects  # noqa: E402
from services.bus import logs  # noqa: E402
from services.bus.connection import NatsOptions  # noqa: E402
from services.bus.embedded import EmbeddedNats  # noqa: E402
from services.bus.service import Bus  # noqa: E402
from services.executor.claude_settings import ClaudeOptions  # noqa: E402
from services.executor.config import AgentConfig, ExecutorConfig  # noqa: E402
from services.executor.service import Executor  # noqa: E402

SWARM = "bench-claude"
AGENT = "bench-agent"
KEY = "sk-ant-bench-0123456789"

WRAPPER = """#!/usr/bin/env bash
# Stamps the CLI's start and exit (no extra process: $EPOCHREALTIME), then passes its code on.
echo "start $EPOCHREALTIME" >> {stamps}
{claude} "$@"
code=$?
echo "end $EPOCHREALTIME" >> {stamps}
exit $code
"""


def conversation(mark: str) -> Conversation:
    """A short, real-looking run: a tool call, then the answer."""
    return Conversation(mark, [Reply([ToolUse("Bash", {"command": "pwd"})]), Reply([Text("ok")])])


def read_stamps(path: Path) -> list[tuple[float, float]]:
    starts: list[float] = []
    ends: list[float] = []
    for line in path.read_text().splitlines():
        kind, value = line.split()
        (starts if kind == "start" else ends).append(float(value))
    return list(zip(starts, ends, strict=True))


async def stream_times(bus: Bus, task: str) -> dict[str, float]:
    """verb -> the stream's timestamp of the task's event (server clock, when it was stored)."""
    found: dict[str, float] = {}
    for verb in ("running", "completed", "failed"):
        subject = subjects.event(SWARM, "task", task, verb)
        try:
            msg = await bus.js.get_last_msg(subjects.EVENTS_STREAM, subject)
        except Exception:
            continue
        stored = getattr(msg, "time", None)
        if stored is not None:
            found[verb] = stored.timestamp()
    return found


async def create_and_claim(
    bus: Bus, executor: Executor, title: str, prompt: str
) -> tuple[str, float]:
    """A task created, then claimed for the agent (the executor follows the log and runs it):
    (its id, the moment the claim was appended)."""
    task = f"t-{uuid.uuid4().hex[:8]}"
    assert executor.projection is not None
    created = ev.TaskCreated(swarm=SWARM, id=task, time=time.time(), title=title, prompt=prompt)
    seq = await bus.events.append(created, expected_seq=0)
    await executor.projection.wait_for(seq)
    claimed = ev.TaskClaimed(swarm=SWARM, id=task, time=time.time(), agent=AGENT, attempt=1)
    claiming = time.time()
    await bus.events.append(claimed, expected_seq=seq)
    return task, claiming


async def wait_finished(executor: Executor, task: str) -> None:
    projection = executor.projection
    assert projection is not None

    def ended() -> bool:
        view = projection.board.task(SWARM, task)
        return view is not None and view.status in ("completed", "failed", "cancelled")

    await until(ended, 300, f"task {task} to end", every=0.005)
    view = projection.board.task(SWARM, task)
    if view is None or view.status != "completed":
        raise SystemExit(f"task {task} did not complete: {view.reason if view else 'gone'}")


async def direct_runs(claude: Path, api: FakeAnthropic, count: int, work: Path) -> list[float]:
    """The same CLI run, started directly (no Swarm): its wall time."""
    times = []
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(work),
        **claude_cli.cli_env(api.url, KEY),
    }
    for _ in range(count):
        mark = f"DIRECT-{uuid.uuid4().hex[:8]}"
        api.script.conversations.append(conversation(mark))
        started = time.time()
        process = await asyncio.create_subprocess_exec(
            str(claude), "--print", "--output-format", "stream-json", "--verbose",
            "--permission-mode", "acceptEdits", "--allowedTools", "Bash(pwd *)", "--", mark,
            env=env, cwd=work, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        await process.wait()
        times.append(time.time() - started)
    return times


def summary(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"{name:<28} median {statistics.median(ms):8.1f} ms   min {min(ms):8.1f}   "
        f"max {max(ms):8.1f}   (n={len(ms)})"
    )


async def main(tasks: int, claude: Path, version: str) -> None:
    logs.configure("bench", level="warning", json=False)
    with tempfile.TemporaryDirectory(prefix="swarm-claude-bench-") as tmp:
        root = Path(tmp)
        stamps = root / "stamps"
        wrapper = root / "claude"
        wrapper.write_text(WRAPPER.format(stamps=stamps, claude=claude))
        wrapper.chmod(0o755)
        nats = EmbeddedNats(root / "nats").start()
        api = FakeAnthropic(Script([]))
        await api.start()
        bus = await Bus.connect(NatsOptions.from_env(nats.url), name="bench")
        await bus.provision()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **claude_cli.cli_env(api.url, KEY)}
        executor = Executor(
            ExecutorConfig(
                swarm=SWARM,
                executor_id="bench",
                data_dir=root / "data",
                agents=(AgentConfig(AGENT, "Bench Agent"),),
                claude=ClaudeOptions(bin=str(wrapper)),
            ),
            nats=NatsOptions.from_env(nats.url),
            env=env,
        )
        await executor.start()
        try:
            await until(lambda: AGENT in executor.hosted, 60, "the agent hosted")
            before, after, runs = [], [], []
            for index in range(tasks + 1):  # the first one warms up (hooks, caches): not counted
                mark = f"BENCH-{uuid.uuid4().hex[:8]}"
                api.script.conversations.append(conversation(mark))
                task, claimed = await create_and_claim(bus, executor, "Bench", mark)
                await wait_finished(executor, task)
                times = await stream_times(bus, task)
                start, end = read_stamps(stamps)[-1]
                if index == 0:
                    continue
                before.append(start - claimed)
                after.append(times["completed"] - end)
                runs.append(end - start)
            direct = await direct_runs(claude, api, min(tasks, 5), root)
        finally:
            await executor.stop()
            await bus.close()
            await api.stop()
            nats.stop()
    load = os.getloadavg()[0]
    print(f"claude overhead: {version}, {os.cpu_count()} cores, load average {load:.1f}")
    print(summary("claim -> CLI start", before))
    print(summary("CLI exit -> completed", after))
    print(summary("CLI run, through Swarm", runs))
    print(summary("CLI run, started directly", direct))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10)
    given = parser.parse_args()
    cli = claude_cli.install()
    said = subprocess.run([cli, "--version"], capture_output=True, text=True, check=True).stdout
    asyncio.run(main(given.tasks, cli, said.strip()))
