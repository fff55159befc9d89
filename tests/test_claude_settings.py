"""What a claude run is called with (services/executor/claude_settings.py) and which variables it
gets (schemas/environment.py): pure, no processes."""

from __future__ import annotations

from schemas import environment
from schemas.events import ClaudeTaskSettings
from services.bus.logs import known_secrets
from services.executor.claude_settings import (
    LOCAL_ALLOWED_TOOLS,
    AgentClaude,
    ClaudeOptions,
    ClaudeRun,
    describe,
    environment_of,
    resolve,
)

# --- permissions: given the settings at each level, when resolved, then the run's flags ------


def test_local_runs_accept_edits_and_the_commands_a_coding_agent_needs_by_default() -> None:
    run = resolve(ClaudeOptions(), "local")
    assert run.permission_mode == "acceptEdits" and not run.bypass
    assert run.allowed_tools == LOCAL_ALLOWED_TOOLS
    for needed in ("Bash(git *)", "Bash(npm *)", "Bash(pytest *)", "Bash(python3 *)"):
        assert needed in run.allowed_tools
    assert "local backend's default" in run.permissions_from


def test_daytona_runs_bypass_permissions_by_default_and_say_they_are_a_sandbox() -> None:
    run = resolve(ClaudeOptions(), "daytona")
    assert run.bypass and run.allowed_tools == ()
    assert environment_of({}, run) == {"IS_SANDBOX": "1"}
    assert environment_of({}, resolve(ClaudeOptions(), "local")) == {}


def test_the_swarm_s_settings_replace_the_backend_default() -> None:
    options = ClaudeOptions(permission_mode="dontAsk", allowed_tools=("Bash(make *)",))
    run = resolve(options, "local")
    assert (run.permission_mode, run.allowed_tools) == ("dontAsk", ("Bash(make *)",))
    assert resolve(ClaudeOptions(skip_permissions=True), "local").bypass


def test_an_agent_s_settings_replace_the_swarm_s() -> None:
    options = ClaudeOptions(permission_mode="dontAsk", allowed_tools=("Bash(make *)",), model="a")
    agent = AgentClaude(permission_mode="plan", allowed_tools=(), model="opus")
    run = resolve(options, "local", agent)
    assert (run.permission_mode, run.allowed_tools, run.model) == ("plan", (), "opus")
    assert run.permissions_from == "the agent's settings"


def test_a_task_picks_its_mode_adds_tools_and_denials_and_sets_its_budget() -> None:
    options = ClaudeOptions(allowed_tools=("Bash(git *)",), disallowed_tools=("WebFetch",))
    options = ClaudeOptions(**{**options.__dict__, "max_budget_usd": 5.0})
    task = ClaudeTaskSettings(
        permission_mode="acceptEdits",
        allowed_tools=["Bash(docker *)", "Bash(git *)"],
        disallowed_tools=["WebSearch"],
        max_budget_usd=0.5,
        model="haiku",
    )
    run = resolve(options, "daytona", AgentClaude(permission_mode="plan"), task)
    assert run.permission_mode == "acceptEdits" and run.permissions_from == "the task's settings"
    assert run.allowed_tools == ("Bash(git *)", "Bash(docker *)")
    assert run.disallowed_tools == ("WebFetch", "WebSearch")
    assert (run.max_budget_usd, run.model) == (0.5, "haiku")


def test_without_a_task_budget_the_swarm_default_applies() -> None:
    run = resolve(ClaudeOptions(max_budget_usd=2.0), "local", task=ClaudeTaskSettings())
    assert run.max_budget_usd == 2.0
    assert "budget $2" in describe(run)


def test_a_bypassing_run_gets_no_allow_list_it_does_not_need() -> None:
    task = ClaudeTaskSettings(permission_mode="bypassPermissions", allowed_tools=["Bash(x *)"])
    run = resolve(ClaudeOptions(), "local", task=task)
    assert run.bypass and run.allowed_tools == ()
    assert describe(run).startswith("permissions bypassed (the task's settings")


# --- environment --------------------------------------------------------------------------------


EXECUTOR_ENV = {
    "PATH": "/usr/bin",
    "HOME": "/root",
    "ANTHROPIC_API_KEY": "sk-ant-key-123456",
    "ANTHROPIC_BASE_URL": "http://gateway:8080",
    "ANTHROPIC_MODEL": "claude-x",
    "ANTHROPIC_DEFAULT_SONNET_MODEL": "claude-sonnet-x",
    "CLAUDE_CODE_USE_BEDROCK": "1",
    "AWS_REGION": "eu-west-1",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-123456",
    "HTTPS_PROXY": "http://proxy:3128",
    "NODE_EXTRA_CA_CERTS": "/etc/ca.pem",
    "DISABLE_TELEMETRY": "1",
    "CLAUDE_CONFIG_DIR": "/root/.claude",
    "DAYTONA_API_KEY": "dtn-secret-123456",
    "SWARM_API_TOKEN": "swarm-secret-123456",
    "NATS_PASSWORD": "nats-secret-123456",
    "GITHUB_TOKEN": "ghp-secret-123456",
    "SOMETHING_ELSE": "x",
}


def test_claude_runs_get_the_claude_code_settings_and_nothing_else_of_the_executor() -> None:
    given = environment_of(EXECUTOR_ENV, ClaudeRun())
    assert given == {
        "ANTHROPIC_API_KEY": "sk-ant-key-123456",
        "ANTHROPIC_BASE_URL": "http://gateway:8080",
        "ANTHROPIC_MODEL": "claude-x",
        "ANTHROPIC_DEFAULT_SONNET_MODEL": "claude-sonnet-x",
        "CLAUDE_CODE_USE_BEDROCK": "1",
        "AWS_REGION": "eu-west-1",
        "AWS_SECRET_ACCESS_KEY": "aws-secret-123456",
        "HTTPS_PROXY": "http://proxy:3128",
        "NODE_EXTRA_CA_CERTS": "/etc/ca.pem",
        "DISABLE_TELEMETRY": "1",
    }


def test_shell_runs_get_the_network_settings_only() -> None:
    assert environment.network_settings(EXECUTOR_ENV) == {
        "HTTPS_PROXY": "http://proxy:3128",
        "NODE_EXTRA_CA_CERTS": "/etc/ca.pem",
    }


def test_every_secret_a_claude_run_may_get_is_masked_in_logs() -> None:
    masked = set(known_secrets(EXECUTOR_ENV))
    secret_names = {
        name for name in environment_of(EXECUTOR_ENV, ClaudeRun()) if name in environment.SECRET_ENV
    }
    assert secret_names == {"ANTHROPIC_API_KEY", "AWS_SECRET_ACCESS_KEY"}
    assert {EXECUTOR_ENV[name] for name in secret_names} <= masked
    for name in ("DAYTONA_API_KEY", "SWARM_API_TOKEN", "NATS_PASSWORD", "GITHUB_TOKEN"):
        assert EXECUTOR_ENV[name] in masked


def test_a_project_may_not_name_a_claude_or_swarm_credential_but_may_name_a_git_token() -> None:
    for name in ("ANTHROPIC_API_KEY", "AWS_SECRET_ACCESS_KEY", "SWARM_API_TOKEN", "NATS_CREDS"):
        assert name in environment.NOT_GIT_CREDENTIALS
    for name in ("GITHUB_TOKEN", "GIT_TOKEN", "GH_TOKEN"):
        assert name not in environment.NOT_GIT_CREDENTIALS
        assert name in environment.SECRET_ENV
