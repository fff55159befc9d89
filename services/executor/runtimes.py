"""Agent runtimes: what command a task becomes, and what its output means.

- ``claude``: ``claude --print --output-format stream-json --verbose`` plus the configured flags;
  the prompt (task title, description and prompt) goes last, after ``--``. Assistant text streams
  to the log as it comes; the ``result`` line decides: completed only when ``is_error`` is false
  *and* the process exited 0.
- ``shell``: the prompt is a bash script (``bash -c``); its exit code decides.
- ``instant``: no process at all; completes at once. It exists only to measure the orchestrator's
  own overhead (claim -> running -> completed) in benchmarks; it does no work.

Everything here is pure: the service feeds it bytes and exit codes.
"""

from __future__ import annotations

import codecs
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from schemas.board import TaskView
from schemas.chat import InboxEntry, prompt_section
from schemas.events import RunOutcome
from services.executor.claude_stream import ClaudeStream, LineSplitter

TAIL_CHARS = 4000
CREDENTIAL_ENV = ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN")
ARG_MAX_PROMPT = 100_000  # bytes; longer prompts go through stdin (an argv string maxes at 128 KiB)

INSTALL_CLAUDE = (
    "install Claude Code: npm install -g @anthropic-ai/claude-code, "
    "or set SWARM_CLAUDE_BIN (or --claude-bin) to the claude binary"
)
GIVE_CREDENTIALS = (
    "give the executor credentials: set ANTHROPIC_API_KEY, or CLAUDE_CODE_OAUTH_TOKEN "
    "(made with `claude setup-token`), in the executor's environment"
)
CHECK_CREDENTIALS = (
    "the credentials the executor passed (ANTHROPIC_API_KEY / CLAUDE_CODE_OAUTH_TOKEN) were not "
    "accepted: check or renew them"
)


@dataclass(frozen=True)
class ClaudeOptions:
    """How the ``claude`` runtime calls the CLI (from swarm.toml ``[claude]`` and flags)."""

    bin: str = "claude"
    model: str | None = None
    max_turns: int | None = None
    permission_mode: str | None = None
    allowed_tools: tuple[str, ...] = ()
    append_system_prompt: str | None = None
    skip_permissions: bool = False  # --dangerously-skip-permissions: only in isolated sandboxes
    mcp_config: str | None = None  # --mcp-config: the swarm's MCP server (membership.mcp_config)


@dataclass(frozen=True)
class Command:
    argv: list[str]
    stdin: bytes | None = None
    merge_stderr: bool = False


@dataclass(frozen=True)
class Verdict:
    """How a run ends: ``completed`` or failed with ``reason``; ``outcome`` goes into the event."""

    completed: bool
    outcome: RunOutcome
    reason: str | None = None


# --- prompts and commands -------------------------------------------------------------------


def task_prompt(task: TaskView, mentions: Sequence[InboxEntry] = ()) -> str:
    """What the agent is asked: its unread chat mentions (if any), the title, the description,
    then the prompt when it says more than the title."""
    parts = [f"Task {task.id}: {task.title}"]
    if task.description.strip():
        parts.append(task.description.strip())
    if task.prompt.strip() and task.prompt.strip() != task.title.strip():
        parts.append(task.prompt.strip())
    return prompt_section(list(mentions)) + "\n\n".join(parts)


def claude_command(options: ClaudeOptions, binary: str, prompt: str) -> Command:
    argv = [binary, "--print", "--output-format", "stream-json", "--verbose"]
    if options.model:
        argv += ["--model", options.model]
    if options.max_turns:
        argv += ["--max-turns", str(options.max_turns)]
    if options.permission_mode:
        argv += ["--permission-mode", options.permission_mode]
    if options.skip_permissions:
        argv.append("--dangerously-skip-permissions")
    if options.append_system_prompt:
        argv += ["--append-system-prompt", options.append_system_prompt]
    if options.mcp_config:
        argv += ["--mcp-config", options.mcp_config]
    if options.allowed_tools:
        argv += ["--allowedTools", *options.allowed_tools]  # variadic: ends at "--"
    if len(prompt.encode()) > ARG_MAX_PROMPT:
        return Command(argv=argv, stdin=prompt.encode())
    return Command(argv=[*argv, "--", prompt])


def shell_command(script: str) -> Command:
    if len(script.encode()) > ARG_MAX_PROMPT:
        return Command(argv=["bash", "-s"], stdin=script.encode(), merge_stderr=True)
    return Command(argv=["bash", "-c", script], merge_stderr=True)


def find_claude(binary: str, path: str | None) -> str | None:
    """The claude executable to run: ``binary`` as a path, or looked up on ``path``."""
    return shutil.which(binary, path=path)


def credentials(env: Mapping[str, str]) -> dict[str, str]:
    """The credentials the claude runtime passes into the sandbox (only the ones set)."""
    return {name: env[name] for name in CREDENTIAL_ENV if env.get(name)}


def missing_claude(binary: str, place: str | None = None) -> Verdict:
    """``place``: the sandbox looked in (e.g. "Daytona sandbox 1f2e"); None: the executor."""
    if place is None:
        where = (
            f"{binary} does not exist or is not executable"
            if "/" in binary
            else f"{binary!r} is not on the executor's PATH"
        )
    else:
        where = (
            f"{binary} does not exist or is not executable in {place}"
            if "/" in binary
            else f"{binary!r} is not on the PATH of {place}"
        )
    reason = f"claude CLI not found ({where}): {INSTALL_CLAUDE}"
    return Verdict(False, RunOutcome(result=reason, is_error=True), reason)


def instant() -> Verdict:
    """The ``instant`` runtime's whole run."""
    return Verdict(True, RunOutcome(result="", exit_code=0, duration_s=0.0))


def tail(text: str, limit: int = TAIL_CHARS) -> str:
    return text[-limit:] if len(text) > limit else text


def timed_out(verdict: Verdict, timeout: float, *, from_task: bool) -> Verdict:
    """A run killed at its timeout fails, whatever its output said so far."""
    source = "the task's timeout" if from_task else "the executor's default timeout"
    reason = f"timeout: killed after {timeout:g} s ({source})"
    outcome = verdict.outcome
    outcome.is_error = True
    outcome.exit_code = None
    return Verdict(False, outcome, reason)


# --- reading output ---------------------------------------------------------------------------


@dataclass
class ShellOutput:
    """A bash script's output is shown as it is; the exit code decides."""

    _decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace")
    )

    def feed(self, stream: str, data: bytes) -> str:
        return self._decoder.decode(data)

    def flush(self) -> str:
        return self._decoder.decode(b"", final=True)

    def verdict(self, exit_code: int | None, output_tail: str) -> Verdict:
        outcome = RunOutcome(result=output_tail, exit_code=exit_code, is_error=exit_code != 0)
        if exit_code == 0:
            return Verdict(True, outcome)
        return Verdict(False, outcome, f"shell script exited with code {exit_code}")


@dataclass
class ClaudeOutput:
    """stdout is stream-json (parsed, shown as readable text); stderr is shown as it is."""

    credentials_given: bool = False
    stream: ClaudeStream = field(default_factory=ClaudeStream)
    _lines: LineSplitter = field(default_factory=LineSplitter)
    _stderr: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace")
    )
    stderr_text: str = ""

    def feed(self, stream: str, data: bytes) -> str:
        if stream == "stderr":
            text = self._stderr.decode(data)
            self.stderr_text = tail(self.stderr_text + text)
            return text
        return "".join(self.stream.feed(line) for line in self._lines.feed(data))

    def flush(self) -> str:
        text = "".join(self.stream.feed(line) for line in self._lines.flush())
        rest = self._stderr.decode(b"", final=True)
        self.stderr_text = tail(self.stderr_text + rest)
        return text + rest

    def verdict(self, exit_code: int | None, output_tail: str) -> Verdict:
        found = self.stream.result
        if found is None:
            detail = self.stderr_text.strip() or output_tail.strip() or "no output"
            reason = (
                f"claude exited with code {exit_code} without a result line: {tail(detail, 500)}"
            )
            outcome = RunOutcome(
                result=output_tail,
                exit_code=exit_code,
                is_error=True,
                session_id=self.stream.session_id,
            )
            return Verdict(False, outcome, reason)
        outcome = RunOutcome(
            result=tail(found.result) if found.result else output_tail,
            exit_code=exit_code,
            is_error=found.is_error,
            cost_usd=found.cost_usd,
            turns=found.turns,
            usage=found.usage,
            session_id=found.session_id,
        )
        if not found.is_error and exit_code == 0:
            return Verdict(True, outcome)
        message = found.result.strip() or f"claude reported an error ({found.subtype or 'error'})"
        if self.stream.auth_failed:
            hint = CHECK_CREDENTIALS if self.credentials_given else GIVE_CREDENTIALS
            return Verdict(False, outcome, f"{message} — {hint}")
        if not found.is_error:
            return Verdict(False, outcome, f"claude exited with code {exit_code}: {message}")
        return Verdict(False, outcome, message)
