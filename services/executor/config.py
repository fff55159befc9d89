"""The executor's configuration: ``swarm.toml``, then environment, then flags (each overriding the
one before), else defaults.

```toml
[swarm]
id = "default"                  # the swarm its configured agents join (env SWARM_DEFAULT_ID);
name = "default"                # it hosts API-registered agents of every swarm (see swarms)
budget_usd = 50                 # the swarm's budget when this executor creates it (then: API)

[executor]
id = "local"                    # stable per executor (env SWARM_EXECUTOR_ID); "auto": hostname
max_agents = 10                 # agents it hosts at most, counting API-registered ones it takes up
backend = "local"               # sandbox backend: local | daytona (env SWARM_SANDBOX_BACKEND)
data_dir = ".swarm"             # agents' working directories live in <data_dir>/agents/<agent>
timeout = 600                   # seconds a task may run unless the task says otherwise
git_timeout = 120               # seconds a clone or pull of the project may take
pass_env = ["HTTPS_PROXY"]      # extra variables of the executor's environment agents get
labels = ["gpu"]                # placement: it takes up agents whose labels it all has
swarms = ["web", "payments"]    # placement: only these swarms' agents (default: every swarm)

[claude]
bin = "claude"                  # env SWARM_CLAUDE_BIN
model = "sonnet"
max_turns = 30
permission_mode = "acceptEdits" # default: local backend acceptEdits, daytona bypassPermissions
allowed_tools = ["Bash(git *)"] # default (local): git, package managers, test runners, file tools
disallowed_tools = ["WebFetch"]
max_budget_usd = 5              # each task's --max-budget-usd unless the task says otherwise
append_system_prompt = "You are one agent of a team..."
skip_permissions = false        # = permission_mode "bypassPermissions": only in isolated sandboxes

[git]
email_domain = "swarm.local"    # agents commit as "<agent name> <<agent id>@<domain>>"

[daytona]                       # backend = "daytona": see services/executor/sandboxes/daytona.py
snapshot = "swarm-agent"        # or image = "..."; env DAYTONA_API_URL, _API_KEY, _TARGET

[[agents]]                      # none given: the three default agents (default swarm only)
id = "frontend-agent"
name = "Frontend Agent"
role = "frontend"
skills = ["frontend", "ui"]
executor = "local"              # optional: only the executor with this id hosts it
git_name = "Frontend Agent"     # optional: its commits' author (default: its name, id@domain)
git_email = "fe@example.com"
permission_mode = "plan"        # optional: its own claude permissions and model
allowed_tools = ["Bash(npm *)"]
model = "opus"
```
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from schemas import subjects
from schemas.errors import Invalid
from services.executor.claude_settings import PERMISSION_MODES, AgentClaude, ClaudeOptions
from services.executor.git import DEFAULT_EMAIL_DOMAIN

DEFAULT_TIMEOUT = 600.0
DEFAULT_MAX_AGENTS = 10
DEFAULT_LEASE = 10.0
DEFAULT_GIT_TIMEOUT = 120.0
AUTO_ID = "auto"  # executor id: this host's name

Table = dict[str, object]  # a TOML table as read (values checked where they are used)
N = TypeVar("N", int, float)


@dataclass(frozen=True)
class AgentConfig:
    id: str
    name: str
    role: str = ""
    skills: tuple[str, ...] = ()
    sandbox_id: str | None = None
    claude: AgentClaude = field(default_factory=AgentClaude)
    git_name: str | None = None
    git_email: str | None = None


DEFAULT_AGENTS: tuple[AgentConfig, ...] = (
    AgentConfig("frontend-agent", "Frontend Agent", "frontend", ("frontend", "ui")),
    AgentConfig("backend-agent", "Backend Agent", "backend", ("backend", "api")),
    AgentConfig("qa-agent", "QA Agent", "qa", ("qa", "test")),
)


@dataclass(frozen=True)
class ExecutorConfig:
    swarm: str = "default"
    swarm_name: str = ""  # the name given when this executor creates the swarm (default: its id)
    swarm_budget_usd: float | None = None  # the budget given when this executor creates it
    git_email_domain: str = DEFAULT_EMAIL_DOMAIN
    executor_id: str = "local"
    data_dir: Path = Path(".swarm")
    agents: tuple[AgentConfig, ...] = DEFAULT_AGENTS
    max_agents: int = DEFAULT_MAX_AGENTS
    backend: str = "local"
    task_timeout: float = DEFAULT_TIMEOUT
    claude: ClaudeOptions = field(default_factory=ClaudeOptions)
    pass_env: tuple[str, ...] = ()
    lease: float = DEFAULT_LEASE  # presence older than this: the agent's host is gone
    git_timeout: float = DEFAULT_GIT_TIMEOUT  # one clone / pull of the project, at most
    # [daytona hook] swarm.toml's [daytona] table, as it is: read by sandboxes/daytona.py
    daytona: Table = field(default_factory=dict)
    labels: tuple[str, ...] = ()  # placement: agents asking for labels need all of them here
    swarms: tuple[str, ...] | None = None  # placement: the swarms it takes agents of (None: all)

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        subjects.check_token(self.swarm, "swarm")
        subjects.check_token(self.executor_id, "executor_id")
        seen = set()
        for agent in self.agents:
            subjects.check_token(agent.id, "agents.id")
            if agent.id in seen:
                raise Invalid("agents.id", f"agent {agent.id!r} is configured twice")
            seen.add(agent.id)
        if self.max_agents < 0:
            raise Invalid("max_agents", f"max_agents must be 0 or more, not {self.max_agents}")
        if not self.task_timeout > 0:
            raise Invalid("timeout", f"timeout must be over 0 seconds, not {self.task_timeout}")
        if self.claude.permission_mode not in (None, *PERMISSION_MODES):
            raise Invalid(
                "permission_mode",
                f"permission_mode must be one of {', '.join(PERMISSION_MODES)}, "
                f"not {self.claude.permission_mode!r}",
            )
        for agent in self.agents:
            if agent.claude.permission_mode not in (None, *PERMISSION_MODES):
                raise Invalid(
                    "agents.permission_mode",
                    f"agent {agent.id}: permission_mode must be one of "
                    f"{', '.join(PERMISSION_MODES)}",
                )
        for name, value in (
            ("max_budget_usd", self.claude.max_budget_usd),
            ("budget_usd", self.swarm_budget_usd),
        ):
            if value is not None and not value > 0:
                raise Invalid(name, f"{name} must be over 0 (dollars), not {value}")
        if not self.git_timeout > 0:
            raise Invalid(
                "git_timeout", f"git_timeout must be over 0 seconds, not {self.git_timeout}"
            )

    @property
    def agents_root(self) -> Path:
        return self.data_dir / "agents"

    @property
    def spool_dir(self) -> Path:
        """Where a running task's full output is kept until it is in the object store."""
        return self.data_dir / "outputs"


def host_executor_id(hostname: str) -> str:
    """``--executor-id auto``: the host's name as an id (a container's hostname is unique per
    replica, so ``docker compose up --scale executor=N`` gives N executors N ids)."""
    token = re.sub(r"[^A-Za-z0-9_-]", "-", hostname.split(".")[0])[:128].strip("-")
    return token or "local"


def agent_name(agent_id: str) -> str:
    """``frontend-agent`` -> ``Frontend Agent``."""
    return " ".join(word.capitalize() for word in agent_id.replace("_", "-").split("-") if word)


def parse_agent(spec: str) -> AgentConfig:
    """``--agent ID[:ROLE[:SKILL,SKILL]]``, e.g. ``docs-agent:docs:docs,writing``."""
    agent_id, _, rest = spec.partition(":")
    role, _, skills = rest.partition(":")
    subjects.check_token(agent_id, "agent")
    return AgentConfig(
        id=agent_id,
        name=agent_name(agent_id),
        role=role,
        skills=tuple(s.strip() for s in skills.split(",") if s.strip()),
    )


def _strings(value: object, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(s.strip() for s in value.split(",") if s.strip())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise Invalid(what, f"{what} must be a list of strings")


def _optional_str(value: object, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise Invalid(what, f"{what} must be a string, not {value!r}")


def _agents_from_toml(raw: object, executor_id: str) -> tuple[AgentConfig, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise Invalid("agents", "agents must be an array of tables ([[agents]])")
    found = []
    for index, entry in enumerate(raw):
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise Invalid(f"agents[{index}].id", f"agents[{index}] needs an id")
        if entry.get("executor") not in (None, executor_id):
            continue
        found.append(
            AgentConfig(
                id=entry["id"],
                name=str(entry.get("name") or agent_name(entry["id"])),
                role=str(entry.get("role") or ""),
                skills=_strings(entry.get("skills", []), f"agents[{index}].skills"),
                sandbox_id=_optional_str(entry.get("sandbox_id"), f"agents[{index}].sandbox_id"),
                claude=AgentClaude(
                    model=_optional_str(entry.get("model"), f"agents[{index}].model"),
                    permission_mode=_optional_str(
                        entry.get("permission_mode"), f"agents[{index}].permission_mode"
                    ),
                    allowed_tools=(
                        None
                        if entry.get("allowed_tools") is None
                        else _strings(entry.get("allowed_tools"), f"agents[{index}].allowed_tools")
                    ),
                ),
                git_name=_optional_str(entry.get("git_name"), f"agents[{index}].git_name"),
                git_email=_optional_str(entry.get("git_email"), f"agents[{index}].git_email"),
            )
        )
    return tuple(found)


def _table(raw: object, name: str) -> Table:
    """A top-level table of swarm.toml (``[daytona]``: checked by the daytona backend)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise Invalid(name, f"{name} must be a table ([{name}])")
    return dict(raw)


def read_toml(path: Path) -> Table:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise Invalid("config", f"{path}: {error}") from error


def _number(value: object, what: str, kind: Callable[[str | float], N]) -> N:
    """``value`` as ``kind`` (``int`` or ``float``)."""
    if isinstance(value, str | int | float):
        try:
            return kind(value)
        except ValueError:
            pass
    raise Invalid(what, f"{what} must be a number, not {value!r}")


def load(
    args: argparse.Namespace | None = None, env: Mapping[str, str] | None = None
) -> ExecutorConfig:
    """Build the configuration from ``swarm.toml`` (``--config``, ``SWARM_CONFIG``, or
    ``./swarm.toml`` when it exists), the environment and the flags."""
    env = os.environ if env is None else env
    flags: dict[str, object] = vars(args) if args is not None else {}

    def flag(name: str) -> object:
        return flags.get(name)

    if env.get("SWARM_BACKEND") and not env.get("SWARM_SANDBOX_BACKEND"):
        raise Invalid(
            "SWARM_BACKEND",
            "SWARM_BACKEND was renamed SWARM_SANDBOX_BACKEND (the one name everywhere): set that",
        )
    config_path = _optional_str(flag("config"), "config") or env.get("SWARM_CONFIG")
    if config_path:
        if not Path(config_path).is_file():
            raise Invalid("config", f"config file {config_path} does not exist")
        toml = read_toml(Path(config_path))
    elif Path("swarm.toml").is_file():
        toml = read_toml(Path("swarm.toml"))
    else:
        toml = {}
    swarm_t = _table(toml.get("swarm") or None, "swarm")
    executor_t = _table(toml.get("executor") or None, "executor")
    claude_t = _table(toml.get("claude") or None, "claude")
    git_t = _table(toml.get("git") or None, "git")

    def pick(
        flag_name: str, env_name: str | None, table: Table, key: str, default: object
    ) -> object:
        for value in (flag(flag_name), env.get(env_name) if env_name else None, table.get(key)):
            if value is not None and value != "":
                return value
        return default

    executor_id = str(pick("executor_id", "SWARM_EXECUTOR_ID", executor_t, "id", "local"))
    if executor_id == AUTO_ID:
        executor_id = host_executor_id(socket.gethostname())
    swarm = str(pick("swarm", "SWARM_DEFAULT_ID", swarm_t, "id", "default"))

    agents: tuple[AgentConfig, ...] | None = None
    agent_specs = flag("agent")
    if isinstance(agent_specs, list) and agent_specs:
        agents = tuple(parse_agent(str(spec)) for spec in agent_specs)
    else:
        agents = _agents_from_toml(toml.get("agents"), executor_id)
    if agents is None and swarm != (env.get("SWARM_DEFAULT_ID") or "default"):
        agents = ()  # the built-in agents belong to the default swarm only
    labels = _strings(pick("labels", "SWARM_EXECUTOR_LABELS", executor_t, "labels", []), "labels")
    served = pick("swarms", "SWARM_EXECUTOR_SWARMS", executor_t, "swarms", None)
    swarms = None if served is None else _strings(served, "swarms")
    for name in swarms or ():
        subjects.check_token(name, "swarms")
    max_turns = pick("max_turns", None, claude_t, "max_turns", None)
    allowed = pick("allowed_tools", None, claude_t, "allowed_tools", None)
    task_budget = pick("max_budget_usd", "SWARM_MAX_BUDGET_USD", claude_t, "max_budget_usd", None)
    swarm_budget = pick("budget_usd", "SWARM_BUDGET_USD", swarm_t, "budget_usd", None)
    claude = ClaudeOptions(
        bin=str(pick("claude_bin", "SWARM_CLAUDE_BIN", claude_t, "bin", "claude")),
        model=_optional_str(pick("model", "SWARM_CLAUDE_MODEL", claude_t, "model", None), "model"),
        max_turns=_number(max_turns, "max_turns", int) if max_turns is not None else None,
        permission_mode=_optional_str(
            pick("permission_mode", None, claude_t, "permission_mode", None), "permission_mode"
        ),
        allowed_tools=None if allowed is None else _strings(allowed, "allowed_tools"),
        disallowed_tools=_strings(
            pick("disallowed_tools", None, claude_t, "disallowed_tools", []), "disallowed_tools"
        ),
        max_budget_usd=(
            _number(task_budget, "max_budget_usd", float) if task_budget is not None else None
        ),
        append_system_prompt=_optional_str(
            pick("append_system_prompt", None, claude_t, "append_system_prompt", None),
            "append_system_prompt",
        ),
        skip_permissions=bool(
            flag("dangerously_skip_permissions") or claude_t.get("skip_permissions", False)
        ),
    )
    pass_env = list(_strings(executor_t.get("pass_env", []), "pass_env"))
    pass_env += _strings(env.get("SWARM_PASS_ENV", ""), "SWARM_PASS_ENV")
    pass_env_flags = flag("pass_env")
    for entry in pass_env_flags if isinstance(pass_env_flags, list) else []:
        pass_env += _strings(entry, "pass_env")
    config = ExecutorConfig(
        swarm=swarm,
        swarm_name=str(swarm_t.get("name") or swarm),
        swarm_budget_usd=(
            _number(swarm_budget, "budget_usd", float) if swarm_budget is not None else None
        ),
        git_email_domain=str(git_t.get("email_domain") or DEFAULT_EMAIL_DOMAIN),
        executor_id=executor_id,
        data_dir=Path(str(pick("data_dir", "SWARM_DATA_DIR", executor_t, "data_dir", ".swarm"))),
        max_agents=_number(
            pick("max_agents", "SWARM_MAX_AGENTS", executor_t, "max_agents", DEFAULT_MAX_AGENTS),
            "max_agents",
            int,
        ),
        backend=str(  # [daytona hook] env SWARM_SANDBOX_BACKEND
            pick("backend", "SWARM_SANDBOX_BACKEND", executor_t, "backend", "local")
        ),
        task_timeout=_number(
            pick("timeout", "SWARM_TASK_TIMEOUT", executor_t, "timeout", DEFAULT_TIMEOUT),
            "timeout",
            float,
        ),
        claude=claude,
        pass_env=tuple(dict.fromkeys(pass_env)),
        lease=_number(
            env.get("SWARM_LEASE_SECONDS") or DEFAULT_LEASE, "SWARM_LEASE_SECONDS", float
        ),
        git_timeout=_number(
            pick(
                "git_timeout", "SWARM_GIT_TIMEOUT", executor_t, "git_timeout", DEFAULT_GIT_TIMEOUT
            ),
            "git_timeout",
            float,
        ),
        daytona=_table(toml.get("daytona"), "daytona"),  # [daytona hook]
        labels=tuple(dict.fromkeys(labels)),
        swarms=swarms,
    )
    if agents is not None:
        config = replace(config, agents=agents)
    return config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--config", help="swarm.toml to read (env SWARM_CONFIG; default ./swarm.toml if present)")
    add(
        "--swarm",
        help="the swarm its configured agents join (env SWARM_DEFAULT_ID; default 'default'); "
        "the three built-in agents join only the default swarm",
    )
    add("--labels", help="placement labels, comma separated (env SWARM_EXECUTOR_LABELS)")
    add(
        "--swarms",
        help="take up API-registered agents of these swarms only, comma separated "
        "(env SWARM_EXECUTOR_SWARMS; default every swarm)",
    )
    add(
        "--executor-id",
        help="this executor's stable id, 'auto' for the host name "
        "(env SWARM_EXECUTOR_ID; default 'local')",
    )
    add("--data-dir", help="data directory (env SWARM_DATA_DIR; default .swarm)")
    add("--max-agents", type=int, help="agents to host at most (env SWARM_MAX_AGENTS; default 10)")
    add(
        "--backend",
        help="sandbox backend: local | daytona (env SWARM_SANDBOX_BACKEND; default local)",
    )
    add("--timeout", type=float, help="default task timeout in seconds (default 600)")
    add(
        "--git-timeout",
        type=float,
        help="seconds a clone/pull of the project may take (env SWARM_GIT_TIMEOUT; default 120)",
    )
    add(
        "--agent",
        action="append",
        metavar="ID[:ROLE[:SKILL,SKILL]]",
        help="host this agent (repeat; replaces the configured agents)",
    )
    add("--pass-env", action="append", metavar="NAME", help="pass this variable to agents (repeat)")
    add("--claude-bin", help="the claude CLI (env SWARM_CLAUDE_BIN; default claude on PATH)")
    add("--model", help="claude --model")
    add("--max-turns", type=int, help="claude --max-turns")
    add(
        "--permission-mode",
        help="claude --permission-mode (default: acceptEdits on the local backend, "
        "bypassPermissions on daytona)",
    )
    add(
        "--allowed-tools",
        help="claude --allowedTools, comma separated (replaces the backend's default list)",
    )
    add("--disallowed-tools", help="claude --disallowedTools, comma separated")
    add(
        "--max-budget-usd",
        type=float,
        help="each claude task's --max-budget-usd unless the task says (env SWARM_MAX_BUDGET_USD)",
    )
    add(
        "--budget-usd",
        type=float,
        help="the swarm's budget when this executor creates it (env SWARM_BUDGET_USD)",
    )
    add("--append-system-prompt", help="claude --append-system-prompt")
    add(
        "--dangerously-skip-permissions",
        action="store_true",
        default=None,
        help="claude --dangerously-skip-permissions (only in isolated sandboxes)",
    )
