"""Reading what ``claude --print --output-format stream-json --verbose`` prints: one JSON object
per line.

- ``system``: ``init`` (the session starts: ``session_id``, ``model``, ``permissionMode``...),
  ``api_retry`` (a failed API request, retried), ``permission_denied`` (a tool call refused),
  ``compact_boundary``, hooks, notices: shown as readable lines (``system_line``); UI chatter is
  left out.
- ``assistant``: a model message; its ``text`` content blocks are what a person wants to read as
  it comes, ``tool_use`` blocks say what the agent is doing. A message the CLI made up itself
  (no credentials, API down) carries ``error`` (``authentication_failed``...).
- ``user``: tool results going back to the model.
- ``result``: the end: ``result`` (the final answer or the error), ``is_error``,
  ``total_cost_usd``, ``num_turns``, ``usage``, ``session_id``, ``permission_denials``,
  ``terminal_reason``, ``api_error_status`` / ``api_error``, ``errors``. Its ``subtype`` says
  nothing about success (the real "Not logged in" capture says ``success``; a run whose tool
  calls were all denied says ``success`` with ``is_error: false``): Swarm judges it
  (``runtimes.claude_verdict``).

Pure: lines in, text and facts out. ``tests/fixtures`` holds real captures.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from schemas.events import DeniedTool, Usage

TOOL_INPUT_CHARS = 200
SYSTEM_TEXT_CHARS = 300
QUIET_SYSTEM = ("ui_", "session_", "turn_", "task_", "voice_", "peer_", "control_", "worker_")
QUIET_SUBTYPES = frozenset(
    {
        "thinking_tokens",
        "background_tasks_changed",
        "vcs_state_changed",
        "tool_host_result",
        "local_command",
        "dev_intent",
        "hook_started",
        "hook_progress",
    }
)


@dataclass
class ClaudeResult:
    """The ``result`` line."""

    result: str
    is_error: bool
    subtype: str = ""
    cost_usd: float | None = None
    turns: int | None = None
    usage: Usage | None = None
    session_id: str | None = None
    duration_ms: int | None = None
    terminal_reason: str = ""
    api_error_status: int | None = None
    api_error: str = ""  # e.g. "connection_failed"
    errors: list[str] = field(default_factory=list)
    denials: list[DeniedTool] = field(default_factory=list)


@dataclass(frozen=True)
class ApiRetry:
    """A ``system``/``api_retry`` line: a request that failed and is tried again."""

    attempt: int
    max_retries: int
    status: int | None
    error: str
    delay_ms: int


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def usage_of(raw: object) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    return Usage(
        input_tokens=_int(raw.get("input_tokens")),
        output_tokens=_int(raw.get("output_tokens")),
        cache_read_input_tokens=_int(raw.get("cache_read_input_tokens")),
        cache_creation_input_tokens=_int(raw.get("cache_creation_input_tokens")),
    )


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def tool_input(raw: object) -> str:
    """What a tool was called with, on one short line (the command, the file, the pattern)."""
    if isinstance(raw, dict):
        shown = raw.get("command") or raw.get("file_path") or raw.get("pattern") or raw
    else:
        shown = raw
    if shown is None:
        return ""
    text = shown if isinstance(shown, str) else json.dumps(shown, ensure_ascii=False)
    return _short(text, TOOL_INPUT_CHARS)


def _tool_line(block: dict[str, object]) -> str:
    name = block.get("name") or "tool"
    text = tool_input(block.get("input"))
    return f"→ {name}: {text}\n" if text else f"→ {name}\n"


def _text_field(message: dict[str, object]) -> str:
    for key in ("message", "text", "content", "summary", "title", "status"):
        value = message.get(key)
        if isinstance(value, str) and value.strip():
            return _short(value, SYSTEM_TEXT_CHARS)
    return ""


def system_line(message: dict[str, object]) -> str:
    """A ``system`` line as a person following the task would want to read it ("" to skip)."""
    kind = str(message.get("subtype") or "")
    if kind == "init":
        parts = [f"claude {message.get('claude_code_version') or ''}".rstrip()]
        if message.get("model"):
            parts.append(f"model {message['model']}")
        if message.get("permissionMode"):
            parts.append(f"permission mode {message['permissionMode']}")
        if message.get("session_id"):
            parts.append(f"session {message['session_id']}")
        return "· " + ", ".join(parts) + "\n"
    if kind == "api_retry":
        status = message.get("error_status")
        error = message.get("error") or "error"
        what = f"{status} {error}" if status else "no answer" if error == "unknown" else str(error)
        delay = _int(message.get("retry_delay_ms")) / 1000
        return (
            f"· API request failed ({what}); retry {_int(message.get('attempt'))} of "
            f"{_int(message.get('max_retries'))} in {delay:.1f} s\n"
        )
    if kind == "permission_denied":
        detail = _text_field(message) or str(message.get("decision_reason") or "")
        return f"✗ denied {message.get('tool_name') or 'a tool'}: {detail}\n"
    if kind == "compact_boundary":
        meta = message.get("compact_metadata")
        meta = meta if isinstance(meta, dict) else {}
        before = meta.get("pre_tokens")
        tokens = f", {before} tokens before" if isinstance(before, int) else ""
        return f"· context compacted ({meta.get('trigger') or 'auto'}{tokens})\n"
    if kind == "hook_response":
        code = message.get("exit_code")
        said = ""
        for key in ("stderr", "output", "stdout"):
            value = message.get(key)
            if isinstance(value, str) and value.strip():
                said = ": " + _short(value, SYSTEM_TEXT_CHARS)
                break
        exit_text = f", exit code {code}" if code not in (None, 0) else ""
        return (
            f"· hook {message.get('hook_event') or ''} {message.get('hook_name') or ''}: "
            f"{message.get('outcome') or 'done'}{exit_text}{said}\n"
        ).replace("  ", " ")
    if not kind or kind in QUIET_SUBTYPES or kind.startswith(QUIET_SYSTEM):
        return ""
    text = _text_field(message)
    return f"· {kind.replace('_', ' ')}{': ' + text if text else ''}\n"


def _denials(raw: object) -> list[DeniedTool]:
    if not isinstance(raw, list):
        return []
    return [
        DeniedTool(tool=str(d.get("tool_name") or "tool"), input=tool_input(d.get("tool_input")))
        for d in raw
        if isinstance(d, dict)
    ]


def _with_newline(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


@dataclass
class ClaudeStream:
    """Feed it stdout lines in order; it says what to show and remembers what matters."""

    session_id: str | None = None
    model: str | None = None
    result: ClaudeResult | None = None
    errors: list[str] = field(default_factory=list)  # ``error`` of made-up assistant messages
    texts: list[str] = field(default_factory=list)  # assistant text blocks, in order
    retries: list[ApiRetry] = field(default_factory=list)
    denied: dict[str, str] = field(default_factory=dict)  # tool_use_id -> what the CLI said
    lines: int = 0
    unparsed: int = 0

    def feed(self, line: str) -> str:
        """One line of stdout; returns the text a person following the task should see."""
        line = line.strip()
        if not line:
            return ""
        self.lines += 1
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            self.unparsed += 1
            return line + "\n"  # not stream-json: show it as it is
        if not isinstance(message, dict):
            self.unparsed += 1
            return line + "\n"
        session = message.get("session_id")
        if isinstance(session, str) and session:
            self.session_id = session
        kind = message.get("type")
        if kind == "system":
            return self._system(message)
        if kind == "assistant":
            return self._assistant(message)
        if kind == "user":
            return self._user(message)
        if kind == "result":
            self.result = self._result(message)
            return ""
        return ""

    def _system(self, message: dict[str, object]) -> str:
        subtype = message.get("subtype")
        if subtype == "init" and isinstance(model := message.get("model"), str):
            self.model = model
        elif subtype == "api_retry":
            status = message.get("error_status")
            self.retries.append(
                ApiRetry(
                    attempt=_int(message.get("attempt")),
                    max_retries=_int(message.get("max_retries")),
                    status=status if isinstance(status, int) else None,
                    error=str(message.get("error") or ""),
                    delay_ms=_int(message.get("retry_delay_ms")),
                )
            )
        elif subtype == "permission_denied":
            self.denied[str(message.get("tool_use_id") or len(self.denied))] = _text_field(message)
        return system_line(message)

    def _result(self, message: dict[str, object]) -> ClaudeResult:
        raw = message.get("permission_denials")
        denials = _denials(raw)
        ids = (
            [str(d.get("tool_use_id")) for d in raw if isinstance(d, dict)]
            if isinstance(raw, list)
            else []
        )
        for denial, tool_use_id in zip(denials, ids, strict=False):
            denial.message = self.denied.get(tool_use_id, "")
        status = message.get("api_error_status")
        errors = message.get("errors")
        return ClaudeResult(
            result=result if isinstance(result := message.get("result"), str) else "",
            is_error=message.get("is_error") is not False,
            subtype=str(message.get("subtype") or ""),
            cost_usd=_number(message.get("total_cost_usd")),
            turns=_int(message.get("num_turns")) if "num_turns" in message else None,
            usage=usage_of(message.get("usage")),
            session_id=self.session_id,
            duration_ms=_int(message.get("duration_ms")) or None,
            terminal_reason=str(message.get("terminal_reason") or ""),
            api_error_status=status if isinstance(status, int) else None,
            api_error=str(message.get("api_error") or ""),
            errors=[str(e) for e in errors] if isinstance(errors, list) else [],
            denials=denials,
        )

    def _assistant(self, message: dict[str, object]) -> str:
        if isinstance(error := message.get("error"), str):
            self.errors.append(error)
        body = message.get("message")
        content = body.get("content") if isinstance(body, dict) else None
        if not isinstance(content, list):
            return ""
        shown = []
        for block in content:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and isinstance(block.get("text"), str):
                self.texts.append(block["text"])
                shown.append(_with_newline(block["text"]))
            elif block.get("type") == "tool_use":
                shown.append(_tool_line(block))
        return "".join(shown)

    def _user(self, message: dict[str, object]) -> str:
        """Tool results are often long (file contents): only failed ones are shown, briefly."""
        body = message.get("message")
        content = body.get("content") if isinstance(body, dict) else None
        if not isinstance(content, list):
            return ""
        shown = []
        for block in content:
            if (
                isinstance(block, dict)
                and block.get("type") == "tool_result"
                and block.get("is_error")
                and str(block.get("tool_use_id")) not in self.denied  # said already
            ):
                text = block.get("content")
                if isinstance(text, list):
                    text = " ".join(b.get("text", "") for b in text if isinstance(b, dict))
                first = str(text or "").strip().splitlines()[:1]
                shown.append(f"← error: {first[0][:TOOL_INPUT_CHARS] if first else ''}\n")
        return "".join(shown)

    @property
    def auth_failed(self) -> bool:
        """The CLI had no usable credentials (its own made-up answer says so)."""
        if "authentication_failed" in self.errors:
            return True
        text = self.result.result if self.result else ""
        return "Not logged in" in text or "Invalid API key" in text


class LineSplitter:
    """Bytes as they come -> whole lines (decoded as UTF-8), keeping a partial line for later."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> list[str]:
        self._pending += data
        *lines, self._pending = self._pending.split(b"\n")
        return [line.decode("utf-8", "replace") for line in lines]

    def flush(self) -> list[str]:
        rest, self._pending = self._pending, b""
        return [rest.decode("utf-8", "replace")] if rest else []
