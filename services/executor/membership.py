"""What makes every agent a member of its swarm, as pure values: the MCP server in each claude
run's ``--mcp-config``, and a ``swarm`` launcher on each command's PATH.

- ``mcp_config()`` names the server ``swarm`` at ``${SWARM_MCP_URL}`` with
  ``Authorization: Bearer ${SWARM_AGENT_TOKEN}``: Claude Code expands the variables from the
  run's environment, where the executor puts them at exec time. The argument itself holds no
  secret, so the command line (``ps``, Daytona's session log) never shows the token.
- ``MCP_TOOLS`` is the ``--allowedTools`` entry that lets a ``--print`` run call every tool of
  that server without asking.
- ``launcher(python)``: a shell script running this environment's ``swarm`` CLI (``python -m
  cli.main``), put in a directory of its own at the front of PATH, so an agent's shell sees
  ``swarm`` and nothing else of the executor's virtual environment.
"""

from __future__ import annotations

import json
import shlex

SERVER = "swarm"
MCP_TOOLS = f"mcp__{SERVER}"  # every tool of the server: mcp__swarm__create_task, …
URL_VARIABLE = "SWARM_MCP_URL"
TOKEN_VARIABLE = "SWARM_AGENT_TOKEN"
LAUNCHER_NAME = "swarm"


def mcp_config() -> str:
    """The ``--mcp-config`` JSON: the swarm's MCP server, with the URL and the agent's token
    left as ``${…}`` for Claude Code to expand from the run's environment."""
    server = {
        "type": "http",
        "url": f"${{{URL_VARIABLE}}}",
        "headers": {"Authorization": f"Bearer ${{{TOKEN_VARIABLE}}}"},
    }
    return json.dumps({"mcpServers": {SERVER: server}}, separators=(",", ":"))


def wants_mcp(env: dict[str, str]) -> bool:
    """Whether a run can reach the MCP server: its URL and the agent's token are both given."""
    return bool(env.get(URL_VARIABLE)) and bool(env.get(TOKEN_VARIABLE))


def launcher(python: str) -> str:
    """The ``swarm`` launcher: this environment's CLI, whatever the agent's PATH holds."""
    return f'#!/bin/sh\nexec {shlex.quote(python)} -m cli.main "$@"\n'


def with_bin(path: str | None, bin_dir: str) -> str:
    """``PATH`` with ``bin_dir`` in front (once)."""
    parts = [p for p in (path or "").split(":") if p and p != bin_dir]
    return ":".join([bin_dir, *parts])
