"""Projects through the gateway: create (and attach to a swarm), list, show with each agent's
checkout, update, delete, and ask every agent to clone (``init``) or pull (``sync``).

A request bumps the project's round (``project.init_requested`` / ``project.sync_requested``);
the executors answer per agent with ``project.synced`` (commit, dirty, ahead, behind) or
``project.sync_failed`` (git's message) for that round. ``wait`` returns once every agent that
can answer has answered the round, or at the timeout.

``project_json`` and ``round_complete`` are pure (the fold in, JSON out).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import msgspec

from schemas import events as ev
from schemas.board import Board, ProjectView, SwarmView
from schemas.errors import Conflict, Invalid, NotFound, Unavailable
from services.gateway.context import Context, Result
from services.gateway.validation import (
    check_branch,
    check_credentials_ref,
    check_git_url,
    check_key,
    derived_id,
    find_project,
    new_id,
    swarm_of,
)

if TYPE_CHECKING:
    from services.gateway import models
    from services.gateway.commands import Commands

DEFAULT_SWARM = "default"  # the swarm ``POST /projects`` attaches to when the body names none
WAIT_TIMEOUT = 60.0  # seconds ``?wait=1`` waits by default
MAX_WAIT = 600.0


# --- pure: the fold -> JSON ------------------------------------------------------------------


def answering_agents(swarm: SwarmView) -> list[str]:
    """The agents a round waits for: hosted by an executor and not lost."""
    return sorted(a.id for a in swarm.agents.values() if a.executor and a.status != "lost")


def round_complete(project: ProjectView, swarm: SwarmView, round_: int | None = None) -> bool:
    """Whether every agent that can answer has answered round ``round_`` (default: the
    project's current round). Nothing requested yet (round 0) is not complete."""
    target = project.round if round_ is None else round_
    if target <= 0:
        return False
    for agent in answering_agents(swarm):
        checkout = project.checkouts.get(agent)
        if checkout is None or checkout.round < target:  # a checkout's round: its last report
            return False
    return True


def checkout_rows(project: ProjectView, swarm: SwarmView) -> list[dict[str, Any]]:
    """One row per agent of the swarm, oldest agent first; an agent that never answered is
    ``none`` (nothing asked yet) or ``pending``."""
    rows = []
    for agent in sorted(swarm.agents.values(), key=lambda a: (a.registered_at, a.id)):
        checkout = project.checkouts.get(agent.id)
        if checkout is None:
            rows.append(
                {
                    "agent": agent.id,
                    "state": "pending" if project.round else "none",
                    "round": 0,
                    "commit": None,
                    "dirty": False,
                    "ahead": 0,
                    "behind": 0,
                    "error": None,
                    "at": None,
                    "branch": None,
                    "task": None,
                }
            )
        else:
            rows.append({"agent": agent.id, **msgspec.to_builtins(checkout)})
    return rows


def project_json(project: ProjectView, swarm: SwarmView) -> dict[str, Any]:
    return {
        "swarm": project.swarm,
        "id": project.id,
        "name": project.name,
        "git_url": project.git_url,
        "branch": project.branch,
        "target": project.target,
        "default_branch": project.default_branch,
        "credentials_ref": project.credentials_ref,
        "mode": project.mode,
        "strategy": project.strategy,
        "verify": project.verify,
        "on_conflict": project.on_conflict,
        "attached": project.attached,
        "round": project.round,
        "request": project.request,
        "created_at": project.created_at,
        "updated_at": project.updated_at,
        "checkouts": checkout_rows(project, swarm),
        "complete": round_complete(project, swarm),
        "tip": project.tip,
        "landed": msgspec.to_builtins(project.landed),
        "landed_count": project.landed_count,
    }


def attached_project_json(swarm: SwarmView) -> dict[str, Any] | None:
    project = swarm.projects.get(swarm.project) if swarm.project else None
    return project_json(project, swarm) if project is not None else None


def plan_update(spec: models.UpdateProject) -> dict[str, Any]:
    """The ``project.updated`` fields a checked update asks for (``""`` clears)."""
    changes: dict[str, Any] = {}
    if spec.git_url is not None:
        changes["git_url"] = check_git_url(spec.git_url)
    if spec.branch is not None:
        changes["branch"] = check_branch(spec.branch) if spec.branch else ""
    if spec.credentials_ref is not None:
        changes["credentials_ref"] = check_credentials_ref(spec.credentials_ref) or ""
    for name in ("name", "mode", "strategy", "verify", "on_conflict"):
        value = getattr(spec, name)
        if value is not None:
            changes[name] = value
    return changes


def _differs(project: ProjectView, name: str, value: Any) -> bool:
    """Whether setting ``name`` to ``value`` (``""``: cleared) changes the project."""
    current = getattr(project, name)
    if name in ("branch", "credentials_ref", "verify"):
        return bool((value or None) != current)
    return bool(value != current)


def all_projects(board: Board, swarm_id: str | None = None) -> list[tuple[ProjectView, SwarmView]]:
    swarms = [swarm_of(board, swarm_id)] if swarm_id else list(board.swarms.values())
    found = [(p, s) for s in swarms for p in s.projects.values()]
    return sorted(found, key=lambda pair: (pair[0].created_at, pair[0].swarm, pair[0].id))


def check_wait_timeout(timeout: float | None) -> float:
    if timeout is None:
        return WAIT_TIMEOUT
    if not 0 < timeout <= MAX_WAIT:
        raise Invalid("timeout", f"timeout must be between 0 and {MAX_WAIT:g} seconds")
    return timeout


# --- the handlers -----------------------------------------------------------------------------


class Projects:
    def __init__(self, commands: Commands) -> None:
        self.commands = commands

    @property
    def board(self) -> Board:
        return self.commands.board

    def _view(self, swarm_id: str, project_id: str) -> tuple[ProjectView, SwarmView]:
        swarm = swarm_of(self.board, swarm_id)
        project = swarm.projects.get(project_id)
        if project is None:
            raise Conflict(f"project {project_id} is gone from swarm {swarm_id}")
        return project, swarm

    async def list_projects(self, swarm_id: str | None = None) -> list[dict[str, Any]]:
        self.commands.check_available()
        return [project_json(p, s) for p, s in all_projects(self.board, swarm_id)]

    async def swarm_project(self, swarm_id: str) -> dict[str, Any]:
        """The swarm's project with every agent's checkout."""
        self.commands.check_available()
        swarm = swarm_of(self.board, swarm_id)
        if swarm.project is None or swarm.project not in swarm.projects:
            raise NotFound(
                f"swarm {swarm_id} has no project; create one: swarm project create <name> <url>"
            )
        return project_json(swarm.projects[swarm.project], swarm)

    async def get(self, project_id: str, swarm_id: str | None = None) -> dict[str, Any]:
        self.commands.check_available()
        project = find_project(self.board, project_id, swarm_id)
        return project_json(*self._view(project.swarm, project.id))

    async def create(self, data: Any, ctx: Context) -> Result:
        """``project.created`` then ``project.attached`` (the swarm's project from now on). A
        retry with the same Idempotency-Key finds the project and only finishes the attach."""
        # pydantic's models: imported at the first write, not at start (see models.py)
        from services.gateway.models import CreateProject, parse

        spec = parse(CreateProject, data)
        git_url = check_git_url(spec.git_url)
        credentials_ref = check_credentials_ref(spec.credentials_ref)
        branch = check_branch(spec.branch) if spec.branch else None
        key = check_key(ctx.idempotency_key)
        commands = self.commands
        commands.check_available()
        swarm_id = spec.swarm or DEFAULT_SWARM
        swarm = swarm_of(self.board, swarm_id)
        project_id = spec.id or (derived_id("p-", swarm_id, key) if key else new_id("p-"))
        created = False
        if project_id in swarm.projects:
            if not key:
                raise Conflict(f"project {project_id} already exists in swarm {swarm_id}")
        else:
            event = ev.ProjectCreated(
                **commands.envelope(swarm_id, project_id, ctx),
                name=spec.name,
                git_url=git_url,
                branch=branch,
                credentials_ref=credentials_ref,
                mode=spec.mode,
                strategy=spec.strategy,
                verify=spec.verify,
                on_conflict=spec.on_conflict,
            )
            await commands.append(event, ctx, "create_project")
            created = True
        project, _ = self._view(swarm_id, project_id)
        if not project.attached:
            attach = ev.ProjectAttached(**commands.envelope(swarm_id, project_id, ctx))
            await commands.append(attach, ctx, "attach_project")
        return Result(project_json(*self._view(swarm_id, project_id)), created=created)

    async def update(
        self, project_id: str, data: Any, ctx: Context, *, swarm_id: str | None = None
    ) -> dict[str, Any]:
        """``project.updated`` with the fields that change (none: nothing is appended). A new
        URL or branch of an initialised project starts a new init round (the fold's rule)."""
        # pydantic's models: imported at the first write, not at start (see models.py)
        from services.gateway.models import UpdateProject, parse

        spec = parse(UpdateProject, data)
        changes = plan_update(spec)
        commands = self.commands
        commands.check_available()
        project = find_project(self.board, project_id, swarm_id)
        changed = {k: v for k, v in changes.items() if _differs(project, k, v)}
        if changed:
            event = ev.ProjectUpdated(
                **commands.envelope(project.swarm, project.id, ctx), **changed
            )
            await commands.append(event, ctx, "update_project")
        return project_json(*self._view(project.swarm, project.id))

    async def delete(
        self, project_id: str, ctx: Context, *, swarm_id: str | None = None
    ) -> dict[str, Any]:
        """``project.deleted``: gone from the board (and detached). Tasks already running
        finish; their work still lands on the branch they started from."""
        commands = self.commands
        commands.check_available()
        project = find_project(self.board, project_id, swarm_id)
        event = ev.ProjectDeleted(**commands.envelope(project.swarm, project.id, ctx))
        await commands.append(event, ctx, "delete_project")
        return {"id": project.id, "deleted": True}

    async def request(
        self,
        project_id: str,
        kind: str,
        ctx: Context,
        *,
        swarm_id: str | None = None,
        wait: bool = False,
        timeout: float | None = None,
    ) -> Result:
        """Ask every agent to clone (``init``) or pull (``sync``): a new round. Accepted (202)
        at once; with ``wait``, answered (200) once the round is complete, or 202 at the
        timeout with whatever has been answered so far."""
        timeout = check_wait_timeout(timeout)
        commands = self.commands
        commands.check_available()
        project = find_project(self.board, project_id, swarm_id)
        swarm = swarm_of(self.board, project.swarm)
        if not project.attached:
            raise Conflict(
                f"project {project.id} is not attached to swarm {swarm.id} (its project is "
                f"{swarm.project or 'none'}): only the attached project is cloned and synced"
            )
        envelope = commands.envelope(project.swarm, project.id, ctx)
        event: ev.Event = (
            ev.ProjectInitRequested(**envelope)
            if kind == "init"
            else ev.ProjectSyncRequested(**envelope)
        )
        await commands.append(event, ctx, f"{kind}_project")
        current, swarm = self._view(project.swarm, project.id)
        if wait and not await self._wait_round(project.swarm, project.id, current.round, timeout):
            return Result(project_json(*self._view(project.swarm, project.id)), accepted=True)
        body = project_json(*self._view(project.swarm, project.id))
        return Result(body, accepted=not wait)

    async def _wait_round(
        self, swarm_id: str, project_id: str, round_: int, timeout: float
    ) -> bool:
        """Wake on each event the fold takes in until round ``round_`` is complete (True) or
        ``timeout`` seconds have passed (False)."""
        projection = self.commands.projection
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            project, swarm = self._view(swarm_id, project_id)
            if round_complete(project, swarm, round_):
                return True
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await projection.wait_for(projection.seq + 1, timeout=remaining)
            except Unavailable:
                continue  # nothing new in time: the loop sees the deadline
