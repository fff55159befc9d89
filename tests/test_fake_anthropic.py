"""The Messages API stand-in, spoken to by the real Claude Code CLI: what it streams is what the
CLI understands (text, tool calls, tool results back), errors come out as the CLI reports real
ones, and every request is recorded for tests to look at."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from claude_cli import cli_env
from fake_anthropic import (
    ApiError,
    Conversation,
    FakeAnthropic,
    Reply,
    Script,
    Text,
    ToolUse,
    closed_url,
)

KEY = "sk-ant-test-stand-in-0123456789"


async def run_cli(
    claude_bin: Path, tmp_path: Path, base_url: str, prompt: str, *flags: str
) -> tuple[int, list[dict]]:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **cli_env(base_url, KEY)}
    process = await asyncio.create_subprocess_exec(
        str(claude_bin),
        "-p",
        "--output-format",
        "stream-json",
        "--verbose",
        *flags,
        "--",
        prompt,
        env=env,
        cwd=work,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode or 0, [
        json.loads(line) for line in out.decode().splitlines() if line.strip()
    ]


async def test_cli_runs_a_scripted_tool_call_and_sends_its_result_back(
    claude_bin: Path, tmp_path: Path
) -> None:
    script = Script(
        [
            Conversation(
                "MARK-tool",
                [
                    Reply(
                        [
                            Text("Writing it."),
                            ToolUse("Write", {"file_path": "hello.txt", "content": "hi there\n"}),
                        ]
                    ),
                    Reply([Text("All written.")]),
                ],
            )
        ]
    )
    async with FakeAnthropic(script) as api:
        code, lines = await run_cli(
            claude_bin, tmp_path, api.url, "Please MARK-tool", "--permission-mode", "acceptEdits"
        )
    assert code == 0
    assert (tmp_path / "work" / "hello.txt").read_text() == "hi there\n"
    result = lines[-1]
    assert (
        result["type"] == "result" and result["result"] == "All written." and not result["is_error"]
    )
    assert [r.turn for r in api.conversation("MARK-tool")] == [0, 1]
    assert "Write" in api.tools_offered("MARK-tool") and "Bash" in api.tools_offered("MARK-tool")
    (sent,) = api.tool_results("MARK-tool")
    assert not sent.get("is_error") and "hello.txt" in sent["text"]
    assert all(r.headers.get("x-api-key") == KEY for r in api.conversation("MARK-tool"))


async def test_cli_reports_scripted_overload_after_its_retries(
    claude_bin: Path, tmp_path: Path
) -> None:
    script = Script([Conversation("MARK-busy", [ApiError(529)])])
    async with FakeAnthropic(script) as api:
        code, lines = await run_cli(claude_bin, tmp_path, api.url, "MARK-busy")
    assert code == 1
    retries = [line for line in lines if line.get("subtype") == "api_retry"]
    assert [r["attempt"] for r in retries] == [1, 2] and retries[0]["error_status"] == 529
    assert lines[-1]["is_error"] and lines[-1]["api_error_status"] == 529
    assert len(api.conversation("MARK-busy")) == 3  # the first try and two retries


async def test_an_error_given_once_is_retried_past(claude_bin: Path, tmp_path: Path) -> None:
    script = Script(
        [Conversation("MARK-once", [ApiError(500, times=1), Reply([Text("fine now")])])]
    )
    async with FakeAnthropic(script) as api:
        code, lines = await run_cli(claude_bin, tmp_path, api.url, "MARK-once")
    assert code == 0 and lines[-1]["result"] == "fine now"
    assert [r.answered for r in api.conversation("MARK-once")] == ["error", "reply"]


async def test_cli_says_connection_refused_when_nothing_listens(
    claude_bin: Path, tmp_path: Path
) -> None:
    code, lines = await run_cli(claude_bin, tmp_path, closed_url(), "hello")
    assert code == 1
    assert lines[-1]["is_error"] and "ECONNREFUSED" in lines[-1]["result"]
