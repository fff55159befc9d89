"""What this executor can run, for its readiness heartbeat (``swarm doctor`` judges it): the
sandbox backend, each runtime's binary (where it was found, which version) and which credentials
are present, by name only: the report never holds a value from the environment.

``build`` is pure; ``report`` feeds it this machine's facts. ``claude --version`` runs once per
binary, in a thread, so a heartbeat never waits for it (``version`` is ``None`` until known).
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Callable, Iterable, Mapping

from schemas.board import Board
from schemas.environment import CLAUDE_CREDENTIALS
from services.executor.config import ExecutorConfig

BACKEND_CREDENTIALS = {"daytona": ("DAYTONA_API_KEY",)}  # what a backend needs to make sandboxes
VERSION_TIMEOUT = 10.0


def build(
    *,
    backend: str,
    claude_bin: str,
    claude_path: str | None,
    claude_version: str | None,
    shell_path: str | None,
    env: Mapping[str, str],
    project_credentials: Iterable[str] = (),
) -> dict[str, object]:
    """The report. ``backend_credentials``: all are needed to make sandboxes; a runtime's
    ``credentials``: any one is enough; ``project_credentials``: the variables projects name
    as their git token (``credentials_ref``). Each maps a name to whether it is set. With a
    backend other than ``local`` the runtimes run inside the sandbox, not on this machine."""

    def present(names: Iterable[str]) -> dict[str, bool]:
        return {name: bool((env.get(name) or "").strip()) for name in dict.fromkeys(names)}

    local = backend == "local"
    claude: dict[str, object] = {"bin": claude_bin, "in_sandbox": not local}
    if local:
        claude |= {"path": claude_path, "version": claude_version}
    claude["credentials"] = present(CLAUDE_CREDENTIALS)
    return {
        "backend": backend,
        "backend_credentials": present(BACKEND_CREDENTIALS.get(backend, ())),
        "runtimes": {"claude": claude, "shell": {"path": shell_path, "in_sandbox": not local}},
        "project_credentials": present(project_credentials),
    }


_versions: dict[str, str | None] = {}
_versions_lock = threading.Lock()


def _probe_version(path: str) -> None:
    try:
        ran = subprocess.run(
            [path, "--version"],
            capture_output=True,
            text=True,
            timeout=VERSION_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
        found = (ran.stdout or ran.stderr).strip().splitlines()
        version = found[0][:100] if ran.returncode == 0 and found else None
    except (OSError, subprocess.TimeoutExpired):
        version = None
    with _versions_lock:
        _versions[path] = version


def version_of(path: str) -> str | None:
    """The binary's ``--version`` once known; the first call starts finding it out."""
    with _versions_lock:
        if path in _versions:
            return _versions[path]
        _versions[path] = None
    threading.Thread(target=_probe_version, args=(path,), daemon=True).start()
    return None


def report(
    config: ExecutorConfig,
    env: Mapping[str, str],
    board: Board,
    *,
    which: Callable[[str], str | None] = shutil.which,
) -> dict[str, object]:
    """``build`` with this machine's facts; the credentials also name each variable a project of
    the executor's swarm reads its git token from (``credentials_ref``)."""
    claude_bin = config.claude.bin
    claude_path = which(claude_bin) if config.backend == "local" else None
    swarm = board.swarms.get(config.swarm)
    projects = swarm.projects.values() if swarm is not None else []
    refs = sorted({p.credentials_ref for p in projects if p.credentials_ref})
    return build(
        backend=config.backend,
        claude_bin=claude_bin,
        claude_path=claude_path,
        claude_version=version_of(claude_path) if claude_path else None,
        shell_path=which("sh") if config.backend == "local" else None,
        env=env,
        project_credentials=refs,
    )
