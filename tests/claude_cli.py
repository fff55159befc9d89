"""The real Claude Code CLI for tests: installed from npm at the version pinned in
``tests/claude_cli/package-lock.json`` (``npm ci``), once per lockfile, into the gitignored
``.cache/claude-cli/<lockfile hash>/`` of the repository (``SWARM_TEST_CACHE`` moves it).

Only where ``npm`` or ``node`` is missing is it skipped (saying so); a failed install fails the
tests that need it. Tests point it at ``tests/fake_anthropic.py`` with ``cli_env``: the base URL,
a canary API key, no telemetry, no other traffic, fast retries.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
PINNED = HERE / "claude_cli"
REPO = HERE.parent
INSTALL_TIMEOUT = 900.0


def lock_hash() -> str:
    data = (PINNED / "package.json").read_bytes() + (PINNED / "package-lock.json").read_bytes()
    return hashlib.sha256(data).hexdigest()[:16]


def cache_root() -> Path:
    return Path(os.environ.get("SWARM_TEST_CACHE") or REPO / ".cache") / "claude-cli"


def _binary(directory: Path) -> Path | None:
    """The installed ``claude``: the package's bin (the native build its postinstall put in
    place), else the platform package's binary itself (when npm skipped the postinstall)."""
    candidates = [directory / "node_modules" / ".bin" / "claude"]
    candidates += sorted(
        (directory / "node_modules" / "@anthropic-ai").glob("claude-code-*/claude")
    )
    for candidate in candidates:
        if not candidate.exists():
            continue
        try:
            done = subprocess.run(
                [str(candidate), "--version"], capture_output=True, text=True, timeout=60
            )
        except OSError:
            continue
        if done.returncode == 0 and "Claude Code" in done.stdout:
            return candidate
    return None


def install() -> Path:
    """The path of the pinned ``claude`` binary, installing it first if needed."""
    missing = [tool for tool in ("npm", "node") if shutil.which(tool) is None]
    if missing:
        pytest.skip(
            f"{' and '.join(missing)} not found: the real Claude Code CLI cannot be installed "
            "(install Node.js and npm to run these tests)"
        )
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    target = root / lock_hash()
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test run may be installing it right now
        found = _binary(target) if target.exists() else None
        if found is not None:
            return found
        partial = root / f"{target.name}.partial-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        for name in ("package.json", "package-lock.json"):
            shutil.copy(PINNED / name, partial / name)
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=partial,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
        )
        if done.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            raise RuntimeError(f"npm ci of the pinned Claude Code failed:\n{done.stderr[-3000:]}")
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        found = _binary(target)
        if found is None:
            raise RuntimeError(f"npm ci installed no working claude binary in {target}")
        return found


def cli_env(base_url: str, api_key: str, **extra: str) -> dict[str, str]:
    """What a test gives the CLI (through the executor's environment): the stand-in's URL, the
    key, no telemetry or other traffic, and few, quick retries."""
    return {
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": api_key,
        "DISABLE_TELEMETRY": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_MAX_RETRIES": "2",
        **extra,
    }
