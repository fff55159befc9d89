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
TriggerOn = Literal["completed", "failed"]


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
    name: str
    description: str = ""


class SwarmDeleted(SwarmEvent, tag="swarm.deleted", kw_only=True):
    pass


# --- task -------------------------------------------------------------------------------------


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


class Trigger(msgspec.Struct, kw_only=True):
    """A follow-up task created when this one ends ``on`` completed or failed."""

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
    parent: str | None = None  # the task whose trigger created this one


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


class TaskUnblocked(TaskEvent, tag="task.unblocked", kw_only=True):
    pass


class TaskClaimed(TaskEvent, tag="task.claimed", kw_only=True):
    agent: str
    attempt: int


class TaskRunning(TaskEvent, tag="task.running", kw_only=True):
    """The agent started the attempt. ``inbox_read_through``: the chat sequence up to which the
    agent's unread mentions went into this prompt (they count as read exactly when this event
    is in the log)."""

    agent: str
    attempt: int
    executor: str = ""
    inbox_read_through: int = 0


class Usage(msgspec.Struct, kw_only=True):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0


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


class TaskCompleted(TaskEvent, tag="task.completed", kw_only=True):
    attempt: int
    agent: str
    outcome: RunOutcome = msgspec.field(default_factory=RunOutcome)


class TaskFailed(TaskEvent, tag="task.failed", kw_only=True):
    reason: str
    attempt: int = 0
    agent: str | None = None
    outcome: RunOutcome | None = None


class TaskRequeued(TaskEvent, tag="task.requeued", kw_only=True):
    """The attempt ended without a result (agent lost, executor gone); ``attempt`` is the next."""

    attempt: int
    reason: str
    retry_at: float = 0.0


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
    name: str
    git_url: str
    branch: str = "main"
    credentials_ref: str | None = None  # the name of a secret, never the secret


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


class ProjectSyncFailed(ProjectEvent, tag="project.sync_failed", kw_only=True):
    agent: str
    round: int = 0
    error: str


AnyEvent = (
    SwarmCreated
    | SwarmDeleted
    | TaskCreated
    | TaskUpdated
    | TaskUnblocked
    | TaskClaimed
    | TaskRunning
    | TaskCompleted
    | TaskFailed
    | TaskRequeued
    | TaskCancelled
    | TaskDeleted
    | AgentRegistered
    | AgentUpdated
    | AgentLost
    | AgentDeregistered
    | ProjectCreated
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
