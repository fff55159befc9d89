"""Every agent a member of its swarm (services/executor/membership.py), pure: the MCP config a
claude run gets holds no secret, and the ``swarm`` launcher runs this environment's CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from services.executor.membership import (
    MCP_TOOLS,
    launcher,
    mcp_config,
    wants_mcp,
    with_bin,
)


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
