"""Reading claude's stream-json and judging runs: pure, no processes, no NATS.

Lines come from the real capture (``tests/fixtures``) and from the stand-in ``fake_claude.py``
(run as a real process once per mode, so its lines are exactly what the executor will read).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from schemas.board import TaskView
from schemas.chat import InboxEntry
from schemas.events import Usage
from services.executor import runtimes
from services.executor.claude_settings import ClaudeRun
from services.executor.claude_stream import ClaudeStream, LineSplitter
from services.executor.runtimes import ClaudeOutput, ShellOutput, Verdict

HERE = Path(__file__).parent
CAPTURE = HERE / "fixtures" / "claude-stream-json-not-logged-in.jsonl"
FAKE = HERE / "fake_claude.py"
FAKE_ARGV = [sys.executable, str(FAKE), "-p", "--output-format", "stream-json", "--verbose", "--"]


def fake_lines(mode: str, prompt: str = "Task t-1: Create Button", **env: str) -> list[str]:
    done = subprocess.run(
        [*FAKE_ARGV, prompt],
        env={"PATH": os.environ.get("PATH", ""), "FAKE_CLAUDE_MODE": mode, **env},
        capture_output=True,
        text=True,
        timeout=20,
    )
    return done.stdout.splitlines()


def read_all(lines: list[str]) -> tuple[ClaudeStream, str]:
    stream = ClaudeStream()
    shown = "".join(stream.feed(line) for line in lines)
    return stream, shown


def task(**fields: Any) -> TaskView:
    base: dict[str, Any] = dict(swarm="s", id="t-1", title="Create Button", prompt="Create Button")
    base.update(fields)
    return TaskView(**base)


# --- the parser -------------------------------------------------------------------------------


def test_real_not_logged_in_capture_reads_as_an_error_result_with_its_session() -> None:
    stream, shown = read_all(CAPTURE.read_text().splitlines())
    assert stream.result is not None
    assert stream.result.is_error is True
    assert stream.result.subtype == "success"  # the subtype says nothing about success
    assert stream.result.result == "Not logged in · Please run /login"
    assert stream.result.cost_usd == 0.0
    assert stream.result.turns == 1
    assert stream.result.usage == Usage()
    assert stream.session_id == "db7905af-2560-42c9-9f6f-224dff965378"
    assert stream.result.session_id == stream.session_id
    assert stream.model == "claude-opus-5-5"
    assert stream.auth_failed
    assert shown.splitlines() == [
        "· claude 2.1.330, model claude-opus-5-5, permission mode default, session "
        "db7905af-2560-42c9-9f6f-224dff965378",
        "Not logged in · Please run /login",
    ]


def test_fake_not_logged_in_lines_have_the_same_keys_as_the_real_capture() -> None:
    real = [json.loads(line) for line in CAPTURE.read_text().splitlines()]
    fake = [json.loads(line) for line in fake_lines("not-logged-in")]
    assert [line["type"] for line in fake] == [line["type"] for line in real]
    for ours, theirs in zip(fake, real, strict=True):
        assert set(ours) == set(theirs)
        if "message" in theirs:
            assert set(ours["message"]) == set(theirs["message"])
    assert fake[-1]["result"] == real[-1]["result"]
    assert fake[-1]["is_error"] is True


def test_fake_success_reads_as_a_result_with_cost_turns_tokens_and_session() -> None:
    stream, shown = read_all(fake_lines("success", "Task t-1: Create Button"))
    assert stream.result is not None
    assert stream.result.is_error is False
    assert stream.result.result == "Done: Task t-1: Create Button"
    assert stream.result.cost_usd and stream.result.cost_usd > 0
    assert stream.result.turns == 2
    assert stream.result.usage is not None
    assert stream.result.usage.input_tokens > 0 and stream.result.usage.output_tokens > 0
    assert stream.result.session_id and stream.result.session_id == stream.session_id
    assert not stream.auth_failed
    assert shown.splitlines()[0].startswith("· claude 2.1.330, model claude-opus-5-5")
    assert shown.splitlines()[1:] == [
        "Working on: Task t-1: Create Button",
        "→ Bash: pwd",
        "Done: Task t-1: Create Button",
    ]


def test_a_line_that_is_not_json_is_shown_as_it_is() -> None:
    stream = ClaudeStream()
    assert stream.feed("Warning: no stdin data received in 3s") == (
        "Warning: no stdin data received in 3s\n"
    )
    assert stream.unparsed == 1 and stream.result is None


def test_a_failed_tool_result_is_shown_briefly_and_a_good_one_not_at_all() -> None:
    stream = ClaudeStream()

    def result(is_error: bool, content: str) -> str:
        block = {
            "type": "tool_result",
            "tool_use_id": "x",
            "content": content,
            "is_error": is_error,
        }
        return json.dumps({"type": "user", "message": {"role": "user", "content": [block]}})

    assert stream.feed(result(False, "line 1\nline 2")) == ""
    assert stream.feed(result(True, "command not found: foo\nmore")) == (
        "← error: command not found: foo\n"
    )


def test_a_result_line_without_is_error_counts_as_an_error() -> None:
    stream = ClaudeStream()
    stream.feed(json.dumps({"type": "result", "result": "?"}))
    assert stream.result is not None and stream.result.is_error is True


def test_lines_split_across_reads_are_put_back_together() -> None:
    splitter = LineSplitter()
    text = '{"type": "result", "result": "héllo"}\n'.encode()
    cut = text.index("é".encode()) + 1  # in the middle of a two-byte character
    assert splitter.feed(text[:cut]) == []
    assert splitter.feed(text[cut:] + b"tail") == ['{"type": "result", "result": "héllo"}']
    assert splitter.flush() == ["tail"]
    assert splitter.flush() == []


# --- commands ---------------------------------------------------------------------------------


def test_claude_command_has_the_print_stream_json_flags_and_the_run_s_own() -> None:
    run = ClaudeRun(
        model="sonnet",
        max_turns=7,
        permission_mode="acceptEdits",
        allowed_tools=("Read", "Bash(git log *)"),
        disallowed_tools=("WebFetch",),
        append_system_prompt="Be brief.",
        max_budget_usd=1.5,
        session_id="5a386642-da6c-427f-8703-01e365db8290",
    )
    command = runtimes.claude_command(run, "/bin/claude", "Task t-1: -rf is a title")
    argv = command.argv
    assert argv[:5] == ["/bin/claude", "--print", "--output-format", "stream-json", "--verbose"]
    assert "--include-hook-events" in argv
    assert argv[argv.index("--session-id") + 1] == run.session_id
    assert argv[argv.index("--model") + 1] == "sonnet"
    assert argv[argv.index("--max-turns") + 1] == "7"
    assert argv[argv.index("--max-budget-usd") + 1] == "1.5"
    assert argv[argv.index("--permission-mode") + 1] == "acceptEdits"
    assert argv[argv.index("--append-system-prompt") + 1] == "Be brief."
    assert argv[argv.index("--allowedTools") + 1] == "Read,Bash(git log *)"
    assert argv[argv.index("--disallowedTools") + 1] == "WebFetch"
    assert argv[-2:] == ["--", "Task t-1: -rf is a title"]
    assert "--dangerously-skip-permissions" not in argv and "--resume" not in argv
    assert command.stdin is None and not command.merge_stderr


def test_a_resumed_run_names_the_session_to_continue_and_no_new_one() -> None:
    run = ClaudeRun(resume="s-1", session_id="s-2", permission_mode="bypassPermissions")
    argv = runtimes.claude_command(run, "claude", "go on").argv
    assert argv[argv.index("--resume") + 1] == "s-1" and "--session-id" not in argv
    assert "--dangerously-skip-permissions" in argv and "--permission-mode" not in argv


def test_the_real_flag_set_is_accepted_by_the_stand_in() -> None:
    run = ClaudeRun(
        model="sonnet",
        max_turns=3,
        permission_mode="bypassPermissions",
        disallowed_tools=("WebFetch",),
        append_system_prompt="Be brief.",
        max_budget_usd=2.0,
        session_id="5a386642-da6c-427f-8703-01e365db8290",
    )
    command = runtimes.claude_command(run, str(FAKE), "Task t-1: hello")
    done = subprocess.run(
        [sys.executable, *command.argv],
        env={"PATH": os.environ.get("PATH", ""), "FAKE_CLAUDE_MODE": "success"},
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.returncode == 0, done.stderr
    stream, _ = read_all(done.stdout.splitlines())
    assert stream.result is not None and stream.result.result == "Done: Task t-1: hello"
    assert stream.model == "sonnet" and stream.session_id == run.session_id


def test_a_huge_prompt_goes_through_stdin() -> None:
    prompt = "x" * (runtimes.ARG_MAX_PROMPT + 1)
    command = runtimes.claude_command(ClaudeRun(), "claude", prompt)
    assert "--" not in command.argv and command.stdin == prompt.encode()


def test_shell_command_runs_the_prompt_as_a_bash_script_with_stderr_merged() -> None:
    command = runtimes.shell_command("echo hi; exit 3")
    assert command.argv == ["bash", "-c", "echo hi; exit 3"]
    assert command.merge_stderr


def test_prompt_holds_the_mentions_title_description_and_a_prompt_that_says_more() -> None:
    mention = InboxEntry(seq=7, id="m7", author="master", text="@qa hi", time=1.0)
    prompt = runtimes.task_prompt(
        task(description="In src/ui.", prompt="Use the design tokens."), mentions=[mention]
    )
    assert prompt == (
        "Unread chat messages that mention you:\n- [master] @qa hi\n\n"
        "Task t-1: Create Button\n\nIn src/ui.\n\nUse the design tokens."
    )
    assert runtimes.task_prompt(task()) == "Task t-1: Create Button"


def test_credentials_are_only_the_two_claude_variables_that_are_set() -> None:
    env = {"ANTHROPIC_API_KEY": "sk-1", "CLAUDE_CODE_OAUTH_TOKEN": "", "OTHER": "x"}
    assert runtimes.credentials(env) == {"ANTHROPIC_API_KEY": "sk-1"}


# --- verdicts ---------------------------------------------------------------------------------


def judge_claude(lines: list[str], exit_code: int, credentials_given: bool = False):
    output = ClaudeOutput(credentials_given=credentials_given)
    shown = output.feed("stdout", ("\n".join(lines) + "\n").encode())
    return output.verdict(exit_code, runtimes.tail(shown))


def test_claude_success_needs_is_error_false_and_exit_zero() -> None:
    verdict = judge_claude(fake_lines("success"), 0)
    assert verdict.completed and verdict.reason is None
    outcome = verdict.outcome
    assert outcome.result == "Done: Task t-1: Create Button"
    assert outcome.cost_usd and outcome.turns == 2 and outcome.session_id
    assert outcome.usage and outcome.usage.output_tokens == 345
    assert outcome.is_error is False and outcome.exit_code == 0


def test_claude_result_without_error_but_a_failing_exit_code_fails() -> None:
    verdict = judge_claude(fake_lines("success"), 1)
    assert not verdict.completed
    assert verdict.reason == "claude exited with code 1: Done: Task t-1: Create Button"


def test_not_logged_in_without_credentials_fails_with_the_cli_message_and_what_to_do() -> None:
    verdict = judge_claude(CAPTURE.read_text().splitlines(), 1)
    assert not verdict.completed
    assert verdict.reason is not None
    assert verdict.reason.startswith("Not logged in · Please run /login")
    assert "ANTHROPIC_API_KEY" in verdict.reason and "CLAUDE_CODE_OAUTH_TOKEN" in verdict.reason
    assert verdict.outcome.is_error and verdict.outcome.session_id


def test_not_logged_in_with_credentials_given_says_they_were_not_accepted() -> None:
    verdict = judge_claude(CAPTURE.read_text().splitlines(), 1, credentials_given=True)
    assert verdict.reason is not None and "were not accepted" in verdict.reason


def test_claude_that_dies_without_a_result_fails_with_its_stderr() -> None:
    output = ClaudeOutput()
    output.feed("stderr", b"Error: When using --print, --output-format=stream-json requires")
    output.feed("stderr", b" --verbose\n")
    verdict = output.verdict(1, "")
    assert not verdict.completed
    assert verdict.reason == (
        "claude exited with code 1 without a result line: Error: When using --print, "
        "--output-format=stream-json requires --verbose"
    )


def fixture(name: str) -> list[str]:
    return (HERE / "fixtures" / f"claude-2.1.332-{name}.jsonl").read_text().splitlines()


def judge_real(name: str, exit_code: int, api: str = "http://127.0.0.1:8765") -> Verdict:
    output = ClaudeOutput(credentials_given=True, api=api)
    shown = output.feed("stdout", ("\n".join(fixture(name)) + "\n").encode())
    return output.verdict(exit_code, runtimes.tail(shown))


def test_a_real_run_that_wrote_and_ran_what_it_was_allowed_completes() -> None:
    verdict = judge_real("success", 0)
    assert verdict.completed and verdict.reason is None
    assert verdict.outcome.result == "All done." and verdict.outcome.denied_tools == []
    assert verdict.outcome.cost_usd and verdict.outcome.turns == 3


def test_a_real_run_with_denied_tools_fails_naming_each_tool_and_what_it_wanted() -> None:
    verdict = judge_real("denied", 0)  # the CLI said success, exit 0: not a success
    assert not verdict.completed and verdict.reason is not None
    assert verdict.reason.startswith(
        "claude was denied 2 tool calls: Write (/etc/swarm-probe.txt), Bash (chmod 600 "
        "/etc/hosts) — the task is not done; allow them with"
    )
    assert [(d.tool, d.input) for d in verdict.outcome.denied_tools] == [
        ("Write", "/etc/swarm-probe.txt"),
        ("Bash", "chmod 600 /etc/hosts"),
    ]
    assert "haven't granted it" in verdict.outcome.denied_tools[0].message
    assert verdict.outcome.denied_tools[1].message == "This command requires approval"
    assert verdict.outcome.is_error and verdict.outcome.exit_code == 0


def test_a_real_unreachable_api_fails_naming_the_base_url_and_the_retries() -> None:
    verdict = judge_real("connection-refused", 1, api="http://10.9.9.9:1234")
    assert verdict.reason == (
        "API unreachable at http://10.9.9.9:1234 after 2 retries: API Error: Connection "
        "refused — a firewall or proxy may be blocking it (ECONNREFUSED)"
    )


def test_a_real_overloaded_api_fails_naming_the_status_and_the_retries() -> None:
    verdict = judge_real("overloaded", 1)
    assert verdict.reason is not None
    assert verdict.reason.startswith(
        "API error 529 from http://127.0.0.1:8765 after 2 retries: API Error: Repeated 529"
    )


def test_a_real_run_stopped_at_its_budget_fails_saying_so() -> None:
    verdict = judge_real("budget", 1)
    assert verdict.reason == (
        "claude stopped at the task's budget ($0.82 spent): Reached maximum budget ($0.5) — "
        "raise max_budget_usd"
    )
    assert verdict.outcome.cost_usd == pytest.approx(0.82)


def test_the_cli_s_system_lines_are_shown_readably() -> None:
    _, shown = read_all(fixture("overloaded"))
    assert "· API request failed (529 overloaded); retry 1 of 2 in 0.5 s" in shown
    _, shown = read_all(fixture("connection-refused"))
    assert "· API request failed (no answer); retry 2 of 2 in 1.1 s" in shown
    _, shown = read_all(fixture("denied"))
    assert "✗ denied Bash: This command requires approval" in shown
    assert "← error: This command requires approval" not in shown  # said once
    stream = ClaudeStream()
    compacted: dict[str, object] = {"type": "system", "subtype": "compact_boundary"}
    compacted["compact_metadata"] = {"trigger": "auto", "pre_tokens": 180000}
    assert stream.feed(json.dumps(compacted)) == (
        "· context compacted (auto, 180000 tokens before)\n"
    )
    hook: dict[str, object] = {"type": "system", "subtype": "hook_response"}
    hook["hook_event"] = "PreToolUse"
    hook.update(hook_name="lint", outcome="error", exit_code=2, stderr="ruff: 3 errors")
    assert (
        stream.feed(json.dumps(hook))
        == "· hook PreToolUse lint: error, exit code 2: ruff: 3 errors\n"
    )
    assert stream.feed(json.dumps({"type": "system", "subtype": "ui_toast"})) == ""
    notice = {"type": "system", "subtype": "informational", "content": "Heads up."}
    assert stream.feed(json.dumps(notice)) == "· informational: Heads up.\n"


def test_the_api_place_names_the_provider_in_use() -> None:
    assert runtimes.api_place({}) == "https://api.anthropic.com"
    assert runtimes.api_place({"ANTHROPIC_BASE_URL": "http://gw:8"}) == "http://gw:8"
    bedrock = {"CLAUDE_CODE_USE_BEDROCK": "1", "AWS_REGION": "eu-west-1"}
    assert runtimes.api_place(bedrock) == "Amazon Bedrock (eu-west-1)"
    assert runtimes.api_place({"CLAUDE_CODE_USE_VERTEX": "true"}) == "Vertex AI (its region)"


def test_missing_claude_binary_fails_saying_how_to_install_it() -> None:
    assert runtimes.find_claude("surely-not-a-claude-binary", os.environ.get("PATH")) is None
    verdict = runtimes.missing_claude("surely-not-a-claude-binary")
    assert not verdict.completed and verdict.reason is not None
    assert "npm install -g @anthropic-ai/claude-code" in verdict.reason
    assert "SWARM_CLAUDE_BIN" in verdict.reason


@pytest.mark.parametrize(("code", "completed"), [(0, True), (3, False), (-9, False)])
def test_shell_exit_code_decides(code: int, completed: bool) -> None:
    output = ShellOutput()
    shown = output.feed("stdout", "héllo\n".encode()[:2]) + output.feed(
        "stdout", "héllo\n".encode()[2:]
    )
    assert shown == "héllo\n"
    verdict = output.verdict(code, shown)
    assert verdict.completed is completed
    assert verdict.outcome.exit_code == code and verdict.outcome.result == "héllo\n"
    if not completed:
        assert verdict.reason == f"shell script exited with code {code}"


def test_a_timed_out_run_fails_naming_the_timeout_whatever_it_printed() -> None:
    verdict = runtimes.timed_out(judge_claude(fake_lines("success"), 0), 1.5, from_task=True)
    assert not verdict.completed
    assert verdict.reason == "timeout: killed after 1.5 s (the task's timeout)"
    assert verdict.outcome.is_error and verdict.outcome.session_id


def test_the_instant_runtime_completes_with_nothing_done() -> None:
    verdict = runtimes.instant()
    assert verdict.completed and verdict.outcome.exit_code == 0


def test_tail_keeps_the_last_4000_characters() -> None:
    assert runtimes.tail("a" * 10 + "b" * 4000) == "b" * 4000
    assert runtimes.tail("short") == "short"


def test_a_run_killed_at_its_timeout_while_the_api_failed_says_so() -> None:
    output = ClaudeOutput(api="http://gw:1")
    retries = [line for line in fixture("overloaded") if '"api_retry"' in line]
    shown = output.feed("stdout", ("\n".join(retries) + "\n").encode())
    verdict = runtimes.timed_out(
        output.verdict(None, shown), 30, from_task=True, meanwhile=output.meanwhile()
    )
    assert verdict.reason == (
        "timeout: killed after 30 s (the task's timeout) while the API at http://gw:1 kept "
        "failing (error 529; after 2 retries so far)"
    )
    assert ShellOutput().meanwhile() == ""


def test_a_real_refused_key_fails_saying_the_credentials_were_not_accepted() -> None:
    verdict = judge_real("unauthorized", 1)
    assert verdict.reason is not None
    assert verdict.reason.startswith("Failed to authenticate. API Error: 401")
    assert verdict.reason.endswith(runtimes.CHECK_CREDENTIALS)
