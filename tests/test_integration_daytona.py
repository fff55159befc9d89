"""Work landing from a Daytona sandbox: the same branch per task, commit, push and landing as a
local sandbox, through the real ``daytona`` SDK against the fake (``tests/fake_daytona.py``: its
sandboxes are directories, its commands real processes, so git is real)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import executor_support
import pytest
from executor_support import StartExecutor, create_and_claim, finished, until
from fake_daytona import FakeDaytona
from git_support import Remote, git

from schemas import events as ev
from services.bus.projection import Projection
from services.bus.service import Bus

watch = executor_support.watch  # fixtures
start_executor = executor_support.start_executor


@pytest.fixture
async def fake() -> AsyncIterator[FakeDaytona]:
    server = await FakeDaytona().start()
    yield server
    await server.stop()


async def append(bus: Bus, watch: Projection, event: ev.Event) -> None:
    version = watch.board.version(event.swarm, event.aggregate, event.id)
    await watch.wait_for(await bus.events.append(event, expected_seq=version))


async def test_a_tasks_work_lands_from_a_daytona_sandbox_and_the_next_task_starts_with_it(
    bus: Bus,
    watch: Projection,
    swarm_id: str,
    start_executor: StartExecutor,
    fake: FakeDaytona,
    tmp_path: Path,
) -> None:
    remote = Remote(tmp_path / "git")
    env = {"DAYTONA_API_KEY": fake.api_key, "DAYTONA_API_URL": fake.api_url}
    await start_executor(env=env, backend="daytona", daytona={"retries": 3, "retry_backoff": 0.01})
    now = time.time()
    created = ev.ProjectCreated(swarm=swarm_id, id="p1", time=now, name="p1", git_url=remote.url)
    await append(bus, watch, created)
    await append(bus, watch, ev.ProjectAttached(swarm=swarm_id, id="p1", time=now))
    await append(bus, watch, ev.ProjectInitRequested(swarm=swarm_id, id="p1", time=now))

    first, _ = await create_and_claim(bus, watch, swarm_id, prompt="echo sandboxed > d.txt")
    task = await finished(watch, swarm_id, first)
    assert task.status == "completed", task.reason

    def landed() -> bool:
        found = watch.board.task(swarm_id, first)
        return (
            found is not None
            and found.integration is not None
            and (found.integration.state == "landed")
        )

    await until(landed, timeout=30, what=f"{first}'s work to land")
    done = watch.board.task(swarm_id, first)
    work = done.integration if done is not None else None
    assert work is not None and work.base == remote.seed
    assert remote.tip() == work.landed and remote.show("d.txt") == "sandboxed"
    assert remote.trailers(first) == [work.landed]
    author = git("--git-dir", str(remote.bare), "log", "-1", "--format=%ae")
    assert author == "qa-agent@swarm.local"

    second, _ = await create_and_claim(bus, watch, swarm_id, prompt="cat d.txt")
    after = await finished(watch, swarm_id, second)
    assert after.status == "completed" and after.outcome is not None
    assert after.outcome.result == "sandboxed\n"
    assert after.integration is not None and after.integration.base == work.landed
