"""The sandbox contract (``sandbox_contract.py``) run against each backend:

- ``local``: a directory on this machine, real processes;
- ``daytona`` against the fake Daytona (the real SDK; the fake as the server line of the installed
  SDK, so ``./dev test-oss`` runs it as an open-source v0.190 server), and once more in a sandbox
  whose image has no bash;
- ``daytona`` against a real Daytona: only with ``DAYTONA_API_KEY`` set (``DAYTONA_API_URL``,
  ``DAYTONA_TARGET`` and ``DAYTONA_TEST_SNAPSHOT`` / ``DAYTONA_TEST_IMAGE`` as they apply; the
  sandbox needs git), skipped otherwise.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fake_daytona import FakeDaytona
from sandbox_contract import SCRUBBED, SandboxContract

from services.executor.sandboxes import Sandbox
from services.executor.sandboxes.daytona import DaytonaBackend
from services.executor.sandboxes.local import LocalBackend

LIVE_KEY = os.environ.get("DAYTONA_API_KEY")


class TestLocalSandbox(SandboxContract):
    @pytest.fixture
    async def sandbox(self, tmp_path: Path) -> AsyncIterator[Sandbox]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), SCRUBBED[0]: SCRUBBED[1]}
        backend = LocalBackend(tmp_path / "agents", source_env=env, kill_grace=0.5)
        yield await backend.create("contract", "qa-agent")
        await backend.close()


async def daytona_sandbox(fake: FakeDaytona) -> AsyncIterator[Sandbox]:
    env = {
        "DAYTONA_API_KEY": fake.api_key,
        "DAYTONA_API_URL": fake.api_url,
        SCRUBBED[0]: SCRUBBED[1],
    }
    backend = DaytonaBackend.configured({"retries": 3, "retry_backoff": 0.01}, source_env=env)
    try:
        sandbox = await backend.create("contract", "qa-agent")
        await sandbox.ready()
        yield sandbox
    finally:
        await backend.close()
        await fake.stop()


class TestFakeDaytonaSandbox(SandboxContract):
    @pytest.fixture
    async def sandbox(self) -> AsyncIterator[Sandbox]:
        # the fake closes a followed log 0.2 s after the command (Daytona: ~1 s, which the
        # realism tests keep): the contract is about what the sandbox does, not how fast
        async for sandbox in daytona_sandbox(await FakeDaytona(close_after_exit=0.2).start()):
            yield sandbox


class TestFakeDaytonaSandboxWithoutBash(SandboxContract):
    @pytest.fixture
    async def sandbox(self) -> AsyncIterator[Sandbox]:
        fake = FakeDaytona(close_after_exit=0.2, without_bash=True)
        async for sandbox in daytona_sandbox(await fake.start()):
            yield sandbox


@pytest.mark.skipif(not LIVE_KEY, reason="DAYTONA_API_KEY is not set: no real Daytona to test")
class TestLiveDaytonaSandbox(SandboxContract):
    @pytest.fixture
    async def sandbox(self) -> AsyncIterator[Sandbox]:
        table: dict[str, object] = {"shutdown": "delete", "auto_stop_interval": 15}
        if os.environ.get("DAYTONA_TEST_IMAGE"):
            table["image"] = os.environ["DAYTONA_TEST_IMAGE"]
        elif os.environ.get("DAYTONA_TEST_SNAPSHOT"):
            table["snapshot"] = os.environ["DAYTONA_TEST_SNAPSHOT"]
        env = {**os.environ, SCRUBBED[0]: SCRUBBED[1]}
        backend = DaytonaBackend.configured(table, source_env=env)
        sandbox = await backend.create(f"contract-{uuid.uuid4().hex[:8]}", "qa-agent")
        try:
            await sandbox.ready()
            yield sandbox
        finally:
            await backend.close()  # shutdown = delete: nothing is left behind
