"""The env file ``<data dir>/swarm.env``: where the API is, its token, the default swarm, NATS.

Same format and names as the original plugin's env file, so a shell can ``source`` it::

    export SWARM_API_URL="http://127.0.0.1:7700"
    export SWARM_API_TOKEN="…"

``swarm up`` writes it (atomically, mode 0600: it holds the token); every other ``swarm``
command reads its settings with ``load_settings`` from the nearest ``.swarm/swarm.env`` in the
current directory or a parent (as git finds ``.git``): environment variables win over the file.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from schemas.errors import Invalid

FILE_NAME = "swarm.env"
DEFAULT_DATA_DIR = ".swarm"
DEFAULT_API_URL = "http://127.0.0.1:7700"
DEFAULT_SWARM = "default"

# What the CLI reads from the environment (and the env file), for ``swarm --help``.
VARIABLES: tuple[tuple[str, str], ...] = (
    ("SWARM_API_URL", f"the gateway's URL (default {DEFAULT_API_URL})"),
    ("SWARM_API_TOKEN", "the gateway's bearer token"),
    (
        "SWARM_AGENT_TOKEN",
        "inside an agent's sandbox: its own token, used when SWARM_API_TOKEN is absent "
        "(it reads its swarm, chats and creates follow-up tasks, as that agent)",
    ),
    ("SWARM_DEFAULT_ID", f"the swarm commands act on (default {DEFAULT_SWARM!r})"),
    ("SWARM_MCP_URL", "the MCP server (written by `swarm up`), for Claude Code's swarm tools"),
    (
        "SWARM_ENV_FILE",
        f"the env file to read (default: the nearest {DEFAULT_DATA_DIR}/{FILE_NAME} here or in "
        "a parent directory)",
    ),
    ("SWARM_DATA_DIR", f"the data directory `swarm up` used ({FILE_NAME} is read from there)"),
    ("NATS_URL", "NATS server(s), comma separated (written by `swarm up`)"),
    ("SWARM_LOG_LEVEL", "debug, info (default), warning: the services' log level"),
)

_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*?)\s*$")
_ESCAPED = re.compile(r'\\([\\"$`])')


def quote(value: str) -> str:
    """A double-quoted shell word that expands to exactly ``value``."""
    if "\n" in value or "\r" in value:
        raise Invalid("value", "an env file value cannot span lines")
    return '"' + re.sub(r'([\\"$`])', r"\\\1", value) + '"'


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return _ESCAPED.sub(r"\1", raw[1:-1])
    if len(raw) >= 2 and raw[0] == raw[-1] == "'":
        return raw[1:-1]
    return raw


def render(values: Mapping[str, str], *, header: str = "") -> str:
    """``export NAME="value"`` lines (after ``# header`` comment lines), in the given order."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    for name, value in values.items():
        if not _ASSIGNMENT.match(f"{name}="):
            raise Invalid("name", f"{name!r} is not an environment variable name")
        lines.append(f"export {name}={quote(value)}")
    return "\n".join(lines) + "\n"


def parse(text: str) -> dict[str, str]:
    """The assignments in ``text``: ``export NAME="value"``, ``NAME='value'`` or ``NAME=value``.

    Comments, blank lines and anything that is not an assignment are skipped; nothing is
    expanded (``$HOME`` stays ``$HOME``)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        match = _ASSIGNMENT.match(line)
        if match:
            values[match.group(1)] = _unquote(match.group(2))
    return values


def read(path: Path | str) -> dict[str, str]:
    """The file's assignments; ``{}`` when there is no such file."""
    try:
        return parse(Path(path).read_text())
    except FileNotFoundError:
        return {}


def write(path: Path | str, values: Mapping[str, str], *, header: str = "") -> Path:
    """Replace the file atomically (a temporary file beside it, then rename), mode 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = render(values, header=header)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def locate(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Path | None:
    """The env file to read: ``SWARM_ENV_FILE`` (which must exist), else
    ``$SWARM_DATA_DIR/swarm.env``, else the nearest ``.swarm/swarm.env`` in the current
    directory or one of its parents (as git finds ``.git``), else none."""
    environ = os.environ if environ is None else environ
    cwd = Path.cwd() if cwd is None else cwd
    named = environ.get("SWARM_ENV_FILE")
    if named:
        path = cwd / Path(named).expanduser()
        if not path.is_file():
            raise Invalid("SWARM_ENV_FILE", f"SWARM_ENV_FILE names {path}, which does not exist")
        return path
    if environ.get("SWARM_DATA_DIR"):
        path = cwd / Path(environ["SWARM_DATA_DIR"]).expanduser() / FILE_NAME
        if path.is_file():
            return path
    for directory in (cwd, *cwd.parents):
        path = directory / DEFAULT_DATA_DIR / FILE_NAME
        if path.is_file():
            return path
    return None


@dataclass(frozen=True)
class Settings:
    """What a ``swarm`` command needs to reach Swarm."""

    api_url: str
    api_token: str | None = field(repr=False)  # never shown
    swarm: str
    nats_url: str | None
    env_file: Path | None  # where values not in the environment came from
    agent_token: str | None = field(default=None, repr=False)  # never shown
    api_url_from: str = "the default"  # where ``api_url`` came from, for messages

    @property
    def bearer(self) -> str | None:
        """The token to send: the API token, else (inside a sandbox) the agent's own."""
        return self.api_token or self.agent_token


def agent_token_swarm(token: str | None) -> str | None:
    """The swarm an agent token (``agent.<swarm>.<agent>.<mac>``) names; not a validity check."""
    parts = (token or "").split(".")
    return parts[1] if len(parts) == 4 and parts[0] == "agent" and parts[1] else None


def load_settings(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Settings:
    """Settings for CLI commands: environment variables win over the env file."""
    environ = os.environ if environ is None else environ
    path = locate(environ, cwd)
    values = {k: v for k, v in (read(path) if path else {}).items() if v}
    values.update({k: v for k, v in environ.items() if v})
    agent_token = values.get("SWARM_AGENT_TOKEN")
    default_swarm = agent_token_swarm(agent_token) or DEFAULT_SWARM
    cwd = Path.cwd() if cwd is None else cwd
    return Settings(
        api_url=values.get("SWARM_API_URL", DEFAULT_API_URL).rstrip("/"),
        api_token=values.get("SWARM_API_TOKEN"),
        swarm=values.get("SWARM_DEFAULT_ID", default_swarm),
        nats_url=values.get("NATS_URL"),
        env_file=path,
        agent_token=agent_token,
        api_url_from=url_origin(environ, path, cwd),
    )


def url_origin(environ: Mapping[str, str], path: Path | None, cwd: Path) -> str:
    """Where ``SWARM_API_URL`` came from, in words: the environment, which env file, or the
    default (and why: no env file found, or one without it)."""
    if environ.get("SWARM_API_URL"):
        return "SWARM_API_URL in the environment"
    if path is not None and read(path).get("SWARM_API_URL"):
        return f"SWARM_API_URL in {path}"
    if path is not None:
        return f"the default: {path} has no SWARM_API_URL"
    where = f"{DEFAULT_DATA_DIR}/{FILE_NAME} in {cwd} or a parent directory"
    return f"the default: SWARM_API_URL is not set and there is no {where}"
