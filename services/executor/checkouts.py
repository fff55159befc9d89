"""An agent's checkout of the swarm's project: when one is due, doing it, and the event that says
how it went.

The fold keeps a request ``round`` per project (each ``init_requested`` or ``sync_requested``
bumps it) and, per agent, the round its checkout last answered. An agent's checkout is *due*
when its swarm has an attached project whose round is past the agent's (an agent registered
after ``init`` has no checkout: round 0, so it is due too). Doing it:

- no checkout yet (whatever was asked): clone ``branch`` of the URL into ``<agent dir>/project``
  (no branch named: the remote's default, asked with ``git ls-remote --symref``);
- ``init`` over an existing checkout: point ``origin`` at the URL, fetch, switch to the branch;
- ``sync``: ``git pull --ff-only`` (mode ``off``); with Swarm's branches (modes ``integrate``
  and ``branch``) the checkout sits on the last task's branch between tasks, so a sync (like an
  init) fetches and puts the project branch at the remote's tip;

then ``project.synced(agent, round, commit, dirty, ahead, behind)``, or
``project.sync_failed(agent, round, error)`` with git's message. A failed round is answered too:
it is not tried again until the next request.

Credentials: ``credentials_ref`` names a variable of the executor's environment holding a token;
it reaches git as an HTTP header in the git process's environment only (``git.git_env``). It may
not name one of the executor's own credentials (the Claude key, the API token...): a project URL
is chosen by whoever may create projects, and would receive the header.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from schemas import events as ev
from schemas.board import Board
from schemas.environment import NOT_GIT_CREDENTIALS
from schemas.errors import Invalid
from schemas.events import IntegrationMode
from services.executor.git import CHECKOUT_DIR, CheckoutStatus, GitFailed
from services.executor.sandboxes import GitCall, Sandbox


@dataclass(frozen=True)
class CheckoutRequest:
    """One agent's checkout to do, for request ``round`` of the swarm's attached project."""

    swarm: str
    project: str
    agent: str
    round: int
    kind: Literal["init", "sync"]
    git_url: str
    branch: str | None  # None: the remote's default
    credentials_ref: str | None = None
    mode: IntegrationMode = "integrate"

    @property
    def msg_id(self) -> str:
        """One answer per agent and round, however often the append is retried."""
        return f"{self.swarm}:project:{self.project}:{self.round}:{self.agent}"


def due(board: Board, swarm: str, agent: str) -> CheckoutRequest | None:
    """The checkout ``agent`` owes its swarm's attached project, if any."""
    request = current(board, swarm, agent)
    if request is None:
        return None
    answered = board.swarms[swarm].projects[request.project].checkouts.get(agent)
    if answered is not None and answered.round >= request.round:
        return None
    return request


def current(board: Board, swarm: str, agent: str) -> CheckoutRequest | None:
    """The latest request of the swarm's attached project, answered or not: what to do again
    when the checkout the log speaks of is gone (a sandbox recreated from scratch)."""
    view = board.swarms.get(swarm)
    if view is None or view.project is None or agent not in view.agents:
        return None
    project = view.projects.get(view.project)
    if project is None or project.round == 0:
        return None
    return CheckoutRequest(
        swarm=swarm,
        project=project.id,
        agent=agent,
        round=project.round,
        kind="sync" if project.request == "sync" else "init",
        git_url=project.git_url,
        branch=project.target,
        credentials_ref=project.credentials_ref,
        mode=project.mode,
    )


def credentials(ref: str | None, env: Mapping[str, str]) -> str | None:
    """The token ``ref`` names in ``env`` (None: no ref, or not set there). ``GitFailed`` when
    ``ref`` names one of the executor's own credentials."""
    if not ref:
        return None
    if ref in NOT_GIT_CREDENTIALS:
        raise GitFailed(
            f"credentials_ref {ref} names one of the executor's own credentials, not a git "
            "token: refusing to send it to a git server (use e.g. GITHUB_TOKEN)"
        )
    return env.get(ref) or None


async def perform(
    sandbox: Sandbox,
    request: CheckoutRequest,
    *,
    env: Mapping[str, str],
    timeout: float,
    secrets: Iterable[str] = (),
    executor: str = "",
) -> CheckoutStatus:
    """Do the checkout in ``sandbox``; where it ends up, or ``GitFailed`` saying why not."""
    token = credentials(request.credentials_ref, env)
    call = GitCall.within(timeout, token, secrets)
    try:
        branch = request.branch or await sandbox.git_default_branch(request.git_url, call)
        if not await sandbox.path_exists(f"{CHECKOUT_DIR}/.git"):
            await sandbox.git_clone(request.git_url, branch, CHECKOUT_DIR, call)
        elif request.mode != "off":  # to the remote's tip, whatever task branch it is on
            await sandbox.git_run(CHECKOUT_DIR, ["reset", "-q", "--hard"], "git reset", call)
            await sandbox.git_checkout(request.git_url, branch, CHECKOUT_DIR, call)
            await sandbox.git_pull(CHECKOUT_DIR, call)
        elif request.kind == "init":
            await sandbox.git_checkout(request.git_url, branch, CHECKOUT_DIR, call)
        else:
            await sandbox.git_pull(CHECKOUT_DIR, call)
        return await sandbox.git_status(branch, CHECKOUT_DIR, call)
    except Invalid as error:
        raise GitFailed(error.message) from error
    except GitFailed as error:
        if request.credentials_ref and token is None:
            where = f"executor {executor}'s" if executor else "the executor's"
            raise GitFailed(
                f"{error.message} (credentials_ref {request.credentials_ref} is not set in "
                f"{where} environment)"
            ) from error
        raise


def answer(
    request: CheckoutRequest,
    outcome: CheckoutStatus | GitFailed,
    actor: str,
    now: float | None = None,
) -> ev.ProjectSynced | ev.ProjectSyncFailed:
    """The event answering ``request``."""
    now = time.time() if now is None else now
    if isinstance(outcome, GitFailed):
        return ev.ProjectSyncFailed(
            swarm=request.swarm,
            id=request.project,
            time=now,
            actor=actor,
            agent=request.agent,
            round=request.round,
            error=outcome.message,
        )
    return ev.ProjectSynced(
        swarm=request.swarm,
        id=request.project,
        time=now,
        actor=actor,
        agent=request.agent,
        round=request.round,
        commit=outcome.commit,
        dirty=outcome.dirty,
        ahead=outcome.ahead,
        behind=outcome.behind,
        branch=outcome.branch,
    )
