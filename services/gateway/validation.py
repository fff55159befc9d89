"""Pure checks and derivations behind the gateway's commands: no I/O, tested without NATS.

- dependencies: every named task exists, and the graph stays acyclic (``find_cycle``);
- which transitions a person may ask for (edit, cancel, delete) given a task's status;
- ids: generated, or derived from an ``Idempotency-Key`` so a retried create names the same
  aggregate;
- ``parse_at``: ``swarm replay --at`` takes a log position or a time;
- projects: a git URL without a secret in it, a credentials reference that is a variable's
  name (not its value).
"""

from __future__ import annotations

import hashlib
import re
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime

from schemas.board import (
    ACTIVE,
    EDITABLE,
    FINISHED,
    AgentView,
    Board,
    ProjectView,
    SwarmView,
    TaskView,
)
from schemas.errors import Conflict, Invalid, NotFound
from schemas.graph import find_cycle

MAX_KEY_LENGTH = 200
EPOCH_FLOOR = 1_000_000_000  # numbers at or above are seconds since the epoch, below: sequences


# --- dependencies -----------------------------------------------------------------------------


def check_depends(swarm: SwarmView, task_id: str, depends: list[str]) -> list[str]:
    """``depends`` for ``task_id`` if every named task exists and no cycle forms; else
    ``Invalid("depends", ...)`` saying which task is unknown or which cycle would form."""
    for dep in depends:
        if dep == task_id:
            raise Invalid("depends", f"task {task_id} cannot depend on itself")
        if dep not in swarm.tasks:
            raise Invalid("depends", f"depends on unknown task {dep} in swarm {swarm.id}")
    if not depends:
        return depends  # no edge out of it: no cycle through it

    class Edges(Mapping[str, Iterable[str]]):
        """The swarm's dependency graph with ``task_id``'s edges replaced, built lazily: only
        the tasks the search reaches are looked at."""

        def __getitem__(self, tid: str) -> Iterable[str]:
            if tid == task_id:
                return depends
            return swarm.tasks[tid].depends

        def __iter__(
            self,
        ) -> Iterator[str]:  # pragma: no cover - the search never iterates the whole graph
            return iter(swarm.tasks)

        def __len__(self) -> int:  # pragma: no cover
            return len(swarm.tasks)

    cycle = find_cycle(Edges(), task_id)
    if cycle is not None:
        raise Invalid("depends", "dependency cycle: " + " -> ".join(cycle))
    return depends


# --- transitions a person may ask for ----------------------------------------------------------


def check_editable(task: TaskView) -> None:
    if task.status not in EDITABLE:
        raise Conflict(
            f"task {task.id} is {task.status}: only blocked, pending or requeued tasks can be "
            "updated"
        )


def check_cancellable(task: TaskView) -> None:
    if task.status in FINISHED:
        raise Conflict(f"task {task.id} is already {task.status}")


def check_deletable(task: TaskView) -> None:
    if task.status in ACTIVE:
        raise Conflict(f"task {task.id} is {task.status}: cancel it before deleting it")


def check_swarm_deletable(swarm: SwarmView, *, force: bool) -> None:
    """A swarm with claimed or running tasks is deleted only when forced (their runs are then
    stopped); ``Conflict`` names them."""
    active = sorted(t.id for t in swarm.tasks.live() if t.status in ACTIVE)
    if active and not force:
        shown = ", ".join(active[:5]) + (f" and {len(active) - 5} more" if len(active) > 5 else "")
        raise Conflict(
            f"swarm {swarm.id} has {len(active)} claimed or running task(s) ({shown}): cancel "
            "them first, or delete with force (?force=1, swarm swarm delete --force), which "
            "stops their runs"
        )


# --- lookups ----------------------------------------------------------------------------------


def swarm_of(board: Board, swarm_id: str) -> SwarmView:
    swarm = board.swarms.get(swarm_id)
    if swarm is None:
        raise NotFound(f"no swarm {swarm_id}")
    return swarm


def task_of(board: Board, swarm_id: str, task_id: str) -> TaskView:
    task = swarm_of(board, swarm_id).tasks.get(task_id)
    if task is None:
        raise NotFound(f"no task {task_id} in swarm {swarm_id}")
    return task


def find_agent(board: Board, ref: str, swarm_id: str | None = None) -> AgentView:
    """The agent whose sandbox id or agent id is ``ref`` (sandbox id first), in ``swarm_id``
    or in any swarm; ``Conflict`` when several swarms hold a match and none was named."""
    swarms = [swarm_of(board, swarm_id)] if swarm_id else list(board.swarms.values())
    matchers: tuple[Callable[[AgentView], bool], ...] = (
        lambda a: a.sandbox_id == ref,
        lambda a: a.id == ref,
    )
    for match in matchers:
        found = [a for s in swarms for a in s.agents.values() if match(a)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            where = ", ".join(sorted(a.swarm for a in found))
            raise Conflict(f"agent {ref} exists in several swarms ({where}): add ?swarm=<id>")
    raise NotFound(f"no agent with sandbox id or id {ref}")


def find_project(board: Board, project_id: str, swarm_id: str | None = None) -> ProjectView:
    """The project ``project_id`` in ``swarm_id``, or in whichever swarm holds it; ``Conflict``
    when several do and none was named."""
    swarms = [swarm_of(board, swarm_id)] if swarm_id else list(board.swarms.values())
    found = [s.projects[project_id] for s in swarms if project_id in s.projects]
    if len(found) > 1:
        where = ", ".join(sorted(p.swarm for p in found))
        raise Conflict(f"project {project_id} exists in several swarms ({where}): add ?swarm=<id>")
    if not found:
        raise NotFound(f"no project {project_id}" + (f" in swarm {swarm_id}" if swarm_id else ""))
    return found[0]


# --- ids --------------------------------------------------------------------------------------


def check_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise Invalid("Idempotency-Key", f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} characters")
    return key


def derived_id(prefix: str, scope: str, key: str) -> str:
    """The same id for the same (scope, key): a retried create names the same aggregate."""
    digest = hashlib.sha256(f"{scope}\0{key}".encode()).hexdigest()[:12]
    return f"{prefix}{digest}"


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def slug(name: str) -> str:
    """``"Frontend Agent"`` -> ``frontend-agent`` (a valid subject token, maybe empty)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:100]


def msg_id(swarm: str, aggregate: str, aggregate_id: str, verb: str, key: str) -> str:
    """The ``Nats-Msg-Id`` for a command carrying an ``Idempotency-Key``: scoped by swarm,
    aggregate and verb, so one key reused on another command or another task never swallows
    that command's event."""
    return f"idem:{swarm}:{aggregate}:{aggregate_id}:{verb}:{key}"


# --- replay -----------------------------------------------------------------------------------


def parse_at(value: str) -> tuple[int | None, float | None]:
    """``(seq, None)`` or ``(None, epoch_seconds)``: an integer below 10^9 is a log position;
    a larger number is seconds since the epoch; anything else must be an ISO 8601 time
    (naive times are UTC)."""
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None:
        if number < 0:
            raise Invalid("at", f"at={value!r} must not be negative")
        if number < EPOCH_FLOOR and number == int(number):
            return int(number), None
        if number >= EPOCH_FLOOR:
            return None, number
        raise Invalid("at", f"at={value!r}: a sequence is a whole number")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as error:
        raise Invalid(
            "at", f"at={value!r} is neither a sequence, epoch seconds nor an ISO 8601 time"
        ) from error
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return None, moment.timestamp()


# --- projects ---------------------------------------------------------------------------------

GIT_SCHEMES = frozenset({"https", "http", "ssh", "git", "file"})
# Well-known token prefixes: GitHub, GitLab, Slack, OpenAI/Anthropic-style keys.
TOKEN_PREFIXES = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "xox", "sk-")
SECRET_QUERY = re.compile(r"token|secret|password|passwd|key|auth|sig", re.IGNORECASE)
_SCP_LIKE = re.compile(r"^(?:(?P<user>[^@/:\s]+)@)?(?P<host>[A-Za-z0-9.-]+):(?!//)\S+$")
_TRANSPORT_HELPER = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*::")
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
NO_SECRETS = (
    "put the token in an environment variable on the executors and pass its name as "
    "credentialsRef (swarm project create --credentials-ref NAME)"
)


def looks_like_secret(value: str) -> bool:
    """A known token prefix, or a long run of letters and digits mixed like a random key."""
    if value.startswith(TOKEN_PREFIXES):
        return True
    letters = any(c.isalpha() for c in value)
    digits = sum(c.isdigit() for c in value)
    return len(value) >= 20 and letters and digits >= 3 and not value.isupper()


def check_git_url(url: str) -> str:
    """``url`` when git can fetch it and it carries no secret; else ``Invalid("git_url")``.

    Accepted: ``https://``, ``http://``, ``ssh://``, ``git://`` and ``file://`` URLs,
    ``user@host:path`` (scp-like) and local paths. Refused: a password (or token) in the user
    info, a token-like user name, a query parameter that looks like a credential, git's
    ``<transport>::`` helpers (they run programs) and anything starting with ``-``. The message
    never repeats the URL: it may hold the secret it is refusing."""
    url = url.strip()
    if not url or not url.isprintable() or any(c.isspace() for c in url):
        raise Invalid("git_url", "git_url must be a URL or path without spaces")
    if url.startswith("-"):
        raise Invalid("git_url", "git_url must not start with '-'")
    if _TRANSPORT_HELPER.match(url):
        raise Invalid("git_url", "git_url must not use a '<transport>::' remote helper")
    if "://" in url:
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in GIT_SCHEMES:
            raise Invalid(
                "git_url",
                f"git_url scheme {scheme!r} is not one of {', '.join(sorted(GIT_SCHEMES))}",
            )
        try:
            password = parts.password
            user = parts.username
        except ValueError:
            raise Invalid("git_url", "git_url has a malformed user or host part") from None
        if password is not None:
            raise Invalid("git_url", f"git_url must not carry a password or token: {NO_SECRETS}")
        if user and looks_like_secret(urllib.parse.unquote(user)):
            raise Invalid("git_url", f"git_url's user name looks like a token: {NO_SECRETS}")
        names = [name for name, _ in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)]
        if any(SECRET_QUERY.search(name) for name in names):
            raise Invalid("git_url", f"git_url's query looks like it holds a secret: {NO_SECRETS}")
        if scheme != "file" and not parts.hostname:
            raise Invalid("git_url", f"git_url ({scheme}://) needs a host")
        return url
    if url.startswith(("/", "./", "../", "~")):
        return url
    scp = _SCP_LIKE.match(url)
    if scp is not None:
        if scp.group("user") and looks_like_secret(scp.group("user")):
            raise Invalid("git_url", f"git_url's user name looks like a token: {NO_SECRETS}")
        return url
    raise Invalid(
        "git_url",
        "git_url must be an https://, ssh://, git:// or file:// URL, user@host:path, or a path",
    )


def check_credentials_ref(ref: str | None) -> str | None:
    """The name of the environment variable holding the git token (``None``: no token)."""
    if ref is None or not ref.strip():
        return None
    ref = ref.strip()
    if not _VARIABLE.match(ref):
        raise Invalid(
            "credentials_ref",
            "credentials_ref must be the NAME of an environment variable holding the token "
            "(like GITHUB_TOKEN), not the token itself",
        )
    if looks_like_secret(ref):
        raise Invalid(
            "credentials_ref",
            "credentials_ref looks like a token: pass the NAME of the environment variable "
            "that holds it (like GITHUB_TOKEN)",
        )
    return ref


def check_branch(branch: str) -> str:
    """A branch name git accepts (the model has checked the characters)."""
    if ".." in branch or branch.endswith(("/", ".", ".lock")) or "//" in branch:
        raise Invalid("branch", f"branch {branch!r} is not a valid git branch name")
    return branch
