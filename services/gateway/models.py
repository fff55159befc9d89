"""The gateway's request and response bodies (pydantic): validated here, described in
``/openapi.json`` from the same classes.

Requests reject unknown fields (a typo is a 400 naming it, not a silent no-op). ``tags``,
``skills`` and ``depends`` take a list or a comma-separated string, like the prototype's CLI.
Response models describe what the handlers answer (the fold's views, encoded with msgspec); a
test validates real answers against the schemas ``/openapi.json`` publishes for them.

Not imported at start: pydantic and these classes were ~0.2 s of the gateway's ~0.6 s of
imports, and nothing needs them until a write's body is parsed or ``/openapi.json`` is asked
for. The handlers import them there (the first write pays ~0.1 s once); the route table names
them (``routes.py``). docs/architecture.md, "Imports at start-up".
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from schemas.errors import Invalid
from schemas.subjects import TOKEN_PATTERN

M = TypeVar("M", bound="BaseModel")

MAX_TIMEOUT = 7 * 24 * 3600.0

Priority = Literal["critical", "high", "medium", "low"]
Runtime = Literal["claude", "shell", "instant"]
TaskStatus = Literal[
    "blocked", "pending", "claimed", "running", "completed", "failed", "requeued", "cancelled"
]
AgentStatus = Literal["idle", "working", "lost"]

Id = Annotated[str, StringConstraints(pattern=TOKEN_PATTERN)]
Word = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


def _comma_list(value: Any) -> Any:
    """``"a, b"`` -> ``["a", "b"]``; lists pass through stripped; empties dropped."""
    if isinstance(value, str):
        value = value.split(",")
    if isinstance(value, list):
        return [v.strip() if isinstance(v, str) else v for v in value if v != "" and v is not None]
    return value


def _unique(value: Any) -> Any:
    """Repeated strings once, empty ones dropped; anything else is left for validation to
    refuse (a list holding an object must be a 400, not a failed hash)."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(dict.fromkeys(v for v in value if v))
    return value


Words = Annotated[list[Word], BeforeValidator(_unique), BeforeValidator(_comma_list)]
Ids = Annotated[list[Id], BeforeValidator(_unique), BeforeValidator(_comma_list)]
Timeout = Annotated[float, Field(gt=0, le=MAX_TIMEOUT)]
Dollars = Annotated[float, Field(gt=0, le=1_000_000)]
PermissionMode = Literal["default", "acceptEdits", "auto", "bypassPermissions", "dontAsk", "plan"]
ToolRule = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
ToolRules = Annotated[list[ToolRule], BeforeValidator(_unique), BeforeValidator(_comma_list)]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _ignored(what: str) -> Any:
    """A field the prototype's clients send that Swarm accepts and ignores (never dumped)."""
    return Field(None, exclude=True, description=f"accepted from the prototype's clients; {what}")


_LOG_OWNS = "ignored: the event log owns it"


class PrototypeTaskFields(BaseModel):
    """What the prototype's clients send with a task beyond its content (often the whole task
    object as they last read it): the lifecycle fields its server stored. In Swarm the scheduler
    and the executors write those as events, so they are accepted and ignored; ``status:
    "cancelled"`` in an update cancels the task."""

    status: Any = _ignored('ignored, except "cancelled" in an update, which cancels the task')
    agent: Any = _ignored(_LOG_OWNS)
    assignedAgent: Any = _ignored(_LOG_OWNS)
    result: Any = _ignored(_LOG_OWNS)
    output: Any = _ignored(_LOG_OWNS)
    error: Any = _ignored(_LOG_OWNS)
    swarmId: Any = _ignored("ignored: the path names the swarm")
    createdAt: Any = _ignored(_LOG_OWNS)
    updatedAt: Any = _ignored(_LOG_OWNS)
    claimedAt: Any = _ignored(_LOG_OWNS)
    startedAt: Any = _ignored(_LOG_OWNS)
    completedAt: Any = _ignored(_LOG_OWNS)


# --- requests ---------------------------------------------------------------------------------


class ClaudeSettingsIn(Request):
    """A claude task's own settings for its run; unset: the agent's, else the swarm's, else the
    sandbox backend's default (local: acceptEdits and a list of coding commands; daytona:
    bypassPermissions)."""

    permission_mode: PermissionMode | None = Field(None, description="claude --permission-mode")
    allowed_tools: ToolRules = Field(
        [], max_length=200, description='added to the agent\'s allowed tools, e.g. "Bash(make *)"'
    )
    disallowed_tools: ToolRules = Field([], max_length=200, description="always denied")
    max_budget_usd: Dollars | None = Field(
        None, description="the run stops when its cost reaches this (claude --max-budget-usd)"
    )
    model: Word | None = Field(None, description="claude --model for this task")


class TaskSpecIn(Request):
    """A task's content: also the body of a trigger's follow-up task."""

    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
    prompt: str = Field("", max_length=200_000, description="defaults to the title")
    description: str = Field("", max_length=20_000)
    tags: Words = Field([], description="a list or a comma-separated string")
    priority: Priority = "medium"
    depends: Ids = Field(
        [],
        validation_alias=AliasChoices("depends", "dependencies", "dependsOn"),
        description="ids of tasks this one waits for (also `dependencies`, `dependsOn`)",
    )
    runtime: Runtime = Field("claude", description="`instant` only measures Swarm's overhead")
    timeout: Timeout | None = Field(None, description="seconds; default: the executor's")
    claude: ClaudeSettingsIn | None = Field(
        None, description="the claude run's permissions, budget and model (claude tasks only)"
    )


class TriggerIn(Request):
    on: Literal["completed", "failed", "conflict"] = Field(
        description="conflict: the task that resolves this one's work when it cannot land "
        "(instead of the default resolve task)"
    )
    task: TaskSpecIn


class CreateTask(TaskSpecIn, PrototypeTaskFields):
    id: Id | None = Field(None, description="optional client-chosen id")
    triggers: list[TriggerIn] = Field([], max_length=20)


class UpdateTask(Request, PrototypeTaskFields):
    """Only the fields given that differ from the task change; only a task not yet claimed
    (blocked, pending, requeued). ``status: "cancelled"`` cancels it instead."""

    title: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
        | None
    ) = None
    prompt: str | None = Field(None, max_length=200_000)
    description: str | None = Field(None, max_length=20_000)
    tags: Words | None = None
    priority: Priority | None = None
    depends: Ids | None = Field(
        None, validation_alias=AliasChoices("depends", "dependencies", "dependsOn")
    )
    runtime: Runtime | None = None
    timeout: Timeout | None = None
    triggers: list[TriggerIn] | None = None
    claude: ClaudeSettingsIn | None = Field(None, description="replaces the task's claude settings")
    id: Any = _ignored("ignored: the path names the task")


class CancelTask(Request):
    reason: str = Field("", max_length=2000)


class CreateSwarm(Request):
    id: Id | None = Field(None, description="optional; generated when absent")
    name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = Field(
        None, description="defaults to the id"
    )
    description: str = Field("", max_length=20_000)
    budget_usd: Dollars | None = Field(
        None,
        description="the most the swarm's claude runs may cost together; once its recorded "
        "spend reaches it, its claude tasks are not claimed",
    )


class UpdateSwarm(Request):
    """Only the fields given change; `budget_usd: null` removes the budget."""

    name: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
        | None
    ) = None
    description: str | None = Field(None, max_length=20_000)
    budget_usd: Dollars | None = Field(None, description="dollars; null: no budget")


class RegisterAgent(Request):
    id: Id | None = Field(None, description="optional; derived from the name when absent")
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    role: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] = ""
    skills: Words = Field([], description="a list or a comma-separated string")
    sandbox_id: str | None = Field(
        None,
        max_length=200,
        validation_alias=AliasChoices("sandboxId", "sandbox_id"),
        description="an existing sandbox to attach to (also accepted as `sandbox_id`)",
    )
    backend: Literal["local", "daytona"] = "local"
    labels: Words = Field(
        [],
        description="placement: only an executor with all these labels takes it up "
        "(a list or a comma-separated string)",
    )
    status: Any = _ignored("ignored: presence and the log say whether it is idle or working")


class UpdateAgent(Request):
    """The prototype's sandboxes report their ``status`` (and current task, last seen) here:
    accepted and ignored, as presence leases and the log say what an agent does."""

    name: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
        | None
    ) = None
    role: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] | None = None
    skills: Words | None = None
    sandbox_id: str | None = Field(
        None, max_length=200, validation_alias=AliasChoices("sandboxId", "sandbox_id")
    )
    status: Any = _ignored("ignored: presence and the log say whether it is idle or working")
    currentTask: Any = _ignored(_LOG_OWNS)
    task: Any = _ignored(_LOG_OWNS)
    lastSeen: Any = _ignored("ignored: presence leases say it")
    lastHeartbeat: Any = _ignored("ignored: presence leases say it")
    swarmId: Any = _ignored("ignored: use ?swarm= when the id exists in several")
    id: Any = _ignored("ignored: the path names the agent")


def _mention_list(value: Any) -> Any:
    """``"@fe, @be"`` or ``"@fe @be"`` -> ``["@fe", "@be"]``; lists pass through."""
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    return value


Mention = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=130)]


class PostChat(Request):
    """A chat message; ``@mentions`` in the text count too. With an agent token the author is
    that agent, whatever the body says."""

    message: Annotated[str, StringConstraints(min_length=1, max_length=16_000)] = Field(
        validation_alias=AliasChoices("message", "text"),
        description="the text (also accepted as `text`)",
    )
    mentions: Annotated[list[Mention], BeforeValidator(_mention_list)] = Field(
        [],
        max_length=100,
        description="extra mentions (`@all`, `@<role>`, `@<agent>`): a list or a string",
    )
    mention: Annotated[list[Mention], BeforeValidator(_mention_list)] = Field(
        [],
        max_length=100,
        exclude=True,
        description="the prototype's name: added to `mentions`",
    )
    author: Word | None = Field(
        None,
        validation_alias=AliasChoices("author", "from"),
        description="who speaks (default `master`; also accepted as `from`)",
    )
    channel: Id | None = Field(None, description="default `general`")
    type: Any = _ignored("ignored")
    timestamp: Any = _ignored("ignored: the chat service stamps the time")


IntegrationMode = Literal["integrate", "branch", "off"]
MergeStrategy = Literal["rebase", "merge"]
OnConflict = Literal["resolve", "fail"]
VerifyCommand = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=4000, pattern=r"^[^\x00]*$"),
]
MODE_HELP = (
    "integrate (default): each task works on swarm/<task> and its work lands on the branch; "
    "branch: the task branch is pushed, nothing lands; off: Swarm does no git around tasks"
)
STRATEGY_HELP = "how a task's work goes onto the branch: rebase (default) or merge (a merge commit)"
VERIFY_HELP = (
    "a shell command run in the checkout on the integrated result before it is pushed "
    "(e.g. the project's tests); when it fails, the work does not land"
)
ON_CONFLICT_HELP = (
    "work that cannot land (a conflict, a red verify): resolve (default: a resolve task for an "
    "agent) or fail (the task fails with the reason)"
)

GitRef = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9._/][A-Za-z0-9._/-]{0,254}$"),
]


class CreateProject(Request):
    """A git project, attached to ``swarm`` (default: the swarm ``default``)."""

    id: Id | None = Field(None, description="optional; generated (`p-…`) when absent")
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    git_url: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)] = Field(
        max_length=2000,
        json_schema_extra={"pattern": r"^\s*[^\s-]\S*\s*$"},  # check_git_url says more
        validation_alias=AliasChoices("gitUrl", "git_url"),
        description="https://, ssh://, git://, file://, user@host:path or a path; never with "
        "a password or token in it (also accepted as `git_url`)",
    )
    branch: GitRef | None = Field(
        None,
        description="the branch work lands on; default: the remote's default branch (its HEAD)",
    )
    credentials_ref: str | None = Field(
        None,
        max_length=128,
        json_schema_extra={"pattern": r"^\s*(?:[A-Za-z_][A-Za-z0-9_]*)?\s*$"},  # checked below
        validation_alias=AliasChoices("credentialsRef", "credentials_ref"),
        description="the NAME of the environment variable (on the executors) that holds the git "
        "token, e.g. GITHUB_TOKEN; never the token (also accepted as `credentials_ref`)",
    )
    swarm: Id | None = Field(
        None,
        validation_alias=AliasChoices("swarmId", "swarm", "swarm_id"),
        description="the swarm to attach it to (also `swarmId`); default `default`",
    )
    mode: IntegrationMode = Field("integrate", description=MODE_HELP)
    strategy: MergeStrategy = Field("rebase", description=STRATEGY_HELP)
    verify: VerifyCommand | None = Field(None, description=VERIFY_HELP)
    on_conflict: OnConflict = Field(
        "resolve",
        validation_alias=AliasChoices("onConflict", "on_conflict"),
        description=ON_CONFLICT_HELP,
    )


class UpdateProject(Request):
    """The fields to change; `""` clears `branch` (back to the remote's default),
    `credentialsRef` and `verify`. A new URL or branch makes every agent's checkout follow (a
    new init round) once the project has been initialised."""

    name: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
        | None
    ) = None
    git_url: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)] | None = Field(
        None, max_length=2000, validation_alias=AliasChoices("gitUrl", "git_url")
    )
    branch: GitRef | Literal[""] | None = None
    credentials_ref: str | None = Field(
        None, max_length=128, validation_alias=AliasChoices("credentialsRef", "credentials_ref")
    )
    mode: IntegrationMode | None = Field(None, description=MODE_HELP)
    strategy: MergeStrategy | None = Field(None, description=STRATEGY_HELP)
    verify: VerifyCommand | Literal[""] | None = Field(None, description=VERIFY_HELP)
    on_conflict: OnConflict | None = Field(
        None,
        validation_alias=AliasChoices("onConflict", "on_conflict"),
        description=ON_CONFLICT_HELP,
    )


# --- responses --------------------------------------------------------------------------------


class Response(BaseModel):
    """A response body (documentation and tests; the handlers encode the fold directly)."""


class Usage(Response):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0


class DeniedTool(Response):
    tool: str
    input: str = Field("", description="what it was called with, shortened")
    message: str = Field("", description="what the CLI said")


class Outcome(Response):
    result: str = ""
    output: str | None = Field(None, description="object-store name of the full output")
    exit_code: int | None = None
    is_error: bool = False
    cost_usd: float | None = None
    turns: int | None = None
    usage: Usage | None = None
    session_id: str | None = None
    duration_s: float | None = None
    denied_tools: list[DeniedTool] = Field(
        [], description="tool calls the run was not permitted (a run with any: failed)"
    )


class ClaudeSettingsOut(Response):
    permission_mode: PermissionMode | None = None
    allowed_tools: list[str] = []
    disallowed_tools: list[str] = []
    max_budget_usd: float | None = None
    model: str | None = None


class TaskSpecOut(Response):
    title: str
    prompt: str = ""
    description: str = ""
    tags: list[str] = []
    priority: Priority = "medium"
    depends: list[str] = []
    runtime: Runtime = "claude"
    timeout: float | None = None
    claude: ClaudeSettingsOut | None = None


class TriggerOut(Response):
    on: Literal["completed", "failed", "conflict"]
    task: TaskSpecOut


class Integration(Response):
    """A task's work in git: its branch, where it started and ended, and whether it landed."""

    project: str
    branch: str = Field(description="swarm/<task>")
    base: str | None = Field(None, description="the commit it was cut from")
    head: str | None = Field(None, description="the commit the run ended at")
    state: Literal[
        "working", "unchanged", "pushed", "landing", "landed", "conflict", "verify_failed", "failed"
    ] = Field(
        description="landing: an integration is due; unchanged: nothing to land; pushed: the "
        "branch is on the remote, nothing lands (mode branch, or the run failed)"
    )
    onto: str | None = Field(None, description="the project branch it lands on")
    landed: str | None = Field(None, description="the commit on it that holds the work")
    problem: Literal["conflict", "verify", "error"] | None = None
    tip: str | None = Field(None, description="the branch's commit the landing was tried on")
    files: list[str] = Field([], description="the conflicting files")
    output: str = Field("", description="verify's last output, or git's message")
    resolve: bool = Field(False, description="a resolve task makes it land")
    resolver: str | None = Field(None, description="that resolve task")
    resolved_by: str | None = None
    tries: int = Field(0, description="integrations it took (each lost push race is one more)")
    seconds: float | None = Field(None, description="how long landing took")
    at: float | None = None


class Task(Response):
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
    triggers: list[TriggerOut] = []
    parent: str | None = None
    parent_attempt: int | None = Field(
        None, description="an agent's follow-up: the attempt of `parent` that created it"
    )
    status: TaskStatus
    attempt: int
    agent: str | None = None
    result: str | None = Field(None, description="the final answer or the output's tail")
    reason: str | None = Field(None, description="why it failed, was cancelled or requeued")
    outcome: Outcome | None = None
    retry_at: float = 0.0
    created_at: float
    updated_at: float
    claimed_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    created_seq: int = 0
    claude: ClaudeSettingsOut | None = None
    cost_usd: float = Field(0.0, description="what its recorded attempts cost together")
    usage: Usage = Field(
        default_factory=Usage, description="the tokens its recorded attempts used together"
    )
    cancelled_by: str | None = Field(
        None, description='who cancelled it: an agent, "cli", "api" or "nats" (the edge it came by)'
    )
    session_id: str | None = Field(None, description="the claude session of its latest attempt")
    session_agent: str | None = Field(None, description="the agent whose sandbox holds it")
    resolves: str | None = Field(None, description="the task whose work this one makes land")
    integration: Integration | None = Field(
        None, description="its work in git (null: no project, or mode off)"
    )


class CreatedTask(Task):
    warnings: list[str] = Field(
        [],
        description="what the client should know, e.g. that no registered agent can take the "
        "task (no agent at all, or none with a skill among its tags): it then waits",
    )


class LoggedEvent(BaseModel):
    """One event as stored (its fields depend on ``type``), with its log position."""

    model_config = ConfigDict(extra="allow")

    seq: int
    type: str
    swarm: str
    id: str
    time: float
    actor: str


class TaskDetail(Task):
    events: list[LoggedEvent] = Field(description="the task's full history, in log order")


class Agent(Response):
    swarm: str
    id: str
    name: str
    role: str = ""
    skills: list[str] = []
    sandbox_id: str | None = None
    executor: str | None = Field(None, description="the executor hosting it (none yet: null)")
    backend: str = "local"
    labels: list[str] = Field([], description="executors hosting it must have all these labels")
    status: AgentStatus
    task: str | None = Field(None, description="the task it is working on")
    registered_at: float = 0.0
    updated_at: float = 0.0
    spent_usd: float = Field(0.0, description="what its recorded runs cost together")


class Swarm(Response):
    id: str
    name: str
    description: str = ""
    created_at: float = 0.0
    project: str | None = None
    tasks: int = Field(0, description="how many tasks it holds")
    agents: int = Field(0, description="how many agents it has")
    budget_usd: float | None = Field(None, description="its budget (null: none)")
    spent_usd: float = Field(0.0, description="what its recorded runs cost together")
    budget_reached: str | None = Field(
        None, description="why its claude tasks are not claimed (null: they are)"
    )


class ChatMessage(Response):
    swarm: str
    text: str
    author: str
    author_kind: Literal["person", "master", "agent", "system"]
    channel: str = "general"
    mentions: list[str] = Field([], description="as written, without the `@`")
    recipients: list[str] = Field([], description="the agent ids the mentions reached")
    time: float
    id: str
    seq: int = Field(description="its position in SWARM_CHAT: the `since` of the next page")


class ChatHistory(Response):
    messages: list[ChatMessage] = Field(description="oldest first")


class Checkout(Response):
    """One agent's copy of the project, as it last reported."""

    agent: str
    state: Literal["none", "pending", "synced", "sync_failed"] = Field(
        description="none: nothing asked yet; pending: asked, not answered for this round"
    )
    round: int = Field(0, description="the request round it last answered")
    commit: str | None = None
    dirty: bool = False
    ahead: int = 0
    behind: int = 0
    error: str | None = Field(None, description="git's message when the sync failed")
    at: float | None = None
    branch: str | None = Field(None, description="the branch it is on now (swarm/<task>)")
    task: str | None = Field(None, description="the task whose branch that is")


class LandedTask(Response):
    task: str
    commit: str = Field(description="the commit on the branch that holds its work")
    at: float
    agent: str | None = None
    resolves: str | None = Field(None, description="the task whose work it made land")


class Project(Response):
    swarm: str
    id: str
    name: str
    git_url: str
    branch: str | None = Field(
        None, description="the branch named; null: the remote's default (see `target`)"
    )
    target: str | None = Field(
        None, description="the branch work lands on (null until a checkout found the default)"
    )
    default_branch: str | None = Field(None, description="the remote's default branch")
    credentials_ref: str | None = Field(None, description="the NAME of the token's variable")
    mode: IntegrationMode = Field("integrate", description=MODE_HELP)
    strategy: MergeStrategy = Field("rebase", description=STRATEGY_HELP)
    verify: str | None = Field(None, description=VERIFY_HELP)
    on_conflict: OnConflict = Field("resolve", description=ON_CONFLICT_HELP)
    attached: bool = Field(description="whether it is its swarm's project")
    round: int = Field(0, description="bumped by each init or sync request")
    request: Literal["none", "init", "sync"] = "none"
    created_at: float = 0.0
    updated_at: float = 0.0
    checkouts: list[Checkout] = Field(description="one per agent of the swarm")
    complete: bool = Field(
        description="every agent that can answer (hosted, not lost) answered this round"
    )
    tip: str | None = Field(None, description="the branch's newest commit Swarm knows of")
    landed: list[LandedTask] = Field([], description="the last tasks landed, oldest first")
    landed_count: int = Field(0, description="every task landed so far")


class Status(BaseModel):
    swarm: Swarm
    agents: list[Agent]
    tasks: dict[str, int] = Field(description="task counts by status, and `total`")
    warnings: list[str] = Field(
        [], description="unfinished tasks no registered agent can take (they wait), oldest first"
    )
    chat: list[ChatMessage] = Field(
        [], description="the last messages (empty when the chat service does not answer)"
    )


class BoardAt(BaseModel):
    seq: int = Field(description="the last log position folded in (0: nothing yet)")
    time: float | None = Field(None, description="stream time of that event")
    swarm: Swarm | None = Field(None, description="null when the swarm did not exist yet")
    tasks: list[Task] = Field(
        [],
        description="at most `per_status` tasks of each status, status after status: the next "
        "to be taken of an unfinished one (priority, then oldest), the newest of a finished one",
    )
    more: dict[str, int] = Field(
        {}, description="how many more tasks than `tasks` holds each status had (cut short only)"
    )
    agents: list[Agent] = []
    counts: dict[str, int] = {}
    project: Project | None = Field(
        None, description="the swarm's project then: its branch's tip and the tasks landed"
    )


class Output(BaseModel):
    task: str
    attempt: int
    source: Literal["object_store", "live", "result", "none"] = Field(
        description="where the text came from: the stored full output, the live chunks still "
        "in SWARM_LOGS, or the tail kept in the terminal event"
    )
    complete: bool = Field(description="whether this is the whole output")
    output: str


class Deleted(BaseModel):
    id: str
    deleted: bool = True


class ErrorDetail(BaseModel):
    code: str = Field(description="invalid, unauthorized, forbidden, not_found, conflict, ...")
    message: str
    field: str | None = Field(None, description="400: the field (or header, or `body`) at fault")


class Error(BaseModel):
    error: ErrorDetail


class Applying(BaseModel):
    """202: the write is in the log (at ``seq``) but this gateway has not applied it yet (its
    view lags, e.g. while a NATS node is lost). Read it at ``location``; do not send it again
    without the same Idempotency-Key."""

    id: str = Field(description="the id of what was written (chosen by the gateway if not given)")
    swarm: str
    kind: Literal["swarm", "task", "agent", "project"]
    seq: int = Field(description="the log position it was written at")
    applying: Literal[True] = True
    location: str = Field(description="where to read it (also the Location header)")
    message: str


class ServiceHealth(BaseModel):
    ready: bool
    instances: list[dict[str, Any]]


class Health(BaseModel):
    """``GET /health``: 200 when every service is ready, else 503 with the same body."""

    ok: bool
    services: dict[str, ServiceHealth]
    nats: Literal["connected", "unreachable"]
    seq: int = Field(description="the last log position this gateway has applied")
    error: str | None = Field(None, description="why the readiness could not be read")


# --- parsing ----------------------------------------------------------------------------------


def field_path(location: tuple[int | str, ...]) -> str:
    """``("triggers", 0, "task", "title")`` -> ``triggers[0].task.title``."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "body"


def parse(model: type[M], data: Any) -> M:
    """Validate ``data`` into ``model``; ``Invalid`` naming the first field at fault."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise Invalid("body", f"the body must be a JSON object, not {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        location = tuple(p for p in first["loc"] if not (isinstance(p, str) and "[" in p))
        field = field_path(location)
        raise Invalid(field, f"{field}: {first['msg']}") from None
