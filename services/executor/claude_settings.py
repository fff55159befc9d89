"""What one ``claude`` run is given: its flags and its environment, from the swarm's settings
(``[claude]`` in swarm.toml, flags), the agent's (``[[agents]]``), the task's (its ``claude``
field) and the sandbox backend. Pure.

Permissions, when nobody set them:

- ``daytona``: the sandbox is an isolated machine of its own; the agent may do anything in it
  (``--dangerously-skip-permissions``, with ``IS_SANDBOX=1`` so the CLI accepts it as root).
- ``local``: the agent works on the user's machine. ``acceptEdits`` lets it edit files inside its
  working directory (the CLI refuses edits and reads outside it), and ``--allowedTools`` lets it
  run the commands a coding agent needs (git, package managers, test runners, file tools);
  anything else is denied — and a run with a denial does not count as completed.

Most specific wins: a task's ``permission_mode`` over the agent's over the swarm's over the
backend default; ``allowed_tools``: the agent's list replaces the swarm's (which replaces the
default), a task's list adds to it; ``disallowed_tools`` add up (a denial beats an allowance).
A run given the swarm's MCP server (``mcp_config``, ``membership.py``) may always call its tools
(``mcp__swarm``), whatever list applies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from schemas import environment
from schemas.events import ClaudeTaskSettings
from services.executor.membership import MCP_TOOLS

PERMISSION_MODES = ("default", "acceptEdits", "auto", "bypassPermissions", "dontAsk", "plan")
BYPASS = "bypassPermissions"

LOCAL_ALLOWED_COMMANDS = (
    # version control, and Swarm's own CLI (chat with the team)
    "git",
    "swarm",
    # package managers, runtimes, build tools and test runners
    *("npm", "npx", "node", "yarn", "pnpm", "bun", "deno", "tsc"),
    *("python", "python3", "pip", "pip3", "uv", "pytest", "ruff", "mypy", "tox"),
    *("make", "cargo", "rustc", "go", "gcc", "cc", "javac", "java", "mvn", "gradle"),
    # reading and arranging files (the CLI keeps them inside the working directory)
    *("ls", "cat", "head", "tail", "wc", "grep", "rg", "find", "diff", "sort", "uniq"),
    *("mkdir", "touch", "cp", "mv", "rm", "echo", "printf", "pwd", "which", "test", "true"),
)
LOCAL_ALLOWED_TOOLS = tuple(f"Bash({command} *)" for command in LOCAL_ALLOWED_COMMANDS)


@dataclass(frozen=True)
class ClaudeOptions:
    """How the ``claude`` runtime calls the CLI: swarm.toml ``[claude]`` and flags. None: not
    set (the backend's default applies)."""

    bin: str = "claude"
    model: str | None = None
    max_turns: int | None = None
    permission_mode: str | None = None
    allowed_tools: tuple[str, ...] | None = None
    disallowed_tools: tuple[str, ...] = ()
    append_system_prompt: str | None = None
    skip_permissions: bool = False  # the same as permission_mode = "bypassPermissions"
    max_budget_usd: float | None = None  # each task's, unless the task says otherwise
    mcp_config: str | None = None  # --mcp-config: the swarm's MCP server (membership.mcp_config)


@dataclass(frozen=True)
class AgentClaude:
    """An agent's own ``[[agents]]`` settings (None: the swarm's)."""

    model: str | None = None
    permission_mode: str | None = None
    allowed_tools: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ClaudeRun:
    """Everything one run of the CLI is called with. ``session_id``: a new session under this id
    (``--session-id``); ``resume``: the session of an earlier attempt to continue (``--resume``)."""

    model: str | None = None
    max_turns: int | None = None
    permission_mode: str = "default"
    allowed_tools: tuple[str, ...] = ()
    disallowed_tools: tuple[str, ...] = ()
    append_system_prompt: str | None = None
    max_budget_usd: float | None = None
    session_id: str | None = None
    resume: str | None = None
    mcp_config: str | None = None
    permissions_from: str = ""  # where the permission mode came from, for the log

    @property
    def bypass(self) -> bool:
        return self.permission_mode == BYPASS


def backend_default(backend: str) -> tuple[str, tuple[str, ...]]:
    """(permission mode, allowed tools) when nobody set them."""
    if backend == "daytona":
        return BYPASS, ()
    return "acceptEdits", LOCAL_ALLOWED_TOOLS


def resolve(
    options: ClaudeOptions,
    backend: str,
    agent: AgentClaude | None = None,
    task: ClaudeTaskSettings | None = None,
) -> ClaudeRun:
    """The flags of one run: the task's settings over the agent's over the swarm's over the
    backend's default."""
    agent = agent or AgentClaude()
    mode, tools = backend_default(backend)
    source = f"the {backend} backend's default"
    swarm_mode = BYPASS if options.skip_permissions else options.permission_mode
    if swarm_mode:
        mode, source = swarm_mode, "the swarm's [claude] settings"
    if options.allowed_tools is not None:
        tools = options.allowed_tools
    if agent.permission_mode:
        mode, source = agent.permission_mode, "the agent's settings"
    if agent.allowed_tools is not None:
        tools = agent.allowed_tools
    model = agent.model or options.model
    budget = options.max_budget_usd
    denied = options.disallowed_tools
    if task is not None:
        if task.permission_mode:
            mode, source = task.permission_mode, "the task's settings"
        tools = (*tools, *(t for t in task.allowed_tools if t not in tools))
        denied = (*denied, *(t for t in task.disallowed_tools if t not in denied))
        model = task.model or model
        if task.max_budget_usd is not None:
            budget = task.max_budget_usd
    if options.mcp_config and MCP_TOOLS not in tools:
        tools = (*tools, MCP_TOOLS)  # the swarm's own tools: chat, board, follow-ups
    return ClaudeRun(
        model=model,
        max_turns=options.max_turns,
        permission_mode=mode,
        allowed_tools=tuple(tools) if mode != BYPASS else (),
        mcp_config=options.mcp_config,
        disallowed_tools=tuple(denied),
        append_system_prompt=options.append_system_prompt,
        max_budget_usd=budget,
        permissions_from=source,
    )


def flags(run: ClaudeRun) -> list[str]:
    """The CLI flags for ``run`` (after ``--print --output-format stream-json --verbose``)."""
    argv: list[str] = []
    if run.resume:
        argv += ["--resume", run.resume]
    elif run.session_id:
        argv += ["--session-id", run.session_id]
    if run.model:
        argv += ["--model", run.model]
    if run.max_turns:
        argv += ["--max-turns", str(run.max_turns)]
    if run.max_budget_usd is not None:
        argv += ["--max-budget-usd", f"{run.max_budget_usd:g}"]
    if run.bypass:
        argv.append("--dangerously-skip-permissions")
    elif run.permission_mode != "default":
        argv += ["--permission-mode", run.permission_mode]
    if run.append_system_prompt:
        argv += ["--append-system-prompt", run.append_system_prompt]
    if run.mcp_config:
        argv += ["--mcp-config", run.mcp_config]
    if run.disallowed_tools:
        argv += ["--disallowedTools", ",".join(run.disallowed_tools)]
    if run.allowed_tools:
        argv += ["--allowedTools", ",".join(run.allowed_tools)]
    return argv


def environment_of(source_env: Mapping[str, str], run: ClaudeRun) -> dict[str, str]:
    """The run's Claude Code environment: the settings (credentials included) set in the
    executor's environment (``schemas.environment``), and ``IS_SANDBOX=1`` when permissions are
    bypassed (the CLI refuses that as root otherwise)."""
    env = environment.claude_settings(source_env)
    if run.bypass:
        env["IS_SANDBOX"] = "1"
    return env


def describe(run: ClaudeRun) -> str:
    """One line for the task's log: how the run is permitted."""
    if run.bypass:
        text = f"permissions bypassed ({run.permissions_from}; an isolated sandbox)"
    else:
        text = f"permission mode {run.permission_mode} ({run.permissions_from})"
        if run.allowed_tools:
            text += f", {len(run.allowed_tools)} allowed tool rules"
    if run.disallowed_tools:
        text += f", denied: {', '.join(run.disallowed_tools)}"
    if run.max_budget_usd is not None:
        text += f", budget ${run.max_budget_usd:g}"
    return text
