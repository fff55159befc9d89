"""Helpers the gateway tests share: plain HTTP calls, a server-sent-events reader, and appends
the gateway has folded in."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from cli.main import main
from schemas import events as ev
from schemas.token_failures import Limits, TokenFailures
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


class Clock:
    """A wrong-token limit's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@contextmanager
def wrong_tokens_counted(holder: Any, limits: Limits) -> Iterator[Clock]:
    """``holder`` (the gateway's ``HttpApi``, the MCP server's ``LimitedAttempts``: what has
    ``failures`` and ``monotonic``) with no wrong tokens counted yet, ``limits``, and a clock the
    test moves; as it was again after the block."""
    saved = holder.failures, holder.monotonic
    moved = Clock()
    holder.failures, holder.monotonic = TokenFailures(limits), moved
    try:
        yield moved
    finally:
        holder.failures, holder.monotonic = saved


def assert_limited_once(logs: Sequence[Mapping[str, Any]], address: str, *secrets: str) -> None:
    """One ``auth.limited`` warning, naming ``address``; none of ``secrets`` in any line."""
    limited = [line for line in logs if line["event"] == "auth.limited"]
    assert len(limited) == 1 and limited[0]["log_level"] == "warning"
    assert limited[0]["address"] == address
    said = json.dumps(logs, default=str)
    assert not [secret for secret in secrets if secret in said]


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
