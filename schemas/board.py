"""The board: the folded state every service reads. Plain msgspec Structs, so two boards compare
with ``==`` and a snapshot is ``msgspec.json.encode(board)``."""

from __future__ import annotations

from typing import Literal

import msgspec

from schemas.events import (
    AttemptBudgets,
    ClaudeTaskSettings,
    IntegrationMode,
    LandingProblem,
    MergeStrategy,
    OnConflict,
    Priority,
    RunOutcome,
    Runtime,
    Trigger,
    Usage,
)

TaskStatus = Literal[
    "blocked", "pending", "claimed", "running", "completed", "failed", "requeued", "cancelled"
]
AgentStatus = Literal["idle", "working", "lost"]
CheckoutState = Literal["pending", "synced", "sync_failed"]
IntegrationState = Literal[
    "working", "unchanged", "pushed", "landing", "landed", "conflict", "verify_failed", "failed"
]

CLAIMABLE: frozenset[str] = frozenset({"pending", "requeued"})
ACTIVE: frozenset[str] = frozenset({"claimed", "running"})
FINISHED: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
EDITABLE: frozenset[str] = frozenset({"blocked", "pending", "requeued"})

PRIORITY_RANK: dict[str, int] = {"critical": 0, "high": 1, "medium": 2, "low": 3}
LANDED_KEPT = 200  # a project remembers this many of its last landed tasks (the log has all)


class Integration(msgspec.Struct, kw_only=True):
    """A task's work in git. ``state``: ``working`` (the run is on ``branch``, cut from
    ``base``), ``unchanged`` (it ended with nothing to land), ``pushed`` (its branch is on the
    remote; nothing lands: mode ``branch``, or the run failed), ``landing`` (an integration onto
    ``onto`` is due), ``landed`` (at ``landed``), ``conflict`` (in ``files``), ``verify_failed``
    (``output``: the command's last output) or ``failed`` (``output``: why). ``resolver``: the
    task making it land after a conflict or a red verify; ``resolved_by``: the one that did."""

    project: str
    branch: str
    base: str | None = None
    head: str | None = None
    state: IntegrationState = "working"
    onto: str | None = None
    landed: str | None = None
    problem: LandingProblem | None = None
    tip: str | None = None
    files: list[str] = []
    output: str = ""
    resolve: bool = False
    resolver: str | None = None
    resolved_by: str | None = None
    tries: int = 0
    seconds: float | None = None
    at: float | None = None


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
    resolves: str | None = None  # the task whose work this one makes land
    correlation_id: str | None = None  # of the request that created it: its events carry it
    status: TaskStatus = "pending"
    attempt: int = 1  # the attempt now claimed or running, or the next one to claim
    # what its attempts came to so far, each kind against its own budget (``schemas.attempts``)
    runs: int = 0  # runs started (``running`` events)
    claims_lost: int = 0  # claims lost with their agent before the run started
    runs_stopped: int = 0  # runs their executor stopped on purpose and gave back
    runs_lost: int = 0  # runs lost with their agent, executor or sandbox
    runs_failed: int = 0  # runs that failed on their own
    budgets: AttemptBudgets | None = None  # as its current claim carries them (executor's)
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
    claude: ClaudeTaskSettings | None = None  # the task's own settings for its claude runs
    cost_usd: float = 0.0  # what its recorded attempts cost together
    usage: Usage = msgspec.field(default_factory=Usage)  # the tokens they used together
    cancelled_by: str | None = None  # the actor of its ``task.cancelled``: who cancelled it
    session_id: str | None = None  # the claude session of its latest attempt
    session_agent: str | None = None  # whose sandbox holds that session
    integration: Integration | None = None  # its work in git (None: no project, or mode off)


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
    spent_usd: float = 0.0  # what its recorded runs cost together
    registered_at: float = 0.0
    updated_at: float = 0.0


class Checkout(msgspec.Struct, kw_only=True):
    """One agent's copy of the project, as last reported: by its last init/sync answer, then by
    the events of its tasks (``branch``/``commit``: where it is now)."""

    state: CheckoutState = "pending"
    round: int = 0
    commit: str | None = None
    branch: str | None = None
    task: str | None = None  # the task whose branch it is on
    dirty: bool = False
    ahead: int = 0
    behind: int = 0
    error: str | None = None
    at: float = 0.0


class LandedTask(msgspec.Struct, kw_only=True):
    """One task's work on the project's branch: ``commit`` holds it (``resolves``: it made
    another task's work land)."""

    task: str
    commit: str
    at: float
    agent: str | None = None
    resolves: str | None = None


class ProjectView(msgspec.Struct, kw_only=True):
    swarm: str
    id: str
    name: str
    git_url: str
    branch: str | None = None  # None: the remote's default (``default_branch`` once known)
    credentials_ref: str | None = None
    mode: IntegrationMode = "integrate"
    strategy: MergeStrategy = "rebase"
    verify: str | None = None
    on_conflict: OnConflict = "resolve"
    default_branch: str | None = None  # the remote's default, as the first checkout found it
    attached: bool = False
    round: int = 0  # bumped by each init or sync request
    request: Literal["none", "init", "sync"] = "none"
    checkouts: dict[str, Checkout] = {}
    created_at: float = 0.0
    updated_at: float = 0.0
    tip: str | None = None  # the project branch's newest commit Swarm knows of
    landed: list[LandedTask] = []  # the last ``LANDED_KEPT`` tasks landed, in order
    landed_count: int = 0  # all tasks landed so far

    @property
    def target(self) -> str | None:
        """The branch work lands on: the one named, else the remote's default once known."""
        return self.branch or self.default_branch


class SwarmView(msgspec.Struct, kw_only=True):
    id: str
    name: str
    description: str = ""
    created_at: float = 0.0
    tasks: dict[str, TaskView] = {}
    agents: dict[str, AgentView] = {}
    projects: dict[str, ProjectView] = {}
    project: str | None = None  # the attached project
    budget_usd: float | None = None  # the most its claude runs may cost together
    spent_usd: float = 0.0  # what its recorded runs cost together


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
