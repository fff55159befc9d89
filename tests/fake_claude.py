#!/usr/bin/env python3
"""A stand-in for the ``claude`` CLI in print mode, speaking its stream-json format.

Its lines follow the real capture in ``tests/fixtures/claude-stream-json-not-logged-in.jsonl``
(Claude Code 2.1.330; the same keys on every line): a ``system``/``init`` line, ``assistant``
lines with the model's content blocks, ``user`` lines with tool results, and a final ``result``
line.

Usage: as ``SWARM_CLAUDE_BIN`` (or ``--claude-bin``). Standard library only.

Flags accepted (like the real CLI, anything else is an error): ``-p``/``--print``,
``--output-format text|json|stream-json`` (stream-json needs ``--verbose``), ``--verbose``,
``--model M``, ``--max-turns N``, ``--permission-mode M``, ``--allowedTools``/``--allowed-tools
T...``, ``--disallowedTools T...``, ``--append-system-prompt S``,
``--dangerously-skip-permissions``, ``--session-id ID`` (the session's id), ``--resume ID``,
``--max-budget-usd N``, ``--include-hook-events``, ``--``, then the prompt (or the prompt on
stdin).

It stands in where the CLI's own behaviour does not matter (Swarm's plumbing: dispatch, output,
timeouts, cancels); tests of what the CLI does run the real one (``tests/claude_cli.py``) against
``tests/fake_anthropic.py``.

``FAKE_CLAUDE_MODE``:
- ``auto`` (default): like the real CLI, ``success`` when ``ANTHROPIC_API_KEY`` or
  ``CLAUDE_CODE_OAUTH_TOKEN`` is set, else ``not-logged-in``;
- ``success``: a short session (a tool call, an answer derived from the prompt), non-zero cost,
  turns and tokens, exit 0;
- ``not-logged-in``: the capture: ``is_error: true``, "Not logged in · Please run /login", exit 1;
- ``slow``: starts, says something, then works for ``FAKE_CLAUDE_SLEEP`` seconds (default 300)
  before succeeding (for timeouts and cancels).

``FAKE_CLAUDE_PROMPT_LOG``: a file to which each call appends one JSON line ``{"prompt", "cwd",
"env"}`` (``env``: the ``SWARM_*`` variables it was given), so tests can see what it was asked.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid

VERSION = "2.1.330"
NOT_LOGGED_IN = "Not logged in · Please run /login"
TOOLS = [
    "Task", "Bash", "Edit", "Glob", "Grep", "NotebookEdit", "Read", "TodoWrite", "WebFetch",
    "WebSearch", "Write",
]  # fmt: skip
VALUED = {
    "--output-format",
    "--model",
    "--max-turns",
    "--permission-mode",
    "--append-system-prompt",
    "--session-id",
    "--resume",
    "--max-budget-usd",
    "--mcp-config",
}
BOOLEAN = {
    "-p",
    "--print",
    "--verbose",
    "--dangerously-skip-permissions",
    "--include-hook-events",
}
VARIADIC = {"--allowedTools", "--allowed-tools", "--disallowedTools", "--disallowed-tools"}
PERMISSION_MODES = {"default", "acceptEdits", "bypassPermissions", "plan", "dontAsk", "auto"}


class UsageError(Exception):
    pass


def parse(argv: list[str]) -> dict:
    options: dict = {"allowed": [], "prompt": None}
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--":
            options["prompt"] = " ".join(args) if args else None
            break
        if arg in BOOLEAN:
            options["print" if arg == "-p" else arg.lstrip("-")] = True
        elif arg in VALUED:
            if not args or args[0].startswith("--"):
                raise UsageError(f"error: option '{arg} <value>' argument missing")
            options[arg.lstrip("-")] = args.pop(0)
        elif arg in VARIADIC:
            while args and not args[0].startswith("-"):
                options["allowed"] += [t for t in args.pop(0).replace(",", " ").split() if t]
        elif arg.startswith("-"):
            raise UsageError(f"error: unknown option '{arg}'")
        elif options["prompt"] is None:
            options["prompt"] = arg
        else:
            raise UsageError(f"error: too many arguments. Expected 1 argument but got {arg!r}.")
    if options.get("max-turns") is not None and not options["max-turns"].isdigit():
        raise UsageError(f"error: --max-turns must be a number, not {options['max-turns']!r}")
    mode = options.get("permission-mode")
    if mode is not None and mode not in PERMISSION_MODES:
        raise UsageError(f"error: option '--permission-mode <mode>' argument '{mode}' is invalid.")
    return options


def emit(line: dict) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def usage(input_tokens: int, output_tokens: int, cache_read: int, cache_creation: int) -> dict:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": cache_creation,
        "cache_read_input_tokens": cache_read,
        "output_tokens": output_tokens,
        "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
        "service_tier": "standard",
        "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 0},
    }


def init_line(session: str, options: dict, api_key_source: str) -> dict:
    cwd = os.getcwd()
    return {
        "type": "system",
        "subtype": "init",
        "cwd": cwd,
        "session_id": session,
        "tools": TOOLS,
        "mcp_servers": [],
        "model": options.get("model") or "claude-opus-5-5",
        "permissionMode": options.get("permission-mode")
        or ("bypassPermissions" if options.get("dangerously-skip-permissions") else "default"),
        "slash_commands": ["compact", "context", "init", "review"],
        "apiKeySource": api_key_source,
        "claude_code_version": VERSION,
        "output_style": "default",
        "agents": ["claude", "Explore", "general-purpose", "Plan"],
        "skills": [],
        "plugins": [],
        "uuid": str(uuid.uuid4()),
        "memory_paths": {"auto": f"{os.environ.get('HOME', cwd)}/.claude/projects/memory/"},
        "original_cwd": cwd,
        "additional_directories": [],
        "capabilities": [],
        "analytics_disabled": False,
        "product_feedback_disabled": False,
        "served_by_anthropic": True,
        "terminal_slash_commands": [],
        "messaging_socket_path": None,
        "fast_mode_state": "off",
        "fast_mode_disabled_reason": "sdk_opt_in_required",
        "per_turn_effort_active": True,
        "ultrathink_available": False,
        "ultrathink_typed_raises": False,
        "view_mode": "default",
    }


def assistant_line(session: str, model: str, content: list, **extra: object) -> dict:
    return {
        "type": "assistant",
        "message": {
            "diagnostics": None,
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "container": None,
            "model": model,
            "role": "assistant",
            "stop_details": None,
            "stop_reason": None,
            "stop_sequence": None,
            "type": "message",
            "usage": usage(12, 40, 0, 900),
            "content": content,
            "context_management": None,
        },
        "parent_tool_use_id": None,
        "session_id": session,
        "uuid": str(uuid.uuid4()),
        **extra,
    }


def result_line(
    session: str,
    *,
    result: str,
    is_error: bool,
    turns: int,
    cost: float,
    tokens: dict,
    started: float,
    terminal_reason: str = "completed",
) -> dict:
    elapsed = int((time.monotonic() - started) * 1000)
    return {
        "type": "result",
        "subtype": "success",
        "is_error": is_error,
        "duration_ms": elapsed,
        "duration_api_ms": elapsed if cost else 0,
        "num_turns": turns,
        "result": result,
        "stop_reason": "end_turn" if not is_error else "stop_sequence",
        "session_id": session,
        "total_cost_usd": cost,
        "usage": tokens,
        "modelUsage": {},
        "permission_denials": [],
        "terminal_reason": terminal_reason,
        "fast_mode_state": "off",
        "fast_mode_disabled_reason": "sdk_opt_in_required",
        "subagent_stats": {"spawned": 0, "completed": 0, "failed": 0},
        "safety_stops": 0,
        "api_error_status": None,
        "uuid": str(uuid.uuid4()),
        "queued_turn_count": 0,
        "result_index": 0,
        "model_usage_since_last_result": {},
    }


def not_logged_in(session: str, options: dict, started: float) -> int:
    emit(init_line(session, options, "none"))
    emit(
        assistant_line(
            session,
            "<synthetic>",
            [{"type": "text", "text": NOT_LOGGED_IN}],
            timestamp=time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            error="authentication_failed",
            is_api_error_message=True,
        )
    )
    emit(
        result_line(
            session,
            result=NOT_LOGGED_IN,
            is_error=True,
            turns=1,
            cost=0,
            tokens=usage(0, 0, 0, 0),
            started=started,
            terminal_reason="api_error",
        )
    )
    return 1


def success(session: str, options: dict, prompt: str, started: float, pause: float) -> int:
    model = options.get("model") or "claude-opus-5-5"
    source = "ANTHROPIC_API_KEY" if os.environ.get("ANTHROPIC_API_KEY") else "none"
    emit(init_line(session, options, source))
    first = prompt.strip().splitlines()[0] if prompt.strip() else ""
    tool_id = f"toolu_{uuid.uuid4().hex[:24]}"
    emit(
        assistant_line(
            session,
            model,
            [
                {"type": "text", "text": f"Working on: {first}"},
                {
                    "type": "tool_use",
                    "id": tool_id,
                    "name": "Bash",
                    "input": {"command": "pwd", "description": "Show the working directory"},
                },
            ],
        )
    )
    if pause:
        time.sleep(pause)
    emit(
        {
            "type": "user",
            "message": {
                "role": "user",
                "content": [
                    {
                        "tool_use_id": tool_id,
                        "type": "tool_result",
                        "content": os.getcwd(),
                        "is_error": False,
                    }
                ],
            },
            "parent_tool_use_id": None,
            "session_id": session,
            "uuid": str(uuid.uuid4()),
        }
    )
    answer = f"Done: {first}"
    emit(assistant_line(session, model, [{"type": "text", "text": answer}]))
    emit(
        result_line(
            session,
            result=answer,
            is_error=False,
            turns=2,
            cost=0.0123,
            tokens=usage(1200, 345, 8000, 900),
            started=started,
        )
    )
    return 0


def main(argv: list[str]) -> int:
    started = time.monotonic()
    try:
        options = parse(argv)
    except UsageError as error:
        print(error, file=sys.stderr)
        return 1
    if not options.get("print"):
        print("fake claude: only print mode (-p/--print) is supported", file=sys.stderr)
        return 1
    output_format = options.get("output-format", "text")
    if output_format == "stream-json" and not options.get("verbose"):
        print(
            "Error: When using --print, --output-format=stream-json requires --verbose",
            file=sys.stderr,
        )
        return 1
    if output_format != "stream-json":
        print("fake claude: only --output-format stream-json is supported", file=sys.stderr)
        return 1
    prompt = options["prompt"]
    if prompt is None and not sys.stdin.isatty():
        prompt = sys.stdin.read()
    if not prompt or not prompt.strip():
        print(
            "Error: Input must be provided either through stdin or as a prompt argument "
            "when using --print",
            file=sys.stderr,
        )
        return 1
    record = os.environ.get("FAKE_CLAUDE_PROMPT_LOG")
    if record:
        given = {k: v for k, v in os.environ.items() if k.startswith("SWARM_")}
        with open(record, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"prompt": prompt, "cwd": os.getcwd(), "env": given}) + "\n")
    mode = os.environ.get("FAKE_CLAUDE_MODE", "auto")
    if mode == "auto":
        has_credentials = os.environ.get("ANTHROPIC_API_KEY") or os.environ.get(
            "CLAUDE_CODE_OAUTH_TOKEN"
        )
        mode = "success" if has_credentials else "not-logged-in"
    session = options.get("resume") or options.get("session-id") or str(uuid.uuid4())
    if mode == "not-logged-in":
        return not_logged_in(session, options, started)
    if mode == "success":
        return success(session, options, prompt, started, 0.0)
    if mode == "slow":
        return success(
            session, options, prompt, started, float(os.environ.get("FAKE_CLAUDE_SLEEP", "300"))
        )
    print(f"fake claude: unknown FAKE_CLAUDE_MODE {mode!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
