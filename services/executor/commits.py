"""What every commit made for a task carries — the commits an agent's run makes and the ones Swarm
makes for it: the agent's git identity as author and committer, and a ``Swarm-Task: <task id>``
trailer.

Both travel in the environment of the command, so nothing is written to the project's
``.git/config`` and nothing depends on the agent's (fresh) home:

- ``GIT_AUTHOR_NAME`` / ``_EMAIL`` and ``GIT_COMMITTER_NAME`` / ``_EMAIL``: the agent
  (``git.identity``: the same one Swarm's own commits for the task use);
- ``core.hooksPath`` (as ``GIT_CONFIG_COUNT``/``KEY_n``/``VALUE_n``, like ``git.git_env``) points
  at Swarm's hooks in the sandbox (``HOOKS_DIR``): ``commit-msg`` adds the trailer (with
  ``git interpret-trailers``, once), and every hook then runs the project's own hook of the same
  name (its ``core.hooksPath``, else ``.git/hooks``), so husky & co. still run.

``commit_env(identity, task, hooks_path)`` is the one function both use; ``install_hooks`` puts
the hooks in a sandbox (once per sandbox is enough; doing it again is harmless). A commit made
with ``--no-verify`` skips hooks, and so the trailer.
"""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Sequence

from services.executor.git import Identity, config_env
from services.executor.sandboxes import Sandbox

HOOKS_DIR = ".swarm/git-hooks"  # relative to the sandbox's working directory
TRAILER = "Swarm-Task"
HOOK_NAMES = (
    "applypatch-msg",
    "pre-applypatch",
    "post-applypatch",
    "pre-commit",
    "pre-merge-commit",
    "prepare-commit-msg",
    "commit-msg",
    "post-commit",
    "pre-rebase",
    "post-checkout",
    "post-merge",
    "pre-push",
    "post-rewrite",
    "pre-auto-gc",
    "reference-transaction",
)
DISPATCHER = "swarm-hook"

HOOK_SCRIPT = f"""#!/bin/sh
# Swarm's git hooks (core.hooksPath of the commands a task runs). commit-msg adds the
# "{TRAILER}: <task id>" trailer; every hook then runs the project's own hook of the same name.
hook=$(basename "$0")
if [ "$hook" = commit-msg ] && [ -n "$SWARM_TASK_ID" ]; then
  git interpret-trailers --in-place --if-exists addIfDifferent \\
    --trailer "{TRAILER}: $SWARM_TASK_ID" "$1" || exit 1
fi
own=$(git config --local --get core.hooksPath 2>/dev/null) || own=""
if [ -z "$own" ]; then
  own="$(git rev-parse --git-common-dir 2>/dev/null)/hooks"
fi
here=$(cd "$(dirname "$0")" && pwd -P)
there=$(cd "$own" 2>/dev/null && pwd -P) || exit 0
if [ "$there" != "$here" ] && [ -x "$there/$hook" ]; then
  exec "$there/$hook" "$@"
fi
exit 0
"""


def config_pairs(hooks_path: str) -> list[tuple[str, str]]:
    """The git settings every commit of a task needs (as ``GIT_CONFIG_*`` pairs)."""
    return [("core.hooksPath", hooks_path)]


def identity_env(who: Identity) -> dict[str, str]:
    """``who`` as the author and committer of every commit."""
    return {
        "GIT_AUTHOR_NAME": who.name,
        "GIT_AUTHOR_EMAIL": who.email,
        "GIT_COMMITTER_NAME": who.name,
        "GIT_COMMITTER_EMAIL": who.email,
    }


def commit_env(
    who: Identity,
    task: str,
    hooks_path: str,
    extra_config: Sequence[tuple[str, str]] = (),
) -> dict[str, str]:
    """The environment under which any git commit is made for ``task``: ``who`` as author and
    committer, Swarm's hooks (the trailer), plus ``extra_config`` (e.g. ``git.SAFETY_CONFIG``)."""
    return {
        **identity_env(who),
        "SWARM_TASK_ID": task,
        **config_env([*extra_config, *config_pairs(hooks_path)]),
    }


def hooks_path(sandbox: Sandbox) -> str:
    """Where the hooks are in ``sandbox`` (an absolute path, as ``core.hooksPath`` wants)."""
    return posixpath.join(sandbox.workdir, HOOKS_DIR)


def installer(path: str) -> list[str]:
    """A command writing the dispatcher (read from its stdin) to ``path`` and linking every hook
    name to it."""
    links = " ".join(shlex.quote(name) for name in HOOK_NAMES)
    script = (
        'set -e; mkdir -p "$1"; cat > "$1/.swarm-hook.tmp"; chmod 755 "$1/.swarm-hook.tmp"; '
        f'mv -f "$1/.swarm-hook.tmp" "$1/{DISPATCHER}"; '
        f'for hook in {links}; do ln -sf {DISPATCHER} "$1/$hook"; done'
    )
    return ["sh", "-c", script, "swarm-hooks", path]


class HooksNotInstalled(Exception):
    pass


async def install_hooks(sandbox: Sandbox) -> str:
    """Put Swarm's git hooks in ``sandbox``; their path (``core.hooksPath``)."""
    path = hooks_path(sandbox)
    said: list[bytes] = []

    def collect(stream: str, data: bytes) -> None:
        said.append(data)

    result = await sandbox.exec(
        installer(path),
        on_output=collect,
        stdin=HOOK_SCRIPT.encode(),
        timeout=60,
        merge_stderr=True,
    )
    if result.exit_code != 0:
        text = b"".join(said).decode("utf-8", "replace").strip()
        raise HooksNotInstalled(f"could not install Swarm's git hooks in {path}: {text[-300:]}")
    return path
