"""Every agent a member of its swarm (services/executor/membership.py), pure: the MCP config a
claude run gets holds no secret, and the ``swarm`` launcher runs this environment's CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from services.executor.claude_settings import ClaudeOptions, resolve
from services.executor.config import ExecutorConfig
from services.executor.fleet import member_settings
from services.executor.membership import (
    MCP_TOOLS,
    launcher,
    mcp_config,
    wants_mcp,
    with_bin,
)
from services.executor.runtimes import claude_command


def test_the_mcp_config_names_the_swarm_server_with_variables_not_values() -> None:
    config = json.loads(mcp_config())
    server = config["mcpServers"]["swarm"]
    assert server == {
        "type": "http",
        "url": "${SWARM_MCP_URL}",
        "headers": {"Authorization": "Bearer ${SWARM_AGENT_TOKEN}"},
    }
    assert MCP_TOOLS == "mcp__swarm"


def test_a_run_gets_the_mcp_server_only_with_both_its_url_and_a_token() -> None:
    assert wants_mcp({"SWARM_MCP_URL": "http://x/mcp", "SWARM_AGENT_TOKEN": "agent.a.b.c"})
    assert not wants_mcp({"SWARM_MCP_URL": "http://x/mcp"})
    assert not wants_mcp({"SWARM_AGENT_TOKEN": "agent.a.b.c"})


def test_the_bin_directory_goes_first_on_path_once() -> None:
    assert with_bin("/usr/bin:/bin", "/d/bin") == "/d/bin:/usr/bin:/bin"
    assert with_bin("/d/bin:/usr/bin", "/d/bin") == "/d/bin:/usr/bin"
    assert with_bin(None, "/d/bin") == "/d/bin"


def test_the_launcher_runs_this_environments_swarm_cli_from_anywhere(tmp_path: Path) -> None:
    script = tmp_path / "bin" / "swarm"
    script.parent.mkdir()
    script.write_text(launcher(sys.executable))
    script.chmod(0o755)
    result = subprocess.run(
        ["swarm", "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": with_bin("/usr/bin:/bin", str(script.parent)), "HOME": str(tmp_path)},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "swarms" in result.stdout and "chat" in result.stdout
    assert os.access(script, os.X_OK)


def test_a_claude_run_gets_the_mcp_server_and_may_call_its_tools() -> None:
    options = ClaudeOptions(mcp_config=mcp_config(), allowed_tools=("Read",))
    argv = claude_command(resolve(options, "local"), "claude", "do it").argv
    assert argv[argv.index("--mcp-config") + 1] == mcp_config()
    assert argv[argv.index("--allowedTools") + 1] == "Read,mcp__swarm"
    default = resolve(ClaudeOptions(mcp_config=mcp_config()), "local").allowed_tools
    assert MCP_TOOLS in default and "Bash(git *)" in default  # added to the backend's default
    plain = claude_command(resolve(ClaudeOptions(), "local"), "claude", "do it").argv
    assert "--mcp-config" not in plain and MCP_TOOLS not in plain[plain.index("--allowedTools") + 1]


def test_members_get_swarm_on_path_and_the_mcp_server_only_when_it_is_known(
    tmp_path: Path,
) -> None:
    config = ExecutorConfig(pass_env=("HTTPS_PROXY",))
    env = {"PATH": "/usr/bin", "SWARM_MCP_URL": "http://h:7701/mcp", "SWARM_API_TOKEN": "t"}
    member, member_env = member_settings(config, env, tmp_path / "bin")
    assert member_env["PATH"] == f"{tmp_path / 'bin'}:/usr/bin"
    assert member.claude.mcp_config == mcp_config()
    assert member.claude.allowed_tools is None  # the backend's default, + its tools (resolve)
    assert member.pass_env == ("HTTPS_PROXY", "SWARM_MCP_URL")
    # no MCP server known (or no API token to make agent tokens): no --mcp-config
    member, _ = member_settings(config, {"PATH": "/usr/bin", "SWARM_API_TOKEN": "t"}, None)
    assert member.claude.mcp_config is None and member.pass_env == ("HTTPS_PROXY",)
