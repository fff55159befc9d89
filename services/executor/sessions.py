"""Whether an agent's sandbox still holds a claude session, so a new attempt can continue it
(``claude --resume <id>``) instead of starting over.

Claude Code keeps each session as ``~/.claude/projects/<working directory>/<session id>.jsonl``
in the home of whoever ran it: the agent's sandbox (Swarm never passes ``CLAUDE_CONFIG_DIR``, so
it stays there). A sandbox recreated from scratch, or another agent's, does not hold it.
"""

from __future__ import annotations

from collections.abc import Mapping

from services.executor.decisions import SESSION_ID
from services.executor.sandboxes import Sandbox

PROBE = 'find "$HOME/.claude/projects" -maxdepth 2 -name "$1.jsonl" -size +0 | grep -q .'


def probe_argv(session_id: str) -> list[str]:
    if not SESSION_ID.match(session_id):
        raise ValueError(f"not a session id: {session_id!r}")
    return ["sh", "-c", PROBE, "swarm-session", session_id]


async def held(sandbox: Sandbox, session_id: str, env: Mapping[str, str] | None = None) -> bool:
    """Whether ``sandbox`` holds the transcript of ``session_id`` (not empty)."""
    result = await sandbox.exec(
        probe_argv(session_id), on_output=lambda stream, data: None, env=env, timeout=30
    )
    return result.exit_code == 0
