"""Every fact Swarm records: one msgspec Struct per event, all sharing one envelope.

An event is a past-tense fact about one aggregate (a swarm, a task, an agent or a project).
On the wire it is JSON whose ``type`` field names the struct (``task.claimed``); the subject it
is published on repeats swarm, aggregate, id and the type's last word (see ``subjects``).
"""

from __future__ import annotations

import uuid
from typing import ClassVar, Literal

import msgspec

SCHEMA_VERSION = 1

Priority = Literal["critical", "high", "medium", "low"]
Runtime = Literal["claude", "shell", "instant"]
TriggerOn = Literal["completed", "failed", "conflict"]  # conflict: the task that resolves it
IntegrationMode = Literal["integrate", "branch", "off"]  # what happens to a task's work in git
MergeStrategy = Literal["rebase", "merge"]  # how a task branch goes onto the project's branch
OnConflict = Literal["resolve", "fail"]  # work that cannot land: a resolve task, or a failure
LandingProblem = Literal["conflict", "verify", "error"]
PermissionMode = Literal["default", "acceptEdits", "auto", "bypassPermissions", "dontAsk", "plan"]
# how an attempt ended without a result of its own (``requeued``, or ``failed`` once its budget
# is used up), and so which budget it used (docs/architecture.md,
# "Attempts and budgets"): ``claim_lost`` — the agent or its executor was lost before the run
# started; ``run_lost`` — lost during the run (or its sandbox was); ``run_stopped`` — its
# executor stopped the run on purpose (a clean stop, the agent moved away); ``run_failed`` —
# the run failed and its task's failure budget allows another
AttemptEnd = Literal["claim_lost", "run_lost", "run_stopped", "run_failed"]


class Event(msgspec.Struct, kw_only=True, tag_field="type", forbid_unknown_fields=False):
    """The envelope every event carries.

    ``swarm`` and ``id`` name the aggregate (for a swarm event both are the swarm id);
    ``time`` is seconds since the epoch, set by the writer (the fold never reads a clock);
    ``event_id`` is unique per event and is the default ``Nats-Msg-Id``.
    """

    aggregate: ClassVar[str] = ""

    swarm: str
    id: str
    time: float
    actor: str = "system"
    v: int = SCHEMA_VERSION
    event_id: str = msgspec.field(default_factory=lambda: uuid.uuid4().hex)
    causation_id: str | None = None
    correlation_id: str | None = None

    @property
    def type(self) -> str:
        return self.__struct_config__.tag  # type: ignore[return-value]

    @property
    def verb(self) -> str:
        """The last word of the type: ``claimed`` for ``task.claimed``."""
        return self.type.rsplit(".", 1)[1]


# --- swarm ------------------------------------------------------------------------------------


class SwarmEvent(Event):
    aggregate: ClassVar[str] = "swarm"


class SwarmCreated(SwarmEvent, tag="swarm.created", kw_only=True):
    """``budget_usd``: the most the swarm's claude runs may cost together (None: no limit);
    once the recorded spend reaches it, no more claude tasks are claimed."""

    name: str
    description: str = ""
    budget_usd: float | None = None


class SwarmUpdated(SwarmEvent, tag="swarm.updated", kw_only=True):
    """Only the fields that changed are present; ``budget_usd: null`` removes the budget."""

    name: str | None = None
    description: str | None = None
    budget_usd: float | msgspec.UnsetType | None = msgspec.UNSET


class SwarmDeleted(SwarmEvent, tag="swarm.deleted", kw_only=True):
    pass


# --- task -------------------------------------------------------------------------------------


class ClaudeTaskSettings(msgspec.Struct, kw_only=True):
    """A claude task's own settings for its run (unset: the agent's, else the swarm's, else the
    sandbox backend's default). ``allowed_tools`` / ``disallowed_tools`` add to the agent's
    lists; ``max_budget_usd`` stops the run when its cost reaches it (``--max-budget-usd``)."""

    permission_mode: PermissionMode | None = None
    allowed_tools: list[str] = []
    disallowed_tools: list[str] = []
    max_budget_usd: float | None = None
    model: str | None = None


class TaskSpec(msgspec.Struct, kw_only=True):
    """What a task asks for; also the body of a trigger's follow-up task."""

    title: str
    prompt: str = ""
    description: str = ""
    tags: list[str] = []
    priority: Priority = "medium"
    depends: list[str] = []
    runtime: Runtime = "claude"
    timeout: float | None = None
    claude: ClaudeTaskSettings | None = None


class Trigger(msgspec.Struct, kw_only=True):
    """A follow-up task created when this one ends ``on`` completed or failed; ``conflict``: the
    task to create instead of the default resolve task when this one's work cannot land."""

    on: TriggerOn
    task: TaskSpec


class TaskEvent(Event):
    aggregate: ClassVar[str] = "task"


class TaskCreated(TaskEvent, tag="task.created", kw_only=True):
    title: str
    prompt: str = ""
    description: str = ""
    tags: list[str] = []
    priority: Priority = "medium"
    depends: list[str] = []
    runtime: Runtime = "claude"
    timeout: float | None = None
    triggers: list[Trigger] = []
    claude: ClaudeTaskSettings | None = None
    parent: str | None = None  # the task whose trigger (or whose running agent) created this one
    parent_attempt: int | None = None  # created by the agent running ``parent``: which attempt
    resolves: str | None = None  # the task whose work (conflicted or red) this one makes land


class TaskUpdated(TaskEvent, tag="task.updated", kw_only=True):
    """Only the fields that changed are set."""

    title: str | None = None
    depends: list[str] | None = None
    triggers: list[Trigger] | None = None
    prompt: str | None = None
    description: str | None = None
    tags: list[str] | None = None
    priority: Priority | None = None
    runtime: Runtime | None = None
    timeout: float | None = None
    claude: ClaudeTaskSettings | None = None  # replaces the task's claude settings whole


class TaskUnblocked(TaskEvent, tag="task.unblocked", kw_only=True):
    pass


class AttemptBudgets(msgspec.Struct, kw_only=True):
    """The task's budgets as the scheduler had them when it claimed (``schemas.attempts``), for
    the executor: ``run_failures`` (a failed run with failures left goes back to the queue,
    ``retry_in`` seconds later), ``run_losses`` and ``interruptions`` (so a give-back can say how
    much it used; 0: not known)."""

    run_failures: int = 1
    run_losses: int = 0
    interruptions: int = 0
    retry_in: float = 0.0


class TaskClaimed(TaskEvent, tag="task.claimed", kw_only=True):
    """``budgets``: what the executor does when the run fails or is given back (None, a claim
    by an older scheduler: a failed run fails the task)."""

    agent: str
    attempt: int
    budgets: AttemptBudgets | None = None


class TaskRunning(TaskEvent, tag="task.running", kw_only=True):
    """The agent started the attempt. ``inbox_read_through``: the chat sequence up to which the
    agent's unread mentions went into this prompt (they count as read exactly when this event
    is in the log)."""

    agent: str
    attempt: int
    executor: str = ""
    inbox_read_through: int = 0
    session_id: str | None = None  # the claude session this attempt runs in
    resumed: bool = False  # it continues the session of an earlier attempt
    branch: str | None = None  # the task branch the run works on (``swarm/<task>``)
    base: str | None = None  # the commit it was cut from: the project branch's newest tip


class Usage(msgspec.Struct, kw_only=True):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0


class DeniedTool(msgspec.Struct, kw_only=True):
    """A tool call the run was not permitted: the tool, what it was called with (shortened) and
    what the CLI said."""

    tool: str
    input: str = ""
    message: str = ""


class RunOutcome(msgspec.Struct, kw_only=True):
    """What an agent's run produced; shared by ``completed`` and ``failed``."""

    result: str = ""  # the final answer, or the tail of the output (bounded)
    output: str | None = None  # object-store name of the full output
    exit_code: int | None = None
    is_error: bool = False
    cost_usd: float | None = None
    turns: int | None = None
    usage: Usage | None = None
    session_id: str | None = None
    duration_s: float | None = None
    denied_tools: list[DeniedTool] = []


class Work(msgspec.Struct, kw_only=True):
    """What a run left in git: its task ``branch``, cut from ``base``, ending at ``head`` (the
    run's commits plus Swarm's commit of what it left uncommitted; ``head == base``: nothing).
    ``pushed``: the branch is on the remote. ``land``: an integration onto the project's branch
    follows (``task.integrated`` or ``task.integration_failed``)."""

    project: str
    branch: str
    base: str
    head: str
    onto: str | None = None  # the project branch it lands on
    pushed: bool = False
    land: bool = False
    error: str | None = None  # why committing or pushing did not happen


class TaskCompleted(TaskEvent, tag="task.completed", kw_only=True):
    attempt: int
    agent: str
    outcome: RunOutcome = msgspec.field(default_factory=RunOutcome)
    work: Work | None = None


class TaskFailed(TaskEvent, tag="task.failed", kw_only=True):
    """``attempt`` and ``agent``: the attempt it ended (its run failed, or its agent was lost
    with the last of a budget: ``cause`` says which, None for a run that failed); ``attempt``
    0: failed by decision while waiting (a dependency failed, a budget used up)."""

    reason: str
    attempt: int = 0
    agent: str | None = None
    outcome: RunOutcome | None = None
    work: Work | None = None
    cause: AttemptEnd | None = None


class TaskIntegrated(TaskEvent, tag="task.integrated", kw_only=True):
    """The completed attempt's work is on the project's branch ``onto``, at commit ``landed``
    (the newest commit holding it). ``tries``: integrations it took (each lost push race is one
    more); ``already``: a retry found it landed by an earlier try (a crash before this event)."""

    attempt: int
    project: str
    onto: str
    landed: str
    tries: int = 1
    seconds: float = 0.0
    already: bool = False


class TaskIntegrationFailed(TaskEvent, tag="task.integration_failed", kw_only=True):
    """The completed attempt's work could not land on ``onto`` (its newest commit then: ``tip``):
    a ``conflict`` in ``files``, ``verify`` failing (``output``: the command's last output), or
    an ``error`` (git's message). ``resolve``: a resolve task follows; else the task fails."""

    attempt: int
    project: str
    onto: str
    problem: LandingProblem
    tip: str | None = None
    files: list[str] = []
    output: str = ""
    resolve: bool = False
    tries: int = 1
    seconds: float = 0.0


class TaskRequeued(TaskEvent, tag="task.requeued", kw_only=True):
    """The attempt ended without a final result (agent lost, executor gone, or a failed run with
    retries left); ``attempt`` is the next. ``cause``: which budget it used (None, in logs
    written before it existed: ``claim_lost`` when the task was claimed, else ``run_lost``).
    ``outcome``: a failed run's (its cost counts)."""

    attempt: int
    reason: str
    retry_at: float = 0.0
    cause: AttemptEnd | None = None
    outcome: RunOutcome | None = None


class TaskCancelled(TaskEvent, tag="task.cancelled", kw_only=True):
    reason: str = ""


class TaskDeleted(TaskEvent, tag="task.deleted", kw_only=True):
    pass


# --- agent ------------------------------------------------------------------------------------


class AgentEvent(Event):
    aggregate: ClassVar[str] = "agent"


class AgentRegistered(AgentEvent, tag="agent.registered", kw_only=True):
    name: str
    role: str = ""
    skills: list[str] = []
    sandbox_id: str | None = None
    executor: str | None = None  # the executor hosting it, if one has taken it up
    backend: str = "local"
    labels: list[str] | None = None  # only executors with all these labels host it (None: keep)


class AgentUpdated(AgentEvent, tag="agent.updated", kw_only=True):
    name: str | None = None
    role: str | None = None
    skills: list[str] | None = None
    sandbox_id: str | None = None
    executor: str | None = None


class AgentLost(AgentEvent, tag="agent.lost", kw_only=True):
    reason: str = ""


class AgentDeregistered(AgentEvent, tag="agent.deregistered", kw_only=True):
    pass


# --- project ----------------------------------------------------------------------------------


class ProjectEvent(Event):
    aggregate: ClassVar[str] = "project"


class ProjectCreated(ProjectEvent, tag="project.created", kw_only=True):
    """``branch`` None: the remote's default branch. ``mode``: ``integrate`` (each task's work
    lands on the branch), ``branch`` (each task's branch is pushed, nothing more), ``off`` (Swarm
    does no git around tasks). ``verify``: a command run on the integrated result before it is
    pushed (red: the work does not land). ``on_conflict``: ``resolve`` (a task for an agent) or
    ``fail``."""

    name: str
    git_url: str
    branch: str | None = None
    credentials_ref: str | None = None  # the name of a secret, never the secret
    mode: IntegrationMode = "integrate"
    strategy: MergeStrategy = "rebase"
    verify: str | None = None
    on_conflict: OnConflict = "resolve"


class ProjectUpdated(ProjectEvent, tag="project.updated", kw_only=True):
    """Only the fields that changed are set; ``""`` clears ``branch`` (back to the remote's
    default), ``credentials_ref`` and ``verify``. A new URL or branch asks every agent's checkout
    to follow (a new ``init`` round) once the project has been initialised."""

    name: str | None = None
    git_url: str | None = None
    branch: str | None = None
    credentials_ref: str | None = None
    mode: IntegrationMode | None = None
    strategy: MergeStrategy | None = None
    verify: str | None = None
    on_conflict: OnConflict | None = None


class ProjectDeleted(ProjectEvent, tag="project.deleted", kw_only=True):
    """The project is gone (detached first if it was the swarm's); the agents' checkouts stay
    on disk until another project's ``init`` reuses them."""


class ProjectAttached(ProjectEvent, tag="project.attached", kw_only=True):
    pass


class ProjectInitRequested(ProjectEvent, tag="project.init_requested", kw_only=True):
    pass


class ProjectSyncRequested(ProjectEvent, tag="project.sync_requested", kw_only=True):
    pass


class ProjectSynced(ProjectEvent, tag="project.synced", kw_only=True):
    """An agent's checkout answered request ``round`` (init or sync) and is at ``commit``."""

    agent: str
    round: int = 0
    commit: str
    dirty: bool = False
    ahead: int = 0
    behind: int = 0
    branch: str | None = None  # the project branch the checkout follows (the remote's default
    # when the project names none)


class ProjectSyncFailed(ProjectEvent, tag="project.sync_failed", kw_only=True):
    agent: str
    round: int = 0
    error: str


AnyEvent = (
    SwarmCreated
    | SwarmUpdated
    | SwarmDeleted
    | TaskCreated
    | TaskUpdated
    | TaskUnblocked
    | TaskClaimed
    | TaskRunning
    | TaskCompleted
    | TaskFailed
    | TaskIntegrated
    | TaskIntegrationFailed
    | TaskRequeued
    | TaskCancelled
    | TaskDeleted
    | AgentRegistered
    | AgentUpdated
    | AgentLost
    | AgentDeregistered
    | ProjectCreated
    | ProjectUpdated
    | ProjectDeleted
    | ProjectAttached
    | ProjectInitRequested
    | ProjectSyncRequested
    | ProjectSynced
    | ProjectSyncFailed
)

EVENT_TYPES: dict[str, type[Event]] = {cls.__struct_config__.tag: cls for cls in AnyEvent.__args__}

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AnyEvent)


def encode(event: Event) -> bytes:
    return _encoder.encode(event)


def decode(data: bytes) -> Event:
    """Decode one event; raises ``msgspec.ValidationError`` naming the bad field."""
    return _decoder.decode(data)
