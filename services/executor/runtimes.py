"""Agent runtimes: what command a task becomes, and what its output means.

- ``claude``: ``claude --print --output-format stream-json --verbose`` plus the run's flags
  (``claude_settings``); the prompt (task title, description and prompt) goes last, after
  ``--``. Assistant text and the CLI's ``system`` lines stream to the log as they come; the
  ``result`` line decides (``claude_verdict``): completed only when ``is_error`` is false, the
  process exited 0 *and* no tool call was denied. A failure says why: the tools denied, the API
  that could not be reached and after how many retries, the budget or turn limit hit.
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
from schemas.environment import CLAUDE_CREDENTIALS
from schemas.events import RunOutcome
from services.executor.claude_settings import ClaudeOptions as ClaudeOptions
from services.executor.claude_settings import ClaudeRun, flags
from services.executor.claude_stream import ClaudeResult, ClaudeStream, LineSplitter

TAIL_CHARS = 4000
DEFAULT_API = "https://api.anthropic.com"
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


def resume_prompt(task: TaskView, mentions: Sequence[InboxEntry] = ()) -> str:
    """What a resumed session is told: it already holds the task and what was done so far."""
    said = (
        f"Swarm: this is attempt {task.attempt} of task {task.id}. The previous attempt was "
        "interrupted (its agent or executor went away) before it finished. Continue the task "
        "where it stopped: check what is already done (files, commits) and finish the rest."
    )
    return prompt_section(list(mentions)) + said


def claude_command(run: ClaudeRun, binary: str, prompt: str) -> Command:
    argv = [binary, "--print", "--output-format", "stream-json", "--verbose"]
    argv += ["--include-hook-events", *flags(run)]
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
    return {name: env[name] for name in CLAUDE_CREDENTIALS if env.get(name)}


def api_place(env: Mapping[str, str]) -> str:
    """Where the run's API is, as a person would name it in a failure."""
    if _on(env.get("CLAUDE_CODE_USE_BEDROCK")):
        where = env.get("ANTHROPIC_BEDROCK_BASE_URL") or env.get("AWS_REGION") or "its region"
        return f"Amazon Bedrock ({where})"
    if _on(env.get("CLAUDE_CODE_USE_VERTEX")):
        where = env.get("ANTHROPIC_VERTEX_BASE_URL") or env.get("CLOUD_ML_REGION") or "its region"
        return f"Vertex AI ({where})"
    if _on(env.get("CLAUDE_CODE_USE_FOUNDRY")):
        found = env.get("ANTHROPIC_FOUNDRY_BASE_URL") or env.get("ANTHROPIC_FOUNDRY_RESOURCE")
        return f"Microsoft Foundry ({found or 'its resource'})"
    return env.get("ANTHROPIC_BASE_URL") or DEFAULT_API


def _on(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


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


def timed_out(verdict: Verdict, timeout: float, *, from_task: bool, meanwhile: str = "") -> Verdict:
    """A run killed at its timeout fails, whatever its output said so far. ``meanwhile``: what
    it was going through (e.g. the API failing, retried)."""
    source = "the task's timeout" if from_task else "the executor's default timeout"
    reason = f"timeout: killed after {timeout:g} s ({source})"
    if meanwhile:
        reason += f" while {meanwhile}"
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

    def meanwhile(self) -> str:
        return ""

    def verdict(self, exit_code: int | None, output_tail: str) -> Verdict:
        outcome = RunOutcome(result=output_tail, exit_code=exit_code, is_error=exit_code != 0)
        if exit_code == 0:
            return Verdict(True, outcome)
        return Verdict(False, outcome, f"shell script exited with code {exit_code}")


@dataclass
class ClaudeOutput:
    """stdout is stream-json (parsed, shown as readable text); stderr is shown as it is."""

    credentials_given: bool = False
    api: str = DEFAULT_API  # where the API is (``api_place``), for failures
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

    def meanwhile(self) -> str:
        """What the run was going through when it was stopped: a failing API, retried."""
        if not self.stream.retries or self.stream.result is not None:
            return ""
        last = self.stream.retries[-1]
        what = f"error {last.status}" if last.status else "no answer"
        return f"the API at {self.api} kept failing ({what}; {_retried(self.stream)} so far)"

    def verdict(self, exit_code: int | None, output_tail: str) -> Verdict:
        return claude_verdict(
            self.stream,
            exit_code,
            output_tail,
            stderr=self.stderr_text,
            credentials_given=self.credentials_given,
            api=self.api,
        )


ALLOW_HINT = (
    "allow them with the task's claude.allowed_tools or claude.permission_mode, the agent's, or "
    "[claude] allowed_tools / permission_mode in swarm.toml"
)


def claude_verdict(
    stream: ClaudeStream,
    exit_code: int | None,
    output_tail: str,
    *,
    stderr: str = "",
    credentials_given: bool = False,
    api: str = DEFAULT_API,
) -> Verdict:
    """How a claude run ended, from what it printed and its exit code. Completed only when the
    result says no error, the process exited 0 and no tool call was denied; else failed with the
    reason a person needs (what was denied, which API failed how, which limit was hit)."""
    found = stream.result
    if found is None:
        detail = stderr.strip() or output_tail.strip() or "no output"
        reason = f"claude exited with code {exit_code} without a result line: {tail(detail, 500)}"
        if stream.retries:
            reason += f" ({_retried(stream)})"
        outcome = RunOutcome(
            result=output_tail, exit_code=exit_code, is_error=True, session_id=stream.session_id
        )
        return Verdict(False, outcome, reason)
    outcome = RunOutcome(
        result=tail(found.result) if found.result else output_tail,
        exit_code=exit_code,
        is_error=found.is_error or bool(found.denials),
        cost_usd=found.cost_usd,
        turns=found.turns,
        usage=found.usage,
        session_id=found.session_id,
        denied_tools=list(found.denials),
    )
    if not found.is_error and exit_code == 0 and not found.denials:
        return Verdict(True, outcome)
    return Verdict(False, outcome, _failure(stream, found, exit_code, credentials_given, api))


def _retried(stream: ClaudeStream) -> str:
    count = max((retry.attempt for retry in stream.retries), default=0)
    return f"after {count} {'retry' if count == 1 else 'retries'}"


def _failure(
    stream: ClaudeStream,
    found: ClaudeResult,
    exit_code: int | None,
    credentials_given: bool,
    api: str,
) -> str:
    message = found.result.strip() or "; ".join(found.errors)
    message = message or f"claude reported an error ({found.subtype or 'error'})"
    if found.denials:
        calls = ", ".join(
            f"{d.tool} ({d.input})" if d.input else d.tool for d in found.denials[:10]
        )
        more = f" and {len(found.denials) - 10} more" if len(found.denials) > 10 else ""
        count = len(found.denials)
        return (
            f"claude was denied {count} tool call{'s' if count > 1 else ''}: {calls}{more} — "
            f"the task is not done; {ALLOW_HINT}"
        )
    if stream.auth_failed:
        hint = CHECK_CREDENTIALS if credentials_given else GIVE_CREDENTIALS
        return f"{message} — {hint}"
    if found.subtype == "error_max_budget_usd" or found.terminal_reason == "budget_exhausted":
        spent = f" (${found.cost_usd:.2f} spent)" if found.cost_usd is not None else ""
        return f"claude stopped at the task's budget{spent}: {message} — raise max_budget_usd"
    if found.subtype == "error_max_turns":
        return f"claude stopped after {found.turns} turns: max_turns reached ({message})"
    if found.terminal_reason == "api_error" or found.api_error or found.api_error_status:
        retried = _retried(stream) if stream.retries else "without retrying"
        if found.api_error_status is None:
            return f"API unreachable at {api} {retried}: {message}"
        return f"API error {found.api_error_status} from {api} {retried}: {message}"
    if not found.is_error:
        return f"claude exited with code {exit_code}: {message}"
    return message
