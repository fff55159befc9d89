"""Git as commands and their output: what a sandbox runs to clone, update and inspect an agent's
checkout of the project, and what git's answers mean. Pure: the sandbox runs these.

Git must never wait for a person: no terminal prompts (``GIT_TERMINAL_PROMPT=0``), no askpass
program, no credential helper, ssh in batch mode, a stalled transfer aborted after 30 s (and the
sandbox kills a command at its timeout whatever it does). Settings travel in the environment
(``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_n``/``GIT_CONFIG_VALUE_n``), never in a file or the URL:
the credentials of a private repository are an ``http.extraHeader`` that exists only in the
environment of the git process, so they are not written to ``.git/config``, an event or a log.

A checkout is cloned into ``project.partial`` and renamed to ``project`` once complete, so a
clone killed half-way never looks like a checkout.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from schemas.errors import Invalid
from services.bus.logs import scrub

CHECKOUT_DIR = "project"
PARTIAL_DIR = "project.partial"
DEFAULT_TIMEOUT = 120.0
ERROR_CHARS = 500
TOKEN_USER = "x-access-token"  # the user name GitHub (and GitLab, Gitea) take with a token

SAFETY_CONFIG: tuple[tuple[str, str], ...] = (
    ("core.askPass", ""),
    ("credential.helper", ""),  # empty: forget any configured helper (none may prompt)
    ("http.lowSpeedLimit", "1000"),  # bytes/s; below it for lowSpeedTime seconds: abort
    ("http.lowSpeedTime", "30"),
    ("protocol.ext.allow", "never"),  # ext:: runs arbitrary commands
    ("advice.detachedHead", "false"),
)
BASE_ENV: dict[str, str] = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_ASKPASS": "",  # set but empty: no askpass program at all (not even SSH_ASKPASS)
    "SSH_ASKPASS": "",
    "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o ConnectTimeout=30",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_PAGER": "cat",
    "LC_ALL": "C",  # git's messages in English: they go into events as they are
}


class GitFailed(Exception):
    """A git operation did not succeed; ``message`` is fit for an event (trimmed, masked)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class CheckoutStatus:
    """Where a checkout stands: its commit, uncommitted changes, and how far it is from
    ``origin/<branch>``."""

    commit: str
    dirty: bool = False
    ahead: int = 0
    behind: int = 0
    branch: str | None = None  # the branch checked out (None: detached)


# --- checks -----------------------------------------------------------------------------------

_BAD_BRANCH = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//")


def check_branch(branch: str) -> str:
    """A branch name git accepts and that cannot be read as an option."""
    if (
        not isinstance(branch, str)
        or not branch
        or branch.startswith(("-", "/", "."))
        or branch.endswith(("/", ".", ".lock"))
        or branch == "@"
        or _BAD_BRANCH.search(branch)
        or "/." in branch
    ):
        raise Invalid("branch", f"branch {branch!r} is not a valid git branch name")
    return branch


def check_url(url: str) -> str:
    """A repository URL (or path) that cannot be read as an option nor run a command."""
    if not isinstance(url, str) or not url.strip():
        raise Invalid("git_url", "git_url must be a repository URL")
    if url.startswith("-") or re.search(r"[\x00-\x1f\x7f]", url):
        raise Invalid("git_url", f"git_url {redact_url(url)!r} is not a repository URL")
    if re.match(r"^(ext|fd)::", url, re.I):
        raise Invalid("git_url", "git_url may not use the ext:: or fd:: transports")
    return url


# --- environment ------------------------------------------------------------------------------


def auth_header(token: str) -> str:
    """HTTP basic auth with the token as password: what ``git`` itself would send."""
    pair = base64.b64encode(f"{TOKEN_USER}:{token}".encode()).decode()
    return f"Authorization: Basic {pair}"


class Identity(NamedTuple):
    """Who a commit is by: its author and committer."""

    name: str
    email: str


DEFAULT_EMAIL_DOMAIN = "swarm.local"
_EMAIL_LOCAL = re.compile(r"[^A-Za-z0-9._+-]")


def identity(
    agent: str,
    name: str | None = None,
    *,
    git_name: str | None = None,
    git_email: str | None = None,
    email_domain: str = DEFAULT_EMAIL_DOMAIN,
) -> Identity:
    """The git identity of an agent's commits — the run's own and Swarm's for it: the configured
    ``git_name`` / ``git_email`` (``[[agents]]``), else ``<agent name> <agent-id@swarm.local>``
    (the domain: ``[git] email_domain``)."""
    local = _EMAIL_LOCAL.sub("-", agent) or "agent"
    return Identity(
        name=(git_name or name or agent).strip() or agent,
        email=(git_email or f"{local}@{email_domain}").strip(),
    )


def config_env(pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    """``pairs`` as git reads them from the environment (``GIT_CONFIG_COUNT``/``KEY_n``/
    ``VALUE_n``): one list per command, so whoever adds settings adds them to the same list."""
    env = {"GIT_CONFIG_COUNT": str(len(pairs))}
    for index, (key, value) in enumerate(pairs):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env


def git_env(
    token: str | None = None,
    who: tuple[str, str] | None = None,
    extra_config: Sequence[tuple[str, str]] = (),
) -> dict[str, str]:
    """The environment of every git command: the safety settings, plus the credentials (as an
    ``http.extraHeader``) when there is a token, plus ``user.name``/``user.email`` when ``who``
    is given (the author of new commits; a rebase keeps each commit's author), plus
    ``extra_config`` (e.g. the settings of a task's commits: ``commits.config_pairs``)."""
    config = list(SAFETY_CONFIG)
    if token:
        config.append(("http.extraHeader", auth_header(token)))
    if who is not None:
        config += [("user.name", who[0]), ("user.email", who[1])]
    config += extra_config
    return {**BASE_ENV, **config_env(config)}


# --- commands ---------------------------------------------------------------------------------


def clone_argv(url: str, branch: str, dest: str = PARTIAL_DIR) -> list[str]:
    return ["git", "clone", "--branch", check_branch(branch), "--", check_url(url), dest]


def default_branch_argv(url: str) -> list[str]:
    """The remote's default branch (its ``HEAD``), without cloning."""
    return ["git", "ls-remote", "--symref", "--", check_url(url), "HEAD"]


def parse_default_branch(text: str) -> str | None:
    """``ref: refs/heads/master\tHEAD`` -> ``master`` (None: the remote did not say)."""
    for line in text.splitlines():
        if line.startswith("ref: refs/heads/") and line.rstrip().endswith("HEAD"):
            return line[len("ref: refs/heads/") :].split("\t", 1)[0].split()[0]
    return None


def set_origin_argv(path: str, url: str) -> list[str]:
    return ["git", "-C", path, "remote", "set-url", "origin", "--", check_url(url)]


def fetch_argv(path: str) -> list[str]:
    return ["git", "-C", path, "fetch", "--prune", "origin"]


def checkout_argv(path: str, branch: str) -> list[str]:
    """Switch to ``branch`` (made from ``origin/<branch>`` when there is no local one)."""
    return ["git", "-C", path, "checkout", check_branch(branch), "--"]


def pull_argv(path: str) -> list[str]:
    return ["git", "-C", path, "pull", "--ff-only"]


def status_argv(path: str) -> list[str]:
    return ["git", "-C", path, "status", "--porcelain=v2", "--branch"]


def ahead_behind_argv(path: str, branch: str) -> list[str]:
    return [
        "git",
        "-C",
        path,
        "rev-list",
        "--left-right",
        "--count",
        f"HEAD...refs/remotes/origin/{check_branch(branch)}",
    ]


def remote_ref(branch: str) -> str:
    """Where ``fetch`` keeps the remote's ``branch``."""
    return f"refs/remotes/origin/{check_branch(branch)}"


def task_branch(task: str) -> str:
    """The branch a task's work goes on."""
    return check_branch(f"swarm/{task}")


def trailer(task: str) -> str:
    """The line that marks a commit as a task's work (what a retry looks for)."""
    return f"Swarm-Task: {task}"


def landed_grep(task: str) -> str:
    """A ``git log --grep`` pattern for the task's trailer line, and nothing longer."""
    return f"^{trailer(task)}$"


def commit_message(title: str, task: str, resolves: str | None = None) -> str:
    """Swarm's commit of what a run left uncommitted: the task's title and the trailers."""
    subject = " ".join(title.split())[:72] or task
    lines = [subject, "", trailer(task)]
    if resolves:
        lines.append(f"Swarm-Resolves: {resolves}")
    return "\n".join(lines) + "\n"


_REJECTED = (
    "[rejected]",
    "(fetch first)",
    "(non-fast-forward)",
    "cannot lock ref",
    "failed to update ref",
    "incorrect old value provided",
)


def push_rejected(output: str) -> bool:
    """Whether a failed push lost the race (the branch moved: fetch and try again) rather than
    failed (no access, no network)."""
    return any(mark in output for mark in _REJECTED)


def conflicted_files(text: str) -> list[str]:
    """``git diff --name-only --diff-filter=U`` -> the files, sorted."""
    return sorted({line.strip() for line in text.splitlines() if line.strip()})


# --- reading answers --------------------------------------------------------------------------


def parse_status(text: str) -> tuple[str | None, str | None, bool]:
    """``git status --porcelain=v2 --branch`` -> (commit, branch, dirty). Untracked files count
    as changes; commit is None in a repository without commits, branch None when detached."""
    commit = branch = None
    dirty = False
    for line in text.splitlines():
        if line.startswith("# branch.oid "):
            oid = line.split(" ", 2)[2].strip()
            commit = None if oid == "(initial)" else oid
        elif line.startswith("# branch.head "):
            head = line.split(" ", 2)[2].strip()
            branch = None if head == "(detached)" else head
        elif line and not line.startswith("#"):
            dirty = True
    return commit, branch, dirty


def parse_ahead_behind(text: str) -> tuple[int, int]:
    """``git rev-list --left-right --count HEAD...origin/<branch>`` -> (ahead, behind)."""
    parts = text.split()
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"unexpected rev-list output {text!r}")
    return int(parts[0]), int(parts[1])


_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")


def redact_url(text: str) -> str:
    """``https://user:secret@host/x`` -> ``https://***@host/x``, wherever it appears."""
    return _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}***@", text)


def failure(action: str, output: str, secrets: Iterable[str] = ()) -> str:
    """What to report of a failed git command: its ``fatal:``/``error:`` lines (else its last
    lines), on one line, with secrets and URL credentials masked, bounded."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(("Cloning into", "hint:"))]
    errors = [line for line in lines if line.lower().startswith(("fatal:", "error:"))]
    chosen = errors or lines[-3:]
    text = " ".join(chosen) or "no output"
    text = scrub(redact_url(text), secrets)
    message = f"{action} failed: {text}"
    if len(message) > ERROR_CHARS:
        message = message[: ERROR_CHARS - 1] + "…"
    return message
