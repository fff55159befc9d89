"""The MCP server (``python -m services.mcp``) against real processes — NATS, gateway,
scheduler, chat, an executor — driven by the official SDK's client over streamable HTTP: it lists
the tools, creates a task that an agent runs, waits for it, reads its output and the chat; an
agent's token reaches only its own swarm and changes nothing it may not."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from processes import Cluster

from schemas.agent_tokens import make_agent_token

EXPECTED_TOOLS = {
    "status",
    "list_swarms",
    "list_agents",
    "list_tasks",
    "show_task",
    "create_task",
    "cancel_task",
    "wait_for_task",
    "task_output",
    "post_chat",
    "read_chat",
    "project_status",
}
SWARM = "mcp-main"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    shared = Cluster(tmp_path_factory.mktemp("mcp")).start_nats()
    with shared.serving(
        shared.gateway(),
        shared.scheduler("main"),
        shared.spawn("chat"),
        shared.mcp(),
        shared.executor("ex1", SWARM, ["shell-agent:qa:qa,test", "helper:backend:backend"]),
    ):
        shared.wait_agents(SWARM, {"shell-agent": "ex1", "helper": "ex1"})
        yield shared


@asynccontextmanager
async def session(cluster: Cluster, token: str | None) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        create_mcp_http_client(headers=headers) as http,
        streamable_http_client(cluster.mcp_url, http_client=http) as (read, write),
        ClientSession(read, write) as client,
    ):
        await client.initialize()
        yield client


def answer(result: Any) -> Any:
    """A successful tool call's JSON answer."""
    assert not result.is_error, result.content
    return json.loads(result.content[0].text)


def error_text(result: Any) -> str:
    assert result.is_error, result.content
    return result.content[0].text


async def test_a_client_lists_the_tools_creates_a_task_waits_for_it_and_reads_its_output(
    cluster: Cluster,
) -> None:
    async with session(cluster, cluster.token) as client:
        tools = await client.list_tools()
        assert EXPECTED_TOOLS <= {tool.name for tool in tools.tools}
        create = next(t for t in tools.tools if t.name == "create_task")
        assert {"title", "tags", "priority", "depends", "runtime"} <= set(
            create.input_schema["properties"]
        )

        first = answer(
            await client.call_tool(
                "create_task",
                {
                    "title": "say hello",
                    "prompt": "echo hello from $SWARM_AGENT_ID",
                    "tags": "qa,test",
                    "runtime": "shell",
                    "priority": "high",
                    "swarm": SWARM,
                },
            )
        )
        second = answer(
            await client.call_tool(
                "create_task",
                {
                    "title": "after hello",
                    "prompt": "true",
                    "runtime": "shell",
                    "depends": [first["id"]],
                    "swarm": SWARM,
                },
            )
        )
        assert second["depends"] == [first["id"]]

        done = answer(
            await client.call_tool(
                "wait_for_task", {"task": second["id"], "timeout": 60, "swarm": SWARM}
            )
        )
        assert (done["status"], done["finished"]) == ("completed", True), done
        output = answer(
            await client.call_tool("task_output", {"task": first["id"], "swarm": SWARM})
        )
        assert output["output"].strip() == "hello from shell-agent"

        tasks = answer(await client.call_tool("list_tasks", {"swarm": SWARM}))["tasks"]
        assert [t["id"] for t in tasks] == [first["id"], second["id"]]
        status = answer(await client.call_tool("status", {"swarm": SWARM}))
        assert status["tasks"]["completed"] == 2

        posted = answer(
            await client.call_tool(
                "post_chat", {"message": "please check @backend", "swarm": SWARM}
            )
        )
        assert (posted["author"], posted["recipients"]) == ("master", ["helper"])
        chat = answer(await client.call_tool("read_chat", {"mentions_only": True, "swarm": SWARM}))
        assert [m["text"] for m in chat["messages"]] == ["please check @backend"]

        missing = await client.call_tool("show_task", {"task": "t-nope", "swarm": SWARM})
        assert "not_found: no task t-nope in swarm mcp-main" in error_text(missing)


async def test_an_agent_token_reads_its_swarm_but_cannot_cancel_or_reach_another_swarm(
    cluster: Cluster,
) -> None:
    cluster.api.ok("POST", "/swarms", {"id": "mcp-other"})
    token = make_agent_token(cluster.token, SWARM, "helper")
    cluster.api.ok("POST", f"/swarms/{SWARM}/tasks", {"title": "later", "tags": "nobody"})
    async with session(cluster, token) as client:
        status = answer(await client.call_tool("status", {}))
        assert status["swarm"]["id"] == SWARM  # the token's swarm by default

        other = await client.call_tool("list_tasks", {"swarm": "mcp-other"})
        assert "belongs to swarm mcp-main" in error_text(other)
        swarms = await client.call_tool("list_swarms", {})
        assert "forbidden: an agent token cannot list swarms" in error_text(swarms)
        tasks = answer(await client.call_tool("list_tasks", {}))["tasks"]
        cancel = await client.call_tool("cancel_task", {"task": tasks[0]["id"]})
        assert "forbidden: an agent token cannot cancel task" in error_text(cancel)
        idle = await client.call_tool("create_task", {"title": "more work"})
        assert "only while it runs a task" in error_text(idle)

        posted = answer(await client.call_tool("post_chat", {"message": "hi @qa"}))
        assert (posted["author"], posted["author_kind"]) == ("helper", "agent")
    assert all(t["status"] != "cancelled" for t in cluster.api.ok("GET", f"/swarms/{SWARM}/tasks"))


async def test_list_tasks_answers_a_page_and_where_the_next_one_starts(cluster: Cluster) -> None:
    swarm = "mcp-pages"
    cluster.api.ok("POST", "/swarms", {"id": swarm})
    made = [
        cluster.api.ok("POST", f"/swarms/{swarm}/tasks", {"title": f"t{i}", "tags": "nobody"})["id"]
        for i in range(5)
    ]
    async with session(cluster, cluster.token) as client:
        seen: list[str] = []
        pages: list[dict[str, Any]] = []
        ask: dict[str, Any] = {"swarm": swarm, "limit": 2}
        while True:
            page = answer(await client.call_tool("list_tasks", ask))
            pages.append(page)
            seen += [t["id"] for t in page["tasks"]]
            if "next_after" not in page:
                break
            assert page["next_after"] == page["tasks"][-1]["id"]
            ask["after"] = page["next_after"]
        assert seen == made  # oldest first, each once
        assert [len(p["tasks"]) for p in pages] == [2, 2, 1]
        whole = answer(await client.call_tool("list_tasks", {"swarm": swarm}))
        assert [t["id"] for t in whole["tasks"]] == made and "next_after" not in whole
        exact = answer(await client.call_tool("list_tasks", {"swarm": swarm, "limit": 5}))
        assert len(exact["tasks"]) == 5 and "next_after" not in exact
        bad = await client.call_tool("list_tasks", {"swarm": swarm, "limit": 0})
        assert "limit" in error_text(bad)
        gone = await client.call_tool("list_tasks", {"swarm": swarm, "after": "t-nope"})
        assert "after" in error_text(gone)


async def test_without_a_valid_token_the_mcp_endpoint_answers_401(cluster: Cluster) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"Accept": "application/json, text/event-stream"}
    async with httpx2.AsyncClient() as http:
        for token in (None, "wrong", make_agent_token("another-api-token", SWARM, "helper")):
            given = {**headers, "Authorization": f"Bearer {token}"} if token else headers
            response = await http.post(cluster.mcp_url, json=body, headers=given)
            assert response.status_code == 401, token
        health = await http.get(cluster.mcp_url.removesuffix("/mcp") + "/health")
        assert health.json() == {"ok": True, "nats": "connected"}
