"""Helpers the gateway tests share: plain HTTP calls, a server-sent-events reader, and appends
the gateway has folded in."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from cli.main import main
from schemas import events as ev
from services.bus.connection import NatsOptions
from services.bus.embedded import free_port
from services.bus.service import Bus, Service
from services.gateway.service import Gateway


async def call(
    http: aiohttp.ClientSession, method: str, path: str, **kwargs: Any
) -> tuple[int, Any]:
    async with http.request(method, path, **kwargs) as response:
        text = await response.text()
        return response.status, (json.loads(text) if text else None)


async def append(bus: Bus, gateway: Gateway, event: ev.Event) -> int:
    seq = await bus.events.append(event)
    await gateway.projection.wait_for(seq)
    return seq


async def sse_events(
    response: aiohttp.ClientResponse, stop: Callable[[dict[str, Any]], bool], timeout: float = 10
) -> list[dict[str, Any]]:
    """Parsed server-sent events up to and including the first for which ``stop`` holds."""
    found: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no stopping event within {timeout}s; got {found}")
        line = (await asyncio.wait_for(response.content.readline(), remaining)).decode()
        if line == "":
            raise AssertionError(f"stream ended early; got {found}")
        line = line.rstrip("\n")
        if line.startswith(":"):
            continue
        if line == "":
            if current:
                found.append(current)
                if stop(current):
                    return found
            current = {}
            continue
        name, _, value = line.partition(": ")
        current[name] = value


Run = Callable[..., Coroutine[Any, Any, tuple[int, str, str]]]


def cli_runner(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    *,
    url: str,
    token: str,
    swarm: str,
) -> Run:
    """``await run("status")`` -> (exit code, stdout, stderr): the CLI against ``url`` in a
    worker thread (it blocks on HTTP; the gateway keeps serving in the test's loop)."""
    monkeypatch.chdir(tmp_path)
    for name in ("SWARM_ENV_FILE", "SWARM_DATA_DIR", "SWARM_AGENT_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SWARM_API_URL", url)
    monkeypatch.setenv("SWARM_API_TOKEN", token)
    monkeypatch.setenv("SWARM_DEFAULT_ID", swarm)

    async def invoke(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = await asyncio.to_thread(main, list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke


S = TypeVar("S", bound=Service)


def gateway_on(nats_url: str, token: str) -> Gateway:
    """A gateway on a free loopback port, not started yet."""
    return Gateway(nats=NatsOptions.from_env(nats_url), port=free_port(), token=token)


@asynccontextmanager
async def running(service: S) -> AsyncIterator[S]:
    """``service`` started for the block, stopped after it (also when the block fails)."""
    await service.start()
    try:
        yield service
    finally:
        await service.stop()
