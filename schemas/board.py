"""The board: the folded state every service reads. Plain msgspec Structs, so two boards compare
with ``==`` and a snapshot is ``msgspec.json.encode(board)``."""

from __future__ import annotations

from typing import Literal

import msgspec

from schemas.events import Priority, RunOutcome, Runtime, Trigger

TaskStatus = Literal[
    "blocked", "pending", "claimed", "running", "completed", "failed", "requeued", "cancelled"
]
AgentStatus = Literal["idle", "working", "lost"]
CheckoutState = Literal["pending", "synced", "sync_failed"]

CLAIMABLE: frozenset[str] = frozenset({"pending", "requeued"})
ACTIVE: frozenset[str] = frozenset({"claimed", "running"})
FINISHED: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
EDITABLE: frozenset[str] = frozenset({"blocked", "pending", "requeued"})

PRIORITY_RANK: dict[str, int] = {"critical": 0, "high": 1, "medium": 2, "low": 3}


class TaskView(msgspec.Struct, kw_only=True):
    swarm: str
    id: str
    title: str
    prompt: str
    description: str = ""
    tags: list[str] = []
    priority: Priority = "medium"
    depends: list[str] = []
    runtime: Runtime = "claude"
    timeout: float | None = None
    triggers: list[Trigger] = []
    parent: str | None = None
    parent_attempt: int | None = None  # an agent's follow-up: the parent's attempt that made it
    correlation_id: str | None = None  # of the request that created it: its events carry it
    status: TaskStatus = "pending"
    attempt: int = 1  # the attempt now claimed or running, or the next one to claim
    agent: str | None = None
    reason: str | None = None  # why it failed, was cancelled or requeued
    outcome: RunOutcome | None = None
    retry_at: float = 0.0
    created_at: float = 0.0
    updated_at: float = 0.0
    claimed_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    created_seq: int = 0  # log position of ``created``: the age order among equal times


class AgentView(msgspec.Struct, kw_only=True):
    swarm: str
    id: str
    name: str
    role: str = ""
    skills: list[str] = []
    sandbox_id: str | None = None
    executor: str | None = None
    backend: str = "local"
    labels: list[str] = []  # placement: only executors with all these labels host it
    status: AgentStatus = "idle"
    task: str | None = None
    read_through: int = 0  # chat sequence of the last mention put in one of its prompts
    registered_at: float = 0.0
    updated_at: float = 0.0


class Checkout(msgspec.Struct, kw_only=True):
    """One agent's copy of the project, as last reported."""

    state: CheckoutState = "pending"
    round: int = 0
    commit: str | None = None
    dirty: bool = False
    ahead: int = 0
    behind: int = 0
    error: str | None = None
    at: float = 0.0


class ProjectView(msgspec.Struct, kw_only=True):
    swarm: str
    id: str
    name: str
    git_url: str
    branch: str = "main"
    credentials_ref: str | None = None
    attached: bool = False
    round: int = 0  # bumped by each init or sync request
    request: Literal["none", "init", "sync"] = "none"
    checkouts: dict[str, Checkout] = {}
    created_at: float = 0.0


class SwarmView(msgspec.Struct, kw_only=True):
    id: str
    name: str
    description: str = ""
    created_at: float = 0.0
    tasks: dict[str, TaskView] = {}
    agents: dict[str, AgentView] = {}
    projects: dict[str, ProjectView] = {}
    project: str | None = None  # the attached project


class Board(msgspec.Struct, kw_only=True):
    swarms: dict[str, SwarmView] = {}
    seq: int = 0  # the last log position folded in
    versions: dict[str, int] = {}  # "<swarm>/<aggregate>/<id>" -> last log position on it
    ignored: int = 0  # events the fold ruled void (a transition that was not possible)

    def version(self, swarm: str, aggregate: str, aggregate_id: str) -> int:
        """The expected last sequence for the next append to this aggregate (0: none yet)."""
        return self.versions.get(f"{swarm}/{aggregate}/{aggregate_id}", 0)

    def task(self, swarm: str, task_id: str) -> TaskView | None:
        view = self.swarms.get(swarm)
        return view.tasks.get(task_id) if view else None

    def agent(self, swarm: str, agent_id: str) -> AgentView | None:
        view = self.swarms.get(swarm)
        return view.agents.get(agent_id) if view else None


def task_sort_key(task: TaskView) -> tuple[int, float, int]:
    """Higher priority first, then oldest."""
    return (PRIORITY_RANK[task.priority], task.created_at, task.created_seq)
