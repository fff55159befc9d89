"""Reading what ``claude --print --output-format stream-json --verbose`` prints: one JSON object
per line.

- ``system`` / ``init``: the session starts (``session_id``, ``model``, ``tools``...).
- ``assistant``: a model message; its ``text`` content blocks are what a person wants to read as
  it comes, ``tool_use`` blocks say what the agent is doing. A message the CLI made up itself
  (no credentials, API down) carries ``error`` (``authentication_failed``...).
- ``user``: tool results going back to the model.
- ``result``: the end: ``result`` (the final answer or the error), ``is_error``,
  ``total_cost_usd``, ``num_turns``, ``usage``, ``session_id``. Its ``subtype`` says nothing
  about success (the real "Not logged in" capture says ``success``): ``is_error`` does.

Pure: lines in, text and facts out. See ``/work/shared/fixtures`` for a real capture.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from schemas.events import Usage

TOOL_INPUT_CHARS = 200


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


def _tool_line(block: dict[str, object]) -> str:
    name = block.get("name") or "tool"
    raw = block.get("input")
    if isinstance(raw, dict):
        shown = raw.get("command") or raw.get("file_path") or raw.get("pattern") or raw
    else:
        shown = raw
    text = shown if isinstance(shown, str) else json.dumps(shown, ensure_ascii=False)
    text = " ".join(text.split())
    if len(text) > TOOL_INPUT_CHARS:
        text = text[: TOOL_INPUT_CHARS - 1] + "…"
    return f"→ {name}: {text}\n" if text else f"→ {name}\n"


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
            if message.get("subtype") == "init" and isinstance(message.get("model"), str):
                self.model = message["model"]
            return ""
        if kind == "assistant":
            return self._assistant(message)
        if kind == "user":
            return self._user(message)
        if kind == "result":
            result = message.get("result")
            self.result = ClaudeResult(
                result=result if isinstance(result, str) else "",
                is_error=message.get("is_error") is not False,
                subtype=str(message.get("subtype") or ""),
                cost_usd=_number(message.get("total_cost_usd")),
                turns=_int(message.get("num_turns")) if "num_turns" in message else None,
                usage=usage_of(message.get("usage")),
                session_id=self.session_id,
                duration_ms=_int(message.get("duration_ms")) or None,
            )
            return ""
        return ""

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
            if block.get("type") == "text" and isinstance(text := block.get("text"), str):
                self.texts.append(text)
                shown.append(_with_newline(text))
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
