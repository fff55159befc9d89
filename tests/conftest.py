"""Test fixtures: a real nats-server per test session (from the wheel, free port, temp store).

- ``NATS_URL`` set in the environment: use that server instead (it must have JetStream).
- ``SWARM_TEST_DOCKER=1`` and a Docker engine: a testcontainers NATS container instead.
- ``nats_factory``: a private server a test may kill -9 and restart on the same store.
- ``nats_cluster``: three private nodes routed to each other (a test provisions R3 streams).
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import structlog

from services.bus.connection import NatsOptions
from services.bus.embedded import EmbeddedNats, local_cluster
from services.bus.service import Bus


def _docker_nats() -> Iterator[str]:
    from testcontainers.nats import NatsContainer

    with NatsContainer(image="nats:2.11", jetstream=True) as container:
        yield container.nats_uri()


@pytest.fixture(autouse=True)
def service_logs_apart_from_cli_output() -> None:
    """The services a test runs in its own process log with structlog's defaults, which print
    to whatever ``sys.stdout`` is at that moment. During a CLI call under ``capsys`` that was the
    CLI's own output: a ``snapshot.saved`` line came before the task id ``swarm task`` printed,
    and the test read the two lines as the id. They print to the process's standard output
    instead, which pytest still captures per test (its file descriptor), and ``capsys`` does
    not. Set again for each test: a test may reset structlog's configuration."""
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.__stdout__))


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.environ.get("NATS_URL"):
        yield os.environ["NATS_URL"]
        return
    if os.environ.get("SWARM_TEST_DOCKER") == "1":
        yield from _docker_nats()
        return
    server = EmbeddedNats(tmp_path_factory.mktemp("nats-session")).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def nats_factory(tmp_path: Path) -> Iterator[type]:
    """Start private servers: ``nats_factory()`` -> a started ``EmbeddedNats``."""
    started: list[EmbeddedNats] = []

    def start(**kwargs) -> EmbeddedNats:
        server = EmbeddedNats(tmp_path / f"nats-{len(started)}", **kwargs).start()
        started.append(server)
        return server

    yield start  # type: ignore[misc]
    for server in started:
        server.kill()


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[list[EmbeddedNats]]:
    """Three private nodes of one cluster, started; killed at the end."""
    nodes = local_cluster(tmp_path, "test")
    try:
        for node in nodes:
            node.start()
        yield nodes
    finally:
        for node in nodes:
            node.kill()


@pytest.fixture
async def bus(nats_url: str) -> AsyncIterator[Bus]:
    connected = await Bus.connect(NatsOptions.from_env(nats_url), name="test")
    await connected.provision()
    try:
        yield connected
    finally:
        await connected.close()


@pytest.fixture
def swarm_id() -> str:
    """A swarm of this test's own, so tests sharing the session server never meet."""
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def claude_bin() -> Path:
    """The real Claude Code CLI, pinned and installed once (``tests/claude_cli.py``)."""
    import claude_cli

    return claude_cli.install()
