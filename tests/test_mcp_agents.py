"""An agent is a member of its swarm: the real Claude Code CLI, run by an executor for a task and
scripted by the Messages API stand-in (``tests/fake_anthropic.py``), calls the swarm's MCP tools
from inside its run — it hands work off as a follow-up task and mentions the agent who takes it —
with its own agent token, which never shows on the command line.

Needs the stand-in and the pinned CLI (``fake_anthropic``, the ``claude_bin`` fixture) that the
Claude-runtime work brings; until they are in the tree, this module is skipped."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from processes import Cluster

fake = pytest.importorskip("fake_anthropic", reason="the Messages API stand-in is not here yet")
Conversation, FakeAnthropic, Reply = fake.Conversation, fake.FakeAnthropic, fake.Reply
Script, Text, ToolUse = fake.Script, fake.Text, fake.ToolUse

SWARM = "handoff"
MARKER = "HANDOFF-MCP-7"
KEY = "sk-ant-canary-0123456789abcdef"
SCRIPT = Script(
    [
        Conversation(
            MARKER,
            [
                Reply(
                    [
                        ToolUse(
                            "mcp__swarm__create_task",
                            {
                                "title": "Review the form",
                                "tags": "qa",
                                "runtime": "shell",
                                "prompt": "echo reviewed by $SWARM_AGENT_ID",
                            },
                        )
                    ]
                ),
                Reply([ToolUse("mcp__swarm__post_chat", {"message": "the form is ready @qa"})]),
                Reply([Text("handed the review to qa")]),
            ],
        )
    ]
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    shared = Cluster(tmp_path_factory.mktemp("mcp-agents")).start_nats()
    processes = [shared.gateway(), shared.scheduler("main"), shared.spawn("chat"), shared.mcp()]
    try:
        shared.wait_ready(*processes, timeout=60)
        yield shared
    finally:
        left = shared.close()
        assert left == [], f"processes left behind: {left}"


async def test_a_claude_run_creates_a_follow_up_and_mentions_another_agent_through_mcp(
    cluster: Cluster, claude_bin: Path
) -> None:
    async with FakeAnthropic(SCRIPT) as api:
        settings = {
            "ANTHROPIC_BASE_URL": api.url,
            "ANTHROPIC_API_KEY": KEY,
            "DISABLE_TELEMETRY": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
            "ENABLE_TOOL_SEARCH": "false",  # the MCP tools offered up front, not behind ToolSearch
        }
        executor = cluster.executor(
            "ex1",
            SWARM,
            ["writer:frontend:frontend", "qa-agent:qa:qa"],
            {
                "SWARM_CLAUDE_BIN": str(claude_bin),
                "SWARM_PASS_ENV": "ANTHROPIC_BASE_URL,DISABLE_TELEMETRY,"
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC,DISABLE_AUTOUPDATER",
                **settings,
            },
        )
        await asyncio.to_thread(cluster.wait_ready, executor)
        await asyncio.to_thread(cluster.wait_agents, SWARM, {"writer": "ex1", "qa-agent": "ex1"})
        body = {"title": f"Build the form {MARKER}", "tags": "frontend"}
        task = cluster.api.ok("POST", f"/swarms/{SWARM}/tasks", body)
        done = await asyncio.to_thread(
            cluster.wait_task, SWARM, task["id"], ["completed", "failed"], 120
        )
        assert done["status"] == "completed", (done["reason"], cluster.tails())
        assert done["result"] == "handed the review to qa"

        # the follow-up: a task of the run, taken by the qa agent, done
        tasks = cluster.api.ok("GET", f"/swarms/{SWARM}/tasks")
        (follow_up,) = [t for t in tasks if t["parent"] == task["id"]]
        assert (follow_up["title"], follow_up["parent_attempt"]) == ("Review the form", 1)
        reviewed = await asyncio.to_thread(
            cluster.wait_task, SWARM, follow_up["id"], ["completed", "failed"], 60
        )
        assert reviewed["result"].strip() == "reviewed by qa-agent"
        created = cluster.api.task(SWARM, follow_up["id"])["events"][0]
        assert created["actor"] == "writer"

        # the mention: posted as the agent, reaching the qa agent
        messages = cluster.api.ok("GET", f"/swarms/{SWARM}/chat")["messages"]
        posted = [m for m in messages if m["text"] == "the form is ready @qa"]
        assert [(m["author"], m["author_kind"], m["recipients"]) for m in posted] == [
            ("writer", "agent", ["qa-agent"])
        ]

        # the CLI called the tools and got answers, not errors
        offered = api.tools_offered(MARKER)
        assert {"mcp__swarm__create_task", "mcp__swarm__post_chat"} <= set(offered)
        results = api.tool_results(MARKER)
        assert len(results) == 2 and not any(r.get("is_error") for r in results), results
    # the agent's token never showed: not in events, chat, answers, or any process's log
    token_prefix = f"agent.{SWARM}.writer."
    assert all(token_prefix not in text for text in cluster.api.seen)
    assert token_prefix not in cluster.logs()
