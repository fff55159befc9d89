"""The supervisor of ``swarm up`` with real child processes: a crashing child is started again at
once the first time, then with a doubling backoff while it keeps crashing, and at once again
after it stayed up a while. What it did is read from its own notices, never from timings."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from waiting import until

from cli.supervisor import Child, RestartPolicy, Supervisor

# each life appends a line to ``runs``; what it does depends on how many lives came before
SCRIPT = """
import pathlib, sys, time
runs = pathlib.Path(sys.argv[1])
before = len(runs.read_text().splitlines()) if runs.exists() else 0
with runs.open("a") as out:
    out.write("run\\n")
plan = sys.argv[2].split(",")
what = plan[before] if before < len(plan) else plan[-1]
if what == "crash":
    sys.exit(3)
time.sleep(float(what))
sys.exit(3)
"""


async def supervise(tmp_path: Path, plan: str, notices: int, policy: RestartPolicy) -> list[str]:
    """Run one child living by ``plan`` (per life: ``crash`` at once, or seconds to stay up
    before crashing) until ``notices`` deaths were noticed; return the notices."""
    warned: list[str] = []
    child = Child(
        name="worker",
        argv=[sys.executable, "-c", SCRIPT, str(tmp_path / "runs"), plan],
        env=dict(os.environ),
        log_path=tmp_path / "worker.log",
    )
    supervisor = Supervisor([child], warn=warned.append, restarts=policy, stop_timeout=5)
    running = asyncio.create_task(supervisor.run())
    try:
        await until(lambda: len(warned) >= notices, timeout=60, what=f"{notices} deaths")
    finally:
        supervisor.stop()
        await running
    assert child.pid is None  # stopped with the supervisor
    return warned[:notices]


def restart_words(notices: list[str]) -> list[str]:
    return [notice.split("; ", 1)[1].split(" — ", 1)[0] for notice in notices]


async def test_a_crashing_child_is_restarted_at_once_then_with_a_doubling_backoff(
    tmp_path: Path,
) -> None:
    policy = RestartPolicy(first=0.05, ceiling=0.2, stable_after=60)
    notices = await supervise(tmp_path, "crash", 5, policy)
    assert all("worker (pid " in n and "exited with code 3" in n for n in notices)
    assert restart_words(notices) == [
        "restarting now",
        "restarting in 0.05s",
        "restarting in 0.1s",
        "restarting in 0.2s",
        "restarting in 0.2s",
    ]


async def test_a_child_that_stayed_up_a_while_is_restarted_at_once_again(tmp_path: Path) -> None:
    policy = RestartPolicy(first=0.05, ceiling=1.0, stable_after=4.0)
    # lives: crash, crash, up 6 s then crash (a stable run), crash
    notices = await supervise(tmp_path, "crash,crash,6,crash,crash", 4, policy)
    assert restart_words(notices) == [
        "restarting now",
        "restarting in 0.05s",
        "restarting now",
        "restarting in 0.05s",
    ]
