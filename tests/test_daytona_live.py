"""The Daytona backend's end-to-end tests against a real Daytona: opt-in, with ``DAYTONA_API_KEY``
set (and ``DAYTONA_API_URL`` for a self-hosted server, ``DAYTONA_TARGET``, ``DAYTONA_TEST_SNAPSHOT``
or ``DAYTONA_TEST_IMAGE`` as they apply); skipped otherwise. Each test uses a swarm of its own and
deletes its sandboxes when it ends. The sandbox contract runs live too
(``test_sandbox_contract.py::TestLiveDaytonaSandbox``).

Run: ``DAYTONA_API_KEY=dtn_... ./dev test tests/test_daytona_live.py
tests/test_sandbox_contract.py`` (``./dev test-oss`` for a self-hosted open-source v0.190 server).
"""

from __future__ import annotations

import os
from typing import Any

import executor_support
import pytest
from executor_support import StartExecutor, create_and_claim
from waiting import until

from schemas import subjects
from schemas.board import FINISHED, TaskView
from services.bus.history import Feed
from services.bus.projection import Projection
from services.bus.service import Bus
from services.executor.sandboxes.daytona import DaytonaBackend
from services.executor.service import Executor

pytestmark = pytest.mark.skipif(
    not os.environ.get("DAYTONA_API_KEY"), reason="DAYTONA_API_KEY is not set: no real Daytona"
)
watch = executor_support.watch  # fixtures
start_executor = executor_support.start_executor
PATIENCE = 600.0  # a real sandbox may take minutes to be made (an image build)


def daytona_table(**more: Any) -> dict[str, Any]:
    table: dict[str, Any] = {"auto_stop_interval": 15, **more}
    if os.environ.get("DAYTONA_TEST_IMAGE"):
        table["image"] = os.environ["DAYTONA_TEST_IMAGE"]
    elif os.environ.get("DAYTONA_TEST_SNAPSHOT"):
        table["snapshot"] = os.environ["DAYTONA_TEST_SNAPSHOT"]
    return table


def daytona_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("DAYTONA_")}


async def start_live(start_executor: StartExecutor, shutdown: str = "delete") -> Executor:
    return await start_executor(
        env=daytona_env(), backend="daytona", daytona=daytona_table(shutdown=shutdown)
    )


async def finished(watch: Projection, swarm: str, task_id: str) -> TaskView:
    def done() -> bool:
        task = watch.board.task(swarm, task_id)
        return task is not None and task.status in FINISHED

    await until(done, timeout=PATIENCE, what=f"task {task_id} to finish")
    task = watch.board.task(swarm, task_id)
    assert task is not None
    return task


async def test_the_installed_sdk_fits_the_server() -> None:
    backend = DaytonaBackend.configured({}, source_env=os.environ)
    try:
        assert await backend.check() is None
    finally:
        await backend.close()


async def test_a_task_runs_in_a_real_sandbox_and_its_output_streams(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor
) -> None:
    await start_live(start_executor)
    script = "echo first; sleep 3; echo second; printf 'no newline'; exit 3"
    async with Feed(bus.js, subjects.LOGS_STREAM, subjects.log(swarm_id, "*")) as feed:
        task_id, _ = await create_and_claim(bus, watch, swarm_id, prompt=script)
        seen = ""
        while "first" not in seen:
            record = await feed.next(timeout=PATIENCE)
            assert record is not None, "no live output"
            seen += record.data.decode()
        task = await finished(watch, swarm_id, task_id)
    assert task.status == "failed" and task.outcome is not None and task.outcome.exit_code == 3
    assert "first\nsecond\nno newline" in task.outcome.result


async def test_a_timeout_stops_the_command_in_a_real_sandbox(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor
) -> None:
    await start_live(start_executor)
    task_id, _ = await create_and_claim(
        bus, watch, swarm_id, prompt="echo started; sleep 600", timeout=20.0
    )
    task = await finished(watch, swarm_id, task_id)
    assert task.status == "failed" and task.reason is not None and task.reason.startswith("timeout")
    assert task.outcome is not None and "started" in task.outcome.result


async def test_a_restarted_executor_reuses_its_agents_real_sandbox(
    bus: Bus, watch: Projection, swarm_id: str, start_executor: StartExecutor
) -> None:
    first = await start_live(start_executor, shutdown="stop")
    task_id, _ = await create_and_claim(bus, watch, swarm_id, prompt="echo kept > marker")
    assert (await finished(watch, swarm_id, task_id)).status == "completed"
    await first.stop()  # the sandbox is stopped, not deleted
    await start_live(start_executor, shutdown="delete")  # found by its labels, started again
    task_id, _ = await create_and_claim(bus, watch, swarm_id, prompt="cat marker")
    task = await finished(watch, swarm_id, task_id)
    assert task.status == "completed" and task.outcome is not None
    assert "kept" in task.outcome.result
