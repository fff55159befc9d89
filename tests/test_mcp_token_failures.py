"""Wrong bearer tokens at the MCP server (``services.mcp.access.LimitedAttempts``), in-process
against the real NATS fixture: past the limit every token from that address, the right one too,
answers 429 with ``Retry-After`` until the window passes; other addresses, requests without a
token and ``/health`` are unaffected; a proxy header does not change the address; no token is
ever logged. The count itself: tests/test_token_failures.py."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from gateway_support import Clock, assert_limited_once, running, wrong_tokens_counted
from structlog.testing import capture_logs

from schemas.token_failures import Limits
from services.bus.connection import NatsOptions
from services.bus.embedded import free_port
from services.mcp.service import McpServer

TOKEN = "mcp-limit-test-token-0123456789"
LIST_TOOLS = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
ACCEPT = {"Accept": "application/json, text/event-stream"}


@pytest.fixture(scope="module")
async def mcp(nats_url: str) -> AsyncIterator[McpServer]:
    server = McpServer(nats=NatsOptions.from_env(nats_url), port=free_port(), token=TOKEN)
    async with running(server) as started:
        yield started


@pytest.fixture
def clock(mcp: McpServer) -> Iterator[Clock]:
    """No wrong tokens counted yet, at most 3 per 60 s, on a clock the test moves."""
    assert mcp.attempts is not None
    with wrong_tokens_counted(mcp.attempts, Limits(failures=3, window=60)) as moved:
        yield moved


def from_address(address: str) -> aiohttp.ClientSession:
    """A client whose requests come from ``address`` (any 127.x.y.z reaches the server)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0)))


async def list_tools(
    http: aiohttp.ClientSession, mcp: McpServer, token: str | None, **headers: str
) -> tuple[aiohttp.ClientResponse, Any]:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with http.post(mcp.url, json=LIST_TOOLS, headers={**ACCEPT, **headers}) as response:
        text = await response.text()
        return response, (json.loads(text) if text else None)


async def test_after_too_many_wrong_tokens_the_mcp_endpoint_answers_429_until_the_window_passes(
    mcp: McpServer, clock: Clock
) -> None:
    with capture_logs() as logs:
        async with from_address("127.0.0.2") as guesser:
            for guess in ("guess-1", "guess-2", "guess-3"):
                response, _ = await list_tools(guesser, mcp, guess)
                assert response.status == 401

            response, answer = await list_tools(guesser, mcp, TOKEN)  # right, but too late
            assert response.status == 429 and response.headers["Retry-After"] == "60"
            assert answer["error"]["code"] == "too_many_requests"
            # no token: no attempt, not refused here (the SDK's 401), and not counted
            response, _ = await list_tools(guesser, mcp, None)
            assert response.status == 401
            async with guesser.get(mcp.url.removesuffix("/mcp") + "/health") as health:
                assert health.status == 200

            async with from_address("127.0.0.1") as other:  # another address: not affected
                response, answer = await list_tools(other, mcp, TOKEN)
                assert response.status == 200, answer
                assert answer["result"]["tools"]

            clock.now += 59.5
            response, _ = await list_tools(guesser, mcp, TOKEN)
            assert response.status == 429 and response.headers["Retry-After"] == "1"
            clock.now += 0.5
            response, answer = await list_tools(guesser, mcp, TOKEN)
            assert response.status == 200, answer

    assert_limited_once(logs, "127.0.0.2", TOKEN, "guess-")


async def test_a_forwarded_for_header_does_not_change_the_counted_address(
    mcp: McpServer, clock: Clock
) -> None:
    async with from_address("127.0.0.1") as guesser:  # uvicorn trusts loopback proxies by default
        for n in range(3):
            forwarded = {"X-Forwarded-For": f"203.0.113.{n}", "X-Real-IP": f"203.0.113.{n}"}
            response, _ = await list_tools(guesser, mcp, f"guess-{n}", **forwarded)
            assert response.status == 401
        response, _ = await list_tools(guesser, mcp, TOKEN, **{"X-Forwarded-For": "203.0.113.9"})
        assert response.status == 429
    assert mcp.attempts is not None
    assert mcp.attempts.failures.retry_after("127.0.0.1", clock.now) == 60
