"""The executor's configuration: defaults, swarm.toml, environment, flags (in that order)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from schemas.errors import Invalid
from services.executor import config as executor_config
from services.executor.config import DEFAULT_AGENTS, AgentConfig, ExecutorConfig, load

TOML = """
[swarm]
id = "dev"
name = "Dev swarm"

[executor]
id = "box-1"
max_agents = 4
timeout = 120
pass_env = ["HTTPS_PROXY"]

[claude]
bin = "/opt/claude"
model = "sonnet"
max_turns = 12
permission_mode = "acceptEdits"
allowed_tools = ["Read", "Edit"]
append_system_prompt = "Be brief."

[[agents]]
id = "docs-agent"
role = "docs"
skills = ["docs", "writing"]

[[agents]]
id = "ops-agent"
name = "Ops"
executor = "box-2"
"""


def flags(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    executor_config.add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture(autouse=True)
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty directory: no stray ./swarm.toml."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_no_configuration_hosts_the_three_default_agents() -> None:
    config = load(flags(), env={})
    assert config.swarm == "default" and config.executor_id == "local"
    assert [a.id for a in config.agents] == ["frontend-agent", "backend-agent", "qa-agent"]
    assert config.agents[0] == AgentConfig(
        "frontend-agent", "Frontend Agent", "frontend", ("frontend", "ui")
    )
    assert config.agents == DEFAULT_AGENTS
    assert config.task_timeout == 600 and config.backend == "local"
    assert config.claude.bin == "claude" and config.data_dir == Path(".swarm")


def test_swarm_toml_sets_swarm_executor_claude_and_this_executors_agents(tmp_path: Path) -> None:
    (tmp_path / "swarm.toml").write_text(TOML)
    config = load(flags(), env={})
    assert (config.swarm, config.swarm_name, config.executor_id) == ("dev", "Dev swarm", "box-1")
    assert config.max_agents == 4 and config.task_timeout == 120
    assert config.pass_env == ("HTTPS_PROXY",)
    assert config.claude.bin == "/opt/claude" and config.claude.model == "sonnet"
    assert config.claude.max_turns == 12 and config.claude.permission_mode == "acceptEdits"
    assert config.claude.allowed_tools == ("Read", "Edit")
    assert config.claude.append_system_prompt == "Be brief."
    assert config.agents == (AgentConfig("docs-agent", "Docs Agent", "docs", ("docs", "writing")),)


def test_an_agent_pinned_to_another_executor_is_left_to_it(tmp_path: Path) -> None:
    (tmp_path / "swarm.toml").write_text(TOML)
    config = load(flags("--executor-id", "box-2"), env={})
    assert [a.id for a in config.agents] == ["docs-agent", "ops-agent"]


def test_environment_overrides_the_file_and_flags_override_both(tmp_path: Path) -> None:
    path = tmp_path / "other.toml"
    path.write_text(TOML)
    env = {
        "SWARM_CONFIG": str(path),
        "SWARM_EXECUTOR_ID": "from-env",
        "SWARM_CLAUDE_BIN": "/env/claude",
        "SWARM_DEFAULT_ID": "env-swarm",
        "SWARM_PASS_ENV": "FOO,BAR",
        "SWARM_DATA_DIR": "/var/swarm",
    }
    config = load(flags(), env=env)
    assert (config.executor_id, config.claude.bin, config.swarm) == (
        "from-env",
        "/env/claude",
        "env-swarm",
    )
    assert config.pass_env == ("HTTPS_PROXY", "FOO", "BAR")
    assert config.agents_root == Path("/var/swarm/agents")
    config = load(
        flags(
            "--executor-id",
            "from-flag",
            "--claude-bin",
            "/flag/claude",
            "--agent",
            "docs-agent:docs:docs,writing",
            "--agent",
            "x-agent",
            "--allowed-tools",
            "Read,Bash(git log:*)",
            "--dangerously-skip-permissions",
        ),
        env=env,
    )
    assert (config.executor_id, config.claude.bin) == ("from-flag", "/flag/claude")
    assert config.agents == (
        AgentConfig("docs-agent", "Docs Agent", "docs", ("docs", "writing")),
        AgentConfig("x-agent", "X Agent"),
    )
    assert config.claude.allowed_tools == ("Read", "Bash(git log:*)")
    assert config.claude.skip_permissions


def test_bad_configuration_is_refused_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(Invalid) as error:
        load(flags("--agent", "bad agent"), env={})
    assert error.value.field == "agent"
    with pytest.raises(Invalid) as error:
        load(flags("--config", str(tmp_path / "missing.toml")), env={})
    assert error.value.field == "config"
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    (tmp_path / "swarm.toml").write_text("[executor\n")
    with pytest.raises(Invalid) as error:
        load(flags(), env={})
    assert error.value.field == "config"
    with pytest.raises(Invalid) as error:
        load(flags("--config", str(empty), "--timeout", "0"), env={})
    assert error.value.field == "timeout"
    with pytest.raises(Invalid) as error:
        ExecutorConfig(agents=(AgentConfig("a", "A"), AgentConfig("a", "A")))
    assert error.value.field == "agents.id"
    with pytest.raises(Invalid) as error:
        load(flags("--config", str(empty)), env={"SWARM_MAX_AGENTS": "many"})
    assert error.value.field == "max_agents"


def test_git_timeout_comes_from_toml_then_environment_then_flag(tmp_path: Path) -> None:
    path = tmp_path / "custom.toml"
    path.write_text("[executor]\ngit_timeout = 30\n")
    assert load(flags(), env={}).git_timeout == executor_config.DEFAULT_GIT_TIMEOUT == 120
    assert load(flags("--config", str(path)), env={}).git_timeout == 30
    env = {"SWARM_GIT_TIMEOUT": "45"}
    assert load(flags("--config", str(path)), env=env).git_timeout == 45
    assert load(flags("--config", str(path), "--git-timeout", "5"), env=env).git_timeout == 5


def test_a_git_timeout_that_is_not_positive_is_invalid() -> None:
    with pytest.raises(Invalid) as caught:
        load(flags("--git-timeout", "0"), env={})
    assert caught.value.field == "git_timeout"


def test_the_sandbox_backend_has_one_variable_name_and_the_old_one_is_refused_by_name(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)

    assert load(flags(), {"SWARM_SANDBOX_BACKEND": "daytona"}).backend == "daytona"
    with pytest.raises(Invalid) as refused:
        load(flags(), {"SWARM_BACKEND": "daytona"})
    assert refused.value.field == "SWARM_BACKEND"
    assert "SWARM_SANDBOX_BACKEND" in refused.value.message


CLAUDE_TOML = """
[swarm]
budget_usd = 25

[claude]
disallowed_tools = ["WebFetch"]
max_budget_usd = 2.5

[git]
email_domain = "agents.example.com"

[[agents]]
id = "careful-agent"
permission_mode = "plan"
allowed_tools = ["Bash(make *)"]
model = "opus"
git_name = "Careful One"
git_email = "careful@example.com"

[[agents]]
id = "plain-agent"
"""


def test_claude_permissions_budgets_and_git_identity_come_from_swarm_toml(
    elsewhere: Path,
) -> None:
    (elsewhere / "swarm.toml").write_text(CLAUDE_TOML)
    config = load(flags(), env={})
    assert config.claude.permission_mode is None  # unset: the backend's default applies
    assert config.claude.allowed_tools is None
    assert config.claude.disallowed_tools == ("WebFetch",)
    assert config.claude.max_budget_usd == 2.5
    assert config.swarm_budget_usd == 25.0
    assert config.git_email_domain == "agents.example.com"
    careful, plain = config.agents
    assert (careful.claude.permission_mode, careful.claude.allowed_tools) == (
        "plan",
        ("Bash(make *)",),
    )
    assert (careful.claude.model, careful.git_name, careful.git_email) == (
        "opus",
        "Careful One",
        "careful@example.com",
    )
    assert plain.claude.allowed_tools is None and plain.git_name is None


def test_flags_and_environment_set_the_budgets_and_the_allow_list() -> None:
    config = load(flags("--max-budget-usd", "1.5"), env={"SWARM_BUDGET_USD": "9"})
    assert (config.claude.max_budget_usd, config.swarm_budget_usd) == (1.5, 9.0)
    config = load(flags("--allowed-tools", "Bash(git *),Bash(npm *)"), env={})
    assert config.claude.allowed_tools == ("Bash(git *)", "Bash(npm *)")


@pytest.mark.parametrize(
    ("toml", "field"),
    [
        ('[claude]\npermission_mode = "yolo"\n', "permission_mode"),
        ("[claude]\nmax_budget_usd = 0\n", "max_budget_usd"),
        ("[swarm]\nbudget_usd = -5\n", "budget_usd"),
        ('[[agents]]\nid = "a"\npermission_mode = "always"\n', "agents.permission_mode"),
    ],
)
def test_bad_claude_settings_name_the_field(elsewhere: Path, toml: str, field: str) -> None:
    (elsewhere / "swarm.toml").write_text(toml)
    with pytest.raises(Invalid) as caught:
        load(flags(), env={})
    assert caught.value.field == field


def test_the_built_in_agents_join_only_the_default_swarm() -> None:
    assert load(flags(), env={}).agents == DEFAULT_AGENTS
    assert load(flags(), env={"SWARM_DEFAULT_ID": "dev"}).agents == DEFAULT_AGENTS
    # an executor started for another swarm hosts only API-registered agents (of any swarm)
    assert load(flags("--swarm", "payments"), env={}).agents == ()
    assert load(flags("--swarm", "payments"), env={"SWARM_DEFAULT_ID": "dev"}).agents == ()
    # configured agents join the swarm named
    config = load(flags("--swarm", "payments", "--agent", "pay-agent:api"), env={})
    assert (config.swarm, [a.id for a in config.agents]) == ("payments", ["pay-agent"])


def test_placement_labels_and_served_swarms_come_from_toml_environment_or_flags(
    tmp_path: Path,
) -> None:
    assert (load(flags(), env={}).labels, load(flags(), env={}).swarms) == ((), None)
    (tmp_path / "swarm.toml").write_text('[executor]\nlabels = ["gpu"]\nswarms = ["web"]\n')
    config = load(flags(), env={})
    assert (config.labels, config.swarms) == (("gpu",), ("web",))
    config = load(flags(), env={"SWARM_EXECUTOR_LABELS": "gpu,eu", "SWARM_EXECUTOR_SWARMS": "a"})
    assert (config.labels, config.swarms) == (("gpu", "eu"), ("a",))
    config = load(flags("--labels", "arm64", "--swarms", "b,c"), env={})
    assert (config.labels, config.swarms) == (("arm64",), ("b", "c"))
    with pytest.raises(Invalid):
        load(flags("--swarms", "not a swarm"), env={})
